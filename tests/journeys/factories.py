"""Journey test helpers: profiles, memberships and definitions."""

import factory

from audiences.models import AudienceMembership, Profile
from tests.factories import AudienceFactory, PartnerConfigFactory


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile

    external_id = factory.Sequence(lambda n: f"p-{n:05d}")
    attributes = factory.LazyFunction(dict)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AudienceMembership

    audience = factory.SubFactory(AudienceFactory)
    profile = factory.SubFactory(ProfileFactory)


def webhook_config(**kwargs):
    return PartnerConfigFactory(connector__partner_key="webhook", **kwargs)


def entry_audience(audience_id: int, next_key: str = "send") -> dict:
    return {"key": "start", "type": "entry", "audience_id": audience_id, "next": next_key}


def entry_event(name: str, next_key: str = "send") -> dict:
    return {"key": "start", "type": "entry", "event": name, "next": next_key}


def activate(config_id: int, key: str = "send", next_key: str = "done", **extra) -> dict:
    return {"key": key, "type": "activate", "partner_config_id": config_id, "next": next_key, **extra}


def wait(key: str = "pause", next_key: str = "send", **duration) -> dict:
    return {"key": key, "type": "wait", "duration": duration or {"minutes": 1}, "next": next_key}


def exit_step(key: str = "done") -> dict:
    return {"key": key, "type": "exit"}


def simple_definition(config_id: int, *, audience_id: int | None = None, event: str | None = None) -> dict:
    """entry → activate → exit."""
    entry = entry_event(event) if event else entry_audience(audience_id)
    return {"steps": [entry, activate(config_id), exit_step()]}
