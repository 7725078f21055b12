"""Bad input: every malformed, oversized or invalid request answers a clear 4xx and writes nothing.

Each test takes a snapshot of what the API could have changed (row counts and the contents of the seeded rows), sends
the bad request and compares. Cases already proven elsewhere are not repeated here: 10,001 bulk rows and the bulk
stream limit (tests/audiences/test_profiles_api.py), settings errors of DV360 (tests/connectors/test_api.py), rule
problems with their place (tests/audiences/test_audiences_api.py), step refusals (tests/journeys/test_definition.py),
cookie-sync parameters (tests/connectors/test_cookie_sync.py). The schema fuzz test (test_schema_fuzz.py) sends
generated bad input to every operation; the cases below pin what it found and what it cannot generate (bodies that
are not JSON, bodies above the size limits, nesting deeper than the parser goes).
"""

import json

import pytest
from django.conf import settings as django_settings

from audiences import services as audience_services
from audiences.api.profiles import MAX_BULK_BODY_BYTES
from audiences.models import (
    Audience,
    AudienceConnection,
    AudienceEntry,
    AudienceMembership,
    Profile,
    ProfileIdentifier,
)
from connectors.models import Connector, ConnectorEvent, Delivery, PartnerConfig
from journeys import services as journey_services
from journeys.models import Journey, JourneyActivationStep, JourneyEvent, JourneyVersion
from tests.factories import VALID_SETTINGS, ConnectorFactory, DeliveryFactory, PartnerConfigFactory

pytestmark = pytest.mark.django_db

BULK = "/api/v1/profiles/bulk/"
NL = {"all": [{"attribute": "country", "op": "equals", "value": "NL"}]}


def snapshot() -> dict:
    """What a write through the API could touch: counts, and the contents of the rows the tests seed."""
    counts = {
        model.__name__: model.objects.count()
        for model in (
            Connector,
            PartnerConfig,
            ConnectorEvent,
            Audience,
            AudienceConnection,
            AudienceMembership,
            AudienceEntry,
            Profile,
            ProfileIdentifier,
            Journey,
            JourneyVersion,
            JourneyActivationStep,
            JourneyEvent,
            Delivery,
        )
    }
    return {
        **counts,
        "profiles": list(Profile.objects.order_by("pk").values_list("external_id", "attributes", "consent_ads")),
        "identifiers": sorted(ProfileIdentifier.objects.values_list("profile_id", "slot", "value")),
        "configs": [
            (c.name, c.settings, c.secrets_encrypted, c.timeout_seconds, c.health)
            for c in PartnerConfig.objects.order_by("pk")
        ],
        "connectors": list(Connector.objects.order_by("pk").values_list("name", "status")),
        "audiences": list(Audience.objects.order_by("pk").values_list("name", "rule", "description")),
        "journeys": list(Journey.objects.order_by("pk").values_list("name", "status", "definition")),
    }


@pytest.fixture
def world(marketing_admin):
    """A profile, connectors of two partners, a connected audience with a member, a live journey."""
    profile = Profile.objects.create(external_id="crm-1", attributes={"country": "NL", "tier": "silver"})
    ProfileIdentifier.objects.create(profile=profile, slot="email", value="jan@example.com")
    webhook = PartnerConfigFactory(connector=ConnectorFactory(partner_key="webhook", name="Hook"))
    dv360 = PartnerConfigFactory(connector=ConnectorFactory(partner_key="google_dv360", name="DV360"))
    audience = audience_services.audience_create(name="Dutch", rule=NL)
    audience_services.audience_connection_create(audience=audience, partner_config=webhook.pk, partner_audience_id="")
    audience_services.audience_refresh(audience=audience)
    definition = {
        "steps": [
            {"key": "start", "type": "entry", "audience_id": audience.pk, "next": "send"},
            {"key": "send", "type": "activate", "partner_config_id": webhook.pk, "next": "done"},
            {"key": "done", "type": "exit"},
        ]
    }
    journey = journey_services.journey_create(name="Welcome", definition=definition)
    journey_services.journey_publish(journey=journey)
    DeliveryFactory(partner_config=webhook, profile=profile)
    assert AudienceMembership.objects.count() == 1 and JourneyActivationStep.objects.count() == 2
    return {"profile": profile, "webhook": webhook, "dv360": dv360, "audience": audience, "journey": journey}


