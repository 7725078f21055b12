"""Campaign Manager 360 client: conversion wire format, identifiers, batching, de-duplication key, OAuth and the
classification of per-conversion and whole-request errors.

HTTP is mocked with `responses`; fixture payloads under fixtures/google_cm360/ follow the shapes of the CM360 API v5
reference (ConversionsBatchInsertResponse, google.rpc errors with the legacy `errors[]` list) and Google's OAuth
token endpoint.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
import responses

from connectors.delivery import http, tokens
from connectors.delivery.client import client_class
from connectors.delivery.types import Action, ClientConfig, Item
from connectors.models import Outcome
from connectors.partners.google_cm360 import normalize
from connectors.partners.google_cm360.client import ERROR_CODES, MAX_CONVERSIONS, Client
from connectors.partners.registry import REGISTRY

FIXTURES = Path(__file__).parent / "fixtures" / "google_cm360"
TOKEN_URL = "https://oauth2.googleapis.com/token"
PROFILE = "7654321"
API = f"https://dfareporting.googleapis.com/dfareporting/v5/userprofiles/{PROFILE}"
INSERT_URL = f"{API}/conversions/batchinsert"
CLIENT_ID = "1234567890-cm360client.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-cm360ClientSecretValue5432"
REFRESH_TOKEN = "1//0cm360RefreshTokenValueQPON8765"
ACCESS_TOKEN = "ya29.a0AfB_byC-cm360TestAccessToken-0123456789"
GCLID = "Cj0KCQjw1Py0BhCsARIsAB8CVNkbt_YxKLb3-example-click"
IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
AAID = "38400000-8cf0-11bd-b23e-10b96e40000d"

_config_ids = itertools.count(1000)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def make_client(*, timeout: float = 5.0, base_url_override: str = "", secrets: dict | None = None, **settings):
    config = ClientConfig(
        partner_config_id=next(_config_ids),  # a fresh quota bucket per client
        settings={
            "profile_id": PROFILE,
            "floodlight_configuration_id": "1234567",
            "floodlight_activity_id": "9876543",
            "client_id": CLIENT_ID,
            "default_value": 12.5,
            "default_quantity": 1,
            **settings,
        },
        secrets={"client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN} if secrets is None else secrets,
        timeout_seconds=timeout,
        base_url_override=base_url_override,
    )
    return Client(config, http.new_session())


def item(n: int, slot: str = "customer_id", value: str | None = None, *, action: str = Action.ADD, audience=""):
    return Item(
        profile_id=100 + n,
        action=action,
        slot=slot,
        identifier=f"CUST-{n:05d}" if value is None else value,
        partner_audience_id=audience,
        delivery_id=5000 + n,
    )


def sent(call) -> dict:
    return json.loads(call.request.body)


def by_index(calls) -> dict:
    out = {}
    for call in calls:
        for index, result in zip(call.item_indices, call.results, strict=True):
            assert index not in out, "each item gets exactly one result"
            out[index] = (result, call)
    return out


def insert_calls(rsps) -> list:
    return [c for c in rsps.calls if c.request.url.startswith(INSERT_URL)]


def token_calls(rsps) -> list:
    return [c for c in rsps.calls if c.request.url == TOKEN_URL]


@pytest.fixture(autouse=True)
def fresh_tokens():
    tokens._local.clear()
    yield
    tokens._local.clear()


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, TOKEN_URL, json=fixture("token_ok.json"))
        yield mock


def ok_for(n: int) -> dict:
    """A success answer with `n` statuses (the fixture's status entries repeated)."""
    body = fixture("batchinsert_ok.json")
    body["status"] = [body["status"][i % 2] for i in range(n)]
    return body


def answer_ok(rsps, n: int, **kwargs):
    rsps.add(responses.POST, INSERT_URL, json=ok_for(n), **kwargs)


# --- catalogue and registry -------------------------------------------------------------------------------------
def test_dispatcher_finds_the_client():
    assert client_class("google_cm360") is Client
    assert Client.partner is REGISTRY["google_cm360"]
    assert REGISTRY["google_cm360"].limits.max_batch_size == MAX_CONVERSIONS == 1_000
    assert REGISTRY["google_cm360"].limits.requests_per_minute == 60


def test_every_code_the_client_emits_has_a_meaning():
    for code in (
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "PERMISSION_DENIED/userRateLimitExceeded",
        "PERMISSION_DENIED/dailyLimitExceeded",
        "PERMISSION_DENIED/ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        "NOT_FOUND",
        "INVALID_ARGUMENT",
        "INTERNAL",
        "RESOURCE_EXHAUSTED",
        "UNAVAILABLE",
        "oauth/invalid_grant",
        "unsupported_slot",
        "invalid_identifier",
        "invalid_activity_id",
        "remove_not_supported",
        "update_not_supported",
        "invalid_response",
    ):
        assert Client.error_meaning(code), code
    assert "withdrawn" in Client.error_meaning("remove_not_supported")
    assert Client.error_meaning("http_502").startswith("The partner answered HTTP 502")
    assert set(ERROR_CODES) >= {"NOT_FOUND", "INTERNAL"}


# --- identifier cleaning vectors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("slot", "raw", "field", "value"),
    [
        ("gclid", f"  {GCLID}\n", "gclid", GCLID),
        ("gclid", "Cj0KCQ jw1Py0B", "gclid", ""),  # inner whitespace: a copy/paste accident
        ("gclid", "   ", "gclid", ""),
        ("customer_id", "  CUST-00042 ", "matchId", "CUST-00042"),  # case kept: joined byte for byte with the tag
        ("customer_id", "abcDEF", "matchId", "abcDEF"),
        ("mobile_ad_id", f" {IDFA} ", "mobileDeviceId", IDFA),  # IDFA stays upper-case as iOS reports it
        ("mobile_ad_id", AAID, "mobileDeviceId", AAID),  # AAID stays lower-case as Android reports it
        ("mobile_ad_id", "00000000-0000-0000-0000-000000000000", "mobileDeviceId", ""),  # limit ad tracking
        ("mobile_ad_id", "6D92078A82464BA4AE5B76104861E7DC", "mobileDeviceId", ""),  # not 8-4-4-4-12
        ("email", "mary@example.com", None, ""),  # an email cannot identify an inserted conversion
        ("phone", "+31612345678", None, ""),
    ],
)
def test_identifier_vectors(slot, raw, field, value):
    assert normalize.prepare(slot, raw) == (field, value)


