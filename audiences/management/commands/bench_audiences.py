"""Benchmark of the audience engine: rule evaluation, membership diff and outbox enqueue for N profiles.

    python manage.py bench_audiences --profiles 1000000

Setup (not timed): N profiles with attributes, written set-based (COPY on PostgreSQL, INSERT … SELECT from a
recursive CTE on SQLite), then ANALYZE as autovacuum would; a rule-based audience connected to one webhook
configuration pointing at 127.0.0.1 (nothing is sent: no worker runs and the kick is off). Timed: the first refresh
(60 % of N enter), then — after 10 % of the profiles changed attributes (not timed) — a second refresh (4 % of N
enter, 6 % exit). Prints one JSON line. Uses whatever DATABASE_URL says; deletes its rows afterwards unless --keep.
"""

# ruff: noqa: S608 - only table names and placeholders are formatted into SQL

import json
import resource
import time
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from audiences import services
from audiences.models import Audience, AudienceConnection, AudienceMembership, AudienceMembershipChange, Profile
from connectors import services as connector_services
from connectors.delivery.sql import is_postgres, table
from connectors.models import Connector, Delivery

WEBHOOK_SECRET = "whsec_YmVuY2gtc2lnbmluZy1zZWNyZXQtZm9yLXRoZS1zYW5kYm94"
COUNTRIES = ("NL", "BE", "DE", "FR", "ES")
# 60 % of the profiles match: country in NL/BE/DE (3 of 5), and every one of them has an order or the vip tag.
RULE = {
    "all": [
        {"attribute": "country", "op": "in", "value": ["NL", "BE", "DE"]},
        {
            "any": [
                {"attribute": "orders", "op": "gte", "value": 1},
                {"attribute": "tags", "op": "contains", "value": "vip"},
            ]
        },
    ]
}
COPY_CHUNK = 50_000


