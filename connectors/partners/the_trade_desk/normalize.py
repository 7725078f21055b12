"""The Trade Desk identifier preparation: emails for CRM data uploads, TTD ids for real-time data.

Email normalisation follows the UID2/EUID rules The Trade Desk points to for CRM data:
- remove leading and trailing whitespace, lower-case the whole address;
- for `gmail.com` addresses only: drop a `+suffix` of the local part, then every `.` of the local part.
The hashed form (PiiType `EmailHashedUnifiedId2`) is the SHA-256 of the UTF-8 bytes of that string, encoded as
standard Base64 of the 32 raw digest bytes (44 characters ending in "="), not as hex.

Values that already are hashes are accepted for the hashed PiiType: a 64-character hex SHA-256 is re-encoded to
Base64, a 44-character Base64 SHA-256 is passed on as is (neither can be an email address: no "@"). For the plain
`Email` PiiType a hash cannot be sent, so it is refused ("").

TTD ids (TDID) are sent as they are, surrounding whitespace removed; The Trade Desk reports malformed ones per item.
Every function returns "" when nothing usable is left.
"""

from __future__ import annotations

import base64
import binascii
import re
from hashlib import sha256

HASHED_EMAIL = "EmailHashedUnifiedId2"
PLAIN_EMAIL = "Email"
PII_TYPES = (HASHED_EMAIL, PLAIN_EMAIL)

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_B64_SHA256 = re.compile(r"[A-Za-z0-9+/]{43}=")


def normalize_email(raw: str) -> str:
    """The exact string that is hashed (or sent in clear): "" unless it has one "@" between two non-empty parts."""
    value = raw.strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or not domain or "@" in domain:
        return ""
    if domain == "gmail.com":
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            return ""
    return f"{local}@{domain}"


def _prehashed(value: str) -> str:
    """Base64 SHA-256 for a value that already is a SHA-256 (hex or Base64), else ""."""
    if len(value) == 64 and _HEX64.fullmatch(value):
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    if len(value) == 44 and _B64_SHA256.fullmatch(value):
        try:
            if len(base64.b64decode(value, validate=True)) == 32:
                return value
        except (binascii.Error, ValueError):
            return ""
    return ""


def hash_email(raw: str) -> str:
    """The line uploaded for PiiType EmailHashedUnifiedId2: Base64(SHA-256(normalised email))."""
    value = raw.strip()
    if not value:
        return ""
    if "@" not in value:
        return _prehashed(value)
    normalised = normalize_email(value)
    if not normalised:
        return ""
    return base64.b64encode(sha256(normalised.encode("utf-8")).digest()).decode("ascii")


def plain_email(raw: str) -> str:
    """The line uploaded for PiiType Email: the normalised address (TTD hashes it on its side)."""
    return normalize_email(raw)


def ttd_id(raw: str) -> str:
    """A TTD id (TDID) for real-time data, sent as is."""
    return raw.strip()


def email_preparer(pii_type: str):
    """The function turning a raw email into an upload line for this PiiType."""
    return plain_email if pii_type == PLAIN_EMAIL else hash_email
