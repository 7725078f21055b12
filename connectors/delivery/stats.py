"""DailyStat upsert-increment: one statement for many buckets, inside the caller's transaction."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.utils import timezone

from connectors.delivery.sql import table
from connectors.models import OUTCOME_CATEGORY, DailyStat, DailyTotal


@lru_cache(maxsize=4)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def stats_zone() -> ZoneInfo:
    """The time zone whose midnight starts a statistics day (DAP_STATS_TIME_ZONE)."""
    return _zone(settings.DAP_STATS_TIME_ZONE)


def stats_day(moment: datetime | None = None) -> date:
    """The statistics day a moment (default: now) falls on."""
    return timezone.localtime(moment or timezone.now(), stats_zone()).date()


def stats_increment(counts: Counter[tuple[int, date, str, str]]) -> None:
    """Add `counts[(partner_config_id, day, outcome, partner_error_code)]` to DailyStat, and their category sums to
    DailyTotal (two statements, in the caller's transaction)."""
    buckets = [(cid, day, outcome, code or "", n) for (cid, day, outcome, code), n in counts.items() if n]
    if not buckets:
        return
    _upsert_adding(DailyStat, ["partner_config_id", "day", "outcome", "partner_error_code"], ["count"], buckets)
    totals: dict[tuple[int, date], list[int]] = {}
    for cid, day, outcome, _code, n in buckets:
        row = totals.setdefault((cid, day), [0, 0, 0, 0])
        row[CATEGORY_INDEX[OUTCOME_CATEGORY[outcome]]] += n
    _upsert_adding(
        DailyTotal,
        ["partner_config_id", "day"],
        ["added", "removed", "skipped", "errors"],
        [(cid, day, *row) for (cid, day), row in totals.items()],
    )


def _upsert_adding(model, keys: list[str], counters: list[str], rows: list[tuple]) -> None:
    """One INSERT … ON CONFLICT (keys) DO UPDATE that adds each row's counters to the stored ones."""
    name = table(model)
    columns = [*keys, *counters]
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    updates = ", ".join(f"{c} = {name}.{c} + excluded.{c}" for c in counters)
    sql = (
        f"INSERT INTO {name} ({', '.join(columns)}) VALUES {', '.join([row_sql] * len(rows))} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [v for row in rows for v in row])


CATEGORY_INDEX = {"added": 0, "removed": 1, "skipped": 2, "errors": 3}


def daily_totals_rebuild(*, partner_config_ids=None) -> int:
    """Recompute DailyTotal from DailyStat (all configurations, or these): for a backfill, or after DailyStat rows
    were written by other means than stats_increment."""
    stat, total = table(DailyStat), table(DailyTotal)

    def when(category: str) -> str:
        outcomes = ", ".join(f"'{o}'" for o, c in OUTCOME_CATEGORY.items() if c == category)
        return f"SUM(CASE WHEN outcome IN ({outcomes}) THEN count ELSE 0 END)"

    where, params = "", []
    if partner_config_ids is not None:
        ids = list(partner_config_ids)
        if not ids:
            return 0
        where = f"WHERE partner_config_id IN ({', '.join(['%s'] * len(ids))})"
        params = ids
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {total} {where}", params)
        cursor.execute(
            f"INSERT INTO {total} (partner_config_id, day, added, removed, skipped, errors) "
            f"SELECT partner_config_id, day, {when('added')}, {when('removed')}, {when('skipped')}, {when('errors')} "
            f"FROM {stat} {where} GROUP BY partner_config_id, day",
            params,
        )
        return cursor.rowcount