def attributes(k: int) -> str:
    """Profile k's attributes (k counted from 0): the country cycles through 5; orders 0 come with the vip tag."""
    orders = (k // 5) % 10
    tags = '["vip", "newsletter"]' if orders == 0 else '["newsletter"]'
    return (
        f'{{"country": "{COUNTRIES[k % 5]}", "orders": {orders}, "tags": {tags}, '
        f'"last_order_at": "2026-0{1 + k % 9}-1{k % 10}", "score": {k % 100}}}'
    )


def changed(k: int) -> bool:
    """The 10 % whose attributes change: 5 consecutive profiles in every 50 (all five countries)."""
    return (k // 5) % 10 == 0


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Command(BaseCommand):
    help = "Audience refresh benchmark: rule evaluation, diff and outbox enqueue (prints one JSON line)."

    def add_arguments(self, parser):
        parser.add_argument("--profiles", type=int, required=True)
        parser.add_argument("--keep", action="store_true", help="keep the benchmark's rows afterwards")

    def handle(self, *args, profiles: int, keep: bool = False, **options):
        if profiles < 10:
            raise CommandError("--profiles must be at least 10")
        settings.DAP_KICK_ON_COMMIT = False  # nothing is dispatched: the benchmark stops at the outbox
        settings.DEBUG = False
        run = uuid.uuid4().hex[:8]
        t = time.monotonic()
        connector, audience, first = self._setup(run, profiles)
        setup_seconds = time.monotonic() - t
        try:
            refreshes = [self._refresh(audience, profiles)]
            t = time.monotonic()
            self._change(first, profiles)
            change_seconds = time.monotonic() - t
            refreshes.append(self._refresh(audience, profiles))
        finally:
            if not keep:
                self._cleanup(connector, audience, first, profiles)
        seconds = sum(r["seconds"] for r in refreshes)
        result = {
            "profiles": profiles,
            "database": connection.vendor,
            "seconds": round(seconds, 3),
            # Conservative: the profiles once over both refreshes' time (each refresh evaluates all of them).
            "profiles_per_s": round(profiles / seconds, 1),
            "profiles_evaluated_per_s": round(profiles * len(refreshes) / seconds, 1),
            "peak_rss_mb": rss_mb(),
            "refreshes": refreshes,
            "setup_seconds": round(setup_seconds, 3),
            "change_seconds": round(change_seconds, 3),
            "rule": RULE,
        }
        self.stdout.write(json.dumps(result))

    # ----------------------------------------------------------------------------------------------------------------
    def _setup(self, run: str, n: int):
        connector = connector_services.connector_create(
            partner_key="webhook",
            name=f"bench audiences {run}",
            settings={"endpoint_url": "http://127.0.0.1:9/bench", "signing_secret": WEBHOOK_SECRET},
        )
        audience = services.audience_create(name=f"bench {run}", rule=RULE)
        AudienceConnection.objects.create(
            audience=audience, partner_config=connector.configs.get(), partner_audience_id="bench"
        )
        name = table(Profile)
        now = timezone.now()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {name}")
            first = cursor.fetchone()[0] + 1
            if is_postgres():
                with cursor.cursor.copy(
                    f"COPY {name} (id, external_id, attributes, consent_ads, created_at, updated_at) FROM STDIN"
                ) as copy:
                    for k in range(n):  # streamed: never the whole list in memory
                        copy.write_row((first + k, f"bench-{run}-{k}", attributes(k), True, now, now))
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), %s)", [first + n - 1])
            else:
                stamp = connection.ops.adapt_datetimefield_value(now)
                cursor.execute(
                    f"WITH RECURSIVE s(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM s WHERE k + 1 < %s) "
                    f"INSERT INTO {name} (id, external_id, attributes, consent_ads, created_at, updated_at) "
                    f"SELECT %s + k, %s || k, json_object('country', "
                    f"CASE k %% 5 WHEN 0 THEN 'NL' WHEN 1 THEN 'BE' WHEN 2 THEN 'DE' WHEN 3 THEN 'FR' ELSE 'ES' END, "
                    f"'orders', (k / 5) %% 10, 'tags', CASE WHEN (k / 5) %% 10 = 0 "
                    f"THEN json_array('vip', 'newsletter') ELSE json_array('newsletter') END, "
                    f"'last_order_at', '2026-0' || (1 + k %% 9) || '-1' || (k %% 10), 'score', k %% 100), 1, %s, %s "
                    f"FROM s",
                    [n, first, f"bench-{run}-", stamp, stamp],
                )
        self._analyze()
        return connector, audience, first

    def _analyze(self):
        with connection.cursor() as cursor:
            if is_postgres():
                for model in (Profile, AudienceMembership, Delivery):
                    cursor.execute(f"VACUUM ANALYZE {table(model)}")
            else:
                cursor.execute("ANALYZE")

    def _refresh(self, audience: Audience, n: int) -> dict:
        audience.refresh_from_db()
        t = time.monotonic()
        result = services.audience_refresh(audience=audience)
        seconds = time.monotonic() - t
        return {
            "enters": result.enters,
            "exits": result.exits,
            "size": result.size,
            "outbox_rows": result.outbox.rows,
            "outbox_replaced": result.outbox.replaced,
            "seconds": round(seconds, 3),
            "profiles_per_s": round(n / seconds, 1),
            "phases": {**result.timings, "commit": round(seconds - result.seconds, 3)},
            "peak_rss_mb": rss_mb(),
        }

    def _change(self, first: int, n: int) -> None:
        """10 % of the profiles change country: the matching ones to FR (they exit), the others to NL (they enter).
        One set-based UPDATE, then ANALYZE as autovacuum would between two scheduled refreshes."""
        name = table(Profile)
        where = "id BETWEEN %s AND %s AND ((id - %s) / 5) %% 10 = 0"
        with transaction.atomic(), connection.cursor() as cursor:
            if is_postgres():
                cursor.execute(
                    f"UPDATE {name} SET attributes = jsonb_set(attributes, '{{country}}', CASE WHEN "
                    f"attributes->>'country' IN ('NL', 'BE', 'DE') THEN '\"FR\"'::jsonb ELSE '\"NL\"'::jsonb END) "
                    f"WHERE {where}",
                    [first, first + n - 1, first],
                )
            else:
                cursor.execute(
                    f"UPDATE {name} SET attributes = json_set(attributes, '$.country', CASE WHEN "
                    f"json_extract(attributes, '$.country') IN ('NL', 'BE', 'DE') THEN 'FR' ELSE 'NL' END) "
                    f"WHERE {where}",
                    [first, first + n - 1, first],
                )
        self._analyze()

    def _cleanup(self, connector: Connector, audience: Audience, first: int, n: int) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table(Delivery)} WHERE audience_id = %s", [audience.pk])
            for model in (AudienceMembership, AudienceMembershipChange):
                cursor.execute(f"DELETE FROM {table(model)} WHERE audience_id = %s", [audience.pk])
            AudienceConnection.objects.filter(audience=audience).delete()
            audience.delete()
            cursor.execute(f"DELETE FROM {table(Profile)} WHERE id BETWEEN %s AND %s", [first, first + n - 1])
            connector.delete()
