"""Clang batch client: bulk upsert (customer_insertBulkUnique) and bulk group add, per-record results, splitting,
the one-by-one fallback after fault 107, removals one by one, and error classification of the bulk calls.

HTTP is mocked with `responses` (clang_mock.SoapMock); fixtures under fixtures/clang_batch/ (and the shared faults
under fixtures/clang_realtime/).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import responses

from connectors.delivery import http
from connectors.delivery.client import client_class
from connectors.delivery.types import Action, ClientConfig, Item
from connectors.models import Outcome
from connectors.partners.clang_batch.client import Client
from connectors.partners.clang_soap import SOAP_ENV, Items, response_envelope
from connectors.partners.registry import REGISTRY
from tests.connectors.partners.clang_mock import SoapMock

UUID = "5f0c3a9e-7b1d-4c2e-9a8f-0d1e2f3a4b5c"
NS = "https://login.myclang.com/app/api/soap/public/index.php"


def make_client(*, slot: str = "customer_id", uuid: str = UUID, group_id=4242):
    config = ClientConfig(
        partner_config_id=2,
        settings={"group_id": group_id, "identifier_slot": slot, "batch_interval_minutes": 20},
        secrets={"uuid": uuid},
        timeout_seconds=5.0,
    )
    return Client(config, http.new_session())


def item(profile_id, value, *, slot="customer_id", action=Action.ADD, variables=None, audience=""):
    return Item(profile_id, action, slot, value, variables or {}, audience, profile_id)


def by_index(calls) -> dict:
    out = {}
    for call in calls:
        for index, result in zip(call.item_indices, call.results, strict=True):
            assert index not in out, "each item gets exactly one result"
            out[index] = (result, call)
    return out


def stored_all(call) -> tuple[int, dict, bytes]:
    """Answer customer_insertBulkUnique with every record stored (ids 9000+position)."""
    customers = []
    for position, entry in enumerate(call.params["customers"]):
        record = {e.tag: e.text for e in entry if not len(e)}
        customers.append({"id": str(9000 + position), **record})
    body = response_envelope(NS, "customer_insertBulkUnique", Items("Customer", customers))
    return 200, {"Content-Type": "text/xml; charset=utf-8"}, body


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def soap(rsps):
    return SoapMock(rsps)


ITEMS = [item(1, "crm-1", variables={"lastname": "A"}), item(2, "crm-2", variables={"lastname": "B"}), item(3, "crm-3")]


def test_dispatcher_finds_the_client_and_the_limits():
    assert client_class("clang_batch") is Client
    limits = REGISTRY["clang_batch"].limits
    assert (limits.max_batch_size, limits.min_batch_size, limits.batch_interval_seconds) == (500, 500, 1200)


def test_add_is_one_bulk_upsert_and_one_bulk_group_add(soap):
    soap.on("customer_insertBulkUnique", "bulk_stored.xml").on("group_addMembersInBulk", "members_true.xml")
    calls = make_client().send(Action.ADD, ITEMS)
    assert soap.ops() == ["customer_insertBulkUnique", "group_addMembersInBulk"]
    assert len(calls) == 1 and calls[0].item_indices == [0, 1, 2]
    assert [r.outcome for r in calls[0].results] == [Outcome.ADDED] * 3
    assert calls[0].snippet == "customer_insertBulkUnique: 3 of 3 stored; group_addMembersInBulk: ok"
    insert, members = soap.calls
    assert insert.body.endswith(
        b"<ns1:customer_insertBulkUnique><uuid>" + UUID.encode() + b"</uuid><customers>"
        b"<Customer><lastname>A</lastname><externalId>crm-1</externalId></Customer>"
        b"<Customer><lastname>B</lastname><externalId>crm-2</externalId></Customer>"
        b"<Customer><externalId>crm-3</externalId></Customer></customers>"
        b"<uniqueCustomerFields><string>externalId</string></uniqueCustomerFields>"
        b"<uniqueOptionFields></uniqueOptionFields>"
        b"</ns1:customer_insertBulkUnique></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
    assert members.params["group"].find("id").text == "4242"
    assert members.ids("customers") == ["7001", "7002", "7003"]
    assert insert.headers["Content-Type"] == "text/xml; charset=utf-8" and insert.headers["SOAPAction"] == '""'


def test_update_is_the_same_upsert(soap):
    soap.on("customer_insertBulkUnique", "bulk_stored.xml").on("group_addMembersInBulk", "members_true.xml")
    calls = make_client().send(Action.UPDATE, [item(i + 1, f"crm-{i + 1}", action=Action.UPDATE) for i in range(3)])
    assert [r.outcome for r in calls[0].results] == [Outcome.ADDED] * 3


def test_records_missing_from_the_answer_are_per_row_errors(soap):
    soap.on("customer_insertBulkUnique", "bulk_partial.xml").on("group_addMembersInBulk", "members_true.xml")
    calls = make_client().send(Action.ADD, ITEMS)
    results = by_index(calls)
    assert sorted(results) == [0, 1, 2]
    assert results[1][0].outcome == Outcome.PARTNER_ERROR and results[1][0].partner_code == "not_stored"
    assert results[1][1].partner_code == "not_stored" and not results[1][0].retryable
    assert results[0][0].outcome == results[2][0].outcome == Outcome.ADDED
    assert soap.of("group_addMembersInBulk")[0].ids("customers") == ["7001", "7003"]  # matched by externalId
    assert results[1][1].snippet == "customer_insertBulkUnique: 2 of 3 stored"  # the insert call is accounted once
    assert results[0][1].snippet == "group_addMembersInBulk: ok"


def test_answer_without_the_unique_field_is_matched_by_position(soap):
    soap.on("customer_insertBulkUnique", "bulk_ids_only.xml").on("group_addMembersInBulk", "members_true.xml")
    calls = make_client().send(Action.ADD, ITEMS)
    assert [r.outcome for r in calls[0].results] == [Outcome.ADDED] * 3
    assert soap.of("group_addMembersInBulk")[0].ids("customers") == ["7001", "7002", "7003"]


def test_email_slot_is_unique_on_email_address_case_insensitively(soap):
    soap.on("customer_insertBulkUnique", "bulk_by_email.xml").on("group_addMembersInBulk", "members_true.xml")
    items = [item(1, " ann@example.com", slot="email"), item(2, "BOB@example.com", slot="email")]
    calls = make_client(slot="email").send(Action.ADD, items)
    assert [r.outcome for r in calls[0].results] == [Outcome.ADDED] * 2
    insert = soap.calls[0]
    assert insert.params["uniqueCustomerFields"][0].text == "emailAddress"
    assert [c.find("emailAddress").text for c in insert.params["customers"]] == ["ann@example.com", "bob@example.com"]
    assert soap.of("group_addMembersInBulk")[0].ids("customers") == ["7101", "7102"]


def test_profiles_sharing_an_identifier_are_one_record(soap):
    soap.on("customer_insertBulkUnique", stored_all).on("group_addMembersInBulk", "members_true.xml")
    items = [item(1, "crm-1", variables={"city": "Delft"}), item(2, "crm-1", variables={"city": "Gouda"})]
    calls = make_client().send(Action.ADD, items)
    assert [r.outcome for r in calls[0].results] == [Outcome.ADDED] * 2
    sent = soap.calls[0].params["customers"]
    assert len(sent) == 1 and sent[0].find("city").text == "Gouda"  # the newest variables win
    assert soap.of("group_addMembersInBulk")[0].ids("customers") == ["9000"]


def test_one_group_add_per_target_group(soap):
    soap.on("customer_insertBulkUnique", "bulk_stored.xml").on("group_addMembersInBulk", "members_true.xml")
    items = [item(1, "crm-1", audience="11"), item(2, "crm-2", audience="22"), item(3, "crm-3", audience="11")]
    calls = make_client().send(Action.ADD, items)
    assert soap.ops() == ["customer_insertBulkUnique", "group_addMembersInBulk", "group_addMembersInBulk"]
    groups = {c.params["group"].find("id").text: c.ids("customers") for c in soap.of("group_addMembersInBulk")}
    assert groups == {"11": ["7001", "7003"], "22": ["7002"]}
    assert [call.item_indices for call in calls] == [[0, 2], [1]]
    assert "customer_insertBulkUnique" in calls[0].snippet and "customer_insertBulkUnique" not in calls[1].snippet


def test_splits_at_500_distinct_identifiers(soap):
    soap.on("customer_insertBulkUnique", stored_all).on("group_addMembersInBulk", "members_true.xml")
    items = [item(i, f"crm-{i}") for i in range(1200)]
    calls = make_client().send(Action.ADD, items)
    sizes = [len(c.params["customers"]) for c in soap.of("customer_insertBulkUnique")]
    assert sizes == [500, 500, 200]
    assert [len(c.params["customers"]) for c in soap.of("group_addMembersInBulk")] == [500, 500, 200]
    results = by_index(calls)
    assert sorted(results) == list(range(1200)) and all(r.outcome == Outcome.ADDED for r, _ in results.values())


def test_fault_107_on_the_bulk_add_goes_one_by_one(soap):
    soap.on("customer_insertBulkUnique", "bulk_stored.xml").on("group_addMembersInBulk", "fault_107.xml")
    soap.on("group_addMember", "add_member_true.xml").on("group_addMember", "fault_107.xml")
    soap.on("group_addMember", "fault_group_not_found.xml")
    calls = make_client().send(Action.ADD, ITEMS)
    assert soap.ops() == ["customer_insertBulkUnique", "group_addMembersInBulk"] + ["group_addMember"] * 3
    results = by_index(calls)
    assert [results[i][0].outcome for i in range(3)] == [Outcome.ADDED, Outcome.ADDED, Outcome.PARTNER_ERROR]
    assert results[2][0].partner_code == "301" and calls[-1].partner_code == "301"
    assert "so one by one: group_addMember x3: 1 added, 1 already members" in calls[-1].snippet


def test_removals_go_one_by_one(soap):
    soap.on("customer_getByExternalId", "customer_found.xml").on("group_removeMember", "remove_member_true.xml")
    items = [item(i, f"crm-{i}", action=Action.REMOVE) for i in range(5)]
    calls = make_client().send(Action.REMOVE, items)
    assert len(calls) == 5 and all(c.results[0].outcome == Outcome.REMOVED for c in calls)
    assert sorted(soap.ops()) == ["customer_getByExternalId"] * 5 + ["group_removeMember"] * 5
    assert "customer_insertBulkUnique" not in soap.ops() and "group_addMembersInBulk" not in soap.ops()


def test_invalid_uuid_on_the_bulk_call_pauses(soap):
    soap.on("customer_insertBulkUnique", "fault_invalid_uuid.xml")
    calls = make_client().send(Action.ADD, ITEMS)
    assert len(calls) == 1 and calls[0].credentials_invalid and calls[0].partner_code == "100"
    assert all(r.outcome == Outcome.INVALID_CREDENTIALS for r in calls[0].results)
    assert soap.ops() == ["customer_insertBulkUnique"]


def test_server_fault_on_the_bulk_call_is_retried_for_every_row(soap):
    soap.on("customer_insertBulkUnique", "fault_server.xml")
    calls = make_client().send(Action.ADD, ITEMS)
    assert [(r.outcome, r.partner_code, r.retryable) for r in calls[0].results] == [
        (Outcome.PARTNER_ERROR, "Server", True)
    ] * 3


def test_too_many_and_invalid_value_faults_are_final(soap):
    soap.on("customer_insertBulkUnique", "fault_invalid_value.xml")
    calls = make_client().send(Action.ADD, ITEMS)
    assert {(r.partner_code, r.retryable) for r in calls[0].results} == {("302", False)}


def test_group_add_failures_fail_that_groups_rows(soap):
    soap.on("customer_insertBulkUnique", "bulk_stored.xml").on("group_addMembersInBulk", "fault_group_not_found.xml")
    calls = make_client().send(Action.ADD, ITEMS)
    assert [(r.outcome, r.partner_code) for r in calls[0].results] == [(Outcome.PARTNER_ERROR, "301")] * 3
    soap.script["group_addMembersInBulk"] = [("members_false.xml", None, {})]
    calls = make_client().send(Action.ADD, ITEMS)
    assert {r.partner_code for r in calls[0].results} == {"not_added"}


def test_invalid_items_are_not_sent_with_the_rest(soap):
    soap.on("customer_insertBulkUnique", stored_all).on("group_addMembersInBulk", "members_true.xml")
    items = [item(1, "crm-1"), item(2, "   "), item(3, "crm-3", audience="not-a-group")]
    results = by_index(make_client().send(Action.ADD, items))
    assert results[0][0].outcome == Outcome.ADDED
    assert results[1][0].partner_code == "invalid_identifier" and results[2][0].partner_code == "invalid_group_id"
    assert len(soap.calls[0].params["customers"]) == 1


def test_bulk_envelope_is_well_formed_with_hostile_values(soap):
    soap.on("customer_insertBulkUnique", stored_all).on("group_addMembersInBulk", "members_true.xml")
    make_client().send(Action.ADD, [item(1, "<&>", variables={"firstname": "&amp;", "x<y": '"q"'})])
    root = ET.fromstring(soap.calls[0].body)
    customer = root.find(f"{{{SOAP_ENV}}}Body")[0].find("customers/Customer")
    assert customer.find("externalId").text == "<&>" and customer.find("firstname").text == "&amp;"
    assert customer.find("options/CustomerOption/name").text == "x<y"


def test_connection_reads_the_group(soap):
    soap.on("group_getById", "group.xml")
    assert make_client().test_connection()[0] is True


def test_after_a_refused_uuid_later_chunks_wait_without_calls(soap):
    soap.on("customer_insertBulkUnique", "fault_invalid_uuid.xml")
    calls = make_client().send(Action.ADD, [item(i, f"crm-{i}") for i in range(700)])
    assert soap.ops() == ["customer_insertBulkUnique"]
    assert [len(c.item_indices) for c in calls] == [500, 200]
    assert calls[0].credentials_invalid and calls[0].results[0].outcome == Outcome.INVALID_CREDENTIALS
    assert not calls[1].credentials_invalid and {r.partner_code for r in calls[1].results} == {"not_sent"}
    assert all(r.retryable for r in calls[1].results)
