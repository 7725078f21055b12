"""Azure Event Hubs client: SAS token, batch wire format, size-based splitting, error classification, test connection.

HTTP is mocked with `responses`; the XML error bodies under fixtures/azure_event_hubs/ follow Service Bus's
`<Error><Code>…</Code><Detail>…</Detail></Error>` answers. Token vectors were computed independently (the azure-eventhub
SDK's own token generator and `openssl dgst -sha256 -mac HMAC`), not with the code under test.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
import responses

from connectors.delivery import http
from connectors.delivery.client import client_class
from connectors.delivery.types import Action, ClientConfig, Item
from connectors.models import Outcome
from connectors.partners.azure_event_hubs import client as client_module
from connectors.partners.azure_event_hubs.client import Client, partner_code
from connectors.partners.azure_sas import service_bus_signature, service_bus_token
from tests.connectors.partners.local_server import local_server

FIXTURES = Path(__file__).parent / "fixtures" / "azure_event_hubs"
KEY = base64.b64encode(b"a" * 32).decode()  # "YWFh…YWE=", a policy key as the portal shows it
HOST = "dap-events.servicebus.windows.net"
SEND_URL = f"https://{HOST}/profile-changes/messages?api-version=2014-01"
DESCRIBE_URL = f"https://{HOST}/profile-changes?api-version=2014-01"
RESOURCE = f"https://{HOST}/profile-changes"

# Independent vectors: azure-eventhub 5.15.1 `_pyamqp.utils.generate_sas_token(RESOURCE, "dap-send", KEY, 1893456000)`
# and the same HMAC with openssl (the string-to-sign is the url-encoded URI, a newline and the expiry).
VECTOR_EXPIRY = 1893456000
VECTOR_TOKEN = (
    "SharedAccessSignature sr=https%3A%2F%2Fdap-events.servicebus.windows.net%2Fprofile-changes"
    "&sig=rCXYnoETgQLbmL6p0rRjazBGfZaJZ1rMldQS8Vy9MkE%3D&se=1893456000&skn=dap-send"
)
# A key with "/" and "+" (signature with "+" in it, which must be url-encoded): same SDK, expiry 1700000000.
SLASH_KEY = "XpkpLbYWmCmRpP2g5Ge4h/sM1Ye8NxEnvS9KL3Gp+eA="
SLASH_TOKEN = (
    "SharedAccessSignature sr=https%3A%2F%2Fdap-events.servicebus.windows.net%2Fprofile-changes"
    "&sig=aBs6W3oAYqgysrMQKsy1ktrLTCxyxS%2BApChmgIZBuaU%3D&se=1700000000&skn=dap-send"
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make_client(*, timeout: float = 5.0, override: str = "", key: str = KEY, **settings) -> Client:
    config = ClientConfig(
        partner_config_id=11,
        settings={
            "namespace": "dap-events",
            "event_hub": "profile-changes",
            "sas_key_name": "dap-send",
            "tier": "standard",
            "identifier_slot": "partner_number",
            **settings,
        },
        secrets={"sas_key": key} if key else {},
        timeout_seconds=timeout,
        base_url_override=override,
    )
    return Client(config, http.new_session())


def make_item(n: int, action: str = Action.ADD, **kwargs) -> Item:
    defaults = {
        "profile_id": 2000 + n,
        "action": action,
        "slot": "partner_number",
        "identifier": f"PN-{n:06d}",
        "variables": {"first_name": "Zoë", "tier": "gold", "points": n},
        "partner_audience_id": "loyalty-gold",
        "delivery_id": 70_000 + n,
    }
    return Item(**{**defaults, **kwargs})


def sent_batch(call) -> list[dict]:
    return json.loads(call.request.body)


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def test_dispatcher_finds_the_client():
    assert client_class("azure_event_hubs") is Client


# --- SAS token ----------------------------------------------------------------------------------------------------
def test_token_matches_the_sdk_vector():
    assert service_bus_token(RESOURCE, "dap-send", KEY, VECTOR_EXPIRY) == VECTOR_TOKEN


def test_token_with_slash_and_plus_in_key_and_signature():
    assert service_bus_token(RESOURCE, "dap-send", SLASH_KEY, 1700000000) == SLASH_TOKEN


def test_signature_is_hmac_of_encoded_resource_newline_expiry():
    encoded = "https%3A%2F%2Fdap-events.servicebus.windows.net%2Fprofile-changes"
    assert service_bus_signature(encoded, VECTOR_EXPIRY, KEY) == "rCXYnoETgQLbmL6p0rRjazBGfZaJZ1rMldQS8Vy9MkE="


def test_policy_name_is_url_encoded():
    token = service_bus_token(RESOURCE, "send policy&co", KEY, VECTOR_EXPIRY)
    assert token.endswith("&skn=send%20policy%26co")


def test_token_is_cached_and_renewed_before_expiry(monkeypatch):
    client = make_client()
    monkeypatch.setattr(client_module.time, "time", lambda: 1_000_000.0)
    first = client.authorization()
    assert "&se=1003600&" in first
    monkeypatch.setattr(client_module.time, "time", lambda: 1_000_000.0 + 3000)  # 10 min left: reused
    assert client.authorization() == first
    monkeypatch.setattr(client_module.time, "time", lambda: 1_000_000.0 + 3400)  # under 5 min left: renewed
    renewed = client.authorization()
    assert renewed != first and "&se=1007000&" in renewed


def test_token_is_signed_for_the_real_resource_also_through_the_sandbox(rsps):
    override = "http://127.0.0.1:8099/c/eh"
    rsps.add(responses.POST, f"{override}/{HOST}/profile-changes/messages?api-version=2014-01", status=201)
    make_client(override=override).send(Action.ADD, [make_item(1)])
    token = rsps.calls[0].request.headers["Authorization"]
    fields = dict(part.split("=", 1) for part in token.removeprefix("SharedAccessSignature ").split("&"))
    assert unquote(fields["sr"]) == RESOURCE
    assert unquote(fields["sig"]) == service_bus_signature(fields["sr"], fields["se"], KEY)


# --- wire format --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "event_type", "outcome"),
    [
        (Action.ADD, "profile.added", Outcome.ADDED),
        (Action.REMOVE, "profile.removed", Outcome.REMOVED),
        (Action.UPDATE, "profile.updated", Outcome.ADDED),
    ],
)
def test_batch_request(rsps, action, event_type, outcome):
    rsps.add(responses.POST, SEND_URL, status=201)
    calls = make_client().send(action, [make_item(1, action=action), make_item(2, action=action)])

    assert len(calls) == 1 and calls[0].item_indices == [0, 1] and calls[0].status_code == 201
    assert [r.outcome for r in calls[0].results] == [outcome, outcome]
    request = rsps.calls[0].request
    assert request.headers["Content-Type"] == "application/vnd.microsoft.servicebus.json"
    assert parse_qs(urlsplit(request.url).query) == {"api-version": ["2014-01"]}
    assert re.fullmatch(
        r"SharedAccessSignature sr=https%3A%2F%2Fdap-events\.servicebus\.windows\.net%2Fprofile-changes"
        r"&sig=[A-Za-z0-9%]+&se=\d+&skn=dap-send",
        request.headers["Authorization"],
    )
    batch = sent_batch(rsps.calls[0])
    assert [set(e) for e in batch] == [{"Body", "UserProperties"}] * 2
    assert batch[0]["UserProperties"] == {
        "type": event_type,
        "action": action,
        "delivery_id": "dlv_70001",
        "identifier_slot": "partner_number",
    }
    event = json.loads(batch[0]["Body"])
    assert set(event) == {"id", "type", "action", "timestamp", "profile_id", "identifier", "audience"}
    assert event["id"] == "dlv_70001" and event["type"] == event_type and event["action"] == action
    assert event["profile_id"] == 2001
    assert event["identifier"] == {"slot": "partner_number", "value": "PN-000001"}
    assert event["audience"] == "loyalty-gold"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["timestamp"])


def test_body_is_compact_utf8_and_variables_only_when_enabled(rsps):
    rsps.add(responses.POST, SEND_URL, status=201)
    make_client().send(Action.ADD, [make_item(1)])
    assert "variables" not in json.loads(sent_batch(rsps.calls[0])[0]["Body"])

    variables = {"first_name": "Zoë", "born": date(1990, 5, 17), "balance": Decimal("12.50"), "vip": None}
    make_client(include_profile_variables=True).send(Action.ADD, [make_item(2, variables=variables)])
    raw = rsps.calls[1].request.body
    assert "Zoë".encode() in raw and b", " not in raw and b": " not in raw
    event = json.loads(sent_batch(rsps.calls[1])[0]["Body"])
    assert event["variables"] == {"first_name": "Zoë", "born": "1990-05-17", "balance": "12.50", "vip": None}


def test_no_audience_is_null(rsps):
    rsps.add(responses.POST, SEND_URL, status=201)
    make_client().send(Action.ADD, [make_item(1, partner_audience_id="")])
    assert json.loads(sent_batch(rsps.calls[0])[0]["Body"])["audience"] is None


def test_event_ids_are_stable_across_retries(rsps):
    rsps.add(responses.POST, SEND_URL, status=503, body=fixture("error_503_server_busy.xml"))
    rsps.add(responses.POST, SEND_URL, status=201)
    client = make_client()
    first = client.send(Action.ADD, [make_item(5)])
    second = client.send(Action.ADD, [make_item(5)])
    assert first[0].results[0].retryable and second[0].results[0].outcome == Outcome.ADDED
    ids = [json.loads(sent_batch(call)[0]["Body"])["id"] for call in rsps.calls]
    assert ids == ["dlv_70005", "dlv_70005"]


def test_empty_identifier_is_not_sent(rsps):
    rsps.add(responses.POST, SEND_URL, status=201)
    calls = make_client().send(Action.ADD, [make_item(1, identifier=""), make_item(2)])
    by_index = {i: r for c in calls for i, r in zip(c.item_indices, c.results, strict=True)}
    assert by_index[0].outcome == Outcome.OTHER_ERROR and by_index[0].partner_code == "invalid_identifier"
    assert by_index[1].outcome == Outcome.ADDED
    assert len(sent_batch(rsps.calls[0])) == 1


def test_missing_key_sends_nothing_and_pauses(rsps):
    calls = make_client(key="").send(Action.ADD, [make_item(1), make_item(2)])
    assert len(rsps.calls) == 0
    assert calls[0].item_indices == [0, 1] and calls[0].credentials_invalid
    assert calls[0].results[0].outcome == Outcome.INVALID_CREDENTIALS and calls[0].partner_code == "no_sas_key"


# --- batch splitting ----------------------------------------------------------------------------------------------
def _body_sizes(rsps) -> list[int]:
    return [len(call.request.body) for call in rsps.calls]


@pytest.mark.parametrize(("tier", "limit"), [("basic", 256 * 1024), ("standard", 1024 * 1024)])
def test_batches_are_split_by_the_tier_size_limit(rsps, tier, limit):
    rsps.add(responses.POST, SEND_URL, status=201)
    padding = {"notes": "x" * 3000}  # each event is about 3.3 KB
    items = [make_item(i, variables=padding) for i in range(700)]
    calls = make_client(tier=tier, include_profile_variables=True).send(Action.ADD, items)

    sizes = _body_sizes(rsps)
    assert all(size <= limit for size in sizes)
    assert len(sizes) == len(calls) >= 2
    # Order kept, every item in exactly one call, each request as full as the next event allows.
    assert [i for c in calls for i in c.item_indices] == list(range(700))
    event_size = len(json.dumps(sent_batch(rsps.calls[0])[0], separators=(",", ":"), ensure_ascii=False).encode())
    assert all(size + event_size + 1 > limit for size in sizes[:-1])
    assert all(r.outcome == Outcome.ADDED for c in calls for r in c.results)


def test_at_most_1000_events_per_request(rsps):
    rsps.add(responses.POST, SEND_URL, status=201)
    calls = make_client().send(Action.ADD, [make_item(i, variables={}) for i in range(1500)])
    assert [len(sent_batch(c)) for c in rsps.calls] == [1000, 500]
    assert [len(c.item_indices) for c in calls] == [1000, 500]


def test_pack_counts_brackets_and_commas_exactly():
    client = make_client(tier="basic")
    limit = 256 * 1024
    events = [(0, b"x" * 100_000), (1, b"y" * 100_000), (2, b"z" * (limit - 200_000 - 4))]
    batches, too_large = client.pack(events)
    assert [[i for i, _ in b] for b in batches] == [[0, 1, 2]] and not too_large  # 2 + 3 events + 2 commas == limit
    events[2] = (2, b"z" * (limit - 200_000 - 3))
    batches, _ = client.pack(events)
    assert [[i for i, _ in b] for b in batches] == [[0, 1], [2]]


def test_event_larger_than_the_limit_is_not_sent(rsps):
    rsps.add(responses.POST, SEND_URL, status=201)
    huge = {"blob": "x" * (300 * 1024)}
    calls = make_client(tier="basic", include_profile_variables=True).send(
        Action.ADD, [make_item(1), make_item(2, variables=huge), make_item(3)]
    )
    by_index = {i: (r, c) for c in calls for i, r in zip(c.item_indices, c.results, strict=True)}
    result, call = by_index[1]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "event_too_large", False)
    assert call.status_code is None
    assert by_index[0][0].outcome == by_index[2][0].outcome == Outcome.ADDED
    assert len(rsps.calls) == 1 and len(sent_batch(rsps.calls[0])) == 2


def test_413_splits_the_batch_in_two(rsps):
    rsps.add(responses.POST, SEND_URL, status=413, body=fixture("error_413_too_large.xml"))
    rsps.add(responses.POST, SEND_URL, status=201)
    rsps.add(responses.POST, SEND_URL, status=201)
    calls = make_client().send(Action.ADD, [make_item(i) for i in range(5)])
    assert [len(sent_batch(c)) for c in rsps.calls] == [5, 2, 3]
    assert [c.item_indices for c in calls] == [[0, 1], [2, 3, 4]]
    assert all(r.outcome == Outcome.ADDED for c in calls for r in c.results)


def test_413_for_a_single_event_is_a_partner_error(rsps):
    rsps.add(responses.POST, SEND_URL, status=413, body=fixture("error_413_too_large.xml"))
    call = make_client().send(Action.ADD, [make_item(1)])[0]
    result = call.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, "413", False)
    assert "exceeds the limit" in result.message


# --- error classification -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "name", "outcome", "code", "retryable", "credentials"),
    [
        (401, "error_401_invalid_signature.xml", Outcome.INVALID_CREDENTIALS, "401/InvalidSignature", False, True),
        (401, "error_401_send_claim.xml", Outcome.INVALID_CREDENTIALS, "401", False, True),
        (403, "error_403_quota.xml", Outcome.PARTNER_ERROR, "403/QuotaExceeded", False, False),
        (404, "error_404_not_found.xml", Outcome.PARTNER_ERROR, "404", False, False),
        (400, "error_400_bad_request.xml", Outcome.PARTNER_ERROR, "400", False, False),
        (500, "error_500_internal.xml", Outcome.PARTNER_ERROR, "500/InternalServerError", True, False),
        (503, "error_503_server_busy.xml", Outcome.PARTNER_ERROR, "503/50002", True, False),
    ],
)
def test_error_classification(rsps, status, name, outcome, code, retryable, credentials):
    rsps.add(responses.POST, SEND_URL, status=status, body=fixture(name), content_type="application/xml")
    call = make_client().send(Action.ADD, [make_item(1), make_item(2)])[0]
    assert call.item_indices == [0, 1] and call.status_code == status
    assert call.partner_code == code and call.credentials_invalid is credentials
    for result in call.results:
        assert (result.outcome, result.partner_code, result.retryable) == (outcome, code, retryable)
    assert "TrackingId" in call.snippet
    assert Client.error_meaning(code)


def test_server_busy_waits_ten_seconds_unless_retry_after_says_otherwise(rsps):
    rsps.add(responses.POST, SEND_URL, status=503, body=fixture("error_503_server_busy.xml"))
    rsps.add(
        responses.POST, SEND_URL, status=503, body=fixture("error_503_server_busy.xml"), headers={"Retry-After": "3"}
    )
    client = make_client()
    assert client.send(Action.ADD, [make_item(1)])[0].retry_after == 10.0
    assert client.send(Action.ADD, [make_item(1)])[0].retry_after == 3.0


def test_throttling_429_honours_retry_after(rsps):
    rsps.add(responses.POST, SEND_URL, status=429, body=b"", headers={"Retry-After": "42"})
    call = make_client().send(Action.ADD, [make_item(1)])[0]
    result = call.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, "429", True)
    assert call.retry_after == 42.0


def test_expired_token_is_signed_again_and_resent_at_once(rsps):
    rsps.add(responses.POST, SEND_URL, status=401, body=fixture("error_401_expired_token.xml"))
    rsps.add(responses.POST, SEND_URL, status=201)
    client = make_client()
    client._token = "SharedAccessSignature sr=stale&sig=stale&se=1&skn=dap-send"
    client._token_expiry = 10**10  # looks valid to the client; Azure says otherwise
    calls = client.send(Action.ADD, [make_item(1)])
    assert len(rsps.calls) == 2
    assert rsps.calls[0].request.headers["Authorization"] != rsps.calls[1].request.headers["Authorization"]
    assert calls[0].results[0].outcome == Outcome.ADDED and not calls[0].credentials_invalid


def test_expired_token_twice_is_retried_later_not_paused(rsps):
    rsps.add(responses.POST, SEND_URL, status=401, body=fixture("error_401_expired_token.xml"))
    calls = make_client().send(Action.ADD, [make_item(1)])
    assert len(rsps.calls) == 2 and len(calls) == 1
    result = calls[0].results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (
        Outcome.INVALID_CREDENTIALS,
        "401/ExpiredToken",
        True,
    )
    assert calls[0].credentials_invalid is False


def test_refused_key_stops_the_other_batches(rsps):
    rsps.add(responses.POST, SEND_URL, status=401, body=fixture("error_401_invalid_signature.xml"))
    calls = make_client().send(Action.ADD, [make_item(i, variables={}) for i in range(2500)])
    assert len(rsps.calls) == 1
    assert [len(c.item_indices) for c in calls] == [1000, 1000, 500]
    assert all(c.credentials_invalid for c in calls)
    assert all(r.outcome == Outcome.INVALID_CREDENTIALS for c in calls for r in c.results)


def test_401_drops_the_cached_token(rsps):
    rsps.add(responses.POST, SEND_URL, status=401, body=fixture("error_401_invalid_signature.xml"))
    client = make_client()
    client.send(Action.ADD, [make_item(1)])
    assert client._token == ""


def test_timeout(rsps):
    def stall(request):
        raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)")

    rsps.add_callback(responses.POST, SEND_URL, callback=stall)
    call = make_client().send(Action.ADD, [make_item(1), make_item(2)])[0]
    assert call.item_indices == [0, 1] and call.status_code is None
    assert all(r.outcome == Outcome.TIMEOUT and r.retryable for r in call.results)


def test_connection_error(rsps):
    rsps.add(responses.POST, SEND_URL, body=requests.exceptions.ConnectionError("Name or service not known"))
    result = make_client().send(Action.ADD, [make_item(1)])[0].results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "connection_error", True)


def test_stalling_server_is_cut_off_near_the_timeout():
    with local_server(delay=2.0, status=201, body=b"") as (base, recorded):
        calls = make_client(timeout=0.5, override=base).send(Action.ADD, [make_item(1)])
    assert calls[0].results[0].outcome == Outcome.TIMEOUT
    assert recorded.requests[0]["path"] == f"/{HOST}/profile-changes/messages?api-version=2014-01"


def test_partner_code_reading():
    assert partner_code(401, {"Code": "401", "Detail": "ExpiredToken: The token is expired."}) == "401/ExpiredToken"
    assert partner_code(503, {"Code": "503", "Detail": "… Error code : 50002. Please wait"}) == "503/50002"
    assert partner_code(403, {"Code": "403", "Detail": "Forbidden. SubCode=40301."}) == "403/40301"
    assert partner_code(404, {"Detail": "The messaging entity 'sb://x/y' could not be found."}) == "404"
    assert partner_code(502, {}) == "502"


def test_error_meanings():
    assert "key" in Client.error_meaning("401/InvalidSignature")
    assert Client.error_meaning("401/SomethingNew") == Client.error_meaning("401")
    assert "10 seconds" in Client.error_meaning("503/50002")
    assert "server error" in Client.error_meaning("http_502")


def test_snippets_and_messages_never_hold_the_key_or_signature(rsps):
    token = service_bus_token(RESOURCE, "dap-send", KEY, VECTOR_EXPIRY)
    leaky = f"<Error><Code>401</Code><Detail>MalformedToken: bad header {token} key {KEY}</Detail></Error>"
    rsps.add(responses.POST, SEND_URL, status=401, body=leaky.encode())
    call = make_client().send(Action.ADD, [make_item(1)])[0]
    for text in (call.snippet, call.results[0].message):
        assert KEY not in text and "rCXYnoETgQLbmL6p0rRjazBGfZaJZ1rMldQS8Vy9MkE" not in text


# --- test connection ----------------------------------------------------------------------------------------------
def test_connection_ok(rsps):
    rsps.add(responses.GET, DESCRIBE_URL, body=fixture("event_hub_description.xml"), status=200)
    ok, message = make_client().test_connection()
    assert ok is True
    assert message == "Connected to event hub 'profile-changes' (8 partitions, status Active)."
    assert rsps.calls[0].request.headers["Authorization"].startswith("SharedAccessSignature sr=https%3A%2F%2F")


def test_connection_with_send_only_policy_says_what_it_could_not_check(rsps):
    rsps.add(responses.GET, DESCRIBE_URL, body=fixture("error_401_read_claim.xml"), status=401)
    ok, message = make_client().test_connection()
    assert ok is True
    assert "accepted the key" in message and "could not be confirmed" in message and "Send claim" in message


def test_connection_bad_key(rsps):
    rsps.add(responses.GET, DESCRIBE_URL, body=fixture("error_401_invalid_signature.xml"), status=401)
    ok, message = make_client().test_connection()
    assert ok is False
    assert "InvalidSignature" in message and "policy name and key" in message and KEY not in message


@pytest.mark.parametrize(
    ("status", "name"), [(404, "error_404_not_found.xml"), (200, "empty_feed.xml")], ids=["404", "empty-feed"]
)
def test_connection_unknown_event_hub(rsps, status, name):
    rsps.add(responses.GET, DESCRIBE_URL, body=fixture(name), status=status)
    ok, message = make_client().test_connection()
    assert ok is False
    assert message == "Event hub 'profile-changes' does not exist in namespace dap-events."


def test_connection_unreachable_namespace(rsps):
    rsps.add(responses.GET, DESCRIBE_URL, body=requests.exceptions.ConnectionError("Name or service not known"))
    ok, message = make_client().test_connection()
    assert ok is False and message.startswith(f"Could not reach {HOST}: check the namespace name")


def test_connection_timeout(rsps):
    rsps.add(responses.GET, DESCRIBE_URL, body=requests.exceptions.ReadTimeout("timed out"))
    assert make_client(timeout=3).test_connection() == (False, "Event Hubs did not answer within 3 s.")


def test_connection_without_key():
    assert make_client(key="").test_connection() == (False, "Set the shared access key first.")
