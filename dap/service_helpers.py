"""Small pieces every app's services share: merging field errors, the actor of a change, a required name."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

NAME_MAX_LENGTH = 200
# The range of a 64-bit integer column (ids, and whole numbers the database compares): beyond it the database driver
# refuses the value (SQLite: OverflowError; PostgreSQL: out of range) instead of finding no row.
MIN_INT64, MAX_INT64 = -(2**63), 2**63 - 1
MAX_ID = MAX_INT64


def is_id(value: Any) -> bool:
    """Whether `value` (decoded JSON) can be an object id: a whole number from 1 to MAX_ID."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def merge_errors(*errors: ValidationError) -> ValidationError:
    """One ValidationError holding every field's messages of `errors` (so a form or the API shows them all)."""
    merged: dict[str, list[str]] = {}
    for err in errors:
        for field, messages in err.message_dict.items():
            merged.setdefault(field, []).extend(messages)
    return ValidationError(merged)


def actor_user(actor):
    """The actor as a stored user reference (None for the system or an unsaved user)."""
    return actor if getattr(actor, "pk", None) else None


def actor_name(actor, *, system: str = "") -> str:
    """The actor's username; `system` when there is none."""
    name = getattr(actor, "get_username", lambda: "")() if actor is not None else ""
    return name or system


def required_name(name: Any, field: str = "name", max_length: int = NAME_MAX_LENGTH) -> str:
    """A required, stripped name of at most `max_length` characters."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError({field: ["This field is required."]})
    name = name.strip()
    if len(name) > max_length:
        raise ValidationError({field: [f"Ensure this value has at most {max_length} characters."]})
    return name
