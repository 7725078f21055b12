"""Azure Event Hubs client: profile changes as batches of events (REST "Send batch events"), SAS-token signed.

    POST https://{namespace}.servicebus.windows.net/{hub}/messages?api-version=2014-01
    Authorization: SharedAccessSignature sr=<url-encoded https://{namespace}.servicebus.windows.net/{hub}>&sig=…&se=…&skn=…
    Content-Type: application/vnd.microsoft.servicebus.json
    [{"Body": "<event JSON text>", "UserProperties": {"type": …, "action": …, "delivery_id": …, "identifier_slot": …}}]

Each event's Body is the shared profile event (`connectors.partners.azure_sas.profile_event`: action, the identifier
of the configured slot, the audience connection's partner id, profile variables when enabled, and the stable
`dlv_<delivery id>` id consumers de-duplicate on); UserProperties repeat the routing fields so consumers can filter
without parsing the body. Success is 201 with an empty body.

Batching: Event Hubs limits a batch by size (256 KB on Basic, 1 MB on Standard and above: the `tier` setting), so the
items of one `send` are packed in order into requests whose JSON body stays within the tier's cap (and at most 1,000
events). An event too large on its own is not sent. Should Azure still answer 413 for a batch of several events (its
own accounting differs slightly from the JSON size), the batch is split in two and each half sent again.

The SAS token is signed here with the policy key, valid one hour and reused until five minutes before it expires
(kept in memory only: it is cheap to sign); a 401 drops it so the next call signs afresh.

Errors come as XML `<Error><Code>401</Code><Detail>InvalidSignature: …</Detail></Error>`. The partner code is the
status, with the reason when the Detail names one ("401/ExpiredToken", "503/50002"). 401 = invalid credentials (the
configuration is paused), except ExpiredToken: the token is the platform's own, so it is signed again and the batch
sent once more at once (and retried later should that fail too, e.g. a clock far off); 400, 403 (quota exceeded,
namespace disabled), 404 (unknown event hub) and 413 are partner errors; 429, 500, 503 (server busy: 10 s unless
Retry-After says otherwise) and other 5xx are retried.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import quote

import requests

from connectors.delivery import http
from connectors.delivery.client import PartnerClient
from connectors.delivery.types import CallResult, Item, ItemResult
from connectors.models import Outcome
from connectors.partners.azure_event_hubs.descriptor import MAX_BATCH_BYTES_BY_TIER, PARTNER
from connectors.partners.azure_sas import (
    EVENT_TYPES,
    event_id,
    iso_utc,
    local_name,
    parse_xml,
    profile_event,
    service_bus_token,
    xml_error,
)

API_VERSION = "2014-01"
CONTENT_TYPE = "application/vnd.microsoft.servicebus.json"
MAX_EVENTS_PER_BATCH = 1_000
TOKEN_TTL_SECONDS = 3600
TOKEN_RENEW_BEFORE_SECONDS = 300
BUSY_RETRY_SECONDS = 10.0  # Azure's ServerBusy text asks to wait 10 seconds
HOST_SUFFIX = ".servicebus.windows.net"
EXPIRED_TOKEN = "401/ExpiredToken"

ERROR_CODES: dict[str, str] = {
    "400": "Azure refused the batch as malformed.",
    "401": "Azure refused the SAS token: check the policy name and key, and that the policy has the Send claim.",
    "401/InvalidSignature": "The shared access key does not belong to this policy: copy the key again.",
    "401/ExpiredToken": "The SAS token had expired on arrival (check the server clock); a new one is signed.",
    "401/MalformedToken": "Azure could not read the SAS token.",
    "401/InvalidAudience": "The SAS token was signed for another namespace or event hub.",
    "403": "Azure refused the event (quota exceeded, or the namespace or event hub is disabled).",
    "403/QuotaExceeded": "An Event Hubs quota of the namespace is exceeded.",
    "404": "The event hub does not exist in this namespace (check the namespace and event hub names).",
    "413": "The event is larger than the namespace's tier allows (256 KB on Basic, 1 MB otherwise).",
    "429": "Azure asked to slow down; retried later.",
    "500": "Event Hubs internal error; retried.",
    "503": "The namespace is busy (throughput units exhausted); retried.",
    "503/50002": "The namespace is being throttled (throughput units exhausted); retried after 10 seconds.",
    "no_sas_key": "No shared access key is configured, so nothing was sent.",
    "event_too_large": "This profile's event alone is larger than the tier's batch limit, so it was not sent.",
    "invalid_identifier": "The identifier is empty, so the event was not sent.",
    "connection_error": "Could not connect to the Event Hubs namespace; retried.",
}

_REASON = re.compile(r"\s*([A-Z][A-Za-z]+):")
_NUMBER = re.compile(r"(?:Error code\s*:\s*|SubCode=)(\d+)")


def partner_code(status: int, error: dict[str, str]) -> str:
    """The status, or "status/reason" when the <Error> Detail names one ("ExpiredToken: …", "Error code : N")."""
    code = error.get("Code", "").strip()
    code = code if code.isdigit() else str(status)
    detail = error.get("Detail", "")
    reason = _REASON.match(detail) or _NUMBER.search(detail)
    return f"{code}/{reason.group(1)}" if reason else code


class Client(PartnerClient):
    partner = PARTNER
    error_codes = ERROR_CODES

    def __init__(self, config, session):
        super().__init__(config, session)
        settings = config.settings
        self.namespace = str(settings.get("namespace") or "")
        self.event_hub = str(settings.get("event_hub") or "")
        self.key_name = str(settings.get("sas_key_name") or "")
        self._key = config.secrets.get("sas_key", "") or ""
        tier = str(settings.get("tier") or "standard")
        self.max_batch_bytes = MAX_BATCH_BYTES_BY_TIER.get(tier, MAX_BATCH_BYTES_BY_TIER["basic"])
        self.include_variables = bool(settings.get("include_profile_variables"))
        self.host = f"{self.namespace}{HOST_SUFFIX}"
        # The token is signed for the real resource URI, also when calls go to the sandbox.
        self.resource_uri = f"https://{self.host}/{self.event_hub}"
        hub = quote(self.event_hub, safe="")
        self.send_url = self.url(self.host, f"/{hub}/messages") + f"?api-version={API_VERSION}"
        self.describe_url = self.url(self.host, f"/{hub}") + f"?api-version={API_VERSION}"
        self._token = ""
        self._token_expiry = 0.0

    # Token ------------------------------------------------------------------------------------------------------
    def authorization(self) -> str:
        now = time.time()
        if not self._token or self._token_expiry - now < TOKEN_RENEW_BEFORE_SECONDS:
            expiry = int(now) + TOKEN_TTL_SECONDS
            self._token = service_bus_token(self.resource_uri, self.key_name, self._key, expiry)
            self._token_expiry = expiry
        return self._token

    def forget_token(self) -> None:
        self._token, self._token_expiry = "", 0.0

    # Events -----------------------------------------------------------------------------------------------------
    def event(self, action: str, item: Item, timestamp: str) -> bytes:
        """One batch element, compact UTF-8 JSON."""
        body = profile_event(action, item, include_variables=self.include_variables, timestamp=timestamp)
        properties = {
            "type": EVENT_TYPES.get(action, f"profile.{action}"),
            "action": action,
            "delivery_id": event_id(item),
            "identifier_slot": item.slot,
        }
        element = {"Body": body, "UserProperties": properties}
        return json.dumps(element, separators=(",", ":"), ensure_ascii=False).encode()

    def pack(self, events: list[tuple[int, bytes]]) -> tuple[list[list[tuple[int, bytes]]], list[int]]:
        """Split (index, event) pairs, in order, into batches whose body `[e1,e2,…]` fits the tier's cap; also the
        indices of events too large to be sent even alone."""
        batches: list[list[tuple[int, bytes]]] = []
        too_large: list[int] = []
        current: list[tuple[int, bytes]] = []
        size = 2  # the brackets
        for index, event in events:
            if len(event) + 2 > self.max_batch_bytes:
                too_large.append(index)
                continue
            extra = len(event) + (1 if current else 0)  # the comma
            if current and (size + extra > self.max_batch_bytes or len(current) >= MAX_EVENTS_PER_BATCH):
                batches.append(current)
                current, size, extra = [], 2, len(event)
            current.append((index, event))
            size += extra
        if current:
            batches.append(current)
        return batches, too_large

    def send(self, action: str, items: list[Item]) -> list[CallResult]:
        if not items:
            return []
        calls: list[CallResult] = []
        if not self._key:
            result = ItemResult(Outcome.INVALID_CREDENTIALS, partner_code="no_sas_key", message="no shared access key")
            indices = list(range(len(items)))
            return [
                self.all_items(indices, result, partner_code="no_sas_key", snippet="not sent", credentials_invalid=True)
            ]
        timestamp = iso_utc(time.time())
        events: list[tuple[int, bytes]] = []
        empty: list[int] = []
        for index, item in enumerate(items):
            if not item.identifier:
                empty.append(index)
                continue
            events.append((index, self.event(action, item, timestamp)))
        batches, too_large = self.pack(events)
        for indices, code, message in (
            (empty, "invalid_identifier", "identifier empty"),
            (too_large, "event_too_large", f"event larger than the {self.max_batch_bytes:,}-byte batch limit"),
        ):
            if indices:
                result = ItemResult(Outcome.OTHER_ERROR, partner_code=code, message=message)
                calls.append(self.all_items(indices, result, partner_code=code, snippet=f"not sent: {message}"))
        refused: CallResult | None = None
        for batch in batches:
            indices = [i for i, _ in batch]
            if refused is not None:  # Azure refused the key: the other batches would be refused the same way
                calls.append(
                    self.all_items(
                        indices,
                        refused.results[0],
                        partner_code=refused.partner_code,
                        snippet="not sent: credentials refused",
                        credentials_invalid=True,
                    )
                )
                continue
            results = self._post(action, indices, [e for _, e in batch])
            calls.extend(results)
            refused = next((r for r in results if r.credentials_invalid), None)
        return calls

    def _post(
        self, action: str, indices: list[int], events: list[bytes], *, resigned: bool = False
    ) -> list[CallResult]:
        body = b"[" + b",".join(events) + b"]"
        headers = {"Authorization": self.authorization(), "Content-Type": CONTENT_TYPE}

        def classify(timed: http.Timed) -> CallResult:
            return self._classify(timed, action, indices)

        result = self.call(indices, "POST", self.send_url, classify, data=body, headers=headers)
        if result.partner_code == EXPIRED_TOKEN and not resigned:
            # Our own token expired on the way (clock skew): sign a new one and send once more at once.
            return self._post(action, indices, events, resigned=True)
        if result.status_code == 413 and len(indices) > 1:
            middle = len(indices) // 2
            first = self._post(action, indices[:middle], events[:middle])
            return first + self._post(action, indices[middle:], events[middle:])
        return [result]

    def _classify(self, timed: http.Timed, action: str, indices: list[int]) -> CallResult:
        status = timed.response.status_code
        call = {"status_code": status, "duration_ms": timed.duration_ms}
        text = timed.body.decode("utf-8", "replace") if timed.body else ""
        if 200 <= status < 300:
            return self.all_items(indices, ItemResult.ok(action), **call)
        error = xml_error(timed.body)
        code = partner_code(status, error)
        detail = error.get("Detail") or text or f"HTTP {status}"
        message = http.redact(detail, limit=300)
        retry_after = None
        credentials = retryable = False
        outcome = Outcome.PARTNER_ERROR
        if status == 401:
            self.forget_token()
            outcome = Outcome.INVALID_CREDENTIALS
            # An expired token is ours to renew (it is retried); anything else means the key or policy is wrong.
            retryable = code == EXPIRED_TOKEN
            credentials = not retryable
        elif status == 429 or status >= 500:
            retryable = True
            retry_after = http.retry_after_seconds(timed.response.headers.get("Retry-After"))
            if retry_after is None and status == 503:
                retry_after = BUSY_RETRY_SECONDS
        result = ItemResult(outcome, partner_code=code, message=message, retryable=retryable)
        return self.all_items(
            indices,
            result,
            partner_code=code,
            snippet=http.redact(text),
            retry_after=retry_after,
            credentials_invalid=credentials,
            **call,
        )

    # Test connection ----------------------------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """Read the event hub's description (GET /{hub}): proves the namespace, the key and the hub name. A Send-only
        policy may not read it; Azure then still shows that the key itself was accepted."""
        if not (self.namespace and self.event_hub and self.key_name):
            return False, "Set the namespace, event hub and shared access policy first."
        if not self._key:
            return False, "Set the shared access key first."
        headers = {"Authorization": self.authorization()}
        try:
            timed = http.request(
                self.session, "GET", self.describe_url, timeout=self.timeout, headers=headers, allow_redirects=False
            )
        except requests.exceptions.Timeout:
            return False, f"Event Hubs did not answer within {self.timeout:g} s."
        except requests.exceptions.RequestException as exc:
            return False, (
                f"Could not reach {self.host}: check the namespace name ({http.redact(str(exc), limit=160)})."
            )
        status = timed.response.status_code
        error = xml_error(timed.body)
        detail = http.redact(error.get("Detail", ""), limit=200)
        hub = self.event_hub
        if status == 200:
            description = _description(timed.body)
            if description is None:
                return False, f"Event hub '{hub}' does not exist in namespace {self.namespace}."
            partitions, state = description
            return True, f"Connected to event hub '{hub}' ({partitions} partitions, status {state})."
        if status == 401:
            self.forget_token()
            if "claim" in detail.lower() and not _REASON.match(detail):
                return True, (
                    f"Azure accepted the key of policy '{self.key_name}', but the policy may not read event hub "
                    f"'{hub}' (a Send-only policy), so the event hub name could not be confirmed. Make sure the "
                    "policy has the Send claim."
                )
            return False, (
                f"Azure refused the SAS token ({detail or 'HTTP 401'}): check the shared access policy name and key."
            )
        if status == 404:
            return False, f"Event hub '{hub}' does not exist in namespace {self.namespace}."
        if status == 403:
            return False, f"Azure refused access to event hub '{hub}' (403): {detail or 'forbidden'}."
        return False, f"Event Hubs answered HTTP {status}" + (f": {detail}" if detail else ".")


def _description(body: bytes) -> tuple[str, str] | None:
    """(partition count, status) from the Atom entry holding an EventHubDescription; None for an empty feed."""
    root = parse_xml(body)
    if root is None:
        return None
    for element in root.iter():
        if local_name(element) == "EventHubDescription":
            values = {local_name(child): (child.text or "").strip() for child in element}
            return values.get("PartitionCount") or "?", values.get("Status") or "unknown"
    return None
