"""Alert services: open and resolve alerts from the configurations' state (see docs/alerts.md).

Everything is set-based: a handful of queries whatever the number of configurations. Opening relies on the database
(one open alert per configuration and kind): two evaluators racing insert the same alert once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, Sum
from django.utils import timezone

from connectors.models import Connector, ConnectorEvent, DeliveryAttempt, PartnerConfig
from monitoring.models import Alert

logger = logging.getLogger(__name__)

# Health states that pause sending, and the alert kind each opens (same values).
HEALTH_KINDS = (Alert.Kind.CREDENTIALS_INVALID, Alert.Kind.ENDPOINT_GONE)
# The error rate is judged over this window, ending now.
ERROR_RATE_WINDOW = timedelta(hours=1)
DETAIL_MAX_LENGTH = Alert._meta.get_field("detail").max_length


def alerts_evaluate(*, now: datetime | None = None) -> dict:
    """Open the alerts whose condition holds and resolve those whose condition ended; returns the counts
    {"opened": n, "resolved": n}. Idempotent: running it again without a change of state changes nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        resolved = _resolve_health(now)
        opened = _open_health(now)
        rates = error_rates(now=now)
        resolved += _resolve_error_rate(now, rates)
        opened += _open_error_rate(now, rates)
    if opened or resolved:
        logger.info("alerts: %s opened, %s resolved", opened, resolved)
    return {"opened": opened, "resolved": resolved}


# Health: credentials invalid, endpoint gone.


def _resolve_health(now: datetime) -> int:
    """Resolve health alerts whose configuration is healthy again or in another state, or whose state was left and
    entered again since the alert opened (an admin resumed it or changed its credentials, and the partner refused
    again before this ran: a new episode). Leaving the state is read from the audit history (the services record
    every return to OK with a "health" change), not from `health_changed_at`, which parallel dispatch shards
    pausing the same configuration may bump without a real change."""
    left_since = ConnectorEvent.objects.filter(
        partner_config_id=OuterRef("partner_config_id"), at__gt=OuterRef("opened_at"), changes__has_key="health"
    )
    return Alert.objects.filter(
        Q(resolved_at__isnull=True, kind__in=HEALTH_KINDS) & (~Q(partner_config__health=F("kind")) | Exists(left_since))
    ).update(resolved_at=now)


def _open_health(now: datetime) -> int:
    """One alert per configuration in a paused health state that has none open of that kind."""
    already_open = Alert.objects.filter(
        partner_config=OuterRef("pk"), kind=OuterRef("health"), resolved_at__isnull=True
    )
    rows = [
        Alert(
            partner_config_id=config_id,
            kind=health,
            detail=detail[:DETAIL_MAX_LENGTH],
            # Since when: the state change itself (the evaluator may run late, e.g. after a worker outage).
            opened_at=changed_at or now,
        )
        for config_id, health, detail, changed_at in PartnerConfig.objects.filter(health__in=HEALTH_KINDS)
        .filter(~Exists(already_open))
        .values_list("pk", "health", "health_detail", "health_changed_at")
    ]
    return _insert(rows)


# Error rate over the last hour.


def error_rates(*, now: datetime | None = None) -> dict[int, dict]:
    """Per configuration with partner calls in the last hour: {config_id: {"items", "failed", "rate", "active"}}
    ("active": the connector is active and the configuration healthy, i.e. it may send).

    One aggregate query. Failed items are those that failed for good plus those that failed and will be retried
    (a 5xx storm is a failure of every call even though the items are retried later). Calls made before the
    configuration's last health change do not count: the failures that paused it belong to its health alert, and
    once it is resumed or its credentials changed it starts afresh."""
    now = now or timezone.now()
    rows = (
        DeliveryAttempt.objects.filter(at__gt=now - ERROR_RATE_WINDOW, at__lte=now)
        .filter(Q(partner_config__health_changed_at__isnull=True) | Q(at__gt=F("partner_config__health_changed_at")))
        .values("partner_config_id", "partner_config__connector__status", "partner_config__health")
        .annotate(items=Sum("item_count"), failed=Sum(F("error_count") + F("retry_count")))
        .order_by()
    )
    return {
        row["partner_config_id"]: {
            "items": row["items"] or 0,
            "failed": row["failed"] or 0,
            "rate": (row["failed"] or 0) / row["items"] if row["items"] else 0.0,
            "active": row["partner_config__connector__status"] == Connector.Status.ACTIVE
            and row["partner_config__health"] == PartnerConfig.Health.OK,
        }
        for row in rows
    }


def is_error_rate_high(items: int, failed: int) -> bool:
    """Enough items to judge, and the failed fraction at or above the threshold."""
    return items >= settings.DAP_ALERT_MIN_ITEMS and items > 0 and failed / items >= settings.DAP_ALERT_ERROR_RATE


def _high(rates: dict[int, dict]) -> dict[int, dict]:
    return {config_id: r for config_id, r in rates.items() if is_error_rate_high(r["items"], r["failed"])}


def _resolve_error_rate(now: datetime, rates: dict[int, dict]) -> int:
    """Resolve error-rate alerts whose configuration's last hour is no longer judged high: the rate fell below the
    threshold, or too few items were sent to judge (including none, e.g. after the connector was deactivated)."""
    return (
        Alert.objects.filter(resolved_at__isnull=True, kind=Alert.Kind.ERROR_RATE)
        .exclude(partner_config_id__in=list(_high(rates)))
        .update(resolved_at=now)
    )


def _open_error_rate(now: datetime, rates: dict[int, dict]) -> int:
    """One alert per healthy configuration of an active connector whose last hour is judged high and that has none
    open (a paused configuration has its health alert instead)."""
    high = {config_id: r for config_id, r in _high(rates).items() if r["active"]}
    if not high:
        return 0
    already_open = set(
        Alert.objects.filter(resolved_at__isnull=True, kind=Alert.Kind.ERROR_RATE, partner_config_id__in=list(high))
        .order_by()
        .values_list("partner_config_id", flat=True)
    )
    rows = [
        Alert(
            partner_config_id=config_id,
            kind=Alert.Kind.ERROR_RATE,
            detail=f"{r['failed']} of {r['items']} items failed in the last hour.",
            error_rate=r["rate"],
            opened_at=now,
        )
        for config_id, r in sorted(high.items())
        if config_id not in already_open
    ]
    return _insert(rows)


def _insert(rows: list[Alert]) -> int:
    """Insert new open alerts; one that another evaluator opened meanwhile is skipped by the database's
    one-open-alert-per-kind constraint (the count then includes it: it is only reported)."""
    if rows:
        Alert.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)
