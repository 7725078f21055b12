"""Writes for audiences: create, edit, delete, refresh, static-list entries and connections to partner configurations.

Views, serializers, admin, tasks and commands call these. Invalid input raises a ValidationError with per-field
messages and writes nothing.

The refresh (`audience_refresh`) is set-based from start to end, whatever the audience's size:
1. the database computes the difference between the target set (the rule compiled to SQL by `rule_q`, or the
   static entries joined to the profiles' identifiers) and the current memberships into a temporary table of
   (profile id, enter|exit): on PostgreSQL one FULL OUTER JOIN (hash joins, one snapshot), on SQLite two anti-joins
   answered by index lookups;
2. from that table: DELETE the exits' memberships, INSERT the enters', INSERT the change log, and INSERT … SELECT one
   outbox row per enter (add) and exit (remove) for every live connection of the audience, with the outbox's own
   semantics (connectors/delivery/outbox.py): a deactivated connector's rows are recorded as skipped and counted in
   DailyStat, an action the partner does not sync is not queued, a newer change replaces an older pending one for
   the same configuration and profile, and the dispatcher is kicked after commit;
3. all in one transaction that holds the audience's row lock, so two refreshes of one audience never overlap.
No profile id travels through Python: memory stays flat for millions of profiles.
"""

# Set-based SQL: only quoted table names, column names and %s placeholders are formatted in, never values.
# ruff: noqa: S608

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from audiences.models import (
    Audience,
    AudienceConnection,
    AudienceEntry,
    AudienceMembership,
    AudienceMembershipChange,
    Profile,
    ProfileIdentifier,
)
from audiences.profiles import normalize_identifier
from audiences.rules import ATTRIBUTE, rule_q, validate_rule
from connectors.delivery import outbox
from connectors.delivery.sql import is_postgres, table
from connectors.delivery.stats import stats_day, stats_increment
from connectors.identifiers import Slot
from connectors.models import Connector, Delivery, Outcome, PartnerConfig
from connectors.partners.base import UsableIn
from connectors.partners.registry import REGISTRY
from dap.service_helpers import actor_name, merge_errors, required_name

logger = logging.getLogger(__name__)

NAME_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 2000
MAX_PROFILE_VARIABLES = 50
# Values per upload call (a request body holds about 2.5 MB: DATA_UPLOAD_MAX_MEMORY_SIZE).
MAX_ENTRIES_PER_UPLOAD = 100_000
# Invalid values reported per upload (the count says how many more there are).
MAX_VALUE_ERRORS = 50

DIFF_TABLE = "dap_audience_diff"
VALUES_TABLE = "dap_audience_values"

_UNSET: Any = object()


def change_retention_days() -> int:
    return int(getattr(settings, "DAP_AUDIENCE_CHANGE_RETENTION_DAYS", 30))


# ---------------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class OutboxCounts:
    pending: int = 0
    skipped: int = 0
    replaced: int = 0

    def add(self, other: OutboxCounts) -> None:
        self.pending += other.pending
        self.skipped += other.skipped
        self.replaced += other.replaced

    @property
    def rows(self) -> int:
        return self.pending + self.skipped


@dataclass
class RefreshResult:
    audience_id: int
    refreshed: bool = True
    # Why nothing was computed: "locked" (another refresh of this audience is running).
    skipped: str = ""
    enters: int = 0
    exits: int = 0
    size: int = 0
    seconds: float = 0.0
    outbox: OutboxCounts = field(default_factory=OutboxCounts)
    # Seconds per phase: diff, memberships, change_log, outbox, count.
    timings: dict[str, float] = field(default_factory=dict)

    def lap(self, phase: str, since: float) -> float:
        now = time.monotonic()
        self.timings[phase] = round(self.timings.get(phase, 0.0) + now - since, 3)
        return now

    def as_dict(self) -> dict:
        data = asdict(self)
        data["outbox"]["rows"] = self.outbox.rows
        return data


@dataclass
class EntriesResult:
    added: int
    removed: int
    total: int
    refresh: RefreshResult

    def as_dict(self) -> dict:
        return {"added": self.added, "removed": self.removed, "total": self.total, "refresh": self.refresh.as_dict()}


@dataclass
class ConnectionDeleteResult:
    # Removals queued for the current members (remove_members); the connection stays "removing" until they are sent.
    removes_queued: int = 0
    removing: bool = False
    # Pending deliveries dropped because the connection stopped sending.
    dropped: int = 0


# ---------------------------------------------------------------------------------------------------------------------
# Validation helpers


