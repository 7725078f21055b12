"""Audiences and their connections to partner configurations.

Only what the connector delete guard needs exists so far; membership and profiles come with delivery.
"""

from django.db import models


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
