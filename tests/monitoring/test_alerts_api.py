"""The read-only alerts API: filters, validation, permissions."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from monitoring.models import Alert
from tests.assertions import assert_no_secret
from tests.factories import PartnerConfigFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/alerts/"


@pytest.fixture
def alerts():
    now = timezone.now()
    dv360 = PartnerConfigFactory(name="Brand EU", connector__name="DV360 prod", connector__partner_key="google_dv360")
    hook = PartnerConfigFactory(name="Default", connector__name="CRM hook")
    return {
        "creds": Alert.objects.create(
            partner_config=dv360,
            kind=Alert.Kind.CREDENTIALS_INVALID,
            detail="The partner refused the credentials.",
            opened_at=now - timedelta(minutes=30),
        ),
        "rate": Alert.objects.create(
            partner_config=hook,
            kind=Alert.Kind.ERROR_RATE,
            detail="9 of 30 items failed in the last hour.",
            error_rate=0.3,
            opened_at=now - timedelta(minutes=10),
        ),
        "old": Alert.objects.create(
            partner_config=hook,
            kind=Alert.Kind.ENDPOINT_GONE,
            opened_at=now - timedelta(days=2),
            resolved_at=now - timedelta(days=1),
            notified_at=now - timedelta(days=2),
            recovery_notified_at=now - timedelta(days=1),
        ),
    }


def ids(response):
    assert response.status_code == 200, response.content
    return [a["id"] for a in response.json()["results"]]


def test_viewer_lists_alerts_newest_first_with_names(viewer_api, alerts):
    response = viewer_api.get(URL)
    assert ids(response) == [alerts["rate"].pk, alerts["creds"].pk, alerts["old"].pk]
    assert response.json()["count"] == 3
    creds = response.json()["results"][1]
    config = alerts["creds"].partner_config
    assert creds == {
        "id": alerts["creds"].pk,
        "kind": "credentials_invalid",
        "kind_label": "Credentials invalid",
        "state": "open",
        "connector_id": config.connector_id,
        "connector": "DV360 prod",
        "partner": config.connector.partner_name,
        "partner_config_id": config.pk,
        "partner_config": "Brand EU",
        "detail": "The partner refused the credentials.",
        "error_rate": None,
        "opened_at": creds["opened_at"],
        "resolved_at": None,
        "notified_at": None,
        "recovery_notified_at": None,
    }
    assert response.json()["results"][0]["error_rate"] == 0.3
    assert_no_secret(response)


def test_filters(api, alerts):
    hook = alerts["rate"].partner_config
    assert ids(api.get(URL, {"state": "open"})) == [alerts["rate"].pk, alerts["creds"].pk]
    assert ids(api.get(URL, {"state": "resolved"})) == [alerts["old"].pk]
    assert len(ids(api.get(URL, {"state": "all"}))) == 3
    assert ids(api.get(URL, {"connector": hook.connector_id})) == [alerts["rate"].pk, alerts["old"].pk]
    assert ids(api.get(URL, {"connector": hook.connector_id, "state": "open"})) == [alerts["rate"].pk]
    assert ids(api.get(URL, {"partner_config": alerts["creds"].partner_config_id})) == [alerts["creds"].pk]
    assert ids(api.get(URL, {"kind": "endpoint_gone"})) == [alerts["old"].pk]
    assert ids(api.get(URL, {"connector": 999999})) == []
    page = api.get(URL, {"limit": 1, "offset": 1}).json()
    assert page["count"] == 3 and [a["id"] for a in page["results"]] == [alerts["creds"].pk]


def test_bad_filters_answer_400_per_field(api, alerts):
    response = api.get(URL, {"state": "closed", "connector": "abc", "kind": "nope"})
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"state", "connector", "kind"}
    assert "not a valid choice" in body["state"][0]
    assert "valid integer" in body["connector"][0]
    assert api.get(URL, {"connector": 0}).status_code == 400


def test_detail(viewer_api, alerts):
    response = viewer_api.get(f"{URL}{alerts['old'].pk}/")
    assert response.status_code == 200
    assert response.json()["state"] == "resolved" and response.json()["resolved_at"]
    assert viewer_api.get(f"{URL}999999/").status_code == 404


def test_anonymous_and_users_without_permission_are_refused(alerts):
    anonymous = APIClient()
    assert anonymous.get(URL).status_code in (401, 403)
    assert anonymous.get(f"{URL}{alerts['creds'].pk}/").status_code in (401, 403)
    nobody = APIClient()
    nobody.force_authenticate(UserFactory(username="nobody"))
    assert nobody.get(URL).status_code == 403
    assert nobody.get(f"{URL}{alerts['creds'].pk}/").status_code == 403


def test_alerts_are_read_only(api, viewer_api, alerts):
    pk = alerts["creds"].pk
    for client in (api, viewer_api):
        assert client.post(URL, {"kind": "error_rate"}, format="json").status_code in (403, 405)
        assert client.patch(f"{URL}{pk}/", {"detail": "x"}, format="json").status_code in (403, 405)
        assert client.delete(f"{URL}{pk}/").status_code in (403, 405)
    assert Alert.objects.get(pk=pk).detail == "The partner refused the credentials."


def test_list_queries_do_not_grow_with_the_page(api, alerts, django_assert_max_num_queries):
    now = timezone.now()
    for _ in range(20):
        Alert.objects.create(partner_config=PartnerConfigFactory(), kind=Alert.Kind.ERROR_RATE, opened_at=now)
    with django_assert_max_num_queries(6):
        assert len(ids(api.get(URL))) == 23
