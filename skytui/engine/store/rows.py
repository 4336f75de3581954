"""The records the store hands out: one frozen dataclass per row kind
(JobRow, TaskRow, ...), the requests a caller builds (NewTask,
RunEndRequest), and the small vocabularies of machines and pool workers.

Owns no I/O and imports no SQLAlchemy: the UI and the client read these
without loading the DB layer's types.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Final

from skytui.engine.status import TaskStatus


class Unset(enum.Enum):
    """The type of UNSET: a typed update's "column not given" (None is a value)."""

    UNSET = enum.auto()


UNSET: Final = Unset.UNSET


@dataclass(frozen=True)
class JobRow:
    id: int
    name: str
    pool: str | None
    status: str
    priority: int
    submitted_at: float
    ended_at: float | None
    cancel_requested_at: float | None
    job_rank: int
    num_jobs: int
    source: str | None
    worker_id: int | None = None
    max_cost_usd: float | None = None
    stall_timeout_s: float | None = None
    cancel_reason: str | None = None


@dataclass(frozen=True)
class TaskRow:
    job_id: int
    task_idx: int
    name: str
    status: str
    status_reason: str | None
    skypilot_task_id: str
    requested: str
    num_nodes: int
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    run_started_at: float | None
    job_duration_s: float
    recoveries: int
    restarts_on_errors: int
    attempt: int
    exit_code: int | None
    failure_reason: str | None
    infra: str | None
    instance_type: str | None
    use_spot: bool | None
    group_role: str | None  # a job group's task: "primary" or "auxiliary"

    @property
    def status_enum(self) -> TaskStatus:
        return TaskStatus(self.status)

    def duration_s(self, now: float) -> float:
        """JOB DURATION: running time only, the open stretch included."""
        open_stretch = now - self.run_started_at if self.run_started_at is not None else 0.0
        return self.job_duration_s + max(0.0, open_stretch)


@dataclass(frozen=True)
class AttemptRow:
    id: int
    job_id: int
    task_idx: int
    attempt_no: int
    cluster_id: int | None
    infra: str | None
    instance_type: str | None
    use_spot: bool | None
    started_at: float
    ended_at: float | None
    end_reason: str | None
    exit_code: int | None
    price_per_hour: float | None

    def cost(self, now: float) -> float:
        """Dollars spent on this attempt's machines so far (unknown price: 0)."""
        hours = ((self.ended_at or now) - self.started_at) / 3600
        return max(0.0, hours) * (self.price_per_hour or 0.0)


@dataclass(frozen=True)
class SegmentRow:
    id: int
    job_id: int
    task_idx: int
    attempt_no: int
    rank: int
    phase: str
    pid: int | None
    start_offset: int
    started_at: float
    finished: bool


@dataclass(frozen=True)
class ClusterRow:
    id: int
    name: str
    cloud: str
    region: str | None
    zone: str | None
    instance_type: str | None
    use_spot: bool
    num_nodes: int
    job_id: int | None
    task_idx: int | None
    attempt_no: int | None
    pool: str | None
    worker_id: int | None
    status: str
    handle_json: str | None
    created_at: float
    ended_at: float | None
    end_reason: str | None
    price_per_hour: float | None = None

    @property
    def handle(self) -> dict[str, Any]:
        return json.loads(self.handle_json) if self.handle_json else {}


@dataclass(frozen=True)
class RunEndRequest:
    """One task whose run ended (`Store.end_runs`)."""

    job_id: int
    task_idx: int
    attempt_no: int
    to: TaskStatus
    reason: str
    exit_code: int | None
    ran_until: float | None  # when the run ended by the node's clock
    finish_segments: tuple[int, ...] = ()
    retire_clusters: bool = False


@dataclass(frozen=True)
class RunEnd:
    """What `Store.end_run` did: whether it ended the task, and the
    machines it marked TERMINATING (to be terminated next)."""

    ended: bool
    terminating: list[ClusterRow] = field(default_factory=list)


@dataclass(frozen=True)
class EventRow:
    id: int
    job_id: int | None
    task_idx: int | None
    at: float
    kind: str
    from_status: str | None
    to_status: str | None
    message: str | None


@dataclass(frozen=True)
class NewTask:
    """What a client submits per task; the store assigns statuses and times."""

    name: str
    skypilot_task_id: str
    requested: str
    num_nodes: int
    group_role: str | None = None  # in a job group: "primary" or "auxiliary"


@dataclass(frozen=True)
class PoolRow:
    name: str
    version: int
    status: str
    created_at: float
    down_requested_at: float | None
    target_workers: int
    updated_at: float | None


@dataclass(frozen=True)
class WorkerRow:
    id: int
    pool: str
    version: int
    status: str
    cluster_id: int | None
    job_id: int | None
    created_at: float
    ended_at: float | None
    status_reason: str | None
    ready_at: float | None
    jobs_done: int


class WorkerStatus:
    """A pool worker's life, in SkyPilot's words."""

    PROVISIONING = "PROVISIONING"
    STARTING = "STARTING"  # setup running
    READY = "READY"
    NOT_READY = "NOT_READY"  # up but unreachable
    SHUTTING_DOWN = "SHUTTING_DOWN"
    FAILED = "FAILED"  # setup failed, or could not be launched
    PREEMPTED = "PREEMPTED"
    TERMINATED = "TERMINATED"
    LIVE = (PROVISIONING, STARTING, READY, NOT_READY, SHUTTING_DOWN)


class PoolApplied:
    CREATED = "created"
    RESIZED = "resized"  # only the worker count changed: workers kept
    UPDATED = "updated"  # a new spec: new workers, old ones drained
    UNCHANGED = "unchanged"


class ClusterStatus:
    PROVISIONING = "PROVISIONING"
    UP = "UP"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    LIVE = (PROVISIONING, UP, TERMINATING)


@dataclass(frozen=True)
class BudgetState:
    """An in-progress job with a budget: what it has spent so far, and
    whether it was already warned at 80 %."""

    job_id: int
    max_cost_usd: float
    spent_usd: float
    warned: bool
    burn_per_hour: float = 0.0
    """What its machines up now cost per hour: when the next threshold comes."""


@dataclass(frozen=True)
class RunningTask:
    """A RUNNING task of a job with a stall timeout: what the stall watch needs."""

    job_id: int
    task_idx: int
    attempt: int
    num_nodes: int
    stall_timeout_s: float
    run_started_at: float | None
    status_reason: str | None


@dataclass(frozen=True)
class SimPreempt:
    """`skytui sim preempt`: reclaim the sim machine under a job's task (the
    current task when `task_idx` is None), `notice_s` seconds after giving
    notice of it (0: at once, no notice)."""

    job_id: int
    task_idx: int | None = None
    notice_s: float = 0.0


@dataclass(frozen=True)
class SimStockout:
    """`skytui sim stockout`: a sim region (as the user typed it) runs dry, or gets capacity back."""

    region: str
    on: bool


IntentRequest = SimPreempt | SimStockout


@dataclass(frozen=True)
class IntentOutcome:
    """What the controller made of an intent: `error` (said to the user as
    is), or what it did: the machine it reclaimed (`cluster`), or the region
    as resolved and every stock-out now in force (`region`, `stockouts`)."""

    error: str | None = None
    cluster: str | None = None
    region: str | None = None
    stockouts: tuple[str, ...] = ()


@dataclass(frozen=True)
class IntentRow:
    id: int
    request: IntentRequest
    requested_at: float
    done_at: float | None
    outcome: IntentOutcome | None
    # The machine a preemption chose, once chosen (see `claim_preempt_target`).
    target: str | None = None
