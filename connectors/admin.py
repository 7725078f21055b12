"""Django admin for connectors: the same services and rules as the API and pages.

Forms are generated from the partner schema; saving goes through the services (validation, audit history,
encryption); deleting goes through the delete guard, which lists every usage as protected objects.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters

from connectors import selectors, services
from connectors.delivery import outbox
from connectors.errors import InUseError
from connectors.forms import (
    add_settings_fields,
    apply_service_errors,
    setting_field_name,
    setting_field_names,
    settings_from_form,
)
from connectors.models import Connector, ConnectorEvent, DailyStat, Delivery, DeliveryAttempt, PartnerConfig
from connectors.partners.base import Kind
from connectors.partners.registry import UnknownPartner, all_partners, get_partner
from dap.admin import ListOnlyAdmin, ReadOnlyAdmin


def status_label(connector: Connector) -> str:
    if connector.is_active:
        return format_html('<span style="color:#1f8a4c;font-weight:600">{}</span>', "Active")
    return format_html(
        '<span class="deactivated-label" style="background:#fde8e6;color:#c0392b;font-weight:600;'
        'padding:1px 8px;border-radius:9px">{}</span>',
        "Deactivated",
    )


class ServiceFormMixin:
    """Runs the service inside `clean()` (the admin view is one transaction) so its errors land on the form."""

    result = None

    def _run(self, fn, **kwargs):
        try:
            self.result = fn(**kwargs)
        except ValidationError as exc:
            apply_service_errors(self, exc, aliases={"config_name": "config_name", "non_field_errors": None})


class ConnectorAddForm(ServiceFormMixin, forms.ModelForm):
    config_name = forms.CharField(label="Configuration name", initial="Default", required=False)
    timeout_seconds = forms.FloatField(label="Timeout (seconds)", initial=3.0, required=False)
    base_url_override = forms.URLField(
        label="Base URL override",
        required=False,
        assume_scheme="https",
        help_text="Regional endpoint or the local partner sandbox.",
    )

    partner = None
    actor = None

    class Meta:
        model = Connector
        fields = ["name"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = False
        add_settings_fields(self, self.partner)

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        self._run(
            services.connector_create,
            partner_key=self.partner.key,
            name=cleaned.get("name"),
            config_name=cleaned.get("config_name"),
            settings=settings_from_form(self, self.partner),
            timeout_seconds=cleaned.get("timeout_seconds"),
            base_url_override=cleaned.get("base_url_override") or "",
            actor=self.actor,
        )
        return cleaned

    def _post_clean(self):
        # The service validates and writes; skip the ModelForm's own instance validation.
        pass


class ConnectorChangeForm(ServiceFormMixin, forms.ModelForm):
    actor = None

    class Meta:
        model = Connector
        fields = ["name"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = False

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            self._run(services.connector_update, connector=self.instance, name=cleaned.get("name"), actor=self.actor)
        return cleaned

    def _post_clean(self):
        pass


class SensitiveFormMixin:
    """The add and change forms take partner secrets: error reports never show what was posted."""

    @method_decorator(sensitive_post_parameters())
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)


class GuardedDeleteMixin:
    """Deletion through the service; the delete page shows usages as protected objects."""

    def _usages_for(self, obj):
        raise NotImplementedError

    def get_deleted_objects(self, objs, request):
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        guard = []
        for obj in objs:
            guard.extend(f"{obj}: {usage}" for usage in self._usages_for(obj))
        return deleted, model_count, perms_needed, guard or protected

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(Connector)
class ConnectorAdmin(SensitiveFormMixin, GuardedDeleteMixin, admin.ModelAdmin):
    list_display = ["name", "partner_display", "config_count", "status_display", "status_changed_at", "updated_at"]
    list_filter = ["status", "partner_key"]
    search_fields = ["name"]
    readonly_fields = [
        "partner_key",
        "status_display",
        "status_changed_at",
        "status_changed_by",
        "created_at",
        "created_by",
    ]
    actions = ["deactivate_selected", "activate_selected"]

    @admin.display(description="Partner", ordering="partner_key")
    def partner_display(self, obj):
        return obj.partner_name

    @admin.display(description="Configurations")
    def config_count(self, obj):
        return obj.configs.count()

    @admin.display(description="Status", ordering="status")
    def status_display(self, obj):
        return status_label(obj)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            partner = request._dap_partner
            settings = [setting_field_name(f.name) for f in partner.settings]
            return [
                (None, {"fields": ["name"]}),
                (
                    f"{partner.name} configuration",
                    {"fields": ["config_name", *settings, "timeout_seconds", "base_url_override"]},
                ),
            ]
        return [(None, {"fields": ["name", *self.readonly_fields]})]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def add_view(self, request, form_url="", extra_context=None):
        key = request.GET.get("partner")
        partner = None
        if key:
            try:
                partner = get_partner(key)
            except UnknownPartner:
                partner = None
        if partner is None or partner.kind != Kind.SERVER_TO_SERVER:
            return render(
                request,
                "admin/connectors/choose_partner.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": "Choose the partner",
                    "partners": all_partners(kind=Kind.SERVER_TO_SERVER),
                },
            )
        request._dap_partner = partner
        return super().add_view(request, form_url, {**(extra_context or {}), "title": f"Add {partner.name} connector"})

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            form = type(
                "ConnectorAddForm", (ConnectorAddForm,), {"partner": request._dap_partner, "actor": request.user}
            )
        else:
            form = type("ConnectorChangeForm", (ConnectorChangeForm,), {"actor": request.user})
        kwargs["form"] = form
        kwargs["fields"] = ["name"]
        return super().get_form(request, obj, change, **kwargs)

    def save_form(self, request, form, change):
        return form.result or form.instance

    def save_model(self, request, obj, form, change):
        pass  # saved by the service in form.clean()

    def save_related(self, request, form, formsets, change):
        pass

    def _usages_for(self, obj):
        return selectors.connector_usages(connector=obj)

    def delete_model(self, request, obj):
        services.connector_delete(connector=obj, actor=request.user)

    @admin.action(description="Deactivate selected connectors", permissions=["change"])
    def deactivate_selected(self, request, queryset):
        changed = sum(services.connector_deactivate(connector=c, actor=request.user) for c in queryset)
        self.message_user(request, f"{changed} connector(s) deactivated.", messages.SUCCESS)

    @admin.action(description="Activate selected connectors", permissions=["change"])
    def activate_selected(self, request, queryset):
        changed = sum(services.connector_activate(connector=c, actor=request.user) for c in queryset)
        self.message_user(request, f"{changed} connector(s) activated.", messages.SUCCESS)


class PartnerConfigForm(ServiceFormMixin, forms.ModelForm):
    base_url_override = forms.URLField(
        label="Base URL override",
        required=False,
        assume_scheme="https",
        help_text="Admin only: send to this base URL instead of the partner's (regional endpoint or local sandbox).",
    )
    connector_obj = None
    actor = None

    class Meta:
        model = PartnerConfig
        fields = ["name", "timeout_seconds", "base_url_override"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("name", "timeout_seconds"):
            self.fields[name].required = False
        add_settings_fields(self, self.connector_obj.partner, config=self.instance if self.instance.pk else None)

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        partner = self.connector_obj.partner
        common = {
            "name": cleaned.get("name"),
            "settings": settings_from_form(self, partner),
            "timeout_seconds": cleaned.get("timeout_seconds"),
            "base_url_override": cleaned.get("base_url_override") or "",
            "actor": self.actor,
        }
        if self.instance.pk:
            self._run(services.partner_config_update, partner_config=self.instance, **common)
        else:
            self._run(services.partner_config_create, connector=self.connector_obj, **common)
        return cleaned

    def _post_clean(self):
        pass


@admin.register(PartnerConfig)
class PartnerConfigAdmin(SensitiveFormMixin, GuardedDeleteMixin, admin.ModelAdmin):
    list_display = ["name", "connector", "partner_display", "connector_status", "secrets_display", "timeout_seconds"]
    list_filter = ["connector__status", "connector__partner_key"]
    search_fields = ["name", "connector__name"]
    list_select_related = ["connector"]

    @admin.display(description="Partner")
    def partner_display(self, obj):
        return obj.connector.partner_name

    @admin.display(description="Connector status")
    def connector_status(self, obj):
        return status_label(obj.connector)

    @admin.display(description="Secrets")
    def secrets_display(self, obj):
        states = obj.masked_secrets()
        if not states:
            return "—"
        return format_html_join(
            ", ",
            "{}: {}",
            (
                (name, ("set" + (f" …{s['last4']}" if s["last4"] else "")) if s["set"] else "not set")
                for name, s in states.items()
            ),
        )

    def _connector_for(self, request, obj):
        if obj is not None:
            return obj.connector
        return get_object_or_404(Connector, pk=request.GET.get("connector"))

    def add_view(self, request, form_url="", extra_context=None):
        if not request.GET.get("connector", "").isdigit():
            connectors = [c for c in Connector.objects.all() if c.partner_name and _allows_more(c)]
            return render(
                request,
                "admin/connectors/choose_connector.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": "Choose the connector",
                    "connectors": connectors,
                },
            )
        connector = self._connector_for(request, None)
        if not _allows_more(connector):
            self.message_user(
                request, f"{connector.partner_name} allows a single configuration per connector.", messages.ERROR
            )
            return HttpResponseRedirect(reverse("admin:connectors_connector_change", args=[connector.pk]))
        return super().add_view(request, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        connector = self._connector_for(request, obj)
        kwargs["form"] = type(
            "PartnerConfigForm", (PartnerConfigForm,), {"connector_obj": connector, "actor": request.user}
        )
        kwargs["fields"] = ["name", "timeout_seconds", "base_url_override"]
        return super().get_form(request, obj, change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        partner = self._connector_for(request, obj).partner
        settings = setting_field_names(partner, config=obj)
        return [(None, {"fields": ["name", *settings, "timeout_seconds", "base_url_override"]})]

    def save_form(self, request, form, change):
        return form.result or form.instance

    def save_model(self, request, obj, form, change):
        pass

    def save_related(self, request, form, formsets, change):
        pass

    def _usages_for(self, obj):
        usages = [str(u) for u in selectors.partner_config_usages(config_ids=[obj.pk])]
        if not usages and not obj.connector.configs.exclude(pk=obj.pk).exists():
            usages.append("it is the connector's only configuration: delete the connector instead")
        return usages

    def delete_model(self, request, obj):
        try:
            services.partner_config_delete(partner_config=obj, actor=request.user)
        except (InUseError, ValidationError) as exc:
            self.message_user(request, str(exc), messages.ERROR)


def _allows_more(connector: Connector) -> bool:
    try:
        partner = connector.partner
    except UnknownPartner:
        return False
    return partner.multiple_configs or not connector.configs.exists()


@admin.register(ConnectorEvent)
class ConnectorEventAdmin(ListOnlyAdmin):
    list_display = ["at", "actor_name", "action", "connector_name", "partner_config_name", "changes_display"]
    list_filter = ["action"]
    search_fields = ["connector_name", "actor_name"]

    @admin.display(description="Changes")
    def changes_display(self, obj):
        return format_html_join("", "<div>{}</div>", ((line,) for line in obj.change_lines()))


@admin.register(DailyStat)
class DailyStatAdmin(ReadOnlyAdmin):
    list_display = ["day", "partner_config", "outcome", "partner_error_code", "count"]
    list_filter = ["outcome", "day"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "partner_config", "profile_id", "action", "status", "outcome", "partner_error_code",
                    "attempts", "created_at", "next_attempt_at"]  # fmt: skip
    list_filter = ["status", "outcome", "action"]
    list_select_related = ["partner_config__connector"]
    actions = ["replay_selected"]

    @admin.action(description="Replay selected failed or skipped deliveries", permissions=["replay"])
    def replay_selected(self, request, queryset):
        try:
            n = outbox.deliveries_replay(queryset=queryset)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
        else:
            self.message_user(request, f"{n} deliveries queued again.", messages.SUCCESS)

    def has_replay_permission(self, request):
        return request.user.has_perm("connectors.change_delivery")


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyAdmin):
    list_display = ["at", "partner_config", "action", "status_code", "duration_ms", "item_count", "ok_count",
                    "error_count", "retry_count", "outcome", "partner_error_code", "snippet"]  # fmt: skip
    list_filter = ["outcome", "status_code"]
    list_select_related = ["partner_config__connector"]
