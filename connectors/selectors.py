"""Reads for connectors: lists with statistics, usages, history."""

from datetime import timedelta

from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from audiences.models import AudienceConnection
from connectors.delivery.stats import stats_day
from connectors.errors import Usage
from connectors.models import Connector, ConnectorEvent, DailyTotal, Delivery, DeliveryAttempt, PartnerConfig
from connectors.partners.base import Kind
from connectors.partners.registry import all_partners
from connectors.statistics import STATS_PERIODS, connector_stats, partner_config_stats, stats_overview
from journeys.models import Journey, JourneyActivationStep, JourneyVersion
from journeys.selectors import live_journeys_with_unpublished_changes


def _total_sum(days: int, column: str) -> Subquery:
    since = stats_day() - timedelta(days=days - 1)
    return Coalesce(
        Subquery(
            DailyTotal.objects.filter(partner_config__connector=OuterRef("pk"), day__gte=since)
            .order_by()
            .values("partner_config__connector")
            .annotate(total=Sum(column))
            .values("total")[:1],
            output_field=IntegerField(),
        ),
        Value(0),
    )


def server_to_server_connectors() -> QuerySet[Connector]:
    """Connectors of server-to-server partners (tag-based partners have snippets, not connectors)."""
    return Connector.objects.filter(partner_key__in=[p.key for p in all_partners(kind=Kind.SERVER_TO_SERVER)])


def connector_list(*, days: int = 7, search: str = "", status: str = "", totals: bool = True) -> QuerySet[Connector]:
    """Server-to-server connectors with their number of configurations (and paused ones) and, unless `totals` is
    false (the page takes them from the overview with its sparklines), last-`days` totals."""
    qs = server_to_server_connectors()
    if search:
        qs = qs.filter(name__icontains=search)
    if status:
        qs = qs.filter(status=status)
    qs = qs.annotate(
        config_count=Count("configs", distinct=True),
        paused_configs=Count("configs", filter=~Q(configs__health=PartnerConfig.Health.OK), distinct=True),
    ).order_by("name")
    if not totals:
        return qs
    return qs.annotate(
        added_total=_total_sum(days, "added"),
        removed_total=_total_sum(days, "removed"),
        skipped_total=_total_sum(days, "skipped"),
        error_total=_total_sum(days, "errors"),
    )


def partner_config_usages(*, config_ids) -> list[Usage]:
    """Every audience connection and journey activation step that uses one of these configurations."""
    usages: list[Usage] = []
    connections = (
        AudienceConnection.objects.filter(partner_config_id__in=config_ids)
        .select_related("audience", "partner_config")
        .order_by("audience__name", "id")
    )
    for c in connections:
        usages.append(
            Usage(
                kind="audience",
                object_id=c.audience_id,
                name=c.audience.name,
                partner_config_id=c.partner_config_id,
                partner_config_name=c.partner_config.name,
                detail=", ".join(
                    part
                    for part in (
                        f"partner audience {c.partner_audience_id}" if c.partner_audience_id else "",
                        "removing its members" if c.removing_since else "",
                    )
                    if part
                ),
            )
        )
    latest = JourneyVersion.objects.filter(journey=OuterRef("journey_id")).order_by("-number").values("number")[:1]
    steps = (
        JourneyActivationStep.objects.filter(partner_config_id__in=config_ids)
        .select_related("journey", "partner_config", "version")
        .annotate(latest_number=Subquery(latest))
        .order_by("journey__name", F("version__number").desc(nulls_first=True), "step_key")
    )
    for s in steps:
        if s.version_id is None:
            where = "draft"
        elif s.version.number == s.latest_number:
            where = "published version"
        else:
            where = f"earlier version {s.version.number}"
        usages.append(
            Usage(
                kind="journey",
                object_id=s.journey_id,
                name=s.journey.name,
                partner_config_id=s.partner_config_id,
                partner_config_name=s.partner_config.name,
                detail=f"step {s.label or s.step_key}, {where}, journey {s.journey.get_status_display().lower()}",
            )
        )
    return usages


def connector_usages(*, connector: Connector) -> list[Usage]:
    return partner_config_usages(config_ids=connector.configs.values("id"))


def connector_live_journeys_with_unpublished_changes(*, connector: Connector) -> list[Journey]:
    """Live journeys that reference the connector (in their draft or any published version) and have a draft that
    differs from the published version."""
    return list(live_journeys_with_unpublished_changes(config_filter=Q(partner_config__connector=connector)))


def connector_history(*, connector: Connector, limit: int = 50) -> QuerySet[ConnectorEvent]:
    return ConnectorEvent.objects.filter(connector=connector).select_related("actor")[:limit]


# Delivery filters (API list and replay): validated filter name -> ORM lookup.
DELIVERY_FILTERS = {
    "connector": "partner_config__connector_id",
    "partner_config": "partner_config_id",
    "status": "status",
    "outcome": "outcome",
    "date_from": "created_at__date__gte",
    "date_to": "created_at__date__lte",
    "ids": "pk__in",
}


def attempt_filter(queryset, filters: dict):
    """Narrow partner calls by validated filters (all combined with AND)."""
    if filters.get("connector"):
        queryset = queryset.filter(partner_config__connector_id=filters["connector"])
    if filters.get("partner_config"):
        queryset = queryset.filter(partner_config_id=filters["partner_config"])
    if filters.get("outcome"):
        queryset = queryset.filter(outcome=filters["outcome"])
    if filters.get("errors_only"):
        queryset = queryset.filter(Q(error_count__gt=0) | Q(retry_count__gt=0))
    return queryset


def connector_attempts(*, connector: Connector, filters: dict | None = None, limit: int = 50):
    """The connector's most recent partner calls (snippets are redacted when written), newest first."""
    queryset = DeliveryAttempt.objects.filter(partner_config__connector=connector).select_related("partner_config")
    return list(attempt_filter(queryset, filters or {}).order_by("-at", "-id")[:limit])


def connector_failed_deliveries(*, connector: Connector, filters: dict | None = None, limit: int = 50):
    """The connector's failed deliveries (replayable), most recently finished first, and how many match."""
    filters = {k: v for k, v in (filters or {}).items() if k in ("partner_config", "outcome")}
    queryset = delivery_filter(
        Delivery.objects.filter(partner_config__connector=connector, status=Delivery.Status.FAILED), filters
    )
    rows = list(queryset.select_related("partner_config").order_by("-finished_at", "-id")[:limit])
    return rows, queryset.count()


def connector_health(*, connector: Connector, configs) -> dict:
    """The connector's state at a glance: deactivated, paused configurations, or healthy."""
    paused = [c for c in configs if c.health != PartnerConfig.Health.OK]
    if not connector.is_active:
        state, label = "deactivated", "Deactivated: nothing is sent"
    elif paused:
        state = "paused"
        label = "; ".join(f"{c.name}: {c.get_health_display()}" for c in paused)
    else:
        state, label = "ok", "Healthy: sending"
    return {"state": state, "label": label, "paused": paused}


def delivery_filter(queryset, filters: dict):
    """Narrow deliveries by validated filters (all combined with AND)."""
    return queryset.filter(
        **{DELIVERY_FILTERS[name]: value for name, value in filters.items() if name in DELIVERY_FILTERS}
    )


__all__ = [
    "connector_list",
    "STATS_PERIODS",
    "connector_stats",
    "partner_config_stats",
    "stats_overview",
    "server_to_server_connectors",
    "connector_usages",
    "partner_config_usages",
    "connector_live_journeys_with_unpublished_changes",
    "connector_history",
    "delivery_filter",
]
