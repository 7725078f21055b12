"""API serializers: shapes only. Content rules live in the services and journeys/definition.py."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from dap.api_input import IdField, JSONField, storable_json
from journeys.models import Journey, JourneyEnrollment, JourneyVersion

DEFINITION_HELP = (
    'The journey definition: {"steps": [...]}, each step with a key and a type: entry (audience_id or event), '
    "wait (duration in seconds/minutes/hours/days), condition (rule, next_true, next_false), activate "
    "(partner_config_id, partner_audience_id, profile_variables, action add/update/remove) or exit; every step but "
    "exit and condition names its next step."
)


class JourneySerializer(serializers.ModelSerializer):
    status_changed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    has_unpublished_changes = serializers.BooleanField(read_only=True)
    version_count = serializers.SerializerMethodField()
    latest_version = serializers.SerializerMethodField()
    running_enrollments = serializers.SerializerMethodField()

    class Meta:
        model = Journey
        fields = [
            "id",
            "name",
            "description",
            "status",
            "status_changed_at",
            "status_changed_by",
            "has_unpublished_changes",
            "published_at",
            "draft_updated_at",
            "version_count",
            "latest_version",
            "running_enrollments",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_version_count(self, obj) -> int:
        return obj.version_count if hasattr(obj, "version_count") else obj.versions.count()

    @extend_schema_field(serializers.IntegerField(allow_null=True, help_text="Number of the latest version."))
    def get_latest_version(self, obj):
        if hasattr(obj, "latest_version_number"):
            return obj.latest_version_number
        latest = obj.versions.order_by("-number").first()
        return latest.number if latest else None

    def get_running_enrollments(self, obj) -> int:
        if hasattr(obj, "running_count"):
            return obj.running_count
        return obj.enrollments.filter(status__in=JourneyEnrollment.RUNNING).count()


class JourneyDetailSerializer(JourneySerializer):
    definition = serializers.JSONField(help_text="The draft (what the next publish makes a version).")
    published_definition = serializers.SerializerMethodField()
    draft_problems = serializers.SerializerMethodField()

    class Meta(JourneySerializer.Meta):
        fields = [*JourneySerializer.Meta.fields, "definition", "published_definition", "draft_problems"]
        read_only_fields = fields

    @extend_schema_field(serializers.JSONField(allow_null=True, help_text="The latest published version's definition."))
    def get_published_definition(self, obj):
        latest = obj.versions.order_by("-number").first()
        return latest.definition if latest else None

    @extend_schema_field(
        serializers.ListField(
            child=serializers.CharField(), help_text="What publishing the draft would refuse (empty: it can be)."
        )
    )
    def get_draft_problems(self, obj) -> list[str]:
        from django.core.exceptions import ValidationError

        from journeys.definition import validate_definition

        try:
            validate_definition(obj.definition)
        except ValidationError as exc:
            return [m for messages in exc.message_dict.values() for m in messages]
        return []


class JourneyFilterSerializer(serializers.Serializer):
    """The journey list's query parameters (text with a null character, or an unknown status, is a 400)."""

    search = serializers.CharField(required=False, allow_blank=True, max_length=200)
    status = serializers.ChoiceField(choices=Journey.Status.choices, required=False, allow_blank=True)


class JourneyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    definition = JSONField(required=False, help_text=DEFINITION_HELP)


class JourneyUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    definition = JSONField(required=False, help_text=DEFINITION_HELP + " Replaces the draft.")


class JourneyVersionSerializer(serializers.ModelSerializer):
    published_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = JourneyVersion
        fields = ["number", "definition", "published_at", "published_by"]
        read_only_fields = fields


class JourneyEnrollmentSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(source="profile.external_id", allow_null=True, read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)

    class Meta:
        model = JourneyEnrollment
        fields = [
            "id",
            "profile",
            "external_id",
            "version",
            "step_key",
            "status",
            "wake_at",
            "entered_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields


class EnrollmentFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=JourneyEnrollment.Status.choices, required=False)
    step = serializers.CharField(required=False, max_length=64, help_text="Step key.")
    version = serializers.IntegerField(required=False, min_value=1, help_text="Version number.")


class JourneyEventInSerializer(serializers.Serializer):
    external_id = serializers.CharField(required=False, max_length=200, help_text="The profile's external id.")
    profile_id = IdField(required=False, help_text="Or the profile's id.")
    event = serializers.CharField(max_length=100, help_text="Event name, e.g. signed_up.")
    properties = serializers.DictField(
        required=False, validators=[storable_json], help_text="Anything about the event (at most 16 KB)."
    )


class EnrolledSerializer(serializers.Serializer):
    journey = serializers.IntegerField()
    name = serializers.CharField()


class JourneyEventOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.CharField()
    profile_id = serializers.IntegerField()
    received_at = serializers.DateTimeField()
    enrolled_in = EnrolledSerializer(many=True, help_text="Live journeys the profile entered on this event.")
