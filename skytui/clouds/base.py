"""The Cloud and Node protocols every infra implements, and their errors.

A Cloud turns an offer (an instance type in a region, spot or not) into a
cluster of nodes, says whether those machines are still up, and terminates
them. A Node is one machine the controller drives: it runs short commands,
uploads files, and starts *phases* (setup, run) detached, so that they survive
SSH drops and controller restarts, then reports their exit code and serves
their output by byte offset. Clouds know nothing of the engine.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from skytui.spec import Resources

# Where a node keeps its detached phases, relative to the login's home.
PHASES_DIR = ".skytui/phases"


class CloudError(RuntimeError):
    """Base of every infra failure."""


class PrecheckError(CloudError):
    """The request can never succeed as given: no credentials, bad config."""


class CapacityError(CloudError):
    """No capacity right now for this offer; another region or later may work."""


class NodeError(CloudError):
    """A node could not be reached or refused a command."""


def infra_label(cloud: str, region: str | None, zone: str | None = None) -> str:
    """How a place is written everywhere: `aws/us-east-1/us-east-1a`, and for
    sim, whose regions name the cloud they mirror, `sim:aws/us-east-1`."""
    place = "/".join(part for part in (region, zone) if part)
    if not place:
        return cloud
    return f"{cloud}:{place}" if cloud == "sim" else f"{cloud}/{place}"


@dataclass(frozen=True)
class InstanceOffer:
    """One place a task could run, with its hourly price."""

    cloud: str
    instance_type: str
    cpus: float
    memory_gb: float
    region: str | None = None
    zone: str | None = None
    accelerators: dict[str, float] = field(default_factory=dict)
    use_spot: bool = False
    price_per_hour: float = 0.0
    # The boot disk the task asked for (resources.disk_size, GB); None: the
    # infra's own default. Only infra that sizes disks sets it (aws, gcp).
    disk_size_gb: int | None = None

    @property
    def infra(self) -> str:
        return infra_label(self.cloud, self.region, self.zone)

    @property
    def accelerators_str(self) -> str:
        return ", ".join(f"{name}:{count:g}" for name, count in self.accelerators.items()) or "-"


@dataclass(frozen=True)
class NodeInfo:
    """How to reach one node: stored in the cluster row, so a restarted
    controller reconnects to the same machine and checks the same host key."""

    rank: int
    host: str
    port: int
    user: str
    internal_ip: str
    host_key: str  # OpenSSH public key, pinned at provisioning
    instance_id: str
    # This node's own directory under the login's home, where its phases,
    # workdir and relative uploads live: "" on a machine of its own (a VM, a
    # sandbox), a lease directory on a host that several jobs share.
    workspace: str = ""

    def path(self, relative: str) -> str:
        """A path relative to the login's home, inside this node's workspace."""
        return f"{self.workspace}/{relative}" if self.workspace else relative

    @property
    def phases_dir(self) -> str:
        return self.path(PHASES_DIR)


@dataclass(frozen=True)
class ClusterHandle:
    cloud: str
    name: str
    region: str | None
    zone: str | None
    nodes: tuple[NodeInfo, ...]
    accelerators: dict[str, float] = field(default_factory=dict)  # per node
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["nodes"] = [asdict(node) for node in self.nodes]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterHandle:
        return cls(
            cloud=data["cloud"],
            name=data["name"],
            region=data.get("region"),
            zone=data.get("zone"),
            nodes=tuple(NodeInfo(**node) for node in data["nodes"]),
            accelerators=data.get("accelerators", {}),
            extra=data.get("extra", {}),
        )


Accepted = Callable[[], Awaitable[None]]
"""Told by `Cloud.provision` when the infra has said yes (see there)."""


class ClusterState(str, enum.Enum):
    UP = "UP"          # every node is up
    PARTIAL = "PARTIAL"  # some node is gone
    GONE = "GONE"      # terminated, preempted or never existed


@dataclass(frozen=True)
class PhaseState:
    """What a node knows about a detached phase (None: not looked at)."""

    started: bool | None
    pid: int | None
    exit_code: int | None
    alive: bool | None  # None when not checked
    ended_at: float | None = None
    """When the phase ended by the node's own clock (read once it has)."""
    output_size: int | None = None
    """The size of its output when the node last said it (with its exit
    code, or when its watch began), None when unknown: the copy knows where
    the output stops, and reads nothing when it has it all."""

    @property
    def finished(self) -> bool:
        return self.exit_code is not None


