"""DV360 Customer Match end to end through the local partner sandbox: the real client, the real dispatcher, real HTTP on
loopback to the sandbox's Google OAuth token endpoint and its DV360 API emulation; plus the emulation's own strictness.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from audiences.models import Audience, AudienceConnection, Profile, ProfileIdentifier
from connectors import services
from connectors.delivery import dispatcher, http, ratelimit
from connectors.delivery.types import ClientConfig
from connectors.models import Delivery, PartnerConfig
from connectors.partners.google_dv360.client import Client
from tests.connectors.sandbox_helpers import drain, enter, fault, sandbox_stats, stats
from tests.factories import VALID_SETTINGS

AUDIENCE = "4567890123"  # a contact-info Customer Match audience in the sandbox
DEVICE_AUDIENCE = "8800000001"  # sandbox convention: ids starting with 8 are device-id audiences
RENEWED_REFRESH_TOKEN = "1//0renewedRefreshTokenForTheSandboxTest99"
IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"


def _client(**secrets) -> Client:
    settings = VALID_SETTINGS["google_dv360"]
    config = ClientConfig(
        partner_config_id=0,
        settings=settings,
        secrets={"client_secret": settings["client_secret"], "refresh_token": settings["refresh_token"], **secrets},
        timeout_seconds=3.0,
    )
    return Client(config, http.new_session())


@pytest.fixture(autouse=True)
def fresh_state(settings):
    """No cached client, token or spent quota from another test; no on-commit kick; one shard."""
    settings.DAP_KICK_ON_COMMIT = False
    settings.DAP_DISPATCH_SHARDS = 1
    clients = [_client(), _client(refresh_token=RENEWED_REFRESH_TOKEN)]

    def clean():
        dispatcher._clients.clear()
        for client in clients:
            client.oauth.forget()
            ratelimit.reset(client.quota_key())
            ratelimit.reset(client.project_quota_key())

    clean()
    yield
    clean()


# --- helpers ---------------------------------------------------------------------------------------------------------
def connect(sandbox, scope, partner_audience_id=AUDIENCE, **settings_override):
    connector = services.connector_create(
        partner_key="google_dv360",
        name=f"DV360 {scope}",
        settings={**VALID_SETTINGS["google_dv360"], **settings_override},
        base_url_override=f"{sandbox.url}/c/{scope}",
    )
    config = connector.configs.get()
    audience = Audience.objects.create(name=f"audience {scope}")
    AudienceConnection.objects.create(audience=audience, partner_config=config, partner_audience_id=partner_audience_id)
    return config, audience


def profiles(n, slot, prefix, *, consent=True):
    """n profiles holding a valid identifier of `slot` (email, E.164 phone, IDFA-like UUID, or a customer id)."""
    made = Profile.objects.bulk_create([Profile(external_id=f"{prefix}{i}", consent_ads=consent) for i in range(n)])
    values = {
        "email": lambda i: f"{prefix}.{i}@Example.com",
        "phone": lambda i: f"+31 6 {10000000 + i}",
        "mobile_ad_id": lambda i: f"{i:08X}-8246-4BA4-AE5B-{sum(map(ord, prefix)):012d}",
        "customer_id": lambda i: f"{prefix}-c{i}",
    }[slot]
    ProfileIdentifier.objects.bulk_create(
        [ProfileIdentifier(profile=p, slot=slot, value=values(i)) for i, p in enumerate(made)]
    )
    return made


def clear_faults(sandbox, scope):
    requests.delete(f"{sandbox.url}/_sandbox/faults?scope={scope}", timeout=5)


# --- delivery ---------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_add_and_remove_reach_the_sandbox_and_the_statistics(sandbox):
    config, audience = connect(sandbox, "dv-add")
    emails = profiles(20, "email", "e")
    phones = profiles(5, "phone", "p")
    no_identifier = profiles(3, "customer_id", "x")
    no_consent = profiles(2, "email", "n", consent=False)
    enter(audience, emails + phones + no_identifier + no_consent)
    drain(config)
    dv = sandbox_stats(sandbox, "dv-add")
    assert dv["google_dv360"]["rows_added"] == 25
    assert dv["google_dv360"]["requests"] == 1  # emails and phones share one contact-info list
    assert dv["google_oauth"]["issued"] == 1
    enter(audience, emails[:10], "remove")
    drain(config)
    dv = sandbox_stats(sandbox, "dv-add")
    assert dv["google_dv360"]["rows_removed"] == 10
    assert dv["google_dv360"]["errors"] == 0
    assert dv["google_oauth"]["issued"] == 1  # the access token was cached
    assert stats(config) == {
        ("added", ""): 25,
        ("removed", ""): 10,
        ("skipped_no_identifier", ""): 3,
        ("skipped_no_consent", ""): 2,
    }


@pytest.mark.django_db
def test_mobile_ids_reach_a_device_audience(sandbox):
    config, audience = connect(sandbox, "dv-device", DEVICE_AUDIENCE)
    enter(audience, profiles(4, "mobile_ad_id", "m"))
    drain(config)
    assert sandbox_stats(sandbox, "dv-device")["google_dv360"]["rows_added"] == 4
    assert stats(config) == {("added", ""): 4}


@pytest.mark.django_db
def test_strict_sandbox_refuses_mobile_ids_for_a_contact_audience(sandbox):
    config, audience = connect(sandbox, "dv-mix", AUDIENCE)
    enter(audience, profiles(2, "mobile_ad_id", "w"))
    drain(config)
    assert stats(config) == {("partner_error", "INVALID_ARGUMENT"): 2}
    assert set(Delivery.objects.filter(partner_config=config).values_list("status", flat=True)) == {"failed"}


@pytest.mark.django_db
def test_unknown_audience_is_a_final_partner_error(sandbox):
    config, audience = connect(sandbox, "dv-404", "4040000001")  # sandbox convention: ids starting 404 do not exist
    enter(audience, profiles(3, "email", "u"))
    drain(config)
    assert stats(config) == {("partner_error", "NOT_FOUND"): 3}


@pytest.mark.django_db
def test_revoked_refresh_token_pauses_until_the_credentials_change(sandbox):
    config, audience = connect(sandbox, "dv-token")
    fault(
        sandbox, "dv-token", fault="expired_token"
    )  # every partner of the scope: the token endpoint says invalid_grant
    enter(audience, profiles(3, "email", "a"))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "oauth/invalid_grant"): 3}
    enter(audience, profiles(2, "email", "b"))
    assert drain(config).paused == "credentials_invalid"  # kept, not lost: later changes wait
    clear_faults(sandbox, "dv-token")
    services.partner_config_update(partner_config=config, settings={"refresh_token": RENEWED_REFRESH_TOKEN})
    drain(config)
    assert stats(config)[("added", "")] == 2
    assert sandbox_stats(sandbox, "dv-token")["google_dv360"]["rows_added"] == 2


@pytest.mark.django_db
def test_an_expired_access_token_is_replaced_without_pausing(sandbox):
    config, audience = connect(sandbox, "dv-expired")
    enter(audience, profiles(2, "email", "c"))
    drain(config)  # an access token is now cached
    fault(sandbox, "dv-expired", fault="expired_token", partner="google_dv360", count=1)
    enter(audience, profiles(3, "email", "d"))
    drain(config)
    config.refresh_from_db()
    assert config.health != PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("added", ""): 5}
    dv = sandbox_stats(sandbox, "dv-expired")
    assert dv["google_oauth"]["issued"] == 2
    assert (dv["google_dv360"]["requests"], dv["google_dv360"]["errors"]) == (3, 1)


@pytest.mark.django_db
def test_a_refused_fresh_access_token_pauses(sandbox):
    config, audience = connect(sandbox, "dv-refused")
    fault(sandbox, "dv-refused", fault="expired_token", partner="google_dv360")  # the API refuses every token
    enter(audience, profiles(2, "email", "f"))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "UNAUTHENTICATED/ACCESS_TOKEN_EXPIRED"): 2}
    assert sandbox_stats(sandbox, "dv-refused")["google_dv360"]["requests"] == 1  # the token was fresh: no retry


@pytest.mark.django_db
def test_quota_exhaustion_is_retried_after_retry_after(sandbox):
    config, audience = connect(sandbox, "dv-429")
    fault(sandbox, "dv-429", fault="rate_limit", partner="google_dv360", retry_after=120, count=1)
    enter(audience, profiles(2, "email", "g"))
    before = timezone.now()
    drain(config)
    rows = Delivery.objects.filter(partner_config=config)
    assert {(r.status, r.partner_error_code, r.attempts) for r in rows} == {("pending", "RESOURCE_EXHAUSTED", 1)}
    assert all(r.next_attempt_at >= before + timedelta(seconds=119) for r in rows)
    rows.update(next_attempt_at=timezone.now())  # time passes
    drain(config)
    assert stats(config) == {("added", ""): 2}


@pytest.mark.django_db
def test_permission_denied_reaches_the_statistics(sandbox):
    config, audience = connect(sandbox, "dv-403")
    fault(sandbox, "dv-403", fault="partner_error", partner="google_dv360", code=403, count=1)
    enter(audience, profiles(2, "email", "h"))
    drain(config)
    assert stats(config) == {("partner_error", "PERMISSION_DENIED"): 2}


@pytest.mark.django_db
def test_server_errors_are_retried_then_fail_at_the_window(sandbox, settings):
    config, audience = connect(sandbox, "dv-503")
    fault(sandbox, "dv-503", fault="server_error", partner="google_dv360", status=503)
    enter(audience, profiles(2, "email", "i"))
    drain(config)
    assert set(Delivery.objects.filter(partner_config=config).values_list("status", "partner_error_code")) == {
        ("pending", "UNAVAILABLE")
    }
    settings.DAP_RETRY_WINDOW_SECONDS = 0
    Delivery.objects.update(next_attempt_at=timezone.now())
    drain(config)
    assert stats(config) == {("partner_error", "UNAVAILABLE"): 2}


# --- test connection --------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_test_connection_against_the_sandbox(sandbox):
    config, _ = connect(sandbox, "dv-test")
    result = services.partner_config_test_connection(partner_config=config)
    assert result.ok, result.message
    assert result.message == "Connected to advertiser Sandbox advertiser 1234567 (1234567)."


@pytest.mark.django_db
def test_test_connection_bad_credentials(sandbox):
    config, _ = connect(sandbox, "dv-badcred", refresh_token="revoked-refresh-token-0000000000")
    result = services.partner_config_test_connection(partner_config=config)
    assert not result.ok
    assert result.message.startswith("Invalid credentials (oauth/invalid_grant)")
    assert "revoked-refresh-token" not in result.message


@pytest.mark.django_db
def test_test_connection_unknown_advertiser(sandbox):
    config, _ = connect(sandbox, "dv-noadv", advertiser_id="4040001")
    result = services.partner_config_test_connection(partner_config=config)
    assert not result.ok
    assert result.message.startswith("Advertiser 4040001 was not found")


# --- the emulation's strictness, over HTTP ----------------------------------------------------------------------------
def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture
def api(sandbox):
    """(session with a sandbox-issued access token, edit URL builder)."""
    session = requests.Session()
    token = session.post(
        f"{sandbox.url}/oauth2.googleapis.com/token",
        data={
            "grant_type": "refresh_token",
            "client_id": VALID_SETTINGS["google_dv360"]["client_id"],
            "client_secret": "secret",
            "refresh_token": "1//refresh-token-for-the-emulation-tests",
        },
        timeout=5,
    ).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"

    def url(audience=AUDIENCE):
        return (
            f"{sandbox.url}/displayvideo.googleapis.com/v4/firstPartyAndPartnerAudiences/"
            f"{audience}:editCustomerMatchMembers"
        )

    yield session, url
    session.close()


def _rpc(response, status, rpc):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (status, rpc)
    assert error["message"]
    return error


def test_emulation_accepts_a_valid_edit(api):
    session, url = api
    body = {
        "advertiserId": "1234567",
        "addedContactInfoList": {
            "contactInfos": [
                {"hashedEmails": [_sha("a@example.com"), _sha("b@example.com")]},
                {"hashedPhoneNumbers": [_sha("+31612345678")]},
                {
                    "hashedFirstName": _sha("jane"),
                    "hashedLastName": _sha("doe"),
                    "zipCodes": ["1011AB"],
                    "countryCode": "NL",
                },
            ],
            "consent": {"adUserData": "CONSENT_STATUS_GRANTED"},
        },
        "removedContactInfoList": {"contactInfos": [{"hashedEmails": [_sha("c@example.com")]}]},
    }
    response = session.post(url(), json=body, timeout=5)
    assert response.status_code == 200, response.text
    assert response.json() == {"firstPartyAndPartnerAudienceId": AUDIENCE}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"addedContactInfoList": {"contactInfos": [{"hashedEmails": ["0" * 64]}]}}, "advertiser_id"),
        ({"advertiserId": "1234567"}, "At least one"),
        ({"advertiserId": "1234567", "extra": 1}, 'Unknown name "extra"'),
        (
            {"advertiserId": "1234567", "addedContactInfoList": {"contactInfos": [{"hashedEmails": ["a@b.com"]}]}},
            "not a SHA-256 hash",
        ),
        ({"advertiserId": "1234567", "addedContactInfoList": {"contactInfos": []}}, "at least one"),
        (
            {
                "advertiserId": "1234567",
                "addedContactInfoList": {
                    "contactInfos": [{"hashedEmails": ["0" * 64]}],
                    "consent": {"adPersonalization": "CONSENT_STATUS_DENIED"},
                },
            },
            "CONSENT_STATUS_DENIED",
        ),
        (
            {
                "advertiserId": "1234567",
                "addedContactInfoList": {
                    "contactInfos": [{"hashedEmails": ["0" * 64]}],
                    "consent": {"adUserData": "YES"},
                },
            },
            "ConsentStatus",
        ),
        (
            {"advertiserId": "1234567", "addedContactInfoList": {"contactInfos": [{"zipCodes": ["1011"]}]}},
            "Address matching",
        ),
        (
            {
                "advertiserId": "1234567",
                "addedContactInfoList": {"contactInfos": [{"hashedEmails": ["0" * 64]}]},
                "addedMobileDeviceIdList": {"mobileDeviceIds": [IDFA]},
            },
            "Oneof",
        ),
        ({"advertiserId": "1234567", "addedMobileDeviceIdList": {"mobileDeviceIds": [IDFA]}}, "cannot be used"),
    ],
)
def test_emulation_refuses_invalid_edits(api, body, fragment):
    session, url = api
    error = _rpc(session.post(url(), json=body, timeout=5), 400, "INVALID_ARGUMENT")
    assert fragment in error["message"]


def test_emulation_checks_the_list_limit_and_device_ids(api, monkeypatch):
    from connectors.partners.google_dv360 import sandbox as emulation

    session, url = api
    monkeypatch.setattr(emulation, "MAX_MEMBERS", 2)
    too_many = {"advertiserId": "1", "addedMobileDeviceIdList": {"mobileDeviceIds": [IDFA] * 3}}
    assert (
        "maximum is 2"
        in _rpc(session.post(url(DEVICE_AUDIENCE), json=too_many, timeout=5), 400, "INVALID_ARGUMENT")["message"]
    )
    bad_id = {"advertiserId": "1", "removedMobileDeviceIdList": {"mobileDeviceIds": ["not-a-device-id"]}}
    _rpc(session.post(url(DEVICE_AUDIENCE), json=bad_id, timeout=5), 400, "INVALID_ARGUMENT")


def test_emulation_requires_an_issued_bearer_token(sandbox, api):
    _, url = api
    body = {"advertiserId": "1", "addedContactInfoList": {"contactInfos": [{"hashedEmails": ["0" * 64]}]}}
    missing = _rpc(requests.post(url(), json=body, timeout=5), 401, "UNAUTHENTICATED")
    assert missing["details"][0]["reason"] == "CREDENTIALS_MISSING"
    forged = requests.post(url(), json=body, headers={"Authorization": "Bearer ya29.not-from-the-sandbox"}, timeout=5)
    _rpc(forged, 401, "UNAUTHENTICATED")


def test_emulation_ids_content_type_and_methods(api):
    session, url = api
    body = {"advertiserId": "1", "addedContactInfoList": {"contactInfos": [{"hashedEmails": ["0" * 64]}]}}
    _rpc(session.post(url("seg-1"), json=body, timeout=5), 400, "INVALID_ARGUMENT")
    _rpc(session.post(url(), data="advertiserId=1", timeout=5), 400, "INVALID_ARGUMENT")
    _rpc(session.get(url(), timeout=5), 404, "NOT_FOUND")
    _rpc(session.post(url("4030001"), json=body, timeout=5), 403, "PERMISSION_DENIED")
    _rpc(session.post(url(), json={**body, "advertiserId": "4040001"}, timeout=5), 404, "NOT_FOUND")


def test_emulation_reads_audiences_and_advertisers(sandbox, api):
    session, _ = api
    base = f"{sandbox.url}/displayvideo.googleapis.com/v4"
    audience = session.get(f"{base}/firstPartyAndPartnerAudiences/{DEVICE_AUDIENCE}?advertiserId=1234567", timeout=5)
    assert audience.status_code == 200
    assert audience.json()["audienceType"] == "CUSTOMER_MATCH_DEVICE_ID"
    _rpc(session.get(f"{base}/firstPartyAndPartnerAudiences/{AUDIENCE}", timeout=5), 400, "INVALID_ARGUMENT")
    both = f"{base}/firstPartyAndPartnerAudiences/{AUDIENCE}?advertiserId=1&partnerId=2"
    _rpc(session.get(both, timeout=5), 400, "INVALID_ARGUMENT")
    advertiser = session.get(f"{base}/advertisers/1234567", timeout=5)
    assert advertiser.json()["advertiserId"] == "1234567"
    _rpc(session.get(f"{base}/advertisers/4040001", timeout=5), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("spec", "status", "rpc"),
    [
        ({"fault": "rate_limit", "retry_after": 7}, 429, "RESOURCE_EXHAUSTED"),
        ({"fault": "server_error"}, 503, "UNAVAILABLE"),
        ({"fault": "server_error", "status": 504}, 504, "DEADLINE_EXCEEDED"),
        ({"fault": "partner_error", "code": 404}, 404, "NOT_FOUND"),
        ({"fault": "partner_error", "status": 400, "message": "Precondition check failed."}, 400, "INVALID_ARGUMENT"),
        ({"fault": "gone"}, 404, "NOT_FOUND"),
        ({"fault": "expired_token"}, 401, "UNAUTHENTICATED"),
    ],
)
def test_emulation_faults_in_googles_format(sandbox, api, spec, status, rpc):
    session, url = api
    fault(sandbox, "default", partner="google_dv360", count=1, **spec)
    body = {"advertiserId": "1", "addedContactInfoList": {"contactInfos": [{"hashedEmails": ["0" * 64]}]}}
    response = session.post(url(), json=body, timeout=5)
    _rpc(response, status, rpc)
    if spec.get("retry_after"):
        assert response.headers["Retry-After"] == "7"
    assert session.post(url(), json=body, timeout=5).status_code == 200  # count=1: used up
