"""Google Ads Customer Match through the Data Manager API (v1).

Add (and update) = `POST https://datamanager.googleapis.com/v1/audienceMembers:ingest`, remove =
`POST .../v1/audienceMembers:remove`, OAuth 2.0 bearer token for scope `https://www.googleapis.com/auth/datamanager`
(connectors/partners/google_oauth.py). One request per Customer Match list, at most 10,000 members each:

    {"destinations": [{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
                       "loginAccount": {...}            # only with a manager (login) account
                       "productDestinationId": "<user list id>"}],
     "audienceMembers": [{"userData": {"userIdentifiers": [{"emailAddress": "<sha-256>"}]}}, ...],
     "encoding": "HEX",
     "consent": {"adUserData": ..., "adPersonalization": ...},                   # ingest only, when specified
     "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"}}     # ingest only

The list is the audience connection's partner audience id, else the configuration's default list. Each profile
is sent with the one identifier the dispatcher picked (email before phone), normalised and hashed as normalize.py
says. The answer is `{"requestId": ...}`.

Errors are google.rpc statuses `{"error": {"code", "message", "status", "details"}}`. The API fails a whole request
when one member is invalid; when its BadRequest details name members (`audience_members[i]`), those members fail
with the reason given and the others are sent again at once without them. 401 UNAUTHENTICATED drops the cached access
token and retries once with a fresh one before the configuration is marked "credentials invalid". 429
RESOURCE_EXHAUSTED and 5xx are retried (Retry-After or the RetryInfo delay honoured); 400, 403 and 404 are final.

The documented quota (300 requests per minute per Google Cloud project) is applied per OAuth client, since a client
belongs to one project and several configurations may share it.
"""

from __future__ import annotations

import json
import re
from hashlib import sha256

import requests

from connectors.delivery import http
from connectors.delivery.client import PartnerClient
from connectors.delivery.types import Action, CallResult, Item, ItemResult
from connectors.models import Outcome
from connectors.partners import google_oauth
from connectors.partners.google_ads_customer_match import normalize
from connectors.partners.google_ads_customer_match.descriptor import PARTNER, SCOPE, normalize_customer_id
from connectors.partners.google_oauth import GoogleOAuth, TokenError, google_error

API_HOST = "datamanager.googleapis.com"
INGEST_PATH = "/v1/audienceMembers:ingest"
REMOVE_PATH = "/v1/audienceMembers:remove"
ACCOUNT_TYPE = "GOOGLE_ADS"
MAX_MEMBERS = 10_000
# After a rejection naming invalid members, the others are sent again at once, at most this many times.
MAX_RESENDS = 2
CONSENT_VALUES = frozenset({"CONSENT_GRANTED", "CONSENT_DENIED"})  # CONSENT_STATUS_UNSPECIFIED: left out
CONSENT_SETTINGS = (("adUserData", "ad_user_data_consent"), ("adPersonalization", "ad_personalization_consent"))
# Identifier used by the validate-only upload of test_connection (never ingested).
PROBE_EMAIL = "dap-connection-test@example.com"

_MEMBER_POSITION = re.compile(r"(?:audience_members|audienceMembers)\[(\d+)\]")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)s")
_HTTP_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# ErrorInfo reasons that mean the stored credentials themselves are unusable (not one object's permission).
CREDENTIAL_REASONS = frozenset({"ACCESS_TOKEN_SCOPE_INSUFFICIENT", "ACCESS_TOKEN_EXPIRED", "CREDENTIALS_MISSING"})

