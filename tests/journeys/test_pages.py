"""Journey pages: list, detail (draft vs published, versions, counts per step), buttons, new/edit forms."""

import pytest
from django.utils import timezone

from journeys import services
from journeys.models import Journey, JourneyEnrollment
from tests.factories import AudienceFactory
from tests.journeys.factories import ProfileFactory, simple_definition, webhook_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def journey():
    config = webhook_config(connector__name="CRM hook", name="Main")
    audience = AudienceFactory(name="Loyal customers")
    journey = services.journey_create(
        name="Welcome", definition=simple_definition(config.pk, audience_id=audience.pk), description="Say hi"
    )
    services.journey_publish(journey=journey)
    journey.refresh_from_db()
    return journey


def test_list_shows_status_badge_and_versions(marketer_client, journey):
    services.journey_create(name="Idea")
    services.journey_update(journey=journey, definition={"steps": []})
    page = marketer_client.get("/journeys/").content.decode()
    assert 'id="journey-table"' in page and "Welcome" in page and "Idea" in page
    row = page.split(f'data-journey="{journey.pk}"')[1].split("</tr>")[0]
    assert '<span class="label active">Live</span>' in row and "Unpublished changes" in row
    assert '<td class="num versions">1</td>' in row
    assert "Idea" in marketer_client.get("/journeys/?status=draft").content.decode()
    assert "Welcome" not in marketer_client.get("/journeys/?q=idea").content.decode()


def test_detail_shows_published_steps_counts_and_buttons(marketer_client, journey):
    version = journey.versions.get()
    now = timezone.now()
    JourneyEnrollment.objects.bulk_create(
        [
            JourneyEnrollment(
                journey=journey,
                version=version,
                profile=ProfileFactory(),
                step_key="send",
                status="active",
                entered_at=now,
                updated_at=now,
            )  # fmt: skip
            for _ in range(3)
        ]
    )
    page = marketer_client.get(f"/journeys/{journey.pk}/").content.decode()
    assert "Running version 1" in page
    assert "Profiles entering the audience &quot;Loyal customers&quot;" in page
    assert "Add at CRM hook / Main" in page
    send_row = page.split('data-step="send"')[1].split("</tr>")[0]
    assert '<td class="num here">3</td>' in send_row
    assert "3 active" in page
    for action in ("pause", "stop"):
        assert f'action="/journeys/{journey.pk}/{action}/"' in page
    assert f'action="/journeys/{journey.pk}/resume/"' not in page
    assert f'action="/journeys/{journey.pk}/publish/"' not in page  # nothing to publish
    assert 'data-version="1"' in page


def test_detail_shows_the_draft_and_its_problems(marketer_client, journey):
    services.journey_update(journey=journey, definition={"steps": [{"key": "lonely", "type": "exit"}]})
    page = marketer_client.get(f"/journeys/{journey.pk}/").content.decode()
    assert 'id="unpublished-label"' in page and 'id="draft-problems"' in page
    assert "the journey has no entry step" in page
    assert f'action="/journeys/{journey.pk}/publish/"' in page


def test_buttons_post_through_the_services(marketer_client, journey):
    response = marketer_client.post(f"/journeys/{journey.pk}/pause/", follow=True)
    assert "Journey paused" in response.content.decode()
    journey.refresh_from_db()
    assert journey.status == Journey.Status.PAUSED and journey.status_changed_by.username == "marketer"
    response = marketer_client.post(f"/journeys/{journey.pk}/pause/", follow=True)
    assert "Cannot pause the journey: it is already paused." in response.content.decode()
    marketer_client.post(f"/journeys/{journey.pk}/resume/")
    response = marketer_client.post(f"/journeys/{journey.pk}/publish/", follow=True)
    assert "Nothing to publish" in response.content.decode()
    response = marketer_client.post(f"/journeys/{journey.pk}/stop/", follow=True)
    assert "Journey stopped: 0 enrollment(s) exited." in response.content.decode()
    assert marketer_client.get(f"/journeys/{journey.pk}/pause/").status_code == 405
    marketer_client.post(f"/journeys/{journey.pk}/delete/")
    assert not Journey.objects.exists()


def test_new_and_edit_forms(marketer_client, journey):
    response = marketer_client.post("/journeys/new/", {"name": "Draft one", "definition": "{not json"})
    assert response.status_code == 400 and "Not valid JSON" in response.content.decode()
    response = marketer_client.post("/journeys/new/", {"name": "Welcome", "definition": ""})
    assert response.status_code == 400 and "A journey with this name already exists." in response.content.decode()
    response = marketer_client.post("/journeys/new/", {"name": "Draft one", "definition": '{"steps": []}'})
    created = Journey.objects.get(name="Draft one")
    assert response.status_code == 302 and response["Location"] == f"/journeys/{created.pk}/"

    response = marketer_client.post(
        f"/journeys/{journey.pk}/edit/",
        {"name": "Welcome", "definition": '{"steps": [{"key": "x", "type": "teleport"}]}'},
    )
    assert response.status_code == 400 and "step &quot;x&quot;: type must be one of" in response.content.decode()
    page = marketer_client.get(f"/journeys/{journey.pk}/edit/").content.decode()
    assert "&quot;audience_id&quot;" in page  # the draft as JSON
    response = marketer_client.post(
        f"/journeys/{journey.pk}/edit/", {"name": "Welcome!", "definition": '{"steps": []}'}
    )
    assert response.status_code == 302
    journey.refresh_from_db()
    assert journey.name == "Welcome!" and journey.has_unpublished_changes and journey.definition == {"steps": []}


def test_permissions(client, viewer, journey):
    assert client.get("/journeys/").status_code == 302  # to the login page
    client.force_login(viewer)
    page = client.get(f"/journeys/{journey.pk}/").content.decode()
    assert "Running version 1" in page and 'id="journey-actions"' in page
    assert f'action="/journeys/{journey.pk}/pause/"' not in page
    assert client.post(f"/journeys/{journey.pk}/pause/").status_code == 403
    assert client.get("/journeys/new/").status_code == 403
    assert "Journeys" in client.get("/journeys/").content.decode()