def _clean_name(name: Any, *, exclude_pk: int | None = None) -> str:
    name = required_name(name, max_length=NAME_MAX_LENGTH)
    taken = Audience.objects.filter(name__iexact=name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise ValidationError({"name": ["An audience with this name already exists."]})
    return name


def _clean_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError({"description": ["Enter text."]})
    if len(value) > DESCRIPTION_MAX_LENGTH:
        raise ValidationError({"description": [f"Ensure this value has at most {DESCRIPTION_MAX_LENGTH} characters."]})
    return value.strip()


def _clean_rule(kind: str, rule: Any) -> dict | None:
    if kind == Audience.Kind.STATIC:
        if rule not in (None, {}, ""):
            raise ValidationError({"rule": ["A static list has no rule: its members are its uploaded entries."]})
        return None
    if rule in (None, "", {}):
        raise ValidationError({"rule": ["A rule-based audience needs a rule."]})
    return validate_rule(rule)


def _kick_refresh(audience_id: int) -> None:
    """Refresh soon, by a worker, after this transaction commits (rule changed, audience created)."""
    if not settings.DAP_KICK_ON_COMMIT:
        return

    def kick():
        from django_q.tasks import async_task

        async_task("audiences.tasks.refresh_audience", audience_id, task_name=f"refresh-audience-{audience_id}")

    transaction.on_commit(kick)


# ---------------------------------------------------------------------------------------------------------------------
# Audiences


@transaction.atomic
def audience_create(
    *, name: Any, kind: Any = Audience.Kind.RULE_BASED, description: Any = "", rule: Any = None, actor=None
) -> Audience:
    """Create a rule-based audience (with its validated rule) or a static list (members come from its entries).
    A rule-based audience is refreshed by a worker right after."""
    errors: list[ValidationError] = []
    clean: dict[str, Any] = {}
    if kind not in Audience.Kind.values:
        errors.append(ValidationError({"kind": [f"Choose one of: {', '.join(Audience.Kind.values)}."]}))
    for key, fn in (
        ("name", lambda: _clean_name(name)),
        ("description", lambda: _clean_description(description)),
        ("rule", lambda: _clean_rule(kind, rule) if kind in Audience.Kind.values else None),
    ):
        try:
            clean[key] = fn()
        except ValidationError as exc:
            errors.append(exc)
    if errors:
        raise merge_errors(*errors)
    audience = Audience.objects.create(kind=kind, **clean)
    logger.info("audience %s created (%s) by %s", audience.pk, kind, _actor(actor))
    if audience.rule is not None:
        _kick_refresh(audience.pk)
    return audience


@transaction.atomic
def audience_update(
    *, audience: Audience, name: Any = _UNSET, description: Any = _UNSET, rule: Any = _UNSET, actor=None
) -> Audience:
    """Rename, describe, or change the rule (validated; a worker refreshes the audience after commit). The kind
    of an audience does not change."""
    audience = Audience.objects.select_for_update().get(pk=audience.pk)
    errors: list[ValidationError] = []
    changes: dict[str, Any] = {}
    if name is not _UNSET:
        try:
            changes["name"] = _clean_name(name, exclude_pk=audience.pk)
        except ValidationError as exc:
            errors.append(exc)
    if description is not _UNSET:
        try:
            changes["description"] = _clean_description(description)
        except ValidationError as exc:
            errors.append(exc)
    if rule is not _UNSET:
        try:
            changes["rule"] = _clean_rule(audience.kind, rule)
        except ValidationError as exc:
            errors.append(exc)
    if errors:
        raise merge_errors(*errors)
    changed = [key for key, value in changes.items() if getattr(audience, key) != value]
    if not changed:
        return audience
    for key in changed:
        setattr(audience, key, changes[key])
    audience.save(update_fields=[*changed, "updated_at"])
    logger.info("audience %s updated (%s) by %s", audience.pk, ", ".join(changed), _actor(actor))
    if "rule" in changed:
        _kick_refresh(audience.pk)
    return audience


@transaction.atomic
def audience_delete(*, audience: Audience, actor=None) -> None:
    """Delete an audience; refused while it is connected to a partner configuration (its members would stay at the
    partner unseen): delete the connections first, with remove_members to take the members out."""
    audience = Audience.objects.select_for_update().get(pk=audience.pk)
    connections = list(
        AudienceConnection.objects.filter(audience=audience)
        .select_related("partner_config__connector")
        .order_by("partner_config__connector__name", "partner_config__name")
    )
    if connections:
        names = ", ".join(f"{c.partner_config.connector.name} / {c.partner_config.name}" for c in connections)
        raise ValidationError(
            {
                "non_field_errors": [
                    f'"{audience.name}" is connected to {names}. Delete its connections first (with "remove '
                    f'members" to take its members out of the partner audiences).'
                ]
            }
        )
    pk = audience.pk
    audience.delete()  # memberships, entries and the change log go with it, one DELETE each
    logger.info("audience %s deleted by %s", pk, _actor(actor))


def _actor(actor) -> str:
    return actor_name(actor, system="system")


# ---------------------------------------------------------------------------------------------------------------------
# Refresh


def _lock_audience(audience_id: int, *, wait: bool = True) -> Audience | None:
    """Lock the audience row for the rest of the transaction; None when it does not exist or, with wait=False,
    when another transaction (a running refresh) holds it.

    PostgreSQL: SELECT … FOR UPDATE (SKIP LOCKED without waiting). SQLite has one writer at a time: the first
    statement is a write, so a second refresh waits for the first to commit before it reads anything.
    """
    queryset = Audience.objects.filter(pk=audience_id)
    if is_postgres():
        return queryset.select_for_update(skip_locked=not wait).first()
    if not queryset.update(updated_at=F("updated_at")):
        return None
    return queryset.first()


def _diff_table(cursor) -> None:
    """SQLite: the diff table, emptied. (PostgreSQL creates it per refresh with CREATE TABLE AS, see `_diff`.)"""
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {DIFF_TABLE} (profile_id integer NOT NULL, kind varchar(5) NOT NULL)"
    )
    cursor.execute(f"DELETE FROM {DIFF_TABLE}")


