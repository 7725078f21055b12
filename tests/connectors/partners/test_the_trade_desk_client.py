"""The Trade Desk client: CRM drop + upload wire format, email normalisation vectors, the 1,500-record minimum,
removal limits, real-time data for TTD ids, and error classification.

HTTP is mocked with `responses`; fixture payloads under fixtures/the_trade_desk/ follow the shapes in The Trade Desk's
documentation (API errors `{"Message", "ErrorDetails"}`, pre-signed S3 drop URLs and their XML errors, real-time
`FailedLines`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest
import requests
import responses

from connectors.delivery import http
from connectors.delivery.client import client_class
from connectors.delivery.types import Action, ClientConfig, Item
from connectors.models import Outcome
from connectors.partners.the_trade_desk import normalize
from connectors.partners.the_trade_desk.client import ERROR_CODES, REALTIME_TTL_MINUTES, Client
from tests.connectors.partners.local_server import local_server

FIXTURES = Path(__file__).parent / "fixtures" / "the_trade_desk"
TOKEN = "ttdAuthTokenForClientTests0123456789abcdefXYZ"
SECRET = "advertiser-secret-key-for-tests-42"
ADVERTISER = "a1b2c3d"
SEGMENT = "cc9b84o"
OTHER_SEGMENT = "dd0c95p"
API = "https://api.thetradedesk.com"
DROP_URL = f"{API}/v3/crmdata/segment/{ADVERTISER}/{SEGMENT}"
OTHER_DROP_URL = f"{API}/v3/crmdata/segment/{ADVERTISER}/{OTHER_SEGMENT}"
REALTIME_URL = "https://euw-data.adsrvr.org/data/advertiser"

# UID2 normalisation examples (The Trade Desk's CRM data uses the UID2/EUID rules): raw -> normalised -> Base64 SHA-256.
VECTORS = [
    ("USER@example.com", "user@example.com", "tMmiiTI7IaAcPpQPFQ65uMVCWH8av9jw4cwf/F5HVRQ="),
    ("MyEmail@example.com", "myemail@example.com", "FsGNM28LJQ8OLZB0Us65ZYp07NrovJSGTCMSKnLMJ6U="),
    ("  My.Email@example.com\n", "my.email@example.com", "4itTvG+HEnTzpiqzejyu1yFPwU1nYhWpaiQvz62hyB8="),
    ("JaneSaoirse+Work@example.com", "janesaoirse+work@example.com", "KKruSBUjDNO069iMUVImVQZm6RrAGZKeOtrD9mwogYA="),
    ("JANE.SAOIRSE@gmail.com", "janesaoirse@gmail.com", "ku4mBX7Z3qJTXWyLFB1INzkyR2WZGW4ANSJUiW21iI8="),
    ("Jane.Saoirse@gmail.com", "janesaoirse@gmail.com", "ku4mBX7Z3qJTXWyLFB1INzkyR2WZGW4ANSJUiW21iI8="),
    ("JaneSaoirse+Work@gmail.com", "janesaoirse@gmail.com", "ku4mBX7Z3qJTXWyLFB1INzkyR2WZGW4ANSJUiW21iI8="),
]
USER_HEX = "b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514"  # SHA-256 of "user@example.com"
USER_B64 = "tMmiiTI7IaAcPpQPFQ65uMVCWH8av9jw4cwf/F5HVRQ="


def fixture(name: str):
    text = (FIXTURES / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


def make_client(*, timeout: float = 5.0, base_url_override: str = "", secrets=None, **settings) -> Client:
    config = ClientConfig(
        partner_config_id=1,
        settings={
            "advertiser_id": ADVERTISER,
            "pii_type": "EmailHashedUnifiedId2",
            "merge_mode": "Replace",
            "retention_enabled": True,
            **settings,
        },
        secrets={"api_token": TOKEN} if secrets is None else secrets,
        timeout_seconds=timeout,
        base_url_override=base_url_override,
    )
    return Client(config, http.new_session())


def realtime_client(**settings) -> Client:
    return make_client(secrets={"api_token": TOKEN, "advertiser_secret": SECRET}, realtime_region="euw", **settings)


def emails(n: int, *, segment: str = SEGMENT, action: str = Action.ADD, start: int = 0) -> list[Item]:
    return [
        Item(profile_id=i, action=action, slot="email", identifier=f"user{i}@example.com", partner_audience_id=segment)
        for i in range(start, start + n)
    ]


def ttd_ids(n: int, *, segment: str = SEGMENT, action: str = Action.ADD) -> list[Item]:
    return [
        Item(
            profile_id=i,
            action=action,
            slot="ttd_id",
            identifier=str(uuid.UUID(int=i + 1)),
            partner_audience_id=segment,
        )
        for i in range(n)
    ]


def b64_sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def by_index(calls) -> dict:
    """item index -> (ItemResult, CallResult); each item appears in exactly one CallResult."""
    out = {}
    for call in calls:
        for index, result in zip(call.item_indices, call.results, strict=True):
            assert index not in out, "each item gets exactly one result"
            out[index] = (result, call)
    return out


def add_drop(rsps, url=DROP_URL, drop="drop_ok.json", **kwargs):
    rsps.add(responses.POST, url, json=fixture(drop), **kwargs)
    return fixture(drop).get("Url")


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# --- registry and normalisation -----------------------------------------------------------------------------------
def test_dispatcher_finds_the_client():
    assert client_class("the_trade_desk") is Client
    assert Client.partner.key == "the_trade_desk"
    assert Client.partner.limits.min_batch_size == 1_500 and Client.partner.limits.batch_interval_seconds == 3600


@pytest.mark.parametrize(("raw", "normalised", "encoded"), VECTORS)
def test_email_vectors(raw, normalised, encoded):
    assert normalize.normalize_email(raw) == normalised
    assert normalize.hash_email(raw) == encoded
    assert b64_sha256(normalised) == encoded  # computed here, independently of the client
    assert normalize.plain_email(raw) == normalised


def test_base64_not_hex():
    assert hashlib.sha256(b"user@example.com").hexdigest() == USER_HEX
    encoded = normalize.hash_email("user@example.com")
    assert encoded == USER_B64 and len(encoded) == 44 and base64.b64decode(encoded).hex() == USER_HEX


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("J.O.H.N+promo+x@GMAIL.com", "john@gmail.com"),
        ("john.doe+tag@googlemail.com", "john.doe+tag@googlemail.com"),  # the rule is for gmail.com only
        ("john.doe+tag@gmail.com.au", "john.doe+tag@gmail.com.au"),
        ("Ünïcode.User@Example.com", "ünïcode.user@example.com"),
    ],
)
def test_gmail_rule_applies_to_gmail_com_only(raw, normalised):
    assert normalize.normalize_email(raw) == normalised
    assert normalize.hash_email(raw) == b64_sha256(normalised)


@pytest.mark.parametrize("raw", ["", "   ", "no-at-sign", "user@", "@example.com", "+tag@gmail.com", "a@b@c.com"])
def test_values_that_normalise_to_nothing(raw):
    assert normalize.hash_email(raw) == "" and normalize.plain_email(raw) == ""


def test_prehashed_values_are_not_hashed_twice():
    assert normalize.hash_email(USER_HEX) == USER_B64
    assert normalize.hash_email(USER_HEX.upper()) == USER_B64
    assert normalize.hash_email(f" {USER_B64} ") == USER_B64
    assert normalize.hash_email("not+a/valid=hash") == ""
    assert normalize.plain_email(USER_HEX) == ""  # a hash cannot be sent as a plain email


def test_ttd_ids_are_sent_as_is():
    assert normalize.ttd_id("  0f8fad5b-d9cb-469f-a165-70867728950e ") == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert normalize.ttd_id("   ") == ""


# --- CRM data: drop + upload --------------------------------------------------------------------------------------
def test_add_opens_a_drop_then_puts_one_hash_per_line(rsps):
    url = add_drop(rsps)
    rsps.add(responses.PUT, url.split("?")[0], body="")
    items = emails(1500)
    calls = make_client().send(Action.ADD, items)

    drop_request, upload_request = (c.request for c in rsps.calls)
    assert drop_request.method == "POST" and drop_request.url == DROP_URL
    assert drop_request.headers["TTD-Auth"] == TOKEN
    assert drop_request.headers["Content-Type"] == "application/json"
    assert json.loads(drop_request.body) == {
        "PiiType": "EmailHashedUnifiedId2",
        "MergeMode": "Add",  # the configured "Replace" is never sent: uploads carry changes only
        "RetentionEnabled": True,
    }
    assert upload_request.method == "PUT" and upload_request.url == url  # used exactly as given, query included
    assert upload_request.headers["Content-Type"] == "text/plain"
    assert "TTD-Auth" not in upload_request.headers and "Authorization" not in upload_request.headers
    body = upload_request.body.decode()
    assert body.endswith("\n")
    assert body.split("\n")[:-1] == [b64_sha256(f"user{i}@example.com") for i in range(1500)]

    assert len(calls) == 2
    assert calls[0].item_indices == [] and calls[0].status_code == 200  # the drop call carries no items
    assert "aabbcc5b01" in calls[0].snippet
    outcomes = by_index(calls)
    assert len(outcomes) == 1500 and {r.outcome for r, _ in outcomes.values()} == {Outcome.ADDED}
    assert calls[1].snippet.endswith("1500 lines uploaded")


def test_update_is_an_add(rsps):
    url = add_drop(rsps)
    rsps.add(responses.PUT, url.split("?")[0])
    calls = make_client().send(Action.UPDATE, emails(1500, action=Action.UPDATE))
    assert {r.outcome for r, _ in by_index(calls).values()} == {Outcome.ADDED}


def test_plain_email_pii_type_and_retention_setting(rsps):
    url = add_drop(rsps)
    rsps.add(responses.PUT, url.split("?")[0])
    items = emails(1499) + [Item(9999, Action.ADD, "email", " Jane.Saoirse+Work@GMAIL.com ", {}, SEGMENT)]
    make_client(pii_type="Email", retention_enabled=False, merge_mode="Add").send(Action.ADD, items)
    drop_request, upload_request = (c.request for c in rsps.calls)
    assert json.loads(drop_request.body) == {"PiiType": "Email", "MergeMode": "Add", "RetentionEnabled": False}
    lines = upload_request.body.decode().split("\n")
    assert lines[0] == "user0@example.com" and lines[1499] == "janesaoirse@gmail.com"


def test_default_crm_data_id_when_the_connection_names_none(rsps):
    url = add_drop(rsps)
    rsps.add(responses.PUT, url.split("?")[0])
    calls = make_client(crm_data_id=SEGMENT).send(Action.ADD, emails(1500, segment=""))
    assert rsps.calls[0].request.url == DROP_URL
    assert {r.outcome for r, _ in by_index(calls).values()} == {Outcome.ADDED}


def test_groups_by_segment_one_upload_each(rsps):
    url = add_drop(rsps)
    add_drop(rsps, url=OTHER_DROP_URL)
    rsps.add(responses.PUT, url.split("?")[0])
    items = emails(1500) + emails(1600, segment=OTHER_SEGMENT, start=1500)
    calls = make_client().send(Action.ADD, items)
    posts = [c.request.url for c in rsps.calls if c.request.method == "POST"]
    puts = [c.request for c in rsps.calls if c.request.method == "PUT"]
    assert posts == [DROP_URL, OTHER_DROP_URL]
    assert [p.body.count(b"\n") for p in puts] == [1500, 1600]
    assert len(calls) == 4 and len(by_index(calls)) == 3100


# --- the 1,500-record minimum -------------------------------------------------------------------------------------
def test_below_the_minimum_nothing_is_sent(rsps):
    calls = make_client().send(Action.ADD, emails(1499))
    assert len(rsps.calls) == 0
    (call,) = calls
    assert call.status_code is None and call.retry_after == 3600
    assert call.partner_code == "below_minimum_batch"
    result = call.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "below_minimum_batch", True)
    assert "1499" in result.message and "1,500" in result.message


def test_the_minimum_counts_per_segment_and_valid_values_only(rsps):
    url = add_drop(rsps)
    rsps.add(responses.PUT, url.split("?")[0])
    invalid = [Item(8000 + i, Action.ADD, "email", "not-an-email", {}, SEGMENT) for i in range(3)]
    items = emails(1500) + emails(10, segment=OTHER_SEGMENT, start=1500) + invalid
    outcomes = by_index(make_client().send(Action.ADD, items))
    assert [c.request.url for c in rsps.calls if c.request.method == "POST"] == [DROP_URL]
    assert rsps.calls[1].request.body.count(b"\n") == 1500
    assert {outcomes[i][0].outcome for i in range(1500)} == {Outcome.ADDED}
    assert {outcomes[i][0].partner_code for i in range(1500, 1510)} == {"below_minimum_batch"}
    assert {(outcomes[i][0].partner_code, outcomes[i][0].retryable) for i in range(1510, 1513)} == {
        ("invalid_identifier", False)
    }


# --- removals -----------------------------------------------------------------------------------------------------
def test_email_removal_is_not_sent(rsps):
    calls = make_client().send(Action.REMOVE, emails(2000, action=Action.REMOVE))
    assert len(rsps.calls) == 0
    (call,) = calls
    assert len(call.item_indices) == 2000 and call.partner_code == "crm_remove_unsupported"
    result = call.results[0]
    assert (result.outcome, result.retryable) == (Outcome.OTHER_ERROR, False)
    assert "cannot remove" in result.message


# --- what is not sent ---------------------------------------------------------------------------------------------
def test_unsendable_items(rsps):
    items = [
        Item(1, Action.ADD, "phone", "+31612345678", {}, SEGMENT),
        Item(2, Action.ADD, "email", "user@example.com", {}, ""),
        Item(3, Action.ADD, "ttd_id", str(uuid.uuid4()), {}, SEGMENT),
        Item(4, Action.ADD, "email", "", {}, SEGMENT),
    ]
    outcomes = by_index(make_client().send(Action.ADD, items))
    assert len(rsps.calls) == 0
    assert {i: outcomes[i][0].partner_code for i in range(4)} == {
        0: "unsupported_slot",
        1: "no_partner_audience_id",
        2: "realtime_not_configured",
        3: "invalid_identifier",
    }
    assert all(not r.retryable and r.outcome == Outcome.OTHER_ERROR for r, _ in outcomes.values())


def test_missing_token_is_invalid_credentials_without_a_call(rsps):
    (call,) = make_client(secrets={}).send(Action.ADD, emails(1500))
    assert len(rsps.calls) == 0
    assert call.credentials_invalid and call.results[0].outcome == Outcome.INVALID_CREDENTIALS


# --- errors of the drop request -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "name"), [(401, "error_401.json"), (403, "error_403.json")])
def test_refused_token_is_invalid_credentials(rsps, status, name):
    rsps.add(responses.POST, DROP_URL, json=fixture(name), status=status)
    (call,) = make_client().send(Action.ADD, emails(1500))
    assert len(rsps.calls) == 1  # no upload
    assert call.credentials_invalid and call.status_code == status and call.partner_code == f"http_{status}"
    result = call.results[0]
    assert (result.outcome, result.retryable) == (Outcome.INVALID_CREDENTIALS, False)
    assert fixture(name)["Message"][:20] in result.message


def test_after_a_refused_token_the_other_segments_wait_without_a_call(rsps):
    rsps.add(responses.POST, DROP_URL, json=fixture("error_401.json"), status=401)
    items = emails(1500) + emails(1500, segment=OTHER_SEGMENT, start=1500)
    calls = make_client().send(Action.ADD, items)
    assert len(rsps.calls) == 1
    outcomes = by_index(calls)
    assert outcomes[0][0].outcome == Outcome.INVALID_CREDENTIALS
    waiting = outcomes[1500][0]
    assert waiting.retryable and not outcomes[1500][1].credentials_invalid
    assert waiting.partner_code == "token_refused_earlier"


def test_validation_error_keeps_the_message_and_property(rsps):
    rsps.add(responses.POST, DROP_URL, json=fixture("error_400_validation.json"), status=400)
    (call,) = make_client().send(Action.ADD, emails(1500))
    result = call.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, "http_400/PiiType", False)
    assert "PiiType: The PII type 'Phone' cannot be used" in result.message
    assert Client.error_meaning("http_400/PiiType") == ERROR_CODES["http_400"]


def test_validation_error_details_as_an_object(rsps):
    rsps.add(responses.POST, DROP_URL, json=fixture("error_400_details_object.json"), status=400)
    result = make_client().send(Action.ADD, emails(1500))[0].results[0]
    assert result.partner_code == "http_400"  # two properties: no single one to name
    assert "MergeMode: 'Merge' is not a valid merge mode." in result.message and "RetentionEnabled" in result.message


def test_unknown_segment_is_a_final_partner_error(rsps):
    rsps.add(responses.POST, DROP_URL, json=fixture("error_404.json"), status=404)
    (call,) = make_client().send(Action.ADD, emails(1500))
    result = call.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, "http_404", False)
    assert not call.credentials_invalid


def test_throttling_is_retried_after_retry_after(rsps):
    rsps.add(responses.POST, DROP_URL, json=fixture("error_429.json"), status=429, headers={"Retry-After": "30"})
    (call,) = make_client().send(Action.ADD, emails(1500))
    assert call.retry_after == 30.0
    result = call.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, "http_429", True)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(rsps, status):
    rsps.add(responses.POST, DROP_URL, json=fixture("error_500.json"), status=status)
    result = make_client().send(Action.ADD, emails(1500))[0].results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, f"http_{status}", True)


def test_server_error_without_json(rsps):
    rsps.add(responses.POST, DROP_URL, body="<html>Bad gateway</html>", status=502)
    result = make_client().send(Action.ADD, emails(1500))[0].results[0]
    assert result.retryable and result.message == "HTTP 502"


def test_drop_answer_without_url_is_retried(rsps):
    add_drop(rsps, drop="drop_no_url.json")
    (call,) = make_client().send(Action.ADD, emails(1500))
    assert len(rsps.calls) == 1
    assert (call.partner_code, call.results[0].retryable) == ("invalid_response", True)


def test_drop_url_must_be_https(rsps):
    rsps.add(responses.POST, DROP_URL, json={"ReferenceId": "r1", "Url": "http://evil.example/drop?x=1"})
    (call,) = make_client().send(Action.ADD, emails(1500))
    assert len(rsps.calls) == 1
    assert (call.partner_code, call.results[0].retryable) == ("invalid_drop_url", False)


def test_drop_url_on_the_sandbox_origin_is_accepted_with_an_override():
    client = make_client(base_url_override="http://127.0.0.1:8765/c/demo")
    assert client.drop_url_allowed("http://127.0.0.1:8765/c/demo/thetradedesk-crm-data.s3.amazonaws.com/x?y=1")
    assert not client.drop_url_allowed("http://127.0.0.1:9999/c/demo/x")
    assert not client.drop_url_allowed("ftp://127.0.0.1:8765/x")
    assert client.drop_url_allowed("https://thetradedesk-crm-data.s3.us-east-1.amazonaws.com/x")
    assert not make_client().drop_url_allowed("http://127.0.0.1:8765/x")


def test_base_url_override_maps_every_host(rsps):
    base = "http://127.0.0.1:8765/c/demo"
    client = realtime_client(base_url_override=base)
    assert client.segment_url(SEGMENT) == f"{base}/api.thetradedesk.com/v3/crmdata/segment/{ADVERTISER}/{SEGMENT}"
    assert client.realtime_url() == f"{base}/euw-data.adsrvr.org/data/advertiser"


def test_timeout_on_the_drop(rsps):
    def stall(request):
        raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)")

    rsps.add_callback(responses.POST, DROP_URL, callback=stall)
    (call,) = make_client().send(Action.ADD, emails(1500))
    assert call.status_code is None and len(call.item_indices) == 1500
    assert all(r.outcome == Outcome.TIMEOUT and r.retryable for r in call.results)


def test_stalling_server_is_cut_off_near_the_timeout():
    """Real socket: the server sleeps 2 s before answering the drop request; the client gives up at 0.5 s."""
    with local_server(delay=2.0, body=json.dumps(fixture("drop_ok.json")).encode()) as (base, recorded):
        calls = make_client(timeout=0.5, base_url_override=base).send(Action.ADD, emails(1500))
    assert calls[0].results[0].outcome == Outcome.TIMEOUT and calls[0].results[0].retryable
    assert recorded.requests[0]["path"] == f"/api.thetradedesk.com/v3/crmdata/segment/{ADVERTISER}/{SEGMENT}"
    assert recorded.requests[0]["headers"]["TTD-Auth"] == TOKEN


# --- errors of the upload -----------------------------------------------------------------------------------------
def test_expired_drop_url_is_retried_with_a_new_drop(rsps):
    url = add_drop(rsps)
    rsps.add(responses.PUT, url.split("?")[0], body=fixture("s3_access_denied.xml"), status=403)
    calls = make_client().send(Action.ADD, emails(1500))
    assert len(calls) == 2 and calls[0].item_indices == []
    upload = calls[1]
    assert not upload.credentials_invalid  # the storage refused a URL, not our token
    result = upload.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (
        Outcome.PARTNER_ERROR,
        "upload/AccessDenied",
        True,
    )
    assert result.message == "Request has expired"


def test_too_large_upload_is_final(rsps):
    url = add_drop(rsps)
    rsps.add(responses.PUT, url.split("?")[0], body=fixture("s3_entity_too_large.xml"), status=400)
    result = make_client().send(Action.ADD, emails(1500))[1].results[0]
    assert (result.partner_code, result.retryable) == ("upload/EntityTooLarge", False)


def test_storage_slow_down_honours_retry_after(rsps):
    url = add_drop(rsps)
    rsps.add(
        responses.PUT, url.split("?")[0], body=fixture("s3_slow_down.xml"), status=503, headers={"Retry-After": "5"}
    )
    upload = make_client().send(Action.ADD, emails(1500))[1]
    assert (upload.partner_code, upload.retry_after, upload.results[0].retryable) == ("upload/SlowDown", 5.0, True)


def test_connection_error_on_the_upload(rsps):
    url = add_drop(rsps)
    rsps.add(responses.PUT, url.split("?")[0], body=requests.exceptions.ConnectionError("Connection reset"))
    upload = make_client().send(Action.ADD, emails(1500))[1]
    result = upload.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "connection_error", True)


# --- real-time data for TTD ids -----------------------------------------------------------------------------------
def test_ttd_ids_go_to_real_time_data_signed(rsps):
    rsps.add(responses.POST, REALTIME_URL, json={})
    items = ttd_ids(3)
    calls = realtime_client().send(Action.ADD, items)
    request = rsps.calls[0].request
    assert request.headers["Content-Type"] == "application/json"
    expected = base64.b64encode(hmac.new(SECRET.encode(), request.body, hashlib.sha1).digest()).decode()
    assert request.headers["TtdSignature"] == expected
    assert "TTD-Auth" not in request.headers
    assert json.loads(request.body) == {
        "AdvertiserId": ADVERTISER,
        "Items": [
            {"TDID": item.identifier, "Data": [{"Name": SEGMENT, "TTLInMinutes": REALTIME_TTL_MINUTES}]}
            for item in items
        ],
    }
    assert REALTIME_TTL_MINUTES == 43_200  # 30 days
    # No 1,500 minimum here: three TTD ids are sent at once.
    assert {r.outcome for r, _ in by_index(calls).values()} == {Outcome.ADDED}


def test_ttd_id_removal_sends_a_zero_ttl(rsps):
    rsps.add(responses.POST, REALTIME_URL, json={})
    calls = realtime_client().send(Action.REMOVE, ttd_ids(2, action=Action.REMOVE))
    body = json.loads(rsps.calls[0].request.body)
    assert {d["TTLInMinutes"] for item in body["Items"] for d in item["Data"]} == {0}
    assert {r.outcome for r, _ in by_index(calls).values()} == {Outcome.REMOVED}


def test_failed_lines_map_back_to_their_items(rsps):
    rsps.add(responses.POST, REALTIME_URL, json=fixture("realtime_failed_lines.json"))
    (call,) = realtime_client().send(Action.ADD, ttd_ids(3))
    assert [r.outcome for r in call.results] == [Outcome.ADDED, Outcome.PARTNER_ERROR, Outcome.ADDED]
    assert (call.results[1].partner_code, call.results[1].retryable) == ("MissingUserId", False)
    assert call.partner_code == "MissingUserId" and call.snippet == "items=3 failed=1"
    assert Client.error_meaning("MissingUserId")


def test_real_time_signature_refused_is_invalid_credentials(rsps):
    rsps.add(responses.POST, REALTIME_URL, json={"Message": "Invalid TtdSignature."}, status=403)
    (call,) = realtime_client().send(Action.ADD, ttd_ids(2))
    assert call.credentials_invalid and call.partner_code == "realtime/http_403"
    assert call.results[0].outcome == Outcome.INVALID_CREDENTIALS
    assert "advertiser secret" in Client.error_meaning("realtime/http_403")


def test_real_time_throttling_is_retried(rsps):
    rsps.add(
        responses.POST, REALTIME_URL, json={"Message": "Too many requests"}, status=429, headers={"Retry-After": "7"}
    )
    (call,) = realtime_client().send(Action.ADD, ttd_ids(2))
    assert (call.retry_after, call.results[0].retryable, call.partner_code) == (7.0, True, "realtime/http_429")


def test_real_time_splits_at_10000_items(rsps):
    rsps.add(responses.POST, REALTIME_URL, json={})
    calls = realtime_client().send(Action.ADD, ttd_ids(10_001))
    assert [len(json.loads(c.request.body)["Items"]) for c in rsps.calls] == [10_000, 1]
    assert len(by_index(calls)) == 10_001


def test_emails_and_ttd_ids_in_one_send(rsps):
    url = add_drop(rsps)
    rsps.add(responses.PUT, url.split("?")[0])
    rsps.add(responses.POST, REALTIME_URL, json={})
    items = emails(1500) + [
        Item(9000, Action.ADD, "ttd_id", "0f8fad5b-d9cb-469f-a165-70867728950e", {}, SEGMENT),
    ]
    outcomes = by_index(realtime_client().send(Action.ADD, items))
    assert len(outcomes) == 1501 and {r.outcome for r, _ in outcomes.values()} == {Outcome.ADDED}
    assert [c.request.method for c in rsps.calls] == ["POST", "PUT", "POST"]


# --- snippets and messages never hold identifiers or secrets ------------------------------------------------------
def test_snippets_are_redacted(rsps):
    leaky = {"Message": f"Bad line {USER_B64} from user0@example.com, TTD-Auth: {TOKEN}"}
    rsps.add(responses.POST, DROP_URL, json=leaky, status=400)
    (call,) = make_client().send(Action.ADD, emails(1500))
    for text in (call.snippet, call.results[0].message):
        assert USER_B64 not in text and "user0@example.com" not in text and TOKEN not in text


def test_upload_snippets_hold_no_url_signature_or_values(rsps):
    url = add_drop(rsps)
    rsps.add(responses.PUT, url.split("?")[0], body=fixture("s3_access_denied.xml"), status=403)
    calls = make_client().send(Action.ADD, emails(1500))
    texts = [c.snippet for c in calls] + [r.message for c in calls for r in c.results]
    assert not any("X-Amz-Signature" in t or "3f1c0e8a9b2d" in t or b64_sha256("user0@example.com") in t for t in texts)


# --- test connection ----------------------------------------------------------------------------------------------
ADVERTISER_URL = f"{API}/v3/advertiser/{ADVERTISER}"
SEGMENT_URL = f"{API}/v3/crmdata/segment/{ADVERTISER}/{SEGMENT}"


def test_connection_ok(rsps):
    rsps.add(responses.GET, ADVERTISER_URL, json=fixture("advertiser.json"))
    ok, message = make_client().test_connection()
    assert ok and message == f"Connected to advertiser Acme Shoes ({ADVERTISER})."
    assert rsps.calls[0].request.headers["TTD-Auth"] == TOKEN


def test_connection_reads_the_default_segment(rsps):
    rsps.add(responses.GET, ADVERTISER_URL, json=fixture("advertiser.json"))
    rsps.add(responses.GET, SEGMENT_URL, json=fixture("segment.json"))
    ok, message = make_client(crm_data_id=SEGMENT).test_connection()
    assert ok and "'Loyal customers' (cc9b84o)" in message


def test_connection_bad_credentials(rsps):
    rsps.add(responses.GET, ADVERTISER_URL, json=fixture("error_401.json"), status=401)
    ok, message = make_client().test_connection()
    assert not ok and message.startswith("Invalid credentials") and "HTTP 401" in message
    assert TOKEN not in message


def test_connection_unknown_advertiser(rsps):
    rsps.add(responses.GET, ADVERTISER_URL, json={"Message": "Advertiser not found."}, status=404)
    ok, message = make_client().test_connection()
    assert not ok and message.startswith(f"Unknown advertiser {ADVERTISER}")


def test_connection_unknown_segment(rsps):
    rsps.add(responses.GET, ADVERTISER_URL, json=fixture("advertiser.json"))
    rsps.add(responses.GET, SEGMENT_URL, json=fixture("error_404.json"), status=404)
    ok, message = make_client(crm_data_id=SEGMENT).test_connection()
    assert not ok and f"Unknown CRM data segment {SEGMENT}" in message


def test_connection_timeout_and_missing_settings(rsps):
    def stall(request):
        raise requests.exceptions.ConnectTimeout("timed out")

    rsps.add_callback(responses.GET, ADVERTISER_URL, callback=stall)
    assert make_client().test_connection() == (False, "The Trade Desk did not answer within 5 s.")
    assert make_client(secrets={}).test_connection() == (False, "Set the API token first.")
    assert make_client(advertiser_id="").test_connection() == (False, "Set the advertiser ID first.")


def test_connection_mentions_real_time(rsps):
    rsps.add(responses.GET, ADVERTISER_URL, json=fixture("advertiser.json"))
    ok, message = realtime_client().test_connection()
    assert ok and "euw-data.adsrvr.org" in message


# --- error codes in plain words -----------------------------------------------------------------------------------
def test_error_codes_in_plain_words():
    for code in ("http_401", "http_404", "below_minimum_batch", "crm_remove_unsupported", "realtime_not_configured"):
        assert Client.error_meaning(code) == ERROR_CODES[code]
    assert Client.error_meaning("upload/InternalError") == ERROR_CODES["upload"]
    assert Client.error_meaning("realtime/http_500") == ERROR_CODES["realtime"]
    assert "server error" in Client.error_meaning("http_503")
