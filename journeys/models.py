"""Journeys and their activation steps' links to partner configurations.

Only what the connector delete guard and the deactivate screen need exists so far.
"""

from django.db import models


class Journey(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        LIVE = "live", "Live"
        PAUSED = "paused", "Paused"
        STOPPED = "stopped", "Stopped"

    name = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    published_at = models.DateTimeField(null=True, blank=True)
    draft_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_unpublished_changes(self) -> bool:
        if self.draft_updated_at is None:
            return False
        return self.published_at is None or self.draft_updated_at > self.published_at


class JourneyActivationStep(models.Model):
    """An activation step of a journey version (published or draft) that sends to a partner configuration."""

    class Version(models.TextChoices):
        PUBLISHED = "published", "Published version"
        DRAFT = "draft", "Draft"

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="activation_steps")
    version = models.CharField(max_length=16, choices=Version.choices, default=Version.DRAFT)
    step_key = models.CharField(max_length=64)
    label = models.CharField(max_length=200, blank=True, default="")
    partner_config = models.ForeignKey(
        "connectors.PartnerConfig", on_delete=models.PROTECT, related_name="journey_steps"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["journey", "version", "step_key"], name="journeystep_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.journey} / {self.label or self.step_key} ({self.version})"
