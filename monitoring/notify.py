"""Alert notices: an e-mail to the admins and, optionally, a signed webhook; once per state change (see
docs/alerts.md).

Each channel has its own stamps on the alert (e-mail: `notified_at` / `recovery_notified_at`, webhook:
`webhook_notified_at` / `webhook_recovery_notified_at`). Per alert and channel: lock the row (skipping rows another
notifier holds), send what is due in order (the opening notice, then the recovery notice), stamp what went out, commit.
A failed send leaves its stamp empty and is tried again on the next run; a channel that succeeded is never repeated
because the other one failed. A channel that is not configured counts as done, so configuring it later does not
replay old notices. Notices name the connector, the configuration and what happened: never a secret, never profile
data; log lines name alert ids and exception types only (webhook URLs often carry tokens).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import time
from contextlib import closing
from datetime import UTC, datetime

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from connectors.models import PartnerConfig
from monitoring.models import Alert

logger = logging.getLogger(__name__)

OPENED = "alert.opened"
RESOLVED = "alert.resolved"
EMAIL = "email"
WEBHOOK = "webhook"
ADMIN_GROUP = "Marketing admin"
WEBHOOK_TIMEOUT_SECONDS = 5
# Webhook answers that refuse one notice's body (the others still go out); any other failure stops the channel for
# the rest of the run.
PAYLOAD_REFUSED = frozenset({400, 413, 422})
# Stamp of each (event, channel).
STAMPS = {
    (OPENED, EMAIL): "notified_at",
    (RESOLVED, EMAIL): "recovery_notified_at",
    (OPENED, WEBHOOK): "webhook_notified_at",
    (RESOLVED, WEBHOOK): "webhook_recovery_notified_at",
}


def _due(channel: str) -> Q:
    """Alerts with a notice due on this channel."""
    return Q(**{f"{STAMPS[OPENED, channel]}__isnull": True}) | Q(
        resolved_at__isnull=False, **{f"{STAMPS[RESOLVED, channel]}__isnull": True}
    )


class Sent(enum.Enum):
    """What one send did."""

    SENT = "sent"  # went out
    NOTHING = "nothing"  # the channel is not configured (no webhook URL, no recipient): done all the same
    REFUSED = "refused"  # this notice's body was refused (400, 413, 422): try again next run, go on with the others
    DOWN = "down"  # the channel failed (connection, timeout, other non-2xx, SMTP error): again next run, not this one


def alerts_notify(*, limit: int = 100, budget_seconds: float = 60.0) -> dict:
    """Send the due notices: per channel, up to `limit` alerts (oldest first), starting none after `budget_seconds`.
    A channel that is down is left alone for the rest of the run after its first failure (one warning per run; it
    cannot hold up the other channel). Returns {"notified": notices sent (per channel), "failed": sends that failed
    and will be tried again}."""
    counts = {"notified": 0, "failed": 0}
    deadline = time.monotonic() + budget_seconds
    with closing(_webhook_session()) as session:
        for name in (EMAIL, WEBHOOK):
            ids = list(Alert.objects.filter(_due(name)).order_by("id").values_list("pk", flat=True)[:limit])
            if not ids:
                continue
            channel = _EmailChannel(alert_recipients()) if name == EMAIL else _WebhookChannel(session)
            for alert_id in ids:
                if time.monotonic() > deadline:
                    break
                sent, failure = _notify_one(alert_id, name, channel)
                counts["notified"] += sent
                counts["failed"] += failure is not None
                if failure is Sent.DOWN:
                    break
    if counts["notified"] or counts["failed"]:
        logger.info("alert notices: %s sent, %s failed", counts["notified"], counts["failed"])
    return counts


def _notify_one(alert_id: int, name: str, channel) -> tuple[int, Sent | None]:
    """Send this alert's due notices on one channel, in order, and stamp them; (notices sent, the failure if any)."""
    sent = 0
    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("partner_config__connector")
            .filter(_due(name), pk=alert_id)
            .first()
        )
        if alert is None:  # done meanwhile, deleted with its configuration, or another notifier holds it
            return 0, None
        stamped, failure = [], None
        for event in (OPENED, RESOLVED):
            stamp = STAMPS[event, name]
            if getattr(alert, stamp) is not None or (event == RESOLVED and alert.resolved_at is None):
                continue
            result = channel.send(alert, event)
            if result in (Sent.REFUSED, Sent.DOWN):
                failure = result  # the recovery notice waits for the opening one: receivers see them in order
                break
            setattr(alert, stamp, timezone.now())
            stamped.append(stamp)
            sent += result is Sent.SENT
        if stamped:
            alert.save(update_fields=stamped)
    return sent, failure


# E-mail.


def alert_recipients() -> list[str]:
    """DAP_ALERT_EMAILS, or every active superuser and "Marketing admin" with an e-mail address."""
    if settings.DAP_ALERT_EMAILS:
        return list(dict.fromkeys(settings.DAP_ALERT_EMAILS))
    users = get_user_model().objects.filter(is_active=True).exclude(email="")
    emails = users.filter(Q(is_superuser=True) | Q(groups__name=ADMIN_GROUP)).values_list("email", flat=True)
    return sorted({e.strip() for e in emails.distinct() if e and e.strip()})


