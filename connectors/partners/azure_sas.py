"""Shared by the two Azure connectors: shared access signatures, error bodies and the profile event they carry.

Event Hubs (Service Bus SAS). The platform signs its own short-lived token with the policy's key:
    string-to-sign = url-encoded(resource URI) + "\\n" + expiry (unix seconds)
    signature      = base64(HMAC-SHA256(key as UTF-8 text, string-to-sign))
    header         = "SharedAccessSignature sr=<encoded URI>&sig=<url-encoded signature>&se=<expiry>&skn=<policy>"
The key is used as the text the portal shows (it is not base64-decoded first), and the service signs the `sr` value
exactly as it appears in the token.

Storage (account SAS and queue service SAS). The admin pastes a token made in the portal; the connector sends it as
the query string. The functions below read its fields (expiry, permissions, services) for clear connection-test
messages, and compute the string-to-sign and signature (HMAC-SHA256 keyed by the base64-decoded account key) so the
local sandbox can verify tokens exactly as Azure does and the tests can make them:
    account SAS  = account \\n sp \\n ss \\n srt \\n st \\n se \\n sip \\n spr \\n sv \\n [ses \\n  (sv >= 2020-12-06)]
    queue SAS    = sp \\n st \\n se \\n /queue/<account>/<queue> \\n si \\n sip \\n spr \\n sv       (sv >= 2015-04-05)

The event: one compact UTF-8 JSON object per profile change, the same for both connectors (an Event Hubs event body,
or a Storage queue message once base64-encoded), so a consumer can read either:
    {"id": "dlv_<delivery id>", "type": "profile.added|profile.removed|profile.updated", "action": "add|remove|update",
     "timestamp": "<ISO-8601 UTC>", "profile_id": <int>, "identifier": {"slot": "<slot>", "value": "<raw value>"},
     "audience": "<partner audience id>"|null, "variables": {...}}      # "variables" only when enabled
`id` is stable across retries (the outbox row's id): consumers de-duplicate on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from datetime import time as dt_time
from urllib.parse import parse_qsl, quote

from connectors.delivery.types import Action, Item

# --- Event Hubs / Service Bus SAS ---------------------------------------------------------------------------------

TOKEN_PREFIX = "SharedAccessSignature "


def service_bus_signature(encoded_resource: str, expiry: int | str, key: str) -> str:
    """base64 HMAC-SHA256 of "<encoded resource>\\n<expiry>" keyed by the key's UTF-8 text."""
    message = f"{encoded_resource}\n{expiry}".encode()
    return base64.b64encode(hmac.new(key.encode(), message, hashlib.sha256).digest()).decode()


def service_bus_token(resource_uri: str, key_name: str, key: str, expiry: int) -> str:
    """The Authorization header value for `resource_uri` (e.g. https://<ns>.servicebus.windows.net/<hub>)."""
    encoded = quote(resource_uri, safe="")
    signature = service_bus_signature(encoded, expiry, key)
    return f"{TOKEN_PREFIX}sr={encoded}&sig={quote(signature, safe='')}&se={int(expiry)}&skn={quote(key_name, safe='')}"


def parse_service_bus_token(header: str) -> dict[str, str] | None:
    """The token's fields as sent (still url-encoded: `sr` is signed in that form), or None when the header is not a
    SharedAccessSignature token."""
    if not header.startswith(TOKEN_PREFIX):
        return None
    fields: dict[str, str] = {}
    for part in header[len(TOKEN_PREFIX) :].strip().split("&"):
        name, sep, value = part.partition("=")
        if not sep or not name or name in fields:
            return None
        fields[name] = value
    return fields


# --- Storage SAS -------------------------------------------------------------------------------------------------

ENCRYPTION_SCOPE_SINCE = "2020-12-06"  # account SAS versions from this one sign `ses` as well
SERVICE_SAS_SINCE = "2015-04-05"  # queue service SAS layout with signed IP and protocol


def storage_sas_fields(token: str) -> dict[str, str]:
    """The token's query fields, url-decoded (a leading '?' is fine)."""
    token = token.strip()
    return dict(parse_qsl(token[1:] if token.startswith("?") else token, keep_blank_values=True))


def is_account_sas(fields: dict[str, str]) -> bool:
    return "ss" in fields or "srt" in fields


def storage_account_string_to_sign(account: str, fields: dict[str, str]) -> str:
    names = ("sp", "ss", "srt", "st", "se", "sip", "spr", "sv")
    text = account + "\n" + "".join(fields.get(name, "") + "\n" for name in names)
    if fields.get("sv", "") >= ENCRYPTION_SCOPE_SINCE:
        text += fields.get("ses", "") + "\n"
    return text


