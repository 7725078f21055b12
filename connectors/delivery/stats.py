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
from connectors.models import DailyStat


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
    """Add `counts[(partner_config_id, day, outcome, partner_error_code)]` to DailyStat."""
    buckets = [(cid, day, outcome, code or "", n) for (cid, day, outcome, code), n in counts.items() if n]
    if not buckets:
        return
    name = table(DailyStat)
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(buckets))
    sql = (
        f"INSERT INTO {name} (partner_config_id, day, outcome, partner_error_code, count) VALUES {values} "
        f"ON CONFLICT (partner_config_id, day, outcome, partner_error_code) "
        f"DO UPDATE SET count = {name}.count + excluded.count"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [v for bucket in buckets for v in bucket])
