"""Clang's SOAP 1.1 API, shared by the Clang real-time and Clang batch connectors (and their sandbox emulation).

Wire format (Clang's WSDL, RPC style). Every call is one HTTP POST of an envelope to the SOAP endpoint (the WSDL URL
without its `wsdl` query flag), with `Content-Type: text/xml; charset=utf-8` and the SOAP 1.1 `SOAPAction` header;
the WSDL's soapAction is empty, so the header is the quoted empty string `""`. The body holds one operation element
in the API namespace (Clang uses its endpoint URL, e.g. `https://login.myclang.com/app/api/soap/public/index.php`,
as the namespace) whose unqualified children are the parameters in WSDL order, the account `uuid` always first:

    <SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns1="<namespace>">
      <SOAP-ENV:Body><ns1:group_addMember><uuid>…</uuid><group><id>42</id></group>
        <customer><id>1001</id></customer></ns1:group_addMember></SOAP-ENV:Body></SOAP-ENV:Envelope>

Arrays are elements holding one child per entry, named after the entry type (`<customers><Customer>…</Customer>…`,
`<uniqueCustomerFields><string>externalId</string></uniqueCustomerFields>`). Every text value is XML-escaped here
(`&`, `<`, `>`, and carriage returns as `&#13;` so they survive parsing); characters XML 1.0 cannot carry are dropped.

Answers are `<ns1:<operation>Response><code>0</code><msg>…</msg></…>` (code 0 = ok; `msg` is the result: a boolean,
a Customer, an array, or nil when nothing matched). Errors are SOAP faults (`faultcode`, `faultstring`), sent with
HTTP 500. Clang's own faults carry a numeric faultcode; the ones confirmed from public material: 105 (paging size
outside 1-50), 107 ("customer already member of group": the add is done) and 213 (customer not found). Generic
`SOAP-ENV:Server` faults are the server's own trouble (retried); `SOAP-ENV:Client` means the request was unreadable.

Operations used: customer_getByExternalId / customer_getByEmailAddress (ArrayOfCustomer, nil when none),
customer_insert / customer_update (Customer), customer_insertBulkUnique (customers, uniqueCustomerFields,
uniqueOptionFields -> ArrayOfCustomer, one per record stored), group_getById (Group), group_addMember /
group_removeMember (Group, Customer -> boolean) and group_addMembersInBulk (Group, ArrayOfCustomer -> boolean); there
is no bulk removal. Clang's resource-based calls (customer_getByObject, customer_getAll, group_getMembers … answer a
resource id to poll with resource_getById, read with customerSet_getCustomers in pages of at most 50, then
resource_free) only read data: nothing here needs them.

`ClangClient` is the base of both clients: settings, identifier and group resolution, profile-variable mapping to
customer fields, one SOAP call with its classification, the per-item call sets and `test_connection`.
"""

from __future__ import annotations

import json
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from connectors.delivery import http
from connectors.delivery.client import PartnerClient
from connectors.delivery.types import Action, CallResult, Item, ItemResult
from connectors.identifiers import Slot
from connectors.models import Outcome

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
CONTENT_TYPE = "text/xml; charset=utf-8"
SOAP_ACTION = '""'
API_PATH = "/app/api/soap/public/index.php"
DEFAULT_ENDPOINT = f"https://login.myclang.com{API_PATH}?wsdl"

MAX_BULK = 500  # records per customer_insertBulkUnique / group_addMembersInBulk call (the brief's "about 500")

# Clang fault codes. Confirmed from public material: 105, 107, 213. The others are the codes the local sandbox uses
# (Clang does not publish them); the client also recognises those situations by the fault text.
ALREADY_MEMBER = "107"
CUSTOMER_NOT_FOUND = "213"
INVALID_UUID = "100"
NOT_A_MEMBER = "108"
GROUP_NOT_FOUND = "301"
INVALID_VALUE = "302"
TOO_MANY = "303"

