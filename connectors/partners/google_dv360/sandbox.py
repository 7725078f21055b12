"""Display & Video 360 API v4 emulation for the local partner sandbox (Customer Match members, and what the client's
test connection reads). Paths are under `/displayvideo.googleapis.com`; access tokens come from the shared Google
OAuth emulation (`connectors/sandbox/google_oauth.py`) and are checked with its `valid_bearer`.

- `POST /v4/firstPartyAndPartnerAudiences/{id}:editCustomerMatchMembers`: JSON body with `advertiserId` and at most
  one added list (`addedContactInfoList` | `addedMobileDeviceIdList`) and one removed list (`removed…`), at least one
  of them. Unknown fields are refused as Google's JSON parser does; contact infos carry SHA-256 hex digests
  (`hashedEmails`, `hashedPhoneNumbers`, `hashedFirstName`, `hashedLastName`), `zipCodes` and `countryCode` plain,
  the four address fields together; mobile device ids are IDFA/AAID UUIDs. A list holds 1 to 500,000 members (each
  email, each phone and each address of a contact info counts as one). `consent` values are ConsentStatus names and
  CONSENT_STATUS_DENIED fails the request. Answer: `{"firstPartyAndPartnerAudienceId": "<id>"}`.
- `GET /v4/firstPartyAndPartnerAudiences/{id}?advertiserId=|partnerId=` (exactly one accessor): the audience.
- `GET /v4/advertisers/{id}`: the advertiser.

Sandbox conventions (the emulation has no database): any int64 id exists, except ids starting with "404" (NOT_FOUND)
and "403" (PERMISSION_DENIED, advertiser or audience). Audience ids starting with "8" are CUSTOMER_MATCH_DEVICE_ID
audiences, all others CUSTOMER_MATCH_CONTACT_INFO; the wrong kind of list is refused with INVALID_ARGUMENT.
Errors use google.rpc's envelope `{"error": {"code", "message", "status", "details"}}`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from connectors.sandbox import Fault, Request, Response, json_response
from connectors.sandbox.google_oauth import RPC_STATUS_BY_HTTP, valid_bearer

NAME = "google_dv360"
HOST = "/displayvideo.googleapis.com"
VERSION = "v4"
MAX_MEMBERS = 500_000
DEVICE_AUDIENCE_PREFIX = "8"
NOT_FOUND_PREFIX = "404"
FORBIDDEN_PREFIX = "403"
INT64_MAX = 2**63 - 1
SANDBOX_PARTNER_ID = "1000"
ENDPOINTS = (
    (
        "POST",
        f"{HOST}/v4/firstPartyAndPartnerAudiences/<id>:editCustomerMatchMembers",
        "DV360 Customer Match: add/remove members",
    ),
    ("GET", f"{HOST}/v4/firstPartyAndPartnerAudiences/<id>?advertiserId=<id>", "DV360 first-party audience"),
    ("GET", f"{HOST}/v4/advertisers/<id>", "DV360 advertiser (test connection)"),
)

_EDIT = re.compile(r"/v4/firstPartyAndPartnerAudiences/([^/:]+):editCustomerMatchMembers")
_AUDIENCE = re.compile(r"/v4/firstPartyAndPartnerAudiences/([^/:]+)")
_ADVERTISER = re.compile(r"/v4/advertisers/([^/:]+)")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_SYSTEM_PARAMS = frozenset({"alt", "fields", "prettyPrint", "key", "quotaUser", "$.xgafv", "callback"})

CONSENT_STATUSES = ("CONSENT_STATUS_UNSPECIFIED", "CONSENT_STATUS_GRANTED", "CONSENT_STATUS_DENIED")
TOP_FIELDS = {
    "advertiserId": "advertiser_id",
    "addedContactInfoList": "added_contact_info_list",
    "addedMobileDeviceIdList": "added_mobile_device_id_list",
    "removedContactInfoList": "removed_contact_info_list",
    "removedMobileDeviceIdList": "removed_mobile_device_id_list",
}
CONTACT_LIST_FIELDS = {"contactInfos": "contact_infos", "consent": "consent"}
DEVICE_LIST_FIELDS = {"mobileDeviceIds": "mobile_device_ids", "consent": "consent"}
CONSENT_FIELDS = {"adUserData": "ad_user_data", "adPersonalization": "ad_personalization"}
CONTACT_FIELDS = {
    "hashedEmails": "hashed_emails",
    "hashedPhoneNumbers": "hashed_phone_numbers",
    "zipCodes": "zip_codes",
    "hashedFirstName": "hashed_first_name",
    "hashedLastName": "hashed_last_name",
    "countryCode": "country_code",
}
ADDRESS_FIELDS = ("hashedFirstName", "hashedLastName", "zipCodes", "countryCode")

RPC_BY_HTTP = RPC_STATUS_BY_HTTP
UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid "
    "authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
DEFAULT_MESSAGES = {
    "INVALID_ARGUMENT": "Request contains an invalid argument.",
    "PERMISSION_DENIED": "The caller does not have permission",
    "NOT_FOUND": "Requested entity was not found.",
    "RESOURCE_EXHAUSTED": "Resource has been exhausted (e.g. check quota).",
    "INTERNAL": "Internal error encountered.",
    "UNAVAILABLE": "The service is currently unavailable.",
    "DEADLINE_EXCEEDED": "The request timed out. Please try again.",
    "ABORTED": "The operation was aborted.",
    "FAILED_PRECONDITION": "Precondition check failed.",
}


NOT_HASHED = "The value is not a SHA-256 hash: hash it before uploading."


class Invalid(Exception):
    """A request the API refuses with 400 INVALID_ARGUMENT; `field` is the proto path of the field at fault."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field


