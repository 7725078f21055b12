"""The journeys API: CRUD with the draft, status actions, versions, enrollments, events, errors, permissions."""

import pytest
from django.utils import timezone

from connectors.models import Delivery
from journeys.models import Journey, JourneyEnrollment
from tests.factories import AudienceFactory
from tests.journeys.factories import ProfileFactory, activate, simple_definition, webhook_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def config():
    return webhook_config()


@pytest.fixture
def audience():
    return AudienceFactory()


def create(api, name="Welcome", definition=None):
    response = api.post("/api/v1/journeys/", {"name": name, "definition": definition}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_create_read_update_publish(api, config, audience):
    body = create(api, definition=simple_definition(config.pk, audience_id=audience.pk))
    assert body["status"] == "draft" and body["has_unpublished_changes"] is True
    assert body["version_count"] == 0 and body["latest_version"] is None and body["draft_problems"] == []
    pk = body["id"]
    published = api.post(f"/api/v1/journeys/{pk}/publish/")
    assert published.status_code == 200
    data = published.json()
    assert (data["status"], data["version_count"], data["latest_version"]) == ("live", 1, 1)
    assert data["has_unpublished_changes"] is False
    assert data["published_definition"] == data["definition"]
    assert data["status_changed_by"] == "marketer"

    changed = simple_definition(config.pk, event="signed_up")
    patched = api.patch(f"/api/v1/journeys/{pk}/", {"definition": changed, "description": "Hi"}, format="json")
    assert patched.status_code == 200
    assert patched.json()["has_unpublished_changes"] is True
    assert patched.json()["definition"] == changed and patched.json()["published_definition"]["steps"][0]["audience_id"]

    listing = api.get("/api/v1/journeys/").json()
    assert listing["count"] == 1
    row = listing["results"][0]
    assert (row["name"], row["status"], row["has_unpublished_changes"], row["version_count"]) == (
        "Welcome",
        "live",
        True,
        1,
    )
    assert api.get("/api/v1/journeys/?status=draft").json()["count"] == 0
    assert api.get("/api/v1/journeys/?search=welc").json()["count"] == 1

    api.post(f"/api/v1/journeys/{pk}/publish/")
    versions = api.get(f"/api/v1/journeys/{pk}/versions/").json()
    assert [v["number"] for v in versions] == [2, 1]
    assert versions[0]["published_by"] == "marketer" and versions[0]["definition"] == changed


def test_status_actions_and_refusals(api, config, audience):
    pk = create(api, definition=simple_definition(config.pk, audience_id=audience.pk))["id"]
    refused = api.post(f"/api/v1/journeys/{pk}/pause/")
    assert refused.status_code == 400
    assert refused.json() == {"status": ["Cannot pause the journey: it has not been published yet."]}
    api.post(f"/api/v1/journeys/{pk}/publish/")
    assert api.post(f"/api/v1/journeys/{pk}/pause/").json()["status"] == "paused"
    assert api.post(f"/api/v1/journeys/{pk}/pause/").status_code == 400
    assert api.post(f"/api/v1/journeys/{pk}/resume/").json()["status"] == "live"
    assert api.delete(f"/api/v1/journeys/{pk}/").json() == {
        "status": ["The journey is live: stop it before deleting it."]
    }
    assert api.post(f"/api/v1/journeys/{pk}/stop/").json()["status"] == "stopped"
    assert api.post(f"/api/v1/journeys/{pk}/publish/").status_code == 400
    assert api.delete(f"/api/v1/journeys/{pk}/").status_code == 204
    assert not Journey.objects.exists()


def test_bad_input_is_a_400_with_field_messages_and_writes_nothing(api, config):
    response = api.post("/api/v1/journeys/", {"name": "", "definition": {"steps": [activate(999)]}}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()
    response = api.post(
        "/api/v1/journeys/", {"name": "X", "definition": {"steps": [activate(999, key="a")]}}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"definition": ['step "a": partner configuration 999 does not exist']}
    assert not Journey.objects.exists()

    pk = create(api, definition={"steps": [activate(config.pk)]})["id"]
    detail = api.get(f"/api/v1/journeys/{pk}/").json()
    assert "the journey has no entry step (type entry: an audience or an event)" in detail["draft_problems"]
    response = api.post(f"/api/v1/journeys/{pk}/publish/")
    assert response.status_code == 400
    assert "the journey has no entry step (type entry: an audience or an event)" in response.json()["definition"]
    response = api.put(f"/api/v1/journeys/{pk}/", {"definition": {"steps": "no"}}, format="json")
    assert response.json() == {"definition": ["steps: expected a list of steps."]}
    assert Journey.objects.get().definition == {"steps": [activate(config.pk)]}


def test_enrollments_are_paginated_and_filtered(api, config, audience):
    pk = create(api, definition=simple_definition(config.pk, audience_id=audience.pk))["id"]
    api.post(f"/api/v1/journeys/{pk}/publish/")
    journey = Journey.objects.get()
    version = journey.versions.get()
    now = timezone.now()
    JourneyEnrollment.objects.bulk_create(
        [
            JourneyEnrollment(
                journey=journey,
                version=version,
                profile=ProfileFactory(external_id=f"e{i}"),
                step_key="done" if i % 2 else "send",
                status="completed" if i % 2 else "active",
                entered_at=now,
                updated_at=now,
            )  # fmt: skip
            for i in range(5)
        ]
    )
    page = api.get(f"/api/v1/journeys/{pk}/enrollments/?limit=2").json()
    assert page["count"] == 5 and len(page["results"]) == 2 and page["next"]
    first = page["results"][0]
    assert set(first) >= {"profile", "external_id", "version", "step_key", "status", "wake_at", "entered_at"}
    assert first["version"] == 1
    assert api.get(f"/api/v1/journeys/{pk}/enrollments/?status=completed").json()["count"] == 2
    assert api.get(f"/api/v1/journeys/{pk}/enrollments/?step=send&version=1").json()["count"] == 3
    bad = api.get(f"/api/v1/journeys/{pk}/enrollments/?status=lost")
    assert bad.status_code == 400 and "status" in bad.json()


def test_events_enroll_and_activate(api, config):
    pk = create(api, definition=simple_definition(config.pk, event="signed_up"))["id"]
    api.post(f"/api/v1/journeys/{pk}/publish/")
    profile = ProfileFactory(external_id="crm-7")
    response = api.post(
        "/api/v1/journeys/events/",
        {"external_id": "crm-7", "event": "signed_up", "properties": {"plan": "pro"}},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["profile_id"] == profile.pk and body["enrolled_in"] == [{"journey": pk, "name": "Welcome"}]
    delivery = Delivery.objects.get()
    assert (delivery.profile_id, delivery.journey_id, delivery.partner_config_id) == (profile.pk, pk, config.pk)
    enrollments = api.get(f"/api/v1/journeys/{pk}/enrollments/").json()["results"]
    assert [(e["external_id"], e["status"]) for e in enrollments] == [("crm-7", "completed")]


def test_event_errors(api):
    response = api.post("/api/v1/journeys/events/", {"event": "x"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Give exactly one of external_id and profile_id."]}
    response = api.post("/api/v1/journeys/events/", {"external_id": "ghost", "event": "x"}, format="json")
    assert response.json() == {"external_id": ["No profile has this external id."]}
    response = api.post("/api/v1/journeys/events/", {"profile_id": 1, "event": "", "properties": []}, format="json")
    assert response.status_code == 400 and {"event", "properties"} <= set(response.json())


def test_viewers_read_but_do_not_change(api, viewer_api, config, audience):
    pk = create(api, definition=simple_definition(config.pk, audience_id=audience.pk))["id"]
    assert viewer_api.get("/api/v1/journeys/").status_code == 200
    assert viewer_api.get(f"/api/v1/journeys/{pk}/versions/").status_code == 200
    assert viewer_api.get(f"/api/v1/journeys/{pk}/enrollments/").status_code == 200
    assert viewer_api.post(f"/api/v1/journeys/{pk}/publish/").status_code == 403
    assert viewer_api.patch(f"/api/v1/journeys/{pk}/", {"name": "Mine"}, format="json").status_code == 403
    assert viewer_api.post("/api/v1/journeys/", {"name": "New"}, format="json").status_code == 403
    assert (
        viewer_api.post("/api/v1/journeys/events/", {"event": "x", "profile_id": 1}, format="json").status_code == 403
    )
    assert Journey.objects.get().status == "draft"


def test_anonymous_is_refused(client):
    assert client.get("/api/v1/journeys/").status_code in (401, 403)
