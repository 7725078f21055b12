"""The Trade Desk client: CRM data uploads for emails, real-time first-party data for TTD ids.

CRM data (slot email), two HTTP calls per upload:
1. `POST https://api.thetradedesk.com/v3/crmdata/segment/{advertiserId}/{crmDataId}` with the `TTD-Auth` header and
   `{"PiiType", "MergeMode", "RetentionEnabled"}` asks for a file drop and answers `{"ReferenceId", "Url"}`;
2. `PUT {Url}` with `Content-Type: text/plain` and one value per line. The Url is a pre-signed upload address chosen
   by The Trade Desk: it is used exactly as given (never rewritten, never sent the API token) and must be https,
   except that a configuration pointed at the local sandbox accepts drop URLs on the sandbox's own origin.
The CRM data id is the audience connection's `partner_audience_id`, or the configuration's default `crm_data_id`
(journeys have no audience connection). Items are grouped per segment; each group is one upload.

Decisions forced by the documented API:
- MergeMode is always "Add". The dispatcher hands over changes, not whole audiences, and "Replace" makes the upload
  the segment's entire content, so it would drop everyone not in the latest batch.
- The CRM API has no remove mode: removing a profile needs a Replace upload of the complete remaining audience,
  which a change-driven client does not have. Email removals are therefore not sent; they fail with
  `crm_remove_unsupported` (final), and the descriptor says so.
- Uploads under 1,500 records are refused by The Trade Desk. The dispatcher holds rows of this partner until 1,500
  are due or an hour has passed; a group that is still smaller is not sent but answered retryable
  (`below_minimum_batch`, retry after the batch interval).

Real-time data (slot ttd_id), only when the configuration names a real-time server and the advertiser secret:
`POST https://{region}-data.adsrvr.org/data/advertiser` with `{"AdvertiserId", "Items": [{"TDID", "Data": [{"Name",
"TTLInMinutes"}]}]}` and `TtdSignature` = Base64(HMAC-SHA1(body, advertiser secret)). The data name is the same id as
above. An add sets a 30-day TTL, a removal TTL 0. The answer is `{}` or `{"FailedLines": [{"ErrorCode", "Message"}]}`
whose messages name the failed item ("item #3", counted from 1).

Errors: 401/403 from the API mean the TTD-Auth token is refused (the configuration pauses); 400 and 404 are final
partner errors keeping TTD's `Message`/`ErrorDetails`; 429 and 5xx are retried, honouring Retry-After.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from urllib.parse import quote, urlsplit

import requests

from connectors.delivery import http
from connectors.delivery.client import PartnerClient
from connectors.delivery.types import Action, CallResult, Item, ItemResult
from connectors.identifiers import Slot
from connectors.models import Outcome
from connectors.partners.the_trade_desk.descriptor import PARTNER
from connectors.partners.the_trade_desk.normalize import HASHED_EMAIL, PII_TYPES, email_preparer, ttd_id

API_HOST = "api.thetradedesk.com"
REALTIME_PATH = "/data/advertiser"
MIN_CRM_RECORDS = PARTNER.limits.min_batch_size
MAX_CRM_LINES = PARTNER.limits.max_batch_size
BATCH_INTERVAL_SECONDS = float(PARTNER.limits.batch_interval_seconds or 3600)
MAX_REALTIME_ITEMS = 10_000
REALTIME_TTL_MINUTES = 30 * 24 * 60
MERGE_MODE = "Add"

_ITEM_NUMBER = re.compile(r"item\s*#\s*(\d+)", re.IGNORECASE)
_S3_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_S3_MESSAGE = re.compile(rb"<Message>([^<]{0,500})</Message>")

# What the statistics page shows next to a code (see PartnerClient.error_meaning: exact, then before "/").
ERROR_CODES: dict[str, str] = {
    "http_400": "The Trade Desk refused the request as invalid (its message names the field).",
    "http_401": "The Trade Desk refused the API token (TTD-Auth): it is invalid or expired. Generate a new one.",
    "http_403": "The API token is refused for this advertiser or for CRM data: check the token and its access.",
    "http_404": "The advertiser or the CRM data segment does not exist (or the token cannot see it).",
    "http_429": "The Trade Desk asked us to slow down (HTTP 429); retried later.",
    "upload": "The file drop refused the upload.",
    "upload/AccessDenied": "The pre-signed drop URL expired or was refused; retried with a new drop.",
    "upload/SignatureDoesNotMatch": "The pre-signed drop URL was refused; retried with a new drop.",
    "upload/ExpiredToken": "The pre-signed drop URL expired; retried with a new drop.",
    "upload/SlowDown": "The file drop asked us to slow down; retried.",
    "realtime": "The real-time data endpoint refused the request.",
    "realtime/http_401": "The real-time data endpoint refused the signature: check the advertiser secret key.",
    "realtime/http_403": "The real-time data endpoint refused the signature or the advertiser: check the advertiser "
    "secret key and that real-time data is enabled.",
    "MissingUserId": "The Trade Desk could not read this TTD id (real-time data).",
    "below_minimum_batch": "Fewer than 1,500 profiles were due for this CRM segment; The Trade Desk refuses such "
    "uploads, so they wait for a fuller batch (and fail once the retry window is over).",
    "crm_remove_unsupported": "The Trade Desk's CRM data API cannot remove single profiles (it only adds, or replaces "
    "the whole segment), so this removal was not sent; the profile stays in the segment until it is rebuilt.",
    "realtime_not_configured": "TTD ids are sent as real-time data: set the real-time server and the advertiser "
    "secret key.",
    "token_refused_earlier": "Not sent: the API token was refused for another upload of the same batch; sent once "
    "the credentials are fixed.",
    "invalid_drop_url": "The Trade Desk answered with a drop URL that is not https; nothing was uploaded.",
    "no_api_token": "No API token is configured.",
    "no_partner_audience_id": "Neither the audience connection nor the configuration names a CRM data segment.",
    "unsupported_slot": "The Trade Desk connector sends emails (CRM data) and TTD ids (real-time data) only.",
    "invalid_identifier": "The identifier is empty or not a valid email once normalised, so it was not sent.",
}


def _json(body: bytes):
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def ttd_error(payload) -> tuple[str, list[str]]:
    """TTD's error body `{"Message", "ErrorDetails"}` as (readable text, the properties it names).

    ErrorDetails comes as a list of `{"Property", "Reasons": [...]}` or as an object `{property: [reasons]}`.
    """
    if not isinstance(payload, dict):
        return "", []
    message = str(payload.get("Message") or payload.get("message") or "")
    details = payload.get("ErrorDetails")
    parts: list[str] = []
    properties: list[str] = []
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, dict):
                prop = str(detail.get("Property") or "")
                reasons = detail.get("Reasons") or []
                text = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else str(reasons)
                if prop:
                    properties.append(prop)
                parts.append(f"{prop}: {text}" if prop else text)
    elif isinstance(details, dict):
        for prop, reasons in details.items():
            properties.append(str(prop))
            text = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else str(reasons)
            parts.append(f"{prop}: {text}")
    if parts:
        message = f"{message} ({' | '.join(parts)})" if message else " | ".join(parts)
    return message, properties


def _s3_error(body: bytes) -> tuple[str, str]:
    code = _S3_CODE.search(body)
    message = _S3_MESSAGE.search(body)
    return (
        code.group(1).decode("utf-8", "replace").strip() if code else "",
        message.group(1).decode("utf-8", "replace").strip() if message else "",
    )


def _body_text(timed: http.Timed) -> str:
    return timed.body.decode("utf-8", "replace")


class Client(PartnerClient):
    partner = PARTNER
    error_codes = ERROR_CODES

    def __init__(self, config, session: requests.Session):
        super().__init__(config, session)
        settings = config.settings
        self._advertiser = str(settings.get("advertiser_id") or "").strip()
        self._default_target = str(settings.get("crm_data_id") or "").strip()
        pii_type = settings.get("pii_type") or HASHED_EMAIL
        self._pii_type = pii_type if pii_type in PII_TYPES else HASHED_EMAIL
        retention = settings.get("retention_enabled")
        self._retention = True if retention is None else bool(retention)
        self._region = str(settings.get("realtime_region") or "").strip()
        self._token = config.secrets.get("api_token", "") or ""
        self._secret = config.secrets.get("advertiser_secret", "") or ""
        self._api_headers = {"TTD-Auth": self._token, "Content-Type": "application/json"}

    @property
    def realtime_configured(self) -> bool:
        return bool(self._region and self._secret)

    def segment_url(self, crm_data_id: str) -> str:
        return self.url(
            API_HOST, f"/v3/crmdata/segment/{quote(self._advertiser, safe='')}/{quote(crm_data_id, safe='')}"
        )

    def realtime_url(self) -> str:
        return self.url(f"{self._region}-data.adsrvr.org", REALTIME_PATH)

    # ------------------------------------------------------------------------------------------------
    def send(self, action: str, items: list[Item]) -> list[CallResult]:
        calls: list[CallResult] = []
        rejected: dict[str, list[int]] = {}
        crm: dict[str, tuple[list[int], list[str]]] = {}
        realtime: list[tuple[int, str, str]] = []
        prepare = email_preparer(self._pii_type)

        for index, item in enumerate(items):
            target = item.partner_audience_id or self._default_target
            if item.slot == Slot.EMAIL:
                if action == Action.REMOVE:
                    rejected.setdefault("crm_remove_unsupported", []).append(index)
                    continue
                value = prepare(item.identifier) if item.identifier else ""
                if not target:
                    rejected.setdefault("no_partner_audience_id", []).append(index)
                elif not value:
                    rejected.setdefault("invalid_identifier", []).append(index)
                else:
                    group = crm.get(target)
                    if group is None:
                        group = crm[target] = ([], [])
                    group[0].append(index)
                    group[1].append(value)
            elif item.slot == Slot.TTD_ID:
                value = ttd_id(item.identifier) if item.identifier else ""
                if not self.realtime_configured:
                    rejected.setdefault("realtime_not_configured", []).append(index)
                elif not target:
                    rejected.setdefault("no_partner_audience_id", []).append(index)
                elif not value:
                    rejected.setdefault("invalid_identifier", []).append(index)
                else:
                    realtime.append((index, value, target))
            else:
                rejected.setdefault("unsupported_slot", []).append(index)

        for code, indices in rejected.items():
            message = ERROR_CODES[code]
            result = ItemResult(Outcome.OTHER_ERROR, partner_code=code, message=message, retryable=False)
            calls.append(self.all_items(indices, result, partner_code=code, snippet=f"not sent: {code}"))

        if crm:
            calls.extend(self._send_crm(action, crm))
        for start in range(0, len(realtime), MAX_REALTIME_ITEMS):
            calls.append(self._send_realtime(action, realtime[start : start + MAX_REALTIME_ITEMS]))
        return calls

    # CRM data ---------------------------------------------------------------------------------------
    def _send_crm(self, action: str, groups: dict[str, tuple[list[int], list[str]]]) -> list[CallResult]:
        if not self._token:
            indices = [i for group_indices, _ in groups.values() for i in group_indices]
            result = ItemResult(Outcome.INVALID_CREDENTIALS, partner_code="no_api_token", message="no API token")
            return [
                self.all_items(
                    indices, result, partner_code="no_api_token", snippet="not sent", credentials_invalid=True
                )
            ]
        calls: list[CallResult] = []
        refused = False
        for target, (indices, values) in groups.items():
            for start in range(0, len(values), MAX_CRM_LINES):
                chunk_indices = indices[start : start + MAX_CRM_LINES]
                chunk_values = values[start : start + MAX_CRM_LINES]
                if refused:  # the token was refused a moment ago: keep these for after the fix, without a call
                    message = "not sent: The Trade Desk refused the API token for an earlier upload of this batch"
                    code = "token_refused_earlier"
                    result = ItemResult(Outcome.OTHER_ERROR, partner_code=code, message=message, retryable=True)
                    calls.append(self.all_items(chunk_indices, result, partner_code=code, snippet=message))
                    continue
                made = self._upload(action, target, chunk_indices, chunk_values)
                calls.extend(made)
                refused = any(call.credentials_invalid for call in made)
        return calls

    def _upload(self, action: str, target: str, indices: list[int], values: list[str]) -> list[CallResult]:
        if len(values) < MIN_CRM_RECORDS:
            message = (
                f"only {len(values)} profiles for CRM segment {target}; The Trade Desk refuses uploads under "
                f"{MIN_CRM_RECORDS:,}, so they wait for a fuller batch"
            )
            result = ItemResult(
                Outcome.OTHER_ERROR, partner_code="below_minimum_batch", message=message, retryable=True
            )
            return [
                self.all_items(
                    indices,
                    result,
                    partner_code="below_minimum_batch",
                    snippet=f"not sent: {message}",
                    retry_after=BATCH_INTERVAL_SECONDS,
                )
            ]
        body = json.dumps(
            {"PiiType": self._pii_type, "MergeMode": MERGE_MODE, "RetentionEnabled": self._retention},
            separators=(",", ":"),
        ).encode()
        drop: dict[str, str] = {}
        first = self.call(
            indices,
            "POST",
            self.segment_url(target),
            lambda timed: self._classify_drop(timed, indices, drop),
            data=body,
            headers=self._api_headers,
        )
        if first.item_indices:  # the drop was not granted: `first` carries the items' outcome
            return [first]
        lines = ("\n".join(values) + "\n").encode("utf-8")
        second = self.call(
            indices,
            "PUT",
            drop["url"],
            lambda timed: self._classify_upload(timed, action, indices, drop["reference"]),
            rate_limited=False,  # the file drop is storage, not The Trade Desk's API quota
            data=lines,
            headers={"Content-Type": "text/plain"},
        )
        return [first, second]

    def drop_url_allowed(self, url: str) -> bool:
        """https only; a configuration pointed at the local sandbox also accepts drops on the sandbox's origin."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        if not parts.netloc:
            return False
        if parts.scheme == "https":
            return True
        override = self.config.base_url_override
        if override and parts.scheme == "http":
            origin = urlsplit(override)
            return (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc)
        return False

    def _classify_drop(self, timed: http.Timed, indices: list[int], drop: dict[str, str]) -> CallResult:
        status = timed.response.status_code
        call = {"status_code": status, "duration_ms": timed.duration_ms}
        if not 200 <= status < 300:
            return self._api_error(timed, indices)
        payload = _json(timed.body)
        url = payload.get("Url") if isinstance(payload, dict) else None
        reference = payload.get("ReferenceId") if isinstance(payload, dict) else None
        if not isinstance(url, str) or not url or not isinstance(reference, str | int):
            result = ItemResult(
                Outcome.PARTNER_ERROR,
                partner_code="invalid_response",
                message="no drop URL in the answer",
                retryable=True,
            )
            return self.all_items(
                indices, result, partner_code="invalid_response", snippet=http.redact(_body_text(timed)), **call
            )
        if not self.drop_url_allowed(url):
            result = ItemResult(
                Outcome.PARTNER_ERROR, partner_code="invalid_drop_url", message=ERROR_CODES["invalid_drop_url"]
            )
            return self.all_items(indices, result, partner_code="invalid_drop_url", snippet="drop URL refused", **call)
        drop["url"] = url
        drop["reference"] = http.redact(str(reference), limit=80)
        # No items: this call only opened the drop; the upload's CallResult carries them.
        return CallResult(item_indices=[], results=[], snippet=f"drop {drop['reference']} opened", **call)

    def _classify_upload(self, timed: http.Timed, action: str, indices: list[int], reference: str) -> CallResult:
        response = timed.response
        status = response.status_code
        call = {"status_code": status, "duration_ms": timed.duration_ms}
        if 200 <= status < 300:
            ok = ItemResult.ok(action)
            return CallResult(
                item_indices=list(indices),
                results=[ok] * len(indices),
                snippet=f"drop {reference}: {len(indices)} lines uploaded",
                **call,
            )
        s3_code, s3_message = _s3_error(timed.body)
        code = f"upload/{s3_code}" if s3_code else f"upload/http_{status}"
        # A refused or expired pre-signed URL (403) is worth another try: the retry asks for a new drop.
        retryable = status in (403, 408, 429) or status >= 500
        message = http.redact(s3_message or f"HTTP {status}", limit=300)
        result = ItemResult(Outcome.PARTNER_ERROR, partner_code=code, message=message, retryable=retryable)
        return self.all_items(
            indices,
            result,
            partner_code=code,
            snippet=http.redact(f"drop {reference}: {_body_text(timed)}"),
            retry_after=http.retry_after_seconds(response.headers.get("Retry-After")),
            **call,
        )

    def _api_error(self, timed: http.Timed, indices: list[int], *, prefix: str = "") -> CallResult:
        """A non-2xx answer of The Trade Desk (API or real-time), classified for all `indices`."""
        response = timed.response
        status = response.status_code
        message, properties = ttd_error(_json(timed.body))
        message = http.redact(message or f"HTTP {status}", limit=300)
        code = f"{prefix}http_{status}"
        credentials = status in (401, 403)
        retryable = status == 429 or status >= 500
        if status == 400 and len(properties) == 1 and not prefix:
            code = f"http_400/{properties[0][:40]}"
        outcome = Outcome.INVALID_CREDENTIALS if credentials else Outcome.PARTNER_ERROR
        result = ItemResult(outcome, partner_code=code, message=message, retryable=retryable)
        return self.all_items(
            indices,
            result,
            status_code=status,
            duration_ms=timed.duration_ms,
            partner_code=code,
            snippet=http.redact(_body_text(timed)),
            retry_after=http.retry_after_seconds(response.headers.get("Retry-After")),
            credentials_invalid=credentials,
        )

    # Real-time data ---------------------------------------------------------------------------------
    def _send_realtime(self, action: str, entries: list[tuple[int, str, str]]) -> CallResult:
        ttl = 0 if action == Action.REMOVE else REALTIME_TTL_MINUTES
        payload = {
            "AdvertiserId": self._advertiser,
            "Items": [{"TDID": value, "Data": [{"Name": name, "TTLInMinutes": ttl}]} for _, value, name in entries],
        }
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        signature = base64.b64encode(hmac.new(self._secret.encode("utf-8"), body, hashlib.sha1).digest()).decode()
        indices = [index for index, _, _ in entries]
        return self.call(
            indices,
            "POST",
            self.realtime_url(),
            lambda timed: self._classify_realtime(timed, action, indices),
            data=body,
            headers={"Content-Type": "application/json", "TtdSignature": signature},
        )

    def _classify_realtime(self, timed: http.Timed, action: str, indices: list[int]) -> CallResult:
        status = timed.response.status_code
        if not 200 <= status < 300:
            return self._api_error(timed, indices, prefix="realtime/")
        payload = _json(timed.body)
        failed = payload.get("FailedLines") if isinstance(payload, dict) else None
        ok = ItemResult.ok(action)
        results = [ok] * len(indices)
        flagged = unmapped = 0
        first_code = ""
        for line in failed if isinstance(failed, list) else []:
            if not isinstance(line, dict):
                unmapped += 1
                continue
            code = str(line.get("ErrorCode") or "FailedLine")[:60]
            text = str(line.get("Message") or code)
            number = _ITEM_NUMBER.search(text)
            position = int(number.group(1)) - 1 if number else -1
            if not 0 <= position < len(indices):
                unmapped += 1
                continue
            if results[position] is ok:
                flagged += 1
            first_code = first_code or code
            results[position] = ItemResult(Outcome.PARTNER_ERROR, partner_code=code, message=http.redact(text, 300))
        snippet = f"items={len(indices)} failed={flagged}" + (f" unmatched_failures={unmapped}" if unmapped else "")
        return CallResult(
            item_indices=list(indices),
            results=results,
            status_code=status,
            duration_ms=timed.duration_ms,
            partner_code=first_code,
            snippet=snippet,
        )

    # ------------------------------------------------------------------------------------------------
    def _get(self, path: str) -> http.Timed | str:
        try:
            return http.request(
                self.session,
                "GET",
                self.url(API_HOST, path),
                timeout=self.timeout,
                headers={"TTD-Auth": self._token},
                allow_redirects=False,
            )
        except requests.exceptions.Timeout:
            return f"The Trade Desk did not answer within {self.timeout:g} s."
        except requests.exceptions.RequestException as exc:
            return f"Could not connect to The Trade Desk: {http.redact(str(exc), limit=200)}"

    @staticmethod
    def _refusal(timed: http.Timed, what: str) -> str:
        status = timed.response.status_code
        message, _ = ttd_error(_json(timed.body))
        message = http.redact(message or _body_text(timed) or f"HTTP {status}", limit=200)
        if status in (401, 403):
            return f"Invalid credentials: The Trade Desk refused the API token (HTTP {status}): {message}"
        if status in (400, 404):
            return f"{what} (HTTP {status}): {message}"
        return f"The Trade Desk answered HTTP {status}: {message}"

    def test_connection(self) -> tuple[bool, str]:
        """Reads the advertiser (proves the token and the id), then the default CRM segment when one is set."""
        if not self._advertiser:
            return False, "Set the advertiser ID first."
        if not self._token:
            return False, "Set the API token first."
        answer = self._get(f"/v3/advertiser/{quote(self._advertiser, safe='')}")
        if isinstance(answer, str):
            return False, answer
        if answer.response.status_code != 200:
            return False, self._refusal(answer, f"Unknown advertiser {self._advertiser}")
        advertiser = _json(answer.body)
        name = advertiser.get("AdvertiserName") if isinstance(advertiser, dict) else ""
        text = (
            f"Connected to advertiser {http.redact(str(name), limit=100)} ({self._advertiser})."
            if name
            else (f"Connected to advertiser {self._advertiser}.")
        )
        if self._default_target:
            target = self._default_target
            answer = self._get(f"/v3/crmdata/segment/{quote(self._advertiser, safe='')}/{quote(target, safe='')}")
            if isinstance(answer, str):
                return False, answer
            if answer.response.status_code != 200:
                return False, text + " " + self._refusal(answer, f"Unknown CRM data segment {target}")
            segment = _json(answer.body)
            segment_name = segment.get("SegmentName") if isinstance(segment, dict) else ""
            label = f"'{http.redact(str(segment_name), limit=100)}' ({target})" if segment_name else target
            text += f" Default CRM data segment {label} found."
        if self.realtime_configured:
            text += f" Real-time data goes to {self._region}-data.adsrvr.org (its signature is checked on first use)."
        return True, text
