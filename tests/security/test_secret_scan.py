"""No partner secret leaks: every partner configured with its test secrets (tests/factories.py ALL_TEST_SECRETS, plus a
webhook rotation secret) through the API, the pages and the admin, sending to the partner sandbox which answers with
errors that echo every secret back; then every API answer, page, admin page, log line (raw records at DEBUG and the
JSON formatter's lines), audit entry, delivery attempt snippet and error, alert, e-mail and error report (a forced
exception in a view: the 500 page with DEBUG off, the `django.request` record, the mail to ADMINS, Django's
technical 500 report in text and HTML) is scanned for each secret value.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.core import mail
from django.test import Client
from django.views.debug import ExceptionReporter

from audiences.models import Audience, AudienceConnection, Profile, ProfileIdentifier
from connectors import crypto
from connectors.delivery import dispatcher
from connectors.forms import setting_field_name
from connectors.models import ConnectorEvent, Delivery, DeliveryAttempt, PartnerConfig
from dap.logging import JsonFormatter
from monitoring.models import Alert
from tests.connectors.sandbox_helpers import drain, enter, fault
from tests.factories import (
    ALL_TEST_SECRETS,
    VALID_SETTINGS,
    UserFactory,
    setting_form_data,
)
from tests.factories import (
    DV360_CLIENT_SECRET as DV360,
)

pytestmark = pytest.mark.django_db

ROTATION_SECRET = "whsec_" + "cHJldmlvdXMtc2lnbmluZy1zZWNyZXQtZm9yLXNjYW4h"  # the webhook's previous secret
CRASH_SECRET = "whsec_" + "bmV3LXNpZ25pbmctc2VjcmV0LXR5cGVkLWF0LXRoZS1jcmFzaA=="  # typed in the crashing requests
SECRETS = (*ALL_TEST_SECRETS, ROTATION_SECRET, CRASH_SECRET)
# What each partner's audience connection names at the partner (any valid id: the sandbox answers with errors).
AUDIENCE_IDS = {
    "webhook": "crm",
    "google_dv360": "1234567",
    "meta_custom_audiences": "23850000000001",
    "clang_realtime": "4242",
    "clang_batch": "4242",
    "azure_event_hubs": "crm",
    "azure_storage_queue": "crm",
    "xandr": "98765",
    "google_ads_customer_match": "5551234567",
    "the_trade_desk": "cc9b84o",
    "google_cm360": "9876543",
}
IDENTIFIERS = {
    "email": "scan.person@example.com",
    "phone": "+31612345678",
    "customer_id": "C-SCAN-1",
    "mobile_ad_id": "6d92078a-8246-4ba4-ae5b-76104861e7dc",
    "xandr_uid": "4567890123456789012",
    "ttd_id": "0f5e7a2c-1b3d-4e6f-8a9b-0c1d2e3f4a5b",
    "gclid": "Cj0KCQiA-scan-click-id",
    "partner_number": "P-1001",
}
LOGGERS = ("django", "connectors", "audiences", "journeys", "monitoring", "dap", "django_q")


class RawRecords(logging.Handler):
    """Every record as logged, before the console handler's redaction filter touches it (a handler on the named
    loggers runs before the root's)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


class Scan:
    """Collected texts, each with where it came from."""

    def __init__(self):
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, content) -> None:
        if isinstance(content, bytes):
            content = content.decode("utf-8", "replace")
        elif not isinstance(content, str):
            content = json.dumps(content, default=str, ensure_ascii=False)
        self.texts.append((where, content))

    def response(self, where: str, response) -> None:
        assert response.status_code < 500 or "error report" in where, (where, response.status_code)
        self.add(f"{where} [{response.status_code}]", response.content)
        self.add(f"{where} headers", str(dict(response.items())))

    def leaks(self) -> list[str]:
        found = []
        for where, text in self.texts:
            for secret in SECRETS:
                if secret in text:
                    found.append(f"{where}: …{secret[-6:]}")
        return found


@pytest.fixture
def raw_records():
    handler = RawRecords()
    for name in LOGGERS:
        logging.getLogger(name).addHandler(handler)
    yield handler
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(handler)


@pytest.fixture
def clean_dispatcher(settings):
    settings.DAP_KICK_ON_COMMIT = False
    settings.DAP_DISPATCH_SHARDS = 1
    settings.DAP_RETRY_WINDOW_SECONDS = 0  # failures are final at once (last_error, alerts)
    dispatcher._clients.clear()
    yield
    dispatcher._clients.clear()


def _settings_with_secrets(key: str) -> dict:
    values = dict(VALID_SETTINGS[key])
    if key == "webhook":
        values["previous_signing_secret"] = ROTATION_SECRET
        values["endpoint_url"] = "https://hooks.example.com/webhook/scan"  # a sandbox receiver
    return values


