"""The audience benchmark runs end to end on a small N (its figures are measured by hand, never asserted)."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audiences.models import Audience, AudienceMembership, AudienceMembershipChange, Profile
from connectors.models import Connector, Delivery

KEYS = {"profiles", "database", "seconds", "profiles_per_s", "peak_rss_mb", "refreshes"}
REFRESH_KEYS = {"enters", "exits", "size", "outbox_rows", "outbox_replaced", "seconds", "profiles_per_s", "phases"}


@pytest.mark.django_db(transaction=True)
def test_bench_audiences_prints_one_json_line_and_cleans_up(settings):
    settings.DAP_KICK_ON_COMMIT = False  # the command turns it off: keep that inside this test
    out = StringIO()
    call_command("bench_audiences", profiles=50, stdout=out)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert set(result) >= KEYS
    assert result["profiles"] == 50 and result["database"] == connection.vendor and result["seconds"] > 0
    first, second = result["refreshes"]
    assert set(first) >= REFRESH_KEYS
    # 60 % enter; then 10 % change country: of those 5, the 3 members leave and the 2 others enter.
    assert (first["enters"], first["exits"], first["size"], first["outbox_rows"]) == (30, 0, 30, 30)
    assert (second["enters"], second["exits"], second["size"], second["outbox_rows"]) == (2, 3, 29, 5)
    assert second["outbox_replaced"] == 3  # the leavers' adds were still waiting: the removes replace them
    assert not Audience.objects.exists() and not Profile.objects.exists() and not Connector.objects.exists()
    assert not Delivery.objects.exists() and not AudienceMembership.objects.exists()
    assert not AudienceMembershipChange.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_bench_audiences_keeps_its_rows_when_asked(settings):
    settings.DAP_KICK_ON_COMMIT = False
    call_command("bench_audiences", profiles=20, keep=True, stdout=StringIO())
    # 12 entered (adds); then of profiles 0..4 the 3 members left and 2 others entered: the 3 removes replaced
    # the leavers' waiting adds.
    assert Profile.objects.count() == 20 and AudienceMembership.objects.count() == 12 - 3 + 2
    assert (
        Delivery.objects.filter(action="add").count() == 12 - 3 + 2
        and Delivery.objects.filter(action="remove").count() == 3
    )


@pytest.mark.django_db
def test_bench_audiences_refuses_bad_arguments():
    with pytest.raises(CommandError, match="--profiles"):
        call_command("bench_audiences", profiles=0)