# --- POST /api/v1/profiles/bulk/ ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b'{"profiles": [{"external_id": "crm-1"', "application/json", 400, "JSON parse error"),  # truncated
        (b'{"profiles": []} {"profiles": []}', "application/json", 400, "JSON parse error"),  # trailing data
        (b"{'profiles': []}", "application/json", 400, "JSON parse error"),  # not JSON quotes
        (b'{"profiles": [{"external_id": "\xff\xfe"}]}', "application/json", 400, "JSON parse error"),  # not UTF-8
        (b'{"profiles": [{"external_id": "x", "attributes": {"n": 1e400}}]}', "application/json", 400, "out of range"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nests too deeply"),
        (b"", "application/json", 400, "This field is required."),
        (b'[{"external_id": "crm-1"}]', "application/json", 400, "Expected a dictionary"),
        (b'"profiles"', "application/json", 400, "Expected a dictionary"),
        (b"null", "application/json", 400, "No data provided"),
        (b"profiles=crm-1", "application/x-www-form-urlencoded", 415, "Unsupported media type"),
        (b"crm-1\ncrm-2\n", "text/csv", 415, "Unsupported media type"),
    ],
    ids=[
        "truncated",
        "trailing-data",
        "single-quotes",
        "not-utf8",
        "number-out-of-range",
        "nested-100000-deep",
        "empty",
        "top-level-list",
        "top-level-string",
        "top-level-null",
        "form-encoded",
        "csv",
    ],
)
def test_bulk_body_that_is_not_a_json_object_is_refused(api, world, body, content_type, status, message):
    before = snapshot()
    response = api.generic("POST", BULK, body, content_type=content_type)
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert message in json.dumps(response.json())
    assert snapshot() == before


