"""Profiles: the bulk upsert (services) and reads with masked identifiers (selectors).

`profile_bulk_upsert(rows=[...])` is the one write path for profile data coming from outside (the API's
`POST /api/v1/profiles/bulk/` and `manage.py import_profiles`). A row is

    {"external_id": "crm-42",                         # required: the profile's key in the customer's systems
     "attributes": {"country": "NL", "tier": null},   # merged: given keys replace, null removes the key
     "identifiers": {"email": "j@example.com", "phone": null},   # per slot: set (replaces) or null (removes)
     "consent_ads": true}                              # optional; new profiles get the model default

Every row is validated (all problems of all rows are reported, by row index, with dotted field names such as
`identifiers.email`). A call with invalid rows writes nothing unless `partial=True`, then the valid rows are written.
Refused on top of the format checks: the same external id twice in one call (every occurrence), the same identifier
given to two rows of one call (every such row), and an identifier another profile already holds. Identifiers never
move silently: to move one, remove it from its holder in one call and set it on the other profile in the next (the
check compares with what is stored before the call, whatever other rows of the same call do).

Identifier values are stored normalised: surrounding whitespace dropped; email lower-cased; phone in E.164 with
separators and a "(0)" trunk prefix removed. Email and phone also accept a SHA-256 hex digest (stored lower-cased)
for customers who only share hashed contact data: the partners pass digests on unhashed twice.

The writes are set-based and the number of queries does not depend on the number of rows: one query reads the
stored profiles (rows locked on PostgreSQL), one their identifiers and the identifiers claimed, one upsert writes
every created or changed profile (INSERT … ON CONFLICT (external_id) DO UPDATE … RETURNING), one DELETE drops the
replaced or removed identifiers, one INSERT adds the new ones; all in one transaction. Rows travel as one JSON (or
array) parameter expanded by the database (SQLite json_each, PostgreSQL jsonb_to_recordset / unnest). The raw INSERT
names the columns it writes: a new NOT NULL column on Profile needs a database default or a place in it.
"""

# Set-based SQL: only quoted table names and %s placeholders are formatted in, never values.
# ruff: noqa: S608

from __future__ import annotations

import json
import logging
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from audiences.models import Profile, ProfileIdentifier
from audiences.rules import ATTRIBUTE
from connectors.delivery.sql import ids_match, is_postgres, table
from connectors.identifiers import Slot

logger = logging.getLogger(__name__)

MAX_BULK_ROWS = 10_000
EXTERNAL_ID_MAX_LENGTH = Profile._meta.get_field("external_id").max_length
IDENTIFIER_MAX_LENGTH = ProfileIdentifier._meta.get_field("value").max_length
# The JSON of one profile's attributes, once merged, stays below this (keeps rows and rule evaluation cheap).
MAX_ATTRIBUTES_BYTES = 64 * 1024
# PostgreSQL stores no U+0000 in text or jsonb: refused in any attribute text or key, on every database alike.
NULL_CHARACTER_MESSAGE = "Null characters are not allowed."
# Nesting of lists/objects inside one attribute value.
MAX_VALUE_DEPTH = 8
ROW_FIELDS = ("external_id", "attributes", "identifiers", "consent_ads")
DEFAULT_CONSENT = Profile._meta.get_field("consent_ads").default
SLOTS = tuple(Slot.values)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_PHONE_SEPARATORS = re.compile(r"[\s\-./()]+")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
_XANDR_UID = re.compile(r"[0-9]{1,20}")

MASK = "•••"


# ---------------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class RowError:
    index: int
    errors: dict[str, list[str]]

    def as_dict(self) -> dict:
        return {"index": self.index, "errors": self.errors}


@dataclass
class BulkUpsertResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    # Whether anything was written (False: invalid rows without `partial`, a dry run, or nothing changed).
    written: bool = False
    # Ids of the profiles created or changed: what membership re-evaluation has to look at.
    profile_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "errors": [e.as_dict() for e in self.errors],
        }