def target_sql(audience: Audience) -> tuple[str, list] | None:
    """SELECT of the ids of the profiles that should be members (column `id`), or None when there is nothing to
    evaluate (a rule-based audience without a rule)."""
    if audience.kind == Audience.Kind.STATIC:
        return (
            f"SELECT DISTINCT i.profile_id AS id FROM {table(ProfileIdentifier)} i "
            f"JOIN {table(AudienceEntry)} e ON e.slot = i.slot AND e.value = i.value WHERE e.audience_id = %s",
            [audience.pk],
        )
    if audience.rule is None:
        return None
    sql, params = Profile.objects.filter(rule_q(audience.rule)).values("id").query.sql_with_params()
    return sql, list(params)


def _in_target_sql(audience: Audience, target: tuple[str, list], column: str) -> tuple[str, list]:
    """EXISTS: the profile id in `column` is in the target — correlated, so SQLite answers it with index lookups
    (the rule's SELECT is flattened into a primary-key lookup; a static list goes through the profile's identifiers
    and the list's unique index)."""
    if audience.kind == Audience.Kind.STATIC:
        return (
            f"EXISTS (SELECT 1 FROM {table(ProfileIdentifier)} i JOIN {table(AudienceEntry)} e "
            f"ON e.slot = i.slot AND e.value = i.value WHERE e.audience_id = %s AND i.profile_id = {column})",
            [audience.pk],
        )
    select, params = target
    return f"EXISTS (SELECT 1 FROM ({select}) t WHERE t.id = {column})", params


def _diff(cursor, audience: Audience, target: tuple[str, list]) -> None:
    """Fill the diff table: profiles in the target but not members enter, members not in the target exit."""
    membership = table(AudienceMembership)
    select, params = target
    if is_postgres():
        # One statement, one snapshot; hash joins over both sets. CREATE TABLE AS (unlike INSERT … SELECT) may scan
        # the profiles with parallel workers. In profile id order: the inserts below then append to the indexes
        # instead of writing all over them (measured: half the time for the memberships).
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{DIFF_TABLE}")
        cursor.execute(
            f"CREATE TEMP TABLE {DIFF_TABLE} ON COMMIT DROP AS "
            f"SELECT COALESCE(t.id, m.profile_id) AS profile_id, CASE WHEN t.id IS NULL THEN 'exit' ELSE 'enter' END "
            f"AS kind FROM ({select}) t FULL OUTER JOIN (SELECT profile_id FROM {membership} WHERE audience_id = %s) m "
            f"ON m.profile_id = t.id WHERE t.id IS NULL OR m.profile_id IS NULL ORDER BY 1",
            [*params, audience.pk],
        )
        return
    _diff_table(cursor)
    # SQLite: two anti-joins answered by index lookups (its FULL JOIN would compare every pair). The refresh holds the
    # database's write lock, so nothing changes between the two statements.
    in_target, in_params = _in_target_sql(audience, target, "m.profile_id")
    cursor.execute(
        f"INSERT INTO {DIFF_TABLE} (profile_id, kind) SELECT m.profile_id, 'exit' FROM {membership} m "
        f"WHERE m.audience_id = %s AND NOT {in_target}",
        [audience.pk, *in_params],
    )
    cursor.execute(
        f"INSERT INTO {DIFF_TABLE} (profile_id, kind) SELECT t.id, 'enter' FROM ({select}) t WHERE NOT EXISTS "
        f"(SELECT 1 FROM {membership} m WHERE m.audience_id = %s AND m.profile_id = t.id)",
        [*params, audience.pk],
    )


def audience_refresh(*, audience: Audience, wait: bool = True) -> RefreshResult:
    """Recompute the audience's members and queue an add for every enter and a remove for every exit, for every
    connection, in one transaction. A refresh with no change queues nothing. With wait=False a refresh already
    running for this audience makes this one return at once (skipped="locked")."""
    if audience.kind == Audience.Kind.RULE_BASED and audience.rule is None:
        raise ValidationError({"rule": ["This audience has no rule yet: set one, then refresh."]})
    with transaction.atomic():
        locked = _lock_audience(audience.pk, wait=wait)
        if locked is None:
            if Audience.objects.filter(pk=audience.pk).exists():
                return RefreshResult(audience_id=audience.pk, refreshed=False, skipped="locked")
            raise Audience.DoesNotExist(f"Audience {audience.pk} does not exist.")
        return _refresh_locked(locked)