# --- add: the wire format ---------------------------------------------------------------------------------------
def test_add_posts_one_conversion_per_item(rsps):
    answer_ok(rsps, 3)
    items = [item(1, "gclid", GCLID), item(2, "customer_id", " CUST-00002 "), item(3, "mobile_ad_id", IDFA)]
    before = time.time_ns() // 1000

    calls = make_client().send(Action.ADD, items)

    after = time.time_ns() // 1000
    (token_request,) = token_calls(rsps)
    form = parse_qs(token_request.request.body)
    assert form == {
        "grant_type": ["refresh_token"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
        "refresh_token": [REFRESH_TOKEN],
    }
    (call,) = insert_calls(rsps)
    assert call.request.method == "POST"
    assert call.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert call.request.headers["Content-Type"] == "application/json"
    body = sent(call)
    assert body["kind"] == "dfareporting#conversionsBatchInsertRequest"
    assert set(body) == {"kind", "conversions"}
    conversions = body["conversions"]
    common = {
        "kind": "dfareporting#conversion",
        "floodlightConfigurationId": "1234567",
        "floodlightActivityId": "9876543",
        "value": 12.5,
        "quantity": "1",
        "adUserDataConsent": "GRANTED",
    }
    for conversion, (field, value), delivery in zip(
        conversions,
        [("gclid", GCLID), ("matchId", "CUST-00002"), ("mobileDeviceId", IDFA)],
        [5001, 5002, 5003],
        strict=True,
    ):
        assert {k: conversion[k] for k in common} == common
        assert conversion[field] == value
        identifiers = {"gclid", "matchId", "mobileDeviceId", "dclid", "encryptedUserId", "impressionId"}
        assert identifiers & set(conversion) == {field}, "exactly one identifier per conversion"
        assert conversion["ordinal"] == f"dap-{delivery}"
        assert isinstance(conversion["timestampMicros"], str)
        assert before <= int(conversion["timestampMicros"]) <= after  # microseconds, not ms or s
        assert "userIdentifiers" not in conversion

    assert len(calls) == 1
    assert calls[0].item_indices == [0, 1, 2]
    assert all(r.outcome == Outcome.ADDED and not r.retryable for r in calls[0].results)
    assert calls[0].status_code == 200
    assert calls[0].snippet == "recorded=3 failed=0"
    assert "Cj0KCQ" not in calls[0].snippet


def test_value_and_quantity_come_from_the_settings(rsps):
    answer_ok(rsps, 1)
    make_client(default_value=99.99, default_quantity=3).send(Action.ADD, [item(1)])
    conversion = sent(insert_calls(rsps)[0])["conversions"][0]
    assert (conversion["value"], conversion["quantity"]) == (99.99, "3")


def test_partner_audience_id_chooses_the_floodlight_activity(rsps):
    answer_ok(rsps, 3)
    items = [item(1, audience="5550001"), item(2, audience=""), item(3, audience=" 5550002 ")]
    make_client().send(Action.ADD, items)
    activities = [c["floodlightActivityId"] for c in sent(insert_calls(rsps)[0])["conversions"]]
    assert activities == ["5550001", "9876543", "5550002"]


def test_a_non_numeric_partner_audience_id_is_refused_not_replaced(rsps):
    answer_ok(rsps, 1)
    calls = make_client().send(Action.ADD, [item(1, audience="seg-1"), item(2)])
    results = by_index(calls)
    assert results[0][0].outcome == Outcome.OTHER_ERROR
    assert results[0][0].partner_code == "invalid_activity_id" and not results[0][0].retryable
    assert results[1][0].outcome == Outcome.ADDED
    assert len(sent(insert_calls(rsps)[0])["conversions"]) == 1


def test_the_base_url_override_carries_every_host(rsps):
    base = "http://127.0.0.1:9/c/demo"
    rsps.add(responses.POST, f"{base}/oauth2.googleapis.com/token", json=fixture("token_ok.json"))
    rsps.add(
        responses.POST,
        f"{base}/dfareporting.googleapis.com/dfareporting/v5/userprofiles/{PROFILE}/conversions/batchinsert",
        json=ok_for(1),
    )
    calls = make_client(base_url_override=base).send(Action.ADD, [item(1)])
    assert calls[0].results[0].outcome == Outcome.ADDED
    assert not token_calls(rsps) and not insert_calls(rsps)


# --- de-duplication key -----------------------------------------------------------------------------------------
def test_a_retry_repeats_ordinal_and_timestamp(rsps):
    rsps.add(responses.POST, INSERT_URL, json=fixture("error_503.json"), status=503)
    answer_ok(rsps, 1)
    client = make_client()
    first = client.send(Action.ADD, [item(7)])
    assert first[0].results[0].retryable
    time.sleep(0.002)
    second = client.send(Action.ADD, [item(7)])
    assert second[0].results[0].outcome == Outcome.ADDED
    one, two = (sent(c)["conversions"][0] for c in insert_calls(rsps))
    assert one["ordinal"] == two["ordinal"] == "dap-5007"
    assert one["timestampMicros"] == two["timestampMicros"]
    # Recorded: a later, separate entry (new outbox row) is a new conversion with a new ordinal and time.
    client.send(Action.ADD, [Item(107, Action.ADD, "customer_id", "CUST-00007", {}, "", 6007)])
    three = sent(insert_calls(rsps)[2])["conversions"][0]
    assert three["ordinal"] == "dap-6007" and three["timestampMicros"] != one["timestampMicros"]


def test_a_finished_delivery_forgets_its_timestamp(rsps):
    answer_ok(rsps, 1)
    client = make_client()
    client.send(Action.ADD, [item(8)])
    assert 5008 not in client._timestamps


def test_without_a_delivery_id_the_ordinal_is_per_profile_and_day(rsps):
    answer_ok(rsps, 1)
    make_client().send(Action.ADD, [Item(42, Action.ADD, "customer_id", "CUST-42")])
    ordinal = sent(insert_calls(rsps)[0])["conversions"][0]["ordinal"]
    assert ordinal.startswith("dap-p42-") and len(ordinal) == len("dap-p42-20260101")


# --- remove / update / items that cannot be sent ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "code"), [(Action.REMOVE, "remove_not_supported"), (Action.UPDATE, "update_not_supported")]
)
def test_remove_and_update_send_nothing(rsps, action, code):
    calls = make_client().send(action, [item(1, action=action), item(2, action=action)])
    assert not rsps.calls  # not even a token request
    (call,) = calls
    assert call.item_indices == [0, 1]
    assert all(r.outcome == Outcome.OTHER_ERROR and r.partner_code == code and not r.retryable for r in call.results)
    assert call.status_code is None and call.snippet.startswith("not sent")


