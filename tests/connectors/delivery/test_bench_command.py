"""The benchmark command runs end to end on a small N (its figures are measured by hand, never asserted)."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audiences.models import Audience, Profile
from connectors.models import Connector, Delivery

REQUIRED = {"partner", "profiles", "database", "seconds", "profiles_per_s", "p50_ms", "p95_ms", "peak_rss_mb"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("partner", ["meta", "webhook"])
def test_bench_delivery_prints_one_json_line_and_cleans_up(partner):
    out = StringIO()
    call_command("bench_delivery", partner=partner, profiles=30, workers=1, stdout=out)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert set(result) >= REQUIRED
    assert result["partner"] == partner and result["profiles"] == 30 and result["database"] == connection.vendor
    assert result["outcomes"] == {"added": 30}
    assert result["left_in_outbox"] == 0
    assert result["seconds"] > 0 and result["p95_ms"] >= result["p50_ms"] > 0
    if partner == "meta":
        assert result["sandbox"]["meta"]["rows_added"] == 30
    else:
        assert result["sandbox"]["webhook"]["unique_ids"] == 30
    # Nothing of the run is left behind.
    assert not Connector.objects.exists() and not Audience.objects.exists() and not Profile.objects.exists()
    assert not Delivery.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("option", "message"), [({"profiles": 0}, "--profiles"), ({"workers": 0}, "--workers")])
def test_bench_delivery_refuses_bad_arguments(option, message):
    with pytest.raises(CommandError, match=message):
        call_command("bench_delivery", **{"partner": "meta", "profiles": 10, "workers": 1, **option})
