"""The fault suite (`pytest -m faults`): the delivery engine under a killed worker, a Redis restart, a dropped database
connection, partner stalls and 5xx/429 storms, changes enqueued twice and several worker processes at once.

Each scenario sends through the sandbox's webhook receiver (one request per change, the change's delivery id as
its idempotency key) and asserts the invariants of `faults.check_webhook_run`: nothing lost, no profile's changes
reordered, duplicates only as at-least-once retries, statistics equal to the recorded outcomes. Scenarios needing
PostgreSQL (row locks between processes, pg_terminate_backend) or a Redis server skip on SQLite; .ci/run's second
round runs them.
"""

from __future__ import annotations

import json
import random
import time

import pytest
from django.db import connection, transaction

from audiences.models import Profile, ProfileIdentifier
from connectors.delivery import dispatcher, outbox
from connectors.models import DailyStat, Delivery, DeliveryAttempt, PartnerConfig
from tests.connectors.delivery.conftest import make_profiles
from tests.connectors.delivery.faults import (
    Changes,
    PrivateRedis,
    WebhookLog,
    check_webhook_run,
    dispatch_command,
    drain_until_settled,
    pending_summary,
    postgres_only,
    qcluster,
    task_loop,
    wait_for,
    wait_settled,
    worker_env,
)
from tests.connectors.sandbox_helpers import connect, fault, sandbox_stats, stats

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def fast_retries(settings):
    """In-process dispatching retries within a fraction of a second (workers get the same through worker_env)."""
    settings.DAP_RETRY_BASE_SECONDS = 0.2
    settings.DAP_RETRY_MAX_SECONDS = 1.0
    dispatcher._clients.clear()
    yield
    dispatcher._clients.clear()


@pytest.fixture
def webhook_log(sandbox):
    log = WebhookLog(sandbox)
    yield log
    log.close()


@pytest.fixture
def logs(tmp_path):
    return tmp_path / "workers"


def connect_webhook(sandbox, scope: str, timeout: float | None = None):
    config, audience = connect("webhook", sandbox, scope, "crm", endpoint_url=f"https://r.example/webhook/{scope}")
    if timeout is not None:
        PartnerConfig.objects.filter(pk=config.pk).update(timeout_seconds=timeout)
        config.refresh_from_db()
    return config, audience


def enter_without_kick(settings, audience, profiles, action: str = "add") -> None:
    """Enqueue for a configuration that a worker loop drains (no broker involved)."""
    kick, settings.DAP_KICK_ON_COMMIT = settings.DAP_KICK_ON_COMMIT, False
    try:
        outbox.audience_members_enqueue(audience_id=audience.pk, profile_ids=[p.pk for p in profiles], action=action)
    finally:
        settings.DAP_KICK_ON_COMMIT = kick


def all_answered(log: WebhookLog, scope: str, timeout: float = 10) -> None:
    """Stalled requests the platform gave up on are still being answered by the sandbox: wait for them."""
    wait_for(lambda: log.answered(scope) == log.count(scope), timeout, "the sandbox did not answer every request")


# --- a. a worker killed mid-batch -------------------------------------------------------------------------------
def test_a_worker_killed_mid_batch_loses_and_reorders_nothing(sandbox, webhook_log, logs):
    config, audience = connect_webhook(sandbox, "kill")
    profiles = make_profiles(40)
    changes = Changes(config)
    fault(sandbox, "kill", fault="slow", delay_s=2.5, count=40)  # the first batch stalls (within the 3 s timeout)
    changes.enter(audience, profiles)
    # A short lease, so its successor does not wait the default 2 minutes for the dead worker's shard.
    doomed = dispatch_command("--config", str(config.pk), env=worker_env(DAP_LEASE_SECONDS=2), logs=logs, name="doomed")
    wait_for(lambda: webhook_log.count("kill") >= 40, 20, lambda: f"no batch in flight: {doomed.stderr()}")
    changes.enter(audience, profiles[:15], "remove")  # while their adds are being sent
    time.sleep(0.2)
    killed_at = time.monotonic()
    doomed.kill()

    # Nothing of the batch was recorded: every change is due again.
    assert set(Delivery.objects.filter(partner_config=config).values_list("status", "attempts")) == {("pending", 0)}
    assert not DailyStat.objects.filter(partner_config=config).exists()
    assert not DeliveryAttempt.objects.filter(partner_config=config).exists()

    successor = dispatch_command("--config", str(config.pk), "--loop", "15", env=worker_env(), logs=logs, name="next")
    wait_settled(config, 15, [successor])
    successor.stop()
    all_answered(webhook_log, "kill")
    summary = check_webhook_run(webhook_log, "kill", changes, lost_before=killed_at)
    # The adds the partner acknowledged to the dead worker went out once more (at-least-once); the 15 profiles that
    # left meanwhile got their removal instead (coalesced, after the add they had already received).
    assert len(summary.duplicates) == 25
    assert DailyStat.objects.filter(partner_config=config).count() == 2


