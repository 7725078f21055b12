"""Property-based fuzzing of the whole REST API against its own OpenAPI schema (schemathesis).

The schema is loaded in-process from /api/schema/ (the WSGI app, no server) and every operation becomes one test:
schemathesis generates valid and invalid requests (path, query, JSON, form and multipart bodies) and each answer
must not be a 5xx, must carry a documented status code and content type, and must match the documented body.

Each test starts from a seeded world (connectors of several partners, audiences with a connection, profiles,
journeys in every status, deliveries, partner calls, alerts, statistics) and calls the API as a superuser through a
DRF token. Every case runs in a savepoint that is rolled back, so what one case creates, changes or deletes never
affects the next. To reach past "404 no such object", half of the generated cases name seeded objects in the path,
and bodies that refer to objects or partners are steered to real ones, with settings, rules and definitions that are
valid or valid-but-mutated at one place (the `flatmap_case` hook below).

Two phases per operation: schemathesis' coverage phase (deterministic boundary and negative cases: each required
field missing, wrong types, limits, unexpected methods; not steered) and the fuzzing phase, MAX_EXAMPLES generated
cases (positive and negative). Bounded for CI: a fixed seed, derandomized generation, no shrinking; about 4,300 calls
in under a minute on SQLite or PostgreSQL. How to run it, and deeper: docs/api.md, "Bad input".
"""

import os
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from audiences import profiles as profile_service
from audiences import services as audience_services
from audiences.models import Audience, Profile
from connectors.models import Connector, PartnerConfig
from connectors.partners.registry import all_partners
from dap.wsgi import application
from journeys import services as journey_services
from journeys.models import JourneyEnrollment
from monitoring.models import Alert
from tests.factories import (
    VALID_SETTINGS,
    ConnectorFactory,
    DailyStatFactory,
    DeliveryAttemptFactory,
    DeliveryFactory,
    PartnerConfigFactory,
)

# CI runs 20 generated cases per operation with a fixed seed; a deeper or different search locally with e.g.
# DAP_FUZZ_EXAMPLES=200 DAP_FUZZ_SEED=7 (the failure report prints a curl command that reproduces each case).
MAX_EXAMPLES = int(os.environ.get("DAP_FUZZ_EXAMPLES", "20"))
SEED = int(os.environ.get("DAP_FUZZ_SEED", "20260601"))

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "no-shrink": True,
            "database": "none",
            # The token goes in the Authorization header of every call; generated credentials would only be 401s.
            "with-security-parameters": False,
        },
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

RULE = {
    "all": [{"attribute": "country", "op": "equals", "value": "NL"}, {"attribute": "age", "op": "gte", "value": 18}]
}
SERVER_TO_SERVER = sorted(p.key for p in all_partners(kind="server_to_server") if p.key in VALID_SETTINGS)
ALL_PARTNERS = sorted(p.key for p in all_partners())

# Any JSON value, small: what a mutation puts in place of a valid part.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=6,
)
_DROP = object()


