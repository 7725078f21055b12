"""Validators and setting builders shared by several partner descriptors.

Validators raise `django.core.exceptions.ValidationError` with a message an admin can act on; builders return
`SettingField`s that several partners declare identically (Google OAuth credentials, the identifier-slot choice).
"""

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.core.exceptions import ValidationError

from connectors.partners.base import FieldType, SettingField, slot_choices

# A numeric id as the vendors show it (int64 at most): kept as a string so leading zeros and size survive.
DIGITS_ID = r"\d{1,20}"
DIGITS_MESSAGE = "Enter the numeric id (digits only)."
# Opaque credentials: anything printable without spaces (catches copy-paste accidents such as a pasted line break).
NO_SPACES = r"\S+"
NO_SPACES_MESSAGE = "Paste the value exactly as issued, without spaces or line breaks."
UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

_SAFE_PATH = re.compile(r"[A-Za-z0-9/._~-]*")


def validate_base64_key(value: str) -> None:
    """A shared key issued as base64 (Azure SAS keys are 32 random bytes, 44 characters)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("The key is not valid base64: copy it again from the Azure portal.") from None
    if len(raw) < 16:
        raise ValidationError("The key is too short: copy the whole primary or secondary key.")


def require_true(name: str, message: str) -> Callable[[Mapping[str, Any]], dict[str, str]]:
    """Cross-check: the yes/no setting `name` must be answered yes (terms accepted and the like).

    A cross-check rather than a field validator because `SettingField.clean` returns booleans before running
    validators. An absent value (partial update) is left alone.
    """

    def check(settings: Mapping[str, Any]) -> dict[str, str]:
        return {name: message} if settings.get(name) is False else {}

    return check


def validate_base_url(value: str) -> None:
    """An https origin, optionally with a path prefix: no query, fragment or trailing slash (paths are appended)."""
    parts = urlsplit(value)
    if parts.query or parts.fragment:
        raise ValidationError("Enter the base URL without ? query or # fragment.")
    if value.endswith("/"):
        raise ValidationError("Remove the trailing slash: paths are appended to this URL.")
    if not _SAFE_PATH.fullmatch(parts.path):
        raise ValidationError("The path may contain only letters, digits and / . _ ~ -")


def validate_azure_sas_token(value: str) -> None:
    """A service or account SAS query string (sv=…&…&sig=…), with or without the leading '?'."""
    query = value[1:] if value.startswith("?") else value
    if query.lower().startswith("sharedaccesssignature ") or "://" in query:
        raise ValidationError("Paste only the SAS token (the part after '?'), not a URL or connection string.")
    params = parse_qs(query, keep_blank_values=True)
    missing = [name for name in ("sv", "sig") if not params.get(name, [""])[0]]
    if missing:
        raise ValidationError(f"This is not a SAS token: it lacks {' and '.join(missing)}=.")


def google_oauth_settings(scope: str) -> tuple[SettingField, ...]:
    """OAuth 2.0 installed-app credentials: client id, client secret, refresh token for `scope`."""
    return (
        SettingField(
            "client_id",
            "OAuth client ID",
            max_length=200,
            pattern=r"\d+-[A-Za-z0-9_]+\.apps\.googleusercontent\.com",
            pattern_message="Enter the client ID ending in .apps.googleusercontent.com.",
            help_text="Google Cloud console > APIs & Services > Credentials > your OAuth 2.0 client.",
        ),
        SettingField(
            "client_secret",
            "OAuth client secret",
            secret=True,
            max_length=200,
            pattern=NO_SPACES,
            pattern_message=NO_SPACES_MESSAGE,
            help_text="Shown with the OAuth client in the Google Cloud console (download the JSON if hidden).",
        ),
        SettingField(
            "refresh_token",
            "OAuth refresh token",
            secret=True,
            max_length=1000,
            pattern=r"\S{20,}",
            pattern_message="Paste the whole refresh token (it usually starts with 1//), without spaces.",
            help_text=f"Issued when a user with access authorises the client for scope {scope}.",
        ),
    )


def identifier_slot_setting(*slots: str, default: str) -> SettingField:
    """The CHOICE setting through which a configuration picks the identifier slot it sends."""
    return SettingField(
        "identifier_slot",
        "Identifier sent",
        type=FieldType.CHOICE,
        choices=slot_choices(*slots),
        default=str(default),
        help_text="Only profiles holding this identifier are sent; the others count as skipped (no identifier).",
    )
