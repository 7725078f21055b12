"""Alerts: opening and resolving (health, error rate), notices once per state change by e-mail and webhook."""

import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import responses
from django.contrib.auth.context_processors import PermWrapper
from django.core import mail
from django.db import IntegrityError, connection, connections, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from connectors import services
from connectors.models import Connector, DeliveryAttempt, PartnerConfig
from monitoring import alerts as alert_service
from monitoring import notify, selectors, tasks
from monitoring.alerts import alerts_evaluate
from monitoring.models import Alert
from monitoring.notify import alerts_notify
from tests.factories import ALL_TEST_SECRETS, PartnerConfigFactory, UserFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent.parent
HOOK_URL = "https://alerts.example.com/hooks/dap-T0KEN-in-url"
HOOK_SECRET = "alert-webhook-signing-secret-0123456789"
ADMIN_EMAIL = "ops@example.com"


@pytest.fixture(autouse=True)
def alert_settings(settings):
    settings.DAP_ALERT_ERROR_RATE = 0.2
    settings.DAP_ALERT_MIN_ITEMS = 20
    settings.DAP_ALERT_EMAILS = []
    settings.DAP_ALERT_WEBHOOK_URL = ""
    settings.DAP_ALERT_WEBHOOK_SECRET = ""
    settings.DAP_BASE_URL = "https://dap.example.com"
    return settings


@pytest.fixture
def admin_with_email(db):
    return UserFactory(username="ops", email=ADMIN_EMAIL, groups=["Marketing admin"])


@pytest.fixture
def webhook(alert_settings):
    alert_settings.DAP_ALERT_WEBHOOK_URL = HOOK_URL
    alert_settings.DAP_ALERT_WEBHOOK_SECRET = HOOK_SECRET
    with responses.RequestsMock() as rsps:
        yield rsps


def pause(config, health=PartnerConfig.Health.CREDENTIALS_INVALID, at=None, detail="The partner refused."):
    PartnerConfig.objects.filter(pk=config.pk).update(
        health=health, health_changed_at=at or timezone.now(), health_detail=detail
    )


def recover(config, at=None):
    PartnerConfig.objects.filter(pk=config.pk).update(
        health=PartnerConfig.Health.OK, health_changed_at=at or timezone.now(), health_detail=""
    )


def attempt(config, *, items, errors=0, retries=0, at=None):
    return DeliveryAttempt.objects.create(
        partner_config=config,
        at=at or timezone.now() - timedelta(minutes=5),
        action="add",
        status_code=200,
        item_count=items,
        ok_count=items - errors - retries,
        error_count=errors,
        retry_count=retries,
    )


def run():
    return tasks.evaluate_alerts()


# Health alerts and e-mail notices.


def test_one_email_per_state_change_and_one_recovery_notice(admin_with_email):
    config = PartnerConfigFactory(name="Brand EU", connector__name="DV360 prod")
    pause(config, detail="The partner refused the credentials; sending is paused.")

    first = run()
    assert first["opened"] == 1 and first["notified"] == 1
    run()
    run()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [ADMIN_EMAIL]
    assert message.subject == "[DAP] Alert: Credentials invalid — DV360 prod / Brand EU"
    assert "The partner refused the credentials; sending is paused." in message.body
    assert "Since: " in message.body
    assert f"https://dap.example.com/connectors/{config.connector_id}/" in message.body
    alert = Alert.objects.get()
    assert alert.is_open and alert.notified_at and alert.kind == Alert.Kind.CREDENTIALS_INVALID

    recover(config)
    result = run()
    assert result["resolved"] == 1 and result["notified"] == 1
    run()
    run()
    assert len(mail.outbox) == 2
    recovery = mail.outbox[1]
    assert recovery.subject == "[DAP] Recovered: Credentials invalid — DV360 prod / Brand EU"
    assert "healthy again" in recovery.body
    alert.refresh_from_db()
    assert not alert.is_open and alert.recovery_notified_at
    assert Alert.objects.count() == 1


def test_alert_opens_at_the_state_change_and_carries_the_detail():
    config = PartnerConfigFactory()
    since = timezone.now() - timedelta(hours=3)
    pause(config, health=PartnerConfig.Health.ENDPOINT_GONE, at=since, detail="The endpoint answered 410 Gone.")
    assert alerts_evaluate() == {"opened": 1, "resolved": 0}
    alert = Alert.objects.get()
    assert (alert.kind, alert.opened_at, alert.detail) == ("endpoint_gone", since, "The endpoint answered 410 Gone.")
    assert alerts_evaluate() == {"opened": 0, "resolved": 0}