# Errors --------------------------------------------------------------------------------------------------------


def error(
    http_status: int,
    message: str = "",
    *,
    status: str = "",
    details: list[dict[str, Any]] | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Response:
    status = status or RPC_BY_HTTP.get(http_status, "UNKNOWN")
    body: dict[str, Any] = {"code": http_status, "message": message or DEFAULT_MESSAGES.get(status, status)}
    body["status"] = status
    if details:
        body["details"] = details
    return json_response(http_status, {"error": body}, headers=headers)


def _error_info(reason: str, method: str = "") -> dict[str, Any]:
    metadata = {"service": "displayvideo.googleapis.com"}
    if method:
        metadata["method"] = method
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": metadata,
    }


def unauthenticated(reason: str = "ACCESS_TOKEN_TYPE_UNSUPPORTED", message: str = "") -> Response:
    return error(
        401,
        message or UNAUTHENTICATED_MESSAGE,
        details=[_error_info(reason)],
        headers=(("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/", error="invalid_token"'),),
    )


def invalid(exc: Invalid) -> Response:
    details = None
    if exc.field:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": exc.field, "description": exc.message}],
            }
        ]
    return error(400, exc.message, details=details)


def fault_response(fault: Fault, request: Request) -> Response | None:
    kind = fault.kind
    if kind == "expired_token":
        return unauthenticated("ACCESS_TOKEN_EXPIRED", fault.message or "")
    if kind == "rate_limit":
        headers = (("Retry-After", str(fault.retry_after)),) if fault.retry_after is not None else ()
        return error(fault.status or 429, fault.message or "", status="RESOURCE_EXHAUSTED", headers=headers)
    if kind == "server_error":
        return error(fault.status or 503, fault.message or "")
    if kind == "partner_error":
        status = fault.status or (fault.code if fault.code and 400 <= fault.code <= 599 else 400)
        return error(status, fault.message or "")
    if kind == "gone":  # the audience (or advertiser) was deleted
        return error(fault.status or 404, fault.message or "", status="NOT_FOUND")
    return None  # "slow": delayed, then answered normally


# Routing -------------------------------------------------------------------------------------------------------


def match(method: str, path: str):
    """("edit" | "audience" | "advertiser" | "unknown", id) for any path under the API host."""
    if not path.startswith(HOST + "/"):
        return None
    rest = path[len(HOST) :]
    for kind, pattern in (("edit", _EDIT), ("audience", _AUDIENCE), ("advertiser", _ADVERTISER)):
        found = pattern.fullmatch(rest)
        if found:
            return kind, found.group(1)
    return "unknown", ""


def _int64(value: Any) -> str:
    """The canonical digits of an int64 given as a JSON string or number, or "" when it is not one."""
    if type(value) is int:
        value = str(value)
    if not isinstance(value, str) or not value.isdigit() or not value.isascii():
        return ""
    return str(int(value)) if int(value) <= INT64_MAX else ""


def _forbidden_or_missing(*ids: str) -> Response | None:
    for ident in ids:
        if ident.startswith(FORBIDDEN_PREFIX):
            return error(403, details=[_error_info("PERMISSION_DENIED")])
        if ident.startswith(NOT_FOUND_PREFIX):
            return error(404)
    return None


def audience_type(audience_id: str) -> str:
    return (
        "CUSTOMER_MATCH_DEVICE_ID" if audience_id.startswith(DEVICE_AUDIENCE_PREFIX) else "CUSTOMER_MATCH_CONTACT_INFO"
    )


