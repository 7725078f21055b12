"""Local emulation of Clang's SOAP 1.1 API, for both Clang connectors (their sandbox.py modules re-export it).

`POST /<clang host>/app/api/soap/public/index.php` (any host: Clang accounts live on secure., login. or api.
myclang.com). Both connectors talk to this one API, and the sandbox routes by method and path only, so their traffic
is counted and faulted under one name, "clang" (fault injection: `"partner": "clang"`).

Checked as strictly as the real server would: `Content-Type: text/xml; charset=utf-8` (SOAP 1.2's
application/soap+xml gets a VersionMismatch fault), a `SOAPAction` header holding a quoted string, a UTF-8 SOAP 1.1
envelope without DTD, one namespace-qualified operation element in the Body, its parameters unqualified and exactly
in WSDL order, the uuid first. Answers are Clang's envelopes (`code` 0 and `msg`); errors are SOAP faults with HTTP
500, `SOAP-ENV:Client` / `SOAP-ENV:Server` for protocol problems and numeric codes for Clang's own:

    100 Invalid uuid (a well-formed uuid starting with 00000000 stands for one Clang does not know)
    107 customer already member of group        108 customer is not a member of group
    213 Customer not found                      301 Group not found (groups 1..999999 exist, larger ids do not)
    302 invalid customer value (email address, gender MAN/WOMAN/UNKNOWN, birthday YYYY-MM-DD, missing field)
    303 too many customers in one call (more than 1000)

105, 107 and 213 are Clang's published codes; the others are this sandbox's choice (Clang does not publish them).
customer_insertBulkUnique leaves out of its answer the records it refuses (invalid values, no unique field value), so
clients see per-record results; group_addMembersInBulk refuses the whole call with 107, changing nothing, when one of
the customers is already a member.

Operations: customer_getByExternalId, customer_getByEmailAddress, customer_getById, customer_insert,
customer_update, customer_insertBulkUnique, group_getById, group_addMember, group_addMembersInBulk,
group_removeMember. Customers and memberships live per scope (cleared by /_sandbox/reset); statistics count calls
per operation, faults per code, customers created/updated, members added/removed and refused bulk records;
/_sandbox/profiles lists each group's members (by external id, else email address).
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from datetime import date
from typing import Any

from connectors.partners.clang_soap import (
    ALREADY_MEMBER,
    API_PATH,
    CUSTOMER_FIELDS,
    CUSTOMER_NOT_FOUND,
    GENDERS,
    GROUP_NOT_FOUND,
    INVALID_UUID,
    INVALID_VALUE,
    NIL,
    NOT_A_MEMBER,
    SOAP_ENV,
    TOO_MANY,
    Items,
    SoapError,
    body_element,
    fault_envelope,
    localname,
    parse_xml,
    response_envelope,
)
from connectors.partners.validators import UUID_PATTERN
from connectors.sandbox import Fault, Request, Response

NAME = "clang"
ENDPOINTS = (("POST", f"/<clang host>{API_PATH}", "Clang SOAP 1.1 API (Clang real-time and Clang batch)"),)
XML_TYPE = "text/xml; charset=utf-8"
MAX_GROUP_ID = 999_999
MAX_BULK = 1000
_UUID = re.compile(UUID_PATTERN)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_DIGITS = re.compile(r"\d{1,18}")

PARAMS: dict[str, tuple[str, ...]] = {
    "customer_getByExternalId": ("uuid", "externalId"),
    "customer_getByEmailAddress": ("uuid", "emailAddress"),
    "customer_getById": ("uuid", "customerId"),
    "customer_insert": ("uuid", "customer"),
    "customer_update": ("uuid", "customer"),
    "customer_insertBulkUnique": ("uuid", "customers", "uniqueCustomerFields", "uniqueOptionFields"),
    "group_getById": ("uuid", "groupId"),
    "group_addMember": ("uuid", "group", "customer"),
    "group_addMembersInBulk": ("uuid", "group", "customers"),
    "group_removeMember": ("uuid", "group", "customer"),
}


class ClangFault(Exception):
    """Answer with a SOAP fault (HTTP 500)."""

    def __init__(self, code: str, text: str):
        super().__init__(text)
        self.code = code
        self.text = text


def _fault(code: str, text: str, status: int = 500, headers: tuple = (), stats: dict | None = None) -> Response:
    deltas = {"faults": {code: 1}, **(stats or {})}
    return Response(status, fault_envelope(code, text), content_type=XML_TYPE, headers=headers, stats=deltas)


def match(method: str, path: str) -> str | None:
    if method == "POST" and path.endswith(API_PATH):
        host = path[1 : -len(API_PATH)]
        if host and "/" not in host:
            return host
    return None


def fault_response(fault: Fault, request: Request) -> Response | None:
    kind = fault.kind
    if kind == "slow":
        return None
    if kind == "expired_token":
        return _fault(str(fault.code or INVALID_UUID), fault.message or "Invalid uuid", fault.status or 500)
    if kind == "rate_limit":
        retry_after = fault.retry_after if fault.retry_after is not None else 1
        headers = (("Retry-After", str(retry_after)),)
        return _fault("SOAP-ENV:Server", fault.message or "Too many requests", fault.status or 429, headers)
    if kind == "server_error":
        status = fault.status or 500
        if status == 500:  # the SOAP server's own failure
            return _fault("SOAP-ENV:Server", fault.message or "Internal Server Error")
        text = fault.message or f"{status} Service Unavailable"
        return Response(status, f"<html><body><h1>{text}</h1></body></html>".encode(), content_type="text/html")
    if kind == "partner_error":
        return _fault(str(fault.code or INVALID_VALUE), fault.message or "Invalid value", fault.status or 500)
    if kind == "gone":
        status = fault.status or 410
        return Response(status, b"<html><body><h1>Gone</h1></body></html>", content_type="text/html")
    return None


# Per-scope data --------------------------------------------------------------------------------------------------

_fallback_lock = threading.Lock()
_fallback: dict[tuple[int, str], dict[str, Any]] = {}


def _new_db() -> dict[str, Any]:
    return {"next_id": 1001, "customers": {}, "by_external": {}, "by_email": {}, "members": {}}


@contextmanager
def _database(state: Any, scope: str):
    """The scope's customers and groups, kept in its statistics (so /_sandbox/reset clears them), under the lock."""
    lock = getattr(state, "lock", None)
    scope_stats = getattr(state, "_scope_stats", None)
    if lock is None or scope_stats is None:  # a bare state (unit tests of this module)
        with _fallback_lock:
            yield _fallback.setdefault((id(state), scope), _new_db())
        return
    with lock:
        yield scope_stats(scope)[NAME]["_db"]


