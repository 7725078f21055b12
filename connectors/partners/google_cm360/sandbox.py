"""Campaign Manager 360 emulation (API v5): `conversions.batchinsert` and `userProfiles.get`.

Paths (under the sandbox's /c/<scope> prefix):
    POST /dfareporting.googleapis.com/dfareporting/v5/userprofiles/<profileId>/conversions/batchinsert
    GET  /dfareporting.googleapis.com/dfareporting/v5/userprofiles/<profileId>

Strict like the real service: a bearer token issued by the sandbox's Google token endpoint (else 401
UNAUTHENTICATED); only the standard query parameters (alt=json, $.xgafv, fields, prettyPrint, quotaUser); an int64
profile id; a JSON body whose field names and types follow the Conversion resource (unknown names and wrong types are
refused for the whole request with 400 INVALID_ARGUMENT, as Google's JSON parser does); 1..1,000 conversions.

Each conversion is then checked on its own and, like CM360's partial-failure model, answered in `status[]` (request
order) with `errors[].code` INVALID_ARGUMENT (required fields, exactly one identifier among gclid / dclid / matchId /
mobileDeviceId / encryptedUserId / encryptedUserIdCandidates / impressionId, gclid and device id formats, timestamp in
microseconds within the last 28 days, one Floodlight configuration per request, userIdentifiers hashes), NOT_FOUND,
PERMISSION_DENIED or INTERNAL. `hasFailures` is true when any failed.

Deterministic triggers for tests: profile ids starting with 404 do not exist (404) and with 403 are not the user's
(403); a Floodlight activity id starting with 404 is unknown (row NOT_FOUND); a configuration id starting with 403 is
not accessible (row PERMISSION_DENIED); an identifier value starting with "unknown" matches no click or tag (row
NOT_FOUND) and one starting with "internal" fails with a row INTERNAL.

Statistics: conversions received / recorded / deduplicated / failed (by code), recorded per activity. De-duplication
follows CM360: the same configuration, activity, identifier, (UTC) day and ordinal count once.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from connectors.sandbox import Fault, Request, Response, json_response
from connectors.sandbox.google_oauth import RPC_STATUS_BY_HTTP, valid_bearer

NAME = "google_cm360"
HOST = "dfareporting.googleapis.com"
PREFIX = f"/{HOST}/dfareporting/"
VERSION = "v5"
ENDPOINTS = (
    (
        "POST",
        f"/{HOST}/dfareporting/v5/userprofiles/<profileId>/conversions/batchinsert",
        "CM360 conversions.batchinsert",
    ),
    ("GET", f"/{HOST}/dfareporting/v5/userprofiles/<profileId>", "CM360 userProfiles.get"),
)
MAX_CONVERSIONS = 1_000
MAX_AGE_MICROS = 28 * 24 * 3600 * 1_000_000
FUTURE_SKEW_MICROS = 5 * 60 * 1_000_000
INT64_MAX = 2**63 - 1
REQUEST_KIND = "dfareporting#conversionsBatchInsertRequest"
RESPONSE_KIND = "dfareporting#conversionsBatchInsertResponse"
CONVERSION_KIND = "dfareporting#conversion"
STATUS_KIND = "dfareporting#conversionStatus"
ERROR_KIND = "dfareporting#conversionError"
QUERY_PARAMS = frozenset({"alt", "$.xgafv", "fields", "prettyPrint", "quotaUser"})
ROW_CODES = ("INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "INTERNAL")

STATUS_NAMES = RPC_STATUS_BY_HTTP
LEGACY_REASONS = {
    400: "invalid",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}
UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid "
    "authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)

IDENTIFIER_FIELDS = (
    "encryptedUserId",
    "encryptedUserIdCandidates",
    "matchId",
    "mobileDeviceId",
    "gclid",
    "dclid",
    "impressionId",
)
INT64_FIELDS = ("floodlightConfigurationId", "floodlightActivityId", "timestampMicros", "quantity")
STRING_FIELDS = (
    "kind",
    "encryptedUserId",
    "mobileDeviceId",
    "ordinal",
    "gclid",
    "matchId",
    "dclid",
    "impressionId",
    "sessionAttributesEncoded",
)
BOOL_FIELDS = ("limitAdTracking", "childDirectedTreatment", "nonPersonalizedAd", "treatmentForUnderage")
LIST_FIELDS = ("customVariables", "encryptedUserIdCandidates", "userIdentifiers")
CONVERSION_FIELDS = frozenset(
    {*INT64_FIELDS, *STRING_FIELDS, *BOOL_FIELDS, *LIST_FIELDS, "value", "adUserDataConsent", "cartData"}
)
CONSENT_VALUES = ("GRANTED", "DENIED")
REQUIRED_FIELDS = (
    "floodlightConfigurationId",
    "floodlightActivityId",
    "timestampMicros",
    "ordinal",
    "quantity",
    "value",
)

_CLICK_ID = re.compile(r"[A-Za-z0-9_-]{10,512}")
_DEVICE_ID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CUSTOM_VARIABLE = re.compile(r"U([1-9]|[1-9][0-9]|100)")


class Invalid(Exception):
    """The request cannot be parsed as Google's JSON mapping of the proto: 400 for the whole request."""