def _profile() -> Profile:
    profile = Profile.objects.create(external_id="scan-1", consent_ads=True)
    ProfileIdentifier.objects.bulk_create(
        [ProfileIdentifier(profile=profile, slot=slot, value=value) for slot, value in IDENTIFIERS.items()]
    )
    return profile


def _configure_every_partner(scan: Scan, api: Client, page: Client, admin: Client, sandbox) -> list[PartnerConfig]:
    """Each partner through the API (create, edit), the page form and the admin form, secrets typed each time."""
    configs = []
    for key in VALID_SETTINGS:
        values = _settings_with_secrets(key)
        created = api.post(
            "/api/v1/connectors/",
            {"partner": key, "name": f"Scan {key}", "settings": values},
            content_type="application/json",
        )
        assert created.status_code == 201, created.content
        scan.response(f"API create {key}", created)
        config = PartnerConfig.objects.get(connector_id=created.json()["id"])
        connector = config.connector_id
        base = f"/api/v1/connectors/{connector}/configs/{config.pk}/"
        scan.response(
            f"API edit {key}",
            api.patch(base, {"settings": values, "timeout_seconds": 2}, content_type="application/json"),
        )
        form = {**{setting_field_name(k): v for k, v in values.items()}, "name": config.name, "timeout_seconds": "3"}
        edited = page.post(f"/connectors/{connector}/configs/{config.pk}/edit/", form)
        assert edited.status_code == 302, edited.content
        # The admin, the only place that may point a configuration at another host: the sandbox, scope = partner.
        changed = admin.post(
            f"/admin/connectors/partnerconfig/{config.pk}/change/",
            {**form, "base_url_override": f"{sandbox.url}/c/{key}"},
        )
        assert changed.status_code == 302, changed.content
        config.refresh_from_db()
        assert config.get_secrets() == {k: v for k, v in values.items() if k in config.get_secrets()}
        configs.append(config)
    return configs


def _send_profiles(configs, sandbox) -> None:
    """One profile change per configuration; the sandbox answers every call with an error echoing the secrets the
    partner was given (all of the configuration's)."""
    profile = _profile()
    for config in configs:
        key = config.connector.partner_key
        echo = "rejected credentials: " + " ".join(config.get_secrets().values())
        fault(sandbox, key, fault="partner_error", message=echo, status=400)
        audience = Audience.objects.create(name=f"scan {key}")
        AudienceConnection.objects.create(
            audience=audience, partner_config=config, partner_audience_id=AUDIENCE_IDS[key]
        )
        enter(audience, [profile])
        drain(config)
    # And a host that does not answer: connection errors carry the URL (query-string credentials included).
    for config in configs:
        PartnerConfig.objects.filter(pk=config.pk).update(base_url_override="http://127.0.0.1:9", health="ok")
        audience = Audience.objects.get(name=f"scan {config.connector.partner_key}")
        enter(audience, [profile], action="remove")
        dispatcher._clients.clear()
        drain(config)


def _read_everything(scan: Scan, api: Client, page: Client, admin: Client, configs) -> None:
    for path in (
        "/api/v1/connectors/",
        "/api/v1/connectors/stats/",
        "/api/v1/deliveries/?status=failed",
        "/api/v1/deliveries/",
        "/api/v1/delivery-attempts/",
        "/api/v1/delivery-attempts/?errors_only=true",
        "/api/v1/alerts/?state=all",
        "/api/v1/partners/",
        "/api/v1/profiles/",
    ):
        scan.response(f"API {path}", api.get(path))
    for config in configs:
        c = config.connector_id
        for path in (
            f"/api/v1/connectors/{c}/",
            f"/api/v1/connectors/{c}/stats/",
            f"/api/v1/connectors/{c}/usages/",
            f"/api/v1/connectors/{c}/configs/",
            f"/api/v1/connectors/{c}/configs/{config.pk}/",
            f"/api/v1/connectors/{c}/configs/{config.pk}/stats/",
            f"/api/v1/partner-configs/{config.pk}/",
            f"/api/v1/deliveries/?connector={c}",
            f"/api/v1/delivery-attempts/?partner_config={config.pk}",
        ):
            scan.response(f"API {path}", api.get(path))
        scan.response(f"API test {config.pk}", api.post(f"/api/v1/partner-configs/{config.pk}/test/"))
        for path in (
            f"/connectors/{c}/",
            f"/connectors/{c}/?log=1&outcome=partner_error",
            f"/connectors/{c}/edit/",
            f"/connectors/{c}/configs/{config.pk}/edit/",
            f"/connectors/{c}/deactivate/",
            f"/connectors/{c}/delete/",
            f"/connectors/{c}/configs/{config.pk}/delete/",
        ):
            scan.response(f"page {path}", page.get(path))
        test = page.post(f"/connectors/{c}/configs/{config.pk}/test/", follow=True)
        scan.response(f"page test connection {config.pk}", test)
        for path in (
            f"/admin/connectors/connector/{c}/change/",
            f"/admin/connectors/connector/{c}/history/",
            f"/admin/connectors/partnerconfig/{config.pk}/change/",
            f"/admin/connectors/partnerconfig/{config.pk}/history/",
            f"/admin/connectors/partnerconfig/{config.pk}/delete/",
        ):
            scan.response(f"admin {path}", admin.get(path))
    for path in ("/connectors/", "/connectors/new/", "/connectors/new/webhook/", "/audiences/", "/journeys/"):
        scan.response(f"page {path}", page.get(path))
    for model in ("connector", "partnerconfig", "connectorevent", "delivery", "deliveryattempt", "dailystat"):
        scan.response(f"admin {model} list", admin.get(f"/admin/connectors/{model}/"))
    for delivery in Delivery.objects.all():
        scan.response(f"admin delivery {delivery.pk}", admin.get(f"/admin/connectors/delivery/{delivery.pk}/change/"))
    for attempt in DeliveryAttempt.objects.all():
        path = f"/admin/connectors/deliveryattempt/{attempt.pk}/change/"
        scan.response(f"admin attempt {attempt.pk}", admin.get(path))
    scan.response("admin alerts", admin.get("/admin/monitoring/alert/"))
    scan.response("admin log entries", admin.get("/admin/"))


