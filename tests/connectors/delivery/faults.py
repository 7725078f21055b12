"""What the fault suite (test_faults.py) builds on: worker processes started with the test's own settings, a private
Redis server, a log of everything the sandbox's webhook receiver was sent, and the invariants every scenario asserts.

The invariants (`check_webhook_run`), per configuration:
- nothing lost: the outbox holds no pending row, and each profile's latest change was acknowledged by the partner or
  is recorded as a failed/skipped row (older changes may only be left out by coalescing: a newer one replaced them);
- no reordering: per profile, the changes the partner received (whatever it answered) carry increasing delivery ids,
  i.e. enqueue order (a retry of the same change may repeat its id, an older change never follows a newer one);
- duplicates only as at-least-once retries: the webhook's idempotency key (`webhook-id` = `dlv_<delivery id>`, one
  per change, stable across retries) is acknowledged twice only when the platform cannot have seen the earlier
  acknowledgement: the partner answered after the configuration's timeout (the client had given up and retried), or
  it was acknowledged before an interruption (a killed worker, a dropped database connection) whose batch never
  committed;
- statistics equal the recorded outcomes: DailyStat's added/removed counts are the changes the partner acknowledged
  in an answer the platform saw, and its error and skip counts are the failed/skipped rows left in the outbox.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction

from connectors.delivery import dispatcher, outbox
from connectors.models import ERROR_OUTCOMES, DailyStat, Delivery

ROOT = Path(settings.BASE_DIR)
PENDING = Delivery.Status.PENDING


def postgres_only(why: str):
    """Skip on SQLite: the scenario runs in .ci/run's PostgreSQL and Redis round."""
    return pytest.mark.skipif(
        connection.vendor != "postgresql", reason=f"{why}: PostgreSQL only (.ci/run's PostgreSQL and Redis round)"
    )


# --- worker processes ------------------------------------------------------------------------------------------
def database_url(application_name: str = "") -> str:
    """The test database (not the configured one) as a DATABASE_URL for a child process."""
    s = connection.settings_dict
    if connection.vendor != "postgresql":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    url = f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    return url + (f"?application_name={application_name}" if application_name else "")


def worker_env(application_name: str = "", **overrides: object) -> dict[str, str]:
    """The environment of a worker process: this test's settings module, database, Redis and dispatcher settings,
    fast retries; `overrides` (DAP_… names) on top."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE,
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p),
        "DATABASE_URL": database_url(application_name),
        "REDIS_URL": settings.REDIS_URL or "",
        "DAP_KICK_ON_COMMIT": "false",
        "DAP_LOG_LEVEL": "WARNING",
        "DAP_DISPATCH_SHARDS": str(settings.DAP_DISPATCH_SHARDS),
        "DAP_RETRY_BASE_SECONDS": "0.2",
        "DAP_RETRY_MAX_SECONDS": "1",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


@dataclass
class Worker:
    """A worker OS process; its output goes to files so a long run never blocks on a full pipe."""

    name: str
    process: subprocess.Popen
    out: Path
    err: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no cleanup, no rollback from the process itself."""
        self.stop(signal.SIGKILL)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


def start(args: list[str], env: dict[str, str], logs: Path, name: str) -> Worker:
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
    return Worker(name, process, out, err)


def dispatch_command(*args: str, env: dict[str, str], logs: Path, name: str = "dispatch") -> Worker:
    """`manage.py dispatch …` (one pass, or `--loop SECONDS`)."""
    return start([str(ROOT / "manage.py"), "dispatch", "--skip-checks", *args], env, logs, name)


def task_loop(config_id: int, *, env: dict[str, str], logs: Path, name: str = "loop", seconds: float = 30) -> Worker:
    """A process running the worker task `connectors.tasks.dispatch_config` in a loop the way a django-q2 worker
    runs tasks: stale database connections closed before each run, an exception ends that run only."""
    return start(["-m", "tests.connectors.delivery.worker_loop", str(config_id), str(seconds)], env, logs, name)


def qcluster(*, env: dict[str, str], logs: Path, name: str = "qcluster") -> Worker:
    return start([str(ROOT / "manage.py"), "qcluster", "--skip-checks"], env, logs, name)


def wait_for(condition, timeout: float, message, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)


# --- a private Redis -------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port, without persistence: a restart loses everything,
    as a crashed cache-only Redis does. Never the shared one."""

    def __init__(self, directory: Path):
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory), "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)

        def up() -> bool:
            with suppress(redis.RedisError):
                return bool(client.ping())
            return False

        wait_for(
            up, 10, lambda: f"the private redis-server did not start: {(self.directory / 'redis.log').read_text()}"
        )

    def stop(self) -> None:
        """SIGKILL: the server vanishes mid-run, with its queue and keys."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


