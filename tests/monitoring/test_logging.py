"""Structured logs: one JSON object per line with the `extra=` fields; e-mails, phones, tokens, secrets and hashes
never reach a log line, in either format."""

import io
import json
import logging
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from connectors.delivery import dispatcher, outbox
from dap.logging import JsonFormatter, RedactFilter
from tests.connectors.delivery.conftest import FakeClient, make_profiles
from tests.factories import META_TOKEN, WEBHOOK_SECRET, PartnerConfigFactory

ROOT = Path(__file__).resolve().parents[2]
EMAIL = "jane.doe+ads@example.com"
PHONE = "+31 6 1234 5678"
SHA256 = "b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514"


@pytest.fixture
def capture():
    """A logger whose handler is set up like settings.LOGGING's console handler; returns (logger, lines())."""

    def make(formatter):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(RedactFilter())
        logger = logging.getLogger(f"tests.monitoring.logging.{id(stream)}")
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        made.append(logger)
        return logger, lambda: stream.getvalue().splitlines()

    made: list[logging.Logger] = []
    yield make
    for logger in made:
        logger.handlers.clear()


def test_json_line_fields_and_extras(capture):
    logger, lines = capture(JsonFormatter())
    logger.info(
        "config %s dispatched: %s claimed",
        7,
        120,
        extra={"config_id": 7, "partner": "webhook", "outcomes": {"added": 118, "timeout": 2}, "duration_ms": 812.5},
    )
    logger.warning("two\nlines")
    first, second = (json.loads(line) for line in lines())
    assert first["message"] == "config 7 dispatched: 120 claimed"
    assert first["level"] == "INFO" and first["logger"] == logger.name
    assert first["ts"].endswith("Z")
    assert datetime.fromisoformat(first["ts"]).utcoffset().total_seconds() == 0
    assert first["config_id"] == 7 and first["partner"] == "webhook"
    assert first["outcomes"] == {"added": 118, "timeout": 2} and first["duration_ms"] == 812.5
    assert "exc_type" not in first and "traceback" not in first
    assert second["message"] == "two\nlines"  # one object per line, whatever the message


def test_extras_cannot_overwrite_the_own_fields(capture):
    logger, lines = capture(JsonFormatter())
    logger.info("hello", extra={"level": "fake", "ts": "fake", "request": object()})
    entry = json.loads(lines()[0])
    assert entry["level"] == "INFO" and entry["extra_level"] == "fake" and entry["extra_ts"] == "fake"
    assert entry["request"].startswith("<object object")  # anything else is written as text


SECRETS = [
    (f"sent to {EMAIL}", EMAIL, "[email]"),
    (f"call {PHONE} now", "1234 5678", "[phone]"),
    ("call 0612345678 now", "0612345678", "[phone]"),
    ("Authorization: Bearer abc.DEF-123_xyz", "abc.DEF-123_xyz", "[redacted]"),
    ("got bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9", "[redacted]"),
    (f"GET /graph?access_token={META_TOKEN}&x=1", META_TOKEN, "access_token=[redacted]"),
    ("https://q.example/queue?sv=2022&sig=oX5hjMTdd%2FHs%3D&se=2099", "oX5hjMTdd", "sig=[redacted]"),
    ("login with password=Hunter2!pw", "Hunter2!pw", "password=[redacted]"),
    (f"secret: {WEBHOOK_SECRET}", WEBHOOK_SECRET, "[redacted]"),
    (f"hashed {SHA256}", SHA256, "[hex]"),
    ("maid 6D92078A-8246-4BA4-AE5B-76104861E7DC", "6D92078A-8246", "[uuid]"),
    ("Key (slot, value)=(customer_id, CUST-00042) already exists.", "CUST-00042", "Key (slot, value)=([redacted])"),
]


@pytest.mark.parametrize("formatter", [JsonFormatter(), logging.Formatter("%(levelname)s %(message)s")])
@pytest.mark.parametrize(("text", "secret", "placeholder"), SECRETS)
def test_message_and_args_are_redacted(capture, formatter, text, secret, placeholder):
    logger, lines = capture(formatter)
    logger.info(text)
    logger.info("value: %s (%d)", text, 3)
    logger.info("as a dict: %(what)s", {"what": text})
    output = "\n".join(lines())
    assert secret not in output
    assert output.count(placeholder) >= 3
    assert "(3)" in output


def test_extras_are_redacted(capture):
    logger, lines = capture(JsonFormatter())
    logger.info("notice", extra={"to": EMAIL, "detail": {"phone": PHONE, "tokens": [f"Bearer {META_TOKEN}"]}})
    entry = json.loads(lines()[0])
    assert entry["to"] == "[email]"
    assert entry["detail"] == {"phone": "[phone]", "tokens": ["Bearer [redacted]"]}


