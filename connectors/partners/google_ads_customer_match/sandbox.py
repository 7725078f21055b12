"""Sandbox emulation of the Data Manager API endpoints Customer Match uses (host datamanager.googleapis.com).

Endpoints:
- `POST /v1/audienceMembers:ingest` and `POST /v1/audienceMembers:remove`: validated as the API does, then answered
  `{"requestId": "<uuid>"}` (`{}` for validateOnly, which counts nothing);
- `GET /v1/accountTypes/{type}/accounts/{id}/userLists/{listId}` and `GET .../userLists` (test connection).

Strict like the API: a bearer token issued by the sandbox token endpoint (else 401 UNAUTHENTICATED), a JSON body
(`Content-Type: application/json`), no unknown fields anywhere (remove takes neither consent nor termsOfService),
enum values checked, 1..10 destinations with a GOOGLE_ADS operating account (10-digit customer ID) and a numeric
list ID, 1..10,000 members each with userData of 1..10 identifiers holding exactly one of emailAddress /
phoneNumber / address, hashes that match the request `encoding` (HEX: 64 hex characters; BASE64: 32 bytes), and
ingest needs `termsOfService.customerMatchTermsOfServiceStatus` ACCEPTED. Invalid requests fail as a whole with
400 INVALID_ARGUMENT, an ErrorInfo and a BadRequest naming each offending field (`audience_members.
audience_members[i]...`), like the API's fast-fail model.

Made-up accounts and lists: any 10-digit customer ID and numeric list ID exist, except that customer IDs starting
with 403 answer 403 PERMISSION_DENIED, list IDs starting with 404 answer 404 NOT_FOUND, and list IDs starting
with 77 are mobile-ID lists (contact data is refused with INVALID_USER_LIST_TYPE).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from typing import Any

from connectors.sandbox import Fault, Request, Response, google_oauth, json_response
from connectors.sandbox.google_oauth import RPC_STATUS_BY_HTTP

NAME = "google_ads_customer_match"
HOST = "/datamanager.googleapis.com"
INGEST = HOST + "/v1/audienceMembers:ingest"
REMOVE = HOST + "/v1/audienceMembers:remove"
ENDPOINTS = (
    ("POST", INGEST, "Data Manager API: add audience members (Customer Match)"),
    ("POST", REMOVE, "Data Manager API: remove audience members (Customer Match)"),
    ("GET", HOST + "/v1/accountTypes/<type>/accounts/<id>/userLists/<listId>", "Data Manager API: read a user list"),
    ("GET", HOST + "/v1/accountTypes/<type>/accounts/<id>/userLists", "Data Manager API: list user lists"),
)
_LIST_PATH = re.compile(re.escape(HOST) + r"/v1/accountTypes/([^/]+)/accounts/([^/]+)/userLists(?:/([^/]+))?")
_LOGIN_HEADER = re.compile(r"accountTypes/([A-Z_]+)/accounts/(\d+)")
_HEX = re.compile(r"[0-9a-fA-F]+")
_CUSTOMER_ID = re.compile(r"\d{10}")
_DIGITS = re.compile(r"\d{1,19}")

MAX_MEMBERS = 10_000
MAX_IDENTIFIERS = 10
MAX_DESTINATIONS = 10
MAX_VIOLATIONS = 100
DOMAIN = "datamanager.googleapis.com"
STANDARD_QUERY = frozenset({"alt", "fields", "prettyPrint", "$.xgafv", "key", "quotaUser", "callback"})

ACCOUNT_TYPES = (
    "ACCOUNT_TYPE_UNSPECIFIED",
    "GOOGLE_ADS",
    "DISPLAY_VIDEO_PARTNER",
    "DISPLAY_VIDEO_ADVERTISER",
    "DATA_PARTNER",
    "GOOGLE_ANALYTICS_PROPERTY",
)
PRODUCTS = ("PRODUCT_UNSPECIFIED", "GOOGLE_ADS", "DISPLAY_VIDEO_PARTNER", "DISPLAY_VIDEO_ADVERTISER", "DATA_PARTNER")
CONSENT = ("CONSENT_STATUS_UNSPECIFIED", "CONSENT_GRANTED", "CONSENT_DENIED")
ENCODINGS = ("ENCODING_UNSPECIFIED", "HEX", "BASE64")
TOS = ("TERMS_OF_SERVICE_STATUS_UNSPECIFIED", "ACCEPTED", "REJECTED")
STATUS_NAMES = RPC_STATUS_BY_HTTP

# Request schemas: field -> "string" | "bool" | ("enum", values) | ("list", item) | {nested object}.
STRING, BOOL, ANY_OBJECT = "string", "bool", "object"
PRODUCT_ACCOUNT = {"product": ("enum", PRODUCTS), "accountId": STRING, "accountType": ("enum", ACCOUNT_TYPES)}
DESTINATION = {
    "reference": STRING,
    "loginAccount": PRODUCT_ACCOUNT,
    "linkedAccount": PRODUCT_ACCOUNT,
    "operatingAccount": PRODUCT_ACCOUNT,
    "productDestinationId": STRING,
}
CONSENT_SCHEMA = {"adUserData": ("enum", CONSENT), "adPersonalization": ("enum", CONSENT)}
ADDRESS = {"givenName": STRING, "familyName": STRING, "regionCode": STRING, "postalCode": STRING}
USER_IDENTIFIER = {"emailAddress": STRING, "phoneNumber": STRING, "address": ADDRESS}
MEMBER = {
    "destinationReferences": ("list", STRING),
    "consent": CONSENT_SCHEMA,
    "userData": {"userIdentifiers": ("list", USER_IDENTIFIER)},
    "pairData": {"pairIds": ("list", STRING)},
    "mobileData": {"mobileIds": ("list", STRING)},
    "userIdData": {"userId": STRING},
    "ppidData": {"ppids": ("list", STRING)},
}
_COMMON = {
    "destinations": ("list", DESTINATION),
    "audienceMembers": ("list", MEMBER),
    "validateOnly": BOOL,
    "encoding": ("enum", ENCODINGS),
    "encryptionInfo": ANY_OBJECT,
}
INGEST_SCHEMA = {
    **_COMMON,
    "consent": CONSENT_SCHEMA,
    "termsOfService": {"customerMatchTermsOfServiceStatus": ("enum", TOS)},
}
REMOVE_SCHEMA = dict(_COMMON)


def match(method: str, path: str):
    if method == "POST":
        if path == INGEST:
            return ("ingest",)
        if path == REMOVE:
            return ("remove",)
        return None
    if method == "GET":
        found = _LIST_PATH.fullmatch(path)
        if found:
            account_type, account_id, list_id = found.groups()
            return (
                ("get_list", account_type, account_id, list_id) if list_id else ("list_lists", account_type, account_id)
            )
    return None


# Answers --------------------------------------------------------------------------------------------------------


def rpc_error(
    status: int,
    message: str,
    *,
    reason: str = "",
    violations: list[dict] | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    retry_delay: int | None = None,
    domain: str = DOMAIN,
) -> Response:
    """A google.rpc.Status answer with an ErrorInfo (and BadRequest / RetryInfo when given)."""
    name = STATUS_NAMES.get(status, "UNKNOWN")
    details: list[dict] = [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason or name, "domain": domain}
    ]
    if violations:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations})
    if retry_delay is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_delay}s"})
    body = {"error": {"code": status, "message": message, "status": name, "details": details}}
    return json_response(status, body, headers=headers)


def invalid(violations: list[dict]) -> Response:
    return rpc_error(400, "There was a problem with the request.", violations=violations)


def unauthenticated(message: str = "", reason: str = "ACCESS_TOKEN_TYPE_UNSUPPORTED") -> Response:
    return rpc_error(
        401,
        message
        or "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
        "valid authentication credential.",
        reason=reason,
        domain="googleapis.com",
        headers=(("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"'),),
    )


def permission_denied() -> Response:
    return rpc_error(403, "The caller does not have permission", reason="PERMISSION_DENIED")


def not_found() -> Response:
    return rpc_error(404, "Requested entity was not found.", reason="NOT_FOUND")


def fault_response(fault: Fault, request: Request) -> Response | None:
    kind = fault.kind
    if kind == "expired_token":
        message = fault.message or "Request had invalid authentication credentials: the access token expired."
        return unauthenticated(message, "ACCESS_TOKEN_EXPIRED")
    if kind == "rate_limit":
        headers = (("Retry-After", str(fault.retry_after)),) if fault.retry_after is not None else ()
        return rpc_error(
            fault.status or 429,
            fault.message or "Resource has been exhausted (e.g. check quota).",
            reason="RATE_LIMIT_EXCEEDED",
            headers=headers,
            retry_delay=fault.retry_after,
        )
    if kind == "server_error":
        status = fault.status or 503
        return rpc_error(status, fault.message or "The service is currently unavailable.")
    if kind == "partner_error":
        status = fault.status or (fault.code if fault.code and 400 <= fault.code < 600 else 400)
        return rpc_error(status, fault.message or "There was a problem with the request.")
    if kind == "gone":  # the list was removed
        return not_found()
    return None  # "slow": answered normally after the delay


# Request validation -----------------------------------------------------------------------------------------------


def _type_name(spec) -> str:
    if spec == STRING:
        return "TYPE_STRING"
    if spec == BOOL:
        return "TYPE_BOOL"
    if isinstance(spec, tuple) and spec[0] == "enum":
        return "TYPE_ENUM"
    return "TYPE_MESSAGE"


def check_schema(value: Any, schema: dict, path: str, errors: list[dict]) -> None:
    """Google's JSON mapping: unknown names and wrong types are refused (camelCase paths, like the API)."""
    for name, field_value in value.items():
        spec = schema.get(name)
        where = f"{path}.{name}" if path else name
        if spec is None:
            errors.append({"field": where, "description": f'Invalid JSON payload received. Unknown name "{name}": '
                           "Cannot find field."})  # fmt: skip
            continue
        _check_value(field_value, spec, where, errors)
        if len(errors) >= MAX_VIOLATIONS:
            return


