"""Xandr (Microsoft Curate / Monetize) segment client: the Instant Audience Service or the Batch Segment Service.

Authentication (Authentication Service): `POST https://api.appnexus.com/auth` with `{"auth": {"username",
"password"}}` answers a token that stays valid for 2 hours after the last call (24 hours at most). The token goes in
the `Authorization` header as it is (no scheme). Xandr allows 10 successful logins per user per 5 minutes and asks
clients to log in again only when a call answers `NOAUTH`, so the token is cached (shared by the workers, encrypted
in Redis) and a call answered with a `NOAUTH*` error id is retried once with a fresh token. Logins themselves go
through a token bucket keyed by the user, sized so that no 5-minute window can hold more than 10 of them.

Real-time mode (the default): `POST https://streaming-data.appnexus.com/rt-segment` with
`{"rt_segment": [{"user_id": "<uid>", "domain": null, "seg_block": [{"seg_id", "member_id", "expiration"}]}]}`:
at most 1,000 users and a body under 1 MB per request, 100 POST calls per second per member. `expiration` is the
membership lifetime in minutes (0 = no expiry); -1 takes the user out of the segment. Xandr answers status "OK" even
when some users are refused and lists the problems in `warnings`; a warning that names a user makes that user a
partner error (`rt_warning`).

Batch mode: `POST https://api.appnexus.com/batch-segment?member_id=<id>` opens a job and gives an `upload_url`; the
file `UID,SEG:EXP;SEG:EXP` (one line per user, Latin-1, `application/octet-stream`) is posted there, then the job is
read back with `GET /batch-segment?member_id=&job_id=` until its phase is `completed` or `error`. Xandr may take up
to 24 hours, so polling is bounded (`batch_poll_seconds`): a job still running then is counted as sent and marked
`job_pending` on the attempt. A completed job's `error_log_lines` name the refused lines; their users become partner
errors with Xandr's counter name (`num_invalid_user`, `num_unauth_segment`, ...).

Identifiers: the Xandr user id from the cookie sync (`xandr_uid` slot), a positive 64-bit decimal number; "0" (the
id Xandr gives opted-out browsers) and anything else is not sent. The segment is the audience connection's
partner_audience_id (digits: a segment id; otherwise a segment code, sent with the member id), falling back to the
configuration's default segment id or code.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from django.conf import settings as django_settings

from connectors.delivery import http, ratelimit, tokens
from connectors.delivery.client import PartnerClient
from connectors.delivery.types import Action, CallResult, Item, ItemResult
from connectors.identifiers import Slot
from connectors.models import Outcome
from connectors.partners.xandr.descriptor import PARTNER

API_HOST = "api.appnexus.com"
STREAMING_HOST = "streaming-data.appnexus.com"
AUTH_PATH = "/auth"
RT_SEGMENT_PATH = "/rt-segment"
BATCH_SEGMENT_PATH = "/batch-segment"
MEMBER_PATH = "/member"
SEGMENT_PATH = "/segment"

MODE_REALTIME = "realtime"
MODE_BATCH = "batch"

MAX_USERS_PER_REQUEST = 1_000
MAX_BODY_BYTES = 1_000_000  # "the JSON payload should not exceed 1MB": kept strictly below
MAX_UID = 2**64 - 1
REMOVE_EXPIRATION = -1

# The token lives 2 h after the last call; cached a little less, and renewed earlier on NOAUTH anyway.
TOKEN_TTL_SECONDS = 2 * 3600 - 10 * 60
# Xandr: 10 successful logins per user per 5 minutes. A bucket of `burst` tokens refilled at `count`/300 s lets at
# most burst + count = 10 logins into any 300-second window, and still allows a quick re-login after a NOAUTH.
LOGIN_QUOTA = ratelimit.Quota(count=7, per_seconds=300.0, burst=3)
LOGIN_MAX_WAIT_SECONDS = 5.0
# Instant Audience Service: 100 POST calls per second per member.
REALTIME_QUOTA = ratelimit.Quota(count=100, per_seconds=1.0)
# Batch Segment Service: about one upload per minute is recommended; short bursts are let through.
BATCH_QUOTA = ratelimit.Quota(count=1, per_seconds=60.0, burst=5)

# Upload URLs come from Xandr's answer; the token is only ever sent to Xandr's own hosts.
UPLOAD_HOST_SUFFIXES = (".adnxs.net", ".adnxs.com", ".appnexus.com")
SEGMENT_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

NOAUTH_CODES = frozenset({"NOAUTH", "NOAUTH_EXPIRED", "NOAUTH_DISABLED"})
RETRYABLE_CODES = frozenset({"LIMIT", "SYSTEM", "RATE_EXCEEDED", "RATE_LIMIT_EXCEEDED"})
FINAL_CODES = frozenset({"UNAUTH", "SYNTAX", "INTEGRITY", "NOTFOUND", "FILESIZE_LIMIT_EXCEEDED"})
# Batch job counters that name refused lines in `error_log_lines`.
JOB_ERROR_COUNTERS = (
    "num_invalid_format",
    "num_invalid_user",
    "num_invalid_segment",
    "num_invalid_timestamp",
    "num_unauth_segment",
    "num_past_expiration",
    "num_inactive_segment",
    "num_other_error",
)

ERROR_CODES: dict[str, str] = {
    "NOAUTH": "Xandr refused the login or the session even after a fresh login: check the API username and password.",
    "NOAUTH_EXPIRED": "The API user's password has expired: reset it at Xandr and store the new one.",
    "NOAUTH_DISABLED": "The API user is deactivated at Xandr: use another API user.",
    "UNAUTH": "The API user may not do this (for example the segment or member belongs to another seat, or the "
    "Instant Audience / Batch Segment Service is not enabled for the member).",
    "SYNTAX": "Xandr refused the request as malformed.",
    "INTEGRITY": "Xandr refused the request as inconsistent with its objects.",
    "NOTFOUND": "Xandr does not know this segment, member or job.",
    "LIMIT": "Xandr reports a limit was reached; retried later.",
    "SYSTEM": "Xandr had a system error; retried.",
    "RATE_EXCEEDED": "Xandr's API request limit for the member was exceeded; retried after Retry-After.",
    "RATE_LIMIT_EXCEEDED": "A Batch Segment Service upload limit (bytes or lines per hour or day) was reached; "
    "retried later.",
    "FILESIZE_LIMIT_EXCEEDED": "The segment file is larger than the Batch Segment Service allows.",
    "rt_warning": "Xandr accepted the call but refused this user in its warnings (for example an unknown user id "
    "or segment).",
    "too_many_users": "Xandr dropped this user because the request held more than 1,000 users; retried.",
    "job_pending": "The segment file was uploaded and Xandr was still processing it when the platform stopped "
    "waiting (Xandr takes up to 24 hours); counted as sent.",
    "job_error": "The Batch Segment Service job ended in error (cancelled, too slow or over a limit); retried.",
    "num_invalid_format": "The batch job could not read this line.",
    "num_invalid_user": "The batch job found no valid Xandr user for this id (unknown or expired cookie).",
    "num_invalid_segment": "The batch job does not know this segment.",
    "num_invalid_timestamp": "The batch job refused the line's timestamp.",
    "num_unauth_segment": "The member may not add users to this segment.",
    "num_past_expiration": "The batch job found the membership already expired.",
    "num_inactive_segment": "The segment is inactive at Xandr.",
    "num_other_error": "The batch job reported another error for this line.",
    "invalid_upload_url": "Xandr's answer gave no usable upload URL; retried.",
    "login_rate_limited": "Logins for this API user are at Xandr's limit (10 per 5 minutes); retried shortly.",
    "no_credentials": "The API username or password is missing.",
    "invalid_segment_id": "The audience connection names no valid Xandr segment (a segment id or a segment code).",
    "batch_needs_segment_id": "Batch uploads address segments by id; this audience connection names a segment code.",
    "invalid_identifier": "The Xandr user id is empty, 0 or not a 64-bit number, so it was not sent.",
    "unsupported_slot": "Xandr segments only take the Xandr user id.",
    "no_partner_audience_id": "The audience connection names no Xandr segment and no default segment is set.",
    "invalid_response": "Xandr's answer could not be read; retried.",
    "connection_error": "Could not connect to Xandr; retried.",
    "request_error": "The request to Xandr could not be made.",
}


def normalize_uid(raw: str) -> str:
    """The Xandr user id as sent: decimal digits without leading zeros, 1..2**64-1; "" when it is not a user."""
    value = (raw or "").strip()
    if not value.isascii() or not value.isdigit():
        return ""
    number = int(value)
    if number <= 0 or number > MAX_UID:
        return ""
    return str(number)


def _json(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


def _response_object(payload) -> dict | None:
    """Xandr wraps answers in {"response": {...}}; some Instant Audience examples answer unwrapped."""
    if isinstance(payload, dict):
        inner = payload.get("response")
        return inner if isinstance(inner, dict) else payload
    return None


_UID_IN_TEXT = re.compile(r"(?i)(user_?id\W{0,3})[^\s,.;\"'}]+")
_LONG_NUMBER = re.compile(r"\d{12,}")


def _clean(text: str, limit: int = 300) -> str:
    """Partner text for messages and snippets: user ids masked, then the platform's redaction."""
    text = _UID_IN_TEXT.sub(r"\1[user]", text)
    return http.redact(_LONG_NUMBER.sub("[number]", text), limit=limit)


