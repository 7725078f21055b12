"""Meta Custom Audiences client: hashed customer-list rows to `/{audience_id}/users` (Graph API).

Add (and update) = POST, remove = DELETE, body `{"payload": {"schema": "EMAIL_SHA256", "data": ["<hex>", ...]}}`:
single-key schemas take `data` as a flat list of strings (Meta's Custom Audiences guide). The items of one `send`
are grouped by (custom audience id, schema) and split into requests of at most 10,000 rows.

The access token goes in the Authorization header, never in the URL; when an app secret is set, `appsecret_proof`
(hex HMAC-SHA256 of the token keyed by the app secret) is added as a query parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from urllib.parse import quote

import requests

from connectors.delivery import http
from connectors.delivery.client import PartnerClient
from connectors.delivery.types import Action, CallResult, Item, ItemResult
from connectors.models import Outcome
from connectors.partners.meta_custom_audiences.descriptor import PARTNER
from connectors.partners.meta_custom_audiences.normalize import PREPARE_BY_SLOT, SCHEMA_BY_SLOT

DEFAULT_API_VERSION = "v26.0"
MAX_ROWS_PER_REQUEST = 10_000
HEX_SCHEMAS = frozenset({"EMAIL_SHA256", "PHONE_SHA256"})  # values are always 64 lower-case hex characters
ERROR_DOCS_URL = PARTNER.error_docs_url

# Graph error codes by handling. Throttling: app (4), user (17), page (32), custom/ad account (613) and the
# business-use-case limits 80000-80099 (80003 custom_audience, 80004 ads_management, ...).
THROTTLING_CODES = frozenset({4, 17, 32, 613})
TEMPORARY_CODES = frozenset({1, 2})
# Seen right after an audience is created; succeeds on retry (the dispatcher bounds the attempts).
AUDIENCE_NOT_READY_CODE = 803
INVALID_TOKEN_CODE = 190

# What the statistics page shows next to a partner error code ("code" or "code/subcode"; see `error_meaning`).
ERROR_CODES: dict[str, str] = {
    "1": "Unknown error at Meta; retried.",
    "2": "Meta service temporarily unavailable; retried.",
    "4": "Too many calls from the app (application request limit); retried later.",
    "10": "The app has no permission for this action.",
    "17": "Too many calls for this user or ad account; retried later.",
    "32": "Page request limit reached; retried later.",
    "100": "Invalid parameter sent to Meta.",
    "100/33": "The custom audience does not exist, or the token's system user has no access to its ad account.",
    "190": "The access token is invalid or expired: generate a new system-user token.",
    "200": "Permission error: the token lacks ads_management on the ad account.",
    "200/1870034": "The Custom Audience terms have not been accepted in Ads Manager.",
    "200/1870047": "Removing these people would make the audience too small.",
    "294": "Managing ads requires the ads_management permission.",
    "613": "Too many calls for the ad account; retried later.",
    "613/1487742": "Too many calls for the ad account; retried later.",
    "803": "The custom audience is not known yet (usually just after it was created); retried.",
    "2650": "Meta could not update the custom audience (for example a multi-key audience given single-key rows).",
    "80003": "Custom audience rate limit of the ad account reached; retried later.",
    "80004": "Ads management rate limit of the ad account reached; retried later.",
    "invalid_entry": "Meta reported this value as invalid.",
    "invalid_identifier": "The identifier is empty once normalised, so it was not sent.",
    "no_partner_audience_id": "The audience connection has no Meta custom audience id.",
    "unsupported_slot": "Meta Custom Audiences cannot match on this identifier.",
    "no_access_token": "No access token is configured.",
    "invalid_response": "Meta's answer could not be read; retried.",
    "connection_error": "Could not connect to Meta; retried.",
    "request_error": "The request to Meta could not be made.",
    "http_429": "Meta answered 429 Too Many Requests; retried later.",
}


def error_meaning(partner_code: str) -> str:
    """Plain words for a partner error code: exact match, then the code without its subcode, then http_<status>."""
    if partner_code in ERROR_CODES:
        return ERROR_CODES[partner_code]
    code = partner_code.split("/", 1)[0]
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    if code.isdigit() and 80000 <= int(code) <= 80099:
        return "Business-use-case rate limit reached; retried later."
    if code.startswith("http_"):
        status = code[5:]
        if status.startswith("5"):
            return f"Meta answered HTTP {status} (server error); retried."
        return f"Meta answered HTTP {status}."
    return ""


def is_throttling(code: int) -> bool:
    return code in THROTTLING_CODES or 80000 <= code <= 80099


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _buc_retry_after(header: str | None) -> float | None:
    """Seconds from X-Business-Use-Case-Usage `estimated_time_to_regain_access` (minutes), the largest given."""
    if not header:
        return None
    try:
        usage = json.loads(header)
    except ValueError:
        return None
    minutes = 0.0
    if isinstance(usage, dict):
        for entries in usage.values():
            for entry in entries if isinstance(entries, list) else [entries]:
                if isinstance(entry, dict):
                    value = entry.get("estimated_time_to_regain_access")
                    if isinstance(value, int | float) and value > minutes:
                        minutes = float(value)
    return minutes * 60 if minutes > 0 else None


class GraphError:
    """A Graph API error object, classified."""

    __slots__ = ("code", "subcode", "message", "outcome", "retryable", "credentials_invalid", "partner_code")

    def __init__(self, error: dict, status: int | None):
        self.code = _as_int(error.get("code"))
        self.subcode = _as_int(error.get("error_subcode"))
        message = str(error.get("message") or "")
        user_msg = str(error.get("error_user_msg") or "")
        if user_msg and user_msg not in message:
            message = f"{message} — {user_msg}" if message else user_msg
        self.message = http.redact(message, limit=300)
        code = self.code if self.code is not None else 0
        self.partner_code = (str(code) + (f"/{self.subcode}" if self.subcode else "")) if self.code is not None else ""
        if not self.partner_code:
            self.partner_code = f"http_{status}" if status else "invalid_response"
        self.credentials_invalid = code == INVALID_TOKEN_CODE
        self.outcome = Outcome.INVALID_CREDENTIALS if self.credentials_invalid else Outcome.PARTNER_ERROR
        self.retryable = not self.credentials_invalid and (
            is_throttling(code)
            or code in TEMPORARY_CODES
            or code == AUDIENCE_NOT_READY_CODE
            or error.get("is_transient") is True
            or status == 429
            or (self.code is None and status is not None and status >= 500)
        )

    @property
    def throttled(self) -> bool:
        return self.code is not None and is_throttling(self.code)


def _error_object(payload) -> dict | None:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return payload["error"]
    return None


def _json(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


class Client(PartnerClient):
    partner = PARTNER
    default_base_url = "https://graph.facebook.com"
    error_codes = ERROR_CODES

    @classmethod
    def error_meaning(cls, partner_code: str) -> str:
        return error_meaning(partner_code)

    def __init__(self, config, session):
        super().__init__(config, session)
        token = config.secrets.get("access_token", "") or ""
        app_secret = config.secrets.get("app_secret", "") or ""
        self._token = token
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._params = (
            {"appsecret_proof": hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()}
            if app_secret and token
            else None
        )

    @property
    def api_version(self) -> str:
        return str(self.config.settings.get("api_version") or DEFAULT_API_VERSION)

    def users_url(self, audience_id: str) -> str:
        return f"{self.base_url}/{self.api_version}/{quote(audience_id, safe='')}/users"

    # ------------------------------------------------------------------------------------------------
    def send(self, action: str, items: list[Item]) -> list[CallResult]:
        calls: list[CallResult] = []
        no_audience: list[int] = []
        invalid: list[int] = []
        unsupported: list[int] = []
        groups: dict[tuple[str, str], tuple[list[int], list[str]]] = {}
        prepare_by_slot = PREPARE_BY_SLOT
        for index, item in enumerate(items):
            audience_id = item.partner_audience_id
            if not audience_id:
                no_audience.append(index)
                continue
            prepare = prepare_by_slot.get(item.slot)
            if prepare is None:
                unsupported.append(index)
                continue
            value = prepare(item.identifier) if item.identifier else ""
            if not value:
                invalid.append(index)
                continue
            group = groups.get((audience_id, item.slot))
            if group is None:
                group = groups[(audience_id, item.slot)] = ([], [])
            group[0].append(index)
            group[1].append(value)

        for indices, code, message in (
            (no_audience, "no_partner_audience_id", "no custom audience id on the audience connection"),
            (invalid, "invalid_identifier", "identifier empty after normalisation"),
            (unsupported, "unsupported_slot", "identifier slot not supported by Meta Custom Audiences"),
        ):
            if indices:
                result = ItemResult(Outcome.OTHER_ERROR, partner_code=code, message=message, retryable=False)
                calls.append(self.all_items(indices, result, partner_code=code, snippet=f"not sent: {message}"))

        if not groups:
            return calls
        if not self._token:
            indices = [i for group_indices, _ in groups.values() for i in group_indices]
            result = ItemResult(Outcome.INVALID_CREDENTIALS, partner_code="no_access_token", message="no access token")
            calls.append(
                self.all_items(
                    indices, result, partner_code="no_access_token", snippet="not sent", credentials_invalid=True
                )
            )
            return calls

        method = "DELETE" if action == Action.REMOVE else "POST"
        for (audience_id, slot), (indices, values) in groups.items():
            schema = SCHEMA_BY_SLOT[slot]
            url = self.users_url(audience_id)
            for start in range(0, len(values), MAX_ROWS_PER_REQUEST):
                end = start + MAX_ROWS_PER_REQUEST
                calls.append(self._call(method, url, action, schema, indices[start:end], values[start:end]))
        return calls

    def _call(self, method: str, url: str, action: str, schema: str, indices: list[int], values: list[str]):
        if schema in HEX_SCHEMAS:  # SHA-256 hex digests: nothing to escape, a join is 5x faster than json.dumps
            data = '["' + '","'.join(values) + '"]' if values else "[]"
        else:
            data = json.dumps(values, separators=(",", ":"))
        body = b'{"payload":{"schema":"%s","data":%s}}' % (schema.encode(), data.encode())
        start = time.monotonic()
        try:
            timed = http.request(
                self.session,
                method,
                url,
                timeout=self.timeout,
                data=body,
                headers=self._headers,
                params=self._params,
                allow_redirects=False,
            )
        except requests.exceptions.Timeout as exc:
            duration = (time.monotonic() - start) * 1000
            message = http.redact(str(exc) or "timeout", limit=200)
            return self.all_items(indices, self.timeout_result(message), duration_ms=duration, snippet=message)
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            duration = (time.monotonic() - start) * 1000
            message = http.redact(str(exc), limit=200)
            return self.all_items(
                indices,
                self.connection_error_result(message),
                duration_ms=duration,
                partner_code="connection_error",
                snippet=message,
            )
        except requests.exceptions.RequestException as exc:
            duration = (time.monotonic() - start) * 1000
            message = http.redact(str(exc), limit=200)
            result = ItemResult(Outcome.OTHER_ERROR, partner_code="request_error", message=message)
            return self.all_items(indices, result, duration_ms=duration, partner_code="request_error", snippet=message)
        return self._classify(timed, action, indices, values)

    def _classify(self, timed: http.Timed, action: str, indices: list[int], values: list[str]) -> CallResult:
        response = timed.response
        status = response.status_code
        payload = _json(timed.body)
        error = _error_object(payload)
        call = {"status_code": status, "duration_ms": timed.duration_ms}

        if error is None and 200 <= status < 300:
            if not isinstance(payload, dict):
                result = ItemResult(
                    Outcome.PARTNER_ERROR, partner_code="invalid_response", message="unreadable answer", retryable=True
                )
                return self.all_items(
                    indices, result, partner_code="invalid_response", snippet=http.redact(response.text), **call
                )
            return self._success(payload, action, indices, values, call)

        retry_after = http.retry_after_seconds(response.headers.get("Retry-After"))
        if error is not None:
            graph = GraphError(error, status)
            if retry_after is None and (graph.throttled or status == 429):
                retry_after = _buc_retry_after(response.headers.get("X-Business-Use-Case-Usage"))
            result = ItemResult(
                graph.outcome, partner_code=graph.partner_code, message=graph.message, retryable=graph.retryable
            )
            return self.all_items(
                indices,
                result,
                partner_code=graph.partner_code,
                snippet=http.redact(timed.body.decode("utf-8", "replace")),
                retry_after=retry_after,
                credentials_invalid=graph.credentials_invalid,
                **call,
            )

        code = f"http_{status}"
        retryable = status == 429 or status >= 500
        if status == 429 and retry_after is None:
            retry_after = _buc_retry_after(response.headers.get("X-Business-Use-Case-Usage"))
        result = ItemResult(Outcome.PARTNER_ERROR, partner_code=code, message=f"HTTP {status}", retryable=retryable)
        return self.all_items(
            indices,
            result,
            partner_code=code,
            snippet=http.redact(timed.body.decode("utf-8", "replace")),
            retry_after=retry_after,
            **call,
        )

    def _success(self, payload: dict, action: str, indices: list[int], values: list[str], call: dict) -> CallResult:
        ok = ItemResult.ok(action)
        results = [ok] * len(indices)
        samples = payload.get("invalid_entry_samples")
        flagged = 0
        if samples:
            position: dict[str, list[int]] = {}
            for offset, value in enumerate(values):
                position.setdefault(value, []).append(offset)
            reasons: list[tuple[str, str]] = []
            if isinstance(samples, dict):
                reasons = [(str(k), str(v) if isinstance(v, str) else "") for k, v in samples.items()]
            elif isinstance(samples, list):
                for sample in samples:
                    if isinstance(sample, list) and sample:
                        sample = sample[0]
                    if isinstance(sample, str):
                        reasons.append((sample, ""))
            for sample, reason in reasons:
                offsets = position.get(sample) or position.get(sample.strip().lower())
                if not offsets:
                    continue
                message = http.redact(reason, limit=200) if reason else "invalid entry"
                bad = ItemResult(Outcome.PARTNER_ERROR, partner_code="invalid_entry", message=message, retryable=False)
                for offset in offsets:
                    if results[offset] is ok:
                        flagged += 1
                    results[offset] = bad
        snippet = (
            f"received={payload.get('num_received')} invalid={payload.get('num_invalid_entries')} "
            f"flagged={flagged} session_id={payload.get('session_id')}"
        )
        return CallResult(
            item_indices=list(indices),
            results=results,
            partner_code="invalid_entry" if flagged else "",
            snippet=http.redact(snippet),
            **call,
        )

    # ------------------------------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        account = re.sub(r"\D", "", str(self.config.settings.get("ad_account_id") or ""))
        if not account:
            return False, "Set the ad account ID first."
        if not self._token:
            return False, "Set the access token first."
        url = f"{self.base_url}/{self.api_version}/act_{account}"
        params = {"fields": "id,name", **(self._params or {})}
        try:
            timed = http.request(
                self.session,
                "GET",
                url,
                timeout=self.timeout,
                headers={"Authorization": self._headers["Authorization"]},
                params=params,
                allow_redirects=False,
            )
        except requests.exceptions.Timeout:
            return False, f"Meta did not answer within {self.timeout:g} s."
        except requests.exceptions.RequestException as exc:
            return False, f"Could not connect to Meta: {http.redact(str(exc), limit=200)}"
        payload = _json(timed.body)
        error = _error_object(payload)
        status = timed.response.status_code
        if error is None and 200 <= status < 300 and isinstance(payload, dict):
            name = http.redact(str(payload.get("name") or ""), limit=200)
            ident = http.redact(str(payload.get("id") or f"act_{account}"), limit=60)
            return True, f"Connected to ad account {name} ({ident})." if name else f"Connected to ad account {ident}."
        if error is not None:
            graph = GraphError(error, status)
            if graph.credentials_invalid:
                return False, f"Invalid credentials (Meta error {graph.partner_code}): {graph.message}"
            hint = error_meaning(graph.partner_code)
            text = f"Meta error {graph.partner_code}: {graph.message}"
            return False, f"{text} ({hint})" if hint and hint not in text else text
        return False, f"Meta answered HTTP {status}: {http.redact(timed.body.decode('utf-8', 'replace'), limit=200)}"
