"""The local partner sandbox, driven over HTTP with `requests` against an in-process server (`sandbox` fixture)."""

import base64
import hashlib
import json
import socket
import time
import uuid

import pytest
import requests
from django.core.management import CommandError, call_command

from connectors.partners.webhook.signing import signature_header
from connectors.sandbox.server import SandboxServer

TOKEN = "EAAB-sandbox-test-token-0000000000"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "whsec_" + base64.b64encode(b"sandbox-test-secret-32-bytes-long").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-also-32-bytes-xxx").decode()


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


EMAILS = [sha(f"user{i}@example.com") for i in range(5)]


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def users_url(sandbox, audience="23850001", scope=None, version="v26.0"):
    prefix = f"/c/{scope}" if scope else ""
    return f"{sandbox.url}{prefix}/{version}/{audience}/users"


def add(http, sandbox, data, schema="EMAIL_SHA256", **kwargs):
    return http.post(users_url(sandbox, **kwargs), json={"payload": {"schema": schema, "data": data}}, headers=AUTH)


def fault(http, sandbox, **spec):
    response = http.post(f"{sandbox.url}/_sandbox/faults", json=spec)
    assert response.status_code == 201, response.text
    return response.json()


def stats(http, sandbox, scope="default"):
    return http.get(f"{sandbox.url}/_sandbox/stats", params={"scope": scope}).json()[scope]


def webhook_post(http, sandbox, name="crm", *, secret=SECRET, msg_id=None, body=None, scope=None, timestamp=None):
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    raw = json.dumps(body if body is not None else {"type": "profile.added", "data": {"id": "c1"}}).encode()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header([secret], msg_id, timestamp, raw),
    }
    prefix = f"/c/{scope}" if scope else ""
    return http.post(f"{sandbox.url}{prefix}/webhook/{name}", data=raw, headers=headers)


def register(http, sandbox, name="crm", secret=SECRET):
    response = http.put(f"{sandbox.url}/_sandbox/webhooks/{name}", json={"secret": secret})
    assert response.status_code == 200, response.text


def meta_error(response, status=400):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["fbtrace_id"]
    return error


# Server ---------------------------------------------------------------------------------------------------------


def test_start_gives_url_and_port(sandbox):
    assert sandbox.url == f"http://127.0.0.1:{sandbox.port}"
    assert sandbox.port > 0
    from connectors.sandbox.server import PARTNERS

    served = requests.get(f"{sandbox.url}/_sandbox").json()["partners"]
    assert served[:3] == ["meta", "webhook", "google_oauth"]
    assert served == [p.NAME for p in PARTNERS]


def test_unknown_path_is_a_json_404(sandbox, http):
    response = http.get(f"{sandbox.url}/nowhere")
    assert response.status_code == 404
    assert response.json()["path"] == "/nowhere"
    assert http.get(f"{sandbox.url}/_sandbox/nothing").status_code == 404


