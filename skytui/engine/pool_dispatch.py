"""Pool dispatch: jobs waiting for a worker, and idle workers handed to them.

Jobs get workers through `acquire`: waiters are served by priority, then job
id, the moment a worker is idle (no polling), and the assignment is recorded
in the DB so a restarted controller finds every job's worker again.

Owns the PoolManager's per-pool state (`PoolState`), the waiters' queue, the
leases and the workers' open node connections. May touch the store's worker
assignments; bringing workers up and down is pool_workers', the loop that
keeps each pool at its target is pools'.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skytui.clouds.base import Cloud, ClusterHandle, Node
from skytui.engine.store import (
    AsyncStore,
    CancelRequested,
    ClusterRow,
    JobRow,
    PoolRow,
    WorkerRow,
    WorkerStatus,
)
from skytui.spec import PoolSpec, Task

if TYPE_CHECKING:
    from skytui.engine.context import EngineContext

# How long a free worker is kept for a job started ahead of the waiting ones
# (PoolManager.expect): a few store calls, even on a busy controller.
ARRIVAL_GRACE_S = 2.0


class PoolGone(Exception):
    """The pool was taken down (or never existed) while a job waited for it."""


@dataclass(frozen=True)
class Lease:
    """A worker given to one job: where to run it."""

    worker: WorkerRow
    cluster: ClusterRow
    handle: ClusterHandle


@dataclass(order=True)
class Waiter:
    sort_key: tuple[int, int]
    future: asyncio.Future[Lease] = field(compare=False)
    job_id: int = field(compare=False)


@dataclass
class PoolState:
    waiters: list[Waiter] = field(default_factory=list)
    launching: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    failures: int = 0
    retry_after: float = 0.0  # no new launch before this (after failed launches)
    last_health_check: float = 0.0
    last_scale: float = field(default_factory=time.monotonic)
    # One dispatch at a time per pool: two would hand the same waiter two workers.
    dispatching: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The pool's spec, parsed once per version (not on every tick).
    spec: tuple[int, Task, PoolSpec] | None = None
    version_seen: int = 0  # the pool's version at the last read of its row
    # Jobs whose coroutines were just started and have not asked for a worker
    # yet: job id -> (sort key, until when a worker is kept for them).
    arriving: dict[int, tuple[tuple[int, int], float]] = field(default_factory=dict)


class PoolDispatch:
    """The PoolManager's state and its dispatch (see the module docstring)."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.store: AsyncStore = ctx.store
        self._pools: dict[str, PoolState] = {}
        self._wake = asyncio.Event()
        self._nodes: dict[int, list[Node]] = {}
        # Workers' machines by cluster id, read once: a lease is handed out
        # per job, and a worker's machine does not change while it serves.
        self._machines: dict[int, tuple[ClusterRow, ClusterHandle]] = {}

    async def _close_worker_nodes(self, worker_id: int) -> None:
        """Close the worker's cached connections (best effort): it is not handed out again as it was."""
        for node in self._nodes.pop(worker_id, []):
            with contextlib.suppress(Exception):
                await node.close()

    # ------------------------------------------------------------ dispatch

    def expect(self, job: JobRow) -> None:
        """The controller is starting this job's coroutine. It makes a few
        store calls before it asks for a worker, and the coroutines started
        with it finish theirs in any order: for `ARRIVAL_GRACE_S` a free
        worker is kept for the first of them in queue order (priority, then
        job id), so that job 1 of `--num-jobs 3` runs first, not whichever
        coroutine got there first."""
        if job.pool is not None and job.status == "PENDING" and job.worker_id is None:
            state = self._pools.setdefault(job.pool, PoolState())
            state.arriving[job.id] = ((-job.priority, job.id), time.monotonic() + ARRIVAL_GRACE_S)

    def forget(self, job_id: int) -> None:
        """A job's coroutine ended: no worker is kept for it."""
        for state in self._pools.values():
            state.arriving.pop(job_id, None)

    async def acquire(
        self, job: JobRow, on_wait: Callable[[str], Awaitable[None]]
    ) -> Lease:
        """Wait for an idle READY worker of the job's pool and take it."""
        assert job.pool is not None
        # A pool this controller has read is known to exist until its
        # reconcile takes it down (and forgets its state): 2,000 jobs arriving
        # do not each read the pool's row.
        state = self._pools.get(job.pool)
        if (state is None or not state.version_seen) and await self.store.pool(job.pool) is None:
            raise PoolGone(f"pool {job.pool} does not exist (it was taken down?)")
        state = self._pools.setdefault(job.pool, PoolState())
        state.arriving.pop(job.id, None)
        future: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        waiter = Waiter((-job.priority, job.id), future, job.id)
        heapq.heappush(state.waiters, waiter)
        # Behind other waiters there is no idle worker for this one (a release
        # dispatches at once): 2,000 jobs arriving do not each read the pool.
        if state.waiters[0] is waiter:
            await self._dispatch(job.pool)
        if not future.done():
            await on_wait(f"waiting for a free worker of pool {job.pool}")
            self._wake.set()  # the autoscaler counts waiting jobs
        try:
            return await future
        finally:
            if not future.done():
                future.cancel()  # a cancelled job leaves the queue

    async def release(self, pool: str, worker: WorkerRow, job_id: int, *, lost: bool = False) -> None:
        """The job is done with its worker. A worker whose machine was lost under
        the job is never handed out again: the health check replaces it."""
        if lost:
            await self.store.update_worker(worker.id, status=WorkerStatus.NOT_READY,
                                           status_reason="its machine was lost; being replaced")
            await self._close_worker_nodes(worker.id)
            self._wake.set()
        await self.store.release_worker(worker.id, job_id)
        state = self._pools.setdefault(pool, PoolState())
        if lost or not await self._hand_over(pool, state, worker):
            await self._dispatch(pool)

    async def _hand_over(self, pool: str, state: PoolState, worker: WorkerRow) -> bool:
        """Give a worker just released straight to the first waiter, without
        reading the pool and its workers again (a thousand jobs through eight
        workers read them a thousand times). Only in the plain case: the
        worker is of the pool's current version (always dispatchable) and no
        job is on its way with a claim before the waiters. Whether the worker
        may still be given is the DB's to say (`assign_worker`: READY, idle,
        its pool not being taken down); False when the full dispatch must
        decide instead."""
        if worker.version != state.version_seen or state.arriving:
            return False
        async with state.dispatching:
            # Nobody waiting: the worker stays idle, found by the next dispatch.
            return await self._give(worker, state) is not False

    async def _give(self, worker: WorkerRow, state: PoolState) -> bool | None:
        """Give `worker` to the first job still waiting: True if it got it,
        None if no job waits, False if the worker was not to be had (taken,
        no longer READY) or the job went meanwhile (the worker is free again)."""
        offered = await self._offer_to_first_waiter(worker, state)
        if offered is None:
            return None
        waiter, assigned = offered
        if not assigned:
            heapq.heappush(state.waiters, waiter)
            return False  # taken or no longer READY since the caller looked
        lease = await self._lease_for(worker)
        if lease is None or waiter.future.done():
            # Cancelled while being served, or (never expected) a READY
            # worker without its cluster: give the worker back.
            await self.store.release_worker(worker.id, waiter.job_id)
            if lease is None and not waiter.future.done():
                heapq.heappush(state.waiters, waiter)
            return False
        waiter.future.set_result(lease)
        return True

    async def lease_of(self, job_id: int) -> Lease | None:
        """The worker a job holds (after a controller restart), if any."""
        worker = await self.store.worker_of_job(job_id)
        if worker is None or worker.cluster_id is None:
            return None
        cluster = await self.store.cluster(worker.cluster_id)
        if cluster is None or not cluster.handle_json:
            return None
        return Lease(worker, cluster, ClusterHandle.from_json(cluster.handle))

    async def _lease_for(self, worker: WorkerRow) -> Lease | None:
        """The lease of a worker just assigned (its machine from the cache)."""
        if worker.cluster_id is None:
            return None
        machine = self._machines.get(worker.cluster_id)
        if machine is None:
            cluster = await self.store.cluster(worker.cluster_id)
            if cluster is None or not cluster.handle_json:
                return None
            machine = self._machines[worker.cluster_id] = (cluster, ClusterHandle.from_json(cluster.handle))
        return Lease(worker, *machine)

    async def _dispatch(self, pool: str) -> None:
        """Hand idle workers to the first waiters (priority, then job id)."""
        state = self._pools.setdefault(pool, PoolState())
        async with state.dispatching:
            await self._dispatch_locked(pool, state)

    async def _dispatch_locked(self, pool: str, state: PoolState) -> None:
        while state.waiters and state.waiters[0].future.done():
            heapq.heappop(state.waiters)  # cancelled while waiting
        if not state.waiters:
            return
        row = await self.store.pool(pool)
        if row is not None:
            state.version_seen = row.version
        if row is None or row.down_requested_at is not None:
            for waiter in state.waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(PoolGone(f"pool {pool} was taken down"))
            state.waiters.clear()
            return
        for worker in self._dispatchable(row, await self.store.workers(pool)):
            if self._keep_for_arriving(pool, state):
                return
            if await self._give(worker, state) is None:
                return  # nobody waits any more

    def _keep_for_arriving(self, pool: str, state: PoolState) -> bool:
        """Whether a job still on its way to `acquire` comes before every
        waiter (see `expect`); if so, dispatch again once its grace is over."""
        if not state.arriving:
            return False  # the usual case: no per-waiter work on every release
        now = time.monotonic()
        for job_id, (_key, until) in list(state.arriving.items()):
            if until <= now:
                del state.arriving[job_id]
        # A job leaves `arriving` as it enters `waiters` (acquire): the two never share a job.
        while state.waiters and state.waiters[0].future.done():
            heapq.heappop(state.waiters)
        if not state.arriving or not state.waiters:
            return False
        first_key, first_until = min(state.arriving.values())
        if first_key > state.waiters[0].sort_key:
            return False
        asyncio.get_running_loop().call_later(
            first_until - now, lambda: asyncio.ensure_future(self._dispatch(pool))
        )
        return True

    async def _offer_to_first_waiter(self, worker: WorkerRow, state: PoolState) -> tuple[Waiter, bool] | None:
        """Give `worker` to the first job still waiting: (its waiter, whether
        the DB gave it the worker), or None when no job waits. A job whose
        cancel came while it waited is told so, and the worker goes to the next."""
        while True:
            while state.waiters and state.waiters[0].future.done():
                heapq.heappop(state.waiters)
            if not state.waiters:
                return None
            # Off the queue before any await: a job arriving meanwhile (acquire
            # does not take the lock) must not be popped in this one's place.
            waiter = heapq.heappop(state.waiters)
            try:
                return waiter, await self.store.assign_worker(worker.id, waiter.job_id)
            except CancelRequested as exc:
                if not waiter.future.done():
                    waiter.future.set_exception(exc)

    @staticmethod
    def _dispatchable(pool: PoolRow, workers: list[WorkerRow]) -> list[WorkerRow]:
        """Idle READY workers, newest version first. Old-version workers keep
        serving only while the new version has too few READY workers."""
        idle = [w for w in workers if w.status == WorkerStatus.READY and w.job_id is None]
        current_ready = sum(1 for w in workers if w.status == WorkerStatus.READY and w.version == pool.version)
        if current_ready >= pool.target_workers:
            idle = [w for w in idle if w.version == pool.version]
        return sorted(idle, key=lambda w: (-w.version, w.id))

    def nodes_for(self, lease: Lease, cloud: Cloud) -> list[Node]:
        """The worker's open node connections: one per worker, reused job
        after job instead of a new SSH handshake per job."""
        nodes = self._nodes.get(lease.worker.id)
        if nodes is None:
            nodes = self._nodes[lease.worker.id] = [cloud.node(info) for info in lease.handle.nodes]
        return nodes

    def keep_nodes(self, worker_id: int, nodes: list[Node]) -> None:
        """A job gives its worker's connections back (maybe new ones, after an SSH drop)."""
        self._nodes[worker_id] = nodes
