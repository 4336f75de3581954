"""The `local` infra: this machine, its true CPUs, memory and GPUs.

A local node is a sandbox directory served by the node host (nodehost.py), a
separate process this module starts on demand and that outlives whoever
started it. The controller reaches local nodes over SSH exactly as it reaches
cloud VMs. "The cloud API" here is the file system: provisioning makes the
sandboxes, terminating kills their process groups and removes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from skytui.clouds.base import (
    PHASES_DIR,
    CloudError,
    ClusterHandle,
    ClusterState,
    InstanceOffer,
    NodeInfo,
)
from skytui.clouds.local_layout import LOCK_FILE, NODE_MARKER, STATE_FILE
from skytui.config import Paths

if TYPE_CHECKING:
    from skytui.clouds.sshnode import SSHNode
    from skytui.spec import Resources


LOCAL_INSTANCE_TYPE = "local"


def _total_memory_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / 1024**3


def _local_gpus() -> dict[str, float]:
    """GPU name -> count, from nvidia-smi when there is one."""
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    gpus: dict[str, float] = {}
    for line in out.splitlines():
        # "NVIDIA H100 80GB HBM3" -> "H100", the catalog's accelerator name.
        words = [w for w in line.replace("NVIDIA", "").split() if w]
        if words:
            gpus[words[0]] = gpus.get(words[0], 0) + 1
    return gpus


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalCloud:
    name = "local"

    def __init__(self, paths: Paths, *, provision_delay_s: float = 0.0) -> None:
        self.paths = paths
        self.provision_delay_s = provision_delay_s
        self.client_key_path = paths.keys / "id_ed25519"
        self.host_key_path = paths.keys / "nodehost_host_key"
        self._start_lock = asyncio.Lock()

    # ----------------------------------------------------------------- offers

    @cached_property
    def machine(self) -> InstanceOffer:
        return InstanceOffer(
            cloud=self.name,
            instance_type=LOCAL_INSTANCE_TYPE,
            cpus=float(os.cpu_count() or 1),
            memory_gb=round(_total_memory_gb(), 1),
            accelerators=_local_gpus(),
        )

    def offers(self, request: Resources) -> list[InstanceOffer]:
        machine = self.machine
        if request.cloud not in (None, self.name) or request.region or request.zone:
            return []
        if request.use_spot:
            return []  # this machine cannot be preempted, so it offers no spot
        if request.instance_type not in (None, LOCAL_INSTANCE_TYPE):
            return []
        # Local nodes share the machine, so cpus and memory are minimums to fit.
        if request.cpus_min is not None and request.cpus_min > machine.cpus:
            return []
        if request.memory_min is not None and request.memory_min > machine.memory_gb:
            return []
        for accelerator in request.accelerators:
            if accelerator.name is None or machine.accelerators.get(accelerator.name, 0) < accelerator.count:
                return []
        return [machine]

    # -------------------------------------------------------------- node host

    def _node_host_state(self) -> dict[str, int] | None:
        try:
            state = json.loads((self.paths.nodes / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not _pid_alive(int(state["pid"])):
            return None
        try:
            with socket.create_connection(("127.0.0.1", int(state["port"])), timeout=2):
                pass
        except OSError:
            return None
        return {"pid": int(state["pid"]), "port": int(state["port"])}

    async def ensure_node_host(self, timeout: float = 20.0) -> int:
        """The node host's port, starting the node host if it is not running."""
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
        authorized.write_text(public_key_line(client_key) + "\n")
        with contextlib.suppress(FileNotFoundError):
            (self.paths.nodes / STATE_FILE).unlink()
        log = open(self.paths.logs / "nodehost.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            subprocess.Popen(
                [
                    sys.executable, "-m", "skytui.clouds.nodehost",
                    "--root", str(self.paths.nodes),
                    "--host-key", str(self.host_key_path),
                    "--authorized-keys", str(authorized),
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, close_fds=True,
            )
        finally:
            log.close()

    def stop_node_host(self) -> None:
        """For tests and `controller stop --all`: jobs on nodes keep running."""
        state = self._node_host_state()
        if state is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["pid"], signal.SIGTERM)

    # --------------------------------------------------------------- clusters

    def _sandbox(self, cluster_name: str, rank: int) -> Path:
        return self.paths.nodes / f"{cluster_name}-{rank}"

    def _sandboxes(self) -> list[tuple[Path, dict[str, object]]]:
        found: list[tuple[Path, dict[str, object]]] = []
        if not self.paths.nodes.is_dir():
            return found
        for entry in self.paths.nodes.iterdir():
            marker = entry / NODE_MARKER
            if entry.name == LOCK_FILE or not marker.is_file():
                continue
            try:
                found.append((entry, json.loads(marker.read_text())))
            except (OSError, ValueError):
                continue
        return found

    async def provision(self, cluster_name: str, offer: InstanceOffer, num_nodes: int) -> ClusterHandle:
        from skytui.clouds.keys import ensure_keypair, public_key_line

        port = await self.ensure_node_host()
        if self.provision_delay_s:
            await asyncio.sleep(self.provision_delay_s)
        host_key = public_key_line(ensure_keypair(self.host_key_path))
        nodes = []
        for rank in range(num_nodes):
            sandbox = self._sandbox(cluster_name, rank)
            sandbox.mkdir(mode=0o700, parents=True, exist_ok=True)
            (sandbox / NODE_MARKER).write_text(
                json.dumps({"cluster": cluster_name, "rank": rank, "created_at": time.time()})
            )
            nodes.append(
                NodeInfo(
                    rank=rank, host="127.0.0.1", port=port, user=sandbox.name,
                    internal_ip="127.0.0.1", host_key=host_key, instance_id=sandbox.name,
                )
            )
        return ClusterHandle(
            cloud=self.name, name=cluster_name, region=None, zone=None, nodes=tuple(nodes),
            accelerators=dict(offer.accelerators),
        )

    async def cluster_state(self, handle: ClusterHandle) -> ClusterState:
        present = [
            (self.paths.nodes / node.instance_id / NODE_MARKER).is_file() for node in handle.nodes
        ]
        if all(present):
            return ClusterState.UP
        return ClusterState.PARTIAL if any(present) else ClusterState.GONE

    async def terminate(self, cluster_name: str, handle: ClusterHandle | None) -> None:
        sandboxes = [path for path, marker in self._sandboxes() if marker.get("cluster") == cluster_name]
        await asyncio.gather(*(asyncio.to_thread(_destroy_sandbox, path) for path in sandboxes))

    async def list_clusters(self) -> list[str]:
        return sorted({str(marker["cluster"]) for _, marker in self._sandboxes()})

    def node(self, info: NodeInfo) -> SSHNode:
        from skytui.clouds.sshnode import SSHNode

        return SSHNode(info, self.client_key_path, resolve_port=self.ensure_node_host)


def _phase_pids(sandbox: Path) -> list[int]:
    pids = []
    for pid_file in (sandbox / PHASES_DIR).glob("*/pid"):
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(pid_file.read_text().strip()))
    return pids


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _processes_of(sandbox: Path) -> list[int]:
    """Every process living on a node, including those a job detached from its
    phase's process group (setsid daemons): its cwd is in the sandbox, or the
    node host gave it the sandbox as HOME."""
    home = str(sandbox)
    marker = f"HOME={home}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(proc / "cwd").removesuffix(" (deleted)")
            if cwd == home or cwd.startswith(home + "/"):
                found.append(int(proc.name))
                continue
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
    return found


def _destroy_sandbox(sandbox: Path, grace_s: float = 5.0) -> None:
    """What terminating a VM does: every process on it ends, its disk is gone."""
    groups = _phase_pids(sandbox)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in _processes_of(sandbox):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    # The marker goes first so a half-removed sandbox never reads as a live node.
    with contextlib.suppress(FileNotFoundError):
        (sandbox / NODE_MARKER).unlink()
    shutil.rmtree(sandbox, ignore_errors=True)
