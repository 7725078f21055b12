"""The journey engine: enrolls profiles and moves enrollments through the steps of their version, set-based.

`journeys_advance()` runs every minute (django-q2 schedule) and:
1. processes posted events not processed yet: claims them, enrolls their profiles in the live journeys whose latest
   version enters on that event (one INSERT … SELECT per journey);
2. enrolls the profiles that entered a live journey's entry audience since it went live (INSERT … SELECT from
   AudienceMembership, skipping profiles that were in the journey when they entered);
3. advances the running enrollments of every live journey, version by version, in passes over the steps in
   topological order: everyone at a step moves together (at most BATCH per step per pass), so one pass carries a
   profile through every step that does not wait. Each step's move is one transaction:
   - entry: on to `next`;
   - wait: arriving sets `wake_at` (status waiting); those whose `wake_at` passed go on to `next`;
   - condition: the rule (audiences.rules.rule_q) is evaluated by the database on the profiles at the step;
     matching ones go to `next_true`, the others to `next_false`;
   - activate: one `outbox.deliveries_enqueue(partner_config_ids=[id], profile_ids=[...], action=…,
     journey_id=…)` for the profiles moved on, in the same transaction as the move;
   - exit: completed.
   A move names the step and status it moves from (and PostgreSQL re-checks them on a row another worker changed
   meanwhile): a profile moves once, so an activation is enqueued exactly once however many engines run.

Paused journeys do not advance: their enrollments wait where they are. Stopping a journey exits its enrollments
(journeys.services). Deactivated connectors: the outbox records those deliveries as skipped.
"""

# Set-based SQL: only quoted table/column names and %s placeholders are formatted in, never values.
# ruff: noqa: S608

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from audiences.models import AudienceMembership, Profile
from audiences.rules import rule_q
from connectors.delivery import outbox
from connectors.delivery.sql import ids_match, is_postgres, table
from journeys.definition import entry_step, ordered_keys, step_map, wait_duration
from journeys.models import Journey, JourneyEnrollment, JourneyEvent, JourneyVersion

logger = logging.getLogger(__name__)

# Enrollments moved per step and pass, passes per version and run, events claimed per run.
BATCH = getattr(settings, "DAP_JOURNEY_BATCH", 10_000)
MAX_PASSES = getattr(settings, "DAP_JOURNEY_MAX_PASSES", 10)
EVENT_BATCH = getattr(settings, "DAP_JOURNEY_EVENT_BATCH", 50_000)
# Audience entrants are looked for this far behind the last scan: a membership written by a transaction that
# committed after the scan still counts (its entered_at is when it was written, not when it committed).
ENTRY_LOOKBACK = timedelta(seconds=getattr(settings, "DAP_JOURNEY_ENTRY_LOOKBACK_SECONDS", 900))

# Advisory lock namespace of audience enrollment (PostgreSQL), with the journey id as the second key.
ENROLL_LOCK = 0x4A524E59

ACTIVE, WAITING = JourneyEnrollment.Status.ACTIVE, JourneyEnrollment.Status.WAITING
COMPLETED, EXITED = JourneyEnrollment.Status.COMPLETED, JourneyEnrollment.Status.EXITED
RUNNING = (ACTIVE, WAITING)

ENROLL_COLUMNS = (
    "journey_id",
    "version_id",
    "profile_id",
    "step_key",
    "status",
    "wake_at",
    "entered_at",
    "updated_at",
    "finished_at",
)


@dataclass
class Report:
    events: int = 0
    enrolled: int = 0
    moved: int = 0
    activated: int = 0
    completed: int = 0
    journeys: int = 0
    by_journey: dict[int, dict[str, int]] = field(default_factory=dict)

    def add(self, journey_id: int, what: str, n: int) -> None:
        setattr(self, what, getattr(self, what) + n)
        counts = self.by_journey.setdefault(journey_id, {})
        counts[what] = counts.get(what, 0) + n

    def as_dict(self) -> dict:
        return {
            "events": self.events,
            "enrolled": self.enrolled,
            "moved": self.moved,
            "activated": self.activated,
            "completed": self.completed,
            "journeys": self.journeys,
        }


def latest_versions(journeys: Sequence[Journey]) -> dict[int, JourneyVersion]:
    """The latest published version of each journey (the one new enrollments start on)."""
    ids = [j.pk for j in journeys]
    if not ids:
        return {}
    latest = JourneyVersion.objects.filter(journey_id__in=ids).values("journey_id").annotate(n=Max("number"))
    wanted = {(row["journey_id"], row["n"]) for row in latest}
    versions = JourneyVersion.objects.filter(journey_id__in=ids, number__in={n for _, n in wanted})
    return {v.journey_id: v for v in versions if (v.journey_id, v.number) in wanted}


