"""Benchmark: a year of DailyStat rows for N connectors, then the server-side time of the statistics reads: one
connector's 90 days (API), the overview of every connector (API, 90 and 7 days) and the connector list page.
Prints one JSON line. Uses whatever DATABASE_URL says; the benchmark's rows are removed afterwards (--keep keeps
them).

    python manage.py bench_stats --connectors 200
"""

import gc
import json
import os
import random
import statistics
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from connectors.delivery.sql import bulk_insert, is_postgres, table
from connectors.delivery.stats import daily_totals_rebuild, stats_day
from connectors.models import Connector, DailyStat, DailyTotal, PartnerConfig
from connectors.statistics import connector_stats, stats_overview

# A day of one configuration: (outcome, code, typical count). Error rows appear on some days only.
DAY_ROWS = [
    ("added", "", 5000),
    ("removed", "", 800),
    ("skipped_no_identifier", "", 40),
    ("skipped_no_consent", "", 12),
]
ERROR_ROWS = [
    ("partner_error", "2650", 6),
    ("partner_error", "100/33", 3),
    ("timeout", "timeout", 4),
    ("other_error", "invalid_identifier", 2),
    ("invalid_credentials", "190", 20),
]
PARTNERS = ["meta_custom_audiences", "webhook", "google_dv360", "xandr", "the_trade_desk"]


def _timed(fn, runs: int) -> dict:
    for _ in range(3):  # warm caches and connections
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 2),
        "max_ms": round(times[-1], 2),
    }


class Command(BaseCommand):
    help = "Time the statistics reads over a year of DailyStat rows for N connectors; prints one JSON line."

    def add_arguments(self, parser):
        parser.add_argument("--connectors", type=int, default=200)
        parser.add_argument("--days", type=int, default=365, help="Days of history (default a year).")
        parser.add_argument("--runs", type=int, default=30, help="Timed requests per measurement.")
        parser.add_argument("--keep", action="store_true", help="Keep the benchmark's connectors and rows.")

    def handle(self, *args, connectors, days, runs, keep, **options):
        if not 1 <= connectors <= 5000:
            raise CommandError("--connectors must be between 1 and 5000")
        if not 90 <= days <= 3650:
            raise CommandError("--days must be between 90 and 3650 (the longest period read is 90 days)")
        if runs < 1:
            raise CommandError("--runs must be at least 1")
        run = uuid.uuid4().hex[:8]
        start = time.perf_counter()
        ids, rows = self._setup(run, connectors, days)
        setup_seconds = time.perf_counter() - start
        try:
            result = self._measure(ids, runs)
        finally:
            if not keep:
                self._cleanup(ids)
        line = {
            "connectors": connectors,
            "days_of_history": days,
            "dailystat_rows": rows,
            "database": "postgresql" if is_postgres() else "sqlite",
            "cores": os.cpu_count(),
            "runs": runs,
            **result,
            "setup_seconds": round(setup_seconds, 2),
        }
        self.stdout.write(json.dumps(line))

    def _setup(self, run: str, n: int, days: int) -> tuple[list[int], int]:
        rng = random.Random(run)
        now = timezone.now()
        today = stats_day()
        with transaction.atomic():
            connectors = Connector.objects.bulk_create(
                [
                    Connector(partner_key=PARTNERS[i % len(PARTNERS)], name=f"bench-stats {run} {i:04d}")
                    for i in range(n)
                ]
            )
            configs = PartnerConfig.objects.bulk_create(
                [PartnerConfig(connector=c, name="Default", created_at=now, updated_at=now) for c in connectors]
            )

            def rows():
                for config in configs:
                    for back in range(days):
                        day = today - timedelta(days=back)
                        for outcome, code, typical in DAY_ROWS:
                            yield (config.pk, day, outcome, code, rng.randint(typical // 2, typical * 2))
                        for outcome, code, typical in ERROR_ROWS:
                            if rng.random() < 0.3:
                                yield (config.pk, day, outcome, code, rng.randint(1, typical))

            columns = ["partner_config_id", "day", "outcome", "partner_error_code", "count"]
            count = bulk_insert(DailyStat, columns, rows())
            # Written in bulk here rather than through stats_increment: derive the per-day category sums the same
            # way the migration backfills them.
            daily_totals_rebuild(partner_config_ids=[c.pk for c in configs])
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table(DailyStat)}")
            cursor.execute(f"ANALYZE {table(DailyTotal)}")
        return [c.pk for c in connectors], count

    def _measure(self, ids: list[int], runs: int) -> dict:
        user, _ = get_user_model().objects.get_or_create(
            username="bench-stats", defaults={"is_superuser": True, "is_staff": True}
        )
        if not user.is_superuser:
            raise CommandError('the user "bench-stats" exists and is not a superuser')
        client = Client(HTTP_HOST=(settings.ALLOWED_HOSTS or ["localhost"])[0].lstrip(".") or "localhost")
        client.force_login(user)
        one = ids[len(ids) // 2]
        subset = Connector.objects.filter(pk__in=ids)

        def get(url: str):
            def call():
                response = client.get(url)
                if response.status_code != 200:
                    raise CommandError(f"{url} answered {response.status_code}")

            return call

        connector = Connector.objects.get(pk=one)
        self._check(subset, connector)
        # As dap/wsgi.py does once the application is loaded: the long-lived objects leave the garbage collector's
        # generations, so a full collection inside a timed request does not walk them.
        gc.collect()
        gc.freeze()
        return {
            "connector_90d_api": _timed(get(f"/api/v1/connectors/{one}/stats/?days=90"), runs),
            "overview_90d_api": _timed(get("/api/v1/connectors/stats/?days=90"), runs),
            "overview_7d_api": _timed(get("/api/v1/connectors/stats/?days=7"), runs),
            "connector_page_90d": _timed(get(f"/connectors/{one}/?days=90"), runs),
            "connector_list_page": _timed(get("/connectors/"), runs),
            "connector_90d_selector": _timed(lambda: connector_stats(connector=connector, days=90), runs),
            "overview_90d_selector": _timed(lambda: stats_overview(days=90, connectors=subset), runs),
        }

    def _check(self, subset, connector) -> None:
        """What is timed answers with the data: the overview adds up to DailyStat itself."""
        overview = stats_overview(days=90, connectors=subset)
        since = overview["since"]
        expected = DailyStat.objects.filter(partner_config__connector__in=subset, day__gte=since).aggregate(
            n=Sum("count")
        )["n"]
        got = sum(overview["totals"].values())
        if not expected or got != expected:
            raise CommandError(f"the overview counts {got} profiles, DailyStat {expected}")
        if sum(connector_stats(connector=connector, days=90)["totals"].values()) == 0:
            raise CommandError("the measured connector has no statistics")

    def _cleanup(self, ids: list[int]) -> None:
        with transaction.atomic():
            DailyStat.objects.filter(partner_config__connector_id__in=ids).delete()
            DailyTotal.objects.filter(partner_config__connector_id__in=ids).delete()
            Connector.objects.filter(pk__in=ids).delete()
        get_user_model().objects.filter(username="bench-stats").delete()