def _check_value(value: Any, spec, where: str, errors: list[dict]) -> None:
    if value is None:
        return
    bad = f"Invalid value at '{where}' ({_type_name(spec)}), {json.dumps(value)[:80]}"
    if spec == STRING:
        if not isinstance(value, str):
            errors.append({"field": where, "description": bad})
    elif spec == BOOL:
        if not isinstance(value, bool):
            errors.append({"field": where, "description": bad})
    elif spec == ANY_OBJECT:
        if not isinstance(value, dict):
            errors.append({"field": where, "description": bad})
    elif isinstance(spec, tuple) and spec[0] == "enum":
        if not isinstance(value, str) or value not in spec[1]:
            errors.append({"field": where, "description": bad})
    elif isinstance(spec, tuple) and spec[0] == "list":
        if not isinstance(value, list):
            errors.append({"field": where, "description": f"Invalid value at '{where}': expected a list"})
            return
        for i, element in enumerate(value):
            _check_value(element, spec[1], f"{where}[{i}]", errors)
            if len(errors) >= MAX_VIOLATIONS:
                return
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            errors.append({"field": where, "description": bad})
        else:
            check_schema(value, spec, where, errors)


def _violation(field: str, reason: str, description: str = "") -> dict:
    violation = {"field": field, "reason": reason}
    if description:
        violation["description"] = description
    return violation


