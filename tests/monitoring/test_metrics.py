"""GET /metrics: the Prometheus exposition, its values against the rows they come from, and who may read it."""

from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from audiences.models import Profile
from connectors.models import DailyStat, Delivery, DeliveryAttempt, Outcome
from monitoring import metrics
from monitoring.models import Alert, WorkerHeartbeat
from tests.factories import ALL_TEST_SECRETS, ConnectorFactory, PartnerConfigFactory, UserFactory

pytestmark = pytest.mark.django_db

TOKEN = "metrics-scrape-token-0123456789abcdef"


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response["Cache-Control"] == "no-store"
    text = response.content.decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def deliveries(config, status, ages_seconds):
    now = timezone.now()
    profiles = Profile.objects.bulk_create([Profile() for _ in ages_seconds])
    Delivery.objects.bulk_create(
        [
            Delivery(
                partner_config=config,
                profile=profile,
                action=Delivery.Action.ADD,
                status=status,
                created_at=now - timedelta(seconds=age),
                next_attempt_at=now,
            )
            for profile, age in zip(profiles, ages_seconds, strict=True)
        ]
    )


def attempts(config, durations_ms, seconds_ago=10):
    at = timezone.now() - timedelta(seconds=seconds_ago)
    DeliveryAttempt.objects.bulk_create(
        [
            DeliveryAttempt(partner_config=config, at=at, action="add", duration_ms=ms, item_count=1, ok_count=1)
            for ms in durations_ms
        ]
    )


@pytest.fixture
def platform():
    """Two webhook configurations (one partner), one Meta configuration, with statistics, outbox rows, partner
    calls, alerts and a heartbeat."""
    hooks = ConnectorFactory(partner_key="webhook", name="ACME Secret Brand Hooks")
    hook_a = PartnerConfigFactory(connector=hooks, name="Brand A private")
    hook_b = PartnerConfigFactory(connector=hooks, name="Brand B private")
    meta = PartnerConfigFactory(connector=ConnectorFactory(partner_key="meta_custom_audiences", name="Meta of ACME"))
    today, earlier = date.today(), date.today() - timedelta(days=40)
    DailyStat.objects.bulk_create(
        [
            DailyStat(partner_config=hook_a, day=today, outcome=Outcome.ADDED, count=100),
            DailyStat(partner_config=hook_a, day=earlier, outcome=Outcome.ADDED, count=20),
            DailyStat(partner_config=hook_b, day=today, outcome=Outcome.ADDED, count=3),
            DailyStat(partner_config=hook_a, day=today, outcome=Outcome.TIMEOUT, partner_error_code="", count=4),
            DailyStat(partner_config=meta, day=today, outcome=Outcome.PARTNER_ERROR, partner_error_code="190", count=7),
            DailyStat(partner_config=meta, day=today, outcome=Outcome.PARTNER_ERROR, partner_error_code="26", count=1),
            DailyStat(partner_config=meta, day=today, outcome=Outcome.REMOVED, count=9),
        ]
    )
    deliveries(hook_a, Delivery.Status.PENDING, [5, 60, 10])
    deliveries(hook_b, Delivery.Status.PENDING, [900, 1])  # the oldest pending webhook change: 900 s
    deliveries(hook_a, Delivery.Status.FAILED, [3000, 4000])
    deliveries(meta, Delivery.Status.SKIPPED, [100])
    deliveries(meta, Delivery.Status.FAILED, [50])
    attempts(hook_a, [float(ms) for ms in range(1, 51)])
    attempts(hook_b, [float(ms) for ms in range(51, 101)], seconds_ago=200)
    attempts(hook_a, [5000.0] * 10, seconds_ago=301 + 60)  # outside the 5-minute window
    attempts(meta, [250.0])
    now = timezone.now()
    Alert.objects.create(partner_config=meta, kind=Alert.Kind.CREDENTIALS_INVALID, opened_at=now)
    Alert.objects.create(partner_config=hook_a, kind=Alert.Kind.ERROR_RATE, opened_at=now, error_rate=0.5)
    Alert.objects.create(partner_config=hook_b, kind=Alert.Kind.ERROR_RATE, opened_at=now)
    Alert.objects.create(
        partner_config=hook_a, kind=Alert.Kind.ENDPOINT_GONE, opened_at=now - timedelta(hours=2), resolved_at=now
    )
    WorkerHeartbeat.objects.create(host="w1", beat_at=now - timedelta(seconds=42))
    WorkerHeartbeat.objects.create(host="w2", beat_at=now - timedelta(seconds=4000))
    return hook_a, hook_b, meta