def _places(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _places(item, (*prefix, index))


def _replaced(value, place, new):
    if not place:
        return new
    head, rest = place[0], place[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    if new is _DROP and not rest:
        del copy[head]
    else:
        copy[head] = _replaced(value[head], rest, new)
    return copy


def mutated(value):
    """`value` with one part (or the whole) replaced by any JSON value, or one key/item dropped."""
    places = list(_places(value))
    return st.tuples(st.sampled_from(places), JSON_VALUES | st.just(_DROP)).map(
        lambda pair: _replaced(value, *pair) if pair[0] or pair[1] is not _DROP else value
    )


def valid_or_mutated(value):
    return st.one_of(st.just(value), mutated(value))


@dataclass
class World:
    token: str
    # Path template -> parameter sets naming seeded objects.
    paths: dict[str, list[dict]] = field(default_factory=dict)
    connector_partner: dict[int, str] = field(default_factory=dict)
    config_ids: list[int] = field(default_factory=list)
    profile_ids: list[int] = field(default_factory=list)
    external_ids: list[str] = field(default_factory=list)
    delivery_ids: list[int] = field(default_factory=list)
    definition: dict = field(default_factory=dict)


def _seed(user) -> World:
    now = timezone.now()
    connectors = {
        key: ConnectorFactory(partner_key=key, name=f"Seeded {key}")
        for key in ("webhook", "google_dv360", "meta_custom_audiences", "xandr", "clang_batch")
    }
    configs = {key: PartnerConfigFactory(connector=connector) for key, connector in connectors.items()}
    dv360_second = PartnerConfigFactory(connector=connectors["google_dv360"], name="Brand EU")
    Connector.objects.filter(pk=connectors["meta_custom_audiences"].pk).update(status=Connector.Status.DEACTIVATED)
    PartnerConfig.objects.filter(pk=configs["clang_batch"].pk).update(health=PartnerConfig.Health.CREDENTIALS_INVALID)

    rows = [
        {
            "external_id": f"seed-{i}",
            "attributes": {"country": "NL" if i % 2 else "DE", "age": 20 + i, "first_name": f"P{i}"},
            "identifiers": {"email": f"p{i}@example.com", "customer_id": f"c-{i}"},
        }
        for i in range(6)
    ]
    rows.append({"external_id": "seed-bare"})
    profile_service.profile_bulk_upsert(rows=rows, actor=user)
    seeded_profiles = list(Profile.objects.order_by("pk"))

    rule_based = audience_services.audience_create(name="Dutch adults", rule=RULE, actor=user)
    static = audience_services.audience_create(name="VIP list", kind=Audience.Kind.STATIC, actor=user)
    unused = audience_services.audience_create(
        name="Unused", rule={"all": [{"attribute": "age", "op": "lt", "value": 5}]}, actor=user
    )
    legacy = Audience.objects.create(name="Legacy without rule")  # refresh refuses it (400)
    audience_services.audience_entries_upload(audience=static, slot="email", values=["p1@example.com"], actor=user)
    connection, _ = audience_services.audience_connection_create(
        audience=rule_based, partner_config=configs["webhook"].pk, partner_audience_id="", actor=user
    )
    audience_services.audience_refresh(audience=rule_based)

    definition = {
        "steps": [
            {"key": "start", "type": "entry", "event": "signed_up", "next": "pause"},
            {"key": "pause", "type": "wait", "duration": {"minutes": 5}, "next": "adult?"},
            {"key": "adult?", "type": "condition", "rule": RULE, "next_true": "send", "next_false": "done"},
            {"key": "send", "type": "activate", "partner_config_id": configs["webhook"].pk, "next": "done"},
            {"key": "done", "type": "exit"},
        ]
    }
    journeys = {}
    for status in ("draft", "live", "paused", "stopped"):
        journey = journey_services.journey_create(name=f"Journey {status}", definition=definition, actor=user)
        if status != "draft":
            journey_services.journey_publish(journey=journey, actor=user)
        if status == "paused":
            journey_services.journey_pause(journey=journey, actor=user)
        if status == "stopped":
            journey_services.journey_stop(journey=journey, actor=user)
        journeys[status] = journey
    journey_services.journey_event_record(event="signed_up", external_id="seed-1")
    live = journeys["live"]
    JourneyEnrollment.objects.get_or_create(
        journey=live,
        profile=seeded_profiles[2],
        defaults={
            "version": live.versions.get(),
            "step_key": "pause",
            "status": "waiting",
            "wake_at": now,
            "entered_at": now,
            "updated_at": now,
        },
    )

    deliveries = [
        DeliveryFactory(partner_config=configs["webhook"], profile=seeded_profiles[0]),
        DeliveryFactory(
            partner_config=configs["google_dv360"],
            profile=seeded_profiles[1],
            status="skipped",
            outcome="skipped_no_identifier",
        ),
    ]
    DeliveryAttemptFactory(partner_config=configs["webhook"])
    DeliveryAttemptFactory(
        partner_config=configs["google_dv360"], status_code=400, ok_count=0, error_count=10, outcome="partner_error"
    )
    for days_ago, outcome, code in (
        (0, "added", ""),
        (1, "removed", ""),
        (2, "partner_error", "400"),
        (3, "timeout", ""),
    ):
        DailyStatFactory(
            partner_config=configs["webhook"],
            day=(now - timedelta(days=days_ago)).date(),
            outcome=outcome,
            count=3,
            partner_error_code=code,
        )
    alerts = [
        Alert.objects.create(partner_config=configs["clang_batch"], kind=Alert.Kind.CREDENTIALS_INVALID, opened_at=now),
        Alert.objects.create(
            partner_config=configs["webhook"],
            kind=Alert.Kind.ERROR_RATE,
            opened_at=now - timedelta(days=1),
            resolved_at=now,
            error_rate=0.5,
        ),
    ]

    config_pairs = [{"connector_pk": c.connector_id, "id": c.pk} for c in [*configs.values(), dv360_second]]
    audiences = [{"id": a.pk} for a in (rule_based, static, unused, legacy)]
    journey_ids = [{"id": j.pk} for j in journeys.values()]
    connector_ids = [{"id": c.pk} for c in connectors.values()]
    world = World(
        token=Token.objects.create(user=user).key,
        connector_partner={c.pk: key for key, c in connectors.items()},
        config_ids=[pair["id"] for pair in config_pairs],
        profile_ids=[p.pk for p in seeded_profiles],
        external_ids=[p.external_id for p in seeded_profiles],
        delivery_ids=[d.pk for d in deliveries],
        definition=definition,
    )
    world.paths = {
        "/api/v1/alerts/{id}/": [{"id": a.pk} for a in alerts],
        "/api/v1/audiences/{audience_pk}/connections/": [{"audience_pk": a["id"]} for a in audiences],
        "/api/v1/audiences/{audience_pk}/connections/{id}/": [
            {"audience_pk": connection.audience_id, "id": connection.pk}
        ],
        "/api/v1/audiences/{id}/": audiences,
        "/api/v1/connectors/{connector_pk}/configs/": [{"connector_pk": c["id"]} for c in connector_ids],
        "/api/v1/connectors/{connector_pk}/configs/{id}/": config_pairs,
        "/api/v1/connectors/{id}/": connector_ids,
        "/api/v1/deliveries/{id}/": [{"id": pk} for pk in world.delivery_ids],
        "/api/v1/delivery-attempts/{id}/": [{"id": a} for a in _ids("connectors.DeliveryAttempt")],
        "/api/v1/journeys/{id}/": journey_ids,
        "/api/v1/partner-configs/{id}/": [{"id": pk} for pk in world.config_ids],
        "/api/v1/partners/{key}/": [{"key": key} for key in ALL_PARTNERS],
        "/api/v1/profiles/{id}/": [{"id": pk} for pk in world.profile_ids],
    }
    return world


def _ids(model_label: str) -> list[int]:
    from django.apps import apps

    return list(apps.get_model(model_label).objects.values_list("pk", flat=True))


def _path_pool(world: World, path: str) -> list[dict]:
    """Seeded parameter sets for a path template: its own, or those of the resource it hangs under
    (/audiences/{id}/refresh/ -> /audiences/{id}/)."""
    while path.count("/") > 3:
        if path in world.paths:
            return world.paths[path]
        path = path[: path.rstrip("/").rfind("/") + 1]
    return []


def _steer_body(draw, case, world: World) -> None:
    """Point bodies that refer to partners or objects at real ones (the rest stays generated)."""
    body = case.body
    if not isinstance(body, dict) or not draw(st.booleans()):
        return
    method, path = case.method.upper(), case.path
    body = dict(body)
    if method == "POST" and path == "/api/v1/connectors/":
        partner = draw(st.sampled_from(SERVER_TO_SERVER))
        body["partner"] = partner
        body["settings"] = draw(valid_or_mutated(VALID_SETTINGS[partner]))
        if draw(st.booleans()):
            body.pop("timeout_seconds", None)
    elif path.startswith("/api/v1/connectors/{connector_pk}/configs/") and method in ("POST", "PUT", "PATCH"):
        partner = world.connector_partner.get(case.path_parameters.get("connector_pk"), "webhook")
        body["settings"] = draw(valid_or_mutated(VALID_SETTINGS[partner]))
        if draw(st.booleans()):
            body.pop("timeout_seconds", None)
    elif method == "POST" and path == "/api/v1/audiences/{audience_pk}/connections/":
        body["partner_config"] = draw(st.sampled_from(world.config_ids))
    elif path in ("/api/v1/audiences/", "/api/v1/audiences/{id}/") and method in ("POST", "PUT", "PATCH"):
        body["rule"] = draw(valid_or_mutated(RULE))
    elif path in ("/api/v1/journeys/", "/api/v1/journeys/{id}/") and method in ("POST", "PUT", "PATCH"):
        body["definition"] = draw(valid_or_mutated(world.definition))
    elif method == "POST" and path in ("/api/v1/journeys/events/", "/api/v1/cookie-sync/tokens/"):
        if draw(st.booleans()):
            body.pop("profile_id", None)
            body["external_id"] = draw(st.sampled_from(world.external_ids))
        else:
            body.pop("external_id", None)
            body["profile_id"] = draw(st.sampled_from(world.profile_ids))
        if path == "/api/v1/journeys/events/":
            body["event"] = "signed_up"
    elif method == "POST" and path == "/api/v1/deliveries/replay/":
        body["ids"] = draw(st.lists(st.sampled_from(world.delivery_ids), max_size=3))
    else:
        return
    case.body = body


# The world of the running test: the steering hook reads it while hypothesis draws the cases.
_CURRENT: dict[str, World] = {}


@schema.hook("flatmap_case")
def steer_to_the_seeded_world(context, case):
    """Generated (fuzzing phase) cases: half of them name seeded objects in the path, and bodies that refer to
    partners or objects name real ones. The coverage phase's deterministic cases go out as generated."""
    return _steered(case)


@st.composite
def _steered(draw, case):
    world = _CURRENT["world"]
    pool = _path_pool(world, case.path)
    if pool and draw(st.booleans()):
        case.path_parameters = {**(case.path_parameters or {}), **draw(st.sampled_from(pool))}
    _steer_body(draw, case, world)
    return case


@pytest.fixture
def world(superuser, settings):
    settings.DAP_PROFILE_INGEST_RATE = ""  # the bulk call's rate limit would answer 429 to most cases of a deep run
    # The WSGI handler, like a server, closes the database connection when a request ends; inside the test's
    # transaction that would break it. Django's test client does the same as this while it handles a request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        _CURRENT["world"] = _seed(superuser)
        yield _CURRENT["world"]
    finally:
        _CURRENT.clear()
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
def test_api_operation_conforms_to_its_schema(case, world):
    with transaction.atomic():
        case.call_and_validate(headers={"Authorization": f"Token {world.token}"}, checks=CHECKS)
        transaction.set_rollback(True)  # every case starts from the same seeded world
