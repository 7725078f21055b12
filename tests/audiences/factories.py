"""Audience test helpers: profiles with identifiers, audiences through the services, connected configurations."""

from audiences import services
from audiences.models import Audience, Profile, ProfileIdentifier
from connectors.models import Connector, Delivery
from tests.factories import ConnectorFactory, PartnerConfigFactory


def make_profile(external_id: str, attributes: dict | None = None, **identifiers) -> Profile:
    profile = Profile.objects.create(external_id=external_id, attributes=attributes or {})
    for slot, value in identifiers.items():
        ProfileIdentifier.objects.create(profile=profile, slot=slot, value=value)
    return profile


def rule_audience(rule: dict, name: str = "Audience") -> Audience:
    return services.audience_create(name=name, rule=rule)


def static_audience(name: str = "Static list") -> Audience:
    return services.audience_create(name=name, kind=Audience.Kind.STATIC)


def config_for(partner_key: str = "webhook", *, deactivated: bool = False, **settings):
    connector = ConnectorFactory(
        partner_key=partner_key, status=Connector.Status.DEACTIVATED if deactivated else Connector.Status.ACTIVE
    )
    config = PartnerConfigFactory(connector=connector)
    if settings:
        config.settings = {**config.settings, **settings}
        config.save(update_fields=["settings"])
    return config


def connect(audience: Audience, config, partner_audience_id: str = "", **kwargs):
    conn, _ = services.audience_connection_create(
        audience=audience, partner_config=config.pk, partner_audience_id=partner_audience_id, **kwargs
    )
    return conn


def deliveries(**filters) -> list[tuple[str, str, str]]:
    """(external id, action, status) of the outbox rows, sorted."""
    rows = Delivery.objects.filter(**filters).values_list("profile_id", "action", "status")
    names = dict(Profile.objects.values_list("id", "external_id"))
    return sorted((names.get(pid, str(pid)), action, status) for pid, action, status in rows)


def members(audience: Audience) -> list[str]:
    return sorted(audience.memberships.values_list("profile__external_id", flat=True))
