"""The controller's side of a preemption notice an infra gives while a phase
runs: put it on the job's timeline with its deadline, once.

Two sources. A spot AWS or GCP VM's watcher writes `notice` in the phase's
directory (clouds/phase_scripts.py, WRAPPER), and the node's phase watch
stream says so (clouds/phase_watch.py): no request per phase while no notice
comes; the file is read only while the stream cannot say (before it
watches the phase, or while it is down). An infra whose API says it
(clouds/preemption_notices.py `GivesNotice`: Kubernetes, a pod being
deleted or evicted) is asked, and once more when the phase ends with the
machine lost, since that is often how the notice is first seen. Neither signals anything: the node's watcher or the
kubelet already has. The recovery that follows is the machine's loss as ever.

Owns `NoticeWatch`; may touch the nodes (their notices, a short read), the
cluster's Cloud (the question above) and the store's events of the job.
"""

from __future__ import annotations

import asyncio
import logging
import shlex

from skytui.clouds.base import Node, NodeError
from skytui.clouds.phase_scripts import NOTICE_FILE, parse_node_time
from skytui.clouds.preemption_notices import POLL_EVERY_S, GivesNotice, notice_env
from skytui.engine import event_kinds
from skytui.engine.notices import notice_message
from skytui.engine.phase_runner import LiveCluster
from skytui.engine.store import AsyncStore

log = logging.getLogger("skytui.notice_watch")


async def _read_notice(node: Node, phase_id: str) -> float | None:
    path = f"{node.info.phases_dir}/{phase_id}/{NOTICE_FILE}"
    try:
        status, out, _ = await node.run(f"cat {shlex.quote(path)} 2>/dev/null", timeout=20)
    except NodeError:
        return None  # the phase's own follow says what an unreachable node means
    return parse_node_time(out) if status == 0 else None


class NoticeWatch:
    """The notices of one phase on one cluster (see the module docstring)."""

    def __init__(
        self, store: AsyncStore, cluster: LiveCluster, phase_id: str, *, job_id: int, task_idx: int,
        signal_name: str,
    ) -> None:
        self.store = store
        self.cluster = cluster
        self.phase_id = phase_id
        self.job_id = job_id
        self.task_idx = task_idx
        self.signal_name = signal_name
        self.from_nodes = bool(notice_env(cluster.row.cloud, cluster.row.use_spot, signal_name))
        self.from_infra = isinstance(cluster.cloud, GivesNotice)
        self.recorded = False

    async def run(self, every_s: float = POLL_EVERY_S) -> None:
        """Until a notice is recorded (or the phase's follow ends and this is cancelled)."""
        if self.from_nodes and self.cluster.nodes:
            watches = [asyncio.create_task(self._told_by(node, every_s)) for node in list(self.cluster.nodes)]
            try:
                await asyncio.wait(watches, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for watch in watches:
                    watch.cancel()
        elif self.from_infra:
            while not await self.look():
                await asyncio.sleep(every_s)

    async def _told_by(self, node: Node, every_s: float) -> None:
        """A spot VM's notice, as its node says it on the phase's watch
        stream: no request to the node while none comes. A node that cannot
        say (before the phase's follow watches it, or while its stream is
        down) has its notice file read, every `every_s`."""
        while not self.recorded:
            deadline = await node.wait_phase_notice(self.phase_id)
            if deadline is None:
                deadline = await _read_notice(node, self.phase_id)
            if deadline is not None:
                await self._record(deadline, f"{self.cluster.row.cloud} instance metadata, "
                                             f"{node.info.user}@{node.info.host}")
                return
            await asyncio.sleep(every_s)

    async def last_look(self) -> None:
        """After the machine was lost under the phase: did the infra say so first?"""
        if self.from_infra and not self.recorded:
            await self.look(fresh=True)

    async def look(self, *, fresh: bool = False) -> bool:
        """Ask the infra (`GivesNotice`) and record its notice if it gave one;
        whether one is recorded (`fresh`: asked now, not a shared look)."""
        if self.recorded:
            return True
        if not isinstance(self.cluster.cloud, GivesNotice):
            return False
        deadline = await self.cluster.cloud.preemption_notice(self.cluster.handle, fresh=fresh)
        if deadline is None:
            return False
        await self._record(deadline, f"the {self.cluster.row.cloud} API: its machine is being deleted")
        return True

    async def _record(self, deadline: float, source: str) -> None:
        """On the job's timeline, once (a controller restarted mid-notice has written it already)."""
        if self.recorded:
            return
        self.recorded = True
        name = self.cluster.row.name
        earlier = await self.store.events(job_id=self.job_id)
        if any(e.kind == event_kinds.PREEMPTION_NOTICE and name in (e.message or "") for e in earlier):
            return
        # The node or the kubelet signalled the job: said as what it was sent.
        await self.store.note(self.job_id, self.task_idx, event_kinds.PREEMPTION_NOTICE,
                              notice_message(name, deadline, self._sent(), source=source))
        log.info("job %d: preemption notice for %s, deadline %s", self.job_id, name, deadline)

    def _sent(self) -> str:
        # The kubelet always sends TERM, whatever jobs.preemption_notice_signal says.
        return "TERM" if self.from_infra else self.signal_name
