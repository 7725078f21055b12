import html

import pytest

from connectors.models import Connector, ConnectorEvent, PartnerConfig
from tests.assertions import assert_no_secret
from tests.factories import (
    DV360_CLIENT_SECRET,
    AudienceConnectionFactory,
    ConnectorFactory,
    PartnerConfigFactory,
    setting_form_data,
)

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return html.unescape(response.content.decode())


def test_changelist_shows_deactivated_label(admin_site_client):
    ConnectorFactory(name="Old hook", status=Connector.Status.DEACTIVATED)
    ConnectorFactory(name="Live hook")
    page = admin_site_client.get("/admin/connectors/connector/")
    assert page.status_code == 200
    assert 'class="deactivated-label"' in page.content.decode()
    assert "Live hook" in text(page)


def test_add_connector_through_the_service_with_validation(admin_site_client):
    chooser = admin_site_client.get("/admin/connectors/connector/add/")
    assert "Google Display &amp; Video 360" in chooser.content.decode()
    url = "/admin/connectors/connector/add/?partner=google_dv360"
    form = admin_site_client.get(url)
    assert form.status_code == 200
    assert "setting__advertiser_id" in form.content.decode()
    bad = admin_site_client.post(
        url, setting_form_data("google_dv360", name="DV", config_name="EU", setting__advertiser_id="x")
    )
    assert bad.status_code == 200
    assert "Enter the numeric id (digits only)." in text(bad)
    assert DV360_CLIENT_SECRET not in bad.content.decode()
    assert not Connector.objects.exists()
    ok = admin_site_client.post(
        url, setting_form_data("google_dv360", name="DV", config_name="EU", timeout_seconds="3", base_url_override="")
    )
    assert ok.status_code == 302, text(ok)
    connector = Connector.objects.get(name="DV")
    assert connector.configs.get().get_secrets()["client_secret"] == DV360_CLIENT_SECRET
    assert ConnectorEvent.objects.filter(connector=connector, action="created").exists()


def test_partner_config_change_masks_secrets_and_keeps_them(admin_site_client):
    config = PartnerConfigFactory(connector__partner_key="google_dv360")
    url = f"/admin/connectors/partnerconfig/{config.pk}/change/"
    page = admin_site_client.get(url)
    assert page.status_code == 200
    assert_no_secret(page)
    assert "leave empty to keep" in text(page)
    listing = admin_site_client.get("/admin/connectors/partnerconfig/")
    assert_no_secret(listing)
    assert "client_secret: set …" + DV360_CLIENT_SECRET[-4:] in text(listing)
    data = setting_form_data(
        "google_dv360", name=config.name, timeout_seconds="4", base_url_override="http://127.0.0.1:8765"
    )
    data["setting__client_secret"] = ""
    data["setting__advertiser_id"] = "24680"
    response = admin_site_client.post(url, data)
    assert response.status_code == 302, text(response)
    config.refresh_from_db()
    assert config.settings["advertiser_id"] == "24680"
    assert config.base_url_override == "http://127.0.0.1:8765"
    assert config.get_secrets()["client_secret"] == DV360_CLIENT_SECRET
    history = admin_site_client.get("/admin/connectors/connectorevent/")
    assert_no_secret(history)


def test_second_configuration_refused_for_single_configuration_partner(admin_site_client):
    config = PartnerConfigFactory(connector__partner_key="meta_custom_audiences")
    response = admin_site_client.get(f"/admin/connectors/partnerconfig/add/?connector={config.connector_id}")
    assert response.status_code == 302
    assert PartnerConfig.objects.count() == 1


def test_add_second_dv360_configuration(admin_site_client):
    config = PartnerConfigFactory(connector__partner_key="google_dv360")
    url = f"/admin/connectors/partnerconfig/add/?connector={config.connector_id}"
    response = admin_site_client.post(url, setting_form_data("google_dv360", name="US", timeout_seconds="3"))
    assert response.status_code == 302, text(response)
    assert config.connector.configs.count() == 2


def test_delete_guard_lists_usages_and_refuses(admin_site_client):
    config = PartnerConfigFactory()
    AudienceConnectionFactory(partner_config=config, audience__name="Winter buyers")
    url = f"/admin/connectors/connector/{config.connector_id}/delete/"
    page = admin_site_client.get(url)
    assert "Winter buyers" in text(page)
    assert "would require deleting the following protected related objects" in text(page)
    admin_site_client.post(url, {"post": "yes"})
    assert Connector.objects.filter(pk=config.connector_id).exists()
    config_page = admin_site_client.get(f"/admin/connectors/partnerconfig/{config.pk}/delete/")
    assert "Winter buyers" in text(config_page)
    admin_site_client.post(f"/admin/connectors/partnerconfig/{config.pk}/delete/", {"post": "yes"})
    assert PartnerConfig.objects.filter(pk=config.pk).exists()


def test_delete_unused_connector(admin_site_client):
    connector = PartnerConfigFactory().connector
    response = admin_site_client.post(f"/admin/connectors/connector/{connector.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Connector.objects.exists()
    assert ConnectorEvent.objects.filter(action="deleted").exists()


def test_deactivate_and_activate_actions(admin_site_client):
    connector = PartnerConfigFactory().connector
    admin_site_client.post(
        "/admin/connectors/connector/", {"action": "deactivate_selected", "_selected_action": [connector.pk]}
    )
    connector.refresh_from_db()
    assert connector.status == Connector.Status.DEACTIVATED
    assert connector.status_changed_by.username == "root"
    admin_site_client.post(
        "/admin/connectors/connector/", {"action": "activate_selected", "_selected_action": [connector.pk]}
    )
    connector.refresh_from_db()
    assert connector.is_active


def test_rename_in_admin_goes_through_the_service(admin_site_client):
    connector = PartnerConfigFactory().connector
    ConnectorFactory(name="Taken")
    url = f"/admin/connectors/connector/{connector.pk}/change/"
    clash = admin_site_client.post(url, {"name": "taken"})
    assert "A connector with this name already exists." in text(clash)
    assert admin_site_client.post(url, {"name": "Fresh name"}).status_code == 302
    connector.refresh_from_db()
    assert connector.name == "Fresh name"


def test_deliveries_and_attempts_are_listed_read_only_and_replayable(admin_site_client):
    from django.utils import timezone

    from audiences.models import Profile
    from connectors.models import Delivery, DeliveryAttempt

    config = PartnerConfigFactory()
    profile = Profile.objects.create(external_id="p1")
    now = timezone.now()
    row = Delivery.objects.create(
        partner_config=config, profile=profile, action="add", status="failed", outcome="timeout",
        created_at=now, next_attempt_at=now, finished_at=now,
    )  # fmt: skip
    DeliveryAttempt.objects.create(partner_config=config, at=now, action="add", status_code=503, outcome="timeout")
    assert admin_site_client.get("/admin/connectors/delivery/").status_code == 200
    assert admin_site_client.get("/admin/connectors/deliveryattempt/").status_code == 200
    assert admin_site_client.get("/admin/connectors/delivery/add/").status_code == 403
    admin_site_client.post("/admin/connectors/delivery/", {"action": "replay_selected", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.status == "pending"
