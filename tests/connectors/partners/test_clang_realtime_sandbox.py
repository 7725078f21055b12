"""Clang real-time end to end through the local sandbox (real client, real HTTP on loopback, real dispatcher), and
the strictness of the sandbox's Clang SOAP emulation (shared by both Clang connectors, statistics under "clang")."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from audiences.models import Audience, AudienceConnection, Profile, ProfileIdentifier
from connectors import services
from connectors.delivery import dispatcher
from connectors.models import Delivery, PartnerConfig
from connectors.partners.clang_soap import (
    CONTENT_TYPE,
    SOAP_ACTION,
    entries,
    parse_answer,
    request_envelope,
    struct,
)
from tests.connectors.sandbox_helpers import drain, enter, stats
from tests.factories import VALID_SETTINGS

UUID = VALID_SETTINGS["clang_realtime"]["uuid"]
HOST_PATH = "login.myclang.com/app/api/soap/public/index.php"
NS = "https://login.myclang.com/app/api/soap/public/index.php"


@pytest.fixture(autouse=True)
def fresh_clients(settings):
    settings.DAP_KICK_ON_COMMIT = False
    settings.DAP_DISPATCH_SHARDS = 1
    dispatcher._clients.clear()
    yield
    dispatcher._clients.clear()


def clang_stats(sandbox, scope):
    return requests.get(f"{sandbox.url}/_sandbox/stats?scope={scope}", timeout=5).json()[scope]["clang"]


def members(sandbox, scope):
    return requests.get(f"{sandbox.url}/_sandbox/profiles?scope={scope}", timeout=5).json()["clang"]["groups"]


def fault(sandbox, scope, **body):
    response = requests.post(
        f"{sandbox.url}/_sandbox/faults", json={"scope": scope, "partner": "clang", **body}, timeout=5
    )
    assert response.status_code == 201, response.text


def connect(sandbox, scope, partner_audience_id="", variables=(), **settings_override):
    connector = services.connector_create(
        partner_key="clang_realtime",
        name=f"clang {scope}",
        settings={**VALID_SETTINGS["clang_realtime"], **settings_override},
        base_url_override=f"{sandbox.url}/c/{scope}",
    )
    config = connector.configs.get()
    audience = Audience.objects.create(name=f"audience {scope}")
    AudienceConnection.objects.create(
        audience=audience, partner_config=config, partner_audience_id=partner_audience_id,
        profile_variables=list(variables),
    )  # fmt: skip
    return config, audience


def profiles(n, *, slot="customer_id", prefix="crm", attributes=None):
    made = Profile.objects.bulk_create(
        [Profile(external_id=f"{prefix}{i}", attributes=attributes or {}) for i in range(n)]
    )
    values = [f"{prefix}-{i}" if slot == "customer_id" else f"{prefix}.{i}@Example.com" for i in range(n)]
    ProfileIdentifier.objects.bulk_create(
        [ProfileIdentifier(profile=p, slot=slot, value=v) for p, v in zip(made, values, strict=True)]
    )
    return made


def soap(sandbox, scope, operation, params, *, content_type=CONTENT_TYPE, action=SOAP_ACTION, body=None):
    headers = {"Content-Type": content_type}
    if action is not None:
        headers["SOAPAction"] = action
    payload = body if body is not None else request_envelope(NS, operation, [("uuid", UUID), *params])
    return requests.post(f"{sandbox.url}/c/{scope}/{HOST_PATH}", data=payload, headers=headers, timeout=5)


@pytest.mark.django_db
def test_add_update_remove_reach_clang_and_statistics(sandbox):
    config, audience = connect(sandbox, "rt", variables=["first_name", "loyalty"])
    people = profiles(12, attributes={"first_name": "Mary <&>", "loyalty": 7})
    no_identifier = profiles(3, slot="email", prefix="x")
    enter(audience, people + no_identifier)
    drain(config)
    clang = clang_stats(sandbox, "rt")
    assert (clang["customers_created"], clang["members_added"], clang["errors"]) == (12, 12, 0)
    assert members(sandbox, "rt") == {"4242": sorted(f"crm-{i}" for i in range(12))}
    assert stats(config) == {("added", ""): 12, ("skipped_no_identifier", ""): 3}

    # The variables reached the customer: a field by name, the rest as options (escaped on the way, intact here).
    answer = parse_answer(soap(sandbox, "rt", "customer_getByExternalId", [("externalId", "crm-3")]).content)
    customer = entries(answer.msg)[0]
    assert struct(customer)["firstname"] == "Mary <&>"
    assert {struct(o)["name"]: struct(o)["value"] for o in entries(customer.find("options"))} == {"loyalty": "7"}

    enter(audience, people[:4], "update")  # modified profiles: updated, still members (107 = done)
    drain(config)
    clang = clang_stats(sandbox, "rt")
    assert (clang["customers_updated"], clang["faults"]) == (4, {"107": 4})

    enter(audience, people[:5], "remove")
    drain(config)
    assert clang_stats(sandbox, "rt")["members_removed"] == 5
    assert members(sandbox, "rt") == {"4242": sorted(f"crm-{i}" for i in range(5, 12))}
    assert stats(config) == {("added", ""): 16, ("removed", ""): 5, ("skipped_no_identifier", ""): 3}


@pytest.mark.django_db
def test_email_slot_and_the_group_of_the_audience_connection(sandbox):
    config, audience = connect(sandbox, "rt-mail", partner_audience_id="777", identifier_slot="email")
    enter(audience, profiles(4, slot="email", prefix="ann"))
    drain(config)
    assert members(sandbox, "rt-mail") == {"777": [f"ann.{i}@example.com" for i in range(4)]}
    assert stats(config) == {("added", ""): 4}


@pytest.mark.django_db
def test_expired_token_pauses_until_the_uuid_changes(sandbox):
    config, audience = connect(sandbox, "rt-token")
    fault(sandbox, "rt-token", fault="expired_token")
    enter(audience, profiles(3, prefix="a"))
    assert drain(config).paused == "credentials_invalid"
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    # Call sets already running fail on the refusal; those not started yet wait, unsent ("not_sent", pending).
    refused = sum(n for (outcome, _code), n in stats(config).items() if outcome == "invalid_credentials")
    waiting = Delivery.objects.filter(partner_config=config, status="pending")
    assert refused >= 1 and refused + waiting.count() == 3
    assert {r.partner_error_code for r in waiting} <= {"not_sent"}
    requests.delete(f"{sandbox.url}/_sandbox/faults?scope=rt-token", timeout=5)
    services.partner_config_update(partner_config=config, settings={"uuid": "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"})
    waiting.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    enter(audience, profiles(2, prefix="b"))
    drain(config)
    assert stats(config)[("added", "")] == 2 + 3 - refused


@pytest.mark.django_db
def test_partner_error_codes_reach_statistics_and_server_errors_are_retried(sandbox):
    config, audience = connect(sandbox, "rt-err")
    fault(sandbox, "rt-err", fault="partner_error", code=301, message="Group not found")
    enter(audience, profiles(3, prefix="p"))
    drain(config)
    assert stats(config) == {("partner_error", "301"): 3}

    requests.delete(f"{sandbox.url}/_sandbox/faults?scope=rt-err", timeout=5)
    fault(sandbox, "rt-err", fault="server_error")  # SOAP-ENV:Server fault, HTTP 500: temporary
    later = profiles(2, prefix="q")
    enter(audience, later)
    drain(config)
    rows = Delivery.objects.filter(partner_config=config, status="pending")
    assert {(r.partner_error_code, r.attempts) for r in rows} == {("Server", 1)}
    requests.delete(f"{sandbox.url}/_sandbox/faults?scope=rt-err", timeout=5)
    rows.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    drain(config)
    assert stats(config)[("added", "")] == 2


@pytest.mark.django_db
def test_connection_test_against_the_sandbox(sandbox):
    config, _ = connect(sandbox, "rt-test")
    result = services.partner_config_test_connection(partner_config=config)
    assert result.ok and result.message == "Connected to Clang: group 4242 \u201cSandbox group 4242\u201d, 0 customers."

    services.partner_config_update(partner_config=config, settings={"uuid": "00000000-1111-2222-3333-444444444444"})
    config.refresh_from_db()
    result = services.partner_config_test_connection(partner_config=config)
    assert not result.ok and result.message.startswith("Clang refused the API token (uuid): Invalid uuid.")

    services.partner_config_update(partner_config=config, settings={"uuid": UUID, "group_id": 5_000_000})
    config.refresh_from_db()
    result = services.partner_config_test_connection(partner_config=config)
    assert not result.ok and "does not know group 5000000" in result.message


# --- the emulation's strictness -------------------------------------------------------------------------------------
def fault_of(response):
    assert response.status_code == 500 and response.headers["Content-Type"] == "text/xml; charset=utf-8"
    answer = parse_answer(response.content)
    return answer.fault.code, answer.fault.string


def test_sandbox_answers_a_well_formed_call(sandbox):
    response = soap(sandbox, "strict", "group_getById", [("groupId", 12)])
    assert response.status_code == 200
    assert struct(parse_answer(response.content).msg)["name"] == "Sandbox group 12"


@pytest.mark.parametrize(
    ("kwargs", "code", "text"),
    [
        ({"content_type": "application/json"}, "SOAP-ENV:Client", "Content-Type must be text/xml"),
        ({"content_type": "text/xml"}, "SOAP-ENV:Client", "charset=utf-8"),
        ({"content_type": "application/soap+xml; charset=utf-8"}, "SOAP-ENV:VersionMismatch", "Wrong Version"),
        ({"action": None}, "SOAP-ENV:Client", "SOAPAction header is required"),
        ({"action": "group_getById"}, "SOAP-ENV:Client", "quoted string"),
        ({"body": b"<x>not soap</x>"}, "SOAP-ENV:Client", "Bad Request"),
        ({"body": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x/>'}, "SOAP-ENV:Client", "Bad Request"),
    ],
)
def test_sandbox_refuses_malformed_requests(sandbox, kwargs, code, text):
    got_code, got_text = fault_of(soap(sandbox, "strict", "group_getById", [("groupId", 12)], **kwargs))
    assert got_code == code and text in got_text


def test_sandbox_checks_operations_parameters_and_uuid(sandbox):
    assert fault_of(soap(sandbox, "strict", "customer_upsertAll", [])) == (
        "SOAP-ENV:Server",
        "Procedure 'customer_upsertAll' not present",
    )
    code, text = fault_of(soap(sandbox, "strict", "group_addMember", [("customer", {"id": 1}), ("group", {"id": 1})]))
    assert code == "SOAP-ENV:Client" and "(uuid, group, customer) in this order" in text
    assert fault_of(soap(sandbox, "strict", "group_getById", [("groupId", "x1")]))[0] == "SOAP-ENV:Client"
    bad_uuid = request_envelope(NS, "group_getById", [("uuid", "not-a-uuid"), ("groupId", 1)])
    assert fault_of(soap(sandbox, "strict", "", [], body=bad_uuid)) == ("100", "Invalid uuid")
    unqualified = request_envelope(NS, "group_getById", [("uuid", UUID), ("groupId", 1)]).replace(b"ns1:", b"")
    assert "namespace-qualified" in fault_of(soap(sandbox, "strict", "", [], body=unqualified))[1]
    code, text = fault_of(soap(sandbox, "strict", "customer_insert", [("customer", {"emailAddress": "nope"})]))
    assert (code, text) == ("302", "Invalid email address")
    code, _ = fault_of(soap(sandbox, "strict", "group_addMember", [("group", {"id": 1}), ("customer", {"id": 99})]))
    assert code == "213"


def test_sandbox_reset_forgets_customers(sandbox):
    soap(sandbox, "reset-me", "customer_insert", [("customer", {"externalId": "crm-1"})])
    found = parse_answer(soap(sandbox, "reset-me", "customer_getByExternalId", [("externalId", "crm-1")]).content)
    assert len(entries(found.msg)) == 1
    requests.post(f"{sandbox.url}/_sandbox/reset?scope=reset-me", timeout=5)
    found = parse_answer(soap(sandbox, "reset-me", "customer_getByExternalId", [("externalId", "crm-1")]).content)
    assert entries(found.msg) == [] and found.msg.get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"
