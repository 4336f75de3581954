"""Pools: warm workers, set up once, each running one pool job at a time.

The PoolManager lives in the controller daemon beside the job coroutines. For
every pool it keeps the live workers at the pool's target: it provisions
missing ones through the optimizer (any enabled infra, failing over across
places and waiting for capacity as jobs do), runs the pool's setup once per
worker and marks it READY; it removes idle workers first when there are too
many; it replaces workers that are preempted or whose setup failed; and on a
new spec version it drains the old workers (they finish their job, then go)
while new ones come up. `pool down` tears every worker down.

Jobs get workers through `acquire`: waiters are served by priority, then job
id, the moment a worker is idle (no polling), and the assignment is recorded
in the DB so a restarted controller finds every job's worker again.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skytui.clouds.base import (
    Cloud,
    CloudError,
    ClusterHandle,
    ClusterState,
    InstanceOffer,
    Node,
    NodeError,
)
from skytui.engine.file_sync import (
    WORKDIR,
    FileSyncError,
    StagingArea,
    discard_staging,
    has_local_files,
    sync_task_files,
)
from skytui.engine.optimizer import InfeasibleError, plan_task
from skytui.engine.phase_runner import (
    LiveCluster,
    NodeLost,
    PhaseNeverBegan,
    PhaseRunner,
)
from skytui.engine.provisioner import NoCapacity, Provisioner
from skytui.engine.recovery import CapacityBackoff
from skytui.engine.store import (
    AsyncStore,
    CancelRequested,
    ClusterRow,
    ClusterStatus,
    JobRow,
    PoolRow,
    WorkerRow,
    WorkerStatus,
)
from skytui.logs.sync import maskable
from skytui.spec import PoolSpec, Task
from skytui.spec.stored import pool_from_stored

if TYPE_CHECKING:
    from skytui.engine.context import EngineContext

log = logging.getLogger("skytui.pools")

TICK_S = 0.5
# Consecutive failed launches of a pool's workers wait longer and longer, so a
# broken setup does not provision machines in a tight loop.
FAILURE_BACKOFF_MAX_S = 120.0
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
class _Waiter:
    sort_key: tuple[int, int]
    future: asyncio.Future[Lease] = field(compare=False)
    job_id: int = field(compare=False)


@dataclass
class _PoolState:
    waiters: list[_Waiter] = field(default_factory=list)
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


def worker_cluster_name(pool: str, worker_id: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", pool.lower()).strip("-")[:24] or "pool"
    return f"{slug}-w{worker_id}"


def load_pool_task(spec: dict[str, Any], secrets: dict[str, str]) -> tuple[Task, PoolSpec]:
    return pool_from_stored(spec, secrets)


class PoolManager:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.store: AsyncStore = ctx.store
        self._pools: dict[str, _PoolState] = {}
        self._wake = asyncio.Event()
        self._nodes: dict[int, list[Node]] = {}
        # Workers' machines by cluster id, read once: a lease is handed out
        # per job, and a worker's machine does not change while it serves.
        self._machines: dict[int, tuple[ClusterRow, ClusterHandle]] = {}

    # ------------------------------------------------------------ dispatch

    def expect(self, job: JobRow) -> None:
        """The controller is starting this job's coroutine. It makes a few
        store calls before it asks for a worker, and the coroutines started
        with it finish theirs in any order: for `ARRIVAL_GRACE_S` a free
        worker is kept for the first of them in queue order (priority, then
        job id), so that job 1 of `--num-jobs 3` runs first, not whichever
        coroutine got there first."""
        if job.pool is not None and job.status == "PENDING" and job.worker_id is None:
            state = self._pools.setdefault(job.pool, _PoolState())
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
        if await self.store.pool(job.pool) is None:
            raise PoolGone(f"pool {job.pool} does not exist (it was taken down?)")
        state = self._pools.setdefault(job.pool, _PoolState())
        state.arriving.pop(job.id, None)
        future: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        waiter = _Waiter((-job.priority, job.id), future, job.id)
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

    async def release(self, pool: str, worker_id: int, job_id: int, *, lost: bool = False) -> None:
        """The job is done with its worker. A worker whose machine was lost under
        the job is never handed out again: the health check replaces it."""
        if lost:
            await self.store.update_worker(worker_id, status=WorkerStatus.NOT_READY,
                                           status_reason="its machine was lost; being replaced")
            for node in self._nodes.pop(worker_id, []):
                with contextlib.suppress(Exception):
                    await node.close()
            self._wake.set()
        await self.store.release_worker(worker_id, job_id)
        await self._dispatch(pool)

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

    async def pool_task(self, pool: str) -> Task:
        """The pool's task (the envs and secrets its jobs run with)."""
        task, _ = await self._parsed_spec(pool, self._pools.setdefault(pool, _PoolState()))
        return task

    async def _parsed_spec(self, pool: str, state: _PoolState) -> tuple[Task, PoolSpec]:
        """The pool's spec, parsed once per version seen (not per tick, not per job)."""
        if state.spec is None or state.spec[0] != state.version_seen:
            spec, secrets = await self.store.pool_spec(pool)
            state.spec = (state.version_seen, *load_pool_task(spec, secrets))
        _, task, pool_spec = state.spec
        return task, pool_spec

    async def _dispatch(self, pool: str) -> None:
        """Hand idle workers to the first waiters (priority, then job id)."""
        state = self._pools.setdefault(pool, _PoolState())
        async with state.dispatching:
            await self._dispatch_locked(pool, state)

    async def _dispatch_locked(self, pool: str, state: _PoolState) -> None:
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
            offered = await self._offer_to_first_waiter(worker, state)
            if offered is None:
                return
            waiter, assigned = offered
            if not assigned:
                heapq.heappush(state.waiters, waiter)
                continue  # taken or no longer READY since the read
            lease = await self._lease_for(worker)
            if lease is None or waiter.future.done():
                # Cancelled while being served, or (never expected) a READY
                # worker without its cluster: give the worker back.
                await self.store.release_worker(worker.id, waiter.job_id)
                if lease is None and not waiter.future.done():
                    heapq.heappush(state.waiters, waiter)
                continue
            waiter.future.set_result(lease)

    def _keep_for_arriving(self, pool: str, state: _PoolState) -> bool:
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

    async def _offer_to_first_waiter(self, worker: WorkerRow, state: _PoolState) -> tuple[_Waiter, bool] | None:
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

    # ----------------------------------------------------------- reconcile

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """The pools' loop, for the life of the daemon."""
        await self._adopt_after_restart()
        while not stopping.is_set():
            try:
                for pool in await self.store.pools():
                    await self._reconcile(pool)
            except Exception:  # noqa: BLE001 - a DB hiccup must not stop the pools
                log.exception("pool reconcile failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=TICK_S)
            self._wake.clear()
        for state in self._pools.values():
            for task in state.launching.values():
                task.cancel()

    async def _adopt_after_restart(self) -> None:
        """Workers caught half-launched by a controller restart: one whose
        machine is up and was running setup goes on with it (re-attached);
        one still being provisioned, or going down, is replaced, since its
        launch coroutine is gone and a worker is cheap to redo."""
        for worker in await self.store.workers():
            if worker.status == WorkerStatus.STARTING and await self._resume_setup(worker):
                continue
            if worker.status in (WorkerStatus.PROVISIONING, WorkerStatus.STARTING, WorkerStatus.SHUTTING_DOWN):
                await self._terminate_worker(worker, WorkerStatus.TERMINATED, "the controller restarted during its launch")

    async def _resume_setup(self, worker: WorkerRow) -> bool:
        """Re-attach to a worker's setup after a restart; False if it cannot be."""
        pool = await self.store.pool(worker.pool)
        cluster = await self.store.cluster(worker.cluster_id) if worker.cluster_id is not None else None
        cloud = self.ctx.clouds.get(cluster.cloud) if cluster is not None else None
        if (pool is None or pool.version != worker.version or cluster is None or cloud is None
                or cluster.status != ClusterStatus.UP or not cluster.handle_json):
            return False
        spec, secrets = await self.store.pool_spec(pool.name)
        task, _ = load_pool_task(spec, secrets)
        live = LiveCluster(cluster, ClusterHandle.from_json(cluster.handle), cloud)
        log.info("pool %s: worker %s re-attaching to its setup", pool.name, worker.id)
        state = self._pools.setdefault(pool.name, _PoolState())
        state.launching[worker.id] = asyncio.create_task(
            self._finish_launch(pool.name, worker.id, self._set_up(pool.name, worker.id, task, live)),
            name=f"pool-{pool.name}-w{worker.id}",
        )
        return True

    async def _reconcile(self, pool: PoolRow) -> None:
        state = self._pools.setdefault(pool.name, _PoolState())
        workers = await self.store.workers(pool.name)
        if pool.down_requested_at is not None:
            await self._take_down(pool, state, workers)
            return
        state.version_seen = pool.version
        task, pool_spec = await self._parsed_spec(pool.name, state)
        if pool_spec.autoscaling:
            await self._autoscale(pool, pool_spec, state, workers)
            pool = await self.store.pool(pool.name) or pool
        await self._check_health(pool, state, workers)
        workers = await self.store.workers(pool.name)
        current = [w for w in workers if w.version == pool.version and w.status != WorkerStatus.SHUTTING_DOWN]
        missing = pool.target_workers - len(current)
        if time.monotonic() < state.retry_after:
            missing = min(missing, 0)
        for _ in range(max(0, missing)):
            worker_id = await self.store.insert_worker(pool.name, pool.version)
            state.launching[worker_id] = asyncio.create_task(
                self._finish_launch(pool.name, worker_id, self._bring_up(pool.name, worker_id, task)),
                name=f"pool-{pool.name}-w{worker_id}",
            )
        if missing < 0:
            idle = [w for w in current if w.job_id is None and w.id not in state.launching]
            # Idle first, the newest (least warm) first; a busy worker finishes its job.
            for worker in sorted(idle, key=lambda w: (w.status == WorkerStatus.READY, -w.id))[: -missing]:
                await self._terminate_worker(worker, WorkerStatus.TERMINATED, "the pool was scaled down")
        await self._drain_old_versions(pool, workers)
        await self._dispatch(pool.name)

    async def _drain_old_versions(self, pool: PoolRow, workers: list[WorkerRow]) -> None:
        """Old workers go once idle and once the new version can take their place."""
        ready_now = sum(1 for w in workers if w.version == pool.version and w.status == WorkerStatus.READY)
        for worker in workers:
            if worker.version >= pool.version or worker.job_id is not None:
                continue
            if worker.status == WorkerStatus.READY and ready_now < pool.target_workers:
                continue  # still serving until the new version is up
            await self._terminate_worker(worker, WorkerStatus.TERMINATED, f"replaced by version {pool.version}")

    async def _check_health(self, pool: PoolRow, state: _PoolState, workers: list[WorkerRow]) -> None:
        """Ask the infra, as for jobs: a READY worker whose machine is gone is
        PREEMPTED (its job, if any, recovers on another worker)."""
        now = time.monotonic()
        if now - state.last_health_check < 1.0:
            return
        state.last_health_check = now
        for worker in workers:
            if worker.status not in (WorkerStatus.READY, WorkerStatus.NOT_READY) or worker.cluster_id is None:
                continue
            cluster = await self.store.cluster(worker.cluster_id)
            cloud = self.ctx.clouds.get(cluster.cloud) if cluster else None
            if cluster is None or cloud is None or not cluster.handle_json:
                continue
            handle = ClusterHandle.from_json(cluster.handle)
            if await cloud.cluster_state(handle) is not ClusterState.UP:
                what = "preempted" if cluster.use_spot else "machine lost"
                log.info("pool %s: worker %s %s", pool.name, worker.id, what)
                await self._terminate_worker(worker, WorkerStatus.PREEMPTED, what)
            elif worker.status == WorkerStatus.NOT_READY and worker.job_id is None:
                # Up, but its last job could not reach it: not trusted with the
                # next one; a fresh worker takes its place.
                log.info("pool %s: worker %s unreachable; replacing it", pool.name, worker.id)
                await self._terminate_worker(worker, WorkerStatus.FAILED, "up but unreachable over SSH")

    async def _autoscale(self, pool: PoolRow, spec: PoolSpec, state: _PoolState, workers: list[WorkerRow]) -> None:
        """SkyPilot's queue-length autoscaler: one worker up when more jobs wait
        than the threshold for upscale_delay, one down when fewer wait for
        downscale_delay; never below one while jobs wait; within [min, max]."""
        waiting = len(await self.store.pending_pool_jobs(pool.name))
        threshold = spec.queue_length_threshold or 1
        low, high = spec.min_workers or 0, spec.max_workers or 0
        target = pool.target_workers
        now = time.monotonic()
        if waiting >= threshold and target < high:
            wanted = target + 1
            delay = spec.upscale_delay_seconds if spec.upscale_delay_seconds is not None else 300.0
        elif waiting < threshold and target > low:
            busy = sum(1 for w in workers if w.job_id is not None)
            wanted = max(target - 1, busy, 1 if waiting else 0)
            delay = spec.downscale_delay_seconds if spec.downscale_delay_seconds is not None else 1200.0
        else:
            state.last_scale = now
            return
        wanted = min(high, max(low, wanted, 1 if waiting else 0))
        if wanted != target and (target == 0 or now - state.last_scale >= delay):
            # From zero there is nothing to wait for: a job is stuck until a worker exists.
            state.last_scale = now
            await self.store.set_pool_target(pool.name, wanted)
            log.info("pool %s: autoscaled %s -> %s worker(s) (%s job(s) waiting)", pool.name, target, wanted, waiting)
        elif wanted == target:
            state.last_scale = now

    async def _take_down(self, pool: PoolRow, state: _PoolState, workers: list[WorkerRow]) -> None:
        for task in state.launching.values():
            task.cancel()
        if state.launching:
            await asyncio.gather(*state.launching.values(), return_exceptions=True)
            state.launching.clear()
        await self._dispatch(pool.name)  # anyone still waiting learns the pool is gone
        await asyncio.gather(*(
            self._terminate_worker(worker, WorkerStatus.TERMINATED, "pool down")
            for worker in await self.store.workers(pool.name)
        ))
        if not await self.store.workers(pool.name):
            staging = self._staging(pool.name)
            if staging is not None:
                await discard_staging(staging)
            await self.store.delete_pool(pool.name)
            self._pools.pop(pool.name, None)

    # ----------------------------------------------------- worker lifecycle

    def _launch_failed(self, state: _PoolState) -> None:
        state.failures += 1
        state.retry_after = time.monotonic() + min(FAILURE_BACKOFF_MAX_S, 2.0 ** (state.failures - 1))

    async def _finish_launch(self, pool: str, worker_id: int, bring_up: Awaitable[str | None]) -> None:
        """Await a worker's launch (`_bring_up`, or `_set_up` when resumed),
        then make it READY, or take it down with the reason it failed."""
        state = self._pools.setdefault(pool, _PoolState())
        try:
            reason = await bring_up
            if reason is None:
                state.failures = 0
                await self.store.update_worker(worker_id, status=WorkerStatus.READY, ready_at=time.time(),
                                               status_reason=None)
                log.info("pool %s: worker %s READY", pool, worker_id)
            else:
                self._launch_failed(state)
                worker = next((w for w in await self.store.workers(pool) if w.id == worker_id), None)
                if worker is not None:
                    await self._terminate_worker(worker, WorkerStatus.FAILED, reason)
        except asyncio.CancelledError:
            worker = next((w for w in await self.store.workers(pool) if w.id == worker_id), None)
            if worker is not None:
                await self._terminate_worker(worker, WorkerStatus.TERMINATED, "launch cancelled")
            raise
        except Exception as exc:  # noqa: BLE001 - a worker's failure must not stop its pool
            log.exception("pool %s: worker %s failed to launch", pool, worker_id)
            self._launch_failed(state)
            worker = next((w for w in await self.store.workers(pool) if w.id == worker_id), None)
            if worker is not None:
                await self._terminate_worker(worker, WorkerStatus.FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            state.launching.pop(worker_id, None)
            self._wake.set()

    async def _bring_up(self, pool: str, worker_id: int, task: Task) -> str | None:
        """Provision a worker and run the pool's setup on it; the reason on failure."""
        try:
            plan = plan_task(task, self.ctx.clouds)
        except InfeasibleError as exc:
            return str(exc)
        backoff = CapacityBackoff(self.ctx.recovery.backoff_initial_s, self.ctx.recovery.backoff_max_s)
        name = worker_cluster_name(pool, worker_id)

        async def name_for(tried: int) -> str:
            return name  # a worker keeps one name: a refused place frees it for the next

        async def record(offer: InstanceOffer, name: str) -> int:
            cluster_id = await self.store.insert_cluster(
                name=name, cloud=offer.cloud, region=offer.region, zone=offer.zone,
                instance_type=offer.instance_type, use_spot=offer.use_spot, num_nodes=1,
                pool=pool, worker_id=worker_id,
            )
            await self.store.update_worker(worker_id, cluster_id=cluster_id,
                                           status_reason=f"provisioning on {offer.infra}")
            return cluster_id

        while True:
            try:
                placed = await Provisioner(self.store, self.ctx.clouds).provision_with_failover(
                    plan.offers, num_nodes=1, labels={"skytui-pool": pool, "skytui-worker": str(worker_id)},
                    name_for=name_for, record=record,
                )
            except NoCapacity as exc:
                wait = backoff.next_wait()
                await self.store.update_worker(
                    worker_id, status_reason=f"no capacity in any of {exc.places} place(s); next try in {wait:.0f}s"
                )
                await asyncio.sleep(wait)
                continue
            except CloudError as exc:
                return f"cannot provision: {exc}"
            row = await self.store.cluster(placed.cluster_id)
            assert row is not None
            return await self._set_up(pool, worker_id, task, LiveCluster(row, placed.handle, self.ctx.clouds[row.cloud]))

    async def _set_up(self, pool: str, worker_id: int, task: Task, cluster: LiveCluster) -> str | None:
        """Copy the pool's files and run its setup on the worker (or re-attach
        to a setup already started: a controller restart resumes it, byte-exact
        in the worker's log); the reason on failure."""
        await self.store.update_worker(worker_id, status=WorkerStatus.STARTING, status_reason="running setup")
        log_path = self.ctx.paths.logs / "pools" / pool / f"worker-{worker_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        runner = PhaseRunner(cluster, self.ctx.machines, secrets=maskable(task.secrets.values()),
                             say=lambda message: log.info("pool %s: worker %s: %s", pool, worker_id, message))
        try:
            await runner.connect()
            version = next((w.version for w in await self.store.workers(pool) if w.id == worker_id), 1)
            await runner.while_up("copying files", lambda: sync_task_files(
                cluster.nodes, task, absolute_mounts=cluster.cloud.absolute_mounts,
                staging=self._staging(pool) if has_local_files(task) else None, staging_part=f"v{version}",
            ))
            if not task.setup:
                return None
            phase_id = f"pool-{worker_cluster_name(pool, worker_id)}-setup"
            env = {**task.envs, **task.secrets, "SKYPILOT_POOL_NAME": pool, "SKYPILOT_SETUP_NODE_RANK": "0",
                   "SKYPILOT_NUM_NODES": "1"}
            cwd = cluster.nodes[0].info.path(WORKDIR) if isinstance(task.workdir, str) else None
            # The worker's log holds its setup's output alone: it starts at 0.
            await runner.start(phase_id, task.setup, lambda rank: env, cwd=cwd)
            while True:
                try:
                    outcome = await runner.follow(phase_id, [log_path], [0])
                    break
                except PhaseNeverBegan:
                    await runner.start(phase_id, task.setup, lambda rank: env, cwd=cwd)
            code = outcome.codes[0]
            return None if code == 0 else f"setup failed with exit code {code}"
        except FileSyncError as exc:
            return str(exc)
        except NodeLost as exc:
            return f"its machine was lost during setup ({exc})"
        except NodeError as exc:
            return f"setup could not run: {exc}"
        finally:
            for node in cluster.nodes:
                with contextlib.suppress(Exception):
                    await node.close()

    def _staging(self, pool: str) -> StagingArea | None:
        if not self.ctx.bucket:
            return None
        return StagingArea(self.ctx.bucket, self.ctx.paths.install_id, f"pool-{pool}")

    async def _terminate_worker(self, worker: WorkerRow, final: str, reason: str) -> None:
        await self.store.update_worker(worker.id, status=WorkerStatus.SHUTTING_DOWN, status_reason=reason)
        for node in self._nodes.pop(worker.id, []):
            with contextlib.suppress(Exception):
                await node.close()
        if worker.cluster_id is not None:
            self._machines.pop(worker.cluster_id, None)
            cluster = await self.store.cluster(worker.cluster_id)
            if cluster is not None and cluster.status in ClusterStatus.LIVE:
                cloud = self.ctx.clouds.get(cluster.cloud)
                if cloud is not None:
                    handle = ClusterHandle.from_json(cluster.handle) if cluster.handle_json else None
                    await cloud.terminate(cluster.name, handle)
                await self.store.update_cluster(cluster.id, status=ClusterStatus.TERMINATED, end_reason=reason)
        await self.store.update_worker(worker.id, status=final, status_reason=reason)
