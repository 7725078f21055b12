"""The Trade Desk emulation: CRM data drops and uploads, the reads test_connection makes, real-time first-party data.

Endpoints (paths as the sandbox sees them, `/<real host>/<real path>`):
- `POST /api.thetradedesk.com/v3/crmdata/segment/<advertiserId>/<crmDataId>`: opens a file drop. Needs `TTD-Auth`,
  a JSON object `{"PiiType", "MergeMode", "RetentionEnabled"?}` (PiiType Email, EmailHashedUnifiedId2, Phone or
  PhoneHashedUnifiedId2; MergeMode Add or Replace; RetentionEnabled a boolean) and nothing else. Answers
  `{"ReferenceId", "Url"}`; the Url is a pre-signed-looking address on this sandbox (same scope), valid one hour.
- `PUT /thetradedesk-crm-data.s3.us-east-1.amazonaws.com/data/advertiser/<adv>/drop/<ref>/pii?X-Amz-…`: the upload,
  answered like S3 (empty 200, or an XML `<Error>`). Strict: the drop must exist, the signature match, the URL not be
  expired, the body be `text/plain`, and no TTD-Auth header may reach the storage host. Lines are checked against
  the drop's PiiType (Base64 SHA-256, 44 characters, for the hashed types). S3 accepts any file; The Trade Desk
  refuses files under 1,500 valid records while processing them, which the statistics show
  (`uploads_refused_below_minimum`), as does each segment's size after Add/Replace (`segments`).
- `GET /api.thetradedesk.com/v3/advertiser/<advertiserId>` and `GET …/v3/crmdata/segment/<adv>/<crm>`: the reads.
- `POST /<use|usw|euw|sin|tok>-data.adsrvr.org/data/advertiser`: real-time data. `TtdSignature` must be the Base64
  HMAC-SHA1 of the raw body keyed with the advertiser secret; in the sandbox every advertiser's secret is
  `SANDBOX_ADVERTISER_SECRET`. 1..10,000 items, each one id (TDID as a UUID) and `Data: [{Name, TTLInMinutes}]`;
  unreadable ids come back in `FailedLines` ("… item #n"), like The Trade Desk does.

Ids: The Trade Desk's advertiser and CRM data ids are 7 lower-case letters or digits (e.g. "a1b2c3d"); other ids
are unknown (404). Tokens: at least 20 characters without spaces; tokens starting with "expired" or "revoked" are
refused (401). Errors use TTD's `{"Message", "ErrorDetails": [{"Property", "Reasons"}]}` body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from typing import Any

from connectors.sandbox import Fault, Request, Response, json_response

NAME = "the_trade_desk"
API_HOST = "api.thetradedesk.com"
DROP_HOST = "thetradedesk-crm-data.s3.us-east-1.amazonaws.com"
REALTIME_REGIONS = ("use", "usw", "euw", "sin", "tok")
SANDBOX_ADVERTISER_SECRET = "sandbox-advertiser-secret"
MIN_RECORDS = 1_500
MAX_REALTIME_ITEMS = 10_000
MAX_TTL_MINUTES = 180 * 24 * 60
DROP_TTL_SECONDS = 3600
MAX_DROPS = 10_000
MIN_TOKEN_LENGTH = 20

PII_TYPES = ("Email", "EmailHashedUnifiedId2", "Phone", "PhoneHashedUnifiedId2")
MERGE_MODES = ("Add", "Replace")
REALTIME_ID_KEYS = ("TDID", "DAID", "UID2", "EUID", "IDL", "UID2Token", "EUIDToken")

ENDPOINTS = (
    ("POST", f"/{API_HOST}/v3/crmdata/segment/<advertiserId>/<crmDataId>", "The Trade Desk CRM data: open a drop"),
    ("PUT", f"/{DROP_HOST}/data/advertiser/<advertiserId>/drop/<referenceId>/pii", "The Trade Desk CRM file drop"),
    ("GET", f"/{API_HOST}/v3/crmdata/segment/<advertiserId>/<crmDataId>", "The Trade Desk CRM data segment"),
    ("GET", f"/{API_HOST}/v3/advertiser/<advertiserId>", "The Trade Desk advertiser (test connection)"),
    ("POST", "/<region>-data.adsrvr.org/data/advertiser", "The Trade Desk real-time first-party data"),
)

_ID = re.compile(r"[a-z0-9]{7}")
_B64_SHA256 = re.compile(r"[A-Za-z0-9+/]{43}=")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SIGNING_KEY = secrets.token_bytes(32)  # signs the sandbox's drop URLs

# Open drops by ReferenceId (the drop URL names it); bounded, oldest dropped first.
_drops: dict[str, dict[str, Any]] = {}
_drops_lock = threading.Lock()


# Routing -------------------------------------------------------------------------------------------------------


def match(method: str, path: str) -> tuple[str, ...] | None:
    parts = path.split("/")
    if len(parts) < 3 or parts[0]:
        return None
    host = parts[1]
    rest = parts[2:]
    if host == API_HOST:
        if len(rest) == 5 and rest[:3] == ["v3", "crmdata", "segment"] and rest[3] and rest[4]:
            if method == "POST":
                return ("drop", rest[3], rest[4])
            if method == "GET":
                return ("segment", rest[3], rest[4])
        if len(rest) == 3 and rest[:2] == ["v3", "advertiser"] and rest[2] and method == "GET":
            return ("advertiser", rest[2])
        return None
    if host == DROP_HOST:
        if (
            method == "PUT"
            and len(rest) == 6
            and rest[:2] == ["data", "advertiser"]
            and rest[3] == "drop"
            and rest[5] == "pii"
        ):
            return ("upload", rest[2], rest[4])
        return None
    region, sep, domain = host.partition("-")
    realtime = sep and domain == "data.adsrvr.org" and region in REALTIME_REGIONS and rest == ["data", "advertiser"]
    if realtime and method == "POST":
        return ("realtime", region)
    return None


# Answers in the partner's formats ------------------------------------------------------------------------------


def ttd_error(status: int, message: str, details: dict[str, str] | None = None, headers=()) -> Response:
    body: dict[str, Any] = {"Message": message}
    if details:
        body["ErrorDetails"] = [{"Property": prop, "Reasons": [reason]} for prop, reason in details.items()]
    return json_response(status, body, headers=tuple(headers))


def validation_error(details: dict[str, str]) -> Response:
    return ttd_error(400, "The request failed validation. Please check your request and try again.", details)


def s3_error(status: int, code: str, message: str, headers=()) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    ).encode()
    return Response(status, body, content_type="application/xml", headers=tuple(headers))


def _kind(request: Request) -> str:
    host = request.path.split("/", 2)[1] if request.path.count("/") >= 2 else ""
    if host == DROP_HOST:
        return "upload"
    if host.endswith("-data.adsrvr.org"):
        return "realtime"
    return "api"


def fault_response(fault: Fault, request: Request) -> Response | None:
    kind = fault.kind
    if kind == "slow":
        return None
    target = _kind(request)
    retry = (("Retry-After", str(fault.retry_after)),) if fault.retry_after is not None else ()
    if kind == "expired_token":
        if target == "upload":
            return s3_error(fault.status or 403, "AccessDenied", fault.message or "Request has expired")
        if target == "realtime":
            return ttd_error(fault.status or 403, fault.message or "The TtdSignature header is not valid.")
        return ttd_error(fault.status or 401, fault.message or "Authentication failed: the token has expired.")
    if kind == "rate_limit":
        if target == "upload":
            return s3_error(fault.status or 503, "SlowDown", fault.message or "Please reduce your request rate.", retry)
        return ttd_error(fault.status or 429, fault.message or "Too many requests. Please retry later.", headers=retry)
    if kind == "server_error":
        if target == "upload":
            return s3_error(fault.status or 500, "InternalError", fault.message or "We encountered an internal error.")
        return ttd_error(fault.status or 500, fault.message or "An error has occurred.")
    if kind == "partner_error":
        if target == "upload":
            return s3_error(fault.status or 400, "InvalidRequest", fault.message or "Sandbox partner error")
        return ttd_error(
            fault.status or 400,
            "The request failed validation. Please check your request and try again.",
            {"Sandbox": fault.message or "Sandbox partner error."},
        )
    if kind == "gone":
        if target == "upload":
            return s3_error(fault.status or 404, "NoSuchKey", fault.message or "The specified key does not exist.")
        return ttd_error(fault.status or 404, fault.message or "The CRM data segment does not exist.")
    return None


# Checks --------------------------------------------------------------------------------------------------------


def _token_refusal(request: Request) -> Response | None:
    token = request.headers.get("ttd-auth", "")
    if not token:
        return ttd_error(401, "Authentication failed: the TTD-Auth header is missing.")
    if len(token) < MIN_TOKEN_LENGTH or " " in token or token.startswith(("expired", "revoked")):
        return ttd_error(401, "Authentication failed: the TTD-Auth token is invalid or has expired.")
    return None


def _unknown(kind: str, value: str) -> Response | None:
    if _ID.fullmatch(value):
        return None
    return ttd_error(404, f"{kind} '{value[:60]}' does not exist or is not accessible with this token.")


def _signature(reference: str, advertiser: str, amz_date: str) -> str:
    return hmac.new(_SIGNING_KEY, f"{reference}:{advertiser}:{amz_date}".encode(), hashlib.sha256).hexdigest()


def _valid_line(pii_type: str, line: str) -> bool:
    if pii_type.endswith("HashedUnifiedId2"):
        if not _B64_SHA256.fullmatch(line):
            return False
        try:
            return len(base64.b64decode(line, validate=True)) == 32
        except (binascii.Error, ValueError):
            return False
    if pii_type == "Email":
        return bool(_EMAIL.fullmatch(line))
    return bool(_PHONE.fullmatch(line))


# Endpoints -----------------------------------------------------------------------------------------------------


def _open_drop(request: Request, advertiser: str, crm_data_id: str) -> Response:
    if request.content_type != "application/json":
        return ttd_error(415, "The request content type must be application/json.")
    try:
        body = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        return ttd_error(400, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return ttd_error(400, "The request body must be a JSON object.")
    problems: dict[str, str] = {}
    for key in sorted(set(body) - {"PiiType", "MergeMode", "RetentionEnabled"}):
        problems[key] = "Unknown property."
    if body.get("PiiType") not in PII_TYPES:
        problems["PiiType"] = f"Required; one of {', '.join(PII_TYPES)}."
    if body.get("MergeMode") not in MERGE_MODES:
        problems["MergeMode"] = "Required; Add or Replace."
    if "RetentionEnabled" in body and type(body["RetentionEnabled"]) is not bool:
        problems["RetentionEnabled"] = "Must be true or false."
    if problems:
        return validation_error(problems)
    reference = str(uuid.uuid4())
    now = time.time()
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    host = request.headers.get("host", "127.0.0.1")
    url = (
        f"http://{host}/c/{request.scope}/{DROP_HOST}/data/advertiser/{advertiser}/drop/{reference}/pii"
        f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={amz_date}&X-Amz-Expires={DROP_TTL_SECONDS}"
        f"&X-Amz-SignedHeaders=host&X-Amz-Signature={_signature(reference, advertiser, amz_date)}"
    )
    with _drops_lock:
        while len(_drops) >= MAX_DROPS:
            _drops.pop(next(iter(_drops)))
        _drops[reference] = {
            "advertiser": advertiser,
            "crm_data_id": crm_data_id,
            "pii_type": body["PiiType"],
            "merge_mode": body["MergeMode"],
            "expires_at": now + DROP_TTL_SECONDS,
        }
    return json_response(200, {"ReferenceId": reference, "Url": url}, stats={"drops_created": 1})


def _upload(request: Request, advertiser: str, reference: str) -> Response:
    query = request.query_params()
    with _drops_lock:
        drop = _drops.get(reference)
    expected = _signature(reference, advertiser, query.get("X-Amz-Date", "")) if drop else ""
    if (
        drop is None
        or drop["advertiser"] != advertiser
        or not hmac.compare_digest(query.get("X-Amz-Signature", ""), expected)
    ):
        return s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
    if time.time() > drop["expires_at"]:
        return s3_error(403, "AccessDenied", "Request has expired")
    if "ttd-auth" in request.headers or "authorization" in request.headers:
        return s3_error(400, "InvalidRequest", "Credentials must not be sent to a pre-signed drop URL.")
    if request.content_type != "text/plain":
        return s3_error(400, "InvalidRequest", "The Trade Desk expects the drop file as text/plain.")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return s3_error(400, "InvalidRequest", "The drop file must be UTF-8 text.")
    lines = [line for line in text.split("\n") if line.strip()]
    pii_type = drop["pii_type"]
    valid = [line for line in lines if _valid_line(pii_type, line)]
    invalid = len(lines) - len(valid)
    segment = f"{advertiser}/{drop['crm_data_id']}"
    if len(valid) < MIN_RECORDS:  # S3 takes the file; The Trade Desk's processing refuses it
        stats = {"uploads_refused_below_minimum": 1, "rows_refused": len(lines)}
    else:
        stats = {
            "uploads": 1,
            "rows_added": len(valid),
            "rows_invalid": invalid,
            "segment": (segment, drop["merge_mode"], frozenset(valid)),
        }
    etag = (("ETag", f'"{secrets.token_hex(16)}"'),)
    return Response(200, b"", content_type="application/xml", headers=etag, stats=stats)


def _realtime(request: Request) -> Response:
    if request.content_type != "application/json":
        return ttd_error(415, "The request content type must be application/json.")
    signature = request.headers.get("ttdsignature", "")
    expected = base64.b64encode(
        hmac.new(SANDBOX_ADVERTISER_SECRET.encode(), request.body, hashlib.sha1).digest()
    ).decode()
    if not signature or not hmac.compare_digest(signature, expected):
        return ttd_error(403, "The TtdSignature header is missing or does not match the request body.")
    try:
        body = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        return ttd_error(400, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return ttd_error(400, "The request body must be a JSON object.")
    advertiser = body.get("AdvertiserId")
    if not isinstance(advertiser, str) or not _ID.fullmatch(advertiser):
        return ttd_error(400, "AdvertiserId is missing or unknown.")
    items = body.get("Items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_REALTIME_ITEMS:
        return ttd_error(400, f"Items must hold 1 to {MAX_REALTIME_ITEMS} entries.")
    failed: list[dict[str, str]] = []
    added = removed = 0
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            return ttd_error(400, f"Item #{number} is not an object.")
        ids = [key for key in REALTIME_ID_KEYS if key in item]
        data = item.get("Data")
        if not isinstance(data, list) or not data:
            return ttd_error(400, f"Item #{number} has no Data.")
        for entry in data:
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("Name"), str)
                or not entry["Name"]
                or type(entry.get("TTLInMinutes")) is not int
                or not 0 <= entry["TTLInMinutes"] <= MAX_TTL_MINUTES
            ):
                return ttd_error(400, f"Item #{number}: each Data entry needs a Name and TTLInMinutes.")
        if len(ids) != 1:
            failed.append({"ErrorCode": "MissingUserId", "Message": f"No single user id, item #{number}"})
            continue
        key = ids[0]
        value = item[key]
        if not isinstance(value, str) or (key in ("TDID", "DAID") and not _UUID.fullmatch(value)):
            failed.append({"ErrorCode": "MissingUserId", "Message": f"Invalid {key}, item #{number}"})
            continue
        for entry in data:
            if entry["TTLInMinutes"] == 0:
                removed += 1
            else:
                added += 1
    stats = {"realtime_added": added, "realtime_removed": removed, "realtime_failed": len(failed)}
    return json_response(200, {"FailedLines": failed} if failed else {}, stats=stats)


def handle(request: Request, route: tuple[str, ...], state: Any) -> Response:
    kind = route[0]
    if kind == "upload":
        return _upload(request, route[1], route[2])
    if kind == "realtime":
        return _realtime(request)
    refusal = _token_refusal(request)
    if refusal is not None:
        return refusal
    advertiser = route[1]
    refusal = _unknown("Advertiser", advertiser)
    if refusal is not None:
        return refusal
    if kind == "advertiser":
        return json_response(
            200,
            {"AdvertiserId": advertiser, "AdvertiserName": f"Sandbox advertiser {advertiser}", "CurrencyCode": "USD"},
        )
    crm_data_id = route[2]
    refusal = _unknown("CRM data segment", crm_data_id)
    if refusal is not None:
        return refusal
    if kind == "segment":
        return json_response(
            200, {"AdvertiserId": advertiser, "CrmDataId": crm_data_id, "SegmentName": f"Sandbox segment {crm_data_id}"}
        )
    return _open_drop(request, advertiser, crm_data_id)


# Statistics ----------------------------------------------------------------------------------------------------

_COUNTERS = (
    "requests",
    "errors",
    "drops_created",
    "uploads",
    "rows_added",
    "rows_invalid",
    "uploads_refused_below_minimum",
    "rows_refused",
    "realtime_added",
    "realtime_removed",
    "realtime_failed",
)


def new_stats() -> dict[str, Any]:
    return {**dict.fromkeys(_COUNTERS, 0), "segments": {}}


def apply_stats(stats: dict[str, Any], deltas: dict[str, Any]) -> None:
    for key, value in deltas.items():
        if key == "segment":  # (advertiser/crm id, merge mode, the uploaded values): the segment's content after it
            name, mode, values = value
            members = stats["segments"].get(name)
            stats["segments"][name] = set(values) if mode == "Replace" or members is None else members | values
        else:
            stats[key] += value


def export_stats(stats: dict[str, Any]) -> dict[str, Any]:
    out = {key: stats[key] for key in _COUNTERS}
    out["segments"] = {name: len(members) for name, members in stats["segments"].items()}
    return out