def new_stats() -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "calls": {},
        "faults": {},
        "customers_created": 0,
        "customers_updated": 0,
        "members_added": 0,
        "members_removed": 0,
        "rows_rejected": 0,
        "_db": _new_db(),
    }


def apply_stats(stats: dict[str, Any], deltas: dict[str, Any]) -> None:
    for key, value in deltas.items():
        if isinstance(value, dict):
            counts = stats[key]
            for name, n in value.items():
                counts[name] = counts.get(name, 0) + n
        else:
            stats[key] += value


def export_stats(stats: dict[str, Any]) -> dict[str, Any]:
    db = stats["_db"]
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in stats.items() if k != "_db"}
    out["customers"] = len(db["customers"])
    out["groups"] = {str(g): len(m) for g, m in db["members"].items() if m}
    return out


def export_profiles(stats: dict[str, Any]) -> dict[str, Any]:
    """Each group's members by external id (else email address, else Clang id), sorted."""
    db = stats["_db"]

    def key(customer_id: str) -> str:
        c = db["customers"][customer_id]
        return c["fields"].get("externalId") or c["fields"].get("emailAddress") or customer_id

    return {"groups": {str(g): sorted(key(c) for c in m) for g, m in db["members"].items() if m}}


# Request reading -------------------------------------------------------------------------------------------------


def _check_headers(request: Request) -> Response | None:
    ctype = request.headers.get("content-type", "")
    media = request.content_type
    if media == "application/soap+xml":
        return _fault("SOAP-ENV:VersionMismatch", "Wrong Version: this endpoint speaks SOAP 1.1 (text/xml)")
    params = dict(
        p.strip().lower().split("=", 1) for p in ctype.split(";")[1:] if "=" in p
    )  # e.g. {"charset": "utf-8"}
    charset = params.get("charset", "").strip('"')
    if media != "text/xml" or charset not in ("utf-8", "utf8"):
        return _fault("SOAP-ENV:Client", "Content-Type must be text/xml; charset=utf-8 (SOAP 1.1)")
    action = request.headers.get("soapaction")
    if action is None:
        return _fault("SOAP-ENV:Client", "The SOAPAction header is required (SOAP 1.1)")
    action = action.strip()
    if len(action) < 2 or action[0] != '"' or action[-1] != '"':
        return _fault("SOAP-ENV:Client", "The SOAPAction header must be a quoted string")
    return None


