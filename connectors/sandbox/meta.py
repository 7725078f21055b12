"""Meta Custom Audiences emulation (Graph API): `POST`/`DELETE /v<N>.0/<audience_id>/users`, `GET /v<N>.0/act_<id>`.

Validation follows the public reference: access token (190), object id (100/33), `payload` with a known schema,
1..10,000 rows, SHA-256 lower-case hex for hashed keys, lower-case UUID-like MADID. Invalid rows are counted in
`num_invalid_entries`; `invalid_entry_samples` lists up to 10 of them as sent (Meta documents `{}` when there are
none and does not document the non-empty shape, so clients should accept a list or an object). Errors use Meta's
envelope `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`, HTTP 400 (500 for the temporary
codes 1 and 2).

The row check is the hot path: see "Row validation" below.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from itertools import chain
from typing import Any
from urllib.parse import parse_qsl

from connectors.sandbox import Fault, Request, Response, json_response

NAME = "meta"
MAX_ROWS = 10_000
MAX_SAMPLES = 10
MIN_TOKEN_LENGTH = 20

_HEX = b"0123456789abcdef"

HASH, MADID, ANY = "hash", "madid", "any"
SINGLE_KEY_SCHEMAS = {"EMAIL_SHA256": HASH, "PHONE_SHA256": HASH, "MOBILE_ADVERTISER_ID": MADID}
MULTI_KEYS = {
    "EXTERN_ID": ANY,
    "EMAIL": HASH,
    "PHONE": HASH,
    "GEN": HASH,
    "DOBY": HASH,
    "DOBM": HASH,
    "DOBD": HASH,
    "LN": HASH,
    "FN": HASH,
    "FI": HASH,
    "CT": HASH,
    "ST": HASH,
    "ZIP": HASH,
    "COUNTRY": HASH,
    "MADID": MADID,
}

INVALID_TOKEN = "Invalid OAuth access token - Cannot parse access token"
UNSUPPORTED = (
    "Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be loaded due to missing "
    "permissions, or does not support this operation. Please read the Graph API documentation at "
    "https://developers.facebook.com/docs/graph-api"
)
# Messages for injected partner errors, by code (a fault's own `message` wins).
MESSAGES = {
    1: "An unknown error occurred",
    2: "Service temporarily unavailable",
    4: "(#4) Application request limit reached",
    10: "(#10) Application does not have permission for this action",
    17: "(#17) User request limit reached",
    100: "(#100) Invalid parameter",
    190: INVALID_TOKEN,
    200: "(#200) Permissions error",
    613: "(#613) There have been too many calls from this ad-account. Please wait a bit and try again.",
    803: "(#803) Some of the aliases you requested do not exist",
    2650: (
        "(#2650) Failed to update the custom audience: This audience was created from data source "
        "FILE_IMPORTED.MULTI_HASHES, which does not support data source FILE_IMPORTED.HASHES_OR_USER_IDS."
    ),
    80003: (
        "(#80003) There have been too many calls to this ad-account. Wait a bit and try again. For more info, "
        "please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting."
    ),
}
DEFAULT_SUBCODES = {17: 2446079, 613: 1487742}
TRANSIENT_CODES = {1, 2, 4, 17, 341, 613}


# Routing -------------------------------------------------------------------------------------------------------


def _is_version(segment: str) -> bool:
    return len(segment) > 3 and segment[0] == "v" and segment.endswith(".0") and segment[1:-2].isdigit()


def match(method: str, path: str) -> tuple[str, str] | None:
    parts = path.split("/")
    if len(parts) < 3 or parts[0] or not _is_version(parts[1]):
        return None
    if len(parts) == 4 and parts[3] == "users" and method in ("POST", "DELETE"):
        return ("users", parts[2])
    if len(parts) == 3 and method == "GET" and parts[2]:
        return ("account" if parts[2].startswith("act_") else "object", parts[2])
    return None


# Errors --------------------------------------------------------------------------------------------------------


def error(
    code: int,
    message: str,
    *,
    subcode: int | None = None,
    type_: str = "OAuthException",
    status: int | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if subcode is not None:
        body["error_subcode"] = subcode
    if code in TRANSIENT_CODES or 80000 <= code < 81000:
        body["is_transient"] = True
    body.update(extra)
    body["fbtrace_id"] = secrets.token_urlsafe(8)
    return json_response(status or (500 if code in (1, 2) else 400), {"error": body}, headers=headers)


def invalid_parameter(message: str) -> Response:
    return error(100, f"(#100) {message}")


def _expired_message() -> str:
    now = time.time()
    fmt = "%A, %d-%b-%y %H:%M:%S UTC"
    expired, current = time.strftime(fmt, time.gmtime(now - 3600)), time.strftime(fmt, time.gmtime(now))
    return f"Error validating access token: Session has expired on {expired}. The current time is {current}."


def fault_response(fault: Fault, request: Request) -> Response | None:
    kind = fault.kind
    if kind == "slow":
        return None
    if kind == "expired_token":
        return error(190, fault.message or _expired_message(), subcode=fault.subcode or 463, status=fault.status)
    if kind == "rate_limit":
        code = fault.code or 613
        headers = (("Retry-After", str(fault.retry_after)),) if fault.retry_after is not None else ()
        return error(
            code,
            fault.message or MESSAGES.get(code, f"(#{code}) Rate limit reached"),
            subcode=fault.subcode or DEFAULT_SUBCODES.get(code),
            status=fault.status,
            headers=headers,
        )
    if kind == "server_error":
        code = fault.code or 2
        return error(
            code, fault.message or MESSAGES.get(code, MESSAGES[2]), subcode=fault.subcode, status=fault.status or 500
        )
    if kind == "partner_error":
        code = fault.code or 2650
        return error(
            code,
            fault.message or MESSAGES.get(code, f"(#{code}) Sandbox partner error"),
            subcode=fault.subcode,
            status=fault.status,
        )
    if kind == "gone":  # the audience (or ad account) was deleted
        method = request.method.lower()
        parts = request.path.split("/")
        object_id = parts[2] if len(parts) > 2 else ""
        return error(
            100,
            UNSUPPORTED.format(method=method, object_id=object_id),
            subcode=fault.subcode or 33,
            type_="GraphMethodException",
            status=fault.status,
        )
    return None


# Parameters ----------------------------------------------------------------------------------------------------


def _multipart(body: bytes, content_type_header: str) -> dict[str, str]:
    boundary = ""
    for part in content_type_header.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise ValueError("multipart body without boundary")
    fields: dict[str, str] = {}
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, value = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-disposition:") and 'name="' in line:
                name = line.split('name="', 1)[1].split('"', 1)[0]
                fields[name] = value.removesuffix(b"\r\n").decode()
    return fields


def params(request: Request) -> dict[str, Any]:
    """Query parameters overlaid with the body's (JSON object, form-encoded or multipart). Raises ValueError."""
    result: dict[str, Any] = request.query_params()
    body = request.body
    if not body:
        return result
    ctype = request.content_type
    if ctype == "application/x-www-form-urlencoded":
        result.update(parse_qsl(body.decode(), keep_blank_values=True))
    elif ctype == "multipart/form-data":
        result.update(_multipart(body, request.headers.get("content-type", "")))
    else:  # JSON, whatever the content type says
        parsed = json.loads(body)
        if not isinstance(parsed, dict):
            raise ValueError("body is not a JSON object")
        result.update(parsed)
    return result


