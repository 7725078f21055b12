"""The demo's journey: live, entering on "Loyal customers", waiting a minute, sending to the CRM webhook."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from connectors import selectors as connector_selectors
from connectors.models import Connector, Delivery
from journeys import engine
from journeys.models import Journey, JourneyEnrollment

pytestmark = pytest.mark.django_db


def test_the_demo_journey_runs(settings):
    settings.DAP_KICK_ON_COMMIT = False
    call_command("load_demo")
    journey = Journey.objects.get(name="Welcome journey")
    assert journey.status == Journey.Status.LIVE and not journey.has_unpublished_changes
    version = journey.versions.get()
    assert [s["type"] for s in version.definition["steps"]] == ["entry", "wait", "activate", "exit"]
    crm = Connector.objects.get(name="CRM webhook")
    usages = connector_selectors.connector_usages(connector=crm)
    assert "step Notify CRM, published version, journey live" in [u.detail for u in usages if u.kind == "journey"]
    # The loyal customers entered after the journey went live: they are its first entrants.
    now = timezone.now()
    engine.journeys_advance(now=now)
    assert JourneyEnrollment.objects.filter(journey=journey, status="waiting").count() == 60
    before = Delivery.objects.filter(journey=journey).count()
    engine.journeys_advance(now=now + timedelta(minutes=1))
    assert before == 0
    assert Delivery.objects.filter(journey=journey, partner_config__connector=crm).count() == 60
    assert JourneyEnrollment.objects.filter(journey=journey, status="completed").count() == 60
    call_command("load_demo")  # idempotent
    assert Journey.objects.filter(name="Welcome journey").count() == 1 and journey.versions.count() == 1