def test_another_paused_state_resolves_the_alert_and_opens_one_of_the_new_kind():
    config = PartnerConfigFactory()
    pause(config, health=PartnerConfig.Health.ENDPOINT_GONE)
    alerts_evaluate()
    pause(config, health=PartnerConfig.Health.CREDENTIALS_INVALID)
    assert alerts_evaluate() == {"opened": 1, "resolved": 1}
    assert [(a.kind, a.is_open) for a in Alert.objects.order_by("id")] == [
        ("endpoint_gone", False),
        ("credentials_invalid", True),
    ]


def test_resumed_and_refused_again_is_a_new_episode(admin_with_email):
    config = PartnerConfigFactory()
    pause(config, at=timezone.now() - timedelta(minutes=10))
    run()
    # Resumed, then refused again, all between two runs: the state is the same but it was left and re-entered.
    assert services.partner_config_resume(partner_config=config)
    pause(config, at=timezone.now())
    result = run()
    assert (result["opened"], result["resolved"]) == (1, 1)
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 1
    subjects = [m.subject for m in mail.outbox]
    assert [s.split(":")[0] for s in subjects] == ["[DAP] Alert", "[DAP] Recovered", "[DAP] Alert"]
    assert "entered this state again" in mail.outbox[1].body


def test_new_credentials_refused_again_is_a_new_episode_but_a_repeated_pause_is_not():
    config = PartnerConfigFactory(connector__partner_key="meta_custom_audiences")
    pause(config, at=timezone.now() - timedelta(minutes=10))
    alerts_evaluate()
    # Two dispatch shards hit the 401 a moment apart: the second pause is no change of state.
    pause(config, at=timezone.now() - timedelta(minutes=9))
    assert alerts_evaluate() == {"opened": 0, "resolved": 0}
    # New credentials put it back to OK; the partner refuses them too before the next evaluation.
    services.partner_config_update(
        partner_config=config, settings={"ad_account_id": "act_1234567890", "access_token": "EAAG" + "x" * 40}
    )
    pause(config)
    assert alerts_evaluate() == {"opened": 1, "resolved": 1}


def test_opened_and_resolved_before_any_notice_sends_both_in_order(admin_with_email):
    config = PartnerConfigFactory()
    pause(config)
    alerts_evaluate()
    recover(config)
    alerts_evaluate()
    assert alerts_notify()["notified"] == 2
    assert [m.subject.split(":")[0] for m in mail.outbox] == ["[DAP] Alert", "[DAP] Recovered"]
    assert "It has resolved since" in mail.outbox[0].body
    assert alerts_notify()["notified"] == 0


def test_recipients_are_active_admins_and_superusers_with_an_address_or_the_setting(alert_settings):
    UserFactory(username="a1", email="a1@example.com", groups=["Marketing admin"])
    UserFactory(username="root2", email="root@example.com", is_superuser=True)
    UserFactory(username="noaddr", email="", groups=["Marketing admin"])
    UserFactory(username="gone", email="gone@example.com", is_superuser=True, is_active=False)
    UserFactory(username="v", email="viewer@example.com", groups=["Viewer"])
    assert notify.alert_recipients() == ["a1@example.com", "root@example.com"]
    alert_settings.DAP_ALERT_EMAILS = ["oncall@example.com", "oncall@example.com", "team@example.com"]
    assert notify.alert_recipients() == ["oncall@example.com", "team@example.com"]


def test_no_recipient_and_no_webhook_marks_the_notice_done(caplog):
    pause(PartnerConfigFactory())
    with caplog.at_level(logging.WARNING, logger="monitoring.notify"):
        result = run()
    assert result["notified"] == 0 and result["failed"] == 0
    assert "no e-mail recipients" in caplog.text
    alert = Alert.objects.get()
    assert alert.notified_at and alert.webhook_notified_at
    assert run()["notified"] == 0


# Error rate.


def error_rate_alerts():
    return list(
        Alert.objects.filter(kind=Alert.Kind.ERROR_RATE, resolved_at__isnull=True).values_list(
            "partner_config_id", flat=True
        )
    )


