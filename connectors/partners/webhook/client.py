"""Generic webhook client: one signed JSON POST (Standard Webhooks) per profile change.

Body (compact UTF-8 JSON):
    {"type": "profile.added|profile.removed|profile.updated", "id": "dlv_<delivery_id>", "timestamp": "<ISO-8601 UTC>",
     "data": {"profile_id": ..., "identifier": {"slot": ..., "value": ...}, "audience": "<id>"|null,
              "variables": {...}}}          # "variables" only when include_profile_variables is on
Headers: webhook-id (= "dlv_<delivery_id>", stable across retries: the receiver's idempotency key), webhook-timestamp
(unix seconds), webhook-signature (v1,<base64 HMAC-SHA256>), content-type: application/json.
Secret rotation: while `previous_signing_secret` is set, webhook-signature holds two space-separated signatures, the
current secret's then the previous one's (the Standard Webhooks header carries several), so a receiver verifying
with either key accepts every request while it switches keys; clearing the setting ends the rotation.

The items of one `send` go out concurrently on a thread pool kept by the client (created on first use, up to 32
threads) and sharing the pooled session; `close()` stops the pool. Redirects are not followed (a POST must not turn
into a GET elsewhere): a 3xx counts as a non-retryable partner error.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from datetime import time as dt_time
from urllib.parse import urlsplit

import requests

from connectors.delivery import http
from connectors.delivery.client import PartnerClient
from connectors.delivery.types import Action, CallResult, Item, ItemResult
from connectors.models import Outcome
from connectors.partners.webhook import signing
from connectors.partners.webhook.descriptor import PARTNER

MAX_WORKERS = 32
EVENT_TYPES = {Action.ADD: "profile.added", Action.REMOVE: "profile.removed", Action.UPDATE: "profile.updated"}

ERROR_CODES: dict[str, str] = {
    "410": "The endpoint answered 410 Gone: the configuration is paused.",
    "401": "The endpoint refused the signature or credentials (401).",
    "403": "The endpoint refused the call (403).",
    "429": "The endpoint asked to slow down (429); retried later.",
    "signing_secret": "The signing secret is missing or invalid, so nothing was sent.",
    "connection_error": "Could not connect to the endpoint; retried.",
    "request_error": "The request could not be made (check the endpoint URL).",
}


def error_meaning(partner_code: str) -> str:
    if partner_code in ERROR_CODES:
        return ERROR_CODES[partner_code]
    if partner_code.isdigit():
        if partner_code.startswith("5"):
            return f"The endpoint answered {partner_code} (server error); retried."
        return f"The endpoint answered {partner_code}."
    return ""


def message_id(item: Item) -> str:
    return f"dlv_{item.delivery_id}"


def _json_default(value):
    """Profile variables may hold dates and decimals: ISO-8601 for dates and times, text for anything else."""
    if isinstance(value, date | datetime | dt_time):
        return value.isoformat()
    return str(value)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Client(PartnerClient):
    max_workers = MAX_WORKERS
    partner = PARTNER
    default_base_url = ""
    error_codes = ERROR_CODES

    @classmethod
    def error_meaning(cls, partner_code: str) -> str:
        return error_meaning(partner_code)

    def __init__(self, config, session):
        super().__init__(config, session)
        self._secret = config.secrets.get("signing_secret", "") or ""
        previous_secret = config.secrets.get("previous_signing_secret", "") or ""
        self._secret_problem = self._check_secret(self._secret) or (
            previous_secret and self._check_secret(previous_secret).replace("signing secret", "previous signing secret")
        )
        # Current first, then the one being rotated out (both sign while the receiver switches).
        rotating = bool(previous_secret) and previous_secret != self._secret
        self._secrets = [self._secret, previous_secret] if rotating else [self._secret]
        self._include_variables = bool(config.settings.get("include_profile_variables"))
        self._url = self._target_url(str(config.settings.get("endpoint_url") or ""), config.base_url_override)

    @staticmethod
    def _check_secret(secret: str) -> str:
        """Why the signing secret cannot sign ("" when it can)."""
        if not secret:
            return "no signing secret is configured"
        try:
            signing.sign(secret, "check", 0, b"")
        except ValueError:  # binascii.Error is a ValueError
            return "the signing secret is not valid whsec_ base64"
        return ""

    @staticmethod
    def _target_url(endpoint: str, override: str) -> str:
        if not override:
            return endpoint
        parts = urlsplit(endpoint)
        path = parts.path or "/"
        return override.rstrip("/") + path + (f"?{parts.query}" if parts.query else "")

    @property
    def endpoint(self) -> str:
        """Where events go: the configured endpoint, or its path under the sandbox override."""
        return self._url

    # ------------------------------------------------------------------------------------------------
    def body(self, action: str, item: Item, now: float) -> bytes:
        data = {
            "profile_id": item.profile_id,
            "identifier": {"slot": item.slot, "value": item.identifier},
            "audience": item.partner_audience_id or None,
        }
        if self._include_variables:
            data["variables"] = item.variables
        event = {
            "type": EVENT_TYPES.get(action, f"profile.{action}"),
            "id": message_id(item),
            "timestamp": _iso(now),
            "data": data,
        }
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode()

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signature_header(self._secrets, msg_id, timestamp, body),
            "content-type": "application/json",
        }

    def send(self, action: str, items: list[Item]) -> list[CallResult]:
        if not items:
            return []
        if self._secret_problem:
            # Never send unsigned: the receiver could not tell our calls from anyone else's.
            result = ItemResult(
                Outcome.INVALID_CREDENTIALS, partner_code="signing_secret", message=self._secret_problem
            )
            indices = list(range(len(items)))
            return [
                self.all_items(
                    indices, result, partner_code="signing_secret", snippet="not sent", credentials_invalid=True
                )
            ]
        if len(items) <= 1:
            return [self._send_one(action, i, item) for i, item in enumerate(items)]
        pool = self.pool()
        futures = [pool.submit(self._send_one, action, i, item) for i, item in enumerate(items)]
        return [future.result() for future in futures]

    def _post(self, body: bytes, headers: dict[str, str]) -> http.Timed:
        return http.fast_request(self.session, "POST", self._url, timeout=self.timeout, body=body, headers=headers)

    def _send_one(self, action: str, index: int, item: Item) -> CallResult:
        now = time.time()
        msg_id = message_id(item)
        body = self.body(action, item, now)
        start = time.monotonic()
        try:
            timed = self._post(body, self.headers(msg_id, int(now), body))
        except requests.exceptions.Timeout as exc:
            message = self._clean(str(exc) or "timeout", item)
            return self.all_items(
                [index], self.timeout_result(message), duration_ms=self._since(start), snippet=message
            )
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            message = self._clean(str(exc), item)
            return self.all_items(
                [index],
                self.connection_error_result(message),
                duration_ms=self._since(start),
                partner_code="connection_error",
                snippet=message,
            )
        except requests.exceptions.RequestException as exc:
            message = self._clean(str(exc), item)
            result = ItemResult(Outcome.OTHER_ERROR, partner_code="request_error", message=message)
            return self.all_items(
                [index], result, duration_ms=self._since(start), partner_code="request_error", snippet=message
            )
        return self._classify(timed, action, index, item)

    @staticmethod
    def _since(start: float) -> float:
        return (time.monotonic() - start) * 1000

    @staticmethod
    def _clean(text: str, item: Item, limit: int = 200) -> str:
        """Redacted text with the item's own identifier masked (a receiver may echo it back)."""
        if item.identifier and len(item.identifier) >= 3:
            text = text.replace(item.identifier, "[identifier]")
        return http.redact(text, limit=limit)

    def _classify(self, timed: http.Timed, action: str, index: int, item: Item) -> CallResult:
        status = timed.response.status_code
        call = {"status_code": status, "duration_ms": timed.duration_ms}
        snippet = (
            self._clean(timed.body.decode("utf-8", "replace"), item, limit=http.SNIPPET_LIMIT) if timed.body else ""
        )
        if 200 <= status < 300:
            return CallResult(item_indices=[index], results=[ItemResult.ok(action)], snippet=snippet, **call)
        code = str(status)
        message = f"HTTP {status}"
        retry_after = None
        gone = credentials = retryable = False
        outcome = Outcome.PARTNER_ERROR
        if status == 410:
            gone = True
            message = "HTTP 410 Gone: the endpoint asked to stop deliveries"
        elif status in (401, 403):
            outcome, credentials = Outcome.INVALID_CREDENTIALS, True
        elif status == 429 or status >= 500:
            retryable = True
            retry_after = http.retry_after_seconds(timed.response.headers.get("Retry-After"))
        result = ItemResult(outcome, partner_code=code, message=message, retryable=retryable)
        return CallResult(
            item_indices=[index],
            results=[result],
            partner_code=code,
            snippet=snippet,
            retry_after=retry_after,
            credentials_invalid=credentials,
            endpoint_gone=gone,
            **call,
        )

    # ------------------------------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        if not self._url:
            return False, "Set the endpoint URL first."
        if self._secret_problem:
            return False, f"Cannot sign: {self._secret_problem}."
        now = time.time()
        msg_id = f"ping_{int(now * 1000)}"
        event = {"type": "ping", "id": msg_id, "timestamp": _iso(now), "data": {}}
        body = json.dumps(event, separators=(",", ":")).encode()
        try:
            timed = self._post(body, self.headers(msg_id, int(now), body))
        except requests.exceptions.Timeout:
            return False, f"The endpoint did not answer within {self.timeout:g} s."
        except requests.exceptions.ConnectionError as exc:
            return False, f"Could not connect to the endpoint: {http.redact(str(exc), limit=200)}"
        except requests.exceptions.RequestException as exc:
            return False, f"The request could not be made: {http.redact(str(exc), limit=200)}"
        status = timed.response.status_code
        if 200 <= status < 300:
            return True, f"Endpoint answered {status}"
        if status == 410:
            return False, "Endpoint answered 410 Gone: it asks the platform to stop sending."
        if status in (401, 403):
            return False, f"Endpoint answered {status}: it refused the signature; check the signing secret."
        detail = http.redact(timed.body.decode("utf-8", "replace"), limit=200) if timed.body else ""
        return False, f"Endpoint answered {status}" + (f": {detail}" if detail else ".")