def _stored_rows(scan: Scan) -> None:
    for event in ConnectorEvent.objects.all():
        scan.add(f"audit event {event.pk}", {"changes": event.changes, "lines": event.change_lines()})
    for delivery in Delivery.objects.all():
        scan.add(f"delivery {delivery.pk}", [delivery.last_error, delivery.partner_error_code, delivery.outcome])
    for attempt in DeliveryAttempt.objects.all():
        scan.add(f"attempt {attempt.pk}", [attempt.snippet, attempt.partner_error_code])
    for alert in Alert.objects.all():
        scan.add(f"alert {alert.pk}", alert.detail)
    for config in PartnerConfig.objects.all():
        scan.add(f"config {config.pk} stored", [config.settings, config.health_detail, config.base_url_override])
        assert not any(secret in config.secrets_encrypted for secret in SECRETS)


def _forced_errors(scan: Scan, configs, monkeypatch, settings, raw_records) -> None:
    """A view that crashes while handling secrets: what the user, the log and the admins' mail get."""
    settings.ADMINS = [("Ops", "ops@example.com")]
    webhook = next(c for c in configs if c.connector.partner_key == "webhook")

    def boom(secrets):
        raise RuntimeError("encryption backend down")

    monkeypatch.setattr(crypto, "encrypt_secrets", boom)
    user = UserFactory(username="scan-crash", is_staff=True, is_superuser=True)
    crashing = Client(raise_request_exception=False)
    crashing.force_login(user)
    form = setting_form_data("webhook", name=webhook.name, timeout_seconds="3")
    form.update({"setting__signing_secret": CRASH_SECRET, "setting__previous_signing_secret": ROTATION_SECRET})
    crash_settings = {**_settings_with_secrets("webhook"), "signing_secret": CRASH_SECRET}
    sent = (
        ("page", f"/connectors/{webhook.connector_id}/configs/{webhook.pk}/edit/", form, None),
        ("admin", f"/admin/connectors/partnerconfig/{webhook.pk}/change/", {**form, "base_url_override": ""}, None),
        (
            "API",
            f"/api/v1/connectors/{webhook.connector_id}/configs/{webhook.pk}/",
            json.dumps({"settings": crash_settings}),
            "application/json",
        ),
        (
            "API create",
            "/api/v1/connectors/",
            json.dumps({"partner": "xandr", "name": "Crash", "settings": VALID_SETTINGS["xandr"]}),
            "application/json",
        ),
        (
            "page create",
            "/connectors/new/meta_custom_audiences/",
            setting_form_data("meta_custom_audiences", name="Crash meta", config_name="Default", timeout_seconds="3"),
            None,
        ),
    )
    for where, path, body, content_type in sent:
        mail.outbox.clear()
        if content_type:
            method = "patch" if where == "API" else "post"
            response = getattr(crashing, method)(path, body, content_type=content_type)
        else:
            response = crashing.post(path, body)
        assert response.status_code == 500, (where, response.status_code)
        scan.response(f"error report {where}: the 500 page", response)
        # mail_admins (AdminEmailHandler on the "django" logger): the text report, and the HTML one it can attach.
        assert len(mail.outbox) == 1, where
        message = mail.outbox[0]
        scan.add(f"error report {where}: mail to admins", message.subject + message.body)
        for alternative, _ in getattr(message, "alternatives", []):
            scan.add(f"error report {where}: mail HTML", alternative)
        # Django's technical 500 report, as DEBUG pages and include_html mails show it (frames' local variables),
        # built like AdminEmailHandler does from the `django.request` record.
        record = [r for r in raw_records.records if r.name == "django.request" and r.exc_info][-1]
        assert record.status_code == 500
        reporter = ExceptionReporter(record.request, *record.exc_info, is_email=True)
        text, page = reporter.get_traceback_text(), reporter.get_traceback_html()
        assert "encryption backend down" in text and reporter.filter.cleansed_substitute in page
        scan.add(f"error report {where}: technical 500 text", text)
        scan.add(f"error report {where}: technical 500 HTML", page)
    monkeypatch.undo()