@dataclass(frozen=True)
class XandrError:
    """An error answer of the Xandr API, classified."""

    partner_code: str
    message: str
    outcome: str
    retryable: bool
    credentials: bool
    retry_after: float | None


def xandr_error(payload, status: int, headers) -> XandrError | None:
    """The error in an answer, or None for a success. Reads `error_id` / `error_code` / `error` /
    `error_description` (and the Batch Segment Service's `errors` list), then the HTTP status."""
    body = _response_object(payload)
    error_id = str(body.get("error_id") or "").strip().upper() if body else ""
    error_code = str(body.get("error_code") or "").strip() if body else ""
    body_status = str(body.get("status") or "").upper() if body else ""
    if not error_id and not error_code and body_status != "ERROR" and 200 <= status < 300:
        return None
    if error_code.upper() in RETRYABLE_CODES or error_code.upper() == "FILESIZE_LIMIT_EXCEEDED":
        code = error_code.upper()
    elif error_id:
        code = error_id
    elif error_code:
        code = error_code
    elif status == 401:  # a bare 401: the session is not (or no longer) valid
        code = "NOAUTH"
    else:
        code = f"http_{status}"
    parts: list[str] = []
    if body:
        for key in ("error", "error_description"):
            value = body.get(key)
            if isinstance(value, str) and value and value not in parts:
                parts.append(value)
        errors = body.get("errors")
        if isinstance(errors, list):
            parts.extend(str(e) for e in errors[:3] if isinstance(e, str | int))
    message = _clean(" — ".join(parts) if parts else f"HTTP {status}")
    credentials = code in NOAUTH_CODES
    retryable = (
        not credentials
        and code not in FINAL_CODES
        and (code in RETRYABLE_CODES or status == 429 or status >= 500 or code == "http_429")
    )
    return XandrError(
        partner_code=code,
        message=message,
        outcome=Outcome.INVALID_CREDENTIALS if credentials else Outcome.PARTNER_ERROR,
        retryable=retryable,
        credentials=credentials,
        retry_after=http.retry_after_seconds(headers.get("Retry-After")) if headers is not None else None,
    )