# Data Manager ErrorReason values (and Google's common ErrorInfo reasons), in plain words.
REASONS: dict[str, str] = {
    "REQUIRED_FIELD_MISSING": "A required field was missing from the request.",
    "INVALID_FORMAT": "A value had the wrong format (for example a customer ID with dashes).",
    "INVALID_HEX_ENCODING": "An identifier was not valid hex.",
    "INVALID_BASE64_ENCODING": "An identifier was not valid Base64.",
    "INVALID_SHA256_FORMAT": "An identifier was not a SHA-256 hash.",
    "INVALID_ENUM_VALUE": "A setting held a value Google does not accept here.",
    "INVALID_USER_LIST_TYPE": "The list does not take contact data (it is not a customer-list Customer Match list).",
    "INVALID_AUDIENCE_MEMBER": "Google refused this audience member.",
    "TOO_MANY_AUDIENCE_MEMBERS": "More than 10,000 members in one request.",
    "TOO_MANY_USER_IDENTIFIERS": "More than 10 identifiers for one member.",
    "TOO_MANY_DESTINATIONS": "More than 10 destinations in one request.",
    "INVALID_DESTINATION": "The destination (account or list) is not valid.",
    "INVALID_USER_LIST_ID": "The Customer Match list ID is not valid for this account.",
    "MULTIPLE_DATA_TYPES_NOT_ALLOWED": "Several kinds of member data in one request.",
    "TERMS_AND_CONDITIONS_NOT_SIGNED": "The Customer Match terms are not accepted for this Google Ads account.",
    "DATA_PARTNER_USER_LIST_MUTATE_NOT_ALLOWED": "A data partner may not change a list its client owns.",
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT": "The refresh token was not issued for the Data Manager scope: authorise again.",
    "SERVICE_DISABLED": "The Data Manager API is not enabled in the OAuth client's Google Cloud project.",
    "RATE_LIMIT_EXCEEDED": "Google's request quota was reached; retried later.",
}

ERROR_CODES: dict[str, str] = {
    **google_oauth.ERROR_CODES,
    "oauth/missing": "The OAuth client ID, client secret or refresh token is missing.",
    "UNAUTHENTICATED": "Google refused the access token even after a refresh: authorise the client again.",
    "PERMISSION_DENIED": "The authorising user (or the manager account) has no access to this Google Ads account or "
    "list, or the list does not exist.",
    "NOT_FOUND": "The Google Ads account or Customer Match list does not exist.",
    "INVALID_ARGUMENT": "Google refused the request's content; nothing in it was processed.",
    "RESOURCE_EXHAUSTED": "The Data Manager quota (300 requests per minute per Google Cloud project) was reached; "
    "retried later.",
    "not_processed": "Not processed because other members of the same request were invalid; sent again.",
    "no_partner_audience_id": "No Customer Match list: set the list ID on the audience connection or a default list.",
    "invalid_list_id": "The Customer Match list ID on the audience connection is not a number.",
    "invalid_identifier": "The email address or phone number is not usable once normalised (a phone number needs its "
    "country code), so it was not sent.",
    "unsupported_slot": "Customer Match matches on email address or phone number only.",
    "invalid_response": "Google's answer could not be read; retried.",
}