def test_keep_alive_chunked_and_expect_continue_on_one_connection(sandbox):
    body = json.dumps({"payload": {"schema": "EMAIL_SHA256", "data": EMAILS}}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    path = "/v26.0/1/users"
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as sock:
        reader = sock.makefile("rb")
        for extra, payload in (
            (f"Content-Length: {len(body)}\r\n", body),
            ("Transfer-Encoding: chunked\r\n", chunked),
            (f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n", body),
        ):
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n{extra}\r\n"
            sock.sendall(head.encode())
            if "Expect" in extra:
                assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
                assert reader.readline() == b"\r\n"
            sock.sendall(payload)
            assert reader.readline().startswith(b"HTTP/1.1 200 ")
            headers = {}
            while (line := reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            assert "connection" not in headers  # the connection stays open
            answer = json.loads(reader.read(int(headers["content-length"])))
            assert answer["num_received"] == 5


def test_refuses_non_loopback_hosts():
    with pytest.raises(ValueError, match="loopback"):
        SandboxServer("0.0.0.0")


def test_management_command_refuses_non_loopback_host():
    with pytest.raises(CommandError, match="loopback"):
        call_command("partner_sandbox", "--host", "0.0.0.0", "--port", "0")
    with pytest.raises(CommandError, match="loopback"):
        call_command("partner_sandbox", host="example.com", port=0)


# Meta Custom Audiences ----------------------------------------------------------------------------------------


def test_meta_add_and_remove(sandbox, http):
    response = add(http, sandbox, [EMAILS[0], [EMAILS[1]], EMAILS[2]])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["audience_id"] == "23850001"
    assert body["session_id"].isdigit()
    assert body["num_received"] == 3
    assert body["num_invalid_entries"] == 0
    assert body["invalid_entry_samples"] == []

    # Remove, form-encoded with the token as a parameter, as the Graph API also accepts.
    response = http.delete(
        users_url(sandbox),
        data={"payload": json.dumps({"schema": "EMAIL_SHA256", "data": EMAILS[:2]}), "access_token": TOKEN},
    )
    assert response.status_code == 200, response.text
    assert response.json()["num_received"] == 2

    assert stats(http, sandbox)["meta"] == {
        "requests": 2,
        "rows_added": 3,
        "rows_removed": 2,
        "rows_invalid": 0,
        "errors": 0,
    }


def test_meta_session_id_is_echoed(sandbox, http):
    payload = {"schema": "PHONE_SHA256", "data": [sha("33612345678")]}
    session = {"session_id": 9876, "batch_seq": 1, "last_batch_flag": True, "estimated_num_total": 1}
    response = http.post(users_url(sandbox), json={"payload": payload, "session": session}, headers=AUTH)
    assert response.json()["session_id"] == "9876"


def test_meta_invalid_token(sandbox, http):
    payload = {"payload": {"schema": "EMAIL_SHA256", "data": EMAILS}}
    for headers in ({}, {"Authorization": "Bearer too-short"}):
        error = meta_error(http.post(users_url(sandbox), json=payload, headers=headers))
        assert error["code"] == 190
        assert error["type"] == "OAuthException"
        assert error["message"] == "Invalid OAuth access token - Cannot parse access token"
    assert stats(http, sandbox)["meta"]["errors"] == 2


def test_meta_more_than_10000_rows_refused(sandbox, http):
    rows = [sha(f"u{i}") for i in range(10_001)]
    error = meta_error(add(http, sandbox, rows))
    assert error["code"] == 100
    assert error["message"].startswith("(#100)")
    assert "10000" in error["message"]

    response = add(http, sandbox, rows[:10_000])
    assert response.status_code == 200
    assert response.json()["num_received"] == 10_000


def test_meta_invalid_rows_counted_with_samples(sandbox, http):
    invalid = ["not-a-hash", EMAILS[0].upper(), EMAILS[1][:-1], 12345, ["a", "b"], "x" * 64]
    invalid += [sha(f"bad{i}")[:60] for i in range(9)]  # 15 invalid in all
    rows = [EMAILS[0], *invalid[:3], EMAILS[1], *invalid[3:], [EMAILS[2]]]
    body = add(http, sandbox, rows).json()
    assert body["num_received"] == len(rows)
    assert body["num_invalid_entries"] == 15
    assert body["invalid_entry_samples"] == invalid[:10]
    assert stats(http, sandbox)["meta"]["rows_added"] == 3


def test_meta_mobile_advertiser_id(sandbox, http):
    madid = str(uuid.uuid4())
    rows = [madid, [madid], madid.upper(), madid.replace("-", ""), sha("x")]
    body = add(http, sandbox, rows, schema="MOBILE_ADVERTISER_ID").json()
    assert body["num_invalid_entries"] == 3
    assert body["invalid_entry_samples"] == rows[2:]


def test_meta_multi_key_schema(sandbox, http):
    schema = ["EMAIL", "PHONE", "FN", "MADID", "EXTERN_ID"]
    good = [
        [EMAILS[0], sha("33612345678"), sha("anne"), str(uuid.uuid4()), "crm-1"],
        ["", "", sha("bob"), "", ""],
    ]
    bad = [["", "", "", "", ""], [EMAILS[1], "nothex"[:6], "", "", ""], [EMAILS[2]], "flat"]
    body = add(http, sandbox, good + bad, schema=schema).json()
    assert body["num_invalid_entries"] == 4
    assert body["invalid_entry_samples"] == bad


def test_meta_unknown_schema(sandbox, http):
    for schema in ("EMAIL_MD5", ["EMAIL", "NOPE"], ["EMAIL", "EMAIL"], None):
        error = meta_error(add(http, sandbox, EMAILS, schema=schema))
        assert error["code"] == 100


def test_meta_missing_payload_and_empty_data(sandbox, http):
    assert meta_error(http.post(users_url(sandbox), json={}, headers=AUTH))["code"] == 100
    assert meta_error(add(http, sandbox, []))["code"] == 100


def test_meta_bad_audience_id(sandbox, http):
    error = meta_error(add(http, sandbox, EMAILS, audience="not-an-id"))
    assert error["code"] == 100
    assert error["error_subcode"] == 33
    assert error["message"].startswith("Unsupported post request. Object with ID 'not-an-id' does not exist")
    error = meta_error(http.delete(users_url(sandbox, audience="abc"), json={"payload": {}}, headers=AUTH))
    assert error["message"].startswith("Unsupported delete request.")


def test_meta_test_connection(sandbox, http):
    response = http.get(f"{sandbox.url}/v26.0/act_1000000001", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["id"] == "act_1000000001"
    assert response.json()["name"] == "Sandbox ad account"

    response = http.get(f"{sandbox.url}/v25.0/act_1000000001", params={"access_token": TOKEN, "fields": "name"})
    assert response.json() == {"id": "act_1000000001", "name": "Sandbox ad account"}

    assert meta_error(http.get(f"{sandbox.url}/v26.0/act_1000000001"))["code"] == 190
    error = meta_error(http.get(f"{sandbox.url}/v26.0/act_xyz", headers=AUTH))
    assert (error["code"], error["error_subcode"]) == (100, 33)


# Webhook ------------------------------------------------------------------------------------------------------


def test_webhook_valid_signature(sandbox, http):
    register(http, sandbox)
    response = webhook_post(http, sandbox)
    assert response.status_code == 204
    assert response.content == b""


def test_webhook_wrong_signature_or_stale_timestamp(sandbox, http):
    register(http, sandbox)
    response = webhook_post(http, sandbox, secret=OTHER_SECRET)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid signature"}
    response = webhook_post(http, sandbox, timestamp=int(time.time()) - 3600)
    assert response.status_code == 401
    # Several signatures during a rotation: one valid is enough.
    msg_id, ts, raw = "msg_rotation", int(time.time()), b'{"type": "profile.added"}'
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header([OTHER_SECRET, SECRET], msg_id, ts, raw),
    }
    assert http.post(f"{sandbox.url}/webhook/crm", data=raw, headers=headers).status_code == 204


def test_webhook_without_registered_secret_accepts_any_signature(sandbox, http):
    assert webhook_post(http, sandbox, name="other", secret=OTHER_SECRET).status_code == 204


def test_webhook_missing_headers_or_bad_json(sandbox, http):
    response = http.post(f"{sandbox.url}/webhook/crm", json={"type": "profile.added"}, headers={"webhook-id": "m1"})
    assert response.status_code == 400
    assert "webhook-timestamp" in response.json()["error"]
    ts = str(int(time.time()))
    headers = {"webhook-id": "m2", "webhook-timestamp": ts, "webhook-signature": "v1,abc"}
    assert http.post(f"{sandbox.url}/webhook/crm", data=b"{not json", headers=headers).status_code == 400
    assert stats(http, sandbox)["webhook"]["errors"] == 2


def test_webhook_stats_by_type_and_unique_ids(sandbox, http):
    register(http, sandbox)
    webhook_post(http, sandbox, msg_id="msg_1", scope="wh")
    webhook_post(http, sandbox, msg_id="msg_1", scope="wh")  # a redelivery
    webhook_post(http, sandbox, msg_id="msg_2", scope="wh", body={"type": "profile.removed"})
    webhook_post(http, sandbox, msg_id="msg_3", scope="wh", secret=OTHER_SECRET)  # rejected: not counted
    assert stats(http, sandbox, "wh")["webhook"] == {
        "requests": 4,
        "events": {"profile.added": 2, "profile.removed": 1},
        "unique_ids": 2,
        "errors": 1,
    }


# Faults -------------------------------------------------------------------------------------------------------


def test_fault_expired_token(sandbox, http):
    fault(http, sandbox, fault="expired_token")
    error = meta_error(add(http, sandbox, EMAILS))
    assert (error["code"], error["error_subcode"]) == (190, 463)
    assert error["message"].startswith("Error validating access token: Session has expired")
    assert meta_error(http.get(f"{sandbox.url}/v26.0/act_1", headers=AUTH))["code"] == 190
    assert webhook_post(http, sandbox).status_code == 401


def test_fault_slow(sandbox, http):
    fault(http, sandbox, fault="slow", delay_s=0.3, partner="meta")
    start = time.monotonic()
    response = add(http, sandbox, EMAILS)
    assert time.monotonic() - start >= 0.3
    assert response.status_code == 200
    assert response.json()["num_received"] == 5


def test_fault_rate_limit(sandbox, http):
    fault(http, sandbox, fault="rate_limit")
    response = add(http, sandbox, EMAILS)
    error = meta_error(response)
    assert (error["code"], error["error_subcode"]) == (613, 1487742)
    assert error["is_transient"] is True
    assert "Retry-After" not in response.headers

    fault(http, sandbox, fault="rate_limit", retry_after=7, partner="meta", code=17)
    response = add(http, sandbox, EMAILS)
    assert meta_error(response)["code"] == 17
    assert response.headers["Retry-After"] == "7"

    response = webhook_post(http, sandbox)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    fault(http, sandbox, fault="rate_limit", retry_after=30, partner="webhook")
    assert webhook_post(http, sandbox).headers["Retry-After"] == "30"


def test_fault_server_error(sandbox, http):
    fault(http, sandbox, fault="server_error")
    error = meta_error(add(http, sandbox, EMAILS), status=500)
    assert error["code"] == 2
    assert error["message"] == "Service temporarily unavailable"
    response = webhook_post(http, sandbox)
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("text/plain")

    fault(http, sandbox, fault="server_error", status=503)
    assert meta_error(add(http, sandbox, EMAILS), status=503)["code"] == 2
    assert webhook_post(http, sandbox).status_code == 503


def test_fault_partner_error(sandbox, http):
    fault(http, sandbox, fault="partner_error", code=2650, partner="meta")
    error = meta_error(add(http, sandbox, EMAILS))
    assert error["code"] == 2650
    assert error["message"].startswith("(#2650) Failed to update the custom audience")

    fault(http, sandbox, fault="partner_error", code=100, subcode=1713230, message="Invalid parameter", partner="meta")
    error = meta_error(add(http, sandbox, EMAILS))
    assert (error["code"], error["error_subcode"], error["message"]) == (100, 1713230, "Invalid parameter")

    fault(http, sandbox, fault="partner_error", code=1, partner="meta")
    assert meta_error(add(http, sandbox, EMAILS), status=500)["code"] == 1


def test_fault_gone(sandbox, http):
    fault(http, sandbox, fault="gone")
    assert webhook_post(http, sandbox).status_code == 410
    error = meta_error(add(http, sandbox, EMAILS))
    assert (error["code"], error["error_subcode"]) == (100, 33)
    assert "'23850001'" in error["message"]


def test_fault_count_expires(sandbox, http):
    spec = fault(http, sandbox, fault="server_error", count=2)
    assert spec["count"] == 2
    assert add(http, sandbox, EMAILS).status_code == 500
    assert webhook_post(http, sandbox).status_code == 500  # one count shared by the scope's partners
    assert add(http, sandbox, EMAILS).status_code == 200
    assert http.get(f"{sandbox.url}/_sandbox/faults").json() == {"faults": []}
    assert stats(http, sandbox)["meta"]["errors"] == 1


def test_fault_for_one_partner_leaves_the_other_alone(sandbox, http):
    fault(http, sandbox, fault="gone", partner="webhook")
    assert add(http, sandbox, EMAILS).status_code == 200
    assert webhook_post(http, sandbox).status_code == 410


def test_scope_isolation(sandbox, http):
    fault(http, sandbox, fault="server_error", scope="a")
    assert add(http, sandbox, EMAILS, scope="a").status_code == 500
    assert add(http, sandbox, EMAILS, scope="b").status_code == 200
    assert add(http, sandbox, EMAILS).status_code == 200
    assert webhook_post(http, sandbox, scope="a").status_code == 500
    assert webhook_post(http, sandbox, scope="b").status_code == 204

    everything = http.get(f"{sandbox.url}/_sandbox/stats").json()
    assert everything["a"]["meta"] == {
        "requests": 1,
        "rows_added": 0,
        "rows_removed": 0,
        "rows_invalid": 0,
        "errors": 1,
    }
    assert everything["b"]["meta"]["rows_added"] == 5
    assert everything["default"]["meta"]["rows_added"] == 5
    assert everything["b"]["webhook"]["requests"] == 1

    # Clearing one scope's faults leaves the others'.
    fault(http, sandbox, fault="gone", scope="b")
    assert http.delete(f"{sandbox.url}/_sandbox/faults", params={"scope": "a"}).json() == {"cleared": 1}
    assert add(http, sandbox, EMAILS, scope="a").status_code == 200
    assert webhook_post(http, sandbox, scope="b").status_code == 410


def test_reset_clears_faults_secrets_and_stats(sandbox, http):
    register(http, sandbox)
    fault(http, sandbox, fault="server_error", scope="a")
    add(http, sandbox, EMAILS)
    assert http.post(f"{sandbox.url}/_sandbox/reset").json() == {"reset": "all"}
    assert http.get(f"{sandbox.url}/_sandbox/stats").json() == {}
    assert http.get(f"{sandbox.url}/_sandbox/faults").json() == {"faults": []}
    assert add(http, sandbox, EMAILS, scope="a").status_code == 200
    assert webhook_post(http, sandbox, secret=OTHER_SECRET).status_code == 204  # no secret any more


def test_control_api_rejects_bad_input(sandbox, http):
    url = f"{sandbox.url}/_sandbox/faults"
    for spec in (
        {"fault": "meteor"},
        {"fault": "slow", "delay": 1},
        {"fault": "slow", "delay_s": -1},
        {"fault": "gone", "count": 0},
        {"fault": "gone", "partner": "no_such_partner"},
        {"fault": "rate_limit", "retry_after": "soon"},
    ):
        response = http.post(url, json=spec)
        assert response.status_code == 400, spec
        assert response.json()["error"]
    assert http.post(url, data=b"[1]").status_code == 400
    response = http.put(f"{sandbox.url}/_sandbox/webhooks/crm", json={"secret": "not base64!"})
    assert response.status_code == 400
    assert http.get(url).json() == {"faults": []}
