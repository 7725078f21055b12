"""django-q2 tasks of the monitoring app; thin, they call services."""

import os
import socket

from django.db import IntegrityError, transaction
from django.utils import timezone

from monitoring.models import WorkerHeartbeat


def heartbeat() -> str:
    """Schedule (every minute): this worker machine is alive and runs scheduled tasks.

    An UPDATE, then an INSERT the first time: each statement takes SQLite's write lock directly (waiting its busy
    timeout), where update_or_create's read-then-write transaction failed at once with "database is locked" while
    the other every-minute schedules were writing."""
    host = socket.gethostname()[:200]
    now = timezone.now()
    if not WorkerHeartbeat.objects.filter(host=host).update(pid=os.getpid(), beat_at=now):
        try:
            with transaction.atomic():
                WorkerHeartbeat.objects.create(host=host, pid=os.getpid(), beat_at=now)
        except IntegrityError:  # another process of this machine created the row meanwhile
            WorkerHeartbeat.objects.filter(host=host).update(pid=os.getpid(), beat_at=now)
    return host


def evaluate_alerts() -> dict:
    """Schedule (every minute): open/resolve alerts, then send the due notices (docs/alerts.md). Idempotent."""
    from monitoring.alerts import alerts_evaluate
    from monitoring.notify import alerts_notify

    return {**alerts_evaluate(), **alerts_notify()}