def journeys_advance(*, now: datetime | None = None, journey_ids: Sequence[int] | None = None) -> Report:
    """One run of the engine over every live journey (or the given ones)."""
    now = now or timezone.now()
    report = Report()
    process_events(now=now, report=report)
    journeys = Journey.objects.filter(status=Journey.Status.LIVE).order_by("pk")
    if journey_ids is not None:
        journeys = journeys.filter(pk__in=list(journey_ids))
    journeys = list(journeys)
    latest = latest_versions(journeys)
    for journey in journeys:
        version = latest.get(journey.pk)
        if version is None:
            continue
        report.journeys += 1
        enroll_audience_entrants(journey=journey, version=version, now=now, report=report)
        advance_journey(journey=journey, now=now, report=report)
    if report.enrolled or report.moved or report.events:
        logger.info("journeys advanced: %s", report.as_dict())
    return report


# --- enrolling ----------------------------------------------------------------------------------------------------


def _dt(value: datetime | None):
    """A datetime as the database stores it (raw SQL gets no field adaptation: on SQLite, naive UTC text)."""
    return None if value is None else connection.ops.adapt_datetimefield_value(value)


def _null_time() -> str:
    """A typed NULL timestamp (PostgreSQL cannot infer the type of a bare NULL under SELECT DISTINCT)."""
    return "CAST(NULL AS timestamp with time zone)" if is_postgres() else "NULL"


def _insert_enrollments(select_sql: str, params: list) -> int:
    """INSERT the rows a SELECT yields (ENROLL_COLUMNS order); a profile already running in the journey is left
    alone (the partial unique index, as ON CONFLICT DO NOTHING / INSERT OR IGNORE)."""
    cols = ", ".join(connection.ops.quote_name(c) for c in ENROLL_COLUMNS)
    if is_postgres():
        sql = f"INSERT INTO {table(JourneyEnrollment)} ({cols}) {select_sql} ON CONFLICT DO NOTHING"
    else:
        sql = f"INSERT OR IGNORE INTO {table(JourneyEnrollment)} ({cols}) {select_sql}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)


def _not_running_then(alias: str, since_column: str | None) -> str:
    """No enrollment of this profile in the journey that was running then (at `since_column`) or is running now."""
    e = table(JourneyEnrollment)
    when = f" OR e.finished_at >= {since_column}" if since_column else ""
    return (
        f"NOT EXISTS (SELECT 1 FROM {e} e WHERE e.journey_id = %s AND e.profile_id = {alias}.profile_id "
        f"AND (e.finished_at IS NULL{when}))"
    )


def enroll_audience_entrants(*, journey: Journey, version: JourneyVersion, now: datetime, report: Report) -> int:
    """Profiles that entered the entry audience since the version (and the journey's current run) went live, and were
    not in the journey when they entered, start on `version` at its entry step."""
    entry = entry_step(version.definition)
    if not entry or "audience_id" not in entry:
        return 0
    scan_started = timezone.now()
    since = max(version.published_at, journey.entries_since or version.published_at)
    m = table(AudienceMembership)
    # Entered at the later of the run's time and the membership's own (and finished no earlier than entered): a later
    # scan then never takes the entry this enrollment answered for as a new one, even when the membership was
    # written after this run's clock was read.
    select = (
        f"SELECT %s, %s, m.profile_id, %s, %s, {_null_time()}, "
        f"CASE WHEN m.entered_at > %s THEN m.entered_at ELSE %s END, %s, {_null_time()} "
        f"FROM {m} m WHERE m.audience_id = %s AND m.entered_at >= %s "
        f"AND {_not_running_then('m', 'm.entered_at')}"
    )
    at, since = _dt(now), _dt(since)
    params = [journey.pk, version.pk, entry["key"], ACTIVE, at, at, at, entry["audience_id"], since, journey.pk]
    with transaction.atomic():
        if is_postgres():
            # One enrolling transaction per journey at a time: two engines scanning the same entrants cannot both
            # enroll a profile (the second sees the first's rows once it gets the lock).
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ENROLL_LOCK, journey.pk])
        n = _insert_enrollments(select, params)
        watermark = scan_started - ENTRY_LOOKBACK
        Journey.objects.filter(pk=journey.pk, entries_since__lt=watermark).update(entries_since=watermark)
    if n:
        report.add(journey.pk, "enrolled", n)
    return n


