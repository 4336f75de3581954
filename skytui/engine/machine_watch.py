"""Whether the machines under running phases are still up, asked of each
infra for all of them together, once per its `state_poll_s`.

Only the infra may say a machine is gone (never SSH). Before, each running
job asked for its own cluster every second, so 10,000 idle jobs meant 10,000
wake-ups a second; now one loop per infra asks `Cloud.cluster_states` about
every watched cluster and wakes only the jobs whose machine is no longer UP.

The loop runs while something is watched, and ends by itself when nothing is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from skytui.clouds.base import Cloud, CloudError, ClusterHandle, ClusterState

log = logging.getLogger("skytui.machine_watch")


@dataclass(eq=False)
class MachineWatch:
    """One watcher's interest in one cluster; `lost` is set once the infra
    says the cluster is not UP (and stays set)."""

    handle: ClusterHandle
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    state: ClusterState = ClusterState.UP


class MachineWatcher:
    def __init__(self) -> None:
        self._watches: dict[str, set[MachineWatch]] = {}  # per infra
        self._clouds: dict[str, Cloud] = {}
        self._loops: dict[str, asyncio.Task[None]] = {}

    def watch(self, cloud: Cloud, handle: ClusterHandle) -> MachineWatch:
        watch = MachineWatch(handle)
        self._clouds[cloud.name] = cloud
        self._watches.setdefault(cloud.name, set()).add(watch)
        loop = self._loops.get(cloud.name)
        if loop is None or loop.done():
            self._loops[cloud.name] = asyncio.create_task(self._poll(cloud.name), name=f"machines-{cloud.name}")
        return watch

    def unwatch(self, cloud: Cloud, watch: MachineWatch) -> None:
        self._watches.get(cloud.name, set()).discard(watch)

    async def _poll(self, infra: str) -> None:
        cloud = self._clouds[infra]
        while True:
            await asyncio.sleep(cloud.state_poll_s)
            watches = list(self._watches.get(infra, ()))
            if not watches:
                return  # a new watch starts a new loop
            try:
                states = await cloud.cluster_states([w.handle for w in watches])
            except CloudError as exc:
                # Not being able to ask is not an answer: nobody is woken.
                log.warning("cannot ask %s whether its machines are up: %s", infra, exc)
                continue
            except Exception:  # noqa: BLE001 - the loop must outlive one bad answer
                log.exception("asking %s whether its machines are up failed", infra)
                continue
            for watch, state in zip(watches, states):
                if state is not ClusterState.UP:
                    watch.state = state
                    watch.lost.set()

    async def close(self) -> None:
        for task in self._loops.values():
            task.cancel()
        for task in self._loops.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops.clear()
