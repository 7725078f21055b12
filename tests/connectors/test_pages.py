import html

import pytest
import responses
from django.test import override_settings
from django.utils import timezone

from connectors.models import Connector, Outcome
from tests.assertions import assert_no_secret
from tests.factories import (
    DV360_CLIENT_SECRET,
    AudienceConnectionFactory,
    ConnectorFactory,
    DailyStatFactory,
    JourneyActivationStepFactory,
    PartnerConfigFactory,
    setting_form_data,
)

pytestmark = pytest.mark.django_db


def test_anonymous_goes_to_login_and_viewer_cannot_change(client, viewer):
    assert client.get("/connectors/").status_code == 302
    client.force_login(viewer)
    assert client.get("/connectors/").status_code == 200
    connector = PartnerConfigFactory().connector
    assert client.post(f"/connectors/{connector.pk}/deactivate/").status_code == 403
    assert client.post("/connectors/new/google_dv360/", setting_form_data("google_dv360", name="X")).status_code == 403
    assert client.post(f"/connectors/{connector.pk}/delete/").status_code == 403
    connector.refresh_from_db()
    assert connector.is_active


def test_list_shows_partner_name_count_status_label_and_7_day_totals(marketer_client):
    config = PartnerConfigFactory(connector__name="Hook A")
    PartnerConfigFactory(connector=config.connector)
    ConnectorFactory(name="Hook B", status=Connector.Status.DEACTIVATED)
    ConnectorFactory(name="Pixel", partner_key="meta_pixel")  # tag-based: not in this list
    today = timezone.now().date()
    DailyStatFactory(partner_config=config, day=today, outcome=Outcome.ADDED, count=1234)
    DailyStatFactory(partner_config=config, day=today, outcome=Outcome.REMOVED, count=56)
    DailyStatFactory(partner_config=config, day=today, outcome=Outcome.INVALID_CREDENTIALS, count=7)
    response = marketer_client.get("/connectors/")
    page = response.content.decode()
    assert "Server to Server Connectors" in page
    assert "Hook A" in page and "Hook B" in page and "Pixel" not in page
    assert '<td class="num added">1234</td>' in page
    assert '<td class="num removed">56</td>' in page
    assert '<td class="num errors">7</td>' in page
    assert '<span class="label deactivated">Deactivated</span>' in page
    assert "<td>2</td>" in page  # configurations of Hook A
    filtered = marketer_client.get("/connectors/?status=deactivated").content.decode()
    assert "Hook B" in filtered and "Hook A" not in filtered


@override_settings(DAP_EGRESS_IPS=["198.51.100.7", "198.51.100.8"])
def test_catalogue_lists_both_kinds_with_prerequisites_search_and_filter(marketer_client):
    page = marketer_client.get("/connectors/new/").content.decode()
    for name in ("Google Display &amp; Video 360", "Meta Custom Audiences", "Webhook", "Meta Pixel"):
        assert name in page
    assert "198.51.100.7" in page and "198.51.100.8" in page
    assert "An active account at the vendor" in page
    tag_only = marketer_client.get("/connectors/new/?kind=tag_based").content.decode()
    assert "Meta Pixel" in tag_only and "Webhook</strong>" not in tag_only
    searched = marketer_client.get("/connectors/new/?q=display").content.decode()
    assert "Google Display &amp; Video 360" in searched and "Meta Pixel" not in searched