def process_events(*, now: datetime, report: Report, event_ids: Sequence[int] | None = None) -> dict[int, int]:
    """Claim unprocessed events (all, or the given ones) and enroll their profiles in the live journeys entering on
    them. Returns {journey id: enrolled}. Claiming marks them processed in the same transaction: each event is
    processed once."""
    enrolled: dict[int, int] = {}
    with transaction.atomic():
        claimed = _claim_events(event_ids)
        if not claimed:
            return enrolled
        report.events += len(claimed)
        names = {name for _, name in claimed}
        live = list(Journey.objects.filter(status=Journey.Status.LIVE))
        ids = [event_id for event_id, _ in claimed]
        for journey_id, version in latest_versions(live).items():
            entry = entry_step(version.definition)
            if not entry or entry.get("event") not in names:
                continue
            journey = next(j for j in live if j.pk == journey_id)
            since = max(version.published_at, journey.entries_since or version.published_at)
            id_sql, id_params = ids_match("ev.id", ids)
            select = (
                f"SELECT DISTINCT %s, %s, ev.profile_id, %s, %s, {_null_time()}, %s, %s, {_null_time()} "
                f"FROM {table(JourneyEvent)} ev "
                f"WHERE {id_sql} AND ev.name = %s AND ev.received_at >= %s AND {_not_running_then('ev', None)}"
            )
            at = _dt(now)
            params = [journey_id, version.pk, entry["key"], ACTIVE, at, at, *id_params, entry["event"], _dt(since),
                      journey_id]  # fmt: skip
            n = _insert_enrollments(select, params)
            if n:
                enrolled[journey_id] = n
                report.add(journey_id, "enrolled", n)
    return enrolled


def _claim_events(event_ids: Sequence[int] | None) -> list[tuple[int, str]]:
    name = table(JourneyEvent)
    where, params = "processed = %s", [False]
    if event_ids is not None:
        if not event_ids:
            return []
        id_sql, id_params = ids_match("id", event_ids)
        where += f" AND {id_sql}"
        params += id_params
    lock = " FOR UPDATE SKIP LOCKED" if is_postgres() else ""
    sql = (
        f"UPDATE {name} SET processed = %s WHERE id IN "
        f"(SELECT id FROM {name} WHERE {where} ORDER BY id LIMIT %s{lock}) AND processed = %s RETURNING id, name"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [True, *params, EVENT_BATCH, False])
        return [(row[0], row[1]) for row in cursor.fetchall()]


# --- advancing ----------------------------------------------------------------------------------------------------


def advance_journey(
    *, journey: Journey, now: datetime, report: Report, profile_ids: Sequence[int] | None = None
) -> None:
    """Advance the running enrollments of a live journey (or of these profiles) on every version that has some."""
    # One probe per version on the small index of running rows.
    running = JourneyEnrollment.objects.filter(version=OuterRef("pk"), status__in=RUNNING)
    if profile_ids is not None:
        running = running.filter(profile_id__in=list(profile_ids))
    for version in JourneyVersion.objects.filter(Exists(running), journey=journey).order_by("number"):
        advance_version(journey=journey, version=version, now=now, report=report, profile_ids=profile_ids)


def advance_version(
    *,
    journey: Journey,
    version: JourneyVersion,
    now: datetime,
    report: Report,
    profile_ids: Sequence[int] | None = None,
) -> None:
    steps = step_map(version.definition)
    order = ordered_keys(version.definition)
    for _ in range(MAX_PASSES):
        moved = 0
        for key in order:
            moved += _run_step(journey, version, steps[key], steps, now, report, profile_ids)
        if not moved:
            break


def _claim(version: JourneyVersion, key: str, status: str, now: datetime, profile_ids, woken: bool = False):
    """Ids of (at most BATCH) enrollments at this step with this status; on PostgreSQL locked, skipping rows another
    engine holds."""
    qs = JourneyEnrollment.objects.filter(version=version, step_key=key, status=status)
    if woken:
        qs = qs.filter(wake_at__lte=now)
    if profile_ids is not None:
        qs = qs.filter(profile_id__in=list(profile_ids))
    if is_postgres():
        qs = qs.select_for_update(skip_locked=True)
    return list(qs.values_list("id", flat=True)[:BATCH])


