"""Rotating a webhook's signing secret without a gap (Standard Webhooks allows several signatures in one header).

While `previous_signing_secret` is set every request carries the current and the previous secret's signatures, so a
receiver verifying with either key accepts it; clearing the setting ends the rotation. Requests go through the
dispatcher's own client (rebuilt when the configuration changes) to the partner sandbox's receivers.
"""

import base64

import pytest
import requests

from audiences.models import Profile
from connectors import services
from connectors.delivery.dispatcher import client_for
from connectors.delivery.types import Action, Item
from connectors.models import ConnectorEvent, PartnerConfig
from connectors.partners.webhook import signing
from tests.connectors.sandbox_helpers import sandbox_stats
from tests.factories import PartnerConfigFactory, UserFactory, setting_form_data

pytestmark = pytest.mark.django_db

OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"x" * 32).decode()


def receiver(sandbox, name: str, *keys: str) -> None:
    body = {"secrets": list(keys)} if len(keys) != 1 else {"secret": keys[0]}
    response = requests.put(f"{sandbox.url}/_sandbox/webhooks/{name}", json=body, timeout=5)
    assert response.status_code == 200, response.text


def received(sandbox, name: str) -> dict:
    return sandbox_stats(sandbox, name, "webhook")


def webhook_config(sandbox, name: str, secret: str = OLD) -> PartnerConfig:
    """A configuration whose endpoint is the sandbox receiver `name` (its own stats scope)."""
    config = PartnerConfigFactory(connector__partner_key="webhook")
    return services.partner_config_update(
        partner_config=config,
        settings={"endpoint_url": f"https://receiver.example/webhook/{name}", "signing_secret": secret},
        base_url_override=f"{sandbox.url}/c/{name}",
    )


def send(config: PartnerConfig, n: int = 1) -> int:
    """One profile change sent by the dispatcher's client for the configuration as stored now; the HTTP status."""
    client = client_for(PartnerConfig.objects.select_related("connector").get(pk=config.pk))
    item = Item(profile_id=n, action=Action.ADD, slot="customer_id", identifier=f"C-{n}", delivery_id=900 + n)
    (call,) = client.send(Action.ADD, [item])
    return call.status_code


def signatures(config: PartnerConfig) -> list[str]:
    client = client_for(PartnerConfig.objects.select_related("connector").get(pk=config.pk))
    return client.headers("msg_1", 1_700_000_000, b"{}")["webhook-signature"].split()


def rotate(config: PartnerConfig, **settings) -> PartnerConfig:
    return services.partner_config_update(partner_config=config, settings=settings)


def test_before_during_and_after_a_rotation(sandbox):
    receiver(sandbox, "old-key", OLD)
    receiver(sandbox, "new-key", NEW)
    old_cfg, new_cfg = webhook_config(sandbox, "old-key"), webhook_config(sandbox, "new-key")

    # Before: one signature, the old secret's.
    assert len(signatures(old_cfg)) == 1
    assert (send(old_cfg), send(new_cfg)) == (204, 401)

    # During: the new secret signs, the old one too: receivers holding either key accept.
    for config in (old_cfg, new_cfg):
        rotate(config, signing_secret=NEW, previous_signing_secret=OLD)
    current, previous = signatures(old_cfg)
    assert current == signing.sign(NEW, "msg_1", 1_700_000_000, b"{}")
    assert previous == signing.sign(OLD, "msg_1", 1_700_000_000, b"{}")
    assert (send(old_cfg), send(new_cfg)) == (204, 204)

    # After: clearing the previous secret ends the rotation; only the new key verifies.
    for config in (old_cfg, new_cfg):
        rotate(config, previous_signing_secret=None)
    assert len(signatures(old_cfg)) == 1
    assert (send(old_cfg), send(new_cfg)) == (401, 204)
    assert PartnerConfig.objects.get(pk=old_cfg.pk).get_secrets().keys() == {"signing_secret"}


def test_a_receiver_switching_keys_during_the_rotation_never_sees_an_invalid_request(sandbox):
    """The receiver holds the old key; the platform starts the rotation, the receiver switches to the new key, the
    platform ends the rotation: every request it gets in between verifies."""
    receiver(sandbox, "switching", OLD)
    config = webhook_config(sandbox, "switching")
    statuses = [send(config, n) for n in range(3)]
    rotate(config, signing_secret=NEW, previous_signing_secret=OLD)  # one save: no request signed by NEW alone
    statuses += [send(config, n) for n in range(3, 6)]
    receiver(sandbox, "switching", NEW)  # the receiver deploys the new key
    statuses += [send(config, n) for n in range(6, 9)]
    rotate(config, previous_signing_secret=None)
    statuses += [send(config, n) for n in range(9, 12)]
    assert statuses == [204] * 12
    stats = received(sandbox, "switching")
    assert (stats["requests"], stats["errors"]) == (12, 0)


