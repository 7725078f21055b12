"""Reads of alerts for the pages and the API."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from monitoring.models import Alert

STATES = ("open", "resolved", "all")


def _alerts() -> QuerySet[Alert]:
    return Alert.objects.select_related("partner_config__connector").order_by("-opened_at", "-id")


def open_alerts(*, connector_ids: Iterable[int] | None = None) -> QuerySet[Alert]:
    """Open alerts, newest first, with their configuration and connector (for the banner of the pages): all of them,
    or those of these connectors."""
    alerts = _alerts().filter(resolved_at__isnull=True)
    if connector_ids is not None:
        alerts = alerts.filter(partner_config__connector_id__in=list(connector_ids))
    return alerts


def alert_list(filters: dict) -> QuerySet[Alert]:
    """Alerts narrowed by validated filters (AND): state open/resolved/all (default all), connector, partner_config,
    kind."""
    alerts = _alerts()
    state = filters.get("state") or "all"
    if state == "open":
        alerts = alerts.filter(resolved_at__isnull=True)
    elif state == "resolved":
        alerts = alerts.filter(resolved_at__isnull=False)
    if filters.get("connector") is not None:
        alerts = alerts.filter(partner_config__connector_id=filters["connector"])
    if filters.get("partner_config") is not None:
        alerts = alerts.filter(partner_config_id=filters["partner_config"])
    if filters.get("kind"):
        alerts = alerts.filter(kind=filters["kind"])
    return alerts