def handle(request: Request, route: tuple[str, str], state: Any) -> Response:
    kind, raw_id = route
    expected = {"edit": "POST", "audience": "GET", "advertiser": "GET"}.get(kind)
    if expected is None or request.method != expected:
        return error(404, "Method not found.")
    if not valid_bearer(request):
        missing = not request.headers.get("authorization")
        return unauthenticated("CREDENTIALS_MISSING" if missing else "ACCESS_TOKEN_TYPE_UNSUPPORTED")
    ident = _int64(raw_id)
    path_field = "advertiser_id" if kind == "advertiser" else "first_party_and_partner_audience_id"
    if not ident:
        return invalid(Invalid(f"Invalid value at '{path_field}' (TYPE_INT64), \"{raw_id[:40]}\"", path_field))
    if kind == "edit":
        return _edit(request, ident)
    unknown = sorted(set(request.query_params()) - _SYSTEM_PARAMS - ({"advertiserId", "partnerId"}))
    if unknown:
        name = unknown[0]
        message = f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter.'
        return invalid(Invalid(message))
    if request.body:
        return invalid(Invalid("The request body must be empty."))
    if kind == "advertiser":
        return _forbidden_or_missing(ident) or json_response(200, _advertiser(ident))
    return _get_audience(request, ident)


def _advertiser(advertiser_id: str) -> dict[str, Any]:
    return {
        "name": f"advertisers/{advertiser_id}",
        "advertiserId": advertiser_id,
        "partnerId": SANDBOX_PARTNER_ID,
        "displayName": f"Sandbox advertiser {advertiser_id}",
        "entityStatus": "ENTITY_STATUS_ACTIVE",
        "generalConfig": {"domainUrl": "https://www.example.com", "currencyCode": "EUR"},
    }


def _get_audience(request: Request, audience_id: str) -> Response:
    params = request.query_params()
    accessors = {k: params[k] for k in ("advertiserId", "partnerId") if k in params}
    if len(accessors) != 1:
        return invalid(Invalid("Exactly one of advertiserId or partnerId must be set.", "accessor"))
    name, value = next(iter(accessors.items()))
    accessor = _int64(value)
    if not accessor:
        field = "advertiser_id" if name == "advertiserId" else "partner_id"
        return invalid(Invalid(f"Invalid value at '{field}' (TYPE_INT64), \"{value[:40]}\"", field))
    refused = _forbidden_or_missing(accessor, audience_id)
    if refused is not None:
        return refused
    return json_response(
        200,
        {
            "name": f"firstPartyAndPartnerAudiences/{audience_id}",
            "firstPartyAndPartnerAudienceId": audience_id,
            "displayName": f"Sandbox Customer Match audience {audience_id}",
            "firstPartyAndPartnerAudienceType": "TYPE_FIRST_PARTY",
            "audienceType": audience_type(audience_id),
            "audienceSource": "AUDIENCE_SOURCE_UNSPECIFIED",
            "membershipDurationDays": "540",
        },
    )


# editCustomerMatchMembers --------------------------------------------------------------------------------------


