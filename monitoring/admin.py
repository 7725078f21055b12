"""Django admin for monitoring: alerts and worker heartbeats, written by the platform only (read-only here)."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from dap.admin import ReadOnlyAdmin
from monitoring.models import Alert, WorkerHeartbeat


class AlertStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["opened_at", "kind", "connector_link", "config_name", "state", "error_rate_display",
                    "resolved_at", "notified_at", "recovery_notified_at"]  # fmt: skip
    list_filter = [AlertStateFilter, "kind"]
    search_fields = ["partner_config__connector__name", "partner_config__name"]
    list_select_related = ["partner_config__connector"]
    date_hierarchy = "opened_at"

    @admin.display(description="connector", ordering="partner_config__connector__name")
    def connector_link(self, alert):
        connector = alert.partner_config.connector
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:connectors_connector_change", args=[connector.pk]), connector.name
        )

    @admin.display(description="configuration", ordering="partner_config__name")
    def config_name(self, alert):
        return alert.partner_config.name

    @admin.display(description="state")
    def state(self, alert):
        return "Open" if alert.is_open else "Resolved"

    @admin.display(description="error rate", ordering="error_rate")
    def error_rate_display(self, alert):
        return "—" if alert.error_rate is None else f"{alert.error_rate:.0%}"


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["host", "pid", "beat_at"]
    ordering = ["-beat_at"]
    search_fields = ["host"]
