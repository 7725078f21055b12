"""GET /healthz: database, broker and worker heartbeat, each reported on its own; 200 only when all are ok."""

import socket
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone
from django_q.models import OrmQ

from monitoring import health
from monitoring.models import WorkerHeartbeat
from monitoring.tasks import heartbeat

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_url(settings):
    """Points REDIS_URL elsewhere for one test, restored before the suite's fixtures clean the real Redis up."""
    original = settings.REDIS_URL

    def use(url: str) -> None:
        settings.REDIS_URL = url

    yield use
    settings.REDIS_URL = original


def beat(seconds_ago: float, host: str = "worker-a.internal") -> WorkerHeartbeat:
    return WorkerHeartbeat.objects.create(host=host, pid=42, beat_at=timezone.now() - timedelta(seconds=seconds_ago))


def get(client):
    response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    return response, response.json()


def test_all_ok_without_login(client, settings):
    beat(30)
    beat(400, host="old-worker.internal")
    response, body = get(client)
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "worker"}
    database, broker, worker = body["checks"]["database"], body["checks"]["broker"], body["checks"]["worker"]
    assert database["status"] == "ok" and database["ms"] >= 0
    assert broker == {**broker, "status": "ok", "broker": "redis" if settings.REDIS_URL else "orm"}
    assert isinstance(broker["queued"], int)
    assert worker["status"] == "ok"
    assert 29 <= worker["age_seconds"] <= 60
    assert worker["last_beat_at"].endswith("Z")
    assert worker["workers_alive"] == 1
    assert worker["max_age_seconds"] == 180
    # Host names stay private: load balancers and the internet may read this.
    assert "internal" not in response.content.decode()


@pytest.mark.parametrize("seconds_ago", [181, 3600])
def test_stale_heartbeat_is_503_with_the_other_checks_reported(client, seconds_ago):
    beat(seconds_ago)
    response, body = get(client)
    assert response.status_code == 503
    assert body["status"] == "fail"
    worker = body["checks"]["worker"]
    assert worker["status"] == "fail" and worker["error"] == "heartbeat too old"
    assert worker["age_seconds"] >= seconds_ago and worker["workers_alive"] == 0
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["broker"]["status"] == "ok"


def test_max_age_is_a_setting(client, settings):
    settings.DAP_HEARTBEAT_MAX_AGE_SECONDS = 20
    beat(30)
    response, body = get(client)
    assert response.status_code == 503
    assert body["checks"]["worker"]["max_age_seconds"] == 20


def test_no_heartbeat_at_all_is_503(client):
    response, body = get(client)
    assert response.status_code == 503
    assert body["checks"]["worker"] == {**body["checks"]["worker"], "status": "fail", "error": "no heartbeat yet"}
    assert body["checks"]["worker"]["age_seconds"] is None
    assert body["checks"]["worker"]["last_beat_at"] is None


def test_unreachable_redis_fails_the_broker_check_only(client, broker_url):
    beat(10)
    # Nothing listens on port 1 of loopback: refused at once.
    broker_url("redis://:hunter2-redis-password@127.0.0.1:1/0")
    response, body = get(client)
    assert response.status_code == 503
    broker = body["checks"]["broker"]
    assert broker["status"] == "fail" and broker["broker"] == "redis" and broker["error"]
    assert "hunter2" not in response.content.decode() and "127.0.0.1" not in response.content.decode()
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["worker"]["status"] == "ok"


def test_failing_orm_broker_table_fails_the_broker_check_only(client, broker_url, monkeypatch):
    broker_url("")
    beat(10)

    def broken(*args, **kwargs):
        raise OperationalError("no such table: django_q_ormq")

    monkeypatch.setattr(OrmQ.objects, "count", broken)
    response, body = get(client)
    assert response.status_code == 503
    assert body["checks"]["broker"] == {**body["checks"]["broker"], "status": "fail", "broker": "orm"}
    assert body["checks"]["broker"]["error"] == "OperationalError"
    assert "django_q_ormq" not in response.content.decode()  # messages go to the log, not to the public answer
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["worker"]["status"] == "ok"


def test_redis_ping_failure_is_reported(client, broker_url, monkeypatch):
    broker_url("redis://127.0.0.1:1/0")
    beat(10)

    class Down:
        def ping(self):
            raise TimeoutError("timed out")

    monkeypatch.setattr(health, "_redis_client", lambda url: Down())
    response, body = get(client)
    assert response.status_code == 503
    assert body["checks"]["broker"]["error"] == "TimeoutError"
    assert body["checks"]["worker"]["status"] == "ok"


def test_database_down_is_503_never_500(client, broker_url, monkeypatch):
    broker_url("")

    @contextmanager
    def unreachable(seconds):
        raise OperationalError("could not connect to server")
        yield

    monkeypatch.setattr(health, "bounded_queries", unreachable)
    response, body = get(client)
    assert response.status_code == 503
    checks = body["checks"]
    assert checks["database"]["status"] == "fail" and checks["database"]["error"] == "OperationalError"
    # The checks that need the database say so instead of trying it again.
    assert checks["broker"] == {**checks["broker"], "status": "fail", "error": "database unavailable"}
    assert checks["worker"] == {**checks["worker"], "status": "fail", "error": "database unavailable"}


def test_only_get_and_head(client):
    beat(1)
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


def test_heartbeat_task_writes_then_updates_its_row(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "worker-1")
    assert heartbeat() == "worker-1"
    first = WorkerHeartbeat.objects.get()
    WorkerHeartbeat.objects.filter(pk=first.pk).update(beat_at=timezone.now() - timedelta(minutes=10))
    heartbeat()
    row = WorkerHeartbeat.objects.get()
    assert row.pk == first.pk and row.host == "worker-1"
    assert timezone.now() - row.beat_at < timedelta(seconds=5)
    monkeypatch.setattr(socket, "gethostname", lambda: "worker-2")
    heartbeat()
    assert WorkerHeartbeat.objects.count() == 2
