from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from connectors import crypto
from connectors.partners.registry import UnknownPartner, get_partner


class Connector(models.Model):
    """An integration the account set up with one catalogue partner."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DEACTIVATED = "deactivated", "Deactivated"

    partner_key = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="connector_name_unique_ci"),
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "deactivated"]), name="connector_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def partner(self):
        return get_partner(self.partner_key)

    @property
    def partner_name(self) -> str:
        try:
            return self.partner.name
        except UnknownPartner:
            return self.partner_key

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class PartnerConfig(models.Model):
    """One set of account details under a connector (ids, settings, encrypted secrets, timeout)."""

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="configs")
    name = models.CharField(max_length=200)
    settings = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="", editable=False)
    timeout_seconds = models.FloatField(default=3.0)
    base_url_override = models.URLField(
        blank=True,
        default="",
        max_length=500,
        help_text="Admin only: send to this base URL instead of the partner's (regional endpoint or local sandbox).",
    )

    class Health(models.TextChoices):
        OK = "ok", "OK"
        CREDENTIALS_INVALID = "credentials_invalid", "Credentials invalid (paused)"
        ENDPOINT_GONE = "endpoint_gone", "Endpoint gone (paused)"

    # Sending pauses while the health is not OK; deliveries are kept, not lost.
    health = models.CharField(max_length=24, choices=Health.choices, default=Health.OK)
    health_changed_at = models.DateTimeField(null=True, blank=True)
    health_detail = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["connector_id", "id"]
        verbose_name = "partner configuration"
        constraints = [
            models.UniqueConstraint("connector", Lower("name"), name="partnerconfig_name_unique_per_connector"),
            models.CheckConstraint(
                condition=models.Q(timeout_seconds__gte=0.1, timeout_seconds__lte=60),
                name="partnerconfig_timeout_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.connector.name} / {self.name}"

    # Secrets are never stored in clear; read them only where a partner call needs them.
    def get_secrets(self) -> dict[str, str]:
        return crypto.decrypt_secrets(self.secrets_encrypted)

    def set_secrets(self, secrets: dict[str, str]) -> None:
        self.secrets_encrypted = crypto.encrypt_secrets(secrets)

    def masked_secrets(self) -> dict[str, dict]:
        stored = self.get_secrets()
        try:
            fields = self.connector.partner.secret_fields
        except UnknownPartner:
            return {}
        return {f.name: crypto.mask(stored.get(f.name)) for f in fields}


class ConnectorEvent(models.Model):
    """Audit history: who changed what, when. Secret values are never recorded, only that they changed."""

    class Action(models.TextChoices):
        CREATED = "created", "Connector created"
        UPDATED = "updated", "Connector updated"
        DEACTIVATED = "deactivated", "Deactivated"
        ACTIVATED = "activated", "Activated"
        DELETED = "deleted", "Connector deleted"
        CONFIG_ADDED = "config_added", "Configuration added"
        CONFIG_UPDATED = "config_updated", "Configuration updated"
        CONFIG_DELETED = "config_deleted", "Configuration deleted"
        CONNECTION_TESTED = "connection_tested", "Connection tested"
        RESUMED = "resumed", "Sending resumed"

    connector = models.ForeignKey(Connector, null=True, on_delete=models.SET_NULL, related_name="events")
    connector_name = models.CharField(max_length=200)
    partner_config = models.ForeignKey(
        PartnerConfig, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    partner_config_name = models.CharField(max_length=200, blank=True, default="")
    action = models.CharField(max_length=32, choices=Action.choices)
    changes = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True, default="")
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return (
            f"{self.at:%Y-%m-%d %H:%M} {self.actor_name or 'system'}: {self.get_action_display()} {self.connector_name}"
        )

    def change_lines(self) -> list[str]:
        """Human-readable lines for the history table (secrets only ever say "changed")."""
        lines = []
        for key, change in (self.changes or {}).items():
            if isinstance(change, dict) and change.get("secret"):
                lines.append(f"{key}: changed (secret)")
            elif isinstance(change, dict) and ("from" in change or "to" in change):
                before = "—" if change.get("from") in (None, "") else change.get("from")
                after = "—" if change.get("to") in (None, "") else change.get("to")
                lines.append(f"{key}: {before} → {after}")
            else:
                lines.append(f"{key}: {change}")
        return lines


class Outcome(models.TextChoices):
    """Every profile outcome the statistics show."""

    ADDED = "added", "Added"
    REMOVED = "removed", "Removed"
    SKIPPED_NO_IDENTIFIER = "skipped_no_identifier", "Skipped: no identifier"
    SKIPPED_NO_CONSENT = "skipped_no_consent", "Skipped: no consent"
    SKIPPED_DEACTIVATED = "skipped_deactivated", "Skipped: connector deactivated"
    OTHER_ERROR = "other_error", "Other error"
    INVALID_CREDENTIALS = "invalid_credentials", "Invalid credentials"
    TIMEOUT = "timeout", "Timeout"
    PARTNER_ERROR = "partner_error", "Partner error"


ERROR_OUTCOMES = (Outcome.OTHER_ERROR, Outcome.INVALID_CREDENTIALS, Outcome.TIMEOUT, Outcome.PARTNER_ERROR)
SKIPPED_OUTCOMES = (Outcome.SKIPPED_NO_IDENTIFIER, Outcome.SKIPPED_NO_CONSENT, Outcome.SKIPPED_DEACTIVATED)


class DailyStat(models.Model):
    """Per configuration, day, outcome and partner error code: how many profiles. Filled by upsert-increment."""

    partner_config = models.ForeignKey(PartnerConfig, on_delete=models.CASCADE, related_name="daily_stats")
    day = models.DateField()
    outcome = models.CharField(max_length=32, choices=Outcome.choices)
    partner_error_code = models.CharField(max_length=64, blank=True, default="")
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner_config", "day", "outcome", "partner_error_code"], name="dailystat_unique_bucket"
            ),
            models.CheckConstraint(condition=models.Q(count__gte=0), name="dailystat_count_non_negative"),
        ]
        indexes = [models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.partner_config_id} {self.day} {self.outcome} {self.partner_error_code}: {self.count}"


# DailyTotal's columns: outcome -> category.
OUTCOME_CATEGORY = {
    Outcome.ADDED.value: "added",
    Outcome.REMOVED.value: "removed",
    **{o.value: "skipped" for o in SKIPPED_OUTCOMES},
    **{o.value: "errors" for o in ERROR_OUTCOMES},
}


class DailyTotal(models.Model):
    """DailyStat summed per configuration and day into four categories: what the overview of every connector reads
    (one row per configuration-day instead of one per outcome and code). Written in the same statement batch as
    DailyStat (stats_increment), so both always agree."""

    partner_config = models.ForeignKey(PartnerConfig, on_delete=models.CASCADE, related_name="daily_totals")
    day = models.DateField()
    added = models.BigIntegerField(default=0)
    removed = models.BigIntegerField(default=0)
    skipped = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner_config", "day"], name="dailytotal_unique_day"),
            models.CheckConstraint(
                condition=models.Q(added__gte=0, removed__gte=0, skipped__gte=0, errors__gte=0),
                name="dailytotal_counts_non_negative",
            ),
        ]
        indexes = [models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.partner_config_id} {self.day}: +{self.added} -{self.removed} ~{self.skipped} !{self.errors}"


class Delivery(models.Model):
    """The outbox: one profile change for one configuration. Delivered rows leave the table (their outcome is in
    DailyStat and DeliveryAttempt); failed and skipped rows stay, listed and replayable."""

    class Action(models.TextChoices):
        ADD = "add", "Add"
        REMOVE = "remove", "Remove"
        UPDATE = "update", "Update"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    # The outbox is a queue of short-lived rows written and deleted in bulk: its references are kept by Django
    # (on_delete below, run by the ORM) rather than by database foreign-key triggers, which cost more than the
    # insert itself at 200,000 rows per transaction (measured: 3.6 s of deferred checks per 200k rows).
    partner_config = models.ForeignKey(
        PartnerConfig, on_delete=models.CASCADE, related_name="deliveries", db_constraint=False, db_index=False
    )
    profile = models.ForeignKey(
        "audiences.Profile", on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    action = models.CharField(max_length=8, choices=Action.choices)
    audience = models.ForeignKey(
        "audiences.Audience",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    journey = models.ForeignKey(
        "journeys.Journey",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    outcome = models.CharField(max_length=32, choices=Outcome.choices, blank=True, default="")
    partner_error_code = models.CharField(max_length=64, blank=True, default="")
    last_error = models.CharField(max_length=500, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [
            # Partial indexes keep the hot paths small: what is due, and what finished unsuccessfully.
            models.Index(
                fields=["partner_config", "next_attempt_at", "id"],
                condition=models.Q(status="pending"),
                name="delivery_due",
            ),
            # Profile first: serves "older rows of these profiles" and the profile foreign key (deleting profiles).
            models.Index(fields=["profile", "partner_config"], name="delivery_profile_config"),
            # What finished unsuccessfully: listed, replayed and pruned by configuration and age.
            models.Index(
                fields=["partner_config", "finished_at"],
                condition=models.Q(status__in=["failed", "skipped"]),
                name="delivery_finished",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(action__in=["add", "remove", "update"]), name="delivery_action_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "failed", "skipped"]),
                name="delivery_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} profile {self.profile_id} -> config {self.partner_config_id} ({self.status})"


class DispatchLease(models.Model):
    """Who may send a shard of a configuration's outbox right now.

    A configuration's profiles are split into shards (profile id modulo DAP_DISPATCH_SHARDS); one worker at a time
    holds a shard, so each profile's changes keep their order while several workers share a busy configuration.
    """

    partner_config = models.ForeignKey(PartnerConfig, on_delete=models.CASCADE, related_name="leases")
    shard = models.PositiveSmallIntegerField()
    owner = models.CharField(max_length=64, blank=True, default="")
    until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["partner_config", "shard"], name="dispatchlease_unique_shard")]

    def __str__(self) -> str:
        return f"config {self.partner_config_id} shard {self.shard}: {self.owner or 'free'}"


class DeliveryAttempt(models.Model):
    """One partner call: status code, duration, counts, partner code and a redacted response snippet."""

    partner_config = models.ForeignKey(PartnerConfig, on_delete=models.CASCADE, related_name="attempts")
    at = models.DateTimeField(db_index=True)
    action = models.CharField(max_length=8)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.FloatField(default=0)
    item_count = models.PositiveIntegerField(default=0)
    ok_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    retry_count = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=32, choices=Outcome.choices, blank=True, default="")
    partner_error_code = models.CharField(max_length=64, blank=True, default="")
    snippet = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["partner_config", "at"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} config {self.partner_config_id}: {self.status_code} ({self.item_count})"
