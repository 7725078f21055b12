"""Server-rendered pages for connectors. Thin: forms shape input, services decide, selectors read."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from connectors import cookie_sync, selectors, services
from connectors.delivery import outbox
from connectors.errors import InUseError
from connectors.forms import (
    ConnectorCreateForm,
    ConnectorRenameForm,
    DeliveryLogFilterForm,
    PartnerConfigForm,
    ReplayForm,
    SnippetForm,
    apply_service_errors,
    setting_fields,
    settings_from_form,
)
from connectors.models import Connector, Delivery, Outcome, PartnerConfig
from connectors.partners.base import Kind
from connectors.partners.registry import UnknownPartner, all_partners, get_partner
from dap.permissions import page_permission
from monitoring.selectors import open_alerts

STATS_PERIODS = selectors.STATS_PERIODS


_perm = page_permission("connectors")


@_perm("view_connector")
def connector_list(request):
    search = request.GET.get("q", "").strip()
    status = request.GET.get("status", "")
    if status not in {"", *Connector.Status.values}:
        status = ""
    queryset = selectors.connector_list(search=search, status=status, totals=False)
    connectors = list(queryset)
    overview = {row["id"]: row for row in selectors.stats_overview(days=7, connectors=queryset)["connectors"]}
    return render(
        request,
        "connectors/list.html",
        {
            "rows": [(c, overview[c.pk]) for c in connectors],
            "alerts": open_alerts(),
            "connectors": connectors,
            "search": search,
            "status": status,
            "statuses": Connector.Status.choices,
        },
    )


@_perm("view_connector")
def catalogue(request):
    query = request.GET.get("q", "").strip().lower()
    kind = request.GET.get("kind", "")
    if kind not in {"", *Kind.values}:
        kind = ""
    partners = [
        p
        for p in all_partners(kind=kind or None)
        if not query or query in f"{p.name} {p.vendor} {p.description} {p.platform_label}".lower()
    ]
    return render(
        request,
        "connectors/catalogue.html",
        {
            "partners": partners,
            "query": request.GET.get("q", ""),
            "kind": kind,
            "kinds": Kind.choices,
            "egress_ips": settings.DAP_EGRESS_IPS,
        },
    )


def _partner_or_404(key: str):
    try:
        return get_partner(key)
    except UnknownPartner:
        raise Http404("Unknown partner") from None


@sensitive_post_parameters()
@_perm("view_connector")
@require_http_methods(["GET", "POST"])
def connector_new(request, partner_key: str):
    partner = _partner_or_404(partner_key)
    if partner.kind == Kind.TAG_BASED:
        form = SnippetForm(request.GET or None, partner=partner)
        snippet = None
        if form.is_bound and form.is_valid():
            try:
                cleaned, _ = partner.clean_settings(settings_from_form(form, partner))
            except ValidationError as exc:
                apply_service_errors(form, exc)
            else:
                snippet = partner.render_snippet(cleaned)
        return render(
            request,
            "connectors/snippet.html",
            {"partner": partner, "form": form, "snippet": snippet, "egress_ips": settings.DAP_EGRESS_IPS},
        )
    if not request.user.has_perm("connectors.add_connector"):
        return render(request, "403.html", {"reason": "You cannot add connectors."}, status=403)
    form = ConnectorCreateForm(request.POST or None, partner=partner, initial={"name": partner.name})
    if request.method == "POST" and form.is_valid():
        try:
            connector = services.connector_create(
                partner_key=partner.key,
                name=form.cleaned_data["name"],
                config_name=form.cleaned_data["config_name"],
                settings=settings_from_form(form, partner),
                timeout_seconds=form.cleaned_data["timeout_seconds"],
                actor=request.user,
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, f'Connector "{connector.name}" created.')
            return redirect("connectors:detail", pk=connector.pk)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "connectors/new.html",
        {
            "partner": partner,
            "form": form,
            "setting_fields": setting_fields(form),
            "egress_ips": settings.DAP_EGRESS_IPS,
        },
        status=status,
    )


def _setting_rows(partner, config: PartnerConfig) -> list[tuple[str, str, bool]]:
    """(label, shown value, is secret) per setting, in schema order; secrets only as set / last 4."""
    secrets = config.masked_secrets()
    rows = []
    for f in partner.settings:
        if f.secret:
            state = secrets.get(f.name, {"set": False})
            shown = (
                ("•••• set" + (f", ending {state['last4']}" if state.get("last4") else ""))
                if state["set"]
                else "not set"
            )
            rows.append((f.label, shown, True))
        elif f.name in config.settings:
            value = config.settings[f.name]
            shown = dict(f.choices).get(value, value) if f.choices else value
            rows.append((f.label, "" if shown is None else str(shown), False))
    return rows


# The chart's colours: added green, removed blue, one colour per error category.
CHART_SERIES = [
    (Outcome.ADDED, "#1f8a4c"),
    (Outcome.REMOVED, "#2a6fd6"),
    (Outcome.OTHER_ERROR, "#7f8c8d"),
    (Outcome.INVALID_CREDENTIALS, "#8e44ad"),
    (Outcome.TIMEOUT, "#e67e22"),
    (Outcome.PARTNER_ERROR, "#c0392b"),
]


@_perm("view_connector")
def connector_detail(request, pk: int):
    connector = get_object_or_404(Connector, pk=pk)
    days = request.GET.get("days", "7")
    if not days.isdigit() or int(days) not in STATS_PERIODS:
        days = "7"
    configs = list(connector.configs.all())
    stats = selectors.connector_stats(connector=connector, days=int(days))
    log_filter = DeliveryLogFilterForm(request.GET if "log" in request.GET else None, configs=configs)
    filters = log_filter.filters()
    failed, failed_matching = selectors.connector_failed_deliveries(connector=connector, filters=filters)
    labels = dict(Outcome.choices)
    chart = {
        "api": reverse("connector-stats", args=[connector.pk]),
        "days": stats["days"],
        "dates": [d.isoformat() for d in stats["dates"]],
        "series": [
            {"outcome": o.value, "label": labels[o], "colour": colour, "data": stats["series"][o.value]}
            for o, colour in CHART_SERIES
        ],
    }
    return render(
        request,
        "connectors/detail.html",
        {
            "connector": connector,
            "partner": connector.partner,
            "configs": [(c, _setting_rows(connector.partner, c)) for c in configs],
            "health": selectors.connector_health(connector=connector, configs=configs),
            "alerts": open_alerts(connector_ids=[connector.pk]),
            "stats": stats,
            "chart": chart,
            "chart_series": [(o.value, labels[o], colour) for o, colour in CHART_SERIES],
            "outcome_rows": [(value, label, stats["by_outcome"][value]) for value, label in Outcome.choices],
            "days": stats["days"],
            "periods": STATS_PERIODS,
            "usages": selectors.connector_usages(connector=connector),
            "history": selectors.connector_history(connector=connector),
            "can_add_config": connector.partner.multiple_configs,
            "log_filter": log_filter,
            "log_filters": filters,
            "attempts": selectors.connector_attempts(connector=connector, filters=filters),
            "failed": failed,
            "failed_matching": failed_matching,
            "failed_count": Delivery.objects.filter(
                partner_config__connector=connector, status=Delivery.Status.FAILED
            ).count(),
            "pending_count": Delivery.objects.filter(
                partner_config__connector=connector, status=Delivery.Status.PENDING
            ).count(),
        },
    )


@_perm("change_connector")
@require_http_methods(["GET", "POST"])
def connector_edit(request, pk: int):
    connector = get_object_or_404(Connector, pk=pk)
    form = ConnectorRenameForm(request.POST or None, initial={"name": connector.name})
    if request.method == "POST" and form.is_valid():
        try:
            services.connector_update(connector=connector, name=form.cleaned_data["name"], actor=request.user)
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, "Connector renamed.")
            return redirect("connectors:detail", pk=connector.pk)
    return render(request, "connectors/edit.html", {"connector": connector, "form": form})


@sensitive_post_parameters()
@_perm("add_partnerconfig")
@require_http_methods(["GET", "POST"])
def config_add(request, pk: int):
    connector = get_object_or_404(Connector, pk=pk)
    partner = connector.partner
    if not partner.multiple_configs:
        messages.error(request, f"{partner.name} allows a single configuration per connector; edit the existing one.")
        return redirect("connectors:detail", pk=connector.pk)
    form = PartnerConfigForm(request.POST or None, partner=partner)
    if request.method == "POST" and form.is_valid():
        try:
            services.partner_config_create(
                connector=connector,
                name=form.cleaned_data["name"],
                settings=settings_from_form(form, partner),
                timeout_seconds=form.cleaned_data["timeout_seconds"],
                actor=request.user,
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, "Configuration added.")
            return redirect("connectors:detail", pk=connector.pk)
    return render(
        request,
        "connectors/config_form.html",
        {
            "connector": connector,
            "partner": partner,
            "form": form,
            "setting_fields": setting_fields(form),
            "config": None,
        },
        status=400 if request.method == "POST" else 200,
    )


@sensitive_post_parameters()
@_perm("change_partnerconfig")
@require_http_methods(["GET", "POST"])
def config_edit(request, pk: int, config_pk: int):
    config = get_object_or_404(PartnerConfig.objects.select_related("connector"), pk=config_pk, connector_id=pk)
    partner = config.connector.partner
    form = PartnerConfigForm(request.POST or None, partner=partner, config=config)
    if request.method == "POST" and form.is_valid():
        try:
            services.partner_config_update(
                partner_config=config,
                name=form.cleaned_data["name"],
                settings=settings_from_form(form, partner),
                timeout_seconds=form.cleaned_data["timeout_seconds"],
                actor=request.user,
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, "Configuration saved.")
            return redirect("connectors:detail", pk=config.connector_id)
    return render(
        request,
        "connectors/config_form.html",
        {
            "connector": config.connector,
            "partner": partner,
            "form": form,
            "setting_fields": setting_fields(form),
            "config": config,
        },
        status=400 if request.method == "POST" else 200,
    )


@_perm("delete_partnerconfig")
@require_http_methods(["GET", "POST"])
def config_delete(request, pk: int, config_pk: int):
    config = get_object_or_404(PartnerConfig.objects.select_related("connector"), pk=config_pk, connector_id=pk)
    usages = selectors.partner_config_usages(config_ids=[config.pk])
    error = None
    status = 200
    if request.method == "POST":
        try:
            services.partner_config_delete(partner_config=config, actor=request.user)
        except InUseError as exc:
            usages, error, status = exc.usages, str(exc), 409
        except ValidationError as exc:
            error, status = " ".join(exc.messages), 409
        else:
            messages.success(request, f'Configuration "{config.name}" deleted.')
            return redirect("connectors:detail", pk=pk)
    return render(
        request,
        "connectors/confirm_delete.html",
        {"connector": config.connector, "config": config, "usages": usages, "error": error},
        status=status,
    )


@_perm("change_partnerconfig")
@require_POST
def config_test(request, pk: int, config_pk: int):
    config = get_object_or_404(PartnerConfig.objects.select_related("connector"), pk=config_pk, connector_id=pk)
    result = services.partner_config_test_connection(partner_config=config, actor=request.user)
    if result.ok:
        messages.success(request, f'"{config.name}": {result.message}')
    else:
        details = "; ".join(f"{k}: {' '.join(v)}" for k, v in result.errors.items())
        messages.error(request, f'"{config.name}": {result.message} {details}')
    return redirect("connectors:detail", pk=pk)


@_perm("change_partnerconfig")
@require_POST
def config_resume(request, pk: int, config_pk: int):
    config = get_object_or_404(PartnerConfig.objects.select_related("connector"), pk=config_pk, connector_id=pk)
    if services.partner_config_resume(partner_config=config, actor=request.user):
        messages.success(request, f'"{config.name}": sending resumed.')
    else:
        messages.info(request, f'"{config.name}" was not paused.')
    return redirect("connectors:detail", pk=pk)


@_perm("change_delivery")
@require_POST
def connector_replay(request, pk: int):
    """Replay the connector's failed deliveries: the ticked ones (`replay=selected` with `ids`), or all of them
    matching the page's filters (configuration, outcome)."""
    connector = get_object_or_404(Connector, pk=pk)
    queryset = Delivery.objects.filter(partner_config__connector=connector, status=Delivery.Status.FAILED)
    form = ReplayForm(request.POST, configs=list(connector.configs.all()))
    if not form.is_valid():
        messages.error(request, "Nothing replayed: " + " ".join(e for errors in form.errors.values() for e in errors))
        return redirect("connectors:detail", pk=pk)
    if request.POST.get("replay") == "selected":
        if not form.cleaned_data["ids"]:
            messages.error(request, "Nothing replayed: tick the deliveries to replay.")
            return redirect("connectors:detail", pk=pk)
        queryset = queryset.filter(pk__in=form.cleaned_data["ids"])
    queryset = selectors.delivery_filter(queryset, form.filters())
    try:
        n = outbox.deliveries_replay(queryset=queryset)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{n} failed deliveries queued again.")
    return redirect("connectors:detail", pk=pk)


