"""Sandboxes served by the node host: the machines of the `local` and `sim` infra.

A sandbox is a directory under `$SKYTUI_HOME/nodes/` that the node host
(nodehost.py, a separate process that outlives the controller) serves over
SSH as one machine: its login is the sandbox's name, its home the directory.
This module owns their life cycle: starting the node host, creating sandboxes
with a marker naming the infra and cluster they belong to, telling whether
they still exist, and destroying them as terminating a VM would (every
process on them ends, their disk is gone: sandbox_teardown.py, in batches).
Both clouds that use sandboxes share one node host; each sees only the
sandboxes marked with its own name.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skytui.clouds.base import (
    CloudError,
    ClusterHandle,
    ClusterState,
    NodeInfo,
)
from skytui.clouds.local_layout import (
    LOCK_FILE,
    MTIME_SETTLE_NS,
    NODE_MARKER,
    STATE_FILE,
    TERMINATING_FLAG,
    process_running,
    touch_nodes_dir,
)
from skytui.clouds.sandbox_teardown import SandboxTeardown, give_notice
from skytui.config import (
    ConfigError,
    LocalInfraConfig,
    Paths,
    load_config,
    user_umask,
    write_private,
)
from skytui.logs.store import open_private_append

if TYPE_CHECKING:
    from skytui.clouds.nodes.sshnode import SSHNode


def _process_exited(pid: int) -> bool:
    """Gone, or a zombie: a node host this process spawned stays one until
    the next subprocess call reaps it, yet it serves nothing."""
    return not process_running(pid)


class SandboxHost:
    """The node host and the sandboxes of one infra (`local` or `sim`)."""

    def __init__(self, paths: Paths, infra: str, *, idle_exit_s: float | None = None) -> None:
        self.paths = paths
        self.infra = infra
        # None: config.yaml's infra.local.nodehost_idle_exit_s, read when starting one.
        self.idle_exit_s = idle_exit_s
        self.client_key_path = paths.keys / "id_ed25519"
        self.host_key_path = paths.keys / "nodehost_host_key"
        self._start_lock = asyncio.Lock()
        self._up_sandboxes = UpSandboxes(paths.nodes)
        self._markers: dict[str, dict[str, Any]] = {}  # by sandbox name; see _refresh_markers()
        # This infra's nodes by (region, spot), kept with the markers.
        self._in_use: collections.Counter[tuple[str | None, bool]] = collections.Counter()
        self._markers_lock = threading.Lock()  # refreshed from worker threads
        self._teardown = SandboxTeardown()

    def _advertised_pid(self) -> int | None:
        """The pid in the node host's state file, if that process still runs."""
        try:
            pid = int(json.loads((self.paths.nodes / STATE_FILE).read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return None if _process_exited(pid) else pid

    def _node_host_state(self) -> dict[str, int] | None:
        try:
            state = json.loads((self.paths.nodes / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        if _process_exited(int(state["pid"])):
            return None
        try:
            with socket.create_connection(("127.0.0.1", int(state["port"])), timeout=2):
                pass
        except OSError:
            return None
        return {"pid": int(state["pid"]), "port": int(state["port"])}

    async def ensure_node_host(self, timeout: float = 20.0) -> int:
        """The node host's port, starting the node host if it is not running
        (or is exiting: a successor waits for it to finish, then serves)."""
        async with self._start_lock:
            state = await asyncio.to_thread(self._node_host_state)
            if state is not None:
                return state["port"]
            await asyncio.to_thread(self._spawn_node_host)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                state = await asyncio.to_thread(self._node_host_state)
                if state is not None:
                    return state["port"]
                await asyncio.sleep(0.05)
            raise CloudError(
                f"the local node host did not start within {timeout:g}s; "
                f"see {self.paths.logs / 'nodehost.log'}"
            )

    def _spawn_node_host(self) -> None:
        from skytui.clouds.keys import (  # asyncssh: not for plain CLI calls
            ensure_keypair,
            public_key_line,
        )

        self.paths.ensure()
        client_key = ensure_keypair(self.client_key_path)
        ensure_keypair(self.host_key_path)
        authorized = self.paths.keys / "nodehost_authorized_keys"
        write_private(authorized, (public_key_line(client_key) + "\n").encode())
        # The state file stays: if a node host still serves (another process
        # started one a moment ago), the new one sees it and leaves, and the
        # caller's wait finds the live one.
        with open_private_append(self.paths.logs / "nodehost.log") as log:
            subprocess.Popen(
                [
                    sys.executable, "-m", "skytui.clouds.nodehost",
                    "--root", str(self.paths.nodes),
                    "--host-key", str(self.host_key_path),
                    "--authorized-keys", str(authorized),
                    "--idle-exit-s", f"{self._idle_exit_s():g}",
                    # Ours may be restricted (owner-only files); jobs get the user's.
                    "--job-umask", f"{user_umask():03o}",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, close_fds=True,
            )

    def _idle_exit_s(self) -> float:
        if self.idle_exit_s is not None:
            return self.idle_exit_s
        try:
            return load_config(self.paths).infra.local.nodehost_idle_exit_s
        except ConfigError:
            return LocalInfraConfig().nodehost_idle_exit_s

    def stop_node_host(self) -> None:
        """For tests and `controller stop --all`: jobs on nodes keep running."""
        state = self._node_host_state()
        if state is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["pid"], signal.SIGTERM)

    def stop_node_host_if_idle(self, timeout: float = 10.0) -> bool:
        """Ask the node host to exit now if it serves no node (no sandbox of
        any infra, no connection); True once it has exited. It judges for
        itself, so a node made or a login begun meanwhile keeps it up.
        Blocking: for the CLI, not for an event loop."""
        if any(self.paths.nodes.glob(f"*/{NODE_MARKER}")):
            return False  # nodes of some infra are up: the answer is known, no need to wait for it
        pid = self._advertised_pid()  # no probe: a probe is a connection, and would keep it up
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _process_exited(pid):
                return True
            time.sleep(0.05)
        return False

    # -------------------------------------------------------------- sandboxes

    def _sandbox(self, cluster_name: str, rank: int) -> Path:
        return self.paths.nodes / f"{cluster_name}-{rank}"

    def _refresh_markers(self) -> None:
        """Bring the markers up to the directory (the caller holds
        `_markers_lock`). A marker is written once, so each is read once, and
        the names are compared as sets: with 10,000 nodes up, a provision
        (sim counts what is in use) costs one listing of the directory, not
        thousands of reads or Python steps."""
        try:
            names = {name for name in os.listdir(self.paths.nodes) if name not in (LOCK_FILE, STATE_FILE)}
        except OSError:
            names = set()
        for gone in self._markers.keys() - names:
            self._count(self._markers.pop(gone), -1)
        for name in names - self._markers.keys():
            try:
                data = json.loads((self.paths.nodes / name / NODE_MARKER).read_text())
            except (OSError, ValueError):
                continue  # not a node (yet, or any more)
            self._markers[name] = data
            self._count(data, +1)

    def _count(self, marker: dict[str, Any], delta: int) -> None:
        if marker.get("infra", "local") == self.infra:
            self._in_use[(marker.get("region"), bool(marker.get("use_spot")))] += delta

    def sandboxes(self) -> list[tuple[Path, dict[str, Any]]]:
        """This infra's sandboxes and their markers (sandboxes made before the
        marker named its infra are `local`'s)."""
        with self._markers_lock:
            self._refresh_markers()
            return [(self.paths.nodes / name, data) for name, data in self._markers.items()
                    if data.get("infra", "local") == self.infra]

    def nodes_in_use(self, region: str | None, use_spot: bool) -> int:
        """How many of this infra's nodes are in a region and market."""
        with self._markers_lock:
            self._refresh_markers()
            return self._in_use[(region, use_spot)]

    def _cluster_sandboxes(self, cluster_name: str, handle_nodes: Sequence[NodeInfo] | None) -> list[Path]:
        """A cluster's sandboxes: named in its handle, or `<cluster>-<rank>`
        checked against their markers (another cluster's name may extend
        this one's)."""
        if handle_nodes:
            return [self.paths.nodes / node.instance_id for node in handle_nodes]
        prefix = cluster_name + "-"
        return [path for path, marker in self.sandboxes()
                if path.name.startswith(prefix) and path.name[len(prefix):].isdigit()
                and marker.get("cluster") == cluster_name]

    async def create(self, cluster_name: str, num_nodes: int, meta: dict[str, Any]) -> tuple[NodeInfo, ...]:
        """One sandbox per node; `meta` goes into each marker (region, spot, ...)."""
        from skytui.clouds.keys import ensure_keypair, public_key_line

        port = await self.ensure_node_host()
        host_key = public_key_line(ensure_keypair(self.host_key_path))
        nodes = []
        for rank in range(num_nodes):
            sandbox = self._sandbox(cluster_name, rank)
            sandbox.mkdir(mode=0o700, parents=True, exist_ok=True)
            marker = {**meta, "infra": self.infra, "cluster": cluster_name, "rank": rank, "created_at": time.time()}
            write_private(sandbox / NODE_MARKER, json.dumps(marker).encode())
            touch_nodes_dir(self.paths.nodes)  # up from now: tell whoever caches the listing
            nodes.append(
                NodeInfo(
                    rank=rank, host="127.0.0.1", port=port, user=sandbox.name,
                    internal_ip="127.0.0.1", host_key=host_key, instance_id=sandbox.name,
                )
            )
        return tuple(nodes)

    def state(self, nodes: tuple[NodeInfo, ...]) -> ClusterState:
        present = [_up(self.paths.nodes / node.instance_id) for node in nodes]
        if all(present):
            return ClusterState.UP
        return ClusterState.PARTIAL if any(present) else ClusterState.GONE

    def states(self, handles: Sequence[ClusterHandle]) -> list[ClusterState]:
        """`state` of many clusters for the price of one look at the nodes
        directory while nothing there changed (see UpSandboxes)."""
        up = self._up_sandboxes.names()
        answers = []
        for handle in handles:
            present = [node.instance_id in up for node in handle.nodes]
            answers.append(ClusterState.UP if all(present)
                           else ClusterState.PARTIAL if any(present) else ClusterState.GONE)
        return answers

    async def destroy(
        self, cluster_name: str, *, grace_s: float = 5.0, nodes: Sequence[NodeInfo] | None = None
    ) -> None:
        """Destroy a cluster's sandboxes (`nodes`: its handle's, when known)."""
        # File I/O per node: off the event loop.
        found = await asyncio.to_thread(self._cluster_sandboxes, cluster_name, nodes)
        await self._teardown.destroy(found, grace_s)

    async def give_notice(self, cluster_name: str, deadline: float, signum: int | None) -> int:
        """A preemption notice to a cluster's sandboxes (see `give_notice`)."""
        def notice() -> int:
            return give_notice(self._cluster_sandboxes(cluster_name, None), deadline, signum)

        return await asyncio.to_thread(notice)

    async def cluster_names(self) -> list[str]:
        markers = await asyncio.to_thread(self.sandboxes)
        return sorted({str(marker["cluster"]) for _, marker in markers})

    def node(self, info: NodeInfo) -> SSHNode:
        from skytui.clouds.nodes.sshnode import SSHNode

        # No keepalives: on 127.0.0.1 a dead node host's sockets are closed by
        # the kernel at once, and 10,000 idle connections would otherwise
        # cost both processes a message each every few seconds.
        return SSHNode(info, self.client_key_path, resolve_port=self.ensure_node_host, keepalive_interval_s=0.0)


class UpSandboxes:
    """The names of the sandboxes that are up, listed again only when the
    nodes directory's mtime moved (every create and destroy moves it), so
    asking about 10,000 running nodes costs one stat."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._mtime_ns: int | None = None
        self._names: frozenset[str] = frozenset()

    def names(self) -> frozenset[str]:
        try:
            mtime_ns = os.stat(self.root).st_mtime_ns
        except OSError:
            self._mtime_ns = None
            return frozenset()
        if mtime_ns == self._mtime_ns:
            return self._names
        settled = time.time_ns() - mtime_ns > MTIME_SETTLE_NS
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return frozenset()
        self._names = frozenset(e.name for e in entries if _up(Path(e.path)))
        # A listing taken right after a change is kept for this one answer
        # only: a second change in the same tick would not move the mtime.
        self._mtime_ns = mtime_ns if settled else None
        return self._names


def _up(sandbox: Path) -> bool:
    return (sandbox / NODE_MARKER).is_file() and not (sandbox / TERMINATING_FLAG).exists()
