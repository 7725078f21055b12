"""Benchmark: N profiles enter an audience connected to a partner through the local sandbox; the outbox is drained
with the real dispatcher code. Prints one JSON line. Uses whatever DATABASE_URL / REDIS_URL say.

    python manage.py bench_delivery --partner meta --profiles 200000
"""

import json
import multiprocessing
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from audiences.models import Audience, AudienceConnection, AudienceMembership, Profile, ProfileIdentifier
from connectors import services
from connectors.delivery import dispatcher, outbox
from connectors.delivery.sql import bulk_insert, insert_select_ids, is_postgres, table
from connectors.models import Connector, Delivery

WEBHOOK_SECRET = "whsec_YmVuY2gtc2lnbmluZy1zZWNyZXQtZm9yLXRoZS1zYW5kYm94"
PARTNERS = {
    "meta": {
        "partner_key": "meta_custom_audiences",
        "slot": "email",
        "settings": {"ad_account_id": "act_1000000001", "access_token": "EAAB-bench-token-not-real-0000000000"},
        "partner_audience_id": "23850000000001",
    },
    "webhook": {
        "partner_key": "webhook",
        "slot": "customer_id",
        "settings": {"endpoint_url": "http://127.0.0.1/webhook/bench", "signing_secret": WEBHOOK_SECRET},
        "partner_audience_id": "bench",
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


class Command(BaseCommand):
    help = "Delivery throughput benchmark against the local partner sandbox (prints one JSON line)."

    def add_arguments(self, parser):
        parser.add_argument("--partner", choices=sorted(PARTNERS), required=True)
        parser.add_argument("--profiles", type=int, required=True)
        parser.add_argument("--sandbox-url", help="use a running sandbox instead of starting one")
        parser.add_argument("--keep", action="store_true", help="keep the benchmark's rows afterwards")
        parser.add_argument(
            "--workers", type=int, default=os.cpu_count() or 1, help="worker processes draining (default: cores)"
        )

    def handle(self, *args, partner, profiles, sandbox_url=None, keep=False, workers=1, **options):
        if profiles < 1:
            raise CommandError("--profiles must be at least 1")
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        self.workers = workers
        spec = PARTNERS[partner]
        settings.DAP_KICK_ON_COMMIT = False  # this process drains the outbox itself
        settings.DEBUG = False  # as in production: no per-query debug logging
        proc = None
        if not sandbox_url:
            proc, sandbox_url = start_sandbox()
        try:
            wait_for_sandbox(sandbox_url)
            requests.post(f"{sandbox_url}/_sandbox/reset", timeout=5)
            if partner == "webhook":
                requests.put(f"{sandbox_url}/_sandbox/webhooks/bench", json={"secret": WEBHOOK_SECRET}, timeout=5)
            result = self._run(spec, partner, profiles, sandbox_url, keep)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)
        self.stdout.write(json.dumps(result))

    def _run(self, spec, partner: str, n: int, sandbox_url: str, keep: bool) -> dict:
        run = uuid.uuid4().hex[:8]
        connector, config, audience, ids = bench_setup(spec, run, n, f"{sandbox_url}/c/bench")
        if is_postgres():
            # Start from a vacuumed outbox, as autovacuum keeps it in production (earlier runs leave dead rows that
            # the next run would otherwise walk; the table's autovacuum thresholds are set by migration 0006).
            with connection.cursor() as cursor:
                cursor.execute(f"VACUUM ANALYZE {table(Delivery)}")
        try:
            start = time.monotonic()
            now = timezone.now()
            # The audience's new members (its own transaction: the membership table's foreign-key checks are the
            # audience engine's cost, reported apart), then the producer's outbox transaction, then the drain.
            with transaction.atomic():
                insert_select_ids(
                    AudienceMembership, ["audience_id", "entered_at"], [audience.pk, now], "profile_id", ids
                )
            members = time.monotonic()
            with transaction.atomic():
                outbox.audience_members_enqueue(audience_id=audience.pk, profile_ids=ids, action="add")
            enqueued = time.monotonic()
            latencies, outcomes, phases, calls = self._drain(config.pk)
            seconds = time.monotonic() - start
            left = Delivery.objects.filter(partner_config=config).count()
            stats = requests.get(f"{sandbox_url}/_sandbox/stats", timeout=5).json().get("bench", {})
        finally:
            if not keep:
                bench_cleanup(connector, audience, ids)
        delivery_seconds = seconds - (members - start)
        return {
            "partner": partner,
            "profiles": n,
            "database": connection.vendor,
            "broker": "redis" if settings.REDIS_URL else "orm",
            "cores": os.cpu_count(),
            # The delivery engine end to end: from the producer's outbox transaction to the last partner
            # acknowledgement (the span p50/p95 measure per profile).
            "seconds": round(delivery_seconds, 3),
            "profiles_per_s": round(n / delivery_seconds, 1),
            "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1),
            "enqueue_seconds": round(enqueued - members, 3),
            "drain_seconds": round(seconds - (enqueued - start), 3),
            # Before that, the audience's membership rows (the audience engine's work, with the table's foreign-key
            # checks), and the throughput counting them too.
            "membership_seconds": round(members - start, 3),
            "with_membership_seconds": round(seconds, 3),
            "with_membership_profiles_per_s": round(n / seconds, 1),
            # The largest worker process (the drain) and this process (setup and enqueue), in MB.
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "enqueue_process_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "workers": self.workers,
            "calls": calls,
            "drain_phases_s_all_workers": {k: round(v, 3) for k, v in phases.items()},
            "outcomes": outcomes,
            "left_in_outbox": left,
            "sandbox": stats,
        }

    def _drain(self, config_id: int):
        """Drain with `workers` forked processes running the dispatcher (the worker's own code)."""
        connection.close()  # each process opens its own
        ctx = multiprocessing.get_context("fork")
        pipes, procs = [], []
        for _ in range(self.workers):
            parent_end, child_end = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_drain_worker, args=(config_id, child_end))
            proc.start()
            pipes.append(parent_end)
            procs.append(proc)
        latencies: list[float] = []
        outcomes: Counter = Counter()
        phases: Counter = Counter()
        calls = 0
        for pipe in pipes:
            lat, out, ph, n = pipe.recv()
            latencies.extend(lat)
            outcomes.update(out)
            phases.update(ph)
            calls += n
        for proc in procs:
            proc.join()
        return latencies, dict(outcomes), dict(phases), calls