# --- b. Redis restarted during delivery -----------------------------------------------------------------------
XANDR_SEGMENT = "123456"


def xandr_profiles(n: int, first: int) -> list[Profile]:
    made = Profile.objects.bulk_create([Profile(external_id=f"x{first + i}") for i in range(n)])
    ProfileIdentifier.objects.bulk_create(
        [ProfileIdentifier(profile=p, slot="xandr_uid", value=str(5727816213491965000 + first + i)) for i, p in
         enumerate(made)]
    )  # fmt: skip
    return made


@postgres_only("a Redis broker shared by worker processes")
def test_b_redis_restarted_during_delivery_loses_nothing(
    sandbox, webhook_log, logs, settings, monkeypatch, tmp_path, caplog
):
    """A private redis-server (never the shared one) is the django-q2 broker, the quota buckets' and the token
    cache's store; it is killed mid-run and started again empty. Webhook changes go through the broker to a real
    `qcluster`; Xandr (quota and session token in Redis) is drained by a worker loop that keeps calling while Redis
    is down."""
    from django_q.conf import Conf

    from connectors import tasks

    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    original = settings.REDIS_URL
    procs = []
    try:
        settings.REDIS_URL = redis.url
        settings.DAP_KICK_ON_COMMIT = True  # producers kick the dispatcher through the broker
        monkeypatch.setattr(Conf, "REDIS", redis.url)
        monkeypatch.setattr(Conf, "ORM", None)
        config, audience = connect_webhook(sandbox, "redis")
        xandr, segment = connect("xandr", sandbox, "redis-x", XANDR_SEGMENT)
        changes = Changes(config)
        profiles = make_profiles(20)
        env = worker_env(DAP_Q_WORKERS=1)
        procs.append(qcluster(env=env, logs=logs))
        procs.append(dispatch_command("--config", str(xandr.pk), "--loop", "40", env=env, logs=logs, name="xandr"))

        fault(sandbox, "redis", fault="slow", delay_s=1.0, count=20)  # the first batch is in flight at the restart
        changes.enter(audience, profiles)
        enter_without_kick(settings, segment, xandr_profiles(10, 0))
        wait_for(lambda: webhook_log.count("redis") >= 20, 30, lambda: f"qcluster sent nothing: {procs[0].stderr()}")

        redis.stop()
        down = time.monotonic()
        # While Redis is down producers go on: their kick fails (logged), the changes are committed all the same.
        changes.enter(audience, profiles[:8], "remove")
        enter_without_kick(settings, segment, xandr_profiles(5, 10))
        # Down for longer than redis-py's own reconnect attempts (10 retries, at most about 4 s): the Xandr worker's
        # quota calls fail and its changes are retried by the dispatcher.
        time.sleep(max(0.0, down + 5 - time.monotonic()))
        redis.start()
        changes.enter(audience, profiles[15:], "remove")

        def settled() -> bool:
            tasks.dispatch_due()  # the minute schedule, which picks up what lost kicks left behind
            return not Delivery.objects.filter(status="pending").exists()

        wait_for(settled, 40, lambda: f"still pending: {pending_summary(config)} {pending_summary(xandr)}", 1.0)
        all_answered(webhook_log, "redis")
    finally:
        for proc in procs:
            proc.stop()
        redis.stop()
        settings.REDIS_URL = original  # before the suite's fixtures clean the shared Redis up
    assert "could not kick the dispatcher" in caplog.text  # the producer was not failed by the broker
    summary = check_webhook_run(webhook_log, "redis", changes)
    assert not summary.duplicates
    # Xandr: what the partner added is what the statistics say; the outage cost retries, not changes.
    assert sandbox_stats(sandbox, "redis-x", "xandr")["rows_added"] == 15
    assert stats(xandr) == {("added", ""): 15}
    # The outage reached deliveries: quota calls failed (redis ConnectionError) and were retried.
    assert DeliveryAttempt.objects.filter(
        partner_config=xandr, partner_error_code="client_error", retry_count__gt=0
    ).exists()