def _check_fields(obj: Any, allowed: dict[str, str], path: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        where = f" at '{path}'" if path else ""
        raise Invalid(f"Invalid JSON payload received. Expected an object{where}.", path)
    for name in obj:
        if name not in allowed:
            prefix = f"{path}." if path else ""
            raise Invalid(f"Invalid JSON payload received. Unknown name \"{name}\" at '{prefix}': Cannot find field.")
    return obj


def _strings(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"Invalid JSON payload received. Expected a list of strings at '{path}'.", path)
    return value


def _consent(value: Any, path: str) -> None:
    consent = _check_fields(value, CONSENT_FIELDS, path)
    for name, proto in CONSENT_FIELDS.items():
        if name not in consent:
            continue
        status = consent[name]
        if status not in CONSENT_STATUSES:
            raise Invalid(
                f"Invalid value at '{path}.{proto}' (type.googleapis.com/google.ads.displayvideo.v4.ConsentStatus), "
                f'"{str(status)[:40]}"',
                f"{path}.{proto}",
            )
        if status == "CONSENT_STATUS_DENIED":
            raise Invalid(f"Consent status CONSENT_STATUS_DENIED is not allowed for {proto}.", f"{path}.{proto}")


def _contact_members(value: Any, path: str) -> int:
    contact_list = _check_fields(value, CONTACT_LIST_FIELDS, path)
    if "consent" in contact_list:
        _consent(contact_list["consent"], f"{path}.consent")
    infos = contact_list.get("contactInfos")
    if not isinstance(infos, list) or not infos:
        raise Invalid("contact_infos must contain at least one contact info.", f"{path}.contact_infos")
    members = 0
    for position, info in enumerate(infos):
        where = f"{path}.contact_infos[{position}]"
        info = _check_fields(info, CONTACT_FIELDS, where)
        for name in ("hashedEmails", "hashedPhoneNumbers"):
            values = _strings(info.get(name, []), f"{where}.{CONTACT_FIELDS[name]}")
            for value in values:
                if not _HEX64.fullmatch(value):
                    raise Invalid(NOT_HASHED, f"{where}.{CONTACT_FIELDS[name]}")
            members += len(values)
        present = [name for name in ADDRESS_FIELDS if info.get(name) not in (None, "", [])]
        if present:
            if len(present) != len(ADDRESS_FIELDS):
                missing = ", ".join(CONTACT_FIELDS[n] for n in ADDRESS_FIELDS if n not in present)
                message = f"Address matching needs first name, last name, zip code and country code; missing {missing}."
                raise Invalid(message, where)
            for name in ("hashedFirstName", "hashedLastName"):
                if not isinstance(info[name], str) or not _HEX64.fullmatch(info[name]):
                    raise Invalid(NOT_HASHED, f"{where}.{CONTACT_FIELDS[name]}")
            zips = _strings(info["zipCodes"], f"{where}.zip_codes")
            if not all(z.strip() for z in zips):
                raise Invalid("Zip codes must not be empty.", f"{where}.zip_codes")
            if not isinstance(info["countryCode"], str) or not _COUNTRY.fullmatch(info["countryCode"]):
                raise Invalid("country_code must be a two-letter ISO 3166-1 code, not hashed.", f"{where}.country_code")
            members += 1
        elif not any(info.get(name) for name in ("hashedEmails", "hashedPhoneNumbers")):
            raise Invalid("A contact info needs an email, a phone number or a full address.", where)
    if members > MAX_MEMBERS:
        raise Invalid(f"Too many members: {members} after splitting contact_infos, the maximum is {MAX_MEMBERS}.", path)
    return members


def _device_members(value: Any, path: str) -> int:
    device_list = _check_fields(value, DEVICE_LIST_FIELDS, path)
    if "consent" in device_list:
        _consent(device_list["consent"], f"{path}.consent")
    ids = _strings(device_list.get("mobileDeviceIds", []), f"{path}.mobile_device_ids")
    if not ids:
        raise Invalid("mobile_device_ids must contain at least one id.", f"{path}.mobile_device_ids")
    if len(ids) > MAX_MEMBERS:
        message = f"Too many mobile device ids: {len(ids)}, the maximum is {MAX_MEMBERS}."
        raise Invalid(message, f"{path}.mobile_device_ids")
    for value in ids:
        if not _UUID.fullmatch(value):
            raise Invalid("A mobile device id must be an IDFA or AAID (UUID format).", f"{path}.mobile_device_ids")
    return len(ids)


def _edit(request: Request, audience_id: str) -> Response:
    if request.content_type != "application/json":
        return invalid(Invalid("Invalid JSON payload received. Send the request body as application/json."))
    try:
        body = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        return invalid(Invalid("Invalid JSON payload received. Unexpected token."))
    try:
        body = _check_fields(body, TOP_FIELDS, "")
        advertiser_id = _int64(body.get("advertiserId"))
        if not advertiser_id:
            raise Invalid("advertiser_id is required and must be an int64.", "advertiser_id")
        for union, names in (
            ("added_members", ("addedContactInfoList", "addedMobileDeviceIdList")),
            ("removed_members", ("removedContactInfoList", "removedMobileDeviceIdList")),
        ):
            if all(name in body for name in names):
                raise Invalid(
                    f'Invalid JSON payload received. Oneof field "{union}" is already set. Cannot set "{names[1]}"'
                )
        lists = [name for name in TOP_FIELDS if name != "advertiserId" and name in body]
        if not lists:
            raise Invalid("At least one of added_members or removed_members must be set.")
        refused = _forbidden_or_missing(advertiser_id, audience_id)
        if refused is not None:
            return refused
        wanted = audience_type(audience_id)
        counts = {"rows_added": 0, "rows_removed": 0}
        for name in lists:
            device = "MobileDeviceId" in name
            if device != (wanted == "CUSTOMER_MATCH_DEVICE_ID"):
                raise Invalid(
                    f"{TOP_FIELDS[name]} cannot be used with audience {audience_id} of type {wanted}.", TOP_FIELDS[name]
                )
            members = (_device_members if device else _contact_members)(body[name], TOP_FIELDS[name])
            counts["rows_added" if name.startswith("added") else "rows_removed"] += members
    except Invalid as exc:
        return invalid(exc)
    return json_response(200, {"firstPartyAndPartnerAudienceId": audience_id}, stats=counts)


# Statistics ----------------------------------------------------------------------------------------------------


def new_stats() -> dict[str, Any]:
    return {"requests": 0, "errors": 0, "rows_added": 0, "rows_removed": 0}


def apply_stats(stats: dict[str, Any], deltas: dict[str, Any]) -> None:
    for key, value in deltas.items():
        stats[key] = stats.get(key, 0) + value


def export_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return dict(stats)