ERROR_CODES: dict[str, str] = {
    INVALID_UUID: "Clang refused the API token (uuid); the configuration is paused until it is replaced.",
    "105": "A page size outside 1-50 was asked (Clang's paging limit).",
    ALREADY_MEMBER: "The customer was already a member of the group (counted as done).",
    NOT_A_MEMBER: "The customer was not a member of the group (a removal counts as done).",
    CUSTOMER_NOT_FOUND: "Clang does not know this customer.",
    GROUP_NOT_FOUND: "Clang does not know the group: check the group id of the configuration or audience connection.",
    INVALID_VALUE: "Clang refused a customer field value (for example an invalid email address or date).",
    TOO_MANY: "Too many customers in one Clang call.",
    "Server": "Clang reported a server error (SOAP Server fault); retried.",
    "Client": "Clang could not read the request (SOAP Client fault).",
    "VersionMismatch": "Clang did not accept the SOAP version of the request.",
    "not_stored": "Clang's bulk answer did not include this customer: it was not stored.",
    "not_added": "Clang answered false: the customer was not added to the group.",
    "not_removed": "Clang answered false: the customer was not removed from the group.",
    "not_sent": "Not sent: Clang refused the API token earlier in the same run; sent once the token is fixed.",
    "invalid_group_id": "The audience connection's partner audience id is not a numeric Clang group id.",
    "no_uuid": "No Clang API token (uuid) is configured.",
    "invalid_identifier": "The identifier is empty or invalid once normalised (email address, customer id): not sent.",
    "unsupported_slot": "Clang matches customers on the customer id (externalId) or the email address only.",
    "invalid_response": "Clang's answer could not be read; retried.",
    "connection_error": "Could not connect to Clang; retried.",
    "http_401": "Clang refused the credentials (HTTP 401).",
    "http_403": "Clang refused access (HTTP 403): is the platform's egress IP allowed for this account?",
    "http_404": "No SOAP endpoint at this URL (HTTP 404): check the endpoint URL setting.",
    "http_410": "The SOAP endpoint is gone (HTTP 410): the configuration is paused.",
    "http_429": "Clang asked to slow down (HTTP 429); retried later.",
}

# Fault texts by situation, for codes Clang does not publish (matched case-insensitively).
_CREDENTIALS_TEXT = re.compile(r"uuid|api[ _-]?token|authenticat|not authori[sz]ed|access denied|credential", re.I)
_NOT_MEMBER_TEXT = re.compile(r"not (?:a )?member", re.I)
_ALREADY_MEMBER_TEXT = re.compile(r"already (?:a )?member", re.I)
_CUSTOMER_NOT_FOUND_TEXT = re.compile(r"customer\b.*\bnot (?:be )?found|no (?:such )?customer", re.I)
_PERMANENT_SERVER_TEXT = re.compile(r"not present|unknown (?:method|operation)", re.I)

# --- XML writing ---------------------------------------------------------------------------------------------------

# Characters XML 1.0 cannot carry at all (control characters, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"})


def xml_text(value: Any) -> str:
    """A value as element text: characters XML cannot hold dropped, markup characters escaped."""
    return _NOT_XML.sub("", str(value)).translate(_ESCAPES)


def xml_attr(value: Any) -> str:
    return _NOT_XML.sub("", str(value)).translate(_ATTR_ESCAPES)


def xml_safe(value: str) -> bool:
    """True when the text survives XML unchanged (no character XML 1.0 forbids)."""
    return not _NOT_XML.search(value)


class Items:
    """An array parameter: one child element named `name` per value (`<customers><Customer>…</Customer>…`)."""

    __slots__ = ("name", "values")

    def __init__(self, name: str, values: Iterable[Any]):
        self.name = name
        self.values = list(values)


NIL = object()  # renders as xsi:nil (the sandbox's "nothing found" answers)


def render(name: str, value: Any, out: list[str]) -> None:
    """Append `<name>value</name>`. Dicts are structures (children in dict order), `Items` arrays; None is left out.

    Element names come from this code (WSDL names), never from data; only text is data and it is always escaped.
    """
    if value is None:
        return
    if value is NIL:
        out.append(f'<{name} xsi:nil="true"/>')
    elif isinstance(value, Items):
        out.append(f"<{name}>")
        for entry in value.values:
            render(value.name, entry, out)
        out.append(f"</{name}>")
    elif isinstance(value, Mapping):
        out.append(f"<{name}>")
        for key, entry in value.items():
            render(key, entry, out)
        out.append(f"</{name}>")
    elif isinstance(value, bool):
        out.append(f"<{name}>{'true' if value else 'false'}</{name}>")
    else:
        out.append(f"<{name}>{xml_text(value)}</{name}>")


def _envelope(namespace: str, body: list[str]) -> bytes:
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:ns1="{xml_attr(namespace)}" xmlns:xsi="{XSI}">'
        "<SOAP-ENV:Body>"
    )
    return (head + "".join(body) + "</SOAP-ENV:Body></SOAP-ENV:Envelope>").encode("utf-8")