def test_error_rate_at_the_threshold_opens_below_it_does_not():
    at_threshold, below = PartnerConfigFactory(), PartnerConfigFactory()
    attempt(at_threshold, items=10, errors=2)
    attempt(at_threshold, items=10, errors=2)  # 4 of 20: exactly 0.2
    attempt(below, items=20, errors=3)  # 0.15
    assert alerts_evaluate()["opened"] == 1
    assert error_rate_alerts() == [at_threshold.pk]
    alert = Alert.objects.get()
    assert alert.error_rate == pytest.approx(0.2)
    assert alert.detail == "4 of 20 items failed in the last hour."


def test_too_few_items_are_not_judged():
    config = PartnerConfigFactory()
    attempt(config, items=19, errors=19)
    assert alerts_evaluate()["opened"] == 0
    attempt(config, items=1)
    assert alerts_evaluate()["opened"] == 1  # 19 of 20


def test_retried_items_count_as_failures():
    config = PartnerConfigFactory()
    attempt(config, items=50, retries=50)  # a 5xx storm: everything will be retried
    attempt(config, items=50)
    alerts_evaluate()
    assert Alert.objects.get().error_rate == pytest.approx(0.5)


def test_errors_plus_retries_reach_the_threshold_together():
    config = PartnerConfigFactory()
    attempt(config, items=20, errors=2, retries=2)
    assert alerts_evaluate()["opened"] == 1


def test_attempts_older_than_one_hour_are_ignored():
    config, now = PartnerConfigFactory(), timezone.now()
    attempt(config, items=100, errors=100, at=now - timedelta(hours=1))  # exactly one hour ago: outside
    attempt(config, items=100, errors=100, at=now - timedelta(hours=2))
    attempt(config, items=20, at=now - timedelta(minutes=59))
    assert alerts_evaluate(now=now)["opened"] == 0


def test_another_configuration_is_unaffected():
    bad, good = PartnerConfigFactory(), PartnerConfigFactory()
    attempt(bad, items=40, errors=40)
    attempt(good, items=40)
    alerts_evaluate()
    assert error_rate_alerts() == [bad.pk]


def test_error_rate_alert_resolves_when_the_rate_falls_or_too_few_items_remain(admin_with_email):
    config, now = PartnerConfigFactory(), timezone.now()
    attempt(config, items=20, errors=10, at=now - timedelta(minutes=50))
    run_at = alerts_evaluate(now=now)
    assert run_at["opened"] == 1
    alerts_notify()
    assert mail.outbox[0].subject.startswith("[DAP] Alert: Error rate above threshold — ")
    assert "Error rate over the last hour: 50%" in mail.outbox[0].body

    # Healthy traffic dilutes the rate below 20%: resolved.
    attempt(config, items=40, at=now - timedelta(minutes=1))
    assert alerts_evaluate(now=now)["resolved"] == 1
    alerts_notify()
    assert mail.outbox[1].subject.startswith("[DAP] Recovered: Error rate above threshold")

    # A new episode; then an hour later the failures have aged out and nothing was sent since: too few to judge.
    attempt(config, items=100, errors=100, at=now)
    assert alerts_evaluate(now=now)["opened"] == 1
    assert alerts_evaluate(now=now + timedelta(minutes=61)) == {"opened": 0, "resolved": 1}


def test_deactivated_connectors_open_no_error_rate_alert():
    config = PartnerConfigFactory(connector__status=Connector.Status.DEACTIVATED)
    attempt(config, items=100, errors=100)
    assert alerts_evaluate()["opened"] == 0


def test_a_paused_configuration_has_its_health_alert_only_and_starts_afresh_when_resumed():
    config, now = PartnerConfigFactory(), timezone.now()
    attempt(config, items=100, errors=100, at=now - timedelta(minutes=20))  # the 401s that paused it
    pause(config, at=now - timedelta(minutes=20) + timedelta(seconds=1))
    assert alerts_evaluate(now=now)["opened"] == 1
    assert Alert.objects.get().kind == Alert.Kind.CREDENTIALS_INVALID
    recover(config, at=now - timedelta(minutes=5))  # the credentials were fixed: the old failures no longer count
    assert alerts_evaluate(now=now) == {"opened": 0, "resolved": 1}
    attempt(config, items=30, errors=30, at=now - timedelta(minutes=1))  # but new failures do
    assert alerts_evaluate(now=now)["opened"] == 1


