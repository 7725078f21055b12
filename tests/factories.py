"""Factories for every app. Secrets used here are long and distinctive so tests can prove they never leak."""

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from audiences.models import Audience, AudienceConnection
from connectors.forms import setting_field_name
from connectors.models import Connector, DailyStat, Outcome, PartnerConfig
from journeys.models import Journey, JourneyActivationStep

WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LXZhbHVlLWZvci10ZXN0cy0xMjM0NTY3ODk="  # 32 bytes once decoded
DV360_CLIENT_SECRET = "GOCSPX-dv360ClientSecretValue9876"
DV360_REFRESH_TOKEN = "1//0dv360RefreshTokenValueZYXW4321"
META_TOKEN = "EAAGmetaAccessTokenValueForTests1234QRST"

VALID_SETTINGS = {
    "webhook": {
        "endpoint_url": "https://hooks.example.com/dap",
        "signing_secret": WEBHOOK_SECRET,
        "identifier_slot": "customer_id",
    },
    "google_dv360": {
        "advertiser_id": "1234567",
        "client_id": "1234567890-abcdef.apps.googleusercontent.com",
        "client_secret": DV360_CLIENT_SECRET,
        "refresh_token": DV360_REFRESH_TOKEN,
    },
    "meta_custom_audiences": {"ad_account_id": "act_1234567890", "access_token": META_TOKEN},
}
ALL_TEST_SECRETS = (WEBHOOK_SECRET, DV360_CLIENT_SECRET, DV360_REFRESH_TOKEN, META_TOKEN)


def setting_form_data(partner_key: str, **fields) -> dict:
    """POST data of a page or admin form holding the partner's valid settings, plus `fields`."""
    return {**{setting_field_name(k): v for k, v in VALID_SETTINGS[partner_key].items()}, **fields}


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pass-word-123")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        for name in extracted or ():
            self.groups.add(Group.objects.get(name=name))


class ConnectorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Connector

    partner_key = "webhook"
    name = factory.Sequence(lambda n: f"Connector {n}")


class PartnerConfigFactory(factory.django.DjangoModelFactory):
    """A valid configuration for the connector's partner, secrets encrypted like the services do."""

    class Meta:
        model = PartnerConfig

    connector = factory.SubFactory(ConnectorFactory)
    name = factory.Sequence(lambda n: f"Config {n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        config = model_class(*args, **kwargs)
        partner = config.connector.partner
        plain, secrets = partner.clean_settings(VALID_SETTINGS[partner.key])
        config.settings = plain
        config.set_secrets(secrets)
        config.save()
        return config


class AudienceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Audience

    name = factory.Sequence(lambda n: f"Audience {n}")


class AudienceConnectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AudienceConnection

    audience = factory.SubFactory(AudienceFactory)
    partner_config = factory.SubFactory(PartnerConfigFactory)
    partner_audience_id = "seg-1"


class JourneyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Journey

    name = factory.Sequence(lambda n: f"Journey {n}")
    status = Journey.Status.LIVE


class JourneyActivationStepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = JourneyActivationStep

    journey = factory.SubFactory(JourneyFactory)
    version = JourneyActivationStep.Version.PUBLISHED
    step_key = factory.Sequence(lambda n: f"step-{n}")
    label = "Send to partner"
    partner_config = factory.SubFactory(PartnerConfigFactory)


class DailyStatFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DailyStat

    partner_config = factory.SubFactory(PartnerConfigFactory)
    day = factory.Faker("date_object")
    outcome = Outcome.ADDED
    count = 1
