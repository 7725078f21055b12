"""The Trade Desk end to end through the local partner sandbox: real client, real HTTP on loopback, real dispatcher;
plus the emulation's own strictness (what The Trade Desk and its file drop refuse)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from audiences.models import Profile, ProfileIdentifier
from connectors import services
from connectors.delivery import dispatcher
from connectors.models import Delivery, DeliveryAttempt, PartnerConfig
from connectors.partners.the_trade_desk.sandbox import SANDBOX_ADVERTISER_SECRET
from tests.connectors import sandbox_helpers
from tests.connectors.sandbox_helpers import drain, enter, fault, sandbox_stats, stats
from tests.factories import VALID_SETTINGS

PARTNER = "the_trade_desk"
ADVERTISER = VALID_SETTINGS[PARTNER]["advertiser_id"]
SEGMENT = "cc9b84o"
TOKEN = VALID_SETTINGS[PARTNER]["api_token"]
REALTIME = {"realtime_region": "euw", "advertiser_secret": SANDBOX_ADVERTISER_SECRET}


@pytest.fixture(autouse=True)
def fresh_clients(settings):
    settings.DAP_KICK_ON_COMMIT = False
    dispatcher._clients.clear()
    yield
    dispatcher._clients.clear()


# --- helpers ------------------------------------------------------------------------------------------------------
def connect(sandbox, scope, partner_audience_id=SEGMENT, **settings_override):
    return sandbox_helpers.connect(PARTNER, sandbox, scope, partner_audience_id, **settings_override)


def profiles(n, *, slot="email", prefix="p"):
    made = Profile.objects.bulk_create([Profile(external_id=f"{prefix}{i}") for i in range(n)])
    if slot == "email":
        values = [f"{prefix}.user{i}@example.com" for i in range(n)]
    else:
        values = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{prefix}{i}")) for i in range(n)]
    ProfileIdentifier.objects.bulk_create(
        [ProfileIdentifier(profile=p, slot=slot, value=v) for p, v in zip(made, values, strict=True)]
    )
    return made


def age(config, seconds=2 * 3600):
    """Time passes: the oldest due row has waited longer than the batch interval."""
    Delivery.objects.filter(partner_config=config).update(created_at=timezone.now() - timedelta(seconds=seconds))


# --- end to end ---------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_emails_reach_the_crm_segment_and_the_statistics(sandbox):
    config, audience = connect(sandbox, "ttd-add")
    members = profiles(1600, prefix="a")
    # Three spellings of one gmail address: normalised to one line value, so the segment counts one person.
    extra = Profile.objects.bulk_create([Profile(external_id=f"g{i}") for i in range(3)])
    gmail = ["Jane.Saoirse@gmail.com", "JANE.SAOIRSE@gmail.com", "JaneSaoirse+Work@gmail.com"]
    for p, value in zip(extra, gmail, strict=True):
        ProfileIdentifier.objects.create(profile=p, slot="email", value=value)
    enter(audience, members + extra)
    drain(config)

    ttd = sandbox_stats(sandbox, "ttd-add", PARTNER)
    assert (ttd["drops_created"], ttd["uploads"], ttd["rows_added"], ttd["rows_invalid"]) == (1, 1, 1603, 0)
    assert ttd["segments"] == {f"{ADVERTISER}/{SEGMENT}": 1601}
    assert stats(config) == {("added", ""): 1603}
    attempts = list(DeliveryAttempt.objects.filter(partner_config=config).order_by("id"))
    assert [(a.status_code, a.item_count, a.ok_count) for a in attempts] == [(200, 0, 0), (200, 1603, 1603)]
    assert Delivery.objects.filter(partner_config=config).count() == 0


@pytest.mark.django_db
def test_a_small_batch_waits_and_is_not_sent_below_the_minimum(sandbox):
    config, audience = connect(sandbox, "ttd-small")
    enter(audience, profiles(100, prefix="s"))
    report = drain(config)
    assert report.claimed == 0  # the dispatcher holds the rows: fewer than 1,500 due and none waited an hour
    age(config)
    before = timezone.now()
    drain(config)
    assert sandbox_stats(sandbox, "ttd-small", PARTNER)["requests"] == 0  # never sent to The Trade Desk
    rows = Delivery.objects.filter(partner_config=config)
    assert {(r.status, r.partner_error_code, r.attempts) for r in rows} == {("pending", "below_minimum_batch", 1)}
    assert all(r.next_attempt_at >= before + timedelta(seconds=3599) for r in rows)
    assert stats(config) == {}


@pytest.mark.django_db
def test_email_removals_are_reported_not_sent(sandbox):
    config, audience = connect(sandbox, "ttd-remove")
    members = profiles(1500, prefix="r")
    enter(audience, members)
    drain(config)
    enter(audience, members, "remove")
    drain(config)
    ttd = sandbox_stats(sandbox, "ttd-remove", PARTNER)
    assert ttd["uploads"] == 1 and ttd["segments"] == {f"{ADVERTISER}/{SEGMENT}": 1500}
    assert stats(config) == {("added", ""): 1500, ("other_error", "crm_remove_unsupported"): 1500}
    assert set(Delivery.objects.values_list("status", "partner_error_code")) == {("failed", "crm_remove_unsupported")}


@pytest.mark.django_db
def test_ttd_ids_go_through_real_time_data_add_and_remove(sandbox):
    config, audience = connect(sandbox, "ttd-rt", **REALTIME)
    members = profiles(20, slot="ttd_id", prefix="t")
    enter(audience, members)
    age(config)
    drain(config)
    enter(audience, members[:5], "remove")
    age(config)
    drain(config)
    ttd = sandbox_stats(sandbox, "ttd-rt", PARTNER)
    assert (ttd["realtime_added"], ttd["realtime_removed"], ttd["realtime_failed"], ttd["errors"]) == (20, 5, 0, 0)
    assert stats(config) == {("added", ""): 20, ("removed", ""): 5}


@pytest.mark.django_db
def test_a_wrong_advertiser_secret_pauses_the_configuration(sandbox):
    config, audience = connect(sandbox, "ttd-rtkey", realtime_region="euw", advertiser_secret="not-the-right-secret")
    enter(audience, profiles(3, slot="ttd_id", prefix="k"))
    age(config)
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "realtime/http_403"): 3}


@pytest.mark.django_db
def test_expired_token_pauses_until_the_credentials_change(sandbox):
    config, audience = connect(sandbox, "ttd-token")
    fault(sandbox, "ttd-token", fault="expired_token", partner=PARTNER)
    enter(audience, profiles(1500, prefix="e"))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "http_401"): 1500}
    # Later changes wait while paused; a new token resumes sending.
    enter(audience, profiles(1500, prefix="f"))
    assert drain(config).paused == "credentials_invalid"
    requests.delete(f"{sandbox.url}/_sandbox/faults?scope=ttd-token", timeout=5)
    services.partner_config_update(partner_config=config, settings={"api_token": "ttdRenewedTokenValue0123456789ABCD"})
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.OK
    drain(config)
    assert stats(config)[("added", "")] == 1500


@pytest.mark.django_db
def test_throttling_is_retried_after_retry_after(sandbox):
    config, audience = connect(sandbox, "ttd-429")
    fault(sandbox, "ttd-429", fault="rate_limit", retry_after=120, count=1)
    enter(audience, profiles(1500, prefix="q"))
    before = timezone.now()
    drain(config)
    rows = Delivery.objects.filter(partner_config=config)
    assert {(r.status, r.partner_error_code, r.attempts) for r in rows} == {("pending", "http_429", 1)}
    assert all(r.next_attempt_at >= before + timedelta(seconds=119) for r in rows)
    rows.update(next_attempt_at=timezone.now())  # time passes
    drain(config)
    assert stats(config) == {("added", ""): 1500}
    assert sandbox_stats(sandbox, "ttd-429", PARTNER)["rows_added"] == 1500


@pytest.mark.django_db
def test_partner_validation_errors_reach_the_statistics(sandbox):
    config, audience = connect(sandbox, "ttd-400")
    fault(sandbox, "ttd-400", fault="partner_error", message="Segment region does not allow this PII type.")
    enter(audience, profiles(1500, prefix="v"))
    drain(config)
    assert stats(config) == {("partner_error", "http_400/Sandbox"): 1500}
    delivery = Delivery.objects.filter(partner_config=config).first()
    assert "Segment region does not allow this PII type." in delivery.last_error


@pytest.mark.django_db
def test_connection_against_the_sandbox(sandbox):
    config, _ = connect(sandbox, "ttd-conn", **REALTIME)
    result = services.partner_config_test_connection(partner_config=config)
    assert result.ok, result.message
    assert "Sandbox advertiser a1b2c3d" in result.message and "Sandbox segment cc9b84o" in result.message

    services.partner_config_update(partner_config=config, settings={"api_token": "expired-ttd-token-0123456789abc"})
    config.refresh_from_db()
    result = services.partner_config_test_connection(partner_config=config)
    assert not result.ok and result.message.startswith("Invalid credentials") and "HTTP 401" in result.message

    services.partner_config_update(partner_config=config, settings={"api_token": TOKEN, "advertiser_id": "unknown01"})
    config.refresh_from_db()
    result = services.partner_config_test_connection(partner_config=config)
    assert not result.ok and result.message.startswith("Unknown advertiser unknown01 (HTTP 404)")


# --- the emulation's strictness -----------------------------------------------------------------------------------
def api(sandbox, scope, path, method="POST", token=TOKEN, **kwargs):
    headers = {"TTD-Auth": token} if token else {}
    headers.update(kwargs.pop("headers", {}))
    return requests.request(
        method, f"{sandbox.url}/c/{scope}/api.thetradedesk.com{path}", headers=headers, timeout=5, **kwargs
    )


def open_drop(sandbox, scope, body=None, segment=SEGMENT):
    body = body or {"PiiType": "EmailHashedUnifiedId2", "MergeMode": "Add", "RetentionEnabled": True}
    return api(sandbox, scope, f"/v3/crmdata/segment/{ADVERTISER}/{segment}", json=body)


def hashes(n, start=0):
    return [base64.b64encode(hashlib.sha256(f"u{i}@example.com".encode()).digest()).decode() for i in range(start, n)]


def put(url, lines, content_type="text/plain", **headers):
    body = ("\n".join(lines) + "\n").encode()
    return requests.put(url, data=body, headers={"Content-Type": content_type, **headers}, timeout=5)


def test_drop_request_is_validated(sandbox):
    response = open_drop(sandbox, "strict", {"PiiType": "Phonebook", "MergeMode": "Remove", "Extra": 1})
    assert response.status_code == 400
    details = {d["Property"] for d in response.json()["ErrorDetails"]}
    assert details == {"PiiType", "MergeMode", "Extra"}
    assert api(sandbox, "strict", f"/v3/crmdata/segment/{ADVERTISER}/{SEGMENT}", data="x").status_code == 415
    response = api(sandbox, "strict", f"/v3/crmdata/segment/{ADVERTISER}/{SEGMENT}", token="", json={})
    assert response.status_code == 401 and "TTD-Auth" in response.json()["Message"]
    response = api(sandbox, "strict", f"/v3/crmdata/segment/{ADVERTISER}/{SEGMENT}", token="revoked-0123456789abcdef")
    assert response.status_code == 401
    assert open_drop(sandbox, "strict", segment="nosuchsegment").status_code == 404


def test_upload_add_then_replace_and_the_minimum(sandbox):
    url = open_drop(sandbox, "files").json()["Url"]
    assert "/c/files/thetradedesk-crm-data.s3.us-east-1.amazonaws.com/" in url and "X-Amz-Signature=" in url
    response = put(url, hashes(1600) + ["not-a-hash"])
    assert response.status_code == 200 and response.content == b""
    replace = {"PiiType": "EmailHashedUnifiedId2", "MergeMode": "Replace", "RetentionEnabled": False}
    assert put(open_drop(sandbox, "files", replace).json()["Url"], hashes(1500)).status_code == 200
    small = put(open_drop(sandbox, "files").json()["Url"], hashes(20))  # S3 takes it, The Trade Desk refuses it
    assert small.status_code == 200
    ttd = sandbox_stats(sandbox, "files", PARTNER)
    assert (ttd["uploads"], ttd["rows_added"], ttd["rows_invalid"]) == (2, 3100, 1)
    assert (ttd["uploads_refused_below_minimum"], ttd["rows_refused"]) == (1, 20)
    assert ttd["segments"] == {f"{ADVERTISER}/{SEGMENT}": 1500}  # Replace left only the last upload


def test_upload_url_is_strict(sandbox):
    url = open_drop(sandbox, "drops").json()["Url"]
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    response = put(tampered, hashes(1500))
    assert response.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in response.content
    assert response.headers["Content-Type"] == "application/xml"
    response = put(url, hashes(1500), **{"TTD-Auth": TOKEN})
    assert response.status_code == 400 and b"must not be sent" in response.content
    assert put(url, hashes(1500), content_type="application/json").status_code == 400


def test_real_time_is_signed_and_reports_failed_lines(sandbox):
    url = f"{sandbox.url}/c/rt/euw-data.adsrvr.org/data/advertiser"
    good = str(uuid.uuid4())
    body = json.dumps(
        {
            "AdvertiserId": ADVERTISER,
            "Items": [
                {"TDID": good, "Data": [{"Name": SEGMENT, "TTLInMinutes": 43200}]},
                {"TDID": "not-a-tdid", "Data": [{"Name": SEGMENT, "TTLInMinutes": 43200}]},
            ],
        }
    ).encode()
    signature = base64.b64encode(hmac.new(SANDBOX_ADVERTISER_SECRET.encode(), body, hashlib.sha1).digest()).decode()
    headers = {"Content-Type": "application/json", "TtdSignature": signature}
    response = requests.post(url, data=body, headers=headers, timeout=5)
    assert response.status_code == 200
    assert response.json() == {"FailedLines": [{"ErrorCode": "MissingUserId", "Message": "Invalid TDID, item #2"}]}
    response = requests.post(url, data=body, headers={**headers, "TtdSignature": "AAAA"}, timeout=5)
    assert response.status_code == 403
    unknown_region = f"{sandbox.url}/c/rt/mars-data.adsrvr.org/data/advertiser"
    assert requests.post(unknown_region, data=body, headers=headers, timeout=5).status_code == 404
    ttd = sandbox_stats(sandbox, "rt", PARTNER)
    assert (ttd["realtime_added"], ttd["realtime_failed"]) == (1, 1)
