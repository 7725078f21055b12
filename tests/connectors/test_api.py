import json
import logging

import pytest
import responses
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from connectors.models import Connector, ConnectorEvent, Outcome, PartnerConfig
from connectors.partners.registry import all_partners
from tests.assertions import assert_no_secret
from tests.factories import (
    ALL_TEST_SECRETS,
    DV360_CLIENT_SECRET,
    VALID_SETTINGS,
    AudienceConnectionFactory,
    DailyStatFactory,
    JourneyActivationStepFactory,
    PartnerConfigFactory,
)

pytestmark = pytest.mark.django_db

DV360_BODY = {
    "partner": "google_dv360",
    "name": "DV360",
    "config_name": "Brand EU",
    "settings": VALID_SETTINGS["google_dv360"],
}


def test_catalogue_lists_every_partner_with_schema(api):
    response = api.get("/api/v1/partners/")
    assert response.status_code == 200
    keys = {p["key"] for p in response.json()}
    assert keys == {p.key for p in all_partners()}
    dv360 = api.get("/api/v1/partners/google_dv360/").json()
    assert dv360["multiple_configs"] is True
    assert {f["name"]: f["secret"] for f in dv360["settings"]}["client_secret"] is True
    assert api.get("/api/v1/partners/?kind=tag_based").json()[0]["kind"] == "tag_based"
    assert api.get("/api/v1/partners/nope/").status_code == 404


