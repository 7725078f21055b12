from rest_framework import serializers

from dap.api_input import IdField
from monitoring.models import Alert
from monitoring.selectors import STATES


class AlertSerializer(serializers.ModelSerializer):
    kind_label = serializers.CharField(source="get_kind_display", read_only=True)
    state = serializers.SerializerMethodField(help_text="open or resolved")
    connector_id = serializers.IntegerField(source="partner_config.connector_id", read_only=True)
    connector = serializers.CharField(source="partner_config.connector.name", read_only=True)
    partner = serializers.CharField(source="partner_config.connector.partner_name", read_only=True)
    partner_config_id = serializers.IntegerField(read_only=True)
    partner_config = serializers.CharField(source="partner_config.name", read_only=True)
    error_rate = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Failed fraction (0..1) over the last hour when it opened."
    )

    class Meta:
        model = Alert
        fields = [
            "id",
            "kind",
            "kind_label",
            "state",
            "connector_id",
            "connector",
            "partner",
            "partner_config_id",
            "partner_config",
            "detail",
            "error_rate",
            "opened_at",
            "resolved_at",
            "notified_at",
            "recovery_notified_at",
        ]
        read_only_fields = fields

    def get_state(self, alert: Alert) -> str:
        return "open" if alert.is_open else "resolved"


class AlertFilterSerializer(serializers.Serializer):
    """Filters of the alert list (all optional, combined with AND)."""

    state = serializers.ChoiceField(
        choices=STATES, required=False, default="all", help_text="open, resolved or all (the default)."
    )
    connector = IdField(required=False, help_text="Connector id.")
    partner_config = IdField(required=False, help_text="Configuration id.")
    kind = serializers.ChoiceField(choices=Alert.Kind.choices, required=False)
