"""The client API's far side, on a remote controller's machine:
`python -m skytui.client.serve` answers a `RemoteClient` over its stdin and
stdout (an SSH channel, a pod exec stream), one JSON line each way per
message (wire.py), with a local `Client` of that machine's controller home.

Calls run on threads of their own, so a long follow does not hold up a
cancel; a stream ends when its generator does or when the client cancels
it. Only the calls in `CALLS` and `STREAMS` are answered. Before anything
else it says hello: the config digest the machine holds, so the client
knows whether to send its config again. Ends when stdin does (the client
went away). May touch the client, wire.py and, to keep the controller
supervised, remote.supervisor.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

from skytui.client.api import Client
from skytui.client.wire import decode, dumps, encode, error_of
from skytui.config import paths as default_paths
from skytui.config import restrict_umask, write_private

CONTROLLER_ID_FILE = "controller_id"

# Plain calls: a Client method each.
CALLS = frozenset({
    "apply_pool_stored", "attempts", "cancel", "changes", "controller_info", "cost_report", "events",
    "has_unfinished_work", "in_progress_ids", "job", "job_count", "job_spec", "pool_down", "pools", "queue", "queue_json",
    "read_controller_log", "resolve_job", "sim_preempt", "sim_stockout", "snapshot",
    "submit_prepared",
})
# Calls that answer with a stream of items.
STREAMS = frozenset({"follow_job", "follow_queue"})
# Calls after which the controller must be supervised (it has work now).
STARTS_WORK = frozenset({"submit_prepared", "apply_pool_stored"})


class Server:
    def __init__(self, client: Client, out: BinaryIO) -> None:
        self.client = client
        self._out = out
        self._out_lock = threading.Lock()
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = dumps(message)
        with self._out_lock:
            self._out.write(data)
            self._out.flush()

    def handle(self, request: dict[str, Any]) -> None:
        rid = int(request["id"])
        name = str(request.get("call", ""))
        try:
            args = decode(request.get("args", []))
            kwargs = decode(request.get("kwargs", {"$dict": {}}))
            if name in STREAMS:
                items: Iterator[Any] = getattr(self.client, name)(*args, **kwargs)
                try:
                    for item in items:
                        if self._is_cancelled(rid):
                            break
                        self.send({"id": rid, "item": encode(item)})
                finally:
                    close = getattr(items, "close", None)
                    if close is not None:
                        close()
                self.send({"id": rid, "end": True})
            elif name in CALLS:
                result = getattr(self.client, name)(*args, **kwargs)
                if name in STARTS_WORK:
                    supervise(self.client)
                self.send({"id": rid, "result": encode(result)})
            else:
                self.send({"id": rid, "error": {"type": "ValueError", "message": f"no such call: {name!r}"}})
        except Exception as exc:  # noqa: BLE001 - every failure is the caller's answer
            self.send({"id": rid, "error": error_of(exc)})
        finally:
            with self._lock:
                self._cancelled.discard(rid)

    def _is_cancelled(self, rid: int) -> bool:
        with self._lock:
            return rid in self._cancelled

    def cancel(self, rid: int) -> None:
        with self._lock:
            self._cancelled.add(rid)

    def serve(self, stdin: BinaryIO) -> None:
        for line in stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            if request.get("cancel"):
                self.cancel(int(request["id"]))
                continue
            threading.Thread(target=self.handle, args=(request,), daemon=True,
                             name=f"call-{request.get('id')}").start()


def supervise(client: Client) -> None:
    """The supervisor keeps the controller up there (started if it is not)."""
    from skytui.remote.supervisor import ensure

    ensure(client.paths)


def _hello(client: Client) -> dict[str, Any]:
    """The config digest the machine holds (the client sends its config again
    when it differs), and what the running controller started with."""
    from skytui.remote.supervisor import SITE_FILE, started_with

    try:
        site = json.loads((client.paths.home / SITE_FILE).read_text())
    except (OSError, ValueError):
        site = {}
    digest = site.get("config") if isinstance(site, dict) else None
    return {"config": digest, "started_with": started_with(client.paths), "pid": os.getpid(),
            "controller_id": _controller_id(client)}


def _controller_id(client: Client) -> str:
    """This controller's identity, made with its state: a client that met
    another one here says so (the state it knew is gone)."""
    path = client.paths.home / CONTROLLER_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        client.paths.ensure()
        write_private(path, secrets.token_hex(8).encode())
        return path.read_text().strip()


def main() -> int:
    restrict_umask()
    # The protocol owns stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    from skytui.remote.credentials import load_environment

    paths = default_paths()
    load_environment(paths.home)
    client = Client(paths)
    server = Server(client, out)
    server.send({"hello": _hello(client)})
    if client.paths.home.exists() and client.store.has_unfinished_work():
        supervise(client)  # it may have been stopped or lost: work is being watched again
    server.serve(sys.stdin.buffer)
    client.close()
    os._exit(0)  # threads still in a follow's sleep: the client is gone


if __name__ == "__main__":
    sys.exit(main())
