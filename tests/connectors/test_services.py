import logging

import pytest
import responses
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError

from connectors import services
from connectors.errors import InUseError
from connectors.models import Connector, ConnectorEvent, PartnerConfig
from tests.factories import (
    DV360_CLIENT_SECRET,
    VALID_SETTINGS,
    AudienceConnectionFactory,
    JourneyActivationStepFactory,
    PartnerConfigFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def create_dv360(name="DV360 Brand", actor=None):
    return services.connector_create(
        partner_key="google_dv360",
        name=name,
        config_name="Brand EU",
        settings=VALID_SETTINGS["google_dv360"],
        actor=actor,
    )


class TestCreate:
    def test_creates_connector_with_first_configuration_and_encrypted_secrets(self):
        actor = UserFactory()
        connector = create_dv360(actor=actor)
        config = connector.configs.get()
        assert connector.partner_key == "google_dv360"
        assert connector.status == Connector.Status.ACTIVE
        assert connector.created_by == actor
        assert config.name == "Brand EU"
        assert config.timeout_seconds == 3.0
        assert "client_secret" not in config.settings
        assert DV360_CLIENT_SECRET not in config.secrets_encrypted
        assert config.get_secrets()["client_secret"] == DV360_CLIENT_SECRET
        assert config.settings["ad_user_data_consent"] == "CONSENT_STATUS_GRANTED"  # schema default

    def test_every_invalid_field_is_reported_and_nothing_is_written(self):
        with pytest.raises(ValidationError) as exc:
            services.connector_create(
                partner_key="google_dv360",
                name="",
                settings={"advertiser_id": "12ab", "client_id": "nope", "bogus": "x"},
                timeout_seconds="99",
            )
        errors = exc.value.message_dict
        assert errors["name"] == ["This field is required."]
        assert errors["settings.advertiser_id"] == ["Enter the numeric id (digits only)."]
        assert "settings.client_id" in errors
        assert errors["settings.client_secret"] == ["This field is required."]
        assert errors["settings.refresh_token"] == ["This field is required."]
        assert errors["settings.bogus"] == ["Unknown setting for Google Display & Video 360."]
        assert errors["timeout_seconds"] == ["Enter between 0.5 and 30.0 seconds."]
        assert not Connector.objects.exists()
        assert not ConnectorEvent.objects.exists()

    def test_unknown_and_tag_based_partners_are_refused(self):
        with pytest.raises(ValidationError) as exc:
            services.connector_create(partner_key="nope", name="X")
        assert exc.value.message_dict["partner"] == ['Unknown partner "nope".']
        with pytest.raises(ValidationError) as exc:
            services.connector_create(partner_key="meta_pixel", name="Pixel")
        assert "tag-based" in exc.value.message_dict["partner"][0]

    def test_names_are_unique_case_insensitively(self):
        create_dv360("Brand")
        with pytest.raises(ValidationError) as exc:
            create_dv360("BRAND")
        assert exc.value.message_dict["name"] == ["A connector with this name already exists."]


class TestConfigurations:
    def test_dv360_allows_several_configurations(self):
        connector = create_dv360()
        services.partner_config_create(
            connector=connector, name="Brand US", settings={**VALID_SETTINGS["google_dv360"], "advertiser_id": "999"}
        )
        assert connector.configs.count() == 2

    def test_second_configuration_refused_for_single_configuration_partner(self):
        connector = services.connector_create(
            partner_key="meta_custom_audiences", name="Meta", settings=VALID_SETTINGS["meta_custom_audiences"]
        )
        with pytest.raises(ValidationError) as exc:
            services.partner_config_create(
                connector=connector, name="Second", settings=VALID_SETTINGS["meta_custom_audiences"]
            )
        assert "allows a single configuration" in exc.value.message_dict["non_field_errors"][0]
        assert connector.configs.count() == 1

    def test_configuration_names_unique_per_connector(self):
        connector = create_dv360()
        with pytest.raises(ValidationError) as exc:
            services.partner_config_create(
                connector=connector, name="brand eu", settings=VALID_SETTINGS["google_dv360"]
            )
        assert "already has a configuration" in exc.value.message_dict["name"][0]

    def test_edit_keeps_secret_when_left_empty_and_records_changes_without_values(self):
        actor = UserFactory()
        config = create_dv360().configs.get()
        services.partner_config_update(
            partner_config=config, settings={"advertiser_id": "7654321", "client_secret": ""}, actor=actor
        )
        config.refresh_from_db()
        assert config.settings["advertiser_id"] == "7654321"
        assert config.get_secrets()["client_secret"] == DV360_CLIENT_SECRET
        event = ConnectorEvent.objects.filter(action=ConnectorEvent.Action.CONFIG_UPDATED).get()
        assert event.actor == actor
        assert event.changes == {"advertiser_id": {"from": "1234567", "to": "7654321"}}

    def test_changing_a_secret_is_recorded_as_changed_only(self):
        config = create_dv360().configs.get()
        services.partner_config_update(partner_config=config, settings={"client_secret": "GOCSPX-brandNewSecret5555"})
        event = ConnectorEvent.objects.filter(action=ConnectorEvent.Action.CONFIG_UPDATED).get()
        assert event.changes == {"client_secret": {"secret": True, "changed": True}}
        assert "brandNewSecret" not in str(event.changes)

    def test_invalid_edit_changes_nothing(self):
        config = create_dv360().configs.get()
        with pytest.raises(ValidationError) as exc:
            services.partner_config_update(partner_config=config, settings={"advertiser_id": "x"}, timeout_seconds=0)
        assert set(exc.value.message_dict) == {"settings.advertiser_id", "timeout_seconds"}
        config.refresh_from_db()
        assert config.settings["advertiser_id"] == "1234567"
        assert config.timeout_seconds == 3.0

    @responses.activate
    def test_test_connection_validates_stored_settings(self):
        _mock_dv360()
        config = create_dv360().configs.get()
        assert services.partner_config_test_connection(partner_config=config).ok
        PartnerConfig.objects.filter(pk=config.pk).update(settings={**config.settings, "advertiser_id": "abc"})
        config.refresh_from_db()
        result = services.partner_config_test_connection(partner_config=config)
        assert not result.ok
        assert "advertiser_id" in result.errors


def _mock_dv360(advertiser_id="1234567"):
    """Google's token endpoint and the advertiser read DV360's test connection makes."""
    responses.post("https://oauth2.googleapis.com/token", json={"access_token": "ya29.test", "expires_in": 3599})
    responses.get(
        f"https://displayvideo.googleapis.com/v4/advertisers/{advertiser_id}",
        json={"advertiserId": advertiser_id, "displayName": "Brand EU"},
    )


class TestDeactivation:
    def test_deactivate_and_activate_record_who_and_when_and_are_idempotent(self):
        actor = UserFactory()
        connector = create_dv360()
        assert services.connector_deactivate(connector=connector, actor=actor) is True
        assert services.connector_deactivate(connector=connector, actor=actor) is False
        connector.refresh_from_db()
        assert connector.status == Connector.Status.DEACTIVATED
        assert connector.status_changed_by == actor
        assert connector.status_changed_at is not None
        assert services.connector_activate(connector=connector, actor=actor) is True
        assert services.connector_activate(connector=connector, actor=actor) is False
        connector.refresh_from_db()
        assert connector.is_active
        actions = list(ConnectorEvent.objects.filter(connector=connector).values_list("action", flat=True))
        assert actions.count("deactivated") == 1
        assert actions.count("activated") == 1


class TestDeleteGuard:
    def test_delete_refused_while_used_listing_every_usage(self):
        config = PartnerConfigFactory(connector__name="Hook")
        other = PartnerConfigFactory(connector=config.connector, name="Second")
        AudienceConnectionFactory(partner_config=config, audience__name="Loyal customers")
        JourneyActivationStepFactory(partner_config=other, journey__name="Welcome", label="Notify CRM")
        with pytest.raises(InUseError) as exc:
            services.connector_delete(connector=config.connector)
        described = [str(u) for u in exc.value.usages]
        assert described == [
            'Audience "Loyal customers" via configuration "' + config.name + '" (partner audience seg-1)',
            'Journey "Welcome" via configuration "Second" (step Notify CRM, published version, journey live)',
        ]
        assert Connector.objects.filter(pk=config.connector_id).exists()

    def test_configuration_delete_refused_while_used_and_for_the_last_one(self):
        config = PartnerConfigFactory()
        spare = PartnerConfigFactory(connector=config.connector, name="Spare")
        AudienceConnectionFactory(partner_config=config)
        with pytest.raises(InUseError) as exc:
            services.partner_config_delete(partner_config=config)
        assert [u.kind for u in exc.value.usages] == ["audience"]
        services.partner_config_delete(partner_config=spare)
        assert not PartnerConfig.objects.filter(pk=spare.pk).exists()
        config.audience_connections.all().delete()
        with pytest.raises(ValidationError) as exc:
            services.partner_config_delete(partner_config=config)
        assert "only configuration" in exc.value.message_dict["non_field_errors"][0]

    def test_delete_unused_connector_removes_configs_and_keeps_history(self):
        connector = create_dv360()
        services.connector_delete(connector=connector)
        assert not Connector.objects.exists()
        assert not PartnerConfig.objects.exists()
        assert ConnectorEvent.objects.filter(action="deleted", connector_name="DV360 Brand").exists()

    def test_database_protects_used_configurations(self):
        connection = AudienceConnectionFactory()
        with pytest.raises(ProtectedError):
            connection.partner_config.connector.delete()


@responses.activate
def test_service_logs_never_contain_secrets(caplog):
    _mock_dv360()
    caplog.set_level(logging.DEBUG)
    connector = create_dv360()
    config = connector.configs.get()
    services.partner_config_update(partner_config=config, settings={"client_secret": "GOCSPX-rotatedSecret7777"})
    services.partner_config_test_connection(partner_config=config)
    services.connector_deactivate(connector=connector)
    assert caplog.records, "the services log what they do"
    text = caplog.text
    assert DV360_CLIENT_SECRET not in text
    assert "rotatedSecret7777" not in text
    assert "1//0dv360RefreshToken" not in text
