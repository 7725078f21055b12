"""Connections of audiences to partner configurations: validated by the partner, the current members queued on
connect, removed on request when deleting, and still seen by the connector delete guard."""

import pytest
from django.core.exceptions import ValidationError

from audiences import services
from audiences.models import AudienceConnection
from connectors import services as connector_services
from connectors.delivery import outbox
from connectors.errors import InUseError
from connectors.models import Connector, DailyStat, Delivery, Outcome, PartnerConfig
from connectors.partners.base import Kind, UsableIn
from connectors.partners.registry import REGISTRY
from tests.audiences.factories import config_for, connect, deliveries, make_profile, rule_audience

pytestmark = pytest.mark.django_db

NL = {"all": [{"attribute": "country", "op": "equals", "value": "NL"}]}


@pytest.fixture
def audience():
    for name, country in (("ann", "NL"), ("bob", "BE"), ("cem", "NL")):
        make_profile(name, {"country": country}, customer_id=f"c-{name}")
    audience = rule_audience(NL)
    services.audience_refresh(audience=audience)
    return audience


def errors(audience, config, **kwargs) -> dict:
    with pytest.raises(ValidationError) as exc:
        services.audience_connection_create(audience=audience, partner_config=config.pk, **kwargs)
    return exc.value.message_dict


# --- the partner's audience id, per partner ---------------------------------------------------------------------------


def test_every_partner_that_takes_audiences_declares_its_audience_id():
    for partner in REGISTRY.values():
        if partner.kind == Kind.SERVER_TO_SERVER and UsableIn.AUDIENCES in partner.usable_in:
            field = partner.audience_id_field
            assert field is not None and field.name == "partner_audience_id", partner.key
            assert field.label and field.help_text, partner.key
            described = partner.describe()["audience_id_field"]
            assert described["label"] == field.label and described["required"] == field.required
        else:
            assert partner.audience_id_field is None, partner.key


CASES = [
    # partner, extra config settings, valid ids, invalid ids (with part of the message), required when empty
    ("meta_custom_audiences", {}, ["23850000000001"], [("act_123", "digits only")], True),
    ("google_dv360", {}, ["4242"], [("audience-1", "digits only")], True),
    ("google_ads_customer_match", {}, ["5551234", ""], [("list 1", "digits only")], False),
    ("google_cm360", {}, ["9876543", ""], [("floodlight", "digits only")], False),
    ("xandr", {}, ["12345", "retargeting_1", ""], [("bad code!", "segment code")], False),
    ("xandr", {"mode": "batch"}, ["12345"], [("retargeting_1", "numeric segment ID")], False),
    ("the_trade_desk", {}, ["cc9b84o", ""], [("cc9b84", "7 letters and digits"), ("toolong12", "7 letters")], False),
    ("azure_event_hubs", {}, ["VIP customers", ""], [("line\nbreak", "printable characters")], False),
    ("clang_realtime", {}, ["4242", ""], [("group-1", "numeric Clang group ID"), ("0", "numeric")], False),
    ("webhook", {}, ["seg-1", ""], [("x" * 201, "at most 200")], False),
]


@pytest.mark.parametrize(("key", "extra", "valid", "invalid", "required"), CASES)
def test_the_partner_audience_id_is_validated_per_partner(audience, key, extra, valid, invalid, required):
    config = config_for(key, **extra)
    for value, message in invalid:
        problems = errors(audience, config, partner_audience_id=value)
        assert list(problems) == ["partner_audience_id"]
        assert message in problems["partner_audience_id"][0], (value, problems)
    if required:
        assert errors(audience, config, partner_audience_id="")["partner_audience_id"][0].startswith("Enter the")
    for value in valid:
        conn, _ = services.audience_connection_create(
            audience=audience, partner_config=config.pk, partner_audience_id=value
        )
        assert conn.partner_audience_id == value.strip()
        services.audience_connection_delete(audience_connection=conn)


@pytest.mark.parametrize(
    ("key", "defaults"),
    [
        ("google_ads_customer_match", {"user_list_id": ""}),
        ("the_trade_desk", {"crm_data_id": ""}),
        ("xandr", {"default_segment_id": None, "default_segment_code": ""}),
    ],
)
def test_an_empty_audience_id_needs_a_default_in_the_configuration(audience, key, defaults):
    config = config_for(key, **defaults)
    message = errors(audience, config, partner_audience_id="")["partner_audience_id"][0]
    assert "the configuration sets no" in message


def test_partners_that_take_no_audiences_are_refused(audience):
    connector = Connector.objects.create(partner_key="meta_pixel", name="Pixel")
    config = PartnerConfig.objects.create(connector=connector, name="Default", settings={"pixel_id": "123456789012345"})
    assert errors(audience, config) == {"partner_config": ["Meta Pixel cannot receive audiences."]}
    with pytest.raises(ValidationError) as exc:
        services.audience_connection_create(audience=audience, partner_config=999999)
    assert list(exc.value.message_dict) == ["partner_config"]


def test_profile_variables_only_where_the_partner_takes_them(audience):
    meta = config_for("meta_custom_audiences")
    assert errors(audience, meta, partner_audience_id="123", profile_variables=["country"]) == {
        "profile_variables": ["Meta Custom Audiences does not receive profile variables."]
    }
    webhook_off = config_for("webhook")
    assert (
        "Include profile variables"
        in errors(audience, webhook_off, profile_variables=["country"])["profile_variables"][0]
    )
    webhook_on = config_for("webhook", include_profile_variables=True)
    assert (
        "Not an attribute name: 1st, a__b"
        in errors(audience, webhook_on, profile_variables=["1st", "a__b"])["profile_variables"][0]
    )
    conn = connect(audience, webhook_on, profile_variables=["country", "tier", "country"])
    assert conn.profile_variables == ["country", "tier"]
    clang = config_for("clang_realtime")
    assert connect(audience, clang, profile_variables=["country"]).profile_variables == ["country"]


