import pytest
from django.core.management import call_command

from connectors import selectors
from connectors.models import Connector

pytestmark = pytest.mark.django_db


def test_demo_data_is_complete_and_idempotent(capsys):
    call_command("load_demo")
    call_command("load_demo")
    out = capsys.readouterr().out
    assert "demo data already present" in out and "admin login: admin / admin" in out
    assert Connector.objects.get(partner_key="google_dv360").configs.count() == 2
    assert Connector.objects.filter(status=Connector.Status.DEACTIVATED).count() == 1
    meta = Connector.objects.get(partner_key="meta_custom_audiences")
    assert [u.name for u in selectors.connector_usages(connector=meta)] == ["Newsletter subscribers"]
    assert Connector.objects.count() == 4