class ProfileWriteConflict(Exception):
    """A concurrent call claimed the same identifier between our check and our write; nothing was written."""


# ---------------------------------------------------------------------------------------------------------------------
# Row validation (no queries)


@dataclass
class _Row:
    index: int
    external_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)  # the patch: None values remove keys
    identifiers: dict[str, str | None] = field(default_factory=dict)  # slot -> normalised value or None (remove)
    consent_ads: bool | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)

    def error(self, key: str, message: str) -> None:
        self.errors.setdefault(key, []).append(message)


def _json_value_problem(value: Any, depth: int = 0) -> str:
    if isinstance(value, str):
        return NULL_CHARACTER_MESSAGE if "\x00" in value else ""
    if value is None or isinstance(value, bool | int):
        return ""
    if isinstance(value, float):
        return "" if math.isfinite(value) else "Numbers must be finite (no NaN or Infinity)."
    if depth >= MAX_VALUE_DEPTH:
        return f"Values nest at most {MAX_VALUE_DEPTH} lists/objects deep."
    if isinstance(value, list):
        for item in value:
            problem = _json_value_problem(item, depth + 1)
            if problem:
                return problem
        return ""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return "Object keys must be text."
            if "\x00" in key:
                return NULL_CHARACTER_MESSAGE
            problem = _json_value_problem(item, depth + 1)
            if problem:
                return problem
        return ""
    return "Enter a JSON value (text, number, true/false, list, object or null)."


def attribute_name_problem(name: Any) -> str:
    if not isinstance(name, str) or not ATTRIBUTE.fullmatch(name) or "__" in name:
        return (
            "Attribute names are 1 to 64 letters, digits and single underscores, not starting with a digit "
            "(the names audience rules use)."
        )
    return ""


def normalize_identifier(slot: str, value: Any) -> str:
    """The value as stored in `slot`; raises ValueError with the reason when it is not acceptable."""
    if not isinstance(value, str):
        raise ValueError("Enter the identifier as text, or null to remove it.")
    value = value.strip()
    if not value:
        raise ValueError("Enter a value, or null to remove the identifier.")
    if _CONTROL.search(value):
        raise ValueError("Control characters are not allowed.")
    if slot in (Slot.EMAIL, Slot.PHONE) and len(value) == 64 and _HEX64.fullmatch(value.lower()):
        return value.lower()  # a SHA-256 digest of the normalised value, passed on as is
    if slot == Slot.EMAIL:
        value = value.lower()
        try:
            validate_email(value)
        except ValidationError:
            raise ValueError("Enter a valid email address (or its SHA-256 hex digest).") from None
    elif slot == Slot.PHONE:
        compact = _PHONE_SEPARATORS.sub("", value.replace("(0)", ""))
        if not _E164.fullmatch(compact):
            raise ValueError(
                'Enter the phone number in E.164 form: "+", the country code and the number, 8 to 16 characters '
                "(e.g. +31612345678), or its SHA-256 hex digest."
            )
        value = compact
    elif slot == Slot.MOBILE_AD_ID:
        if not _UUID.fullmatch(value):
            raise ValueError("Enter the IDFA / AAID as a UUID (8-4-4-4-12 hexadecimal digits).")
        if value == _ZERO_UUID:
            raise ValueError("The all-zero id (limited ad tracking) identifies nobody.")
    elif slot == Slot.XANDR_UID and (not _XANDR_UID.fullmatch(value) or not 0 < int(value) < 2**64):
        raise ValueError("Enter the Xandr user id: digits only (an unsigned 64-bit number other than 0).")
    if len(value) > IDENTIFIER_MAX_LENGTH:
        raise ValueError(f"Ensure this value has at most {IDENTIFIER_MAX_LENGTH} characters.")
    return value


