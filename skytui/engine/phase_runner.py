"""Running a phase on a cluster's nodes and following it to its end: the
I/O half of a job's attempt and of a pool worker's setup.

The controller and the pool manager keep the decisions (states, recovery,
records); a PhaseRunner does the talking to the nodes: connect, start a
phase exactly once (or re-attach to it), copy its output by offset, wait for
the nodes' pushed notices and for the infra's word on the machine, retry
over SSH drops while the infra says the machine is up, and stop a phase.
Only the infra says a machine is gone, never SSH.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from skytui.aio import first_of
from skytui.clouds.base import Cloud, ClusterHandle, ClusterState, Node, NodeError
from skytui.engine.machine_watch import MachineWatch, MachineWatcher
from skytui.engine.store import ClusterRow
from skytui.logs.sync import sync_phase_output

T = TypeVar("T")
# A node that cannot push is looked at fast right after a phase starts (short
# jobs end in milliseconds), then once a second.
POLL_FIRST_S = 0.05
POLL_MAX_S = 1.0
LIVENESS_EVERY_S = 10.0
# A node that pushes its phases' changes is still looked at this often, in
# case a notice was lost: never needed, so rare.
SAFETY_LOOK_S = 600.0
# How long a freshly provisioned node may refuse SSH before the launch gives up
# on it (a running job is never given up while its machine is up).
UNREACHABLE_GRACE_S = 60.0


class NodeLost(Exception):
    """The machine under a phase is gone (or its process vanished)."""


class PhaseNeverBegan(Exception):
    """A phase's wrapper was killed before it started the user's script (a
    connection cut at the wrong moment): it is started again, in place."""

    def __init__(self, rank: int) -> None:
        super().__init__(f"node {rank}")
        self.rank = rank


@dataclass(frozen=True)
class PhaseOutcome:
    """How a phase ended on every node: exit codes by rank, and when the last
    node finished by its own clock (None if no node said)."""

    codes: list[int]
    ended_at: float | None = None


@dataclass
class LiveCluster:
    """A cluster that is up, and the open connections to its nodes."""

    row: ClusterRow
    handle: ClusterHandle
    cloud: Cloud
    nodes: list[Node] = field(default_factory=list)


class PhaseRunner:
    def __init__(
        self, cluster: LiveCluster, machines: MachineWatcher, *, say: Callable[[str], None],
        secrets: Sequence[bytes] = (),
    ) -> None:
        self.cluster = cluster
        self.machines = machines
        self.say = say  # one line for the job's (or worker's) log
        self.secrets = secrets  # masked in the copied output

    async def connect(self, *, give_up_after_s: float | None = UNREACHABLE_GRACE_S) -> None:
        """Reach every node. A fresh machine that never answers is given up
        after a grace period; one running a job (give_up_after_s=None) only
        when the infra says it is gone."""
        cluster = self.cluster
        if not cluster.nodes:
            cluster.nodes = [cluster.cloud.node(info) for info in cluster.handle.nodes]
        await self.while_up(
            "connecting", lambda: asyncio.gather(*(node.connect() for node in cluster.nodes)),
            give_up_after_s=give_up_after_s,
        )

    async def start(
        self, phase_id: str, script: str, env_for: Callable[[int], dict[str, str]], *, cwd: str | None,
        ranks: Sequence[int] | None = None, give_up_after_s: float | None = UNREACHABLE_GRACE_S,
    ) -> list[int]:
        """Start the phase (exactly once: a phase already started answers with
        its pid) on every node, or on `ranks`; their pids."""
        async def start_on(rank: int) -> int:
            # The nodes of now: a retry after an SSH drop has fresh connections.
            return await self.cluster.nodes[rank].start_phase(phase_id, script, env_for(rank), cwd=cwd)

        chosen = list(range(len(self.cluster.nodes))) if ranks is None else list(ranks)
        return list(await self.while_up(
            f"starting {phase_id}", lambda: asyncio.gather(*(start_on(rank) for rank in chosen)),
            give_up_after_s=give_up_after_s,
        ))

    async def follow(
        self, phase_id: str, paths: list[Path], starts: list[int],
        on_node_done: Callable[[int], Awaitable[None]] | None = None,
    ) -> PhaseOutcome:
        """Copy the phase's output into `paths` (node by node, each from its
        segment's start in `starts`) until every node has an exit code;
        `on_node_done(rank)` once a node's output is all copied. NodeLost when
        the infra says the machine is gone (or the process vanished);
        PhaseNeverBegan when a node's phase was killed before the user's
        script began."""
        machine = self.machines.watch(self.cluster.cloud, self.cluster.handle)
        try:
            return await self._follow(machine, phase_id, paths, starts, on_node_done)
        finally:
            self.machines.unwatch(self.cluster.cloud, machine)
            for node in self.cluster.nodes:
                node.unwatch_phase(phase_id)

    async def _follow(
        self, machine: MachineWatch, phase_id: str, paths: list[Path], starts: list[int],
        on_node_done: Callable[[int], Awaitable[None]] | None,
    ) -> PhaseOutcome:
        """Look at the phase on every node whenever a node says it changed (or,
        on a node that cannot say, every so often), until every node has an
        exit code; the infra's word that the machine is gone ends it at once.
        A phase that prints nothing costs nothing between two looks."""
        interval = POLL_FIRST_S
        # The first look checks that the phase lives: after a (re)start, a pid
        # on record may name a process that never got going. A node that
        # cannot push is asked again every LIVENESS_EVERY_S; one that pushes
        # says itself when the process is gone.
        first_look = [True] * len(self.cluster.nodes)
        last_liveness = time.monotonic()
        unreachable_since: float | None = None
        codes: list[int | None] = [None] * len(self.cluster.nodes)
        ended: list[float] = []
        while True:
            if machine.lost.is_set():
                raise NodeLost(f"{self.cluster.row.name} is no longer up")
            liveness_due = time.monotonic() - last_liveness > LIVENESS_EVERY_S
            if liveness_due:
                last_liveness = time.monotonic()
            signals: list[asyncio.Event | None] = []
            try:
                for rank, node in enumerate(self.cluster.nodes):
                    if codes[rank] is not None:
                        continue
                    # Cleared before the look: a change made after it wakes the wait below.
                    signal = await node.watch_phase(phase_id)
                    if signal is not None:
                        signal.clear()
                    signals.append(signal)
                    # A node that pushes checks the process itself when the
                    # watch begins, and says when it is gone.
                    state = await node.phase_state(
                        phase_id, check_alive=signal is None and (first_look[rank] or liveness_due))
                    # Read the output after the exit code: once the code is there,
                    # everything the phase printed is on disk.
                    await sync_phase_output(node, phase_id, paths[rank], starts[rank], drain=state.finished,
                                            secrets=self.secrets, size=state.output_size)
                    first_look[rank] = False
                    if state.finished:
                        codes[rank] = state.exit_code
                        if state.ended_at is not None:
                            ended.append(state.ended_at)
                        if on_node_done is not None:
                            await on_node_done(rank)
                    elif state.alive is False:
                        if state.started is False:
                            raise PhaseNeverBegan(rank)
                        raise NodeLost(f"the {phase_id} process vanished on node {rank}")
                unreachable_since = None
            except NodeError as exc:
                # Only the infra can say a machine is gone; SSH alone never can.
                if await self.cluster.cloud.cluster_state(self.cluster.handle) is not ClusterState.UP:
                    raise NodeLost(f"{self.cluster.row.name} is no longer up") from exc
                # The machine is up and SSH dropped: re-attach, never relaunch a live job.
                if unreachable_since is None:
                    unreachable_since = time.monotonic()
                    self.say(f"{self.cluster.row.name} is up but unreachable ({exc}); re-attaching")
                await self.reconnect()
                first_look = [True] * len(self.cluster.nodes)
                continue
            if any(code not in (None, 0) for code in codes) and (
                await self.cluster.cloud.cluster_state(self.cluster.handle) is not ClusterState.UP
            ):
                # Killed by its machine going away (SIGTERM at a spot reclaim),
                # not by its own fault: a preemption, never a user failure.
                raise NodeLost(f"{self.cluster.row.name} went down under {phase_id}")
            if all(code is not None for code in codes):
                return PhaseOutcome([int(code) for code in codes if code is not None], max(ended, default=None))
            if any(code not in (None, 0) for code in codes):
                # One node failed: the task has failed; stop the others, keep their output.
                await self.kill(phase_id)
                for rank, node in enumerate(self.cluster.nodes):
                    if codes[rank] is None:
                        with contextlib.suppress(NodeError):
                            await sync_phase_output(node, phase_id, paths[rank], starts[rank], drain=True,
                                                    secrets=self.secrets)
                return PhaseOutcome([code if code is not None else -1 for code in codes], max(ended, default=None))
            if all(signal is not None for signal in signals):
                # Every node pushes: wait for one to speak, or for the infra.
                waits = [signal.wait() for signal in signals if signal is not None]
                await first_of(*waits, machine.lost.wait(), timeout=SAFETY_LOOK_S)
                if not any(signal.is_set() for signal in signals if signal is not None):
                    # A long silence: watch afresh, and the nodes say again
                    # where each phase stands (a lost notice costs this much).
                    for rank, node in enumerate(self.cluster.nodes):
                        if codes[rank] is None:
                            node.unwatch_phase(phase_id)
                interval = POLL_MAX_S
            else:
                await first_of(machine.lost.wait(), timeout=interval)
                interval = min(POLL_MAX_S, interval * 1.5)

    async def reconnect(self) -> None:
        """Fresh connections to every node (the old ones are closed)."""
        cluster = self.cluster
        old, cluster.nodes = cluster.nodes, [cluster.cloud.node(info) for info in cluster.handle.nodes]
        for node in old:
            with contextlib.suppress(Exception):
                await node.close()
        await asyncio.sleep(1.0)

    async def while_up(
        self, what: str, action: Callable[[], Awaitable[T]],
        *, give_up_after_s: float | None = UNREACHABLE_GRACE_S,
    ) -> T:
        """Do an idempotent `action` on the nodes, again after reconnecting
        while SSH fails and the infra says the machine is up: an SSH drop
        never relaunches a job. A fresh machine is given up after
        `give_up_after_s` (None: never, while it is up)."""
        deadline = None if give_up_after_s is None else time.monotonic() + give_up_after_s
        told = False
        while True:
            try:
                return await action()
            except NodeError as exc:
                if await self.cluster.cloud.cluster_state(self.cluster.handle) is not ClusterState.UP:
                    raise NodeLost(f"{self.cluster.row.name} is no longer up") from exc
                if deadline is not None and time.monotonic() > deadline:
                    raise NodeLost(f"{self.cluster.row.name} unreachable for {give_up_after_s:g}s: {exc}") from exc
                if not told:
                    told = True
                    self.say(f"{self.cluster.row.name} is up but SSH failed while {what} ({exc}); retrying")
                await self.reconnect()


    async def kill(self, phase_id: str) -> None:
        """TERM then KILL the phase on every node (a node that cannot be
        reached is said, not raised: the machine goes anyway)."""
        async def kill(node: Node) -> None:
            try:
                await node.kill_phase(phase_id)
            except NodeError as exc:
                self.say(f"could not stop {phase_id} on {node.info.user}: {exc}")

        await asyncio.gather(*(kill(node) for node in self.cluster.nodes))