def test_form_shows_field_errors_and_creates_nothing(marketer_client):
    response = marketer_client.post(
        "/connectors/new/google_dv360/", setting_form_data("google_dv360", name="", **{"setting__advertiser_id": "12x"})
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Enter the numeric id (digits only)." in page
    assert "This field is required." in page
    assert not Connector.objects.exists()
    assert DV360_CLIENT_SECRET not in page  # a posted secret is never echoed back


def test_create_add_configuration_deactivate_and_guarded_delete(marketer_client):
    response = marketer_client.post(
        "/connectors/new/google_dv360/", setting_form_data("google_dv360", name="DV360", config_name="Brand EU")
    )
    connector = Connector.objects.get(name="DV360")
    assert response.status_code == 302 and response.url == f"/connectors/{connector.pk}/"
    detail = marketer_client.get(response.url)
    assert_no_secret(detail)
    assert "•••• set, ending " + DV360_CLIENT_SECRET[-4:] in detail.content.decode()
    assert "Add configuration" in detail.content.decode()

    add = marketer_client.post(
        f"/connectors/{connector.pk}/configs/new/",
        setting_form_data("google_dv360", name="Brand US", **{"setting__advertiser_id": "555"}),
    )
    assert add.status_code == 302
    assert connector.configs.count() == 2

    config = connector.configs.get(name="Brand US")
    AudienceConnectionFactory(partner_config=config, audience__name="Summer buyers")
    confirm = marketer_client.get(f"/connectors/{connector.pk}/deactivate/").content.decode()
    assert "Summer buyers" in confirm
    marketer_client.post(f"/connectors/{connector.pk}/deactivate/")
    assert '<span class="label deactivated"' in marketer_client.get(f"/connectors/{connector.pk}/").content.decode()

    refused = marketer_client.post(f"/connectors/{connector.pk}/delete/")
    assert refused.status_code == 409
    assert 'Audience "Summer buyers" via configuration "Brand US"' in html.unescape(refused.content.decode())
    assert Connector.objects.filter(pk=connector.pk).exists()
    refused_config = marketer_client.post(f"/connectors/{connector.pk}/configs/{config.pk}/delete/")
    assert refused_config.status_code == 409


def test_edit_configuration_keeps_secret_and_shows_errors(marketer_client):
    config = PartnerConfigFactory(connector__partner_key="google_dv360")
    url = f"/connectors/{config.connector_id}/configs/{config.pk}/edit/"
    page = marketer_client.get(url)
    assert_no_secret(page)
    assert "leave empty to keep" in page.content.decode()
    data = setting_form_data("google_dv360", name=config.name, timeout_seconds="2.5")
    data["setting__client_secret"] = ""
    data["setting__advertiser_id"] = "777"
    assert marketer_client.post(url, data).status_code == 302
    config.refresh_from_db()
    assert config.settings["advertiser_id"] == "777"
    assert config.timeout_seconds == 2.5
    assert config.get_secrets()["client_secret"] == DV360_CLIENT_SECRET
    bad = marketer_client.post(url, {**data, "setting__advertiser_id": "abc"})
    assert bad.status_code == 400
    assert "Enter the numeric id (digits only)." in bad.content.decode()


def test_single_configuration_partner_has_no_add_configuration(marketer_client):
    config = PartnerConfigFactory(connector__partner_key="meta_custom_audiences")
    page = marketer_client.get(f"/connectors/{config.connector_id}/").content.decode()
    assert "Add configuration" not in page
    response = marketer_client.post(
        f"/connectors/{config.connector_id}/configs/new/", setting_form_data("meta_custom_audiences", name="Two")
    )
    assert response.status_code == 302
    assert config.connector.configs.count() == 1


def test_deactivate_screen_lists_live_journeys_with_unpublished_changes(marketer_client):
    now = timezone.now()
    step = JourneyActivationStepFactory(
        journey__name="Spring flow", journey__published_at=now, journey__draft_updated_at=now + timezone.timedelta(1)
    )
    page = marketer_client.get(f"/connectors/{step.partner_config.connector_id}/deactivate/").content.decode()
    assert 'id="live-drafts"' in page and "Spring flow" in page


def test_activate_and_history(marketer_client):
    connector = PartnerConfigFactory().connector
    marketer_client.post(f"/connectors/{connector.pk}/deactivate/")
    marketer_client.post(f"/connectors/{connector.pk}/activate/")
    page = marketer_client.get(f"/connectors/{connector.pk}/").content.decode()
    assert '<span class="label active">Active</span>' in page
    assert "Deactivated" in page and "Activated" in page and "marketer" in page


@responses.activate
def test_test_connection_button(marketer_client):
    config = PartnerConfigFactory()
    responses.post("https://hooks.example.com/dap", status=200)
    response = marketer_client.post(f"/connectors/{config.connector_id}/configs/{config.pk}/test/", follow=True)
    assert "Endpoint answered 200" in response.content.decode()


def test_tag_based_entry_shows_snippet(marketer_client):
    page = marketer_client.get("/connectors/new/meta_pixel/")
    assert page.status_code == 200
    assert "Show snippet" in page.content.decode()
    filled = marketer_client.get("/connectors/new/meta_pixel/?setting__pixel_id=123456789012345").content.decode()
    assert 'id="snippet"' in filled and "123456789012345" in filled
    bad = marketer_client.get("/connectors/new/meta_pixel/?setting__pixel_id=abc").content.decode()
    assert 'id="snippet"' not in bad


def test_unknown_partner_is_404(marketer_client):
    assert marketer_client.get("/connectors/new/nope/").status_code == 404


def test_detail_page_explains_partner_error_codes(marketer_client):
    from django.utils import timezone

    from tests.factories import DailyStatFactory, PartnerConfigFactory

    config = PartnerConfigFactory(connector__partner_key="meta_custom_audiences")
    DailyStatFactory(
        partner_config=config, day=timezone.localdate(), outcome="partner_error", partner_error_code="2650", count=3
    )
    page = marketer_client.get(f"/connectors/{config.connector_id}/").content.decode()
    assert (
        '<td>Partner error</td><td><code>2650</code></td><td class="num">3</td>'
        "<td>Meta could not update the custom audience" in page
    )
    assert "https://developers.facebook.com/docs/graph-api/guides/error-handling/" in page
