"""The dispatcher: claims due outbox rows of one configuration, coalesces, resolves identifiers, calls the partner
client in partner-sized batches and records every outcome (Delivery, DeliveryAttempt, DailyStat) in one transaction.

A configuration's profiles are split into shards (profile id modulo DAP_DISPATCH_SHARDS) and one worker at a time
holds a shard's lease, so each profile's changes keep their order while any number of workers share the work.
On PostgreSQL the claimed rows stay locked (`FOR UPDATE SKIP LOCKED`) in one transaction until their outcomes are
written: a worker that dies mid-batch rolls back and the rows are simply due again (at-least-once, nothing lost).
On SQLite the rows are read, sent, then written; they stay pending until then, with the same effect.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections import Counter, defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from audiences.models import AudienceConnection
from connectors import crypto
from connectors.delivery import http
from connectors.delivery.client import PartnerClient, client_class
from connectors.delivery.sql import chunks, id_array, ids_match, is_postgres, table
from connectors.delivery.stats import stats_day, stats_increment
from connectors.delivery.types import CallResult, ClientConfig, Item, ItemResult
from connectors.models import (
    ERROR_OUTCOMES,
    Connector,
    Delivery,
    DeliveryAttempt,
    DispatchLease,
    Outcome,
    PartnerConfig,
)

logger = logging.getLogger(__name__)


@dataclass
class DispatchReport:
    config_id: int
    lease_busy: bool = False
    paused: str = ""
    # A batched partner's due rows are being held for a fuller batch (see Limits.batch_interval_seconds).
    accumulating: bool = False
    claimed: int = 0
    replaced: int = 0
    calls: int = 0
    outcomes: Counter = field(default_factory=Counter)
    retried: int = 0
    more_due: bool = False
    latencies_ms: list[float] = field(default_factory=list)
    # Seconds spent per phase (benchmark breakdown).
    timings: Counter = field(default_factory=Counter)

    @property
    def finished(self) -> int:
        return sum(self.outcomes.values())


OK_OUTCOMES = frozenset({Outcome.ADDED, Outcome.REMOVED})


@dataclass(slots=True)
class _Row:
    id: int
    profile_id: int
    action: str
    audience_id: int | None
    journey_id: int | None
    attempts: int
    created_ts: float  # seconds since the epoch
    consent: bool = True
    identifiers: dict = field(default_factory=dict)
    attributes: dict | None = None


# --- leases -----------------------------------------------------------------------------------------------------
def _acquire_lease(config_id: int, shard: int, token: str) -> bool:
    """Compare-and-set on the shard's lease row: free or expired leases only."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.DAP_LEASE_SECONDS)
    DispatchLease.objects.get_or_create(partner_config_id=config_id, shard=shard)
    free = Q(until__isnull=True) | Q(until__lt=now)
    return (
        DispatchLease.objects.filter(free, partner_config_id=config_id, shard=shard).update(owner=token, until=until)
        == 1
    )


def _renew_lease(config_id: int, shard: int, token: str) -> bool:
    until = timezone.now() + timedelta(seconds=settings.DAP_LEASE_SECONDS)
    return DispatchLease.objects.filter(partner_config_id=config_id, shard=shard, owner=token).update(until=until) == 1


def _release_lease(config_id: int, shard: int, token: str) -> None:
    DispatchLease.objects.filter(partner_config_id=config_id, shard=shard, owner=token).update(owner="", until=None)


# --- clients, one pooled session per configuration per process --------------------------------------------------
_clients: dict[int, tuple[datetime, PartnerClient]] = {}


def client_for(config: PartnerConfig) -> PartnerClient | None:
    cls = client_class(config.connector.partner_key)
    if cls is None:
        return None
    cached = _clients.get(config.pk)
    if cached and cached[0] == config.updated_at:
        return cached[1]
    if cached:
        cached[1].session.close()
        close = getattr(cached[1], "close", None)
        if close is not None:
            close()
    client = cls(
        ClientConfig(
            partner_config_id=config.pk,
            settings=dict(config.settings),
            secrets=config.get_secrets(),
            timeout_seconds=config.timeout_seconds,
            base_url_override=config.base_url_override,
        ),
        http.new_session(pool_size=max(16, settings.DAP_HTTP_CONCURRENCY)),
    )
    _clients[config.pk] = (config.updated_at, client)
    return client


