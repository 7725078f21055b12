"""Clang real-time client: SOAP 1.1 wire format (exact envelopes, headers, escaping), the per-profile call sets,
identifier normalisation, profile-variable mapping and the classification of every answer Clang can give.

HTTP is mocked with `responses` (tests/connectors/partners/clang_mock.py answers per SOAP operation); fixtures under
fixtures/clang_realtime/ follow the envelopes Clang's PHP SOAP server sends (RPC style, SOAP-ENV prefix, ns1).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date

import pytest
import requests
import responses

from connectors.delivery import http
from connectors.delivery.client import client_class
from connectors.delivery.types import Action, ClientConfig, Item
from connectors.models import Outcome
from connectors.partners import clang_soap
from connectors.partners.clang_realtime.client import Client
from connectors.partners.clang_soap import customer_fields, normalize_identifier, request_envelope
from tests.connectors.partners.clang_mock import URL, SoapMock, fixture

UUID = "5f0c3a9e-7b1d-4c2e-9a8f-0d1e2f3a4b5c"
NS = "https://login.myclang.com/app/api/soap/public/index.php"


def make_client(*, slot: str = "customer_id", uuid: str = UUID, group_id=4242, base_url_override: str = "", **settings):
    config = ClientConfig(
        partner_config_id=1,
        settings={
            "group_id": group_id,
            "identifier_slot": slot,
            "endpoint_url": "https://login.myclang.com/app/api/soap/public/index.php?wsdl",
            **settings,
        },
        secrets={"uuid": uuid} if uuid else {},
        timeout_seconds=5.0,
        base_url_override=base_url_override,
    )
    return Client(config, http.new_session())


def item(profile_id=1, value="crm-1001", *, slot="customer_id", action=Action.ADD, variables=None, audience=""):
    return Item(profile_id, action, slot, value, variables or {}, audience, profile_id)


def by_index(calls) -> dict:
    out = {}
    for call in calls:
        for index, result in zip(call.item_indices, call.results, strict=True):
            assert index not in out, "each item gets exactly one result"
            out[index] = (result, call)
    return out


def only(calls):
    assert len(calls) == 1
    assert len(calls[0].results) == 1
    return calls[0].results[0], calls[0]


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def soap(rsps):
    return SoapMock(rsps)


def new_customer(soap):
    return (
        soap.on("customer_getByExternalId", "customer_none.xml")
        .on("customer_insert", "customer_inserted.xml")
        .on("group_addMember", "add_member_true.xml")
    )


# --- registry and wire format -------------------------------------------------------------------------------------
def test_dispatcher_finds_the_client():
    assert client_class("clang_realtime") is Client


def test_add_of_a_new_customer_is_lookup_insert_member(soap):
    new_customer(soap)
    result, call = only(make_client().send(Action.ADD, [item(variables={"first_name": "Mary"})]))
    assert result.outcome == Outcome.ADDED and call.partner_code == ""
    assert soap.ops() == ["customer_getByExternalId", "customer_insert", "group_addMember"]
    assert call.status_code == 200 and call.duration_ms > 0
    assert call.snippet == "customer_getByExternalId: 0 found; customer_insert: ok; group_addMember: ok"
    lookup, insert, member = soap.calls
    # The exact envelope: RPC operation in the endpoint's namespace, uuid first, parameters unqualified.
    assert (
        lookup.body
        == (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns:ns1="{NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><SOAP-ENV:Body>'
            f"<ns1:customer_getByExternalId><uuid>{UUID}</uuid><externalId>crm-1001</externalId>"
            "</ns1:customer_getByExternalId></SOAP-ENV:Body></SOAP-ENV:Envelope>"
        ).encode()
    )
    assert lookup.url == URL  # the WSDL flag is not part of the SOAP endpoint
    assert lookup.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert lookup.headers["SOAPAction"] == '""'
    assert b"<customer><firstname>Mary</firstname><externalId>crm-1001</externalId></customer>" in insert.body
    assert member.body.endswith(
        b"<ns1:group_addMember><uuid>" + UUID.encode() + b"</uuid><group><id>4242</id></group>"
        b"<customer><id>5012</id></customer></ns1:group_addMember></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )


def test_existing_customer_is_updated_with_its_id_in_wsdl_order(soap):
    soap.on("customer_getByExternalId", "customer_found.xml").on("customer_update", "customer_updated.xml")
    soap.on("group_addMember", "add_member_true.xml")
    result, _ = only(make_client().send(Action.UPDATE, [item(variables={"lastname": "Jansen", "gender": "F"})]))
    assert result.outcome == Outcome.ADDED
    update = soap.of("customer_update")[0]
    assert b"<customer><id>5012</id><lastname>Jansen</lastname><gender>WOMAN</gender>" in update.body
    assert update.fields("customer") == {
        "id": "5012",
        "lastname": "Jansen",
        "gender": "WOMAN",
        "externalId": "crm-1001",
    }


def test_existing_customer_without_variables_is_not_rewritten(soap):
    soap.on("customer_getByExternalId", "customer_found.xml").on("group_addMember", "add_member_true.xml")
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert result.outcome == Outcome.ADDED
    assert soap.ops() == ["customer_getByExternalId", "group_addMember"]
    assert call.snippet == "customer_getByExternalId: 1 found; group_addMember: ok"


def test_fault_107_already_member_counts_as_added(soap):
    soap.on("customer_getByExternalId", "customer_found.xml").on("group_addMember", "fault_107.xml")
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.partner_code, call.partner_code) == (Outcome.ADDED, "", "")
    assert call.status_code == 500  # Clang sends faults with HTTP 500; 107 still means done
    assert "already a member (107)" in call.snippet


def test_group_add_answered_false_is_a_partner_error(soap):
    soap.on("customer_getByExternalId", "customer_found.xml").on("group_addMember", "add_member_false.xml")
    result, _ = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, "not_added", False)


def test_base_url_override_and_version_query(rsps):
    soap = SoapMock(rsps, "http://127.0.0.1:9/c/demo/login.myclang.com/app/api/soap/public/index.php")
    new_customer(soap)
    client = make_client(base_url_override="http://127.0.0.1:9/c/demo")
    assert only(client.send(Action.ADD, [item()]))[0].outcome == Outcome.ADDED

    versioned = SoapMock(rsps, f"{URL}?version=1.24")
    new_customer(versioned)
    client = make_client(endpoint_url=f"{URL}?wsdl&version=1.24")
    assert only(client.send(Action.ADD, [item()]))[0].outcome == Outcome.ADDED
    assert versioned.calls[0].url == f"{URL}?version=1.24"
    assert versioned.calls[0].namespace == f"{URL}?version=1.24"


# --- escaping -----------------------------------------------------------------------------------------------------
HOSTILE = "a<&>\"b']]>c"


def test_hostile_values_are_escaped_and_survive_parsing(soap):
    new_customer(soap)
    variables = {"firstname": HOSTILE, "note": "line1\r\nline2\x00\x1f end", "<tag>": "x"}
    only(make_client().send(Action.ADD, [item(value=HOSTILE, variables=variables)]))
    lookup, insert, _ = soap.calls
    assert b"<externalId>a&lt;&amp;&gt;\"b']]&gt;c</externalId>" in lookup.body
    assert lookup.text("externalId") == HOSTILE
    fields = insert.fields("customer")
    assert fields["firstname"] == HOSTILE and fields["externalId"] == HOSTILE
    options = {o.find("name").text: o.find("value").text for o in insert.params["customer"].find("options")}
    # \r is written as &#13; (kept), characters XML cannot carry are dropped, names are data, never element names.
    assert options == {"note": "line1\r\nline2 end", "<tag>": "x"}
    assert b"&#13;" in insert.body and b"\x00" not in insert.body


def test_identifier_with_characters_xml_cannot_carry_is_not_sent(soap):
    result, call = only(make_client().send(Action.ADD, [item(value="crm\x001")]))
    assert (result.outcome, result.partner_code) == (Outcome.OTHER_ERROR, "invalid_identifier")
    assert soap.calls == []


def test_envelope_builder_escapes_every_value():
    body = request_envelope(NS + '?a="1"&b=<2>', "op", [("p", "<&>"), ("s", {"k": "&"}), ("b", True), ("n", None)])
    root = ET.fromstring(body)
    op = root[0][0]
    assert [(e.tag, e.text) for e in op] == [("p", "<&>"), ("s", None), ("b", "true")]
    assert op.find("s/k").text == "&"
    assert op.tag == "{" + NS + '?a="1"&b=<2>}op'


# --- normalisation and variable mapping ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("slot", "raw", "sent"),
    [
        ("email", "  Mary@Example.COM ", "mary@example.com"),
        ("email", "\tJOHN.DOE@EXAMPLE.COM\n", "john.doe@example.com"),
        ("email", "no-at-sign", ""),
        ("email", "a@b", ""),
        ("email", "two words@example.com", ""),
        ("email", "   ", ""),
        ("customer_id", "  CRM-1001 ", "CRM-1001"),  # external ids keep their case
        ("customer_id", "", ""),
    ],
)
def test_identifier_vectors(slot, raw, sent):
    assert normalize_identifier(slot, raw) == sent


def test_email_slot_looks_up_by_email_address_exact_bytes(soap):
    soap.on("customer_getByEmailAddress", "customer_found_by_email.xml").on("group_addMember", "add_member_true.xml")
    client = make_client(slot="email")
    result, _ = only(client.send(Action.ADD, [item(value="  Mary@Example.COM ", slot="email")]))
    assert result.outcome == Outcome.ADDED
    assert b"<emailAddress>mary@example.com</emailAddress></ns1:customer_getByEmailAddress>" in soap.calls[0].body
    assert soap.of("group_addMember")[0].params["customer"].find("id").text == "5012"  # the first one found


@pytest.mark.parametrize("bad", ["no-at-sign", "", "a@b"])
def test_invalid_emails_are_not_sent(soap, bad):
    result, call = only(make_client(slot="email").send(Action.ADD, [item(value=bad, slot="email")]))
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "invalid_identifier", False)
    assert call.snippet.startswith("not sent") and soap.calls == []


def test_slot_other_than_the_configured_one_is_refused(soap):
    result, _ = only(make_client().send(Action.ADD, [item(value="+31612345678", slot="phone")]))
    assert result.partner_code == "unsupported_slot"


def test_variable_mapping_vectors():
    fields, options = customer_fields(
        {
            "First_Name": "Mary",
            "last-name": "Jansen",
            "email": "mary@example.com",
            "phone": "+31612345678",
            "zip": "1011 AB",
            "gender": "female",
            "birthday": date(1990, 4, 1),
            "date_of_birth": "1990-04-01T00:00:00Z",
            "city": None,  # unknown: left out, never blanked
            "loyalty_points": 120,
            "vip": True,
            "tags": ["a", "b"],
            "status": "gold",  # Clang's own status field is read-only: kept as an option
        }
    )
    assert fields == {
        "firstname": "Mary",
        "lastname": "Jansen",
        "emailAddress": "mary@example.com",
        "mobilePhone": "+31612345678",
        "zipCode": "1011 AB",
        "gender": "WOMAN",
        "birthday": "1990-04-01",
    }
    assert options == [
        {"name": "loyalty_points", "value": "120"},
        {"name": "vip", "value": "true"},
        {"name": "tags", "value": '["a","b"]'},
        {"name": "status", "value": "gold"},
    ]
    assert customer_fields({"gender": "x", "birthday": "someday"}) == ({"gender": "UNKNOWN"}, [])


def test_identifier_wins_over_a_variable_of_the_same_field(soap):
    new_customer(soap)
    only(make_client().send(Action.ADD, [item(variables={"customer_id": "other", "externalId": "other2"})]))
    assert soap.of("customer_insert")[0].fields("customer")["externalId"] == "crm-1001"


# --- remove -------------------------------------------------------------------------------------------------------
def test_remove_is_lookup_then_group_remove_member(soap):
    soap.on("customer_getByExternalId", "customer_found.xml").on("group_removeMember", "remove_member_true.xml")
    result, _ = only(make_client().send(Action.REMOVE, [item(action=Action.REMOVE)]))
    assert result.outcome == Outcome.REMOVED
    assert soap.ops() == ["customer_getByExternalId", "group_removeMember"]
    remove = soap.calls[1]
    assert remove.params["group"].find("id").text == "4242" and remove.params["customer"].find("id").text == "5012"


def test_remove_of_every_customer_sharing_the_email(soap):
    soap.on("customer_getByEmailAddress", "customer_found_by_email.xml")
    soap.on("group_removeMember", "remove_member_true.xml").on("group_removeMember", "fault_108.xml")
    calls = make_client(slot="email").send(Action.REMOVE, [item(value="mary@example.com", slot="email")])
    assert only(calls)[0].outcome == Outcome.REMOVED
    assert [c.params["customer"].find("id").text for c in soap.of("group_removeMember")] == ["5012", "5013"]


@pytest.mark.parametrize("answer", ["customer_none.xml", "fault_108.xml", "fault_213.xml"])
def test_remove_of_what_clang_does_not_hold_counts_as_removed(soap, answer):
    if answer == "customer_none.xml":
        soap.on("customer_getByExternalId", answer)
    else:
        soap.on("customer_getByExternalId", "customer_found.xml").on("group_removeMember", answer)
    result, call = only(make_client().send(Action.REMOVE, [item(action=Action.REMOVE)]))
    assert (result.outcome, call.partner_code, call.credentials_invalid) == (Outcome.REMOVED, "", False)


# --- group id -----------------------------------------------------------------------------------------------------
def test_partner_audience_id_names_the_group(soap):
    soap.on("customer_getByExternalId", "customer_found.xml").on("group_addMember", "add_member_true.xml")
    only(make_client().send(Action.ADD, [item(audience=" 777 ")]))
    assert soap.of("group_addMember")[0].params["group"].find("id").text == "777"


@pytest.mark.parametrize(("audience", "group_id"), [("news-nl", 4242), ("0", 4242), ("", None)])
def test_unusable_group_id_is_not_sent(soap, audience, group_id):
    result, _ = only(make_client(group_id=group_id).send(Action.ADD, [item(audience=audience)]))
    assert (result.outcome, result.partner_code) == (Outcome.OTHER_ERROR, "invalid_group_id")
    assert soap.calls == []


# --- errors -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("answer", "code"), [("fault_invalid_uuid.xml", "100"), ("fault_uuid_text.xml", "999")])
def test_refused_uuid_is_invalid_credentials(soap, answer, code):
    soap.on("customer_getByExternalId", answer)
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.INVALID_CREDENTIALS, code, False)
    assert call.credentials_invalid and call.partner_code == code and call.status_code == 500
    assert UUID not in call.snippet and UUID not in result.message
    assert ("[uuid]" in result.message) == (answer == "fault_uuid_text.xml")  # the echoed uuid is masked


def test_http_401_is_invalid_credentials(soap):
    soap.on("customer_getByExternalId", b"Unauthorized", status=401)
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.partner_code, call.credentials_invalid) == (
        Outcome.INVALID_CREDENTIALS,
        "http_401",
        True,
    )


def test_http_403_is_a_partner_error_not_credentials(soap):
    soap.on("customer_getByExternalId", b"<html>Forbidden</html>", status=403)
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.partner_code, result.retryable, call.credentials_invalid) == (
        Outcome.PARTNER_ERROR,
        "http_403",
        False,
        False,
    )
    assert "egress IP" in Client.error_meaning("http_403")


@pytest.mark.parametrize(
    ("operation", "answer", "code"),
    [
        ("group_addMember", "fault_group_not_found.xml", "301"),
        ("customer_insert", "fault_invalid_value.xml", "302"),
        ("group_addMember", "fault_client.xml", "Client"),
        ("group_addMember", "fault_not_present.xml", "Server"),
    ],
)
def test_permanent_faults_are_partner_errors_with_clangs_code(soap, operation, answer, code):
    new_customer(soap)
    soap.script[operation] = [(answer, None, {})]
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, code, False)
    assert call.partner_code == code and not call.credentials_invalid
    assert soap.ops()[-1] == operation  # nothing after the failing call


def test_server_fault_is_retryable(soap):
    soap.on("customer_getByExternalId", "fault_server.xml")
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, "Server", True)
    assert "retried" in Client.error_meaning("Server")


def test_nonzero_code_is_a_partner_error_with_that_code(soap):
    soap.on("customer_getByExternalId", "customer_found.xml").on("group_addMember", "code_nonzero.xml")
    result, _ = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, "1", False)
    assert "group is locked" in result.message


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_without_soap_is_retryable(soap, status):
    soap.on("customer_getByExternalId", b"<html><body>Bad gateway</body></html>", status=status)
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, f"http_{status}", True)
    assert call.status_code == status


def test_http_429_is_retried_after_retry_after(soap):
    soap.on("customer_getByExternalId", "fault_server.xml", status=429, headers={"Retry-After": "30"})
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.partner_code, result.retryable, call.retry_after) == (
        Outcome.PARTNER_ERROR,
        "http_429",
        True,
        30.0,
    )


def test_http_410_pauses_the_configuration_and_404_is_final(soap):
    soap.on("customer_getByExternalId", b"Gone", status=410).on("customer_getByExternalId", b"Not Found", status=404)
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert call.endpoint_gone and result.partner_code == "http_410"
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert (result.partner_code, result.retryable, call.endpoint_gone) == ("http_404", False, False)


@pytest.mark.parametrize(
    "body",
    [b"OK", b"<not-soap/>", b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', "<a>\u00e9</a>".encode("latin-1")],
)
def test_unreadable_answers_are_retried(soap, body):
    soap.on("customer_getByExternalId", body, status=200)
    result, _ = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.PARTNER_ERROR, "invalid_response", True)


def test_timeout(soap):
    soap.on("customer_getByExternalId", requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)"))
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.retryable, call.status_code) == (Outcome.TIMEOUT, True, None)


def test_timeout_in_the_middle_of_a_call_set_is_retried_whole(soap):
    soap.on("customer_getByExternalId", "customer_none.xml").on("customer_insert", "customer_inserted.xml")
    soap.on("group_addMember", requests.exceptions.ReadTimeout("Read timed out."))
    result, call = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.retryable) == (Outcome.TIMEOUT, True)
    assert call.status_code is None  # the last call got no answer


def test_connection_error(soap):
    soap.on("customer_getByExternalId", requests.exceptions.ConnectionError("Connection refused"))
    result, _ = only(make_client().send(Action.ADD, [item()]))
    assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "connection_error", True)


def test_no_uuid_pauses_without_calling(soap):
    calls = make_client(uuid="").send(Action.ADD, [item(1), item(2, "crm-2")])
    assert len(calls) == 1 and calls[0].credentials_invalid and calls[0].item_indices == [0, 1]
    assert calls[0].results[0].outcome == Outcome.INVALID_CREDENTIALS and soap.calls == []


def test_snippets_and_messages_hold_no_identifier_nor_uuid(soap):
    soap.on("customer_getByExternalId", "customer_none.xml").on("customer_insert", "fault_echo.xml")
    result, call = only(make_client().send(Action.ADD, [item(value="crm-secret-42", slot="customer_id")]))
    assert result.partner_code == "302"
    for text in (call.snippet, result.message):
        assert "crm-secret-42" not in text and UUID not in text
    assert "[identifier]" in result.message


# --- many items ---------------------------------------------------------------------------------------------------
def test_each_item_is_its_own_call_set_and_appears_once(soap):
    new_customer(soap)
    items = [item(i, f"crm-{i}") for i in range(20)] + [item(99, "", slot="customer_id")]
    calls = make_client().send(Action.ADD, items)
    results = by_index(calls)
    assert sorted(results) == list(range(21))
    assert [results[i][0].outcome for i in range(20)] == [Outcome.ADDED] * 20
    assert results[20][0].partner_code == "invalid_identifier"
    assert len(soap.of("customer_getByExternalId")) == 20 and len(soap.of("group_addMember")) == 20
    assert {c.text("externalId") for c in soap.of("customer_getByExternalId")} == {f"crm-{i}" for i in range(20)}


# --- test connection ----------------------------------------------------------------------------------------------
def test_connection_ok_reads_the_group(soap):
    soap.on("group_getById", "group.xml")
    ok, message = make_client().test_connection()
    assert ok and message == "Connected to Clang: group 4242 \u201cNewsletter NL\u201d, 1187 customers."
    assert soap.calls[0].text("groupId") == "4242" and soap.calls[0].text("uuid") == UUID


def test_connection_bad_uuid(soap):
    soap.on("group_getById", "fault_invalid_uuid.xml")
    ok, message = make_client().test_connection()
    assert not ok and message.startswith("Clang refused the API token (uuid): Invalid uuid.")


def test_connection_unknown_group(soap):
    soap.on("group_getById", "fault_group_not_found.xml")
    ok, message = make_client().test_connection()
    assert not ok and message == "Clang does not know group 4242 (fault 301: Group not found). Check the group ID."


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (requests.exceptions.ConnectionError("Connection refused"), "Could not reach Clang"),
        (requests.exceptions.ReadTimeout("Read timed out."), "Clang did not answer within 5 s."),
        (b"Not Found", "No Clang SOAP endpoint at this URL (HTTP 404)"),
    ],
)
def test_connection_unreachable(soap, answer, expected):
    soap.on("group_getById", answer, status=404 if isinstance(answer, bytes) else None)
    ok, message = make_client().test_connection()
    assert not ok and message.startswith(expected)


def test_connection_without_uuid_or_group():
    assert make_client(uuid="").test_connection() == (False, "No API token (uuid) is configured.")
    assert make_client(group_id=None).test_connection() == (False, "No group ID is configured.")


def test_error_meanings():
    assert "already a member" in Client.error_meaning("107")
    assert Client.error_meaning("http_502").startswith("The partner answered HTTP 502")
    assert clang_soap.ERROR_CODES is Client.error_codes


def test_fixture_faults_parse():
    answer = clang_soap.parse_answer(fixture("fault_107.xml"))
    assert (answer.fault.code, answer.fault.string) == ("107", "customer already member of group")
    assert clang_soap.parse_answer(fixture("fault_server.xml")).fault.kind == "Server"


def test_after_a_refused_uuid_the_rest_of_the_send_waits_without_calls(soap):
    soap.on("customer_getByExternalId", "fault_invalid_uuid.xml")
    client = make_client()
    client.max_workers = 1  # one call set at a time, in order
    results = by_index(client.send(Action.ADD, [item(i, f"crm-{i}") for i in range(5)]))
    first, first_call = results[0]
    assert first.outcome == Outcome.INVALID_CREDENTIALS and first_call.credentials_invalid
    for index in range(1, 5):
        result, call = results[index]
        assert (result.outcome, result.partner_code, result.retryable) == (Outcome.OTHER_ERROR, "not_sent", True)
        assert not call.credentials_invalid and call.status_code is None
    assert len(soap.calls) == 1
    # The next send starts afresh (the uuid may have been fixed meanwhile).
    soap.script["customer_getByExternalId"] = [("customer_found.xml", None, {})]
    soap.on("group_addMember", "add_member_true.xml")
    assert only(client.send(Action.ADD, [item()]))[0].outcome == Outcome.ADDED
