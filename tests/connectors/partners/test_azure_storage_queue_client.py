"""Azure non-event (Storage Queue) client: Put Message wire format, size limit, concurrency, error classification
and test connection.

HTTP is mocked with `responses`; the XML bodies under fixtures/azure_storage_queue/ follow Queue Storage's answers
(`<QueueMessagesList>` on 201, `<Error><Code>…</Code><Message>…</Message></Error>` otherwise).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from connectors.delivery import http
from connectors.delivery.client import client_class
from connectors.delivery.types import Action, ClientConfig, Item
from connectors.models import Outcome
from connectors.partners.azure_storage_queue.client import MAX_MESSAGE_CHARS, Client
from tests.connectors.partners.local_server import local_server

FIXTURES = Path(__file__).parent / "fixtures" / "azure_storage_queue"
HOST = "dapstorage01.queue.core.windows.net"
# An account SAS as the portal writes it (already url-encoded); the client sends it as the query string, verbatim.
SAS = "sv=2022-11-02&ss=q&srt=o&sp=a&se=2099-01-01T00:00:00Z&spr=https&sig=dGhpcy1pcy1ub3QtYS1yZWFsLXNpZw%3D%3D"
MESSAGES_URL = f"https://{HOST}/profile-changes/messages"
CREDS, PARTNER = Outcome.INVALID_CREDENTIALS, Outcome.PARTNER_ERROR
METADATA_URL = f"https://{HOST}/profile-changes"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make_client(*, sas: str = SAS, timeout: float = 5.0, override: str = "", **settings) -> Client:
    config = ClientConfig(
        partner_config_id=12,
        settings={
            "account_name": "dapstorage01",
            "queue_name": "profile-changes",
            "identifier_slot": "partner_number",
            **settings,
        },
        secrets={"sas_token": sas} if sas else {},
        timeout_seconds=timeout,
        base_url_override=override,
    )
    return Client(config, http.new_session(pool_size=32))


def make_item(n: int, action: str = Action.ADD, **kwargs) -> Item:
    defaults = {
        "profile_id": 3000 + n,
        "action": action,
        "slot": "partner_number",
        "identifier": f"PN-{n:06d}",
        "variables": {"first_name": "Zoë", "points": n},
        "partner_audience_id": "loyalty-gold",
        "delivery_id": 80_000 + n,
    }
    return Item(**{**defaults, **kwargs})


def message_event(request) -> dict:
    body = request.body
    match = re.fullmatch(
        rb'<\?xml version="1\.0" encoding="utf-8"\?><QueueMessage><MessageText>([A-Za-z0-9+/=]+)</MessageText>'
        rb"</QueueMessage>",
        body,
    )
    assert match, body
    return json.loads(base64.b64decode(match.group(1)))


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def created(rsps, **kwargs):
    rsps.add(
        responses.POST,
        MESSAGES_URL,
        status=201,
        body=fixture("put_message_created.xml"),
        content_type="application/xml",
    )


def test_dispatcher_finds_the_client():
    assert client_class("azure_storage_queue") is Client


# --- wire format --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "event_type", "outcome"),
    [
        (Action.ADD, "profile.added", Outcome.ADDED),
        (Action.REMOVE, "profile.removed", Outcome.REMOVED),
        (Action.UPDATE, "profile.updated", Outcome.ADDED),
    ],
)
def test_put_message(rsps, action, event_type, outcome):
    created(rsps)
    calls = make_client().send(action, [make_item(1, action=action)])

    assert len(calls) == 1 and calls[0].item_indices == [0] and calls[0].status_code == 201
    assert calls[0].results[0].outcome == outcome
    request = rsps.calls[0].request
    assert request.method == "POST"
    assert request.url == f"{MESSAGES_URL}?{SAS}"  # the token exactly as pasted
    assert request.headers["x-ms-version"] == "2023-11-03"
    assert request.headers["x-ms-client-request-id"] == "dlv_80001"
    assert request.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert "Authorization" not in request.headers
    event = message_event(request)
    assert event == {
        "id": "dlv_80001",
        "type": event_type,
        "action": action,
        "timestamp": event["timestamp"],
        "profile_id": 3001,
        "identifier": {"slot": "partner_number", "value": "PN-000001"},
        "audience": "loyalty-gold",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["timestamp"])


def test_message_text_is_base64_of_the_utf8_json():
    item = make_item(7, variables={"first_name": "Zoë"})
    client = make_client(include_profile_variables=True)
    text = client.message_text(Action.ADD, item, "2026-03-02T10:15:04.000Z")
    expected = (
        '{"id":"dlv_80007","type":"profile.added","action":"add","timestamp":"2026-03-02T10:15:04.000Z",'
        '"profile_id":3007,"identifier":{"slot":"partner_number","value":"PN-000007"},"audience":"loyalty-gold",'
        '"variables":{"first_name":"Zoë"}}'
    )
    assert base64.b64decode(text).decode() == expected
    assert text == base64.b64encode(expected.encode())


def test_leading_question_mark_of_the_token_is_dropped(rsps):
    created(rsps)
    make_client(sas="?" + SAS).send(Action.ADD, [make_item(1)])
    assert rsps.calls[0].request.url == f"{MESSAGES_URL}?{SAS}"


def test_sandbox_override_keeps_host_as_first_segment(rsps):
    override = "http://127.0.0.1:8099/c/q"
    rsps.add(responses.POST, f"{override}/{HOST}/profile-changes/messages", status=201)
    make_client(override=override).send(Action.ADD, [make_item(1)])
    assert rsps.calls[0].request.url == f"{override}/{HOST}/profile-changes/messages?{SAS}"


def test_many_items_go_out_concurrently():
    """Real sockets: 40 messages, each answered after 0.2 s, take far less than 40 x 0.2 s."""
    with local_server(delay=0.2, status=201, body=fixture("put_message_created.xml")) as (base, recorded):
        client = make_client(override=base)
        started = time.monotonic()
        calls = client.send(Action.ADD, [make_item(i) for i in range(40)])
        elapsed = time.monotonic() - started
        client.close()
    assert elapsed < 2.5
    assert recorded.max_active > 4
    assert sorted(i for c in calls for i in c.item_indices) == list(range(40))
    assert all(c.results[0].outcome == Outcome.ADDED for c in calls)
    assert [c.item_indices for c in calls] == [[i] for i in range(40)]  # one CallResult per item, in order


def test_close_stops_the_pool(rsps):
    created(rsps)
    client = make_client()
    client.send(Action.ADD, [make_item(1), make_item(2)])
    assert client._executor is not None
    client.close()
    assert client._executor is None
    names = [t.name for t in threading.enumerate()]
    assert not any(name.startswith("azure-queue") for name in names)


def test_empty_identifier_is_not_sent(rsps):
    created(rsps)
    calls = make_client().send(Action.ADD, [make_item(1, identifier=""), make_item(2)])
    assert calls[0].results[0].partner_code == "invalid_identifier" and calls[0].status_code is None
    assert calls[1].results[0].outcome == Outcome.ADDED
    assert len(rsps.calls) == 1


def test_missing_token_sends_nothing_and_pauses(rsps):
    calls = make_client(sas="").send(Action.ADD, [make_item(1), make_item(2)])
    assert len(rsps.calls) == 0
    assert calls[0].item_indices == [0, 1] and calls[0].credentials_invalid
    assert calls[0].partner_code == "no_sas_token"


# --- size limit ---------------------------------------------------------------------------------------------------
def _variables_for_text_length(client: Client, chars: int) -> dict:
    """Variables padding the message text to exactly `chars` base64 characters (a multiple of 4)."""
    base = len(base64.b64decode(client.message_text(Action.ADD, make_item(1, variables={"p": ""}), "x" * 24)))
    return {"p": "x" * (chars // 4 * 3 - base)}


def test_message_of_exactly_64_kib_is_sent_and_one_more_block_is_not(rsps):
    created(rsps)
    client = make_client(include_profile_variables=True)
    fits = _variables_for_text_length(client, MAX_MESSAGE_CHARS)
    too_big = _variables_for_text_length(client, MAX_MESSAGE_CHARS + 4)
    calls = client.send(Action.ADD, [make_item(1, variables=fits), make_item(2, variables=too_big)])
    assert calls[0].results[0].outcome == Outcome.ADDED
    assert len(rsps.calls) == 1
    sent = re.search(rb"<MessageText>([^<]*)</MessageText>", rsps.calls[0].request.body).group(1)
    assert len(sent) == MAX_MESSAGE_CHARS == 65536
    result = calls[1].results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "message_too_large", False)
    assert "65,540 characters" in result.message


# --- error classification -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "name", "outcome", "code", "retryable", "credentials"),
    [
        (403, "error_authentication_failed.xml", CREDS, "AuthenticationFailed", False, True),
        (403, "error_permission_mismatch.xml", CREDS, "AuthorizationPermissionMismatch", False, True),
        (403, "error_resource_type_mismatch.xml", CREDS, "AuthorizationResourceTypeMismatch", False, True),
        (403, "error_authorization_failure.xml", PARTNER, "AuthorizationFailure", False, False),
        (404, "error_queue_not_found.xml", PARTNER, "QueueNotFound", False, False),
        (400, "error_message_too_large.xml", PARTNER, "MessageTooLarge", False, False),
        (400, "error_invalid_xml.xml", PARTNER, "InvalidXmlDocument", False, False),
        (503, "error_server_busy.xml", PARTNER, "ServerBusy", True, False),
        (500, "error_internal.xml", PARTNER, "InternalError", True, False),
        (500, "error_operation_timed_out.xml", PARTNER, "OperationTimedOut", True, False),
    ],
)
def test_error_classification(rsps, status, name, outcome, code, retryable, credentials):
    rsps.add(
        responses.POST,
        MESSAGES_URL,
        status=status,
        body=fixture(name),
        content_type="application/xml",
        headers={"x-ms-error-code": code},
    )
    call = make_client().send(Action.ADD, [make_item(1)])[0]
    result = call.results[0]
    assert call.status_code == status and call.partner_code == code and call.credentials_invalid is credentials
    assert (result.outcome, result.partner_code, result.retryable) == (outcome, code, retryable)
    assert "RequestId" not in result.message  # the first line of Azure's message only
    assert "RequestId" in call.snippet
    assert Client.error_meaning(code)


def test_code_from_the_header_when_the_body_has_none(rsps):
    rsps.add(responses.POST, MESSAGES_URL, status=409, body=b"", headers={"x-ms-error-code": "QueueBeingDeleted"})
    result = make_client().send(Action.ADD, [make_item(1)])[0].results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (
        Outcome.PARTNER_ERROR,
        "QueueBeingDeleted",
        False,
    )


def test_unknown_answer_without_code(rsps):
    rsps.add(responses.POST, MESSAGES_URL, status=502, body=b"<html>Bad gateway</html>")
    result = make_client().send(Action.ADD, [make_item(1)])[0].results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, "http_502", True)


def test_server_busy_honours_retry_after(rsps):
    rsps.add(
        responses.POST, MESSAGES_URL, status=503, body=fixture("error_server_busy.xml"), headers={"Retry-After": "30"}
    )
    call = make_client().send(Action.ADD, [make_item(1)])[0]
    assert call.results[0].retryable and call.retry_after == 30.0


def test_throttling_429_is_retried(rsps):
    rsps.add(responses.POST, MESSAGES_URL, status=429, body=b"", headers={"Retry-After": "7"})
    call = make_client().send(Action.ADD, [make_item(1)])[0]
    assert call.results[0].retryable and call.retry_after == 7.0 and call.partner_code == "http_429"


def test_timeout(rsps):
    rsps.add(responses.POST, MESSAGES_URL, body=requests.exceptions.ReadTimeout("Read timed out."))
    call = make_client().send(Action.ADD, [make_item(1)])[0]
    assert call.results[0].outcome == Outcome.TIMEOUT and call.results[0].retryable and call.status_code is None


def test_connection_error_never_shows_the_signature(rsps):
    leak = (
        f"HTTPSConnectionPool(host='{HOST}', port=443): Max retries exceeded with url: /profile-changes/messages?{SAS}"
    )
    rsps.add(responses.POST, MESSAGES_URL, body=requests.exceptions.ConnectionError(leak))
    call = make_client().send(Action.ADD, [make_item(1)])[0]
    result = call.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "connection_error", True)
    for text in (call.snippet, result.message):
        assert "dGhpcy1pcy1ub3QtYS1yZWFsLXNpZw" not in text


def test_snippets_are_redacted(rsps):
    leaky = (
        '<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>bad for '
        "mary@example.com</Message><AuthenticationErrorDetail>sig=dGhpcy1pcy1ub3QtYS1yZWFsLXNpZw%3D%3D"
        "</AuthenticationErrorDetail></Error>"
    )
    rsps.add(responses.POST, MESSAGES_URL, status=403, body=leaky.encode())
    call = make_client().send(Action.ADD, [make_item(1)])[0]
    assert "mary@example.com" not in call.snippet and "dGhpcy1pcy1ub3QtYS1yZWFsLXNpZw" not in call.snippet


# --- test connection ----------------------------------------------------------------------------------------------
def test_connection_ok(rsps):
    rsps.add(responses.GET, METADATA_URL, status=200, body=b"", headers={"x-ms-approximate-messages-count": "12"})
    ok, message = make_client().test_connection()
    assert (ok, message) == (True, "Connected to queue 'profile-changes' of storage account dapstorage01, about 12 "
                                   "messages waiting.")  # fmt: skip
    request = rsps.calls[0].request
    assert request.method == "GET"
    assert parse_qs(urlsplit(request.url).query)["comp"] == ["metadata"]
    assert request.url == f"{METADATA_URL}?comp=metadata&{SAS}"


def test_connection_with_add_only_token_says_what_it_could_not_check(rsps):
    rsps.add(responses.GET, METADATA_URL, status=403, body=fixture("error_resource_type_mismatch.xml"))
    ok, message = make_client().test_connection()
    assert ok is True and "accepted the SAS token" in message and "could not be confirmed" in message


def test_connection_bad_token(rsps):
    rsps.add(responses.GET, METADATA_URL, status=403, body=fixture("error_authentication_failed.xml"))
    ok, message = make_client().test_connection()
    assert ok is False
    assert message.startswith("Azure refused the SAS token (AuthenticationFailed: Server failed to authenticate")
    assert "dGhpcy1pcy1ub3QtYS1yZWFsLXNpZw" not in message


def test_connection_unknown_queue(rsps):
    rsps.add(responses.GET, METADATA_URL, status=404, body=fixture("error_queue_not_found.xml"))
    assert make_client().test_connection() == (
        False,
        "Queue 'profile-changes' does not exist in storage account dapstorage01.",
    )


def test_connection_unreachable_account(rsps):
    rsps.add(responses.GET, METADATA_URL, body=requests.exceptions.ConnectionError(f"Failed to resolve '{HOST}'"))
    ok, message = make_client().test_connection()
    assert ok is False and message.startswith(f"Could not reach {HOST}: check the storage account name")


@pytest.mark.parametrize(
    ("sas", "expected"),
    [
        ("sv=2022-11-02&ss=q&srt=o&sp=a&se=2020-01-01T00:00:00Z&sig=x", "expired on 2020-01-01T00:00:00Z"),
        ("sv=2022-11-02&ss=q&srt=o&sp=a&st=2098-01-01&se=2099-01-01&sig=x", "not valid before 2098-01-01"),
        ("sv=2022-11-02&ss=b&srt=o&sp=a&se=2099-01-01&sig=x", "not made for the Queue service"),
        ("sv=2022-11-02&ss=q&srt=c&sp=a&se=2099-01-01&sig=x", "lacks the Object resource type"),
        ("sv=2022-11-02&ss=q&srt=o&sp=r&se=2099-01-01&sig=x", "lacks the Add permission"),
        ("sv=2022-11-02&sp=r&se=2099-01-01&sig=x", "lacks the Add permission"),
        ("sv=2022-11-02&ss=q&srt=o&sp=a&se=soon&sig=x", "expiry (se=) cannot be read"),
    ],
)
def test_connection_reads_the_token_itself_first(rsps, sas, expected):
    ok, message = make_client(sas=sas).test_connection()
    assert ok is False and expected in message
    assert len(rsps.calls) == 0


def test_connection_without_token():
    assert make_client(sas="").test_connection() == (False, "Set the SAS token first.")
