"""Log lines without personal data or secrets: a redaction filter and a JSON formatter (one object per line).

Both are wired in `settings.LOGGING` on the console handler; `DAP_LOG_FORMAT` picks `json` or `text`. The filter
scrubs every record the handler emits, whatever the format: the message with its arguments, the traceback and the
stack; the JSON formatter also scrubs the `extra=` fields it writes. See docs/operations.md.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from connectors.delivery.http import scrub

# On top of the partner-snippet redactions (connectors/delivery/http.py: e-mails, Authorization/bearer credentials,
# token=/password=/secret=/sig=… values, 32+ hex digit hashes such as SHA-256, long base64 runs), log lines also
# lose phone numbers (9 to 15 digits, optionally +, spaces, dashes or brackets between them; not dates, times or IP
# addresses), UUIDs (mobile advertising ids) and the row values PostgreSQL quotes in constraint errors ("Key (slot,
# value)=(customer_id, C-1234) already exists", "Failing row contains (…)"), which tracebacks carry.
_LOG_REDACTIONS = (
    (re.compile(r"\b(Key \([^)]*\))=\((?:[^()]|\([^()]*\))*\)"), r"\1=([redacted])"),
    (re.compile(r"(Failing row contains )\((?:[^()]|\([^()]*\))*\)"), r"\1([redacted])"),
    (re.compile(r"(?<![\w+])\+?\d(?:[ ()-]?\d){8,14}(?![\w:])"), "[phone]"),
    (re.compile(r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b"), "[uuid]"),
)
# A traceback is cut to its last characters (the exception and the innermost frames).
TRACEBACK_LIMIT = 8000
# Attributes every LogRecord has: anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_OWN_KEYS = ("ts", "level", "logger", "message", "exc_type", "traceback", "stack")


# Traceback frame lines ('  File "/long/path/module.py", line 12, in name') are kept as they are: their paths would
# look like tokens, and they hold code locations, not data.
_FRAME_LINE = re.compile(r'^([ \t]*File "[^"\n@]*", line \d+(?:, in [^\n]*)?)$', re.MULTILINE)


def _redact_part(text: str) -> str:
    text = scrub(text)
    for pattern, replacement in _LOG_REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def redact_log_text(text: str) -> str:
    if 'File "' not in text:
        return _redact_part(text)
    # re.split with a group: frame lines at the odd positions.
    return "".join(part if i % 2 else _redact_part(part) for i, part in enumerate(_FRAME_LINE.split(text)))


def _redact_value(value, depth: int = 0):
    """`extra=` values for JSON: strings scrubbed, containers walked (a few levels), anything else as scrubbed text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_log_text(value)
    if depth < 4 and isinstance(value, dict):
        return {redact_log_text(str(k)): _redact_value(v, depth + 1) for k, v in value.items()}
    if depth < 4 and isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v, depth + 1) for v in value]
    return redact_log_text(str(value))


class RedactFilter(logging.Filter):
    """Scrubs the formatted message (arguments included), the traceback and the stack of every record; never drops
    a record. Idempotent, so two handlers may both carry it."""

    _traceback_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact_log_text(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._traceback_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_log_text(record.exc_text[-TRACEBACK_LIMIT:])
        if record.stack_info:
            record.stack_info = redact_log_text(record.stack_info[-TRACEBACK_LIMIT:])
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO-8601 UTC, milliseconds), level, logger, message, the `extra=` fields (a
    field named like one of these gets an `extra_` prefix) and, for an exception, its type and redacted traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_log_text(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRIBUTES or key.startswith("_"):
                continue
            entry["extra_" + key if key in _OWN_KEYS else key] = _redact_value(value)
        # Scrubbed again here (idempotent): the line stays clean on a handler without RedactFilter too.
        if record.exc_info:
            entry["exc_type"] = getattr(record.exc_info[0], "__name__", str(record.exc_info[0]))
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["traceback"] = redact_log_text(record.exc_text[-TRACEBACK_LIMIT:])
        if record.stack_info:
            entry["stack"] = redact_log_text(record.stack_info[-TRACEBACK_LIMIT:])
        return json.dumps(entry, ensure_ascii=False, default=str)
