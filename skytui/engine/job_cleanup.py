"""A job's cleanup: tearing its machines down, a cancel (the whole job or some
of its tasks), and the failure of the controller itself.

Owns stopping a running phase gracefully and keeping its last output, the
CANCELLING -> CANCELLED path, and FAILED_CONTROLLER. May touch the store's
cluster and task rows and the infras (terminate); a pool job's worker is
given back (job_worker), never terminated.
"""

from __future__ import annotations

import asyncio
import dataclasses

from skytui.clouds.base import CloudError, ClusterHandle, NodeError
from skytui.engine.job_base import log, phase_id_for
from skytui.engine.job_worker import WorkerSteps
from skytui.engine.phase_runner import LiveCluster, NodeLost
from skytui.engine.status import TaskStatus
from skytui.engine.store import ClusterRow, ClusterStatus
from skytui.logs.store import task_log_path
from skytui.logs.sync import sync_phase_output

S = TaskStatus


class CleanupSteps(WorkerSteps):
    """A job's teardown and cancel (see the module docstring)."""

    async def _teardown(self, row: ClusterRow, *, reason: str) -> None:
        cloud = self.ctx.clouds.get(row.cloud)
        cached = self._clusters.pop(row.id, None)
        if cached is not None:
            for node in cached.nodes:
                await node.close()
        if cloud is None:
            raise CloudError(f"cluster {row.name} is on {row.cloud}, which is not enabled")
        if row.status != ClusterStatus.TERMINATING:
            await self.store.update_cluster(row.id, status=ClusterStatus.TERMINATING)
        handle = ClusterHandle.from_json(row.handle) if row.handle_json else None
        await cloud.terminate(row.name, handle)
        await self.store.update_cluster(row.id, status=ClusterStatus.TERMINATED, end_reason=reason)
        self._say(f"terminated {row.name} ({reason})")

    async def _teardown_all(self, *, reason: str, machine_lost: bool = False, task_idx: int | None = None) -> None:
        """Tear down the job's machines: those of `task_idx` only, when given
        (a job group's other tasks run on)."""
        if self.job.pool is not None:
            # The worker stays up for the next job, unless its machine is gone.
            await self._release_worker(lost=machine_lost)
            return
        for row in await self.store.live_clusters(self.job.id):
            if task_idx is None or row.task_idx == task_idx:
                await self._teardown(row, reason=reason)

    async def _close_nodes(self) -> None:
        for cluster in list(self._clusters.values()):
            for node in cluster.nodes:
                try:
                    await node.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
        self._clusters.clear()

    async def _cancel(self) -> None:
        """The user's cancel: stop the job wherever it is, keep its logs, leave nothing up."""
        self._say("cancel requested")
        current = await self.store.job(self.job.id)
        # Its budget, or the user.
        await self._cancel_tasks(None, (current.cancel_reason if current else None) or "cancelled by user")
        self._say("cancelled")

    async def _cancel_tasks(self, only: list[int] | None, why: str) -> None:
        """Stop tasks (`only` these, else all) wherever they are, keep their
        logs, leave none of their machines up; they end CANCELLED."""
        def chosen(task_idx: int | None) -> bool:
            return only is None or task_idx in only

        for row in await self.store.tasks(self.job.id):
            status = row.status_enum
            if not chosen(row.task_idx):
                continue
            if status is S.PENDING:
                await self.store.transition_task(self.job.id, row.task_idx, S.CANCELLED, message=why, expect=S.PENDING)
            elif not status.is_terminal and status is not S.CANCELLING:
                await self.store.transition_task(self.job.id, row.task_idx, S.CANCELLING, message=why)
        try:
            if self.job.pool is not None:
                await self._stop_on_worker()
            for cluster in await self.store.live_clusters(self.job.id):
                if chosen(cluster.task_idx):
                    await self._stop_and_collect(cluster)
                    await self._teardown(cluster, reason=why)
        except Exception as exc:  # noqa: BLE001 - reported on the job, not raised
            log.exception("job %s: cleanup after cancel failed", self.job.id)
            for row in await self.store.tasks(self.job.id):
                if row.status_enum is S.CANCELLING and chosen(row.task_idx):
                    await self.store.transition_task(
                        self.job.id, row.task_idx, S.FAILED_CONTROLLER,
                        message=f"cleanup failed, resources may have leaked: {exc}",
                        failure_reason=f"cleanup failed, resources may have leaked: {exc}",
                    )
            return
        for row in await self.store.tasks(self.job.id):
            if row.status_enum is S.CANCELLING and chosen(row.task_idx):
                await self.store.end_attempt(self.job.id, row.task_idx, row.attempt, reason=why)
                await self.store.transition_task(self.job.id, row.task_idx, S.CANCELLED, message=why)

    async def _stop_on_worker(self) -> None:
        """A pool job's cancel: stop its phase and keep its output; the worker
        stays READY for the next job."""
        lease = await self._held_lease()
        if lease is None:
            return
        for row in await self.store.tasks(self.job.id):
            if row.status_enum is S.CANCELLING and row.attempt:
                stand_in = dataclasses.replace(lease.cluster, task_idx=row.task_idx, attempt_no=row.attempt)
                await self._stop_and_collect(stand_in)
        self._lease = lease
        await self._release_worker()

    async def _stop_and_collect(self, row: ClusterRow) -> None:
        """Stop the running phase gracefully and copy its last output before teardown."""
        if row.status != ClusterStatus.UP or not row.handle_json or row.task_idx is None:
            return
        cloud = self.ctx.clouds.get(row.cloud)
        if cloud is None:
            return
        handle = ClusterHandle.from_json(row.handle)
        cluster = self._clusters.get(row.id) or LiveCluster(row, handle, cloud)
        self._clusters[row.id] = cluster
        segments = [s for s in await self.store.segments(self.job.id, row.task_idx) if s.attempt_no == row.attempt_no]
        active = [s for s in segments if not s.finished]
        if not active:
            return
        try:
            await asyncio.wait_for(self._runner(cluster).connect(), timeout=10)
            phase_id = phase_id_for(self.job.id, row.task_idx, row.attempt_no or 0, active[0].phase)
            await self._runner(cluster).kill(phase_id)
            for segment in active:
                if segment.rank < len(cluster.nodes):
                    path = task_log_path(self.ctx.paths.job_logs, self.job.id, row.task_idx, segment.rank)
                    await sync_phase_output(cluster.nodes[segment.rank], phase_id, path, segment.start_offset, drain=True,
                                            secrets=self._masked)
                    await self.store.update_segment(segment.id, finished=True)
        except (TimeoutError, NodeError, NodeLost) as exc:
            self._say(f"could not stop {row.name} gracefully ({exc}); terminating it")

    async def _fail_controller(self, reason: str) -> None:
        try:
            await self._teardown_all(reason=reason)
        except Exception:  # noqa: BLE001
            log.exception("job %s: teardown after a controller error failed", self.job.id)
            reason += "; resources may have leaked"
        current = True  # the first unfinished task is the one that failed (PENDING too: waiting for a place)
        for row in await self.store.tasks(self.job.id):
            if not row.status_enum.is_terminal:
                status = S.FAILED_CONTROLLER if current else S.CANCELLED
                current = False
                await self.store.transition_task(
                    self.job.id, row.task_idx, status, message=reason,
                    failure_reason=reason if status is S.FAILED_CONTROLLER else None,
                )
