"""The local partner sandbox server: emulated partner endpoints, per-scope fault injection and statistics.

Loopback only. `start()` runs it on a background thread (tests, benchmarks); `manage.py partner_sandbox` runs it in
the foreground. Built on `ThreadingHTTPServer` (one daemon thread per connection, HTTP/1.1 keep-alive). The request
parser is a lean replacement for `BaseHTTPRequestHandler.parse_request` (no email-package header parsing, no
per-request logging, one `sendall` per response) because the sandbox also serves throughput benchmarks.

Paths: an optional `/c/<scope>` prefix selects the scope whose faults apply and under which statistics are counted
(no prefix: scope "default"); then a partner route (see the partner modules in `PARTNERS`) or the control API under
`/_sandbox` (see `Sandbox.control`). Anything else is a 404 with a JSON body.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import importlib
import ipaddress
import json
import socket
import threading
import time
import traceback
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qsl

from connectors.sandbox import DEFAULT_SCOPE, FAULT_KINDS, Fault, Response, google_oauth, json_response, meta, webhook
from connectors.sandbox import Request as SandboxRequest


def _partner_emulations() -> tuple:
    """Meta and webhook live here; every other partner's emulation is `connectors/partners/<key>/sandbox.py`
    (one folder per partner), found through the catalogue. Google's OAuth token endpoint is shared."""
    from connectors.partners.registry import REGISTRY

    found = []
    for key in REGISTRY:
        try:
            found.append(importlib.import_module(f"connectors.partners.{key}.sandbox"))
        except ModuleNotFoundError as exc:
            if exc.name != f"connectors.partners.{key}.sandbox":
                raise
    return (meta, webhook, google_oauth, *found)


PARTNERS = _partner_emulations()

CONTROL_PREFIX = "/_sandbox"
SCOPE_PREFIX = "/c/"
MAX_LINE = 65536
MAX_HEADERS = 100
MAX_BODY = 64 * 1024 * 1024
IDLE_TIMEOUT = 300  # seconds a keep-alive connection may stay idle
MAX_DELAY = 300.0
SERVER_NAME = "PartnerSandbox/1.0"
REASONS = {status.value: status.phrase for status in HTTPStatus}

CONTROL_ENDPOINTS = (
    ("GET", "/_sandbox", "what the sandbox serves"),
    ("POST", "/_sandbox/faults", "inject a fault: {scope, fault, count, delay_s, retry_after, status, code, ...}"),
    ("GET", "/_sandbox/faults", "list the active faults"),
    ("DELETE", "/_sandbox/faults[?scope=]", "clear faults (all, or one scope)"),
    (
        "PUT",
        "/_sandbox/webhooks/<name>",
        'register the verification secret: {"secret": "whsec_..."}, or several keys {"secrets": [...]}',
    ),
    ("DELETE", "/_sandbox/webhooks/<name>", "forget a verification secret"),
    ("GET", "/_sandbox/stats[?scope=]", "statistics per scope and partner"),
    ("GET", "/_sandbox/profiles[?scope=]", "webhook: each profile's last event type and its events in arrival order"),
    ("POST", "/_sandbox/reset[?scope=]", "clear faults, secrets and statistics (all, or one scope)"),
)
PARTNER_ENDPOINTS = (
    ("POST|DELETE", "/v<N>.0/<audience_id>/users", "Meta Custom Audiences add/remove"),
    ("GET", "/v<N>.0/act_<ad_account_id>", "Meta test connection"),
    ("GET", "/v<N>.0/<audience_id>", "Meta custom audience"),
    ("POST", "/webhook/<name>", "Standard Webhooks receiver"),
)
_FAULT_FIELDS = frozenset(
    ("scope", "fault", "count", "delay_s", "retry_after", "status", "code", "subcode", "partner", "message")
)

