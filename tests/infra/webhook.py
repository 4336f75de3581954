"""A webhook receiver on 127.0.0.1 for the notification tests: records every
POST (path, query, JSON body), and can answer with errors first or never.

`WebhookServer` runs http.server in a thread of its own; `answers` is the
status codes to give in turn (then 200), `hang` holds every request until
`close`. Touches only its own socket.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    status: int  # what the receiver answered


@dataclass
class WebhookServer:
    answers: list[int] = field(default_factory=list)
    hang: bool = False
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if server.hang:
                    server._release.wait()
                with server._lock:
                    status = server.answers.pop(0) if server.answers else 200
                    server.requests.append(Received(self.path, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def delivered(self, event: str | None = None, job: int | None = None) -> list[dict[str, Any]]:
        """The bodies accepted (2xx), optionally of one event and job."""
        with self._lock:
            bodies = [r.body for r in self.requests if 200 <= r.status < 300]
        return [b for b in bodies if (event is None or b["event"] == event) and (job is None or b["job"] == job)]

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
