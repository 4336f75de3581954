"""A fake instance metadata server on 127.0.0.1, speaking what the node's
notice watcher asks (clouds/preemption_notices.py): AWS's IMDSv2 (a token
from `PUT /latest/api/token`, then `GET
/latest/meta-data/spot/instance-action` with it: 404 until an interruption is
set, then its JSON) and GCP's `GET /computeMetadata/v1/instance/preempted`
(`Metadata-Flavor: Google` required: FALSE, then TRUE). Requests without
the token or the header are refused, as the real servers refuse them."""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeMetadata:
    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.instance_action: dict[str, str] | None = None
        self.preempted = False
        self.refused = 0  # requests without a token or the flavor header
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, code: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:  # noqa: N802 - http.server's name
                if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    fake.refused += 1
                    return self._answer(400)
                token = secrets.token_hex(16)
                fake.tokens.add(token)
                self._answer(200, token)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/latest/meta-data/spot/instance-action":
                    if self.headers.get("X-aws-ec2-metadata-token") not in fake.tokens:
                        fake.refused += 1
                        return self._answer(401)
                    if fake.instance_action is None:
                        return self._answer(404, "Not Found")
                    return self._answer(200, json.dumps(fake.instance_action))
                if self.path == "/computeMetadata/v1/instance/preempted":
                    if self.headers.get("Metadata-Flavor") != "Google":
                        fake.refused += 1
                        return self._answer(403)
                    return self._answer(200, "TRUE" if fake.preempted else "FALSE")
                self._answer(404)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def interrupt_spot(self, in_s: float, action: str = "terminate") -> float:
        """An AWS spot interruption `in_s` from now; its time, to the second, as AWS gives it."""
        at = int(time.time() + in_s)
        self.instance_action = {"action": action, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))}
        return float(at)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
