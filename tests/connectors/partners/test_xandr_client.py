"""Xandr client: login and token reuse, the Instant Audience wire format, warnings, splitting, the Batch Segment
Service flow, error classification and the connection test.

HTTP is mocked with `responses`; fixture payloads under fixtures/xandr/ follow the shapes in Xandr's documentation
(Authentication Service, API Semantics, Instant Audience Service, Batch Segment Service, Throttling).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from connectors.delivery import http, ratelimit, tokens
from connectors.delivery.client import client_class
from connectors.delivery.types import Action, ClientConfig, Item
from connectors.models import Outcome
from connectors.partners.xandr import client as xandr
from connectors.partners.xandr.client import ERROR_CODES, Client, normalize_uid

FIXTURES = Path(__file__).parent / "fixtures" / "xandr"
USERNAME = "dap_api_user"
PASSWORD = "Xandr-Client-Test-Passw0rd-7713!"
TOKEN = "hbapi:191145:5a2f1b3c4d5e6f:nym2"
NEW_TOKEN = "hbapi:191146:77aa88bb99cc00:nym2"
MEMBER = 1234
SEGMENT = "123456"
AUTH_URL = "https://api.appnexus.com/auth"
RT_URL = "https://streaming-data.appnexus.com/rt-segment"
BATCH_URL = "https://api.appnexus.com/batch-segment"
UPLOAD_URL = "https://data-api-gslb.adnxs.net/segment-upload/qGQhSZ1qvd2hSsJ9svTz32qgxq7z5b1439315424"
MEMBER_URL = "https://api.appnexus.com/member"
SEGMENT_URL = "https://api.appnexus.com/segment"
UID_A = "5727816213491965430"
UID_B = "5727816213491965431"
UID_C = "5727816213491965432"
UID_D = "5727816213491965433"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def make_client(*, password: str = PASSWORD, timeout: float = 5.0, override: str = "", reset: bool = True, **settings):
    config = ClientConfig(
        partner_config_id=1,
        settings={"username": USERNAME, "member_id": MEMBER, "mode": "realtime", "expiration_minutes": 0, **settings},
        secrets={"password": password} if password else {},
        timeout_seconds=timeout,
        base_url_override=override,
    )
    client = Client(config, http.new_session())
    client.batch_poll_interval = 0.0
    if reset:
        tokens.forget(client._token_key)
        ratelimit.reset(client._login_key)
        ratelimit.reset(client.quota_key())
    return client


def uid_item(index: int, uid: str, segment: str = SEGMENT, action: str = Action.ADD, slot: str = "xandr_uid") -> Item:
    return Item(profile_id=index, action=action, slot=slot, identifier=uid, partner_audience_id=segment)


def sent(call) -> dict:
    return json.loads(call.request.body)


def by_index(calls) -> dict:
    """item index -> (ItemResult, CallResult); each item must appear exactly once."""
    out = {}
    for call in calls:
        for index, result in zip(call.item_indices, call.results, strict=True):
            assert index not in out, "each item gets exactly one result"
            out[index] = (result, call)
    return out


def calls_to(rsps, url: str) -> list:
    return [c for c in rsps.calls if c.request.url.split("?")[0] == url]


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def login_ok(rsps, token: str = TOKEN):
    rsps.add(responses.POST, AUTH_URL, json={"response": {"status": "OK", "token": token}})


# --- registry and declared limits ---------------------------------------------------------------------------------
def test_dispatcher_finds_the_client():
    assert client_class("xandr") is Client
    assert Client.partner.key == "xandr"
    assert Client.partner.limits.requests_per_minute == 6_000


def test_quota_is_per_second_and_per_member():
    realtime, batch = make_client(), make_client(mode="batch")
    assert (realtime.quota.count, realtime.quota.per_seconds) == (100, 1.0)
    assert batch.quota is xandr.BATCH_QUOTA
    assert realtime.quota_key() != batch.quota_key()
    assert str(MEMBER) in realtime.quota_key()
    # The login bucket lets no 5-minute window hold more than Xandr's 10 logins.
    assert xandr.LOGIN_QUOTA.capacity + xandr.LOGIN_QUOTA.count <= 10


# --- identifier normalisation vectors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "sent_value"),
    [
        ("5727816213491965430", "5727816213491965430"),
        ("  5727816213491965430\n", "5727816213491965430"),
        ("000123", "123"),
        ("18446744073709551615", "18446744073709551615"),  # 2**64 - 1, the largest id
        ("0", ""),  # the id Xandr gives opted-out browsers
        ("000", ""),
        ("", ""),
        ("   ", ""),
        ("18446744073709551616", ""),  # 2**64
        ("-5", ""),
        ("12.5", ""),
        ("5727816213491965430abc", ""),
        ("\u0661\u0662\u0663", ""),  # Arabic-Indic digits are digits to Python, not to Xandr
    ],
)
def test_uid_vectors(raw, sent_value):
    assert normalize_uid(raw) == sent_value


# --- add / remove wire format --------------------------------------------------------------------------------------
def test_add_logs_in_then_posts_rt_segment(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_ok.json"))

    calls = make_client().send(Action.ADD, [uid_item(0, UID_A), uid_item(1, " 000" + UID_B)])

    auth, rt = rsps.calls
    assert auth.request.url == AUTH_URL
    assert json.loads(auth.request.body) == {"auth": {"username": USERNAME, "password": PASSWORD}}
    assert auth.request.headers["Content-Type"] == "application/json"
    assert rt.request.url == RT_URL
    assert rt.request.headers["Authorization"] == TOKEN  # the raw token, no scheme
    assert rt.request.headers["Content-Type"] == "application/json"
    assert rt.request.body == (
        b'{"rt_segment":['
        b'{"user_id":"5727816213491965430","domain":null,"seg_block":[{"seg_id":123456,"member_id":1234,"expiration":0}]},'
        b'{"user_id":"5727816213491965431","domain":null,"seg_block":[{"seg_id":123456,"member_id":1234,"expiration":0}]}'
        b"]}"
    )
    assert len(calls) == 1
    call = calls[0]
    assert call.item_indices == [0, 1]
    assert all(r.outcome == Outcome.ADDED and not r.retryable for r in call.results)
    assert call.status_code == 200 and call.partner_code == ""
    assert call.snippet == "users_in_request=2 segments_in_request=2 warnings=0 flagged=0"


def test_expiration_setting_is_sent_on_add(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_ok.json"))
    make_client(expiration_minutes=1440).send(Action.ADD, [uid_item(0, UID_A)])
    assert sent(rsps.calls[1])["rt_segment"][0]["seg_block"] == [
        {"seg_id": 123456, "member_id": 1234, "expiration": 1440}
    ]


def test_remove_sends_expiration_minus_one(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_ok.json"))
    calls = make_client(expiration_minutes=1440).send(Action.REMOVE, [uid_item(0, UID_A, action=Action.REMOVE)])
    assert sent(rsps.calls[1])["rt_segment"][0]["seg_block"][0]["expiration"] == -1
    assert calls[0].results[0].outcome == Outcome.REMOVED


def test_update_is_an_add(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_ok.json"))
    calls = make_client().send(Action.UPDATE, [uid_item(0, UID_A, action=Action.UPDATE)])
    assert sent(rsps.calls[1])["rt_segment"][0]["seg_block"][0]["expiration"] == 0
    assert calls[0].results[0].outcome == Outcome.ADDED


def test_segments_by_code_and_defaults(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_ok.json"))
    items = [uid_item(0, UID_A, segment="cart_abandoners"), uid_item(1, UID_B, segment=""), uid_item(2, UID_C, "42")]
    make_client(default_segment_id=98765).send(Action.ADD, items)
    blocks = [u["seg_block"][0] for u in sent(rsps.calls[1])["rt_segment"]]
    assert blocks == [
        {"seg_code": "cart_abandoners", "member_id": 1234, "expiration": 0},
        {"seg_id": 98765, "member_id": 1234, "expiration": 0},
        {"seg_id": 42, "member_id": 1234, "expiration": 0},
    ]


def test_default_segment_code_is_sent_with_the_member(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_ok.json"))
    make_client(default_segment_code="rt_default").send(Action.ADD, [uid_item(0, UID_A, segment="")])
    assert sent(rsps.calls[1])["rt_segment"][0]["seg_block"] == [
        {"seg_code": "rt_default", "member_id": 1234, "expiration": 0}
    ]


def test_items_that_cannot_be_sent(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_ok.json"))
    items = [
        uid_item(0, UID_A),
        uid_item(1, "0"),
        uid_item(2, "not-a-uid"),
        uid_item(3, UID_B, segment=""),  # no default segment configured
        uid_item(4, UID_C, segment="bad segment!"),
        uid_item(5, "user@example.com", slot="email"),
    ]
    results = by_index(make_client().send(Action.ADD, items))
    assert len(results) == 6
    assert results[0][0].outcome == Outcome.ADDED
    expected = {1: "invalid_identifier", 2: "invalid_identifier", 3: "no_partner_audience_id", 4: "invalid_segment_id",
                5: "unsupported_slot"}  # fmt: skip
    for index, code in expected.items():
        result, call = results[index]
        assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, code, False)
        assert call.status_code is None and call.snippet.startswith("not sent")
    assert [u["user_id"] for u in sent(rsps.calls[1])["rt_segment"]] == [UID_A]


def test_nothing_valid_means_no_call(rsps):
    calls = make_client().send(Action.ADD, [uid_item(0, "0"), uid_item(1, "")])
    assert len(rsps.calls) == 0
    assert {r.partner_code for c in calls for r in c.results} == {"invalid_identifier"}


# --- splitting -----------------------------------------------------------------------------------------------------
def test_splits_at_1000_users(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_ok.json"))
    items = [uid_item(i, str(10**18 + i)) for i in range(2_500)]
    calls = make_client().send(Action.ADD, items)
    sizes = [len(sent(c)["rt_segment"]) for c in calls_to(rsps, RT_URL)]
    assert sizes == [1_000, 1_000, 500]
    assert len(calls) == 3 and sorted(by_index(calls)) == list(range(2_500))
    assert calls[1].item_indices == list(range(1_000, 2_000))
    assert len(calls_to(rsps, AUTH_URL)) == 1  # one login for the three requests


def test_splits_below_the_body_limit(rsps, monkeypatch):
    monkeypatch.setattr(xandr, "MAX_BODY_BYTES", 400)
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_ok.json"))
    calls = make_client().send(Action.ADD, [uid_item(i, str(10**18 + i)) for i in range(10)])
    bodies = [c.request.body for c in calls_to(rsps, RT_URL)]
    assert len(bodies) > 1 and all(len(b) < 400 for b in bodies)
    assert sum(len(json.loads(b)["rt_segment"]) for b in bodies) == 10
    assert sorted(by_index(calls)) == list(range(10))


# --- token cache and re-authentication -----------------------------------------------------------------------------
def test_token_is_cached_across_sends_and_clients(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_ok.json"))
    make_client().send(Action.ADD, [uid_item(0, UID_A)])
    make_client(reset=False).send(Action.ADD, [uid_item(0, UID_B)])
    assert len(calls_to(rsps, AUTH_URL)) == 1
    assert [c.request.headers["Authorization"] for c in calls_to(rsps, RT_URL)] == [TOKEN, TOKEN]


def test_new_password_means_new_login(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_ok.json"))
    make_client().send(Action.ADD, [uid_item(0, UID_A)])
    make_client(password=PASSWORD + "-renewed").send(Action.ADD, [uid_item(0, UID_A)])
    assert len(calls_to(rsps, AUTH_URL)) == 2


def test_noauth_triggers_one_login_and_one_retry(rsps):
    client = make_client()
    tokens.put(client._token_key, "hbapi:stale:000000:nym2", 600)
    login_ok(rsps, NEW_TOKEN)
    rsps.add(responses.POST, RT_URL, json=fixture("error_noauth_session.json"), status=401)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_ok.json"))

    calls = client.send(Action.ADD, [uid_item(0, UID_A)])

    rt_calls = calls_to(rsps, RT_URL)
    assert [c.request.headers["Authorization"] for c in rt_calls] == ["hbapi:stale:000000:nym2", NEW_TOKEN]
    assert len(calls_to(rsps, AUTH_URL)) == 1
    assert calls[0].results[0].outcome == Outcome.ADDED and not calls[0].credentials_invalid
    assert tokens.get(client._token_key) == NEW_TOKEN


def test_noauth_again_after_a_fresh_login_is_invalid_credentials(rsps):
    client = make_client()
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("error_noauth_session.json"), status=401)
    calls = client.send(Action.ADD, [uid_item(0, UID_A), uid_item(1, UID_B)])
    assert len(calls_to(rsps, AUTH_URL)) == 2 and len(calls_to(rsps, RT_URL)) == 2  # one re-login, one retry only
    call = calls[0]
    assert call.credentials_invalid and call.partner_code == "NOAUTH"
    assert {(r.outcome, r.partner_code, r.retryable) for r in call.results} == {
        (Outcome.INVALID_CREDENTIALS, "NOAUTH", False)
    }
    assert tokens.get(client._token_key) is None


def test_a_token_renewed_by_another_worker_is_used_without_login(rsps):
    client = make_client()
    tokens.put(client._token_key, "hbapi:stale:000000:nym2", 600)

    def refused_then_renewed(request):
        tokens.put(client._token_key, NEW_TOKEN, 600)  # meanwhile, another worker logged in
        return 401, {}, json.dumps(fixture("error_noauth_session.json"))

    rsps.add_callback(responses.POST, RT_URL, callback=refused_then_renewed)
    calls = client.send(Action.ADD, [uid_item(0, UID_A)])
    assert len(calls_to(rsps, AUTH_URL)) == 0
    assert [c.request.headers["Authorization"] for c in calls_to(rsps, RT_URL)][1] == NEW_TOKEN
    assert calls[0].results[0].outcome == Outcome.INVALID_CREDENTIALS  # the mock keeps refusing


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("auth_noauth.json", "NOAUTH"),
        ("auth_noauth_disabled.json", "NOAUTH_DISABLED"),
        ("auth_noauth_expired.json", "NOAUTH_EXPIRED"),
    ],
)
def test_refused_login_is_invalid_credentials(rsps, name, code):
    rsps.add(responses.POST, AUTH_URL, json=fixture(name), status=401)
    calls = make_client().send(Action.ADD, [uid_item(0, UID_A), uid_item(1, UID_B)])
    assert len(calls_to(rsps, RT_URL)) == 0
    call = calls[0]
    assert call.credentials_invalid and call.partner_code == code and call.status_code == 401
    assert {(r.outcome, r.retryable) for r in call.results} == {(Outcome.INVALID_CREDENTIALS, False)}
    assert PASSWORD not in call.snippet and PASSWORD not in call.results[0].message


def test_missing_password_is_invalid_credentials_without_a_call(rsps):
    calls = make_client(password="").send(Action.ADD, [uid_item(0, UID_A)])
    assert len(rsps.calls) == 0
    assert calls[0].credentials_invalid and calls[0].partner_code == "no_credentials"


def test_login_limit_defers_instead_of_logging_in(rsps, settings):
    settings.DAP_RATE_LIMIT_MAX_WAIT_SECONDS = 0
    client = make_client()
    for _ in range(xandr.LOGIN_QUOTA.capacity):
        assert ratelimit.take(client._login_key, xandr.LOGIN_QUOTA) == 0
    calls = client.send(Action.ADD, [uid_item(0, UID_A)])
    assert len(rsps.calls) == 0
    result = calls[0].results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "login_rate_limited", True)
    assert calls[0].retry_after and calls[0].retry_after > 0 and not calls[0].credentials_invalid


def test_login_throttled_by_xandr_is_retryable(rsps):
    rsps.add(
        responses.POST, AUTH_URL, json=fixture("error_rate_exceeded.json"), status=429, headers={"Retry-After": "30"}
    )
    call = make_client().send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert (call.partner_code, call.retry_after, call.results[0].retryable) == ("RATE_EXCEEDED", 30.0, True)
    assert not call.credentials_invalid


def test_login_timeout_and_connection_error(rsps):
    rsps.add(responses.POST, AUTH_URL, body=requests.exceptions.ConnectTimeout("timed out"))
    result = make_client().send(Action.ADD, [uid_item(0, UID_A)])[0].results[0]
    assert (result.outcome, result.retryable) == (Outcome.TIMEOUT, True)
    rsps.replace(responses.POST, AUTH_URL, body=requests.exceptions.ConnectionError("refused"))
    call = make_client().send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert (call.results[0].outcome, call.partner_code, call.results[0].retryable) == (
        Outcome.OTHER_ERROR,
        "connection_error",
        True,
    )


# --- error classification -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "status", "code", "retryable"),
    [
        ("error_unauth.json", 403, "UNAUTH", False),
        ("error_syntax.json", 400, "SYNTAX", False),
        ("error_integrity.json", 400, "INTEGRITY", False),
        ("error_notfound.json", 404, "NOTFOUND", False),
        ("error_limit.json", 400, "LIMIT", True),
        ("error_system.json", 500, "SYSTEM", True),
    ],
)
def test_error_ids(rsps, name, status, code, retryable):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture(name), status=status)
    call = make_client().send(Action.ADD, [uid_item(0, UID_A), uid_item(1, UID_B)])[0]
    assert call.partner_code == code and call.status_code == status and not call.credentials_invalid
    assert {(r.outcome, r.partner_code, r.retryable) for r in call.results} == {
        (Outcome.PARTNER_ERROR, code, retryable)
    }
    assert fixture(name)["response"]["error"][:20] in call.results[0].message
    assert len(calls_to(rsps, RT_URL)) == 1  # only NOAUTH is retried at once


def test_429_rate_exceeded_honours_retry_after(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("error_rate_exceeded.json"), status=429, headers={"Retry-After": "7"})
    call = make_client().send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert (call.partner_code, call.retry_after, call.status_code) == ("RATE_EXCEEDED", 7.0, 429)
    assert call.results[0].retryable and call.results[0].outcome == Outcome.PARTNER_ERROR


def test_bare_429_and_5xx_without_json(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, body="Too Many Requests", status=429, headers={"Retry-After": "3"})
    call = make_client().send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert (call.partner_code, call.retry_after, call.results[0].retryable) == ("http_429", 3.0, True)
    rsps.replace(responses.POST, RT_URL, body="<html>Bad gateway</html>", status=502)
    call = make_client().send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert (call.partner_code, call.results[0].retryable) == ("http_502", True)


def test_other_4xx_without_json_is_final(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, body="Method Not Allowed", status=405)
    call = make_client().send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert (call.partner_code, call.results[0].retryable) == ("http_405", False)


def test_unreadable_success_is_retried(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, body="OK", status=200)
    call = make_client().send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert (call.results[0].partner_code, call.results[0].retryable) == ("invalid_response", True)


def test_timeout_and_connection_error(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    call = make_client().send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert (call.results[0].outcome, call.results[0].retryable, call.status_code) == (Outcome.TIMEOUT, True, None)
    rsps.replace(responses.POST, RT_URL, body=requests.exceptions.ConnectionError("connection reset"))
    call = make_client().send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert (call.results[0].outcome, call.partner_code, call.results[0].retryable) == (
        Outcome.OTHER_ERROR,
        "connection_error",
        True,
    )


# --- warnings: per-user partner errors -----------------------------------------------------------------------------
def test_warnings_naming_a_user_make_it_a_partner_error(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_warnings.json"))
    call = make_client().send(Action.ADD, [uid_item(0, UID_A), uid_item(1, UID_B, segment="900000001")])[0]
    ok, bad = call.results
    assert ok.outcome == Outcome.ADDED
    assert (bad.outcome, bad.partner_code, bad.retryable) == (Outcome.PARTNER_ERROR, "rt_warning", False)
    assert "No valid segments" in bad.message and UID_B not in bad.message
    assert call.partner_code == "rt_warning"
    assert call.snippet == "users_in_request=1 segments_in_request=1 warnings=2 flagged=1"


def test_unwrapped_answer_with_no_valid_rt_segment(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, RT_URL, json=fixture("rt_no_valid_unwrapped.json"))
    call = make_client().send(Action.ADD, [uid_item(0, UID_A), uid_item(1, UID_B), uid_item(2, UID_C)])[0]
    assert [r.partner_code for r in call.results] == ["rt_warning", "rt_warning", ""]
    assert call.results[2].outcome == Outcome.ADDED


def test_too_many_users_warning_is_retryable(rsps):
    login_ok(rsps)
    answer = {
        "response": {
            "status": "OK",
            "message": {"users_in_request": 1, "segments_in_request": 1},
            "warnings": [{"message": "Too many user_ids in request.", "entity": {"user_id": UID_B, "seg_block": []}}],
        }
    }
    rsps.add(responses.POST, RT_URL, json=answer)
    call = make_client().send(Action.ADD, [uid_item(0, UID_A), uid_item(1, UID_B)])[0]
    assert (call.results[1].partner_code, call.results[1].retryable) == ("too_many_users", True)


def test_snippets_and_messages_hold_no_ids_tokens_or_secrets(rsps):
    rsps.add(responses.POST, AUTH_URL, json={"response": {"status": "OK", "token": TOKEN}})
    echo = {
        "response": {
            "error_id": "SYNTAX",
            "error": f"Bad user_id {UID_A} with token={TOKEN} password={PASSWORD}",
            "error_description": None,
        }
    }
    rsps.add(responses.POST, RT_URL, json=echo, status=400)
    call = make_client().send(Action.ADD, [uid_item(0, UID_A)])[0]
    for text in (call.snippet, call.results[0].message):
        assert UID_A not in text and TOKEN not in text and PASSWORD not in text


# --- batch mode ------------------------------------------------------------------------------------------------------
def batch_flow(rsps, *, final="batch_job_completed.json", processing_reads=1):
    login_ok(rsps)
    rsps.add(responses.POST, BATCH_URL, json=fixture("batch_job_created.json"))
    rsps.add(responses.POST, UPLOAD_URL, json=fixture("batch_upload_ok.json"))
    for _ in range(processing_reads):
        rsps.add(responses.GET, BATCH_URL, json=fixture("batch_job_processing.json"))
    if final:
        rsps.add(responses.GET, BATCH_URL, json=fixture(final))


def test_batch_opens_a_job_uploads_the_file_and_reads_the_result(rsps):
    batch_flow(rsps)
    client = make_client(mode="batch", expiration_minutes=1440)
    client.batch_poll_seconds = 5
    items = [uid_item(0, UID_A), uid_item(1, UID_B), uid_item(2, UID_C), uid_item(3, UID_D)]

    calls = client.send(Action.ADD, items)

    opened = calls_to(rsps, BATCH_URL)[0].request
    assert opened.method == "POST" and parse_qs(urlsplit(opened.url).query) == {"member_id": ["1234"]}
    assert opened.headers["Authorization"] == TOKEN
    upload = calls_to(rsps, UPLOAD_URL)[0].request
    assert upload.headers["Content-Type"] == "application/octet-stream"
    assert upload.headers["Authorization"] == TOKEN
    assert upload.body == (
        b"5727816213491965430,123456:1440\n5727816213491965431,123456:1440\n"
        b"5727816213491965432,123456:1440\n5727816213491965433,123456:1440\n"
    )
    polls = [c.request for c in calls_to(rsps, BATCH_URL) if c.request.method == "GET"]
    assert len(polls) == 2
    assert parse_qs(urlsplit(polls[0].url).query) == {
        "member_id": ["1234"],
        "job_id": ["qGQhSZ1qvd2hSsJ9svTz32qgxq7z5b1439315424"],
    }
    assert len(calls) == 1
    call = calls[0]
    assert [(r.outcome, r.partner_code) for r in call.results] == [
        (Outcome.ADDED, ""),
        (Outcome.ADDED, ""),
        (Outcome.PARTNER_ERROR, "num_invalid_user"),
        (Outcome.PARTNER_ERROR, "num_unauth_segment"),
    ]
    assert call.status_code == 200 and call.partner_code == "num_invalid_user"
    assert "#14841671 completed" in call.snippet and "num_valid=2" in call.snippet
    assert UID_C not in call.snippet


def test_batch_remove_writes_minus_one(rsps):
    batch_flow(rsps)
    calls = make_client(mode="batch").send(Action.REMOVE, [uid_item(0, UID_A, action=Action.REMOVE)])
    assert calls_to(rsps, UPLOAD_URL)[0].request.body == b"5727816213491965430,123456:-1\n"
    assert calls[0].results[0].outcome == Outcome.REMOVED


def test_batch_file_is_latin1_one_line_per_user():
    targets = [xandr._Target(0, UID_A, 1, "", 0), xandr._Target(1, UID_A, 2, "", 0), xandr._Target(2, UID_B, 1, "", -1)]
    body, by_uid = Client.batch_file(targets)
    assert body == b"5727816213491965430,1:0;2:0\n5727816213491965431,1:-1\n"
    assert by_uid == {UID_A: [0, 1], UID_B: [2]}


def test_batch_job_still_running_is_counted_as_sent_and_marked_pending(rsps):
    batch_flow(rsps, final=None, processing_reads=1)
    client = make_client(mode="batch")
    client.batch_poll_seconds, client.batch_poll_interval = 0.2, 0.05
    call = client.send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert call.partner_code == "job_pending"
    assert call.results[0].outcome == Outcome.ADDED and not call.results[0].retryable
    assert "phase=processing" in call.snippet and "counted as sent" in call.snippet
    assert ERROR_CODES["job_pending"]


def test_batch_job_error_is_retried(rsps):
    batch_flow(rsps, final="batch_job_error.json", processing_reads=0)
    call = make_client(mode="batch").send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert call.partner_code == "job_error/uploading-error"
    assert (call.results[0].outcome, call.results[0].retryable) == (Outcome.PARTNER_ERROR, True)
    assert Client.error_meaning("job_error/uploading-error") == ERROR_CODES["job_error"]


@pytest.mark.parametrize(
    ("name", "status", "code", "retryable"),
    [
        ("batch_upload_rate_limit.json", 400, "RATE_LIMIT_EXCEEDED", True),
        ("batch_upload_filesize.json", 413, "FILESIZE_LIMIT_EXCEEDED", False),
    ],
)
def test_batch_upload_errors(rsps, name, status, code, retryable):
    login_ok(rsps)
    rsps.add(responses.POST, BATCH_URL, json=fixture("batch_job_created.json"))
    rsps.add(responses.POST, UPLOAD_URL, json=fixture(name), status=status)
    call = make_client(mode="batch").send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert (call.partner_code, call.results[0].retryable, call.results[0].outcome) == (
        code,
        retryable,
        Outcome.PARTNER_ERROR,
    )
    assert not [c for c in calls_to(rsps, BATCH_URL) if c.request.method == "GET"]


def test_batch_open_refused_is_classified(rsps):
    login_ok(rsps)
    rsps.add(responses.POST, BATCH_URL, json=fixture("error_unauth.json"), status=403)
    call = make_client(mode="batch").send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert (call.partner_code, call.results[0].retryable) == ("UNAUTH", False)
    assert not calls_to(rsps, UPLOAD_URL)


def test_batch_upload_url_must_be_xandrs(rsps):
    login_ok(rsps)
    created = fixture("batch_job_created.json")
    created["response"]["batch_segment_upload_job"]["upload_url"] = "https://collector.example.com/segment-upload/x"
    rsps.add(responses.POST, BATCH_URL, json=created)
    call = make_client(mode="batch").send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert call.partner_code == "invalid_upload_url" and call.results[0].retryable
    assert [c.request.url for c in rsps.calls] == [AUTH_URL, f"{BATCH_URL}?member_id=1234"]  # the token went nowhere


def test_batch_upload_url_follows_the_sandbox_override(rsps):
    base = "http://127.0.0.1:9999/c/x"
    rsps.add(responses.POST, f"{base}/api.appnexus.com/auth", json={"response": {"status": "OK", "token": TOKEN}})
    rsps.add(responses.POST, f"{base}/api.appnexus.com/batch-segment", json=fixture("batch_job_created.json"))
    upload = f"{base}/data-api-gslb.adnxs.net/segment-upload/qGQhSZ1qvd2hSsJ9svTz32qgxq7z5b1439315424"
    rsps.add(responses.POST, upload, json=fixture("batch_upload_ok.json"))
    rsps.add(responses.GET, f"{base}/api.appnexus.com/batch-segment", json=fixture("batch_job_completed.json"))
    call = make_client(mode="batch", override=base).send(Action.ADD, [uid_item(0, UID_A)])[0]
    assert call.results[0].outcome == Outcome.ADDED
    assert any(c.request.url == upload for c in rsps.calls)


def test_batch_needs_segment_ids(rsps):
    calls = make_client(mode="batch").send(Action.ADD, [uid_item(0, UID_A, segment="cart_abandoners")])
    assert len(rsps.calls) == 0 and calls[0].partner_code == "batch_needs_segment_id"


# --- test connection -----------------------------------------------------------------------------------------------
def test_connection_reads_member_and_default_segment(rsps):
    login_ok(rsps)
    rsps.add(responses.GET, MEMBER_URL, json=fixture("member_ok.json"))
    rsps.add(responses.GET, SEGMENT_URL, json=fixture("segment_ok.json"))
    ok, message = make_client(default_segment_id=98765).test_connection()
    assert ok, message
    assert message == "Connected to Xandr member Example Curate Seat (1234); segment 98765 (Cart abandoners) found."
    member_call = calls_to(rsps, MEMBER_URL)[0].request
    assert parse_qs(urlsplit(member_call.url).query) == {"id": ["1234"]}
    assert member_call.headers["Authorization"] == TOKEN
    assert parse_qs(urlsplit(calls_to(rsps, SEGMENT_URL)[0].request.url).query) == {"id": ["98765"]}


def test_connection_without_default_segment_reads_the_member_only(rsps):
    login_ok(rsps)
    rsps.add(responses.GET, MEMBER_URL, json=fixture("member_ok.json"))
    ok, message = make_client().test_connection()
    assert ok and message == "Connected to Xandr member Example Curate Seat (1234)."
    assert not calls_to(rsps, SEGMENT_URL)


def test_connection_bad_credentials(rsps):
    rsps.add(responses.POST, AUTH_URL, json=fixture("auth_noauth.json"), status=401)
    ok, message = make_client().test_connection()
    assert not ok
    assert message.startswith("Xandr refused the login (NOAUTH): No match found for user/pass.")
    assert PASSWORD not in message


def test_connection_unknown_segment(rsps):
    login_ok(rsps)
    rsps.add(responses.GET, MEMBER_URL, json=fixture("member_ok.json"))
    rsps.add(responses.GET, SEGMENT_URL, json=fixture("error_notfound.json"), status=404)
    ok, message = make_client(default_segment_id=900000001).test_connection()
    assert not ok
    assert "segment 900000001" in message and "NOTFOUND" in message


def test_connection_member_of_another_seat(rsps):
    login_ok(rsps)
    rsps.add(responses.GET, MEMBER_URL, json=fixture("error_unauth.json"), status=403)
    ok, message = make_client().test_connection()
    assert not ok and "no access to member 1234 (UNAUTH)" in message


def test_connection_member_id_mismatch(rsps):
    login_ok(rsps)
    other = fixture("member_ok.json")
    other["response"]["member"]["id"] = 999
    rsps.add(responses.GET, MEMBER_URL, json=other)
    ok, message = make_client().test_connection()
    assert not ok and "no member 1234" in message


def test_connection_relogs_once_after_noauth(rsps):
    client = make_client()
    tokens.put(client._token_key, "hbapi:stale:000000:nym2", 600)
    login_ok(rsps, NEW_TOKEN)
    rsps.add(responses.GET, MEMBER_URL, json=fixture("error_noauth_session.json"), status=401)
    rsps.add(responses.GET, MEMBER_URL, json=fixture("member_ok.json"))
    ok, _message = client.test_connection()
    assert ok
    assert [c.request.headers["Authorization"] for c in calls_to(rsps, MEMBER_URL)] == [
        "hbapi:stale:000000:nym2",
        NEW_TOKEN,
    ]


def test_connection_unreachable_and_timeout(rsps):
    rsps.add(responses.POST, AUTH_URL, body=requests.exceptions.ConnectionError("Name or service not known"))
    ok, message = make_client().test_connection()
    assert not ok and message.startswith("Could not connect to Xandr")
    login_ok(rsps)
    rsps.replace(responses.POST, AUTH_URL, json={"response": {"status": "OK", "token": TOKEN}})
    rsps.add(responses.GET, MEMBER_URL, body=requests.exceptions.ReadTimeout("slow"))
    ok, message = make_client(timeout=3).test_connection()
    assert not ok and message == "Xandr did not answer within 3 s."


def test_connection_needs_settings(rsps):
    assert make_client(password="").test_connection() == (False, "Set the API username and password first.")
    assert make_client(member_id=None).test_connection() == (False, "Set the Xandr member ID first.")
    assert len(rsps.calls) == 0


# --- meanings --------------------------------------------------------------------------------------------------------
def test_error_codes_in_plain_words():
    for code in ("NOAUTH", "NOAUTH_EXPIRED", "NOAUTH_DISABLED", "UNAUTH", "SYNTAX", "INTEGRITY", "LIMIT", "SYSTEM",
                 "RATE_EXCEEDED", "rt_warning", "num_invalid_user", "job_pending"):  # fmt: skip
        assert Client.error_meaning(code), code
    assert "password" in Client.error_meaning("NOAUTH")
    assert Client.error_meaning("http_503").startswith("The partner answered HTTP 503")