def test_one_connection_per_configuration(audience):
    config = config_for("webhook")
    connect(audience, config)
    assert errors(audience, config) == {"partner_config": ["This audience is already connected to this configuration."]}


# --- members queued on connect and on delete --------------------------------------------------------------------


def test_a_new_connection_queues_adds_for_the_current_members(audience):
    config = config_for("webhook")
    conn, queued = services.audience_connection_create(audience=audience, partner_config=config.pk)
    assert (queued.pending, queued.skipped) == (2, 0)
    assert deliveries() == [("ann", "add", "pending"), ("cem", "add", "pending")]
    assert conn.partner_audience_id == ""


def test_connecting_a_deactivated_connector_records_the_adds_as_skipped(audience):
    config = config_for("webhook", deactivated=True)
    _, queued = services.audience_connection_create(audience=audience, partner_config=config.pk)
    assert (queued.pending, queued.skipped) == (0, 2)
    assert DailyStat.objects.get(partner_config=config, outcome=Outcome.SKIPPED_DEACTIVATED).count == 2


def test_deleting_a_connection_stops_sending(audience):
    config = config_for("webhook")
    conn = connect(audience, config)
    result = services.audience_connection_delete(audience_connection=conn)
    assert (result.removing, result.removes_queued, result.dropped) == (False, 0, 2)
    assert not AudienceConnection.objects.exists() and not Delivery.objects.exists()
    make_profile("dan", {"country": "NL"})
    assert services.audience_refresh(audience=audience).outbox.rows == 0


def test_deleting_with_remove_members_queues_removes_first_and_keeps_the_connection_until_sent(audience):
    config = config_for("webhook")
    conn = connect(audience, config, partner_audience_id="seg-9")
    result = services.audience_connection_delete(audience_connection=conn, remove_members=True)
    assert (result.removing, result.removes_queued) == (True, 2)
    # The removes replaced the pending adds; the connection stays (its partner audience id is still needed).
    assert deliveries() == [("ann", "remove", "pending"), ("cem", "remove", "pending")]
    conn.refresh_from_db()
    assert conn.is_removing
    # It gets nothing new.
    make_profile("dan", {"country": "NL"})
    services.audience_refresh(audience=audience)
    assert Delivery.objects.filter(action="add").count() == 0
    # While removals wait, the configuration is still in use; once sent the schedule drops the connection.
    with pytest.raises(InUseError) as exc:
        connector_services.partner_config_delete(partner_config=config)
    assert "removing its members" in str(exc.value.usages[0])
    assert services.audience_connections_purge() == 0
    Delivery.objects.all().delete()
    assert services.audience_connections_purge() == 1
    assert not AudienceConnection.objects.exists()


def test_remove_members_on_a_deactivated_connector_deletes_at_once(audience):
    config = config_for("webhook", deactivated=True)
    conn = connect(audience, config)
    result = services.audience_connection_delete(audience_connection=conn, remove_members=True)
    assert (result.removing, result.removes_queued) == (False, 0)
    assert not AudienceConnection.objects.exists()


def test_connecting_again_while_removing_sends_again(audience):
    config = config_for("webhook")
    conn = connect(audience, config)
    services.audience_connection_delete(audience_connection=conn, remove_members=True)
    again = connect(audience, config, partner_audience_id="seg-2")
    assert again.pk == conn.pk and not again.is_removing and again.partner_audience_id == "seg-2"
    assert deliveries() == [("ann", "add", "pending"), ("cem", "add", "pending")]


def test_reactivating_a_connector_skips_removing_connections(audience):
    config = config_for("webhook")
    conn = connect(audience, config)
    services.audience_connection_delete(audience_connection=conn, remove_members=True)
    connector = config.connector
    connector_services.connector_deactivate(connector=connector)
    Delivery.objects.all().delete()
    connector_services.connector_activate(connector=connector)
    assert not Delivery.objects.filter(action="add").exists()
    assert outbox.audience_members_enqueue(audience_id=audience.pk, profile_ids=[1], action="add").pending == 0


def test_editing_the_partner_audience_id_sends_the_members_to_the_new_one(audience):
    config = config_for("meta_custom_audiences")
    conn = connect(audience, config, partner_audience_id="111")
    Delivery.objects.all().delete()
    with pytest.raises(ValidationError) as exc:
        services.audience_connection_update(audience_connection=conn, partner_audience_id="abc")
    assert list(exc.value.message_dict) == ["partner_audience_id"]
    services.audience_connection_update(audience_connection=conn, partner_audience_id="222")
    conn.refresh_from_db()
    assert conn.partner_audience_id == "222"
    assert deliveries() == [("ann", "add", "pending"), ("cem", "add", "pending")]


# --- the connector delete guard ----------------------------------------------------------------------------------


def test_the_delete_guard_lists_audience_connections(audience):
    config = config_for("webhook")
    connect(audience, config, partner_audience_id="seg-1")
    with pytest.raises(InUseError) as exc:
        connector_services.connector_delete(connector=config.connector)
    usage = exc.value.usages[0]
    assert (usage.kind, usage.object_id, usage.name) == ("audience", audience.pk, audience.name)
    assert "partner audience seg-1" in usage.detail