def test_email_only_and_malformed_identifiers_are_not_sent(rsps):
    answer_ok(rsps, 1)
    items = [
        item(1, "email", "mary@example.com"),
        item(2, "mobile_ad_id", "not-a-device-id"),
        item(3, "customer_id", "CUST-3"),
        item(4, "gclid", "  "),
    ]
    results = by_index(make_client().send(Action.ADD, items))
    assert results[0][0].partner_code == "unsupported_slot"
    assert results[1][0].partner_code == results[3][0].partner_code == "invalid_identifier"
    assert all(results[i][0].outcome == Outcome.OTHER_ERROR and not results[i][0].retryable for i in (0, 1, 3))
    assert results[2][0].outcome == Outcome.ADDED
    assert [c["matchId"] for c in sent(insert_calls(rsps)[0])["conversions"]] == ["CUST-3"]
    assert "mary" not in json.dumps([c.snippet for _, c in results.values()])


def test_nothing_sendable_means_no_call(rsps):
    calls = make_client().send(Action.ADD, [item(1, "email", "a@b.example")])
    assert not rsps.calls
    assert calls[0].results[0].partner_code == "unsupported_slot"


def test_missing_ids_in_the_configuration(rsps):
    calls = make_client(floodlight_configuration_id="").send(Action.ADD, [item(1)])
    assert not rsps.calls
    assert calls[0].results[0].partner_code == "not_configured"


