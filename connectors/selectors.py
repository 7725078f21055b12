"""Reads for connectors: lists with statistics, usages, history."""

from datetime import timedelta

from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from audiences.models import AudienceConnection
from connectors.errors import Usage
from connectors.models import ERROR_OUTCOMES, SKIPPED_OUTCOMES, Connector, ConnectorEvent, DailyStat, Outcome
from connectors.partners.base import Kind
from connectors.partners.registry import all_partners
from journeys.models import Journey, JourneyActivationStep, JourneyVersion
from journeys.selectors import live_journeys_with_unpublished_changes


def _stat_sum(days: int, outcomes) -> Subquery:
    since = timezone.now().date() - timedelta(days=days - 1)
    return Coalesce(
        Subquery(
            DailyStat.objects.filter(
                partner_config__connector=OuterRef("pk"), day__gte=since, outcome__in=list(outcomes)
            )
            .order_by()
            .values("partner_config__connector")
            .annotate(total=Sum("count"))
            .values("total")[:1],
            output_field=IntegerField(),
        ),
        Value(0),
    )


def connector_list(*, days: int = 7, search: str = "", status: str = "") -> QuerySet[Connector]:
    """Server-to-server connectors with their number of configurations and last-`days` totals."""
    s2s_keys = [p.key for p in all_partners(kind=Kind.SERVER_TO_SERVER)]
    qs = Connector.objects.filter(partner_key__in=s2s_keys)
    if search:
        qs = qs.filter(name__icontains=search)
    if status:
        qs = qs.filter(status=status)
    return qs.annotate(
        config_count=Count("configs", distinct=True),
        added_total=_stat_sum(days, [Outcome.ADDED]),
        removed_total=_stat_sum(days, [Outcome.REMOVED]),
        skipped_total=_stat_sum(days, SKIPPED_OUTCOMES),
        error_total=_stat_sum(days, ERROR_OUTCOMES),
    ).order_by("name")


# The periods statistics are shown for (days).
STATS_PERIODS = (7, 30, 90)


def connector_stats(*, connector: Connector, days: int = 7) -> dict:
    """Totals per outcome over the last `days` days, per day, and the partner error codes with what they mean and
    where the partner documents them."""
    since = timezone.now().date() - timedelta(days=days - 1)
    rows = (
        DailyStat.objects.filter(partner_config__connector=connector, day__gte=since)
        .values("day", "outcome", "partner_error_code")
        .annotate(total=Sum("count"))
        .order_by("day", "outcome", "partner_error_code")
    )
    by_outcome = {o.value: 0 for o in Outcome}
    by_day: dict = {}
    partner_codes: dict[tuple[str, str], int] = {}
    for row in rows:
        by_outcome[row["outcome"]] += row["total"]
        day = by_day.setdefault(row["day"], {o.value: 0 for o in Outcome})
        day[row["outcome"]] += row["total"]
        if row["partner_error_code"]:
            key = (row["outcome"], row["partner_error_code"])
            partner_codes[key] = partner_codes.get(key, 0) + row["total"]
    return {
        "days": days,
        "since": since,
        "by_outcome": by_outcome,
        "by_day": [{"day": day, "outcomes": counts} for day, counts in by_day.items()],
        "partner_errors": partner_error_rows(connector.partner_key, partner_codes),
    }


def partner_error_rows(partner_key: str, counts: dict[tuple[str, str], int]) -> list[dict]:
    """Each (outcome, error code) with its count, its meaning (from the partner's client) and the partner's error
    documentation, most frequent first."""
    from connectors.delivery.client import PartnerClient, client_class
    from connectors.partners.registry import REGISTRY

    cls = client_class(partner_key) or PartnerClient
    partner = REGISTRY.get(partner_key)
    docs_url = partner.error_docs_url if partner else ""
    labels = dict(Outcome.choices)
    return [
        {
            "outcome": outcome,
            "outcome_label": labels.get(outcome, outcome),
            "code": code,
            "count": n,
            "meaning": cls.error_meaning(code),
            "docs_url": docs_url,
        }
        for (outcome, code), n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


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


def delivery_filter(queryset, filters: dict):
    """Narrow deliveries by validated filters (all combined with AND)."""
    return queryset.filter(
        **{DELIVERY_FILTERS[name]: value for name, value in filters.items() if name in DELIVERY_FILTERS}
    )


__all__ = [
    "connector_list",
    "connector_stats",
    "connector_usages",
    "partner_config_usages",
    "connector_live_journeys_with_unpublished_changes",
    "connector_history",
    "delivery_filter",
]