def test_b_a_broker_that_is_down_does_not_fail_the_producer(sandbox, settings, monkeypatch, caplog):
    """The kick runs after the producer's commit: a broker error must not turn a committed change into an error
    for the producer (an API request, an audience recompute); the schedule dispatches the change."""
    import redis
    from django_q import tasks as q_tasks

    def broker_down(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(q_tasks, "async_task", broker_down)
    settings.DAP_KICK_ON_COMMIT = True
    config, audience = connect_webhook(sandbox, "nobroker")
    Changes(config).enter(audience, make_profiles(5))
    assert Delivery.objects.filter(partner_config=config, status="pending").count() == 5
    assert "could not kick the dispatcher (Error 111" in caplog.text


# --- c. the database connection dropped mid-run ----------------------------------------------------------------
@postgres_only("a worker's backend terminated with pg_terminate_backend")
def test_c_database_connection_dropped_mid_run_is_recovered_on_the_next_run(sandbox, webhook_log, logs):
    config, audience = connect_webhook(sandbox, "dbdrop")
    profiles = make_profiles(30)
    changes = Changes(config)
    fault(sandbox, "dbdrop", fault="slow", delay_s=1.5, count=30)  # the worker's batch is in flight for 1.5 s
    changes.enter(audience, profiles)
    name = "dap-fault-worker"
    worker = task_loop(config.pk, env=worker_env(application_name=name), logs=logs, seconds=30)
    wait_for(lambda: webhook_log.count("dbdrop") >= 30, 20, lambda: f"no batch in flight: {worker.stderr()}")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            [name],
        )
        assert cursor.fetchall() == [(True,)]  # its connection, holding the claim's row locks
    dropped_at = time.monotonic()
    changes.enter(audience, profiles[:10], "remove")  # while the worker still waits for the partner

    started = time.monotonic()
    wait_settled(config, 15, [worker])
    recovered_in = time.monotonic() - started
    all_answered(webhook_log, "dbdrop")
    worker.stop()
    assert "terminating connection due to administrator command" in worker.stderr()  # the run that was cut off
    assert recovered_in < 10  # the next run delivered: the shard's lease was not left to expire
    summary = check_webhook_run(webhook_log, "dbdrop", changes, lost_before=dropped_at)
    assert len(summary.duplicates) == 20  # the batch whose outcome could not be written was sent again


# --- d. partner stalls, 5xx and 429 storms ----------------------------------------------------------------------
STORMS = {
    # Each request stalls 1 s, twice the configuration's timeout: the platform gives up, the partner still accepts.
    "stall": {"fault": "slow", "delay_s": 1.0},
    "5xx": {"fault": "server_error", "status": 503},
    "429": {"fault": "rate_limit", "retry_after": 1},
}
STORM_OUTCOME = {"stall": ("timeout", "timeout"), "5xx": ("partner_error", "503"), "429": ("partner_error", "429")}


@pytest.mark.parametrize("storm", list(STORMS))
def test_d_storms_are_retried_then_delivered_when_they_end(sandbox, webhook_log, storm):
    scope = f"storm-{storm}"
    config, audience = connect_webhook(sandbox, scope, timeout=0.5)
    profiles = make_profiles(16)
    changes = Changes(config)
    fault(sandbox, scope, count=28, **STORMS[storm])  # the first round of 16 requests and 12 of the retries
    changes.enter(audience, profiles)
    report = dispatcher.dispatch_config(config.pk)
    assert (report.retried, report.finished) == (16, 0)
    rows = Delivery.objects.filter(partner_config=config)
    assert {(r.status, r.attempts, r.outcome, r.partner_error_code) for r in rows} == {
        ("pending", 1, *STORM_OUTCOME[storm])
    }
    # Mid-storm the profiles keep changing: 4 leave, 2 of them come back.
    changes.enter(audience, profiles[:4], "remove")
    changes.enter(audience, profiles[:2], "add")
    drain_until_settled(config, 20)
    all_answered(webhook_log, scope)

    receipts = webhook_log.receipts(scope)
    assert sum(1 for r in receipts if not r.acked) == (0 if storm == "stall" else 28)
    summary = check_webhook_run(webhook_log, scope, changes)
    assert summary.acked_ids >= {c.delivery_id for c in changes.latest().values()}  # all delivered in the end
    attempts = DeliveryAttempt.objects.filter(partner_config=config)
    assert attempts.filter(outcome=STORM_OUTCOME[storm][0], retry_count=1).count() == 28
    if storm == "stall":
        assert summary.lost_acks == 28  # the partner accepted what the platform had given up on; each re-sent
    if storm == "429":  # Retry-After: 1 is honoured before the same change is sent again
        for r in receipts:
            if r.status == 429:
                later = [n for n in receipts if n.delivery_id == r.delivery_id and n.seq > r.seq]
                assert not later or later[0].t_in >= r.t_out + 0.95, (r, later[0])


