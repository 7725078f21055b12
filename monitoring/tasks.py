"""django-q2 tasks of the monitoring app; thin, they call services."""

import os
import socket

from django.utils import timezone

from monitoring.models import WorkerHeartbeat


def heartbeat() -> str:
    """Schedule (every minute): this worker machine is alive and runs scheduled tasks."""
    host = socket.gethostname()[:200]
    WorkerHeartbeat.objects.update_or_create(host=host, defaults={"pid": os.getpid(), "beat_at": timezone.now()})
    return host
