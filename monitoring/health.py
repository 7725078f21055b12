"""Health checks for /healthz (selectors: read-only). Each check has its own time limit and exception guard, so one
failing dependency is reported as failed while the others are still checked and reported.

- database: a trivial query answers (its milliseconds).
- broker: Redis answers PING when REDIS_URL is set; else django-q2's ORM broker table is readable.
- worker: the newest WorkerHeartbeat (written every minute by the schedule "dap: worker heartbeat") is younger than
  DAP_HEARTBEAT_MAX_AGE_SECONDS.

Answers never carry host names, URLs or exception messages (the endpoint is public): a failure says the exception's
type; the detail goes to the (redacted) log.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from monitoring.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

# Per-check time limits, in seconds. The database connection itself gives up after `connect_timeout` (5 s by
# default on PostgreSQL, see settings).
QUERY_TIMEOUT_SECONDS = 2.0
REDIS_TIMEOUT_SECONDS = 1.0


@contextmanager
def bounded_queries(seconds: float):
    """A transaction whose statements PostgreSQL cancels after `seconds` (SET LOCAL: ends with the transaction, so
    the pooled connection keeps its normal setting). SQLite has no statement timeout; its reads do not wait."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {int(seconds * 1000)}")
        yield


def iso_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 2)


def _failed(check: str, exc: BaseException, start: float, **fields) -> dict:
    logger.warning("healthz: %s check failed: %s: %s", check, type(exc).__name__, exc)
    return {"status": "fail", "error": type(exc).__name__, "ms": _ms(start), **fields}


def check_database() -> dict:
    start = time.monotonic()
    try:
        with bounded_queries(QUERY_TIMEOUT_SECONDS), connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return _failed("database", exc, start, vendor=connection.vendor)
    return {"status": "ok", "vendor": connection.vendor, "ms": _ms(start)}


_redis_clients: dict[str, object] = {}
_redis_lock = threading.Lock()


def _redis_client(url: str):
    """One client (its own small connection pool, short socket timeouts) per URL and process."""
    with _redis_lock:
        client = _redis_clients.get(url)
        if client is None:
            import redis

            client = _redis_clients[url] = redis.Redis.from_url(
                url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                max_connections=4,
            )
        return client


def _queue_name() -> str:
    from django_q.conf import Conf

    return Conf.CLUSTER_NAME


def check_broker(*, database_ok: bool = True) -> dict:
    """django-q2's broker: Redis (PING, then the task list's length) or the ORM broker's table (OrmQ)."""
    start = time.monotonic()
    if settings.REDIS_URL:
        try:
            client = _redis_client(settings.REDIS_URL)
            client.ping()
            queued = client.llen(f"django_q:{_queue_name()}:q")
        except Exception as exc:
            return _failed("broker", exc, start, broker="redis")
        return {"status": "ok", "broker": "redis", "queued": int(queued), "ms": _ms(start)}
    if not database_ok:
        return {"status": "fail", "broker": "orm", "error": "database unavailable", "ms": 0.0}
    try:
        from django_q.models import OrmQ

        with bounded_queries(QUERY_TIMEOUT_SECONDS):
            queued = OrmQ.objects.count()
    except Exception as exc:
        return _failed("broker", exc, start, broker="orm")
    return {"status": "ok", "broker": "orm", "queued": queued, "ms": _ms(start)}


def heartbeat_state(now: datetime | None = None) -> dict:
    """The newest worker heartbeat and how many workers beat within DAP_HEARTBEAT_MAX_AGE_SECONDS (one query; never
    host names)."""
    now = now or timezone.now()
    max_age = settings.DAP_HEARTBEAT_MAX_AGE_SECONDS
    row = WorkerHeartbeat.objects.aggregate(
        last=Max("beat_at"), alive=Count("id", filter=Q(beat_at__gte=now - timedelta(seconds=max_age)))
    )
    last = row["last"]
    age = max(0.0, (now - last).total_seconds()) if last else None
    return {"last_beat_at": last, "age_seconds": age, "alive": row["alive"] or 0, "max_age_seconds": max_age}


def check_worker(*, database_ok: bool = True) -> dict:
    start = time.monotonic()
    max_age = settings.DAP_HEARTBEAT_MAX_AGE_SECONDS
    if not database_ok:
        return {"status": "fail", "error": "database unavailable", "max_age_seconds": max_age, "ms": 0.0}
    try:
        with bounded_queries(QUERY_TIMEOUT_SECONDS):
            state = heartbeat_state()
    except Exception as exc:
        return _failed("worker", exc, start, max_age_seconds=max_age)
    age = state["age_seconds"]
    result = {
        "status": "ok" if age is not None and age <= max_age else "fail",
        "age_seconds": round(age, 1) if age is not None else None,
        "last_beat_at": iso_utc(state["last_beat_at"]),
        "workers_alive": state["alive"],
        "max_age_seconds": max_age,
        "ms": _ms(start),
    }
    if age is None:
        result["error"] = "no heartbeat yet"
    elif age > max_age:
        result["error"] = "heartbeat too old"
    return result


def health() -> tuple[bool, dict]:
    """All checks; (all ok, the /healthz body). A check that cannot run because the database is down says so
    instead of waiting for the database a second time."""
    database = check_database()
    database_ok = database["status"] == "ok"
    checks = {
        "database": database,
        "broker": check_broker(database_ok=database_ok),
        "worker": check_worker(database_ok=database_ok),
    }
    ok = all(check["status"] == "ok" for check in checks.values())
    return ok, {"status": "ok" if ok else "fail", "checks": checks}