def test_deleting_a_configuration_deletes_its_alerts(admin_with_email):
    config, other = PartnerConfigFactory(), PartnerConfigFactory()
    pause(config)
    pause(other)
    alerts_evaluate()
    PartnerConfig.objects.get(pk=config.pk).delete()
    assert list(Alert.objects.values_list("partner_config_id", flat=True)) == [other.pk]
    assert alerts_notify()["notified"] == 1


def test_the_number_of_queries_does_not_grow_with_the_configurations(django_assert_max_num_queries):
    def setup(n):
        for _ in range(n):
            config = PartnerConfigFactory()
            pause(config)
            busy = PartnerConfigFactory()
            attempt(busy, items=50, errors=50)

    setup(2)
    with django_assert_max_num_queries(9) as few:
        assert alerts_evaluate()["opened"] == 4
    setup(25)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert alerts_evaluate()["opened"] == 50


def test_the_database_allows_one_open_alert_per_kind_and_opening_skips_a_racing_duplicate():
    config = PartnerConfigFactory()
    now = timezone.now()
    Alert.objects.create(partner_config=config, kind=Alert.Kind.ERROR_RATE, opened_at=now)
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(partner_config=config, kind=Alert.Kind.ERROR_RATE, opened_at=now)
    # What a second evaluator that read the same state inserts is dropped by the constraint, not an error.
    alert_service._insert([Alert(partner_config=config, kind=Alert.Kind.ERROR_RATE, opened_at=now)])
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 1


# Webhook.


def test_webhook_body_and_signature(webhook, admin_with_email):
    config = PartnerConfigFactory(name="Brand US", connector__name="Hooks")
    webhook.add(responses.POST, HOOK_URL, status=204)
    pause(config, detail="The partner refused the credentials.")
    run()
    recover(config)
    run()

    assert len(webhook.calls) == 2
    opened, resolved = (call.request for call in webhook.calls)
    expected = hmac.new(HOOK_SECRET.encode(), opened.body, hashlib.sha256).hexdigest()
    assert opened.headers["X-DAP-Signature"] == f"sha256={expected}"
    assert opened.headers["Content-Type"] == "application/json"
    body = json.loads(opened.body)
    alert = Alert.objects.get()
    assert body == {
        "event": "alert.opened",
        "alert": {
            "id": alert.pk,
            "kind": "credentials_invalid",
            "kind_label": "Credentials invalid",
            "connector_id": config.connector_id,
            "connector": "Hooks",
            "partner": config.connector.partner_name,
            "partner_config_id": config.pk,
            "partner_config": "Brand US",
            "detail": "The partner refused the credentials.",
            "error_rate": None,
            "opened_at": body["alert"]["opened_at"],
            "resolved_at": None,
            "url": f"https://dap.example.com/connectors/{config.connector_id}/",
        },
    }
    assert body["alert"]["opened_at"].endswith("Z")
    resolved_body = json.loads(resolved.body)
    assert resolved_body["event"] == "alert.resolved" and resolved_body["alert"]["resolved_at"]
    expected = hmac.new(HOOK_SECRET.encode(), resolved.body, hashlib.sha256).hexdigest()
    assert resolved.headers["X-DAP-Signature"] == f"sha256={expected}"
    assert len(mail.outbox) == 2


def test_webhook_without_secret_is_not_signed(webhook, alert_settings):
    webhook.add(responses.POST, HOOK_URL, status=200)
    alert_settings.DAP_ALERT_WEBHOOK_SECRET = ""
    pause(PartnerConfigFactory())
    run()
    assert "X-DAP-Signature" not in webhook.calls[0].request.headers


def test_failing_webhook_is_retried_without_repeating_the_email(webhook, admin_with_email, caplog):
    webhook.add(responses.POST, HOOK_URL, status=503)
    pause(PartnerConfigFactory())
    with caplog.at_level(logging.WARNING, logger="monitoring.notify"):
        first = run()
    assert (first["notified"], first["failed"]) == (1, 1)
    assert "503" in caplog.text and HOOK_URL not in caplog.text and "T0KEN" not in caplog.text
    alert = Alert.objects.get()
    assert alert.notified_at and alert.webhook_notified_at is None

    webhook.replace(responses.POST, HOOK_URL, status=200)
    second = run()
    assert (second["notified"], second["failed"]) == (1, 0)
    assert len(webhook.calls) == 2 and len(mail.outbox) == 1
    run()
    assert len(webhook.calls) == 2 and len(mail.outbox) == 1


