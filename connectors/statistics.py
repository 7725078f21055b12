"""Reads of the delivery statistics, from DailyStat only: daily series per outcome and per partner error code with
totals, for one connector, one configuration, or every connector at once (the overview).

Days are statistics days (midnight in DAP_STATS_TIME_ZONE, the zone DailyStat rows are written in); a period is the
last `days` days ending today, every day present, days without traffic as zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet, Sum

from connectors.delivery.sql import is_postgres, table
from connectors.delivery.stats import stats_day
from connectors.models import OUTCOME_CATEGORY, Connector, DailyStat, DailyTotal, Outcome, PartnerConfig

# The periods statistics are shown for (days).
STATS_PERIODS = (7, 30, 90)

CATEGORIES = ("added", "removed", "skipped", "errors")
OUTCOMES = tuple(Outcome.values)


class InvalidPeriod(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Period:
    days: int
    since: date
    until: date

    @property
    def dates(self) -> list[date]:
        return [self.since + timedelta(days=i) for i in range(self.days)]

    def index(self, day: date) -> int:
        return (day - self.since).days


def stats_period(days) -> Period:
    """The last `days` statistics days ending today; `days` must be one of STATS_PERIODS (int or digit string)."""
    if isinstance(days, str):
        days = int(days) if days.isdigit() else None
    if days not in STATS_PERIODS:
        allowed = ", ".join(str(d) for d in STATS_PERIODS)
        raise InvalidPeriod(f"Choose one of: {allowed}.")
    until = stats_day()
    return Period(days=days, since=until - timedelta(days=days - 1), until=until)


def _period_fields(period: Period) -> dict:
    return {
        "days": period.days,
        "since": period.since,
        "until": period.until,
        "time_zone": settings.DAP_STATS_TIME_ZONE,
        "dates": period.dates,
    }


def _category_totals(by_outcome: dict[str, int]) -> dict[str, int]:
    totals = dict.fromkeys(CATEGORIES, 0)
    for outcome, n in by_outcome.items():
        totals[OUTCOME_CATEGORY[outcome]] += n
    return totals


def _series_stats(rows: QuerySet, period: Period, partner_key: str) -> dict:
    """Daily series per outcome and per (outcome, partner code) from rows of (day, outcome, code, total)."""
    n = period.days
    series = {o: [0] * n for o in OUTCOMES}
    code_series: dict[tuple[str, str], list[int]] = {}
    for day, outcome, code, total in rows.values_list("day", "outcome", "partner_error_code", "total"):
        i = period.index(day)
        if not 0 <= i < n or outcome not in series:
            continue
        series[outcome][i] += total
        if code:
            code_series.setdefault((outcome, code), [0] * n)[i] += total
    by_outcome = {o: sum(values) for o, values in series.items()}
    errors = partner_error_rows(partner_key, {key: sum(values) for key, values in code_series.items()})
    for row in errors:
        row["series"] = code_series[(row["outcome"], row["code"])]
    dates = period.dates
    return {
        **_period_fields(period),
        "totals": _category_totals(by_outcome),
        "by_outcome": by_outcome,
        "series": series,
        "by_day": [{"day": day, "outcomes": {o: series[o][i] for o in OUTCOMES}} for i, day in enumerate(dates)],
        "partner_errors": errors,
    }


def _daily_rows(period: Period, **filters) -> QuerySet:
    return (
        DailyStat.objects.filter(day__gte=period.since, day__lte=period.until, **filters)
        .values("day", "outcome", "partner_error_code")
        .annotate(total=Sum("count"))
        .order_by()
    )


def connector_stats(*, connector: Connector, days=7) -> dict:
    """One connector (all its configurations): daily series per outcome and per partner error code, totals per
    outcome and per category, and each partner error code with its meaning and the partner's documentation."""
    period = stats_period(days)
    return _series_stats(_daily_rows(period, partner_config__connector=connector), period, connector.partner_key)


def partner_config_stats(*, partner_config: PartnerConfig, days=7) -> dict:
    """The same as connector_stats, for one configuration."""
    period = stats_period(days)
    stats = _series_stats(
        _daily_rows(period, partner_config=partner_config), period, partner_config.connector.partner_key
    )
    return {"partner_config_id": partner_config.pk, **stats}


def stats_overview(*, days=7, connectors: QuerySet[Connector] | None = None) -> dict:
    """Every server-to-server connector (or those of `connectors`) over the period: totals and a daily series per
    category (what the list's sparklines draw), plus the grand totals and series. Reads DailyTotal (one row per
    configuration and day, DailyStat summed per category): three queries whatever the number of connectors."""
    from connectors.selectors import server_to_server_connectors

    period = stats_period(days)
    if connectors is None:
        connectors = server_to_server_connectors()
    connectors = list(connectors.order_by("name").values_list("id", "name", "partner_key", "status"))
    config_connector = dict(
        PartnerConfig.objects.filter(connector_id__in=[c[0] for c in connectors]).values_list("id", "connector_id")
    )
    n = period.days
    series = {cid: ([0] * n, [0] * n, [0] * n, [0] * n) for cid, *_ in connectors}
    # The hot loop of the overview (18,000 rows for 200 connectors over 90 days): unrolled, no per-row allocation.
    for config_id, i, added, removed, skipped, errors in _daily_totals(period, list(config_connector)):
        target = series.get(config_connector.get(config_id))
        if target is not None and 0 <= i < n:
            target[0][i] += added
            target[1][i] += removed
            target[2][i] += skipped
            target[3][i] += errors
    partner_names = _partner_names()
    listed = []
    for cid, name, partner_key, status in connectors:
        own = series[cid]
        listed.append(
            {
                "id": cid,
                "name": name,
                "partner": partner_key,
                "partner_name": partner_names.get(partner_key, partner_key),
                "status": status,
                "totals": {k: sum(v) for k, v in zip(CATEGORIES, own, strict=True)},
                "series": dict(zip(CATEGORIES, own, strict=True)),
            }
        )
    # Per category, the connectors' series summed day by day.
    grand = []
    for k in range(len(CATEGORIES)):
        columns = [series[cid][k] for cid, *_ in connectors]
        grand.append([sum(day) for day in zip(*columns, strict=True)] if columns else [0] * n)
    return {
        **_period_fields(period),
        "totals": {k: sum(v) for k, v in zip(CATEGORIES, grand, strict=True)},
        "series": dict(zip(CATEGORIES, grand, strict=True)),
        "connectors": listed,
    }


def _daily_totals(period: Period, config_ids: list[int]):
    """(configuration id, day index in the period, added, removed, skipped, errors) of the period's DailyTotal rows.
    The day index is computed by the database: 18,000 rows (200 connectors, 90 days) skip 18,000 date parses."""
    name = table(DailyTotal)
    if is_postgres():
        index = "(day - %s::date)"
    else:
        index = "CAST(julianday(day) - julianday(%s) AS INTEGER)"
    # Only the quoted table name and a fixed expression are formatted in; values are parameters.
    columns = f"partner_config_id, {index}, added, removed, skipped, errors"
    sql = f"SELECT {columns} FROM {name} WHERE day >= %s AND day <= %s"  # noqa: S608
    params = [period.since, period.since, period.until]
    if len(config_ids) <= 1000:
        if not config_ids:
            return []
        sql += f" AND partner_config_id IN ({', '.join(['%s'] * len(config_ids))})"
        params += config_ids
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _partner_names() -> dict[str, str]:
    from connectors.partners.registry import REGISTRY

    return {key: partner.name for key, partner in REGISTRY.items()}


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