def _check_account(account: Any, field: str, errors: list[dict]) -> None:
    if not isinstance(account, dict):
        errors.append(_violation(field, "REQUIRED_FIELD_MISSING", "The account is required."))
        return
    account_type = account.get("accountType") or "ACCOUNT_TYPE_UNSPECIFIED"
    product = account.get("product") or "PRODUCT_UNSPECIFIED"
    if account_type == "ACCOUNT_TYPE_UNSPECIFIED" and product == "PRODUCT_UNSPECIFIED":
        errors.append(_violation(f"{field}.account_type", "REQUIRED_FIELD_MISSING", "Account type is required."))
    elif account_type != "ACCOUNT_TYPE_UNSPECIFIED" and product != "PRODUCT_UNSPECIFIED" and account_type != product:
        errors.append(_violation(f"{field}.account_type", "INVALID_ARGUMENT", "Account type and product differ."))
    elif "GOOGLE_ADS" not in (account_type, product):
        errors.append(_violation(field, "INVALID_DESTINATION", "This sandbox serves Google Ads accounts only."))
    account_id = account.get("accountId")
    if not account_id:
        errors.append(_violation(f"{field}.account_id", "REQUIRED_FIELD_MISSING", "Account ID is required."))
    elif not _CUSTOMER_ID.fullmatch(account_id):
        errors.append(
            _violation(f"{field}.account_id", "INVALID_FORMAT", "A Google Ads customer ID is 10 digits, no dashes.")
        )