# --- the run ----------------------------------------------------------------------------------------------------
def dispatch_config(
    config_id: int, *, budget_seconds: float | None = None, collect_latency: bool = False
) -> DispatchReport:
    """Send what is due for one configuration, shard by shard (those no other worker holds), until nothing is due
    or the time budget is spent."""
    report = DispatchReport(config_id=config_id)
    started = time.monotonic()
    deadline = started + (budget_seconds or settings.DAP_DISPATCH_BUDGET_SECONDS)
    config = PartnerConfig.objects.select_related("connector").filter(pk=config_id).first()
    limits = config.connector.partner.limits if config is not None else None
    if limits is not None and not _batch_ready(config, limits):
        report.accumulating = True
        return report
    shards = list(range(_shard_count(limits)))
    random.shuffle(shards)  # workers starting together spread over the shards
    held_elsewhere = 0
    for shard in shards:
        token = uuid.uuid4().hex
        if not _acquire_lease(config_id, shard, token):
            held_elsewhere += 1
            continue
        try:
            _dispatch_shard(config_id, shard, token, deadline, report, collect_latency)
        finally:
            _release_lease(config_id, shard, token)
        if report.paused or report.more_due:
            break
    report.lease_busy = held_elsewhere == len(shards)
    if report.claimed or report.paused:
        logger.info(
            "config %s dispatched: %s claimed, %s finished, %s retried in %s calls",
            config_id, report.claimed, report.finished, report.retried, report.calls,
            extra={
                "config_id": config_id, "partner": config.connector.partner_key if config else "",
                "claimed": report.claimed, "replaced": report.replaced, "calls": report.calls,
                "finished": report.finished, "retried": report.retried, "outcomes": dict(report.outcomes),
                "paused": report.paused, "more_due": report.more_due,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )  # fmt: skip
    return report


def _shard_count(limits) -> int:
    """Partners with a minimum batch size get one shard, so a send is never split below their minimum."""
    if limits is not None and limits.min_batch_size > 1:
        return 1
    return max(1, settings.DAP_DISPATCH_SHARDS)


# A partner may let each configuration choose its batch interval through a setting of this name (minutes).
BATCH_INTERVAL_SETTING = "batch_interval_minutes"


def _batch_ready(config: PartnerConfig, limits) -> bool:
    """A batched partner's rows go out once `min_batch_size` of them are due or the oldest due one has waited the
    batch interval (the configuration's `batch_interval_minutes` setting, else `limits.batch_interval_seconds`);
    other partners' rows go out as soon as they are due."""
    interval = limits.batch_interval_seconds
    minutes = config.settings.get(BATCH_INTERVAL_SETTING) if isinstance(config.settings, dict) else None
    if isinstance(minutes, int | float) and minutes > 0:
        interval = int(minutes * 60)
    if not interval:
        return True
    now = timezone.now()
    due = Delivery.objects.filter(
        partner_config_id=config.pk, status=Delivery.Status.PENDING, next_attempt_at__lte=now
    ).order_by()
    if due.filter(created_at__lte=now - timedelta(seconds=interval)).exists():
        return True
    need = max(1, limits.min_batch_size)
    return due.values("id")[:need].count() >= need


def _dispatch_shard(config_id, shard, token, deadline, report: DispatchReport, collect_latency) -> None:
    while True:
        config = PartnerConfig.objects.select_related("connector").filter(pk=config_id).first()
        if config is None:
            return
        if not config.connector.is_active:
            report.paused = "deactivated"
            return
        if config.health != PartnerConfig.Health.OK:
            report.paused = config.health
            return
        client = client_for(config)
        if client is None:
            report.paused = "no_client"
            return
        if time.monotonic() >= deadline:
            report.more_due = _has_due(config_id)
            return
        t0 = time.monotonic()
        # PostgreSQL: the claim's row locks last until the outcomes are committed.
        with transaction.atomic() if is_postgres() else nullcontext():
            rows = _claim(config, shard, _claim_size(config))
            report.timings["claim"] += time.monotonic() - t0
            if not rows:
                return
            report.claimed += len(rows)
            _process(config, client, rows, report, collect_latency)
            t1 = time.monotonic()
        report.timings["commit"] += time.monotonic() - t1
        _renew_lease(config_id, shard, token)


def _claim_size(config: PartnerConfig) -> int:
    limits = config.connector.partner.limits
    batch = limits.max_batch_size if limits and limits.max_batch_size > 1 else settings.DAP_HTTP_CONCURRENCY * 8
    return max(1, min(settings.DAP_CLAIM_SIZE, batch * 2))


def _call_size(config: PartnerConfig) -> int:
    limits = config.connector.partner.limits
    if limits and limits.max_batch_size > 1:
        return limits.max_batch_size
    return settings.DAP_HTTP_CONCURRENCY * 4


def _has_due(config_id: int) -> bool:
    return Delivery.objects.filter(
        partner_config_id=config_id, status=Delivery.Status.PENDING, next_attempt_at__lte=timezone.now()
    ).exists()


def _claim(config: PartnerConfig, shard: int, limit: int) -> list[_Row]:
    """Due rows of one shard of this configuration with their profile's consent and identifiers, in one query."""
    partner = config.connector.partner
    slots = list(partner.identifier_slots_for(config.settings))
    need_attributes = partner.profile_variables
    now = timezone.now()
    name = table(Delivery)
    lock = "FOR UPDATE SKIP LOCKED" if is_postgres() else ""
    slot_sql = "(" + ", ".join(["%s"] * len(slots)) + ")" if slots else "(NULL)"
    attrs = ", p.attributes" if need_attributes else ""
    sql = (
        f"SELECT d.id, d.profile_id, d.action, d.audience_id, d.journey_id, d.attempts, {_epoch('d.created_at')}, "
        f"p.consent_ads, i.slot, i.value{attrs} FROM ("
        f"SELECT id, profile_id, action, audience_id, journey_id, attempts, created_at FROM {name} "
        f"WHERE partner_config_id = %s AND status = 'pending' AND next_attempt_at <= %s AND profile_id %% %s = %s "
        f"ORDER BY next_attempt_at, id LIMIT %s {lock}) d "
        f"JOIN audiences_profile p ON p.id = d.profile_id "
        f"LEFT JOIN audiences_profileidentifier i ON i.profile_id = d.profile_id AND i.slot IN {slot_sql}"
    )
    rows: dict[int, _Row] = {}
    with connection.cursor() as cursor:
        if is_postgres():
            # Walk the partial "due" index in order and stop at the limit. The planner cannot estimate the shard
            # filter and, on a freshly filled outbox, picks a full scan and a sort instead: with a large backlog
            # that made every claim read the whole table. SET LOCAL ends with the claim's transaction.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(sql, [config.pk, now, _shard_count(partner.limits), shard, limit, *slots])
        fetched = cursor.fetchall()
    for rec in fetched:
        row = rows.get(rec[0])
        if row is None:
            row = rows[rec[0]] = _Row(*rec[:7], consent=bool(rec[7]))
            if need_attributes:
                row.attributes = rec[10] if isinstance(rec[10], dict) else _json(rec[10])
        if rec[8] is not None:
            row.identifiers[rec[8]] = rec[9]
    return list(rows.values())  # in claim order (next_attempt_at, id); coalescing compares ids


def _epoch(column: str) -> str:
    """A timestamp column as float seconds since the epoch (cheap to load, same on both databases)."""
    if is_postgres():
        return f"EXTRACT(EPOCH FROM {column})::float8"
    return f"(julianday({column}) - 2440587.5) * 86400.0"


def _json(value) -> dict:
    return json.loads(value) if value else {}


class _Outcomes:
    """Collects what happens to each claimed row; written set-based at the end of a batch."""

    def __init__(self, config_id: int):
        self.config_id = config_id
        self.delete_ids: list[int] = []
        self.final: dict[tuple, list[int]] = defaultdict(list)  # (status, outcome, code, message, attempts+) -> ids
        self.retry: dict[tuple, list[int]] = defaultdict(list)  # (outcome, code, message, next_at) -> ids
        self.stats: Counter = Counter()
        self.attempts: list[DeliveryAttempt] = []
        self.day = stats_day()
        self.live: list[_Row] = []  # the newest claimed row per profile and source

    def count(self, outcome: str, code: str = "", n: int = 1) -> None:
        # Error outcomes keep their code (the partner's, or the platform's reason such as "invalid_identifier"), so
        # the statistics explain every failure; successes and skips have none.
        self.stats[(self.config_id, self.day, outcome, code if outcome in ERROR_OUTCOMES else "")] += n


def _process(config: PartnerConfig, client: PartnerClient, rows: list[_Row], report, collect_latency):
    partner = config.connector.partner
    slots = partner.identifier_slots_for(config.settings)
    acc = _Outcomes(config.pk)

    # Coalesce: per profile and source (audience or journey: each has its own partner-side target), the newest row
    # stands for all of them; older ones are dropped.
    newest: dict[tuple, _Row] = {}
    for row in rows:
        key = (row.profile_id, row.audience_id, row.journey_id)
        other = newest.get(key)
        if other is not None:
            if other.id > row.id:
                other, row = row, other
            acc.delete_ids.append(other.id)
            report.replaced += 1
        newest[key] = row
    live = sorted(newest.values(), key=lambda r: r.id)
    acc.live = live
    connections = _partner_audience_ids(config.pk, {r.audience_id for r in live if r.audience_id})
    steps = _journey_targets(config.pk, {r.journey_id for r in live if r.journey_id and not r.audience_id})

    by_action: dict[str, list[tuple[_Row, Item]]] = defaultdict(list)
    for row in live:
        if not row.consent:
            acc.final[(Delivery.Status.SKIPPED, Outcome.SKIPPED_NO_CONSENT, "", "", 0)].append(row.id)
            acc.count(Outcome.SKIPPED_NO_CONSENT)
            continue
        held = row.identifiers
        slot = None
        for candidate in slots:
            if held.get(candidate):
                slot = candidate
                break
        if slot is None:
            acc.final[(Delivery.Status.SKIPPED, Outcome.SKIPPED_NO_IDENTIFIER, "", "", 0)].append(row.id)
            acc.count(Outcome.SKIPPED_NO_IDENTIFIER)
            continue
        if row.audience_id:
            partner_audience_id, wanted = connections.get(row.audience_id, ("", []))
        else:
            partner_audience_id, wanted = steps.get(row.journey_id, ("", []))
        variables = {}
        if wanted and row.attributes:
            variables = {k: row.attributes.get(k) for k in wanted}
        # Positional: the hottest constructor of the dispatcher (profile_id, action, slot, identifier, variables,
        # partner_audience_id, delivery_id, enqueued_at).
        item = Item(
            row.profile_id, row.action, slot, held[slot], variables, partner_audience_id, row.id, row.created_ts
        )
        by_action[row.action].append((row, item))

    call_size = _call_size(config)
    stop: str = ""
    for action, pairs in by_action.items():
        for batch in chunks(pairs, call_size):
            if stop:
                continue  # paused: these rows stay pending, untouched
            items = [item for _, item in batch]
            try:
                calls = client.send(action, items)
            except Exception as exc:  # a client bug must not lose rows: retry them and say why
                logger.exception(
                    "config %s: client failed", config.pk,
                    extra={"config_id": config.pk, "partner": partner.key, "action": action, "items": len(items)},
                )  # fmt: skip
                calls = [
                    PartnerClient.all_items(
                        list(range(len(items))),
                        ItemResult(Outcome.OTHER_ERROR, partner_code="client_error", message=type(exc).__name__,
                                   retryable=True),
                        partner_code="client_error", snippet=type(exc).__name__,  # the attempt says why too
                    )
                ]  # fmt: skip
            report.calls += len(calls)
            report.timings["send"] += sum(c.duration_ms for c in calls) / 1000
            stop = _record_calls(config, action, batch, calls, acc, report, collect_latency) or stop

    t = time.monotonic()
    _write(acc, report)
    report.timings["write"] += time.monotonic() - t
    if stop:
        _pause(config, stop, acc)
        report.paused = stop


def _partner_audience_ids(config_id: int, audience_ids: set[int]) -> dict[int, tuple[str, list]]:
    if not audience_ids:
        return {}
    return {
        a: (pid, vars_ or [])
        for a, pid, vars_ in AudienceConnection.objects.filter(
            partner_config_id=config_id, audience_id__in=audience_ids
        ).values_list("audience_id", "partner_audience_id", "profile_variables")
    }


def _journey_targets(config_id: int, journey_ids: set[int]) -> dict[int, tuple[str, list]]:
    """Per journey: the partner audience id and profile variables of its activation step sending here."""
    if not journey_ids:
        return {}
    from journeys.selectors import activation_targets

    return activation_targets(partner_config_id=config_id, journey_ids=journey_ids)


def _backoff(attempts: int, retry_after: float | None) -> float:
    ceiling = min(settings.DAP_RETRY_MAX_SECONDS, settings.DAP_RETRY_BASE_SECONDS * (2 ** max(0, attempts - 1)))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # exponential with jitter
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _record_calls(config, action, batch, calls: list[CallResult], acc: _Outcomes, report, collect_latency) -> str:
    now = timezone.now()
    window = settings.DAP_RETRY_WINDOW_SECONDS
    stop = ""
    seen: set[int] = set()
    now_ts = now.timestamp()
    scrub = crypto.scrubber(config.get_secrets)  # a partner may echo the credentials it was sent
    for call in calls:
        errors = retries = 0
        ok_by_outcome: Counter = Counter()
        for index, result in zip(call.item_indices, call.results, strict=True):
            seen.add(index)
            row, _item = batch[index]
            attempts = row.attempts + 1
            if result.outcome in OK_OUTCOMES:
                ok_by_outcome[result.outcome] += 1
                acc.delete_ids.append(row.id)
                if collect_latency:
                    report.latencies_ms.append((now_ts - row.created_ts) * 1000)
                continue
            message = http.redact(scrub(result.message), 300)
            if result.retryable and not call.credentials_invalid and now_ts - row.created_ts < window:
                retries += 1
                delay = _backoff(attempts, call.retry_after)
                next_at = now + timedelta(seconds=delay)
                acc.retry[(result.outcome, result.partner_code[:64], message, next_at)].append(row.id)
                report.retried += 1
                continue
            errors += 1
            acc.final[(Delivery.Status.FAILED, result.outcome, result.partner_code[:64], message, 1)].append(row.id)
            acc.count(result.outcome, result.partner_code[:64])
            report.outcomes[result.outcome] += 1
        ok = sum(ok_by_outcome.values())
        for outcome, n in ok_by_outcome.items():
            acc.count(outcome, n=n)
            report.outcomes[outcome] += n
        if call.credentials_invalid:
            stop = PartnerConfig.Health.CREDENTIALS_INVALID
        elif call.endpoint_gone:
            stop = PartnerConfig.Health.ENDPOINT_GONE
        dominant = call.results[0].outcome if call.results else ""
        if errors or retries:
            dominant = next((r.outcome for r in call.results if r.outcome not in (Outcome.ADDED, Outcome.REMOVED)), "")
        acc.attempts.append(
            DeliveryAttempt(
                partner_config_id=config.pk,
                at=now,
                action=action,
                status_code=call.status_code,
                duration_ms=round(call.duration_ms, 2),
                item_count=len(call.item_indices),
                ok_count=ok,
                error_count=errors,
                retry_count=retries,
                outcome=dominant,
                partner_error_code=call.partner_code[:64],
                snippet=http.redact(scrub(call.snippet)),
            )
        )
    missing = len(batch) - len(seen)
    if missing:  # a client that forgot items: their rows stay pending and go out again
        logger.error(
            "config %s: the client returned no result for %s items", config.pk, missing,
            extra={"config_id": config.pk, "partner": config.connector.partner_key, "missing": missing},
        )  # fmt: skip
    return stop


def _write(acc: _Outcomes, report: DispatchReport) -> None:
    """All outcomes of a batch in one transaction: outbox rows, attempts, daily statistics."""
    now = timezone.now()
    name = table(Delivery)
    with transaction.atomic(), connection.cursor() as cursor:
        if acc.live and is_postgres():
            report.replaced += _drop_overtaken(cursor, name, acc, now)
        if acc.delete_ids:
            match, params = ids_match("id", acc.delete_ids)
            cursor.execute(f"DELETE FROM {name} WHERE {match}", params)
        for (status, outcome, code, message, _), ids in acc.final.items():
            match, params = ids_match("id", ids)
            cursor.execute(
                f"UPDATE {name} SET status = %s, outcome = %s, partner_error_code = %s, last_error = %s, "
                f"attempts = attempts + %s, finished_at = %s WHERE {match}",
                [status, outcome, code, message, 1 if status == Delivery.Status.FAILED else 0, now, *params],
            )
        for (outcome, code, message, next_at), ids in acc.retry.items():
            match, params = ids_match("id", ids)
            cursor.execute(
                f"UPDATE {name} SET outcome = %s, partner_error_code = %s, last_error = %s, "
                f"attempts = attempts + 1, next_attempt_at = %s WHERE {match}",
                [outcome, code, message, next_at, *params],
            )
        # A retried row must not overtake a newer change for the same profile enqueued meanwhile.
        retry_ids = [i for ids in acc.retry.values() for i in ids]
        if retry_ids:
            match, params = ids_match("id", retry_ids)
            same = "IS NOT DISTINCT FROM" if is_postgres() else "IS"
            cursor.execute(
                f"DELETE FROM {name} WHERE {match} AND EXISTS (SELECT 1 FROM {name} n "
                f"WHERE n.partner_config_id = {name}.partner_config_id AND n.profile_id = {name}.profile_id "
                f"AND n.audience_id {same} {name}.audience_id AND n.journey_id {same} {name}.journey_id "
                f"AND n.id > {name}.id)",
                params,
            )
            report.replaced += cursor.rowcount
        DeliveryAttempt.objects.bulk_create(acc.attempts, batch_size=1000)
        stats_increment(acc.stats)


def _drop_overtaken(cursor, name: str, acc: _Outcomes, now: datetime) -> int:
    """PostgreSQL: delete pending rows of the batch's profiles and sources that are older than the batch's row but
    were not claimed with it because they are not due yet: they are superseded (latest change wins) and, sent after
    their backoff, would reorder the profile.

    Such a row is a retry whose newer change was enqueued while it was being sent: the producer skipped it (locked)
    and committed only after this worker had written the retry, so the retry check in `_write` could not see the
    newer row. (SQLite needs none of this: a transaction takes the write lock when it begins, so the producer either
    deletes the older row itself or commits before the worker writes.) Only when the configuration has rows waiting
    for a retry (one probe of the due index); then one index probe per profile, the batch's rows passed as arrays."""
    cursor.execute(
        f"SELECT EXISTS (SELECT 1 FROM {name} WHERE partner_config_id = %s AND status = 'pending' "
        f"AND next_attempt_at > %s)",
        [acc.config_id, now],
    )
    if not cursor.fetchone()[0]:
        return 0
    rows = acc.live
    cursor.execute(
        f"DELETE FROM {name} WHERE id IN (SELECT o.id FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], "
        f"%s::bigint[]) AS n(id, profile_id, audience_id, journey_id) CROSS JOIN LATERAL (SELECT o.id FROM {name} o "
        f"WHERE o.profile_id = n.profile_id AND o.partner_config_id = %s AND o.id < n.id AND o.status = 'pending' "
        f"AND o.audience_id IS NOT DISTINCT FROM n.audience_id AND o.journey_id IS NOT DISTINCT FROM n.journey_id "
        f"FOR UPDATE SKIP LOCKED) o) RETURNING id",
        [
            id_array([r.id for r in rows]),
            id_array([r.profile_id for r in rows]),
            _nullable_array([r.audience_id for r in rows]),
            _nullable_array([r.journey_id for r in rows]),
            acc.config_id,
        ],
    )
    return len({i for (i,) in cursor.fetchall()}.difference(acc.delete_ids))  # claimed duplicates count already


def _nullable_array(values) -> str:
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def _pause(config: PartnerConfig, health: str, acc: _Outcomes) -> None:
    detail = {
        PartnerConfig.Health.CREDENTIALS_INVALID: "The partner refused the credentials; sending is paused until they "
        "change or an admin resumes.",
        PartnerConfig.Health.ENDPOINT_GONE: "The endpoint answered 410 Gone; sending is paused until an admin resumes.",
    }.get(health, "")
    PartnerConfig.objects.filter(pk=config.pk).update(
        health=health, health_changed_at=timezone.now(), health_detail=detail
    )
    logger.warning(
        "config %s paused: %s", config.pk, health,
        extra={"config_id": config.pk, "partner": config.connector.partner_key, "health": health},
    )  # fmt: skip


def due_counts() -> dict[int, int]:
    """Configurations with due work that may send now (active connector, healthy), with how many changes are due."""
    return dict(
        Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=timezone.now())
        .filter(
            partner_config__connector__status=Connector.Status.ACTIVE, partner_config__health=PartnerConfig.Health.OK
        )
        .values_list("partner_config_id")
        .annotate(n=Count("id"))
        .order_by()
    )


def due_config_ids() -> list[int]:
    """Configurations with due work that may send now (active connector, healthy)."""
    return sorted(due_counts())
