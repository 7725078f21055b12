"""Display & Video 360 Customer Match client (API v4, `firstPartyAndPartnerAudiences.editCustomerMatchMembers`).

One request edits one Customer Match audience of the configuration's advertiser:

    POST https://displayvideo.googleapis.com/v4/firstPartyAndPartnerAudiences/{audienceId}:editCustomerMatchMembers
    Authorization: Bearer <OAuth 2.0 access token, scope display-video>
    {"advertiserId": "<id>",
     "addedContactInfoList": {"contactInfos": [{"hashedEmails": ["<hex>"]}, {"hashedPhoneNumbers": ["<hex>"]}],
                              "consent": {"adUserData": "CONSENT_STATUS_GRANTED", ...}}}

Removals use `removedContactInfoList`; mobile advertising ids go in `addedMobileDeviceIdList` /
`removedMobileDeviceIdList` as `{"mobileDeviceIds": [...]}`. "update" is sent as an add (DV360 has no update).
The items of one `send` are grouped by (audience id, list kind): emails and phones share one contact-info list (each
ContactInfo carries one of them), mobile ids go in their own request, since an audience is either a contact-info or a
device-id audience. A list holds at most 500,000 members, so larger groups are split. Consent from the settings is
declared on added lists (Google applies it to the users added); "not specified" leaves the field out.

Quota: editCustomerMatchMembers is write-intensive, each call counts as 5 writes against 150 writes/min per
advertiser (so 30 calls/min, the descriptor's `requests_per_minute`, keyed by advertiser so two configurations of
one advertiser share it) and 700 writes/min per Google Cloud project (140 calls/min, keyed by OAuth client id).

Errors are google.rpc statuses. A 401 drops the cached access token and the call is made once more with a fresh
one; only when a fresh token is refused too (or the token endpoint refuses the refresh token) is the configuration
paused as "credentials invalid". 400/403/404 are final partner errors; 429 and 5xx are retried (Retry-After kept).
"""

from __future__ import annotations

import json
import re

import requests
from django.conf import settings as django_settings

from connectors.delivery import http, ratelimit, tokens
from connectors.delivery.client import PartnerClient
from connectors.delivery.types import Action, CallResult, Item, ItemResult
from connectors.models import Outcome
from connectors.partners import google_oauth
from connectors.partners.google_dv360.descriptor import PARTNER, SCOPE
from connectors.partners.google_dv360.normalize import FIELD_BY_SLOT, PREPARE_BY_SLOT
from connectors.partners.google_oauth import GoogleOAuth, TokenError, google_error

