"""What the faces show of a job and of a pool: `JobView` and `PoolView`,
built by the client from the store's rows, with their JSON forms (the
`--json` contracts of `jobs queue` and `pool status`).

May touch the store's row types, `engine.status` and `clouds.base`'s infra
label; nothing that reads or writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from skytui.clouds.base import infra_label
from skytui.engine.status import PRIMARY, TaskStatus
from skytui.engine.store import (
    AttemptRow,
    ClusterRow,
    JobRow,
    PoolRow,
    TaskRow,
    WorkerRow,
    WorkerStatus,
)


@dataclass(frozen=True)
class JobView:
    """A job with its tasks, as the queue shows it."""

    job: JobRow
    tasks: list[TaskRow]
    attempts: list[AttemptRow] = field(default_factory=list)

    def cost(self, now: float, task_idx: int | None = None) -> float | None:
        """Dollars spent so far (one task's, or the job's); None while no
        attempt has a known price."""
        priced = [
            a for a in self.attempts
            if a.price_per_hour is not None and (task_idx is None or a.task_idx == task_idx)
        ]
        return sum(a.cost(now) for a in priced) if priced else None

    @property
    def status(self) -> TaskStatus:
        return TaskStatus(self.job.status)

    @property
    def is_pipeline(self) -> bool:
        """Shown task by task: a pipeline, or a job group (`is_group`)."""
        return len(self.tasks) > 1 or self.is_group

    @property
    def is_group(self) -> bool:
        """A job group: its tasks run at once."""
        return any(task.group_role for task in self.tasks)

    def is_primary(self, task: TaskRow) -> bool:
        """Whether a group's task is one of those whose end ends the group."""
        return task.group_role == PRIMARY

    def marked_primary(self, task: TaskRow) -> bool:
        """Whether `task` is shown with SkyPilot's [P] mark: a primary of a
        group that also has auxiliaries (where every task is primary, the
        mark would say nothing)."""
        return self.is_primary(task) and self.is_group and not all(self.is_primary(t) for t in self.tasks)

    @property
    def current_task(self) -> TaskRow | None:
        for task in self.tasks:
            if task.status_enum is not TaskStatus.SUCCEEDED:
                return task
        return self.tasks[-1] if self.tasks else None

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.job.id,
            "name": self.job.name,
            "pool": self.job.pool,
            "status": self.job.status,
            "submitted_at": self.job.submitted_at,
            "recoveries": sum(t.recoveries for t in self.tasks),
            # Every attempt's machine time x its price, preempted ones included.
            "cost_usd": round(self.cost(now) or 0.0, 4),
            "tasks": [
                {
                    "task_id": t.task_idx,
                    "name": t.name,
                    "status": t.status,
                    "infra": t.infra,
                    "instance_type": t.instance_type,
                    "use_spot": t.use_spot,
                    "recoveries": t.recoveries,
                    "restarts_on_errors": t.restarts_on_errors,
                    "exit_code": t.exit_code,
                    "failure_reason": t.failure_reason,
                    "job_duration_s": round(t.duration_s(now), 3),
                    "cost_usd": round(self.cost(now, t.task_idx) or 0.0, 4),
                }
                for t in self.tasks
            ],
        }


@dataclass(frozen=True)
class PoolView:
    """A pool and its live workers, as `pool status` shows them."""

    pool: PoolRow
    workers: list[WorkerRow]
    clusters: dict[int, ClusterRow]

    @property
    def ready(self) -> int:
        return sum(1 for w in self.workers if w.status == WorkerStatus.READY)

    @property
    def status(self) -> str:
        """SkyPilot's pool statuses, derived from the workers."""
        if self.pool.down_requested_at is not None:
            return "SHUTTING_DOWN"
        if self.ready:
            return "READY"
        if self.pool.target_workers == 0:
            return "NO_REPLICA"
        return "REPLICA_INIT"

    def infra_of(self, worker: WorkerRow) -> tuple[str | None, str | None]:
        cluster = self.clusters.get(worker.cluster_id) if worker.cluster_id else None
        if cluster is None:
            return None, None
        return infra_label(cluster.cloud, cluster.region, cluster.zone), cluster.instance_type

    def to_json(self) -> dict[str, Any]:
        workers = []
        for w in self.workers:
            infra, instance = self.infra_of(w)
            workers.append({"id": w.id, "version": w.version, "status": w.status, "infra": infra,
                            "instance_type": instance, "job_id": w.job_id, "status_reason": w.status_reason})
        return {"name": self.pool.name, "version": self.pool.version, "status": self.status,
                "target_workers": self.pool.target_workers, "ready_workers": self.ready, "workers": workers}


def skypilot_task_id(job_name: str, task_name: str, task_idx: int, is_pipeline: bool, at: float) -> str:
    """SkyPilot's format; `{job_id}` is filled in by the store at insert."""
    stamp = datetime.fromtimestamp(at).strftime("%Y-%m-%d-%H-%M-%S-%f")
    middle = f"{job_name}_{task_name}" if is_pipeline else job_name
    return f"sky-managed-{stamp}_{middle}_{{job_id}}-{task_idx}"
