"""The node host's housekeeping: which nodes there are, reclaiming sim spot
nodes when due, and why the node host should stop serving (its directory
gone, idle, or asked); with the state file that advertises a live node host.

May touch the nodes directory (local_layout.py) and sandbox_teardown.py;
the NodeHost itself (nodehost.py) only through the idle_for and
stop_listening it offers.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from skytui.aio import first_of
from skytui.clouds.local_layout import MTIME_SETTLE_NS, NODE_MARKER, STATE_FILE
from skytui.config import write_private

if TYPE_CHECKING:
    from skytui.clouds.nodehost import NodeHost

# How often the node host looks at its directory (gone? nodes due for reclaim? idle?).
WATCH_EVERY_S = 0.5


def _identity(path: Path) -> tuple[int, int] | None:
    """Which directory `path` is (device, inode), or None if it is gone: a
    directory deleted and made again at the same path is someone else's."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class NodeDirs:
    """The nodes (sandboxes with a marker) under root, listed again only when
    root's mtime moved: every sandbox made or destroyed moves it (see
    sandboxes.touch_nodes_dir), so 10,000 idle nodes cost one stat a look."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._identity = _identity(root)
        self._mtime_ns: int | None = None
        self._nodes: list[Path] = []

    def list(self) -> list[Path] | None:
        """None if root is gone (or is another directory now)."""
        try:
            st = os.stat(self.root)
        except OSError:
            return None
        if (st.st_dev, st.st_ino) != self._identity:
            return None
        if st.st_mtime_ns == self._mtime_ns:
            return self._nodes
        settled = time.time_ns() - st.st_mtime_ns > MTIME_SETTLE_NS
        try:
            entries = list(os.scandir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            return None
        self._nodes = [Path(e.path) for e in entries if os.path.isfile(os.path.join(e.path, NODE_MARKER))]
        self._mtime_ns = st.st_mtime_ns if settled else None  # see sandboxes.UpSandboxes
        return self._nodes


class Reclaimer:
    """The simulated clouds' clock: destroys each node whose marker names a
    `reclaim_at` time (a sim spot node drew one at provisioning) once it has
    passed, watched or not, as a cloud reclaims a spot VM."""

    def __init__(self) -> None:
        self._reclaim_at: dict[str, float | None] = {}  # markers are written once: read each once

    def _due(self, nodes: list[Path], now: float) -> list[Path]:
        due = []
        for node in nodes:
            if node.name not in self._reclaim_at:
                try:
                    self._reclaim_at[node.name] = json.loads((node / NODE_MARKER).read_text()).get("reclaim_at")
                except (OSError, ValueError):
                    continue  # not written yet, or just destroyed
            at = self._reclaim_at[node.name]
            if at is not None and at <= now:
                due.append(node)
        for gone in set(self._reclaim_at) - {node.name for node in nodes}:
            del self._reclaim_at[gone]
        return due

    async def reclaim_due(self, nodes: list[Path]) -> None:
        from skytui.clouds.sandbox_teardown import destroy_sandbox

        due = await asyncio.to_thread(self._due, nodes, time.time())
        for node in due:
            print(f"reclaiming {node.name} (spot preemption due at {self._reclaim_at[node.name]:.0f})", flush=True)
            await asyncio.to_thread(destroy_sandbox, node, 1.0)
            self._reclaim_at[node.name] = None


class Watch:
    """Why the node host should stop serving, checked every WATCH_EVERY_S:
    its directory is gone, or it has served no node for idle_exit_s (at once
    when asked with SIGUSR1: `controller stop`)."""

    def __init__(self, root: Path, host: NodeHost, idle_exit_s: float) -> None:
        self.root = root
        self.host = host
        self.idle_exit_s = idle_exit_s
        self._node_dirs = NodeDirs(root)
        # Requests to exit now if idle, and how many of them a verdict answered:
        # one that came during a scan is answered by the next scan, not this one.
        self._asked = 0
        self._answered = 0
        self._wake = asyncio.Event()
        self._reclaimer = Reclaimer()

    def ask_exit_if_idle(self) -> None:
        """SIGUSR1 (`controller stop`): exit at once if no node is served."""
        self._asked += 1
        self._wake.set()

    async def until_done(self, stop: asyncio.Event) -> str:
        """Runs until the node host should exit; says why. An idle verdict
        stops the listener with no await in between: a connection is either
        counted before the verdict or refused after it."""
        while not stop.is_set():
            asked_so_far = self._asked
            scanned_at = time.monotonic()
            nodes = await asyncio.to_thread(self._node_dirs.list)
            if nodes is None:
                return f"{self.root} is gone"
            await self._reclaimer.reclaim_due(nodes)
            idle = self.host.idle_for(len(nodes), scanned_at)
            asked = asked_so_far > self._answered
            if idle and (idle >= self.idle_exit_s or asked):
                # Withdrawn first: whoever finds the port closed from here on
                # finds no state either, and starts a successor at once.
                withdraw_state(self.root)
                self.host.stop_listening()
                return "asked to exit while serving no node" if asked else f"served no node for {idle:.0f}s"
            if idle is None:
                self._answered = asked_so_far  # serving: those requests are answered
            if self._asked > self._answered:
                continue  # asked during the scan, or something ended during it: look again
            self._wake.clear()
            await first_of(stop.wait(), self._wake.wait(), timeout=WATCH_EVERY_S)
        return "asked to stop"


# ------------------------------------------------------------- the state file


def write_state(root: Path, port: int) -> None:
    write_private(root / STATE_FILE, json.dumps({"pid": os.getpid(), "port": port, "host": "127.0.0.1"}).encode())


def withdraw_state(root: Path) -> None:
    """Stop advertising this node host, so that whoever looks next starts a new one."""
    try:
        state = json.loads((root / STATE_FILE).read_text())
        if state.get("pid") == os.getpid():
            (root / STATE_FILE).unlink()
    except (OSError, ValueError):
        pass
