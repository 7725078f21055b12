"""Xandr end to end through the local partner sandbox (real client, real HTTP on loopback, real dispatcher), and the
sandbox's own strictness as Xandr would answer."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from audiences.models import Audience, AudienceConnection, Profile, ProfileIdentifier
from connectors import services
from connectors.delivery import dispatcher, ratelimit, tokens
from connectors.delivery.dispatcher import client_for
from connectors.models import Delivery, DeliveryAttempt, PartnerConfig
from connectors.partners.xandr import sandbox as xandr_sandbox
from connectors.partners.xandr.client import Client
from tests.connectors.sandbox_helpers import drain, enter, fault, sandbox_stats, stats
from tests.factories import VALID_SETTINGS

SEGMENT = "123456"
UNKNOWN_SEGMENT = "900000001"


@pytest.fixture(autouse=True)
def fresh_clients(settings):
    settings.DAP_KICK_ON_COMMIT = False
    settings.DAP_DISPATCH_SHARDS = 1
    dispatcher._clients.clear()
    yield
    dispatcher._clients.clear()


@pytest.fixture(autouse=True)
def fast_batch_polls(monkeypatch):
    monkeypatch.setattr(Client, "batch_poll_interval", 0.02)
    monkeypatch.setattr(Client, "batch_poll_seconds", 2.0)


def fresh_limits(config):
    """Start each test with an empty token cache and full buckets for this configuration."""
    client = client_for(PartnerConfig.objects.select_related("connector").get(pk=config.pk))
    tokens.forget(client._token_key)
    ratelimit.reset(client._login_key)
    ratelimit.reset(client.quota_key())


def connect(sandbox, scope, partner_audience_id=SEGMENT, **settings_override):
    connector = services.connector_create(
        partner_key="xandr",
        name=f"xandr {scope}",
        settings={**VALID_SETTINGS["xandr"], **settings_override},
        base_url_override=f"{sandbox.url}/c/{scope}",
    )
    config = connector.configs.get()
    audience = Audience.objects.create(name=f"audience {scope}")
    AudienceConnection.objects.create(audience=audience, partner_config=config, partner_audience_id=partner_audience_id)
    fresh_limits(config)
    return config, audience


def profiles(n, *, prefix, first_uid=5727816213491965000, slot="xandr_uid", values=None):
    made = Profile.objects.bulk_create([Profile(external_id=f"{prefix}{i}") for i in range(n)])
    values = values or [str(first_uid + i) for i in range(n)]
    ProfileIdentifier.objects.bulk_create(
        [ProfileIdentifier(profile=p, slot=slot, value=v) for p, v in zip(made, values, strict=True)]
    )
    return made


# --- real time -----------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_add_remove_and_unsendable_profiles(sandbox):
    config, audience = connect(sandbox, "rt")
    members = profiles(30, prefix="a")
    opted_out = profiles(2, prefix="o", values=["0", "0000"])
    no_uid = profiles(3, prefix="e", slot="email", values=[f"e{i}@example.com" for i in range(3)])
    enter(audience, members + opted_out + no_uid)
    drain(config)
    xandr = sandbox_stats(sandbox, "rt", "xandr")
    assert (xandr["rows_added"], xandr["rows_invalid"], xandr["logins"], xandr["errors"]) == (30, 0, 1, 0)
    enter(audience, members[:10], "remove")
    drain(config)
    xandr = sandbox_stats(sandbox, "rt", "xandr")
    assert (xandr["rows_removed"], xandr["logins"]) == (10, 1)  # the token is reused
    assert stats(config) == {
        ("added", ""): 30,
        ("removed", ""): 10,
        ("other_error", "invalid_identifier"): 2,  # the code stays on the outbox row
        ("skipped_no_identifier", ""): 3,
    }
    assert set(
        Delivery.objects.filter(partner_config=config, status="failed").values_list("outcome", "partner_error_code")
    ) == {("other_error", "invalid_identifier")}
    snippets = set(
        DeliveryAttempt.objects.filter(partner_config=config, status_code=200).values_list("snippet", flat=True)
    )
    assert snippets == {
        "users_in_request=30 segments_in_request=30 warnings=0 flagged=0",
        "users_in_request=10 segments_in_request=10 warnings=0 flagged=0",
    }


@pytest.mark.django_db
def test_unknown_segment_comes_back_as_warnings_per_user(sandbox):
    config, audience = connect(sandbox, "warn", partner_audience_id=UNKNOWN_SEGMENT)
    enter(audience, profiles(4, prefix="w"))
    drain(config)
    assert stats(config) == {("partner_error", "rt_warning"): 4}
    assert sandbox_stats(sandbox, "warn", "xandr")["rows_invalid"] == 4
    assert set(Delivery.objects.filter(partner_config=config).values_list("status", flat=True)) == {"failed"}


@pytest.mark.django_db
def test_expired_session_is_renewed_once_and_sent(sandbox):
    config, audience = connect(sandbox, "renew")
    enter(audience, profiles(2, prefix="r1"))
    drain(config)  # logs in once
    fault(sandbox, "renew", fault="expired_token", count=1)
    enter(audience, profiles(3, prefix="r2", first_uid=5727816213491966000))
    drain(config)
    xandr = sandbox_stats(sandbox, "renew", "xandr")
    assert (xandr["logins"], xandr["rows_added"]) == (2, 5)
    assert stats(config) == {("added", ""): 5}
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.OK


@pytest.mark.django_db
def test_sessions_refused_after_a_fresh_login_pause_until_the_credentials_change(sandbox):
    config, audience = connect(sandbox, "token")
    fault(sandbox, "token", fault="expired_token")
    enter(audience, profiles(3, prefix="t"))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "NOAUTH"): 3}
    assert sandbox_stats(sandbox, "token", "xandr")["logins"] == 2  # the first login and exactly one renewal
    assert set(Delivery.objects.filter(partner_config=config).values_list("partner_error_code", flat=True)) == {
        "NOAUTH"
    }
    enter(audience, profiles(2, prefix="u", first_uid=5727816213491967000))
    assert drain(config).paused == "credentials_invalid"
    requests.delete(f"{sandbox.url}/_sandbox/faults?scope=token", timeout=5)
    services.partner_config_update(partner_config=config, settings={"password": "Renewed-Sandbox-Passw0rd-9090!"})
    drain(config)
    assert stats(config)[("added", "")] == 2


@pytest.mark.django_db
def test_wrong_password_pauses_without_sending(sandbox):
    config, audience = connect(sandbox, "wrong", password="wrong-Passw0rd-for-the-sandbox")
    enter(audience, profiles(2, prefix="p"))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "NOAUTH"): 2}
    assert sandbox_stats(sandbox, "wrong", "xandr")["rows_added"] == 0


@pytest.mark.django_db
def test_throttling_is_retried_after_retry_after(sandbox):
    config, audience = connect(sandbox, "slow")
    drain(config)
    enter(audience, profiles(2, prefix="s"))
    client_for(PartnerConfig.objects.select_related("connector").get(pk=config.pk)).token()  # logged in already
    fault(sandbox, "slow", fault="rate_limit", retry_after=120, count=1)
    before = timezone.now()
    drain(config)
    rows = Delivery.objects.filter(partner_config=config)
    assert {(r.status, r.partner_error_code, r.attempts) for r in rows} == {("pending", "RATE_EXCEEDED", 1)}
    assert all(r.next_attempt_at >= before + timedelta(seconds=119) for r in rows)
    rows.update(next_attempt_at=timezone.now())  # time passes
    drain(config)
    assert stats(config) == {("added", ""): 2}


@pytest.mark.django_db
def test_server_errors_are_retried(sandbox):
    config, audience = connect(sandbox, "storm")
    client_for(PartnerConfig.objects.select_related("connector").get(pk=config.pk)).token()
    fault(sandbox, "storm", fault="server_error", status=503, count=1)
    enter(audience, profiles(2, prefix="x"))
    drain(config)
    assert set(Delivery.objects.values_list("status", "partner_error_code")) == {("pending", "SYSTEM")}
    Delivery.objects.update(next_attempt_at=timezone.now())
    drain(config)
    assert stats(config) == {("added", ""): 2}


@pytest.mark.django_db
def test_permission_errors_reach_statistics(sandbox):
    config, audience = connect(sandbox, "perm")
    client_for(PartnerConfig.objects.select_related("connector").get(pk=config.pk)).token()
    fault(sandbox, "perm", fault="partner_error", status=403, count=1)
    enter(audience, profiles(3, prefix="q"))
    drain(config)
    assert stats(config) == {("partner_error", "UNAUTH"): 3}
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.OK  # a permission problem is not bad credentials


# --- batch ---------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_batch_mode_uploads_a_file_and_reads_the_job(sandbox):
    config, audience = connect(sandbox, "bss", mode="batch", expiration_minutes=1440)
    members = profiles(20, prefix="b")
    enter(audience, members)
    drain(config)
    xandr = sandbox_stats(sandbox, "bss", "xandr")
    assert (xandr["jobs_opened"], xandr["jobs_uploaded"], xandr["jobs_completed"]) == (1, 1, 1)
    assert xandr["rows_added"] == 20
    enter(audience, members[:5], "remove")
    drain(config)
    assert sandbox_stats(sandbox, "bss", "xandr")["rows_removed"] == 5
    assert stats(config) == {("added", ""): 20, ("removed", ""): 5}
    snippets = list(DeliveryAttempt.objects.filter(partner_config=config).values_list("snippet", flat=True))
    assert all("completed" in s for s in snippets)


@pytest.mark.django_db
def test_batch_rows_refused_by_the_job_are_partner_errors(sandbox):
    config, audience = connect(sandbox, "bss-bad", partner_audience_id=UNKNOWN_SEGMENT, mode="batch")
    enter(audience, profiles(3, prefix="bb"))
    drain(config)
    assert stats(config) == {("partner_error", "num_invalid_segment"): 3}


@pytest.mark.django_db
def test_batch_job_still_processing_is_counted_as_sent(sandbox, monkeypatch):
    monkeypatch.setattr(Client, "batch_poll_seconds", 0.0)  # one read only: the job is still "processing"
    config, audience = connect(sandbox, "bss-slow", mode="batch")
    enter(audience, profiles(2, prefix="bs"))
    drain(config)
    assert stats(config) == {("added", ""): 2}
    attempt = DeliveryAttempt.objects.get(partner_config=config)
    assert attempt.partner_error_code == "job_pending" and "phase=processing" in attempt.snippet


# --- test connection -----------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_connection_against_the_sandbox(sandbox):
    config, _audience = connect(sandbox, "conn")
    result = services.partner_config_test_connection(partner_config=config)
    assert result.ok, result.message
    assert result.message == "Connected to Xandr member Sandbox member 1234 (1234); segment 98765 (Sandbox segment " \
        "98765) found."  # fmt: skip


@pytest.mark.django_db
def test_connection_fails_clearly(sandbox):
    bad, _ = connect(sandbox, "conn-bad", password="wrong-password-for-the-sandbox")
    result = services.partner_config_test_connection(partner_config=bad)
    assert not result.ok
    assert result.message.startswith("Xandr refused the login (NOAUTH): No match found for user/pass.")
    dispatcher._clients.clear()
    unknown, _ = connect(sandbox, "conn-seg", default_segment_id=900000005)
    result = services.partner_config_test_connection(partner_config=unknown)
    assert not result.ok and "segment 900000005" in result.message and "NOTFOUND" in result.message
    foreign, _ = connect(sandbox, "conn-member", member_id=9000001)
    result = services.partner_config_test_connection(partner_config=foreign)
    assert not result.ok and "no access to member 9000001 (UNAUTH)" in result.message


# --- the sandbox's strictness --------------------------------------------------------------------------------------
@pytest.fixture
def api(sandbox):
    """(session, base URL, token) for scope "strict"."""
    base = f"{sandbox.url}/c/strict"
    with requests.Session() as session:
        answer = session.post(f"{base}/api.appnexus.com/auth", json={"auth": {"username": "u", "password": "Pw-1"}})
        assert answer.status_code == 200
        yield session, base, answer.json()["response"]["token"]


def rt(api, body, token=None, **kwargs):
    session, base, issued = api
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": issued if token is None else token, "Content-Type": "application/json"}
    return session.post(f"{base}/streaming-data.appnexus.com/rt-segment", data=data, headers=headers, **kwargs)


def user(uid="5727816213491965430", **seg):
    return {"user_id": uid, "domain": None, "seg_block": [{"seg_id": 123456, "expiration": 0, **seg}]}


def test_calls_need_the_raw_token(api):
    _session, _base, token = api
    for header in ("", "hbapi:1:nope:sandbox", f"Bearer {token}"):
        answer = rt(api, {"rt_segment": [user()]}, token=header)
        assert answer.status_code == 401 and answer.json()["response"]["error_id"] == "NOAUTH"
    assert rt(api, {"rt_segment": [user()]}).status_code == 200


def test_login_is_strict_and_limited(sandbox):
    url = f"{sandbox.url}/c/logins/api.appnexus.com/auth"
    assert requests.post(url, json={"username": "u", "password": "p"}, timeout=5).json()["response"]["error_id"] == (
        "SYNTAX"
    )
    wrong = requests.post(url, json={"auth": {"username": "u", "password": "wrong1"}}, timeout=5)
    assert (wrong.status_code, wrong.json()["response"]["error_id"]) == (401, "NOAUTH")
    disabled = requests.post(url, json={"auth": {"username": "disabled-u", "password": "x"}}, timeout=5)
    assert disabled.json()["response"]["error_id"] == "NOAUTH_DISABLED"
    answers = [requests.post(url, json={"auth": {"username": "u", "password": "p"}}, timeout=5) for _ in range(11)]
    assert [a.status_code for a in answers] == [200] * 10 + [429]
    assert answers[-1].json()["response"]["error_code"] == "RATE_EXCEEDED" and answers[-1].headers["Retry-After"]


def test_rt_segment_validation_warnings(api):
    body = {
        "rt_segment": [
            user(),
            user("0"),
            user("abc"),
            {"user_id": "5727816213491965431", "seg_block": []},
            user("5727816213491965432", seg_code="x"),  # seg_id and seg_code together
            user("5727816213491965433", value="high"),
            user("5727816213491965434", expiration=-2),
            {"user_id": "5727816213491965435", "seg_block": [{"seg_id": 1}], "extra": 1},
            {"user_id": 5727816213491965436, "seg_block": [{"seg_id": 1}]},
        ]
    }
    answer = rt(api, body).json()["response"]
    assert answer["status"] == "OK"
    assert answer["message"] == {"users_in_request": 1, "segments_in_request": 1}
    named = {w["entity"].get("user_id") for w in answer["warnings"] if isinstance(w["entity"], dict)}
    assert "5727816213491965430" not in named
    assert {"0", "abc", "5727816213491965431", "5727816213491965432", "5727816213491965433"} <= named
    assert {"5727816213491965434", "5727816213491965435", 5727816213491965436} <= named


def test_rt_segment_limits(api):
    many = {"rt_segment": [user(str(10**18 + i)) for i in range(1_002)]}
    answer = rt(api, many).json()["response"]
    assert answer["message"]["users_in_request"] == 1_000
    assert [w["message"] for w in answer["warnings"]] == ["Too many user_ids in request."] * 2
    padded = {"rt_segment": [user()], "pad": "x" * 1_000_001}
    assert rt(api, padded).json()["response"]["error_id"] == "SYNTAX"
    assert rt(api, b"not json").status_code == 400
    empty = rt(api, {"rt_segment": []}).json()["response"]
    assert empty["warnings"][0]["message"] == "No valid rt_segment in request."


def test_rt_segment_gone_fault_refuses_every_user(sandbox, api):
    requests.post(f"{sandbox.url}/_sandbox/faults", json={"scope": "strict", "fault": "gone", "count": 1}, timeout=5)
    answer = rt(api, {"rt_segment": [user()]}).json()["response"]
    assert answer["message"]["users_in_request"] == 0
    assert answer["warnings"][-1]["message"] == "No valid rt_segment in request."


def test_batch_segment_service_strictness(api):
    session, base, token = api
    auth = {"Authorization": token}
    assert session.post(f"{base}/api.appnexus.com/batch-segment", headers=auth).status_code == 400  # no member_id
    opened = session.post(f"{base}/api.appnexus.com/batch-segment?member_id=1234", headers=auth).json()["response"]
    job = opened["batch_segment_upload_job"]
    assert job["upload_url"].startswith("https://data-api-gslb.adnxs.net/segment-upload/")
    upload = f"{base}/data-api-gslb.adnxs.net/segment-upload/{job['job_id']}"
    status_url = f"{base}/api.appnexus.com/batch-segment?member_id=1234&job_id={job['job_id']}"
    assert session.get(status_url, headers=auth).json()["response"]["batch_segment_upload_job"]["phase"] == "starting"
    form = session.post(upload, data=b"1,2:0\n", headers={**auth, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.json()["response"]["error_code"] == "INVALID_CONTENT_TYPE"
    octet = {**auth, "Content-Type": "application/octet-stream"}
    assert session.post(upload, data=b"5727816213491965430,123456:0\n", headers=octet).status_code == 200
    again = session.post(upload, data=b"5727816213491965430,123456:0\n", headers=octet)
    assert again.json()["response"]["error_code"] == "UPLOAD_URL_USED"
    assert session.get(status_url, headers=auth).json()["response"]["batch_segment_upload_job"]["phase"] == (
        "processing"
    )
    done = session.get(status_url, headers=auth).json()["response"]["batch_segment_upload_job"]
    assert (done["phase"], done["num_valid"], done["num_valid_user"]) == ("completed", 1, 1)


def test_segment_file_parsing():
    text = (
        "5727816213491965430,123456:1440;123457:-1\n"
        "5727816213491965430,123456:1440;123457:-1\n"  # a duplicate line is an invalid format
        "0,123456:0\n"
        "5727816213491965431,900000001:0\n"
        "5727816213491965432;123456:0\n"
    )
    result = xandr_sandbox.parse_segment_file(text)
    counts = result["counts"]
    assert (counts["num_valid"], counts["num_invalid_format"], counts["num_invalid_user"]) == (2, 2, 1)
    assert counts["num_invalid_segment"] == 1 and (result["added"], result["removed"]) == (1, 1)
    assert "num_invalid_user-0,123456:0" in result["error_log_lines"].splitlines()