def start_sandbox() -> tuple[subprocess.Popen, str]:
    """The local partner sandbox in a process of its own on a free port: (process, base URL)."""
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own manage.py
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "partner_sandbox", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_for_sandbox(url: str) -> None:
    """Until the partner sandbox at `url` answers (20 s at most)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/_sandbox/stats", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise CommandError(f"The partner sandbox did not answer at {url}")


def bench_setup(spec: dict, run: str, n: int, base_url: str):
    """A connector of the partner in `spec` sending to `base_url`, an audience connected to it and `n` new profiles
    with the partner's identifier (bulk SQL). Returns (connector, config, audience, profile ids)."""
    connector = services.connector_create(
        partner_key=spec["partner_key"],
        name=f"bench {run}",
        settings=spec["settings"],
        base_url_override=base_url,
    )
    config = connector.configs.get()
    audience = Audience.objects.create(name=f"bench {run}")
    AudienceConnection.objects.create(
        audience=audience, partner_config=config, partner_audience_id=spec["partner_audience_id"]
    )
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM audiences_profile")
        first = cursor.fetchone()[0] + 1
        ids = list(range(first, first + n))
        bulk_insert(Profile, ["id", "external_id", "attributes", "consent_ads", "created_at", "updated_at"],
                    ((i, f"bench-{run}-{i}", "{}", True, now, now) for i in ids))  # fmt: skip
        if is_postgres():
            cursor.execute("SELECT setval(pg_get_serial_sequence('audiences_profile', 'id'), %s)", [ids[-1]])
        value = (lambda i: f"bench{run}.{i}@example.com") if spec["slot"] == "email" else (lambda i: f"c-{run}-{i}")
        bulk_insert(ProfileIdentifier, ["profile_id", "slot", "value"], ((i, spec["slot"], value(i)) for i in ids))
    return connector, config, audience, ids


def bench_cleanup(connector: Connector, audience: Audience, ids: list[int]) -> None:
    """Remove what bench_setup made and everything queued for it."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM connectors_delivery WHERE partner_config_id IN "
            "(SELECT id FROM connectors_partnerconfig WHERE connector_id = %s)",
            [connector.pk],
        )
        cursor.execute("DELETE FROM audiences_audiencemembership WHERE audience_id = %s", [audience.pk])
        cursor.execute("DELETE FROM audiences_profileidentifier WHERE profile_id BETWEEN %s AND %s", [ids[0], ids[-1]])
        AudienceConnection.objects.filter(audience=audience).delete()
        audience.delete()
        connector.delete()
        cursor.execute("DELETE FROM audiences_profile WHERE id BETWEEN %s AND %s", [ids[0], ids[-1]])


def _drain_worker(config_id: int, pipe) -> None:
    """One worker process: dispatch until nothing of this configuration is pending, then report back."""
    connection.close()
    latencies: list[float] = []
    outcomes: Counter = Counter()
    phases: Counter = Counter()
    calls = 0
    while True:
        report = dispatcher.dispatch_config(config_id, budget_seconds=3600, collect_latency=True)
        latencies.extend(report.latencies_ms)
        outcomes.update(report.outcomes)
        phases.update(report.timings)
        calls += report.calls
        if report.paused:
            break
        if report.claimed == 0:
            if not Delivery.objects.filter(partner_config_id=config_id, status=Delivery.Status.PENDING).exists():
                break
            time.sleep(0.005)  # the other workers hold the shards with work left
    pipe.send((latencies, dict(outcomes), dict(phases), calls))
    pipe.close()
    connection.close()
