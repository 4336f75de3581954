"""A pool job's side of its worker: taking one (PENDING until a worker is
free), the lease it holds, found again after a controller restart, its
attempt on the worker, the pool's task, and giving the worker back.

May touch the store's task and attempt rows and ask the PoolManager
(ctx.pools) for leases; the worker's machine and its lifecycle are the
pool manager's (pool_workers), never torn down from here.
"""

from __future__ import annotations

import contextlib

from skytui.clouds.base import ClusterState, infra_label
from skytui.engine.job_base import JobBase, TaskFailed
from skytui.engine.phase_runner import LiveCluster
from skytui.engine.pool_dispatch import Lease, PoolGone
from skytui.engine.status import TaskStatus
from skytui.engine.store import TaskRow

S = TaskStatus


class WorkerSteps(JobBase):
    """A pool job's worker (see the module docstring)."""

    async def _held_lease(self) -> Lease | None:
        """The worker this job holds: the one it took, or, after a restart, the one on record."""
        return self._lease or (await self.ctx.pools.lease_of(self.job.id) if self.ctx.pools else None)

    async def _launch_on_worker(self, row: TaskRow) -> tuple[LiveCluster, int]:
        """A pool job: wait PENDING for an idle READY worker, then take it.
        Its setup and file_mounts are the pool's, done once per worker."""
        idx = row.task_idx
        pools, pool = self.ctx.pools, self.job.pool
        assert pools is not None and pool is not None
        cluster = await self._reattach_worker(row)
        fresh = cluster is None
        if cluster is None:
            try:
                lease = await pools.acquire(self.job, on_wait=lambda why: self._waiting(idx, why))
            except PoolGone as exc:
                raise TaskFailed(S.FAILED_NO_RESOURCE, str(exc)) from exc
            self._lease = lease
            cloud = self.ctx.clouds.get(lease.cluster.cloud)
            if cloud is None:
                raise TaskFailed(S.FAILED_PRECHECKS, f"pool {pool}'s worker is on {lease.cluster.cloud}, not enabled")
            cluster = LiveCluster(lease.cluster, lease.handle, cloud, nodes=pools.nodes_for(lease, cloud))
            self._clusters[lease.cluster.id] = cluster
        # A worker just taken: the row read as the attempt began is current
        # (only this coroutine moves its task; a cancel is refused at the
        # assignment), so it is not read again for every job.
        current = row if fresh else await self.store.task(self.job.id, idx)
        if fresh or not await self._attempt_is_on(current, cluster):
            # A worker just taken, or taken by a controller that died before
            # it recorded the attempt on it: the attempt there starts now.
            attempt = await self._start_attempt_on_worker(current, cluster)
        else:
            attempt = current.attempt
        await self._load_pool_task()
        await self._runner(cluster).connect()
        return cluster, attempt

    async def _attempt_is_on(self, task: TaskRow, cluster: LiveCluster) -> bool:
        """Whether the task's current attempt runs on this worker's machine."""
        if not task.attempt:
            return False
        row = next((a for a in await self.store.attempts(self.job.id, task.task_idx)
                    if a.attempt_no == task.attempt), None)
        if row is None or row.ended_at is not None:
            return False
        # An attempt recorded before attempts named their worker: it ran here if it runs.
        return row.cluster_id == cluster.row.id or (row.cluster_id is None and task.status_enum is S.RUNNING)

    async def _start_attempt_on_worker(self, task: TaskRow, cluster: LiveCluster) -> int:
        idx, lease = task.task_idx, self._lease
        assert lease is not None
        if task.status_enum is S.PENDING:
            await self.store.transition_task(self.job.id, idx, S.RECOVERING if task.recoveries else S.STARTING,
                                             status_reason=None)
        else:
            await self.store.set_task_fields(self.job.id, idx, status_reason=None)
        return int(await self.store.start_attempt(
            self.job.id, idx, infra=infra_label(lease.cluster.cloud, lease.cluster.region, lease.cluster.zone),
            instance_type=lease.cluster.instance_type, use_spot=lease.cluster.use_spot,
            message=f"attempt on pool {self.job.pool}, worker {lease.worker.id}", cluster_id=cluster.row.id,
        ))

    async def _load_pool_task(self) -> None:
        if self._pool_task is None and self.job.pool is not None and self.ctx.pools is not None:
            with contextlib.suppress(Exception):  # a pool already gone keeps the job's own envs
                self._pool_task = await self.ctx.pools.pool_task(self.job.pool)

    async def _release_worker(self, *, lost: bool = False) -> None:
        lease = await self._held_lease()
        self._lease = None
        if lease is None or self.ctx.pools is None or self.job.pool is None:
            return
        cached = self._clusters.pop(lease.cluster.id, None)
        if cached is not None and cached.nodes and not lost:
            self.ctx.pools.keep_nodes(lease.worker.id, cached.nodes)  # open, for the next job
        await self.ctx.pools.release(self.job.pool, lease.worker, self.job.id, lost=lost)

    async def _reattach_worker(self, row: TaskRow) -> LiveCluster | None:
        assert self.ctx.pools is not None
        if self.job.worker_id is None:
            return None  # never given a worker (jobs.worker_id is set with the worker's job_id)
        lease = await self.ctx.pools.lease_of(self.job.id)
        cloud = self.ctx.clouds.get(lease.cluster.cloud) if lease else None
        if lease is None or cloud is None:
            return None
        if await cloud.cluster_state(lease.handle) is not ClusterState.UP:
            await self.ctx.pools.release(self.job.pool or "", lease.worker, self.job.id, lost=True)
            await self.store.end_attempt(self.job.id, row.task_idx, row.attempt, reason="its worker was lost")
            return None
        self._lease = lease
        self._say(f"task {row.task_idx}: re-attached to worker {lease.worker.id} of pool {self.job.pool}")
        cluster = LiveCluster(lease.cluster, lease.handle, cloud, nodes=self.ctx.pools.nodes_for(lease, cloud))
        self._clusters[lease.cluster.id] = cluster
        return cluster
