"""OAuth 2.0 for the Google partners (DV360, CM360, Google Ads Data Manager): a refresh token exchanged for an
access token at `https://oauth2.googleapis.com/token`, cached (shared by worker processes, encrypted in Redis) until
shortly before it expires, and dropped when an API answers 401 so the next call fetches a fresh one.

Token endpoint errors (RFC 6749 §5.2): `invalid_grant` (refresh token revoked or expired), `invalid_client`,
`unauthorized_client` are credential problems; 5xx and 429 are temporary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import requests

from connectors.delivery import http, tokens

TOKEN_HOST = "oauth2.googleapis.com"
TOKEN_PATH = "/token"
# Re-fetch this long before Google's own expiry (expires_in is normally 3599 s).
EXPIRY_MARGIN_SECONDS = 300
CREDENTIAL_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client", "unsupported_grant_type"})

ERROR_CODES = {
    "oauth/invalid_grant": "Google refused the refresh token (revoked, expired, or issued for another client): "
    "authorise again and store the new refresh token.",
    "oauth/invalid_client": "Google does not know this OAuth client id/secret pair.",
    "oauth/unauthorized_client": "This OAuth client may not use refresh tokens for this scope.",
    "oauth/unavailable": "Google's token endpoint is unavailable; retried.",
    "UNAUTHENTICATED": "Google refused the access token; the refresh token or its scope is wrong.",
    "PERMISSION_DENIED": "The authorising user has no access to this account, advertiser or list.",
    "NOT_FOUND": "The account, advertiser, audience or list does not exist.",
    "INVALID_ARGUMENT": "Google refused the request's content.",
    "FAILED_PRECONDITION": "The account is not in a state that allows this (terms, eligibility, list type).",
    "RESOURCE_EXHAUSTED": "Google's quota was reached; retried later.",
    "UNAVAILABLE": "Google's service is unavailable; retried.",
    "INTERNAL": "Google had an internal error; retried.",
    "DEADLINE_EXCEEDED": "Google did not finish in time; retried.",
    "ABORTED": "Google aborted the request (concurrency); retried.",
}
# google.rpc status codes worth another try.
RETRYABLE_STATUSES = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "ABORTED"})


@dataclass
class TokenError(Exception):
    """The access token could not be obtained. `credentials` = the stored credentials are wrong (not temporary)."""

    code: str
    message: str
    credentials: bool
    status: int | None = None


class GoogleOAuth:
    """Access tokens for one configuration's client id / secret / refresh token."""

    def __init__(self, client, scope: str):
        self.client = client  # the PartnerClient (session, timeout, url())
        self.scope = scope
        secrets = client.config.secrets
        self.client_id = str(client.config.settings.get("client_id") or "")
        self._secret = secrets.get("client_secret", "") or ""
        self._refresh = secrets.get("refresh_token", "") or ""
        self.key = tokens.cache_key("google", self.client_id, self._secret, self._refresh, scope)

    def access_token(self) -> str:
        """A valid access token (cached or freshly exchanged); raises TokenError."""
        token = tokens.get(self.key)
        if token:
            return token
        if not (self.client_id and self._secret and self._refresh):
            raise TokenError("oauth/missing", "client id, client secret and refresh token are required", True)
        try:
            timed = http.request(
                self.client.session,
                "POST",
                self.client.url(TOKEN_HOST, TOKEN_PATH),
                timeout=self.client.timeout,
                data={
                    "grant_type": "refresh_token",
                    "client_id": self.client_id,
                    "client_secret": self._secret,
                    "refresh_token": self._refresh,
                },
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise TokenError("oauth/unavailable", http.redact(str(exc) or "token request failed", 200), False) from exc
        status = timed.response.status_code
        try:
            payload = json.loads(timed.body)
        except ValueError:
            payload = {}
        if status == 200 and isinstance(payload, dict) and payload.get("access_token"):
            ttl = float(payload.get("expires_in") or 3599) - EXPIRY_MARGIN_SECONDS
            tokens.put(self.key, str(payload["access_token"]), max(ttl, 30.0))
            return str(payload["access_token"])
        error = str(payload.get("error") or "") if isinstance(payload, dict) else ""
        description = str(payload.get("error_description") or "") if isinstance(payload, dict) else ""
        message = http.redact(f"{error}: {description}" if description else (error or f"HTTP {status}"), 300)
        credentials = error in CREDENTIAL_ERRORS or status in (400, 401)
        code = f"oauth/{error}" if error else f"http_{status}"
        raise TokenError(code, message, credentials and status < 500, status)

    def forget(self) -> None:
        """The API refused the token (401): fetch a new one next time."""
        tokens.forget(self.key)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token()}"}


def google_error(payload) -> tuple[str, str, list]:
    """(status, message, details) of a google.rpc error body `{"error": {"code", "message", "status", "details"}}`."""
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        details = error.get("details") if isinstance(error.get("details"), list) else []
        return str(error.get("status") or ""), http.redact(str(error.get("message") or ""), 300), details
    return "", "", []