def request_envelope(namespace: str, operation: str, params: Iterable[tuple[str, Any]]) -> bytes:
    """The request for one RPC call: `<ns1:operation>` holding the parameters in order."""
    out = [f"<ns1:{operation}>"]
    for name, value in params:
        render(name, value, out)
    out.append(f"</ns1:{operation}>")
    return _envelope(namespace, out)


def response_envelope(namespace: str, operation: str, msg: Any, code: int = 0) -> bytes:
    """A Clang answer (`code` and `msg`), as the sandbox sends it."""
    out = [f"<ns1:{operation}Response><code>{int(code)}</code>"]
    render("msg", msg, out)
    out.append(f"</ns1:{operation}Response>")
    return _envelope(namespace, out)


def fault_envelope(faultcode: str, faultstring: str) -> bytes:
    body = (
        f"<SOAP-ENV:Fault><faultcode>{xml_text(faultcode)}</faultcode>"
        f"<faultstring>{xml_text(faultstring)}</faultstring></SOAP-ENV:Fault>"
    )
    return _envelope("", [body]).replace(b' xmlns:ns1=""', b"")


# --- XML reading ---------------------------------------------------------------------------------------------------


class SoapError(ValueError):
    """The bytes are not a SOAP 1.1 envelope this module can read."""