def test_dates_times_durations_and_ids_are_kept(capture):
    logger, lines = capture(JsonFormatter())
    message = "config 12 at 2025-06-01 12:30:45 (2025-06-01T12:30:45Z) from 203.0.113.10: 20000 rows in 1234.5 ms"
    logger.info(message)
    assert json.loads(lines()[0])["message"] == message


@pytest.mark.parametrize("formatter", [JsonFormatter(), logging.Formatter("%(message)s")])
def test_exception_type_and_redacted_traceback(capture, formatter):
    logger, lines = capture(formatter)
    try:
        raise ValueError(f"no profile for {EMAIL} / {PHONE} / token={META_TOKEN}")
    except ValueError:
        logger.exception("lookup of %s failed", EMAIL)
    output = "\n".join(lines())
    for secret in (EMAIL, "1234 5678", META_TOKEN):
        assert secret not in output
    if isinstance(formatter, JsonFormatter):
        entry = json.loads(output)
        assert entry["exc_type"] == "ValueError"
        assert entry["message"] == "lookup of [email] failed"
        assert entry["traceback"].startswith("Traceback (most recent call last)")
        assert "ValueError: no profile for [email] / [phone] / token=[redacted]" in entry["traceback"]
        # Frame lines keep their paths (long paths would otherwise look like tokens).
        assert f'File "{__file__}", line ' in entry["traceback"]
    else:
        assert "ValueError: no profile for [email]" in output


def test_settings_wire_the_filter_and_the_format(settings):
    handler = settings.LOGGING["handlers"]["console"]
    assert handler["filters"] == ["redact"]
    assert handler["formatter"] == settings.DAP_LOG_FORMAT in ("json", "text")
    assert settings.LOGGING["formatters"]["json"]["()"] == "dap.logging.JsonFormatter"


def _run_django(code: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "dap.settings", **env}
    for name in ("DAP_LOG_FORMAT", "DAP_DEBUG"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-c", "import django, logging; django.setup(); " + code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_production_default_is_json_on_stderr():
    """With DAP_DEBUG off the process logs JSON lines, redacted, through the root handler (any module's logger)."""
    done = _run_django(
        "from django.conf import settings; print(settings.DAP_LOG_FORMAT); "
        "logging.getLogger('connectors.services').info('partner config %s updated by %s', 7, 'ops@example.com', "
        "extra={'config_id': 7})",
        DAP_DEBUG="false",
        DAP_SECRET_KEY="test-only-" + "k" * 40,
        DAP_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
    )
    assert done.stdout.strip() == "json"
    entry = json.loads(done.stderr.strip().splitlines()[-1])
    assert entry["message"] == "partner config 7 updated by [email]"
    assert entry["logger"] == "connectors.services" and entry["config_id"] == 7


def test_text_format_is_redacted_too():
    done = _run_django("logging.getLogger('x').warning('to %s', 'ops@example.com')", DAP_LOG_FORMAT="text")
    line = done.stderr.strip().splitlines()[-1]
    assert line.endswith("WARNING x to [email]")


def test_unknown_format_is_refused():
    with pytest.raises(subprocess.CalledProcessError) as failed:
        _run_django("pass", DAP_LOG_FORMAT="xml")
    assert "DAP_LOG_FORMAT must be json or text" in failed.value.stderr


@pytest.mark.django_db
def test_dispatch_logs_one_structured_line_without_identifiers(monkeypatch, settings, caplog):
    settings.DAP_KICK_ON_COMMIT = False
    settings.DAP_DISPATCH_SHARDS = 1
    FakeClient.calls, FakeClient.script = [], None
    dispatcher._clients.clear()
    monkeypatch.setattr(dispatcher, "client_class", lambda key: FakeClient)
    config = PartnerConfigFactory()
    profiles = make_profiles(3, prefix="jane.doe@example.com-")
    outbox.deliveries_enqueue(partner_config_ids=[config.pk], profile_ids=[p.pk for p in profiles], action="add")
    caplog.set_level(logging.INFO, logger="connectors.delivery.dispatcher")
    try:
        dispatcher.dispatch_config(config.pk)
    finally:
        dispatcher._clients.clear()
    (record,) = [r for r in caplog.records if r.name == "connectors.delivery.dispatcher"]
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == f"config {config.pk} dispatched: 3 claimed, 3 finished, 0 retried in 1 calls"
    assert entry["config_id"] == config.pk and entry["partner"] == "webhook"
    assert entry["claimed"] == 3 and entry["finished"] == 3 and entry["calls"] == 1
    assert entry["outcomes"] == {"added": 3} and entry["duration_ms"] >= 0
    assert "jane.doe" not in json.dumps(entry)
