"""Meta customer-list normalisation and hashing (single-key schemas EMAIL_SHA256, PHONE_SHA256, MOBILE_ADVERTISER_ID).

Rules (Meta "Hashing and normalizing data", see PARTNERS.md):
- email: trimmed, lower-cased, then SHA-256 as lower-case hex;
- phone: digits only (no "+", spaces, dashes or brackets), leading zeros removed, then SHA-256. Profiles store phones
  in E.164, so the country code is already there once "+" is dropped. A national trunk "(0)" written after the
  country code ("+31 (0)6 …") is dropped first: "+31 (0)6-1234 5678" is sent as the hash of "31612345678";
- mobile advertiser id (IDFA / AAID): trimmed and lower-cased, sent unhashed.

A value that is already a SHA-256 hex digest (64 hex characters) is passed on lower-cased, not hashed twice: no real
email address or phone number looks like that. Each function returns "" when nothing usable is left.
"""

from __future__ import annotations

import re
from hashlib import sha256

from connectors.identifiers import Slot

SCHEMA_BY_SLOT = {
    Slot.EMAIL.value: "EMAIL_SHA256",
    Slot.PHONE.value: "PHONE_SHA256",
    Slot.MOBILE_AD_ID.value: "MOBILE_ADVERTISER_ID",
}

_HEX64 = re.compile(r"[0-9a-f]{64}")
_NOT_DIGIT = re.compile(r"[^0-9]+")  # ASCII digits only (\D would keep other scripts' digits)


def normalize_email(raw: str) -> str:
    """The exact string that is hashed: trimmed and lower-cased."""
    return raw.strip().lower()


def normalize_phone(raw: str) -> str:
    """The exact string that is hashed: "(0)" trunk prefixes dropped, digits only, leading zeros removed."""
    return _NOT_DIGIT.sub("", raw.replace("(0)", "")).lstrip("0")


def normalize_madid(raw: str) -> str:
    return raw.strip().lower()


def hash_email(raw: str) -> str:
    value = raw.strip().lower()
    if not value:
        return ""
    if len(value) == 64 and _HEX64.fullmatch(value):
        return value
    return sha256(value.encode()).hexdigest()


def hash_phone(raw: str) -> str:
    stripped = raw.strip()
    digits = stripped[1:] if stripped[:1] == "+" else stripped
    if digits.isdigit() and digits.isascii():  # fast path: E.164 as stored ("+31612345678")
        value = digits.lstrip("0")
    elif len(stripped) == 64 and _HEX64.fullmatch(stripped.lower()):
        return stripped.lower()
    else:
        value = normalize_phone(stripped)
    if not value:
        return ""
    return sha256(value.encode()).hexdigest()


def madid(raw: str) -> str:
    return raw.strip().lower()


# Slot -> the function turning a raw identifier into the value sent ("" = unusable).
PREPARE_BY_SLOT = {
    Slot.EMAIL.value: hash_email,
    Slot.PHONE.value: hash_phone,
    Slot.MOBILE_AD_ID.value: madid,
}


def prepare(slot: str, raw: str) -> str:
    """The value sent to Meta for this slot; "" when the identifier normalises to nothing or the slot is unknown."""
    fn = PREPARE_BY_SLOT.get(slot)
    return fn(raw) if fn is not None and raw else ""