# --- what the partner received ---------------------------------------------------------------------------------
@dataclass
class Receipt:
    """One request the sandbox's webhook receiver got: `seq` is arrival order, times are time.monotonic()."""

    seq: int
    scope: str
    msg_id: str
    delivery_id: int
    profile_id: int
    kind: str  # "add" / "remove" / "update"
    t_in: float
    t_out: float = 0.0
    status: int = 0

    @property
    def acked(self) -> bool:
        return 200 <= self.status < 300


class WebhookLog:
    """Every webhook request the (in-process) sandbox receives, from any process, with its answer and timing.

    The sandbox itself counts events and distinct ids; the fault invariants also need which delivery id arrived
    when, how long the answer took and what it was."""

    KINDS = {"profile.added": "add", "profile.removed": "remove", "profile.updated": "update"}

    def __init__(self, server):
        self._lock = threading.Lock()
        self._receipts: list[Receipt] = []
        self._sandbox = server.sandbox
        self._original = server.sandbox.dispatch
        server.sandbox.dispatch = self._dispatch

    def close(self) -> None:
        self._sandbox.dispatch = self._original

    def _dispatch(self, method, target, headers, body):
        receipt = None
        path = target.partition("?")[0]
        if method == "POST" and path.startswith("/c/") and "/webhook/" in path:
            try:
                event = json.loads(body)
                receipt = Receipt(
                    seq=0,
                    scope=path.split("/")[2],
                    msg_id=headers.get("webhook-id", ""),
                    delivery_id=int(str(event["id"]).removeprefix("dlv_")),
                    profile_id=int(event["data"]["profile_id"]),
                    kind=self.KINDS.get(event.get("type"), str(event.get("type"))),
                    t_in=time.monotonic(),
                )
            except (ValueError, KeyError, TypeError):
                receipt = None
            if receipt is not None:
                with self._lock:
                    receipt.seq = len(self._receipts)
                    self._receipts.append(receipt)
        response = self._original(method, target, headers, body)
        if receipt is not None:
            receipt.t_out, receipt.status = time.monotonic(), response.status
        return response

    def receipts(self, scope: str) -> list[Receipt]:
        with self._lock:
            return [r for r in self._receipts if r.scope == scope]

    def count(self, scope: str) -> int:
        return len(self.receipts(scope))

    def answered(self, scope: str) -> int:
        return sum(1 for r in self.receipts(scope) if r.status)


@dataclass
class Change:
    delivery_id: int
    profile_id: int
    action: str


class Changes:
    """The changes a test enqueued for one configuration, with the ids the outbox gave them."""

    def __init__(self, config):
        self.config = config
        self.items: list[Change] = []

    def record(self, rows) -> None:
        self.items.extend(Change(*row) for row in rows)

    def enter(self, audience, profiles, action: str = "add", *, atomic: bool = True) -> None:
        """Enqueue as a producer does, and note the new rows' ids from inside the producer's transaction (before
        any worker can see, coalesce or deliver them). `atomic=False`: the caller holds the transaction."""
        with transaction.atomic() if atomic else nullcontext():
            last = Delivery.objects.order_by("-id").values_list("id", flat=True).first() or 0
            outbox.audience_members_enqueue(
                audience_id=audience.pk, profile_ids=[p.pk for p in profiles], action=action
            )
            self.record(
                Delivery.objects.filter(partner_config=self.config, id__gt=last)
                .order_by("id")
                .values_list("id", "profile_id", "action")
            )

    def latest(self) -> dict[int, Change]:
        latest: dict[int, Change] = {}
        for change in self.items:
            if change.profile_id not in latest or change.delivery_id > latest[change.profile_id].delivery_id:
                latest[change.profile_id] = change
        return latest


def drain_until_settled(config, timeout: float = 20) -> None:
    """Dispatch in this process (as the task does) until the configuration has no pending row, retries included."""
    deadline = time.monotonic() + timeout
    while Delivery.objects.filter(partner_config=config, status=PENDING).exists():
        assert time.monotonic() < deadline, f"still pending: {pending_summary(config)}"
        report = dispatcher.dispatch_config(config.pk)
        if report.claimed == 0:
            time.sleep(0.05)


def pending_summary(config) -> list:
    return list(
        Delivery.objects.filter(partner_config=config, status=PENDING).values_list(
            "id", "profile_id", "action", "attempts", "partner_error_code", "next_attempt_at"
        )[:20]
    )


