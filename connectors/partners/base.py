"""What a catalogue partner declares: its metadata row, settings schema, identifier slots and limits.

A partner is a stateless description (code); the account's stored setup lives in the `Connector` and
`PartnerConfig` models. The settings schema declared here drives validation, the API, the admin form and
the page form.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator
from django.db import models
from django.views.decorators.debug import sensitive_variables

from connectors.identifiers import Slot
from dap.service_helpers import MAX_INT64, MIN_INT64

_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


class Kind(models.TextChoices):
    SERVER_TO_SERVER = "server_to_server", "Server-to-server"
    TAG_BASED = "tag_based", "Tag-based"


class PlatformType(models.TextChoices):
    DSP = "dsp", "DSP"
    SOCIAL = "social", "Social"
    SEARCH_ADS = "search_ads", "Search & ads"
    AD_SERVER = "ad_server", "Ad server"
    ESP = "esp", "Email service provider"
    EVENT_HUB = "event_hub", "Event hub"
    QUEUE = "queue", "Message queue"
    WEBHOOK = "webhook", "Webhook"
    ANALYTICS = "analytics", "Analytics / tag"


class Mode(models.TextChoices):
    REAL_TIME = "real_time", "Real-time"
    BATCHED = "batched", "Batched"


class SyncOn(models.TextChoices):
    ADD = "add", "Add"
    UPDATE = "update", "Update"
    REMOVE = "remove", "Remove"


class UsableIn(models.TextChoices):
    AUDIENCES = "audiences", "Audiences"
    JOURNEYS = "journeys", "Journeys"


class FieldType(models.TextChoices):
    STRING = "string", "Text"
    TEXT = "text", "Long text"
    INTEGER = "integer", "Integer"
    DECIMAL = "decimal", "Decimal"
    BOOLEAN = "boolean", "Yes/no"
    CHOICE = "choice", "Choice"
    URL = "url", "URL"
    EMAIL = "email", "Email"


@dataclass(frozen=True)
class SettingField:
    """One setting of a partner configuration.

    `secret` fields are encrypted at rest, write-only over the API and masked everywhere else.
    `validators` are callables that raise `django.core.exceptions.ValidationError` on a bad value.
    """

    name: str
    label: str
    type: str = FieldType.STRING
    required: bool = True
    default: Any = None
    help_text: str = ""
    secret: bool = False
    choices: tuple[tuple[str, str], ...] = ()
    min_value: int | float | None = None
    max_value: int | float | None = None
    max_length: int | None = None
    pattern: str | None = None
    pattern_message: str = "Enter a valid value."
    validators: tuple[Callable[[Any], None], ...] = ()
    https_only: bool = False

    def describe(self) -> dict:
        """JSON-able description (catalogue API)."""
        return {
            "name": self.name,
            "label": self.label,
            "type": str(self.type),
            "required": self.required,
            "default": self.default,
            "help_text": self.help_text,
            "secret": self.secret,
            "choices": [{"value": v, "label": label} for v, label in self.choices],
            "min_value": self.min_value,
            "max_value": self.max_value,
            "max_length": self.max_length,
            "pattern": self.pattern,
        }

    def is_empty(self, value: Any) -> bool:
        return value is None or (isinstance(value, str) and value.strip() == "")

    def clean(self, value: Any) -> Any:
        """Coerce and validate one non-empty value; raise ValidationError with a clear message."""
        t = self.type
        if t == FieldType.BOOLEAN:
            if isinstance(value, str) and value.lower() in {"true", "1", "yes", "on"}:
                value = True
            elif isinstance(value, str) and value.lower() in {"false", "0", "no", "off"}:
                value = False
            elif not isinstance(value, bool):
                raise ValidationError("Enter true or false.")
        elif t == FieldType.INTEGER:
            if isinstance(value, bool):
                raise ValidationError("Enter a whole number.")
            try:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                if not isinstance(value, int | float) and not _WHOLE_NUMBER.fullmatch(str(value).strip()):
                    raise ValueError  # int() also reads "1_000" and non-ASCII digits ("１２３")
                value = int(str(value).strip()) if not isinstance(value, int | float) else int(value)
            except (TypeError, ValueError, OverflowError):
                raise ValidationError("Enter a whole number.") from None
            if not MIN_INT64 <= value <= MAX_INT64:
                raise ValidationError("Enter a whole number of at most 19 digits.")
            self._check_range(value)
        elif t == FieldType.DECIMAL:
            try:
                if isinstance(value, bool) or not str(value).strip().isascii():  # Decimal() reads "١٢٣" too
                    raise ValueError
                value = Decimal(str(value).strip())
            except (InvalidOperation, ValueError):
                raise ValidationError("Enter a number.") from None
            if not value.is_finite() or not math.isfinite(float(value)):  # 1e400 is finite only as a Decimal
                raise ValidationError("Enter a number.")
            self._check_range(value)
            value = float(value)
        else:
            if not isinstance(value, str):
                raise ValidationError("Enter text.")
            value = value.strip()
            if self.max_length is not None and len(value) > self.max_length:
                raise ValidationError(f"Ensure this value has at most {self.max_length} characters.")
            if t == FieldType.CHOICE:
                allowed = [v for v, _ in self.choices]
                if value not in allowed:
                    raise ValidationError(f"Choose one of: {', '.join(allowed)}.")
            elif t == FieldType.URL:
                URLValidator(schemes=["https"] if self.https_only else ["http", "https"])(value)
                if self.https_only and urlsplit(value).scheme != "https":
                    raise ValidationError("Enter an https:// URL.")
            elif t == FieldType.EMAIL:
                EmailValidator()(value)
            if self.pattern and not re.fullmatch(self.pattern, value, re.ASCII):  # \d: 0-9 only, as partners read it
                raise ValidationError(self.pattern_message)
        for validator in self.validators:
            validator(value)
        return value

    def _check_range(self, value) -> None:
        if self.min_value is not None and value < self.min_value:
            raise ValidationError(f"Ensure this value is greater than or equal to {self.min_value}.")
        if self.max_value is not None and value > self.max_value:
            raise ValidationError(f"Ensure this value is less than or equal to {self.max_value}.")


def audience_label_field(carrier: str) -> SettingField:
    """The audience connection id of partners without partner-side audiences (event streams, queues, webhooks): an
    optional free label written into each `carrier` (event, message, payload) as "audience"."""
    return SettingField(
        "partner_audience_id",
        "Audience label",
        required=False,
        max_length=200,
        pattern=r"[^\x00-\x1f\x7f]+",
        pattern_message="Use printable characters only (no tabs or line breaks).",
        help_text=f'Optional: written into each {carrier} as "audience" so your consumers can tell audiences apart.',
    )


@dataclass(frozen=True)
class Limits:
    """Batch and rate limits the partner documents."""

    max_batch_size: int
    min_batch_size: int = 1
    max_payload_bytes: int | None = None
    requests_per_minute: int | None = None
    notes: str = ""
    # Batched partners: due rows are held until `min_batch_size` of them are waiting or the oldest has waited this
    # long (seconds); None = send as soon as rows are due.
    batch_interval_seconds: int | None = None

    def describe(self) -> dict:
        return {
            "max_batch_size": self.max_batch_size,
            "min_batch_size": self.min_batch_size,
            "max_payload_bytes": self.max_payload_bytes,
            "requests_per_minute": self.requests_per_minute,
            "batch_interval_seconds": self.batch_interval_seconds,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Partner:
    """A catalogue entry: the metadata row of DESIGN.md, the settings schema, identifier slots and limits."""

    key: str
    name: str
    vendor: str
    description: str
    platform_type: str
    kind: str
    protocol: str
    mode: str
    identifier_slots: tuple[str, ...]
    syncs_on: tuple[str, ...]
    usable_in: tuple[str, ...]
    docs_url: str
    settings: tuple[SettingField, ...] = ()
    limits: Limits | None = None
    cookie_sync: bool = False
    # Tag-based cookie sync (the /sync/<key>/ endpoint): the query parameter carrying the partner's user id, the
    # pattern a valid id matches, and ids the partner uses for "unknown / opted out" (never stored).
    sync_param: str = ""
    sync_id_pattern: str = ""
    sync_id_refused: tuple[str, ...] = ()
    multiple_configs: bool = False
    profile_variables: bool = False
    error_docs_url: str = ""
    prerequisites: tuple[str, ...] = ()
    # Name of a CHOICE setting whose value is the identifier slot (webhook, Azure): the configuration chooses.
    identifier_slot_setting: str | None = None
    # Tag-based partners: a template with {setting_name} placeholders, rendered with the entered settings.
    snippet_template: str = ""
    # Cross-field checks: callables taking the cleaned settings+secrets dict, returning {field: message}.
    cross_checks: tuple[Callable[[Mapping[str, Any]], dict[str, str]], ...] = field(default=())
    # Audience connections: the partner-side audience, segment, list or group an audience is sent to (its label,
    # format and help). None: a connection names nothing at this partner. `audience_id_defaults` are settings of the
    # configuration that stand in when a connection names none (a connection must name one when none is set);
    # `audience_id_checks` take (value, configuration settings) and return a message when the pair does not fit.
    audience_id_field: SettingField | None = None
    audience_id_defaults: tuple[str, ...] = ()
    audience_id_checks: tuple[Callable[[str, Mapping[str, Any]], str], ...] = ()

    def __post_init__(self):
        names = [f.name for f in self.settings]
        if len(names) != len(set(names)):
            raise ValueError(f"{self.key}: duplicate setting names")
        if self.kind == Kind.SERVER_TO_SERVER and self.limits is None:
            raise ValueError(f"{self.key}: a server-to-server partner declares its limits")
        if self.kind == Kind.TAG_BASED and not self.snippet_template:
            raise ValueError(f"{self.key}: a tag-based partner declares its snippet")
        if self.sync_param and not (self.cookie_sync and self.sync_id_pattern and self.identifier_slots):
            raise ValueError(f"{self.key}: a cookie-sync endpoint needs cookie_sync, an id pattern and a slot")
        if self.identifier_slot_setting and self.identifier_slot_setting not in names:
            raise ValueError(f"{self.key}: identifier_slot_setting names an unknown setting")
        if set(self.audience_id_defaults) - set(names):
            raise ValueError(f"{self.key}: audience_id_defaults names an unknown setting")
        if self.audience_id_defaults and self.audience_id_field is None:
            raise ValueError(f"{self.key}: audience_id_defaults without an audience_id_field")

    # --- labels and schema helpers --------------------------------------------------------------
    @property
    def platform_label(self) -> str:
        return PlatformType(self.platform_type).label

    @property
    def kind_label(self) -> str:
        return Kind(self.kind).label

    @property
    def mode_label(self) -> str:
        return Mode(self.mode).label

    @property
    def slot_labels(self) -> list[str]:
        labels = dict(Slot.choices)
        return [labels.get(s, s) for s in self.identifier_slots]

    @property
    def is_server_to_server(self) -> bool:
        return self.kind == Kind.SERVER_TO_SERVER

    @property
    def secret_fields(self) -> tuple[SettingField, ...]:
        return tuple(f for f in self.settings if f.secret)

    @property
    def plain_fields(self) -> tuple[SettingField, ...]:
        return tuple(f for f in self.settings if not f.secret)

    def get_field(self, name: str) -> SettingField | None:
        return next((f for f in self.settings if f.name == name), None)

    @sensitive_variables()  # error reports never show the values being validated
    def clean_settings(
        self,
        data: Mapping[str, Any],
        *,
        existing_secrets: Mapping[str, str] | None = None,
        partial: bool = False,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Validate `data` against the schema; return (plain settings, secrets).

        Unknown keys are refused. A secret left empty keeps its stored value (`existing_secrets`); an optional secret
        given as None (JSON null) is cleared instead (required secrets cannot be cleared: None keeps them too).
        With `partial`, missing plain fields are not an error (the caller merges with stored values).
        Raises ValidationError with one message list per field; nothing is returned half-valid.
        """
        existing_secrets = existing_secrets or {}
        errors: dict[str, list[str]] = {}
        if not isinstance(data, Mapping):
            raise ValidationError({"settings": ["Expected an object of settings."]})
        known = {f.name for f in self.settings}
        for key in data:
            if key not in known:
                errors.setdefault(str(key), []).append(f"Unknown setting for {self.name}.")
        plain: dict[str, Any] = {}
        secrets: dict[str, str] = {}
        for f in self.settings:
            raw = data.get(f.name)
            if f.is_empty(raw):
                clear = f.secret and not f.required and f.name in data and raw is None
                if f.secret and existing_secrets.get(f.name) and not clear:
                    secrets[f.name] = existing_secrets[f.name]
                elif partial and f.name not in data:
                    continue
                elif f.default is not None:
                    plain[f.name] = f.default
                elif f.type == FieldType.BOOLEAN and raw is None and not f.required:
                    plain[f.name] = False
                elif f.required:
                    errors.setdefault(f.name, []).append("This field is required.")
                continue
            try:
                value = f.clean(raw)
            except ValidationError as exc:
                errors.setdefault(f.name, []).extend(exc.messages)
                continue
            if f.secret:
                secrets[f.name] = value
            else:
                plain[f.name] = value
        if not errors:
            merged = {**plain, **secrets}
            for check in self.cross_checks:
                for name, message in (check(merged) or {}).items():
                    errors.setdefault(name, []).append(message)
        if errors:
            raise ValidationError(errors)
        return plain, secrets

    def identifier_slots_for(self, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """Slots this configuration reads, in order of preference."""
        if self.identifier_slot_setting:
            chosen = settings.get(self.identifier_slot_setting)
            return (chosen,) if chosen else ()
        return self.identifier_slots

    def clean_audience_id(self, value: Any, settings: Mapping[str, Any]) -> str:
        """The partner audience id an audience connection names, validated for this partner and configuration
        (`settings`: the configuration's plain settings). Raises ValidationError with plain messages."""
        f = self.audience_id_field
        empty = value is None or (isinstance(value, str) and not value.strip())
        if f is None:
            if not empty:
                raise ValidationError(f"{self.name} takes no partner audience id: leave it empty.")
            return ""
        if empty:
            if f.required:
                raise ValidationError(f"Enter the {f.label}.")
            if self.audience_id_defaults and not any(settings.get(name) for name in self.audience_id_defaults):
                labels = " or ".join(self.get_field(name).label for name in self.audience_id_defaults)
                raise ValidationError(f"Enter the {f.label}: the configuration sets no {labels} to fall back on.")
            return ""
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        cleaned = str(f.clean(value))
        for check in self.audience_id_checks:
            message = check(cleaned, settings)
            if message:
                raise ValidationError(message)
        return cleaned

    def render_snippet(self, settings: Mapping[str, Any]) -> str:
        values = {f.name: settings.get(f.name, f.default if f.default is not None else "") for f in self.settings}
        return self.snippet_template.format(**values)

    def describe(self) -> dict:
        """The catalogue row, JSON-able."""
        return {
            "key": self.key,
            "name": self.name,
            "vendor": self.vendor,
            "description": self.description,
            "platform_type": str(self.platform_type),
            "kind": str(self.kind),
            "protocol": self.protocol,
            "mode": str(self.mode),
            "identifier_slots": [str(s) for s in self.identifier_slots],
            "identifier_slot_setting": self.identifier_slot_setting,
            "cookie_sync": self.cookie_sync,
            "syncs_on": [str(s) for s in self.syncs_on],
            "multiple_configs": self.multiple_configs,
            "profile_variables": self.profile_variables,
            "usable_in": [str(u) for u in self.usable_in],
            "docs_url": self.docs_url,
            "error_docs_url": self.error_docs_url,
            "prerequisites": list(self.prerequisites),
            "limits": self.limits.describe() if self.limits else None,
            "settings": [f.describe() for f in self.settings],
            "audience_id_field": self.audience_id_field.describe() if self.audience_id_field else None,
            "audience_id_defaults": list(self.audience_id_defaults),
        }


def slot_choices(*slots: str) -> tuple[tuple[str, str], ...]:
    """Choices for a setting that picks an identifier slot."""
    labels = dict(Slot.choices)
    return tuple((s, labels[s]) for s in slots)


COMMON_PREREQUISITES = (
    "An active account at the vendor, with access to the advertiser/audience you will send to.",
    "The platform's egress IP addresses whitelisted at the vendor where the vendor restricts API access by IP.",
)