class AuthFailure(Exception):
    """No token could be had: the login was refused, throttled or did not get through."""

    def __init__(
        self,
        partner_code: str,
        message: str,
        *,
        outcome: str,
        retryable: bool,
        credentials: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
        duration_ms: float = 0.0,
    ):
        super().__init__(partner_code)
        self.partner_code = partner_code
        self.message = message
        self.outcome = outcome
        self.retryable = retryable
        self.credentials = credentials
        self.status = status
        self.retry_after = retry_after
        self.duration_ms = duration_ms

    def call_result(self, indices: list[int]) -> CallResult:
        result = ItemResult(
            self.outcome, partner_code=self.partner_code, message=self.message, retryable=self.retryable
        )
        return PartnerClient.all_items(
            indices,
            result,
            status_code=self.status,
            duration_ms=self.duration_ms,
            partner_code=self.partner_code,
            snippet=f"login: {self.message}",
            retry_after=self.retry_after,
            credentials_invalid=self.credentials,
        )


@dataclass
class _Target:
    """One item ready to send: its index, normalised user id, segment and expiration."""

    index: int
    uid: str
    seg_id: int | None
    seg_code: str
    expiration: int


class Client(PartnerClient):
    partner = PARTNER
    error_codes = ERROR_CODES
    # Batch mode: how long one send waits for Xandr to finish the job, and how often it asks.
    batch_poll_seconds: float = 6.0
    batch_poll_interval: float = 2.0

    def __init__(self, config, session):
        super().__init__(config, session)
        cfg = config.settings
        self._username = str(cfg.get("username") or "")
        self._password = str(config.secrets.get("password") or "")
        self.member_id = self._int(cfg.get("member_id"))
        self.mode = MODE_BATCH if cfg.get("mode") == MODE_BATCH else MODE_REALTIME
        expiration = self._int(cfg.get("expiration_minutes"))
        self.expiration = expiration if expiration is not None and expiration >= 0 else 0
        self.default_segment_id = self._int(cfg.get("default_segment_id"))
        self.default_segment_code = str(cfg.get("default_segment_code") or "").strip()
        self._auth_url = self.url(API_HOST, AUTH_PATH)
        self._token_key = tokens.cache_key("xandr", self._auth_url, self._username, self._password)
        self._login_key = "xandr:login:" + tokens.cache_key("xandr-login", self._auth_url, self._username)

    @staticmethod
    def _int(value) -> int | None:
        if isinstance(value, bool):
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    # Quota: per member (every configuration of the member shares Xandr's limit) and per service.
    @property
    def quota(self) -> ratelimit.Quota:
        return BATCH_QUOTA if self.mode == MODE_BATCH else REALTIME_QUOTA

    def quota_key(self) -> str:
        where = tokens.cache_key(self.config.base_url_override or "production")[:12]
        return f"xandr:{self.mode}:{where}:{self.member_id or self.config.partner_config_id}"

    # Authentication ---------------------------------------------------------------------------------------------
    def token(self, *, refresh: bool = False, refused: str = "") -> str:
        """A session token: the cached one, or a new login. `refresh` after a NOAUTH: the refused token is dropped
        (unless another worker already cached a newer one). Raises AuthFailure."""
        cached = tokens.get(self._token_key)
        if cached and (not refresh or cached != refused):
            return cached
        if refresh and cached:
            tokens.forget(self._token_key)
        if not self._username or not self._password:
            raise AuthFailure(
                "no_credentials",
                "the API username or password is missing",
                outcome=Outcome.INVALID_CREDENTIALS,
                retryable=False,
                credentials=True,
            )
        max_wait = min(LOGIN_MAX_WAIT_SECONDS, django_settings.DAP_RATE_LIMIT_MAX_WAIT_SECONDS)
        wait = ratelimit.acquire(self._login_key, LOGIN_QUOTA, max_wait=max_wait)
        if wait > 0:
            raise AuthFailure(
                "login_rate_limited",
                f"login limit of 10 per 5 minutes reached; next login in {wait:.0f} s",
                outcome=Outcome.OTHER_ERROR,
                retryable=True,
                retry_after=wait,
            )
        return self._login()

    def _login(self) -> str:
        body = json.dumps({"auth": {"username": self._username, "password": self._password}}).encode()
        start = time.monotonic()
        try:
            timed = http.request(
                self.session,
                "POST",
                self._auth_url,
                timeout=self.timeout,
                data=body,
                headers={"Content-Type": "application/json"},
                allow_redirects=False,
            )
        except requests.exceptions.Timeout as exc:
            raise AuthFailure(
                "timeout",
                http.redact(str(exc) or "timeout", limit=200),
                outcome=Outcome.TIMEOUT,
                retryable=True,
                duration_ms=(time.monotonic() - start) * 1000,
            ) from None
        except requests.exceptions.RequestException as exc:
            raise AuthFailure(
                "connection_error",
                http.redact(str(exc), limit=200),
                outcome=Outcome.OTHER_ERROR,
                retryable=True,
                duration_ms=(time.monotonic() - start) * 1000,
            ) from None
        status = timed.response.status_code
        payload = _json(timed.body)
        error = xandr_error(payload, status, timed.response.headers)
        answer = _response_object(payload)
        token = answer.get("token") if answer else None
        if error is None and isinstance(token, str) and token:
            tokens.put(self._token_key, token, TOKEN_TTL_SECONDS)
            return token
        if error is None:
            raise AuthFailure(
                "invalid_response",
                "the login answer holds no token",
                outcome=Outcome.PARTNER_ERROR,
                retryable=True,
                status=status,
                duration_ms=timed.duration_ms,
            )
        raise AuthFailure(
            error.partner_code,
            error.message,
            outcome=error.outcome,
            retryable=error.retryable,
            credentials=error.credentials,
            status=status,
            retry_after=error.retry_after,
            duration_ms=timed.duration_ms,
        )

    def authorized_call(self, indices, method, url, classify, *, headers=None, rate_limited=True, **kwargs):
        """`call` with the session token; a NOAUTH answer gets one new login and one retry."""
        try:
            token = self.token()
        except AuthFailure as failure:
            return failure.call_result(indices)
        result = self.call(
            indices, method, url, classify, headers={**(headers or {}), "Authorization": token},
            rate_limited=rate_limited, **kwargs,
        )  # fmt: skip
        if result.partner_code not in NOAUTH_CODES:
            return result
        try:
            token = self.token(refresh=True, refused=token)
        except AuthFailure as failure:
            return failure.call_result(indices)
        retried = self.call(
            indices, method, url, classify, headers={**(headers or {}), "Authorization": token},
            rate_limited=rate_limited, **kwargs,
        )  # fmt: skip
        retried.duration_ms += result.duration_ms
        if retried.partner_code in NOAUTH_CODES:
            tokens.forget(self._token_key)
        return retried

    # Items ------------------------------------------------------------------------------------------------------
    def _segment(self, item: Item) -> tuple[int | None, str] | None:
        """(seg_id, seg_code) for the item, from its audience connection or the defaults; None when invalid."""
        raw = (item.partner_audience_id or "").strip()
        if not raw:
            if self.default_segment_id:
                return self.default_segment_id, ""
            if self.default_segment_code:
                return None, self.default_segment_code
            return None, ""
        if raw.isascii() and raw.isdigit():
            number = int(raw)
            return (number, "") if 0 < number < 2**63 else None
        if SEGMENT_CODE.fullmatch(raw):
            return None, raw
        return None

    def _targets(self, action: str, items: list[Item]) -> tuple[list[_Target], list[CallResult]]:
        expiration = REMOVE_EXPIRATION if action == Action.REMOVE else self.expiration
        refused: dict[str, list[int]] = {}
        targets: list[_Target] = []
        for index, item in enumerate(items):
            if item.slot != Slot.XANDR_UID:
                refused.setdefault("unsupported_slot", []).append(index)
                continue
            segment = self._segment(item)
            if segment is None:
                refused.setdefault("invalid_segment_id", []).append(index)
                continue
            seg_id, seg_code = segment
            if seg_id is None and not seg_code:
                refused.setdefault("no_partner_audience_id", []).append(index)
                continue
            if self.mode == MODE_BATCH and seg_id is None:
                refused.setdefault("batch_needs_segment_id", []).append(index)
                continue
            uid = normalize_uid(item.identifier)
            if not uid:
                refused.setdefault("invalid_identifier", []).append(index)
                continue
            targets.append(_Target(index, uid, seg_id, seg_code, expiration))
        calls = []
        for code, indices in refused.items():
            message = ERROR_CODES[code]
            result = ItemResult(Outcome.OTHER_ERROR, partner_code=code, message=message, retryable=False)
            calls.append(self.all_items(indices, result, partner_code=code, snippet=f"not sent: {message}"))
        return targets, calls

    def send(self, action: str, items: list[Item]) -> list[CallResult]:
        targets, calls = self._targets(action, items)
        if not targets:
            return calls
        if self.mode == MODE_BATCH:
            calls.append(self._send_batch(action, targets))
        else:
            calls.extend(self._send_realtime(action, targets))
        return calls

    # Real time --------------------------------------------------------------------------------------------------
    def _entry(self, target: _Target) -> bytes:
        if target.seg_id is not None:
            block: dict = {"seg_id": target.seg_id}
            if self.member_id:
                block["member_id"] = self.member_id
        else:
            block = {"seg_code": target.seg_code, "member_id": self.member_id}
        block["expiration"] = target.expiration
        entry = {"user_id": target.uid, "domain": None, "seg_block": [block]}
        return json.dumps(entry, separators=(",", ":")).encode()

    def _rt_requests(self, targets: list[_Target]):
        """Split into requests of at most 1,000 users and a body under 1 MB."""
        head, tail = b'{"rt_segment":[', b"]}"
        chunk: list[_Target] = []
        entries: list[bytes] = []
        size = len(head) + len(tail)
        for target in targets:
            entry = self._entry(target)
            grown = size + len(entry) + (1 if entries else 0)
            if entries and (len(entries) >= MAX_USERS_PER_REQUEST or grown >= MAX_BODY_BYTES):
                yield chunk, head + b",".join(entries) + tail
                chunk, entries, size = [], [], len(head) + len(tail)
                grown = size + len(entry)
            chunk.append(target)
            entries.append(entry)
            size = grown
        if entries:
            yield chunk, head + b",".join(entries) + tail

    def _send_realtime(self, action: str, targets: list[_Target]) -> list[CallResult]:
        url = self.url(STREAMING_HOST, RT_SEGMENT_PATH)
        calls = []
        for chunk, body in self._rt_requests(targets):
            indices = [t.index for t in chunk]
            uids = [t.uid for t in chunk]

            def classify(timed, indices=indices, uids=uids):
                return self._classify_rt(timed, action, indices, uids)

            calls.append(
                self.authorized_call(
                    indices, "POST", url, classify, headers={"Content-Type": "application/json"}, data=body
                )
            )
        return calls

    def _classify_rt(self, timed: http.Timed, action: str, indices: list[int], uids: list[str]) -> CallResult:
        status = timed.response.status_code
        payload = _json(timed.body)
        call = {"status_code": status, "duration_ms": timed.duration_ms}
        error = xandr_error(payload, status, timed.response.headers)
        if error is not None:
            return self._error_result(indices, error, timed, call)
        answer = _response_object(payload)
        if answer is None or str(answer.get("status") or "").upper() != "OK":
            result = ItemResult(
                Outcome.PARTNER_ERROR, partner_code="invalid_response", message="unreadable answer", retryable=True
            )
            snippet = _clean(timed.body.decode("utf-8", "replace"), limit=http.SNIPPET_LIMIT)
            return self.all_items(indices, result, partner_code="invalid_response", snippet=snippet, **call)
        ok = ItemResult.ok(action)
        results = [ok] * len(indices)
        warnings = answer.get("warnings")
        warnings = warnings if isinstance(warnings, list) else []
        flagged = self._apply_warnings(warnings, uids, results, ok)
        message = answer.get("message") if isinstance(answer.get("message"), dict) else answer
        snippet = (
            f"users_in_request={message.get('users_in_request')} "
            f"segments_in_request={message.get('segments_in_request')} warnings={len(warnings)} flagged={flagged}"
        )
        codes = {r.partner_code for r in results if r is not ok}
        return CallResult(
            item_indices=list(indices),
            results=results,
            partner_code=sorted(codes)[0] if codes else "",
            snippet=http.redact(snippet),
            **call,
        )

    @staticmethod
    def _apply_warnings(warnings: list, uids: list[str], results: list[ItemResult], ok: ItemResult) -> int:
        """Mark the users the warnings name (entity.user_id, or every user of an echoed rt_segment list)."""
        position: dict[str, list[int]] = {}
        for offset, uid in enumerate(uids):
            position.setdefault(uid, []).append(offset)
        flagged = 0
        for warning in warnings:
            if not isinstance(warning, dict):
                continue
            text = str(warning.get("message") or "")
            entity = warning.get("entity")
            named: list[str] = []
            if isinstance(entity, dict):
                if entity.get("user_id") is not None:
                    named.append(str(entity["user_id"]))
                echoed = entity.get("rt_segment")
                if isinstance(echoed, list):
                    named.extend(str(e["user_id"]) for e in echoed if isinstance(e, dict) and e.get("user_id"))
            if not named:
                continue
            if "too many user" in text.lower():
                bad = ItemResult(Outcome.PARTNER_ERROR, "too_many_users", _clean(text, 200), retryable=True)
            else:
                bad = ItemResult(Outcome.PARTNER_ERROR, "rt_warning", _clean(text or "warning", 200), retryable=False)
            for uid in named:
                for offset in position.get(normalize_uid(uid) or uid, ()):
                    if results[offset] is ok:
                        results[offset] = bad
                        flagged += 1
        return flagged

    def _error_result(self, indices: list[int], error: XandrError, timed: http.Timed, call: dict) -> CallResult:
        result = ItemResult(error.outcome, partner_code=error.partner_code, message=error.message,
                            retryable=error.retryable)  # fmt: skip
        return self.all_items(
            indices,
            result,
            partner_code=error.partner_code,
            snippet=_clean(timed.body.decode("utf-8", "replace"), limit=http.SNIPPET_LIMIT),
            retry_after=error.retry_after,
            credentials_invalid=error.credentials,
            **call,
        )

    # Batch ------------------------------------------------------------------------------------------------------
    @staticmethod
    def batch_file(targets: list[_Target]) -> tuple[bytes, dict[str, list[int]]]:
        """The segment file (`UID,SEG:EXP;SEG:EXP`, one line per user, Latin-1) and the item indices per user."""
        lines: dict[str, list[str]] = {}
        by_uid: dict[str, list[int]] = {}
        for target in targets:
            block = f"{target.seg_id}:{target.expiration}"
            blocks = lines.setdefault(target.uid, [])
            if block not in blocks:
                blocks.append(block)
            by_uid.setdefault(target.uid, []).append(target.index)
        text = "".join(f"{uid},{';'.join(blocks)}\n" for uid, blocks in lines.items())
        return text.encode("latin-1"), by_uid

    def _send_batch(self, action: str, targets: list[_Target]) -> CallResult:
        indices = [t.index for t in targets]
        body, by_uid = self.batch_file(targets)
        create_url = self.url(API_HOST, BATCH_SEGMENT_PATH)
        job: dict = {}

        def classify_job(timed):
            status = timed.response.status_code
            payload = _json(timed.body)
            call = {"status_code": status, "duration_ms": timed.duration_ms}
            error = xandr_error(payload, status, timed.response.headers)
            if error is not None:
                return self._error_result(indices, error, timed, call)
            answer = _response_object(payload) or {}
            found = answer.get("batch_segment_upload_job")
            if isinstance(found, list):
                found = found[0] if found else None
            if isinstance(found, dict):
                job.update(found)
            return self.all_items(indices, ItemResult.ok(action), **call)

        opened = self.authorized_call(indices, "POST", create_url, classify_job, params={"member_id": self.member_id})
        if opened.results and opened.results[0].outcome not in (Outcome.ADDED, Outcome.REMOVED):
            return opened
        upload_url = self._upload_url(job.get("upload_url"))
        job_id = str(job.get("job_id") or "")
        if not upload_url or not job_id:
            result = ItemResult(
                Outcome.PARTNER_ERROR, "invalid_upload_url", ERROR_CODES["invalid_upload_url"], retryable=True
            )
            return self.all_items(
                indices,
                result,
                status_code=opened.status_code,
                duration_ms=opened.duration_ms,
                partner_code="invalid_upload_url",
                snippet="the batch-segment answer holds no Xandr upload_url / job_id",
            )

        def classify_upload(timed):
            status = timed.response.status_code
            payload = _json(timed.body)
            call = {"status_code": status, "duration_ms": timed.duration_ms}
            error = xandr_error(payload, status, timed.response.headers)
            if error is not None:
                return self._error_result(indices, error, timed, call)
            return self.all_items(indices, ItemResult.ok(action), **call)

        uploaded = self.authorized_call(
            indices,
            "POST",
            upload_url,
            classify_upload,
            headers={"Content-Type": "application/octet-stream"},
            data=body,
            rate_limited=False,  # one job = one quota token, taken when it was opened
        )
        uploaded.duration_ms += opened.duration_ms
        if uploaded.results and uploaded.results[0].outcome not in (Outcome.ADDED, Outcome.REMOVED):
            return uploaded
        finished, poll_ms = self._poll_job(job_id)
        label = f"#{job['id']}" if isinstance(job.get("id"), int) else job_id
        return self._job_result(action, indices, by_uid, label, finished, uploaded, poll_ms)

    def _upload_url(self, value) -> str:
        """Xandr's upload URL mapped through `url()` (so the sandbox override applies); "" unless it is an https
        URL on one of Xandr's hosts (the token goes with it)."""
        if not isinstance(value, str) or not value:
            return ""
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or not host.endswith(UPLOAD_HOST_SUFFIXES) or parts.port not in (None, 443):
            return ""
        return self.url(host, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))

    def _poll_job(self, job_id: str) -> tuple[dict | None, float]:
        """The job once its phase is `completed` or `error`, else its last state (None if never read), within
        `batch_poll_seconds`; and the time spent."""
        url = self.url(API_HOST, BATCH_SEGMENT_PATH)
        params = {"member_id": self.member_id, "job_id": job_id}
        started = time.monotonic()
        deadline = started + self.batch_poll_seconds
        last: dict | None = None
        refreshed = False
        while True:
            if self.batch_poll_interval > 0:
                time.sleep(min(self.batch_poll_interval, max(0.0, deadline - time.monotonic())))
            try:
                token = self.token()
                timed = http.request(
                    self.session, "GET", url, timeout=self.timeout, params=params,
                    headers={"Authorization": token}, allow_redirects=False,
                )  # fmt: skip
            except (AuthFailure, requests.exceptions.RequestException):
                timed = None
            if timed is not None:
                payload = _json(timed.body)
                error = xandr_error(payload, timed.response.status_code, timed.response.headers)
                if error is not None and error.credentials and not refreshed:
                    refreshed = True
                    with contextlib.suppress(AuthFailure):
                        self.token(refresh=True, refused=token)
                elif error is None:
                    answer = _response_object(payload) or {}
                    found = answer.get("batch_segment_upload_job")
                    if isinstance(found, list):
                        found = found[0] if found else None
                    if isinstance(found, dict):
                        last = found
                        if str(found.get("phase") or "") in ("completed", "error"):
                            break
            if time.monotonic() + max(self.batch_poll_interval, 0.0) >= deadline:
                break
        return last, (time.monotonic() - started) * 1000

    def _job_result(self, action, indices, by_uid, label, job, uploaded: CallResult, poll_ms: float) -> CallResult:
        call = {"status_code": uploaded.status_code, "duration_ms": uploaded.duration_ms + poll_ms}
        phase = str((job or {}).get("phase") or "uploaded")
        if phase == "error":
            detail = str(job.get("error_code") or "").strip()
            code = f"job_error/{detail}" if detail else "job_error"
            message = _clean(f"batch job {label} ended in error {detail}".strip())
            result = ItemResult(Outcome.PARTNER_ERROR, partner_code=code, message=message, retryable=True)
            return self.all_items(indices, result, partner_code=code, snippet=message, **call)
        ok = ItemResult.ok(action)
        if phase != "completed":
            percent = (job or {}).get("percent_complete")
            snippet = (
                f"batch job {label} phase={phase} percent_complete={percent}: still processing at Xandr "
                "(up to 24 h); counted as sent"
            )
            return self.all_items(indices, ok, partner_code="job_pending", snippet=_clean(snippet), **call)
        results = dict.fromkeys(indices, ok)
        flagged = 0
        for line in str(job.get("error_log_lines") or "").splitlines():
            kind, sep, rest = line.strip().partition("-")
            if not sep or kind not in JOB_ERROR_COUNTERS:
                continue
            uid = normalize_uid(rest.split(",", 1)[0])
            bad = ItemResult(Outcome.PARTNER_ERROR, partner_code=kind, message=ERROR_CODES[kind], retryable=False)
            for index in by_uid.get(uid, ()):
                if results[index] is ok:
                    results[index] = bad
                    flagged += 1
        counters = " ".join(f"{name}={job.get(name)}" for name in ("num_valid", *JOB_ERROR_COUNTERS) if job.get(name))
        snippet = f"batch job {label} completed: {counters or 'num_valid=0'} flagged={flagged}"
        codes = sorted({r.partner_code for r in results.values() if r is not ok})
        return CallResult(
            item_indices=list(indices),
            results=[results[i] for i in indices],
            partner_code=codes[0] if codes else "",
            snippet=_clean(snippet),
            **call,
        )

    # Test connection --------------------------------------------------------------------------------------------
    def _read(self, path: str, params: dict) -> tuple[int, object]:
        """GET on the API with the token (one new login after a NOAUTH). Raises AuthFailure, RequestException."""
        url = self.url(API_HOST, path)

        def get(token: str):
            timed = http.request(
                self.session, "GET", url, timeout=self.timeout, params=params,
                headers={"Authorization": token}, allow_redirects=False,
            )  # fmt: skip
            return timed.response.status_code, _json(timed.body)

        token = self.token()
        status, payload = get(token)
        error = xandr_error(payload, status, None)
        if error is not None and error.credentials:
            status, payload = get(self.token(refresh=True, refused=token))
        return status, payload

    @staticmethod
    def _first(answer: dict, single: str, plural: str) -> dict | None:
        found = answer.get(single)
        if isinstance(found, dict):
            return found
        many = answer.get(plural)
        if isinstance(many, list) and many and isinstance(many[0], dict):
            return many[0]
        return None

    def test_connection(self) -> tuple[bool, str]:
        if not self._username or not self._password:
            return False, "Set the API username and password first."
        if not self.member_id:
            return False, "Set the Xandr member ID first."
        try:
            self.token()
            status, payload = self._read(MEMBER_PATH, {"id": self.member_id})
            problem = self._read_problem(payload, status, f"member {self.member_id}")
            if problem:
                return False, problem
            member = self._first(_response_object(payload) or {}, "member", "members")
            if member is None or self._int(member.get("id")) != self.member_id:
                return False, f"Xandr shows no member {self.member_id} to this API user: check the member ID."
            name = _clean(str(member.get("name") or ""), limit=120)
            text = f"Connected to Xandr member {name} ({self.member_id})" if name else (
                f"Connected to Xandr member {self.member_id}"
            )  # fmt: skip
            if not (self.default_segment_id or self.default_segment_code):
                return True, text + "."
            params = {"id": self.default_segment_id} if self.default_segment_id else {"code": self.default_segment_code}
            label = f"segment {self.default_segment_id or self.default_segment_code}"
            status, payload = self._read(SEGMENT_PATH, params)
            problem = self._read_problem(payload, status, label)
            if problem:
                return False, f"{text}, but {problem[0].lower()}{problem[1:]}"
            segment = self._first(_response_object(payload) or {}, "segment", "segments")
            if segment is None:
                return False, f"{text}, but Xandr has no {label}: check the default segment."
            if str(segment.get("state") or "active") != "active":
                return False, f"{text}, but {label} is {_clean(str(segment.get('state')), 40)} at Xandr."
            short_name = _clean(str(segment.get("short_name") or ""), limit=120)
            return True, f"{text}; {label}" + (f" ({short_name})" if short_name else "") + " found."
        except AuthFailure as failure:
            return False, self._auth_message(failure)
        except requests.exceptions.Timeout:
            return False, f"Xandr did not answer within {self.timeout:g} s."
        except requests.exceptions.RequestException as exc:
            return False, f"Could not connect to Xandr: {http.redact(str(exc), limit=200)}"

    def _auth_message(self, failure: AuthFailure) -> str:
        if failure.credentials:
            hint = ERROR_CODES.get(failure.partner_code, "")
            return f"Xandr refused the login ({failure.partner_code}): {failure.message}." + (
                f" {hint}" if hint else ""
            )
        if failure.outcome == Outcome.TIMEOUT:
            return f"Xandr did not answer the login within {self.timeout:g} s."
        if failure.partner_code == "connection_error":
            return f"Could not connect to Xandr: {failure.message}"
        if failure.partner_code == "login_rate_limited":
            return f"Too many Xandr logins for this API user (at most 10 per 5 minutes): {failure.message}."
        return f"The Xandr login failed ({failure.partner_code}): {failure.message}"

    @staticmethod
    def _read_problem(payload, status: int, label: str) -> str:
        error = xandr_error(payload, status, None)
        if error is None:
            return ""
        if error.credentials:
            return f"Xandr refused the session ({error.partner_code}): {error.message}"
        if error.partner_code == "UNAUTH":
            return f"The API user has no access to {label} (UNAUTH): {error.message}"
        if error.partner_code == "NOTFOUND" or status == 404:
            return f"Xandr has no {label} ({error.partner_code}): check the setting."
        return f"Reading {label} failed ({error.partner_code}): {error.message}"
