"""Which Conversion field carries a profile's identifier, and how the raw value is cleaned before it is sent.

Campaign Manager 360 attributes an inserted conversion through exactly one of `gclid`, `dclid`, `matchId`,
`mobileDeviceId`, `encryptedUserId(Candidates)` or `impressionId` (Conversion resource, API v5). The platform's slots
map onto three of them:

- gclid -> `gclid`: the Google click id as captured from the landing page URL, trimmed. Click ids are opaque
  URL-safe tokens: a value with inner whitespace is a copy/paste accident and is not sent.
- customer_id -> `matchId`: the advertiser's own id, the one the Floodlight tag passes as match ID; trimmed, case kept
  (CM360 joins it byte for byte with what the tag sent).
- mobile_ad_id -> `mobileDeviceId`: IDFA / AAID (or a CTV IFA), unencrypted, in the 8-4-4-4-12 hex form; trimmed,
  case kept (iOS reports IDFAs upper-case, Android AAIDs lower-case, and CM360 matches what the device reported).
  The all-zero id a device reports when ad tracking is limited identifies nobody and is not sent.

Email is deliberately absent: in API v5 a hashed email only travels in `userIdentifiers[]`, which *enhances* a
conversion that also carries one of the identifiers above; an email alone cannot be inserted (see client.py).
"""

from __future__ import annotations

import re

from connectors.identifiers import Slot

FIELD_BY_SLOT = {
    Slot.GCLID.value: "gclid",
    Slot.CUSTOMER_ID.value: "matchId",
    Slot.MOBILE_AD_ID.value: "mobileDeviceId",
}

_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_ZERO_ID = "00000000-0000-0000-0000-000000000000"
_WHITESPACE = re.compile(r"\s")


def clean_gclid(raw: str) -> str:
    value = raw.strip()
    return "" if _WHITESPACE.search(value) else value


def clean_match_id(raw: str) -> str:
    return raw.strip()


def clean_mobile_device_id(raw: str) -> str:
    value = raw.strip()
    if not _UUID.fullmatch(value) or value == _ZERO_ID:
        return ""
    return value


CLEAN_BY_FIELD = {
    "gclid": clean_gclid,
    "matchId": clean_match_id,
    "mobileDeviceId": clean_mobile_device_id,
}


def prepare(slot: str, raw: str) -> tuple[str | None, str]:
    """(Conversion field, value to send). Field None: the slot cannot identify a conversion; value "": unusable."""
    field = FIELD_BY_SLOT.get(slot)
    if field is None:
        return None, ""
    return field, CLEAN_BY_FIELD[field](raw or "")