def test_bulk_rows_of_the_wrong_types_are_listed_by_index_and_nothing_is_written(api, world):
    rows = [
        {"external_id": "crm-1", "attributes": {"tier": "gold"}, "consent_ads": False},  # valid: an update
        {"external_id": "crm-2"},  # valid: a new profile
        {"external_id": 42},
        {"external_id": "a", "attributes": ["tier", "gold"]},
        {"external_id": "b", "identifiers": "b@example.com"},
        {"external_id": "c", "consent_ads": "yes"},
        "crm-3",
        None,
        {"external_id": "d", "attributes": {"note": "a\u0000b"}},
        {"external_id": "e", "attributes": {"n": {"k\u0000": 1}}},
        {"external_id": "f", "identifiers": {"email": ["f@example.com"]}},
        {"external_id": "g", "attributes": {"deep": [[[[[[[[[["too deep"]]]]]]]]]]}},
        {"external_id": "h", "identifiers": {"xandr_uid": "18446744073709551616"}},  # above 2^64 - 1
    ]
    before = snapshot()
    response = api.post(BULK, {"profiles": rows}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "11 invalid profiles; nothing was written."
    assert [e["index"] for e in body["errors"]] == list(range(2, 13))
    by_index = {e["index"]: e["errors"] for e in body["errors"]}
    assert by_index[8] == {"attributes.note": ["Null characters are not allowed."]}
    assert by_index[9] == {"attributes.n": ["Null characters are not allowed."]}
    assert snapshot() == before


def test_bulk_body_declared_above_the_limit_is_refused_before_it_is_read(api, world):
    """The limit is MAX_BULK_BODY_BYTES (64 MB, room for 10,000 rows): a larger Content-Length is refused at once
    with 413 (a body that streams past the limit is cut at limit + 1 byte: tests/audiences/test_profiles_api.py)."""
    before = snapshot()
    response = api.generic(
        "POST", BULK, b'{"profiles": []}', content_type="application/json", CONTENT_LENGTH=str(MAX_BULK_BODY_BYTES + 1)
    )
    assert response.status_code == 413
    assert response.json() == {
        "detail": f"The body is above {MAX_BULK_BODY_BYTES} bytes; send fewer profiles per call."
    }
    assert snapshot() == before


# --- Bodies above Django's limit on every other operation ----------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
@pytest.mark.parametrize("path", ["/api/v1/journeys/", "/api/v1/connectors/", "/api/v1/audiences/"])
def test_body_above_data_upload_max_memory_size_is_a_413(api, world, path, content_type):
    limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if content_type == "application/json":
        body = json.dumps({"name": "Big", "description": "x" * limit})
    else:
        body = "name=Big&description=" + "x" * limit
    before = snapshot()
    response = api.generic("POST", path, body, content_type=content_type)
    assert response.status_code == 413
    assert response.json() == {"detail": f"The request body is above {limit} bytes."}
    assert snapshot() == before


# --- Text and numbers the database cannot store, in any JSON the API keeps ----------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "errors"),
    [
        (
            "/api/v1/audiences/",
            {"name": "N", "rule": {"all": [{"attribute": "a", "op": "equals", "value": "x\u0000"}]}},
            {"rule": ["Null characters are not allowed."]},
        ),
        (
            "/api/v1/journeys/",
            {"name": "N", "definition": {"steps": [{"key": "a", "type": "exit", "label": "\u0000"}]}},
            {"definition": ["Null characters are not allowed."]},
        ),
        (
            "/api/v1/journeys/events/",
            {"external_id": "crm-1", "event": "signed_up", "properties": {"k": ["\u0000"]}},
            {"properties": ["Null characters are not allowed."]},
        ),
        (
            "/api/v1/connectors/",
            {"partner": "xandr", "name": "N", "settings": {**VALID_SETTINGS["xandr"], "username": "a\u0000b"}},
            {"settings": ["Null characters are not allowed."]},
        ),
        (
            "/api/v1/audiences/",
            {"name": "N\u0000", "rule": NL},
            {"name": ["Null characters are not allowed."]},
        ),
    ],
    ids=["audience-rule", "journey-definition", "event-properties", "connector-settings", "audience-name"],
)
def test_null_characters_are_refused_on_every_database(api, world, path, body, errors):
    """PostgreSQL stores U+0000 neither in text nor in jsonb: without the check this was a 500 there (and stored on
    SQLite); now the same 400 everywhere."""
    before = snapshot()
    response = api.post(path, body, format="json")
    assert response.status_code == 400
    assert response.json() == errors
    assert snapshot() == before


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/connectors/?search=a%00b",
        "/api/v1/journeys/?search=%00",
        "/api/v1/audiences/?search=%00",
        "/api/v1/profiles/?external_id=crm%00",
        "/api/v1/connectors/?status=paused",
        "/api/v1/journeys/?status=archived",
        "/api/v1/deliveries/?connector=9223372036854775808",
        "/api/v1/delivery-attempts/?partner_config=-1",
        "/api/v1/alerts/?connector=99999999999999999999999",
    ],
)
def test_bad_query_parameters_are_a_400_per_parameter(api, world, url):
    response = api.get(url)
    assert response.status_code == 400
    name = url.split("?")[1].split("=")[0]
    assert list(response.json()) == [name]


