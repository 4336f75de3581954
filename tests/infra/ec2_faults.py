"""An HTTP proxy in front of moto that makes EC2 run dry on demand.

moto always has capacity. This proxy (stdlib ThreadingHTTPServer on 127.0.0.1)
forwards every request to moto unchanged, except RunInstances in a region and
market marked dry: those are answered as EC2 answers them, an HTTP 500 with

    <Response><Errors><Error><Code>InsufficientInstanceCapacity</Code>
    <Message>...</Message></Error></Errors><RequestID>...</RequestID></Response>

(or any other code given to `dry`). Point AWS_ENDPOINT_URL at `.endpoint`. The
region of a request is the one in its SigV4 credential scope
(`Credential=AKID/20261128/us-east-1/ec2/aws4_request`); the market is spot when
the form says `InstanceMarketOptions.MarketType=spot`.
"""

from __future__ import annotations

import http.client
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "content-length"}
SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/")


@dataclass(frozen=True)
class Fault:
    code: str
    status: int
    message: str


class EC2Faults:
    """`with EC2Faults(moto_endpoint) as faults: faults.dry("us-east-1", "spot")`."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self._rules: dict[tuple[str, str], Fault] = {}
        self._lock = threading.Lock()
        # Every RunInstances seen, as (region, market, answered code or "" when forwarded).
        self.run_instances: list[tuple[str, str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ec2-faults", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ------------------------------------------------------------------ rules

    def dry(self, region: str = "*", market: str = "*", *, code: str = "InsufficientInstanceCapacity",
            status: int = 500, message: str | None = None) -> None:
        """RunInstances in `region` ("*": every one) for `market` ("spot",
        "on-demand" or "*") fails with `code` from now on."""
        text = message or (
            f"We currently do not have sufficient capacity in the Availability Zone you requested ({region})."
            if code == "InsufficientInstanceCapacity" else f"{code} (injected by ec2_faults)"
        )
        with self._lock:
            self._rules[(region, market)] = Fault(code, status, text)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def _fault_for(self, region: str, market: str) -> Fault | None:
        with self._lock:
            for key in ((region, market), (region, "*"), ("*", market), ("*", "*")):
                if key in self._rules:
                    return self._rules[key]
        return None

    # ---------------------------------------------------------------- serving

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        faults = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _proxy(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = faults._inspect(self.headers.get("Authorization", ""), body)
                if fault is not None:
                    self._answer_error(fault)
                    return
                upstream = http.client.HTTPConnection(faults.upstream_host, faults.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    self.send_response(response.status, response.reason)
                    for key, value in response.getheaders():
                        if key.lower() not in HOP_BY_HOP:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    upstream.close()

            def _answer_error(self, fault: Fault) -> None:
                request_id = str(uuid.uuid4())
                data = (
                    f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{escape(fault.code)}'
                    f"</Code><Message>{escape(fault.message)}</Message></Error></Errors>"
                    f"<RequestID>{request_id}</RequestID></Response>"
                ).encode()
                self.send_response(fault.status)
                self.send_header("Content-Type", "text/xml;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _proxy

        return Handler

    def _inspect(self, authorization: str, body: bytes) -> Fault | None:
        """The fault to answer this request with, if it is a dry RunInstances."""
        form = parse_qs(body.decode("utf-8", "replace")) if body else {}
        if form.get("Action") != ["RunInstances"]:
            return None
        match = SCOPE.search(authorization)
        region = match.group(1) if match else "?"
        market = "spot" if form.get("InstanceMarketOptions.MarketType") == ["spot"] else "on-demand"
        fault = self._fault_for(region, market)
        with self._lock:
            self.run_instances.append((region, market, fault.code if fault else ""))
        return fault
