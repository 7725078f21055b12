"""Server-rendered pages for audiences. Thin: forms shape input, services decide, selectors read.

Permissions as on the connector pages: viewers read, "Marketing admin" changes; anonymous users go to the login page,
signed-in users without the permission get 403.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from audiences import selectors, services
from audiences.forms import AudienceForm, ConnectionDeleteForm, ConnectionForm, EntriesForm, apply_errors
from audiences.models import Audience, AudienceConnection, AudienceMembershipChange
from connectors.models import PartnerConfig
from connectors.partners.registry import REGISTRY
from dap.permissions import page_permission

RECENT = 20


_perm = page_permission("audiences")


@_perm("view_audience")
def audience_list(request):
    search = request.GET.get("q", "").strip()
    kind = request.GET.get("kind", "")
    if kind not in {"", *Audience.Kind.values}:
        kind = ""
    return render(
        request,
        "audiences/list.html",
        {
            "audiences": list(selectors.audience_list(search=search, kind=kind)),
            "search": search,
            "kind": kind,
            "kinds": Audience.Kind.choices,
        },
    )


@_perm("add_audience")
@require_http_methods(["GET", "POST"])
def audience_new(request):
    kind = request.GET.get("kind") or request.POST.get("kind") or Audience.Kind.RULE_BASED
    if kind not in Audience.Kind.values:
        raise Http404("Unknown kind")
    form = AudienceForm(request.POST or None, kind=kind)
    if request.method == "POST" and form.is_valid():
        try:
            audience = services.audience_create(
                name=form.cleaned_data["name"],
                kind=kind,
                description=form.cleaned_data["description"],
                rule=form.cleaned_data.get("rule"),
                actor=request.user,
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            if audience.is_static:
                messages.success(request, f'Static list "{audience.name}" created: upload its identifiers.')
                return redirect("audiences:entries", pk=audience.pk)
            messages.success(request, f'Audience "{audience.name}" created; its members are being computed.')
            return redirect("audiences:detail", pk=audience.pk)
    return render(
        request,
        "audiences/form.html",
        {"form": form, "kind": kind, "kind_label": Audience.Kind(kind).label, "audience": None},
        status=400 if request.method == "POST" else 200,
    )


@_perm("view_audience")
def audience_detail(request, pk: int):
    audience = get_object_or_404(selectors.audience_list(), pk=pk)
    return render(
        request,
        "audiences/detail.html",
        {
            "audience": audience,
            "rule_lines": selectors.rule_lines(audience.rule),
            "connections": selectors.audience_connections(audience=audience),
            "enters": list(
                selectors.audience_recent_changes(
                    audience=audience, kind=AudienceMembershipChange.Kind.ENTER, limit=RECENT
                )
            ),
            "exits": list(
                selectors.audience_recent_changes(
                    audience=audience, kind=AudienceMembershipChange.Kind.EXIT, limit=RECENT
                )
            ),
            "entries": selectors.audience_entry_summary(audience=audience) if audience.is_static else None,
            "recent": RECENT,
        },
    )


@_perm("change_audience")
@require_http_methods(["GET", "POST"])
def audience_edit(request, pk: int):
    audience = get_object_or_404(Audience, pk=pk)
    form = AudienceForm(request.POST or None, kind=audience.kind, audience=audience)
    if request.method == "POST" and form.is_valid():
        changes = {"name": form.cleaned_data["name"], "description": form.cleaned_data["description"]}
        if "rule" in form.fields:
            changes["rule"] = form.cleaned_data.get("rule")
        try:
            services.audience_update(audience=audience, actor=request.user, **changes)
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, "Audience saved.")
            return redirect("audiences:detail", pk=audience.pk)
    return render(
        request,
        "audiences/form.html",
        {"form": form, "kind": audience.kind, "kind_label": audience.get_kind_display(), "audience": audience},
        status=400 if request.method == "POST" else 200,
    )


@_perm("delete_audience")
@require_http_methods(["GET", "POST"])
def audience_delete(request, pk: int):
    audience = get_object_or_404(Audience, pk=pk)
    connections = selectors.audience_connections(audience=audience)
    error = None
    if request.method == "POST":
        try:
            services.audience_delete(audience=audience, actor=request.user)
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            messages.success(request, f'Audience "{audience.name}" deleted.')
            return redirect("audiences:list")
    return render(
        request,
        "audiences/confirm_delete.html",
        {"audience": audience, "connections": connections, "error": error},
        status=409 if error else 200,
    )


@_perm("change_audience")
@require_POST
def audience_refresh(request, pk: int):
    audience = get_object_or_404(Audience, pk=pk)
    try:
        result = services.audience_refresh(audience=audience)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            f"Refreshed: {result.enters} entered, {result.exits} left, {result.size} members; "
            f"{result.outbox.pending} deliveries queued"
            + (f", {result.outbox.skipped} skipped (connector deactivated)" if result.outbox.skipped else "")
            + ".",
        )
    return redirect("audiences:detail", pk=pk)


@_perm("change_audience")
@require_http_methods(["GET", "POST"])
def audience_entries(request, pk: int):
    audience = get_object_or_404(Audience, pk=pk)
    if not audience.is_static:
        raise Http404("Only static lists have entries")
    form = EntriesForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            result = services.audience_entries_upload(
                audience=audience,
                slot=form.cleaned_data["slot"],
                values=form.values_list(),
                replace=form.cleaned_data["replace"],
                actor=request.user,
            )
        except ValidationError as exc:
            apply_errors(form, exc, values_field="values")
        else:
            messages.success(
                request,
                f"{result.added} entries added, {result.removed} removed ({result.total} in the list): "
                f"{result.refresh.enters} profiles entered, {result.refresh.exits} left.",
            )
            return redirect("audiences:detail", pk=pk)
    return render(
        request,
        "audiences/entries.html",
        {"audience": audience, "form": form, "entries": selectors.audience_entry_summary(audience=audience)},
        status=400 if request.method == "POST" else 200,
    )


def _config_param(request) -> PartnerConfig | None:
    raw = request.POST.get("partner_config") or request.GET.get("config") or ""
    if not raw.isdigit():
        return None
    return PartnerConfig.objects.select_related("connector").filter(pk=int(raw)).first()


@_perm("add_audienceconnection")
@require_http_methods(["GET", "POST"])
def connection_add(request, pk: int):
    audience = get_object_or_404(Audience, pk=pk)
    config = _config_param(request)
    form = ConnectionForm(request.POST or None, config=config)
    if request.method == "POST" and form.is_valid():
        try:
            _, queued = services.audience_connection_create(
                audience=audience,
                partner_config=form.cleaned_data.get("partner_config"),
                partner_audience_id=form.cleaned_data.get("partner_audience_id", ""),
                profile_variables=form.variables(),
                actor=request.user,
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(
                request,
                f"Connected: {queued.pending} current members queued"
                + (f", {queued.skipped} skipped (connector deactivated)" if queued.skipped else "")
                + ".",
            )
            return redirect("audiences:detail", pk=pk)
    partner = REGISTRY.get(config.connector.partner_key) if config else None
    return render(
        request,
        "audiences/connection_form.html",
        {"audience": audience, "form": form, "config": config, "partner": partner, "connection": None},
        status=400 if request.method == "POST" else 200,
    )


@_perm("change_audienceconnection")
@require_http_methods(["GET", "POST"])
def connection_edit(request, pk: int, connection_pk: int):
    conn = get_object_or_404(
        AudienceConnection.objects.select_related("audience", "partner_config__connector"),
        pk=connection_pk,
        audience_id=pk,
    )
    form = ConnectionForm(request.POST or None, config=conn.partner_config, connection=conn)
    if request.method == "POST" and form.is_valid():
        changes = {}
        if "partner_audience_id" in form.fields:
            changes["partner_audience_id"] = form.cleaned_data.get("partner_audience_id", "")
        if "profile_variables" in form.fields:
            changes["profile_variables"] = form.variables()
        try:
            services.audience_connection_update(audience_connection=conn, actor=request.user, **changes)
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, "Connection saved.")
            return redirect("audiences:detail", pk=pk)
    partner = REGISTRY.get(conn.partner_config.connector.partner_key)
    return render(
        request,
        "audiences/connection_form.html",
        {
            "audience": conn.audience,
            "form": form,
            "config": conn.partner_config,
            "partner": partner,
            "connection": conn,
        },
        status=400 if request.method == "POST" else 200,
    )


@_perm("delete_audienceconnection")
@require_http_methods(["GET", "POST"])
def connection_delete(request, pk: int, connection_pk: int):
    conn = get_object_or_404(
        AudienceConnection.objects.select_related("audience", "partner_config__connector"),
        pk=connection_pk,
        audience_id=pk,
    )
    form = ConnectionDeleteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        result = services.audience_connection_delete(
            audience_connection=conn, remove_members=form.cleaned_data["remove_members"], actor=request.user
        )
        if result.removing:
            messages.success(
                request,
                f"{result.removes_queued} removals queued; the connection goes once they are sent.",
            )
        else:
            messages.success(request, "Connection deleted: nothing more is sent to it.")
        return redirect("audiences:detail", pk=pk)
    return render(
        request, "audiences/connection_delete.html", {"connection": conn, "audience": conn.audience, "form": form}
    )