# --- batching ---------------------------------------------------------------------------------------------------
def test_splits_at_1000_conversions(rsps):
    def answer(request):
        n = len(json.loads(request.body)["conversions"])
        return 200, {}, json.dumps(ok_for(n))

    rsps.add_callback(responses.POST, INSERT_URL, callback=answer)
    items = [item(n) for n in range(2_345)]
    calls = make_client().send(Action.ADD, items)
    assert [len(sent(c)["conversions"]) for c in insert_calls(rsps)] == [1000, 1000, 345]
    assert len(token_calls(rsps)) == 1  # one token for every request
    results = by_index(calls)
    assert sorted(results) == list(range(2_345))
    assert all(r.outcome == Outcome.ADDED for r, _ in results.values())
    assert calls[2].item_indices == list(range(2000, 2345))


# --- per-conversion outcomes (HTTP 200, hasFailures) ------------------------------------------------------------
def test_partial_failure_maps_statuses_in_request_order(rsps):
    rsps.add(responses.POST, INSERT_URL, json=fixture("batchinsert_partial.json"))
    calls = make_client().send(Action.ADD, [item(n) for n in range(1, 6)])
    (call,) = calls
    ok, not_found, invalid, internal, denied = call.results
    assert ok.outcome == Outcome.ADDED
    assert (not_found.outcome, not_found.partner_code, not_found.retryable) == (
        Outcome.PARTNER_ERROR,
        "NOT_FOUND",
        False,
    )
    assert "CUST-00002" not in not_found.message and "[identifier]" in not_found.message
    assert (invalid.partner_code, invalid.retryable) == ("INVALID_ARGUMENT", False)
    assert "too old" in invalid.message and "does not belong" in invalid.message  # every error kept
    assert (internal.outcome, internal.partner_code, internal.retryable) == (Outcome.PARTNER_ERROR, "INTERNAL", True)
    assert (denied.partner_code, denied.retryable) == ("PERMISSION_DENIED", False)
    assert call.status_code == 200
    assert call.snippet.startswith("recorded=1 failed=4 (")
    assert "CUST-" not in call.snippet
    assert call.partner_code in {"NOT_FOUND", "INVALID_ARGUMENT", "INTERNAL", "PERMISSION_DENIED"}
    assert not call.credentials_invalid