def _refresh_locked(audience: Audience) -> RefreshResult:
    """The refresh itself; the caller holds the audience's lock inside a transaction."""
    started = time.monotonic()
    result = RefreshResult(audience_id=audience.pk)
    target = target_sql(audience)
    if target is None:
        result.refreshed, result.skipped = False, "no rule"
        return result
    now = timezone.now()
    at = connection.ops.adapt_datetimefield_value(now)
    membership, changes = table(AudienceMembership), table(AudienceMembershipChange)
    lap = started
    with connection.cursor() as cursor:
        _diff(cursor, audience, target)
        cursor.execute(f"SELECT kind, COUNT(*) FROM {DIFF_TABLE} GROUP BY kind")
        counts = dict(cursor.fetchall())
        result.enters, result.exits = counts.get("enter", 0), counts.get("exit", 0)
        if result.enters or result.exits:
            if is_postgres():
                cursor.execute(f"ANALYZE {DIFF_TABLE}")  # the planner's row counts for the joins below
            lap = result.lap("diff", lap)
            if result.exits:
                cursor.execute(
                    f"DELETE FROM {membership} WHERE audience_id = %s AND profile_id IN "
                    f"(SELECT profile_id FROM {DIFF_TABLE} WHERE kind = 'exit')",
                    [audience.pk],
                )
            if result.enters:
                cursor.execute(
                    f"INSERT INTO {membership} (audience_id, profile_id, entered_at) "
                    f"SELECT %s, profile_id, %s FROM {DIFF_TABLE} WHERE kind = 'enter'",
                    [audience.pk, at],
                )
            lap = result.lap("memberships", lap)
            cursor.execute(
                f"INSERT INTO {changes} (audience_id, profile_id, kind, at) "
                f"SELECT %s, profile_id, kind, %s FROM {DIFF_TABLE}",
                [audience.pk, at],
            )
            lap = result.lap("change_log", lap)
            config_ids = _live_config_ids(audience.pk)
            sources = []
            if result.enters:
                sources.append((Delivery.Action.ADD, f"SELECT profile_id FROM {DIFF_TABLE} WHERE kind = 'enter'", []))
            if result.exits:
                sources.append((Delivery.Action.REMOVE, f"SELECT profile_id FROM {DIFF_TABLE} WHERE kind = 'exit'", []))
            if config_ids:
                result.outbox = _enqueue_select(
                    sources=sources,
                    audience_id=audience.pk,
                    config_ids=config_ids,
                    replace_source=(f"SELECT profile_id FROM {DIFF_TABLE}", []),
                )
            lap = result.lap("outbox", lap)
            if not is_postgres():
                cursor.execute(f"DELETE FROM {DIFF_TABLE}")
        else:
            lap = result.lap("diff", lap)
        # Counted, not derived: memberships also go when their profile is deleted (cascade), and demo data writes
        # them directly. One index-only count (~0.1 s for 600,000 members on PostgreSQL).
        cursor.execute(f"SELECT COUNT(*) FROM {membership} WHERE audience_id = %s", [audience.pk])
        result.size = cursor.fetchone()[0]
        result.lap("count", lap)
    result.seconds = round(time.monotonic() - started, 3)
    Audience.objects.filter(pk=audience.pk).update(
        member_count=result.size,
        refreshed_at=now,
        last_refresh_enters=result.enters,
        last_refresh_exits=result.exits,
        last_refresh_seconds=result.seconds,
    )
    logger.info(
        "audience %s refreshed: %s entered, %s left, %s members, %s deliveries queued (%s skipped) in %.3f s",
        audience.pk, result.enters, result.exits, result.size, result.outbox.pending, result.outbox.skipped,
        result.seconds,
    )  # fmt: skip
    return result


def _live_config_ids(audience_id: int) -> list[int]:
    return list(
        AudienceConnection.objects.filter(audience_id=audience_id, removing_since__isnull=True)
        .order_by("id")
        .values_list("partner_config_id", flat=True)
    )