def test_the_sandbox_receiver_verifies_against_any_of_its_keys(sandbox):
    receiver(sandbox, "two-keys", OLD, NEW)
    for secret in (OLD, NEW):
        assert send(webhook_config(sandbox, "two-keys", secret)) == 204
    assert send(webhook_config(sandbox, "two-keys", OTHER)) == 401
    assert received(sandbox, "two-keys")["errors"] == 1


def test_rotation_settings_are_validated():
    config = PartnerConfigFactory(connector__partner_key="webhook")
    current = config.get_secrets()["signing_secret"]
    for value, message in ((current, "current signing secret"), ("whsec_not base64", "not valid base64")):
        with pytest.raises(Exception) as exc:
            rotate(config, previous_signing_secret=value)
        assert message in str(exc.value.message_dict["settings.previous_signing_secret"])
    assert "previous_signing_secret" not in PartnerConfig.objects.get(pk=config.pk).get_secrets()


def test_clearing_is_only_for_optional_secrets_and_is_audited():
    config = PartnerConfigFactory(connector__partner_key="webhook")
    rotate(config, signing_secret=NEW, previous_signing_secret=OLD)
    rotate(config, signing_secret=None)  # a required secret is kept: null cannot remove it
    stored = PartnerConfig.objects.get(pk=config.pk).get_secrets()
    assert stored == {"signing_secret": NEW, "previous_signing_secret": OLD}
    rotate(config, previous_signing_secret="")  # empty keeps, as for every secret
    assert "previous_signing_secret" in PartnerConfig.objects.get(pk=config.pk).get_secrets()
    rotate(config, previous_signing_secret=None)
    assert PartnerConfig.objects.get(pk=config.pk).get_secrets() == {"signing_secret": NEW}
    last = ConnectorEvent.objects.filter(partner_config=config).order_by("-id").first()
    assert last.changes == {"previous_signing_secret": {"secret": True, "changed": True}}


def test_rotation_through_the_api(api):
    config = PartnerConfigFactory(connector__partner_key="webhook")
    url = f"/api/v1/connectors/{config.connector_id}/configs/{config.pk}/"
    response = api.patch(url, {"settings": {"signing_secret": NEW, "previous_signing_secret": OLD}}, format="json")
    assert response.status_code == 200
    assert response.json()["secrets"]["previous_signing_secret"] == {"set": True, "last4": OLD[-4:]}
    assert OLD not in response.content.decode() and NEW not in response.content.decode()
    response = api.patch(url, {"settings": {"previous_signing_secret": None}}, format="json")
    assert response.status_code == 200
    assert response.json()["secrets"]["previous_signing_secret"] == {"set": False, "last4": None}


def test_rotation_through_the_page_form(client):
    client.force_login(UserFactory(groups=["Marketing admin"]))
    config = PartnerConfigFactory(connector__partner_key="webhook")
    url = f"/connectors/{config.connector_id}/configs/{config.pk}/edit/"
    data = {"name": config.name, "timeout_seconds": "3", **setting_form_data("webhook")}
    data.update({"setting__signing_secret": NEW, "setting__previous_signing_secret": OLD})
    assert client.post(url, data).status_code == 302
    assert PartnerConfig.objects.get(pk=config.pk).get_secrets()["previous_signing_secret"] == OLD
    page = client.get(url).content.decode()
    assert "setting__previous_signing_secret__clear" in page and OLD not in page and NEW not in page
    data = {k: v for k, v in data.items() if "secret" not in k}
    assert client.post(url, {**data, "setting__previous_signing_secret__clear": "on"}).status_code == 302
    assert PartnerConfig.objects.get(pk=config.pk).get_secrets() == {"signing_secret": NEW}
    assert "__clear" not in client.get(url).content.decode()  # nothing stored: nothing to clear


def test_rotation_through_the_admin(admin_site_client):
    config = PartnerConfigFactory(connector__partner_key="webhook")
    url = f"/admin/connectors/partnerconfig/{config.pk}/change/"
    data = {"name": config.name, "timeout_seconds": "3", "base_url_override": "", **setting_form_data("webhook")}
    data.update({"setting__signing_secret": NEW, "setting__previous_signing_secret": OLD})
    assert admin_site_client.post(url, data).status_code == 302
    page = admin_site_client.get(url).content.decode()
    assert "setting__previous_signing_secret__clear" in page and OLD not in page
    data = {k: v for k, v in data.items() if "secret" not in k}
    assert admin_site_client.post(url, {**data, "setting__previous_signing_secret__clear": "on"}).status_code == 302
    assert PartnerConfig.objects.get(pk=config.pk).get_secrets() == {"signing_secret": NEW}


def test_the_connection_test_ping_carries_both_signatures(sandbox):
    """The ping of "test connection" is signed the same way during a rotation."""
    receiver(sandbox, "ping", OLD)
    config = webhook_config(sandbox, "ping")
    rotate(config, signing_secret=NEW, previous_signing_secret=OLD)
    result = services.partner_config_test_connection(partner_config=PartnerConfig.objects.get(pk=config.pk))
    assert result.ok, result.message
    assert not Profile.objects.exists()
