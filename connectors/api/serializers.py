"""API serializers: shapes only. Content rules live in the services and the partner schemas."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from connectors.models import Connector, Delivery, DeliveryAttempt, Outcome, PartnerConfig
from connectors.statistics import STATS_PERIODS
from dap.api_input import IdField, storable_json


class SecretStateSerializer(serializers.Serializer):
    set = serializers.BooleanField(help_text="Whether a value is stored.")
    last4 = serializers.CharField(allow_null=True, help_text="Last 4 characters, for secrets of 12+ characters.")


class SettingFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    type = serializers.CharField()
    required = serializers.BooleanField()
    default = serializers.JSONField(allow_null=True)
    help_text = serializers.CharField()
    secret = serializers.BooleanField()
    choices = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))
    min_value = serializers.FloatField(allow_null=True)
    max_value = serializers.FloatField(allow_null=True)
    max_length = serializers.IntegerField(allow_null=True)
    pattern = serializers.CharField(allow_null=True)


class LimitsSerializer(serializers.Serializer):
    max_batch_size = serializers.IntegerField()
    min_batch_size = serializers.IntegerField()
    max_payload_bytes = serializers.IntegerField(allow_null=True)
    requests_per_minute = serializers.IntegerField(allow_null=True)
    batch_interval_seconds = serializers.IntegerField(
        allow_null=True, help_text="Batched partners: the longest a due change waits for a fuller batch."
    )
    notes = serializers.CharField()


class PartnerSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    vendor = serializers.CharField()
    description = serializers.CharField()
    platform_type = serializers.CharField()
    kind = serializers.ChoiceField(choices=["server_to_server", "tag_based"])
    protocol = serializers.CharField()
    mode = serializers.ChoiceField(choices=["real_time", "batched"])
    identifier_slots = serializers.ListField(child=serializers.CharField())
    identifier_slot_setting = serializers.CharField(allow_null=True)
    cookie_sync = serializers.BooleanField()
    syncs_on = serializers.ListField(child=serializers.CharField())
    multiple_configs = serializers.BooleanField()
    profile_variables = serializers.BooleanField()
    usable_in = serializers.ListField(child=serializers.CharField())
    docs_url = serializers.CharField()
    error_docs_url = serializers.CharField()
    prerequisites = serializers.ListField(child=serializers.CharField())
    limits = LimitsSerializer(allow_null=True)
    settings = SettingFieldSerializer(many=True)
    audience_id_field = SettingFieldSerializer(
        allow_null=True,
        help_text="What an audience connection (or journey step) names at this partner: its audience, segment, list "
        "or group id, with format and help; null when it names nothing.",
    )
    audience_id_defaults = serializers.ListField(
        child=serializers.CharField(), help_text="Settings that supply the id when a connection leaves it empty."
    )


class PartnerConfigSerializer(serializers.ModelSerializer):
    """A configuration as read: plain settings in full, secrets only as set/last-4."""

    secrets = serializers.SerializerMethodField()

    class Meta:
        model = PartnerConfig
        fields = ["id", "connector", "name", "settings", "secrets", "timeout_seconds", "created_at", "updated_at"]
        read_only_fields = fields

    @extend_schema_field(serializers.DictField(child=SecretStateSerializer()))
    def get_secrets(self, obj: PartnerConfig) -> dict:
        return obj.masked_secrets()


class PartnerConfigWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    settings = serializers.DictField(
        required=False,
        validators=[storable_json],
        help_text="Settings per the partner's schema (GET /api/v1/partners/{key}/). "
        "Secrets are write-only; leave one out or empty to keep the stored value.",
    )
    timeout_seconds = serializers.FloatField(required=False, help_text="Whole-request timeout, default 3 s.")


class PartnerConfigUpdateSerializer(PartnerConfigWriteSerializer):
    name = serializers.CharField(max_length=200, required=False)


class Stats7dSerializer(serializers.Serializer):
    added = serializers.IntegerField()
    removed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    errors = serializers.IntegerField()


class ConnectorSerializer(serializers.ModelSerializer):
    partner = serializers.CharField(source="partner_key")
    partner_name = serializers.CharField()
    status_changed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    config_count = serializers.SerializerMethodField()
    last_7_days = serializers.SerializerMethodField()

    class Meta:
        model = Connector
        fields = [
            "id",
            "partner",
            "partner_name",
            "name",
            "status",
            "status_changed_at",
            "status_changed_by",
            "config_count",
            "last_7_days",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_config_count(self, obj) -> int:
        return obj.config_count if hasattr(obj, "config_count") else obj.configs.count()

    @extend_schema_field(Stats7dSerializer(allow_null=True, help_text="In lists; null on a single connector."))
    def get_last_7_days(self, obj) -> dict | None:
        if not hasattr(obj, "added_total"):
            return None
        return {
            "added": obj.added_total,
            "removed": obj.removed_total,
            "skipped": obj.skipped_total,
            "errors": obj.error_total,
        }


class ConnectorDetailSerializer(ConnectorSerializer):
    configs = PartnerConfigSerializer(many=True, read_only=True)

    class Meta(ConnectorSerializer.Meta):
        fields = [*ConnectorSerializer.Meta.fields, "configs"]
        read_only_fields = fields


class ConnectorCreateSerializer(serializers.Serializer):
    partner = serializers.CharField(help_text="Catalogue key of a server-to-server partner.")
    name = serializers.CharField(max_length=200)
    config_name = serializers.CharField(max_length=200, required=False, help_text='Default "Default".')
    settings = serializers.DictField(
        required=False, validators=[storable_json], help_text="Settings per the partner's schema."
    )
    timeout_seconds = serializers.FloatField(required=False)


class ConnectorFilterSerializer(serializers.Serializer):
    """The connector list's query parameters (text with a null character, or an unknown status, is a 400)."""

    search = serializers.CharField(required=False, allow_blank=True, max_length=200)
    status = serializers.ChoiceField(choices=Connector.Status.choices, required=False, allow_blank=True)


class ConnectorUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)


class UsageSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["audience", "journey"])
    id = serializers.IntegerField()
    name = serializers.CharField()
    partner_config_id = serializers.IntegerField()
    partner_config_name = serializers.CharField()
    detail = serializers.CharField()


class UsagesSerializer(serializers.Serializer):
    in_use = serializers.BooleanField()
    usages = UsageSerializer(many=True)
    live_journeys_with_unpublished_changes = serializers.ListField(child=serializers.CharField())


class InUseSerializer(serializers.Serializer):
    detail = serializers.CharField()
    usages = UsageSerializer(many=True)


class StatusChangeSerializer(serializers.Serializer):
    changed = serializers.BooleanField(help_text="False when the connector already had this status (idempotent).")
    connector = ConnectorSerializer()


class ConnectionTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class DeliverySerializer(serializers.ModelSerializer):
    connector = serializers.IntegerField(source="partner_config.connector_id", read_only=True)
    outcome = serializers.ChoiceField(
        choices=Outcome.choices, allow_blank=True, read_only=True, help_text="Empty while the delivery is pending."
    )

    class Meta:
        model = Delivery
        fields = [
            "id",
            "connector",
            "partner_config",
            "profile",
            "action",
            "audience",
            "journey",
            "status",
            "outcome",
            "partner_error_code",
            "last_error",
            "attempts",
            "created_at",
            "next_attempt_at",
            "finished_at",
        ]
        read_only_fields = fields


class DeliveryFilterSerializer(serializers.Serializer):
    """Filters of the delivery list and of a replay by filter (all optional, combined with AND)."""

    connector = IdField(required=False)
    partner_config = IdField(required=False)
    status = serializers.ChoiceField(choices=Delivery.Status.choices, required=False)
    outcome = serializers.ChoiceField(choices=Outcome.choices, required=False, help_text="Category.")
    date_from = serializers.DateField(required=False, help_text="Enqueued on or after this day (UTC).")
    date_to = serializers.DateField(required=False, help_text="Enqueued on or before this day (UTC).")

    def validate(self, attrs):
        if attrs.get("date_from") and attrs.get("date_to") and attrs["date_from"] > attrs["date_to"]:
            raise serializers.ValidationError({"date_to": ["Must not be before date_from."]})
        return attrs


class DeliveryAttemptFilterSerializer(serializers.Serializer):
    """Filters of the partner-call list (all optional, combined with AND)."""

    connector = IdField(required=False)
    partner_config = IdField(required=False)
    outcome = serializers.ChoiceField(
        choices=Outcome.choices, required=False, help_text="Calls whose main outcome is this one."
    )
    errors_only = serializers.BooleanField(
        required=False, default=False, help_text="Only calls with failed or retried items."
    )


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    connector = serializers.IntegerField(source="partner_config.connector_id")
    outcome = serializers.ChoiceField(
        choices=Outcome.choices, allow_blank=True, read_only=True, help_text="The call's main outcome; may be empty."
    )

    class Meta:
        model = DeliveryAttempt
        fields = [
            "id",
            "connector",
            "partner_config",
            "at",
            "action",
            "status_code",
            "duration_ms",
            "item_count",
            "ok_count",
            "error_count",
            "retry_count",
            "outcome",
            "partner_error_code",
            "snippet",
        ]
        read_only_fields = fields
        extra_kwargs = {"snippet": {"help_text": "The partner's answer, shortened, identifiers and secrets redacted."}}


class QueryChoiceField(serializers.ChoiceField):
    """A query parameter given empty (`?days=`) is refused, not read as absent."""

    def get_value(self, dictionary):
        if dictionary.get(self.field_name, None) == "":
            return ""
        return super().get_value(dictionary)