def _check_destinations(destinations: Any, errors: list[dict]) -> None:
    if not destinations:
        errors.append(_violation("destinations", "REQUIRED_FIELD_MISSING", "At least one destination is required."))
        return
    if len(destinations) > MAX_DESTINATIONS:
        errors.append(_violation("destinations", "TOO_MANY_DESTINATIONS"))
        return
    for i, destination in enumerate(destinations):
        field = f"destinations.destinations[{i}]"
        if not isinstance(destination, dict):
            errors.append(_violation(field, "REQUIRED_FIELD_MISSING"))
            continue
        _check_account(destination.get("operatingAccount"), f"{field}.operating_account", errors)
        if destination.get("loginAccount") is not None:
            _check_account(destination["loginAccount"], f"{field}.login_account", errors)
        list_id = destination.get("productDestinationId")
        if not list_id:
            errors.append(_violation(f"{field}.product_destination_id", "REQUIRED_FIELD_MISSING"))
        elif not _DIGITS.fullmatch(list_id):
            errors.append(_violation(f"{field}.product_destination_id", "INVALID_USER_LIST_ID"))


def hash_problem(value: str, encoding: str) -> str:
    """The ErrorReason for a hashed identifier that does not fit the encoding ("" when it fits)."""
    if encoding == "HEX":
        if not _HEX.fullmatch(value):
            return "INVALID_HEX_ENCODING"
        return "" if len(value) == 64 else "INVALID_SHA256_FORMAT"
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "INVALID_BASE64_ENCODING"
    return "" if len(raw) == 32 else "INVALID_SHA256_FORMAT"


def _check_identifier(identifier: dict, field: str, encoding: str, errors: list[dict]) -> None:
    present = [k for k in ("emailAddress", "phoneNumber", "address") if identifier.get(k) not in (None, "", {})]
    if len(present) != 1:
        errors.append(_violation(field, "INVALID_FORMAT", "Exactly one of email, phone or address is required."))
        return
    kind = present[0]
    if kind == "address":
        address = identifier["address"]
        for name in ("givenName", "familyName"):
            value = address.get(name) or ""
            problem = hash_problem(value, encoding) if value else "REQUIRED_FIELD_MISSING"
            if problem:
                errors.append(_violation(field, problem, f"Address {name} must be hashed."))
        region = address.get("regionCode") or ""
        if not re.fullmatch(r"[A-Za-z]{2}", region):
            errors.append(_violation(field, "INVALID_COUNTRY_CODE", "Region code is two letters (ISO 3166-1)."))
        if not (address.get("postalCode") or "").strip():
            errors.append(_violation(field, "INVALID_POSTAL_CODE"))
        return
    problem = hash_problem(identifier[kind], encoding)
    if problem:
        label = "Email" if kind == "emailAddress" else "Phone number"
        description = {
            "INVALID_HEX_ENCODING": f"{label} is not hex encoded.",
            "INVALID_BASE64_ENCODING": f"{label} is not Base64 encoded.",
        }.get(problem, "")
        errors.append(_violation(field, problem, description))


