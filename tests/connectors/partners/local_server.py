"""A tiny real HTTP server on 127.0.0.1 (port 0) for tests that need real sockets: stalls, concurrency, raw bytes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    # Room for every concurrent connect of the concurrency tests (the default backlog of 5 refuses some).
    request_queue_size = 128
    daemon_threads = True


class Recorded:
    def __init__(self):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0


@contextmanager
def local_server(*, delay: float = 0.0, status: int = 200, body: bytes = b"{}", on_request: Callable | None = None):
    """Yield (base_url, recorded). Each request sleeps `delay` seconds, then answers `status` with `body`."""
    recorded = Recorded()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with recorded.lock:
                recorded.active += 1
                recorded.max_active = max(recorded.max_active, recorded.active)
                recorded.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": raw}
                )
            try:
                if on_request is not None:
                    on_request(self)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)
            finally:
                with recorded.lock:
                    recorded.active -= 1

        do_GET = do_POST = do_DELETE = _handle

    server = _Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorded
    finally:
        server.shutdown()
        server.server_close()
