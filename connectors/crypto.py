"""Encryption at rest for partner secrets (Fernet, keys from DAP_ENCRYPTION_KEYS; the first one encrypts)."""

import json
from functools import lru_cache

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