def _move(
    ids: Sequence[int],
    *,
    version: JourneyVersion,
    key: str,
    status: str,
    to_key: str,
    to_status: str,
    now: datetime,
    wake_at: datetime | None = None,
    extra_where: str = "",
    extra_params: Sequence = (),
) -> list[int]:
    """Move these enrollments (still at `key` with `status`) to `to_key`/`to_status`; the profile ids moved."""
    if not ids:
        return []
    at = _dt(now)
    if to_status in (COMPLETED, EXITED):
        # Never before the enrollment began (see enroll_audience_entrants).
        finished, finished_params = "CASE WHEN entered_at > %s THEN entered_at ELSE %s END", [at, at]
    else:
        finished, finished_params = "NULL", []
    id_sql, id_params = ids_match("id", ids)
    sql = (
        f"UPDATE {table(JourneyEnrollment)} SET step_key = %s, status = %s, wake_at = %s, updated_at = %s, "
        f"finished_at = {finished} WHERE {id_sql} AND version_id = %s AND step_key = %s AND status = %s"
        f"{extra_where} RETURNING profile_id"
    )
    params = [to_key, to_status, _dt(wake_at), at, *finished_params, *id_params, version.pk, key, status,
              *extra_params]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _run_step(journey, version, step, steps, now, report: Report, profile_ids) -> int:
    kind, key = step["type"], step["key"]
    moved = 0
    if kind == "entry":
        with transaction.atomic():
            ids = _claim(version, key, ACTIVE, now, profile_ids)
            moved = len(_move(ids, version=version, key=key, status=ACTIVE, to_key=step["next"], to_status=ACTIVE,
                              now=now))  # fmt: skip
    elif kind == "wait":
        with transaction.atomic():
            ids = _claim(version, key, ACTIVE, now, profile_ids)
            arrived = _move(ids, version=version, key=key, status=ACTIVE, to_key=key, to_status=WAITING, now=now,
                            wake_at=now + wait_duration(step))  # fmt: skip
        with transaction.atomic():
            ids = _claim(version, key, WAITING, now, profile_ids, woken=True)
            moved = len(_move(ids, version=version, key=key, status=WAITING, to_key=step["next"], to_status=ACTIVE,
                              now=now))  # fmt: skip
        if arrived:
            report.add(journey.pk, "moved", len(arrived))
    elif kind == "condition":
        with transaction.atomic():
            ids = _claim(version, key, ACTIVE, now, profile_ids)
            if ids:
                matching = Profile.objects.filter(rule_q(step["rule"])).values("id")
                sub_sql, sub_params = matching.query.get_compiler(connection=connection).as_sql()
                yes = _move(ids, version=version, key=key, status=ACTIVE, to_key=step["next_true"],
                            to_status=ACTIVE, now=now, extra_where=f" AND profile_id IN ({sub_sql})",
                            extra_params=sub_params)  # fmt: skip
                no = _move(ids, version=version, key=key, status=ACTIVE, to_key=step["next_false"],
                           to_status=ACTIVE, now=now)  # fmt: skip
                moved = len(yes) + len(no)
    elif kind == "activate":
        with transaction.atomic():
            ids = _claim(version, key, ACTIVE, now, profile_ids)
            profiles = _move(ids, version=version, key=key, status=ACTIVE, to_key=step["next"], to_status=ACTIVE,
                             now=now)  # fmt: skip
            if profiles:
                outbox.deliveries_enqueue(
                    partner_config_ids=[step["partner_config_id"]],
                    profile_ids=sorted(profiles),
                    action=step.get("action", "add"),
                    journey_id=journey.pk,
                )
                report.add(journey.pk, "activated", len(profiles))
            moved = len(profiles)
    elif kind == "exit":
        with transaction.atomic():
            ids = _claim(version, key, ACTIVE, now, profile_ids)
            done = _move(ids, version=version, key=key, status=ACTIVE, to_key=key, to_status=COMPLETED, now=now)
            if done:
                report.add(journey.pk, "completed", len(done))
            moved = 0  # finishing is not progress a further pass could use
    if moved:
        report.add(journey.pk, "moved", moved)
    return moved


def enrollments_exit(*, journey: Journey, now: datetime | None = None) -> int:
    """Take every running enrollment of the journey out (the journey stopped)."""
    now = now or timezone.now()
    return JourneyEnrollment.objects.filter(journey=journey, status__in=RUNNING).update(
        status=EXITED, wake_at=None, finished_at=now, updated_at=now
    )


def event_advance(*, event: JourneyEvent, now: datetime | None = None) -> dict[int, int]:
    """Process one just-posted event: enroll its profile where a live journey enters on it and carry the profile
    through every step that does not wait. Returns {journey id: enrolled}."""
    now = now or timezone.now()
    report = Report()
    enrolled = process_events(now=now, report=report, event_ids=[event.pk])
    for journey in Journey.objects.filter(pk__in=list(enrolled), status=Journey.Status.LIVE):
        advance_journey(journey=journey, now=now, report=report, profile_ids=[event.profile_id])
    return enrolled
