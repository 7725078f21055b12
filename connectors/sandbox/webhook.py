"""Generic webhook receiver emulation (Standard Webhooks): `POST /webhook/<name>`.

Requires `webhook-id`, `webhook-timestamp`, `webhook-signature` and a JSON body. When a secret was registered for
<name> (`PUT /_sandbox/webhooks/<name>`), the signature and the timestamp tolerance are checked with the platform's
own `signing.verify`; without one any signature is accepted. A receiver may hold several keys (`{"secrets": [...]}`,
as while it rotates): one valid signature for one of them is enough (the header may carry several signatures).
Success is 204. Statistics count the events by their `type` (a JSON object's `type`, or each element's for a JSON
array) and the distinct webhook ids, so tests can see duplicates of an at-least-once delivery.
"""

from __future__ import annotations

import json
import string
from typing import Any

from connectors.partners.webhook.signing import verify
from connectors.sandbox import Fault, Request, Response, json_response

NAME = "webhook"
PREFIX = "/webhook/"
NAME_CHARS = string.ascii_letters + string.digits + "_-"
REQUIRED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
UNTYPED = "(untyped)"


def valid_name(name: str) -> bool:
    return bool(name) and not name.strip(NAME_CHARS)


def match(method: str, path: str) -> str | None:
    if method == "POST" and path.startswith(PREFIX):
        name = path[len(PREFIX) :]
        if valid_name(name):
            return name
    return None


def fault_response(fault: Fault, request: Request) -> Response | None:
    kind = fault.kind
    if kind == "slow":
        return None
    if kind == "expired_token":  # the receiver no longer knows our secret
        return json_response(fault.status or 401, {"error": fault.message or "invalid signature"})
    if kind == "rate_limit":
        retry_after = fault.retry_after if fault.retry_after is not None else 1
        return json_response(
            fault.status or 429,
            {"error": fault.message or "too many requests"},
            headers=(("Retry-After", str(retry_after)),),
        )
    if kind == "server_error":
        status = fault.status or 500
        text = fault.message or ("Internal Server Error" if status == 500 else f"Server error {status}")
        return Response(status, text.encode(), content_type="text/plain; charset=utf-8")
    if kind == "partner_error":
        body: dict[str, Any] = {"error": fault.message or "rejected by the receiver"}
        if fault.code is not None:
            body["code"] = fault.code
        return json_response(fault.status or 400, body)
    if kind == "gone":
        return json_response(fault.status or 410, {"error": fault.message or "this endpoint is gone"})
    return None


def _event_types(payload: Any) -> dict[str, int]:
    events = payload if isinstance(payload, list) else [payload]
    counts: dict[str, int] = {}
    for event in events:
        kind = event.get("type") if isinstance(event, dict) else None
        key = kind if isinstance(kind, str) and kind else UNTYPED
        counts[key] = counts.get(key, 0) + 1
    return counts


def handle(request: Request, name: str, state: Any) -> Response:
    headers = request.headers
    missing = [h for h in REQUIRED_HEADERS if not headers.get(h)]
    if missing:
        return json_response(400, {"error": "missing required header(s): " + ", ".join(missing)})
    msg_id = headers["webhook-id"]
    secrets = state.webhook_secrets(name)
    if secrets and not any(
        verify(secret, msg_id, headers["webhook-timestamp"], headers["webhook-signature"], request.body)
        for secret in secrets
    ):
        return json_response(401, {"error": "invalid signature"})
    try:
        payload = json.loads(request.body.decode())
    except (ValueError, UnicodeDecodeError):
        return json_response(400, {"error": "the body is not valid JSON"})
    return Response(204, b"", stats={"events": _event_types(payload), "id": msg_id, "last": _last_by_profile(payload)})


def _last_by_profile(payload: Any) -> list[tuple[str, str]]:
    """(profile id, event type) in arrival order, so tests can check each profile's final state and order."""
    events = payload if isinstance(payload, list) else [payload]
    out = []
    for event in events:
        if isinstance(event, dict) and isinstance(event.get("data"), dict) and "profile_id" in event["data"]:
            out.append((str(event["data"]["profile_id"]), str(event.get("type"))))
    return out


def new_stats() -> dict[str, Any]:
    return {"requests": 0, "events": {}, "unique_ids": set(), "errors": 0, "last": {}, "history": {}}


def apply_stats(stats: dict[str, Any], deltas: dict[str, Any]) -> None:
    events = stats["events"]
    for kind, n in deltas["events"].items():
        events[kind] = events.get(kind, 0) + n
    stats["unique_ids"].add(deltas["id"])
    for profile_id, kind in deltas.get("last", ()):
        stats["last"][profile_id] = kind
        stats["history"].setdefault(profile_id, []).append(kind)


def export_stats(stats: dict[str, Any]) -> dict[str, Any]:
    plain = {k: v for k, v in stats.items() if k not in ("last", "history")}
    return {**plain, "events": dict(stats["events"]), "unique_ids": len(stats["unique_ids"])}


def export_profiles(stats: dict[str, Any]) -> dict[str, Any]:
    """Per profile: the last event type received and every type in arrival order."""
    return {"last": dict(stats["last"]), "history": {k: list(v) for k, v in stats["history"].items()}}