def access_token(request: Request, values: dict[str, Any]) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if token and scheme.lower() in ("bearer", "oauth"):
        return token.strip()
    token = values.get("access_token")
    return token if isinstance(token, str) else ""


# Row validation (hot path) -------------------------------------------------------------------------------------
#
# A whole column is checked with a few C-level passes: join the values with "," (a TypeError means a value is not a
# string), then the separators must sit exactly every width+1 bytes, the UUID dashes at their offsets, and deleting
# the hex digits must leave exactly the separators and dashes. When a column fails, it is bisected with the same
# check, and only small failing slices are checked row by row (so a few bad rows cost little more than none).

_WIDTHS = {HASH: (64, ()), MADID: (36, (8, 13, 18, 23))}
_ROW_BY_ROW = 64


def _fixed_width_valid(values: list | tuple, width: int, dashes: tuple[int, ...]) -> bool:
    n = len(values)
    if not n:
        return True
    try:
        raw = ",".join(values).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        return False
    step = width + 1
    if len(raw) != step * n - 1 or raw[width::step] != b"," * (n - 1):
        return False
    dash_run = b"-" * n
    if any(raw[pos::step] != dash_run for pos in dashes):
        return False
    return raw.translate(None, _HEX) == (b"-" * len(dashes) + b",") * (n - 1) + b"-" * len(dashes)


