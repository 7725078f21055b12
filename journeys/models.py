"""Journeys: an editable draft, immutable published versions, profiles' enrollments, posted profile events, and the
activation steps' links to partner configurations (one row per step of the draft and of every published version,
so "is this configuration used?" is a query and the database itself refuses to drop a used one).

Writes go through `journeys.services` (status changes, publishing) and `journeys.engine` (enrollments).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Journey(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        LIVE = "live", "Live"
        PAUSED = "paused", "Paused"
        STOPPED = "stopped", "Stopped"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The editable draft definition (see journeys/definition.py). A live journey runs its latest published version.
    definition = models.JSONField(default=dict, blank=True)
    draft_updated_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    # Audience entrants are looked for from here on (advanced by the engine; reset when the journey goes live again).
    entries_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["draft", "live", "paused", "stopped"]), name="journey_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_unpublished_changes(self) -> bool:
        if self.draft_updated_at is None:
            return False
        return self.published_at is None or self.draft_updated_at > self.published_at

    @property
    def is_running(self) -> bool:
        return self.status in (self.Status.LIVE, self.Status.PAUSED)


class JourneyVersion(models.Model):
    """A published definition. Never edited: publishing again creates the next number."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    published_at = models.DateTimeField()
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["journey", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["journey", "number"], name="journeyversion_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.journey} v{self.number}"


class JourneyActivationStep(models.Model):
    """An activation step of the draft (version empty) or of a published version, sending to a configuration.

    PROTECT: a configuration a journey step uses cannot be deleted; the connector delete guard lists these rows.
    """

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="activation_steps")
    version = models.ForeignKey(
        JourneyVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="activation_steps"
    )
    step_key = models.CharField(max_length=64)
    label = models.CharField(max_length=200, blank=True, default="")
    partner_config = models.ForeignKey(
        "connectors.PartnerConfig", on_delete=models.PROTECT, related_name="journey_steps"
    )
    action = models.CharField(max_length=8, default="add")
    partner_audience_id = models.CharField(max_length=200, blank=True, default="")
    profile_variables = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["version", "step_key"], condition=Q(version__isnull=False), name="journeystep_unique_version"
            ),
            models.UniqueConstraint(
                fields=["journey", "step_key"], condition=Q(version__isnull=True), name="journeystep_unique_draft"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.journey} / {self.label or self.step_key} ({self.version_label})"

    @property
    def is_draft(self) -> bool:
        return self.version_id is None

    @property
    def version_label(self) -> str:
        return "draft" if self.version_id is None else f"version {self.version.number}"


class JourneyEnrollment(models.Model):
    """A profile's position in a journey: the version it started on and the step it is at."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"  # at `step_key`, which has not run yet
        WAITING = "waiting", "Waiting"  # at a wait step until `wake_at`
        COMPLETED = "completed", "Completed"  # reached an exit step
        EXITED = "exited", "Exited"  # taken out (the journey stopped, or its step vanished)

    RUNNING = (Status.ACTIVE, Status.WAITING)

    # Indexed by the composite indexes below (each leads with its column).
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="enrollments", db_index=False)
    version = models.ForeignKey(JourneyVersion, on_delete=models.CASCADE, related_name="enrollments", db_index=False)
    profile = models.ForeignKey(
        "audiences.Profile", on_delete=models.CASCADE, related_name="journey_enrollments", db_index=False
    )
    step_key = models.CharField(max_length=64)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    wake_at = models.DateTimeField(null=True, blank=True)
    entered_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One running enrollment per profile and journey: entering again while in it is ignored.
            models.UniqueConstraint(
                fields=["journey", "profile"],
                condition=Q(status__in=["active", "waiting"]),
                name="journeyenrollment_one_running",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["active", "waiting", "completed", "exited"]),
                name="journeyenrollment_status_valid",
            ),
        ]
        indexes = [
            # The engine's passes: everyone at one step of one version, by status (and wake time).
            models.Index(fields=["version", "step_key", "status", "wake_at"], name="journeyenrollment_step"),
            # "Was this profile in the journey when it entered the audience?" and the profile foreign key.
            models.Index(fields=["profile", "journey", "finished_at"], name="journeyenrollment_profile"),
            # Counts per journey and status (pages, API).
            models.Index(fields=["journey", "status"], name="journeyenrollment_journey"),
            # Which versions still have profiles in them: only running rows, so it stays small.
            models.Index(
                fields=["version"], condition=Q(status__in=["active", "waiting"]), name="journeyenrollment_running"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} in {self.journey_id} at {self.step_key} ({self.status})"


class JourneyEvent(models.Model):
    """A profile event posted to the API; event-entry journeys enroll the profile when it is processed."""

    profile = models.ForeignKey("audiences.Profile", on_delete=models.CASCADE, related_name="journey_events")
    name = models.CharField(max_length=100)
    properties = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField()
    processed = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["id"], condition=Q(processed=False), name="journeyevent_unprocessed"),
            models.Index(fields=["received_at"], name="journeyevent_received"),
        ]

    def __str__(self) -> str:
        return f"{self.name} of {self.profile_id}"
