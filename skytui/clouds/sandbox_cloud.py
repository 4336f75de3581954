"""What the two infras whose machines are sandboxes of this machine's node
host (`local` and `sim`) share: whether a machine is up (the file system
says, cheap enough to ask often), tearing machines down, listing them,
reaching them over SSH, and the node host itself. Each infra adds its own
offers and provisioning (and sim its chaos).

Touches only its SandboxHost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from skytui.clouds.base import ClusterHandle, ClusterState, NodeInfo
from skytui.clouds.sandboxes import SandboxHost
from skytui.config import Paths

if TYPE_CHECKING:
    from skytui.clouds.nodes.sshnode import SSHNode


class SandboxCloud:
    name: str
    absolute_mounts = False
    state_poll_s = 1.0

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.sandboxes = SandboxHost(paths, self.name)
        self.client_key_path = self.sandboxes.client_key_path

    async def ensure_node_host(self, timeout: float = 20.0) -> int:
        return await self.sandboxes.ensure_node_host(timeout)

    def stop_node_host(self) -> None:
        """For tests and `controller stop --all`: jobs on nodes keep running."""
        self.sandboxes.stop_node_host()

    async def cluster_state(self, handle: ClusterHandle) -> ClusterState:
        return self.sandboxes.state(handle.nodes)

    async def cluster_states(self, handles: Sequence[ClusterHandle]) -> list[ClusterState]:
        return self.sandboxes.states(handles)

    async def terminate(self, cluster_name: str, handle: ClusterHandle | None) -> None:
        await self.sandboxes.destroy(cluster_name, nodes=handle.nodes if handle is not None else None)

    async def list_clusters(self) -> list[str]:
        return await self.sandboxes.cluster_names()

    def node(self, info: NodeInfo) -> SSHNode:
        return self.sandboxes.node(info)