def _clean_external_id(row: _Row, value: Any) -> None:
    if value is None or value == "":
        row.error("external_id", "This field is required.")
    elif not isinstance(value, str):
        row.error("external_id", "Enter the external id as text.")
    elif len(value) > EXTERNAL_ID_MAX_LENGTH:
        row.error("external_id", f"Ensure this value has at most {EXTERNAL_ID_MAX_LENGTH} characters.")
    elif value != value.strip() or _CONTROL.search(value):
        row.error("external_id", "No control characters, and no spaces at the start or the end.")
    else:
        row.external_id = value


def _clean_attributes(row: _Row, value: Any) -> None:
    if not isinstance(value, dict):
        row.error("attributes", "Enter an object of attribute names and values.")
        return
    for name, item in value.items():
        key = f"attributes.{str(name)[:80]}"
        problem = attribute_name_problem(name) or _json_value_problem(item)
        if problem:
            row.error(key, problem)
        else:
            row.attributes[name] = item


def _clean_identifiers(row: _Row, value: Any) -> None:
    if not isinstance(value, dict):
        row.error("identifiers", 'Enter an object of identifier slots and values, e.g. {"email": "j@example.com"}.')
        return
    for slot, item in value.items():
        key = f"identifiers.{str(slot)[:80]}"
        if slot not in SLOTS:
            row.error(key, f"Unknown identifier slot; known slots: {', '.join(SLOTS)}.")
            continue
        if item is None:
            row.identifiers[slot] = None
            continue
        try:
            row.identifiers[slot] = normalize_identifier(slot, item)
        except ValueError as exc:
            row.error(key, str(exc))


def _clean_row(index: int, raw: Any) -> _Row:
    row = _Row(index=index)
    if not isinstance(raw, dict):
        row.error("non_field_errors", "Enter a profile as an object with at least external_id.")
        return row
    for key in raw:
        if key not in ROW_FIELDS:
            row.error(str(key)[:80], f"Unknown field; a profile has {', '.join(ROW_FIELDS)}.")
    _clean_external_id(row, raw.get("external_id"))
    if "attributes" in raw:
        _clean_attributes(row, raw["attributes"])
    if "identifiers" in raw:
        _clean_identifiers(row, raw["identifiers"])
    if "consent_ads" in raw:
        if isinstance(raw["consent_ads"], bool):
            row.consent_ads = raw["consent_ads"]
        else:
            row.error("consent_ads", "Enter true or false.")
    return row


def _rows_listed(indexes: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in indexes[:limit])
    return shown + (f" and {len(indexes) - limit} more" if len(indexes) > limit else "")


def _check_duplicates(rows: list[_Row]) -> None:
    """The same external id, or the same identifier, on several rows of one call: every such row is refused."""
    by_external_id: dict[str, list[int]] = defaultdict(list)
    by_identifier: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in rows:
        if row.external_id is not None:
            by_external_id[row.external_id].append(row.index)
        for slot, value in row.identifiers.items():
            if value is not None:
                by_identifier[(slot, value)].append(row.index)
    for row in rows:
        indexes = by_external_id.get(row.external_id, []) if row.external_id is not None else []
        if len(indexes) > 1:
            others = [i for i in indexes if i != row.index]
            row.error("external_id", f"Given more than once in this call (also row {_rows_listed(others)}).")
        for slot, value in row.identifiers.items():
            indexes = by_identifier.get((slot, value), []) if value is not None else []
            if len(indexes) > 1:
                others = [i for i in indexes if i != row.index]
                row.error(
                    f"identifiers.{slot}",
                    f"The same identifier is given to row {_rows_listed(others)} of this call; "
                    "an identifier belongs to one profile.",
                )


# ---------------------------------------------------------------------------------------------------------------------
# Set-based SQL (both backends; only quoted table names and placeholders are formatted in)


def _json_param(rows: list) -> str:
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


