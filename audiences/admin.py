"""Django admin for audiences and profiles: the same services and rules as the API and pages.

Audiences and connections are saved through `audiences.services` (validation, refresh, outbox); memberships, static
entries and profiles are read-only here (they are written by refreshes, uploads and the profile API); identifier
values are masked. The change log (a composite key, which the admin cannot register) shows on the audience's page.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html_join

from audiences import services
from audiences.forms import usable_configs
from audiences.models import (
    Audience,
    AudienceConnection,
    AudienceEntry,
    AudienceMembership,
    Profile,
    ProfileIdentifier,
)
from audiences.profiles import mask_identifier
from audiences.selectors import audience_recent_changes, rule_text
from dap.admin import ListOnlyAdmin


def _apply(form: forms.Form, exc: ValidationError) -> None:
    for key, msgs in exc.message_dict.items():
        target = key.split(".", 1)[0]
        for message in msgs:
            form.add_error(target if target in form.fields else None, message)


class ServiceForm(forms.ModelForm):
    """Runs the service in `clean()` (the admin view is one transaction) so its errors land on the form."""

    actor = None
    result = None

    def _run(self, fn, **kwargs):
        try:
            self.result = fn(**kwargs)
        except ValidationError as exc:
            _apply(self, exc)

    def _post_clean(self):
        pass  # the service validates and writes


class AudienceAdminForm(ServiceForm):
    rule = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80, "style": "font-family:monospace"}),
        help_text='Rule-based audiences: {"all": [...]} or {"any": [...]} of conditions '
        '{"attribute", "op", "value"}. Static lists have none.',
    )

    class Meta:
        model = Audience
        fields = ["name", "kind", "description", "rule"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = False
        if self.instance.pk:
            self.fields["kind"].disabled = True

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        common = {
            "name": cleaned.get("name"),
            "description": cleaned.get("description") or "",
            "rule": cleaned.get("rule"),
            "actor": self.actor,
        }
        if self.instance.pk:
            if self.instance.is_static:
                common.pop("rule")
            self._run(services.audience_update, audience=self.instance, **common)
        else:
            self._run(services.audience_create, kind=cleaned.get("kind"), **common)
        return cleaned


class ServiceAdmin(admin.ModelAdmin):
    form_class = None

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = type(self.form_class.__name__, (self.form_class,), {"actor": request.user})
        return super().get_form(request, obj, change, **kwargs)

    def save_form(self, request, form, change):
        return form.result if isinstance(form.result, self.model) else form.instance

    def save_model(self, request, obj, form, change):
        pass  # saved by the service in form.clean()

    def save_related(self, request, form, formsets, change):
        pass


@admin.register(Audience)
class AudienceAdmin(ServiceAdmin):
    form_class = AudienceAdminForm
    list_display = ["name", "kind", "member_count", "connections_display", "refreshed_at", "last_refresh"]
    list_filter = ["kind"]
    search_fields = ["name"]
    readonly_fields = [
        "rule_display",
        "member_count",
        "refreshed_at",
        "last_refresh",
        "recent_enters",
        "recent_exits",
        "created_at",
        "updated_at",
    ]
    actions = ["refresh_selected"]

    @admin.display(description="Connections")
    def connections_display(self, obj):
        return obj.connections.filter(removing_since__isnull=True).count()

    @admin.display(description="Last refresh")
    def last_refresh(self, obj):
        if obj.refreshed_at is None:
            return "—"
        return f"+{obj.last_refresh_enters} / −{obj.last_refresh_exits}"

    def _recent(self, obj, kind: str):
        changes = audience_recent_changes(audience=obj, kind=kind, limit=20)
        return ", ".join(f"{c.external_id or c.profile_id} ({c.at:%Y-%m-%d %H:%M})" for c in changes) or "—"

    @admin.display(description="Recently entered (change log)")
    def recent_enters(self, obj):
        return self._recent(obj, "enter")

    @admin.display(description="Recently left (change log)")
    def recent_exits(self, obj):
        return self._recent(obj, "exit")

    @admin.display(description="Rule in words")
    def rule_display(self, obj):
        return rule_text(obj.rule) or "—"

    def get_fields(self, request, obj=None):
        fields = ["name", "kind", "description", "rule"]
        return fields if obj is None else [*fields, *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_deleted_objects(self, objs, request):
        """A summary instead of Django's list of every related row (an audience can have millions of members, all
        deleted by the service); its connections are the guard."""
        objs = list(objs)
        guard = [
            f"{c.audience}: connected to {c.partner_config.connector.name} / {c.partner_config.name}"
            for c in AudienceConnection.objects.filter(audience__in=objs).select_related(
                "audience", "partner_config__connector"
            )
        ]
        members = AudienceMembership.objects.filter(audience__in=objs).count()
        summary = [f"{audience} ({audience.get_kind_display()})" for audience in objs]
        counts = {Audience._meta.verbose_name_plural: len(objs), "memberships": members}
        return summary, counts, set(), guard

    def delete_model(self, request, obj):
        try:
            services.audience_delete(audience=obj, actor=request.user)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)

    @admin.action(description="Refresh selected audiences now", permissions=["change"])
    def refresh_selected(self, request, queryset):
        done = []
        for audience in queryset:
            try:
                result = services.audience_refresh(audience=audience)
            except ValidationError as exc:
                self.message_user(request, f"{audience}: {' '.join(exc.messages)}", messages.WARNING)
                continue
            done.append(f"{audience}: +{result.enters} / −{result.exits}")
        if done:
            self.message_user(request, "Refreshed " + "; ".join(done), messages.SUCCESS)


class VariablesField(forms.CharField):
    """Profile variables as comma-separated attribute names."""

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(value)
        if isinstance(value, str) and value.startswith("["):
            try:
                return ", ".join(json.loads(value))
            except (ValueError, TypeError):
                return value
        return value

    def to_python(self, value):
        text = super().to_python(value) or ""
        return [v.strip() for v in text.split(",") if v.strip()]


class AudienceConnectionAdminForm(ServiceForm):
    profile_variables = VariablesField(
        required=False, help_text="Attribute names sent with each profile, comma separated (partners that take them)."
    )
    remove_members = None

    class Meta:
        model = AudienceConnection
        fields = ["audience", "partner_config", "partner_audience_id", "profile_variables"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "partner_config" in self.fields:
            self.fields["partner_config"].queryset = usable_configs()
        if self.instance.pk:
            for name in ("audience", "partner_config"):
                self.fields[name].disabled = True

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        if self.instance.pk:
            self._run(
                services.audience_connection_update,
                audience_connection=self.instance,
                partner_audience_id=cleaned.get("partner_audience_id") or "",
                profile_variables=cleaned.get("profile_variables") or [],
                actor=self.actor,
            )
        else:
            try:
                conn, _ = services.audience_connection_create(
                    audience=cleaned["audience"],
                    partner_config=cleaned["partner_config"].pk,
                    partner_audience_id=cleaned.get("partner_audience_id") or "",
                    profile_variables=cleaned.get("profile_variables") or [],
                    actor=self.actor,
                )
            except ValidationError as exc:
                _apply(self, exc)
            else:
                self.result = conn
        return cleaned


@admin.register(AudienceConnection)
class AudienceConnectionAdmin(ServiceAdmin):
    form_class = AudienceConnectionAdminForm
    list_display = ["audience", "partner_config", "connector_display", "partner_audience_id", "status_display"]
    list_select_related = ["audience", "partner_config__connector"]
    list_filter = ["partner_config__connector__partner_key"]
    search_fields = ["audience__name", "partner_config__connector__name", "partner_audience_id"]
    actions = ["delete_removing_members"]

    @admin.display(description="Connector")
    def connector_display(self, obj):
        return obj.partner_config.connector.name

    @admin.display(description="Status")
    def status_display(self, obj):
        if obj.is_removing:
            return "Removing members"
        return "Active" if obj.partner_config.connector.is_active else "Connector deactivated"

    def delete_model(self, request, obj):
        services.audience_connection_delete(audience_connection=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)

    @admin.action(description="Delete, removing the current members from the partner", permissions=["delete"])
    def delete_removing_members(self, request, queryset):
        queued = 0
        for conn in queryset:
            queued += services.audience_connection_delete(
                audience_connection=conn, remove_members=True, actor=request.user
            ).removes_queued
        self.message_user(request, f"{queued} removals queued.", messages.SUCCESS)


class ReadOnlyAdmin(ListOnlyAdmin):
    """Written by the platform (refreshes, uploads, the profile API): read here."""

    show_full_result_count = False  # tables of millions of rows: no COUNT(*) per page


@admin.register(AudienceMembership)
class AudienceMembershipAdmin(ReadOnlyAdmin):
    list_display = ["audience", "profile", "entered_at"]
    list_select_related = ["audience", "profile"]
    list_filter = ["audience"]
    search_fields = ["profile__external_id"]


@admin.register(AudienceEntry)
class AudienceEntryAdmin(ReadOnlyAdmin):
    list_display = ["audience", "slot", "masked_value", "created_at"]
    list_select_related = ["audience"]
    list_filter = ["slot", "audience"]
    fields = ["audience", "slot", "masked_value", "created_at"]
    readonly_fields = fields

    @admin.display(description="Value")
    def masked_value(self, obj):
        return mask_identifier(obj.slot, obj.value)


class IdentifierInline(admin.TabularInline):
    model = ProfileIdentifier
    fields = ["slot", "masked_value"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Value")
    def masked_value(self, obj):
        return mask_identifier(obj.slot, obj.value)


@admin.register(Profile)
class ProfileAdmin(ReadOnlyAdmin):
    list_display = ["external_id", "consent_ads", "identifiers_display", "created_at", "updated_at"]
    search_fields = ["external_id"]
    list_filter = ["consent_ads"]
    fields = ["external_id", "consent_ads", "attributes", "audiences_display", "created_at", "updated_at"]
    readonly_fields = fields
    inlines = [IdentifierInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("identifiers")

    @admin.display(description="Identifiers")
    def identifiers_display(self, obj):
        return format_html_join(
            ", ", "{}: {}", ((i.slot, mask_identifier(i.slot, i.value)) for i in obj.identifiers.all())
        )

    @admin.display(description="Audiences")
    def audiences_display(self, obj):
        names = (
            obj.memberships.select_related("audience")
            .order_by("audience__name")
            .values_list("audience__name", flat=True)
        )
        return ", ".join(names) or "—"


@admin.register(ProfileIdentifier)
class ProfileIdentifierAdmin(ReadOnlyAdmin):
    list_display = ["profile", "slot", "masked_value"]
    list_select_related = ["profile"]
    list_filter = ["slot"]
    fields = ["profile", "slot", "masked_value"]
    readonly_fields = fields

    @admin.display(description="Value")
    def masked_value(self, obj):
        return mask_identifier(obj.slot, obj.value)
