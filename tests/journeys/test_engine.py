"""The engine: enrollment from audiences and events, and every step type, set-based and exactly once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.models import AudienceMembership
from connectors import services as connector_services
from connectors.models import Delivery
from journeys import engine, services
from journeys.models import JourneyEnrollment
from tests.factories import AudienceFactory
from tests.journeys.factories import (
    MembershipFactory,
    ProfileFactory,
    activate,
    entry_audience,
    entry_event,
    exit_step,
    simple_definition,
    wait,
    webhook_config,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def config():
    return webhook_config()


@pytest.fixture
def audience():
    return AudienceFactory()


def live(definition, name="J"):
    journey = services.journey_create(name=name, definition=definition)
    services.journey_publish(journey=journey)
    journey.refresh_from_db()
    return journey


def enter(audience, n=3, **attributes):
    profiles = [ProfileFactory(attributes=attributes) for _ in range(n)]
    for p in profiles:
        MembershipFactory(audience=audience, profile=p)
    return profiles


def positions(journey) -> dict[int, tuple[str, str]]:
    return {e.profile_id: (e.step_key, e.status) for e in JourneyEnrollment.objects.filter(journey=journey)}


def sent(journey=None) -> list[tuple]:
    qs = Delivery.objects.order_by("profile_id", "id")
    if journey is not None:
        qs = qs.filter(journey=journey)
    return list(qs.values_list("profile_id", "partner_config_id", "action", "journey_id", "status"))


class TestAudienceEntry:
    def test_entrants_after_going_live_are_enrolled_once(self, config, audience):
        before = enter(audience, 2)
        journey = live(simple_definition(config.pk, audience_id=audience.pk))
        after = enter(audience, 3)
        report = engine.journeys_advance()
        assert report.enrolled == 3 and report.activated == 3 and report.completed == 3
        assert set(positions(journey)) == {p.pk for p in after}
        assert all(pos == ("done", "completed") for pos in positions(journey).values())
        assert sent() == [(p.pk, config.pk, "add", journey.pk, "pending") for p in after]
        # Running again enrolls nobody again, sends nothing again.
        again = engine.journeys_advance()
        assert (again.enrolled, again.activated) == (0, 0)
        assert JourneyEnrollment.objects.count() == 3 and Delivery.objects.count() == 3
        assert not set(positions(journey)) & {p.pk for p in before}

    def test_leaving_and_entering_again_enrolls_again(self, config, audience):
        journey = live(simple_definition(config.pk, audience_id=audience.pk))
        (profile,) = enter(audience, 1)
        engine.journeys_advance()
        AudienceMembership.objects.filter(profile=profile).delete()
        MembershipFactory(audience=audience, profile=profile)
        report = engine.journeys_advance()
        assert (report.enrolled, report.activated) == (1, 1)
        assert JourneyEnrollment.objects.filter(journey=journey, profile=profile).count() == 2
        # (The outbox keeps the newest pending change per profile and configuration.)
        assert sent() == [(profile.pk, config.pk, "add", journey.pk, "pending")]

    def test_entering_again_while_in_the_journey_is_ignored(self, config, audience):
        journey = live({"steps": [entry_audience(audience.pk, "pause"), wait("pause", "done", hours=1), exit_step()]})
        (profile,) = enter(audience, 1)
        engine.journeys_advance()
        AudienceMembership.objects.filter(profile=profile).delete()
        MembershipFactory(audience=audience, profile=profile)
        engine.journeys_advance(now=timezone.now() + timedelta(hours=2))
        assert positions(journey) == {profile.pk: ("done", "completed")}
        assert engine.journeys_advance(now=timezone.now() + timedelta(hours=3)).enrolled == 0

    def test_a_membership_written_after_the_run_read_its_clock_is_not_taken_twice(self, config, audience):
        journey = live(simple_definition(config.pk, audience_id=audience.pk))
        (profile,) = enter(audience, 1)
        engine.journeys_advance(now=timezone.now() - timedelta(seconds=30))  # a clock read before the entry
        enrollment = JourneyEnrollment.objects.get(journey=journey)
        assert enrollment.entered_at >= AudienceMembership.objects.get(profile=profile).entered_at
        assert enrollment.finished_at >= enrollment.entered_at
        assert engine.journeys_advance().enrolled == 0

    def test_publishing_a_new_version_enrolls_the_earlier_entrants_on_the_earlier_version(self, config, audience):
        journey = live(simple_definition(config.pk, audience_id=audience.pk))
        early = enter(audience, 2)
        other = webhook_config(name="Other")
        services.journey_update(journey=journey, definition=simple_definition(other.pk, audience_id=audience.pk))
        services.journey_publish(journey=journey)
        late = enter(audience, 1)
        engine.journeys_advance()
        versions = dict(JourneyEnrollment.objects.values_list("profile_id", "version__number"))
        assert versions == {early[0].pk: 1, early[1].pk: 1, late[0].pk: 2}
        assert {(p, c) for p, c, *_ in sent()} == {(early[0].pk, config.pk), (early[1].pk, config.pk),
                                                   (late[0].pk, other.pk)}  # fmt: skip

    def test_the_entry_window_follows_the_scans(self, config, audience):
        journey = live(simple_definition(config.pk, audience_id=audience.pk))
        engine.journeys_advance()
        journey.refresh_from_db()
        # Never ahead of the last scan minus the look-back, never behind when the journey went live.
        assert journey.entries_since <= timezone.now() - engine.ENTRY_LOOKBACK or (
            journey.entries_since == journey.published_at
        )


class TestSteps:
    def test_wait_holds_until_wake_at(self, config, audience):
        journey = live({"steps": [entry_audience(audience.pk, "pause"), wait("pause", "send", minutes=30),
                                  activate(config.pk), exit_step()]})  # fmt: skip
        profiles = enter(audience, 2)
        now = timezone.now()
        engine.journeys_advance(now=now)
        waiting = JourneyEnrollment.objects.filter(journey=journey)
        assert {(e.step_key, e.status, e.wake_at) for e in waiting} == {
            ("pause", "waiting", now + timedelta(minutes=30))
        }
        engine.journeys_advance(now=now + timedelta(minutes=29))
        assert Delivery.objects.count() == 0
        report = engine.journeys_advance(now=now + timedelta(minutes=30))
        assert report.activated == 2
        assert all(pos == ("done", "completed") for pos in positions(journey).values())
        assert {row[0] for row in sent()} == {p.pk for p in profiles}
        assert JourneyEnrollment.objects.filter(wake_at__isnull=False).count() == 0

    def test_condition_sends_each_profile_down_its_branch(self, config, audience):
        rule = {"all": [{"attribute": "orders", "op": "gte", "value": 3}]}
        journey = live({"steps": [
            entry_audience(audience.pk, "big?"),
            {"key": "big?", "type": "condition", "rule": rule, "next_true": "send", "next_false": "done"},
            activate(config.pk),
            exit_step(),
        ]})  # fmt: skip
        big = enter(audience, 2, orders=5)
        small = enter(audience, 2, orders=1)
        missing = enter(audience, 1)
        engine.journeys_advance()
        assert {row[0] for row in sent()} == {p.pk for p in big}
        assert set(positions(journey)) == {p.pk for p in big + small + missing}

    def test_activation_sends_the_step_settings_once_with_the_journey(self, config, audience):
        journey = live({"steps": [entry_audience(audience.pk), activate(config.pk, action="update"), exit_step()]})
        profiles = enter(audience, 4)
        engine.journeys_advance()
        engine.journeys_advance()
        assert sent(journey) == [(p.pk, config.pk, "update", journey.pk, "pending") for p in profiles]

    def test_a_stale_claim_moves_and_sends_nothing(self, config, audience, monkeypatch):
        """Two engines claiming the same enrollments: the move names the step it moves from, so only one moves them
        and only that one enqueues."""
        journey = live({"steps": [entry_audience(audience.pk), activate(config.pk), exit_step()]})
        enter(audience, 3)
        version = journey.versions.get()
        engine.enroll_audience_entrants(journey=journey, version=version, now=timezone.now(), report=engine.Report())
        JourneyEnrollment.objects.update(step_key="send")
        stale = list(JourneyEnrollment.objects.values_list("id", flat=True))
        monkeypatch.setattr(engine, "_claim", lambda *args, **kwargs: stale)
        step = version.definition["steps"][1]
        steps = {s["key"]: s for s in version.definition["steps"]}
        first = engine._run_step(journey, version, step, steps, timezone.now(), engine.Report(), None)
        second = engine._run_step(journey, version, step, steps, timezone.now(), engine.Report(), None)
        assert (first, second) == (3, 0)
        assert Delivery.objects.count() == 3

    def test_bounded_batches_continue_on_the_next_run(self, config, audience, monkeypatch):
        monkeypatch.setattr(engine, "BATCH", 2)
        monkeypatch.setattr(engine, "MAX_PASSES", 1)
        journey = live(simple_definition(config.pk, audience_id=audience.pk))
        enter(audience, 5)
        engine.journeys_advance()
        assert Delivery.objects.count() == 2
        for _ in range(3):
            engine.journeys_advance()
        assert Delivery.objects.count() == 5
        assert all(pos == ("done", "completed") for pos in positions(journey).values())

    def test_a_deactivated_connector_records_skips(self, config, audience):
        connector_services.connector_deactivate(connector=config.connector)
        live(simple_definition(config.pk, audience_id=audience.pk))
        enter(audience, 2)
        engine.journeys_advance()
        assert {row[4] for row in sent()} == {"skipped"}

    def test_draft_edits_never_change_what_a_live_journey_sends(self, config, audience):
        journey = live({"steps": [entry_audience(audience.pk, "pause"), wait("pause", "send", minutes=5),
                                  activate(config.pk), exit_step()]})  # fmt: skip
        other = webhook_config(name="Other")
        services.journey_update(journey=journey, definition=simple_definition(other.pk, audience_id=audience.pk))
        first = enter(audience, 2)
        now = timezone.now()
        engine.journeys_advance(now=now)
        engine.journeys_advance(now=now + timedelta(minutes=5))
        assert {row[1] for row in sent()} == {config.pk}
        # Until published, new entrants run version 1 too; once published, new entrants take version 2 and those
        # already in finish version 1.
        second_wave = enter(audience, 1)
        engine.journeys_advance(now=now + timedelta(minutes=6))
        assert {row[1] for row in sent()} == {config.pk}
        services.journey_publish(journey=journey)
        engine.journeys_advance(now=now + timedelta(minutes=7))
        third = enter(audience, 1)
        engine.journeys_advance(now=now + timedelta(minutes=8))
        engine.journeys_advance(now=now + timedelta(minutes=14))  # both waits over
        by_profile = {row[0]: row[1] for row in sent()}
        assert by_profile == {first[0].pk: config.pk, first[1].pk: config.pk, second_wave[0].pk: config.pk,
                              third[0].pk: other.pk}  # fmt: skip

    def test_enrollments_keep_their_version(self, config, audience):
        journey = live({"steps": [entry_audience(audience.pk, "pause"), wait("pause", "send", minutes=10),
                                  activate(config.pk), exit_step()]})  # fmt: skip
        (profile,) = enter(audience, 1)
        now = timezone.now()
        engine.journeys_advance(now=now)
        other = webhook_config(name="Other")
        services.journey_update(journey=journey, definition=simple_definition(other.pk, audience_id=audience.pk))
        services.journey_publish(journey=journey)
        engine.journeys_advance(now=now + timedelta(minutes=10))
        assert sent() == [(profile.pk, config.pk, "add", journey.pk, "pending")]
        assert JourneyEnrollment.objects.get(profile=profile).version.number == 1


class TestStatuses:
    def test_paused_journeys_wait_and_take_nobody_in(self, config, audience):
        journey = live({"steps": [entry_audience(audience.pk, "pause"), wait("pause", "send", minutes=1),
                                  activate(config.pk), exit_step()]})  # fmt: skip
        (waiting,) = enter(audience, 1)
        now = timezone.now()
        engine.journeys_advance(now=now)
        services.journey_pause(journey=journey)
        during = enter(audience, 1)
        report = engine.journeys_advance(now=now + timedelta(minutes=5))
        assert (report.enrolled, report.moved) == (0, 0)
        assert positions(journey) == {waiting.pk: ("pause", "waiting")}
        services.journey_resume(journey=journey)
        engine.journeys_advance(now=now + timedelta(minutes=6))
        assert positions(journey) == {waiting.pk: ("done", "completed")}
        assert during[0].pk not in positions(journey)

    def test_stopped_journeys_exit_everyone_and_send_nothing_more(self, config, audience):
        journey = live({"steps": [entry_audience(audience.pk, "pause"), wait("pause", "send", minutes=1),
                                  activate(config.pk), exit_step()]})  # fmt: skip
        enter(audience, 2)
        now = timezone.now()
        engine.journeys_advance(now=now)
        services.journey_stop(journey=journey)
        engine.journeys_advance(now=now + timedelta(minutes=5))
        assert set(positions(journey).values()) == {("pause", "exited")}
        assert Delivery.objects.count() == 0


class TestEventEntry:
    def test_an_event_enrolls_and_carries_the_profile_through(self, config):
        journey = live(simple_definition(config.pk, event="signed_up"))
        unrelated = live(simple_definition(config.pk, event="churned"), name="Other")
        profile = ProfileFactory(external_id="crm-1")
        event, enrolled = services.journey_event_record(event="signed_up", external_id="crm-1")
        assert enrolled == {journey.pk: 1}
        assert positions(journey) == {profile.pk: ("done", "completed")}
        assert positions(unrelated) == {}
        assert sent() == [(profile.pk, config.pk, "add", journey.pk, "pending")]
        # The schedule finds nothing left to do for it.
        assert engine.journeys_advance().events == 0
        assert Delivery.objects.count() == 1

    def test_event_enrollment_stops_at_a_wait(self, config):
        journey = live({"steps": [entry_event("signed_up", "pause"), wait("pause", "send", hours=1),
                                  activate(config.pk), exit_step()]})  # fmt: skip
        profile = ProfileFactory()
        services.journey_event_record(event="signed_up", profile_id=profile.pk)
        services.journey_event_record(event="signed_up", profile_id=profile.pk)  # already in: ignored
        assert positions(journey) == {profile.pk: ("pause", "waiting")}
        engine.journeys_advance(now=timezone.now() + timedelta(hours=1, seconds=1))
        assert positions(journey) == {profile.pk: ("done", "completed")}
        assert len(sent()) == 1

    def test_unprocessed_events_are_processed_by_the_schedule_set_based(self, config):
        from journeys.models import JourneyEvent

        journey = live(simple_definition(config.pk, event="bought"))
        profiles = [ProfileFactory() for _ in range(3)]
        now = timezone.now()
        JourneyEvent.objects.bulk_create(
            [JourneyEvent(profile=p, name="bought", received_at=now) for p in profiles]
            + [JourneyEvent(profile=profiles[0], name="bought", received_at=now)]
        )
        report = engine.journeys_advance()
        assert (report.events, report.enrolled, report.activated) == (4, 3, 3)
        assert set(positions(journey)) == {p.pk for p in profiles}
        assert not JourneyEvent.objects.filter(processed=False).exists()

    def test_events_for_paused_journeys_enroll_nobody(self, config):
        journey = live(simple_definition(config.pk, event="signed_up"))
        services.journey_pause(journey=journey)
        profile = ProfileFactory()
        _, enrolled = services.journey_event_record(event="signed_up", profile_id=profile.pk)
        assert enrolled == {} and positions(journey) == {}