API_HOST = "displayvideo.googleapis.com"
API_VERSION = "v4"
MAX_MEMBERS_PER_LIST = 500_000
WRITES_PER_CALL = 5  # editCustomerMatchMembers is one of the write-intensive methods
PROJECT_WRITES_PER_MINUTE = 700
PROJECT_QUOTA = ratelimit.Quota(count=PROJECT_WRITES_PER_MINUTE // WRITES_PER_CALL, per_seconds=60.0)
GRANTED = "CONSENT_STATUS_GRANTED"
CONTACT = "contact"
DEVICE = "device"
LIST_FIELDS = {
    (CONTACT, True): "addedContactInfoList",
    (CONTACT, False): "removedContactInfoList",
    (DEVICE, True): "addedMobileDeviceIdList",
    (DEVICE, False): "removedMobileDeviceIdList",
}
_INT64 = re.compile(r"[0-9]{1,19}")
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

ERROR_CODES: dict[str, str] = {
    **google_oauth.ERROR_CODES,
    "UNAUTHENTICATED": "Google refused the access token even freshly issued: authorise the OAuth client again "
    "(scope display-video) and store the new refresh token.",
    "PERMISSION_DENIED": "The authorising user has no access to this advertiser or audience (needs the Admin or "
    "Standard role on the advertiser), or the partner is not allowed to use Customer Match.",
    "PERMISSION_DENIED/ACCESS_TOKEN_SCOPE_INSUFFICIENT": "The refresh token was issued without the "
    "https://www.googleapis.com/auth/display-video scope: authorise again with that scope.",
    "PERMISSION_DENIED/SERVICE_DISABLED": "The Display & Video 360 API is not enabled in the Google Cloud project "
    "of the OAuth client.",
    "NOT_FOUND": "The Customer Match audience or the advertiser does not exist (check the audience id on the "
    "audience connection and the advertiser id).",
    "INVALID_ARGUMENT": "DV360 refused the request (for example mobile ids sent to a contact-info audience, or an "
    "audience that is not a Customer Match audience of this advertiser).",
    "FAILED_PRECONDITION": "The audience or advertiser is not in a state that allows editing its members.",
    "RESOURCE_EXHAUSTED": "DV360's write quota was reached (150 writes/min per advertiser, 700 per project; each "
    "edit counts as 5); retried later.",
    "oauth/missing": "The OAuth client id, client secret or refresh token is missing.",
    "invalid_audience_id": "The audience connection's DV360 audience id is not a number.",
    "no_advertiser_id": "The configuration has no advertiser id.",
    "invalid_response": "DV360's answer could not be read; retried.",
}


def _json(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


def _reason(details: list) -> str:
    """The ErrorInfo reason of a google.rpc error (ACCESS_TOKEN_SCOPE_INSUFFICIENT, SERVICE_DISABLED, …)."""
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == _ERROR_INFO and isinstance(detail.get("reason"), str):
            return detail["reason"][:60]
    return ""


def _token_is_timeout(exc: TokenError) -> bool:
    return isinstance(exc.__cause__, requests.exceptions.Timeout)


class Client(PartnerClient):
    partner = PARTNER
    error_codes = ERROR_CODES

    def __init__(self, config, session):
        super().__init__(config, session)
        self.oauth = GoogleOAuth(self, SCOPE)
        self.advertiser_id = str(config.settings.get("advertiser_id") or "").strip()
        self.consent = self._consent(config.settings)

    @staticmethod
    def _consent(settings) -> dict[str, str]:
        """Only GRANTED is ever declared: "not specified" leaves the field out (DENIED never passes validation)."""
        consent = {}
        for setting, field in (
            ("ad_user_data_consent", "adUserData"),
            ("ad_personalization_consent", "adPersonalization"),
        ):
            if (settings.get(setting) or GRANTED) == GRANTED:
                consent[field] = GRANTED
        return consent

    # Quota: per advertiser (the descriptor's 30 calls/min) and per Cloud project (140 calls/min) --------------------
    def quota_key(self) -> str:
        return f"google_dv360:advertiser:{self.advertiser_id or self.config.partner_config_id}"

    def project_quota_key(self) -> str:
        return f"google_dv360:project:{self.oauth.client_id}"

    def wait_for_quota(self) -> float:
        wait = super().wait_for_quota()
        if wait > 0:
            return wait
        return ratelimit.acquire(
            self.project_quota_key(), PROJECT_QUOTA, max_wait=django_settings.DAP_RATE_LIMIT_MAX_WAIT_SECONDS
        )

    # URLs -------------------------------------------------------------------------------------------------------
    def edit_url(self, audience_id: str) -> str:
        return self.url(
            API_HOST, f"/{API_VERSION}/firstPartyAndPartnerAudiences/{audience_id}:editCustomerMatchMembers"
        )

    def advertiser_url(self) -> str:
        return self.url(API_HOST, f"/{API_VERSION}/advertisers/{self.advertiser_id}")

    # Sending ----------------------------------------------------------------------------------------------------
    def send(self, action: str, items: list[Item]) -> list[CallResult]:
        calls: list[CallResult] = []
        rejected: dict[str, list[int]] = {}
        # (audience id, list kind) -> (item indices, values); contact values are (field, digest) pairs.
        groups: dict[tuple[str, str], tuple[list[int], list]] = {}
        for index, item in enumerate(items):
            audience_id = item.partner_audience_id.strip()
            if not audience_id:
                rejected.setdefault("no_partner_audience_id", []).append(index)
                continue
            if not _INT64.fullmatch(audience_id):
                rejected.setdefault("invalid_audience_id", []).append(index)
                continue
            prepare = PREPARE_BY_SLOT.get(item.slot)
            if prepare is None:
                rejected.setdefault("unsupported_slot", []).append(index)
                continue
            value = prepare(item.identifier) if item.identifier else ""
            if not value:
                rejected.setdefault("invalid_identifier", []).append(index)
                continue
            field = FIELD_BY_SLOT[item.slot]
            kind = CONTACT if field else DEVICE
            group = groups.get((audience_id, kind))
            if group is None:
                group = groups[(audience_id, kind)] = ([], [])
            group[0].append(index)
            group[1].append((field, value) if field else value)

        for code, indices in rejected.items():
            message = {
                "no_partner_audience_id": "no DV360 audience id on the audience connection",
                "invalid_audience_id": "the DV360 audience id on the audience connection is not a number",
                "unsupported_slot": "identifier slot not supported by DV360 Customer Match",
                "invalid_identifier": "identifier empty or invalid once normalised",
            }[code]
            result = ItemResult(Outcome.OTHER_ERROR, partner_code=code, message=message)
            calls.append(self.all_items(indices, result, partner_code=code, snippet=f"not sent: {message}"))
        if not groups:
            return calls

        if not _INT64.fullmatch(self.advertiser_id):
            indices = [i for group_indices, _ in groups.values() for i in group_indices]
            message = "no valid advertiser id in the configuration"
            result = ItemResult(Outcome.OTHER_ERROR, partner_code="no_advertiser_id", message=message)
            calls.append(
                self.all_items(indices, result, partner_code="no_advertiser_id", snippet=f"not sent: {message}")
            )
            return calls

        added = action != Action.REMOVE
        for (audience_id, kind), (indices, values) in groups.items():
            for start in range(0, len(values), MAX_MEMBERS_PER_LIST):
                end = start + MAX_MEMBERS_PER_LIST
                body = self._body(kind, added, values[start:end])
                calls.append(self._edit(audience_id, action, indices[start:end], body))
        return calls

    def _body(self, kind: str, added: bool, values: list) -> bytes:
        if kind == CONTACT:
            members: dict = {"contactInfos": [{field: [digest]} for field, digest in values]}
        else:
            members = {"mobileDeviceIds": values}
        if added and self.consent:
            members["consent"] = self.consent
        payload = {"advertiserId": self.advertiser_id, LIST_FIELDS[(kind, added)]: members}
        return json.dumps(payload, separators=(",", ":")).encode()

    def _edit(self, audience_id: str, action: str, indices: list[int], body: bytes) -> CallResult:
        """One edit; after a 401 on a cached token, once more with a fresh one (the first answer is not kept)."""
        url = self.edit_url(audience_id)
        members = len(indices)
        for retry in (False, True):
            fresh = retry or tokens.get(self.oauth.key) is None
            try:
                token = self.oauth.access_token()
            except TokenError as exc:
                return self._token_failure(indices, exc)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            result = self.call(
                indices,
                "POST",
                url,
                lambda timed, final=fresh: self._classify(timed, action, indices, members, final),
                data=body,
                headers=headers,
            )
            if result.status_code != 401:
                return result
            self.oauth.forget()
            if fresh:
                return result
        return result  # pragma: no cover - the loop always returns

    def _token_failure(self, indices: list[int], exc: TokenError) -> CallResult:
        message = http.redact(exc.message or exc.code, limit=300)
        snippet = http.redact(f"token endpoint: {exc.code}: {message}")
        if exc.credentials:
            result = ItemResult(Outcome.INVALID_CREDENTIALS, partner_code=exc.code, message=message)
            return self.all_items(
                indices,
                result,
                status_code=exc.status,
                partner_code=exc.code,
                snippet=snippet,
                credentials_invalid=True,
            )
        if _token_is_timeout(exc):
            return self.all_items(indices, self.timeout_result(message), status_code=exc.status, snippet=snippet)
        result = ItemResult(Outcome.OTHER_ERROR, partner_code=exc.code, message=message, retryable=True)
        return self.all_items(indices, result, status_code=exc.status, partner_code=exc.code, snippet=snippet)

    def _classify(self, timed: http.Timed, action: str, indices: list[int], members: int, final: bool) -> CallResult:
        response = timed.response
        status = response.status_code
        payload = _json(timed.body)
        call = {"status_code": status, "duration_ms": timed.duration_ms}
        text = timed.body.decode("utf-8", "replace")

        if 200 <= status < 300:
            if not isinstance(payload, dict):
                result = ItemResult(
                    Outcome.PARTNER_ERROR, partner_code="invalid_response", message="unreadable answer", retryable=True
                )
                return self.all_items(
                    indices, result, partner_code="invalid_response", snippet=http.redact(text), **call
                )
            audience = http.redact(str(payload.get("firstPartyAndPartnerAudienceId") or "?"), limit=40)
            verb = "removed" if action == Action.REMOVE else "added"
            snippet = f"audience {audience}: {members} members {verb}"
            return self.all_items(indices, ItemResult.ok(action), snippet=snippet, **call)

        rpc_status, message, details = google_error(payload)
        reason = _reason(details)
        code = rpc_status or f"http_{status}"
        if reason and rpc_status in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            code = f"{rpc_status}/{reason}"
        message = f"{rpc_status or f'HTTP {status}'}: {message}" if message else (rpc_status or f"HTTP {status}")
        retry_after = http.retry_after_seconds(response.headers.get("Retry-After"))
        snippet = http.redact(text)

        if status == 401 or rpc_status == "UNAUTHENTICATED":
            result = ItemResult(Outcome.INVALID_CREDENTIALS, partner_code=code, message=message)
            return self.all_items(
                indices, result, partner_code=code, snippet=snippet, credentials_invalid=final, **call
            )
        retryable = status == 429 or status >= 500 or rpc_status in google_oauth.RETRYABLE_STATUSES
        result = ItemResult(Outcome.PARTNER_ERROR, partner_code=code, message=message, retryable=retryable)
        return self.all_items(
            indices, result, partner_code=code, snippet=snippet, retry_after=retry_after if retryable else None, **call
        )

    # Test connection --------------------------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """Read the advertiser (`GET /v4/advertisers/{advertiserId}`): proves the credentials, the scope and the
        user's access to the advertiser without touching any audience."""
        if not _INT64.fullmatch(self.advertiser_id):
            return False, "Set the advertiser ID (digits) first."
        for retry in (False, True):
            fresh = retry or tokens.get(self.oauth.key) is None
            try:
                token = self.oauth.access_token()
            except TokenError as exc:
                message = http.redact(exc.message or exc.code, limit=200)
                if exc.credentials:
                    hint = self.error_meaning(exc.code)
                    return False, f"Invalid credentials ({exc.code}): {message}" + (f" — {hint}" if hint else "")
                if _token_is_timeout(exc):
                    return False, f"Google's token endpoint did not answer within {self.timeout:g} s."
                return False, f"Could not get an access token from Google ({exc.code}): {message}"
            try:
                timed = http.request(
                    self.session,
                    "GET",
                    self.advertiser_url(),
                    timeout=self.timeout,
                    headers={"Authorization": f"Bearer {token}"},
                    allow_redirects=False,
                )
            except requests.exceptions.Timeout:
                return False, f"Display & Video 360 did not answer within {self.timeout:g} s."
            except requests.exceptions.RequestException as exc:
                return False, f"Could not connect to Display & Video 360: {http.redact(str(exc), limit=200)}"
            status = timed.response.status_code
            if status == 401:
                self.oauth.forget()
                if not fresh:
                    continue
            break
        payload = _json(timed.body)
        if 200 <= status < 300 and isinstance(payload, dict):
            name = http.redact(str(payload.get("displayName") or ""), limit=200)
            ident = http.redact(str(payload.get("advertiserId") or self.advertiser_id), limit=40)
            state = str(payload.get("entityStatus") or "")
            text = f"Connected to advertiser {name} ({ident})" if name else f"Connected to advertiser {ident}"
            if state and state != "ENTITY_STATUS_ACTIVE":
                text += f", status {state}"
            return True, text + "."
        rpc_status, message, details = google_error(payload)
        reason = _reason(details)
        detail = f" ({message})" if message else ""
        if status == 401:
            return False, f"Invalid credentials: Google refused a freshly issued access token{detail}."
        if status == 404 or rpc_status == "NOT_FOUND":
            return False, f"Advertiser {self.advertiser_id} was not found in Display & Video 360{detail}."
        if status == 403 or rpc_status == "PERMISSION_DENIED":
            hint = self.error_meaning(f"PERMISSION_DENIED/{reason}" if reason else "PERMISSION_DENIED")
            return False, f"Permission denied for advertiser {self.advertiser_id}{detail}. {hint}"
        if status == 429 or status >= 500:
            return False, f"Display & Video 360 is busy or unavailable (HTTP {status}){detail}; try again later."
        return False, f"Display & Video 360 answered HTTP {status}{detail}."
