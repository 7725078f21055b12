"""Prometheus metrics, read from the database at scrape time (docs/operations.md lists them).

A custom collector on its own registry (not prometheus_client's global one, so nothing else ends up in /metrics):
each scrape runs a handful of aggregate queries inside one transaction that PostgreSQL cancels after
METRICS_QUERY_TIMEOUT_SECONDS. Each section is guarded on its own: a failing query drops that section's metrics and
sets `dap_metrics_scrape_error{section}` to 1, the rest is still served.

Labels carry the partner key (catalogue key such as `meta_custom_audiences`) and fixed enumerations only: never
connector or configuration names, secrets or profile data.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, F, Min, Sum, Window
from django.db.models.functions import RowNumber
from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from connectors.models import Connector, DailyStat, Delivery, DeliveryAttempt, PartnerConfig
from monitoring.health import bounded_queries, heartbeat_state
from monitoring.models import Alert

logger = logging.getLogger(__name__)

METRICS_QUERY_TIMEOUT_SECONDS = 5.0
# Partner call latency: calls (DeliveryAttempt rows, read through the `at` index) of the last 5 minutes.
LATENCY_WINDOW_SECONDS = 300
QUANTILES = (0.5, 0.95, 0.99)
# SQLite only (PostgreSQL computes exact quantiles in the database): the newest calls per configuration read.
LATENCY_SAMPLE_PER_CONFIG = 5000


def _quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks: the same as PostgreSQL's percentile_cont."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class DapCollector:
    """Reads the platform's state when Prometheus scrapes."""

    SECTIONS = ("deliveries", "outbox", "latency", "alerts", "workers")

    def describe(self):
        return []  # no collect() at registration time (that would query the database on import)

    def collect(self):
        started = time.monotonic()
        now = timezone.now()
        families: list = []
        errors = dict.fromkeys(self.SECTIONS, 0)
        try:
            with bounded_queries(METRICS_QUERY_TIMEOUT_SECONDS):
                partners = dict(PartnerConfig.objects.values_list("id", "connector__partner_key"))
                for section in self.SECTIONS:
                    try:
                        with transaction.atomic():  # a savepoint: a failed query leaves the others usable
                            families.extend(getattr(self, f"_{section}")(partners, now))
                    except Exception as exc:
                        errors[section] = 1
                        logger.warning("metrics: section %s failed: %s", section, type(exc).__name__)
        except Exception as exc:  # the database itself: every section failed
            errors = dict.fromkeys(self.SECTIONS, 1)
            logger.warning("metrics: database unavailable: %s", type(exc).__name__)
        yield from families
        error = GaugeMetricFamily(
            "dap_metrics_scrape_error", "1 when this section's queries failed during the scrape.", labels=["section"]
        )
        for section, failed in errors.items():
            error.add_metric([section], failed)
        yield error
        yield GaugeMetricFamily(
            "dap_metrics_scrape_duration_seconds",
            "Time spent reading the database for this scrape.",
            value=time.monotonic() - started,
        )

    # --- sections: each returns metric families ----------------------------------------------------------------
    def _deliveries(self, partners: dict[int, str], now: datetime):
        family = CounterMetricFamily(
            "dap_deliveries",
            "Profiles per outcome since statistics began (sum of the daily statistics; drops when a configuration "
            "and its statistics are deleted).",
            labels=["partner", "outcome"],
        )
        totals: dict[tuple[str, str], int] = defaultdict(int)
        rows = DailyStat.objects.values("partner_config_id", "outcome").annotate(n=Sum("count")).order_by()
        for row in rows:
            partner = partners.get(row["partner_config_id"])
            if partner:
                totals[(partner, row["outcome"])] += row["n"] or 0
        for (partner, outcome), n in sorted(totals.items()):
            family.add_metric([partner, outcome], n)
        return [family]

    def _outbox(self, partners: dict[int, str], now: datetime):
        keys = sorted(set(partners.values()))
        pending = dict.fromkeys(keys, 0)
        failed = dict.fromkeys(keys, 0)
        oldest: dict[str, datetime] = {}
        rows = (
            Delivery.objects.filter(status=Delivery.Status.PENDING)
            .values("partner_config_id")
            .annotate(n=Count("id"), oldest=Min("created_at"))
            .order_by()
        )
        for row in rows:
            partner = partners.get(row["partner_config_id"])
            if partner:
                pending[partner] += row["n"]
                if partner not in oldest or row["oldest"] < oldest[partner]:
                    oldest[partner] = row["oldest"]
        rows = (
            Delivery.objects.filter(status=Delivery.Status.FAILED)
            .values("partner_config_id")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in rows:
            partner = partners.get(row["partner_config_id"])
            if partner:
                failed[partner] += row["n"]
        depth = GaugeMetricFamily(
            "dap_outbox_pending", "Profile changes waiting in the outbox (due or waiting to retry).", labels=["partner"]
        )
        gone = GaugeMetricFamily(
            "dap_outbox_failed",
            "Failed outbox rows kept for listing and replay (pruned after DAP_ATTEMPT_RETENTION_DAYS).",
            labels=["partner"],
        )
        age = GaugeMetricFamily(
            "dap_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending change (by when it was enqueued); 0 when none is pending.",
            labels=["partner"],
        )
        for partner in keys:
            depth.add_metric([partner], pending[partner])
            gone.add_metric([partner], failed[partner])
            when = oldest.get(partner)
            age.add_metric([partner], max(0.0, (now - when).total_seconds()) if when else 0.0)
        return [depth, gone, age]

    def _latency(self, partners: dict[int, str], now: datetime):
        since = now - timedelta(seconds=LATENCY_WINDOW_SECONDS)
        calls: dict[str, int] = dict.fromkeys(sorted(set(partners.values())), 0)
        rows = DeliveryAttempt.objects.filter(at__gte=since).values("partner_config_id").annotate(n=Count("id"))
        for row in rows.order_by():
            partner = partners.get(row["partner_config_id"])
            if partner:
                calls[partner] = calls.get(partner, 0) + row["n"]
        quantiles = self._latency_quantiles_pg(since) if connection.vendor == "postgresql" else None
        if quantiles is None:
            quantiles = self._latency_quantiles_sampled(partners, since)
        duration = GaugeMetricFamily(
            "dap_partner_call_duration_seconds",
            f"Partner call duration quantiles over the last {LATENCY_WINDOW_SECONDS} s (DeliveryAttempt).",
            labels=["partner", "quantile"],
        )
        for partner, values in sorted(quantiles.items()):
            for q, seconds in zip(QUANTILES, values, strict=True):
                duration.add_metric([partner, str(q)], seconds)
        count = GaugeMetricFamily(
            "dap_partner_calls_recent",
            f"Partner calls in the last {LATENCY_WINDOW_SECONDS} s (the calls the duration quantiles describe).",
            labels=["partner"],
        )
        for partner, n in sorted(calls.items()):
            count.add_metric([partner], n)
        return [duration, count]

    @staticmethod
    def _latency_quantiles_pg(since: datetime) -> dict[str, list[float]]:
        """Exact quantiles per partner key in one query (percentile_cont over the window's rows)."""
        attempt = connection.ops.quote_name(DeliveryAttempt._meta.db_table)
        config = connection.ops.quote_name(PartnerConfig._meta.db_table)
        connector = connection.ops.quote_name(Connector._meta.db_table)
        sql = (
            f"SELECT c.partner_key, percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY a.duration_ms) "  # noqa: S608
            f"FROM {attempt} a JOIN {config} pc ON pc.id = a.partner_config_id "
            f"JOIN {connector} c ON c.id = pc.connector_id WHERE a.at >= %s GROUP BY c.partner_key"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, ["{" + ",".join(map(str, QUANTILES)) + "}", since])
            return {key: [round(ms / 1000, 6) for ms in values] for key, values in cursor.fetchall()}

    @staticmethod
    def _latency_quantiles_sampled(partners: dict[int, str], since: datetime) -> dict[str, list[float]]:
        """Quantiles from the newest LATENCY_SAMPLE_PER_CONFIG calls of each configuration in the window."""
        sample = (
            DeliveryAttempt.objects.filter(at__gte=since)
            .annotate(rank=Window(RowNumber(), partition_by=[F("partner_config_id")], order_by=F("at").desc()))
            .filter(rank__lte=LATENCY_SAMPLE_PER_CONFIG)
            .values_list("partner_config_id", "duration_ms")
        )
        durations: dict[str, list[float]] = defaultdict(list)
        for config_id, ms in sample:
            partner = partners.get(config_id)
            if partner:
                durations[partner].append(ms)
        result = {}
        for partner, values in durations.items():
            values.sort()
            result[partner] = [round(_quantile(values, q) / 1000, 6) for q in QUANTILES]  # to the microsecond
        return result

    def _alerts(self, partners: dict[int, str], now: datetime):
        family = GaugeMetricFamily("dap_alerts_open", "Open alerts by kind.", labels=["kind"])
        open_ = dict.fromkeys(Alert.Kind.values, 0)
        for row in Alert.objects.filter(resolved_at__isnull=True).values("kind").annotate(n=Count("id")).order_by():
            open_[row["kind"]] = row["n"]
        for kind, n in sorted(open_.items()):
            family.add_metric([kind], n)
        return [family]

    def _workers(self, partners: dict[int, str], now: datetime):
        state = heartbeat_state(now)
        families = [
            GaugeMetricFamily(
                "dap_workers_alive",
                "Worker machines whose heartbeat is younger than DAP_HEARTBEAT_MAX_AGE_SECONDS.",
                value=state["alive"],
            )
        ]
        if state["age_seconds"] is not None:  # absent until a worker has ever beaten
            families.append(
                GaugeMetricFamily(
                    "dap_worker_heartbeat_age_seconds",
                    "Seconds since the newest worker heartbeat (schedule every minute).",
                    value=state["age_seconds"],
                )
            )
        return families


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DapCollector())


def metrics_access(*, authorization: str, user, token: str) -> int:
    """200 when the scrape may read the metrics, else 401 (no credentials) or 403 (wrong ones).

    With no token configured the endpoint is open. Else `Authorization: Bearer <token>` (compared in constant time)
    or a logged-in staff user."""
    if not token:
        return 200
    scheme, _, supplied = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return 200 if hmac.compare_digest(supplied.strip().encode(), token.encode()) else 403
    if user is not None and user.is_authenticated:
        return 200 if user.is_staff and user.is_active else 403
    return 401