def test_has_failures_without_statuses_is_retried(rsps):
    rsps.add(
        responses.POST, INSERT_URL, json={"hasFailures": True, "kind": "dfareporting#conversionsBatchInsertResponse"}
    )
    result = make_client().send(Action.ADD, [item(1)])[0].results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (
        Outcome.PARTNER_ERROR,
        "invalid_response",
        True,
    )


def test_an_unreadable_status_entry_is_retried_alone(rsps):
    body = ok_for(2)
    body["hasFailures"] = True
    body["status"][1] = "garbage"
    rsps.add(responses.POST, INSERT_URL, json=body)
    first, second = make_client().send(Action.ADD, [item(1), item(2)])[0].results
    assert first.outcome == Outcome.ADDED
    assert (second.partner_code, second.retryable) == ("invalid_response", True)


def test_success_without_statuses_counts_as_recorded(rsps):
    rsps.add(responses.POST, INSERT_URL, json={"hasFailures": False})
    assert make_client().send(Action.ADD, [item(1)])[0].results[0].outcome == Outcome.ADDED


def test_unreadable_200_is_retried(rsps):
    rsps.add(responses.POST, INSERT_URL, body="<html>oops</html>", status=200)
    result = make_client().send(Action.ADD, [item(1)])[0].results[0]
    assert (result.partner_code, result.retryable) == ("invalid_response", True)


# --- whole-request errors ---------------------------------------------------------------------------------------
def _send_with(rsps, status, body, headers=None, n=2):
    rsps.add(responses.POST, INSERT_URL, json=body, status=status, headers=headers or {})
    calls = make_client().send(Action.ADD, [item(i) for i in range(n)])
    assert len(calls) == 1 and calls[0].item_indices == list(range(n))
    return calls[0]


def test_401_refreshes_the_token_once_then_succeeds(rsps):
    rsps.replace(responses.POST, TOKEN_URL, json=fixture("token_ok.json"))
    rsps.add(responses.POST, INSERT_URL, json=fixture("error_401.json"), status=401)
    answer_ok(rsps, 1)
    calls = make_client().send(Action.ADD, [item(1)])
    assert calls[0].results[0].outcome == Outcome.ADDED
    assert len(token_calls(rsps)) == 2  # the refused token was dropped and a new one fetched
    assert len(insert_calls(rsps)) == 2
    assert not calls[0].credentials_invalid


def test_401_twice_means_invalid_credentials(rsps):
    rsps.add(responses.POST, INSERT_URL, json=fixture("error_401.json"), status=401)
    rsps.add(responses.POST, INSERT_URL, json=fixture("error_401.json"), status=401)
    call = make_client().send(Action.ADD, [item(1)])[0]
    assert len(insert_calls(rsps)) == 2
    assert call.credentials_invalid
    assert call.results[0].outcome == Outcome.INVALID_CREDENTIALS
    assert call.partner_code == "UNAUTHENTICATED" and call.status_code == 401
    assert ACCESS_TOKEN not in call.snippet and REFRESH_TOKEN not in call.snippet


