"""Factories for every app. Secrets used here are long and distinctive so tests can prove they never leak."""

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from audiences.models import Audience, AudienceConnection
from connectors.forms import setting_field_name
from connectors.models import Connector, DailyStat, Outcome, PartnerConfig
from journeys.models import Journey, JourneyActivationStep, JourneyVersion

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
    # Clang: any well-formed uuid not starting with 00000000 is a known account in the sandbox; groups 1..999999 exist.
    "clang_realtime": {
        "uuid": "5f0c3a9e-7b1d-4c2e-9a8f-0d1e2f3a4b5c",
        "group_id": 4242,
        "identifier_slot": "customer_id",
    },
    "clang_batch": {
        "uuid": "5f0c3a9e-7b1d-4c2e-9a8f-0d1e2f3a4b5c",
        "group_id": 4242,
        "identifier_slot": "customer_id",
    },
    # Signed with the partner sandbox's well-known keys (connectors/partners/azure_*/sandbox.py), so the sandbox accepts
    # them; the SAS token is an account SAS (Queue service, container+object, read+add, https, until 2099).
    "azure_event_hubs": {
        "namespace": "dap-events",
        "event_hub": "profile-changes",
        "sas_key_name": "dap-send",
        "sas_key": "ZGFwLXNhbmRib3gtZXZlbnQtaHVicy1zYXMta2V5LTE=",
        "tier": "standard",
        "identifier_slot": "partner_number",
    },
    "azure_storage_queue": {
        "account_name": "dapstorage01",
        "queue_name": "profile-changes",
        "sas_token": "sv=2022-11-02&ss=q&srt=co&sp=ra&se=2099-12-31T00%3A00%3A00Z&spr=https"
        "&sig=oX5hjMTdduCNaEyqHw%2FHsKeSQcQsBFy8cF5Xt62pvhc%3D",
        "identifier_slot": "partner_number",
    },
    "xandr": {
        "username": "dap_api_user",
        "password": "Xandr-Sandbox-Passw0rd-4821!",
        "member_id": 1234,
        "mode": "realtime",
        "default_segment_id": 98765,
        "expiration_minutes": 0,
    },
    "google_ads_customer_match": {
        "operating_account_id": "123-456-7890",
        "user_list_id": "5551234567",
        "client_id": "1234567890-customermatch.apps.googleusercontent.com",
        "client_secret": "GOCSPX-gadsClientSecretValue2468",
        "refresh_token": "1//0gadsRefreshTokenValueMNOP1357",
        "terms_of_service_accepted": True,
    },
    "the_trade_desk": {
        "advertiser_id": "a1b2c3d",
        "crm_data_id": "cc9b84o",
        "api_token": "ttdAuthLongLivedTokenValueForTests5678WXYZ",
    },
    "google_cm360": {
        "profile_id": "7654321",
        "floodlight_configuration_id": "1234567",
        "floodlight_activity_id": "9876543",
        "client_id": "1234567890-cm360client.apps.googleusercontent.com",
        "client_secret": "GOCSPX-cm360ClientSecretValue5432",
        "refresh_token": "1//0cm360RefreshTokenValueQPON8765",
        "default_value": "12.50",
        "default_quantity": 1,
    },
}


def _secret_values() -> tuple[str, ...]:
    """Every secret of every partner's test settings: the leak tests look for all of them."""
    from connectors.partners.registry import REGISTRY

    return tuple(
        str(value)
        for key, values in VALID_SETTINGS.items()
        for name, value in values.items()
        if (field := REGISTRY[key].get_field(name)) is not None and field.secret
    )


ALL_TEST_SECRETS = _secret_values()


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


class JourneyVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = JourneyVersion
        django_get_or_create = ("journey", "number")

    journey = factory.SubFactory(JourneyFactory)
    number = factory.Sequence(lambda n: n + 1)
    definition = factory.LazyFunction(lambda: {"steps": []})
    published_at = factory.LazyFunction(timezone.now)


class JourneyActivationStepFactory(factory.django.DjangoModelFactory):
    """An activation step of the journey's published version (pass version=None for one of the draft)."""

    class Meta:
        model = JourneyActivationStep

    journey = factory.SubFactory(JourneyFactory)
    version = factory.SubFactory(JourneyVersionFactory, journey=factory.SelfAttribute("..journey"), number=1)
    step_key = factory.Sequence(lambda n: f"step-{n}")
    label = "Send to partner"
    partner_config = factory.SubFactory(PartnerConfigFactory)


class DailyStatFactory(factory.django.DjangoModelFactory):
    """Counts through the platform's own writer, so DailyTotal (the per-day category sums) stays in step."""

    class Meta:
        model = DailyStat

    @classmethod
    def _create(cls, model_class, partner_config, day, outcome, count, partner_error_code=""):
        from collections import Counter

        from connectors.delivery.stats import stats_increment

        stats_increment(Counter({(partner_config.pk, day, outcome, partner_error_code): count}))
        return model_class.objects.get(
            partner_config=partner_config, day=day, outcome=outcome, partner_error_code=partner_error_code
        )

    partner_config = factory.SubFactory(PartnerConfigFactory)
    day = factory.Faker("date_object")
    outcome = Outcome.ADDED
    count = 1


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "audiences.Profile"

    external_id = factory.Sequence(lambda n: f"profile-{n}")


class DeliveryFactory(factory.django.DjangoModelFactory):
    """An outbox row; failed by default (what the pages list and replay)."""

    class Meta:
        model = "connectors.Delivery"

    partner_config = factory.SubFactory(PartnerConfigFactory)
    profile = factory.SubFactory(ProfileFactory)
    action = "add"
    status = "failed"
    outcome = "partner_error"
    partner_error_code = "500"
    last_error = "the partner answered 500"
    attempts = 1
    created_at = factory.LazyFunction(timezone.now)
    next_attempt_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)


class DeliveryAttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "connectors.DeliveryAttempt"

    partner_config = factory.SubFactory(PartnerConfigFactory)
    at = factory.LazyFunction(timezone.now)
    action = "add"
    status_code = 200
    duration_ms = 120.0
    item_count = 10
    ok_count = 10
    outcome = "added"
