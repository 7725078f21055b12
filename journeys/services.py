"""Writes for journeys. Views, serializers, admin and tasks call these.

Status transitions:  draft --publish--> live --pause--> paused --resume--> live;  live/paused --stop--> stopped.
Publishing a live or paused journey adds a version and keeps its status; a stopped journey is final (it can still be
read and deleted). Every change is validated first and writes nothing when invalid.

Draft edits never change what runs: a live journey runs its latest published version, and enrollments keep the
version they started on. The activation steps of the draft and of every version are rows linked to their partner
configurations (PROTECT), rewritten with the draft and written once per version.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audiences.models import Profile
from dap.service_helpers import actor_name, actor_user, merge_errors, required_name
from journeys import engine
from journeys.definition import activations, empty_definition, validate_definition, validate_steps
from journeys.models import Journey, JourneyActivationStep, JourneyEvent, JourneyVersion

logger = logging.getLogger(__name__)

EVENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
MAX_EVENT_PROPERTIES_BYTES = 16 * 1024

_UNSET: Any = object()


def _clean_name(name: Any, exclude_pk=None) -> str:
    name = required_name(name)
    qs = Journey.objects.filter(name__iexact=name)
    if exclude_pk:
        qs = qs.exclude(pk=exclude_pk)
    if qs.exists():
        raise ValidationError({"name": ["A journey with this name already exists."]})
    return name


def _clean_description(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str) or len(description) > 2000:
        raise ValidationError({"description": ["Text of at most 2000 characters."]})
    return description.strip()


def _write_draft_links(journey: Journey, definition: dict) -> None:
    JourneyActivationStep.objects.filter(journey=journey, version__isnull=True).delete()
    _write_links(journey, None, definition)


def _write_links(journey: Journey, version: JourneyVersion | None, definition: dict) -> None:
    JourneyActivationStep.objects.bulk_create(
        [
            JourneyActivationStep(
                journey=journey,
                version=version,
                step_key=a.step_key,
                label=a.label,
                partner_config_id=a.partner_config_id,
                action=a.action,
                partner_audience_id=a.partner_audience_id,
                profile_variables=a.profile_variables,
            )
            for a in activations(definition)
        ]
    )


def latest_version(journey: Journey) -> JourneyVersion | None:
    return journey.versions.order_by("-number").first()


@transaction.atomic
def journey_create(*, name: str, description: str = "", definition: Any = None, actor=None) -> Journey:
    """A new journey in draft, with an optional draft definition (its steps validated one by one)."""
    errors = []
    clean_name = clean_description = None
    definition = empty_definition() if definition is None else definition
    try:
        clean_name = _clean_name(name)
    except ValidationError as exc:
        errors.append(exc)
    try:
        clean_description = _clean_description(description)
    except ValidationError as exc:
        errors.append(exc)
    try:
        validate_steps(definition)
    except ValidationError as exc:
        errors.append(exc)
    if errors:
        raise merge_errors(*errors)
    now = timezone.now()
    journey = Journey.objects.create(
        name=clean_name,
        description=clean_description,
        definition=definition,
        draft_updated_at=now,
        created_by=actor_user(actor),
    )
    _write_draft_links(journey, definition)
    logger.info("journey %s created by %s", journey.pk, actor_name(actor, system="system"))
    return journey


def _lock(journey: Journey) -> Journey:
    return Journey.objects.select_for_update().get(pk=journey.pk)


@transaction.atomic
def journey_update(
    *, journey: Journey, name: Any = _UNSET, description: Any = _UNSET, definition: Any = _UNSET, actor=None
) -> Journey:
    """Rename, describe, or replace the draft definition (validated step by step; the graph is checked when
    publishing). Stopped journeys are final."""
    journey = _lock(journey)
    errors = []
    if journey.status == Journey.Status.STOPPED and definition is not _UNSET:
        errors.append(ValidationError({"definition": ["The journey is stopped: its steps can no longer change."]}))
    new_name, new_description = journey.name, journey.description
    if name is not _UNSET:
        try:
            new_name = _clean_name(name, exclude_pk=journey.pk)
        except ValidationError as exc:
            errors.append(exc)
    if description is not _UNSET:
        try:
            new_description = _clean_description(description)
        except ValidationError as exc:
            errors.append(exc)
    if definition is not _UNSET and not errors:
        try:
            validate_steps(definition)
        except ValidationError as exc:
            errors.append(exc)
    if errors:
        raise merge_errors(*errors)
    fields = []
    if (new_name, new_description) != (journey.name, journey.description):
        journey.name, journey.description = new_name, new_description
        fields += ["name", "description"]
    if definition is not _UNSET and definition != journey.definition:
        journey.definition = definition
        latest = latest_version(journey)
        # A draft brought back to what is published has nothing left to publish.
        same = latest is not None and latest.definition == definition
        journey.draft_updated_at = journey.published_at if same else timezone.now()
        fields += ["definition", "draft_updated_at"]
        _write_draft_links(journey, definition)
    if fields:
        journey.save(update_fields=[*fields, "updated_at"])
        logger.info("journey %s updated by %s (%s)", journey.pk, actor_name(actor, system="system"), ", ".join(fields))
    return journey


def journey_draft_update(*, journey: Journey, definition: Any, actor=None) -> Journey:
    return journey_update(journey=journey, definition=definition, actor=actor)


def _set_status(journey: Journey, status: str, actor, now) -> None:
    journey.status = status
    journey.status_changed_at = now
    journey.status_changed_by = actor_user(actor)


def _kick(journey_id: int) -> None:
    if not settings.DAP_KICK_ON_COMMIT:
        return

    def run():
        from django_q.tasks import async_task

        async_task("journeys.tasks.advance", [journey_id], task_name=f"journey-{journey_id}", save=False)

    transaction.on_commit(run)


@transaction.atomic
def journey_publish(*, journey: Journey, actor=None) -> JourneyVersion:
    """Validate the draft and make it the next version; a draft journey goes live. New enrollments start on this
    version; running ones finish the version they started on."""
    journey = _lock(journey)
    if journey.status == Journey.Status.STOPPED:
        raise ValidationError({"status": ["The journey is stopped: it cannot be published again."]})
    definition = journey.definition
    validate_definition(definition)
    previous = latest_version(journey)
    if previous is not None and previous.definition == definition:
        raise ValidationError(
            {"non_field_errors": [f"Nothing to publish: the draft is version {previous.number} as published."]}
        )
    now = timezone.now()
    if previous is not None and journey.status == Journey.Status.LIVE:
        # Whoever entered the audience while the previous version was live starts on it, not on this one.
        engine.enroll_audience_entrants(journey=journey, version=previous, now=now, report=engine.Report())
    version = JourneyVersion.objects.create(
        journey=journey,
        number=(previous.number + 1) if previous else 1,
        definition=definition,
        published_at=now,
        published_by=actor_user(actor),
    )
    _write_links(journey, version, definition)
    journey.published_at = now
    if journey.draft_updated_at is None or journey.draft_updated_at > now:
        journey.draft_updated_at = now
    fields = ["published_at", "draft_updated_at", "updated_at"]
    if journey.status == Journey.Status.DRAFT:
        _set_status(journey, Journey.Status.LIVE, actor, now)
        journey.entries_since = now
        fields += ["status", "status_changed_at", "status_changed_by", "entries_since"]
    journey.save(update_fields=fields)
    if journey.status == Journey.Status.LIVE:
        _kick(journey.pk)
    logger.info("journey %s version %s published by %s", journey.pk, version.number, actor_name(actor, system="system"))
    return version


def _refuse(journey: Journey, action: str, allowed: tuple[str, ...]) -> None:
    if journey.status in allowed:
        return
    reasons = {
        Journey.Status.DRAFT: "it has not been published yet",
        Journey.Status.LIVE: "it is live",
        Journey.Status.PAUSED: "it is already paused" if action == "pause" else "it is paused",
        Journey.Status.STOPPED: "it is stopped",
    }
    if action == "resume" and journey.status == Journey.Status.LIVE:
        reason = "it is not paused"
    else:
        reason = reasons[journey.status]
    raise ValidationError({"status": [f"Cannot {action} the journey: {reason}."]})


@transaction.atomic
def journey_pause(*, journey: Journey, actor=None) -> Journey:
    """Live -> paused: nothing advances and nobody enters; enrollments wait where they are."""
    journey = _lock(journey)
    if journey.status == Journey.Status.PAUSED:
        raise ValidationError({"status": ["Cannot pause the journey: it is already paused."]})
    _refuse(journey, "pause", (Journey.Status.LIVE,))
    _set_status(journey, Journey.Status.PAUSED, actor, timezone.now())
    journey.save(update_fields=["status", "status_changed_at", "status_changed_by", "updated_at"])
    logger.info("journey %s paused by %s", journey.pk, actor_name(actor, system="system"))
    return journey


@transaction.atomic
def journey_resume(*, journey: Journey, actor=None) -> Journey:
    """Paused -> live: enrollments advance again; profiles that entered while paused are not enrolled."""
    journey = _lock(journey)
    _refuse(journey, "resume", (Journey.Status.PAUSED,))
    now = timezone.now()
    _set_status(journey, Journey.Status.LIVE, actor, now)
    journey.entries_since = now
    journey.save(update_fields=["status", "status_changed_at", "status_changed_by", "entries_since", "updated_at"])
    _kick(journey.pk)
    logger.info("journey %s resumed by %s", journey.pk, actor_name(actor, system="system"))
    return journey


@transaction.atomic
def journey_stop(*, journey: Journey, actor=None) -> int:
    """Live or paused -> stopped, for good: every running enrollment exits. Returns how many exited."""
    journey = _lock(journey)
    if journey.status == Journey.Status.STOPPED:
        raise ValidationError({"status": ["Cannot stop the journey: it is already stopped."]})
    _refuse(journey, "stop", (Journey.Status.LIVE, Journey.Status.PAUSED))
    now = timezone.now()
    _set_status(journey, Journey.Status.STOPPED, actor, now)
    journey.save(update_fields=["status", "status_changed_at", "status_changed_by", "updated_at"])
    exited = engine.enrollments_exit(journey=journey, now=now)
    logger.info(
        "journey %s stopped by %s (%s enrollments exited)", journey.pk, actor_name(actor, system="system"), exited
    )
    return exited


@transaction.atomic
def journey_delete(*, journey: Journey, actor=None) -> None:
    """Delete a journey that is not running (draft or stopped): its versions, enrollments and step links go too."""
    journey = _lock(journey)
    if journey.is_running:
        raise ValidationError(
            {"status": [f"The journey is {journey.get_status_display().lower()}: stop it before deleting it."]}
        )
    pk = journey.pk
    journey.delete()
    logger.info("journey %s deleted by %s", pk, actor_name(actor, system="system"))


def _event_profile(external_id: Any, profile_id: Any) -> Profile:
    given = [
        name for name, value in (("external_id", external_id), ("profile_id", profile_id)) if value not in (None, "")
    ]
    if len(given) != 1:
        raise ValidationError({"non_field_errors": ["Give exactly one of external_id and profile_id."]})
    if given[0] == "external_id":
        profile = Profile.objects.filter(external_id=str(external_id)).first()
        if profile is None:
            raise ValidationError({"external_id": ["No profile has this external id."]})
        return profile
    try:
        pk = int(profile_id)
    except (TypeError, ValueError):
        raise ValidationError({"profile_id": ["A profile id is a whole number."]}) from None
    profile = Profile.objects.filter(pk=pk).first()
    if profile is None:
        raise ValidationError({"profile_id": ["No profile has this id."]})
    return profile


def journey_event_record(
    *, event: Any, external_id: Any = None, profile_id: Any = None, properties: Any = None
) -> tuple[JourneyEvent, dict[int, int]]:
    """Store a profile event, then process it: enroll the profile in the live journeys entering on it and carry it
    through the steps that do not wait. The event is stored first (its own transaction): if processing fails, the
    scheduled engine processes it. Returns the event and {journey id: enrolled}."""
    errors = []
    profile = None
    try:
        profile = _event_profile(external_id, profile_id)
    except ValidationError as exc:
        errors.append(exc)
    if not isinstance(event, str) or not EVENT_NAME.fullmatch(event):
        errors.append(
            ValidationError({"event": ["An event name: letters, digits and _ . : - (at most 100 characters)."]})
        )
    properties = {} if properties is None else properties
    if not isinstance(properties, dict):
        errors.append(ValidationError({"properties": ["Expected an object."]}))
    elif len(json.dumps(properties, default=str)) > MAX_EVENT_PROPERTIES_BYTES:
        errors.append(ValidationError({"properties": [f"At most {MAX_EVENT_PROPERTIES_BYTES // 1024} KB of JSON."]}))
    if errors:
        raise merge_errors(*errors)
    record = JourneyEvent.objects.create(profile=profile, name=event, properties=properties, received_at=timezone.now())
    try:
        enrolled = engine.event_advance(event=record)
    except Exception:  # stored: the schedule processes it
        logger.exception("journey event %s: processing failed; the schedule will retry", record.pk)
        enrolled = {}
    return record, enrolled
