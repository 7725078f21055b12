"""Benchmark: the same delivery drained by one, then by two (or more) worker clusters — real `manage.py qcluster`
processes sharing one PostgreSQL and one Redis broker, as production worker machines do. The partner is the webhook
emulation of the local sandbox, with a fixed answer latency (a partner across the internet), so the clusters' extra
concurrent partner calls are what is measured. Prints one JSON line.

    DATABASE_URL=postgres://… REDIS_URL=redis://… python manage.py bench_scaleout --profiles 20000 --clusters 1,2
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from audiences.models import AudienceMembership
from connectors.delivery import outbox
from connectors.delivery.sql import insert_select_ids, is_postgres
from connectors.management.commands.bench_delivery import (
    PARTNERS,
    WEBHOOK_SECRET,
    bench_cleanup,
    bench_setup,
    start_sandbox,
    wait_for_sandbox,
)
from connectors.models import DailyStat, Delivery, DeliveryAttempt

SCOPE = "bench-scale"


class Command(BaseCommand):
    help = "Throughput with 1, 2… worker clusters (qcluster processes) on one PostgreSQL and Redis; one JSON line."

    def add_arguments(self, parser):
        parser.add_argument("--profiles", type=int, default=20000)
        parser.add_argument("--clusters", default="1,2", help="comma-separated cluster counts to measure (1,2)")
        parser.add_argument("--workers-per-cluster", type=int, default=2, help="DAP_Q_WORKERS of each cluster")
        parser.add_argument("--latency-ms", type=float, default=100.0, help="the partner's answer latency")
        parser.add_argument("--timeout", type=float, default=600.0, help="give up a run after this many seconds")

    def handle(self, *args, profiles, clusters, workers_per_cluster, latency_ms, timeout, **options):
        if not is_postgres() or not settings.REDIS_URL:
            raise CommandError("set DATABASE_URL (PostgreSQL) and REDIS_URL: worker clusters share them")
        try:
            counts = [int(c) for c in clusters.split(",")]
        except ValueError:
            raise CommandError("--clusters: comma-separated whole numbers, e.g. 1,2") from None
        if profiles < 1 or workers_per_cluster < 1 or not counts or min(counts) < 1 or max(counts) > 8:
            raise CommandError("--profiles and --workers-per-cluster at least 1; --clusters between 1 and 8")
        if not 0 <= latency_ms <= 5000:
            raise CommandError("--latency-ms between 0 and 5000")
        sandbox, sandbox_url = start_sandbox()
        try:
            wait_for_sandbox(sandbox_url)
            runs = [self._run(n, profiles, workers_per_cluster, latency_ms, sandbox_url, timeout) for n in counts]
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=10)
        base = runs[0]["profiles_per_s"]
        line = {
            "partner": "webhook",
            "profiles": profiles,
            "latency_ms": latency_ms,
            "workers_per_cluster": workers_per_cluster,
            "shards": settings.DAP_DISPATCH_SHARDS,
            "database": "postgresql",
            "broker": "redis",
            "cores": os.cpu_count(),
            "runs": runs,
            "speedup": {str(r["clusters"]): round(r["profiles_per_s"] / base, 2) for r in runs} if base else {},
        }
        self.stdout.write(json.dumps(line))

    def _run(self, clusters: int, n: int, workers: int, latency_ms: float, sandbox_url: str, timeout: float) -> dict:
        run = uuid.uuid4().hex[:8]
        requests.post(f"{sandbox_url}/_sandbox/reset", timeout=5)
        requests.put(f"{sandbox_url}/_sandbox/webhooks/bench", json={"secret": WEBHOOK_SECRET}, timeout=5)
        if latency_ms:
            requests.post(
                f"{sandbox_url}/_sandbox/faults",
                json={"scope": SCOPE, "fault": "slow", "delay_s": latency_ms / 1000},
                timeout=5,
            ).raise_for_status()
        connector, config, audience, ids = bench_setup(PARTNERS["webhook"], run, n, f"{sandbox_url}/c/{SCOPE}")
        procs = self._start_clusters(clusters, workers)
        try:
            start = time.monotonic()
            with transaction.atomic():
                insert_select_ids(
                    AudienceMembership, ["audience_id", "entered_at"], [audience.pk, timezone.now()], "profile_id", ids
                )
                # The producer's transaction; on commit the dispatcher is kicked through the broker (fanned out
                # over the shards), and whichever cluster takes a task sends.
                outbox.audience_members_enqueue(audience_id=audience.pk, profile_ids=ids, action="add")
            pending = Delivery.objects.filter(partner_config=config, status=Delivery.Status.PENDING)
            deadline = start + timeout
            while pending.exists():
                if time.monotonic() > deadline:
                    raise CommandError(f"{clusters} cluster(s): not drained after {timeout:.0f} s")
                time.sleep(0.1)
            seconds = time.monotonic() - start
        finally:
            self._stop(procs)
        try:
            stats = requests.get(f"{sandbox_url}/_sandbox/stats?scope={SCOPE}", timeout=5).json()[SCOPE]["webhook"]
            counted = DailyStat.objects.filter(partner_config=config).aggregate(n=Sum("count"))["n"] or 0
            added = DailyStat.objects.filter(partner_config=config, outcome="added").aggregate(n=Sum("count"))["n"]
            attempts = DeliveryAttempt.objects.filter(partner_config=config).aggregate(retried=Sum("retry_count"))
            failed = Delivery.objects.filter(partner_config=config, status=Delivery.Status.FAILED).count()
        finally:
            bench_cleanup(connector, audience, ids)
        received, unique = stats["requests"], stats["unique_ids"]
        return {
            "clusters": clusters,
            "seconds": round(seconds, 3),
            "profiles_per_s": round(n / seconds, 1),
            "partner_requests": received,
            "unique_changes_received": unique,
            # A change received more than once: allowed only as a retry of an attempt that did not finish.
            "repeats": received - unique,
            "retried_items": attempts["retried"] or 0,
            "added": added or 0,
            "statistics_total": counted,
            "failed": failed,
            "double_send_beyond_retries": max(0, received - unique - (attempts["retried"] or 0)),
        }

    def _start_clusters(self, clusters: int, workers: int) -> list[subprocess.Popen]:
        env = {**os.environ, "DAP_Q_WORKERS": str(workers)}
        procs = [
            subprocess.Popen(  # noqa: S603 - our own manage.py
                [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "qcluster"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for _ in range(clusters)
        ]
        # Wait until every cluster reports itself on the broker and sits idle: a cluster still starting would leave
        # the whole burst of dispatch tasks to the others.
        from django_q.conf import Conf
        from django_q.status import Stat

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(proc.poll() is not None for proc in procs):
                raise CommandError("a qcluster process exited at start")
            pids = {proc.pid for proc in procs}
            ready = [s for s in Stat.get_all() if s.pid in pids and s.status == Conf.IDLE]
            if len(ready) == len(procs):
                return procs
            time.sleep(0.25)
        self._stop(procs)
        raise CommandError("the worker clusters did not report ready within 60 s")

    def _stop(self, procs: list[subprocess.Popen]) -> None:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
