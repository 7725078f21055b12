"""Azure Event Hubs through the local partner sandbox: its strict emulation over HTTP, then the real client and
dispatcher end to end (outbox -> batches -> sandbox statistics and DailyStat rows, faults, pause, test connection)."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from audiences.models import Audience, AudienceConnection, Profile, ProfileIdentifier
from connectors import services
from connectors.delivery import dispatcher
from connectors.models import Delivery, PartnerConfig
from connectors.partners.azure_event_hubs.sandbox import SANDBOX_SAS_KEY
from connectors.partners.azure_sas import service_bus_token
from tests.connectors.sandbox_helpers import drain, enter, fault, sandbox_stats, stats
from tests.factories import VALID_SETTINGS

PARTNER = "azure_event_hubs"
HOST = "dap-events.servicebus.windows.net"
RESOURCE = f"https://{HOST}/profile-changes"
OTHER_KEY = base64.b64encode(b"another-key-that-is-32-bytes-xx!").decode()
BATCH = "application/vnd.microsoft.servicebus.json"


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
def token(*, resource=RESOURCE, policy="dap-send", key=SANDBOX_SAS_KEY, ttl=3600):
    return service_bus_token(resource, policy, key, int(time.time()) + ttl)


def send_url(sandbox, hub="profile-changes", host=HOST, scope="eh"):
    return f"{sandbox.url}/c/{scope}/{host}/{hub}/messages?api-version=2014-01"


def event(n, kind="profile.added"):
    return {"Body": json.dumps({"id": f"dlv_{n}", "type": kind}), "UserProperties": {"action": "add", "n": n}}


def post(http, sandbox, batch, *, auth=None, content_type=BATCH, **url):
    body = batch if isinstance(batch, bytes) else json.dumps(batch).encode()
    headers = {"Content-Type": content_type, "Authorization": auth if auth is not None else token()}
    return http.post(send_url(sandbox, **url), data=body, headers=headers)


def detail(response) -> str:
    assert response.headers["Content-Type"].startswith("application/xml")
    text = response.text
    assert text.startswith(f"<Error><Code>{response.status_code}</Code><Detail>") and "TrackingId:" in text
    return text


# --- the emulation ------------------------------------------------------------------------------------------------
def test_listed_by_the_sandbox(sandbox, http):
    info = http.get(f"{sandbox.url}/_sandbox").json()
    assert PARTNER in info["partners"]
    assert "POST /<namespace>.servicebus.windows.net/<hub>/messages" in info["partner_endpoints"]


def test_valid_batch_is_created_and_counted(sandbox, http):
    response = post(http, sandbox, [event(1), event(2), event(2), event(3, "profile.removed")])
    assert response.status_code == 201 and response.content == b""
    seen = sandbox_stats(sandbox, "eh", PARTNER)
    assert seen["batches"] == 1 and seen["events"] == {"profile.added": 3, "profile.removed": 1}
    assert (seen["rows_added"], seen["rows_removed"], seen["unique_ids"]) == (3, 1, 3)


def test_single_event_send_without_batch_content_type(sandbox, http):
    response = post(http, sandbox, b'{"type":"profile.added","id":"x"}', content_type="application/atom+xml")
    assert response.status_code == 201
    assert sandbox_stats(sandbox, "eh", PARTNER)["events"] == {"profile.added": 1}


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        ("", "MissingToken"),
        ("Bearer abc", "MalformedToken"),
        ("SharedAccessSignature sr=x&sig=y&se=1", "MalformedToken"),
        (None, "InvalidSignature"),  # signed with another key
        ("expired", "ExpiredToken"),
        ("other-hub", "InvalidAudience"),
    ],
)
def test_token_is_checked(sandbox, http, auth, reason):
    if auth is None:
        auth = token(key=OTHER_KEY)
    elif auth == "expired":
        auth = token(ttl=-10)
    elif auth == "other-hub":
        auth = token(resource=f"https://{HOST}/another-hub")
    response = post(http, sandbox, [event(1)], auth=auth)
    assert response.status_code == 401
    assert f"<Detail>{reason}:" in detail(response)
    assert sandbox_stats(sandbox, "eh", PARTNER)["errors"] == 1


def test_namespace_wide_token_covers_every_hub(sandbox, http):
    assert post(http, sandbox, [event(1)], auth=token(resource=f"https://{HOST}")).status_code == 201
    assert post(http, sandbox, [event(1)], auth=token(resource=f"sb://{HOST}/")).status_code == 201


def test_listen_only_policy_may_not_send(sandbox, http):
    response = post(http, sandbox, [event(1)], auth=token(policy="dap-listen"))
    assert response.status_code == 401
    assert "'Send' claim(s) are required" in detail(response)


def test_unknown_hub(sandbox, http):
    auth = token(resource=f"https://{HOST}/missing-hub")
    response = post(http, sandbox, [event(1)], auth=auth, hub="missing-hub")
    assert response.status_code == 404
    assert "The messaging entity 'sb://dap-events.servicebus.windows.net/missing-hub' could not be found" in (
        detail(response)
    )


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (b"[{", "not valid JSON"),
        ([], "non-empty JSON array"),
        ({"Body": "x"}, "non-empty JSON array"),
        (["x"], "string Body"),
        ([{"Body": {"a": 1}}], "string Body"),
        ([{"Body": "x", "UserProperties": {"nested": {"a": 1}}}], "must be a string, number or boolean"),
        ([{"Body": "x", "UserProperties": ["a"]}], "UserProperties must be an object"),
    ],
)
def test_batch_schema_is_checked(sandbox, http, batch, message):
    response = post(http, sandbox, batch)
    assert response.status_code == 400 and message in detail(response)


@pytest.mark.parametrize(("namespace", "limit"), [("dap-events-basic", 256 * 1024), ("dap-events", 1024 * 1024)])
def test_size_limit_by_tier(sandbox, http, namespace, limit):
    host = f"{namespace}.servicebus.windows.net"
    auth = token(resource=f"https://{host}/profile-changes")

    def batch_of(size):
        padding = size - len(json.dumps([{"Body": ""}]).encode())
        return json.dumps([{"Body": "x" * padding}]).encode()

    assert post(http, sandbox, batch_of(limit), auth=auth, host=host).status_code == 201
    response = post(http, sandbox, batch_of(limit + 1), auth=auth, host=host)
    assert response.status_code == 413 and f"exceeds the limit ({limit} bytes)" in detail(response)


def test_api_version_is_checked(sandbox, http):
    url = f"{sandbox.url}/{HOST}/profile-changes/messages?api-version=latest"
    response = http.post(url, json=[event(1)], headers={"Content-Type": BATCH, "Authorization": token()})
    assert response.status_code == 400 and "api-version" in response.text


def test_description_needs_manage(sandbox, http):
    url = f"{sandbox.url}/{HOST}/profile-changes?api-version=2014-01"
    refused = http.get(url, headers={"Authorization": token()})
    assert refused.status_code == 401 and "'Manage,EntityRead' claim(s) are required" in detail(refused)
    ok = http.get(url, headers={"Authorization": token(policy="RootManageSharedAccessKey")})
    assert ok.status_code == 200 and ok.headers["Content-Type"].startswith("application/atom+xml")
    assert "<EventHubDescription" in ok.text and "<PartitionCount>4</PartitionCount>" in ok.text


@pytest.mark.parametrize(
    ("spec", "status", "text"),
    [
        ({"fault": "expired_token"}, 401, "ExpiredToken: The token is expired."),
        ({"fault": "rate_limit", "retry_after": 7}, 503, "Error code : 50002"),
        ({"fault": "server_error"}, 500, "InternalServerError"),
        ({"fault": "server_error", "status": 503}, 503, "ServerBusy"),
        (
            {"fault": "partner_error", "code": 40300},
            403,
            "QuotaExceeded: The quota of the namespace has been exceeded.",
        ),
        ({"fault": "gone"}, 404, "could not be found"),
    ],
)
def test_faults_answer_in_the_partner_format(sandbox, http, spec, status, text):
    fault(sandbox, "eh", partner=PARTNER, count=1, **spec)
    response = post(http, sandbox, [event(1)])
    assert response.status_code == status and text in detail(response)
    if spec["fault"] == "rate_limit":
        assert response.headers["Retry-After"] == "7"
    assert post(http, sandbox, [event(1)]).status_code == 201


# --- end to end ---------------------------------------------------------------------------------------------------
def connect(sandbox, scope, partner_audience_id="loyalty-gold", variables=(), **settings_override):
    connector = services.connector_create(
        partner_key=PARTNER,
        name=f"Event Hubs {scope}",
        settings={**VALID_SETTINGS[PARTNER], **settings_override},
        base_url_override=f"{sandbox.url}/c/{scope}",
    )
    config = connector.configs.get()
    audience = Audience.objects.create(name=f"audience {scope}")
    AudienceConnection.objects.create(
        audience=audience,
        partner_config=config,
        partner_audience_id=partner_audience_id,
        profile_variables=list(variables),
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
def test_add_remove_and_skips_reach_the_event_hub_and_statistics(sandbox):
    config, audience = connect(sandbox, "e2e")
    members = profiles(30)
    without = profiles(4, slot="email", prefix="e")
    enter(audience, members + without)
    drain(config)
    enter(audience, members[:10], "remove")
    drain(config)

    seen = sandbox_stats(sandbox, "e2e", PARTNER)
    assert (seen["rows_added"], seen["rows_removed"], seen["unique_ids"], seen["errors"]) == (30, 10, 40, 0)
    assert seen["batches"] == 2 and seen["with_variables"] == 0
    assert stats(config) == {("added", ""): 30, ("removed", ""): 10, ("skipped_no_identifier", ""): 4}


@pytest.mark.django_db
def test_profile_variables_travel_when_enabled(sandbox):
    config, audience = connect(sandbox, "vars", variables=["first_name"], include_profile_variables=True)
    enter(audience, profiles(3, attributes={"first_name": "Zoë", "secret_score": 9}))
    drain(config)
    assert sandbox_stats(sandbox, "vars", PARTNER)["with_variables"] == 3
    assert stats(config) == {("added", ""): 3}


@pytest.mark.django_db
def test_basic_tier_batches_stay_under_256_kb(sandbox):
    config, audience = connect(
        sandbox,
        "basic",
        variables=["notes"],
        include_profile_variables=True,
        namespace="dap-events-basic",
        tier="basic",
    )
    enter(audience, profiles(120, attributes={"notes": "n" * 4000}))
    drain(config)
    seen = sandbox_stats(sandbox, "basic", PARTNER)
    assert seen["rows_added"] == 120 and seen["errors"] == 0
    assert seen["batches"] >= 2 and seen["largest_batch_bytes"] <= 256 * 1024
    assert stats(config) == {("added", ""): 120}


@pytest.mark.django_db
def test_standard_tier_set_on_a_basic_namespace_recovers_by_splitting(sandbox):
    config, audience = connect(
        sandbox, "wrongtier", variables=["notes"], include_profile_variables=True, namespace="dap-events-basic"
    )
    enter(audience, profiles(120, attributes={"notes": "n" * 4000}))
    drain(config)
    seen = sandbox_stats(sandbox, "wrongtier", PARTNER)
    assert seen["rows_added"] == 120 and seen["errors"] >= 1  # the 413s, each followed by two halves
    assert stats(config) == {("added", ""): 120}


@pytest.mark.django_db
def test_wrong_key_pauses_until_the_key_is_fixed(sandbox):
    config, audience = connect(sandbox, "badkey", sas_key=OTHER_KEY)
    enter(audience, profiles(3, prefix="a"))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "401/InvalidSignature"): 3}
    enter(audience, profiles(2, prefix="b"))
    assert drain(config).paused == "credentials_invalid"
    services.partner_config_update(partner_config=config, settings={"sas_key": SANDBOX_SAS_KEY})
    drain(config)
    assert stats(config)[("added", "")] == 2
    assert sandbox_stats(sandbox, "badkey", PARTNER)["rows_added"] == 2


@pytest.mark.django_db
def test_expired_token_is_renewed_without_pausing(sandbox):
    config, audience = connect(sandbox, "expired")
    fault(sandbox, "expired", fault="expired_token", count=1)
    enter(audience, profiles(5))
    drain(config)
    config.refresh_from_db()
    assert config.health != PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("added", ""): 5}
    assert sandbox_stats(sandbox, "expired", PARTNER)["requests"] == 2  # refused once, re-signed and resent at once


@pytest.mark.django_db
def test_persistently_expired_token_is_retried_later(sandbox):
    config, audience = connect(sandbox, "clock")
    fault(sandbox, "clock", fault="expired_token")
    enter(audience, profiles(2))
    report = drain(config)
    assert not report.paused
    rows = Delivery.objects.filter(partner_config=config)
    assert {(r.status, r.partner_error_code) for r in rows} == {("pending", "401/ExpiredToken")}


@pytest.mark.django_db
def test_server_busy_is_retried_after_retry_after(sandbox):
    config, audience = connect(sandbox, "busy")
    fault(sandbox, "busy", fault="rate_limit", retry_after=120, count=1)
    enter(audience, profiles(3))
    before = timezone.now()
    drain(config)
    rows = Delivery.objects.filter(partner_config=config)
    assert {(r.status, r.partner_error_code, r.attempts) for r in rows} == {("pending", "503/50002", 1)}
    assert all(r.next_attempt_at >= before + timedelta(seconds=119) for r in rows)
    rows.update(next_attempt_at=timezone.now())
    drain(config)
    assert stats(config) == {("added", ""): 3}


@pytest.mark.django_db
def test_quota_exceeded_is_a_partner_error_in_the_statistics(sandbox):
    config, audience = connect(sandbox, "quota")
    fault(sandbox, "quota", fault="partner_error", count=1)
    enter(audience, profiles(4))
    drain(config)
    assert stats(config) == {("partner_error", "403/QuotaExceeded"): 4}


@pytest.mark.django_db
def test_test_connection_against_the_sandbox(sandbox):
    config, _ = connect(sandbox, "tc", sas_key_name="RootManageSharedAccessKey")
    result = services.partner_config_test_connection(partner_config=config)
    assert result.ok and result.message == "Connected to event hub 'profile-changes' (4 partitions, status Active)."

    send_only, _ = connect(sandbox, "tc-send")
    result = services.partner_config_test_connection(partner_config=send_only)
    assert result.ok and "could not be confirmed" in result.message

    bad, _ = connect(sandbox, "tc-bad", sas_key=OTHER_KEY)
    result = services.partner_config_test_connection(partner_config=bad)
    assert not result.ok and "InvalidSignature" in result.message and OTHER_KEY not in result.message

    missing, _ = connect(sandbox, "tc-missing", event_hub="missing-hub", sas_key_name="RootManageSharedAccessKey")
    result = services.partner_config_test_connection(partner_config=missing)
    assert not result.ok and result.message == "Event hub 'missing-hub' does not exist in namespace dap-events."
