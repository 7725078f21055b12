"""What operations watch: alerts on partner configurations and the workers' heartbeats."""

from django.db import models


class Alert(models.Model):
    """One episode of trouble on a configuration: opened when the state is entered, resolved on recovery. Admins are
    notified once when it opens and once when it resolves; the database allows one open alert per kind and
    configuration."""

    class Kind(models.TextChoices):
        CREDENTIALS_INVALID = "credentials_invalid", "Credentials invalid"
        ENDPOINT_GONE = "endpoint_gone", "Endpoint gone"
        ERROR_RATE = "error_rate", "Error rate above threshold"

    partner_config = models.ForeignKey("connectors.PartnerConfig", on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    detail = models.CharField(max_length=500, blank=True, default="")
    # The error rate (0..1) over the last hour when an error-rate alert opened.
    error_rate = models.FloatField(null=True, blank=True)
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    # When the opening and the recovery notices went out by e-mail (null: not yet sent; a failed send is tried again).
    notified_at = models.DateTimeField(null=True, blank=True)
    recovery_notified_at = models.DateTimeField(null=True, blank=True)
    # The same for the optional webhook, kept apart so a failing channel is retried without repeating the other one
    # (stamped too when no webhook is configured: configuring one later does not replay old notices).
    webhook_notified_at = models.DateTimeField(null=True, blank=True)
    webhook_recovery_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner_config", "kind"],
                condition=models.Q(resolved_at__isnull=True),
                name="alert_one_open_per_kind",
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=["credentials_invalid", "endpoint_gone", "error_rate"]),
                name="alert_kind_valid",
            ),
        ]
        indexes = [models.Index(fields=["resolved_at", "opened_at"])]

    def __str__(self) -> str:
        state = "resolved" if self.resolved_at else "open"
        return f"{self.get_kind_display()} on config {self.partner_config_id} ({state})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class WorkerHeartbeat(models.Model):
    """Written every minute by a schedule that any worker cluster runs: /healthz reads the newest beat."""

    host = models.CharField(max_length=200, unique=True)
    pid = models.PositiveIntegerField(default=0)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.host} at {self.beat_at:%Y-%m-%d %H:%M:%S}"
