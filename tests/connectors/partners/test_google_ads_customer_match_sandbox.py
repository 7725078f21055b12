"""Google Ads Customer Match end to end through the local partner sandbox (real client, dispatcher and HTTP on
loopback), and the sandbox's own strictness as the Data Manager API."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from audiences.models import Audience, AudienceConnection, Profile, ProfileIdentifier
from connectors import services
from connectors.delivery import dispatcher, ratelimit, tokens
from connectors.models import Delivery, DeliveryAttempt, PartnerConfig
from tests.connectors.sandbox_helpers import drain, enter, fault, sandbox_stats, stats
from tests.factories import VALID_SETTINGS

KEY = "google_ads_customer_match"
LIST_ID = "5551234567"
SETTINGS = VALID_SETTINGS[KEY]


@pytest.fixture(autouse=True)
def fresh(settings):
    settings.DAP_KICK_ON_COMMIT = False
    settings.DAP_DISPATCH_SHARDS = 1
    dispatcher._clients.clear()
    tokens._local.clear()
    ratelimit.reset(f"google_datamanager:{SETTINGS['client_id']}")
    yield
    dispatcher._clients.clear()
    tokens._local.clear()


def connect(sandbox, scope, partner_audience_id=LIST_ID, **settings_override):
    connector = services.connector_create(
        partner_key=KEY,
        name=f"Customer Match {scope}",
        settings={**SETTINGS, **settings_override},
        base_url_override=f"{sandbox.url}/c/{scope}",
    )
    config = connector.configs.get()
    audience = Audience.objects.create(name=f"audience {scope}")
    AudienceConnection.objects.create(audience=audience, partner_config=config, partner_audience_id=partner_audience_id)
    return config, audience


def profiles(values, slot="email", prefix="p"):
    created = Profile.objects.bulk_create([Profile(external_id=f"{prefix}{i}") for i in range(len(values))])
    ProfileIdentifier.objects.bulk_create(
        [ProfileIdentifier(profile=p, slot=slot, value=v) for p, v in zip(created, values, strict=True)]
    )
    return created


def emails(n, prefix="e"):
    return profiles([f"Person.{prefix}{i}+promo@Example.com" for i in range(n)], prefix=prefix)


# --- end to end ---------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_add_and_remove_reach_the_sandbox_and_statistics(sandbox):
    config, audience = connect(sandbox, "cm")
    mail = emails(20)
    phones = profiles([f"+31 6 1234 {i:04d}" for i in range(5)], slot="phone", prefix="t")
    national = profiles(["06 1234 5678", "020 123 4567"], slot="phone", prefix="n")  # no country code
    no_identifier = profiles(["C-1", "C-2", "C-3"], slot="customer_id", prefix="c")
    enter(audience, mail + phones + national + no_identifier)
    drain(config)
    google = sandbox_stats(sandbox, "cm")[KEY]
    assert (google["rows_added"], google["errors"]) == (25, 0)
    assert sandbox_stats(sandbox, "cm")["google_oauth"]["issued"] == 1
    assert stats(config) == {
        ("added", ""): 25,
        ("other_error", "invalid_identifier"): 2,
        ("skipped_no_identifier", ""): 3,
    }
    failed = Delivery.objects.filter(partner_config=config, status="failed")
    assert {d.partner_error_code for d in failed} == {"invalid_identifier"}

    enter(audience, mail[:10], "remove")
    drain(config)
    assert sandbox_stats(sandbox, "cm")[KEY]["rows_removed"] == 10
    assert stats(config)[("removed", "")] == 10
    attempt = DeliveryAttempt.objects.filter(partner_config=config, status_code=200).first()
    assert attempt.duration_ms > 0 and "requestId=" in attempt.snippet


@pytest.mark.django_db
def test_default_list_is_used_without_a_list_on_the_connection(sandbox):
    config, audience = connect(sandbox, "default", partner_audience_id="")
    enter(audience, emails(3))
    drain(config)
    assert stats(config) == {("added", ""): 3}


@pytest.mark.django_db
def test_base64_encoding_is_accepted(sandbox):
    config, audience = connect(sandbox, "b64", encoding="BASE64")
    enter(audience, emails(4))
    drain(config)
    assert stats(config) == {("added", ""): 4}


@pytest.mark.django_db
def test_expired_token_refreshes_then_pauses_until_credentials_change(sandbox):
    config, audience = connect(sandbox, "token")
    fault(sandbox, "token", fault="expired_token", partner=KEY)  # the API refuses every token
    enter(audience, emails(3, prefix="a"))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "UNAUTHENTICATED/ACCESS_TOKEN_EXPIRED"): 3}
    assert sandbox_stats(sandbox, "token")["google_oauth"]["issued"] == 2  # one refresh before giving up

    enter(audience, emails(2, prefix="b"))
    assert drain(config).paused == "credentials_invalid"  # later changes wait, nothing lost
    requests.delete(f"{sandbox.url}/_sandbox/faults?scope=token", timeout=5)
    services.partner_config_update(partner_config=config, settings={"refresh_token": "1//0gadsRenewedRefreshToken99"})
    drain(config)
    assert stats(config)[("added", "")] == 2


@pytest.mark.django_db
def test_revoked_refresh_token_pauses_without_api_calls(sandbox):
    config, audience = connect(sandbox, "revoked", refresh_token="revoked-refresh-token-0123456789")
    enter(audience, emails(2))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert sandbox_stats(sandbox, "revoked")[KEY]["requests"] == 0


@pytest.mark.django_db
def test_quota_exhaustion_is_retried_after_retry_after(sandbox):
    config, audience = connect(sandbox, "quota")
    fault(sandbox, "quota", fault="rate_limit", partner=KEY, retry_after=120, count=1)
    enter(audience, emails(3))
    before = timezone.now()
    drain(config)
    rows = Delivery.objects.filter(partner_config=config)
    assert {(r.status, r.partner_error_code, r.attempts) for r in rows} == {
        ("pending", "RESOURCE_EXHAUSTED/RATE_LIMIT_EXCEEDED", 1)
    }
    assert all(r.next_attempt_at >= before + timedelta(seconds=119) for r in rows)
    rows.update(next_attempt_at=timezone.now())  # time passes
    drain(config)
    assert stats(config) == {("added", ""): 3}


@pytest.mark.django_db
def test_server_errors_are_retried(sandbox):
    config, audience = connect(sandbox, "storm")
    fault(sandbox, "storm", fault="server_error", partner=KEY, status=503, count=1)
    enter(audience, emails(2))
    drain(config)
    rows = Delivery.objects.filter(partner_config=config)
    assert set(rows.values_list("status", "partner_error_code")) == {("pending", "UNAVAILABLE")}
    Delivery.objects.filter(partner_config=config).update(next_attempt_at=timezone.now())
    drain(config)
    assert stats(config) == {("added", ""): 2}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fault_body", "list_id", "code"),
    [
        ({"fault": "partner_error", "status": 400}, LIST_ID, "INVALID_ARGUMENT"),
        ({"fault": "gone"}, LIST_ID, "NOT_FOUND"),
        (None, "4041234567", "NOT_FOUND"),
        (None, "7712345678", "INVALID_ARGUMENT/INVALID_USER_LIST_TYPE"),
    ],
)
def test_final_partner_errors_reach_statistics(sandbox, fault_body, list_id, code):
    config, audience = connect(sandbox, "perr", partner_audience_id=list_id)
    if fault_body:
        fault(sandbox, "perr", partner=KEY, count=1, **fault_body)
    enter(audience, emails(4))
    drain(config)
    assert stats(config) == {("partner_error", code): 4}
    assert set(Delivery.objects.filter(partner_config=config).values_list("status", flat=True)) == {"failed"}


@pytest.mark.django_db
def test_permission_denied_on_the_account(sandbox):
    config, audience = connect(sandbox, "perm", operating_account_id="403-000-0000")
    enter(audience, emails(2))
    drain(config)
    assert stats(config) == {("partner_error", "PERMISSION_DENIED"): 2}
    config.refresh_from_db()
    assert config.health != PartnerConfig.Health.CREDENTIALS_INVALID  # one account's permission, not the credentials


@pytest.mark.django_db
def test_connection_checks_against_the_sandbox(sandbox):
    config, _ = connect(sandbox, "conn", login_account_id="987-654-3210")
    result = services.partner_config_test_connection(partner_config=config)
    assert result.ok, result.message
    assert LIST_ID in result.message
    google = sandbox_stats(sandbox, "conn")[KEY]
    assert (google["lists_read"], google["validate_only"], google["rows_added"]) == (1, 1, 0)

    no_list, _ = connect(sandbox, "conn2", user_list_id="")
    result = services.partner_config_test_connection(partner_config=no_list)
    assert result.ok and "audience connection" in result.message

    unknown, _ = connect(sandbox, "conn3", user_list_id="4049999999")
    result = services.partner_config_test_connection(partner_config=unknown)
    assert not result.ok and "NOT_FOUND" in result.message and "4049999999" in result.message

    mobile, _ = connect(sandbox, "conn4", user_list_id="7700000001")
    result = services.partner_config_test_connection(partner_config=mobile)
    assert not result.ok and "MOBILE_ID" in result.message


@pytest.mark.django_db
def test_connection_fails_clearly_with_bad_credentials(sandbox):
    config, _ = connect(sandbox, "badcred", refresh_token="revoked-refresh-token-0123456789")
    result = services.partner_config_test_connection(partner_config=config)
    assert not result.ok and "invalid_grant" in result.message
    assert "revoked-refresh-token" not in result.message

    fault(sandbox, "badcred2", fault="expired_token", partner=KEY)
    config2, _ = connect(sandbox, "badcred2")
    result = services.partner_config_test_connection(partner_config=config2)
    assert not result.ok and "credentials" in result.message


# --- the emulation's strictness -------------------------------------------------------------------------------------

SHA = hashlib.sha256(b"mary@example.com").hexdigest()
INGEST = "/c/strict/datamanager.googleapis.com/v1/audienceMembers:ingest"
REMOVE = "/c/strict/datamanager.googleapis.com/v1/audienceMembers:remove"


def token(sandbox) -> str:
    form = {
        "grant_type": "refresh_token",
        "client_id": SETTINGS["client_id"],
        "client_secret": "GOCSPX-x",
        "refresh_token": "1//0abcdefghijklmnopqrstuvwxyz",
    }
    return requests.post(f"{sandbox.url}/oauth2.googleapis.com/token", data=form, timeout=5).json()["access_token"]


def request_body(**overrides):
    body = {
        "destinations": [
            {"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"}, "productDestinationId": "55"}
        ],
        "audienceMembers": [{"userData": {"userIdentifiers": [{"emailAddress": SHA}]}}],
        "encoding": "HEX",
        "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def post(sandbox, path=INGEST, body=None, auth=True, **kwargs):
    headers = {"Authorization": f"Bearer {token(sandbox)}"} if auth else {}
    return requests.post(f"{sandbox.url}{path}", json=body or request_body(), headers=headers, timeout=5, **kwargs)


def violations(response) -> list[tuple[str, str]]:
    details = response.json()["error"]["details"]
    bad = next(d for d in details if d["@type"].endswith("BadRequest"))
    return [(v["field"], v.get("reason", "")) for v in bad["fieldViolations"]]


def test_sandbox_accepts_a_valid_ingest_and_counts_it(sandbox):
    response = post(sandbox)
    assert response.status_code == 200 and response.json()["requestId"]
    assert sandbox_stats(sandbox, "strict")[KEY]["rows_added"] == 1


def test_sandbox_requires_a_token_it_issued(sandbox):
    response = post(sandbox, auth=False)
    assert response.status_code == 401 and response.json()["error"]["status"] == "UNAUTHENTICATED"
    response = requests.post(
        f"{sandbox.url}{INGEST}", json=request_body(), headers={"Authorization": "Bearer made-up"}, timeout=5
    )
    assert response.status_code == 401


def test_sandbox_refuses_consent_and_terms_on_remove(sandbox):
    body = request_body(consent={"adUserData": "CONSENT_GRANTED"})
    response = post(sandbox, REMOVE, body)
    assert response.status_code == 400
    assert "Unknown name" in response.text and "consent" in response.text
    assert post(sandbox, REMOVE, request_body(termsOfService=None)).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"encoding": None}, ("encoding", "REQUIRED_FIELD_MISSING")),
        ({"termsOfService": None}, ("terms_of_service", "TERMS_AND_CONDITIONS_NOT_SIGNED")),
        (
            {"audienceMembers": [{"userData": {"userIdentifiers": [{"emailAddress": "mary@example.com"}]}}]},
            ("audience_members.audience_members[0].user_data.user_identifiers", "INVALID_HEX_ENCODING"),
        ),
        (
            {"audienceMembers": [{"userData": {"userIdentifiers": [{"emailAddress": SHA[:60]}]}}]},
            ("audience_members.audience_members[0].user_data.user_identifiers", "INVALID_SHA256_FORMAT"),
        ),
        (
            {"encoding": "BASE64"},
            ("audience_members.audience_members[0].user_data.user_identifiers", "INVALID_SHA256_FORMAT"),
        ),
        (
            {"audienceMembers": [{"userData": {"userIdentifiers": [{"emailAddress": SHA}] * 11}}]},
            ("audience_members.audience_members[0].user_data", "TOO_MANY_USER_IDENTIFIERS"),
        ),
        (
            {"audienceMembers": [{"userData": {"userIdentifiers": [{"emailAddress": SHA, "phoneNumber": SHA}]}}]},
            ("audience_members.audience_members[0].user_data.user_identifiers", "INVALID_FORMAT"),
        ),
        ({"audienceMembers": []}, ("audience_members", "REQUIRED_FIELD_MISSING")),
        (
            {"destinations": [{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "123-456-7890"}}]},
            ("destinations.destinations[0].operating_account.account_id", "INVALID_FORMAT"),
        ),
        (
            {"destinations": [{"operatingAccount": {"accountId": "1234567890"}, "productDestinationId": "5"}]},
            ("destinations.destinations[0].operating_account.account_type", "REQUIRED_FIELD_MISSING"),
        ),
    ],
)
def test_sandbox_validation_errors_name_the_field(sandbox, overrides, expected):
    response = post(sandbox, body=request_body(**overrides))
    assert response.status_code == 400 and response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert expected in violations(response)


def test_sandbox_limits_members_per_request(sandbox):
    members = [{"userData": {"userIdentifiers": [{"emailAddress": SHA}]}}] * 10_001
    response = post(sandbox, body=request_body(audienceMembers=members))
    assert ("audience_members", "TOO_MANY_AUDIENCE_MEMBERS") in violations(response)


def test_sandbox_enum_and_type_checks(sandbox):
    assert post(sandbox, body=request_body(encoding="HASHED")).status_code == 400
    assert post(sandbox, body=request_body(validateOnly="yes")).status_code == 400
    assert post(sandbox, body=request_body(consent={"adUserData": "GRANTED"})).status_code == 400
    response = requests.post(
        f"{sandbox.url}{INGEST}",
        data=b"{}",
        headers={"Authorization": f"Bearer {token(sandbox)}", "Content-Type": "text/plain"},
        timeout=5,
    )
    assert response.status_code == 400


def test_sandbox_validate_only_counts_nothing(sandbox):
    response = post(sandbox, body=request_body(validateOnly=True))
    assert response.status_code == 200 and response.json() == {}
    strict = sandbox_stats(sandbox, "strict")[KEY]
    assert (strict["rows_added"], strict["validate_only"]) == (0, 1)


def test_sandbox_user_list_reads(sandbox):
    base = f"{sandbox.url}/c/strict/datamanager.googleapis.com/v1/accountTypes/GOOGLE_ADS/accounts/1234567890"
    headers = {"Authorization": f"Bearer {token(sandbox)}"}
    read = requests.get(f"{base}/userLists/555", headers=headers, timeout=5)
    assert read.status_code == 200 and read.json()["ingestedUserListInfo"]["uploadKeyTypes"] == ["CONTACT_ID"]
    assert requests.get(f"{base}/userLists/4045", headers=headers, timeout=5).status_code == 404
    listed = requests.get(f"{base}/userLists?pageSize=1", headers=headers, timeout=5)
    assert listed.status_code == 200 and len(listed.json()["userLists"]) == 1
    assert requests.get(f"{base}/userLists?bogus=1", headers=headers, timeout=5).status_code == 400
    bad_login = {**headers, "login-account": "customers/123"}
    assert requests.get(f"{base}/userLists/555", headers=bad_login, timeout=5).status_code == 400
