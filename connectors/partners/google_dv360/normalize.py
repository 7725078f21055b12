"""Display & Video 360 Customer Match: how each identifier slot is turned into the value sent.

Google's rules for contact information (DV360 API guide "Upload Customer Match audiences", `ContactInfo` reference):
- email: every whitespace character removed (not only at the ends), lower-cased, then SHA-256;
- phone: E.164 (a "+", the country calling code, the subscriber number, nothing else), then SHA-256 — the "+" is part
  of the hashed string, unlike Meta's digits-only rule;
- mobile device id (IDFA / AAID): sent as is, not hashed.
Digests are sent as 64 lower-case hex characters. No gmail dot removal here: that rule belongs to Campaign Manager 360
enhanced conversions, not to Customer Match.

What the platform decides on top of Google's rules:
- a value that already is a SHA-256 hex digest is passed on lower-cased, never hashed twice;
- an email needs an "@" with something on both sides, else it is not sent (a hash of junk can never match);
- a phone is read as E.164: "+" or the international "00" prefix, then the country code. A national trunk "(0)"
  written after the country code is dropped ("+31 (0)6 …"). Separators (spaces, dashes, dots, brackets, "/") are
  ignored. A number written in national form ("06 …", a single leading 0) cannot be given its country code and is
  not sent; digits without any prefix are taken as already starting with the country code. 7 to 15 digits;
- a mobile device id must be a UUID (8-4-4-4-12 hex digits, either case), trimmed, case kept as given.
Every function returns "" when nothing usable is left.
"""

from __future__ import annotations

import re
from hashlib import sha256

from connectors.identifiers import Slot

# Which ContactInfo list field (or the mobile device id list) a slot feeds.
EMAIL_FIELD = "hashedEmails"
PHONE_FIELD = "hashedPhoneNumbers"
FIELD_BY_SLOT = {Slot.EMAIL.value: EMAIL_FIELD, Slot.PHONE.value: PHONE_FIELD, Slot.MOBILE_AD_ID.value: ""}

_HEX64 = re.compile(r"[0-9a-f]{64}")
_WHITESPACE = re.compile(r"\s+")
_PHONE_SEPARATORS = re.compile(r"[\s\-./()]+")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
E164_MIN_DIGITS = 7
E164_MAX_DIGITS = 15


def _prehashed(value: str) -> str:
    lowered = value.strip().lower()
    return lowered if len(lowered) == 64 and _HEX64.fullmatch(lowered) else ""


def normalize_email(raw: str) -> str:
    """The exact string hashed: all whitespace removed, lower-cased ("" when it is not an email address)."""
    value = _WHITESPACE.sub("", raw).lower()
    local, at, domain = value.rpartition("@")
    return value if at and local and domain else ""


def normalize_phone(raw: str) -> str:
    """The exact string hashed: "+" and 7 to 15 digits, the first not 0 ("" when it is not usable)."""
    value = raw.strip()
    if value.startswith("+"):
        rest = value[1:]
    elif value.startswith("00"):
        rest = value[2:]
    elif value[:1] == "0" or value.startswith("(0"):
        return ""  # national form: the country code is unknown
    else:
        rest = value
    digits = _PHONE_SEPARATORS.sub("", rest.replace("(0)", ""))
    if not _ASCII_DIGITS.fullmatch(digits) or digits[0] == "0":
        return ""
    if not E164_MIN_DIGITS <= len(digits) <= E164_MAX_DIGITS:
        return ""
    return "+" + digits


def normalize_mobile_device_id(raw: str) -> str:
    value = raw.strip()
    return value if _UUID.fullmatch(value) else ""


def hash_email(raw: str) -> str:
    prehashed = _prehashed(raw)
    if prehashed:
        return prehashed
    value = normalize_email(raw)
    return sha256(value.encode()).hexdigest() if value else ""


def hash_phone(raw: str) -> str:
    prehashed = _prehashed(raw)
    if prehashed:
        return prehashed
    value = normalize_phone(raw)
    return sha256(value.encode()).hexdigest() if value else ""


# Slot -> the function turning a raw identifier into the value sent ("" = not usable).
PREPARE_BY_SLOT = {
    Slot.EMAIL.value: hash_email,
    Slot.PHONE.value: hash_phone,
    Slot.MOBILE_AD_ID.value: normalize_mobile_device_id,
}


def prepare(slot: str, raw: str) -> str:
    """The value sent to DV360 for this slot; "" when the identifier is unusable or the slot unknown."""
    fn = PREPARE_BY_SLOT.get(slot)
    return fn(raw) if fn is not None and raw else ""