def _text(element: ET.Element) -> str:
    if len(element):
        raise ClangFault("SOAP-ENV:Client", f"'{localname(element.tag)}' must hold text, not elements")
    return element.text or ""


def _integer(element: ET.Element, name: str) -> int:
    value = _text(element).strip()
    if not _DIGITS.fullmatch(value):
        raise ClangFault("SOAP-ENV:Client", f"Invalid value for '{name}': an integer is expected")
    return int(value)


def _items(element: ET.Element, name: str) -> list[ET.Element]:
    for entry in element:
        if entry.tag != localname(entry.tag) or entry.tag not in (name, "item"):
            raise ClangFault("SOAP-ENV:Client", f"Unexpected element '{entry.tag}' in an array of {name}")
    return list(element)


def _read_customer(element: ET.Element) -> tuple[dict[str, str], dict[str, str], str]:
    """(fields, options, problem): a problem is a Clang 302 (or a refused bulk record)."""
    fields: dict[str, str] = {}
    options: dict[str, str] = {}
    for entry in element:
        name = entry.tag
        if name != localname(name) or name not in CUSTOMER_FIELDS:
            raise ClangFault("SOAP-ENV:Client", f"Unknown element '{localname(name)}' in Customer")
        if name == "options":
            for option in _items(entry, "CustomerOption"):
                parts = {localname(p.tag): _text(p) for p in option}
                if not parts.get("name"):
                    raise ClangFault("SOAP-ENV:Client", "A CustomerOption needs a name")
                options[parts["name"]] = parts.get("value", "")
        elif name != "accounts":
            fields[name] = _text(entry)
    problem = ""
    email = fields.get("emailAddress", "")
    if email and not _EMAIL.fullmatch(email.strip()):
        problem = "Invalid email address"
    elif fields.get("gender") and fields["gender"] not in GENDERS:
        problem = "Invalid gender: use MAN, WOMAN or UNKNOWN"
    elif fields.get("birthday"):
        try:
            date.fromisoformat(fields["birthday"])
        except ValueError:
            problem = "Invalid birthday: use YYYY-MM-DD"
    if "id" in fields and fields["id"] and not _DIGITS.fullmatch(fields["id"]):
        raise ClangFault("SOAP-ENV:Client", "Invalid value for 'id': an integer is expected")
    return fields, options, problem


def _read_call(request: Request) -> tuple[str, str, dict[str, ET.Element]]:
    """(namespace, operation, parameters) of a request envelope, or ClangFault."""
    try:
        root = parse_xml(request.body)
    except SoapError as exc:
        raise ClangFault("SOAP-ENV:Client", f"Bad Request: {exc}") from None
    if root.tag.startswith("{") and root.tag != f"{{{SOAP_ENV}}}Envelope" and localname(root.tag) == "Envelope":
        raise ClangFault("SOAP-ENV:VersionMismatch", "Wrong Version")
    try:
        operation_el = body_element(root)
    except SoapError as exc:
        raise ClangFault("SOAP-ENV:Client", f"Bad Request: {exc}") from None
    tag = operation_el.tag
    if not tag.startswith("{") or tag.startswith("{}"):
        raise ClangFault("SOAP-ENV:Client", "The operation element must be namespace-qualified (RPC style)")
    namespace, operation = tag[1:].split("}", 1)
    if operation not in PARAMS:
        raise ClangFault("SOAP-ENV:Server", f"Procedure '{operation}' not present")
    expected = PARAMS[operation]
    given = list(operation_el)
    names = [e.tag for e in given]
    if any(n != localname(n) for n in names):
        raise ClangFault("SOAP-ENV:Client", "Parameters must not be namespace-qualified (RPC style)")
    if names != list(expected):
        raise ClangFault(
            "SOAP-ENV:Client",
            f"{operation} takes ({', '.join(expected)}) in this order; got ({', '.join(names) or 'nothing'})",
        )
    return namespace, operation, dict(zip(names, given, strict=True))


