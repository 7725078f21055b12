"""What every API operation accepts as input, shared by the apps' serializers and settings: object ids in the
database's range, JSON the database can store, and a ceiling on the page size. Each turns input the database cannot
take into a 400 with a message instead of a 500.

JSON the database can store: no U+0000 in any text or object key (PostgreSQL keeps it in neither text nor jsonb:
"unsupported Unicode escape sequence"), and only finite numbers (Python reads 1e400 as infinity, which is not JSON
and which no column takes). Nesting deeper than Python's JSON decoder goes (about 1,000 levels) is a 400 too.
"""

import json
import math

from rest_framework import pagination, parsers, serializers
from rest_framework.exceptions import ParseError

from dap.service_helpers import MAX_ID

NULL_CHARACTER_MESSAGE = "Null characters are not allowed."
NOT_FINITE_MESSAGE = "Numbers must be finite."


class IdField(serializers.IntegerField):
    """An object id in a request: a whole number from 1 to MAX_ID (anything else is a 400, not a 500)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str):
    """json.loads for request bodies: finite numbers only, no NaN/Infinity; ValueError for anything else wrong,
    too deep nesting included."""
    try:
        return json.loads(text, parse_float=_finite_float, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("the JSON nests too deeply") from None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]) reading with `loads`: a number out of range or
    nesting too deep is a 400 "JSON parse error", not a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", "utf-8")
        raw = stream.read() if stream is not None else b""
        try:
            return loads(raw.decode(encoding))
        except ValueError as exc:  # UnicodeDecodeError included
            raise ParseError(f"JSON parse error - {exc}") from None


def storage_problem(value) -> str:
    """Why a decoded JSON value cannot be stored (see the module docstring), or ""."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return NULL_CHARACTER_MESSAGE
        elif isinstance(item, float):
            if not math.isfinite(item):
                return NOT_FINITE_MESSAGE
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return ""


def storable_json(value) -> None:
    """Validator for JSON and dict fields (DRF's CharField refuses null characters itself)."""
    problem = storage_problem(value)
    if problem:
        raise serializers.ValidationError(problem)


class JSONField(serializers.JSONField):
    """DRF's JSONField, storable (`storable_json`); a form field holding JSON nested too deeply is a 400 as well."""

    def __init__(self, **kwargs):
        kwargs["validators"] = [*kwargs.get("validators", ()), storable_json]
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except RecursionError:
            self.fail("invalid")


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's limit/offset pagination with a ceiling on `limit` (a larger one gets max_limit rows): an unbounded limit
    would ask the database for any number of rows, and overflow its integer beyond 2^63."""

    max_limit = 1000
