"""A threaded HTTP server on 127.0.0.1 driven by a plain function, for wire-format fakes.

Each fake (arXiv, OpenAI, Telegram, Slack) is a `handle(request) -> Response` function; the
server records every request so tests can assert on what the real client libraries sent.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    # The client's port (one per connection), and when the request arrived and its answer
    # was written (time.monotonic), for tests of spacing and overlap.
    peer: int = 0
    started: float = 0.0
    finished: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}

    def echo(self) -> str:
        """This request as a debugging server quotes it back in an error: URL, headers, body."""
        url = f"http://{self.headers.get('host', '')}{self.path}"
        return f"{self.method} {url} headers={self.headers} body={self.body.decode(errors='replace')}"


@dataclass
class Response:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def json(cls, data: Any, status: int = 200, **headers: str) -> Response:
        return cls(status, json.dumps(data), {"Content-Type": "application/json", **headers})


Handler = Callable[[Request], Response]


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up mid-answer (timeouts under test) are expected, not noise."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServer:
    """`with FakeServer(handle) as srv:` → `srv.url` is `http://127.0.0.1:PORT`."""

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes; with Nagle on, the body waits for the
            # client's delayed ACK (~40 ms a response), which real servers do not impose.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                started = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = Request(self.command, parts.path, parse_qs(parts.query),
                              {k.lower(): v for k, v in self.headers.items()}, body,
                              peer=self.client_address[1], started=started)
                with outer._lock:
                    outer.requests.append(req)
                resp = outer.handle(req)
                if resp.delay:
                    threading.Event().wait(resp.delay)
                data = resp.body.encode() if isinstance(resp.body, str) else resp.body
                # Before the first byte goes out: the client cannot have it (and ask again) yet.
                req.finished = time.monotonic()
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = _QuietServer(("127.0.0.1", 0), _H)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
