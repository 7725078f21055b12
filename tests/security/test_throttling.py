"""Rate limiting of the profile ingestion API (POST /api/v1/profiles/bulk/): DAP_PROFILE_INGEST_RATE calls per user,
counted in Django's cache (Redis when REDIS_URL is set); a refused call answers 429 with Retry-After and writes
nothing; nothing else is throttled."""

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from audiences.models import Profile
from dap import throttling
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

BULK = "/api/v1/profiles/bulk/"


def rows(*ids):
    return {"profiles": [{"external_id": i, "attributes": {"tier": "gold"}} for i in ids]}


@pytest.fixture
def rate(settings):
    settings.DAP_PROFILE_INGEST_RATE = "3/min"
    return settings


@pytest.fixture
def frozen(monkeypatch):
    """The throttle's clock, at the start of a minute (so a test never straddles two windows)."""
    now = [1_800_000_000.0]  # a multiple of 60
    monkeypatch.setattr(throttling.time, "time", lambda: now[0])
    return now


def test_the_fourth_call_in_a_minute_is_refused_and_writes_nothing(api, rate, frozen):
    for n in range(3):
        assert api.post(BULK, rows(f"ok-{n}"), format="json").status_code == 200
    frozen[0] += 15
    refused = api.post(BULK, rows("refused-1", "refused-2"), format="json")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "45"  # the rest of the window
    assert "throttled" in refused.json()["detail"].lower()
    assert not Profile.objects.filter(external_id__startswith="refused").exists()
    assert Profile.objects.count() == 3


def test_a_new_window_allows_calls_again(api, rate, frozen):
    for n in range(4):
        api.post(BULK, rows(f"p-{n}"), format="json")
    frozen[0] += 60
    assert api.post(BULK, rows("next-minute"), format="json").status_code == 200


def test_the_limit_is_per_user(api, rate, frozen):
    for n in range(3):
        assert api.post(BULK, rows(f"a-{n}"), format="json").status_code == 200
    assert api.post(BULK, rows("a-4"), format="json").status_code == 429
    other = APIClient()
    other.force_authenticate(UserFactory(username="second-feed", groups=["Marketing admin"]))
    assert other.post(BULK, rows("b-1"), format="json").status_code == 200


def test_invalid_and_refused_calls_count_too(api, rate, frozen):
    """Every call costs a slot (the limit protects the work of parsing and validating), not only the written ones."""
    assert api.post(BULK, {"profiles": "not a list"}, format="json").status_code == 400
    assert api.post(BULK, rows("x-1"), format="json").status_code == 200
    assert api.post(BULK, {"profiles": [{"attributes": {}}]}, format="json").status_code == 400
    assert api.post(BULK, rows("x-2"), format="json").status_code == 429


def test_users_without_the_right_are_refused_before_counting(viewer_api, api, rate, frozen):
    for _ in range(5):
        assert viewer_api.post(BULK, rows("v"), format="json").status_code == 403
    assert api.post(BULK, rows("m-1"), format="json").status_code == 200


def test_other_endpoints_are_not_throttled(api, rate, frozen):
    for n in range(3):
        api.post(BULK, rows(f"q-{n}"), format="json")
    assert api.post(BULK, rows("q-4"), format="json").status_code == 429
    for _ in range(10):
        assert api.get("/api/v1/profiles/").status_code == 200
        assert api.get("/api/v1/connectors/").status_code == 200
    for n in range(5):
        response = api.post("/api/v1/audiences/", {"name": f"Static {n}", "kind": "static"}, format="json")
        assert response.status_code == 201, response.content
        event = api.post("/api/v1/journeys/events/", {"event": "x", "external_id": "q-0"}, format="json")
        assert event.status_code == 201, event.content


def test_an_empty_rate_turns_the_limit_off(api, settings, frozen):
    settings.DAP_PROFILE_INGEST_RATE = ""
    for n in range(130):
        assert api.post(BULK, rows(f"free-{n}"), format="json").status_code == 200


def test_the_default_rate(api, frozen):
    assert django_settings.DAP_PROFILE_INGEST_RATE == "120/min"
    statuses = [api.post(BULK, {"profiles": []}, format="json").status_code for _ in range(121)]
    assert statuses == [200] * 120 + [429]


def test_counters_live_in_the_shared_cache(api, rate, frozen):
    from django.core.cache import cache

    api.post(BULK, rows("c-1"), format="json")
    user = api.handler._force_user
    window = int(frozen[0] // 60)
    assert cache.get(f"{throttling.KEY_PREFIX}:profile_ingest:user:{user.pk}:60:{window}") == 1
    if django_settings.REDIS_URL:
        assert "RedisCache" in django_settings.CACHES["default"]["BACKEND"]
        client = cache._cache.get_client()
        assert any(b":throttle:profile_ingest:" in k for k in client.scan_iter(match="*throttle*"))


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [("120/min", (120, 60)), ("5/s", (5, 1)), ("1000/hour", (1000, 3600)), ("10/day", (10, 86400)), ("", None)],
)
def test_rates(rate, parsed):
    assert throttling.parse_rate(rate) == parsed


def _settings_in_a_fresh_process(**env) -> str:
    code = "import dap.settings as s; print(s.CACHES['default']['BACKEND'])"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.strip() or result.stderr


def test_caches_follow_redis_url():
    assert _settings_in_a_fresh_process(REDIS_URL="redis://127.0.0.1:6379/9").endswith("RedisCache")
    assert _settings_in_a_fresh_process(REDIS_URL="").endswith("LocMemCache")
    assert "DAP_PROFILE_INGEST_RATE" in _settings_in_a_fresh_process(DAP_PROFILE_INGEST_RATE="lots")