def _enqueue_select(
    *,
    sources: list[tuple[str, str, list]],
    audience_id: int,
    config_ids: list[int],
    replace_source: tuple[str, list] | None = None,
) -> OutboxCounts:
    """Queue, for every configuration, each (action, SELECT of `profile_id`, params) source: INSERT … SELECT with the
    same rows and semantics as `outbox.deliveries_enqueue`, without the ids leaving the database. An action the
    partner does not sync is not queued; a deactivated connector's rows are recorded as skipped (and counted); older
    pending rows of this audience for the same configuration and profiles are replaced (latest change wins) — one
    DELETE for all the sources (`replace_source`, when given, selects the profiles of all the sources at once: a
    single SELECT the planner estimates well). Runs in the caller's transaction; the dispatcher is kicked after
    commit."""
    counts = OutboxCounts()
    configs: list[tuple[int, str, tuple[str, ...]]] = []
    for pk, status, key in PartnerConfig.objects.filter(pk__in=config_ids).values_list(
        "pk", "connector__status", "connector__partner_key"
    ):
        partner = REGISTRY.get(key)
        actions = tuple(action for action, _, _ in sources if partner is not None and action in partner.syncs_on)
        if actions:
            configs.append((pk, status, actions))
    if not configs:
        return counts
    now = timezone.now()
    stamp = connection.ops.adapt_datetimefield_value(now)
    active = [(pk, actions) for pk, status, actions in configs if status != Connector.Status.DEACTIVATED]
    name = table(Delivery)
    max_before = None
    active_ids = [pk for pk, _ in active]
    if active and Delivery.objects.filter(partner_config_id__in=active_ids, status=Delivery.Status.PENDING).exists():
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {name}")
            max_before = cursor.fetchone()[0]
    columns = ", ".join(connection.ops.quote_name(c) for c in (*outbox.COLUMNS, "profile_id"))
    placeholders = ", ".join(["%s"] * len(outbox.COLUMNS))
    stats: Counter = Counter()
    with connection.cursor() as cursor:
        for config_id, status, actions in configs:
            for action, sql, params in sources:
                if action not in actions:
                    continue
                if status == Connector.Status.DEACTIVATED:
                    constants = (config_id, action, audience_id, None, Delivery.Status.SKIPPED,
                                 Outcome.SKIPPED_DEACTIVATED, "", "", 0, stamp, stamp, stamp)  # fmt: skip
                else:
                    constants = (config_id, action, audience_id, None, Delivery.Status.PENDING,
                                 "", "", "", 0, stamp, stamp, None)  # fmt: skip
                cursor.execute(
                    f"INSERT INTO {name} ({columns}) SELECT {placeholders}, s.profile_id FROM ({sql}) s",
                    [*constants, *params],
                )
                if status == Connector.Status.DEACTIVATED:
                    counts.skipped += cursor.rowcount
                    stats[(config_id, stats_day(now), Outcome.SKIPPED_DEACTIVATED, "")] += cursor.rowcount
                else:
                    counts.pending += cursor.rowcount
        if active and max_before is not None:
            # Latest change wins: older pending rows of the same configurations and profiles go. Rows a worker is
            # sending right now are locked (PostgreSQL) and skipped, so that send completes first. Configurations
            # syncing the same actions share one DELETE.
            groups: dict[tuple[str, ...], list[int]] = {}
            for pk, actions in active:
                groups.setdefault(actions, []).append(pk)
            lock = " FOR UPDATE SKIP LOCKED" if is_postgres() else ""
            for actions, pks in groups.items():
                chosen = [(sql, params) for action, sql, params in sources if action in actions]
                if replace_source is not None and len(chosen) == len(sources):
                    chosen = [replace_source]
                union = " UNION ALL ".join(
                    f"SELECT s{i}.profile_id FROM ({sql}) s{i}" for i, (sql, _) in enumerate(chosen)
                )
                marks = ", ".join(["%s"] * len(pks))
                # Only this audience's own older changes: other audiences and journeys send to other partner-side
                # targets on the same configuration.
                cursor.execute(
                    f"DELETE FROM {name} WHERE id IN (SELECT id FROM {name} WHERE status = 'pending' AND id <= %s "
                    f"AND partner_config_id IN ({marks}) AND audience_id = %s AND profile_id IN ({union}){lock})",
                    [max_before, *pks, audience_id, *(p for _, params in chosen for p in params)],
                )
                counts.replaced += cursor.rowcount
    stats_increment(stats)
    if active_ids and counts.pending and settings.DAP_KICK_ON_COMMIT:
        per_config = counts.pending // len(active_ids)
        transaction.on_commit(lambda: outbox.kick(active_ids, rows=per_config))
    return counts


def audience_refresh_all(*, budget_seconds: float | None = None) -> dict:
    """The schedule: refresh every audience that can be evaluated (rule-based with a rule, and static lists), the
    least recently refreshed first, each in its own transaction; an audience whose refresh is already running is
    skipped. Then drop the removing connections whose removals have all gone out."""
    started = time.monotonic()
    report = {"refreshed": 0, "skipped": 0, "failed": 0, "enters": 0, "exits": 0, "deliveries": 0}
    candidates = (
        Audience.objects.exclude(kind=Audience.Kind.RULE_BASED, rule__isnull=True)
        .order_by(F("refreshed_at").asc(nulls_first=True), "id")
        .values_list("pk", flat=True)
    )
    for pk in list(candidates):
        if budget_seconds is not None and time.monotonic() - started > budget_seconds:
            break
        audience = Audience.objects.filter(pk=pk).first()
        if audience is None:
            continue
        try:
            result = audience_refresh(audience=audience, wait=False)
        except Exception:
            logger.exception("audience %s: refresh failed", pk)
            report["failed"] += 1
            continue
        if not result.refreshed:
            report["skipped"] += 1
            continue
        report["refreshed"] += 1
        report["enters"] += result.enters
        report["exits"] += result.exits
        report["deliveries"] += result.outbox.rows
    report["connections_dropped"] = audience_connections_purge()
    return report


