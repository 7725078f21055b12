import pytest
from django.utils import timezone

from connectors import services
from connectors.models import Delivery, PartnerConfig
from tests.connectors.delivery.conftest import make_profiles
from tests.factories import AudienceConnectionFactory, PartnerConfigFactory

pytestmark = pytest.mark.django_db


def failed_rows(config, profiles, action="add", outcome="timeout", audience=None):
    now = timezone.now()
    return Delivery.objects.bulk_create(
        [
            Delivery(
                partner_config=config, profile=p, action=action, audience=audience, status="failed", outcome=outcome,
                partner_error_code="", attempts=3, created_at=now, next_attempt_at=now, finished_at=now,
            )
            for p in profiles
        ]
    )  # fmt: skip


def test_list_with_filters(api):
    a = PartnerConfigFactory()
    b = PartnerConfigFactory()
    failed_rows(a, make_profiles(2, prefix="a"))
    failed_rows(b, make_profiles(1, prefix="b"), outcome="invalid_credentials")
    assert api.get("/api/v1/deliveries/").json()["count"] == 3
    assert api.get(f"/api/v1/deliveries/?connector={a.connector_id}").json()["count"] == 2
    assert api.get(f"/api/v1/deliveries/?partner_config={b.pk}").json()["count"] == 1
    assert api.get("/api/v1/deliveries/?outcome=invalid_credentials").json()["count"] == 1
    today = timezone.now().date().isoformat()
    assert api.get(f"/api/v1/deliveries/?status=failed&date_from={today}&date_to={today}").json()["count"] == 3
    assert api.get("/api/v1/deliveries/?date_from=2000-01-01&date_to=2000-01-02").json()["count"] == 0
    bad = api.get("/api/v1/deliveries/?status=lost&date_from=yesterday")
    assert bad.status_code == 400
    assert set(bad.json()) == {"status", "date_from"}


def test_replay_by_ids_and_by_filter(api):
    config = PartnerConfigFactory()
    rows = failed_rows(config, make_profiles(3))
    response = api.post("/api/v1/deliveries/replay/", {"ids": [rows[0].pk]}, format="json")
    assert response.json() == {"replayed": 1}
    rows[0].refresh_from_db()
    assert (rows[0].status, rows[0].attempts, rows[0].outcome) == ("pending", 0, "")
    assert api.post("/api/v1/deliveries/replay/", {"outcome": "timeout"}, format="json").json() == {"replayed": 2}
    assert api.post("/api/v1/deliveries/replay/", {}, format="json").status_code == 400


def test_replay_sends_current_membership_state(api):
    config = PartnerConfigFactory()
    conn = AudienceConnectionFactory(partner_config=config)
    [member] = make_profiles(1, audience=conn.audience, prefix="m")
    [leaver] = make_profiles(1, prefix="l")
    failed_rows(config, [member], action="remove", audience=conn.audience)
    failed_rows(config, [leaver], action="add", audience=conn.audience)
    api.post("/api/v1/deliveries/replay/", {"connector": config.connector_id}, format="json")
    assert dict(Delivery.objects.values_list("profile_id", "action")) == {member.pk: "add", leaver.pk: "remove"}


def test_replay_refused_for_deactivated_connector(api):
    config = PartnerConfigFactory()
    failed_rows(config, make_profiles(1))
    services.connector_deactivate(connector=config.connector)
    response = api.post("/api/v1/deliveries/replay/", {"connector": config.connector_id}, format="json")
    assert response.status_code == 400
    assert "deactivated" in response.json()["non_field_errors"][0]
    assert Delivery.objects.get().status == "failed"


def test_viewer_cannot_replay_or_resume(viewer_api):
    config = PartnerConfigFactory()
    failed_rows(config, make_profiles(1))
    assert viewer_api.get("/api/v1/deliveries/").status_code == 200
    assert (
        viewer_api.post("/api/v1/deliveries/replay/", {"connector": config.connector_id}, format="json").status_code
        == 403
    )
    assert viewer_api.post(f"/api/v1/partner-configs/{config.pk}/resume/").status_code == 403


def test_resume_endpoint(api):
    config = PartnerConfigFactory()
    PartnerConfig.objects.filter(pk=config.pk).update(health="credentials_invalid")
    response = api.post(f"/api/v1/partner-configs/{config.pk}/resume/")
    assert response.status_code == 200
    config.refresh_from_db()
    assert config.health == "ok"


def test_page_replay_button_and_resume(marketer_client):
    config = PartnerConfigFactory()
    failed_rows(config, make_profiles(2))
    PartnerConfig.objects.filter(pk=config.pk).update(health="credentials_invalid", health_detail="refused")
    page = marketer_client.get(f"/connectors/{config.connector_id}/").content.decode()
    assert ">Replay all 2</button>" in page and "Credentials invalid (paused)" in page and ">Resume<" in page
    marketer_client.post(f"/connectors/{config.connector_id}/replay/", {"replay": "all"})
    assert Delivery.objects.filter(status="pending").count() == 2
    marketer_client.post(f"/connectors/{config.connector_id}/configs/{config.pk}/resume/")
    config.refresh_from_db()
    assert config.health == "ok"
