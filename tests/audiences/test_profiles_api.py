import json

import pytest
from rest_framework.test import APIClient

from audiences.models import Profile, ProfileIdentifier
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

BULK = "/api/v1/profiles/bulk/"

JAN = {
    "external_id": "crm-1",
    "attributes": {"country": "NL", "orders": 3},
    "identifiers": {"email": "jan@example.com", "phone": "+31612345678", "xandr_uid": "1234567890"},
    "consent_ads": True,
}


def test_bulk_creates_updates_and_counts(api):
    response = api.post(BULK, {"profiles": [JAN, {"external_id": "crm-2"}]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"created": 2, "updated": 0, "unchanged": 0, "errors": []}

    body = {
        "profiles": [{"external_id": "crm-1", "attributes": {"orders": 4, "country": None}}, {"external_id": "crm-2"}]
    }
    response = api.post(BULK, body, format="json")
    assert response.json() == {"created": 0, "updated": 1, "unchanged": 1, "errors": []}
    assert Profile.objects.get(external_id="crm-1").attributes == {"orders": 4}


def test_bulk_with_invalid_rows_answers_400_by_index_and_writes_nothing(api):
    rows = [JAN, {"external_id": "crm-2", "identifiers": {"email": "nope", "fax": "1"}}, {"attributes": {}}]
    response = api.post(BULK, {"profiles": rows}, format="json")
    assert response.status_code == 400
    data = response.json()
    assert data["detail"] == "2 invalid profiles; nothing was written."
    assert [e["index"] for e in data["errors"]] == [1, 2]
    assert set(data["errors"][0]["errors"]) == {"identifiers.email", "identifiers.fax"}
    assert data["errors"][1]["errors"]["external_id"] == ["This field is required."]
    assert not Profile.objects.exists()


def test_bulk_partial_writes_valid_rows_and_reports_the_others(api):
    rows = [JAN, {"external_id": "crm-2", "identifiers": {"email": "nope"}}]
    response = api.post(BULK, {"profiles": rows, "partial": True}, format="json")
    assert response.status_code == 200
    data = response.json()
    assert (data["created"], data["updated"], data["unchanged"]) == (1, 0, 0)
    assert data["errors"] == [
        {"index": 1, "errors": {"identifiers.email": [data["errors"][0]["errors"]["identifiers.email"][0]]}}
    ]
    assert list(Profile.objects.values_list("external_id", flat=True)) == ["crm-1"]


def test_bulk_refuses_taking_an_identifier_from_another_profile(api):
    api.post(BULK, {"profiles": [JAN]}, format="json")
    response = api.post(
        BULK, {"profiles": [{"external_id": "crm-9", "identifiers": {"email": "jan@example.com"}}]}, format="json"
    )
    assert response.status_code == 400
    assert 'external id "crm-1"' in response.json()["errors"][0]["errors"]["identifiers.email"][0]
    assert ProfileIdentifier.objects.get(slot="email").profile.external_id == "crm-1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "profiles"),
        ({"profiles": {"external_id": "a"}}, "profiles"),
        ({"profiles": [], "partial": "sometimes"}, "partial"),
    ],
)
def test_bulk_body_errors(api, body, field):
    response = api.post(BULK, body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_bulk_refuses_more_than_10000_rows(api):
    rows = [{"external_id": f"p{i}"} for i in range(10001)]
    response = api.post(BULK, {"profiles": rows}, format="json")
    assert response.status_code == 400
    assert response.json() == {"profiles": ["At most 10000 profiles per call; split the list."]}
    assert not Profile.objects.exists()


def test_bulk_needs_the_right_to_add_and_change_profiles(viewer_api):
    assert viewer_api.post(BULK, {"profiles": [JAN]}, format="json").status_code == 403
    only_change = UserFactory(username="changer")
    only_change.user_permissions.add(*_perms("change_profile", "view_profile"))
    client = APIClient()
    client.force_authenticate(only_change)
    assert client.post(BULK, {"profiles": [JAN]}, format="json").status_code == 403
    only_change.user_permissions.add(*_perms("add_profile"))
    client.force_authenticate(UserFactory(username="changer"))  # fresh user object: permission cache
    assert client.post(BULK, {"profiles": [JAN]}, format="json").status_code == 200
    assert Profile.objects.count() == 1


def _perms(*codenames):
    from django.contrib.auth.models import Permission

    return list(Permission.objects.filter(content_type__app_label="audiences", codename__in=codenames))


def test_anonymous_is_refused_everywhere():
    client = APIClient()
    profile = Profile.objects.create(external_id="x")
    for response in (
        client.post(BULK, {"profiles": [JAN]}, format="json"),
        client.get("/api/v1/profiles/"),
        client.get(f"/api/v1/profiles/{profile.pk}/"),
    ):
        assert response.status_code in (401, 403)
    assert Profile.objects.count() == 1


def test_detail_shows_identifiers_to_admins_and_masks_them_for_viewers(api, viewer_api):
    api.post(BULK, {"profiles": [JAN]}, format="json")
    profile = Profile.objects.get(external_id="crm-1")
    url = f"/api/v1/profiles/{profile.pk}/"

    full = api.get(url).json()
    assert full["external_id"] == "crm-1"
    assert full["attributes"] == {"country": "NL", "orders": 3}
    assert full["consent_ads"] is True
    assert full["identifiers"] == JAN["identifiers"]
    assert full["identifiers_masked"] is False

    masked = viewer_api.get(url)
    assert masked.status_code == 200
    data = masked.json()
    assert data["identifiers"] == {"email": "j•••@example.com", "phone": "+31•••••678", "xandr_uid": "12•••90"}
    assert data["identifiers_masked"] is True
    assert data["attributes"] == full["attributes"]
    body = masked.content.decode()
    for value in JAN["identifiers"].values():
        assert value not in body


def test_list_filters_on_external_id_with_pagination(api, viewer_api):
    rows = [{"external_id": f"p{i}", "identifiers": {"customer_id": f"CUST-{i:04d}"}} for i in range(5)]
    api.post(BULK, {"profiles": rows}, format="json")
    page = api.get("/api/v1/profiles/?limit=2").json()
    assert page["count"] == 5
    assert [p["external_id"] for p in page["results"]] == ["p0", "p1"]
    assert page["next"]
    found = viewer_api.get("/api/v1/profiles/?external_id=p3").json()
    assert found["count"] == 1
    assert found["results"][0]["identifiers"] == {"customer_id": "CU•••03"}
    assert api.get("/api/v1/profiles/?external_id=nobody").json()["count"] == 0
    assert api.get("/api/v1/profiles/999999/").status_code == 404


def test_list_queries_do_not_grow_with_the_page(api, django_assert_max_num_queries):
    rows = [
        {"external_id": f"p{i}", "identifiers": {"customer_id": f"C{i}", "email": f"p{i}@example.com"}}
        for i in range(50)
    ]
    api.post(BULK, {"profiles": rows}, format="json")
    # session/user/permissions, count, page, identifiers of the page
    with django_assert_max_num_queries(6):
        assert len(api.get("/api/v1/profiles/?limit=50").json()["results"]) == 50


def test_a_full_call_of_10000_rows_passes_djangos_default_body_limit(api, settings):
    rows = [
        {
            "external_id": f"crm-{i:05d}",
            "attributes": {"note": "x" * 200},
            "identifiers": {"email": f"p{i}@example.com"},
        }
        for i in range(10000)
    ]
    body = json.dumps({"profiles": rows})
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = api.generic("POST", BULK, body, content_type="application/json")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["created"] == 10000


def test_bulk_body_too_large_or_not_json(api, monkeypatch):
    from audiences.api import profiles as views

    monkeypatch.setattr(views, "MAX_BULK_BODY_BYTES", 100)
    response = api.post(BULK, {"profiles": [{"external_id": "x" * 200}]}, format="json")
    assert response.status_code == 413
    monkeypatch.undo()
    response = api.generic(
        "POST", BULK, '{"profiles": [{"external_id": "a", "attributes": {"n": NaN}}]}', content_type="application/json"
    )
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert not Profile.objects.exists()
