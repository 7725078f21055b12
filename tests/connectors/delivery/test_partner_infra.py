"""What every partner client builds on: quotas (token buckets, local and in Redis), the token cache, the client's
url()/call()/error_meaning, and Google's OAuth token exchange."""

from __future__ import annotations

import json
import threading
import time
import uuid
from urllib.parse import parse_qs

import pytest
import requests
import responses

from connectors.delivery import http, ratelimit, tokens
from connectors.delivery.client import PartnerClient
from connectors.delivery.types import CallResult, ClientConfig, ItemResult
from connectors.models import Outcome
from connectors.partners.google_oauth import GoogleOAuth, TokenError
from connectors.partners.registry import get_partner


def redis_url() -> str:
    """Redis on loopback (CI starts it), or skip."""
    import redis

    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return url


@pytest.fixture(params=["local", "redis"])
def store(request, settings):
    """Run a test with the in-process store and with Redis."""
    settings.REDIS_URL = "" if request.param == "local" else redis_url()
    return request.param


# --- quotas --------------------------------------------------------------------------------------------------
def test_token_bucket_allows_the_burst_then_paces_at_the_rate(store):
    key = f"test:{uuid.uuid4().hex}"
    quota = ratelimit.Quota(count=10, per_seconds=1.0, burst=3)
    assert [ratelimit.take(key, quota) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = ratelimit.take(key, quota)
    assert 0.05 < wait <= 0.1  # one token per 0.1 s
    time.sleep(wait + 0.02)
    assert ratelimit.take(key, quota) == 0.0
    ratelimit.reset(key)
    assert ratelimit.take(key, quota) == 0.0  # a reset bucket starts full


def test_acquire_waits_within_the_limit_and_defers_beyond_it(store):
    key = f"test:{uuid.uuid4().hex}"
    quota = ratelimit.Quota(count=1, per_seconds=0.2, burst=1)  # one call per 0.2 s
    assert ratelimit.acquire(key, quota, max_wait=0) == 0.0
    start = time.monotonic()
    assert ratelimit.acquire(key, quota, max_wait=1.0) == 0.0
    assert time.monotonic() - start >= 0.15  # it waited for the refill
    slow = ratelimit.Quota(count=1, per_seconds=60.0, burst=1)
    assert ratelimit.acquire(key + "s", slow, max_wait=0) == 0.0
    wait = ratelimit.acquire(key + "s", slow, max_wait=0.5)
    assert 55 < wait <= 60  # not taken: the caller defers by this much


def test_redis_bucket_is_shared_between_processes_threads(settings):
    """With Redis every worker shares one bucket: 8 threads with their own clients take 5 tokens in total."""
    settings.REDIS_URL = redis_url()
    key = f"test:{uuid.uuid4().hex}"
    quota = ratelimit.Quota(count=5, per_seconds=3600.0, burst=5)
    taken = []

    def worker():
        taken.append(sum(1 for _ in range(3) if ratelimit.take(key, quota) == 0.0))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(taken) == 5


# --- token cache ---------------------------------------------------------------------------------------------
def test_token_cache_round_trip_expiry_and_forget(store):
    key = tokens.cache_key("test", uuid.uuid4().hex)
    assert tokens.get(key) is None
    tokens.put(key, "ya29.secret-token", 60)
    assert tokens.get(key) == "ya29.secret-token"
    tokens.forget(key)
    assert tokens.get(key) is None
    tokens.put(key, "short", 0.05)
    time.sleep(0.1)
    assert tokens.get(key) is None


def test_tokens_are_encrypted_in_redis(settings):
    import redis

    settings.REDIS_URL = redis_url()
    key = tokens.cache_key("test", uuid.uuid4().hex)
    tokens.put(key, "ya29.very-secret-access-token", 60)
    raw = redis.Redis.from_url(settings.REDIS_URL).get(tokens.KEY_PREFIX + key)
    assert raw and b"very-secret" not in raw
    tokens._local.clear()  # another process: only Redis has it
    assert tokens.get(key) == "ya29.very-secret-access-token"
    tokens.forget(key)


def test_cache_keys_change_with_the_credentials_and_hide_them():
    a = tokens.cache_key("google", "client", "secret-1", "refresh")
    b = tokens.cache_key("google", "client", "secret-2", "refresh")
    assert a != b and "secret" not in a


# --- the client base -----------------------------------------------------------------------------------------
class _Client(PartnerClient):
    partner = get_partner("google_ads_customer_match")  # declares requests_per_minute
    error_codes = {"E1": "Known error.", "E2/7": "Known sub-error."}


def _client(override: str = "", config_id: int | None = None) -> _Client:
    config = ClientConfig(
        partner_config_id=config_id or int(uuid.uuid4().int % 10**9),
        settings={},
        secrets={},
        timeout_seconds=2.0,
        base_url_override=override,
    )
    return _Client(config, http.new_session())


def test_url_maps_every_partner_host_under_the_sandbox_override():
    assert _client().url("api.example.com", "/v1/x") == "https://api.example.com/v1/x"
    assert (
        _client("http://127.0.0.1:8765/c/demo/").url("api.example.com", "/v1/x")
        == "http://127.0.0.1:8765/c/demo/api.example.com/v1/x"
    )


def test_error_meaning_looks_up_exact_code_then_head_then_http_class():
    assert _Client.error_meaning("E1") == "Known error."
    assert _Client.error_meaning("E2/7") == "Known sub-error."
    assert _Client.error_meaning("E1/99") == "Known error."
    assert "429" in _Client.error_meaning("http_429")
    assert "server error" in _Client.error_meaning("http_503")
    assert "quota" in _Client.error_meaning("rate_limited")
    assert _Client.error_meaning("unknown") == ""


def _ok(timed) -> CallResult:
    return CallResult([0, 1], [ItemResult(Outcome.ADDED)] * 2, status_code=timed.response.status_code)


@responses.activate
def test_call_classifies_an_answer_and_maps_transport_failures():
    client = _client()
    responses.post("https://api.example.com/ok", json={}, status=200)
    assert client.call([0, 1], "POST", "https://api.example.com/ok", _ok, json={}).status_code == 200
    responses.post("https://api.example.com/slow", body=requests.exceptions.ReadTimeout("read timed out"))
    timed_out = client.call([0, 1], "POST", "https://api.example.com/slow", _ok)
    assert [r.outcome for r in timed_out.results] == [Outcome.TIMEOUT] * 2 and timed_out.results[0].retryable
    responses.post("https://api.example.com/down", body=requests.exceptions.ConnectionError("refused"))
    down = client.call([0, 1], "POST", "https://api.example.com/down", _ok)
    assert down.partner_code == "connection_error" and down.results[0].retryable


def test_call_defers_items_when_the_quota_is_spent(settings):
    settings.REDIS_URL = ""
    settings.DAP_RATE_LIMIT_MAX_WAIT_SECONDS = 0.0
    client = _client()
    quota = client.quota
    assert quota is not None and quota.per_seconds == 60.0
    for _ in range(quota.capacity):  # spend the burst
        assert ratelimit.take(client.quota_key(), quota) == 0.0
    deferred = client.call([0, 1], "POST", "https://api.example.com/never", _ok)
    assert deferred.status_code is None and deferred.partner_code == "rate_limited"
    assert deferred.retry_after and deferred.retry_after > 0
    assert all(r.retryable and r.partner_code == "rate_limited" for r in deferred.results)


# --- Google OAuth --------------------------------------------------------------------------------------------
TOKEN_URL = "https://oauth2.googleapis.com/token"


def _google(secret="GOCSPX-secret-value", refresh="1//refresh-token-value-0123456789"):
    config = ClientConfig(
        partner_config_id=1,
        settings={"client_id": "123-abc.apps.googleusercontent.com"},
        secrets={"client_secret": secret, "refresh_token": refresh},
        timeout_seconds=2.0,
    )
    return GoogleOAuth(_Client(config, http.new_session()), "https://www.googleapis.com/auth/display-video")


@responses.activate
def test_google_access_token_is_exchanged_once_and_cached(settings):
    settings.REDIS_URL = ""
    responses.post(TOKEN_URL, json={"access_token": "ya29.first", "expires_in": 3599, "token_type": "Bearer"})
    oauth = _google(refresh="1//refresh-" + uuid.uuid4().hex)
    assert oauth.headers() == {"Authorization": "Bearer ya29.first"}
    assert oauth.access_token() == "ya29.first"
    assert len(responses.calls) == 1
    form = parse_qs(responses.calls[0].request.body)
    assert form["grant_type"] == ["refresh_token"] and form["client_id"] == ["123-abc.apps.googleusercontent.com"]
    oauth.forget()
    responses.post(TOKEN_URL, json={"access_token": "ya29.second", "expires_in": 3599})
    assert oauth.access_token() in {"ya29.first", "ya29.second"}
    assert len(responses.calls) == 2


@responses.activate
@pytest.mark.parametrize(
    ("status", "body", "code", "credentials"),
    [
        (
            400,
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
            "invalid_grant",
            True,
        ),
        (
            401,
            {"error": "invalid_client", "error_description": "The OAuth client was not found."},
            "invalid_client",
            True,
        ),
        (503, {"error": "temporarily_unavailable"}, "temporarily_unavailable", False),
    ],
)
def test_google_token_errors_say_whether_the_credentials_are_wrong(settings, status, body, code, credentials):
    settings.REDIS_URL = ""
    responses.post(TOKEN_URL, json=body, status=status)
    with pytest.raises(TokenError) as caught:
        _google(refresh="1//refresh-" + uuid.uuid4().hex).access_token()
    assert caught.value.code == f"oauth/{code}" and caught.value.credentials is credentials
    assert "refresh-" not in caught.value.message and "GOCSPX" not in caught.value.message


def test_google_token_against_the_sandbox(sandbox, settings):
    settings.REDIS_URL = ""
    config = ClientConfig(
        partner_config_id=1,
        settings={"client_id": "123-abc.apps.googleusercontent.com"},
        secrets={"client_secret": "GOCSPX-x", "refresh_token": "1//" + uuid.uuid4().hex},
        timeout_seconds=2.0,
        base_url_override=f"{sandbox.url}/c/oauth",
    )
    oauth = GoogleOAuth(_Client(config, http.new_session()), "scope")
    assert oauth.access_token().startswith("ya29.sandbox-")
    revoked = ClientConfig(**{**config.__dict__, "secrets": {"client_secret": "x", "refresh_token": "revoked-1"}})
    with pytest.raises(TokenError) as caught:
        GoogleOAuth(_Client(revoked, http.new_session()), "scope").access_token()
    assert caught.value.credentials
    stats = requests.get(f"{sandbox.url}/_sandbox/stats?scope=oauth", timeout=5).json()["oauth"]["google_oauth"]
    assert stats["issued"] == 1 and stats["errors"] == 1
    assert json.dumps(stats)  # plain JSON