# Routing -------------------------------------------------------------------------------------------------------


def match(method: str, path: str) -> tuple[str, str] | None:
    if not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX) :].split("/")
    if len(parts) < 3 or parts[0] != VERSION or parts[1] != "userprofiles" or not parts[2]:
        return None
    if len(parts) == 3 and method == "GET":
        return ("profile", parts[2])
    if len(parts) == 5 and parts[3:] == ["conversions", "batchinsert"] and method == "POST":
        return ("batchinsert", parts[2])
    return None


# Errors (google.rpc status with the legacy `errors[]` list Google still sends for this API) ----------------------


def rpc_error(
    status: int,
    message: str,
    *,
    reason: str | None = None,
    domain: str = "global",
    headers: tuple[tuple[str, str], ...] = (),
) -> Response:
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason or LEGACY_REASONS.get(status, "error")}],
            "status": STATUS_NAMES.get(status, "UNKNOWN"),
        }
    }
    return json_response(status, body, headers=headers)


def invalid_argument(message: str) -> Response:
    return rpc_error(400, message)


def unauthenticated(message: str | None = None) -> Response:
    return rpc_error(
        401,
        message or UNAUTHENTICATED_MESSAGE,
        headers=(("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"'),),
    )


def rate_limited(fault: Fault) -> Response:
    headers = (("Retry-After", str(fault.retry_after)),) if fault.retry_after is not None else ()
    if fault.status == 429:
        return rpc_error(
            429,
            fault.message or "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'.",
            reason="rateLimitExceeded",
            domain="usageLimits",
            headers=headers,
        )
    # CM360 answers its per-minute quota with 403 userRateLimitExceeded (its quota documentation).
    return rpc_error(
        fault.status or 403,
        fault.message or "User Rate Limit Exceeded",
        reason="userRateLimitExceeded",
        domain="usageLimits",
        headers=headers,
    )


def fault_response(fault: Fault, request: Request) -> Response | None:
    kind = fault.kind
    if kind == "slow":
        return None
    if kind == "expired_token":
        return unauthenticated(fault.message)
    if kind == "rate_limit":
        return rate_limited(fault)
    if kind == "server_error":
        status = fault.status or 503
        return rpc_error(
            status,
            fault.message
            or ("Internal error encountered." if status == 500 else "The service is currently unavailable."),
        )
    if kind == "gone":
        return rpc_error(fault.status or 404, fault.message or "User profile not found.")
    if kind == "partner_error":
        status = fault.status or fault.code or 400
        if status == 200:
            return _all_rows_fail(request, fault.message)
        return rpc_error(status, fault.message or f"Sandbox partner error ({STATUS_NAMES.get(status, status)}).")
    return None


def _all_rows_fail(request: Request, message: str | None) -> Response | None:
    """A 200 whose every conversion failed (the fault's message names the row code, INVALID_ARGUMENT by default)."""
    try:
        body = json.loads(request.body)
        conversions = body["conversions"]
        count = len(conversions)
    except (ValueError, KeyError, TypeError):
        return None  # not a batchinsert the emulation can answer that way: handle it normally
    code = message if message in ROW_CODES else "INVALID_ARGUMENT"
    text = message if message and message not in ROW_CODES else f"Sandbox conversion error ({code})."
    statuses = [_status(c, [(code, text)]) for c in conversions]
    stats = {"received": count, "failed": {code: count}, "recorded": []}
    return json_response(200, {"hasFailures": True, "status": statuses, "kind": RESPONSE_KIND}, stats=stats)


# Parsing (request-level, 400) ----------------------------------------------------------------------------------


def _int64(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise Invalid(f"Invalid value at '{where}' (TYPE_INT64), {json.dumps(value)}")
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value)
    ):
        number = int(value)
    else:
        raise Invalid(f"Invalid value at '{where}' (TYPE_INT64), {json.dumps(value)}")
    if not -(2**63) <= number <= INT64_MAX:
        raise Invalid(f"Invalid value at '{where}' (TYPE_INT64), {json.dumps(value)}")
    return number


def _double(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise Invalid(f"Invalid value at '{where}' (TYPE_DOUBLE), {json.dumps(value)}")
    try:
        number = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        number = None
    if number is None or not math.isfinite(number):
        raise Invalid(f"Invalid value at '{where}' (TYPE_DOUBLE), {json.dumps(value)}")
    return number


def _parse_conversion(raw: Any, n: int) -> dict[str, Any]:
    where = f"conversions[{n}]"
    if not isinstance(raw, dict):
        raise Invalid(f"Invalid value at '{where}' (type.googleapis.com/dfareporting.Conversion), {json.dumps(raw)}")
    for name in raw:
        if name not in CONVERSION_FIELDS:
            raise Invalid(f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field.")
    parsed: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None:
            continue
        at = f"{where}.{name}"
        if name in INT64_FIELDS:
            parsed[name] = _int64(value, at)
        elif name == "value":
            parsed[name] = _double(value, at)
        elif name in STRING_FIELDS:
            if not isinstance(value, str):
                raise Invalid(f"Invalid value at '{at}' (TYPE_STRING), {json.dumps(value)}")
            parsed[name] = value
        elif name in BOOL_FIELDS:
            if not isinstance(value, bool):
                raise Invalid(f"Invalid value at '{at}' (TYPE_BOOL), {json.dumps(value)}")
            parsed[name] = value
        elif name == "adUserDataConsent":
            if value not in CONSENT_VALUES:
                raise Invalid(
                    f"Invalid value at '{at}' (type.googleapis.com/dfareporting.ConsentStatus), {json.dumps(value)}"
                )
            parsed[name] = value
        elif name in LIST_FIELDS:
            if not isinstance(value, list):
                raise Invalid(f"Invalid value at '{at}', {json.dumps(value)}: expected a list")
            if name == "encryptedUserIdCandidates" and not all(isinstance(v, str) for v in value):
                raise Invalid(f"Invalid value at '{at}' (TYPE_STRING)")
            if name != "encryptedUserIdCandidates" and not all(isinstance(v, dict) for v in value):
                raise Invalid(f"Invalid value at '{at}': expected objects")
            parsed[name] = value
        else:  # cartData
            if not isinstance(value, dict):
                raise Invalid(f"Invalid value at '{at}': expected an object")
            parsed[name] = value
    return parsed


# Row checks (partial failure, in status[]) ---------------------------------------------------------------------


def _identifier(conversion: dict[str, Any]) -> tuple[str, str] | None:
    present = [f for f in IDENTIFIER_FIELDS if conversion.get(f) not in (None, "", [])]
    if len(present) != 1:
        return None
    field = present[0]
    value = conversion[field]
    return field, ",".join(value) if isinstance(value, list) else value


def _user_identifier_errors(identifiers: list[dict]) -> str | None:
    if len(identifiers) > 5:
        return "At most 5 user identifiers may be given per conversion."
    for identifier in identifiers:
        kinds = [k for k in ("hashedEmail", "hashedPhoneNumber", "addressInfo") if identifier.get(k)]
        if len(kinds) != 1 or set(identifier) - {"hashedEmail", "hashedPhoneNumber", "addressInfo"}:
            return "Each user identifier must set exactly one of hashedEmail, hashedPhoneNumber or addressInfo."
        value = identifier[kinds[0]]
        if kinds[0] != "addressInfo" and not (isinstance(value, str) and _SHA256.fullmatch(value)):
            return f"{kinds[0]} must be a SHA-256 hash in lower-case hexadecimal."
    return None


def _row_errors(conversion: dict[str, Any], configuration: int | None, has_encryption: bool, now_us: int):
    """[(code, message)] for one conversion; empty when it would be recorded."""
    missing = [f for f in REQUIRED_FIELDS if conversion.get(f) in (None, "")]
    if missing:
        return [("INVALID_ARGUMENT", f"{name} is a required field.") for name in missing]
    if conversion.get("kind", CONVERSION_KIND) != CONVERSION_KIND:
        return [("INVALID_ARGUMENT", f"kind must be {CONVERSION_KIND}.")]
    identifier = _identifier(conversion)
    if identifier is None:
        return [
            (
                "INVALID_ARGUMENT",
                "Exactly one of encryptedUserId, encryptedUserIdCandidates[], matchId, mobileDeviceId, gclid, dclid "
                "or impressionId must be set.",
            )
        ]
    field, value = identifier
    if field in ("encryptedUserId", "encryptedUserIdCandidates") and not has_encryption:
        return [("INVALID_ARGUMENT", "encryptionInfo is required with encrypted user ids.")]
    if field in ("gclid", "dclid") and not _CLICK_ID.fullmatch(value):
        return [("INVALID_ARGUMENT", f"The {field} is not a valid click identifier.")]
    if field == "mobileDeviceId" and not _DEVICE_ID.fullmatch(value):
        return [("INVALID_ARGUMENT", "The mobile device ID must be an IDFA, AdID or CTV IFA (8-4-4-4-12 hex).")]
    if field == "matchId" and len(value) > 256:
        return [("INVALID_ARGUMENT", "The match ID is longer than 256 characters.")]
    timestamp = conversion["timestampMicros"]
    if timestamp > now_us + FUTURE_SKEW_MICROS:
        return [("INVALID_ARGUMENT", "The conversion timestamp is in the future.")]
    if timestamp < now_us - MAX_AGE_MICROS:
        return [("INVALID_ARGUMENT", "The conversion timestamp is more than 28 days old (timestampMicros is in µs).")]
    if conversion["quantity"] < 0:
        return [("INVALID_ARGUMENT", "quantity must not be negative.")]
    if not conversion["ordinal"].strip():
        return [("INVALID_ARGUMENT", "ordinal is a required field.")]
    if conversion["floodlightConfigurationId"] != configuration:
        return [("INVALID_ARGUMENT", "All conversions of a request must use the same Floodlight configuration.")]
    problem = _user_identifier_errors(conversion.get("userIdentifiers") or [])
    if problem:
        return [("INVALID_ARGUMENT", problem)]
    for variable in conversion.get("customVariables") or []:
        if not _CUSTOM_VARIABLE.fullmatch(str(variable.get("type"))) or len(str(variable.get("value", ""))) > 100:
            return [("INVALID_ARGUMENT", "Custom Floodlight variables are U1..U100 with values of at most 100 chars.")]
    if str(conversion["floodlightConfigurationId"]).startswith("403"):
        return [("PERMISSION_DENIED", "The user profile has no access to this Floodlight configuration.")]
    if str(conversion["floodlightActivityId"]).startswith("404"):
        return [("NOT_FOUND", f"Floodlight activity {conversion['floodlightActivityId']} was not found.")]
    lowered = value.lower()
    if lowered.startswith("unknown"):
        return [("NOT_FOUND", f"No click, device or Floodlight event matches this {field}.")]
    if lowered.startswith("internal"):
        return [("INTERNAL", "Internal error encountered.")]
    return []


def _status(raw: Any, errors: list[tuple[str, str]]) -> dict[str, Any]:
    status: dict[str, Any] = {"conversion": raw, "kind": STATUS_KIND}
    if errors:
        status["errors"] = [{"code": code, "message": message, "kind": ERROR_KIND} for code, message in errors]
    return status


# Endpoints -----------------------------------------------------------------------------------------------------


def _profile_problem(profile_id: str) -> Response | None:
    if not re.fullmatch(r"\d{1,19}", profile_id) or int(profile_id) > INT64_MAX:
        return invalid_argument(f"Invalid value at 'profile_id' (TYPE_INT64), \"{profile_id}\"")
    if profile_id.startswith("404"):
        return rpc_error(404, f"User profile {profile_id} not found.")
    if profile_id.startswith("403"):
        return rpc_error(403, "The current user does not have permission to access the requested profile.")
    return None


def _query_problem(request: Request) -> Response | None:
    params = request.query_params()
    for name in params:
        if name not in QUERY_PARAMS:
            return invalid_argument(
                f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter. Field '
                f"'{name}' could not be found in request message."
            )
    if params.get("alt", "json") != "json":
        return invalid_argument("Only alt=json is supported by this method.")
    return None


def handle(request: Request, route: tuple[str, str], state: Any) -> Response:
    kind, profile_id = route
    if not valid_bearer(request):
        return unauthenticated()
    problem = _query_problem(request) or _profile_problem(profile_id)
    if problem is not None:
        return problem
    if kind == "profile":
        body = {
            "kind": "dfareporting#userProfile",
            "etag": '"sandbox"',
            "profileId": profile_id,
            "userName": "sandbox.user",
            "accountId": "1000001",
            "accountName": "Sandbox Campaign Manager account",
        }
        return json_response(200, body, stats={"profile_reads": 1})
    return _batchinsert(request)


def _batchinsert(request: Request) -> Response:
    if request.content_type != "application/json":
        return invalid_argument("Invalid JSON payload received. The request must be sent as application/json.")
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return invalid_argument("Invalid JSON payload received. Unexpected token.")
    if not isinstance(body, dict):
        return invalid_argument("Invalid JSON payload received. Expected an object.")
    for name in body:
        if name not in ("kind", "conversions", "encryptionInfo"):
            return invalid_argument(f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
    if body.get("kind", REQUEST_KIND) != REQUEST_KIND:
        return invalid_argument(f"kind must be {REQUEST_KIND}.")
    raw_conversions = body.get("conversions")
    if raw_conversions is not None and not isinstance(raw_conversions, list):
        return invalid_argument("Invalid value at 'conversions': expected a list of Conversion objects.")
    if not raw_conversions:
        return invalid_argument("conversions: at least one conversion is required.")
    if len(raw_conversions) > MAX_CONVERSIONS:
        return invalid_argument(
            f"Too many conversions in one request: {len(raw_conversions)} (at most {MAX_CONVERSIONS})."
        )
    encryption = body.get("encryptionInfo")
    if encryption is not None and not isinstance(encryption, dict):
        return invalid_argument("Invalid value at 'encryption_info': expected an object.")
    try:
        conversions = [_parse_conversion(raw, n) for n, raw in enumerate(raw_conversions)]
    except Invalid as exc:
        return invalid_argument(str(exc))

    now_us = time.time_ns() // 1000
    configuration = conversions[0].get("floodlightConfigurationId")
    statuses = []
    failed: dict[str, int] = {}
    recorded: list[tuple] = []
    for raw, conversion in zip(raw_conversions, conversions, strict=True):
        errors = _row_errors(conversion, configuration, bool(encryption), now_us)
        statuses.append(_status(raw, errors))
        if errors:
            failed[errors[0][0]] = failed.get(errors[0][0], 0) + 1
            continue
        field, value = _identifier(conversion)
        day = conversion["timestampMicros"] // (86_400 * 1_000_000)
        key = (configuration, conversion["floodlightActivityId"], field, value, day, conversion["ordinal"])
        recorded.append(key)
    stats = {"received": len(conversions), "failed": failed, "recorded": recorded}
    answer = {"hasFailures": bool(failed), "status": statuses, "kind": RESPONSE_KIND}
    return json_response(200, answer, stats=stats)


# Statistics ----------------------------------------------------------------------------------------------------


def new_stats() -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "profile_reads": 0,
        "conversions_received": 0,
        "conversions_recorded": 0,
        "conversions_deduplicated": 0,
        "conversions_failed": 0,
        "failures": {},
        "activities": {},
        "_seen": set(),
    }


def apply_stats(stats: dict[str, Any], deltas: dict[str, Any]) -> None:
    stats["profile_reads"] += deltas.get("profile_reads", 0)
    stats["conversions_received"] += deltas.get("received", 0)
    for code, n in deltas.get("failed", {}).items():
        stats["conversions_failed"] += n
        stats["failures"][code] = stats["failures"].get(code, 0) + n
    seen = stats["_seen"]
    for key in deltas.get("recorded", ()):
        if key in seen:
            stats["conversions_deduplicated"] += 1
            continue
        seen.add(key)
        stats["conversions_recorded"] += 1
        activity = str(key[1])
        stats["activities"][activity] = stats["activities"].get(activity, 0) + 1


def export_stats(stats: dict[str, Any]) -> dict[str, Any]:
    plain = {k: v for k, v in stats.items() if not k.startswith("_")}
    return {**plain, "failures": dict(stats["failures"]), "activities": dict(stats["activities"])}
