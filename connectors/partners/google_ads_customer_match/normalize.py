"""Customer Match identifiers for the Data Manager API: normalised, SHA-256 hashed, then written hex or Base64.

Rules (Data Manager API guide "Format user data"):
- email: every whitespace character removed (leading, trailing and inside), lower-cased. For gmail.com and
  googlemail.com addresses the dots of the part before "@" are removed, and a "+" with everything after it in that
  part is dropped ("Jane.Doe+news@Gmail.com" -> "janedoe@gmail.com"). Other domains keep their dots and "+" tags
  ("user.name+NYC@Example.com" -> "user.name+nyc@example.com").
- phone: E.164, that is "+", the country code and digits only ("(800) 555-0100" in the US is "+18005550100").
  Spaces, dashes, dots, slashes and brackets are dropped, a "00" international prefix becomes "+", and a national
  trunk "(0)" written after the country code is dropped ("+31 (0)6 1234 5678" -> "+31612345678"). A number written
  without its country code cannot be turned into E.164 and is not sent.

The normalised text is hashed with SHA-256 (UTF-8 bytes) and the 32-byte digest written as lower-case hex (request
encoding HEX) or padded standard Base64 (encoding BASE64). An identifier that already is a SHA-256 hex digest
(64 hex characters) is taken as hashed and only re-encoded: no email address or phone number looks like that.
Every function returns "" when nothing usable is left.
"""

from __future__ import annotations

import base64
import re
from hashlib import sha256

from connectors.identifiers import Slot

HEX = "HEX"
BASE64 = "BASE64"
ENCODINGS = (HEX, BASE64)

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_PHONE_NOISE = re.compile(r"[\s\-./()]")
# "+", a country code that does not start with 0, at most 15 digits in all (ASCII digits only).
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def normalize_email(raw: str) -> str:
    """The exact text hashed for an email address ("" when it is not an address)."""
    value = "".join(raw.split()).lower()
    local, at, domain = value.rpartition("@")
    if not at or not local or "@" in local or "." not in domain or domain[0] == "." or domain[-1] == ".":
        return ""
    if domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            return ""
    return f"{local}@{domain}"


def normalize_phone(raw: str) -> str:
    """The exact text hashed for a phone number: E.164 ("" when it has no country code or is not a number)."""
    value = _PHONE_NOISE.sub("", raw.replace("(0)", ""))
    if value.startswith("00"):
        value = "+" + value[2:]
    return value if _E164.fullmatch(value) else ""


def encode(digest: bytes, encoding: str) -> str:
    """A 32-byte SHA-256 digest as the request's encoding writes it."""
    if encoding == BASE64:
        return base64.b64encode(digest).decode("ascii")
    return digest.hex()


def _prehashed(raw: str) -> bytes | None:
    value = raw.strip()
    if len(value) == 64 and _HEX64.fullmatch(value):
        return bytes.fromhex(value)
    return None


def hash_email(raw: str, encoding: str = HEX) -> str:
    digest = _prehashed(raw)
    if digest is None:
        value = normalize_email(raw)
        if not value:
            return ""
        digest = sha256(value.encode("utf-8")).digest()
    return encode(digest, encoding)


def hash_phone(raw: str, encoding: str = HEX) -> str:
    digest = _prehashed(raw)
    if digest is None:
        value = normalize_phone(raw)
        if not value:
            return ""
        digest = sha256(value.encode("ascii")).digest()
    return encode(digest, encoding)


# Slot -> (UserIdentifier field, function turning the raw identifier into the value sent).
IDENTIFIER_BY_SLOT = {
    Slot.EMAIL.value: ("emailAddress", hash_email),
    Slot.PHONE.value: ("phoneNumber", hash_phone),
}


def prepare(slot: str, raw: str, encoding: str = HEX) -> tuple[str, str]:
    """(UserIdentifier field, encoded hash) for this slot; ("", "") when the slot or the value is unusable."""
    entry = IDENTIFIER_BY_SLOT.get(slot)
    if entry is None or not raw:
        return "", ""
    field, fn = entry
    value = fn(raw, encoding)
    return (field, value) if value else ("", "")