@pytest.mark.parametrize("path", ["/api/v1/connectors/abc/", "/api/v1/connectors/1/configs/x/", "/api/v1/nothing/"])
def test_an_api_path_that_matches_nothing_is_a_json_404(api, world, path):
    """Was Django's HTML 404 page: the schema documents JSON errors only."""
    response = api.get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    page = api.get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_a_page_size_beyond_the_ceiling_is_cut_to_1000(api, world):
    """limit=10^30 used to reach the database as LIMIT and overflow it (500); the ceiling is 1000 rows."""
    Profile.objects.bulk_create(Profile(external_id=f"p{i}") for i in range(1005))
    page = api.get("/api/v1/profiles/?limit=1000000000000000000000000000000&offset=2")
    assert page.status_code == 200
    assert len(page.json()["results"]) == 1000 and page.json()["count"] == 1006


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/api/v1/deliveries/replay/", {"ids": [2**70]}, "ids"),
        ("post", "/api/v1/cookie-sync/tokens/", {"profile_id": 2**63}, "profile_id"),
        ("post", "/api/v1/journeys/events/", {"profile_id": 2**64, "event": "signed_up"}, "profile_id"),
        ("post", "audience-connections", {"partner_config": 2**70}, "partner_config"),
    ],
)
def test_ids_beyond_64_bits_are_a_400(api, world, method, path, body, field):
    if path == "audience-connections":
        path = f"/api/v1/audiences/{world['audience'].pk}/connections/"
    before = snapshot()
    response = getattr(api, method)(path, body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert snapshot() == before


# --- Audience rules -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"all": [{"attribute": "orders", "op": "gt", "value": 10**40}]},
            "all[0].value: whole numbers from -9223372036854775808 to 9223372036854775807",
        ),
        (
            {"any": [{"attribute": "id", "op": "in", "value": [1, -(2**64)]}]},
            "any[0].value: whole numbers from -9223372036854775808 to 9223372036854775807",
        ),
        ({"all": [{"attribute": "country", "op": "equals", "value": {"nested": 1}}]}, "all[0].value: text"),
        ({"all": [{"attribute": "country", "op": "contains"}]}, "all[0].value: required"),
        ([NL], 'A rule is a group: {"all": [...]} or {"any": [...]}.'),
    ],
    ids=["beyond-64-bits", "in-beyond-64-bits", "object-value", "missing-value", "list"],
)
@pytest.mark.parametrize("method", ["put", "patch"])
def test_an_invalid_rule_leaves_the_audience_its_members_and_the_outbox_alone(api, world, method, rule, message):
    """A rule with a number beyond 64 bits was accepted, then every refresh failed with a 500 (SQLite)."""
    audience = world["audience"]
    before = snapshot()
    response = getattr(api, method)(f"/api/v1/audiences/{audience.pk}/", {"name": "Renamed", "rule": rule}, "json")
    assert response.status_code == 400
    assert any(m.startswith(message) for m in response.json()["rule"])
    assert snapshot() == before


def test_a_rule_nested_deeper_than_json_goes_is_a_400(api, world):
    condition = json.dumps({"attribute": "a", "op": "exists", "value": True})
    rule = '{"all": [' * 5000 + condition + "]}" * 5000
    before = snapshot()
    response = api.generic("POST", "/api/v1/audiences/", f'{{"name": "Deep", "rule": {rule}}}', "application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON parse error - the JSON nests too deeply"}
    # The same JSON in a form field (a JSONField reads it itself).
    response = api.post("/api/v1/audiences/", {"name": "Deep", "rule": rule})
    assert response.status_code == 400 and response.json() == {"rule": ["Value must be valid JSON."]}
    assert snapshot() == before


# --- Partner settings -----------------------------------------------------------------------------------------------


BAD_SETTINGS = {
    "webhook": {"endpoint_url": "ftp://hooks.example.com/dap", "identifier_slot": "fax"},
    "meta_custom_audiences": {"ad_account_id": "act_12ab"},
    "xandr": {"member_id": "１２３４", "mode": "sometimes"},  # full-width digits: int() reads them, partners do not
    "clang_batch": {"uuid": "not-a-uuid", "group_id": 2**70},
    "azure_event_hubs": {"namespace": "x", "tier": "platinum"},
    "the_trade_desk": {"advertiser_id": "a1 b2", "crm_data_id": "٣٣٣"},
    "google_ads_customer_match": {"operating_account_id": "123-456", "terms_of_service_accepted": "maybe"},
    "google_cm360": {"profile_id": "٧٦٥٤٣٢١", "default_value": "١٢"},  # Arabic-Indic digits
    "google_dv360": {"advertiser_id": "１２３４５６７"},
}


