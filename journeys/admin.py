"""Django admin for journeys: the same services as the API and pages.

Journeys are created and edited through the services (the draft validated step by step); status changes are
admin actions calling the services (invalid transitions are reported, nothing changes); deleting a running journey
is refused. Versions, activation-step links, enrollments and events are read-only: the platform writes them.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html_join

from connectors.forms import apply_service_errors
from dap.admin import ListOnlyAdmin
from journeys import selectors, services
from journeys.forms import DefinitionField
from journeys.models import Journey, JourneyActivationStep, JourneyEnrollment, JourneyEvent, JourneyVersion


class JourneyAdminForm(forms.ModelForm):
    """Runs the service inside `clean()` (the admin view is one transaction) so its errors land on the form."""

    definition = DefinitionField(label="Draft steps (JSON)", required=False)
    actor = None
    result = None

    class Meta:
        model = Journey
        fields = ["name", "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = False
        if self.instance.pk:
            self.initial["definition"] = self.instance.definition

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            if self.instance.pk:
                self.result = services.journey_update(
                    journey=self.instance,
                    name=cleaned.get("name"),
                    description=cleaned.get("description", ""),
                    definition=cleaned.get("definition"),
                    actor=self.actor,
                )
            else:
                self.result = services.journey_create(
                    name=cleaned.get("name"),
                    description=cleaned.get("description", ""),
                    definition=cleaned.get("definition"),
                    actor=self.actor,
                )
        except ValidationError as exc:
            apply_service_errors(self, exc, aliases={"non_field_errors": None, "status": None})
        return cleaned

    def _post_clean(self):
        pass  # the service validates and writes


@admin.register(Journey)
class JourneyAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "unpublished", "version_count", "published_at", "status_changed_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    readonly_fields = [
        "status",
        "status_changed_at",
        "status_changed_by",
        "published_at",
        "draft_updated_at",
        "versions_display",
    ]
    actions = ["publish_selected", "pause_selected", "resume_selected", "stop_selected"]
    form = JourneyAdminForm

    @admin.display(description="Unpublished changes", boolean=True)
    def unpublished(self, obj):
        return obj.has_unpublished_changes

    def get_queryset(self, request):
        return selectors.journey_list()

    @admin.display(description="Versions", ordering="version_count")
    def version_count(self, obj):
        return obj.version_count

    @admin.display(description="Versions")
    def versions_display(self, obj):
        versions = obj.versions.order_by("-number")
        if not versions:
            return "—"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (
                    reverse("admin:journeys_journeyversion_change", args=[v.pk]),
                    f"v{v.number} ({v.published_at:%Y-%m-%d %H:%M})",
                )
                for v in versions
            ),
        )

    def get_fields(self, request, obj=None):
        fields = ["name", "description", "definition"]
        return fields + self.readonly_fields if obj is not None else fields

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = type("JourneyAdminForm", (JourneyAdminForm,), {"actor": request.user})
        kwargs["fields"] = ["name", "description"]
        return super().get_form(request, obj, change, **kwargs)

    def save_form(self, request, form, change):
        return form.result or form.instance

    def save_model(self, request, obj, form, change):
        pass  # saved by the service in form.clean()

    def save_related(self, request, form, formsets, change):
        pass

    def get_deleted_objects(self, objs, request):
        """Counts, not a listing: a journey may hold millions of enrollments. Versions, links, enrollments and events
        are the platform's records of the journey and go with it (no separate delete permission is needed)."""
        objs = list(objs)
        ids = [j.pk for j in objs]
        running = [f"{j}: {j.get_status_display().lower()}, stop it before deleting it" for j in objs if j.is_running]
        model_count = {
            Journey._meta.verbose_name_plural: len(objs),
            JourneyVersion._meta.verbose_name_plural: JourneyVersion.objects.filter(journey_id__in=ids).count(),
            JourneyEnrollment._meta.verbose_name_plural: JourneyEnrollment.objects.filter(journey_id__in=ids).count(),
        }
        return [str(j) for j in objs], model_count, set(), running

    def delete_model(self, request, obj):
        services.journey_delete(journey=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for journey in queryset:
            self.delete_model(request, journey)

    def _each(self, request, queryset, service, verb: str):
        done = 0
        for journey in queryset:
            try:
                service(journey=journey, actor=request.user)
            except ValidationError as exc:
                self.message_user(request, f'"{journey}": {" ".join(exc.messages)}', messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} journey(s) {verb}.", messages.SUCCESS)

    @admin.action(description="Publish the draft of selected journeys", permissions=["change"])
    def publish_selected(self, request, queryset):
        self._each(request, queryset, services.journey_publish, "published")

    @admin.action(description="Pause selected journeys", permissions=["change"])
    def pause_selected(self, request, queryset):
        self._each(request, queryset, services.journey_pause, "paused")

    @admin.action(description="Resume selected journeys", permissions=["change"])
    def resume_selected(self, request, queryset):
        self._each(request, queryset, services.journey_resume, "resumed")

    @admin.action(description="Stop selected journeys (everyone in them exits)", permissions=["change"])
    def stop_selected(self, request, queryset):
        self._each(request, queryset, services.journey_stop, "stopped")


@admin.register(JourneyVersion)
class JourneyVersionAdmin(ListOnlyAdmin):
    list_display = ["journey", "number", "published_at", "published_by"]
    list_filter = ["journey"]
    list_select_related = ["journey", "published_by"]


@admin.register(JourneyActivationStep)
class JourneyActivationStepAdmin(ListOnlyAdmin):
    list_display = ["journey", "version_display", "step_key", "label", "partner_config", "action"]
    list_filter = ["journey"]
    search_fields = ["journey__name", "step_key", "label"]
    list_select_related = ["journey", "version", "partner_config__connector"]

    @admin.display(description="Version")
    def version_display(self, obj):
        return obj.version_label


@admin.register(JourneyEnrollment)
class JourneyEnrollmentAdmin(ListOnlyAdmin):
    show_full_result_count = False
    list_display = ["profile", "journey", "version", "step_key", "status", "wake_at", "entered_at", "updated_at"]
    list_filter = ["status", "journey"]
    search_fields = ["profile__external_id", "step_key"]
    list_select_related = ["profile", "journey", "version__journey"]
    raw_id_fields = ["profile"]


@admin.register(JourneyEvent)
class JourneyEventAdmin(ListOnlyAdmin):
    show_full_result_count = False
    list_display = ["name", "profile", "received_at", "processed"]
    list_filter = ["processed", "name"]
    search_fields = ["name", "profile__external_id"]
    list_select_related = ["profile"]
    raw_id_fields = ["profile"]
