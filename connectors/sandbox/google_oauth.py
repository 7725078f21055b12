"""Google's OAuth 2.0 token endpoint: `POST /oauth2.googleapis.com/token` (form-encoded refresh-token grant).

Strict like Google: the form content type, `grant_type=refresh_token`, a client id ending in
`.apps.googleusercontent.com`, a client secret and a refresh token are required. Refresh tokens starting with
`revoked` (or an "expired_token" fault) get `invalid_grant`. The access token issued is `ya29.sandbox-<n>`; the Google
partner emulations accept any token of that form, so a test can also check that an API refuses anything else.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import parse_qsl

from connectors.sandbox import Fault, Request, Response, json_response

NAME = "google_oauth"
PATH = "/oauth2.googleapis.com/token"
TOKEN_PREFIX = "ya29.sandbox-"
ENDPOINTS = (("POST", PATH, "Google OAuth 2.0 token endpoint (refresh-token grant)"),)
_counter = itertools.count(1)

# The google.rpc status Google's APIs answer with for each HTTP status (the Google API emulations share it).
RPC_STATUS_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def match(method: str, path: str):
    return "token" if method == "POST" and path == PATH else None


def _oauth_error(status: int, error: str, description: str) -> Response:
    return json_response(status, {"error": error, "error_description": description})


def fault_response(fault: Fault, request: Request) -> Response | None:
    if fault.kind == "expired_token":
        return _oauth_error(400, "invalid_grant", fault.message or "Token has been expired or revoked.")
    if fault.kind == "server_error":
        return json_response(fault.status or 503, {"error": "temporarily_unavailable"})
    return None  # the other faults are the APIs' business


def handle(request: Request, route: Any, state: Any) -> Response:
    if request.content_type != "application/x-www-form-urlencoded":
        return _oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded.")
    form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    if form.get("grant_type") != "refresh_token":
        return _oauth_error(400, "unsupported_grant_type", "Invalid grant_type: " + form.get("grant_type", ""))
    client_id = form.get("client_id", "")
    if not client_id.endswith(".apps.googleusercontent.com") or not form.get("client_secret"):
        return _oauth_error(401, "invalid_client", "The OAuth client was not found.")
    refresh = form.get("refresh_token", "")
    if not refresh:
        return _oauth_error(400, "invalid_request", "Missing required parameter: refresh_token")
    if refresh.startswith("revoked"):
        return _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
    token = f"{TOKEN_PREFIX}{next(_counter)}"
    return json_response(
        200,
        {"access_token": token, "expires_in": 3599, "token_type": "Bearer", "scope": "sandbox"},
        stats={"issued": 1},
    )


def valid_bearer(request: Request) -> bool:
    """For the Google API emulations: the Authorization header carries a token this endpoint issued."""
    header = request.headers.get("authorization", "")
    return header.startswith("Bearer " + TOKEN_PREFIX)


def new_stats() -> dict[str, Any]:
    return {"requests": 0, "errors": 0, "issued": 0}


def apply_stats(stats: dict[str, Any], deltas: dict[str, Any]) -> None:
    stats["issued"] += deltas.get("issued", 0)


def export_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return dict(stats)