def column_valid(kind: str, values: list | tuple, allow_empty: bool = False) -> bool:
    """True when every value is valid for the kind ("" allowed in multi-key columns)."""
    if allow_empty:
        filled = list(filter(None, values))
        if len(filled) + values.count("") != len(values):  # a falsy value that is not "" (null, 0, [])
            return False
        values = filled
    if kind == ANY:
        try:
            ",".join(values)  # strings only
        except TypeError:
            return False
        return allow_empty or all(values)
    width, dashes = _WIDTHS[kind]
    return _fixed_width_valid(values, width, dashes)


def _valid_fixed(value: Any, width: int, dashes: tuple[int, ...]) -> bool:
    if type(value) is not str or len(value) != width:
        return False
    try:
        rest = value.encode("ascii").translate(None, _HEX)
    except UnicodeEncodeError:
        return False
    return rest == b"-" * len(dashes) and all(value[pos] == "-" for pos in dashes)


def _valid_hash(value: Any) -> bool:
    return _valid_fixed(value, 64, ())


def _valid_madid(value: Any) -> bool:
    return _valid_fixed(value, 36, _WIDTHS[MADID][1])


def _valid_any(value: Any) -> bool:
    return type(value) is str and value != ""


CHECKS = {HASH: _valid_hash, MADID: _valid_madid, ANY: _valid_any}


def _single_valid(check, row: Any) -> bool:
    return check(row[0] if type(row) is list and len(row) == 1 else row)


def _multi_valid(checks: list, row: Any) -> bool:
    if type(row) is not list or len(row) != len(checks):
        return False
    filled = False
    for check, value in zip(checks, row, strict=True):
        if value != "":
            if not check(value):
                return False
            filled = True
    return filled


def _find_invalid(rows: list, start: int, end: int, fast, slow, out: list[int], known_bad: bool = False) -> None:
    """Append to `out` the indices in rows[start:end] that fail `slow`, pruning valid slices with `fast`.

    `known_bad`: the slice is known to hold an invalid row (its sibling passed), so it is not checked again.
    """
    if end - start <= _ROW_BY_ROW:
        out.extend(i for i in range(start, end) if not slow(rows[i]))
    elif known_bad or not fast(rows[start:end]):
        mid = (start + end) // 2
        before = len(out)
        _find_invalid(rows, start, mid, fast, slow, out)
        _find_invalid(rows, mid, end, fast, slow, out, known_bad=len(out) == before)


def validate_rows(kinds: list[str], data: list) -> tuple[int, list]:
    """(number of invalid rows, up to 10 of them as sent)."""
    if len(kinds) == 1:
        kind = kinds[0]
        check = CHECKS[kind]
        rows = data
        if type(data[0]) is list and set(map(type, data)) == {list} and set(map(len, data)) == {1}:
            rows = list(chain.from_iterable(data))  # [["<hash>"], …]: check the values, report the rows

        def fast(chunk):
            return column_valid(kind, chunk)

        def slow(row):
            return _single_valid(check, row)

    else:
        checks = [CHECKS[kind] for kind in kinds]
        empty_row = [""] * len(kinds)
        rows = data

        def fast(chunk):
            if set(map(type, chunk)) != {list} or empty_row in chunk:
                return False
            try:
                columns = zip(*chunk, strict=True)
                return all(column_valid(k, col, True) for k, col in zip(kinds, columns, strict=True))
            except ValueError:  # rows of different lengths
                return False

        def slow(row):
            return _multi_valid(checks, row)

    if fast(rows):
        return 0, []
    bad: list[int] = []
    _find_invalid(rows, 0, len(rows), fast, slow, bad, known_bad=True)
    return len(bad), [data[i] for i in bad[:MAX_SAMPLES]]


