import pytest
from django.core.management import call_command
from django.db.models import Count

from connectors import selectors
from connectors.models import Connector, Delivery

pytestmark = pytest.mark.django_db


def test_demo_data_is_complete_and_idempotent(capsys, settings):
    settings.DAP_KICK_ON_COMMIT = False
    call_command("load_demo")
    call_command("load_demo")
    out = capsys.readouterr().out
    assert "demo data already present" in out and "admin login: admin / admin" in out
    assert Connector.objects.get(partner_key="google_dv360").configs.count() == 2
    assert Connector.objects.filter(status=Connector.Status.DEACTIVATED).count() == 1
    meta = Connector.objects.get(partner_key="meta_custom_audiences")
    assert [u.name for u in selectors.connector_usages(connector=meta)] == ["Newsletter subscribers"]
    assert Connector.objects.count() == 4
    # The demo audiences queue real deliveries for Meta and the webhook (sent by the worker to the sandbox).
    queued = dict(Delivery.objects.values_list("partner_config__connector__name").annotate(n=Count("id")).order_by())
    assert queued == {"Meta Custom Audiences": 150, "CRM webhook": 60}
