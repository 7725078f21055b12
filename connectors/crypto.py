"""Encryption at rest for partner secrets (Fernet, keys from DAP_ENCRYPTION_KEYS; the first one encrypts)."""

import html
import json
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "DAP_ENCRYPTION_KEYS must hold Fernet keys (32 url-safe base64-encoded bytes)."
        ) from exc


def _current() -> MultiFernet:
    return _fernet(tuple(settings.DAP_ENCRYPTION_KEYS))


def encrypt_secrets(secrets: dict[str, str]) -> str:
    if not secrets:
        return ""
    return _current().encrypt(json.dumps(secrets, sort_keys=True).encode()).decode()


def decrypt_secrets(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        return json.loads(_current().decrypt(token.encode()))
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "Stored partner secrets cannot be decrypted with DAP_ENCRYPTION_KEYS (wrong or rotated-out key)."
        ) from exc


def encrypt_text(text: str) -> str:
    """One secret string, encrypted (cached partner tokens)."""
    return _current().encrypt(text.encode()).decode()


def decrypt_text(token: str) -> str:
    """The reverse of `encrypt_text`; raises cryptography's InvalidToken on a foreign or rotated-out value."""
    return _current().decrypt(token.encode()).decode()


def mask(value: str | None) -> dict:
    """What may be shown of a secret: whether it is set, and its last 4 characters when it is long enough."""
    if not value:
        return {"set": False, "last4": None}
    return {"set": True, "last4": value[-4:] if len(value) >= 12 else None}


def mask_text(value: str | None) -> str:
    info = mask(value)
    if not info["set"]:
        return "not set"
    return f"set, ending …{info['last4']}" if info["last4"] else "set"


# Secrets shorter than this are not looked for in text (they would match ordinary words).
_MIN_SCRUB_LENGTH = 6
_PARTIAL_TAIL = 6


def _forms(secret: str) -> set[str]:
    """A secret as it may appear in text: as is, URL-encoded (query strings, form bodies), URL-decoded, JSON-escaped,
    HTML/XML-escaped."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), unquote(secret), json.dumps(secret)[1:-1]}
    forms |= {html.escape(f, quote=False) for f in list(forms)}
    return {f for f in forms if len(f) >= _MIN_SCRUB_LENGTH}


def without_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every given secret value replaced by "[secret]", and the beginning of one cut off when the text
    ends in it (a partner answer truncated in the middle of an echoed credential). For what partners answer: the
    snippets and messages the platform stores and shows, which only pattern-based redaction covered before."""
    if not text:
        return text
    forms = sorted({f for s in secrets if s for f in _forms(str(s))}, key=len, reverse=True)
    for form in forms:
        text = text.replace(form, "[secret]")
    for form in forms:
        for cut in range(len(form) - 1, _PARTIAL_TAIL - 1, -1):
            if text.endswith(form[:cut]):
                return text[: len(text) - cut] + "[secret]"
    return text


def scrubber(get_secrets: Callable[[], Mapping[str, str]]) -> Callable[[str], str]:
    """`without_secrets` bound to one configuration's secrets, decrypted on first use only; a batch's many items
    share few messages, so each distinct text is scrubbed once."""
    found: list[list[str]] = []
    done: dict[str, str] = {}

    def scrub(text: str) -> str:
        if not text:
            return text
        if text not in done:
            if not found:
                found.append([str(v) for v in get_secrets().values() if v])
            if len(done) > 1000:
                done.clear()
            done[text] = without_secrets(text, found[0])
        return done[text]

    return scrub