def test_revoked_refresh_token_is_invalid_credentials_without_an_api_call(rsps):
    rsps.replace(responses.POST, TOKEN_URL, json=fixture("token_invalid_grant.json"), status=400)
    call = make_client().send(Action.ADD, [item(1), item(2)])[0]
    assert not insert_calls(rsps)
    assert call.credentials_invalid
    assert {r.outcome for r in call.results} == {Outcome.INVALID_CREDENTIALS}
    assert call.partner_code == "oauth/invalid_grant"
    assert REFRESH_TOKEN not in call.snippet and CLIENT_SECRET not in call.snippet


def test_token_endpoint_outage_is_retried_not_a_credentials_problem(rsps):
    rsps.replace(responses.POST, TOKEN_URL, json={"error": "temporarily_unavailable"}, status=503)
    call = make_client().send(Action.ADD, [item(1)])[0]
    assert not call.credentials_invalid
    assert call.results[0].retryable and call.results[0].outcome == Outcome.OTHER_ERROR


def test_missing_secrets_are_invalid_credentials(rsps):
    call = make_client(secrets={}).send(Action.ADD, [item(1)])[0]
    assert not rsps.calls
    assert call.credentials_invalid and call.partner_code == "oauth/missing"


def test_the_access_token_is_cached_between_sends(rsps):
    answer_ok(rsps, 1)
    client = make_client()
    client.send(Action.ADD, [item(1)])
    client.send(Action.ADD, [item(2)])
    make_client().send(Action.ADD, [item(3)])  # another client with the same credentials shares it
    assert len(token_calls(rsps)) == 1
    assert len(insert_calls(rsps)) == 3


def test_403_permission_is_a_final_partner_error(rsps):
    call = _send_with(rsps, 403, fixture("error_403_permission.json"))
    assert {(r.outcome, r.partner_code, r.retryable) for r in call.results} == {
        (Outcome.PARTNER_ERROR, "PERMISSION_DENIED", False)
    }
    assert not call.credentials_invalid and call.retry_after is None
    assert "permission" in call.results[0].message


def test_403_user_rate_limit_is_retried(rsps):
    call = _send_with(rsps, 403, fixture("error_403_rate.json"), headers={"Retry-After": "30"})
    assert {(r.partner_code, r.retryable) for r in call.results} == {("PERMISSION_DENIED/userRateLimitExceeded", True)}
    assert call.retry_after == 30.0


def test_403_daily_limit_waits_an_hour(rsps):
    call = _send_with(rsps, 403, fixture("error_403_daily.json"))
    assert call.results[0].partner_code == "PERMISSION_DENIED/dailyLimitExceeded"
    assert call.results[0].retryable and call.retry_after == 3600.0


def test_403_missing_scope_is_a_credentials_problem(rsps):
    call = _send_with(rsps, 403, fixture("error_403_scope.json"))
    assert call.credentials_invalid
    assert call.results[0].outcome == Outcome.INVALID_CREDENTIALS
    assert call.partner_code == "PERMISSION_DENIED/ACCESS_TOKEN_SCOPE_INSUFFICIENT"


@pytest.mark.parametrize(
    ("status", "name", "code"), [(404, "error_404.json", "NOT_FOUND"), (400, "error_400.json", "INVALID_ARGUMENT")]
)
def test_not_found_and_invalid_argument_are_final(rsps, status, name, code):
    call = _send_with(rsps, status, fixture(name))
    assert {(r.outcome, r.partner_code, r.retryable) for r in call.results} == {(Outcome.PARTNER_ERROR, code, False)}
    assert call.status_code == status


def test_429_is_retried_after_retry_after(rsps):
    call = _send_with(rsps, 429, fixture("error_429.json"), headers={"Retry-After": "45"})
    assert {(r.partner_code, r.retryable) for r in call.results} == {("RESOURCE_EXHAUSTED", True)}
    assert call.retry_after == 45.0
    assert "123456789012" in call.snippet  # the quota text is kept for the admin (no secret in it)