def test_webhook_connection_error_logs_no_url(webhook, admin_with_email, caplog):
    import requests

    webhook.add(responses.POST, HOOK_URL, body=requests.ConnectionError(f"cannot reach {HOOK_URL}"))
    pause(PartnerConfigFactory())
    with caplog.at_level(logging.WARNING, logger="monitoring.notify"):
        assert run()["failed"] == 1
    assert "ConnectionError" in caplog.text and "T0KEN" not in caplog.text


def test_failing_email_is_retried_without_repeating_the_webhook(webhook, admin_with_email, monkeypatch, caplog):
    webhook.add(responses.POST, HOOK_URL, status=200)

    def smtp_down(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(notify, "send_mail", smtp_down)
    pause(PartnerConfigFactory())
    with caplog.at_level(logging.WARNING, logger="monitoring.notify"):
        assert run()["failed"] == 1
    assert "ConnectionRefusedError" in caplog.text
    alert = Alert.objects.get()
    assert alert.notified_at is None and alert.webhook_notified_at

    monkeypatch.undo()  # the SMTP server is back
    assert run()["notified"] == 1
    assert len(mail.outbox) == 1 and len(webhook.calls) == 1
    run()
    assert len(mail.outbox) == 1 and len(webhook.calls) == 1


def test_a_channel_that_is_down_is_tried_once_per_run_and_does_not_hold_up_the_other(webhook, admin_with_email):
    webhook.add(responses.POST, HOOK_URL, status=502)
    for _ in range(3):
        pause(PartnerConfigFactory())
    result = run()
    assert (result["notified"], result["failed"]) == (3, 1)
    assert len(mail.outbox) == 3 and len(webhook.calls) == 1
    webhook.replace(responses.POST, HOOK_URL, status=200)
    assert run()["notified"] == 3
    assert len(mail.outbox) == 3 and len(webhook.calls) == 4


def test_a_notice_the_receiver_refuses_does_not_hold_up_the_others(webhook):
    first, second = PartnerConfigFactory(), PartnerConfigFactory()
    pause(first)
    pause(second)
    alerts_evaluate()
    webhook.add(responses.POST, HOOK_URL, status=400)
    webhook.add(responses.POST, HOOK_URL, status=200)
    assert alerts_notify() == {"notified": 1, "failed": 1}
    assert list(
        Alert.objects.filter(webhook_notified_at__isnull=False).values_list("partner_config_id", flat=True)
    ) == [second.pk]


def test_recovery_waits_for_a_failed_opening_notice_on_the_same_channel(webhook):
    webhook.add(responses.POST, HOOK_URL, status=500)
    config = PartnerConfigFactory()
    pause(config)
    alerts_evaluate()
    recover(config)
    alerts_evaluate()
    assert alerts_notify()["failed"] == 1
    assert len(webhook.calls) == 1  # the recovery notice was not sent before the opening one
    webhook.replace(responses.POST, HOOK_URL, status=200)
    alerts_notify()
    assert [json.loads(c.request.body)["event"] for c in webhook.calls[1:]] == ["alert.opened", "alert.resolved"]


def test_configuring_a_webhook_later_does_not_replay_old_notices(alert_settings, admin_with_email):
    config = PartnerConfigFactory()
    pause(config)
    run()
    alert_settings.DAP_ALERT_WEBHOOK_URL = HOOK_URL
    with responses.RequestsMock() as rsps:
        assert run()["notified"] == 0
        assert len(rsps.calls) == 0


def test_notices_carry_no_secret(webhook, admin_with_email):
    webhook.add(responses.POST, HOOK_URL, status=200)
    for partner_key in ("google_dv360", "meta_custom_audiences", "webhook"):
        pause(PartnerConfigFactory(connector__partner_key=partner_key))
    run()
    assert len(mail.outbox) == 3 and len(webhook.calls) == 3
    texts = [m.subject + m.body for m in mail.outbox] + [c.request.body.decode() for c in webhook.calls]
    for text in texts:
        for secret in (*ALL_TEST_SECRETS, HOOK_SECRET):
            assert secret not in text


def test_a_notice_locked_by_another_notifier_is_skipped(admin_with_email, monkeypatch):
    pause(PartnerConfigFactory())
    alerts_evaluate()
    alert = Alert.objects.get()
    # Simulate the other notifier stamping it between the listing and the lock.
    Alert.objects.filter(pk=alert.pk).update(notified_at=timezone.now(), webhook_notified_at=timezone.now())
    assert notify._notify_one(alert.pk, notify.EMAIL, notify._EmailChannel([ADMIN_EMAIL])) == (0, None)
    assert mail.outbox == []


# Pages, selectors, admin, settings.


def test_open_alerts_selector_and_the_banner_include(marketing_admin, viewer):
    config = PartnerConfigFactory(name="Brand EU", connector__name="DV360 prod")
    other = PartnerConfigFactory()
    pause(config, detail="The partner refused the credentials.")
    attempt(other, items=20, errors=7)
    alerts_evaluate()
    assert {a.partner_config_id for a in selectors.open_alerts()} == {config.pk, other.pk}
    only = list(selectors.open_alerts(connector_ids=[config.connector_id]))
    assert [a.partner_config_id for a in only] == [config.pk]

    html = render_to_string(
        "monitoring/_alerts.html", {"alerts": selectors.open_alerts(), "perms": PermWrapper(viewer)}
    )
    assert 'class="alerts" role="alert"' in html
    assert "Credentials invalid" in html and "DV360 prod" in html and "Brand EU" in html
    assert f'href="/connectors/{config.connector_id}/"' in html
    assert "The partner refused the credentials." in html
    assert "Error rate above threshold" in html and "35%" in html

    nobody = UserFactory(username="nobody")
    hidden = render_to_string(
        "monitoring/_alerts.html", {"alerts": selectors.open_alerts(), "perms": PermWrapper(nobody)}
    )
    assert "alert" not in hidden
    empty = render_to_string("monitoring/_alerts.html", {"alerts": [], "perms": PermWrapper(marketing_admin)})
    assert empty.strip() == ""


def test_admin_lists_alerts_read_only(admin_site_client):
    config = PartnerConfigFactory(connector__name="Findable")
    pause(config)
    alerts_evaluate()
    alert = Alert.objects.get()
    page = admin_site_client.get("/admin/monitoring/alert/?state=open&kind=credentials_invalid&q=Findable")
    assert page.status_code == 200 and b"Findable" in page.content
    assert b"Findable" not in admin_site_client.get("/admin/monitoring/alert/?state=resolved").content
    assert admin_site_client.get("/admin/monitoring/alert/add/").status_code == 403
    detail = admin_site_client.get(f"/admin/monitoring/alert/{alert.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert admin_site_client.get("/admin/monitoring/workerheartbeat/").status_code == 200
    tasks.heartbeat()
    assert admin_site_client.get("/admin/monitoring/workerheartbeat/add/").status_code == 403


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DAP_ALERT_ERROR_RATE", "0", "DAP_ALERT_ERROR_RATE must be a fraction"),
        ("DAP_ALERT_ERROR_RATE", "1.5", "DAP_ALERT_ERROR_RATE must be a fraction"),
        ("DAP_ALERT_WEBHOOK_URL", "ftp://hooks.example.com/x", "DAP_ALERT_WEBHOOK_URL must be an http"),
        ("DAP_ALERT_EMAILS", "ops@example.com,not-an-address", "DAP_ALERT_EMAILS"),
    ],
)
def test_bad_alert_settings_are_refused_at_load(name, value, message):
    env = {**os.environ, name: value, "DJANGO_SETTINGS_MODULE": "dap.settings"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_row_locked_by_another_notifier_is_skipped_on_postgresql(alert_settings):
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED needs PostgreSQL (SQLite locks the whole database)")
    alert_settings.DAP_ALERT_EMAILS = [ADMIN_EMAIL]  # (no groups here: a transactional test starts from a flush)
    pause(PartnerConfigFactory())
    alerts_evaluate()
    alert = Alert.objects.get()
    locked, release = threading.Event(), threading.Event()

    def other_notifier():
        try:
            with transaction.atomic():
                Alert.objects.select_for_update().get(pk=alert.pk)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_notifier)
    thread.start()
    try:
        assert locked.wait(10)
        assert alerts_notify() == {"notified": 0, "failed": 0}
        assert mail.outbox == []
    finally:
        release.set()
        thread.join()
    assert alerts_notify()["notified"] == 1