def _check_uuid(element: ET.Element) -> None:
    value = (element.text or "").strip()
    if not _UUID.fullmatch(value) or value.startswith("00000000"):
        raise ClangFault(INVALID_UUID, "Invalid uuid")


# Operations ------------------------------------------------------------------------------------------------------


def _render_customer(customer_id: str, record: dict[str, Any]) -> dict[str, Any]:
    fields = {**record["fields"], "id": customer_id}
    out: dict[str, Any] = {name: fields[name] for name in CUSTOMER_FIELDS if name in fields}
    if record["options"]:
        out["options"] = Items("CustomerOption", [{"name": k, "value": v} for k, v in record["options"].items()])
    return out


def _index(db: dict, customer_id: str, fields: dict[str, str], add: bool) -> None:
    for key, index, fold in (("externalId", "by_external", False), ("emailAddress", "by_email", True)):
        value = fields.get(key, "").strip()
        if not value:
            continue
        value = value.lower() if fold else value
        ids = db[index].setdefault(value, [])
        if add and customer_id not in ids:
            ids.append(customer_id)
        elif not add and customer_id in ids:
            ids.remove(customer_id)


def _create(db: dict, fields: dict[str, str], options: dict[str, str]) -> str:
    customer_id = str(db["next_id"])
    db["next_id"] += 1
    fields = {k: v for k, v in fields.items() if k != "id"}
    db["customers"][customer_id] = {"fields": fields, "options": dict(options)}
    _index(db, customer_id, fields, True)
    return customer_id


def _update(db: dict, customer_id: str, fields: dict[str, str], options: dict[str, str]) -> None:
    record = db["customers"][customer_id]
    _index(db, customer_id, record["fields"], False)
    record["fields"].update({k: v for k, v in fields.items() if k != "id"})
    record["options"].update(options)
    _index(db, customer_id, record["fields"], True)


def _existing(db: dict, customer_element: ET.Element) -> str:
    for entry in customer_element:
        if entry.tag == "id":
            customer_id = str(_integer(entry, "id"))
            if customer_id not in db["customers"]:
                raise ClangFault(CUSTOMER_NOT_FOUND, "Customer not found")
            return customer_id
    raise ClangFault(INVALID_VALUE, "The customer's id is required")


def _group(element: ET.Element) -> int:
    for entry in element:
        if entry.tag == "id":
            group_id = _integer(entry, "id")
            if not 1 <= group_id <= MAX_GROUP_ID:
                raise ClangFault(GROUP_NOT_FOUND, "Group not found")
            return group_id
    raise ClangFault(INVALID_VALUE, "The group's id is required")


def _found(db: dict, ids: list[str]) -> Any:
    customers = [_render_customer(i, db["customers"][i]) for i in ids]
    return Items("Customer", customers) if customers else NIL