def audience_changes_prune(*, days: int | None = None) -> int:
    """Drop change-log rows older than the retention (DAP_AUDIENCE_CHANGE_RETENTION_DAYS), per audience and kind
    through the (audience, kind, at) index."""
    cutoff = timezone.now() - timezone.timedelta(days=change_retention_days() if days is None else days)
    stamp = connection.ops.adapt_datetimefield_value(cutoff)
    deleted = 0
    with connection.cursor() as cursor:
        for pk in Audience.objects.values_list("pk", flat=True):
            for kind in AudienceMembershipChange.Kind.values:
                cursor.execute(
                    f"DELETE FROM {table(AudienceMembershipChange)} WHERE audience_id = %s AND kind = %s AND at < %s",
                    [pk, kind, stamp],
                )
                deleted += cursor.rowcount
    logger.info("pruned %s audience membership changes", deleted)
    return deleted


# ---------------------------------------------------------------------------------------------------------------------
# Static lists


def _values_table(cursor) -> None:
    if is_postgres():
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {VALUES_TABLE} (value varchar(320) PRIMARY KEY) ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"TRUNCATE {VALUES_TABLE}")
    else:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {VALUES_TABLE} (value varchar(320) PRIMARY KEY)")
        cursor.execute(f"DELETE FROM {VALUES_TABLE}")


def _clean_entries(slot: Any, values: Any, replace: bool) -> list[str]:
    errors: dict[str, list[str]] = {}
    if slot not in Slot.values:
        errors["slot"] = [f"Choose one of: {', '.join(Slot.values)}."]
    if not isinstance(values, list):
        errors["values"] = ["Expected a list of identifier values."]
    elif not values and not replace:
        errors["values"] = ['Give at least one value (an empty list with "replace": true empties the slot).']
    elif len(values) > MAX_ENTRIES_PER_UPLOAD:
        errors["values"] = [f"At most {MAX_ENTRIES_PER_UPLOAD} values per upload: send the list in parts."]
    if errors:
        raise ValidationError(errors)
    clean: dict[str, None] = {}
    bad = 0
    for index, value in enumerate(values):
        try:
            clean[normalize_identifier(slot, value)] = None
        except ValueError as exc:
            bad += 1
            if bad <= MAX_VALUE_ERRORS:
                errors[f"values.{index}"] = [str(exc)]
    if bad:
        if bad > MAX_VALUE_ERRORS:
            errors["values.more"] = [f"{bad - MAX_VALUE_ERRORS} more invalid values are not listed."]
        raise ValidationError(errors)
    return list(clean)


def audience_entries_upload(*, audience: Audience, slot: Any, values: Any, replace: bool = False, actor=None):
    """Add identifier values (one slot) to a static list — with `replace`, the slot's entries become exactly these —
    then refresh the list in the same transaction: profiles holding a new value enter (and are queued for every
    connection), profiles whose values were dropped leave. Values are normalised as profiles store them
    (email lower-cased, phone E.164…); every invalid value is reported with its index and nothing is written."""
    if audience.kind != Audience.Kind.STATIC:
        raise ValidationError(
            {"non_field_errors": ["Only static lists take uploaded entries; this one is rule-based."]}
        )
    clean = _clean_entries(slot, values, bool(replace))
    entries = table(AudienceEntry)
    with transaction.atomic():
        locked = _lock_audience(audience.pk)
        if locked is None:
            raise Audience.DoesNotExist(f"Audience {audience.pk} does not exist.")
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        removed = 0
        with connection.cursor() as cursor:
            _values_table(cursor)
            if clean:
                if is_postgres():
                    cursor.execute(f"INSERT INTO {VALUES_TABLE} (value) SELECT unnest(%s::text[])", [clean])
                else:
                    cursor.execute(
                        f"INSERT INTO {VALUES_TABLE} (value) SELECT value FROM json_each(%s)", [json.dumps(clean)]
                    )
            if replace:
                cursor.execute(
                    f"DELETE FROM {entries} WHERE audience_id = %s AND slot = %s AND NOT EXISTS "
                    f"(SELECT 1 FROM {VALUES_TABLE} v WHERE v.value = {entries}.value)",
                    [audience.pk, slot],
                )
                removed = cursor.rowcount
            cursor.execute(
                f"INSERT INTO {entries} (audience_id, slot, value, created_at) SELECT %s, %s, v.value, %s "
                f"FROM {VALUES_TABLE} v WHERE NOT EXISTS (SELECT 1 FROM {entries} e "
                f"WHERE e.audience_id = %s AND e.slot = %s AND e.value = v.value)",
                [audience.pk, slot, now, audience.pk, slot],
            )
            added = cursor.rowcount
            if not is_postgres():
                cursor.execute(f"DELETE FROM {VALUES_TABLE}")
        refresh = _refresh_locked(locked)
        total = AudienceEntry.objects.filter(audience_id=audience.pk).count()
    logger.info("audience %s: %s %s entries added, %s removed by %s", audience.pk, added, slot, removed, _actor(actor))
    return EntriesResult(added=added, removed=removed, total=total, refresh=refresh)


