"""Campaign Manager 360 offline conversions: `conversions.batchinsert` (API v5), OAuth 2.0 scope `ddmconversions`.

One profile entering the audience (or reaching the journey step) becomes one Conversion:

    POST https://dfareporting.googleapis.com/dfareporting/v5/userprofiles/{profileId}/conversions/batchinsert
    {"kind": "dfareporting#conversionsBatchInsertRequest",
     "conversions": [{"kind": "dfareporting#conversion", "floodlightConfigurationId": "…",
                      "floodlightActivityId": "…", "ordinal": "dap-<delivery id>", "timestampMicros": "…",
                      "value": 12.5, "quantity": "1", "adUserDataConsent": "GRANTED",
                      "gclid" | "matchId" | "mobileDeviceId": "…"}]}

Decisions, and why:
- Floodlight activity: the audience connection's partner audience id when it is set (so one configuration can record
  a different activity per audience), else the configuration's `floodlight_activity_id` (journeys have no audience
  connection). A partner audience id that is not a numeric id is refused locally (`invalid_activity_id`) rather than
  silently replaced by the configured activity.
- De-duplication: CM360 counts conversions with the same activity, user identifier, day and `ordinal` once. The
  ordinal is "dap-<delivery id>": the outbox row's id stays the same across retries of that row, so a retry after a
  timeout whose request did land is not counted twice; a later, separate entry gets a new row and a new ordinal. The
  timestamp is the first attempt's (remembered per delivery by this client), so a retry keeps the same conversion
  time and day as long as it runs in the same worker process.
- One identifier per conversion, from the item's slot (normalize.py). Email is not sendable on its own: a hashed
  email only enhances a conversion that also has a click id, match id or device id, so such items are answered
  `unsupported_slot` without a call.
- Consent: the dispatcher only hands over profiles with ads consent, so `adUserDataConsent` is GRANTED.
- "remove" and "update" have no meaning for an inserted conversion (it cannot be withdrawn; CM360's batchupdate needs
  the original conversion's exact key): those items are answered `remove_not_supported` / `update_not_supported`,
  other_error, not retried, and nothing is sent.
- 1,000 conversions per request (documented maximum).

Answers: HTTP 200 carries `hasFailures` and one `status` per conversion in request order; a status with `errors`
failed with `errors[0].code` (INTERNAL is retried; INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED are final partner
errors). Whole-request failures are google.rpc errors: 401 -> the access token is dropped and fetched again once,
a second 401 means the credentials are invalid (the configuration pauses); 403/404/400 are final except the quota
reasons (userRateLimitExceeded, rateLimitExceeded: retried; dailyLimitExceeded: retried after an hour) and an access
token without the ddmconversions scope (credentials); 429 and 5xx are retried, honouring Retry-After.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, OrderedDict
from datetime import UTC, datetime

import requests

from connectors.delivery import http
from connectors.delivery.client import PartnerClient
from connectors.delivery.types import Action, CallResult, Item, ItemResult
from connectors.models import Outcome
from connectors.partners import google_oauth
from connectors.partners.google_cm360 import normalize
from connectors.partners.google_cm360.descriptor import PARTNER, SCOPE
from connectors.partners.google_oauth import GoogleOAuth, TokenError, google_error

API_HOST = "dfareporting.googleapis.com"
API_VERSION = "v5"
MAX_CONVERSIONS = 1_000
REQUEST_KIND = "dfareporting#conversionsBatchInsertRequest"
CONVERSION_KIND = "dfareporting#conversion"
ORDINAL_PREFIX = "dap-"
# First-attempt timestamps remembered per delivery (bounded: the oldest are forgotten first).
TIMESTAMP_MEMORY = 100_000
# CM360's daily quota refreshes at midnight Pacific time: do not hammer it before then.
DAILY_LIMIT_RETRY_SECONDS = 3600.0
_DIGITS = re.compile(r"\d{1,20}")

# google.rpc / legacy `errors[].reason` values that mean "slow down" (CM360 answers its quota errors with 403).
RATE_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded", "RATE_LIMIT_EXCEEDED"})
DAILY_REASONS = frozenset({"dailyLimitExceeded"})
SCOPE_REASONS = frozenset({"ACCESS_TOKEN_SCOPE_INSUFFICIENT"})
ROW_RETRYABLE = frozenset({"INTERNAL"})

ERROR_CODES: dict[str, str] = {
    **google_oauth.ERROR_CODES,
    "oauth/missing": "The OAuth client ID, client secret or refresh token is missing.",
    "UNAUTHENTICATED": "Google refused the access token even after fetching a new one: authorise the OAuth client "
    "again (scope ddmconversions) and store the new refresh token.",
    "PERMISSION_DENIED": "Campaign Manager 360 refused: the user profile has no access to this Floodlight "
    "configuration or activity, lacks the 'Insert offline conversions' permission, or the API is not enabled in the "
    "Google Cloud project.",
    "PERMISSION_DENIED/ACCESS_TOKEN_SCOPE_INSUFFICIENT": "The refresh token was issued without the ddmconversions "
    "scope: authorise again with that scope.",
    "PERMISSION_DENIED/userRateLimitExceeded": "Campaign Manager 360's per-minute quota was reached; retried later.",
    "PERMISSION_DENIED/rateLimitExceeded": "Campaign Manager 360's per-minute quota was reached; retried later.",
    "PERMISSION_DENIED/dailyLimitExceeded": "The Google Cloud project's daily Campaign Manager 360 quota is spent "
    "(it refreshes at midnight Pacific time); retried hourly within the retry window.",
    "NOT_FOUND": "Campaign Manager 360 could not match it: for a conversion, the gclid, match ID or mobile device ID "
    "is unknown, or its click or Floodlight activity is too old or too recent; for a request, the user profile or "
    "Floodlight activity does not exist.",
    "INVALID_ARGUMENT": "Campaign Manager 360 refused the conversion's content (identifier format, timestamp older "
    "than 28 days, a gclid click older than 60 days, Floodlight activity of another configuration, …).",
    "INTERNAL": "Campaign Manager 360 had an internal error; retried.",
    "unsupported_slot": "Campaign Manager 360 records a conversion only against a gclid, a match ID (customer id) or a "
    "mobile device ID. A hashed email can only enhance a conversion that has one of these, so a profile whose only "
    "identifier is an email address is not sent.",
    "invalid_identifier": "The identifier is empty or malformed once cleaned (a gclid with spaces, a mobile device ID "
    "that is not an IDFA/AAID, the all-zero device ID), so it was not sent.",
    "invalid_activity_id": "The audience connection's partner audience id must be the numeric Floodlight activity ID "
    "(or be left empty to use the configuration's activity).",
    "not_configured": "The user profile ID or Floodlight configuration/activity ID is missing from the configuration.",
    "remove_not_supported": "Campaign Manager 360 conversions cannot be withdrawn: a profile leaving the audience "
    "sends nothing (counted here so the outbox row is closed).",
    "update_not_supported": "Campaign Manager 360 records one conversion per entry; a profile update sends nothing.",
    "invalid_response": "Campaign Manager 360's answer could not be read; retried.",
}


def _json(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


def _error_reasons(payload) -> list[str]:
    """`reason`s of a Google error body: legacy `errors[].reason` and google.rpc ErrorInfo `details[].reason`."""
    reasons: list[str] = []
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return reasons
    for key in ("errors", "details"):
        entries = error.get(key)
        if isinstance(entries, list):
            for entry in entries:
                if isinstance(entry, dict) and isinstance(entry.get("reason"), str):
                    reasons.append(entry["reason"])
    return reasons


def _scrub(text: str, value: str) -> str:
    """A partner message without the item's own identifier (CM360 sometimes quotes it), redacted."""
    if value and len(value) >= 4:
        text = text.replace(value, "[identifier]")
    return http.redact(text, limit=300)


