"""Pools: warm workers, set up once, each running one pool job at a time.

The PoolManager lives in the controller daemon beside the job coroutines. For
every pool it keeps the live workers at the pool's target: it provisions
missing ones through the optimizer (any enabled infra, failing over across
places and waiting for capacity as jobs do), runs the pool's setup once per
worker and marks it READY; it removes idle workers first when there are too
many; it replaces workers that are preempted or whose setup failed; and on a
new spec version it drains the old workers (they finish their job, then go)
while new ones come up. `pool down` tears every worker down.

This module owns the pools' loop: the reconcile of each pool to its target,
the autoscaler, a pool's spec (parsed once per version), taking a pool down
and adopting half-launched workers after a restart. The PoolManager's other
halves live beside it: pool_dispatch (jobs waiting for workers: `acquire`,
`release`, leases) and pool_workers (a worker's bring-up, setup, health,
rolling and termination).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from skytui.clouds.base import ClusterHandle
from skytui.engine.file_sync import discard_staging
from skytui.engine.phase_runner import LiveCluster
from skytui.engine.pool_dispatch import Lease, PoolGone, PoolState
from skytui.engine.pool_workers import WorkerLifecycle, worker_cluster_name
from skytui.engine.store import ClusterStatus, PoolRow, WorkerRow, WorkerStatus
from skytui.spec import PoolSpec, Task
from skytui.spec.stored import pool_from_stored

__all__ = ["Lease", "PoolGone", "PoolManager", "load_pool_task", "worker_cluster_name"]

log = logging.getLogger("skytui.pools")

TICK_S = 0.5


def load_pool_task(spec: dict[str, Any], secrets: dict[str, str]) -> tuple[Task, PoolSpec]:
    return pool_from_stored(spec, secrets)


class PoolManager(WorkerLifecycle):
    """Every pool's workers and jobs (see the module docstring); built with the EngineContext."""

    async def pool_task(self, pool: str) -> Task:
        """The pool's task (the envs and secrets its jobs run with)."""
        task, _ = await self._parsed_spec(pool, self._pools.setdefault(pool, PoolState()))
        return task

    async def _parsed_spec(self, pool: str, state: PoolState) -> tuple[Task, PoolSpec]:
        """The pool's spec, parsed once per version seen (not per tick, not per job)."""
        if state.spec is None or state.spec[0] != state.version_seen:
            spec, secrets = await self.store.pool_spec(pool)
            state.spec = (state.version_seen, *load_pool_task(spec, secrets))
        _, task, pool_spec = state.spec
        return task, pool_spec

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
        self._start_launch(pool.name, worker.id, self._set_up(pool.name, worker.id, task, live))
        return True

    async def _reconcile(self, pool: PoolRow) -> None:
        state = self._pools.setdefault(pool.name, PoolState())
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
            self._start_launch(pool.name, worker_id, self._bring_up(pool.name, worker_id, task))
        if missing < 0:
            idle = [w for w in current if w.job_id is None and w.id not in state.launching]
            # Idle first, the newest (least warm) first; a busy worker finishes its job.
            for worker in sorted(idle, key=lambda w: (w.status == WorkerStatus.READY, -w.id))[: -missing]:
                await self._terminate_worker(worker, WorkerStatus.TERMINATED, "the pool was scaled down")
        await self._drain_old_versions(pool, workers)
        await self._dispatch(pool.name)

    async def _autoscale(self, pool: PoolRow, spec: PoolSpec, state: PoolState, workers: list[WorkerRow]) -> None:
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

    async def _take_down(self, pool: PoolRow, state: PoolState, workers: list[WorkerRow]) -> None:
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
