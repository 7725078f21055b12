"""Meta Custom Audiences client: wire format, normalisation vectors, grouping/splitting, and error classification.

HTTP is mocked with `responses`; fixture payloads under fixtures/meta/ follow the shapes in Meta's documentation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from connectors.delivery import http
from connectors.delivery.client import client_class
from connectors.delivery.types import Action, ClientConfig, Item
from connectors.models import Outcome
from connectors.partners.meta_custom_audiences import normalize
from connectors.partners.meta_custom_audiences.client import ERROR_CODES, Client, error_meaning
from tests.connectors.partners.local_server import local_server

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
TOKEN = "EAAGm0PX4ZCpsBAKZBZCexampleSystemUserToken0123456789"
APP_SECRET = "0123456789abcdef0123456789abcdef"
AUDIENCE = "23851234567890123"
OTHER_AUDIENCE = "23859999999999999"
BASE = "https://graph.facebook.com/v26.0"
USERS_URL = f"{BASE}/{AUDIENCE}/users"

# Known vectors. Meta's own example: hash("sha256", "mary@example.com") = f1904cf1....
MARY_SHA = "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79"
JOHN_SHA = "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"  # "john.doe@example.com"
NL_MOBILE_SHA = "e03d152bbe638d9fe7a04f9b88a67674bf15b73c0981755c16eb78d177721e03"  # "31612345678"
US_PHONE_SHA = "6069d14bf122fdfd931dc7beb58e5dfbba395b1faf05bdcd42d12358d63d8599"  # "16505551234"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def make_client(*, app_secret: str = "", timeout: float = 5.0, base_url_override: str = "", **settings) -> Client:
    secrets = {"access_token": TOKEN}
    if app_secret:
        secrets["app_secret"] = app_secret
    config = ClientConfig(
        partner_config_id=1,
        settings={"api_version": "v26.0", "ad_account_id": "act_1234567890", **settings},
        secrets=secrets,
        timeout_seconds=timeout,
        base_url_override=base_url_override,
    )
    return Client(config, http.new_session())


def email(profile_id: int, value: str, audience: str = AUDIENCE, action: str = Action.ADD) -> Item:
    return Item(profile_id=profile_id, action=action, slot="email", identifier=value, partner_audience_id=audience)


def item(profile_id: int, slot: str, value: str, audience: str = AUDIENCE, action: str = Action.ADD) -> Item:
    return Item(profile_id=profile_id, action=action, slot=slot, identifier=value, partner_audience_id=audience)


def sent(call) -> dict:
    return json.loads(call.request.body)


def by_index(calls) -> dict:
    """item index -> (ItemResult, CallResult)."""
    out = {}
    for call in calls:
        for index, result in zip(call.item_indices, call.results, strict=True):
            assert index not in out, "each item gets exactly one result"
            out[index] = (result, call)
    return out


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# --- registry ------------------------------------------------------------------------------------------------------
def test_dispatcher_finds_the_client():
    assert client_class("meta_custom_audiences") is Client
    assert Client.default_base_url == "https://graph.facebook.com"


# --- normalisation vectors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "normalised", "digest"),
    [
        ("mary@example.com", "mary@example.com", MARY_SHA),
        ("  John.Doe@Example.COM ", "john.doe@example.com", JOHN_SHA),
        ("\tJOHN.DOE@EXAMPLE.COM\n", "john.doe@example.com", JOHN_SHA),
    ],
)
def test_email_vectors(raw, normalised, digest):
    assert normalize.normalize_email(raw) == normalised
    assert hashlib.sha256(normalised.encode()).hexdigest() == digest
    assert normalize.hash_email(raw) == digest


@pytest.mark.parametrize(
    ("raw", "normalised", "digest"),
    [
        ("+31612345678", "31612345678", NL_MOBILE_SHA),  # E.164 as stored: "+" dropped, country code kept
        ("+31 6 1234 5678", "31612345678", NL_MOBILE_SHA),
        # Decision: the national trunk "(0)" after the country code is dropped before taking the digits.
        ("+31 (0)6-1234 5678", "31612345678", NL_MOBILE_SHA),
        ("0031 6 12345678", "31612345678", NL_MOBILE_SHA),  # international "00" prefix = leading zeros removed
        ("+1 (650) 555-1234", "16505551234", US_PHONE_SHA),
    ],
)
def test_phone_vectors(raw, normalised, digest):
    assert normalize.normalize_phone(raw) == normalised
    assert hashlib.sha256(normalised.encode()).hexdigest() == digest
    assert normalize.hash_phone(raw) == digest


def test_madid_lower_cased_unhashed():
    assert normalize.madid(" 6D92078A-8246-4BA4-AE5B-76104861E7DC ") == "6d92078a-8246-4ba4-ae5b-76104861e7dc"


@pytest.mark.parametrize(
    ("slot", "raw"), [("email", "   "), ("phone", "+"), ("phone", "(0) - "), ("mobile_ad_id", " ")]
)
def test_values_that_normalise_to_nothing(slot, raw):
    assert normalize.prepare(slot, raw) == ""


def test_prehashed_values_are_not_hashed_twice():
    assert normalize.hash_email(MARY_SHA.upper()) == MARY_SHA
    assert normalize.hash_phone(NL_MOBILE_SHA) == NL_MOBILE_SHA


# --- add / remove wire format -------------------------------------------------------------------------------------
def test_add_posts_hashed_single_key_rows(rsps):
    rsps.add(responses.POST, USERS_URL, json=fixture("users_ok.json"))
    items = [email(1, "mary@example.com"), email(2, "  John.Doe@Example.COM "), email(3, "MARY@example.com")]

    calls = make_client().send(Action.ADD, items)

    assert len(rsps.calls) == 1
    request = rsps.calls[0].request
    assert request.method == "POST"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    # Single-key schema: "data" is a flat list of strings (Meta's Custom Audiences guide).
    assert sent(rsps.calls[0]) == {"payload": {"schema": "EMAIL_SHA256", "data": [MARY_SHA, JOHN_SHA, MARY_SHA]}}
    assert len(calls) == 1
    call = calls[0]
    assert call.item_indices == [0, 1, 2]
    assert all(r.outcome == Outcome.ADDED and not r.retryable for r in call.results)
    assert call.status_code == 200
    assert call.duration_ms >= 0
    assert "received=3" in call.snippet and "invalid=0" in call.snippet


def test_remove_sends_delete(rsps):
    rsps.add(responses.DELETE, USERS_URL, json=fixture("users_ok.json"))
    calls = make_client().send(Action.REMOVE, [email(1, "mary@example.com", action=Action.REMOVE)])
    assert rsps.calls[0].request.method == "DELETE"
    assert sent(rsps.calls[0])["payload"]["data"] == [MARY_SHA]
    assert calls[0].results[0].outcome == Outcome.REMOVED


def test_update_is_an_add(rsps):
    rsps.add(responses.POST, USERS_URL, json=fixture("users_ok.json"))
    calls = make_client().send(Action.UPDATE, [email(1, "mary@example.com", action=Action.UPDATE)])
    assert rsps.calls[0].request.method == "POST"
    assert calls[0].results[0].outcome == Outcome.ADDED


def test_phone_and_madid_schemas(rsps):
    rsps.add(responses.POST, USERS_URL, json=fixture("users_ok.json"))
    items = [item(1, "phone", "+31 (0)6-1234 5678"), item(2, "mobile_ad_id", "6D92078A-8246-4BA4-AE5B-76104861E7DC")]
    make_client().send(Action.ADD, items)
    payloads = sorted((sent(c)["payload"] for c in rsps.calls), key=lambda p: p["schema"])
    assert payloads == [
        {"schema": "MOBILE_ADVERTISER_ID", "data": ["6d92078a-8246-4ba4-ae5b-76104861e7dc"]},
        {"schema": "PHONE_SHA256", "data": [NL_MOBILE_SHA]},
    ]


def test_api_version_setting_and_base_url_override(rsps):
    rsps.add(responses.POST, f"http://sandbox.local:9000/v25.0/{AUDIENCE}/users", json=fixture("users_ok.json"))
    calls = make_client(api_version="v25.0", base_url_override="http://sandbox.local:9000/").send(
        Action.ADD, [email(1, "mary@example.com")]
    )
    assert calls[0].results[0].outcome == Outcome.ADDED


# --- grouping and splitting ---------------------------------------------------------------------------------------
def test_groups_by_audience_and_schema(rsps):
    rsps.add(responses.POST, USERS_URL, json=fixture("users_ok.json"))
    rsps.add(responses.POST, f"{BASE}/{OTHER_AUDIENCE}/users", json=fixture("users_ok.json"))
    items = [
        email(10, "mary@example.com"),
        item(11, "phone", "+16505551234"),
        email(12, "john.doe@example.com", audience=OTHER_AUDIENCE),
        email(13, "john.doe@example.com"),
        item(14, "mobile_ad_id", "AAAA-BBBB", audience=OTHER_AUDIENCE),
    ]
    calls = make_client().send(Action.ADD, items)

    assert len(rsps.calls) == 4
    seen = {}
    for c in rsps.calls:
        audience = urlsplit(c.request.url).path.split("/")[2]
        payload = sent(c)["payload"]
        seen[(audience, payload["schema"])] = payload["data"]
    assert seen == {
        (AUDIENCE, "EMAIL_SHA256"): [MARY_SHA, JOHN_SHA],
        (AUDIENCE, "PHONE_SHA256"): [US_PHONE_SHA],
        (OTHER_AUDIENCE, "EMAIL_SHA256"): [JOHN_SHA],
        (OTHER_AUDIENCE, "MOBILE_ADVERTISER_ID"): ["aaaa-bbbb"],
    }
    indices = sorted(tuple(c.item_indices) for c in calls)
    assert indices == [(0, 3), (1,), (2,), (4,)]
    assert {i: r.outcome for i, (r, _) in by_index(calls).items()} == dict.fromkeys(range(5), Outcome.ADDED)


def test_splits_at_10000_rows(rsps):
    rsps.add(responses.POST, USERS_URL, json=fixture("users_ok.json"))
    items = [email(i, f"user{i}@example.com") for i in range(10_001)]

    calls = make_client().send(Action.ADD, items)

    assert [len(sent(c)["payload"]["data"]) for c in rsps.calls] == [10_000, 1]
    assert [len(c.item_indices) for c in calls] == [10_000, 1]
    assert calls[0].item_indices[0] == 0 and calls[1].item_indices == [10_000]
    last = hashlib.sha256(b"user10000@example.com").hexdigest()
    assert sent(rsps.calls[1])["payload"]["data"] == [last]


# --- items refused before sending ---------------------------------------------------------------------------------
def test_invalid_identifier_and_missing_audience_are_not_sent(rsps):
    rsps.add(responses.POST, USERS_URL, json=fixture("users_ok.json"))
    items = [
        email(1, "   "),
        email(2, "mary@example.com"),
        email(3, "mary@example.com", audience=""),
        item(4, "phone", "+"),
    ]

    results = by_index(make_client().send(Action.ADD, items))

    assert sent(rsps.calls[0])["payload"]["data"] == [MARY_SHA]
    assert results[1][0].outcome == Outcome.ADDED
    for index in (0, 3):
        result, call = results[index]
        assert (result.outcome, result.partner_code, result.retryable) == (
            Outcome.OTHER_ERROR,
            "invalid_identifier",
            False,
        )
        assert call.status_code is None
    assert (results[2][0].outcome, results[2][0].partner_code) == (Outcome.OTHER_ERROR, "no_partner_audience_id")
    assert results[2][0].retryable is False


def test_nothing_valid_means_no_call(rsps):
    calls = make_client().send(Action.ADD, [email(1, ""), email(2, "x@y.z", audience="")])
    assert len(rsps.calls) == 0
    assert sorted(i for c in calls for i in c.item_indices) == [0, 1]


# --- success with invalid entries ---------------------------------------------------------------------------------
def test_invalid_entry_samples_map_back_to_items(rsps):
    rsps.add(responses.POST, USERS_URL, json=fixture("users_invalid_entries.json"))
    items = [
        item(1, "mobile_ad_id", "6D92078A-8246-4BA4-AE5B-76104861E7DC"),
        item(2, "mobile_ad_id", "NOT-A-DEVICE-ID"),
        item(3, "mobile_ad_id", "b2c3d4e5-0000-4000-8000-000000000001"),
    ]
    calls = make_client().send(Action.ADD, items)

    results = by_index(calls)
    assert results[0][0].outcome == Outcome.ADDED
    assert results[2][0].outcome == Outcome.ADDED
    bad = results[1][0]
    assert (bad.outcome, bad.partner_code, bad.retryable) == (Outcome.PARTNER_ERROR, "invalid_entry", False)
    assert "received=3" in calls[0].snippet and "invalid=1" in calls[0].snippet and "flagged=1" in calls[0].snippet
    assert "not-a-device-id" not in calls[0].snippet.lower()


def test_invalid_entry_samples_as_a_list(rsps):
    payload = {**fixture("users_ok.json"), "num_invalid_entries": 1, "invalid_entry_samples": [[JOHN_SHA]]}
    rsps.add(responses.POST, USERS_URL, json=payload)
    results = by_index(make_client().send(Action.ADD, [email(1, "mary@example.com"), email(2, "john.doe@example.com")]))
    assert results[0][0].outcome == Outcome.ADDED
    assert results[1][0].partner_code == "invalid_entry"


# --- auth ---------------------------------------------------------------------------------------------------------
def test_appsecret_proof_in_query_and_token_never_in_url(rsps):
    rsps.add(responses.POST, USERS_URL, json=fixture("users_ok.json"))
    make_client(app_secret=APP_SECRET).send(Action.ADD, [email(1, "mary@example.com")])

    url = rsps.calls[0].request.url
    expected = hmac.new(APP_SECRET.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()
    assert parse_qs(urlsplit(url).query) == {"appsecret_proof": [expected]}
    assert TOKEN not in url and "access_token" not in url
    assert TOKEN not in rsps.calls[0].request.body.decode()


def test_no_appsecret_proof_without_app_secret(rsps):
    rsps.add(responses.POST, USERS_URL, json=fixture("users_ok.json"))
    make_client().send(Action.ADD, [email(1, "mary@example.com")])
    assert urlsplit(rsps.calls[0].request.url).query == ""


# --- errors -------------------------------------------------------------------------------------------------------
def _send_with(rsps, status, body, headers=None):
    rsps.add(responses.POST, USERS_URL, status=status, json=body, headers=headers or {})
    calls = make_client().send(Action.ADD, [email(1, "mary@example.com"), email(2, "john.doe@example.com")])
    assert len(calls) == 1
    return calls[0]


def test_190_invalid_credentials(rsps):
    call = _send_with(rsps, 400, fixture("error_190.json"))
    assert call.credentials_invalid is True
    assert call.partner_code == "190/463"
    for result in call.results:
        assert (result.outcome, result.retryable) == (Outcome.INVALID_CREDENTIALS, False)
        assert result.message.startswith("Error validating access token")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("error_4.json", "4"),
        ("error_17.json", "17/2446079"),
        ("error_613.json", "613/1487742"),
        ("error_80003.json", "80003/2446079"),
    ],
)
def test_throttling_is_retryable(rsps, name, code):
    call = _send_with(rsps, 400, fixture(name))
    assert call.partner_code == code
    assert call.credentials_invalid is False
    assert all(r.outcome == Outcome.PARTNER_ERROR and r.retryable and r.partner_code == code for r in call.results)


def test_throttling_honours_retry_after(rsps):
    call = _send_with(rsps, 400, fixture("error_613.json"), headers={"Retry-After": "120"})
    assert call.retry_after == 120.0


def test_throttling_reads_business_use_case_usage(rsps):
    usage = {"1234567890": [{"type": "custom_audience", "call_count": 100, "estimated_time_to_regain_access": 7}]}
    call = _send_with(rsps, 400, fixture("error_80003.json"), headers={"X-Business-Use-Case-Usage": json.dumps(usage)})
    assert call.retry_after == 7 * 60


@pytest.mark.parametrize("code", [80000, 80004, 80014])
def test_any_business_use_case_limit_is_retryable(rsps, code):
    body = {"error": {"message": f"(#{code}) too many calls", "type": "OAuthException", "code": code}}
    call = _send_with(rsps, 400, body)
    assert call.results[0].retryable is True


@pytest.mark.parametrize(("code", "retryable"), [(1, True), (2, True), (803, True), (10, False), (200, False)])
def test_temporary_and_permission_codes(rsps, code, retryable):
    body = {"error": {"message": "Some error", "type": "OAuthException", "code": code}}
    call = _send_with(rsps, 400 if code != 2 else 503, body)
    assert call.results[0].outcome == Outcome.PARTNER_ERROR
    assert call.results[0].retryable is retryable


@pytest.mark.parametrize(("name", "code"), [("error_100_33.json", "100/33"), ("error_2650.json", "2650")])
def test_invalid_parameter_and_audience_errors_are_final(rsps, name, code):
    call = _send_with(rsps, 400, fixture(name))
    assert call.partner_code == code
    result = call.results[0]
    assert (result.outcome, result.retryable, result.partner_code) == (Outcome.PARTNER_ERROR, False, code)
    assert result.message  # Meta's own words


def test_2650_message_keeps_the_reason(rsps):
    call = _send_with(rsps, 400, fixture("error_2650.json"))
    assert "MULTI_HASHES" in call.results[0].message


def test_http_429_retry_after(rsps):
    rsps.add(responses.POST, USERS_URL, status=429, body="Too Many Requests", headers={"Retry-After": "30"})
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    assert call.status_code == 429
    assert call.retry_after == 30.0
    assert (call.results[0].outcome, call.results[0].partner_code, call.results[0].retryable) == (
        Outcome.PARTNER_ERROR,
        "http_429",
        True,
    )


def test_http_500_without_json(rsps):
    rsps.add(responses.POST, USERS_URL, status=500, body="<html>Internal Server Error</html>")
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    assert call.status_code == 500
    assert (call.results[0].outcome, call.results[0].partner_code, call.results[0].retryable) == (
        Outcome.PARTNER_ERROR,
        "http_500",
        True,
    )


def test_timeout(rsps):
    def stall(request):
        raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)")

    rsps.add_callback(responses.POST, USERS_URL, callback=stall)
    call = make_client().send(Action.ADD, [email(1, "mary@example.com"), email(2, "john.doe@example.com")])[0]
    assert call.item_indices == [0, 1]
    assert call.status_code is None
    assert all(r.outcome == Outcome.TIMEOUT and r.retryable for r in call.results)


def test_deadline_exceeded_is_a_timeout(rsps):
    def stall(request):
        raise http.DeadlineExceeded("response not complete within 5 s")

    rsps.add_callback(responses.POST, USERS_URL, callback=stall)
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    assert call.results[0].outcome == Outcome.TIMEOUT


def test_connection_error(rsps):
    rsps.add(responses.POST, USERS_URL, body=requests.exceptions.ConnectionError("Connection refused"))
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    result = call.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "connection_error", True)


def test_stalling_server_is_cut_off_near_the_timeout():
    """Real socket: the server sleeps 2 s, the client gives up at its 0.5 s deadline."""
    with local_server(delay=2.0, body=json.dumps(fixture("users_ok.json")).encode()) as (base, recorded):
        client = make_client(timeout=0.5, base_url_override=base)
        calls = client.send(Action.ADD, [email(1, "mary@example.com")])
    # The server would answer 200 after 2 s: a TIMEOUT outcome means the client gave up before that.
    assert calls[0].results[0].outcome == Outcome.TIMEOUT
    assert calls[0].results[0].retryable is True
    assert recorded.requests[0]["path"] == f"/v26.0/{AUDIENCE}/users"


# --- snippets never hold identifiers or secrets -------------------------------------------------------------------
def test_snippets_are_redacted(rsps):
    leaky = {
        "error": {
            "message": f"Bad row {MARY_SHA} for mary@example.com with access_token={TOKEN}",
            "type": "OAuthException",
            "code": 100,
            "fbtrace_id": "AbCdEf",
        }
    }
    call = _send_with(rsps, 400, leaky)
    for text in (call.snippet, call.results[0].message):
        assert MARY_SHA not in text
        assert "mary@example.com" not in text
        assert TOKEN not in text


def test_success_snippet_has_counts_only(rsps):
    rsps.add(responses.POST, USERS_URL, json=fixture("users_ok.json"))
    call = make_client().send(Action.ADD, [email(1, "mary@example.com")])[0]
    assert MARY_SHA not in call.snippet
    assert call.snippet.startswith("received=3 invalid=0")


# --- test_connection ----------------------------------------------------------------------------------------------
def test_connection_ok(rsps):
    rsps.add(responses.GET, f"{BASE}/act_1234567890", json=fixture("ad_account.json"))
    ok, message = make_client(app_secret=APP_SECRET).test_connection()
    assert ok is True
    assert message.startswith("Connected to ad account Acme Retail NL")
    request = rsps.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    query = parse_qs(urlsplit(request.url).query)
    assert query["fields"] == ["id,name"]
    assert "appsecret_proof" in query
    assert TOKEN not in request.url


def test_connection_accepts_digits_without_act_prefix(rsps):
    rsps.add(responses.GET, f"{BASE}/act_1234567890", json=fixture("ad_account.json"))
    ok, _ = make_client(ad_account_id="1234567890").test_connection()
    assert ok is True


def test_connection_invalid_credentials(rsps):
    rsps.add(responses.GET, f"{BASE}/act_1234567890", status=400, json=fixture("error_190.json"))
    ok, message = make_client().test_connection()
    assert ok is False
    assert message.startswith("Invalid credentials (Meta error 190/463): Error validating access token")


def test_connection_other_error_names_the_code(rsps):
    rsps.add(responses.GET, f"{BASE}/act_1234567890", status=400, json=fixture("error_100_33.json"))
    ok, message = make_client().test_connection()
    assert ok is False
    assert "Meta error 100/33" in message


def test_connection_timeout(rsps):
    def stall(request):
        raise requests.exceptions.ConnectTimeout("timed out")

    rsps.add_callback(responses.GET, f"{BASE}/act_1234567890", callback=stall)
    ok, message = make_client().test_connection()
    assert ok is False and "did not answer" in message


# --- error meanings -----------------------------------------------------------------------------------------------
def test_error_codes_in_plain_words():
    for code in ("190", "4", "17", "613", "80003", "100", "2650", "invalid_identifier", "no_partner_audience_id"):
        assert ERROR_CODES[code]
    assert error_meaning("613/1487742") == ERROR_CODES["613/1487742"]
    assert error_meaning("100/1713230") == ERROR_CODES["100"]
    assert "rate limit" in error_meaning("80009/2446079")
    assert "500" in error_meaning("http_500")


def test_unsupported_slot_is_not_sent(rsps):
    results = by_index(make_client().send(Action.ADD, [item(1, "customer_id", "C-1")]))
    assert len(rsps.calls) == 0
    assert (results[0][0].outcome, results[0][0].partner_code) == (Outcome.OTHER_ERROR, "unsupported_slot")


def test_missing_token_is_invalid_credentials_without_a_call(rsps):
    config = ClientConfig(partner_config_id=1, settings={}, secrets={}, timeout_seconds=5.0)
    calls = Client(config, http.new_session()).send(Action.ADD, [email(1, "mary@example.com")])
    assert len(rsps.calls) == 0
    assert calls[0].credentials_invalid is True
    assert calls[0].results[0].outcome == Outcome.INVALID_CREDENTIALS
