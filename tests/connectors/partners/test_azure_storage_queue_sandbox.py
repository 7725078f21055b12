"""Azure Storage Queue through the local partner sandbox: its strict emulation over HTTP (SAS verification, envelope,
size limit, error format), then the real client and dispatcher end to end."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
import requests
from django.utils import timezone

from audiences.models import Audience, AudienceConnection, Profile, ProfileIdentifier
from connectors import services
from connectors.delivery import dispatcher
from connectors.models import Delivery, PartnerConfig
from connectors.partners.azure_sas import make_account_sas, make_queue_sas, parse_xml
from connectors.partners.azure_storage_queue.sandbox import SANDBOX_ACCOUNT_KEY
from tests.connectors.sandbox_helpers import drain, enter, fault, sandbox_stats, stats
from tests.factories import VALID_SETTINGS

PARTNER = "azure_storage_queue"
ACCOUNT = "dapstorage01"
HOST = f"{ACCOUNT}.queue.core.windows.net"
OTHER_KEY = base64.b64encode(b"k" * 64).decode()
FUTURE = "2099-01-01T00:00:00Z"


@pytest.fixture(autouse=True)
def fresh_clients(settings):
    settings.DAP_KICK_ON_COMMIT = False
    settings.DAP_DISPATCH_SHARDS = 1
    dispatcher._clients.clear()
    yield
    dispatcher._clients.clear()


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


# --- helpers ------------------------------------------------------------------------------------------------------
def account_sas(permissions="a", resource_types="o", *, key=SANDBOX_ACCOUNT_KEY, account=ACCOUNT, **kwargs):
    kwargs.setdefault("expiry", FUTURE)
    return make_account_sas(account, key, permissions=permissions, resource_types=resource_types, **kwargs)


def envelope(text: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><QueueMessage><MessageText>{text}</MessageText></QueueMessage>'.encode()
    )


def event_text(n, kind="profile.added") -> str:
    return base64.b64encode(json.dumps({"id": f"dlv_{n}", "type": kind}).encode()).decode()


def put(http, sandbox, body=None, *, sas=None, queue="profile-changes", extra="", headers=None, scope="q"):
    sas = account_sas() if sas is None else sas
    url = f"{sandbox.url}/c/{scope}/{HOST}/{queue}/messages?{sas}{extra}"
    return http.post(url, data=body if body is not None else envelope(event_text(1)), headers=headers or {})


def metadata(http, sandbox, *, sas, queue="profile-changes", scope="q"):
    return http.get(
        f"{sandbox.url}/c/{scope}/{HOST}/{queue}?comp=metadata&{sas}", headers={"x-ms-version": "2023-11-03"}
    )


def error_code(response) -> str:
    root = parse_xml(response.content)
    assert root is not None and root.tag == "Error", response.text
    code = root.findtext("Code")
    assert response.headers["x-ms-error-code"] == code
    assert "RequestId:" in root.findtext("Message")
    return code


# --- the emulation ------------------------------------------------------------------------------------------------
def test_listed_by_the_sandbox(sandbox, http):
    info = http.get(f"{sandbox.url}/_sandbox").json()
    assert PARTNER in info["partners"]
    assert "POST /<account>.queue.core.windows.net/<queue>/messages" in info["partner_endpoints"]


def test_put_message_created_and_counted(sandbox, http):
    response = put(http, sandbox)
    assert response.status_code == 201 and response.headers["Content-Type"] == "application/xml"
    root = parse_xml(response.content)
    assert root.tag == "QueueMessagesList"
    message = root.find("QueueMessage")
    assert {child.tag for child in message} == {
        "MessageId",
        "InsertionTime",
        "ExpirationTime",
        "PopReceipt",
        "TimeNextVisible",
    }
    put(http, sandbox, envelope(event_text(2, "profile.removed")))
    put(http, sandbox, envelope("plain text, not base64 JSON"))
    seen = sandbox_stats(sandbox, "q", PARTNER)
    assert seen["messages"] == 3 and seen["rows_added"] == 1 and seen["rows_removed"] == 1
    assert seen["events"] == {"profile.added": 1, "profile.removed": 1, "(undecoded)": 1}
    assert seen["queues"] == {f"{ACCOUNT}/profile-changes": 3}


def test_queue_service_sas_is_verified_too(sandbox, http):
    sas = make_queue_sas(ACCOUNT, "profile-changes", SANDBOX_ACCOUNT_KEY, permissions="a", expiry=FUTURE)
    assert put(http, sandbox, sas=sas).status_code == 201
    other_queue = make_queue_sas(ACCOUNT, "other-queue", SANDBOX_ACCOUNT_KEY, permissions="a", expiry=FUTURE)
    response = put(http, sandbox, sas=other_queue)
    assert response.status_code == 403 and error_code(response) == "AuthenticationFailed"


def _past(hours):
    return (datetime.now(UTC) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("sas", "status", "code"),
    [
        ("", 401, "NoAuthenticationInformation"),
        (lambda: account_sas(key=OTHER_KEY), 403, "AuthenticationFailed"),
        (lambda: account_sas(account="otheraccount"), 403, "AuthenticationFailed"),
        (lambda: account_sas(expiry=_past(1)), 403, "AuthenticationFailed"),
        (lambda: account_sas(start="2098-01-01T00:00:00Z"), 403, "AuthenticationFailed"),
        (lambda: account_sas(version="2013-08-15"), 403, "AuthenticationFailed"),
        (lambda: account_sas().replace("sp=a", "sp=r"), 403, "AuthenticationFailed"),  # tampered: signature breaks
        (lambda: account_sas("r"), 403, "AuthorizationPermissionMismatch"),
        (lambda: account_sas("a", "c"), 403, "AuthorizationResourceTypeMismatch"),
        (lambda: account_sas(services="b"), 403, "AuthorizationServiceMismatch"),
        (lambda: account_sas(ip="10.1.1.1-10.1.1.9"), 403, "AuthorizationSourceIPMismatch"),
        (lambda: account_sas(protocol="http"), 403, "AuthorizationProtocolMismatch"),
    ],
    ids=[
        "none",
        "other-key",
        "other-account",
        "expired",
        "not-yet-valid",
        "old-version",
        "tampered",
        "no-add",
        "no-object",
        "no-queue-service",
        "ip",
        "protocol",
    ],
)
def test_sas_is_checked(sandbox, http, sas, status, code):
    response = put(http, sandbox, sas=sas() if callable(sas) else sas)
    assert response.status_code == status and error_code(response) == code
    if code == "AuthenticationFailed":
        assert parse_xml(response.content).findtext("AuthenticationErrorDetail")


def test_signed_ip_range_and_protocols_that_include_the_caller_pass(sandbox, http):
    sas = account_sas(ip="127.0.0.1-127.0.0.9", protocol="https,http", start=_past(2))
    assert put(http, sandbox, sas=sas).status_code == 201


def test_unknown_queue(sandbox, http):
    response = put(http, sandbox, queue="missing-queue")
    assert response.status_code == 404 and error_code(response) == "QueueNotFound"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "InvalidXmlDocument"),
        (b"<QueueMessage><MessageText>abc</MessageText>", "InvalidXmlDocument"),
        (b"<Message><MessageText>abc</MessageText></Message>", "InvalidXmlDocument"),
        (b"<QueueMessage><Text>abc</Text></QueueMessage>", "InvalidXmlDocument"),
        (envelope("x" * (64 * 1024 + 1)), "MessageTooLarge"),
    ],
)
def test_envelope_and_size_are_checked(sandbox, http, body, code):
    response = put(http, sandbox, body)
    assert response.status_code == 400 and error_code(response) == code


def test_message_of_exactly_64_kib_is_accepted(sandbox, http):
    assert put(http, sandbox, envelope("x" * 64 * 1024)).status_code == 201


def test_query_parameters_and_version_header_are_checked(sandbox, http):
    assert put(http, sandbox, extra="&visibilitytimeout=30&messagettl=-1").status_code == 201
    response = put(http, sandbox, extra="&visibilitytimeout=999999999")
    assert response.status_code == 400 and error_code(response) == "OutOfRangeQueryParameterValue"
    response = put(http, sandbox, extra="&messagettl=0")
    assert response.status_code == 400 and error_code(response) == "OutOfRangeQueryParameterValue"
    response = put(http, sandbox, headers={"x-ms-version": "latest"})
    assert response.status_code == 400 and error_code(response) == "InvalidHeaderValue"


def test_metadata_needs_read_and_the_container_type(sandbox, http):
    put(http, sandbox)
    put(http, sandbox)
    ok = metadata(http, sandbox, sas=account_sas("ra", "co"))
    assert ok.status_code == 200 and ok.headers["x-ms-approximate-messages-count"] == "2"
    refused = metadata(http, sandbox, sas=account_sas("a", "o"))
    assert refused.status_code == 403 and error_code(refused) == "AuthorizationResourceTypeMismatch"
    refused = metadata(http, sandbox, sas=account_sas("a", "co"))
    assert refused.status_code == 403 and error_code(refused) == "AuthorizationPermissionMismatch"


@pytest.mark.parametrize(
    ("spec", "status", "code"),
    [
        ({"fault": "expired_token"}, 403, "AuthenticationFailed"),
        ({"fault": "rate_limit", "retry_after": 9}, 503, "ServerBusy"),
        ({"fault": "server_error"}, 500, "InternalError"),
        ({"fault": "server_error", "status": 503}, 503, "ServerBusy"),
        ({"fault": "partner_error"}, 400, "MessageTooLarge"),
        ({"fault": "partner_error", "status": 409}, 409, "QueueBeingDeleted"),
        ({"fault": "gone"}, 404, "QueueNotFound"),
    ],
)
def test_faults_answer_in_the_partner_format(sandbox, http, spec, status, code):
    fault(sandbox, "q", partner=PARTNER, count=1, **spec)
    response = put(http, sandbox)
    assert response.status_code == status and error_code(response) == code
    if spec["fault"] == "rate_limit":
        assert response.headers["Retry-After"] == "9"
    assert put(http, sandbox).status_code == 201


# --- end to end ---------------------------------------------------------------------------------------------------
def connect(sandbox, scope, variables=(), **settings_override):
    connector = services.connector_create(
        partner_key=PARTNER,
        name=f"Storage queue {scope}",
        settings={**VALID_SETTINGS[PARTNER], **settings_override},
        base_url_override=f"{sandbox.url}/c/{scope}",
    )
    config = connector.configs.get()
    audience = Audience.objects.create(name=f"audience {scope}")
    AudienceConnection.objects.create(
        audience=audience, partner_config=config, partner_audience_id="crm-sync", profile_variables=list(variables)
    )
    return config, audience


def profiles(n, *, slot="partner_number", prefix="p", attributes=None):
    created = Profile.objects.bulk_create(
        [Profile(external_id=f"{prefix}{i}", consent_ads=True, attributes=attributes or {}) for i in range(n)]
    )
    ProfileIdentifier.objects.bulk_create(
        [ProfileIdentifier(profile=p, slot=slot, value=f"PN-{prefix}-{p.pk}") for p in created]
    )
    return created


@pytest.mark.django_db
def test_add_remove_and_skips_reach_the_queue_and_statistics(sandbox):
    config, audience = connect(sandbox, "e2e")
    members = profiles(25)
    without = profiles(3, slot="customer_id", prefix="c")
    enter(audience, members + without)
    drain(config)
    enter(audience, members[:5], "remove")
    drain(config)

    seen = sandbox_stats(sandbox, "e2e", PARTNER)
    assert (seen["rows_added"], seen["rows_removed"], seen["unique_ids"], seen["errors"]) == (25, 5, 30, 0)
    assert seen["queues"] == {f"{ACCOUNT}/profile-changes": 30}
    assert stats(config) == {("added", ""): 25, ("removed", ""): 5, ("skipped_no_identifier", ""): 3}


@pytest.mark.django_db
def test_profile_variables_travel_when_enabled(sandbox):
    config, audience = connect(sandbox, "vars", variables=["first_name"], include_profile_variables=True)
    enter(audience, profiles(4, attributes={"first_name": "Zoë"}))
    drain(config)
    assert sandbox_stats(sandbox, "vars", PARTNER)["with_variables"] == 4


@pytest.mark.django_db
def test_add_only_token_delivers(sandbox):
    config, audience = connect(sandbox, "addonly", sas_token=account_sas("a", "o", protocol="https"))
    enter(audience, profiles(3))
    drain(config)
    assert stats(config) == {("added", ""): 3}


@pytest.mark.django_db
def test_expired_token_pauses_until_a_new_one_is_saved(sandbox):
    config, audience = connect(sandbox, "expired")
    fault(sandbox, "expired", fault="expired_token")
    enter(audience, profiles(3, prefix="a"))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "AuthenticationFailed"): 3}
    enter(audience, profiles(2, prefix="b"))
    assert drain(config).paused == "credentials_invalid"
    requests.delete(f"{sandbox.url}/_sandbox/faults?scope=expired", timeout=5)
    services.partner_config_update(partner_config=config, settings={"sas_token": account_sas("ra", "co")})
    drain(config)
    assert stats(config)[("added", "")] == 2


@pytest.mark.django_db
def test_token_signed_with_another_key_pauses(sandbox):
    config, audience = connect(sandbox, "forged", sas_token=account_sas(key=OTHER_KEY))
    enter(audience, profiles(2))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "AuthenticationFailed"): 2}


@pytest.mark.django_db
def test_server_busy_is_retried_after_retry_after(sandbox):
    config, audience = connect(sandbox, "busy")
    fault(sandbox, "busy", fault="rate_limit", retry_after=60, count=2)
    enter(audience, profiles(2))
    before = timezone.now()
    drain(config)
    rows = Delivery.objects.filter(partner_config=config)
    assert {(r.status, r.partner_error_code, r.attempts) for r in rows} == {("pending", "ServerBusy", 1)}
    assert all(r.next_attempt_at >= before + timedelta(seconds=59) for r in rows)
    rows.update(next_attempt_at=timezone.now())
    drain(config)
    assert stats(config) == {("added", ""): 2}


@pytest.mark.django_db
def test_unknown_queue_is_a_partner_error(sandbox):
    config, audience = connect(sandbox, "noqueue", queue_name="missing-queue")
    enter(audience, profiles(2))
    drain(config)
    assert stats(config) == {("partner_error", "QueueNotFound"): 2}


@pytest.mark.django_db
def test_test_connection_against_the_sandbox(sandbox):
    config, _ = connect(sandbox, "tc")
    result = services.partner_config_test_connection(partner_config=config)
    assert result.ok and result.message == (
        f"Connected to queue 'profile-changes' of storage account {ACCOUNT}, about 0 messages waiting."
    )

    add_only, _ = connect(sandbox, "tc-add", sas_token=account_sas("a", "o"))
    result = services.partner_config_test_connection(partner_config=add_only)
    assert result.ok and "could not be confirmed" in result.message

    forged_sas = account_sas("ra", "co", key=OTHER_KEY)
    forged, _ = connect(sandbox, "tc-bad", sas_token=forged_sas)
    result = services.partner_config_test_connection(partner_config=forged)
    assert not result.ok and result.message.startswith("Azure refused the SAS token (AuthenticationFailed")
    signature = forged_sas.rsplit("sig=", 1)[1]
    assert signature not in result.message and quote(signature) not in result.message

    missing, _ = connect(sandbox, "tc-missing", queue_name="missing-queue")
    result = services.partner_config_test_connection(partner_config=missing)
    assert not result.ok and result.message == f"Queue 'missing-queue' does not exist in storage account {ACCOUNT}."