# ---------------------------------------------------------------------------------------------------------------------
# Connections


def _clean_profile_variables(value: Any, partner, config: PartnerConfig) -> list[str]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError({"profile_variables": ["Expected a list of attribute names."]})
    names = list(dict.fromkeys(v.strip() for v in value if v.strip()))
    if not names:
        return []
    if not partner.profile_variables:
        raise ValidationError({"profile_variables": [f"{partner.name} does not receive profile variables."]})
    problems = [n for n in names if not ATTRIBUTE.fullmatch(n) or "__" in n]
    if problems:
        raise ValidationError(
            {
                "profile_variables": [
                    f"Not an attribute name: {', '.join(problems)} (letters, digits and single underscores, not "
                    f"starting with a digit)."
                ]
            }
        )
    if len(names) > MAX_PROFILE_VARIABLES:
        raise ValidationError({"profile_variables": [f"At most {MAX_PROFILE_VARIABLES} profile variables."]})
    switch = partner.get_field("include_profile_variables")
    if switch is not None and not config.settings.get("include_profile_variables"):
        raise ValidationError(
            {
                "profile_variables": [
                    f'The configuration "{config.name}" does not send profile variables: turn on '
                    f'"{switch.label}" in it first.'
                ]
            }
        )
    return names


def _clean_partner_audience_id(value: Any, partner, config: PartnerConfig) -> str:
    if value is not None and not isinstance(value, str | int):
        raise ValidationError({"partner_audience_id": ["Enter text."]})
    try:
        return partner.clean_audience_id(value, config.settings)
    except ValidationError as exc:
        raise ValidationError({"partner_audience_id": exc.messages}) from None


def _usable_config(partner_config_id: Any) -> tuple[PartnerConfig, Any]:
    config = None
    if isinstance(partner_config_id, PartnerConfig):
        partner_config_id = partner_config_id.pk
    if isinstance(partner_config_id, int) and not isinstance(partner_config_id, bool):
        config = PartnerConfig.objects.select_related("connector").filter(pk=partner_config_id).first()
    if config is None:
        raise ValidationError({"partner_config": ["Choose an existing connector configuration."]})
    partner = REGISTRY.get(config.connector.partner_key)
    if partner is None or not partner.is_server_to_server or UsableIn.AUDIENCES not in partner.usable_in:
        label = partner.name if partner else config.connector.partner_key
        raise ValidationError({"partner_config": [f"{label} cannot receive audiences."]})
    return config, partner


def _members_source(audience_id: int) -> tuple[str, list]:
    return f"SELECT profile_id FROM {table(AudienceMembership)} WHERE audience_id = %s", [audience_id]


@transaction.atomic
def audience_connection_create(
    *,
    audience: Audience,
    partner_config: Any,
    partner_audience_id: Any = "",
    profile_variables: Any = None,
    actor=None,
) -> tuple[AudienceConnection, OutboxCounts]:
    """Connect the audience to a partner configuration (validated by the partner: usable in audiences, the partner
    audience id's format, profile variables where supported) and queue an add for every current member."""
    locked = _lock_audience(audience.pk)
    if locked is None:
        raise Audience.DoesNotExist(f"Audience {audience.pk} does not exist.")
    config, partner = _usable_config(partner_config)
    errors: list[ValidationError] = []
    clean: dict[str, Any] = {}
    for key, fn in (
        ("partner_audience_id", lambda: _clean_partner_audience_id(partner_audience_id, partner, config)),
        ("profile_variables", lambda: _clean_profile_variables(profile_variables, partner, config)),
    ):
        try:
            clean[key] = fn()
        except ValidationError as exc:
            errors.append(exc)
    existing = AudienceConnection.objects.filter(audience_id=audience.pk, partner_config=config).first()
    if existing is not None and not existing.is_removing:
        errors.append(
            ValidationError({"partner_config": ["This audience is already connected to this configuration."]})
        )
    if errors:
        raise merge_errors(*errors)
    if existing is not None:
        # Connected again while its members were being removed: it sends again (the adds replace the removals).
        for key, value in clean.items():
            setattr(existing, key, value)
        existing.removing_since = None
        existing.save()
        conn = existing
    else:
        conn = AudienceConnection.objects.create(audience_id=audience.pk, partner_config=config, **clean)
    queued = _enqueue_select(
        sources=[(Delivery.Action.ADD, *_members_source(audience.pk))], audience_id=audience.pk, config_ids=[config.pk]
    )
    logger.info(
        "audience %s connected to partner config %s by %s: %s adds queued",
        audience.pk, config.pk, _actor(actor), queued.rows,
    )  # fmt: skip
    return conn, queued


