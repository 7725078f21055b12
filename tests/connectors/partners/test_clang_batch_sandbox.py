"""Clang batch end to end through the local sandbox: bulk upserts and bulk group adds, removals one by one, per-record
refusals, the fallback after fault 107, the pause on a refused uuid, and the connection test.

The rows are aged past the batch interval before each drain, so the tests hold whether or not the dispatcher waits
for `min_batch_size` rows or `batch_interval_seconds` (descriptor limits) before sending.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from audiences.models import Audience, AudienceConnection
from connectors import services
from connectors.delivery import dispatcher
from connectors.models import Delivery, PartnerConfig
from connectors.partners.registry import REGISTRY
from tests.connectors.partners.test_clang_realtime_sandbox import clang_stats, members, profiles
from tests.connectors.sandbox_helpers import enter, stats
from tests.factories import VALID_SETTINGS


@pytest.fixture(autouse=True)
def fresh_clients(settings):
    settings.DAP_KICK_ON_COMMIT = False
    settings.DAP_DISPATCH_SHARDS = 1
    dispatcher._clients.clear()
    yield
    dispatcher._clients.clear()


def connect(sandbox, scope, partner_audience_id="", variables=(), **settings_override):
    connector = services.connector_create(
        partner_key="clang_batch",
        name=f"clang batch {scope}",
        settings={**VALID_SETTINGS["clang_batch"], **settings_override},
        base_url_override=f"{sandbox.url}/c/{scope}",
    )
    config = connector.configs.get()
    audience = Audience.objects.create(name=f"audience {scope}")
    AudienceConnection.objects.create(
        audience=audience, partner_config=config, partner_audience_id=partner_audience_id,
        profile_variables=list(variables),
    )  # fmt: skip
    return config, audience


def drain(config, rounds=20):
    """Age the waiting rows past the batch interval (20 minutes), then dispatch until nothing is due."""
    waited = timezone.now() - timedelta(seconds=REGISTRY["clang_batch"].limits.batch_interval_seconds + 60)
    Delivery.objects.filter(partner_config=config, status="pending").update(created_at=waited, next_attempt_at=waited)
    for _ in range(rounds):
        report = dispatcher.dispatch_config(config.pk)
        if report.claimed == 0 or report.paused:
            return report
    return report


@pytest.mark.django_db
def test_adds_go_in_bulk_and_removals_one_by_one(sandbox):
    config, audience = connect(sandbox, "bt", variables=["lastname"])
    people = profiles(30, prefix="crm", attributes={"lastname": "Jansen"})
    enter(audience, people)
    drain(config)
    clang = clang_stats(sandbox, "bt")
    assert clang["calls"] == {"customer_insertBulkUnique": 1, "group_addMembersInBulk": 1}
    assert (clang["customers_created"], clang["members_added"], clang["errors"]) == (30, 30, 0)
    assert members(sandbox, "bt") == {"4242": sorted(f"crm-{i}" for i in range(30))}
    assert stats(config) == {("added", ""): 30}

    enter(audience, people[:5], "remove")
    drain(config)
    clang = clang_stats(sandbox, "bt")
    assert clang["calls"]["customer_getByExternalId"] == 5 and clang["calls"]["group_removeMember"] == 5
    assert clang["members_removed"] == 5 and len(members(sandbox, "bt")["4242"]) == 25
    assert stats(config) == {("added", ""): 30, ("removed", ""): 5}


@pytest.mark.django_db
def test_re_adding_members_falls_back_to_one_by_one_after_107(sandbox):
    config, audience = connect(sandbox, "bt-107", partner_audience_id="808")
    people = profiles(15, prefix="re")
    enter(audience, people[:10])
    drain(config)
    enter(audience, people)  # 10 already members, 5 new
    drain(config)
    clang = clang_stats(sandbox, "bt-107")
    assert clang["calls"]["group_addMembersInBulk"] == 2 and clang["calls"]["group_addMember"] == 15
    assert clang["faults"] == {"107": 11}  # the bulk call, then each of the 10 existing members
    assert len(members(sandbox, "bt-107")["808"]) == 15
    assert stats(config) == {("added", ""): 25}


@pytest.mark.django_db
def test_records_clang_refuses_are_per_row_partner_errors(sandbox):
    config, audience = connect(sandbox, "bt-rows", variables=["email"])
    good = profiles(4, prefix="ok", attributes={"email": "someone@example.com"})
    bad = profiles(2, prefix="bad", attributes={"email": "not-an-email"})
    enter(audience, good + bad)
    drain(config)
    assert clang_stats(sandbox, "bt-rows")["rows_rejected"] == 2
    assert stats(config) == {("added", ""): 4, ("partner_error", "not_stored"): 2}


@pytest.mark.django_db
def test_refused_uuid_pauses_the_configuration(sandbox):
    config, audience = connect(sandbox, "bt-token")
    requests.post(
        f"{sandbox.url}/_sandbox/faults",
        json={"scope": "bt-token", "partner": "clang", "fault": "expired_token"},
        timeout=5,
    )
    enter(audience, profiles(3, prefix="t"))
    assert drain(config).paused == "credentials_invalid"
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "100"): 3}


@pytest.mark.django_db
def test_connection_test(sandbox):
    config, _ = connect(sandbox, "bt-test")
    assert services.partner_config_test_connection(partner_config=config).ok
    services.partner_config_update(partner_config=config, settings={"uuid": "00000000-0000-4000-8000-000000000000"})
    config.refresh_from_db()
    result = services.partner_config_test_connection(partner_config=config)
    assert not result.ok and "refused the API token" in result.message
