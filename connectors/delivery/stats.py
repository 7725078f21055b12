"""DailyStat upsert-increment: one statement for many buckets, inside the caller's transaction."""

from __future__ import annotations

from collections import Counter
from datetime import date

from django.db import connection

from connectors.delivery.sql import table
from connectors.models import DailyStat


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