def _fetch_profiles(external_ids: list[str]) -> dict[str, tuple[int, dict, bool]]:
    """Stored profiles by external id: (id, attributes, consent). Locked until the end of the transaction on
    PostgreSQL (in id order, so concurrent calls do not deadlock)."""
    if not external_ids:
        return {}
    profile = table(Profile)
    if is_postgres():
        sql = (
            f"SELECT id, external_id, attributes::text, consent_ads FROM {profile} "
            "WHERE external_id IN (SELECT unnest(%s::text[])) ORDER BY id FOR UPDATE"
        )
        params: list = [external_ids]
    else:
        sql = (
            f"SELECT id, external_id, attributes, consent_ads FROM {profile} "
            "WHERE external_id IN (SELECT value FROM json_each(%s))"
        )
        params = [_json_param(external_ids)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    return {
        ext: (pk, json.loads(attrs) if isinstance(attrs, str) else (attrs or {}), bool(consent))
        for pk, ext, attrs, consent in found
    }


def _fetch_identifiers(profile_ids: list[int], claims: list[tuple[str, str]]) -> list[tuple[int, int, str, str, str]]:
    """(id, profile_id, slot, value, holder's external id) of the identifiers of `profile_ids` and of the
    identifiers claimed (slot, value), whoever holds them: one query."""
    if not profile_ids and not claims:
        return []
    ident, profile = table(ProfileIdentifier), table(Profile)
    select = (
        f'SELECT i.id, i.profile_id, i.slot, i."value", p.external_id FROM {ident} i '
        f"JOIN {profile} p ON p.id = i.profile_id "
    )
    parts, params = [], []
    if profile_ids:
        where, match_params = ids_match("i.profile_id", profile_ids)
        parts.append(select + "WHERE " + where)
        params += match_params
    if claims:
        if is_postgres():
            parts.append(select + 'WHERE (i.slot, i."value") IN (SELECT * FROM unnest(%s::text[], %s::text[]))')
            params += [[slot for slot, _ in claims], [value for _, value in claims]]
        else:
            parts.append(
                select + 'WHERE (i.slot, i."value") IN '
                "(SELECT json_extract(c.value, '$[0]'), json_extract(c.value, '$[1]') FROM json_each(%s) AS c)"
            )
            params.append(_json_param([list(c) for c in claims]))
    with connection.cursor() as cursor:
        cursor.execute(" UNION ".join(parts), params)
        return cursor.fetchall()


def _upsert_profiles(rows: list[tuple[str, dict, bool]], now) -> dict[str, int]:
    """Insert or update (external_id, attributes, consent) rows in one statement; their ids by external id."""
    if not rows:
        return {}
    profile = table(Profile)
    stamp = connection.ops.adapt_datetimefield_value(now)
    conflict = (
        "ON CONFLICT (external_id) DO UPDATE SET attributes = excluded.attributes, "
        "consent_ads = excluded.consent_ads, updated_at = excluded.updated_at RETURNING id, external_id"
    )
    insert = f"INSERT INTO {profile} (external_id, attributes, consent_ads, created_at, updated_at) "
    if is_postgres():
        sql = (
            insert + "SELECT r.external_id, r.attributes, r.consent_ads, %s, %s "
            "FROM jsonb_to_recordset(%s::jsonb) AS r(external_id text, attributes jsonb, consent_ads boolean) "
            + conflict
        )
        payload = _json_param([{"external_id": e, "attributes": a, "consent_ads": c} for e, a, c in rows])
    else:
        # "WHERE true": SQLite's parser needs it between INSERT … SELECT and ON CONFLICT.
        sql = (
            insert + "SELECT json_extract(r.value, '$[0]'), json_extract(r.value, '$[1]'), "
            "json_extract(r.value, '$[2]'), %s, %s FROM json_each(%s) AS r WHERE true " + conflict
        )
        payload = _json_param([[e, _attributes_text(a), c] for e, a, c in rows])
    with connection.cursor() as cursor:
        cursor.execute(sql, [stamp, stamp, payload])
        return {ext: pk for pk, ext in cursor.fetchall()}


def _delete_identifiers(ids: list[int]) -> None:
    if not ids:
        return
    where, params = ids_match("id", ids)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table(ProfileIdentifier)} WHERE {where}", params)


