"""Django admin for journeys: pages render, edits and status changes go through the services."""

import pytest

from journeys import services
from journeys.models import Journey, JourneyEnrollment, JourneyEvent
from tests.factories import AudienceFactory
from tests.journeys.factories import simple_definition, webhook_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def journey():
    config = webhook_config()
    journey = services.journey_create(name="Welcome", definition=simple_definition(config.pk, event="signed_up"))
    services.journey_publish(journey=journey)
    services.journey_event_record(event="signed_up", profile_id=_profile().pk)
    return journey


def _profile():
    from tests.journeys.factories import ProfileFactory

    return ProfileFactory()


@pytest.mark.parametrize(
    "model", ["journey", "journeyversion", "journeyactivationstep", "journeyenrollment", "journeyevent"]
)
def test_every_admin_page_renders(admin_site_client, journey, model):
    assert admin_site_client.get(f"/admin/journeys/{model}/").status_code == 200
    obj = {
        "journey": journey,
        "journeyversion": journey.versions.get(),
        "journeyactivationstep": journey.activation_steps.first(),
        "journeyenrollment": JourneyEnrollment.objects.get(),
        "journeyevent": JourneyEvent.objects.get(),
    }[model]
    assert admin_site_client.get(f"/admin/journeys/{model}/{obj.pk}/change/").status_code == 200


def test_platform_records_are_read_only(admin_site_client, journey):
    assert admin_site_client.get("/admin/journeys/journeyversion/add/").status_code == 403
    enrollment = JourneyEnrollment.objects.get()
    assert admin_site_client.post(f"/admin/journeys/journeyenrollment/{enrollment.pk}/delete/").status_code == 403


def test_add_and_change_through_the_services(admin_site_client):
    audience = AudienceFactory()
    response = admin_site_client.post(
        "/admin/journeys/journey/add/", {"name": "", "description": "", "definition": '{"steps": [{"key": "a"}]}'}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "This field is required." in body and "step &quot;a&quot;: type must be one of" in body
    assert not Journey.objects.exists()
    response = admin_site_client.post(
        "/admin/journeys/journey/add/", {"name": "From admin", "description": "", "definition": '{"steps": []}'}
    )
    assert response.status_code == 302
    journey = Journey.objects.get()
    assert journey.created_by.username == "root"
    definition = f'{{"steps": [{{"key": "s", "type": "entry", "audience_id": {audience.pk}, "next": "e"}}, ' \
                 '{"key": "e", "type": "exit"}]}'  # fmt: skip
    response = admin_site_client.post(
        f"/admin/journeys/journey/{journey.pk}/change/",
        {
            "name": "From admin",
            "description": "d",
            "definition": definition,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    journey.refresh_from_db()
    assert journey.definition["steps"][0]["audience_id"] == audience.pk and journey.description == "d"


def test_status_actions(admin_site_client, journey):
    draft = services.journey_create(name="Draft")
    url = "/admin/journeys/journey/"
    response = admin_site_client.post(
        url, {"action": "pause_selected", "_selected_action": [journey.pk, draft.pk]}, follow=True
    )
    body = response.content.decode()
    assert "1 journey(s) paused." in body and "Cannot pause the journey: it has not been published yet." in body
    journey.refresh_from_db()
    assert journey.status == "paused" and journey.status_changed_by.username == "root"
    admin_site_client.post(url, {"action": "resume_selected", "_selected_action": [journey.pk]})
    admin_site_client.post(url, {"action": "stop_selected", "_selected_action": [journey.pk]})
    journey.refresh_from_db()
    assert journey.status == "stopped"
    response = admin_site_client.post(url, {"action": "publish_selected", "_selected_action": [draft.pk]}, follow=True)
    assert "A journey needs steps: an entry, what follows, and an exit." in response.content.decode()


def test_delete_refused_while_running(admin_site_client, journey):
    page = admin_site_client.get(f"/admin/journeys/journey/{journey.pk}/delete/").content.decode()
    assert "stop it before deleting it" in page
    admin_site_client.post(f"/admin/journeys/journey/{journey.pk}/delete/", {"post": "yes"})
    assert Journey.objects.filter(pk=journey.pk).exists()
    services.journey_stop(journey=journey)
    admin_site_client.post(f"/admin/journeys/journey/{journey.pk}/delete/", {"post": "yes"})
    assert not Journey.objects.filter(pk=journey.pk).exists()