class _EmailChannel:
    def __init__(self, recipients: list[str]):
        self.recipients = recipients

    def send(self, alert: Alert, event: str) -> Sent:
        if not self.recipients:
            logger.warning(
                "alert %s: no e-mail recipients (set DAP_ALERT_EMAILS or give an admin an e-mail address)", alert.pk
            )
            return Sent.NOTHING
        subject, body = notice_text(alert, event)
        try:
            send_mail(subject, body, None, self.recipients, fail_silently=False)
        except Exception as exc:  # any transport failure (SMTP, socket, TLS): tried again next run
            logger.warning("alert %s: e-mail notice %s failed (%s); will retry", alert.pk, event, type(exc).__name__)
            return Sent.DOWN
        return Sent.SENT


# Webhook.


def _webhook_session() -> requests.Session:
    """A plain session: no proxies or .netrc from the environment."""
    session = requests.Session()
    session.trust_env = False
    return session


def webhook_signature(body: bytes, secret: str) -> str:
    """The X-DAP-Signature header value: "sha256=" + hex HMAC-SHA256 of the raw body with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _WebhookChannel:
    def __init__(self, session: requests.Session):
        self.session = session

    def send(self, alert: Alert, event: str) -> Sent:
        url = settings.DAP_ALERT_WEBHOOK_URL
        if not url:
            return Sent.NOTHING
        body = json.dumps(webhook_payload(alert, event), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "dap-alerts/1",
            "X-DAP-Event": event,
            # The same for every try of one notice: receivers may drop repeats.
            "X-DAP-Delivery": f"{alert.pk}-{event}",
        }
        if settings.DAP_ALERT_WEBHOOK_SECRET:
            headers["X-DAP-Signature"] = webhook_signature(body, settings.DAP_ALERT_WEBHOOK_SECRET)
        try:
            response = self.session.post(
                url, data=body, headers=headers, timeout=WEBHOOK_TIMEOUT_SECONDS, allow_redirects=False
            )
        except requests.RequestException as exc:
            logger.warning("alert %s: webhook notice %s failed (%s); will retry", alert.pk, event, type(exc).__name__)
            return Sent.DOWN
        if not 200 <= response.status_code < 300:
            logger.warning("alert %s: webhook notice %s answered %s; will retry", alert.pk, event, response.status_code)
            # 400/413/422 refuse this body; anything else (5xx, 429, 401/403/404, redirects) is the receiver's state.
            return Sent.REFUSED if response.status_code in PAYLOAD_REFUSED else Sent.DOWN
        return Sent.SENT


def webhook_payload(alert: Alert, event: str) -> dict:
    config = alert.partner_config
    connector = config.connector
    return {
        "event": event,
        "alert": {
            "id": alert.pk,
            "kind": alert.kind,
            "kind_label": alert.get_kind_display(),
            "connector_id": connector.pk,
            "connector": connector.name,
            "partner": connector.partner_name,
            "partner_config_id": config.pk,
            "partner_config": config.name,
            "detail": alert.detail,
            "error_rate": alert.error_rate,
            "opened_at": _iso(alert.opened_at),
            "resolved_at": _iso(alert.resolved_at),
            "url": connector_url(connector.pk),
        },
    }


# Texts.


def connector_url(connector_id: int) -> str:
    return settings.DAP_BASE_URL + reverse("connectors:detail", args=[connector_id])


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z") if at else None


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def notice_text(alert: Alert, event: str) -> tuple[str, str]:
    """(subject, body) of the e-mail notice."""
    config = alert.partner_config
    connector = config.connector
    label = alert.get_kind_display()
    where = _one_line(f"{connector.name} / {config.name}")
    lines: list[str]
    if event == OPENED:
        subject = f"[DAP] Alert: {label} — {where}"
        lines = [f"{label} on {where} ({connector.partner_name}).", ""]
        if alert.detail:
            lines.append(f"What happened: {alert.detail}")
        lines.append(f"Since: {_when(alert.opened_at)}")
        if alert.error_rate is not None:
            lines.append(
                f"Error rate over the last hour: {alert.error_rate:.0%} (alerts open at "
                f"{settings.DAP_ALERT_ERROR_RATE:.0%} or more of at least {settings.DAP_ALERT_MIN_ITEMS} items)."
            )
        if alert.resolved_at:
            lines.append(f"It has resolved since, at {_when(alert.resolved_at)}: a recovery notice follows.")
    else:
        subject = f"[DAP] Recovered: {label} — {where}"
        lines = [
            f"Recovered: {label} on {where} ({connector.partner_name}).",
            "",
            f"Open from {_when(alert.opened_at)} to {_when(alert.resolved_at)}.",
            _recovery_reason(alert),
        ]
    lines += ["", f"Connector page: {connector_url(connector.pk)}", "", "— Data Activation Platform alerts"]
    return _one_line(subject), "\n".join(lines) + "\n"


def _recovery_reason(alert: Alert) -> str:
    if alert.kind == Alert.Kind.ERROR_RATE:
        return (
            f"Over the last hour the error rate is below {settings.DAP_ALERT_ERROR_RATE:.0%}, or fewer than "
            f"{settings.DAP_ALERT_MIN_ITEMS} items were sent (not enough to judge, e.g. the connector was deactivated "
            "or the configuration paused)."
        )
    health = alert.partner_config.health
    if health == PartnerConfig.Health.OK:
        return "The configuration is healthy again and sending resumed."
    if health != alert.kind:
        return f"The configuration is now in another state: {alert.partner_config.get_health_display()}."
    return "The configuration was resumed and entered this state again: a new alert follows."