def _insert_identifiers(rows: list[tuple[int, str, str]]) -> None:
    if not rows:
        return
    ident = table(ProfileIdentifier)
    if is_postgres():
        sql = f'INSERT INTO {ident} (profile_id, slot, "value") '
        sql += "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[])"
        params: list = [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]]
    else:
        sql = (
            f"INSERT INTO {ident} (profile_id, slot, \"value\") SELECT json_extract(r.value, '$[0]'), "
            "json_extract(r.value, '$[1]'), json_extract(r.value, '$[2]') FROM json_each(%s) AS r"
        )
        params = [_json_param([list(r) for r in rows])]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _attributes_text(attributes: dict) -> str:
    # What Django's JSONField stores on SQLite (json.dumps with the default separators).
    return json.dumps(attributes)


def _json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: 1, 1.0 and true differ (Python's == says they are equal); object key order does not."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_json_equal, a, b))
    return a == b


# ---------------------------------------------------------------------------------------------------------------------
# The service


def profile_bulk_upsert(*, rows: Any, partial: bool = False, dry_run: bool = False, actor=None) -> BulkUpsertResult:
    """Validate and upsert up to MAX_BULK_ROWS profiles (see the module docstring for the row format).

    Raises ValidationError({"profiles": [...]}) when `rows` is not a list of at most MAX_BULK_ROWS items,
    ProfileWriteConflict when a concurrent call took an identifier meanwhile (nothing written: retry).
    Invalid rows are returned in `errors`; without `partial` nothing is then written (`written` False).
    """
    if not isinstance(rows, list):
        raise ValidationError({"profiles": ["Enter a list of profiles."]})
    if len(rows) > MAX_BULK_ROWS:
        raise ValidationError({"profiles": [f"At most {MAX_BULK_ROWS} profiles per call; split the list."]})
    cleaned = [_clean_row(index, raw) for index, raw in enumerate(rows)]
    _check_duplicates(cleaned)
    try:
        with transaction.atomic():
            result = _upsert(cleaned, partial=partial, dry_run=dry_run)
    except IntegrityError as exc:
        logger.warning("profiles bulk upsert: conflict with a concurrent write (%s rows), nothing written", len(rows))
        raise ProfileWriteConflict(
            "Another request changed the same profiles or identifiers at the same time; nothing was written. Retry."
        ) from exc
    logger.info(
        "profiles bulk upsert by %s: %s created, %s updated, %s unchanged, %s invalid, written=%s",
        getattr(actor, "pk", None) or "system",
        result.created,
        result.updated,
        result.unchanged,
        len(result.errors),
        result.written,
    )
    return result


def _upsert(rows: list[_Row], *, partial: bool, dry_run: bool) -> BulkUpsertResult:
    stored = _fetch_profiles(sorted({r.external_id for r in rows if r.external_id is not None}))
    claims = sorted({(slot, v) for r in rows for slot, v in r.identifiers.items() if v is not None})
    current: dict[int, dict[str, list[tuple[int, str]]]] = defaultdict(lambda: defaultdict(list))
    holders: dict[tuple[str, str], tuple[int, str | None]] = {}
    for ident_id, profile_id, slot, value, holder_external_id in _fetch_identifiers(
        sorted(pk for pk, _, _ in stored.values()), claims
    ):
        current[profile_id][slot].append((ident_id, value))
        holders[(slot, value)] = (profile_id, holder_external_id)

    result = BulkUpsertResult()
    upserts: list[tuple[str, dict, bool]] = []
    delete_ids: list[int] = []
    inserts: list[tuple[str, str, str]] = []  # (external_id, slot, value): profile ids are known after the upsert
    for row in rows:
        existing = stored.get(row.external_id) if row.external_id is not None else None
        profile_id = existing[0] if existing else None
        for slot, value in row.identifiers.items():
            holder = holders.get((slot, value)) if value is not None else None
            if holder and holder[0] != profile_id:
                name = f'external id "{holder[1]}"' if holder[1] else f"id {holder[0]}"
                row.error(
                    f"identifiers.{slot}",
                    f"Already held by another profile ({name}); remove it there first to move it.",
                )
        attributes = dict(existing[1]) if existing else {}
        attributes_changed = False
        for name, value in row.attributes.items():
            if value is None:
                if name in attributes:
                    del attributes[name]
                    attributes_changed = True
            elif name not in attributes or not _json_equal(attributes[name], value):
                attributes[name] = value
                attributes_changed = True
        size = len(_attributes_text(attributes).encode()) if attributes_changed else 0
        if size > MAX_ATTRIBUTES_BYTES:
            row.error(
                "attributes",
                f"A profile's attributes hold at most {MAX_ATTRIBUTES_BYTES} bytes of JSON; these would be {size}.",
            )
        if row.errors:
            result.errors.append(RowError(row.index, row.errors))
            continue
        consent = row.consent_ads if row.consent_ads is not None else (existing[2] if existing else DEFAULT_CONSENT)
        held = current.get(profile_id, {}) if profile_id else {}
        row_deletes, row_inserts = [], []
        for slot, value in row.identifiers.items():
            have = held.get(slot, [])
            if value is not None and [v for _, v in have] == [value]:
                continue
            row_deletes += [ident_id for ident_id, _ in have]
            if value is not None:
                row_inserts.append((row.external_id, slot, value))
        if existing is None:
            result.created += 1
        elif attributes_changed or row_deletes or row_inserts or consent != existing[2]:
            result.updated += 1
        else:
            result.unchanged += 1
            continue
        upserts.append((row.external_id, attributes, consent))
        delete_ids += row_deletes
        inserts += row_inserts

    if (result.errors and not partial) or dry_run:
        return result
    if upserts:
        ids = _upsert_profiles(sorted(upserts, key=lambda r: r[0]), timezone.now())
        _delete_identifiers(delete_ids)
        _insert_identifiers([(ids[ext], slot, value) for ext, slot, value in inserts])
        result.profile_ids = sorted(ids.values())
        result.written = True
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Reads


def profile_list(*, external_id: str | None = None) -> QuerySet[Profile]:
    """Profiles in id order with their identifiers prefetched; `external_id` filters on the exact id."""
    queryset = Profile.objects.order_by("id").prefetch_related(
        Prefetch("identifiers", queryset=ProfileIdentifier.objects.order_by("id"))
    )
    if external_id is not None:
        queryset = queryset.filter(external_id=external_id)
    return queryset


def profile_identifiers(profile: Profile, *, masked: bool) -> dict[str, str]:
    """The profile's identifiers by slot (the latest value where a slot holds several), masked when asked."""
    values = {i.slot: i.value for i in profile.identifiers.all()}  # prefetched in id order: the latest wins
    return {slot: mask_identifier(slot, value) if masked else value for slot, value in sorted(values.items())}


def mask_identifier(slot: str, value: str) -> str:
    """A recognisable, non-identifying form: email `j•••@example.com`, phone `+31•••••678`, others the first and
    last 2 characters (short values entirely hidden)."""
    if slot == Slot.EMAIL and "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}{MASK}@{domain}"
    if slot == Slot.PHONE and value.startswith("+") and len(value) >= 8:
        return f"{value[:3]}•••••{value[-3:]}"
    if len(value) <= 6:
        return MASK
    return f"{value[:2]}{MASK}{value[-2:]}"
