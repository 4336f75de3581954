"""A pool's workers, one by one: bring-up (provision through the optimizer,
failing over and waiting for capacity as jobs do), the pool's setup once per
worker, health (a lost or unreachable worker is replaced), the rolling of old
versions, and termination.

Owns the worker rows' lifecycle (PROVISIONING -> STARTING -> READY, and
SHUTTING_DOWN to an end) and the workers' machines. May touch the store, the
infras and the pool's staging area; who gets a worker is pool_dispatch's,
how many workers a pool wants is pools'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Coroutine
from typing import Any

from skytui.clouds.base import CloudError, ClusterHandle, ClusterState, InstanceOffer, NodeError
from skytui.engine.file_sync import (
    WORKDIR,
    FileSyncError,
    StagingArea,
    has_local_files,
    sync_task_files,
)
from skytui.engine.optimizer import InfeasibleError, plan_task
from skytui.engine.phase_runner import LiveCluster, NodeLost, PhaseNeverBegan, PhaseRunner
from skytui.engine.pool_dispatch import PoolDispatch, PoolState
from skytui.engine.provisioner import NoCapacity, Provisioner
from skytui.engine.recovery import CapacityBackoff
from skytui.engine.store import ClusterStatus, PoolRow, WorkerRow, WorkerStatus
from skytui.logs.sync import maskable
from skytui.spec import Task

log = logging.getLogger("skytui.pools")

# Consecutive failed launches of a pool's workers wait longer and longer, so a
# broken setup does not provision machines in a tight loop.
FAILURE_BACKOFF_MAX_S = 120.0


def worker_cluster_name(pool: str, worker_id: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", pool.lower()).strip("-")[:24] or "pool"
    return f"{slug}-w{worker_id}"


class WorkerLifecycle(PoolDispatch):
    """A pool's workers' lifecycle (see the module docstring)."""

    # -------------------------------------------------- health and rolling

    async def _check_health(self, pool: PoolRow, state: PoolState, workers: list[WorkerRow]) -> None:
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

    async def _drain_old_versions(self, pool: PoolRow, workers: list[WorkerRow]) -> None:
        """Old workers go once idle and once the new version can take their place."""
        ready_now = sum(1 for w in workers if w.version == pool.version and w.status == WorkerStatus.READY)
        for worker in workers:
            if worker.version >= pool.version or worker.job_id is not None:
                continue
            if worker.status == WorkerStatus.READY and ready_now < pool.target_workers:
                continue  # still serving until the new version is up
            await self._terminate_worker(worker, WorkerStatus.TERMINATED, f"replaced by version {pool.version}")

    # ----------------------------------------------------- worker lifecycle

    def _launch_failed(self, state: PoolState) -> None:
        state.failures += 1
        state.retry_after = time.monotonic() + min(FAILURE_BACKOFF_MAX_S, 2.0 ** (state.failures - 1))

    def _start_launch(self, pool: str, worker_id: int, bring_up: Coroutine[Any, Any, str | None]) -> None:
        """Launch a worker in a task of its own, on record in its pool's `launching`."""
        state = self._pools.setdefault(pool, PoolState())
        state.launching[worker_id] = asyncio.create_task(
            self._finish_launch(pool, worker_id, bring_up), name=f"pool-{pool}-w{worker_id}",
        )

    async def _take_down_launch(self, pool: str, worker_id: int, final: str, reason: str) -> None:
        """A launch that failed or was cancelled: its worker goes, if it is still on record."""
        worker = next((w for w in await self.store.workers(pool) if w.id == worker_id), None)
        if worker is not None:
            await self._terminate_worker(worker, final, reason)

    async def _finish_launch(self, pool: str, worker_id: int, bring_up: Awaitable[str | None]) -> None:
        """Await a worker's launch (`_bring_up`, or `_set_up` when resumed),
        then make it READY, or take it down with the reason it failed."""
        state = self._pools.setdefault(pool, PoolState())
        try:
            reason = await bring_up
            if reason is None:
                state.failures = 0
                await self.store.update_worker(worker_id, status=WorkerStatus.READY, ready_at=time.time(),
                                               status_reason=None)
                log.info("pool %s: worker %s READY", pool, worker_id)
            else:
                self._launch_failed(state)
                await self._take_down_launch(pool, worker_id, WorkerStatus.FAILED, reason)
        except asyncio.CancelledError:
            await self._take_down_launch(pool, worker_id, WorkerStatus.TERMINATED, "launch cancelled")
            raise
        except Exception as exc:  # noqa: BLE001 - a worker's failure must not stop its pool
            log.exception("pool %s: worker %s failed to launch", pool, worker_id)
            self._launch_failed(state)
            await self._take_down_launch(pool, worker_id, WorkerStatus.FAILED, f"{type(exc).__name__}: {exc}")
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
            cluster_id: int = await self.store.insert_cluster(
                name=name, cloud=offer.cloud, region=offer.region, zone=offer.zone,
                instance_type=offer.instance_type, use_spot=offer.use_spot, num_nodes=1,
                pool=pool, worker_id=worker_id, price_per_hour=offer.price_per_hour,
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
        await self._close_worker_nodes(worker.id)
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
