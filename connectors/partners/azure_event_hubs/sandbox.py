"""Azure Event Hubs emulation: Send batch events and Get Event Hub over REST, with the SAS token checked like Azure.

Paths as the sandbox sees them (the client's host becomes the first segment):
    POST /{namespace}.servicebus.windows.net/{hub}/messages[?api-version=2014-01]
         a batch when Content-Type is application/vnd.microsoft.servicebus.json, otherwise one event (Send event)
    GET  /{namespace}.servicebus.windows.net/{hub}[?api-version=2014-01]   the event hub's description (Atom entry)

Sandbox conventions (there is no portal to create policies, hubs or tiers in):
- Keys: every shared access policy of every namespace has the well-known key `SANDBOX_SAS_KEY` (as Azure's storage
  emulator has a well-known account key). The token's signature is recomputed with it over the `sr` value exactly as
  sent, so a token signed with any other key gets 401 InvalidSignature, as a wrong key does at Azure.
- Claims by policy name: a name containing "manage" (RootManageSharedAccessKey) has Manage, Send and Listen; a name
  containing "listen" (and not "send") has only Listen; any other name has only Send, the recommended policy. Reading
  an event hub's description needs Manage; sending needs Send.
- Event hubs: every valid name exists except names starting with "missing" (404 MessagingEntityNotFound).
- Tier: a namespace whose name ends with "-basic" is Basic (256 KB per request); the others are Standard (1 MB).

Checks, in Azure's order: token present and well formed (sr, sig, se, skn), not expired, audience covering the event
hub (a namespace-wide token covers every hub), signature; then the event hub, the claim, the api-version, the size
(413 over the tier's limit), and the batch itself: a non-empty JSON array of objects each with a string "Body" and
optional "UserProperties" of strings, numbers or booleans. Success is 201 with an empty body. Errors are Service
Bus's XML `<Error><Code>status</Code><Detail>Reason: text. TrackingId:…, SystemTracker:…, Timestamp:…</Detail></Error>`.

Statistics: batches, events by their body's "type" (the platform's events are JSON), rows_added (added and updated)
and rows_removed, distinct event ids (to see at-least-once duplicates), the largest request in bytes and events, and
how many events carried profile variables.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from connectors.partners.azure_sas import parse_service_bus_token, service_bus_signature
from connectors.sandbox import Fault, Request, Response

NAME = "azure_event_hubs"
SANDBOX_SAS_KEY = "ZGFwLXNhbmRib3gtZXZlbnQtaHVicy1zYXMta2V5LTE="  # base64 of b"dap-sandbox-event-hubs-sas-key-1"
HOST_SUFFIX = ".servicebus.windows.net"
BATCH_TYPE = "application/vnd.microsoft.servicebus.json"
STANDARD_LIMIT = 1024 * 1024
BASIC_LIMIT = 256 * 1024
PARTITIONS = 4
API_VERSION = re.compile(r"\d{4}-\d{2}(-\d{2})?(-preview)?")
NAMESPACE = re.compile(r"[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]")
ENTITY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,254}[A-Za-z0-9])?")
ENDPOINTS = (
    ("POST", "/<namespace>.servicebus.windows.net/<hub>/messages", "Azure Event Hubs send batch events"),
    ("GET", "/<namespace>.servicebus.windows.net/<hub>", "Azure Event Hubs event hub description"),
)


def match(method: str, path: str) -> tuple[str, str, str] | None:
    parts = path.split("/")
    if len(parts) < 3 or parts[0] or not parts[1].endswith(HOST_SUFFIX):
        return None
    namespace = parts[1][: -len(HOST_SUFFIX)]
    if not NAMESPACE.fullmatch(namespace) or not ENTITY.fullmatch(parts[2]):
        return None
    if len(parts) == 4 and parts[3] == "messages" and method == "POST":
        return ("send", namespace, parts[2])
    if len(parts) == 3 and method == "GET":
        return ("describe", namespace, parts[2])
    return None


# Errors ---------------------------------------------------------------------------------------------------------


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def error(status: int, detail: str, request: Request | None = None, headers: tuple[tuple[str, str], ...] = ()):
    tracker = "NoSystemTracker"
    if request is not None:
        tracker = request.path.lstrip("/").replace("/", ":", 1)
    text = f"{detail} TrackingId:{uuid.uuid4()}_G1, SystemTracker:{tracker}, Timestamp:{_now_iso()}"
    body = f"<Error><Code>{status}</Code><Detail>{escape(text)}</Detail></Error>"
    return Response(status, body.encode(), content_type="application/xml; charset=utf-8", headers=headers)


def fault_response(fault: Fault, request: Request) -> Response | None:
    kind = fault.kind
    if kind == "slow":
        return None
    if kind == "expired_token":
        return error(fault.status or 401, fault.message or "ExpiredToken: The token is expired.", request)
    if kind == "rate_limit":
        headers = (("Retry-After", str(fault.retry_after)),) if fault.retry_after is not None else ()
        namespace = request.path.split("/")[1][: -len(HOST_SUFFIX)] if HOST_SUFFIX in request.path else "namespace"
        detail = fault.message or (
            f"The request was terminated because the namespace {namespace} is being throttled. Error code : "
            "50002. Please wait 10 seconds and try again."
        )
        return error(fault.status or 503, detail, request, headers)
    if kind == "server_error":
        status = fault.status or 500
        detail = fault.message or (
            "InternalServerError: The server was unable to process the request; please retry the operation."
            if status == 500
            else "ServerBusy: The server is busy. Please retry the operation."
        )
        return error(status, detail, request)
    if kind == "partner_error":
        code = f" SubCode={fault.code}." if fault.code is not None else ""
        detail = fault.message or "QuotaExceeded: The quota of the namespace has been exceeded."
        return error(fault.status or 403, detail + code, request)
    if kind == "gone":
        return _not_found(request)
    return None


def _not_found(request: Request) -> Response:
    host, _, rest = request.path.lstrip("/").partition("/")
    hub = rest.split("/", 1)[0]
    return error(
        404,
        f"The messaging entity 'sb://{host}/{hub}' could not be found. To know more visit "
        "https://aka.ms/sbResourceMgrExceptions.",
        request,
    )


# Token ----------------------------------------------------------------------------------------------------------


def _audience(value: str) -> str:
    value = value.strip().lower()
    for scheme in ("https://", "http://", "sb://"):
        if value.startswith(scheme):
            value = value[len(scheme) :]
            break
    return value.rstrip("/")


def claims(policy: str) -> frozenset[str]:
    name = policy.lower()
    if "manage" in name:
        return frozenset({"Manage", "Send", "Listen"})
    if "listen" in name and "send" not in name:
        return frozenset({"Listen"})
    return frozenset({"Send"})


def check_token(request: Request, namespace: str, hub: str) -> tuple[Response | None, str]:
    """(an error response or None, the policy name)."""
    header = request.headers.get("authorization", "")
    if not header:
        return error(401, "MissingToken: The request authorization header was not present.", request), ""
    fields = parse_service_bus_token(header)
    if fields is None or not all(fields.get(name) for name in ("sr", "sig", "se", "skn")):
        return error(
            401,
            "MalformedToken: The credentials contained in the authorization header are not in the "
            "SharedAccessSignature format (sr, sig, se and skn are required).",
            request,
        ), ""
    if not fields["se"].isdigit():
        return error(401, "MalformedToken: The token expiry (se) is not a number of seconds.", request), ""
    if int(fields["se"]) <= time.time():
        expired = datetime.fromtimestamp(int(fields["se"]), UTC).strftime("%m/%d/%Y %H:%M:%S")
        return error(401, f"ExpiredToken: The token is expired. Expiration time: '{expired} UTC'.", request), ""
    audience = _audience(unquote(fields["sr"]))
    target = f"{namespace}{HOST_SUFFIX}/{hub}".lower()
    if audience != target and not target.startswith(audience + "/"):
        return error(
            401, f"InvalidAudience: The token audience '{audience}' does not cover 'sb://{target}'.", request
        ), ""
    expected = service_bus_signature(fields["sr"], fields["se"], SANDBOX_SAS_KEY)
    if unquote(fields["sig"]) != expected:
        return error(401, "InvalidSignature: The token has an invalid signature.", request), ""
    return None, unquote(fields["skn"])


def _unauthorized(request: Request, claim: str, resource: str) -> Response:
    return error(
        401,
        f"Unauthorized access. '{claim}' claim(s) are required to perform this operation. Resource: '{resource}'.",
        request,
    )


# Endpoints ------------------------------------------------------------------------------------------------------


def handle(request: Request, route: tuple[str, str, str], state: Any) -> Response:
    kind, namespace, hub = route
    problem, policy = check_token(request, namespace, hub)
    if problem is not None:
        return problem
    if hub.lower().startswith("missing"):
        return _not_found(request)
    version = request.query_params().get("api-version")
    if version is not None and not API_VERSION.fullmatch(version):
        return error(400, f"The api-version '{version}' is invalid. Use 2014-01 or later.", request)
    entity = f"sb://{namespace}{HOST_SUFFIX}/{hub}"
    if kind == "describe":
        if "Manage" not in claims(policy):
            return _unauthorized(request, "Manage,EntityRead", entity)
        return _description(namespace, hub)
    if "Send" not in claims(policy):
        return _unauthorized(request, "Send", entity + "/messages")
    return _send(request, namespace)


def _send(request: Request, namespace: str) -> Response:
    body = request.body
    limit = BASIC_LIMIT if namespace.lower().endswith("-basic") else STANDARD_LIMIT
    if len(body) > limit:
        return error(
            413,
            f"The received message (delivery-id:0, size:{len(body)} bytes) exceeds the limit ({limit} bytes) "
            "currently allowed on the link.",
            request,
        )
    if request.content_type != BATCH_TYPE:
        if not body:
            return error(400, "Bad Request. The event body is empty.", request)
        events = [body.decode("utf-8", "replace")]
    else:
        try:
            batch = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return error(400, "Bad Request. The batch is not valid JSON.", request)
        problem = _batch_problem(batch)
        if problem:
            return error(400, f"Bad Request. {problem}", request)
        events = [element["Body"] for element in batch]
    return Response(201, b"", content_type="application/xml; charset=utf-8", stats=_deltas(events, len(body)))


def _batch_problem(batch: Any) -> str:
    if not isinstance(batch, list) or not batch:
        return "The batch must be a non-empty JSON array of events."
    for position, element in enumerate(batch):
        if not isinstance(element, dict) or not isinstance(element.get("Body"), str):
            return f"Event {position} must be an object with a string Body."
        properties = element.get("UserProperties")
        if properties is not None:
            if not isinstance(properties, dict):
                return f"Event {position}: UserProperties must be an object."
            for name, value in properties.items():
                if not isinstance(value, str | int | float | bool):
                    return f"Event {position}: UserProperties '{name}' must be a string, number or boolean."
        broker = element.get("BrokerProperties")
        if broker is not None and not isinstance(broker, dict):
            return f"Event {position}: BrokerProperties must be an object."
    return ""


def _deltas(events: list[str], size: int) -> dict[str, Any]:
    types: dict[str, int] = {}
    ids: list[str] = []
    with_variables = 0
    for text in events:
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        kind = event.get("type") if isinstance(event, dict) else None
        key = kind if isinstance(kind, str) and kind else "(untyped)"
        types[key] = types.get(key, 0) + 1
        if isinstance(event, dict) and isinstance(event.get("id"), str):
            ids.append(event["id"])
        with_variables += isinstance(event, dict) and isinstance(event.get("variables"), dict)
    return {"events": types, "ids": ids, "bytes": size, "count": len(events), "with_variables": with_variables}


def _description(namespace: str, hub: str) -> Response:
    host = f"{namespace}{HOST_SUFFIX}"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ids = "".join(f"<d3p1:string>{i}</d3p1:string>" for i in range(PARTITIONS))
    body = (
        '<entry xmlns="http://www.w3.org/2005/Atom">'
        f'<id>https://{host}/{hub}?api-version=2014-01</id><title type="text">{escape(hub)}</title>'
        f"<published>{now}</published><updated>{now}</updated><author><name>{escape(namespace)}</name></author>"
        f'<link rel="self" href="https://{host}/{hub}?api-version=2014-01"/>'
        '<content type="application/xml"><EventHubDescription '
        'xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" '
        'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<MessageRetentionInDays>1</MessageRetentionInDays><AuthorizationRules/><Status>Active</Status>"
        f"<CreatedAt>{now}</CreatedAt><UpdatedAt>{now}</UpdatedAt><PartitionCount>{PARTITIONS}</PartitionCount>"
        f'<PartitionIds xmlns:d3p1="http://schemas.microsoft.com/2003/10/Serialization/Arrays">{ids}</PartitionIds>'
        "</EventHubDescription></content></entry>"
    )
    return Response(200, body.encode(), content_type="application/atom+xml;type=entry;charset=utf-8")


# Statistics -----------------------------------------------------------------------------------------------------

ADDED_TYPES = ("profile.added", "profile.updated")


def new_stats() -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "batches": 0,
        "events": {},
        "rows_added": 0,
        "rows_removed": 0,
        "unique_ids": set(),
        "largest_batch_bytes": 0,
        "largest_batch_events": 0,
        "with_variables": 0,
    }


def apply_stats(stats: dict[str, Any], deltas: dict[str, Any]) -> None:
    stats["batches"] += 1
    events = stats["events"]
    for kind, n in deltas["events"].items():
        events[kind] = events.get(kind, 0) + n
        if kind in ADDED_TYPES:
            stats["rows_added"] += n
        elif kind == "profile.removed":
            stats["rows_removed"] += n
    stats["unique_ids"].update(deltas["ids"])
    stats["with_variables"] += deltas["with_variables"]
    stats["largest_batch_bytes"] = max(stats["largest_batch_bytes"], deltas["bytes"])
    stats["largest_batch_events"] = max(stats["largest_batch_events"], deltas["count"])


def export_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {**stats, "events": dict(stats["events"]), "unique_ids": len(stats["unique_ids"])}