def _json(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


def _detail(details: list, type_suffix: str) -> dict:
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(type_suffix):
            return detail
    return {}


def _retry_delay(details: list) -> float | None:
    """Seconds of a google.rpc.RetryInfo `retryDelay` ("30s")."""
    delay = _detail(details, "google.rpc.RetryInfo").get("retryDelay")
    if isinstance(delay, str):
        match = _DURATION.fullmatch(delay.strip())
        if match:
            return float(match.group(1))
    return None


class RpcError:
    """A google.rpc error answer, classified."""

    __slots__ = ("status", "reason", "message", "violations", "retry_after", "code", "credentials", "retryable")

    def __init__(self, http_status: int, payload, retry_after_header: str | None):
        status, message, details = google_error(payload)
        self.status = status or _HTTP_STATUS_NAMES.get(http_status, "")
        info = _detail(details, "google.rpc.ErrorInfo")
        reason = str(info.get("reason") or "")
        bad_request = _detail(details, "google.rpc.BadRequest")
        violations = bad_request.get("fieldViolations") if isinstance(bad_request.get("fieldViolations"), list) else []
        self.violations = [v for v in violations if isinstance(v, dict)]
        if (not reason or reason == self.status) and self.violations:
            reason = str(self.violations[0].get("reason") or "")
        self.reason = "" if reason == self.status else reason
        if status:
            self.code = status + (f"/{self.reason}" if self.reason else "")
        else:  # not a google.rpc body (a proxy's HTML page, an empty answer)
            self.code = f"http_{http_status}"
        self.message = message or REASONS.get(self.reason, "") or f"HTTP {http_status}"
        if self.violations:  # the API's own message is generic: say which field and why
            first = self.violations[0]
            why = str(first.get("description") or "") or REASONS.get(str(first.get("reason") or ""), "")
            if why:
                self.message = http.redact(f"{self.message} {first.get('field') or 'request'}: {why}", 300)
        retry_after = http.retry_after_seconds(retry_after_header)
        self.retry_after = retry_after if retry_after is not None else _retry_delay(details)
        self.credentials = http_status == 401 or self.status == "UNAUTHENTICATED" or self.reason in CREDENTIAL_REASONS
        self.retryable = not self.credentials and (
            self.status in google_oauth.RETRYABLE_STATUSES or http_status == 429 or http_status >= 500
        )

    @property
    def outcome(self) -> str:
        return Outcome.INVALID_CREDENTIALS if self.credentials else Outcome.PARTNER_ERROR

    def member_failures(self, count: int) -> dict[int, ItemResult]:
        """Request positions of members the BadRequest details name -> their (final) result."""
        failures: dict[int, ItemResult] = {}
        for violation in self.violations:
            match = _MEMBER_POSITION.search(str(violation.get("field") or ""))
            if not match:
                continue
            position = int(match.group(1))
            if position >= count or position in failures:
                continue
            reason = str(violation.get("reason") or "")
            code = f"{self.status or 'INVALID_ARGUMENT'}/{reason}" if reason else self.code
            description = http.redact(str(violation.get("description") or ""), 300)
            message = description or REASONS.get(reason, "") or self.message
            failures[position] = ItemResult(Outcome.PARTNER_ERROR, partner_code=code, message=message)
        return failures


class Client(PartnerClient):
    partner = PARTNER
    error_codes = ERROR_CODES

    def __init__(self, config, session):
        super().__init__(config, session)
        settings = config.settings
        self.operating_account = normalize_customer_id(str(settings.get("operating_account_id") or "").strip())
        self.login_account = normalize_customer_id(str(settings.get("login_account_id") or "").strip())
        self.default_list = str(settings.get("user_list_id") or "").strip()
        encoding = str(settings.get("encoding") or normalize.HEX)
        self.encoding = encoding if encoding in normalize.ENCODINGS else normalize.HEX
        consent = {}
        for key, setting in CONSENT_SETTINGS:
            value = str(settings.get(setting) or "CONSENT_GRANTED")
            if value in CONSENT_VALUES:
                consent[key] = value
        self.consent = consent
        self.terms_accepted = bool(settings.get("terms_of_service_accepted"))
        self.oauth = GoogleOAuth(self, SCOPE)

    @classmethod
    def error_meaning(cls, partner_code: str) -> str:
        """Exact code, then the ErrorInfo/ErrorReason after "/", then the google.rpc status, then generic."""
        if partner_code in cls.error_codes:
            return cls.error_codes[partner_code]
        head, _, reason = partner_code.partition("/")
        if reason and reason in REASONS:
            return REASONS[reason]
        if head in cls.error_codes:
            return cls.error_codes[head]
        return super().error_meaning(partner_code)

    def quota_key(self) -> str:
        client_id = str(self.config.settings.get("client_id") or "")
        return f"google_datamanager:{client_id}" if client_id else super().quota_key()

    # Request bodies ---------------------------------------------------------------------------------------------
    def _account(self, account_id: str) -> dict:
        return {"accountType": ACCOUNT_TYPE, "accountId": account_id}

    def destination(self, list_id: str) -> dict:
        destination = {"operatingAccount": self._account(self.operating_account), "productDestinationId": list_id}
        if self.login_account:
            destination["loginAccount"] = self._account(self.login_account)
        return destination

    def body(self, action: str, list_id: str, members: list[str], *, validate_only: bool = False) -> bytes:
        """The request body; `members` are ready JSON objects (hashes are hex or Base64: nothing to escape)."""
        head = {"destinations": [self.destination(list_id)]}
        tail: dict = {"encoding": self.encoding}
        if action != Action.REMOVE:
            if self.consent:
                tail["consent"] = self.consent
            if self.terms_accepted:
                tail["termsOfService"] = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
        if validate_only:
            tail["validateOnly"] = True
        head_json = json.dumps(head, separators=(",", ":"))[:-1]
        tail_json = json.dumps(tail, separators=(",", ":"))[1:]
        return f'{head_json},"audienceMembers":[{",".join(members)}],{tail_json}'.encode()

    @staticmethod
    def member(field: str, value: str) -> str:
        return '{"userData":{"userIdentifiers":[{"%s":"%s"}]}}' % (field, value)  # noqa: UP031

    # Sending ----------------------------------------------------------------------------------------------------
    def send(self, action: str, items: list[Item]) -> list[CallResult]:
        calls: list[CallResult] = []
        local_failures: dict[str, tuple[list[int], str]] = {
            "no_partner_audience_id": ([], "no Customer Match list on the audience connection and no default list"),
            "invalid_list_id": ([], "the Customer Match list ID is not a number"),
            "unsupported_slot": ([], "Customer Match matches on email address or phone number only"),
            "invalid_identifier": ([], "identifier not usable once normalised"),
        }
        groups: dict[str, tuple[list[int], list[str]]] = {}
        encoding = self.encoding
        for index, item in enumerate(items):
            list_id = (item.partner_audience_id or self.default_list).strip()
            if not list_id:
                local_failures["no_partner_audience_id"][0].append(index)
                continue
            if not (list_id.isdigit() and list_id.isascii()):
                local_failures["invalid_list_id"][0].append(index)
                continue
            if item.slot not in normalize.IDENTIFIER_BY_SLOT:
                local_failures["unsupported_slot"][0].append(index)
                continue
            field, value = normalize.prepare(item.slot, item.identifier, encoding)
            if not value:
                local_failures["invalid_identifier"][0].append(index)
                continue
            group = groups.get(list_id)
            if group is None:
                group = groups[list_id] = ([], [])
            group[0].append(index)
            group[1].append(self.member(field, value))

        for code, (indices, message) in local_failures.items():
            if indices:
                result = ItemResult(Outcome.OTHER_ERROR, partner_code=code, message=message)
                calls.append(self.all_items(indices, result, partner_code=code, snippet=f"not sent: {message}"))

        for list_id, (indices, members) in groups.items():
            for start in range(0, len(members), MAX_MEMBERS):
                end = start + MAX_MEMBERS
                calls.extend(self._send_chunk(action, list_id, indices[start:end], members[start:end]))
        return calls

    def _send_chunk(self, action: str, list_id: str, indices: list[int], members: list[str]) -> list[CallResult]:
        """One request; when Google names invalid members, they fail and the others are sent again without them."""
        calls: list[CallResult] = []
        for resends_left in range(MAX_RESENDS, -1, -1):
            call, named = self._post(action, list_id, indices, members)
            if not named or len(named) == len(indices) or not resends_left:
                calls.append(call)
                return calls
            # Keep the named members' failures on this call; the rest go out again in the next one.
            failed = sorted(named)
            calls.append(
                CallResult(
                    item_indices=[indices[p] for p in failed],
                    results=[call.results[p] for p in failed],
                    status_code=call.status_code,
                    duration_ms=call.duration_ms,
                    partner_code=call.partner_code,
                    snippet=http.redact(f"{len(indices) - len(failed)} other members sent again | {call.snippet}"),
                )
            )
            keep = [p for p in range(len(indices)) if p not in named]
            indices = [indices[p] for p in keep]
            members = [members[p] for p in keep]
        return calls  # pragma: no cover - the loop always returns

    def _post(self, action: str, list_id: str, indices: list[int], members: list[str]) -> tuple[CallResult, set]:
        """POST ingest/remove for these members: (the call's result, request positions of members Google named)."""
        url = self.url(API_HOST, REMOVE_PATH if action == Action.REMOVE else INGEST_PATH)
        body = self.body(action, list_id, members)
        named: set[int] = set()

        def classify(timed: http.Timed) -> CallResult:
            return self._classify(timed, action, indices, named)

        for attempt in range(2):
            try:
                auth = self.oauth.headers()
            except TokenError as err:
                return self._token_failure(indices, err), named
            headers = {**auth, "Content-Type": "application/json"}
            named.clear()
            call = self.call(indices, "POST", url, classify, data=body, headers=headers)
            if call.status_code == 401 and attempt == 0:
                self.oauth.forget()  # the cached token was refused: one more try with a fresh one
                continue
            return call, named
        return call, named  # pragma: no cover - the loop always returns

    def _token_failure(self, indices: list[int], err: TokenError) -> CallResult:
        message = http.redact(err.message, 300)
        if err.credentials:
            result = ItemResult(Outcome.INVALID_CREDENTIALS, partner_code=err.code, message=message)
        else:
            result = ItemResult(Outcome.OTHER_ERROR, partner_code=err.code, message=message, retryable=True)
        return self.all_items(
            indices,
            result,
            status_code=err.status,
            partner_code=err.code,
            snippet=f"access token: {message}",
            credentials_invalid=err.credentials,
        )

    def _classify(self, timed: http.Timed, action: str, indices: list[int], named: set[int]) -> CallResult:
        response = timed.response
        status = response.status_code
        payload = _json(timed.body)
        call = {"status_code": status, "duration_ms": timed.duration_ms}
        if 200 <= status < 300:
            if not isinstance(payload, dict):
                result = ItemResult(
                    Outcome.PARTNER_ERROR, partner_code="invalid_response", message="unreadable answer", retryable=True
                )
                snippet = http.redact(timed.body.decode("utf-8", "replace"))
                return self.all_items(indices, result, partner_code="invalid_response", snippet=snippet, **call)
            request_id = http.redact(str(payload.get("requestId") or ""), 100)
            snippet = f"requestId={request_id}; {len(indices)} members"
            return self.all_items(indices, ItemResult.ok(action), snippet=snippet, **call)

        error = RpcError(status, payload, response.headers.get("Retry-After"))
        snippet = http.redact(timed.body.decode("utf-8", "replace"))
        failures = error.member_failures(len(indices)) if status == 400 else {}
        if failures:
            named.update(failures)
            rest = ItemResult(
                Outcome.OTHER_ERROR,
                partner_code="not_processed",
                message="not processed: other members of the request were invalid",
                retryable=True,
            )
            results = [failures.get(p, rest) for p in range(len(indices))]
            return CallResult(
                item_indices=list(indices), results=results, partner_code=error.code, snippet=snippet, **call
            )
        result = ItemResult(error.outcome, partner_code=error.code, message=error.message, retryable=error.retryable)
        return self.all_items(
            indices,
            result,
            partner_code=error.code,
            snippet=snippet,
            retry_after=error.retry_after,
            credentials_invalid=error.credentials,
            **call,
        )

    # Test connection ---------------------------------------------------------------------------------------------
    def _get(self, path: str) -> tuple[int | None, object, str]:
        """GET on the Data Manager API with one token refresh on 401: (HTTP status, JSON payload, problem text)."""
        headers = {}
        if self.login_account:
            headers["login-account"] = f"accountTypes/{ACCOUNT_TYPE}/accounts/{self.login_account}"
        return self._request("GET", path, headers=headers)

    def _request(self, method: str, path: str, *, headers: dict[str, str], **kwargs) -> tuple[int | None, object, str]:
        url = self.url(API_HOST, path)
        status = None
        for attempt in range(2):
            try:
                auth = self.oauth.headers()
            except TokenError as err:
                return err.status, None, self._token_problem(err)
            try:
                timed = http.request(
                    self.session,
                    method,
                    url,
                    timeout=self.timeout,
                    headers={**headers, **auth},
                    allow_redirects=False,
                    **kwargs,
                )
            except requests.exceptions.Timeout:
                return None, None, f"Google did not answer within {self.timeout:g} s."
            except requests.exceptions.RequestException as exc:
                return None, None, "Could not reach Google: " + http.redact(str(exc), 200)
            status = timed.response.status_code
            if status == 401 and attempt == 0:
                self.oauth.forget()  # the cached token was refused: one more try with a fresh one
                continue
            return status, _json(timed.body), ""
        return status, None, ""  # pragma: no cover - the loop always returns

    @staticmethod
    def _token_problem(err: TokenError) -> str:
        if err.credentials:
            meaning = ERROR_CODES.get(err.code, "")
            return f"Google refused the OAuth credentials ({err.code}): {meaning or http.redact(err.message, 200)}"
        return f"Could not get an access token from Google ({err.code}); try again later."

    def _problem(self, status: int, payload, what: str) -> str:
        error = RpcError(status, payload, None)
        if error.credentials:
            return f"Google refused the credentials ({error.code}): {self.error_meaning(error.code)}"
        if error.retryable:
            return f"Google is unavailable or busy ({error.code}); try again later."
        meaning = self.error_meaning(error.code)
        return f"{what}: {error.code} — {meaning or error.message}"

    def test_connection(self) -> tuple[bool, str]:
        """Reads the default Customer Match list (or lists the account's lists when no default is set), then, with a
        default list, makes a validate-only upload of one made-up member: nothing is ingested."""
        if not self.operating_account:
            return False, "No Google Ads customer ID is configured."
        account = f"accountTypes/{ACCOUNT_TYPE}/accounts/{self.operating_account}"
        if not self.default_list:
            status, payload, problem = self._get(f"/v1/{account}/userLists?pageSize=1")
            if problem:
                return False, problem
            if status != 200:
                return False, self._problem(status, payload, f"Google Ads account {self.operating_account}")
            return True, (
                f"Connected to Google Ads account {self.operating_account}. No default list is set: each audience "
                "connection must name its Customer Match list ID."
            )

        status, payload, problem = self._get(f"/v1/{account}/userLists/{self.default_list}")
        if problem:
            return False, problem
        if status != 200 or not isinstance(payload, dict):
            what = f"Customer Match list {self.default_list} in account {self.operating_account}"
            return False, self._problem(status, payload, what)
        name = http.redact(str(payload.get("displayName") or ""), 100)
        info = payload.get("ingestedUserListInfo")
        key_types = info.get("uploadKeyTypes") if isinstance(info, dict) else None
        if isinstance(key_types, list) and "CONTACT_ID" not in key_types:
            return False, (
                f"List {self.default_list} ({name}) does not take contact data (upload keys: "
                f"{', '.join(map(str, key_types))}): choose a Customer Match list built from emails and phone numbers."
            )
        if payload.get("readOnly") is True:
            return False, f"List {self.default_list} ({name}) is read-only for this account."

        probe = self.member("emailAddress", normalize.encode(sha256(PROBE_EMAIL.encode()).digest(), self.encoding))
        status, payload, problem = self._request(
            "POST",
            INGEST_PATH,
            data=self.body(Action.ADD, self.default_list, [probe], validate_only=True),
            headers={"Content-Type": "application/json"},
        )
        if problem:
            return False, problem
        if status != 200:
            return False, self._problem(status, payload, "The validate-only upload was refused")
        return True, (
            f"Connected: Customer Match list {self.default_list} ({name}) in Google Ads account "
            f"{self.operating_account} is readable and a validate-only upload was accepted."
        )