@_perm("change_connector")
@require_http_methods(["GET", "POST"])
def connector_deactivate(request, pk: int):
    connector = get_object_or_404(Connector, pk=pk)
    if request.method == "POST":
        changed = services.connector_deactivate(connector=connector, actor=request.user)
        messages.success(request, "Connector deactivated: nothing more is sent." if changed else "Already deactivated.")
        return redirect("connectors:detail", pk=pk)
    return render(
        request,
        "connectors/confirm_deactivate.html",
        {
            "connector": connector,
            "usages": selectors.connector_usages(connector=connector),
            "live_drafts": selectors.connector_live_journeys_with_unpublished_changes(connector=connector),
        },
    )


@_perm("change_connector")
@require_POST
def connector_activate(request, pk: int):
    connector = get_object_or_404(Connector, pk=pk)
    changed = services.connector_activate(connector=connector, actor=request.user)
    messages.success(request, "Connector activated." if changed else "Already active.")
    return redirect("connectors:detail", pk=pk)


@_perm("delete_connector")
@require_http_methods(["GET", "POST"])
def connector_delete(request, pk: int):
    connector = get_object_or_404(Connector, pk=pk)
    usages = selectors.connector_usages(connector=connector)
    error = None
    status = 200
    if request.method == "POST":
        try:
            services.connector_delete(connector=connector, actor=request.user)
        except InUseError as exc:
            usages, error, status = exc.usages, str(exc), 409
        else:
            messages.success(request, f'Connector "{connector.name}" deleted.')
            return redirect("connectors:list")
    return render(
        request,
        "connectors/confirm_delete.html",
        {"connector": connector, "config": None, "usages": usages, "error": error},
        status=status,
    )


@require_http_methods(["GET", "HEAD"])
def cookie_sync_endpoint(request, partner_key: str):
    """`/sync/<partner key>/`: where a partner's sync pixel sends the browser. A 1x1 GIF when stored; a plain-text
    400/404 saying why when refused (nothing written)."""
    try:
        cookie_sync.cookie_sync_record(partner_key=partner_key, params=dict(request.GET.lists()))
    except cookie_sync.SyncRefused as refused:
        response = HttpResponse(refused.message, status=refused.status, content_type="text/plain; charset=utf-8")
    else:
        response = HttpResponse(cookie_sync.PIXEL_GIF, content_type="image/gif")
    response["Cache-Control"] = "no-store"
    return response
