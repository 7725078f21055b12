"""django-q2 tasks: take ids, call the engine; every task is idempotent."""

import logging

from django.utils import timezone

from journeys import engine
from journeys.models import JourneyEvent

logger = logging.getLogger(__name__)

EVENT_RETENTION_DAYS = 30


def advance(journey_ids=None) -> dict:
    """Schedule (every minute) and on-commit kick: process events, enroll entrants, advance enrollments."""
    return engine.journeys_advance(journey_ids=journey_ids).as_dict()


def prune_events() -> int:
    """Schedule (daily): drop processed events older than the retention."""
    cutoff = timezone.now() - timezone.timedelta(days=EVENT_RETENTION_DAYS)
    deleted, _ = JourneyEvent.objects.filter(processed=True, received_at__lt=cutoff).delete()
    logger.info("pruned %s processed journey events", deleted)
    return deleted
