"""Base-URL overrides (send a configuration's calls to another host, e.g. the partner sandbox) are for admins only:
the Django admin (staff) can set one, the REST API and the pages cannot, and only http(s) URLs without credentials,
query or fragment are accepted."""

import pytest
from django.core.exceptions import ValidationError

from connectors import services
from connectors.models import Connector, PartnerConfig
from tests.factories import VALID_SETTINGS, PartnerConfigFactory, setting_form_data

pytestmark = pytest.mark.django_db

SANDBOX = "http://127.0.0.1:8765/c/demo"
REFUSED = [
    "file:///etc/passwd",
    "ftp://files.example.com/",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "gopher://example.com/",
    "//example.com/no-scheme",
    "https://user:password@example.com/",
    "https://token@example.com/",
    "https://example.com/?token=abc",
    "https://example.com/path#fragment",
    "https://exa mple.com/",
    "https://",
    "http://example.com\n.evil.com/",
]


@pytest.mark.parametrize("value", REFUSED)
def test_the_service_refuses_anything_but_a_plain_http_url(value):
    config = PartnerConfigFactory()
    with pytest.raises(ValidationError) as exc:
        services.partner_config_update(partner_config=config, base_url_override=value)
    assert list(exc.value.message_dict) == ["base_url_override"]
    assert PartnerConfig.objects.get(pk=config.pk).base_url_override == ""
    with pytest.raises(ValidationError):
        services.connector_create(
            partner_key="webhook", name="x", settings=VALID_SETTINGS["webhook"], base_url_override=value
        )


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (SANDBOX, SANDBOX),
        ("https://eu.partner.example.com/api/", "https://eu.partner.example.com/api"),
        ("http://[::1]:8765", "http://[::1]:8765"),
        ("", ""),
    ],
)
def test_http_and_https_urls_are_accepted(value, stored):
    config = PartnerConfigFactory()
    services.partner_config_update(partner_config=config, base_url_override=value)
    assert PartnerConfig.objects.get(pk=config.pk).base_url_override == stored


def test_the_admin_sets_and_clears_an_override(admin_site_client):
    config = PartnerConfigFactory()
    url = f"/admin/connectors/partnerconfig/{config.pk}/change/"
    data = setting_form_data("webhook", name=config.name, timeout_seconds="3")
    assert admin_site_client.post(url, {**data, "base_url_override": SANDBOX}).status_code == 302
    assert PartnerConfig.objects.get(pk=config.pk).base_url_override == SANDBOX
    for bad in ("ftp://files.example.com/", "https://user:pw@example.com/", "javascript:alert(1)"):
        page = admin_site_client.post(url, {**data, "base_url_override": bad})
        assert page.status_code == 200 and b"errorlist" in page.content
        assert PartnerConfig.objects.get(pk=config.pk).base_url_override == SANDBOX
    assert admin_site_client.post(url, {**data, "base_url_override": ""}).status_code == 302
    assert PartnerConfig.objects.get(pk=config.pk).base_url_override == ""


def test_the_api_cannot_set_an_override(api):
    body = {"partner": "webhook", "name": "Hook", "settings": VALID_SETTINGS["webhook"], "base_url_override": SANDBOX}
    created = api.post("/api/v1/connectors/", body, format="json")
    assert created.status_code == 201
    assert "base_url_override" not in created.content.decode()
    config = PartnerConfig.objects.get(connector_id=created.json()["id"])
    assert config.base_url_override == ""

    url = f"/api/v1/connectors/{config.connector_id}/configs/{config.pk}/"
    for method in ("patch", "put"):
        response = getattr(api, method)(url, {"name": "Renamed", "base_url_override": SANDBOX}, format="json")
        assert response.status_code == 200
        assert PartnerConfig.objects.get(pk=config.pk).base_url_override == ""
    # Nor smuggled in among the settings.
    response = api.patch(url, {"settings": {"base_url_override": SANDBOX}}, format="json")
    assert response.status_code == 400
    assert "base_url_override" in response.json()["settings"]
    other = PartnerConfigFactory(connector__partner_key="google_dv360")
    body = {"name": "Second", "settings": VALID_SETTINGS["google_dv360"], "base_url_override": SANDBOX}
    response = api.post(f"/api/v1/connectors/{other.connector_id}/configs/", body, format="json")
    assert response.status_code == 201
    assert PartnerConfig.objects.get(pk=response.json()["id"]).base_url_override == ""


def test_the_pages_cannot_set_an_override(marketer_client):
    new = setting_form_data("webhook", name="Paged", config_name="Default", timeout_seconds="3")
    response = marketer_client.post("/connectors/new/webhook/", {**new, "base_url_override": SANDBOX})
    assert response.status_code == 302
    config = PartnerConfig.objects.get(connector=Connector.objects.get(name="Paged"))
    assert config.base_url_override == ""
    assert b"base_url_override" not in marketer_client.get(f"/connectors/{config.connector_id}/").content

    edit = setting_form_data("webhook", name=config.name, timeout_seconds="3", base_url_override=SANDBOX)
    url = f"/connectors/{config.connector_id}/configs/{config.pk}/edit/"
    assert b"base_url_override" not in marketer_client.get(url).content
    assert marketer_client.post(url, edit).status_code == 302
    assert PartnerConfig.objects.get(pk=config.pk).base_url_override == ""

    dv360 = PartnerConfigFactory(connector__partner_key="google_dv360")
    add = setting_form_data("google_dv360", name="EU", timeout_seconds="3", base_url_override=SANDBOX)
    assert marketer_client.post(f"/connectors/{dv360.connector_id}/configs/new/", add).status_code == 302
    assert not PartnerConfig.objects.exclude(base_url_override="").exists()
