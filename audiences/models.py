"""Profiles, their identifiers, audiences, memberships and connections to partner configurations.

Membership is computed by the database (`audiences.services.audience_refresh`): a rule-based audience's members are
the profiles its rule matches, a static list's members are the profiles holding one of its entries (uploaded
identifiers). Every refresh writes only the difference (enters and exits) to the memberships, the change log and the
outbox, set-based.

Memberships and the change log reference profiles and audiences without database foreign-key triggers, like the
outbox: a refresh of a million-profile audience inserts 600,000 rows in one transaction, and the deferred
foreign-key checks alone cost more than twice the insert (measured on PostgreSQL: 2.2 s insert, 5.2 s of checks at
commit). Django still applies `on_delete` for ORM deletes, and a refresh drops memberships whose profile is gone.
"""

from django.db import models
from django.db.models import Q

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
    # Rule-based audiences: the rule (audiences.rules), validated by the services. Static lists have none. A
    # rule-based audience without a rule is not evaluated (its memberships are left as they are).
    rule = models.JSONField(null=True, blank=True)
    # Written by every refresh: the size after it, when it ran, what changed and how long it took.
    member_count = models.BigIntegerField(default=0)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    last_refresh_enters = models.BigIntegerField(default=0)
    last_refresh_exits = models.BigIntegerField(default=0)
    last_refresh_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["rule_based", "static"]), name="audience_kind_valid"),
            models.CheckConstraint(
                condition=Q(kind="rule_based") | Q(rule__isnull=True), name="audience_static_no_rule"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_static(self) -> bool:
        return self.kind == self.Kind.STATIC


class AudienceMembership(models.Model):
    # No index of its own: the unique (audience, profile) index serves every lookup by audience. No foreign-key
    # triggers (see the module docstring); the profile index serves deleting profiles and "audiences of a profile".
    audience = models.ForeignKey(
        Audience, on_delete=models.CASCADE, related_name="memberships", db_index=False, db_constraint=False
    )
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="memberships", db_constraint=False)
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
    # Set when the connection was deleted with "remove the members": it stays (sending nothing new) until the
    # removals queued for it have gone out, so they still reach the right partner audience; then it is dropped.
    removing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audience", "partner_config"], name="audienceconnection_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.audience} -> {self.partner_config}"

    @property
    def is_removing(self) -> bool:
        return self.removing_since is not None


class AudienceEntry(models.Model):
    """One uploaded identifier of a static list: the profile holding it (slot and value) is a member."""

    # The unique (audience, slot, value) index serves every lookup by audience; the join to ProfileIdentifier goes
    # through its unique (slot, value) index.
    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="entries", db_index=False)
    slot = models.CharField(max_length=32, choices=Slot.choices)
    value = models.CharField(max_length=320)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "audience entries"
        constraints = [
            models.UniqueConstraint(fields=["audience", "slot", "value"], name="audienceentry_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.slot} entry of {self.audience_id}"


class AudienceMembershipChange(models.Model):
    """The change log: a profile entered or left an audience (one row per change, written by the refresh).

    Bounded: rows older than DAP_AUDIENCE_CHANGE_RETENTION_DAYS are pruned by the daily schedule. The profile is a
    plain reference (no cascade, no trigger): the log keeps no personal data, only ids, and ages out.
    """

    class Kind(models.TextChoices):
        ENTER = "enter", "Entered"
        EXIT = "exit", "Left"

    # The key is the one index: it serves "recent enters (or exits) of an audience" newest first and pruning by age
    # per audience, and a refresh writes one index per row instead of two (a surrogate id and its sequence cost
    # about 40 % more per row: 600,000 rows in 1.5 s instead of 2.4 s on PostgreSQL). A profile changes at most
    # once per refresh, so the key is unique.
    pk = models.CompositePrimaryKey("audience", "kind", "at", "profile")
    audience = models.ForeignKey(
        Audience, on_delete=models.CASCADE, related_name="changes", db_index=False, db_constraint=False
    )
    kind = models.CharField(max_length=5, choices=Kind.choices)
    at = models.DateTimeField()
    profile = models.ForeignKey(
        Profile, on_delete=models.DO_NOTHING, related_name="+", db_index=False, db_constraint=False
    )

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(kind__in=["enter", "exit"]), name="audiencechange_kind")]

    def __str__(self) -> str:
        return f"{self.profile_id} {self.kind} {self.audience_id} at {self.at}"
