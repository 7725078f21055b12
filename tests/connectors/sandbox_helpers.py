"""What the end-to-end tests against the local partner sandbox share: enqueue, drain, read the statistics on both
sides, inject faults."""

from __future__ import annotations

import requests

from audiences.models import Audience, AudienceConnection
from connectors import services
from connectors.delivery import dispatcher, outbox
from connectors.models import DailyStat
from tests.factories import VALID_SETTINGS


def connect(partner_key: str, sandbox, scope: str, partner_audience_id: str, **settings_override):
    """A connector of `partner_key` whose configuration sends to the sandbox under `scope`, and an audience connected
    to it: (config, audience)."""
    connector = services.connector_create(
        partner_key=partner_key,
        name=f"{partner_key} {scope}",
        settings={**VALID_SETTINGS[partner_key], **settings_override},
        base_url_override=f"{sandbox.url}/c/{scope}",
    )
    config = connector.configs.get()
    audience = Audience.objects.create(name=f"audience {scope}")
    AudienceConnection.objects.create(audience=audience, partner_config=config, partner_audience_id=partner_audience_id)
    return config, audience


def stats(config) -> dict[tuple[str, str], int]:
    """The configuration's DailyStat as {(outcome, code): count}."""
    return {(s.outcome, s.partner_error_code): s.count for s in DailyStat.objects.filter(partner_config=config)}


def sandbox_stats(sandbox, scope: str, partner: str | None = None) -> dict:
    """What the sandbox counted for a scope (one partner's counters when `partner` is given)."""
    scoped = requests.get(f"{sandbox.url}/_sandbox/stats?scope={scope}", timeout=5).json()[scope]
    return scoped[partner] if partner else scoped


def fault(sandbox, scope: str, **body) -> None:
    response = requests.post(f"{sandbox.url}/_sandbox/faults", json={"scope": scope, **body}, timeout=5)
    assert response.status_code == 201, response.text


def enter(audience, profiles, action: str = "add") -> None:
    """These profiles entered (add) or left (remove) the audience: enqueue for its connections."""
    outbox.audience_members_enqueue(audience_id=audience.pk, profile_ids=[p.pk for p in profiles], action=action)


def drain(config, rounds: int = 20):
    """Dispatch the configuration until nothing is claimed or it pauses; the last report."""
    report = None
    for _ in range(rounds):
        report = dispatcher.dispatch_config(config.pk)
        if report.claimed == 0 or report.paused:
            return report
    return report