def test_values_match_the_rows(client, platform):
    samples = scrape(client)
    # Counter: every day's statistics, per partner key (both webhook configurations together) and outcome.
    assert value(samples, "dap_deliveries_total", partner="webhook", outcome="added") == 123
    assert value(samples, "dap_deliveries_total", partner="webhook", outcome="timeout") == 4
    assert value(samples, "dap_deliveries_total", partner="meta_custom_audiences", outcome="partner_error") == 8
    assert value(samples, "dap_deliveries_total", partner="meta_custom_audiences", outcome="removed") == 9
    # Outbox.
    assert value(samples, "dap_outbox_pending", partner="webhook") == 5
    assert value(samples, "dap_outbox_pending", partner="meta_custom_audiences") == 0
    assert value(samples, "dap_outbox_failed", partner="webhook") == 2
    assert value(samples, "dap_outbox_failed", partner="meta_custom_audiences") == 1
    assert 900 <= value(samples, "dap_outbox_oldest_pending_age_seconds", partner="webhook") < 960
    assert value(samples, "dap_outbox_oldest_pending_age_seconds", partner="meta_custom_audiences") == 0
    # Latency: the webhook calls of the window are 1..100 ms (percentile_cont / linear interpolation).
    assert value(samples, "dap_partner_calls_recent", partner="webhook") == 100
    assert value(samples, "dap_partner_calls_recent", partner="meta_custom_audiences") == 1
    assert value(samples, "dap_partner_call_duration_seconds", partner="webhook", quantile="0.5") == pytest.approx(
        0.0505
    )
    assert value(samples, "dap_partner_call_duration_seconds", partner="webhook", quantile="0.95") == pytest.approx(
        0.09505
    )
    assert value(samples, "dap_partner_call_duration_seconds", partner="webhook", quantile="0.99") == pytest.approx(
        0.09901
    )
    for q in ("0.5", "0.95", "0.99"):
        assert value(
            samples, "dap_partner_call_duration_seconds", partner="meta_custom_audiences", quantile=q
        ) == pytest.approx(0.25)
    # Alerts (resolved ones do not count; every kind is present).
    assert value(samples, "dap_alerts_open", kind="credentials_invalid") == 1
    assert value(samples, "dap_alerts_open", kind="error_rate") == 2
    assert value(samples, "dap_alerts_open", kind="endpoint_gone") == 0
    # Workers.
    assert 42 <= value(samples, "dap_worker_heartbeat_age_seconds") < 100
    assert value(samples, "dap_workers_alive") == 1
    assert all(value(samples, "dap_metrics_scrape_error", section=s) == 0 for s in metrics.DapCollector.SECTIONS)


def test_metric_types(client, platform):
    response = client.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    assert families["dap_deliveries"].type == "counter"
    for name in (
        "dap_outbox_pending",
        "dap_outbox_failed",
        "dap_outbox_oldest_pending_age_seconds",
        "dap_partner_call_duration_seconds",
        "dap_partner_calls_recent",
        "dap_alerts_open",
        "dap_worker_heartbeat_age_seconds",
        "dap_workers_alive",
    ):
        assert families[name].type == "gauge", name


def test_labels_hold_partner_keys_only(client, platform):
    text = client.get("/metrics").content.decode()
    for private in ("ACME", "Brand A private", "Meta of ACME", "w1", *ALL_TEST_SECRETS):
        assert private not in text
    labels = {
        key for family in text_string_to_metric_families(text) for sample in family.samples for key in sample.labels
    }
    assert labels == {"partner", "outcome", "quantile", "kind", "section"}


def test_empty_database(client):
    samples = scrape(client)
    assert value(samples, "dap_workers_alive") == 0
    assert not any(name == "dap_worker_heartbeat_age_seconds" for name, _ in samples)
    assert value(samples, "dap_alerts_open", kind="error_rate") == 0


def test_a_fixed_number_of_queries_whatever_the_rows(client, platform):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/metrics").status_code == 200
        return len([q for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]])

    before = queries()
    hook_a, hook_b, meta = platform
    extra = PartnerConfigFactory(connector=ConnectorFactory(partner_key="xandr"))
    for config in (hook_a, meta, extra):
        deliveries(config, Delivery.Status.PENDING, list(range(100)))
        attempts(config, [1.0] * 100)
    assert queries() == before <= 10


def test_a_failing_section_is_reported_and_the_rest_served(client, platform, monkeypatch):
    def broken(self, partners, now):
        raise RuntimeError("boom")

    monkeypatch.setattr(metrics.DapCollector, "_alerts", broken)
    samples = scrape(client)
    assert value(samples, "dap_metrics_scrape_error", section="alerts") == 1
    assert value(samples, "dap_metrics_scrape_error", section="outbox") == 0
    assert value(samples, "dap_outbox_pending", partner="webhook") == 5
    assert not any(name == "dap_alerts_open" for name, _ in samples)


def test_the_sqlite_sample_path_matches(platform):
    """Whatever the database, the sampled quantiles (SQLite's path) equal the exact ones for small windows."""
    hook_a, hook_b, meta = platform
    partners = {hook_a.pk: "webhook", hook_b.pk: "webhook", meta.pk: "meta_custom_audiences"}
    since = timezone.now() - timedelta(seconds=metrics.LATENCY_WINDOW_SECONDS)
    sampled = metrics.DapCollector._latency_quantiles_sampled(partners, since)
    assert sampled["webhook"] == pytest.approx([0.0505, 0.09505, 0.09901])
    assert sampled["meta_custom_audiences"] == pytest.approx([0.25, 0.25, 0.25])


def test_quantile_interpolation():
    assert metrics._quantile([1.0], 0.99) == 1.0
    assert metrics._quantile([1.0, 2.0], 0.5) == 1.5
    assert metrics._quantile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)


# --- access ---------------------------------------------------------------------------------------------------
def test_open_without_a_token(client, settings):
    settings.DAP_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 200


def test_token_required_when_set(client, settings):
    settings.DAP_METRICS_TOKEN = TOKEN
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert b"dap_" not in anonymous.content
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + TOKEN[:-1]).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Token " + TOKEN).status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + TOKEN).status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="bearer  " + TOKEN).status_code == 200


def test_staff_session_or_token(client, settings, marketing_admin):
    settings.DAP_METRICS_TOKEN = TOKEN
    client.force_login(marketing_admin)  # not staff
    assert client.get("/metrics").status_code == 403
    client.force_login(UserFactory(username="ops", is_staff=True))
    assert client.get("/metrics").status_code == 200


def test_openmetrics_when_asked(client):
    response = client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")