@transaction.atomic
def audience_connection_update(
    *,
    audience_connection: AudienceConnection,
    partner_audience_id: Any = _UNSET,
    profile_variables: Any = _UNSET,
    actor=None,
) -> AudienceConnection:
    """Change the partner-side settings. A new partner audience id gets the current members (queued adds); the
    previous partner audience keeps the members it has."""
    locked = _lock_audience(audience_connection.audience_id)
    conn = AudienceConnection.objects.select_related("partner_config__connector").get(pk=audience_connection.pk)
    if locked is None or conn.is_removing:
        raise ValidationError({"non_field_errors": ["This connection is being removed; connect the audience again."]})
    config, partner = _usable_config(conn.partner_config_id)
    errors: list[ValidationError] = []
    changes: dict[str, Any] = {}
    if partner_audience_id is not _UNSET:
        try:
            changes["partner_audience_id"] = _clean_partner_audience_id(partner_audience_id, partner, config)
        except ValidationError as exc:
            errors.append(exc)
    if profile_variables is not _UNSET:
        try:
            changes["profile_variables"] = _clean_profile_variables(profile_variables, partner, config)
        except ValidationError as exc:
            errors.append(exc)
    if errors:
        raise merge_errors(*errors)
    changed = [key for key, value in changes.items() if getattr(conn, key) != value]
    if not changed:
        return conn
    for key in changed:
        setattr(conn, key, changes[key])
    conn.save(update_fields=[*changed, "updated_at"])
    if "partner_audience_id" in changed:
        _enqueue_select(
            sources=[(Delivery.Action.ADD, *_members_source(conn.audience_id))],
            audience_id=conn.audience_id,
            config_ids=[conn.partner_config_id],
        )
    logger.info("audience connection %s updated (%s) by %s", conn.pk, ", ".join(changed), _actor(actor))
    return conn


@transaction.atomic
def audience_connection_delete(
    *, audience_connection: AudienceConnection, remove_members: bool = False, actor=None
) -> ConnectionDeleteResult:
    """Stop sending the audience to this configuration.

    Without remove_members the connection goes at once, with the deliveries still waiting for it (the partner keeps
    the members it has). With remove_members a remove is queued for every current member first, in the same
    transaction; the connection then stays, marked removing and sending nothing new, until those removals are sent
    (the schedule drops it), so they reach the right partner audience.
    """
    _lock_audience(audience_connection.audience_id)
    conn = AudienceConnection.objects.filter(pk=audience_connection.pk).first()
    result = ConnectionDeleteResult()
    if conn is None:
        return result
    if remove_members and not conn.is_removing:
        queued = _enqueue_select(
            sources=[(Delivery.Action.REMOVE, *_members_source(conn.audience_id))],
            audience_id=conn.audience_id,
            config_ids=[conn.partner_config_id],
        )
        result.removes_queued = queued.pending
    if remove_members and _pending_for(conn):
        if not conn.is_removing:
            conn.removing_since = timezone.now()
            conn.save(update_fields=["removing_since", "updated_at"])
        result.removing = True
    else:
        if not remove_members:
            result.dropped = _drop_pending(conn)
        conn.delete()
    logger.info(
        "audience connection %s deleted by %s (remove members: %s, %s removals queued, %s pending dropped)",
        audience_connection.pk, _actor(actor), remove_members, result.removes_queued, result.dropped,
    )  # fmt: skip
    return result


def _pending_for(conn: AudienceConnection) -> bool:
    return Delivery.objects.filter(
        partner_config_id=conn.partner_config_id, audience_id=conn.audience_id, status=Delivery.Status.PENDING
    ).exists()


def _drop_pending(conn: AudienceConnection) -> int:
    name = table(Delivery)
    lock = " FOR UPDATE SKIP LOCKED" if is_postgres() else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {name} WHERE id IN (SELECT id FROM {name} WHERE partner_config_id = %s AND audience_id = %s "
            f"AND status = 'pending'{lock})",
            [conn.partner_config_id, conn.audience_id],
        )
        return cursor.rowcount


def audience_connections_purge() -> int:
    """Drop the connections marked removing whose removals have all been sent (none pending any more)."""
    pending = Delivery.objects.filter(
        partner_config_id=OuterRef("partner_config_id"),
        audience_id=OuterRef("audience_id"),
        status=Delivery.Status.PENDING,
    )
    done = AudienceConnection.objects.filter(removing_since__isnull=False).exclude(Exists(pending))
    count, _ = done.delete()
    if count:
        logger.info("dropped %s audience connections whose members were removed", count)
    return count
