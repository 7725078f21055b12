"""Azure Queue Storage emulation: Put Message and Get Queue Metadata over REST, with the SAS token checked like Azure.

Paths as the sandbox sees them (the client's host becomes the first segment):
    POST /{account}.queue.core.windows.net/{queue}/messages?<SAS>[&visibilitytimeout=…&messagettl=…]   Put Message
    GET  /{account}.queue.core.windows.net/{queue}?comp=metadata&<SAS>                               Get Queue Metadata

Sandbox conventions (there is no portal to create accounts, keys or queues in):
- Keys: every storage account has the well-known key `SANDBOX_ACCOUNT_KEY` (as Azure's storage emulator has a
  well-known account key), so tokens for the sandbox are made with `connectors.partners.azure_sas.make_account_sas`
  or `make_queue_sas` and that key. Both kinds of SAS are verified as Azure does: the signature over the string-to-sign
  of their version (account SAS; queue service SAS from sv 2015-04-05 on, older versions are refused), the
  start/expiry window, the signed IP range (the caller counts as 127.0.0.1) and protocol (the sandbox stands for
  https), the services (ss must include q), the resource types (srt: o to add messages, c to read queue metadata) and
  the permissions (a to add messages, r to read metadata). Stored access policies (si) do not exist here, so a token
  naming one is refused. Shared Key (Authorization header) is not emulated.
- Queues: every valid name exists except names starting with "missing" (404 QueueNotFound).

Put Message also checks x-ms-version (when sent), the optional visibilitytimeout/messagettl, the XML envelope
(<QueueMessage><MessageText>) and the 64 KiB limit on the message text (400 MessageTooLarge). Success is 201 with the
QueueMessagesList XML. Errors are Storage's XML `<Error><Code>…</Code><Message>…</Message></Error>` (the message
ends with RequestId and Time lines) with the x-ms-error-code header; authentication failures add
<AuthenticationErrorDetail>.

Statistics: messages, messages by the decoded event's "type" (base64 JSON, as the platform sends), rows_added (added
and updated) and rows_removed, distinct event ids, how many messages carried profile variables, and messages per
account/queue (the approximate message count that Get Queue Metadata reports).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape

from connectors.partners.azure_sas import (
    SERVICE_SAS_SINCE,
    is_account_sas,
    local_name,
    parse_xml,
    sas_time,
    storage_account_string_to_sign,
    storage_queue_string_to_sign,
    storage_sas_fields,
    storage_signature,
)
from connectors.sandbox import Fault, Request, Response

NAME = "azure_storage_queue"
# base64 of 64 bytes (b"dap-sandbox-storage-account-key-" twice), the length of a real storage account key.
SANDBOX_ACCOUNT_KEY = "ZGFwLXNhbmRib3gtc3RvcmFnZS1hY2NvdW50LWtleS1kYXAtc2FuZGJveC1zdG9yYWdlLWFjY291bnQta2V5LQ=="
HOST_SUFFIX = ".queue.core.windows.net"
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TTL_SECONDS = 7 * 24 * 3600
DEFAULT_SERVICE_VERSION = "2023-11-03"
ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
QUEUE = re.compile(r"(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*")
VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
CALLER_IP = ipaddress.ip_address("127.0.0.1")
ENDPOINTS = (
    ("POST", "/<account>.queue.core.windows.net/<queue>/messages", "Azure Queue Storage put message"),
    ("GET", "/<account>.queue.core.windows.net/<queue>?comp=metadata", "Azure Queue Storage queue metadata"),
)


def match(method: str, path: str) -> tuple[str, str, str] | None:
    parts = path.split("/")
    if len(parts) < 3 or parts[0] or not parts[1].endswith(HOST_SUFFIX):
        return None
    account = parts[1][: -len(HOST_SUFFIX)]
    if not ACCOUNT.fullmatch(account) or not parts[2]:
        return None
    if len(parts) == 4 and parts[3] == "messages" and method == "POST":
        return ("put", account, parts[2])
    if len(parts) == 3 and method == "GET":
        return ("metadata", account, parts[2])
    return None


# Errors ---------------------------------------------------------------------------------------------------------


def _http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


def error(
    status: int,
    code: str,
    message: str,
    *,
    auth_detail: str = "",
    headers: tuple[tuple[str, str], ...] = (),
) -> Response:
    request_id = str(uuid.uuid4())
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    text = f"{message}\nRequestId:{request_id}\nTime:{now}"
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{escape(text)}</Message>'
    if auth_detail:
        body += f"<AuthenticationErrorDetail>{escape(auth_detail)}</AuthenticationErrorDetail>"
    body += "</Error>"
    all_headers = (
        ("x-ms-request-id", request_id),
        ("x-ms-version", DEFAULT_SERVICE_VERSION),
        ("x-ms-error-code", code),
        *headers,
    )
    return Response(status, body.encode(), content_type="application/xml", headers=all_headers)


AUTH_FAILED = (
    "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly "
    "including the signature."
)
NOT_AUTHORIZED = "This request is not authorized to perform this operation"
PARTNER_ERRORS = {
    400: ("MessageTooLarge", "The message exceeds the maximum allowed size."),
    403: ("AuthorizationFailure", f"{NOT_AUTHORIZED}."),
    404: ("QueueNotFound", "The specified queue does not exist."),
    409: ("QueueBeingDeleted", "The specified queue is being deleted."),
}


def auth_failed(detail: str) -> Response:
    return error(403, "AuthenticationFailed", AUTH_FAILED, auth_detail=detail)


def fault_response(fault: Fault, request: Request) -> Response | None:
    kind = fault.kind
    if kind == "slow":
        return None
    if kind == "expired_token":
        now = datetime.now(UTC)
        detail = fault.message or (
            f"Signed expiry time [{_http_date(now - timedelta(hours=1))}] must be after signed start time "
            f"[{_http_date(now - timedelta(days=1))}] and current time [{_http_date(now)}]"
        )
        return error(fault.status or 403, "AuthenticationFailed", AUTH_FAILED, auth_detail=detail)
    if kind == "rate_limit":
        headers = (("Retry-After", str(fault.retry_after)),) if fault.retry_after is not None else ()
        message = fault.message or "Operations per second is over the account limit."
        return error(fault.status or 503, "ServerBusy", message, headers=headers)
    if kind == "server_error":
        status = fault.status or 500
        if status == 503:
            return error(status, "ServerBusy", fault.message or "The server is currently unable to receive requests.")
        return error(status, "InternalError", fault.message or "The server encountered an internal error.")
    if kind == "partner_error":
        status = fault.status or 400
        code, message = PARTNER_ERRORS.get(status, ("InvalidInput", "One of the request inputs is not valid."))
        return error(status, code, fault.message or message)
    if kind == "gone":
        return error(fault.status or 404, "QueueNotFound", fault.message or PARTNER_ERRORS[404][1])
    return None


# SAS ------------------------------------------------------------------------------------------------------------


def _in_ip_range(signed: str) -> bool:
    low, _, high = signed.partition("-")
    try:
        first = ipaddress.ip_address(low.strip())
        last = ipaddress.ip_address(high.strip()) if high else first
    except ValueError:
        return False
    return first.version == last.version == CALLER_IP.version and first <= CALLER_IP <= last


def check_sas(request: Request, account: str, queue: str, *, resource_type: str, permission: str) -> Response | None:
    """None when the query's SAS allows this operation, else Azure's refusal."""
    fields = storage_sas_fields(request.query)
    if "sig" not in fields:
        if request.headers.get("authorization"):
            return auth_failed("The sandbox verifies SAS tokens only (Shared Key is not emulated).")
        return error(
            401,
            "NoAuthenticationInformation",
            "Server failed to authenticate the request. Please refer to the information in the www-authenticate "
            "header.",
        )
    for name in ("sv", "sp", "se"):
        if not fields.get(name):
            return auth_failed(f"{name} is mandatory. Cannot be empty")
    if fields["sv"] < SERVICE_SAS_SINCE:
        return auth_failed(f"The sandbox verifies SAS versions {SERVICE_SAS_SINCE} and later, not {fields['sv']}.")
    account_sas = is_account_sas(fields)
    if account_sas:
        for name in ("ss", "srt"):
            if not fields.get(name):
                return auth_failed(f"{name} is mandatory. Cannot be empty")
        string_to_sign = storage_account_string_to_sign(account, fields)
    else:
        string_to_sign = storage_queue_string_to_sign(account, queue, fields)
    if fields.get("si") or storage_signature(SANDBOX_ACCOUNT_KEY, string_to_sign) != fields["sig"]:
        detail = "Signature did not match. String to sign used was " + string_to_sign.replace("\n", "\\n")
        return auth_failed(detail)
    now = datetime.now(UTC)
    start, expiry = sas_time(fields.get("st", "")), sas_time(fields["se"])
    if expiry is None or (fields.get("st") and start is None):
        return auth_failed("The signed start or expiry time is not a valid ISO 8601 UTC time.")
    if expiry <= now or (start is not None and start > now):
        begin = _http_date(start) if start else ""
        return auth_failed(
            f"Signature not valid in the specified time frame: Start [{begin}] - Expiry [{_http_date(expiry)}] - "
            f"Current [{_http_date(now)}]"
        )
    if fields.get("sip") and not _in_ip_range(fields["sip"]):
        return error(403, "AuthorizationSourceIPMismatch", f"{NOT_AUTHORIZED} using this source IP {CALLER_IP}.")
    if fields.get("spr") and "https" not in fields["spr"].split(","):
        return error(403, "AuthorizationProtocolMismatch", f"{NOT_AUTHORIZED} using this protocol.")
    if account_sas:
        if "q" not in fields["ss"]:
            return error(403, "AuthorizationServiceMismatch", f"{NOT_AUTHORIZED} using this service.")
        if resource_type not in fields["srt"]:
            return error(403, "AuthorizationResourceTypeMismatch", f"{NOT_AUTHORIZED} using this resource type.")
    if permission not in fields["sp"]:
        return error(403, "AuthorizationPermissionMismatch", f"{NOT_AUTHORIZED} using this permission.")
    return None


# Endpoints ------------------------------------------------------------------------------------------------------


def handle(request: Request, route: tuple[str, str, str], state: Any) -> Response:
    kind, account, queue = route
    version = request.headers.get("x-ms-version")
    if version is not None and not VERSION.fullmatch(version):
        return error(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format.")
    if kind == "metadata":
        if request.query_params().get("comp") != "metadata":
            return error(400, "InvalidQueryParameterValue", "Value for one of the query parameters is not valid.")
        problem = check_sas(request, account, queue, resource_type="c", permission="r")
    else:
        problem = check_sas(request, account, queue, resource_type="o", permission="a")
    if problem is not None:
        return problem
    if not QUEUE.fullmatch(queue):
        return error(400, "InvalidResourceName", "The specifed resource name contains invalid characters.")
    if queue.startswith("missing"):
        return error(404, "QueueNotFound", PARTNER_ERRORS[404][1])
    if kind == "metadata":
        exported = state.stats(request.scope).get(request.scope, {}).get(NAME, {})
        count = exported.get("queues", {}).get(f"{account}/{queue}", 0)
        headers = (
            ("x-ms-request-id", str(uuid.uuid4())),
            ("x-ms-version", version or DEFAULT_SERVICE_VERSION),
            ("x-ms-approximate-messages-count", str(count)),
        )
        return Response(200, b"", content_type="application/xml", headers=headers)
    return _put(request, account, queue, version)


def _query_int(params: dict[str, str], name: str, low: int, high: int) -> tuple[int | None, Response | None]:
    value = params.get(name)
    if value is None:
        return None, None
    if not re.fullmatch(r"-?\d+", value) or not low <= int(value) <= high:
        return None, error(
            400, "OutOfRangeQueryParameterValue", f"One of the query parameters specified in the request URI is "
            f"outside the permissible range ({name})."
        )  # fmt: skip
    return int(value), None


def _put(request: Request, account: str, queue: str, version: str | None) -> Response:
    params = request.query_params()
    visibility, problem = _query_int(params, "visibilitytimeout", 0, MAX_TTL_SECONDS)
    if problem is not None:
        return problem
    ttl, problem = _query_int(params, "messagettl", -1, 2**31 - 1)
    if problem is not None or ttl == 0:
        return problem or error(400, "OutOfRangeQueryParameterValue", "messagettl cannot be 0.")
    root = parse_xml(request.body)
    if root is None:
        return error(400, "InvalidXmlDocument", "XML specified is not syntactically valid.")
    children = list(root)
    if local_name(root) != "QueueMessage" or len(children) != 1 or local_name(children[0]) != "MessageText":
        return error(400, "InvalidXmlDocument", "XML specified is not syntactically valid.")
    text = children[0].text or ""
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        return error(400, "MessageTooLarge", "The message exceeds the maximum allowed size.")
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl if ttl and ttl > 0 else MAX_TTL_SECONDS)
    expiration = "Fri, 31 Dec 9999 23:59:59 GMT" if ttl == -1 else _http_date(expires)
    message_id = str(uuid.uuid4())
    receipt = base64.b64encode(uuid.uuid4().bytes + b"\x00\x00\x00\x00").decode()
    body = (
        '<?xml version="1.0" encoding="utf-8"?><QueueMessagesList><QueueMessage>'
        f"<MessageId>{message_id}</MessageId><InsertionTime>{_http_date(now)}</InsertionTime>"
        f"<ExpirationTime>{expiration}</ExpirationTime><PopReceipt>{receipt}</PopReceipt>"
        f"<TimeNextVisible>{_http_date(now + timedelta(seconds=visibility or 0))}</TimeNextVisible>"
        "</QueueMessage></QueueMessagesList>"
    )
    headers = (("x-ms-request-id", str(uuid.uuid4())), ("x-ms-version", version or DEFAULT_SERVICE_VERSION))
    stats = {"queue": f"{account}/{queue}", **_decode(text)}
    return Response(201, body.encode(), content_type="application/xml", headers=headers, stats=stats)


def _decode(text: str) -> dict[str, Any]:
    """The event's type and id when the message is base64 of a JSON event (as the platform sends)."""
    try:
        event = json.loads(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        event = None
    if not isinstance(event, dict):
        return {"type": "(undecoded)", "id": None, "variables": False}
    kind = event.get("type")
    return {
        "type": kind if isinstance(kind, str) and kind else "(untyped)",
        "id": event.get("id"),
        "variables": isinstance(event.get("variables"), dict),
    }


# Statistics -----------------------------------------------------------------------------------------------------

ADDED_TYPES = ("profile.added", "profile.updated")


def new_stats() -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "messages": 0,
        "events": {},
        "rows_added": 0,
        "rows_removed": 0,
        "unique_ids": set(),
        "queues": {},
        "with_variables": 0,
    }


def apply_stats(stats: dict[str, Any], deltas: dict[str, Any]) -> None:
    stats["messages"] += 1
    kind = deltas["type"]
    stats["events"][kind] = stats["events"].get(kind, 0) + 1
    if kind in ADDED_TYPES:
        stats["rows_added"] += 1
    elif kind == "profile.removed":
        stats["rows_removed"] += 1
    if isinstance(deltas.get("id"), str):
        stats["unique_ids"].add(deltas["id"])
    stats["with_variables"] += deltas["variables"]
    queues = stats["queues"]
    queues[deltas["queue"]] = queues.get(deltas["queue"], 0) + 1


def export_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        **stats,
        "events": dict(stats["events"]),
        "queues": dict(stats["queues"]),
        "unique_ids": len(stats["unique_ids"]),
    }
