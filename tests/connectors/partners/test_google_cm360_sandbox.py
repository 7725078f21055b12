"""Campaign Manager 360 through the local sandbox: the real client, real HTTP on loopback, the real dispatcher and
outbox, plus the emulation's own strictness (it must refuse what CM360 refuses)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from audiences.models import Audience, AudienceConnection, Profile, ProfileIdentifier
from connectors import services
from connectors.delivery import dispatcher, tokens
from connectors.models import Delivery, DeliveryAttempt, PartnerConfig
from tests.connectors.sandbox_helpers import drain, enter, fault, stats
from tests.factories import VALID_SETTINGS

KEY = "google_cm360"
HOST_PATH = "dfareporting.googleapis.com/dfareporting/v5/userprofiles"
GCLID = "Cj0KCQjw1Py0BhCsARIsAB8CVNkbt_YxKLb3"
SETTINGS = VALID_SETTINGS[KEY]


@pytest.fixture(autouse=True)
def fresh(settings):
    settings.DAP_KICK_ON_COMMIT = False
    settings.DAP_DISPATCH_SHARDS = 1
    dispatcher._clients.clear()
    tokens._local.clear()
    yield
    dispatcher._clients.clear()
    tokens._local.clear()


# --- helpers ----------------------------------------------------------------------------------------------------
def cm360(sandbox, scope):
    return requests.get(f"{sandbox.url}/_sandbox/stats?scope={scope}", timeout=5).json()[scope][KEY]


def oauth(sandbox, scope):
    return requests.get(f"{sandbox.url}/_sandbox/stats?scope={scope}", timeout=5).json()[scope]["google_oauth"]


def connect(sandbox, scope, partner_audience_id="", timeout_seconds=None, **overrides):
    connector = services.connector_create(
        partner_key=KEY,
        name=f"CM360 {scope}",
        settings={**SETTINGS, **overrides},
        base_url_override=f"{sandbox.url}/c/{scope}",
        timeout_seconds=timeout_seconds,
    )
    config = connector.configs.get()
    audience = Audience.objects.create(name=f"buyers {scope}")
    AudienceConnection.objects.create(audience=audience, partner_config=config, partner_audience_id=partner_audience_id)
    return config, audience


_serial = iter(range(1, 1_000_000))


def profiles(slot, values):
    """One consenting profile per value, holding it in `slot` (None: a profile with only a phone number)."""
    made = []
    for value in values:
        profile = Profile.objects.create(external_id=f"p{next(_serial)}")
        if slot is None:
            ProfileIdentifier.objects.create(profile=profile, slot="phone", value=f"+3161234{profile.pk:04d}")
        else:
            ProfileIdentifier.objects.create(profile=profile, slot=slot, value=value)
        made.append(profile)
    return made


def match_ids(prefix, n):
    return profiles("customer_id", [f"{prefix}-{i:04d}" for i in range(n)])


def due_now(config):
    Delivery.objects.filter(partner_config=config, status="pending").update(next_attempt_at=timezone.now())


# --- end to end -------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_conversions_reach_cm360_and_the_statistics(sandbox):
    config, audience = connect(sandbox, "e2e")
    people = (
        match_ids("CUST", 10)
        + profiles("gclid", [f"{GCLID}{i:03d}" for i in range(5)])
        + profiles("mobile_ad_id", [f"6D92078A-8246-4BA4-AE5B-76104861E{i:03d}" for i in range(5)])
    )
    email_only = profiles("email", [f"buyer{i}@example.com" for i in range(3)])
    no_identifier = profiles(None, range(2))
    enter(audience, people + email_only + no_identifier)
    drain(config)

    seen = cm360(sandbox, "e2e")
    assert seen["conversions_received"] == seen["conversions_recorded"] == 20
    assert (seen["conversions_failed"], seen["conversions_deduplicated"], seen["errors"]) == (0, 0, 0)
    assert seen["activities"] == {"9876543": 20}
    assert seen["requests"] == 1  # 20 conversions, one batchinsert
    assert oauth(sandbox, "e2e")["issued"] == 1
    # An email alone cannot identify a conversion: those profiles are skipped like profiles without identifier.
    assert stats(config) == {("added", ""): 20, ("skipped_no_identifier", ""): 5}
    email_rows = Delivery.objects.filter(partner_config=config, profile_id__in=[p.pk for p in email_only])
    assert {(d.status, d.outcome) for d in email_rows} == {("skipped", "skipped_no_identifier")}
    attempt = DeliveryAttempt.objects.filter(partner_config=config, status_code=200).get()
    assert (attempt.item_count, attempt.ok_count) == (20, 20)
    assert "CUST-" not in attempt.snippet


@pytest.mark.django_db
def test_leaving_the_audience_sends_nothing(sandbox):
    config, audience = connect(sandbox, "leave")
    people = match_ids("LEAVE", 4)
    enter(audience, people)
    drain(config)
    before = cm360(sandbox, "leave")["requests"]
    enter(audience, people[:3], "remove")
    drain(config)
    assert cm360(sandbox, "leave")["requests"] == before == 1
    # CM360 syncs on add only: a removal is not even queued, so nothing fails and the statistics stay clean.
    assert stats(config) == {("added", ""): 4}
    assert not Delivery.objects.filter(partner_config=config, action="remove").exists()


@pytest.mark.django_db
def test_the_audience_connection_names_the_floodlight_activity(sandbox):
    config, audience = connect(sandbox, "activity", partner_audience_id="5550001")
    enter(audience, match_ids("ACT", 3))
    drain(config)
    assert cm360(sandbox, "activity")["activities"] == {"5550001": 3}


@pytest.mark.django_db
def test_per_conversion_errors_and_internal_retry(sandbox, settings):
    config, audience = connect(sandbox, "rows")
    good = match_ids("GOOD", 2)
    unknown = profiles("customer_id", ["unknown-0001"])
    flaky = profiles("customer_id", ["internal-0001"])
    enter(audience, good + unknown + flaky)
    drain(config)
    assert cm360(sandbox, "rows")["failures"] == {"NOT_FOUND": 1, "INTERNAL": 1}
    assert stats(config) == {("added", ""): 2, ("partner_error", "NOT_FOUND"): 1}
    pending = Delivery.objects.get(partner_config=config, status="pending")
    assert (pending.profile_id, pending.partner_error_code, pending.attempts) == (flaky[0].pk, "INTERNAL", 1)
    settings.DAP_RETRY_WINDOW_SECONDS = 0  # the window closes: INTERNAL becomes final
    due_now(config)
    drain(config)
    assert stats(config) == {("added", ""): 2, ("partner_error", "NOT_FOUND"): 1, ("partner_error", "INTERNAL"): 1}


@pytest.mark.django_db
def test_an_unknown_activity_is_a_partner_error(sandbox):
    config, audience = connect(sandbox, "noact", partner_audience_id="4040001")
    enter(audience, match_ids("NOACT", 2))
    drain(config)
    assert stats(config) == {("partner_error", "NOT_FOUND"): 2}


@pytest.mark.django_db
@pytest.mark.parametrize("other_worker", [False, True], ids=["same-worker", "other-worker"])
def test_a_retry_after_a_timeout_is_not_counted_twice(sandbox, other_worker):
    # The request lands but the answer comes after the client's deadline: the retry must be de-duplicated.
    scope = f"dedup-{other_worker}"
    config, audience = connect(sandbox, scope, timeout_seconds=1)
    fault(sandbox, scope, partner=KEY, fault="slow", delay_s=1.6, count=1)
    enter(audience, match_ids(f"DEDUP{int(other_worker)}", 3))
    drain(config)
    assert set(Delivery.objects.filter(partner_config=config).values_list("status", "outcome")) == {
        ("pending", "timeout")
    }
    time.sleep(1.0)  # the slow request finishes on the sandbox side
    assert cm360(sandbox, scope)["conversions_recorded"] == 3
    if other_worker:  # the retry runs in another process: a fresh client, no remembered timestamp
        dispatcher._clients.clear()
    due_now(config)
    drain(config)
    seen = cm360(sandbox, scope)
    # Same ordinal (the outbox row id) on the same day: CM360 counts each conversion once.
    assert (seen["conversions_recorded"], seen["conversions_deduplicated"]) == (3, 3)
    assert stats(config) == {("added", ""): 3}


@pytest.mark.django_db
def test_expired_access_token_is_refreshed_once(sandbox):
    config, audience = connect(sandbox, "refresh")
    fault(sandbox, "refresh", partner=KEY, fault="expired_token", count=1)
    enter(audience, match_ids("REF", 3))
    drain(config)
    assert stats(config) == {("added", ""): 3}
    assert oauth(sandbox, "refresh")["issued"] == 2
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.OK


@pytest.mark.django_db
def test_refused_credentials_pause_until_they_change(sandbox):
    config, audience = connect(sandbox, "creds")
    fault(sandbox, "creds", partner=KEY, fault="expired_token")  # every API call: 401
    enter(audience, match_ids("A", 3))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "UNAUTHENTICATED"): 3}
    enter(audience, match_ids("B", 2))
    assert drain(config).paused == "credentials_invalid"
    requests.delete(f"{sandbox.url}/_sandbox/faults?scope=creds", timeout=5)
    services.partner_config_update(partner_config=config, settings={"refresh_token": "1//0renewedRefreshToken0000"})
    drain(config)
    assert stats(config)[("added", "")] == 2


@pytest.mark.django_db
def test_revoked_refresh_token_pauses(sandbox):
    config, audience = connect(sandbox, "revoked", refresh_token="revoked-refresh-token-0000")
    enter(audience, match_ids("REV", 2))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert cm360(sandbox, "revoked")["requests"] == 0
    assert stats(config) == {("invalid_credentials", "oauth/invalid_grant"): 2}


@pytest.mark.django_db
def test_quota_errors_are_retried_after_retry_after(sandbox):
    config, audience = connect(sandbox, "quota")
    fault(sandbox, "quota", partner=KEY, fault="rate_limit", retry_after=120, count=1)
    enter(audience, match_ids("Q", 2))
    before = timezone.now()
    drain(config)
    rows = Delivery.objects.filter(partner_config=config)
    assert {(r.status, r.partner_error_code, r.attempts) for r in rows} == {
        ("pending", "PERMISSION_DENIED/userRateLimitExceeded", 1)
    }
    assert all(r.next_attempt_at >= before + timedelta(seconds=119) for r in rows)
    due_now(config)
    drain(config)
    assert stats(config) == {("added", ""): 2}


@pytest.mark.django_db
def test_server_errors_are_retried_then_fail_at_the_window(sandbox, settings):
    config, audience = connect(sandbox, "storm")
    fault(sandbox, "storm", partner=KEY, fault="server_error", status=503)
    enter(audience, match_ids("S", 2))
    drain(config)
    assert set(Delivery.objects.values_list("status", "attempts")) == {("pending", 1)}
    settings.DAP_RETRY_WINDOW_SECONDS = 0
    due_now(config)
    drain(config)
    assert stats(config) == {("partner_error", "UNAVAILABLE"): 2}


@pytest.mark.django_db
def test_request_level_partner_error_reaches_statistics(sandbox):
    config, audience = connect(sandbox, "perr")
    fault(sandbox, "perr", partner=KEY, fault="partner_error", status=403, count=1)
    enter(audience, match_ids("P", 3))
    drain(config)
    assert stats(config) == {("partner_error", "PERMISSION_DENIED"): 3}


@pytest.mark.django_db
def test_test_connection_against_the_sandbox(sandbox):
    config, _ = connect(sandbox, "conn")
    result = services.partner_config_test_connection(partner_config=config)
    assert result.ok, result.message
    assert "7654321" in result.message
    assert cm360(sandbox, "conn")["profile_reads"] == 1

    bad, _ = connect(sandbox, "conn-bad", refresh_token="revoked-refresh-token-0000")
    result = services.partner_config_test_connection(partner_config=bad)
    assert not result.ok and result.message.startswith("Invalid credentials (oauth/invalid_grant)")

    unknown, _ = connect(sandbox, "conn-404", profile_id="4040404")
    result = services.partner_config_test_connection(partner_config=unknown)
    assert not result.ok and "4040404 was not found" in result.message


# --- the emulation's strictness ---------------------------------------------------------------------------------
@pytest.fixture
def token(sandbox):
    response = requests.post(
        f"{sandbox.url}/oauth2.googleapis.com/token",
        data={
            "grant_type": "refresh_token",
            "client_id": SETTINGS["client_id"],
            "client_secret": "s",
            "refresh_token": "1//0abcdefghijklmnopqrstuvwxyz",
        },
        timeout=5,
    )
    return response.json()["access_token"]


def insert(sandbox, token, conversions, *, scope="strict", profile="7654321", query="", **body):
    url = f"{sandbox.url}/c/{scope}/{HOST_PATH}/{profile}/conversions/batchinsert{query}"
    payload = {"kind": "dfareporting#conversionsBatchInsertRequest", "conversions": conversions, **body}
    return requests.post(url, json=payload, headers={"Authorization": f"Bearer {token}"}, timeout=5)


def conversion(**fields):
    now = time.time_ns() // 1000
    return {
        "floodlightConfigurationId": "1234567",
        "floodlightActivityId": "9876543",
        "matchId": "CUST-1",
        "ordinal": "dap-1",
        "timestampMicros": str(now),
        "value": 1.5,
        "quantity": "1",
        **fields,
    }


def row_codes(response):
    assert response.status_code == 200, response.text
    return [[e["code"] for e in s.get("errors", [])] for s in response.json()["status"]]


def test_sandbox_requires_a_google_bearer_token(sandbox, token):
    response = insert(sandbox, "EAAB-not-google", [conversion()])
    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert insert(sandbox, token, [conversion()]).status_code == 200


def test_sandbox_refuses_malformed_requests(sandbox, token):
    assert insert(sandbox, token, [conversion()], query="?validateOnly=true").status_code == 400
    assert insert(sandbox, token, [conversion()], profile="abc").json()["error"]["status"] == "INVALID_ARGUMENT"
    assert insert(sandbox, token, [conversion(hashedEmail="x")]).status_code == 400  # not a v5 Conversion field
    assert insert(sandbox, token, [conversion(timestampMicros="yesterday")]).status_code == 400
    assert insert(sandbox, token, [conversion(adUserDataConsent="YES")]).status_code == 400
    assert insert(sandbox, token, []).status_code == 400
    assert insert(sandbox, token, [conversion(ordinal=f"o{i}") for i in range(1001)]).status_code == 400
    assert insert(sandbox, token, [conversion()], kind="dfareporting#conversionsBatchUpdateRequest").status_code == 400
    wrong_type = requests.post(
        f"{sandbox.url}/{HOST_PATH}/7654321/conversions/batchinsert",
        data="conversions=1",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert wrong_type.status_code == 400
    old_version = requests.post(
        f"{sandbox.url}/dfareporting.googleapis.com/dfareporting/v4/userprofiles/7654321/conversions/batchinsert",
        json={"conversions": [conversion()]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert old_version.status_code == 404


def test_sandbox_checks_each_conversion(sandbox, token):
    now = time.time_ns() // 1000
    rows = [
        conversion(),
        conversion(gclid=GCLID),  # two identifiers
        conversion(matchId=None),  # none
        conversion(timestampMicros=str(now // 1000)),  # milliseconds, not microseconds
        conversion(matchId=None, mobileDeviceId="not-a-device"),
        conversion(floodlightConfigurationId="7777777"),  # another configuration in the same request
        conversion(ordinal=""),
        conversion(userIdentifiers=[{"hashedEmail": "Mary@Example.com"}]),
        conversion(floodlightActivityId="4041111"),
        conversion(matchId="unknown-x"),
        conversion(matchId="internal-x"),
        conversion(timestampMicros=str(now + 3_600_000_000)),  # an hour ahead
    ]
    response = insert(sandbox, token, rows)
    codes = row_codes(response)
    assert codes[0] == []
    assert codes[1:8] == [["INVALID_ARGUMENT"]] * 7
    assert codes[8:] == [["NOT_FOUND"], ["NOT_FOUND"], ["INTERNAL"], ["INVALID_ARGUMENT"]]
    body = response.json()
    assert body["hasFailures"] is True and body["kind"] == "dfareporting#conversionsBatchInsertResponse"
    assert body["status"][0]["conversion"]["matchId"] == "CUST-1"


def test_sandbox_deduplicates_like_cm360(sandbox, token):
    assert row_codes(insert(sandbox, token, [conversion(), conversion()], scope="dd")) == [[], []]
    insert(sandbox, token, [conversion(ordinal="dap-2")], scope="dd")
    seen = requests.get(f"{sandbox.url}/_sandbox/stats?scope=dd", timeout=5).json()["dd"][KEY]
    assert (seen["conversions_recorded"], seen["conversions_deduplicated"]) == (2, 1)


def test_sandbox_user_profile(sandbox, token):
    ok = requests.get(f"{sandbox.url}/{HOST_PATH}/7654321", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert ok.status_code == 200 and ok.json()["profileId"] == "7654321"
    gone = requests.get(f"{sandbox.url}/{HOST_PATH}/4047", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert gone.status_code == 404 and gone.json()["error"]["status"] == "NOT_FOUND"
    foreign = requests.get(f"{sandbox.url}/{HOST_PATH}/4031", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert foreign.status_code == 403


def test_sandbox_faults_speak_google(sandbox, token):
    fault(sandbox, "f", partner=KEY, fault="rate_limit", retry_after=7, count=1)
    limited = insert(sandbox, token, [conversion()], scope="f")
    assert limited.status_code == 403 and limited.headers["Retry-After"] == "7"
    assert limited.json()["error"]["errors"][0]["reason"] == "userRateLimitExceeded"
    fault(sandbox, "f", partner=KEY, fault="partner_error", status=200, message="NOT_FOUND", count=1)
    assert row_codes(insert(sandbox, token, [conversion(), conversion()], scope="f")) == [["NOT_FOUND"]] * 2
    fault(sandbox, "f", partner=KEY, fault="server_error", count=1)
    assert insert(sandbox, token, [conversion()], scope="f").json()["error"]["status"] == "UNAVAILABLE"
