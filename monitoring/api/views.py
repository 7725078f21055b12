from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets

from dap.api_filters import FilteredListMixin
from monitoring import selectors
from monitoring.api.serializers import AlertFilterSerializer, AlertSerializer
from monitoring.models import Alert


@extend_schema_view(
    list=extend_schema(
        summary="Alerts on partner configurations (credentials invalid, endpoint gone, error rate), newest first",
        parameters=[AlertFilterSerializer],
    ),
    retrieve=extend_schema(summary="One alert"),
)
class AlertViewSet(FilteredListMixin, viewsets.ReadOnlyModelViewSet):
    """Read-only: alerts are opened and resolved by the platform (docs/alerts.md)."""

    queryset = Alert.objects.all()  # for the model permissions; reads go through the selectors
    serializer_class = AlertSerializer
    filter_serializer_class = AlertFilterSerializer

    def get_queryset(self):
        if self.action != "list":
            return selectors.alert_list({"state": "all"})
        return super().get_queryset()

    def filter_list(self, queryset, filters):
        return selectors.alert_list(filters)
