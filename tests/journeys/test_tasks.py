"""The schedule and its tasks."""

import pytest
from django.utils import timezone
from django_q.models import Schedule

from journeys import services, tasks
from journeys.models import JourneyEvent
from tests.factories import AudienceFactory
from tests.journeys.factories import MembershipFactory, ProfileFactory, simple_definition, webhook_config

pytestmark = pytest.mark.django_db


def test_schedules_exist():
    advance = Schedule.objects.get(name="dap: advance journeys")
    assert (advance.func, advance.schedule_type, advance.minutes, advance.repeats) == (
        "journeys.tasks.advance",
        Schedule.MINUTES,
        1,
        -1,
    )
    assert Schedule.objects.get(name="dap: prune journey events").schedule_type == Schedule.DAILY


def test_advance_task_runs_the_engine():
    config = webhook_config()
    audience = AudienceFactory()
    journey = services.journey_create(name="J", definition=simple_definition(config.pk, audience_id=audience.pk))
    services.journey_publish(journey=journey)
    MembershipFactory(audience=audience)
    assert tasks.advance() == {"events": 0, "enrolled": 1, "moved": 2, "activated": 1, "completed": 1, "journeys": 1}
    assert tasks.advance([journey.pk])["enrolled"] == 0  # idempotent


def test_publishing_kicks_the_engine_on_commit(settings, django_capture_on_commit_callbacks, monkeypatch):
    settings.DAP_KICK_ON_COMMIT = True
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: queued.append((args, kwargs)))
    config = webhook_config()
    journey = services.journey_create(name="J", definition=simple_definition(config.pk, event="x"))
    with django_capture_on_commit_callbacks(execute=True):
        services.journey_publish(journey=journey)
    assert [args for args, _ in queued] == [("journeys.tasks.advance", [journey.pk])]


def test_prune_events():
    profile = ProfileFactory()
    old = timezone.now() - timezone.timedelta(days=31)
    JourneyEvent.objects.create(profile=profile, name="a", received_at=old, processed=True)
    JourneyEvent.objects.create(profile=profile, name="b", received_at=old, processed=False)
    JourneyEvent.objects.create(profile=profile, name="c", received_at=timezone.now(), processed=True)
    assert tasks.prune_events() == 1
    assert sorted(JourneyEvent.objects.values_list("name", flat=True)) == ["b", "c"]