# --- e. the same change enqueued twice --------------------------------------------------------------------------
def test_e_the_same_change_enqueued_twice_before_sending_is_sent_once(sandbox, webhook_log):
    config, audience = connect_webhook(sandbox, "twice")
    profiles = make_profiles(10)
    changes = Changes(config)
    changes.enter(audience, profiles)
    changes.enter(audience, profiles)
    drain_until_settled(config)
    summary = check_webhook_run(webhook_log, "twice", changes)
    assert summary.receipts == 10 and not summary.duplicates
    assert {r.delivery_id for r in webhook_log.receipts("twice")} == {c.delivery_id for c in changes.items[10:]}


def test_e_the_same_change_enqueued_while_it_is_sent_goes_out_again_in_order(sandbox, webhook_log, logs):
    config, audience = connect_webhook(sandbox, "inflight")
    profiles = make_profiles(10)
    changes = Changes(config)
    fault(sandbox, "inflight", fault="slow", delay_s=1.0, count=10)
    changes.enter(audience, profiles)
    worker = dispatch_command("--config", str(config.pk), env=worker_env(), logs=logs)
    wait_for(lambda: webhook_log.count("inflight") >= 10, 20, lambda: f"nothing in flight: {worker.stderr()}")
    changes.enter(audience, profiles)  # the same change again while the first is at the partner
    worker.process.wait(timeout=20)
    drain_until_settled(config)
    summary = check_webhook_run(webhook_log, "inflight", changes)
    assert summary.receipts == 20 and not summary.duplicates  # twice each, in enqueue order (checked above)


def test_e_a_change_enqueued_while_the_older_one_fails_is_never_overtaken(sandbox, webhook_log, logs):
    """The older change's send fails (503, retried later) while the producer's transaction that enqueued the newer
    one is still open, so the worker cannot see the newer row when it schedules the retry: the retry must not
    follow the newer change."""
    config, audience = connect_webhook(sandbox, "overtake")
    profiles = make_profiles(10)
    changes = Changes(config)
    fault(sandbox, "overtake", fault="server_error", status=503, delay_s=0.5, count=10)
    changes.enter(audience, profiles)
    # Its retries come 1 to 2 s later: long after the newer changes are due.
    worker = dispatch_command("--config", str(config.pk), env=worker_env(DAP_RETRY_BASE_SECONDS=2), logs=logs)
    wait_for(lambda: webhook_log.count("overtake") >= 10, 20, lambda: f"nothing in flight: {worker.stderr()}")
    with transaction.atomic():
        changes.enter(audience, profiles[:5], atomic=False)  # the same change again
        changes.enter(audience, profiles[5:], "remove", atomic=False)  # or a newer one
        wait_for(lambda: webhook_log.answered("overtake") >= 10, 10, "the partner did not answer")
        time.sleep(0.5)  # the worker writes its retries (PostgreSQL; SQLite's write waits for this commit)
    worker.process.wait(timeout=20)
    drain_until_settled(config)
    summary = check_webhook_run(webhook_log, "overtake", changes)
    assert not summary.duplicates


# --- f. several worker processes on one configuration -----------------------------------------------------------
@postgres_only("concurrent worker processes")
@pytest.mark.parametrize("workers", [2, 3])
def test_f_parallel_worker_processes_deliver_each_change_once_in_order(sandbox, webhook_log, logs, settings, workers):
    settings.DAP_DISPATCH_SHARDS = 4
    scope = f"parallel-{workers}"
    config, audience = connect_webhook(sandbox, scope)
    profiles = make_profiles(60)
    changes = Changes(config)
    env = worker_env()
    procs = [
        dispatch_command("--config", str(config.pk), "--loop", "30", env=env, logs=logs, name=f"w{i}")
        for i in range(workers)
    ]
    try:
        wait_for(lambda: all(p.stdout() for p in procs), 20, "the workers did not start")  # each reports its passes
        # A few retries on the way; their slow answers keep a shard busy while the other workers take the others.
        fault(sandbox, scope, fault="server_error", status=503, delay_s=0.1, count=10)
        rng = random.Random(workers)
        for round_ in range(8):
            changes.enter(audience, rng.sample(profiles, 30), "add" if round_ % 2 == 0 else "remove")
            time.sleep(0.15)
        wait_settled(config, 20, procs)
        all_answered(webhook_log, scope)
    finally:
        for proc in procs:
            proc.stop()
    summary = check_webhook_run(webhook_log, scope, changes)
    assert not summary.duplicates  # no interruption: every change acknowledged exactly once
    busy = [p for p in procs if any(json.loads(line)["claimed"] for line in p.stdout().splitlines() if line)]
    assert len(busy) >= 2, "the workers did not share the configuration"