def _check_members(members: Any, encoding: str, errors: list[dict]) -> int:
    """Validates the members; returns how many there are."""
    if not members:
        errors.append(_violation("audience_members", "REQUIRED_FIELD_MISSING", "At least one member is required."))
        return 0
    if len(members) > MAX_MEMBERS:
        errors.append(_violation("audience_members", "TOO_MANY_AUDIENCE_MEMBERS"))
        return len(members)
    if encoding == "ENCODING_UNSPECIFIED":
        errors.append(_violation("encoding", "REQUIRED_FIELD_MISSING", "Encoding is required for UserData uploads."))
        return len(members)
    for i, member in enumerate(members):
        field = f"audience_members.audience_members[{i}]"
        if not isinstance(member, dict):
            errors.append(_violation(field, "INVALID_AUDIENCE_MEMBER"))
            continue
        kinds = [k for k in ("userData", "pairData", "mobileData", "userIdData", "ppidData") if member.get(k)]
        if kinds != ["userData"]:
            errors.append(_violation(field, "INVALID_AUDIENCE_MEMBER", "Customer Match members carry userData."))
            continue
        identifiers = member["userData"].get("userIdentifiers") or []
        if not identifiers:
            errors.append(_violation(f"{field}.user_data.user_identifiers", "REQUIRED_FIELD_MISSING"))
        elif len(identifiers) > MAX_IDENTIFIERS:
            errors.append(_violation(f"{field}.user_data", "TOO_MANY_USER_IDENTIFIERS"))
        else:
            for identifier in identifiers:
                if not isinstance(identifier, dict):
                    errors.append(_violation(f"{field}.user_data.user_identifiers", "REQUIRED_FIELD_MISSING"))
                    continue
                _check_identifier(identifier, f"{field}.user_data.user_identifiers", encoding, errors)
        if len(errors) >= MAX_VIOLATIONS:
            break
    return len(members)


def _authorised(request: Request) -> bool:
    return google_oauth.valid_bearer(request)


def _query_problem(request: Request, allowed: frozenset[str]) -> Response | None:
    for name in request.query_params():
        if name not in allowed and name not in STANDARD_QUERY:
            return invalid([{"field": name, "description": f'Invalid JSON payload received. Unknown name "{name}": '
                             "Cannot bind query parameter."}])  # fmt: skip
    return None


def _members(request: Request, action: str) -> Response:
    problem = _query_problem(request, frozenset())
    if problem:
        return problem
    if request.content_type != "application/json":
        return invalid([{"field": "", "description": "Invalid JSON payload received: send application/json."}])
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return invalid([{"field": "", "description": "Invalid JSON payload received. Unexpected token."}])
    if not isinstance(body, dict):
        return invalid([{"field": "", "description": "Invalid JSON payload received: a JSON object is expected."}])
    schema_errors: list[dict] = []
    check_schema(body, INGEST_SCHEMA if action == "ingest" else REMOVE_SCHEMA, "", schema_errors)
    if schema_errors:
        return invalid(schema_errors)

    errors: list[dict] = []
    destinations = body.get("destinations") or []
    _check_destinations(destinations, errors)
    count = _check_members(body.get("audienceMembers") or [], body.get("encoding") or "ENCODING_UNSPECIFIED", errors)
    if action == "ingest":
        status = (body.get("termsOfService") or {}).get("customerMatchTermsOfServiceStatus")
        if status != "ACCEPTED":
            errors.append(_violation("terms_of_service", "TERMS_AND_CONDITIONS_NOT_SIGNED"))
    if errors:
        return invalid(errors[:MAX_VIOLATIONS])

    for destination in destinations:
        accounts = [destination["operatingAccount"], destination.get("loginAccount") or {}]
        if any(str(a.get("accountId", "")).startswith("403") for a in accounts):
            return permission_denied()
        list_id = destination["productDestinationId"]
        if list_id.startswith("404"):
            return not_found()
        if list_id.startswith("77"):
            return invalid([_violation("destinations", "INVALID_USER_LIST_TYPE", "The user list takes mobile IDs.")])

    if body.get("validateOnly") is True:
        return json_response(200, {}, stats={"validate_only": 1})
    key = "rows_added" if action == "ingest" else "rows_removed"
    return json_response(200, {"requestId": str(uuid.uuid4())}, stats={key: count * len(destinations)})


