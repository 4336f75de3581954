"""The controller's side of a VM's preemption notice: while a phase runs on
a spot AWS or GCP machine, look for the `notice` file the node's watcher
writes in the phase's directory (clouds/phase_scripts.py, WRAPPER) and put
the notice on the job's timeline with its deadline, once.

The node has already signalled the job's processes; the recovery that
follows is the machine's loss as ever. Owns `watch_notices`; may touch the
nodes (a short read) and the store's events of the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex

from skytui.clouds.base import Node, NodeError
from skytui.clouds.phase_scripts import NOTICE_FILE, parse_node_time
from skytui.clouds.preemption_notices import POLL_EVERY_S, notice_env
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


async def watch_notices(
    store: AsyncStore, cluster: LiveCluster, phase_id: str, *, job_id: int, task_idx: int, signal_name: str,
    every_s: float = POLL_EVERY_S,
) -> None:
    """Until cancelled (the phase's follow ended): record the first notice
    any node of `cluster` gives for `phase_id`. Nothing on a machine the
    infra gives no notice of (see `notice_env`)."""
    if not notice_env(cluster.row.cloud, cluster.row.use_spot, signal_name):
        return
    name = cluster.row.name
    while True:
        for node in list(cluster.nodes):
            deadline = await _read_notice(node, phase_id)
            if deadline is None:
                continue
            # A controller restarted mid-notice has written it already.
            earlier = await store.events(job_id=job_id)
            if not any(e.kind == event_kinds.PREEMPTION_NOTICE and name in (e.message or "") for e in earlier):
                source = f"{cluster.row.cloud} instance metadata, {node.info.user}@{node.info.host}"
                with contextlib.suppress(Exception):
                    await store.note(job_id, task_idx, event_kinds.PREEMPTION_NOTICE,
                                     notice_message(name, deadline, signal_name, source=source))
                log.info("job %d: preemption notice for %s, deadline %s", job_id, name, deadline)
            return
        await asyncio.sleep(every_s)