def _run(db: dict, operation: str, p: dict[str, ET.Element]) -> tuple[Any, dict[str, int]]:
    """Execute one call: (msg, statistics deltas), or ClangFault."""
    if operation == "customer_getByExternalId":
        return _found(db, list(db["by_external"].get(_text(p["externalId"]).strip(), []))), {}
    if operation == "customer_getByEmailAddress":
        return _found(db, list(db["by_email"].get(_text(p["emailAddress"]).strip().lower(), []))), {}
    if operation == "customer_getById":
        customer_id = str(_integer(p["customerId"], "customerId"))
        if customer_id not in db["customers"]:
            raise ClangFault(CUSTOMER_NOT_FOUND, "Customer not found")
        return _render_customer(customer_id, db["customers"][customer_id]), {}
    if operation in ("customer_insert", "customer_update"):
        fields, options, problem = _read_customer(p["customer"])
        if problem:
            raise ClangFault(INVALID_VALUE, problem)
        if operation == "customer_insert":
            customer_id = _create(db, fields, options)
            return _render_customer(customer_id, db["customers"][customer_id]), {"customers_created": 1}
        customer_id = _existing(db, p["customer"])
        _update(db, customer_id, fields, options)
        return _render_customer(customer_id, db["customers"][customer_id]), {"customers_updated": 1}
    if operation == "customer_insertBulkUnique":
        return _insert_bulk_unique(db, p)
    if operation == "group_getById":
        group_id = _integer(p["groupId"], "groupId")
        if not 1 <= group_id <= MAX_GROUP_ID:
            raise ClangFault(GROUP_NOT_FOUND, "Group not found")
        count = len(db["members"].get(group_id, ()))
        group = {"id": group_id, "parentId": 0, "name": f"Sandbox group {group_id}", "description": "",
                 "customerCountRecursive": count, "customerCount": count}  # fmt: skip
        return group, {}
    group_id = _group(p["group"])
    members = db["members"].setdefault(group_id, set())
    if operation == "group_addMember":
        customer_id = _existing(db, p["customer"])
        if customer_id in members:
            raise ClangFault(ALREADY_MEMBER, f"customer already member of group {group_id}")
        members.add(customer_id)
        return True, {"members_added": 1}
    if operation == "group_removeMember":
        customer_id = _existing(db, p["customer"])
        if customer_id not in members:
            raise ClangFault(NOT_A_MEMBER, f"customer is not a member of group {group_id}")
        members.discard(customer_id)
        return True, {"members_removed": 1}
    # group_addMembersInBulk
    entries = _items(p["customers"], "Customer")
    if not entries:
        raise ClangFault(INVALID_VALUE, "No customers given")
    if len(entries) > MAX_BULK:
        raise ClangFault(TOO_MANY, f"Too many customers: {len(entries)} (at most {MAX_BULK} per call)")
    ids = [_existing(db, e) for e in entries]
    if any(i in members for i in ids):
        raise ClangFault(ALREADY_MEMBER, f"customer already member of group {group_id}")
    members.update(ids)
    return True, {"members_added": len(set(ids))}


def _insert_bulk_unique(db: dict, p: dict[str, ET.Element]) -> tuple[Any, dict[str, int]]:
    entries = _items(p["customers"], "Customer")
    if not entries:
        raise ClangFault(INVALID_VALUE, "No customers given")
    if len(entries) > MAX_BULK:
        raise ClangFault(TOO_MANY, f"Too many customers: {len(entries)} (at most {MAX_BULK} per call)")
    unique = [_text(e).strip() for e in _items(p["uniqueCustomerFields"], "string")]
    _items(p["uniqueOptionFields"], "string")
    if not unique or any(u not in CUSTOMER_FIELDS or u in ("id", "options", "accounts") for u in unique):
        raise ClangFault(INVALID_VALUE, "uniqueCustomerFields must name one or more customer fields")
    stored, deltas = [], {"customers_created": 0, "customers_updated": 0, "rows_rejected": 0}
    for entry in entries:
        fields, options, problem = _read_customer(entry)
        keys = {u: fields.get(u, "").strip() for u in unique}
        if problem or not all(keys.values()):
            deltas["rows_rejected"] += 1
            continue
        match = None
        if unique == ["externalId"]:
            match = next(iter(db["by_external"].get(keys["externalId"], ())), None)
        elif unique == ["emailAddress"]:
            match = next(iter(db["by_email"].get(keys["emailAddress"].lower(), ())), None)
        for customer_id, record in db["customers"].items() if len(unique) > 1 else ():
            have = record["fields"]
            if all(
                (have.get(u, "").strip().lower() == v.lower()) if u == "emailAddress" else have.get(u, "") == v
                for u, v in keys.items()
            ):
                match = customer_id
                break
        if match is None:
            match = _create(db, fields, options)
            deltas["customers_created"] += 1
        else:
            _update(db, match, fields, options)
            deltas["customers_updated"] += 1
        stored.append(_render_customer(match, db["customers"][match]))
    return Items("Customer", stored), deltas


def handle(request: Request, route: str, state: Any) -> Response:
    problem = _check_headers(request)
    if problem is not None:
        return problem
    try:
        namespace, operation, params = _read_call(request)
    except ClangFault as fault:
        return _fault(fault.code, fault.text)
    calls = {"calls": {operation: 1}}
    try:
        _check_uuid(params["uuid"])
        with _database(state, request.scope) as db:
            msg, deltas = _run(db, operation, params)
    except ClangFault as fault:
        return _fault(fault.code, fault.text, stats=calls)
    body = response_envelope(namespace, operation, msg)
    return Response(200, body, content_type=XML_TYPE, stats={**calls, **{k: v for k, v in deltas.items() if v}})
