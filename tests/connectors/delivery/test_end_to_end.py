"""End to end through the local partner sandbox: real clients, real HTTP on loopback, real dispatcher. Worker processes
killed, databases and Redis dropped, storms and parallel workers: the fault suite, test_faults.py."""

import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from connectors import services
from connectors.delivery import dispatcher
from connectors.models import Delivery, DeliveryAttempt, PartnerConfig
from tests.connectors.delivery.conftest import make_profiles
from tests.connectors.sandbox_helpers import connect, drain, enter, fault, sandbox_stats, stats
from tests.factories import WEBHOOK_SECRET

META_AUDIENCE = "23850000000001"


@pytest.fixture(autouse=True)
def fresh_clients():
    dispatcher._clients.clear()
    yield
    dispatcher._clients.clear()


@pytest.mark.django_db
def test_meta_add_remove_and_skips_reach_partner_and_statistics(sandbox):
    config, audience = connect("meta_custom_audiences", sandbox, "meta", META_AUDIENCE)
    emails = make_profiles(30, slot="email", prefix="m")
    no_identifier = make_profiles(5, slot="customer_id", prefix="x")
    enter(audience, emails + no_identifier)
    drain(config)
    assert sandbox_stats(sandbox, "meta")["meta"]["rows_added"] == 30
    enter(audience, emails[:10], "remove")
    drain(config)
    assert sandbox_stats(sandbox, "meta")["meta"]["rows_removed"] == 10
    assert stats(config) == {("added", ""): 30, ("removed", ""): 10, ("skipped_no_identifier", ""): 5}
    attempt = DeliveryAttempt.objects.filter(partner_config=config).first()
    assert attempt.status_code == 200 and attempt.duration_ms > 0


@pytest.mark.django_db
def test_webhook_deliveries_are_signed_and_counted(sandbox):
    requests.put(f"{sandbox.url}/_sandbox/webhooks/hook", json={"secret": WEBHOOK_SECRET}, timeout=5)
    config, audience = connect("webhook", sandbox, "hook", "crm", endpoint_url="https://receiver.example/webhook/hook")
    enter(audience, make_profiles(20))
    drain(config)
    hook = sandbox_stats(sandbox, "hook")["webhook"]
    assert (hook["events"], hook["unique_ids"], hook["errors"]) == ({"profile.added": 20}, 20, 0)
    assert stats(config) == {("added", ""): 20}


@pytest.mark.django_db
def test_the_3_second_timeout_holds_against_a_stalling_partner(sandbox, settings):
    settings.DAP_RETRY_WINDOW_SECONDS = 0  # fail at once, so the outcome is final
    config, audience = connect("meta_custom_audiences", sandbox, "stall", META_AUDIENCE)
    assert config.timeout_seconds == 3.0
    fault(sandbox, "stall", fault="slow", delay_s=6)
    enter(audience, make_profiles(3, slot="email"))
    started = time.monotonic()
    drain(config)
    elapsed = time.monotonic() - started
    attempt = DeliveryAttempt.objects.get(partner_config=config)
    assert attempt.outcome == "timeout" and attempt.status_code is None
    assert 2.9 <= attempt.duration_ms / 1000 < 4.5
    assert elapsed < 5.5  # the stalled call was abandoned, not waited for
    assert stats(config) == {("timeout", "timeout"): 3}


@pytest.mark.django_db
def test_partner_error_codes_reach_statistics(sandbox):
    config, audience = connect("meta_custom_audiences", sandbox, "perr", META_AUDIENCE)
    fault(sandbox, "perr", fault="partner_error", code=2650, count=1)
    enter(audience, make_profiles(4, slot="email"))
    drain(config)
    assert stats(config) == {("partner_error", "2650"): 4}
    failed = Delivery.objects.filter(partner_config=config, status="failed")
    assert failed.count() == 4 and {d.partner_error_code for d in failed} == {"2650"}


@pytest.mark.django_db
def test_throttling_is_retried_after_retry_after(sandbox):
    config, audience = connect("webhook", sandbox, "slowdown", "crm", endpoint_url="https://r.example/webhook/s")
    fault(sandbox, "slowdown", fault="rate_limit", retry_after=120, count=2)
    enter(audience, make_profiles(2))
    before = timezone.now()
    drain(config)
    rows = Delivery.objects.filter(partner_config=config)
    assert {(r.status, r.partner_error_code, r.attempts) for r in rows} == {("pending", "429", 1)}
    assert all(r.next_attempt_at >= before + timedelta(seconds=119) for r in rows)
    rows.update(next_attempt_at=timezone.now())  # time passes
    drain(config)
    assert stats(config) == {("added", ""): 2}


@pytest.mark.django_db
def test_server_errors_are_retried_then_fail_at_the_window(sandbox, settings):
    config, audience = connect("meta_custom_audiences", sandbox, "storm", META_AUDIENCE)
    fault(sandbox, "storm", fault="server_error", status=503)
    enter(audience, make_profiles(2, slot="email"))
    drain(config)
    assert set(Delivery.objects.values_list("status", "attempts")) == {("pending", 1)}
    settings.DAP_RETRY_WINDOW_SECONDS = 0
    Delivery.objects.update(next_attempt_at=timezone.now())
    drain(config)
    assert set(Delivery.objects.values_list("status", "outcome", "attempts")) == {("failed", "partner_error", 2)}
    assert sum(stats(config).values()) == 2


@pytest.mark.django_db
def test_connection_errors_count_as_other_error(sandbox, settings):
    settings.DAP_RETRY_WINDOW_SECONDS = 0
    config, audience = connect("meta_custom_audiences", sandbox, "down", META_AUDIENCE)
    PartnerConfig.objects.filter(pk=config.pk).update(base_url_override="http://127.0.0.1:9")  # nothing listens
    enter(audience, make_profiles(2, slot="email"))
    drain(config)
    assert stats(config) == {("other_error", "connection_error"): 2}


@pytest.mark.django_db
def test_expired_token_pauses_until_the_credentials_change(sandbox):
    config, audience = connect("meta_custom_audiences", sandbox, "token", META_AUDIENCE)
    fault(sandbox, "token", fault="expired_token")
    enter(audience, make_profiles(3, slot="email", prefix="a"))
    drain(config)
    config.refresh_from_db()
    assert config.health == PartnerConfig.Health.CREDENTIALS_INVALID
    assert stats(config) == {("invalid_credentials", "190/463"): 3}
    # Kept, not lost: later changes wait.
    enter(audience, make_profiles(2, slot="email", prefix="b"))
    assert drain(config).paused == "credentials_invalid"
    requests.delete(f"{sandbox.url}/_sandbox/faults?scope=token", timeout=5)
    services.partner_config_update(partner_config=config, settings={"access_token": "EAAB-renewed-token-1234567890"})
    drain(config)
    assert stats(config)[("added", "")] == 2


@pytest.mark.django_db
def test_a_deactivated_connector_sends_nothing(sandbox):
    config, audience = connect("meta_custom_audiences", sandbox, "off", META_AUDIENCE)
    members = make_profiles(3, slot="email", audience=audience)
    services.connector_deactivate(connector=config.connector)
    enter(audience, members)
    assert drain(config).paused == "deactivated"
    assert sandbox_stats(sandbox, "off")["meta"]["requests"] == 0
    assert stats(config) == {("skipped_deactivated", ""): 3}
    services.connector_activate(connector=config.connector)  # re-sync of the current members
    drain(config)
    assert sandbox_stats(sandbox, "off")["meta"]["rows_added"] == 3
