"""Reads for journeys: lists, versions, enrollment counts per step, step descriptions, and usages."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, F, IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from audiences.models import Audience
from connectors.models import PartnerConfig
from journeys.definition import describe_step, ordered_keys, step_map, steps_of
from journeys.models import Journey, JourneyActivationStep, JourneyEnrollment, JourneyVersion


def journey_list(*, search: str = "", status: str = "") -> QuerySet[Journey]:
    """Journeys with their number of versions, latest version number and running enrollments."""
    qs = Journey.objects.all()
    if search:
        qs = qs.filter(name__icontains=search)
    if status:
        qs = qs.filter(status=status)
    versions = JourneyVersion.objects.filter(journey=OuterRef("pk")).order_by().values("journey")
    running = (
        JourneyEnrollment.objects.filter(journey=OuterRef("pk"), status__in=JourneyEnrollment.RUNNING)
        .order_by()
        .values("journey")
    )
    return qs.annotate(
        version_count=Coalesce(Subquery(versions.annotate(n=Count("id")).values("n")[:1]), Value(0)),
        latest_version_number=Subquery(versions.annotate(n=Max("number")).values("n")[:1], output_field=IntegerField()),
        running_count=Coalesce(Subquery(running.annotate(n=Count("id")).values("n")[:1]), Value(0)),
    ).order_by("name")


def journey_versions(*, journey: Journey) -> QuerySet[JourneyVersion]:
    return journey.versions.select_related("published_by").order_by("-number")


def journey_latest_version(*, journey: Journey) -> JourneyVersion | None:
    return journey.versions.order_by("-number").first()


def journey_enrollments(*, journey: Journey, status: str = "", step: str = "", version: int | None = None):
    qs = JourneyEnrollment.objects.filter(journey=journey).select_related("version", "profile").order_by("-id")
    if status:
        qs = qs.filter(status=status)
    if step:
        qs = qs.filter(step_key=step)
    if version is not None:
        qs = qs.filter(version__number=version)
    return qs


def journey_enrollment_totals(*, journey: Journey) -> dict[str, int]:
    """Enrollments per status (all versions)."""
    totals = {s.value: 0 for s in JourneyEnrollment.Status}
    for row in JourneyEnrollment.objects.filter(journey=journey).values("status").annotate(n=Count("id")).order_by():
        totals[row["status"]] = row["n"]
    return totals


def journey_step_counts(*, journey: Journey) -> dict[int, dict[str, dict[str, int]]]:
    """{version number: {step key: {"active": n, "waiting": n}}} for running enrollments; completed enrollments are
    counted at their exit step."""
    counts: dict[int, dict[str, dict[str, int]]] = {}
    rows = (
        JourneyEnrollment.objects.filter(journey=journey)
        .exclude(status=JourneyEnrollment.Status.EXITED)
        .values("version__number", "step_key", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        step = counts.setdefault(row["version__number"], {}).setdefault(row["step_key"], {})
        step[row["status"]] = row["n"]
    return counts


@dataclass(frozen=True)
class StepView:
    key: str
    type: str
    label: str
    text: str
    next: list[str]
    active: int = 0
    waiting: int = 0
    completed: int = 0

    @property
    def here(self) -> int:
        return self.active + self.waiting


def steps_readable(definition: dict, counts: dict[str, dict[str, int]] | None = None) -> list[StepView]:
    """The steps in flow order, each in plain words, with how many enrollments are at it."""
    steps = step_map(definition)
    audience_ids = {s.get("audience_id") for s in steps.values() if s.get("type") == "entry"} - {None}
    config_ids = {s.get("partner_config_id") for s in steps.values() if s.get("type") == "activate"} - {None}
    audiences = dict(
        Audience.objects.filter(pk__in=[a for a in audience_ids if isinstance(a, int)]).values_list("pk", "name")
    )
    configs = {
        c.pk: f"{c.connector.name} / {c.name}" + (" (deactivated)" if not c.connector.is_active else "")
        for c in PartnerConfig.objects.filter(pk__in=[c for c in config_ids if isinstance(c, int)]).select_related(
            "connector"
        )
    }
    counts = counts or {}
    views = []
    ordered = ordered_keys(definition) if steps else []
    for key in ordered:
        step = steps[key]
        at = counts.get(key, {})
        nxt = [step[f] for f in ("next", "next_true", "next_false") if isinstance(step.get(f), str)]
        views.append(
            StepView(
                key=key,
                type=str(step.get("type")),
                label=step.get("label", "") if isinstance(step.get("label"), str) else "",
                text=describe_step(step, audiences=audiences, configs=configs),
                next=nxt,
                active=at.get(JourneyEnrollment.Status.ACTIVE, 0),
                waiting=at.get(JourneyEnrollment.Status.WAITING, 0),
                completed=at.get(JourneyEnrollment.Status.COMPLETED, 0),
            )
        )
    # Steps without a key (an unfinished draft) are listed as they are.
    for step in steps_of(definition):
        if not isinstance(step, dict) or not isinstance(step.get("key"), str):
            views.append(StepView(key="?", type=str(step.get("type") if isinstance(step, dict) else "?"), label="",
                                  text="(incomplete step)", next=[]))  # fmt: skip
    return views


def live_journeys_with_unpublished_changes(*, config_filter: Q) -> QuerySet[Journey]:
    """Live journeys whose draft differs from the published version and whose draft or any version has an
    activation step matching `config_filter` (a Q on JourneyActivationStep)."""
    steps = JourneyActivationStep.objects.filter(config_filter).values("journey_id")
    return Journey.objects.filter(
        status=Journey.Status.LIVE, draft_updated_at__gt=F("published_at"), pk__in=steps
    ).order_by("name")


def journeys_using_audience(*, audience_id: int) -> list[Journey]:
    """Journeys whose draft or a version enters on this audience (a scan of the definitions: journeys are few)."""
    found = []
    for journey in Journey.objects.prefetch_related("versions"):
        definitions = [journey.definition, *(v.definition for v in journey.versions.all())]
        if any(
            s.get("type") == "entry" and s.get("audience_id") == audience_id
            for d in definitions
            for s in steps_of(d)
            if isinstance(s, dict)
        ):
            found.append(journey)
    return found


def activation_targets(*, partner_config_id: int, journey_ids) -> dict[int, tuple[str, list[str]]]:
    """For the dispatcher: per journey, the partner audience id and profile variables of its latest version's
    activation step sending to this configuration (the first such step when there are several)."""
    latest = JourneyVersion.objects.filter(journey=OuterRef("journey_id")).order_by("-number").values("pk")[:1]
    rows = (
        JourneyActivationStep.objects.filter(
            partner_config_id=partner_config_id, journey_id__in=list(journey_ids), version_id=Subquery(latest)
        )
        .order_by("journey_id", "id")
        .values_list("journey_id", "partner_audience_id", "profile_variables")
    )
    targets: dict[int, tuple[str, list[str]]] = {}
    for journey_id, audience_id, variables in rows:
        targets.setdefault(journey_id, (audience_id, list(variables or [])))
    return targets