def localname(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_xml(body: bytes) -> ET.Element:
    """Parse a UTF-8 document, refusing any DTD: without one no entity can be declared, so the usual XML attacks
    (entity expansion, external entities) cannot happen. Clang's answers never carry a DTD."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SoapError("the document is not UTF-8") from None
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise SoapError("document type declarations are not accepted")
    try:
        return ET.fromstring(text)  # noqa: S314 - DTDs are refused just above
    except ET.ParseError as exc:
        raise SoapError(f"not well-formed XML ({exc})") from None


def body_element(root: ET.Element) -> ET.Element:
    """The single element inside a SOAP 1.1 Body."""
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise SoapError("not a SOAP 1.1 envelope")
    body = root.find(f"{{{SOAP_ENV}}}Body")
    if body is None:
        raise SoapError("the envelope has no Body")
    children = list(body)
    if len(children) != 1:
        raise SoapError(f"the Body holds {len(children)} elements, expected 1")
    return children[0]


def is_nil(element: ET.Element | None) -> bool:
    return element is None or element.get(f"{{{XSI}}}nil") in ("true", "1")


def child(element: ET.Element | None, name: str) -> ET.Element | None:
    if element is None:
        return None
    for entry in element:
        if localname(entry.tag) == name:
            return entry
    return None


def struct(element: ET.Element | None) -> dict[str, str]:
    """A structure's simple fields: child name -> text ("" for empty, nested structures left out)."""
    if element is None or is_nil(element):
        return {}
    return {localname(e.tag): (e.text or "") for e in element if not len(e) and not is_nil(e)}


def entries(element: ET.Element | None) -> list[ET.Element]:
    """The entries of an array (`<Customer>` or `<item>` children), none for nil."""
    if element is None or is_nil(element):
        return []
    return [e for e in element if len(e)]


def boolean(element: ET.Element | None) -> bool | None:
    if element is None or is_nil(element):
        return None
    text = (element.text or "").strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0", ""):
        return False
    return None


@dataclass(frozen=True)
class Fault:
    code: str  # as sent: "107", "SOAP-ENV:Server", …
    string: str

    @property
    def kind(self) -> str:
        """The code without its namespace prefix ("Server", "Client", "107")."""
        return self.code.rsplit(":", 1)[-1].strip()


@dataclass
class Answer:
    operation: str
    code: int | None = None
    msg: ET.Element | None = None
    fault: Fault | None = None


def parse_answer(body: bytes) -> Answer:
    """A Clang answer or fault; SoapError when the bytes are neither."""
    element = body_element(parse_xml(body))
    if element.tag == f"{{{SOAP_ENV}}}Fault":
        code = child(element, "faultcode")
        text = child(element, "faultstring")
        if code is None:
            raise SoapError("a Fault without faultcode")
        return Answer("", fault=Fault((code.text or "").strip(), (text.text or "").strip() if text is not None else ""))
    name = localname(element.tag)
    code_el = child(element, "code")
    try:
        code = int((code_el.text or "").strip()) if code_el is not None else None
    except ValueError:
        raise SoapError("the answer's code is not a number") from None
    if code is None:
        raise SoapError(f"{name} has no code")
    return Answer(name.removesuffix("Response"), code=code, msg=child(element, "msg"))


# --- customers -----------------------------------------------------------------------------------------------------

# Clang's Customer fields in WSDL order (the order they are written in).
CUSTOMER_FIELDS = (
    "accounts", "smsOptIn", "optIn", "id", "title", "lastname", "firstname", "middlename", "prefix", "suffix",
    "initials", "gender", "maritalStatus", "birthday", "birthplace", "address", "address2", "address3",
    "addressNumber", "addressNumberSuffix", "zipCode", "poBox", "city", "state", "country", "companyName",
    "department", "alternateAddress", "alternateAddress2", "alternateAddress3", "alternateAddressNumber",
    "alternateAddressNumberSuffix", "alternateZipCode", "alternateCity", "alternateState", "alternateCountry",
    "contactMan", "jobTitle", "workPhone", "workExtension", "workMobile", "homePhone", "mobilePhone", "faxNumber",
    "emailAddress", "alternateEmailAddress", "emailType", "mailStatus", "softBounceCount", "hardBounceCount",
    "website", "imageUrl", "status", "externalId", "userName", "password", "createdBy", "createdAt", "modifiedBy",
    "modifiedAt", "options",
)  # fmt: skip
# Kept by Clang itself or not ours to set from profile variables.
READ_ONLY_FIELDS = frozenset(
    ("accounts", "id", "mailStatus", "softBounceCount", "hardBounceCount", "status", "password", "createdBy",
     "createdAt", "modifiedBy", "modifiedAt", "options")
)  # fmt: skip
WRITABLE_FIELDS = tuple(f for f in CUSTOMER_FIELDS if f not in READ_ONLY_FIELDS)
GENDERS = ("MAN", "WOMAN", "UNKNOWN")


def _key(name: str) -> str:
    return re.sub(r"[\s_\-.]", "", name).lower()


FIELD_BY_KEY = {_key(f): f for f in WRITABLE_FIELDS} | {
    "email": "emailAddress",
    "phone": "mobilePhone",
    "mobile": "mobilePhone",
    "zip": "zipCode",
    "postalcode": "zipCode",
    "postcode": "zipCode",
    "company": "companyName",
    "dateofbirth": "birthday",
    "birthdate": "birthday",
    "dob": "birthday",
    "customerid": "externalId",
}
_GENDER_WORDS = {"m": "MAN", "male": "MAN", "man": "MAN", "f": "WOMAN", "female": "WOMAN", "woman": "WOMAN",
                 "v": "WOMAN", "vrouw": "WOMAN"}  # fmt: skip
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return str(value)


def field_value(name: str, value: Any) -> str | None:
    """A profile variable as the text of Clang field `name` (None: left out)."""
    if name == "gender":
        word = str(value).strip()
        return word.upper() if word.upper() in GENDERS else _GENDER_WORDS.get(word.lower(), "UNKNOWN")
    if name == "birthday":
        if isinstance(value, date):
            return value.strftime("%Y-%m-%d")
        found = _DATE.match(str(value).strip())
        return "-".join(found.groups()) if found else None  # a date Clang could not read is left out
    return _text(value)


def customer_fields(variables: Mapping[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Profile variables as Clang customer fields (matched by name, case and `_` ignored, a few aliases) and
    the rest as customer options (Clang's free custom fields). Empty (None) values are left out, never blanked."""
    fields: dict[str, str] = {}
    options: list[dict[str, str]] = []
    for name, value in variables.items():
        if value is None:
            continue
        target = FIELD_BY_KEY.get(_key(str(name)))
        if target is None:
            options.append({"name": str(name), "value": _text(value)})
            continue
        text = field_value(target, value)
        if text is not None:
            fields[target] = text
    return fields, options


def customer(values: Mapping[str, Any], options: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A Customer structure with its fields in WSDL order (options last)."""
    out = {name: values[name] for name in CUSTOMER_FIELDS if name in values and name != "options"}
    if options:
        out["options"] = Items("CustomerOption", options)
    return out


# --- identifiers ---------------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")

# identifier slot -> (Customer field, lookup operation, its parameter)
SLOT_FIELDS = {
    Slot.CUSTOMER_ID: ("externalId", "customer_getByExternalId", "externalId"),
    Slot.EMAIL: ("emailAddress", "customer_getByEmailAddress", "emailAddress"),
}


def normalize_identifier(slot: str, raw: str) -> str:
    """The value Clang matches on ("" when invalid): customer id trimmed; email trimmed and lower-cased."""
    value = (raw or "").strip()
    if not value or not xml_safe(value):
        return ""
    if slot == Slot.EMAIL:
        value = value.lower()
        return value if len(value) <= 254 and _EMAIL.fullmatch(value) else ""
    return value


def soap_endpoint(endpoint_url: str) -> tuple[str, str, str]:
    """(host, path with query, namespace) of the SOAP endpoint named by the WSDL URL setting."""
    parts = urlsplit(endpoint_url or DEFAULT_ENDPOINT)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "wsdl"]
    path = (parts.path or "/") + (f"?{urlencode(query)}" if query else "")
    return parts.netloc, path, f"https://{parts.netloc}{path}"


# --- one call, classified ------------------------------------------------------------------------------------------


@dataclass
class Failure:
    """Why a call set ended badly for its items."""

    result: ItemResult
    partner_code: str = ""
    retry_after: float | None = None
    credentials_invalid: bool = False
    endpoint_gone: bool = False


@dataclass
class Reply:
    """One SOAP call: its HTTP status and time, and either an answer (code 0) or a classified failure."""

    operation: str
    status: int | None
    duration_ms: float
    answer: Answer | None = None
    fault: Fault | None = None
    failure: Failure | None = None
    note: str = ""  # for the snippet: what happened, without data

    @property
    def ok(self) -> bool:
        return self.failure is None and self.answer is not None


@dataclass
class CallSet:
    """The calls made for some items, folded into the one CallResult those items appear in."""

    replies: list[Reply] = field(default_factory=list)

    def add(self, reply: Reply) -> Reply:
        self.replies.append(reply)
        return reply

    def result(self, indices: list[int], results: list[ItemResult], failure: Failure | None = None) -> CallResult:
        last = self.replies[-1] if self.replies else None
        snippet = "; ".join(r.note for r in self.replies if r.note)
        return CallResult(
            item_indices=list(indices),
            results=list(results),
            status_code=last.status if last else None,
            duration_ms=sum(r.duration_ms for r in self.replies),
            partner_code=failure.partner_code if failure else "",
            snippet=http.redact(snippet),
            retry_after=failure.retry_after if failure else None,
            credentials_invalid=bool(failure and failure.credentials_invalid),
            endpoint_gone=bool(failure and failure.endpoint_gone),
        )


def make_failure(outcome: str, code: str, message: str, retryable: bool = False, **kwargs) -> Failure:
    return Failure(ItemResult(outcome, partner_code=code, message=message, retryable=retryable), code, **kwargs)


def is_already_member(fault: Fault | None) -> bool:
    return fault is not None and (fault.kind == ALREADY_MEMBER or bool(_ALREADY_MEMBER_TEXT.search(fault.string)))


def is_gone_member(fault: Fault | None) -> bool:
    """A removal that finds nothing to remove: not a member, or the customer no longer exists."""
    if fault is None:
        return False
    return (
        fault.kind in (NOT_A_MEMBER, CUSTOMER_NOT_FOUND)
        or bool(_NOT_MEMBER_TEXT.search(fault.string))
        or bool(_CUSTOMER_NOT_FOUND_TEXT.search(fault.string))
    )


def is_credentials_fault(fault: Fault) -> bool:
    return fault.kind == INVALID_UUID or bool(_CREDENTIALS_TEXT.search(fault.string))


class ClangClient(PartnerClient):
    """What Clang real-time and Clang batch share. Subclasses set `partner` and implement `send`."""

    error_codes = ERROR_CODES
    max_workers = 8  # concurrent call sets of one send (one member per call on Clang's side)

    def __init__(self, config, session):
        super().__init__(config, session)
        self._uuid = (config.secrets.get("uuid") or "").strip()
        host, path, self._namespace = soap_endpoint(str(config.settings.get("endpoint_url") or ""))
        self._endpoint = self.url(host, path)
        self._headers = {"Content-Type": CONTENT_TYPE, "SOAPAction": SOAP_ACTION}
        slot = config.settings.get("identifier_slot") or Slot.CUSTOMER_ID
        self._slot = slot
        try:
            self._group_id = int(config.settings.get("group_id") or 0)
        except (TypeError, ValueError):
            self._group_id = 0
        # Set when Clang refuses the uuid during a send: the remaining call sets are not made (see `guard`).
        self._refused = threading.Event()

    # Plumbing --------------------------------------------------------------------------------------------------------
    def run_each(self, jobs: list[Callable[[], CallResult]]) -> list[CallResult]:
        """Run independent call sets, concurrently when there are several."""
        if len(jobs) <= 1:
            return [job() for job in jobs]
        futures = [self.pool().submit(job) for job in jobs]
        return [future.result() for future in futures]

    def begin(self) -> None:
        """Start of a send: forget a refusal seen by an earlier one (the admin may have fixed the uuid since)."""
        self._refused.clear()

    @property
    def refused(self) -> bool:
        return self._refused.is_set()

    def deferred(self, indices: list[int]) -> CallResult:
        """Items not sent because Clang refused the uuid earlier in this send: they wait (retryable, no call) as the
        configuration is about to be paused, instead of each failing on the same refusal."""
        message = "not sent: Clang refused the API token earlier in this run"
        result = ItemResult(Outcome.OTHER_ERROR, partner_code="not_sent", message=message, retryable=True)
        return self.all_items(indices, result, partner_code="not_sent", snippet=message)

    def guard(self, indices: list[int], job: Callable[[], CallResult]) -> Callable[[], CallResult]:
        """`job`, or `deferred` when Clang has refused the uuid in this send."""
        return lambda: self.deferred(indices) if self.refused else job()

    def mask(self, text: str, values: Iterable[str] = ()) -> str:
        """Text safe for snippets and messages: the uuid and the given identifiers masked, then redacted."""
        if self._uuid:
            text = text.replace(self._uuid, "[uuid]")
        for value in values:
            if value and len(value) >= 3:
                text = text.replace(value, "[identifier]")
        return http.redact(text, limit=300)

    def invoke(self, indices: list[int], operation: str, params: list[tuple[str, Any]], hide=()) -> Reply:
        """One SOAP call (uuid first), through the quota and deadline of `PartnerClient.call`, classified."""
        body = request_envelope(self._namespace, operation, [("uuid", self._uuid), *params])
        holder: dict[str, Reply] = {}

        def classify(timed: http.Timed) -> CallResult:
            holder["reply"] = self.read(operation, timed, hide)
            return self.all_items(indices, ItemResult(Outcome.ADDED))

        started = time.monotonic()
        # The CallResult of `call` stays internal (the caller folds its calls into one per item set): [0] keeps
        # the transport classification even for calls that carry no item (test_connection).
        transport = self.call(indices or [0], "POST", self._endpoint, classify, data=body, headers=self._headers)
        reply = holder.get("reply")
        if reply is not None:
            if reply.failure is not None and reply.failure.credentials_invalid:
                self._refused.set()
            return reply
        # Not answered: timeout, connection error, quota; `call` classified it already.
        result = transport.results[0] if transport.results else self.timeout_result()
        failure = Failure(result, transport.partner_code or result.partner_code, retry_after=transport.retry_after)
        note = f"{operation}: {self.mask(transport.snippet or result.message, hide)}"
        return Reply(operation, None, (time.monotonic() - started) * 1000, failure=failure, note=note)

    def read(self, operation: str, timed: http.Timed, hide=()) -> Reply:
        """Classify one answer (see the module docstring and the table in ERROR_CODES)."""
        status = timed.response.status_code
        reply = Reply(operation, status, timed.duration_ms)
        try:
            answer = parse_answer(timed.body)
        except SoapError as exc:
            answer = None
            unreadable = str(exc)
        if status == 429:
            retry_after = http.retry_after_seconds(timed.response.headers.get("Retry-After"))
            reply.failure = make_failure(
                Outcome.PARTNER_ERROR, "http_429", "Clang asked to slow down (HTTP 429)", True, retry_after=retry_after
            )
            reply.note = f"{operation}: HTTP 429"
            return reply
        if answer is not None and answer.fault is not None:
            fault = answer.fault
            reply.fault = fault
            reply.failure = self.fault_failure(fault, hide)
            reply.note = f"{operation}: fault {self.mask(fault.code)}: {self.mask(fault.string, hide)}"
            return reply
        if answer is not None and 200 <= status < 300:
            reply.answer = answer
            if answer.code != 0:
                code = str(answer.code)
                text = self.mask("".join(answer.msg.itertext()) if answer.msg is not None else "", hide)
                reply.failure = make_failure(Outcome.PARTNER_ERROR, code, f"Clang answered code {code}: {text}".strip())
                reply.note = f"{operation}: code {code}"
            else:
                reply.note = f"{operation}: ok"
            return reply
        # No SOAP answer: classify by HTTP status.
        detail = self.mask(timed.body.decode("utf-8", "replace"), hide) if timed.body else ""
        reply.note = f"{operation}: HTTP {status}" + (f" {detail[:200]}" if detail else "")
        if 200 <= status < 300:
            reply.failure = make_failure(
                Outcome.PARTNER_ERROR, "invalid_response", f"unreadable answer: {unreadable}", retryable=True
            )
        elif status == 401:
            reply.failure = make_failure(
                Outcome.INVALID_CREDENTIALS, "http_401", "Clang refused the credentials (HTTP 401)",
                credentials_invalid=True,
            )  # fmt: skip
        elif status == 410:
            reply.failure = make_failure(
                Outcome.PARTNER_ERROR, "http_410", "the SOAP endpoint is gone (HTTP 410)", endpoint_gone=True
            )
        elif status >= 500:
            retry_after = http.retry_after_seconds(timed.response.headers.get("Retry-After"))
            reply.failure = make_failure(
                Outcome.PARTNER_ERROR, f"http_{status}", f"Clang answered HTTP {status}", True, retry_after=retry_after
            )
        else:
            reply.failure = make_failure(Outcome.PARTNER_ERROR, f"http_{status}", f"Clang answered HTTP {status}")
        return reply

    def fault_failure(self, fault: Fault, hide=()) -> Failure:
        text = self.mask(fault.string, hide) or "(no fault text)"
        kind = fault.kind
        if is_credentials_fault(fault):
            return make_failure(
                Outcome.INVALID_CREDENTIALS, kind, f"Clang refused the API token: {text}", credentials_invalid=True
            )
        if kind == "Server":  # the server's own trouble: temporary, unless it says the operation does not exist
            return make_failure(
                Outcome.PARTNER_ERROR, "Server", text, retryable=not _PERMANENT_SERVER_TEXT.search(text)
            )
        if kind in ("Client", "VersionMismatch", "MustUnderstand"):
            return make_failure(Outcome.PARTNER_ERROR, kind, text)
        return make_failure(Outcome.PARTNER_ERROR, kind[:64] or "fault", text)

    # Items ------------------------------------------------------------------------------------------------------------
    def identifier_field(self) -> tuple[str, str, str] | None:
        return SLOT_FIELDS.get(self._slot)

    def group_for(self, item: Item) -> int | None:
        """The Clang group: the audience connection's partner audience id when set, else the configuration's."""
        target = (item.partner_audience_id or "").strip()
        if target:
            return int(target) if target.isdigit() and 0 < int(target) < 2**63 else None
        return self._group_id or None

    def prepare(self, items: list[Item]) -> tuple[list[tuple[int, Item, str, int]], list[CallResult]]:
        """Split items into sendable (index, item, identifier value, group id) and results for the unsendable."""
        ready: list[tuple[int, Item, str, int]] = []
        refused: dict[str, list[int]] = {}
        messages = {
            "no_uuid": "no Clang API token (uuid) is configured",
            "unsupported_slot": "Clang matches customers on the customer id or the email address only",
            "invalid_identifier": "identifier empty or invalid after normalisation",
            "invalid_group_id": "the partner audience id is not a numeric Clang group id (and no group is set)",
        }
        for index, item in enumerate(items):
            if not self._uuid:
                refused.setdefault("no_uuid", []).append(index)
            elif item.slot not in SLOT_FIELDS or item.slot != self._slot:
                refused.setdefault("unsupported_slot", []).append(index)
            elif not (value := normalize_identifier(item.slot, item.identifier)):
                refused.setdefault("invalid_identifier", []).append(index)
            elif (group := self.group_for(item)) is None:
                refused.setdefault("invalid_group_id", []).append(index)
            else:
                ready.append((index, item, value, group))
        calls = []
        for code, indices in refused.items():
            credentials = code == "no_uuid"
            outcome = Outcome.INVALID_CREDENTIALS if credentials else Outcome.OTHER_ERROR
            result = ItemResult(outcome, partner_code=code, message=messages[code])
            calls.append(
                self.all_items(
                    indices, result, partner_code=code, snippet=f"not sent: {messages[code]}",
                    credentials_invalid=credentials,
                )
            )  # fmt: skip
        return ready, calls

    def customer_record(self, value: str, variables: Mapping[str, Any], customer_id: str = "") -> dict[str, Any]:
        """The Customer to write: the identifier (it wins over variables of the same field) and the variables."""
        fields, options = customer_fields(variables)
        id_field = SLOT_FIELDS[self._slot][0]
        fields[id_field] = value
        if customer_id:
            fields["id"] = customer_id
        return customer(fields, options)

    def lookup(self, calls: CallSet, index: int, value: str) -> tuple[list[dict[str, str]], Failure | None]:
        """The Clang customers holding this identifier (usually one)."""
        _, operation, param = SLOT_FIELDS[self._slot]
        reply = calls.add(self.invoke([index], operation, [(param, value)], hide=(value,)))
        if reply.failure:
            return [], reply.failure
        found = [struct(e) for e in entries(reply.answer.msg)]
        found = [c for c in found if c.get("id")]
        reply.note = f"{operation}: {len(found)} found"
        return found, None

    def add_one(self, action: str, index: int, item: Item, value: str, group: int) -> CallResult:
        """Upsert the customer (looked up by its identifier), then make it a member of the group."""
        calls = CallSet()
        found, failure = self.lookup(calls, index, value)
        if failure:
            return calls.result([index], [failure.result], failure)
        record = self.customer_record(value, item.variables)
        if found:
            customer_id = found[0]["id"]
            if len(record) > 1:  # something to write beyond the identifier
                record = self.customer_record(value, item.variables, customer_id)
                reply = calls.add(self.invoke([index], "customer_update", [("customer", record)], (value,)))
                if reply.failure:
                    return calls.result([index], [reply.failure.result], reply.failure)
        else:
            reply = calls.add(self.invoke([index], "customer_insert", [("customer", record)], (value,)))
            if reply.failure:
                return calls.result([index], [reply.failure.result], reply.failure)
            customer_id = struct(reply.answer.msg).get("id", "")
            if not customer_id:
                failure = make_failure(Outcome.PARTNER_ERROR, "invalid_response", "customer_insert gave no id", True)
                return calls.result([index], [failure.result], failure)
        return self.add_member(calls, index, group, customer_id, action, value)

    def add_member(self, calls: CallSet, index: int, group: int, customer_id: str, action: str, value: str):
        reply = calls.add(
            self.invoke(
                [index], "group_addMember", [("group", {"id": group}), ("customer", {"id": customer_id})], (value,)
            )
        )
        if is_already_member(reply.fault):
            reply.note = "group_addMember: already a member (107)"
            return calls.result([index], [ItemResult.ok(action)])
        if reply.failure:
            return calls.result([index], [reply.failure.result], reply.failure)
        if boolean(reply.answer.msg) is False:
            failure = make_failure(Outcome.PARTNER_ERROR, "not_added", "Clang answered false to group_addMember")
            return calls.result([index], [failure.result], failure)
        return calls.result([index], [ItemResult.ok(action)])

    def remove_one(self, index: int, item: Item, value: str, group: int) -> CallResult:
        """Find the customer(s) by identifier and take each out of the group (there is no bulk removal)."""
        calls = CallSet()
        found, failure = self.lookup(calls, index, value)
        if failure:
            return calls.result([index], [failure.result], failure)
        for entry in found[:10]:
            reply = calls.add(
                self.invoke(
                    [index],
                    "group_removeMember",
                    [("group", {"id": group}), ("customer", {"id": entry["id"]})],
                    (value,),
                )
            )
            if is_gone_member(reply.fault):
                reply.note = "group_removeMember: not a member"
                continue
            if reply.failure:
                return calls.result([index], [reply.failure.result], reply.failure)
            if boolean(reply.answer.msg) is False:
                failure = make_failure(
                    Outcome.PARTNER_ERROR, "not_removed", "Clang answered false to group_removeMember"
                )
                return calls.result([index], [failure.result], failure)
        return calls.result([index], [ItemResult.ok(Action.REMOVE)])

    # Test connection --------------------------------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """Read the configured group (group_getById): proves the endpoint, the uuid and the group id."""
        if not self._uuid:
            return False, "No API token (uuid) is configured."
        if not self._group_id:
            return False, "No group ID is configured."
        reply = self.invoke([], "group_getById", [("groupId", self._group_id)])
        group = self._group_id
        if reply.ok:
            info = struct(reply.answer.msg)
            name = info.get("name") or "(no name)"
            count = info.get("customerCount")
            members = f", {count} customers" if count not in (None, "") else ""
            return True, f"Connected to Clang: group {group} \u201c{name}\u201d{members}."
        failure = reply.failure
        code = failure.partner_code
        message = failure.result.message
        if reply.status is None:
            if failure.result.outcome == Outcome.TIMEOUT:
                return False, f"Clang did not answer within {self.timeout:g} s."
            return False, f"Could not reach Clang: {message}"
        if failure.credentials_invalid:
            said = self.mask(reply.fault.string) if reply.fault is not None else message
            return False, f"Clang refused the API token (uuid): {said}. Check Clang > Account > API tokens."
        if reply.fault is not None and reply.fault.kind not in ("Server", "Client", "VersionMismatch"):
            return False, f"Clang does not know group {group} (fault {code}: {message}). Check the group ID."
        if code == "http_404":
            return False, "No Clang SOAP endpoint at this URL (HTTP 404): check the endpoint URL."
        return False, f"Clang answered {code}: {message}"