@pytest.mark.parametrize("partner", sorted(BAD_SETTINGS))
def test_invalid_settings_of_a_new_connector_are_listed_per_field_and_nothing_is_created(api, world, partner):
    bad = BAD_SETTINGS[partner]
    body = {"partner": partner, "name": f"New {partner}", "settings": {**VALID_SETTINGS[partner], **bad}}
    before = snapshot()
    response = api.post("/api/v1/connectors/", body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"settings"}
    assert set(response.json()["settings"]) == set(bad)
    assert snapshot() == before


def test_invalid_settings_of_a_new_or_edited_configuration_change_nothing(api, world):
    dv360 = world["dv360"]
    url = f"/api/v1/connectors/{dv360.connector_id}/configs/"
    before = snapshot()
    bad = {**VALID_SETTINGS["google_dv360"], "advertiser_id": "x"}
    created = api.post(url, {"name": "Brand EU", "settings": bad}, format="json")
    assert created.status_code == 400 and "advertiser_id" in created.json()["settings"]
    edits = [
        {"name": "Renamed", "settings": {"advertiser_id": "１２３", "client_secret": "new-secret-value-123456"}},
        {"name": "Renamed", "settings": ["advertiser_id", "1234567"]},
        {"name": "Renamed", "settings": {"unknown": "1"}},
        {"name": "Renamed", "timeout_seconds": 1e300},
        {"name": "", "settings": {"client_id": "\u0000"}},
    ]
    for edit in edits:
        for method in ("patch", "put"):
            response = getattr(api, method)(f"{url}{dv360.pk}/", edit, format="json")
            assert response.status_code == 400, (edit, response.content)
    assert snapshot() == before


# --- Journey definitions --------------------------------------------------------------------------------------------


def _with_step(definition: dict, index: int, **changes) -> dict:
    steps = [dict(step) for step in definition["steps"]]
    steps[index].update(changes)
    return {"steps": steps}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": {"kind": "exit"}}, "type must be one of"),  # was a 500 (unhashable)
        ({"type": ["exit"]}, "type must be one of"),
        ({"partner_config_id": 2**70}, "partner_config_id is required"),  # was a 500 (64-bit overflow)
        ({"partner_config_id": 987654}, "partner configuration 987654 does not exist"),
        ({"next": {"key": "done"}}, "next is the key of another step"),
        ({"action": "delete"}, "action is one of add, update, remove"),
    ],
)
def test_an_invalid_draft_leaves_a_live_journey_and_its_links_alone(api, world, change, message):
    journey = world["journey"]
    definition = _with_step(journey.definition, 1, **change)
    before = snapshot()
    response = api.patch(f"/api/v1/journeys/{journey.pk}/", {"definition": definition}, format="json")
    assert response.status_code == 400
    assert any(message in m for m in response.json()["definition"]), response.json()
    assert snapshot() == before
    assert api.get(f"/api/v1/journeys/{journey.pk}/").json()["has_unpublished_changes"] is False


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            {"key": "start", "type": "entry", "audience_id": 2**70, "next": "done"},
            "audience_id is the id of an audience",
        ),
        ({"key": "start", "type": "entry", "event": "e", "next": "w"}, "a wait lasts at most 366 days"),
    ],
)
def test_a_new_journey_with_ids_or_waits_out_of_range_is_a_400(api, world, step, message):
    """Were 500s: an id beyond 64 bits overflowed the database lookup, 10^20 days overflowed the duration."""
    steps = [
        step,
        {"key": "w", "type": "wait", "duration": {"days": 10**20}, "next": "done"},
        {"key": "done", "type": "exit"},
    ]
    if "audience_id" in step:
        steps = [step, steps[2]]
    before = snapshot()
    response = api.post("/api/v1/journeys/", {"name": "Out of range", "definition": {"steps": steps}}, format="json")
    assert response.status_code == 400
    assert any(message in m for m in response.json()["definition"]), response.json()
    assert snapshot() == before