class Client(PartnerClient):
    partner = PARTNER
    default_base_url = f"https://{API_HOST}"
    error_codes = ERROR_CODES

    def __init__(self, config, session):
        super().__init__(config, session)
        self.oauth = GoogleOAuth(self, SCOPE)
        settings = config.settings
        self.profile_id = str(settings.get("profile_id") or "").strip()
        self.configuration_id = str(settings.get("floodlight_configuration_id") or "").strip()
        self.activity_id = str(settings.get("floodlight_activity_id") or "").strip()
        self.value = float(settings.get("default_value") or 0)
        self.quantity = int(settings.get("default_quantity") or 1)
        self._timestamps: OrderedDict[int, int] = OrderedDict()

    # URLs ---------------------------------------------------------------------------------------------------------
    def profile_url(self) -> str:
        return self.url(API_HOST, f"/dfareporting/{API_VERSION}/userprofiles/{self.profile_id}")

    def batchinsert_url(self) -> str:
        return self.profile_url() + "/conversions/batchinsert"

    # Building conversions -----------------------------------------------------------------------------------------
    def ordinal(self, item: Item) -> str:
        if item.delivery_id:
            return f"{ORDINAL_PREFIX}{item.delivery_id}"
        return f"{ORDINAL_PREFIX}p{item.profile_id}-{datetime.now(UTC):%Y%m%d}"  # no outbox row: once a day

    def timestamp_micros(self, item: Item) -> int:
        """When the change was enqueued (the same on every retry, in any process); without it the first attempt's
        time for this delivery (kept for its retries in this process), else now."""
        if item.enqueued_at > 0:
            return int(item.enqueued_at * 1_000_000)
        now = time.time_ns() // 1000
        key = item.delivery_id
        if not key:
            return now
        remembered = self._timestamps.get(key)
        if remembered is not None:
            return remembered
        self._timestamps[key] = now
        if len(self._timestamps) > TIMESTAMP_MEMORY:
            self._timestamps.popitem(last=False)
        return now

    def forget_timestamps(self, items: list[Item]) -> None:
        """Deliveries that are finished (recorded or refused for good) need no remembered timestamp."""
        for item in items:
            self._timestamps.pop(item.delivery_id, None)

    def conversion(self, item: Item, field: str, value: str, activity_id: str) -> dict:
        return {
            "kind": CONVERSION_KIND,
            "floodlightConfigurationId": self.configuration_id,
            "floodlightActivityId": activity_id,
            field: value,
            "ordinal": self.ordinal(item),
            "timestampMicros": str(self.timestamp_micros(item)),
            "value": self.value,
            "quantity": str(self.quantity),
            "adUserDataConsent": "GRANTED",
        }

    # Sending ------------------------------------------------------------------------------------------------------
    def send(self, action: str, items: list[Item]) -> list[CallResult]:
        calls: list[CallResult] = []
        if action in (Action.REMOVE, Action.UPDATE):
            code = "remove_not_supported" if action == Action.REMOVE else "update_not_supported"
            message = (
                "a conversion cannot be withdrawn; nothing sent"
                if action == Action.REMOVE
                else "a profile update is not a new conversion; nothing sent"
            )
            result = ItemResult(Outcome.OTHER_ERROR, partner_code=code, message=message, retryable=False)
            return [self.all_items(list(range(len(items))), result, partner_code=code, snippet=f"not sent: {message}")]

        refused: dict[str, list[int]] = {}
        indices: list[int] = []
        conversions: list[dict] = []
        values: list[str] = []
        configured = bool(_DIGITS.fullmatch(self.profile_id) and _DIGITS.fullmatch(self.configuration_id))
        for index, item in enumerate(items):
            activity = (item.partner_audience_id or "").strip() or self.activity_id
            field, value = normalize.prepare(item.slot, item.identifier)
            if not configured or not activity:
                refused.setdefault("not_configured", []).append(index)
            elif not _DIGITS.fullmatch(activity):
                refused.setdefault("invalid_activity_id", []).append(index)
            elif field is None:
                refused.setdefault("unsupported_slot", []).append(index)
            elif not value:
                refused.setdefault("invalid_identifier", []).append(index)
            else:
                indices.append(index)
                values.append(value)
                conversions.append(self.conversion(item, field, value, activity))

        messages = {
            "not_configured": "profile, Floodlight configuration or activity id missing",
            "invalid_activity_id": "the partner audience id is not a numeric Floodlight activity id",
            "unsupported_slot": "Campaign Manager 360 cannot record a conversion from this identifier alone",
            "invalid_identifier": "identifier empty or malformed once cleaned",
        }
        for code, refused_indices in refused.items():
            result = ItemResult(Outcome.OTHER_ERROR, partner_code=code, message=messages[code], retryable=False)
            calls.append(
                self.all_items(refused_indices, result, partner_code=code, snippet=f"not sent: {messages[code]}")
            )

        for start in range(0, len(indices), MAX_CONVERSIONS):
            end = start + MAX_CONVERSIONS
            chunk = indices[start:end]
            call = self._insert(chunk, conversions[start:end], values[start:end])
            finished = [
                items[i] for i, r in zip(call.item_indices, call.results, strict=True) if not r.retryable
            ]  # recorded or refused for good: their timestamps are no longer needed
            self.forget_timestamps(finished)
            calls.append(call)
        return calls

    def _token_failure(self, indices: list[int], exc: TokenError) -> CallResult:
        if exc.credentials:
            result = ItemResult(Outcome.INVALID_CREDENTIALS, partner_code=exc.code, message=exc.message)
            return self.all_items(
                indices, result, partner_code=exc.code, snippet=f"token: {exc.message}", credentials_invalid=True
            )
        result = ItemResult(Outcome.OTHER_ERROR, partner_code=exc.code, message=exc.message, retryable=True)
        return self.all_items(indices, result, partner_code=exc.code, snippet=f"token: {exc.message}")

    def _insert(self, indices: list[int], conversions: list[dict], values: list[str]) -> CallResult:
        """One batchinsert; on 401 the access token is fetched again and the request repeated once."""
        body = json.dumps({"kind": REQUEST_KIND, "conversions": conversions}, separators=(",", ":")).encode()
        spent = 0.0
        for attempt in (1, 2):
            try:
                headers = {**self.oauth.headers(), "Content-Type": "application/json"}
            except TokenError as exc:
                call = self._token_failure(indices, exc)
                call.duration_ms += spent
                return call
            call = self.call(
                indices,
                "POST",
                self.batchinsert_url(),
                lambda timed: self._classify(timed, indices, values),
                data=body,
                headers=headers,
            )
            call.duration_ms += spent
            if call.status_code == 401 and attempt == 1:
                self.oauth.forget()
                spent = call.duration_ms
                continue
            return call
        return call  # pragma: no cover - the loop always returns

    # Classifying answers ------------------------------------------------------------------------------------------
    def _classify(self, timed: http.Timed, indices: list[int], values: list[str]) -> CallResult:
        status = timed.response.status_code
        payload = _json(timed.body)
        base = {"status_code": status, "duration_ms": timed.duration_ms}
        if status == 200:
            return self._statuses(payload, indices, values, base)
        return self._request_error(timed, payload, indices, base)

    def _statuses(self, payload, indices: list[int], values: list[str], base: dict) -> CallResult:
        if not isinstance(payload, dict):
            return self._unreadable(indices, base, "the answer is not a JSON object")
        statuses = payload.get("status")
        has_failures = payload.get("hasFailures") is True
        ok = ItemResult(Outcome.ADDED)
        if not isinstance(statuses, list) or len(statuses) != len(indices):
            if not has_failures:  # nothing failed: every conversion was recorded
                return CallResult(list(indices), [ok] * len(indices), snippet=f"recorded={len(indices)}", **base)
            return self._unreadable(indices, base, "hasFailures without one status per conversion")
        results: list[ItemResult] = []
        codes: Counter = Counter()
        for status, value in zip(statuses, values, strict=True):
            if not isinstance(status, dict):
                codes["invalid_response"] += 1
                results.append(
                    ItemResult(
                        Outcome.PARTNER_ERROR,
                        partner_code="invalid_response",
                        message="unreadable status",
                        retryable=True,
                    )
                )
                continue
            errors = status.get("errors")
            errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
            if not errors:
                results.append(ok)
                continue
            code = str(errors[0].get("code") or "UNKNOWN")
            message = "; ".join(str(e.get("message") or e.get("code") or "") for e in errors)
            codes[code] += 1
            results.append(
                ItemResult(
                    Outcome.PARTNER_ERROR,
                    partner_code=code,
                    message=_scrub(message, value),
                    retryable=code in ROW_RETRYABLE,
                )
            )
        failed = sum(codes.values())
        summary = ", ".join(f"{code}:{n}" for code, n in codes.most_common())
        snippet = f"recorded={len(indices) - failed} failed={failed}" + (f" ({summary})" if summary else "")
        partner_code = codes.most_common(1)[0][0] if codes else ""
        return CallResult(list(indices), results, partner_code=partner_code, snippet=snippet, **base)

    def _unreadable(self, indices: list[int], base: dict, why: str) -> CallResult:
        result = ItemResult(Outcome.PARTNER_ERROR, partner_code="invalid_response", message=why, retryable=True)
        return self.all_items(indices, result, partner_code="invalid_response", snippet=why, **base)

    def _request_error(self, timed: http.Timed, payload, indices: list[int], base: dict) -> CallResult:
        status = base["status_code"]
        rpc_status, message, _details = google_error(payload)
        reasons = _error_reasons(payload)
        retry_after = http.retry_after_seconds(timed.response.headers.get("Retry-After"))
        snippet = http.redact(timed.body.decode("utf-8", "replace"))
        code = rpc_status or f"http_{status}"
        outcome = Outcome.PARTNER_ERROR
        retryable = False
        credentials = False
        rate = next((r for r in reasons if r in RATE_REASONS), None)
        daily = next((r for r in reasons if r in DAILY_REASONS), None)
        if status == 401:
            code, outcome, credentials = rpc_status or "UNAUTHENTICATED", Outcome.INVALID_CREDENTIALS, True
        elif status == 429:
            code, retryable = rpc_status or "RESOURCE_EXHAUSTED", True
        elif rate:
            code, retryable = f"{code}/{rate}", True
        elif daily:
            code, retryable = f"{code}/{daily}", True
            retry_after = max(retry_after or 0.0, DAILY_LIMIT_RETRY_SECONDS)
        elif status == 403 and (
            any(r in SCOPE_REASONS for r in reasons) or "insufficient authentication scopes" in message.lower()
        ):
            code, outcome, credentials = f"{code}/ACCESS_TOKEN_SCOPE_INSUFFICIENT", Outcome.INVALID_CREDENTIALS, True
        elif status >= 500 or rpc_status in google_oauth.RETRYABLE_STATUSES:
            retryable = True
        if not message:
            message = f"HTTP {status}"
        result = ItemResult(outcome, partner_code=code, message=message, retryable=retryable)
        return self.all_items(
            indices,
            result,
            partner_code=code,
            snippet=snippet,
            retry_after=retry_after if retryable else None,
            credentials_invalid=credentials,
            **base,
        )

    # Test connection ----------------------------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """Reads the user profile (userProfiles.get, allowed with the ddmconversions scope): proves the OAuth
        credentials and the profile id. CM360 offers no read of the Floodlight activity under this scope, so those ids
        are checked by the first conversions sent."""
        if not _DIGITS.fullmatch(self.profile_id):
            return False, "Set the numeric Campaign Manager 360 user profile ID first."
        timed = None
        for attempt in (1, 2):
            try:
                headers = self.oauth.headers()
            except TokenError as exc:
                if exc.credentials:
                    return False, f"Invalid credentials ({exc.code}): {exc.message}"
                return False, f"Could not get an access token from Google ({exc.code}): {exc.message}"
            try:
                timed = http.request(
                    self.session,
                    "GET",
                    self.profile_url(),
                    timeout=self.timeout,
                    headers=headers,
                    allow_redirects=False,
                )
            except requests.exceptions.Timeout:
                return False, f"Campaign Manager 360 did not answer within {self.timeout:g} s."
            except requests.exceptions.RequestException as exc:
                return False, f"Could not connect to Campaign Manager 360: {http.redact(str(exc), limit=200)}"
            if timed.response.status_code == 401 and attempt == 1:
                self.oauth.forget()
                continue
            break
        status = timed.response.status_code
        payload = _json(timed.body)
        if status == 200 and isinstance(payload, dict):
            account = http.redact(str(payload.get("accountName") or ""), limit=100)
            account_id = http.redact(str(payload.get("accountId") or ""), limit=30)
            where = f" in account {account} ({account_id})" if account else ""
            return True, (
                f"Connected to Campaign Manager 360 user profile {self.profile_id}{where}. The Floodlight "
                "configuration and activity are checked when the first conversions are sent."
            )
        rpc_status, message, _details = google_error(payload)
        detail = message or f"HTTP {status}"
        if status == 401:
            return False, f"Invalid credentials: Google refused the access token (UNAUTHENTICATED): {detail}"
        if status == 404:
            return False, f"User profile {self.profile_id} was not found (NOT_FOUND): {detail}"
        if status == 403:
            return False, (
                f"Google refused access to user profile {self.profile_id} (PERMISSION_DENIED): {detail}. Check that "
                "the authorising user owns this profile and that the Campaign Manager 360 API is enabled."
            )
        return False, f"Campaign Manager 360 answered HTTP {status} ({rpc_status or 'no status'}): {detail}"