def _user_list(account_type: str, account_id: str, list_id: str) -> dict:
    mobile = list_id.startswith("77")
    return {
        "name": f"accountTypes/{account_type}/accounts/{account_id}/userLists/{list_id}",
        "id": list_id,
        "readOnly": False,
        "membershipDuration": "46656000s",
        "displayName": f"Sandbox {'mobile' if mobile else 'customer'} list {list_id}",
        "membershipStatus": "OPEN",
        "accessReason": "OWNED",
        "accountAccessStatus": "ENABLED",
        "ingestedUserListInfo": {"uploadKeyTypes": ["MOBILE_ID" if mobile else "CONTACT_ID"]},
    }


def _lists(request: Request, route: tuple) -> Response:
    kind, account_type, account_id = route[:3]
    problem = _query_problem(request, frozenset({"pageSize", "pageToken", "filter"} if kind == "list_lists" else ()))
    if problem:
        return problem
    if account_type not in ACCOUNT_TYPES or account_type == "ACCOUNT_TYPE_UNSPECIFIED":
        return invalid([_violation("name", "INVALID_ENUM_VALUE", f"Unknown account type {account_type[:40]}.")])
    if account_type != "GOOGLE_ADS" or not _CUSTOMER_ID.fullmatch(account_id):
        return invalid([_violation("name", "INVALID_FORMAT", "A Google Ads customer ID is 10 digits, no dashes.")])
    login = request.headers.get("login-account")
    login_id = ""
    if login is not None:
        found = _LOGIN_HEADER.fullmatch(login.strip())
        if not found or found.group(1) != "GOOGLE_ADS" or not _CUSTOMER_ID.fullmatch(found.group(2)):
            expected = "Expected accountTypes/{type}/accounts/{id}."
            return invalid([_violation("login-account", "INVALID_FORMAT", expected)])
        login_id = found.group(2)
    if account_id.startswith("403") or login_id.startswith("403"):
        return permission_denied()
    if kind == "get_list":
        list_id = route[3]
        if not _DIGITS.fullmatch(list_id):
            return invalid([_violation("name", "INVALID_USER_LIST_ID")])
        if list_id.startswith("404"):
            return not_found()
        return json_response(200, _user_list(account_type, account_id, list_id), stats={"lists_read": 1})
    page_size = request.query_params().get("pageSize", "50")
    if not page_size.isdigit():
        description = f"Invalid value at 'page_size' (TYPE_INT32), {page_size[:20]}"
        return invalid([{"field": "page_size", "description": description}])
    lists = [_user_list(account_type, account_id, "5550000001")][: max(1, int(page_size))]
    return json_response(200, {"userLists": lists}, stats={"lists_read": 1})


def handle(request: Request, route: tuple, state: Any) -> Response:
    if not _authorised(request):
        missing = not request.headers.get("authorization")
        return unauthenticated(reason="CREDENTIALS_MISSING" if missing else "ACCESS_TOKEN_TYPE_UNSUPPORTED")
    if route[0] in ("ingest", "remove"):
        return _members(request, route[0])
    return _lists(request, route)


# Statistics -------------------------------------------------------------------------------------------------------


def new_stats() -> dict[str, Any]:
    return {"requests": 0, "errors": 0, "rows_added": 0, "rows_removed": 0, "validate_only": 0, "lists_read": 0}


def apply_stats(stats: dict[str, Any], deltas: dict[str, Any]) -> None:
    for key, value in deltas.items():
        stats[key] = stats.get(key, 0) + value


def export_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return dict(stats)
