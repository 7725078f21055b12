"""The transactional outbox: producers write Delivery rows in their own transaction.

`deliveries_enqueue` is the bulk form (COPY on PostgreSQL, multi-row INSERT elsewhere). A newer change for the same
profile and configuration replaces an older pending one (latest action wins). Changes for a deactivated connector are
recorded as skipped. After commit the dispatcher is kicked for the configurations that got work.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Exists, OuterRef, Value, When
from django.utils import timezone

from audiences.models import AudienceConnection, AudienceMembership
from connectors.delivery.sql import ids_match, insert_select_ids, is_postgres, table
from connectors.delivery.stats import stats_day, stats_increment
from connectors.models import Connector, Delivery, Outcome, PartnerConfig
from connectors.partners.registry import REGISTRY

logger = logging.getLogger(__name__)

# Columns set per enqueue call (constants); profile_id comes from the id list.
COLUMNS = (
    "partner_config_id",
    "action",
    "audience_id",
    "journey_id",
    "status",
    "outcome",
    "partner_error_code",
    "last_error",
    "attempts",
    "created_at",
    "next_attempt_at",
    "finished_at",
)


@dataclass
class EnqueueResult:
    pending: int = 0
    skipped: int = 0
    replaced: int = 0


def deliveries_enqueue(
    *,
    partner_config_ids: Sequence[int],
    profile_ids: Sequence[int],
    action: str,
    audience_id: int | None = None,
    journey_id: int | None = None,
) -> EnqueueResult:
    """Enqueue `action` for every profile × configuration, in the caller's transaction (set-based)."""
    if action not in Delivery.Action.values:
        raise ValueError(f"unknown action {action!r}")
    result = EnqueueResult()
    if not partner_config_ids or not profile_ids:
        return result
    now = timezone.now()
    # Configurations whose partner syncs this action: a removal for an add-only partner (CM360 conversions) has
    # nothing to send, so nothing is queued for it.
    status_by_config = {
        pk: status
        for pk, status, partner_key in PartnerConfig.objects.filter(pk__in=partner_config_ids).values_list(
            "pk", "connector__status", "connector__partner_key"
        )
        if _syncs(partner_key, action)
    }
    with transaction.atomic():
        # Older pending rows these new ones may replace: looked for before writing (one index probe); the common
        # case of fresh changes then skips the replacement entirely.
        max_before = _max_id() if _has_pending(config_ids=list(status_by_config)) else None
        active_ids = []
        stats: Counter = Counter()
        for config_id in partner_config_ids:
            if config_id not in status_by_config:
                continue
            if status_by_config[config_id] == Connector.Status.DEACTIVATED:
                constants = (config_id, action, audience_id, journey_id, Delivery.Status.SKIPPED,
                             Outcome.SKIPPED_DEACTIVATED, "", "", 0, now, now, now)  # fmt: skip
                result.skipped += insert_select_ids(Delivery, COLUMNS, constants, "profile_id", profile_ids)
                stats[(config_id, stats_day(now), Outcome.SKIPPED_DEACTIVATED, "")] += len(profile_ids)
            else:
                constants = (config_id, action, audience_id, journey_id, Delivery.Status.PENDING,
                             "", "", "", 0, now, now, None)  # fmt: skip
                result.pending += insert_select_ids(Delivery, COLUMNS, constants, "profile_id", profile_ids)
                active_ids.append(config_id)
        if active_ids and max_before is not None:
            result.replaced = _replace_older(active_ids, max_before, profile_ids, audience_id, journey_id)
        stats_increment(stats)
        if active_ids and settings.DAP_KICK_ON_COMMIT:
            transaction.on_commit(lambda: kick(active_ids, rows=len(profile_ids)))
    return result


def _syncs(partner_key: str, action: str) -> bool:
    partner = REGISTRY.get(partner_key)
    return partner is not None and action in partner.syncs_on


def _max_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table(Delivery)}")
        return cursor.fetchone()[0]


def _has_pending(*, config_ids: list[int]) -> bool:
    return Delivery.objects.filter(partner_config_id__in=config_ids, status=Delivery.Status.PENDING).exists()


def same_target_sql(column: str) -> str:
    """`column` null-safely equal to a parameter (a change's source: audience or journey)."""
    return f"{column} IS NOT DISTINCT FROM %s" if is_postgres() else f"{column} IS %s"


def _replace_older(
    config_ids: list[int], max_before: int, profile_ids: Sequence[int], audience_id: int | None, journey_id: int | None
) -> int:
    """Drop pending rows older than the ones just written for the same configuration, profile and source (the
    audience or journey: each sends to its own partner-side audience, so their changes never replace each other).

    Rows a worker is sending right now are locked (PostgreSQL) and skipped: that send completes, then the newer row
    goes out after it, so the order holds.
    """
    name = table(Delivery)
    configs_sql, config_params = ids_match("partner_config_id", config_ids)
    with connection.cursor() as cursor:
        profiles_sql, profile_params = ids_match("profile_id", profile_ids)
        lock = " FOR UPDATE SKIP LOCKED" if is_postgres() else ""
        cursor.execute(
            f"DELETE FROM {name} WHERE id IN (SELECT id FROM {name} WHERE status = 'pending' AND id <= %s "
            f"AND {configs_sql} AND {profiles_sql} AND {same_target_sql('audience_id')} "
            f"AND {same_target_sql('journey_id')}{lock})",
            [max_before, *config_params, *profile_params, audience_id, journey_id],
        )
        return cursor.rowcount


