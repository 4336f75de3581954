"""The `local` infra: this machine, its true CPUs, memory and GPUs.

A local node is a sandbox directory served by the node host (nodehost.py), a
separate process this module starts on demand and that outlives whoever
started it, until it has served no node for `infra.local.nodehost_idle_exit_s`
(or its directory is gone); the next call that needs it starts a fresh one.
The controller reaches local nodes over SSH exactly as it reaches cloud VMs.
"The cloud API" here is the file system: provisioning makes the sandboxes,
terminating kills their process groups and removes them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING

from skytui.clouds.base import (
    Accepted,
    ClusterHandle,
    InstanceOffer,
)
from skytui.clouds.sandbox_cloud import SandboxCloud
from skytui.clouds.sandboxes import SandboxHost
from skytui.config import Paths

if TYPE_CHECKING:
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


def stop_nodehost_if_idle(paths: Paths, timeout: float = 10.0) -> bool:
    """For `controller stop`: stop the node host if it serves no node (no
    sandbox of local or sim, no open connection); True if one was running and
    has now exited. A node host with nodes keeps serving them. Blocking."""
    return SandboxHost(paths, "local").stop_node_host_if_idle(timeout)


class LocalCloud(SandboxCloud):
    name = "local"

    def __init__(self, paths: Paths, *, provision_delay_s: float = 0.0) -> None:
        super().__init__(paths)
        self.provision_delay_s = provision_delay_s

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

    def describe(self) -> str:
        machine = self.machine
        gpus = machine.accelerators_str if machine.accelerators else "no GPUs"
        return f"this machine, {machine.cpus:g} vCPUs, {machine.memory_gb:g} GB, {gpus} (on-demand only)"

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

    # --------------------------------------------------------------- clusters

    async def provision(
        self, cluster_name: str, offer: InstanceOffer, num_nodes: int, *, labels: Mapping[str, str] | None = None,
        accepted: Accepted | None = None,
    ) -> ClusterHandle:
        await self.sandboxes.ensure_node_host()
        if accepted is not None:
            await accepted()  # this machine never runs out: the delay rehearses the boot
        if self.provision_delay_s:
            await asyncio.sleep(self.provision_delay_s)
        nodes = await self.sandboxes.create(cluster_name, num_nodes, {})
        return ClusterHandle(
            cloud=self.name, name=cluster_name, region=None, zone=None, nodes=nodes,
            accelerators=dict(offer.accelerators),
        )
