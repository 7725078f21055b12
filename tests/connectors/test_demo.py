import logging

import pytest
import requests
from django.core.management import call_command
from django.db.models import Count

from connectors import selectors, services
from connectors.delivery import dispatcher
from connectors.models import Connector, DailyStat, Delivery, DeliveryAttempt, Outcome, PartnerConfig
from connectors.partners.base import Kind
from connectors.partners.registry import REGISTRY

pytestmark = pytest.mark.django_db

SERVER_TO_SERVER = sorted(key for key, p in REGISTRY.items() if p.kind == Kind.SERVER_TO_SERVER)


@pytest.fixture(autouse=True)
def no_kick(settings):
    settings.DAP_KICK_ON_COMMIT = False


def test_demo_data_is_complete_and_idempotent(capsys):
    call_command("load_demo")
    call_command("load_demo")
    out = capsys.readouterr().out
    assert "demo data already present" in out and "admin login: admin / admin" in out
    assert Connector.objects.get(partner_key="google_dv360").configs.count() == 2
    assert Connector.objects.filter(status=Connector.Status.DEACTIVATED).count() == 1
    # One active connector per server-to-server partner of the catalogue.
    active = Connector.objects.filter(status=Connector.Status.ACTIVE)
    assert sorted(active.values_list("partner_key", flat=True)) == SERVER_TO_SERVER
    meta = Connector.objects.get(partner_key="meta_custom_audiences")
    usages = {(u.kind, u.name) for u in selectors.connector_usages(connector=meta)}
    assert {("audience", "Active this week"), ("audience", "Newsletter subscribers")} <= usages
    assert ("journey", "Site visit follow-up") in usages
    queued = dict(Delivery.objects.values_list("partner_config__connector__partner_key").annotate(n=Count("id")))
    assert set(queued) == set(SERVER_TO_SERVER)
    by_audience = dict(Delivery.objects.values_list("audience__name").annotate(n=Count("id")))
    assert by_audience["Newsletter subscribers"] == 150 and by_audience["Lookalike seed"] == 1800
    # The rule-based "Active this week" (every tenth profile) goes to five connectors.
    assert by_audience["Active this week"] == 5 * 200


def test_demo_activity_keeps_feeding_the_connectors():
    from django_q.models import Schedule

    from audiences.models import Audience
    from connectors import demo, tasks

    call_command("load_demo")
    assert Schedule.objects.filter(name=demo.ACTIVITY_SCHEDULE, func="connectors.tasks.demo_activity").exists()
    audience = Audience.objects.get(name=demo.ACTIVE_AUDIENCE)
    before = Delivery.objects.filter(audience=audience).count()
    result = tasks.demo_activity()
    assert result["changed"] == 20 and result["enters"] + result["exits"] == 20
    # Every enter and exit is an add or a remove for each of the audience's five connections.
    assert Delivery.objects.filter(audience=audience).count() > before
    actions = set(Delivery.objects.filter(audience=audience).values_list("action", flat=True))
    assert actions <= {"add", "remove"}
    # Five of them post a site visit: the live follow-up journey sends them to Meta.
    visits = Delivery.objects.filter(
        journey__name=demo.VISIT_JOURNEY, partner_config__connector__name="Meta Custom Audiences"
    )
    assert result["visits"] == 5 and visits.count() == 5


def test_the_demo_delivers_to_every_partner_through_the_sandbox(sandbox, monkeypatch, caplog, settings):
    """What bin/run shows: every server-to-server partner receives the demo's deliveries in its own protocol, its
    statistics fill, and its test connection passes against the sandbox."""
    settings.REDIS_URL = ""
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("DAP_SANDBOX_URL", sandbox.url)
    dispatcher._clients.clear()
    call_command("load_demo")
    configs = PartnerConfig.objects.filter(connector__status=Connector.Status.ACTIVE).select_related("connector")
    for _ in range(10):
        claimed = sum(dispatcher.dispatch_config(c.pk).claimed for c in configs)
        if not claimed:
            break
    delivered = {}
    for key in SERVER_TO_SERVER:
        rows = DailyStat.objects.filter(partner_config__connector__partner_key=key)
        delivered[key] = sum(s.count for s in rows if s.outcome in (Outcome.ADDED, Outcome.REMOVED))
    assert all(delivered.values()), delivered
    # Nothing failed: every queued profile was delivered or skipped for a stated reason (no identifier/consent).
    errors = DailyStat.objects.exclude(
        outcome__in=[Outcome.ADDED, Outcome.REMOVED, Outcome.SKIPPED_NO_IDENTIFIER, Outcome.SKIPPED_NO_CONSENT]
    )
    assert not errors.exists(), list(errors.values("partner_config__connector__partner_key", "outcome"))
    assert not Delivery.objects.filter(status=Delivery.Status.PENDING).exists()
    # Every partner's emulation saw the traffic.
    stats = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()
    for key in SERVER_TO_SERVER:
        scope = stats[f"demo-{key}"]
        assert sum(p["requests"] for p in scope.values()) > 0, key
    for config in configs:
        result = services.partner_config_test_connection(partner_config=config)
        assert result.ok, (config.connector.partner_key, result.message)
    # No secret of the demo in a log line or an attempt's snippet.
    for config in configs:
        for secret in config.get_secrets().values():
            assert secret not in caplog.text
            assert not DeliveryAttempt.objects.filter(snippet__contains=secret).exists()