class Node(Protocol):
    info: NodeInfo

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def run(
        self, command: str, *, env: dict[str, str] | None = None, timeout: float = 60.0,
        input: str | None = None,
    ) -> tuple[int, str, str]:
        """A short command in the login's home: (exit status, stdout, stderr).
        `env` goes on the command line, so never secrets; `input` is its stdin."""
        ...

    async def upload(self, local_path: str, remote_path: str) -> None: ...

    async def start_phase(
        self, phase_id: str, script: str, env: dict[str, str], *, cwd: str | None = None
    ) -> int: ...

    async def phase_state(self, phase_id: str, *, check_alive: bool = False) -> PhaseState: ...

    async def read_phase_output(self, phase_id: str, offset: int, max_bytes: int) -> bytes: ...

    async def kill_phase(self, phase_id: str, *, grace_s: float = 5.0) -> None: ...

    async def watch_phase(self, phase_id: str) -> asyncio.Event | None:
        """An Event the node sets whenever the phase may have changed (output,
        exit, its process gone): clear it, look, then wait on it. None for a
        node that cannot tell: the caller looks every so often instead."""
        ...

    def unwatch_phase(self, phase_id: str) -> None: ...

    async def wait_phase_notice(self, phase_id: str) -> float | None:
        """Until the node says the phase's machine was given a preemption
        notice (the wrapper's watcher wrote `notice`): its deadline. None when
        this node cannot say so (no watch stream, or it ended): the caller
        reads the notice file now and then instead."""
        ...


@dataclass(frozen=True)
class InfraStatus:
    """What `skytui check` says of one infra."""

    name: str
    enabled: bool
    reason: str  # what was found, or why it is off
    fix: str = ""  # what to do to enable it ("" when enabled)


class Cloud(Protocol):
    name: str
    # How often the controller may ask cluster_state while a job runs.
    state_poll_s: float
    # True where a node is a machine of its own, so a file mount to `/data`
    # lands at /data; False for this machine's sandboxes, which keep every
    # target inside the node's home.
    absolute_mounts: bool

    def describe(self) -> str:
        """What this infra offers, in one line: for `skytui check` and for
        the message of a request nothing fits."""
        ...

    def offers(self, request: Resources) -> list[InstanceOffer]:
        """Every feasible offer for one concrete candidate (no any_of/ordered)."""
        ...

    async def provision(
        self, cluster_name: str, offer: InstanceOffer, num_nodes: int, *, labels: Mapping[str, str] | None = None,
        accepted: Accepted | None = None,
    ) -> ClusterHandle:
        """Bring up `num_nodes` machines, reachable, or raise CapacityError
        (try elsewhere) or PrecheckError (never works). `labels` say who owns
        the machines (skytui-job/skytui-task, or skytui-pool/skytui-worker);
        tag them with these, plus the cluster name and the install id.
        `accepted` is awaited once the infra has said yes (capacity granted,
        the machines on their way), before waiting for them to boot: the
        caller's task is STARTING from then, PENDING before. An infra that
        cannot tell leaves it to the caller, who counts the return as yes."""
        ...

    async def cluster_state(self, handle: ClusterHandle) -> ClusterState: ...

    async def cluster_states(self, handles: Sequence[ClusterHandle]) -> list[ClusterState]:
        """`cluster_state` of many clusters at once (the controller asks about
        every running cluster of an infra together, once per state_poll_s)."""
        ...

    async def terminate(self, cluster_name: str, handle: ClusterHandle | None) -> None:
        """Idempotent: terminating a gone cluster is not an error."""
        ...

    async def list_clusters(self) -> list[str]:
        """Names of every cluster this infra holds for skytui (the leak sweep)."""
        ...

    def node(self, info: NodeInfo) -> Node: ...


async def states_one_by_one(cloud: Cloud, handles: Sequence[ClusterHandle]) -> list[ClusterState]:
    """`Cloud.cluster_states` for an infra whose `cluster_state` already
    shares one listing per period among all callers."""
    return list(await asyncio.gather(*(cloud.cluster_state(handle) for handle in handles)))
