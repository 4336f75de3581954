"""moto's server (the AWS API, in-memory) on 127.0.0.1, for boto3 through AWS_ENDPOINT_URL.

One server per test session (its first EC2 call per region costs 2-3 s);
`reset()` empties it between tests. Credentials are moto's dummies.
"""

from __future__ import annotations

import logging
import urllib.request
from dataclasses import dataclass
from typing import Any

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret-key"}


@dataclass
class MotoServer:
    server: Any
    endpoint: str  # http://127.0.0.1:PORT

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=30)

    def env(self) -> dict[str, str]:
        """What a process needs to talk to this server with boto3's standard settings."""
        return {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def stop(self) -> None:
        self.server.stop()


def start_moto() -> MotoServer:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # verbose=False does not silence request logs
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # its default binds 0.0.0.0
    server.start()
    host, port = server.get_host_and_port()
    return MotoServer(server, f"http://{host}:{port}")