def test_no_secret_appears_anywhere(sandbox, clean_dispatcher, raw_records, caplog, monkeypatch, settings):
    caplog.set_level(logging.DEBUG)
    scan = Scan()
    api, page, admin = Client(), Client(), Client()
    api.force_login(UserFactory(username="scan-api", groups=["Marketing admin"]))
    page.force_login(UserFactory(username="scan-page", groups=["Marketing admin"]))
    admin.force_login(UserFactory(username="scan-admin", is_staff=True, is_superuser=True))

    configs = _configure_every_partner(scan, api, page, admin, sandbox)
    assert {c.connector.partner_key for c in configs} == set(VALID_SETTINGS)
    _send_profiles(configs, sandbox)
    # The partners' echoes were stored, without the secrets (the batched partners wait for fuller batches).
    scrubbed = DeliveryAttempt.objects.filter(snippet__contains="[secret]")
    assert scrubbed.values("partner_config").distinct().count() >= 4
    assert Delivery.objects.filter(status="failed", last_error__contains="[secret]").exists()
    _read_everything(scan, api, page, admin, configs)
    _stored_rows(scan)
    _forced_errors(scan, configs, monkeypatch, settings, raw_records)

    # Log lines: every raw record (message, traceback, extra fields) and the same records as the JSON formatter
    # writes them; e-mails sent on the way (alerts).
    formatter, stream = JsonFormatter(), io.StringIO()
    for record in [*raw_records.records, *caplog.records]:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        extra = {k: v for k, v in record.__dict__.items() if k not in ("msg", "args", "exc_info", "exc_text")}
        scan.add(f"log record {record.name}", text + repr(extra))
        stream.write(formatter.format(record) + "\n")
    scan.add("JSON log lines", stream.getvalue())
    for message in mail.outbox:
        scan.add(f"mail {message.subject}", message.subject + message.body)

    assert len(scan.texts) > 500
    leaks = scan.leaks()
    assert not leaks, "secret values found:\n" + "\n".join(leaks)


def test_the_debug_error_page_hides_secrets_too(settings, monkeypatch):
    """DEBUG is on in development: Django's own filter would show the typed secrets there; ours does not."""
    settings.DEBUG = True
    monkeypatch.setattr(crypto, "encrypt_secrets", lambda secrets: 1 / 0)
    client = Client(raise_request_exception=False)
    client.force_login(UserFactory(username="dev", groups=["Marketing admin"]))
    form = setting_form_data("google_dv360", name="DV", config_name="EU", timeout_seconds="3")
    response = client.post("/connectors/new/google_dv360/", form)
    assert response.status_code == 500 and b"ZeroDivisionError" in response.content  # the technical page
    assert all(secret not in response.content.decode() for secret in SECRETS)


def test_every_secret_setting_is_hidden_by_name_in_error_reports():
    """Dicts in a frame (settings being saved) are cleansed by key: every partner's secret names must match."""
    from connectors.partners.registry import all_partners
    from dap.error_reports import SecretSafeExceptionReporterFilter

    hidden = SecretSafeExceptionReporterFilter.hidden_settings
    names = {f.name for p in all_partners() for f in p.secret_fields}
    assert names and all(hidden.search(name) for name in names), names


def test_without_secrets_catches_encoded_and_truncated_echoes():
    secret = 'sv=2022&sig=a/b+c=="x'
    echoes = {
        "as is": secret,
        "URL-encoded": "sv%3D2022%26sig%3Da%2Fb%2Bc%3D%3D%22x",
        "HTML-escaped": 'sv=2022&amp;sig=a/b+c=="x',
        "JSON-escaped": 'sv=2022&sig=a/b+c==\\"x',
    }
    for how, echo in echoes.items():
        assert crypto.without_secrets(f"bad {echo}!", [secret]) == "bad [secret]!", how
    assert crypto.without_secrets("error: token GOCSPX-dv360Cli", [DV360]) == "error: token [secret]"
    assert crypto.without_secrets("nothing here", [DV360]) == "nothing here"
