"""A scripted Clang SOAP endpoint for `responses`: answers each operation from a queue and records every call."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import responses

from connectors.partners.clang_soap import SOAP_ENV, localname

FIXTURES = Path(__file__).parent / "fixtures"
URL = "https://login.myclang.com/app/api/soap/public/index.php"


def fixture(name: str) -> bytes:
    """A fixture by name: clang_realtime/<name>, else clang_batch/<name>."""
    for folder in ("clang_realtime", "clang_batch"):
        path = FIXTURES / folder / name
        if path.exists():
            return path.read_bytes()
    raise FileNotFoundError(name)


class Call:
    def __init__(self, request):
        self.request = request
        self.body: bytes = request.body if isinstance(request.body, bytes) else request.body.encode()
        self.headers = request.headers
        self.url = request.url
        root = ET.fromstring(self.body)
        operation = root.find(f"{{{SOAP_ENV}}}Body")[0]
        self.namespace, self.operation = operation.tag[1:].split("}", 1)
        self.element = operation
        self.params = {p.tag: p for p in operation}

    def text(self, name: str) -> str:
        return self.params[name].text or ""

    def ids(self, name: str) -> list[str]:
        """The <id> of each entry of an array parameter (customers)."""
        return [entry.find("id").text for entry in self.params[name]]

    def fields(self, name: str) -> dict[str, str]:
        return {localname(e.tag): (e.text or "") for e in self.params[name] if not len(e)}


class SoapMock:
    """Register on a `responses` mock; `on(operation, answer)` queues answers (the last one repeats)."""

    def __init__(self, rsps, url: str = URL):
        self.script: dict[str, list] = {}
        self.calls: list[Call] = []
        rsps.add_callback(responses.POST, url, callback=self._answer)

    def on(self, operation: str, answer, status: int | None = None, headers: dict | None = None) -> SoapMock:
        """`answer`: a fixture name, bytes, an exception to raise, or a callable(Call) -> (status, headers, body)."""
        self.script.setdefault(operation, []).append((answer, status, headers or {}))
        return self

    def ops(self) -> list[str]:
        return [c.operation for c in self.calls]

    def of(self, operation: str) -> list[Call]:
        return [c for c in self.calls if c.operation == operation]

    def _answer(self, request):
        call = Call(request)
        self.calls.append(call)
        queue = self.script.get(call.operation)
        assert queue, f"unexpected call {call.operation}"
        answer, status, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            return answer
        if callable(answer):
            return answer(call)
        body = fixture(answer) if isinstance(answer, str) else answer
        if status is None:
            status = 500 if b"<SOAP-ENV:Fault>" in body else 200
        return status, {"Content-Type": "text/xml; charset=utf-8", **headers}, body