def test_create_connector_returns_masked_secrets(api):
    response = api.post("/api/v1/connectors/", DV360_BODY, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["partner"] == "google_dv360"
    assert data["status"] == "active"
    config = data["configs"][0]
    assert config["secrets"]["client_secret"] == {"set": True, "last4": DV360_CLIENT_SECRET[-4:]}
    assert "client_secret" not in config["settings"]
    assert_no_secret(response)


def test_invalid_input_answers_400_per_field_and_writes_nothing(api):
    body = {**DV360_BODY, "settings": {**VALID_SETTINGS["google_dv360"], "advertiser_id": "abc", "refresh_token": ""}}
    body["timeout_seconds"] = 45
    response = api.post("/api/v1/connectors/", body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert errors["settings"]["advertiser_id"] == ["Enter the numeric id (digits only)."]
    assert errors["settings"]["refresh_token"] == ["This field is required."]
    assert errors["timeout_seconds"] == ["Enter between 0.5 and 30.0 seconds."]
    assert not Connector.objects.exists()
    assert api.post("/api/v1/connectors/", {"partner": "webhook"}, format="json").json() == {
        "name": ["This field is required."]
    }


def test_list_shows_configuration_count_status_and_last_7_days(api):
    config = PartnerConfigFactory(connector__name="Hook")
    PartnerConfigFactory(connector=config.connector)
    today = timezone.now().date()
    DailyStatFactory(partner_config=config, day=today, outcome=Outcome.ADDED, count=5)
    DailyStatFactory(partner_config=config, day=today, outcome=Outcome.REMOVED, count=2)
    DailyStatFactory(partner_config=config, day=today, outcome=Outcome.TIMEOUT, count=1)
    DailyStatFactory(
        partner_config=config, day=today, outcome=Outcome.PARTNER_ERROR, partner_error_code="2650", count=3
    )
    DailyStatFactory(partner_config=config, day=today - timezone.timedelta(days=8), outcome=Outcome.ADDED, count=100)
    row = api.get("/api/v1/connectors/").json()["results"][0]
    assert row["name"] == "Hook"
    assert row["config_count"] == 2
    assert row["last_7_days"] == {"added": 5, "removed": 2, "skipped": 0, "errors": 4}


def test_configs_crud_and_single_configuration_rule(api):
    connector_id = api.post("/api/v1/connectors/", DV360_BODY, format="json").json()["id"]
    url = f"/api/v1/connectors/{connector_id}/configs/"
    second = api.post(url, {"name": "Brand US", "settings": VALID_SETTINGS["google_dv360"]}, format="json")
    assert second.status_code == 201
    assert len(api.get(url).json()["results"]) == 2
    detail = f"{url}{second.json()['id']}/"
    patched = api.patch(detail, {"settings": {"advertiser_id": "42"}}, format="json")
    assert patched.status_code == 200
    assert patched.json()["settings"]["advertiser_id"] == "42"
    assert patched.json()["secrets"]["client_secret"]["set"] is True
    assert api.patch(detail, {"settings": {"advertiser_id": "x"}}, format="json").status_code == 400
    assert api.delete(detail).status_code == 204

    meta = api.post(
        "/api/v1/connectors/",
        {"partner": "meta_custom_audiences", "name": "Meta", "settings": VALID_SETTINGS["meta_custom_audiences"]},
        format="json",
    ).json()
    refused = api.post(
        f"/api/v1/connectors/{meta['id']}/configs/",
        {"name": "Second", "settings": VALID_SETTINGS["meta_custom_audiences"]},
        format="json",
    )
    assert refused.status_code == 400
    assert "single configuration" in refused.json()["non_field_errors"][0]


def test_deactivate_activate_idempotent(api):
    connector = PartnerConfigFactory().connector
    first = api.post(f"/api/v1/connectors/{connector.pk}/deactivate/")
    assert first.status_code == 200
    assert first.json()["changed"] is True
    assert first.json()["connector"]["status"] == "deactivated"
    assert first.json()["connector"]["status_changed_by"] == "marketer"
    assert api.post(f"/api/v1/connectors/{connector.pk}/deactivate/").json()["changed"] is False
    assert api.post(f"/api/v1/connectors/{connector.pk}/activate/").json()["connector"]["status"] == "active"


def test_delete_used_connector_answers_409_with_usages(api):
    config = PartnerConfigFactory()
    AudienceConnectionFactory(partner_config=config, audience__name="VIPs")
    JourneyActivationStepFactory(partner_config=config, journey__name="Onboarding")
    response = api.delete(f"/api/v1/connectors/{config.connector_id}/")
    assert response.status_code == 409
    usages = response.json()["usages"]
    assert [(u["kind"], u["name"]) for u in usages] == [("audience", "VIPs"), ("journey", "Onboarding")]
    config_delete = api.delete(f"/api/v1/connectors/{config.connector_id}/configs/{config.pk}/")
    assert config_delete.status_code == 409
    assert len(config_delete.json()["usages"]) == 2
    assert PartnerConfig.objects.filter(pk=config.pk).exists()
    usage_view = api.get(f"/api/v1/connectors/{config.connector_id}/usages/").json()
    assert usage_view["in_use"] is True
    assert usage_view["live_journeys_with_unpublished_changes"] == []


def test_delete_unused_connector(api):
    connector = PartnerConfigFactory().connector
    assert api.delete(f"/api/v1/connectors/{connector.pk}/").status_code == 204
    assert not Connector.objects.exists()


def test_usages_list_live_journeys_with_unpublished_changes(api):
    now = timezone.now()
    step = JourneyActivationStepFactory(
        journey__name="Live with draft",
        journey__published_at=now,
        journey__draft_updated_at=now + timezone.timedelta(1),
    )
    body = api.get(f"/api/v1/connectors/{step.partner_config.connector_id}/usages/").json()
    assert body["live_journeys_with_unpublished_changes"] == ["Live with draft"]


def test_rename_connector(api):
    connector = PartnerConfigFactory().connector
    response = api.patch(f"/api/v1/connectors/{connector.pk}/", {"name": "Renamed"}, format="json")
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"
    assert ConnectorEvent.objects.filter(action="updated").exists()


@responses.activate
def test_test_connection_calls_the_partner(api):
    config = PartnerConfigFactory()  # webhook at https://hooks.example.com/dap
    responses.post("https://hooks.example.com/dap", status=204)
    response = api.post(f"/api/v1/partner-configs/{config.pk}/test/")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert responses.calls[0].request.headers["webhook-signature"].startswith("v1,")
    responses.replace(responses.POST, "https://hooks.example.com/dap", status=401)
    refused = api.post(f"/api/v1/partner-configs/{config.pk}/test/").json()
    assert refused["ok"] is False
    assert "401" in refused["message"]


def test_no_response_ever_contains_a_secret(api):
    created = api.post("/api/v1/connectors/", DV360_BODY, format="json")
    connector_id = created.json()["id"]
    config_id = created.json()["configs"][0]["id"]
    for response in (
        created,
        api.get("/api/v1/connectors/"),
        api.get(f"/api/v1/connectors/{connector_id}/"),
        api.get(f"/api/v1/connectors/{connector_id}/configs/"),
        api.get(f"/api/v1/connectors/{connector_id}/configs/{config_id}/"),
        api.get(f"/api/v1/partner-configs/{config_id}/"),
        api.patch(f"/api/v1/connectors/{connector_id}/configs/{config_id}/", {"name": "X"}, format="json"),
        api.post(f"/api/v1/connectors/{connector_id}/deactivate/"),
    ):
        assert response.status_code < 300
        assert_no_secret(response)
    for event in ConnectorEvent.objects.all():
        text = json.dumps(event.changes)
        for secret in ALL_TEST_SECRETS:
            assert secret not in text


class TestPermissions:
    def test_anonymous_is_refused(self):
        client = APIClient()
        config = PartnerConfigFactory()
        for method, url in (
            ("get", "/api/v1/connectors/"),
            ("get", "/api/v1/partners/"),
            ("post", "/api/v1/connectors/"),
            ("post", f"/api/v1/connectors/{config.connector_id}/deactivate/"),
            ("get", f"/api/v1/connectors/{config.connector_id}/configs/"),
            ("post", f"/api/v1/partner-configs/{config.pk}/test/"),
        ):
            assert getattr(client, method)(url).status_code in (401, 403), url

    def test_viewer_reads_but_cannot_change(self, viewer_api):
        config = PartnerConfigFactory()
        cid = config.connector_id
        assert viewer_api.get("/api/v1/connectors/").status_code == 200
        assert viewer_api.get(f"/api/v1/connectors/{cid}/").status_code == 200
        assert viewer_api.get(f"/api/v1/connectors/{cid}/configs/").status_code == 200
        assert viewer_api.get(f"/api/v1/connectors/{cid}/usages/").status_code == 200
        assert viewer_api.post("/api/v1/connectors/", DV360_BODY, format="json").status_code == 403
        assert viewer_api.patch(f"/api/v1/connectors/{cid}/", {"name": "x"}, format="json").status_code == 403
        assert viewer_api.post(f"/api/v1/connectors/{cid}/deactivate/").status_code == 403
        assert viewer_api.post(f"/api/v1/connectors/{cid}/activate/").status_code == 403
        assert viewer_api.delete(f"/api/v1/connectors/{cid}/").status_code == 403
        assert viewer_api.post(f"/api/v1/connectors/{cid}/configs/", {"name": "x"}, format="json").status_code == 403
        assert viewer_api.delete(f"/api/v1/connectors/{cid}/configs/{config.pk}/").status_code == 403
        assert viewer_api.post(f"/api/v1/partner-configs/{config.pk}/test/").status_code == 403
        config.connector.refresh_from_db()
        assert config.connector.is_active

    def test_token_authentication(self, marketing_admin):
        token = Token.objects.create(user=marketing_admin)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        assert client.get("/api/v1/connectors/").status_code == 200


@responses.activate
def test_no_log_line_contains_a_secret(api, caplog):
    caplog.set_level(logging.DEBUG)
    responses.post("https://oauth2.googleapis.com/token", json={"access_token": "ya29.test", "expires_in": 3599})
    responses.get(
        "https://displayvideo.googleapis.com/v4/advertisers/1234567",
        json={"advertiserId": "1234567", "displayName": "B"},
    )
    created = api.post("/api/v1/connectors/", DV360_BODY, format="json")
    connector_id = created.json()["id"]
    config_id = created.json()["configs"][0]["id"]
    bad = {**DV360_BODY, "name": "Other", "settings": {**DV360_BODY["settings"], "advertiser_id": "bad"}}
    assert api.post("/api/v1/connectors/", bad, format="json").status_code == 400
    api.patch(
        f"/api/v1/connectors/{connector_id}/configs/{config_id}/",
        {"settings": {"client_secret": "GOCSPX-rotatedSecretForLogs"}},
        format="json",
    )
    assert api.post(f"/api/v1/partner-configs/{config_id}/test/").json()["ok"]  # a real (mocked) Google call
    api.post(f"/api/v1/connectors/{connector_id}/deactivate/")
    assert "created" in caplog.text
    for secret in (*ALL_TEST_SECRETS, "GOCSPX-rotatedSecretForLogs"):
        assert secret not in caplog.text


def test_stats_give_totals_days_and_partner_errors_with_meaning_and_docs(api, viewer_api):
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import DailyStatFactory, PartnerConfigFactory

    config = PartnerConfigFactory(connector__partner_key="meta_custom_audiences")
    today = timezone.localdate()
    DailyStatFactory(partner_config=config, day=today, outcome="added", count=40)
    DailyStatFactory(partner_config=config, day=today - timedelta(days=1), outcome="added", count=2)
    DailyStatFactory(partner_config=config, day=today, outcome="partner_error", partner_error_code="2650", count=3)
    DailyStatFactory(partner_config=config, day=today, outcome="partner_error", partner_error_code="100/33", count=5)
    DailyStatFactory(partner_config=config, day=today - timedelta(days=40), outcome="added", count=1000)
    response = viewer_api.get(f"/api/v1/connectors/{config.connector_id}/stats/")
    assert response.status_code == 200
    body = response.json()
    assert body["days"] == 7 and body["by_outcome"]["added"] == 42 and body["by_outcome"]["partner_error"] == 8
    assert [d["outcomes"]["added"] for d in body["by_day"]] == [0, 0, 0, 0, 0, 2, 40]
    first, second = body["partner_errors"]
    assert (first["code"], first["count"], second["code"], second["count"]) == ("100/33", 5, "2650", 3)
    assert "does not exist" in first["meaning"] and first["docs_url"].startswith("https://developers.facebook.com")
    assert api.get(f"/api/v1/connectors/{config.connector_id}/stats/?days=90").json()["by_outcome"]["added"] == 1042
    bad = api.get(f"/api/v1/connectors/{config.connector_id}/stats/?days=5")
    assert bad.status_code == 400 and "days" in bad.json()
