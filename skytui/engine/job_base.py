"""What every step of a job's coroutine shares: its state and its plumbing.

Owns the JobController's fields (set once in `JobBase.__init__`), the
TaskFailed outcome, phase ids, and the small helpers every step calls: the
job's log line (`_say`), a PhaseRunner for a cluster, the job's staging area
and buckets, its masked secrets. May touch the store and the job's own log;
the steps themselves live in job_phases, job_worker, job_cleanup, job_launch
and controller (the state machine), each a class on top of this one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from skytui.engine.context import EngineContext
from skytui.engine.file_sync import StagingArea, has_local_files
from skytui.engine.job_group import GroupNames, JobGroup
from skytui.engine.named_buckets import JobBuckets
from skytui.engine.phase_runner import LiveCluster, PhaseRunner
from skytui.engine.pool_dispatch import Lease
from skytui.engine.recovery import Place
from skytui.engine.status import TaskStatus
from skytui.engine.store import JobRow
from skytui.logs.store import append_line, controller_log_path
from skytui.logs.sync import maskable
from skytui.spec import Task

log = logging.getLogger("skytui.controller")

# Why a job's coroutine is asked to stop (JobController.request_stop).
StopReason = Literal["user", "shutdown", "ended"]


class TaskFailed(Exception):
    """The task ended in a failure status; the message is the reason.

    `exit_codes` is set when the user's code failed on a machine that is still
    up: only such a failure may be restarted (max_restarts_on_errors,
    recover_on_exit_codes)."""

    def __init__(
        self, status: TaskStatus, reason: str, exit_code: int | None = None,
        exit_codes: list[int] | None = None, ended_at: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.exit_code = exit_code
        self.exit_codes = exit_codes
        self.ended_at = ended_at  # by the node's clock, when its code ended


def phase_id_for(job_id: int, task_idx: int, attempt: int, phase: str) -> str:
    return f"job{job_id}-task{task_idx}-attempt{attempt}-{phase}"


class JobBase:
    """The state of one job's coroutine; see JobController for what it does."""

    def __init__(self, ctx: EngineContext, job: JobRow, tasks: list[Task], group: JobGroup | None = None) -> None:
        self.ctx = ctx
        self.job = job
        self.tasks = tasks
        self.group = group  # a job group: every task at once (_run_group)
        self.store = ctx.store
        self.stop_reason: StopReason | None = None
        self._asyncio_task: asyncio.Task[None] | None = None
        self._clusters: dict[int, LiveCluster] = {}
        self._controller_log = controller_log_path(ctx.paths.job_logs, job.id)
        self._task_ids: list[str] = []
        self._retiring = False  # tearing down after its success: see request_stop
        self._names: GroupNames | None = None  # a job group's `<task>-<rank>.<group>` names
        # Per task: where its last machine was lost, to steer the relaunch.
        self._lost_at: dict[int, Place] = {}
        # Per task: the line that explains the recovery in progress.
        self._recovery_note: dict[int, str] = {}
        # A pool job: the worker it runs on now, and the pool's own task
        # (its workdir and envs are the job's too).
        self._lease: Lease | None = None
        self._pool_task: Task | None = None
        # Per task: log segments whose output is all copied but not yet marked
        # so: the run's last one, closed with the attempt (`_end_attempt`, `end_run`).
        self._unclosed_segments: dict[int, list[int]] = {}
        # Per task: why its run is being stopped by the stall watch (`restart_stalled`).
        self._stalled: dict[int, str] = {}

    # ------------------------------------------------------------- plumbing

    @property
    def _masked(self) -> tuple[bytes, ...]:
        """Every secret value this job's phases see (its tasks', its pool's):
        masked in the logs as they are stored."""
        values = [v for task in self.tasks for v in task.secrets.values()]
        if self._pool_task is not None:
            values += self._pool_task.secrets.values()
        return maskable(values)

    def _say(self, message: str) -> None:
        """The controller's account of this job: its own log and the daemon's."""
        log.info("job %s: %s", self.job.id, message)
        append_line(self._controller_log, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def _runner(self, cluster: LiveCluster) -> PhaseRunner:
        return PhaseRunner(cluster, self.ctx.machines, say=self._say, secrets=self._masked)

    def _staging(self) -> StagingArea | None:
        """The job's files in jobs.bucket; None without a bucket, for a pool job
        (the pool's files are the pool's) or a job with no local files."""
        if not self.ctx.bucket or self.job.pool is not None or not any(map(has_local_files, self.tasks)):
            return None
        return StagingArea(self.ctx.bucket, self.ctx.paths.install_id, f"job-{self.job.id}")

    def _buckets(self) -> JobBuckets:
        """The buckets the job's storage mounts name (made, kept or deleted by file_sync)."""
        return JobBuckets(self.store, self.job.id, self.tasks)

    async def _waiting(self, idx: int, why: str) -> None:
        await self.store.set_task_fields(self.job.id, idx, status_reason=why)

    async def _publish_group_names(self) -> None:
        if self._names is not None:
            for problem in await self._names.publish(self._clusters.values()):
                self._say(problem)