def wait_settled(config, timeout: float, workers=()) -> None:
    """Wait until worker processes have left nothing pending for the configuration."""

    def message() -> str:
        dead = [f"{w.name} exited {w.process.returncode}: {w.stderr()[-2000:]}" for w in workers if not w.alive()]
        return f"still pending: {pending_summary(config)} {dead}"

    wait_for(lambda: not Delivery.objects.filter(partner_config=config, status=PENDING).exists(), timeout, message)


# --- the invariants --------------------------------------------------------------------------------------------
@dataclass
class RunSummary:
    acked_ids: set[int]
    duplicates: dict[int, int]  # delivery id -> acknowledgements beyond the first
    lost_acks: int  # acknowledgements the platform could not see (answered too late, or before an interruption)
    receipts: int


def check_webhook_run(
    log: WebhookLog,
    scope: str,
    changes: Changes,
    *,
    timeout: float | None = None,
    lost_before: float | None = None,
) -> RunSummary:
    """Assert the four fault invariants (see the module docstring) for one webhook configuration.

    `timeout`: the configuration's timeout (default: its own), past which an answer is one the platform never saw.
    `lost_before`: time.monotonic() of an interruption; acknowledgements received before it were in a batch that
    never committed (use only when the interrupted batch was the first one sent)."""
    config = changes.config
    config.refresh_from_db()
    timeout = config.timeout_seconds if timeout is None else timeout
    receipts = sorted(log.receipts(scope), key=lambda r: r.seq)
    assert all(r.status for r in receipts), "a request is still unanswered"
    enqueued = {c.delivery_id: c for c in changes.items}

    # What the partner got is what was enqueued (profile and action of that very change).
    for r in receipts:
        change = enqueued.get(r.delivery_id)
        assert change is not None, f"the partner got a change nobody enqueued: {r}"
        assert (r.profile_id, r.kind, r.msg_id) == (change.profile_id, change.action, f"dlv_{r.delivery_id}"), r

    # Nothing lost.
    assert not Delivery.objects.filter(partner_config=config, status=PENDING).exists(), pending_summary(config)
    left = {
        d.id: d for d in Delivery.objects.filter(partner_config=config, status__in=[Delivery.Status.FAILED,
                                                                                    Delivery.Status.SKIPPED])
    }  # fmt: skip
    acked_ids = {r.delivery_id for r in receipts if r.acked}
    for profile_id, change in changes.latest().items():
        assert change.delivery_id in acked_ids or change.delivery_id in left, (
            f"profile {profile_id}: its latest change {change} was neither acknowledged nor recorded as failed/skipped"
        )

    # No reordering: per profile, delivery ids never decrease in arrival order.
    by_profile: dict[int, list[Receipt]] = defaultdict(list)
    for r in receipts:
        by_profile[r.profile_id].append(r)
    for profile_id, got in by_profile.items():
        ids = [r.delivery_id for r in got]
        assert ids == sorted(ids), (
            f"profile {profile_id} received its changes out of order: "
            f"{[(r.delivery_id, r.kind, r.status) for r in got]}; enqueued "
            f"{[(c.delivery_id, c.action) for c in changes.items if c.profile_id == profile_id]}"
        )

    # Duplicates only where the platform could not know the earlier acknowledgement.
    def lost(r: Receipt) -> bool:
        late = r.t_out - r.t_in >= timeout
        return late or (lost_before is not None and r.t_in < lost_before)

    acks: dict[int, list[Receipt]] = defaultdict(list)
    for r in receipts:
        if r.acked:
            acks[r.delivery_id].append(r)
    duplicates = {}
    for delivery_id, got in acks.items():
        if len(got) > 1:
            duplicates[delivery_id] = len(got) - 1
            unexplained = [r for r in got[:-1] if not lost(r)]
            assert not unexplained, f"change {delivery_id} was acknowledged twice without a retry: {got}"
    known = {d for d, got in acks.items() if any(not lost(r) for r in got)}

    # Statistics equal the recorded outcomes.
    expected = Counter()
    for delivery_id in known:
        expected[("added" if enqueued[delivery_id].action == "add" else "removed", "")] += 1
    for d in left.values():
        expected[(d.outcome, d.partner_error_code if d.outcome in ERROR_OUTCOMES else "")] += 1
    actual = Counter(
        {(s.outcome, s.partner_error_code): s.count for s in DailyStat.objects.filter(partner_config=config)}
    )
    assert +actual == +expected, f"DailyStat {dict(actual)} != recorded outcomes {dict(expected)}"
    return RunSummary(
        acked_ids=acked_ids,
        duplicates=duplicates,
        lost_acks=sum(1 for got in acks.values() for r in got if lost(r)),
        receipts=len(receipts),
    )