class StatsQuerySerializer(serializers.Serializer):
    days = QueryChoiceField(
        choices=list(STATS_PERIODS), required=False, default=7, help_text="The period: the last 7, 30 or 90 days."
    )


class ReplaySerializer(DeliveryFilterSerializer):
    ids = serializers.ListField(child=IdField(), required=False, max_length=100000, help_text="Delivery ids.")

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if not attrs:
            raise serializers.ValidationError(
                {"non_field_errors": ["Give ids or at least one filter: replaying everything needs a filter."]}
            )
        return attrs


class ReplayResultSerializer(serializers.Serializer):
    replayed = serializers.IntegerField()


class SyncTokenRequestSerializer(serializers.Serializer):
    external_id = serializers.CharField(required=False, max_length=200, help_text="The profile's external id.")
    profile_id = IdField(required=False, help_text="Or the profile's id.")

    def validate(self, attrs):
        if bool(attrs.get("external_id")) == bool(attrs.get("profile_id")):
            raise serializers.ValidationError({"non_field_errors": ["Give either external_id or profile_id."]})
        return attrs


class SyncTokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Put it in place of DAP_SYNC_TOKEN in the cookie-sync snippets.")
    expires_in = serializers.IntegerField(help_text="Seconds the token is accepted for.")
    sync_urls = serializers.DictField(
        child=serializers.CharField(),
        help_text="Per cookie-sync partner key: the sync path with this token (the partner fills its id parameter).",
    )


class PartnerErrorSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=Outcome.choices)
    outcome_label = serializers.CharField()
    code = serializers.CharField(
        help_text="The partner's own error code (code or code/subcode), or the platform's reason for the outcome."
    )
    count = serializers.IntegerField()
    meaning = serializers.CharField(help_text="What the code means, in plain words ('' when unknown).")
    docs_url = serializers.CharField(help_text="The partner's error documentation.")
    series = serializers.ListField(
        child=serializers.IntegerField(), help_text="Profiles with this outcome and code per day, aligned with dates."
    )


class OutcomeCountsField(serializers.DictField):
    child = serializers.IntegerField()


class OutcomeSeriesField(serializers.DictField):
    child = serializers.ListField(child=serializers.IntegerField())


class CategoryTotalsSerializer(serializers.Serializer):
    added = serializers.IntegerField()
    removed = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="All skipped outcomes (no identifier, no consent, deactivated).")
    errors = serializers.IntegerField(
        help_text="All error outcomes (other error, invalid credentials, timeout, partner error)."
    )


class CategorySeriesSerializer(serializers.Serializer):
    added = serializers.ListField(child=serializers.IntegerField())
    removed = serializers.ListField(child=serializers.IntegerField())
    skipped = serializers.ListField(child=serializers.IntegerField())
    errors = serializers.ListField(child=serializers.IntegerField())


class DayStatsSerializer(serializers.Serializer):
    day = serializers.DateField()
    outcomes = OutcomeCountsField(help_text="Profiles per outcome that day.")


class StatsPeriodSerializer(serializers.Serializer):
    days = serializers.IntegerField(help_text="7, 30 or 90.")
    since = serializers.DateField(help_text="First day of the period.")
    until = serializers.DateField(help_text="Last day of the period (today).")
    time_zone = serializers.CharField(help_text="The time zone whose midnight starts a day (DAP_STATS_TIME_ZONE).")
    dates = serializers.ListField(child=serializers.DateField(), help_text="Every day of the period, oldest first.")


class ConnectorStatsSerializer(StatsPeriodSerializer):
    totals = CategoryTotalsSerializer(help_text="Profiles per category over the period.")
    by_outcome = OutcomeCountsField(help_text="Profiles per outcome over the period.")
    series = OutcomeSeriesField(
        help_text="Per outcome, profiles per day aligned with dates (days without traffic are 0)."
    )
    by_day = DayStatsSerializer(many=True, help_text="The same numbers per day (every day of the period).")
    partner_errors = PartnerErrorSerializer(many=True)


class PartnerConfigStatsSerializer(ConnectorStatsSerializer):
    partner_config_id = serializers.IntegerField()


class ConnectorOverviewSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    partner = serializers.CharField()
    partner_name = serializers.CharField()
    status = serializers.ChoiceField(choices=Connector.Status.choices)
    totals = CategoryTotalsSerializer()
    series = CategorySeriesSerializer(help_text="Per category, profiles per day aligned with dates.")


class StatsOverviewSerializer(StatsPeriodSerializer):
    totals = CategoryTotalsSerializer(help_text="All connectors together.")
    series = CategorySeriesSerializer(help_text="All connectors together, per day.")
    connectors = ConnectorOverviewSerializer(many=True)
