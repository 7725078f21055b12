"""django-q2 tasks: take ids, call the delivery services; every task is idempotent."""

import logging

from django.conf import settings
from django.utils import timezone

from audiences.models import Profile
from connectors.delivery import dispatcher, outbox
from connectors.models import Delivery, DeliveryAttempt

logger = logging.getLogger(__name__)


def dispatch_config(config_id: int) -> dict:
    """Send what is due for one configuration; queue itself again when its time budget ran out with work left."""
    report = dispatcher.dispatch_config(config_id)
    if report.more_due:
        outbox.kick([config_id])
    return {"claimed": report.claimed, "finished": report.finished, "retried": report.retried, "paused": report.paused}


def dispatch_due() -> int:
    """Schedule (every minute): dispatch every configuration with due work (retries, missed kicks)."""
    due = dispatcher.due_counts()
    for config_id, rows in due.items():
        outbox.kick([config_id], rows=rows)
    return len(due)


def prune() -> dict:
    """Schedule (daily): drop DeliveryAttempt rows and finished failed/skipped outbox rows past the retention."""
    cutoff = timezone.now() - timezone.timedelta(days=settings.DAP_ATTEMPT_RETENTION_DAYS)
    attempts, _ = DeliveryAttempt.objects.filter(at__lt=cutoff).delete()
    rows, _ = Delivery.objects.filter(
        status__in=[Delivery.Status.FAILED, Delivery.Status.SKIPPED], finished_at__lt=cutoff
    ).delete()
    # Changes of profiles deleted since they were queued can never be sent (the claim reads the profile): drop them.
    orphans, _ = Delivery.objects.exclude(profile_id__in=Profile.objects.values("id")).delete()
    logger.info(
        "pruned %s delivery attempts, %s finished deliveries and %s of deleted profiles", attempts, rows, orphans
    )
    return {"attempts": attempts, "deliveries": rows, "orphans": orphans}


def demo_activity() -> dict:
    """Demo only (the schedule is created by load_demo): simulated visitors change a rule-based demo audience."""
    from connectors import demo

    return demo.demo_activity()