def schema_kinds(schema: Any) -> list[str] | None:
    """The kind of check for each column, or None when the schema is not one Meta accepts."""
    if isinstance(schema, list) and len(schema) == 1:
        schema = schema[0]
    if isinstance(schema, str):
        kind = SINGLE_KEY_SCHEMAS.get(schema) or MULTI_KEYS.get(schema)
        return [kind] if kind else None
    if isinstance(schema, list) and schema and all(isinstance(k, str) for k in schema):
        if len(set(schema)) != len(schema) or not all(k in MULTI_KEYS for k in schema):
            return None
        return [MULTI_KEYS[k] for k in schema]
    return None


# Endpoints -----------------------------------------------------------------------------------------------------


def _session_id(values: dict[str, Any]) -> str:
    session = values.get("session")
    if isinstance(session, str):
        try:
            session = json.loads(session)
        except ValueError:
            session = None
    if isinstance(session, dict) and session.get("session_id") not in (None, ""):
        return str(session["session_id"])
    return str(random.randrange(10**17, 10**19))


def _fields(values: dict[str, Any], node: dict[str, Any], node_type: str) -> Response:
    requested = values.get("fields")
    if not requested:
        return json_response(200, node)
    result = {"id": node["id"]}
    for name in str(requested).split(","):
        name = name.strip()
        if not name:
            continue
        if name not in node:
            return invalid_parameter(f"Tried accessing nonexisting field ({name}) on node type ({node_type})")
        result[name] = node[name]
    return json_response(200, result)


def handle(request: Request, route: tuple[str, str], state: Any) -> Response:
    kind, object_id = route
    header_token = access_token(request, {})
    try:
        values = params(request)
    except (ValueError, UnicodeDecodeError):
        if not header_token:
            return error(190, INVALID_TOKEN)
        return invalid_parameter("The request body could not be parsed: send JSON or form-encoded parameters")
    token = header_token or access_token(request, values)
    if len(token) < MIN_TOKEN_LENGTH:
        return error(190, INVALID_TOKEN)

    method = request.method.lower()
    if kind == "account":
        digits = object_id[4:]
        if not digits.isdigit():
            return error(
                100, UNSUPPORTED.format(method=method, object_id=object_id), subcode=33, type_="GraphMethodException"
            )
        node = {"id": object_id, "account_id": digits, "name": "Sandbox ad account", "account_status": 1}
        return _fields(values, node, "AdAccount")
    if not object_id.isdigit():
        return error(
            100, UNSUPPORTED.format(method=method, object_id=object_id), subcode=33, type_="GraphMethodException"
        )
    if kind == "object":
        node = {"id": object_id, "name": f"Sandbox audience {object_id}", "subtype": "CUSTOM"}
        return _fields(values, node, "CustomAudience")

    payload = values.get("payload")
    if payload is None:
        return invalid_parameter("The parameter payload is required")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return invalid_parameter("Param payload must be a JSON-encoded object")
    if not isinstance(payload, dict):
        return invalid_parameter("Param payload must be a JSON-encoded object")
    kinds = schema_kinds(payload.get("schema"))
    if kinds is None:
        return invalid_parameter(
            "Invalid schema: use EMAIL_SHA256, PHONE_SHA256, MOBILE_ADVERTISER_ID or a list of multi-key fields "
            "(" + ", ".join(MULTI_KEYS) + ")"
        )
    data = payload.get("data")
    if not isinstance(data, list) or not data:
        return invalid_parameter("Param payload[data] must be a non-empty array")
    if len(data) > MAX_ROWS:
        return invalid_parameter(
            f"Too many users in one request: {len(data)} were sent, the maximum is {MAX_ROWS}. "
            "Split the upload into several requests."
        )

    invalid, samples = validate_rows(kinds, data)
    received = len(data)
    added = request.method == "POST"
    stats = {"rows_added" if added else "rows_removed": received - invalid, "rows_invalid": invalid}
    body = {
        "audience_id": object_id,
        "session_id": _session_id(values),
        "num_received": received,
        "num_invalid_entries": invalid,
        "invalid_entry_samples": samples,
    }
    return json_response(200, body, stats=stats)


# Statistics ----------------------------------------------------------------------------------------------------


def new_stats() -> dict[str, Any]:
    return {"requests": 0, "rows_added": 0, "rows_removed": 0, "rows_invalid": 0, "errors": 0}


def apply_stats(stats: dict[str, Any], deltas: dict[str, Any]) -> None:
    for key, value in deltas.items():
        stats[key] += value


def export_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return dict(stats)