def storage_queue_string_to_sign(account: str, queue: str, fields: dict[str, str]) -> str:
    resource = f"/queue/{account}/{queue}"
    values = (fields.get("sp", ""), fields.get("st", ""), fields.get("se", ""), resource)
    values += (fields.get("si", ""), fields.get("sip", ""), fields.get("spr", ""), fields.get("sv", ""))
    return "\n".join(values)


def storage_signature(account_key: str, string_to_sign: str) -> str:
    """base64 HMAC-SHA256 keyed by the base64-decoded account key (raises ValueError on a key that is not base64)."""
    key = base64.b64decode(account_key, validate=True)
    return base64.b64encode(hmac.new(key, string_to_sign.encode(), hashlib.sha256).digest()).decode()


def _query(fields: list[tuple[str, str]]) -> str:
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in fields if value)


def make_account_sas(
    account: str,
    account_key: str,
    *,
    permissions: str,
    expiry: str,
    version: str = "2022-11-02",
    services: str = "q",
    resource_types: str = "o",
    start: str = "",
    ip: str = "",
    protocol: str = "",
) -> str:
    """An account SAS query string (sandbox tokens, test data); dates as Azure writes them: 2030-01-01T00:00:00Z."""
    fields = {"sv": version, "ss": services, "srt": resource_types, "sp": permissions, "se": expiry}
    fields.update({"st": start, "sip": ip, "spr": protocol})
    signature = storage_signature(account_key, storage_account_string_to_sign(account, fields))
    order = ("sv", "ss", "srt", "sp", "se", "st", "sip", "spr")
    return _query([(name, fields[name]) for name in order] + [("sig", signature)])


def make_queue_sas(
    account: str,
    queue: str,
    account_key: str,
    *,
    permissions: str,
    expiry: str,
    version: str = "2022-11-02",
    start: str = "",
    ip: str = "",
    protocol: str = "",
    identifier: str = "",
) -> str:
    """A queue service SAS query string for one queue."""
    fields = {"sv": version, "sp": permissions, "se": expiry, "st": start, "sip": ip, "spr": protocol}
    fields["si"] = identifier
    signature = storage_signature(account_key, storage_queue_string_to_sign(account, queue, fields))
    order = ("sv", "sp", "se", "st", "sip", "spr", "si")
    return _query([(name, fields[name]) for name in order] + [("sig", signature)])


_SAS_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,7})?)?Z)?")


def sas_time(value: str) -> datetime | None:
    """A SAS start/expiry (ISO 8601 UTC: a date, or a date and time ending in Z) as an aware datetime."""
    match = _SAS_TIME.fullmatch(value or "")
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


# --- Error bodies --------------------------------------------------------------------------------------------------


def parse_xml(body: bytes) -> ET.Element | None:
    """The root element of a small XML document from Azure (or sent to the sandbox); None when it is not XML.

    Documents with a DTD are refused before parsing: Azure's answers never carry one, and without a DTD there are
    no entity declarations to expand (the XML bombs defusedxml guards against), so the standard parser is safe.
    """
    if not body or b"<!" in body.replace(b"<![CDATA[", b""):
        return None
    try:
        return ET.fromstring(body)  # noqa: S314 - no DTD (checked above), so no entities to expand
    except ET.ParseError:
        return None


def local_name(element: ET.Element) -> str:
    """The tag without its {namespace}."""
    return element.tag.rsplit("}", 1)[-1]


def xml_error(body: bytes) -> dict[str, str]:
    """The child elements of an <Error> document ({"Code": ..., "Message"|"Detail": ...}); {} when it is not one."""
    if not body or b"<Error" not in body:
        return {}
    root = parse_xml(body)
    if root is None or root.tag != "Error":
        return {}
    return {child.tag: (child.text or "").strip() for child in root}


# --- The event -----------------------------------------------------------------------------------------------------

EVENT_TYPES = {Action.ADD: "profile.added", Action.REMOVE: "profile.removed", Action.UPDATE: "profile.updated"}


def event_id(item: Item) -> str:
    return f"dlv_{item.delivery_id}"


def _json_default(value):
    """Profile variables may hold dates and decimals: ISO-8601 for dates and times, text for anything else."""
    if isinstance(value, date | datetime | dt_time):
        return value.isoformat()
    return str(value)


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def profile_event(action: str, item: Item, *, include_variables: bool, timestamp: str) -> str:
    """The event JSON text (see the module docstring)."""
    event = {
        "id": event_id(item),
        "type": EVENT_TYPES.get(action, f"profile.{action}"),
        "action": action,
        "timestamp": timestamp,
        "profile_id": item.profile_id,
        "identifier": {"slot": item.slot, "value": item.identifier},
        "audience": item.partner_audience_id or None,
    }
    if include_variables:
        event["variables"] = item.variables
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=_json_default)
