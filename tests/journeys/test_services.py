"""Journey services: create, draft edits, publish (versions and links), status transitions, delete, events."""

import pytest
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError
from django.utils import timezone

from connectors import selectors as connector_selectors
from connectors import services as connector_services
from connectors.errors import InUseError
from connectors.models import PartnerConfig
from journeys import services
from journeys.models import Journey, JourneyActivationStep, JourneyEnrollment, JourneyEvent, JourneyVersion
from tests.factories import AudienceFactory, UserFactory
from tests.journeys.factories import (
    ProfileFactory,
    activate,
    entry_audience,
    exit_step,
    simple_definition,
    webhook_config,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def config():
    return webhook_config(connector__name="Hook", name="Main")


@pytest.fixture
def audience():
    return AudienceFactory(name="Loyal")


@pytest.fixture
def actor():
    return UserFactory(username="maria")


def make_live(config, audience, actor=None, name="Welcome"):
    journey = services.journey_create(name=name, definition=simple_definition(config.pk, audience_id=audience.pk))
    services.journey_publish(journey=journey, actor=actor)
    journey.refresh_from_db()
    return journey


class TestCreateAndDraft:
    def test_create_validates_everything_and_writes_nothing_when_invalid(self, config):
        services.journey_create(name="Taken")
        with pytest.raises(ValidationError) as exc:
            services.journey_create(name=" taken ", description=5, definition={"steps": [activate(999, key="x")]})
        errors = exc.value.message_dict
        assert errors["name"] == ["A journey with this name already exists."]
        assert errors["description"] == ["Text of at most 2000 characters."]
        assert errors["definition"] == ['step "x": partner configuration 999 does not exist']
        assert Journey.objects.count() == 1

    def test_an_unfinished_draft_is_saved_with_its_activation_links(self, config, actor):
        journey = services.journey_create(
            name="Draft", definition={"steps": [activate(config.pk, label="Notify")]}, actor=actor
        )
        assert journey.status == Journey.Status.DRAFT and journey.created_by == actor
        assert journey.has_unpublished_changes
        link = JourneyActivationStep.objects.get(journey=journey)
        assert (link.version, link.step_key, link.label, link.partner_config) == (None, "send", "Notify", config)

    def test_draft_update_rewrites_the_draft_links_only(self, config, audience):
        journey = make_live(config, audience)
        other = webhook_config(name="Other")
        definition = simple_definition(other.pk, audience_id=audience.pk)
        services.journey_update(journey=journey, definition=definition)
        rows = set(JourneyActivationStep.objects.values_list("version__number", "partner_config_id"))
        assert rows == {(1, config.pk), (None, other.pk)}
        journey.refresh_from_db()
        assert journey.has_unpublished_changes

    def test_a_draft_brought_back_to_the_published_version_has_nothing_to_publish(self, config, audience):
        journey = make_live(config, audience)
        published = journey.definition
        services.journey_update(journey=journey, definition={"steps": [exit_step()]})
        journey.refresh_from_db()
        assert journey.has_unpublished_changes
        services.journey_update(journey=journey, definition=published)
        journey.refresh_from_db()
        assert not journey.has_unpublished_changes
        with pytest.raises(ValidationError) as exc:
            services.journey_publish(journey=journey)
        assert exc.value.message_dict == {
            "non_field_errors": ["Nothing to publish: the draft is version 1 as published."]
        }

    def test_rename(self, config):
        journey = services.journey_create(name="A")
        services.journey_create(name="B")
        with pytest.raises(ValidationError):
            services.journey_update(journey=journey, name="b")
        services.journey_update(journey=journey, name="C", description="About C")
        journey.refresh_from_db()
        assert (journey.name, journey.description) == ("C", "About C")


class TestPublish:
    def test_publish_creates_a_version_and_its_links_and_goes_live(self, config, audience, actor):
        journey = services.journey_create(name="J", definition=simple_definition(config.pk, audience_id=audience.pk))
        version = services.journey_publish(journey=journey, actor=actor)
        journey.refresh_from_db()
        assert (version.number, version.published_by, version.definition) == (1, actor, journey.definition)
        assert journey.status == Journey.Status.LIVE and journey.status_changed_by == actor
        assert journey.published_at == version.published_at and journey.entries_since == version.published_at
        assert not journey.has_unpublished_changes
        links = JourneyActivationStep.objects.filter(journey=journey)
        assert {(link.version_id, link.partner_config_id) for link in links} == {
            (None, config.pk),
            (version.pk, config.pk),
        }

    def test_publishing_again_adds_the_next_version(self, config, audience):
        journey = make_live(config, audience)
        definition = simple_definition(config.pk, audience_id=audience.pk)
        definition["steps"][1]["action"] = "update"
        services.journey_update(journey=journey, definition=definition)
        version = services.journey_publish(journey=journey)
        assert version.number == 2
        assert list(journey.versions.values_list("number", flat=True)) == [2, 1]
        assert JourneyActivationStep.objects.filter(journey=journey, version__isnull=False).count() == 2
        assert JourneyVersion.objects.get(journey=journey, number=1).definition["steps"][1].get("action") is None

    def test_invalid_draft_is_refused_with_the_step_messages(self, config, audience):
        journey = services.journey_create(name="J", definition={"steps": [entry_audience(audience.pk), exit_step()]})
        services.journey_update(journey=journey, definition={"steps": [entry_audience(audience.pk, "gone")]})
        with pytest.raises(ValidationError) as exc:
            services.journey_publish(journey=journey)
        assert 'step "start": the next step "gone" does not exist' in exc.value.message_dict["definition"]
        journey.refresh_from_db()
        assert journey.status == Journey.Status.DRAFT and not journey.versions.exists()

    def test_a_paused_journey_publishes_and_stays_paused(self, config, audience):
        journey = make_live(config, audience)
        services.journey_pause(journey=journey)
        services.journey_update(journey=journey, definition=simple_definition(config.pk, event="signed_up"))
        services.journey_publish(journey=journey)
        journey.refresh_from_db()
        assert journey.status == Journey.Status.PAUSED and journey.versions.count() == 2


class TestTransitions:
    def test_pause_resume_stop_record_who_and_when(self, config, audience, actor):
        journey = make_live(config, audience)
        services.journey_pause(journey=journey, actor=actor)
        journey.refresh_from_db()
        assert journey.status == Journey.Status.PAUSED and journey.status_changed_by == actor
        before = timezone.now()
        services.journey_resume(journey=journey, actor=actor)
        journey.refresh_from_db()
        assert journey.status == Journey.Status.LIVE and journey.entries_since >= before
        services.journey_stop(journey=journey, actor=actor)
        journey.refresh_from_db()
        assert journey.status == Journey.Status.STOPPED and journey.status_changed_at >= before

    @pytest.mark.parametrize(
        ("status", "service", "message"),
        [
            ("draft", services.journey_pause, "Cannot pause the journey: it has not been published yet."),
            ("draft", services.journey_resume, "Cannot resume the journey: it has not been published yet."),
            ("draft", services.journey_stop, "Cannot stop the journey: it has not been published yet."),
            ("live", services.journey_resume, "Cannot resume the journey: it is not paused."),
            ("paused", services.journey_pause, "Cannot pause the journey: it is already paused."),
            ("stopped", services.journey_pause, "Cannot pause the journey: it is stopped."),
            ("stopped", services.journey_resume, "Cannot resume the journey: it is stopped."),
            ("stopped", services.journey_stop, "Cannot stop the journey: it is already stopped."),
            ("stopped", services.journey_publish, "The journey is stopped: it cannot be published again."),
        ],
    )
    def test_invalid_transitions_are_refused(self, config, audience, status, service, message):
        journey = services.journey_create(name="J", definition=simple_definition(config.pk, audience_id=audience.pk))
        if status != "draft":
            services.journey_publish(journey=journey)
        if status == "paused":
            services.journey_pause(journey=journey)
        if status == "stopped":
            services.journey_stop(journey=journey)
        with pytest.raises(ValidationError) as exc:
            service(journey=journey)
        assert exc.value.message_dict == {"status": [message]}
        journey.refresh_from_db()
        assert journey.status == status

    def test_a_stopped_journey_keeps_its_steps(self, config, audience):
        journey = make_live(config, audience)
        services.journey_stop(journey=journey)
        with pytest.raises(ValidationError) as exc:
            services.journey_update(journey=journey, definition={"steps": []})
        assert exc.value.message_dict == {"definition": ["The journey is stopped: its steps can no longer change."]}
        services.journey_update(journey=journey, name="Old welcome")  # renaming is fine

    def test_stop_exits_running_enrollments(self, config, audience):
        journey = make_live(config, audience)
        version = journey.versions.get()
        now = timezone.now()
        running = ProfileFactory()
        done = ProfileFactory()
        common = {"journey": journey, "version": version, "entered_at": now, "updated_at": now}
        JourneyEnrollment.objects.create(profile=running, step_key="send", status="waiting", wake_at=now, **common)
        JourneyEnrollment.objects.create(profile=done, step_key="done", status="completed", finished_at=now, **common)
        assert services.journey_stop(journey=journey) == 1
        statuses = dict(JourneyEnrollment.objects.values_list("profile_id", "status"))
        assert statuses == {running.pk: "exited", done.pk: "completed"}

    def test_delete_is_refused_while_running(self, config, audience):
        journey = make_live(config, audience)
        with pytest.raises(ValidationError) as exc:
            services.journey_delete(journey=journey)
        assert exc.value.message_dict == {"status": ["The journey is live: stop it before deleting it."]}
        services.journey_stop(journey=journey)
        services.journey_delete(journey=journey)
        assert not Journey.objects.exists() and not JourneyActivationStep.objects.exists()


class TestConnectorGuard:
    def test_delete_guard_lists_draft_and_published_steps(self, config, audience):
        journey = make_live(config, audience)
        definition = simple_definition(config.pk, audience_id=audience.pk)
        definition["steps"][1]["label"] = "Notify CRM"
        services.journey_update(journey=journey, definition=definition)
        services.journey_publish(journey=journey)
        services.journey_update(journey=journey, definition={"steps": [activate(config.pk, key="later")]})
        with pytest.raises(InUseError) as exc:
            connector_services.connector_delete(connector=config.connector)
        assert [str(u) for u in exc.value.usages] == [
            'Journey "Welcome" via configuration "Main" (step later, draft, journey live)',
            'Journey "Welcome" via configuration "Main" (step Notify CRM, published version, journey live)',
            'Journey "Welcome" via configuration "Main" (step send, earlier version 1, journey live)',
        ]
        with pytest.raises(ProtectedError):
            PartnerConfig.objects.filter(pk=config.pk).delete()

    def test_a_draft_only_step_blocks_deletion_too(self, config):
        services.journey_create(name="Idea", definition={"steps": [activate(config.pk)]})
        usages = connector_selectors.connector_usages(connector=config.connector)
        assert [u.detail for u in usages] == ["step send, draft, journey draft"]

    def test_usage_ends_when_the_journey_is_deleted(self, config):
        journey = services.journey_create(name="Idea", definition={"steps": [activate(config.pk)]})
        services.journey_delete(journey=journey)
        connector_services.connector_delete(connector=config.connector)

    def test_live_journeys_with_unpublished_changes(self, config, audience):
        journey = make_live(config, audience)
        assert connector_selectors.connector_live_journeys_with_unpublished_changes(connector=config.connector) == []
        # A draft that no longer uses the connector still counts: the running version does.
        services.journey_update(journey=journey, definition={"steps": [exit_step()]})
        live = connector_selectors.connector_live_journeys_with_unpublished_changes(connector=config.connector)
        assert live == [journey]
        services.journey_pause(journey=journey)
        assert connector_selectors.connector_live_journeys_with_unpublished_changes(connector=config.connector) == []
        unrelated = webhook_config(name="Elsewhere")
        assert not connector_selectors.connector_live_journeys_with_unpublished_changes(connector=unrelated.connector)


class TestEvents:
    def test_event_input_is_validated(self):
        ProfileFactory(external_id="known")
        cases = [
            ({"event": "x"}, {"non_field_errors": ["Give exactly one of external_id and profile_id."]}),
            (
                {"event": "x", "external_id": "a", "profile_id": 1},
                {"non_field_errors": ["Give exactly one of external_id and profile_id."]},
            ),  # fmt: skip
            ({"event": "x", "external_id": "nobody"}, {"external_id": ["No profile has this external id."]}),
            ({"event": "x", "profile_id": 999999}, {"profile_id": ["No profile has this id."]}),
            (
                {"event": "bad name", "external_id": "known"},
                {"event": ["An event name: letters, digits and _ . : - (at most 100 characters)."]},
            ),
            ({"event": "x", "external_id": "known", "properties": []}, {"properties": ["Expected an object."]}),
            (
                {"event": "x", "external_id": "known", "properties": {"a": "b" * 20000}},
                {"properties": ["At most 16 KB of JSON."]},
            ),
        ]
        for kwargs, errors in cases:
            with pytest.raises(ValidationError) as exc:
                services.journey_event_record(**kwargs)
            assert exc.value.message_dict == errors, kwargs
        assert not JourneyEvent.objects.exists()

    def test_an_event_is_stored_and_processed(self):
        profile = ProfileFactory(external_id="known")
        event, enrolled = services.journey_event_record(event="signed_up", external_id="known", properties={"a": 1})
        assert (event.profile, event.name, event.properties, enrolled) == (profile, "signed_up", {"a": 1}, {})
        event.refresh_from_db()
        assert event.processed