@pytest.mark.parametrize(
    ("status", "name", "code"), [(500, "error_500.json", "INTERNAL"), (503, "error_503.json", "UNAVAILABLE")]
)
def test_server_errors_are_retried(rsps, status, name, code):
    call = _send_with(rsps, status, fixture(name), headers={"Retry-After": "5"})
    assert {(r.outcome, r.partner_code, r.retryable) for r in call.results} == {(Outcome.PARTNER_ERROR, code, True)}
    assert call.retry_after == 5.0


def test_502_without_a_json_body(rsps):
    rsps.add(responses.POST, INSERT_URL, body="Bad Gateway", status=502)
    call = make_client().send(Action.ADD, [item(1)])[0]
    assert (call.partner_code, call.results[0].retryable) == ("http_502", True)


def test_a_redirect_is_not_followed(rsps):
    rsps.add(responses.POST, INSERT_URL, status=302, headers={"Location": "https://elsewhere.example/"})
    call = make_client().send(Action.ADD, [item(1)])[0]
    assert len(rsps.calls) == 2  # the token and the one insert, no follow-up
    assert (call.partner_code, call.results[0].retryable) == ("http_302", False)


def test_timeout(rsps):
    rsps.add(responses.POST, INSERT_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    call = make_client().send(Action.ADD, [item(1)])[0]
    assert call.results[0].outcome == Outcome.TIMEOUT and call.results[0].retryable
    assert call.status_code is None


def test_connection_error(rsps):
    rsps.add(responses.POST, INSERT_URL, body=requests.exceptions.ConnectionError("connection refused"))
    call = make_client().send(Action.ADD, [item(1)])[0]
    assert (call.results[0].outcome, call.partner_code, call.results[0].retryable) == (
        Outcome.OTHER_ERROR,
        "connection_error",
        True,
    )


def test_a_retryable_failure_keeps_the_timestamp(rsps):
    rsps.add(responses.POST, INSERT_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    client = make_client()
    client.send(Action.ADD, [item(9)])
    assert 5009 in client._timestamps


# --- test_connection --------------------------------------------------------------------------------------------
def test_connection_ok_reads_the_user_profile(rsps):
    rsps.add(responses.GET, API, json=fixture("user_profile.json"))
    ok, message = make_client().test_connection()
    assert ok
    assert "7654321" in message and "Example Retail EMEA" in message
    assert "trafficker@example.com" not in message
    (read,) = [c for c in rsps.calls if c.request.method == "GET"]
    assert read.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_connection_bad_credentials(rsps):
    rsps.replace(responses.POST, TOKEN_URL, json=fixture("token_invalid_grant.json"), status=400)
    ok, message = make_client().test_connection()
    assert not ok
    assert message.startswith("Invalid credentials (oauth/invalid_grant)")
    assert REFRESH_TOKEN not in message and CLIENT_SECRET not in message


def test_connection_refused_token_after_refresh(rsps):
    rsps.add(responses.GET, API, json=fixture("error_401.json"), status=401)
    ok, message = make_client().test_connection()
    assert not ok and message.startswith("Invalid credentials")
    assert len(token_calls(rsps)) == 2


@pytest.mark.parametrize(
    ("status", "name", "expected"),
    [(404, "error_404.json", "was not found"), (403, "error_403_permission.json", "refused access")],
)
def test_connection_unknown_or_foreign_profile(rsps, status, name, expected):
    rsps.add(responses.GET, API, json=fixture(name), status=status)
    ok, message = make_client().test_connection()
    assert not ok and expected in message and PROFILE in message


def test_connection_unreachable(rsps):
    rsps.add(responses.GET, API, body=requests.exceptions.ConnectionError("no route to host"))
    ok, message = make_client().test_connection()
    assert not ok and message.startswith("Could not connect")


def test_connection_needs_a_profile_id(rsps):
    ok, message = make_client(profile_id="").test_connection()
    assert not ok and "profile ID" in message
    assert not rsps.calls
