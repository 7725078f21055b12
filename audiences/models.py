"""Profiles, their identifiers, audiences, memberships and connections to partner configurations.

Rule evaluation and the profile API come later; what exists is what delivery needs.
"""

from django.db import models

from connectors.identifiers import Slot


class Profile(models.Model):
    external_id = models.CharField(max_length=200, unique=True, null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    # Consent to use the profile for advertising; profiles without it are never sent (skipped: no consent).
    consent_ads = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.external_id or f"Profile {self.pk}"


class ProfileIdentifier(models.Model):
    """One identifier of a profile in a slot (email, phone, partner cookie id…); unique per slot and value."""

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="identifiers")
    slot = models.CharField(max_length=32, choices=Slot.choices)
    value = models.CharField(max_length=320)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["slot", "value"], name="profileidentifier_unique_slot_value")]
        indexes = [models.Index(fields=["profile", "slot"])]

    def __str__(self) -> str:
        return f"{self.slot} of {self.profile_id}"


class Audience(models.Model):
    class Kind(models.TextChoices):
        RULE_BASED = "rule_based", "Rule-based"
        STATIC = "static", "Static list"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True, default="")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.RULE_BASED)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AudienceMembership(models.Model):
    # No index of its own: the unique (audience, profile) index serves every lookup by audience.
    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="memberships")
    entered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["audience", "profile"], name="audiencemembership_unique")]

    def __str__(self) -> str:
        return f"{self.profile_id} in {self.audience_id}"


class AudienceConnection(models.Model):
    """An audience sent to one partner configuration (partner-side audience id, profile variables)."""

    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="connections")
    # PROTECT: the database itself refuses to drop a configuration an audience is connected to.
    partner_config = models.ForeignKey(
        "connectors.PartnerConfig", on_delete=models.PROTECT, related_name="audience_connections"
    )
    partner_audience_id = models.CharField(max_length=200, blank=True, default="")
    profile_variables = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audience", "partner_config"], name="audienceconnection_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.audience} -> {self.partner_config}"
