"""Security tests: one set of real objects (every model the pages, the API and the admin show) and a client per role.

`world` is built once per test module inside an outer transaction that is rolled back when the module ends; each
test runs in a savepoint inside it (pytest-django's transaction), so a test may delete or change anything.
"""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.utils import timezone

ROLES = ("anonymous", "viewer", "marketer", "superuser")


@dataclass(frozen=True)
class World:
    """Primary keys (never model instances: a test may delete the rows, the savepoint brings them back)."""

    users: dict
    connector: int
    config: int
    config2: int
    audience: int
    static_audience: int
    connection: int
    journey: int
    version: int
    step: int
    enrollment: int
    event: int
    profile: int
    identifier: int
    membership: int
    entry: int
    delivery: int
    attempt: int
    stat: int
    connector_event: int
    alert: int
    heartbeat: int
    group: int
    schedule: int
    success: str
    failure: str
    ormq: int


def build_world() -> World:
    from django.contrib.auth.models import Group
    from django_q.models import OrmQ, Schedule, Task
    from rest_framework.authtoken.models import Token

    from audiences.models import AudienceEntry, AudienceMembership, ProfileIdentifier
    from connectors.models import ConnectorEvent
    from journeys.models import JourneyEnrollment, JourneyEvent
    from monitoring.models import Alert, WorkerHeartbeat
    from tests.factories import (
        AudienceConnectionFactory,
        AudienceFactory,
        DailyStatFactory,
        DeliveryAttemptFactory,
        DeliveryFactory,
        JourneyActivationStepFactory,
        PartnerConfigFactory,
        ProfileFactory,
        UserFactory,
    )

    now = timezone.now()
    users = {
        "viewer": UserFactory(username="sec-viewer", groups=["Viewer"]).pk,
        "marketer": UserFactory(username="sec-marketer", groups=["Marketing admin"]).pk,
        "superuser": UserFactory(username="sec-root", is_staff=True, is_superuser=True).pk,
    }
    config = PartnerConfigFactory()
    config2 = PartnerConfigFactory(connector=config.connector)
    audience = AudienceFactory(rule={"all": [{"attribute": "country", "op": "equals", "value": "NL"}]})
    static = AudienceFactory(kind="static", rule=None)
    connection = AudienceConnectionFactory(audience=audience, partner_config=config)
    step = JourneyActivationStepFactory(partner_config=config)
    profile = ProfileFactory(external_id="sec-profile")
    identifier = ProfileIdentifier.objects.create(profile=profile, slot="customer_id", value="C-SEC-1")
    membership = AudienceMembership.objects.create(audience=audience, profile=profile)
    entry = AudienceEntry.objects.create(audience=static, slot="customer_id", value="C-SEC-1")
    enrollment = JourneyEnrollment.objects.create(
        journey=step.journey, version=step.version, profile=profile, step_key="start", entered_at=now, updated_at=now
    )
    event = JourneyEvent.objects.create(profile=profile, name="purchase", received_at=now)
    delivery = DeliveryFactory(partner_config=config, profile=profile)
    attempt = DeliveryAttemptFactory(partner_config=config)
    stat = DailyStatFactory(partner_config=config, day=now.date())
    connector_event = ConnectorEvent.objects.create(
        connector=config.connector, connector_name=config.connector.name, action=ConnectorEvent.Action.CREATED
    )
    alert = Alert.objects.create(partner_config=config, kind=Alert.Kind.ERROR_RATE, opened_at=now)
    heartbeat = WorkerHeartbeat.objects.create(host="sec-worker", beat_at=now)
    Token.objects.create(user_id=users["superuser"], key="sec" + "0" * 37)
    task = {"func": "math.floor", "started": now - timedelta(seconds=1), "stopped": now}
    success = Task.objects.create(id="a" * 32, name="sec-success", success=True, **task)
    failure = Task.objects.create(id="b" * 32, name="sec-failure", success=False, **task)
    return World(
        users=users,
        connector=config.connector_id,
        config=config.pk,
        config2=config2.pk,
        audience=audience.pk,
        static_audience=static.pk,
        connection=connection.pk,
        journey=step.journey_id,
        version=step.version_id,
        step=step.pk,
        enrollment=enrollment.pk,
        event=event.pk,
        profile=profile.pk,
        identifier=identifier.pk,
        membership=membership.pk,
        entry=entry.pk,
        delivery=delivery.pk,
        attempt=attempt.pk,
        stat=stat.pk,
        connector_event=connector_event.pk,
        alert=alert.pk,
        heartbeat=heartbeat.pk,
        group=Group.objects.get(name="Viewer").pk,
        schedule=Schedule.objects.create(func="math.floor", name="sec-schedule").pk,
        success=success.pk,
        failure=failure.pk,
        ormq=OrmQ.objects.create(key="sec", payload="x", lock=now).pk,
    )


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield build_world()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


def role_client(role: str, world: World, **kwargs) -> Client:
    kwargs.setdefault("raise_request_exception", False)
    client = Client(**kwargs)
    if role != "anonymous":
        client.force_login(get_user_model().objects.get(pk=world.users[role]))
    return client
