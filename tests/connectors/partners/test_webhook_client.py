"""Generic webhook client: Standard Webhooks signing, payload shape, override URL, concurrency, classification."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime

import pytest
import requests
import responses

from connectors.delivery import http
from connectors.delivery.client import client_class
from connectors.delivery.types import Action, ClientConfig, Item
from connectors.models import Outcome
from connectors.partners.webhook import signing
from connectors.partners.webhook.client import Client, error_meaning
from tests.connectors.partners.local_server import local_server

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
ENDPOINT = "https://hooks.example.com/dap/events?source=dap"


def make_client(*, timeout: float = 5.0, override: str = "", secret: str = SECRET, **settings) -> Client:
    config = ClientConfig(
        partner_config_id=7,
        settings={"endpoint_url": ENDPOINT, "identifier_slot": "customer_id", **settings},
        secrets={"signing_secret": secret} if secret else {},
        timeout_seconds=timeout,
        base_url_override=override,
    )
    return Client(config, http.new_session(pool_size=32))


def make_item(n: int, action: str = Action.ADD, **kwargs) -> Item:
    defaults = {
        "profile_id": 1000 + n,
        "action": action,
        "slot": "customer_id",
        "identifier": f"CUST-{n:05d}",
        "variables": {"first_name": "Zoë", "tier": "gold", "points": n},
        "partner_audience_id": "newsletter",
        "delivery_id": 50_000 + n,
    }
    return Item(**{**defaults, **kwargs})


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def test_dispatcher_finds_the_client():
    assert client_class("webhook") is Client


# --- headers, signature, payload ----------------------------------------------------------------------------------
def test_signed_post_with_standard_webhooks_headers(rsps):
    rsps.add(responses.POST, ENDPOINT, status=204)
    before = int(time.time())
    calls = make_client().send(Action.ADD, [make_item(1)])

    request = rsps.calls[0].request
    headers = request.headers
    assert headers["webhook-id"] == "dlv_50001"
    assert headers["content-type"] == "application/json"
    timestamp = int(headers["webhook-timestamp"])
    assert before <= timestamp <= int(time.time())
    body = request.body
    assert isinstance(body, bytes)
    assert signing.verify(
        SECRET, headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"], body
    )
    assert headers["webhook-signature"].startswith("v1,")
    assert calls[0].item_indices == [0]
    assert calls[0].status_code == 204
    assert calls[0].results[0].outcome == Outcome.ADDED


def test_signature_fails_with_another_secret(rsps):
    rsps.add(responses.POST, ENDPOINT, status=200)
    make_client().send(Action.ADD, [make_item(1)])
    request = rsps.calls[0].request
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    h = request.headers
    assert not signing.verify(other, h["webhook-id"], h["webhook-timestamp"], h["webhook-signature"], request.body)


@pytest.mark.parametrize(
    ("action", "event_type", "outcome"),
    [
        (Action.ADD, "profile.added", Outcome.ADDED),
        (Action.REMOVE, "profile.removed", Outcome.REMOVED),
        (Action.UPDATE, "profile.updated", Outcome.ADDED),
    ],
)
def test_payload_shape(rsps, action, event_type, outcome):
    rsps.add(responses.POST, ENDPOINT, status=200, json={"ok": True})
    calls = make_client().send(action, [make_item(3, action=action)])

    body = rsps.calls[0].request.body
    assert b" " not in body.replace(b"Zo\xc3\xab", b"")  # compact separators
    event = json.loads(body)
    assert set(event) == {"type", "id", "timestamp", "data"}
    assert event["type"] == event_type
    assert event["id"] == "dlv_50003"
    when = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert when.utcoffset().total_seconds() == 0 and event["timestamp"].endswith("Z")
    assert event["data"] == {
        "profile_id": 1003,
        "identifier": {"slot": "customer_id", "value": "CUST-00003"},
        "audience": "newsletter",
    }
    assert calls[0].results[0].outcome == outcome


def test_variables_only_when_enabled(rsps):
    rsps.add(responses.POST, ENDPOINT, status=200)
    make_client(include_profile_variables=True).send(Action.ADD, [make_item(4)])
    body = rsps.calls[0].request.body
    assert "Zoë".encode() in body  # UTF-8, not \u escapes
    assert json.loads(body)["data"]["variables"] == {"first_name": "Zoë", "tier": "gold", "points": 4}


def test_no_audience_is_null(rsps):
    rsps.add(responses.POST, ENDPOINT, status=200)
    make_client().send(Action.ADD, [make_item(5, partner_audience_id="")])
    assert json.loads(rsps.calls[0].request.body)["data"]["audience"] is None


def test_webhook_id_is_stable_across_retries(rsps):
    rsps.add(responses.POST, ENDPOINT, status=503)
    rsps.add(responses.POST, ENDPOINT, status=200)
    client = make_client()
    first = client.send(Action.ADD, [make_item(6)])
    second = client.send(Action.ADD, [make_item(6)])
    assert first[0].results[0].retryable is True
    assert second[0].results[0].outcome == Outcome.ADDED
    assert rsps.calls[0].request.headers["webhook-id"] == rsps.calls[1].request.headers["webhook-id"] == "dlv_50006"


def test_override_url_keeps_endpoint_path_and_query(rsps):
    rsps.add(responses.POST, "http://127.0.0.1:8089/dap/events?source=dap", status=200)
    make_client(override="http://127.0.0.1:8089/").send(Action.ADD, [make_item(7)])
    assert rsps.calls[0].request.url == "http://127.0.0.1:8089/dap/events?source=dap"


def test_missing_secret_sends_nothing(rsps):
    calls = make_client(secret="").send(Action.ADD, [make_item(1), make_item(2)])
    assert len(rsps.calls) == 0
    assert calls[0].item_indices == [0, 1]
    assert calls[0].credentials_invalid is True
    assert calls[0].results[0].outcome == Outcome.INVALID_CREDENTIALS


# --- concurrency --------------------------------------------------------------------------------------------------
def test_many_items_all_results_in_order(rsps):
    def answer(request):
        event = json.loads(request.body)
        n = event["data"]["profile_id"] - 1000
        return (500, {}, "") if n % 7 == 0 else (200, {}, "")

    rsps.add_callback(responses.POST, ENDPOINT, callback=answer)
    items = [make_item(n) for n in range(100)]
    calls = make_client().send(Action.ADD, items)

    assert [c.item_indices for c in calls] == [[n] for n in range(100)]
    for n, call in enumerate(calls):
        expected = Outcome.PARTNER_ERROR if n % 7 == 0 else Outcome.ADDED
        assert call.results[0].outcome == expected
    assert len(rsps.calls) == 100
    assert sorted(c.request.headers["webhook-id"] for c in rsps.calls) == sorted(
        f"dlv_{50_000 + n}" for n in range(100)
    )


def test_requests_run_concurrently_over_real_sockets():
    """32 requests to a server that takes 0.3 s each overlap (several are in flight at once)."""
    with local_server(delay=0.3, status=202) as (base, recorded):
        client = make_client(override=base)
        try:
            calls = client.send(Action.ADD, [make_item(n) for n in range(32)])
        finally:
            client.close()
    assert [c.results[0].outcome for c in calls] == [Outcome.ADDED] * 32
    assert [c.item_indices for c in calls] == [[n] for n in range(32)]
    assert recorded.max_active > 1
    for request in recorded.requests:
        h = {k.lower(): v for k, v in request["headers"].items()}
        assert request["path"] == "/dap/events?source=dap"
        assert signing.verify(SECRET, h["webhook-id"], h["webhook-timestamp"], h["webhook-signature"], request["body"])


# --- classification -----------------------------------------------------------------------------------------------
def _one(rsps, status, **kwargs):
    rsps.add(responses.POST, ENDPOINT, status=status, **kwargs)
    calls = make_client().send(Action.ADD, [make_item(1)])
    assert len(calls) == 1 and calls[0].item_indices == [0]
    return calls[0]


def test_410_gone(rsps):
    call = _one(rsps, 410)
    result = call.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, "410", False)
    assert call.endpoint_gone is True
    assert call.status_code == 410


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_invalid_credentials(rsps, status):
    call = _one(rsps, status)
    assert call.credentials_invalid is True
    assert call.results[0].outcome == Outcome.INVALID_CREDENTIALS
    assert call.results[0].retryable is False
    assert call.results[0].partner_code == str(status)


def test_429_retry_after(rsps):
    call = _one(rsps, 429, headers={"Retry-After": "17"})
    assert call.retry_after == 17.0
    result = call.results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, "429", True)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_retryable(rsps, status):
    result = _one(rsps, status).results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, str(status), True)


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_other_4xx_final(rsps, status):
    result = _one(rsps, status).results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, str(status), False)


def test_redirect_not_followed(rsps):
    call = _one(rsps, 301, headers={"Location": "https://elsewhere.example.com/"})
    assert len(rsps.calls) == 1
    assert call.results[0].outcome == Outcome.PARTNER_ERROR and call.results[0].retryable is False


def test_timeout(rsps):
    def stall(request):
        raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)")

    rsps.add_callback(responses.POST, ENDPOINT, callback=stall)
    call = make_client().send(Action.ADD, [make_item(1)])[0]
    assert (call.results[0].outcome, call.results[0].retryable) == (Outcome.TIMEOUT, True)
    assert call.status_code is None


def test_connection_error(rsps):
    rsps.add(responses.POST, ENDPOINT, body=requests.exceptions.ConnectionError("Connection refused"))
    result = make_client().send(Action.ADD, [make_item(1)])[0].results[0]
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "connection_error", True)


def test_stalling_server_is_cut_off_near_the_timeout():
    with local_server(delay=2.0) as (base, _):
        client = make_client(timeout=0.5, override=base)
        calls = client.send(Action.ADD, [make_item(1)])
    # The server would answer after 2 s: a TIMEOUT outcome means the client gave up before that.
    assert calls[0].results[0].outcome == Outcome.TIMEOUT


def test_snippet_masks_echoed_identifier(rsps):
    call = _one(rsps, 400, json={"error": "unknown customer CUST-00001 (jane@example.com)"})
    assert "CUST-00001" not in call.snippet
    assert "jane@example.com" not in call.snippet
    assert "unknown customer" in call.snippet


# --- test_connection ----------------------------------------------------------------------------------------------
def test_connection_sends_signed_ping(rsps):
    rsps.add(responses.POST, ENDPOINT, status=200)
    ok, message = make_client().test_connection()
    assert (ok, message) == (True, "Endpoint answered 200")
    request = rsps.calls[0].request
    event = json.loads(request.body)
    assert event["type"] == "ping"
    h = request.headers
    assert signing.verify(SECRET, h["webhook-id"], h["webhook-timestamp"], h["webhook-signature"], request.body)


@pytest.mark.parametrize(("status", "fragment"), [(401, "signing secret"), (410, "410 Gone"), (500, "500")])
def test_connection_failures(rsps, status, fragment):
    rsps.add(responses.POST, ENDPOINT, status=status)
    ok, message = make_client().test_connection()
    assert ok is False and fragment in message


def test_connection_unreachable(rsps):
    rsps.add(responses.POST, ENDPOINT, body=requests.exceptions.ConnectionError("Connection refused"))
    ok, message = make_client().test_connection()
    assert ok is False and message.startswith("Could not connect")


def test_error_meanings():
    assert "410" in error_meaning("410")
    assert "retried" in error_meaning("503")
    assert error_meaning("404") == "The endpoint answered 404."


def test_variables_with_dates_and_decimals(rsps):
    from datetime import date
    from decimal import Decimal

    rsps.add(responses.POST, ENDPOINT, status=200)
    variables = {"birthday": date(1990, 5, 17), "balance": Decimal("12.50")}
    make_client(include_profile_variables=True).send(Action.ADD, [make_item(8, variables=variables)])
    assert json.loads(rsps.calls[0].request.body)["data"]["variables"] == {"birthday": "1990-05-17", "balance": "12.50"}


def test_malformed_secret_sends_nothing(rsps):
    calls = make_client(secret="whsec_not base64!").send(Action.ADD, [make_item(1)])
    assert len(rsps.calls) == 0
    assert calls[0].credentials_invalid is True
    assert calls[0].results[0].partner_code == "signing_secret"
    ok, message = make_client(secret="whsec_not base64!").test_connection()
    assert ok is False and "signing secret" in message
