"""Azure non-event (Storage Queue) client: one Put Message per profile change, authorised by the configured SAS token.

    POST https://{account}.queue.core.windows.net/{queue}/messages?<SAS token>
    x-ms-version: 2023-11-03
    x-ms-client-request-id: dlv_<delivery id>
    Content-Type: application/xml; charset=utf-8
    <?xml version="1.0" encoding="utf-8"?><QueueMessage><MessageText>base64(event JSON)</MessageText></QueueMessage>

The message is the shared profile event (`connectors.partners.azure_sas.profile_event`), base64-encoded as the Azure
SDKs do by default, so consumers decode it the same way. Azure accepts at most 64 KiB of message text: a larger
event (huge profile variables) is not sent. Messages keep the queue's default time-to-live (7 days).

The SAS token (account or queue service SAS, with the Add permission) is the query string of every call; the platform
never sees the account key. Put Message takes one message, so the items of one `send` go out concurrently on a thread
pool kept by the client (created on first use, up to 32 threads, `close()` stops it), each through the
configuration's quota (Azure's target for one queue: 2,000 messages per second).

Errors are XML `<Error><Code>QueueNotFound</Code><Message>…</Message></Error>` (the code is also in the
x-ms-error-code header); the partner code is that code. AuthenticationFailed (bad or expired token) and the
Authorization*Mismatch codes (the token lacks the Add permission, the queue service or the object resource type) are
invalid credentials: the configuration is paused until a new token is saved. ServerBusy, InternalError,
OperationTimedOut, 429 and 5xx are retried; everything else (QueueNotFound, MessageTooLarge, QueueBeingDeleted,
AuthorizationFailure from network rules, …) is a partner error.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from urllib.parse import quote

import requests

from connectors.delivery import http
from connectors.delivery.client import PartnerClient
from connectors.delivery.types import CallResult, Item, ItemResult
from connectors.models import Outcome
from connectors.partners.azure_sas import (
    event_id,
    is_account_sas,
    iso_utc,
    profile_event,
    sas_time,
    storage_sas_fields,
    xml_error,
)
from connectors.partners.azure_storage_queue.descriptor import PARTNER

API_VERSION = "2023-11-03"
MAX_MESSAGE_CHARS = 64 * 1024  # of message text, i.e. of the base64
MAX_WORKERS = 32
HOST_SUFFIX = ".queue.core.windows.net"
XML_HEAD = b'<?xml version="1.0" encoding="utf-8"?><QueueMessage><MessageText>'
XML_TAIL = b"</MessageText></QueueMessage>"

CREDENTIAL_CODES = frozenset(
    {
        "AuthenticationFailed",
        "NoAuthenticationInformation",
        "InvalidAuthenticationInfo",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationSourceIPMismatch",
    }
)
RETRYABLE_CODES = frozenset({"ServerBusy", "InternalError", "OperationTimedOut"})
# A token whose signature Azure accepted but that may not read the queue's metadata (deliveries only need Add).
READ_REFUSED_CODES = frozenset({"AuthorizationPermissionMismatch", "AuthorizationResourceTypeMismatch"})

ERROR_CODES: dict[str, str] = {
    "AuthenticationFailed": "Azure refused the SAS token (expired, revoked, or not signed for this account): "
    "save a new token.",
    "NoAuthenticationInformation": "The call carried no SAS token.",
    "InvalidAuthenticationInfo": "Azure could not read the SAS token.",
    "AuthorizationPermissionMismatch": "The SAS token lacks the Add permission.",
    "AuthorizationResourceTypeMismatch": "The account SAS lacks the object resource type (srt=o) messages need.",
    "AuthorizationServiceMismatch": "The account SAS was not made for the Queue service (ss must include q).",
    "AuthorizationProtocolMismatch": "The SAS token does not allow HTTPS.",
    "AuthorizationSourceIPMismatch": "The SAS token is limited to IP addresses that exclude the platform's.",
    "AuthorizationFailure": "Azure refused the call (storage account firewall or network rules).",
    "AccountIsDisabled": "The storage account is disabled.",
    "QueueNotFound": "The queue does not exist in this storage account.",
    "QueueBeingDeleted": "The queue is being deleted.",
    "QueueDisabled": "The queue is disabled.",
    "MessageTooLarge": "The message is larger than the 64 KiB Azure accepts.",
    "RequestBodyTooLarge": "The request body is larger than Azure accepts.",
    "InvalidXmlDocument": "Azure could not read the message envelope.",
    "ServerBusy": "The storage account is busy (over its request rate); retried.",
    "InternalError": "Azure Storage internal error; retried.",
    "OperationTimedOut": "Azure Storage timed out; retried.",
    "no_sas_token": "No SAS token is configured, so nothing was sent.",
    "message_too_large": "This profile's message is larger than the 64 KiB Azure accepts, so it was not sent.",
    "invalid_identifier": "The identifier is empty, so the message was not sent.",
    "connection_error": "Could not connect to the storage account; retried.",
}


def error_code(status: int, headers, body: bytes) -> str:
    """The Storage error code: the <Error><Code> of the body, else the x-ms-error-code header, else http_<status>."""
    code = xml_error(body).get("Code") or (headers.get("x-ms-error-code") if headers is not None else "") or ""
    return code.strip()[:64] or f"http_{status}"


class Client(PartnerClient):
    max_workers = MAX_WORKERS
    partner = PARTNER
    error_codes = ERROR_CODES

    def __init__(self, config, session):
        super().__init__(config, session)
        settings = config.settings
        self.account = str(settings.get("account_name") or "")
        self.queue = str(settings.get("queue_name") or "")
        self.include_variables = bool(settings.get("include_profile_variables"))
        token = (config.secrets.get("sas_token", "") or "").strip()
        self._sas = token[1:] if token.startswith("?") else token
        self.host = f"{self.account}{HOST_SUFFIX}"
        queue = quote(self.queue, safe="")
        self._messages_url = f"{self.url(self.host, f'/{queue}/messages')}?{self._sas}"
        self._metadata_url = f"{self.url(self.host, f'/{queue}')}?comp=metadata&{self._sas}"

    # ------------------------------------------------------------------------------------------------------------
    def message_text(self, action: str, item: Item, timestamp: str) -> bytes:
        """The base64 of the event JSON (UTF-8): what goes between <MessageText> tags (base64 needs no escaping)."""
        event = profile_event(action, item, include_variables=self.include_variables, timestamp=timestamp)
        return base64.b64encode(event.encode())

    def headers(self, item: Item) -> dict[str, str]:
        return {
            "Content-Type": "application/xml; charset=utf-8",
            "x-ms-version": API_VERSION,
            "x-ms-client-request-id": event_id(item),
        }

    def send(self, action: str, items: list[Item]) -> list[CallResult]:
        if not items:
            return []
        if not self._sas:
            result = ItemResult(Outcome.INVALID_CREDENTIALS, partner_code="no_sas_token", message="no SAS token")
            indices = list(range(len(items)))
            return [
                self.all_items(
                    indices, result, partner_code="no_sas_token", snippet="not sent", credentials_invalid=True
                )
            ]
        timestamp = iso_utc(time.time())
        if len(items) == 1:
            return [self._send_one(action, 0, items[0], timestamp)]
        pool = self.pool()
        futures = [pool.submit(self._send_one, action, i, item, timestamp) for i, item in enumerate(items)]
        return [future.result() for future in futures]

    def _send_one(self, action: str, index: int, item: Item, timestamp: str) -> CallResult:
        if not item.identifier:
            result = ItemResult(Outcome.OTHER_ERROR, partner_code="invalid_identifier", message="identifier empty")
            return self.all_items([index], result, partner_code="invalid_identifier", snippet="not sent")
        text = self.message_text(action, item, timestamp)
        if len(text) > MAX_MESSAGE_CHARS:
            message = f"message of {len(text):,} characters once base64-encoded; Azure accepts {MAX_MESSAGE_CHARS:,}"
            result = ItemResult(Outcome.OTHER_ERROR, partner_code="message_too_large", message=message)
            return self.all_items([index], result, partner_code="message_too_large", snippet=f"not sent: {message}")

        def classify(timed: http.Timed) -> CallResult:
            return self._classify(timed, action, index)

        body = XML_HEAD + text + XML_TAIL
        return self.call([index], "POST", self._messages_url, classify, data=body, headers=self.headers(item))

    def _classify(self, timed: http.Timed, action: str, index: int) -> CallResult:
        status = timed.response.status_code
        call = {"status_code": status, "duration_ms": timed.duration_ms}
        if 200 <= status < 300:
            return self.all_items([index], ItemResult.ok(action), **call)
        code = error_code(status, timed.response.headers, timed.body)
        text = timed.body.decode("utf-8", "replace") if timed.body else ""
        detail = xml_error(timed.body).get("Message", "").split("\n", 1)[0] or f"HTTP {status}"
        message = http.redact(detail, limit=300)
        retry_after = None
        credentials = retryable = False
        outcome = Outcome.PARTNER_ERROR
        if code in CREDENTIAL_CODES or status == 401:
            outcome, credentials = Outcome.INVALID_CREDENTIALS, True
        elif code in RETRYABLE_CODES or status == 429 or status >= 500:
            retryable = True
            retry_after = http.retry_after_seconds(timed.response.headers.get("Retry-After"))
        result = ItemResult(outcome, partner_code=code, message=message, retryable=retryable)
        return self.all_items(
            [index],
            result,
            partner_code=code,
            snippet=http.redact(text),
            retry_after=retry_after,
            credentials_invalid=credentials,
            **call,
        )

    # Test connection ----------------------------------------------------------------------------------------------
    def token_problem(self) -> str:
        """What the token's own fields already rule out for Put Message ("" when nothing)."""
        fields = storage_sas_fields(self._sas)
        if not fields.get("sig") or not fields.get("sv"):
            return "The SAS token lacks sv= or sig=: paste the whole token."
        now = datetime.now(UTC)
        expiry = sas_time(fields.get("se", ""))
        if fields.get("se") and expiry is None:
            return "The SAS token's expiry (se=) cannot be read."
        if expiry is not None and expiry <= now:
            return f"The SAS token expired on {fields['se']}: create a new one."
        start = sas_time(fields.get("st", ""))
        if start is not None and start > now:
            return f"The SAS token is not valid before {fields['st']}."
        if is_account_sas(fields):
            if "q" not in fields.get("ss", ""):
                return "This account SAS was not made for the Queue service (allowed services must include Queue)."
            if "o" not in fields.get("srt", ""):
                return "This account SAS lacks the Object resource type, which adding messages needs."
        if "a" not in fields.get("sp", ""):
            return "The SAS token lacks the Add permission, which adding messages needs."
        return ""

    def test_connection(self) -> tuple[bool, str]:
        """Read the queue's metadata (GET /{queue}?comp=metadata): proves the account, the token and the queue. A
        token with only the Add permission may not read it; Azure then still shows that the token itself is valid."""
        if not (self.account and self.queue):
            return False, "Set the storage account and queue names first."
        if not self._sas:
            return False, "Set the SAS token first."
        problem = self.token_problem()
        if problem:
            return False, problem
        headers = {"x-ms-version": API_VERSION}
        try:
            timed = http.request(
                self.session, "GET", self._metadata_url, timeout=self.timeout, headers=headers, allow_redirects=False
            )
        except requests.exceptions.Timeout:
            return False, f"Azure Storage did not answer within {self.timeout:g} s."
        except requests.exceptions.RequestException as exc:
            return False, (
                f"Could not reach {self.host}: check the storage account name ({http.redact(str(exc), limit=160)})."
            )
        status = timed.response.status_code
        queue, account = self.queue, self.account
        if status == 200:
            count = timed.response.headers.get("x-ms-approximate-messages-count")
            waiting = f", about {count} messages waiting" if count and count.isdigit() else ""
            return True, f"Connected to queue '{queue}' of storage account {account}{waiting}."
        code = error_code(status, timed.response.headers, timed.body)
        detail = http.redact(xml_error(timed.body).get("Message", "").split("\n", 1)[0], limit=200)
        if code in READ_REFUSED_CODES:
            return True, (
                f"Azure accepted the SAS token for storage account {account}, but the token may not read queue "
                f"'{queue}' (it has no Read permission or container resource type), so the queue name could not be "
                "confirmed. Deliveries need only the Add permission."
            )
        if code in CREDENTIAL_CODES:
            return False, f"Azure refused the SAS token ({code}: {detail or 'HTTP ' + str(status)}): save a new token."
        if code == "QueueNotFound":
            return False, f"Queue '{queue}' does not exist in storage account {account}."
        return False, f"Azure Storage answered HTTP {status} ({code})" + (f": {detail}" if detail else ".")