def audience_members_enqueue(*, audience_id: int, profile_ids: Sequence[int], action: str) -> EnqueueResult:
    """An audience's members entered (add) or left (remove): enqueue for every configuration it is connected to."""
    config_ids = list(
        AudienceConnection.objects.filter(audience_id=audience_id, removing_since__isnull=True).values_list(
            "partner_config_id", flat=True
        )
    )
    return deliveries_enqueue(
        partner_config_ids=config_ids, profile_ids=profile_ids, action=action, audience_id=audience_id
    )


def connector_resync(*, connector: Connector, since=None) -> int:
    """After reactivation: add the current members of every connected audience, and remove the profiles whose
    removal was skipped while the connector was deactivated. Returns the number of rows enqueued."""
    total = 0
    # Connections being removed (their members' removals queued) get nothing new.
    connections = AudienceConnection.objects.filter(partner_config__connector=connector, removing_since__isnull=True)
    for conn in connections:
        members = list(
            AudienceMembership.objects.filter(audience_id=conn.audience_id).values_list("profile_id", flat=True)
        )
        total += deliveries_enqueue(
            partner_config_ids=[conn.partner_config_id], profile_ids=members, action=Delivery.Action.ADD,
            audience_id=conn.audience_id,
        ).pending  # fmt: skip
        skipped_removals = Delivery.objects.filter(
            partner_config_id=conn.partner_config_id,
            audience_id=conn.audience_id,
            status=Delivery.Status.SKIPPED,
            outcome=Outcome.SKIPPED_DEACTIVATED,
            action=Delivery.Action.REMOVE,
        )
        if since is not None:
            skipped_removals = skipped_removals.filter(created_at__gte=since)
        gone = set(skipped_removals.values_list("profile_id", flat=True)) - set(members)
        total += deliveries_enqueue(
            partner_config_ids=[conn.partner_config_id], profile_ids=sorted(gone), action=Delivery.Action.REMOVE,
            audience_id=conn.audience_id,
        ).pending  # fmt: skip
    logger.info("connector %s re-synced after activation: %s deliveries enqueued", connector.pk, total)
    return total


def kick(config_ids: Iterable[int], *, rows: int = 0) -> None:
    """Ask the workers to dispatch these configurations now (the schedule catches anything missed). A large change
    (`rows` per configuration) queues one task per DAP_KICK_ROWS_PER_TASK rows, up to the number of shards, so
    that several workers — on any number of machines — share a busy configuration, each holding its own shard; a
    task that finds every shard held returns at once.

    Best effort: it runs after the producer's commit, so a broker that is down (Redis restarting) must not fail a
    producer whose changes are already safe in the outbox; the schedule dispatches them within a minute."""
    from django_q.tasks import async_task

    tasks = fan_out(rows)
    try:
        for config_id in sorted(set(config_ids)):
            for _ in range(tasks):
                async_task("connectors.tasks.dispatch_config", config_id, task_name=f"dispatch-{config_id}", save=False)
    except Exception as exc:
        logger.warning(
            "could not kick the dispatcher (%s); the schedule will dispatch the committed changes", exc,
            extra={"config_ids": sorted(set(config_ids))},
        )  # fmt: skip


def fan_out(rows: int) -> int:
    """How many dispatch tasks `rows` due changes of one configuration are worth (1 to DAP_DISPATCH_SHARDS)."""
    return max(1, min(settings.DAP_DISPATCH_SHARDS, rows // max(1, settings.DAP_KICK_ROWS_PER_TASK)))


REPLAYABLE = (Delivery.Status.FAILED, Delivery.Status.SKIPPED)


def deliveries_replay(*, queryset) -> int:
    """Queue failed/skipped deliveries again as new changes (fresh retry window). Deactivated connectors and
    paused configurations are refused: their rows would only be skipped or wait."""
    from django.core.exceptions import ValidationError

    rows = queryset.filter(status__in=REPLAYABLE)
    blocked = (
        rows.exclude(partner_config__connector__status=Connector.Status.ACTIVE)
        .values_list("partner_config__connector__name", flat=True)
        .distinct()
    )
    if blocked:
        raise ValidationError(
            {"non_field_errors": [f"Activate the connector first: {', '.join(sorted(blocked))} is deactivated."]}
        )
    now = timezone.now()
    with transaction.atomic():
        config_ids = list(rows.values_list("partner_config_id", flat=True).distinct())
        # Send the profile's current state, not a stale action: a member is added, a leaver removed.
        member = Exists(
            AudienceMembership.objects.filter(audience_id=OuterRef("audience_id"), profile_id=OuterRef("profile_id"))
        )
        rows.filter(audience__isnull=False).update(
            action=Case(When(member, then=Value(Delivery.Action.ADD)), default=Value(Delivery.Action.REMOVE))
        )
        n = rows.update(
            status=Delivery.Status.PENDING, outcome="", partner_error_code="", last_error="", attempts=0,
            created_at=now, next_attempt_at=now, finished_at=None,
        )  # fmt: skip
        if config_ids and settings.DAP_KICK_ON_COMMIT:
            transaction.on_commit(lambda: kick(config_ids))
    logger.info("replayed %s deliveries", n)
    return n
