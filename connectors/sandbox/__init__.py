"""Local partner sandbox: a loopback HTTP server that emulates partner endpoints (see `server.py`).

This module holds the small contract shared by the server and the partner emulations. A partner emulation is one
module (`meta.py`, `webhook.py`, …) listed in `server.PARTNERS`, exposing:

- `NAME`: the partner name used in fault configuration and statistics ("meta", "webhook");
- `match(method, path)`: the route parameters when the request (path without the scope prefix and query) is one of
  the partner's endpoints, else None;
- `handle(request, params, state)`: validate the request as the partner would and answer in its own format;
- `fault_response(fault, request)`: the partner's own answer for an injected fault, or None to answer normally
  (the "slow" fault only delays);
- `new_stats()`, `apply_stats(stats, deltas)`, `export_stats(stats)`: the partner's per-scope counters. The server
  counts `requests` and `errors` (status >= 400) itself; `Response.stats` carries the partner-specific deltas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

DEFAULT_SCOPE = "default"
FAULT_KINDS = ("expired_token", "slow", "rate_limit", "server_error", "partner_error", "gone")


@dataclass(slots=True)
class Request:
    method: str
    path: str  # without the /c/<scope> prefix and without the query string
    query: str  # raw query string
    headers: dict[str, str]  # lower-case names
    body: bytes
    scope: str = DEFAULT_SCOPE

    def query_params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True)) if self.query else {}

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    # Partner-specific statistics deltas, applied by the partner's `apply_stats` under the state lock.
    stats: dict[str, Any] | None = None


def json_response(status: int, obj: Any, *, headers: tuple[tuple[str, str], ...] = (), stats=None) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode(), headers=headers, stats=stats)


@dataclass(slots=True)
class Fault:
    """A fault injected into one scope, for one partner (None: every partner of the scope)."""

    kind: str
    scope: str = DEFAULT_SCOPE
    partner: str | None = None
    count: int | None = None  # requests left to affect; None = until cleared
    delay_s: float = 0.0
    retry_after: int | None = None
    status: int | None = None
    code: int | None = None
    subcode: int | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "fault": self.kind,
            "partner": self.partner,
            "count": self.count,
            "delay_s": self.delay_s,
            "retry_after": self.retry_after,
            "status": self.status,
            "code": self.code,
            "subcode": self.subcode,
            "message": self.message,
        }
