"""Server-rendered pages for journeys. Thin: forms shape input, services decide, selectors read."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from connectors.forms import apply_service_errors
from dap.permissions import page_permission
from journeys import selectors, services
from journeys.definition import validate_definition
from journeys.forms import JourneyForm
from journeys.models import Journey

_perm = page_permission("journeys")


@_perm("view_journey")
def journey_list(request):
    search = request.GET.get("q", "").strip()
    status = request.GET.get("status", "")
    if status not in {"", *Journey.Status.values}:
        status = ""
    return render(
        request,
        "journeys/list.html",
        {
            "journeys": list(selectors.journey_list(search=search, status=status)),
            "search": search,
            "status": status,
            "statuses": Journey.Status.choices,
        },
    )


def _draft_problems(journey: Journey) -> list[str]:
    try:
        validate_definition(journey.definition)
    except ValidationError as exc:
        return [m for messages_ in exc.message_dict.values() for m in messages_]
    return []


@_perm("view_journey")
def journey_detail(request, pk: int):
    journey = get_object_or_404(selectors.journey_list().select_related("status_changed_by"), pk=pk)
    versions = list(selectors.journey_versions(journey=journey))
    latest = versions[0] if versions else None
    counts = selectors.journey_step_counts(journey=journey)
    older = [
        (v, selectors.steps_readable(v.definition, counts[v.number]))
        for v in versions[1:]
        if any(c.get("active") or c.get("waiting") for c in counts.get(v.number, {}).values())
    ]
    return render(
        request,
        "journeys/detail.html",
        {
            "journey": journey,
            "latest": latest,
            "versions": versions,
            "published_steps": selectors.steps_readable(latest.definition, counts.get(latest.number)) if latest else [],
            "draft_steps": selectors.steps_readable(journey.definition),
            "draft_problems": _draft_problems(journey),
            "older_running": older,
            "totals": selectors.journey_enrollment_totals(journey=journey),
        },
    )


@_perm("add_journey")
@require_http_methods(["GET", "POST"])
def journey_new(request):
    form = JourneyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            journey = services.journey_create(
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                definition=form.cleaned_data["definition"],
                actor=request.user,
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, f'Journey "{journey.name}" created as a draft.')
            return redirect("journeys:detail", pk=journey.pk)
    return render(request, "journeys/form.html", {"form": form, "journey": None}, status=400 if form.is_bound else 200)


@_perm("change_journey")
@require_http_methods(["GET", "POST"])
def journey_edit(request, pk: int):
    journey = get_object_or_404(Journey, pk=pk)
    initial = {"name": journey.name, "description": journey.description, "definition": journey.definition}
    form = JourneyForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.journey_update(
                journey=journey,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                definition=form.cleaned_data["definition"],
                actor=request.user,
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, "Draft saved. Publish it to make it the running version.")
            return redirect("journeys:detail", pk=journey.pk)
    return render(
        request, "journeys/form.html", {"form": form, "journey": journey}, status=400 if form.is_bound else 200
    )


def _transition(request, pk: int, service, done: str):
    journey = get_object_or_404(Journey, pk=pk)
    try:
        result = service(journey=journey, actor=request.user)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    else:
        messages.success(request, done.format(result=result))
    return redirect("journeys:detail", pk=pk)


@_perm("change_journey")
@require_POST
def journey_publish(request, pk: int):
    done = "Version {result.number} published: new entrants start on it."
    return _transition(request, pk, services.journey_publish, done)


@_perm("change_journey")
@require_POST
def journey_pause(request, pk: int):
    return _transition(request, pk, services.journey_pause, "Journey paused: enrollments wait where they are.")


@_perm("change_journey")
@require_POST
def journey_resume(request, pk: int):
    return _transition(request, pk, services.journey_resume, "Journey resumed.")


@_perm("change_journey")
@require_POST
def journey_stop(request, pk: int):
    return _transition(request, pk, services.journey_stop, "Journey stopped: {result} enrollment(s) exited.")


@_perm("delete_journey")
@require_POST
def journey_delete(request, pk: int):
    journey = get_object_or_404(Journey, pk=pk)
    try:
        services.journey_delete(journey=journey, actor=request.user)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return redirect("journeys:detail", pk=pk)
    messages.success(request, f'Journey "{journey.name}" deleted.')
    return redirect("journeys:list")