_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header value, formatted once per second."""
    global _date_cache
    now = int(time.time())
    cached = _date_cache
    if cached[0] != now:
        cached = _date_cache = (now, formatdate(now, usegmt=True))
    return cached[1]


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# State ---------------------------------------------------------------------------------------------------------


class SandboxState:
    """Faults, webhook secrets and statistics, shared by the handler threads (one lock)."""

    def __init__(self, partners=PARTNERS):
        self.lock = threading.Lock()
        self.partners = {p.NAME: p for p in partners}
        self._faults: dict[str, dict[str | None, Fault]] = {}
        self._secrets: dict[str, tuple[str, ...]] = {}
        self._stats: dict[str, dict[str, dict[str, Any]]] = {}

    # Faults: one per (scope, partner); a partner's own fault wins over the scope-wide one (partner None).
    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self._faults.setdefault(fault.scope, {})[fault.partner] = fault

    def take_fault(self, scope: str, partner: str) -> Fault | None:
        """The fault that applies to this request, its count decremented (and removed when used up)."""
        if not self._faults:  # the common case, without taking the lock
            return None
        with self.lock:
            per_scope = self._faults.get(scope)
            if not per_scope:
                return None
            fault = per_scope.get(partner) or per_scope.get(None)
            if fault is not None and fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    del per_scope[fault.partner]
                    if not per_scope:
                        del self._faults[scope]
            return fault

    def faults(self, scope: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [f.as_dict() for s, per in self._faults.items() if scope in (None, s) for f in list(per.values())]

    def clear_faults(self, scope: str | None = None) -> int:
        with self.lock:
            if scope is None:
                cleared = sum(len(per) for per in self._faults.values())
                self._faults.clear()
            else:
                cleared = len(self._faults.pop(scope, {}))
            return cleared

    # Webhook verification secrets, by endpoint name: one, or several while the receiver rotates its key (a request
    # is accepted when one of its signatures verifies with one of them).
    def set_webhook_secret(self, name: str, secret: str | list[str] | tuple[str, ...] | None) -> None:
        with self.lock:
            if not secret:
                self._secrets.pop(name, None)
            else:
                self._secrets[name] = (secret,) if isinstance(secret, str) else tuple(secret)

    def webhook_secrets(self, name: str) -> tuple[str, ...]:
        return self._secrets.get(name, ())

    # Statistics.
    def _scope_stats(self, scope: str) -> dict[str, dict[str, Any]]:
        stats = self._stats.get(scope)
        if stats is None:
            stats = self._stats[scope] = {name: p.new_stats() for name, p in self.partners.items()}
        return stats

    def record(self, scope: str, partner: str, failed: bool, deltas: dict[str, Any] | None) -> None:
        module = self.partners[partner]
        with self.lock:
            stats = self._scope_stats(scope)[partner]
            stats["requests"] += 1
            if failed:
                stats["errors"] += 1
            if deltas:
                module.apply_stats(stats, deltas)

    def stats(self, scope: str | None = None) -> dict[str, Any]:
        with self.lock:
            scopes = [scope] if scope is not None else list(self._stats)
            return {
                s: {name: self.partners[name].export_stats(st) for name, st in self._scope_stats(s).items()}
                for s in scopes
            }

    def profiles(self, scope: str) -> dict[str, Any]:
        with self.lock:
            return {
                name: self.partners[name].export_profiles(st)
                for name, st in self._scope_stats(scope).items()
                if hasattr(self.partners[name], "export_profiles")
            }

    def reset(self, scope: str | None = None) -> None:
        with self.lock:
            if scope is None:
                self._faults.clear()
                self._secrets.clear()
                self._stats.clear()
            else:
                self._faults.pop(scope, None)
                self._stats.pop(scope, None)


# Application ---------------------------------------------------------------------------------------------------


def _error(status: int, message: str, **extra: Any) -> Response:
    return json_response(status, {"error": message, **extra})


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("the body must be a JSON object")
    return obj


def _opt_int(obj: dict[str, Any], key: str, low: int | None = None, high: int | None = None) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" between {low} and {high}" if high is not None else (f" >= {low}" if low is not None else "")
        raise ValueError(f"{key} must be null or an integer{bounds}")
    return value


def parse_fault(obj: dict[str, Any], default_scope: str, partners: dict[str, Any]) -> Fault:
    """A Fault from the control API's JSON, or ValueError saying what is wrong."""
    unknown = sorted(set(obj) - _FAULT_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    kind = obj.get("fault")
    if kind not in FAULT_KINDS:
        raise ValueError(f"fault must be one of {', '.join(FAULT_KINDS)}")
    scope = obj.get("scope") or default_scope
    if not isinstance(scope, str) or "/" in scope or len(scope) > 200:
        raise ValueError("scope must be a string without '/'")
    partner = obj.get("partner")
    if partner is not None and partner not in partners:
        raise ValueError(f"partner must be null or one of {', '.join(partners)}")
    delay = obj.get("delay_s")
    if delay is None:
        delay = 1.0 if kind == "slow" else 0.0
    if type(delay) not in (int, float) or not 0 <= delay <= MAX_DELAY:
        raise ValueError(f"delay_s must be a number between 0 and {MAX_DELAY:g}")
    message = obj.get("message")
    if message is not None and not isinstance(message, str):
        raise ValueError("message must be null or a string")
    return Fault(
        kind=kind,
        scope=scope,
        partner=partner,
        count=_opt_int(obj, "count", low=1),
        delay_s=float(delay),
        retry_after=_opt_int(obj, "retry_after", low=0),
        status=_opt_int(obj, "status", low=200, high=599),
        code=_opt_int(obj, "code"),
        subcode=_opt_int(obj, "subcode"),
        message=message,
    )


def _valid_whsec(secret: Any) -> bool:
    if not isinstance(secret, str) or not secret:
        return False
    try:
        return bool(base64.b64decode(secret.removeprefix("whsec_"), validate=True))
    except (binascii.Error, ValueError):
        return False


class Sandbox:
    """Routing, fault injection and the control API; independent of the HTTP plumbing."""

    def __init__(self, partners=PARTNERS):
        self.partners = tuple(partners)
        self.state = SandboxState(self.partners)

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        try:
            return self._dispatch(method, target, headers, body)
        except Exception as exc:  # a sandbox bug must still answer, and show up in the server's output
            traceback.print_exc()
            return _error(500, "sandbox internal error", detail=repr(exc))

    def _dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        path, _, query = target.partition("?")
        scope = None
        if path.startswith(SCOPE_PREFIX):
            end = path.find("/", len(SCOPE_PREFIX))
            scope = path[len(SCOPE_PREFIX) : end] if end != -1 else path[len(SCOPE_PREFIX) :]
            path = path[end:] if end != -1 else "/"
            if not scope:
                return _error(404, "empty scope in /c/<scope>")
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return self.control(method, path[len(CONTROL_PREFIX) :].rstrip("/"), query, body, scope)
        for partner in self.partners:
            route = partner.match(method, path)
            if route is not None:
                break
        else:
            return _error(404, "no sandbox endpoint here", method=method, path=path)

        scope = scope or DEFAULT_SCOPE
        request = SandboxRequest(method, path, query, headers, body, scope)
        response = None
        fault = self.state.take_fault(scope, partner.NAME)
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            response = partner.fault_response(fault, request)
        if response is None:
            response = partner.handle(request, route, self.state)
        self.state.record(scope, partner.NAME, response.status >= 400, response.stats)
        return response

    def endpoints(self) -> list[tuple[str, ...]]:
        """Every emulated partner endpoint: Meta's and the webhook's, then those each emulation lists."""
        return [*PARTNER_ENDPOINTS, *(e for p in self.partners for e in getattr(p, "ENDPOINTS", ()))]

    def control(self, method: str, sub: str, query: str, body: bytes, scope: str | None) -> Response:
        """The control API (JSON). `?scope=` or a /c/<scope> prefix narrows faults, stats and reset to one scope."""
        state = self.state
        if query:
            scope = dict(parse_qsl(query)).get("scope") or scope
        try:
            if sub == "":
                if method != "GET":
                    return _error(405, "method not allowed", allow="GET")
                return json_response(
                    200,
                    {
                        "partners": [p.NAME for p in self.partners],
                        "fault_kinds": list(FAULT_KINDS),
                        "scope_prefix": "/c/<scope>",
                        "partner_endpoints": [" ".join(e[:2]) for e in self.endpoints()],
                        "control_endpoints": [" ".join(e[:2]) for e in CONTROL_ENDPOINTS],
                    },
                )
            if sub == "/faults":
                if method == "POST":
                    fault = parse_fault(_json_object(body), scope or DEFAULT_SCOPE, state.partners)
                    state.add_fault(fault)
                    return json_response(201, fault.as_dict())
                if method == "GET":
                    return json_response(200, {"faults": state.faults(scope)})
                if method == "DELETE":
                    return json_response(200, {"cleared": state.clear_faults(scope)})
                return _error(405, "method not allowed", allow="GET, POST, DELETE")
            if sub.startswith("/webhooks/"):
                name = sub[len("/webhooks/") :]
                if not webhook.valid_name(name):
                    return _error(404, "webhook names are made of letters, digits, '_' and '-'")
                if method == "PUT":
                    data = _json_object(body)
                    secrets = data["secrets"] if "secrets" in data else [data.get("secret")]
                    if not isinstance(secrets, list) or not 1 <= len(secrets) <= 5:
                        raise ValueError('"secrets" is a list of 1 to 5 secrets')
                    if not all(_valid_whsec(secret) for secret in secrets):
                        raise ValueError('secret must be "whsec_" followed by base64')
                    state.set_webhook_secret(name, secrets)
                    return json_response(200, {"name": name, "registered": True, "keys": len(secrets)})
                if method == "DELETE":
                    state.set_webhook_secret(name, None)
                    return json_response(200, {"name": name, "registered": False})
                return _error(405, "method not allowed", allow="PUT, DELETE")
            if sub == "/profiles":
                return json_response(200, state.profiles(scope or "default"))
            if sub == "/stats":
                if method != "GET":
                    return _error(405, "method not allowed", allow="GET")
                return json_response(200, state.stats(scope))
            if sub == "/reset":
                if method != "POST":
                    return _error(405, "method not allowed", allow="POST")
                state.reset(scope)
                return json_response(200, {"reset": scope or "all"})
        except ValueError as exc:
            return _error(400, str(exc))
        return _error(404, "no such control endpoint", path=CONTROL_PREFIX + sub)


# HTTP ----------------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = SERVER_NAME
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT

    def setup(self):
        super().setup()
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def log_request(self, code="-", size="-"):
        pass

    def handle_one_request(self):
        self.close_connection = True
        try:
            self._one_request()
        except (OSError, ValueError):  # idle timeout, reset by peer, file closed at stop
            self.close_connection = True

    def _one_request(self) -> None:
        rfile = self.rfile
        line = rfile.readline(MAX_LINE + 1)
        while line in (b"\r\n", b"\n"):  # tolerate empty lines before a request line
            line = rfile.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE:
            return self._fail(414, "request line too long")
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return self._fail(400, "malformed request line")
        method = parts[0].decode("latin-1")
        target = parts[1].decode("latin-1")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            header = rfile.readline(MAX_LINE + 1)
            if header == b"\r\n" or header == b"\n":
                break
            if not header:
                return
            name, sep, value = header.partition(b":")
            if not sep or len(header) > MAX_LINE:
                return self._fail(400, "malformed header line")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        else:
            return self._fail(431, "too many header lines")

        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if parts[2] == b"HTTP/1.1" else "keep-alive" in connection
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "transfer-encoding" in headers:
            if headers["transfer-encoding"].lower() != "chunked":
                return self._fail(501, "only the chunked transfer coding is supported")
            body = self._read_chunked()
            if body is None:
                return
        else:
            length = headers.get("content-length") or "0"
            if not length.isdigit():
                return self._fail(400, "invalid Content-Length")
            size = int(length)
            if size > MAX_BODY:
                return self._fail(413, "body too large")
            body = rfile.read(size) if size else b""
            if len(body) < size:
                return

        response = self.server.sandbox.dispatch(method, target, headers, body)
        self.close_connection = not keep_alive
        self._send(response, keep_alive, head_only=method == "HEAD")

    def _read_chunked(self) -> bytes | None:
        rfile = self.rfile
        chunks, total = [], 0
        while True:
            line = rfile.readline(MAX_LINE + 1)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._fail(400, "malformed chunk size")
                return None
            if size == 0:
                while rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):  # trailer fields
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                self._fail(413, "body too large")
                return None
            data = rfile.read(size)
            if len(data) < size:
                return None
            chunks.append(data)
            rfile.readline(MAX_LINE + 1)  # the CRLF after the chunk

    def _send(self, response: Response, keep_alive: bool, head_only: bool = False) -> None:
        status = response.status
        body = response.body
        head = f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nServer: {SERVER_NAME}\r\nDate: {http_date()}\r\n"
        if status != 204:
            head += f"Content-Type: {response.content_type}\r\nContent-Length: {len(body)}\r\n"
        for name, value in response.headers:
            head += f"{name}: {value}\r\n"
        if not keep_alive:
            head += "Connection: close\r\n"
        data = (head + "\r\n").encode("latin-1")
        if status != 204 and not head_only:
            data += body
        self.wfile.write(data)

    def _fail(self, status: int, message: str) -> None:
        self.close_connection = True
        self._send(_error(status, message), keep_alive=False)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self):
        # HTTPServer.server_bind resolves the host's FQDN (a DNS lookup); the sandbox has no use for it.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """End the keep-alive connections still open, so their handler threads exit."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class SandboxServer:
    """A sandbox bound to a loopback address. `start()` serves on a daemon thread; `serve_forever()` blocks."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        if not is_loopback(host):
            raise ValueError(f"the partner sandbox only listens on loopback addresses, not {host!r}")
        self.sandbox = Sandbox()
        self.httpd = _HTTPServer((host, port), self.sandbox)
        self.host = host
        self.port: int = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def state(self) -> SandboxState:
        return self.sandbox.state

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.05)  # how soon stop() is noticed

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self.serve_forever, name=f"partner-sandbox-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()
        self.httpd.close_connections()

    def __enter__(self) -> SandboxServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start(host: str = "127.0.0.1", port: int = 0) -> SandboxServer:
    """Start a sandbox on a background thread; `port=0` picks a free port (see `.url`, `.port`)."""
    return SandboxServer(host, port).start()
