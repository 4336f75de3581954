"""`Store`: typed access to the state DB, one object for every caller.

It is the `Database` (connection, batches, migration) composed with one
repository per aggregate, each holding that aggregate's queries: jobs and
tasks (`jobs`), runs (`runs`: attempts, log segments, events), machines
(`clusters`), pools and workers (`pools`), and the controller's own (`intents`:
cancel and sim chaos intents, its lock's start-up erasure). The methods here only forward,
so callers keep one name per query whatever module holds it.

The DB is the contract between clients and the controller: clients write
intents (a job, a cancel request), the controller writes state (save one
case: a cancel ends a job that never started at once, see `request_cancel`),
and every task status change commits in the same transaction as its event
row and the job's derived status. Status changes are compare-and-set against
`status.TRANSITIONS`, so a finished task is never rewritten.

SQLite (WAL) by default; any SQLAlchemy URL (PostgreSQL) works, which is why
nothing here leans on SQLite beyond the connection set-up (`queue_json` has
one builder per dialect).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skytui.engine.status import TaskStatus
from skytui.engine.store.clusters import ClusterRepository
from skytui.engine.store.database import Database
from skytui.engine.store.intents import IntentRepository
from skytui.engine.store.watch import WatchRepository
from skytui.engine.store.jobs import JobRepository
from skytui.engine.store.ledger import LedgerRepository
from skytui.engine.store.spend import AttemptSpend, MachineSpend, SpendSums
from skytui.engine.store.pools import PoolRepository
from skytui.engine.store.rows import (
    UNSET,
    AttemptRow,
    BudgetState,
    ClusterRow,
    EventRow,
    IntentOutcome,
    IntentRequest,
    IntentRow,
    JobRow,
    NewTask,
    PoolRow,
    RunEnd,
    RunEndRequest,
    RunningTask,
    SegmentRow,
    TaskRow,
    Unset,
    WorkerRow,
)
from skytui.engine.store.runs import RunRepository


class Store(Database):
    """Typed access to the state DB. Thread-safe; each call is one transaction."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._jobs = JobRepository(self)
        self._runs = RunRepository(self)
        self._clusters = ClusterRepository(self)
        self._pools = PoolRepository(self)
        self._intents = IntentRepository(self)
        self._ledger = LedgerRepository(self)
        self._watch = WatchRepository(self)

    def hold_controller_lock(self) -> bool:
        """Claim the DB for one controller, until close() (see
        `Database._claim_controller_lock`), and erase the secrets an older
        skytui or a crash left behind."""
        if not self._claim_controller_lock():
            return False
        self._intents.erase_leftover_secrets()
        return True

    def submit_jobs(
        self, *, name: str, tasks: Sequence[NewTask], spec: dict[str, Any], secrets: dict[str, dict[str, str]],
        source: str | None = None, pool: str | None = None, priority: int = 0, num_jobs: int = 1,
        max_cost_usd: float | None = None, stall_timeout_s: float | None = None,
    ) -> list[int]:
        return self._jobs.submit_jobs(
            name=name, tasks=tasks, spec=spec, secrets=secrets, source=source, pool=pool, priority=priority,
            num_jobs=num_jobs, max_cost_usd=max_cost_usd, stall_timeout_s=stall_timeout_s,
        )

    def job_specs(self, job_ids: Sequence[int]) -> dict[int, tuple[dict[str, Any], dict[str, dict[str, str]]]]:
        return self._jobs.job_specs(job_ids)

    def job_spec(self, job_id: int) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
        return self._jobs.job_spec(job_id)

    def transition_task(
        self, job_id: int, task_idx: int, to: TaskStatus, *, message: str | None = None,
        expect: TaskStatus | None = None, ran_until: float | None = None,
        status_reason: str | None | Unset = UNSET, exit_code: int | None | Unset = UNSET,
        failure_reason: str | None | Unset = UNSET, recoveries: int | Unset = UNSET,
        restarts_on_errors: int | Unset = UNSET,
    ) -> bool:
        return self._jobs.transition_task(
            job_id, task_idx, to, message=message, expect=expect, ran_until=ran_until, status_reason=status_reason,
            exit_code=exit_code, failure_reason=failure_reason, recoveries=recoveries,
            restarts_on_errors=restarts_on_errors,
        )

    def end_run(self, request: RunEndRequest) -> RunEnd:
        return self._runs.end_run(request)

    def end_runs(self, requests: Sequence[RunEndRequest]) -> list[RunEnd | Exception]:
        return self._runs.end_runs(requests)

    def cancel_pending_tasks(self, job_id: int, message: str) -> int:
        return self._jobs.cancel_pending_tasks(job_id, message)

    def set_task_fields(
        self, job_id: int, task_idx: int, *, status_reason: str | None | Unset = UNSET,
        infra: str | None | Unset = UNSET, instance_type: str | None | Unset = UNSET,
        use_spot: bool | None | Unset = UNSET,
    ) -> None:
        return self._jobs.set_task_fields(
            job_id, task_idx, status_reason=status_reason, infra=infra, instance_type=instance_type,
            use_spot=use_spot,
        )

    def note(self, job_id: int, task_idx: int | None, kind: str, message: str) -> None:
        return self._runs.note(job_id, task_idx, kind, message)

    def budget_states(self, now: float) -> list[BudgetState]:
        return self._watch.budget_states(now)

    def running_tasks_with_stall_timeout(self) -> list[RunningTask]:
        return self._watch.running_tasks_with_stall_timeout()

    def request_cancel(self, job_ids: Sequence[int], reason: str | None = None) -> list[int]:
        return self._intents.request_cancel(job_ids, reason)

    def cancel_unstarted(self, job_ids: Sequence[int]) -> list[int]:
        return self._intents.cancel_unstarted(job_ids)

    def cancel_requested(self) -> list[int]:
        return self._intents.cancel_requested()

    def cancelled_among(self, job_ids: Sequence[int]) -> list[int]:
        return self._intents.cancelled_among(job_ids)

    def pending_among(self, job_ids: Sequence[int]) -> list[int]:
        return self._intents.pending_among(job_ids)

    def request_intent(self, request: IntentRequest) -> int:
        return self._intents.request_intent(request)

    def open_intents(self) -> list[IntentRow]:
        return self._intents.open_intents()

    def claim_preempt_target(
        self, intent_id: int, cluster: str, *, job_id: int, task_idx: int, event_kind: str, message: str
    ) -> str:
        return self._intents.claim_preempt_target(
            intent_id, cluster, job_id=job_id, task_idx=task_idx, event_kind=event_kind, message=message
        )

    def finish_intent(self, intent_id: int, outcome: IntentOutcome) -> bool:
        return self._intents.finish_intent(intent_id, outcome)

    def intent_outcome(self, intent_id: int) -> IntentOutcome | None:
        return self._intents.intent_outcome(intent_id)

    def job(self, job_id: int) -> JobRow | None:
        return self._jobs.job(job_id)

    def jobs_by_name(self, name: str) -> list[JobRow]:
        return self._jobs.jobs_by_name(name)

    def jobs_by_ids(self, job_ids: Sequence[int]) -> list[JobRow]:
        return self._jobs.jobs_by_ids(job_ids)

    def job_ids_changed_after(self, event_id: int) -> tuple[list[int], int]:
        return self._jobs.job_ids_changed_after(event_id)

    def in_progress_job_ids(self, *, name: str | None = None, pool: str | None = None) -> list[int]:
        return self._jobs.in_progress_job_ids(name=name, pool=pool)

    def has_unfinished_work(self) -> bool:
        return self._jobs.has_unfinished_work()

    def job_count(self, *, in_progress_only: bool = False) -> int:
        return self._jobs.job_count(in_progress_only=in_progress_only)

    def latest_job_id(self) -> int | None:
        return self._jobs.latest_job_id()

    def jobs(self, *, in_progress_only: bool = False, limit: int | None = None) -> list[JobRow]:
        return self._jobs.jobs(in_progress_only=in_progress_only, limit=limit)

    def queue_json(self, *, in_progress_only: bool = False, limit: int | None = None, now: float) -> str:
        return self._jobs.queue_json(in_progress_only=in_progress_only, limit=limit, now=now)

    def runnable_jobs(self, exclude: set[int], limit: int) -> list[JobRow]:
        return self._jobs.runnable_jobs(exclude, limit)

    def tasks(self, job_id: int) -> list[TaskRow]:
        return self._jobs.tasks(job_id)

    def task(self, job_id: int, task_idx: int) -> TaskRow:
        return self._jobs.task(job_id, task_idx)

    def tasks_of_jobs(self, job_ids: Sequence[int]) -> dict[int, list[TaskRow]]:
        return self._jobs.tasks_of_jobs(job_ids)

    def events(self, *, after_id: int = 0, job_id: int | None = None, limit: int = 1000) -> list[EventRow]:
        return self._runs.events(after_id=after_id, job_id=job_id, limit=limit)

    def ended_jobs_with_event(self, kind: str) -> list[int]:
        return self._runs.ended_jobs_with_event(kind)

    def last_event_id(self) -> int:
        return self._runs.last_event_id()

    def start_attempt(
        self, job_id: int, task_idx: int, *, infra: str, instance_type: str | None, use_spot: bool,
        price_per_hour: float | None = None, message: str | None = None, cluster_id: int | None = None,
    ) -> int:
        return self._runs.start_attempt(
            job_id, task_idx, infra=infra, instance_type=instance_type, use_spot=use_spot,
            price_per_hour=price_per_hour, message=message, cluster_id=cluster_id,
        )

    def end_attempt(
        self, job_id: int, task_idx: int, attempt_no: int, *, reason: str, exit_code: int | None = None,
        finish_segments: Sequence[int] = (),
    ) -> None:
        return self._runs.end_attempt(
            job_id, task_idx, attempt_no, reason=reason, exit_code=exit_code, finish_segments=finish_segments,
        )

    def attempts(self, job_id: int, task_idx: int | None = None) -> list[AttemptRow]:
        return self._runs.attempts(job_id, task_idx)

    def attempts_of_jobs(self, job_ids: Sequence[int]) -> dict[int, list[AttemptRow]]:
        return self._runs.attempts_of_jobs(job_ids)

    def set_attempt_cluster(self, job_id: int, task_idx: int, attempt_no: int, cluster_id: int) -> None:
        return self._runs.set_attempt_cluster(job_id, task_idx, attempt_no, cluster_id)

    def open_segment(
        self, job_id: int, task_idx: int, attempt_no: int, rank: int, phase: str, start_offset: int,
    ) -> SegmentRow:
        return self._runs.open_segment(job_id, task_idx, attempt_no, rank, phase, start_offset)

    def update_segment(
        self, segment_id: int, *, pid: int | None | Unset = UNSET, finished: bool | Unset = UNSET,
    ) -> None:
        return self._runs.update_segment(segment_id, pid=pid, finished=finished)

    def segments(self, job_id: int, task_idx: int | None = None) -> list[SegmentRow]:
        return self._runs.segments(job_id, task_idx)

    def insert_cluster(
        self, *, name: str, cloud: str, region: str | None, zone: str | None, instance_type: str | None,
        use_spot: bool, num_nodes: int, job_id: int | None = None, task_idx: int | None = None,
        attempt_no: int | None = None, pool: str | None = None, worker_id: int | None = None,
        price_per_hour: float | None = None,
    ) -> int:
        return self._clusters.insert_cluster(
            name=name, cloud=cloud, region=region, zone=zone, instance_type=instance_type, use_spot=use_spot,
            num_nodes=num_nodes, job_id=job_id, task_idx=task_idx, attempt_no=attempt_no, pool=pool,
            worker_id=worker_id, price_per_hour=price_per_hour,
        )

    def update_cluster(
        self, cluster_id: int, *, status: str, handle: dict[str, Any] | None = None, end_reason: str | None = None,
    ) -> None:
        return self._clusters.update_cluster(cluster_id, status=status, handle=handle, end_reason=end_reason)

    def cluster_name_taken(self, name: str) -> bool:
        return self._clusters.cluster_name_taken(name)

    def forget_cluster(self, cluster_id: int) -> None:
        return self._clusters.forget_cluster(cluster_id)

    def cluster(self, cluster_id: int) -> ClusterRow | None:
        return self._clusters.cluster(cluster_id)

    def live_clusters(self, job_id: int | None = None) -> list[ClusterRow]:
        return self._clusters.live_clusters(job_id)

    def clusters(self) -> list[ClusterRow]:
        return self._clusters.clusters()

    def apply_pool(
        self, name: str, spec: dict[str, Any], secrets: dict[str, str], target_workers: int,
    ) -> tuple[int, str]:
        return self._pools.apply_pool(name, spec, secrets, target_workers)

    def set_pool_target(self, name: str, target_workers: int) -> None:
        return self._pools.set_pool_target(name, target_workers)

    def pool(self, name: str) -> PoolRow | None:
        return self._pools.pool(name)

    def pools(self) -> list[PoolRow]:
        return self._pools.pools()

    def pool_spec(self, name: str) -> tuple[dict[str, Any], dict[str, str]]:
        return self._pools.pool_spec(name)

    def request_pool_down(self, name: str) -> list[int]:
        return self._pools.request_pool_down(name)

    def delete_pool(self, name: str) -> None:
        return self._pools.delete_pool(name)

    def workers(self, pool: str | None = None, *, live_only: bool = True) -> list[WorkerRow]:
        return self._pools.workers(pool, live_only=live_only)

    def insert_worker(self, pool: str, version: int) -> int:
        return self._pools.insert_worker(pool, version)

    def update_worker(
        self, worker_id: int, *, status: str | Unset = UNSET, cluster_id: int | None | Unset = UNSET,
        status_reason: str | None | Unset = UNSET, ready_at: float | None | Unset = UNSET,
        ended_at: float | None | Unset = UNSET,
    ) -> None:
        return self._pools.update_worker(
            worker_id, status=status, cluster_id=cluster_id, status_reason=status_reason, ready_at=ready_at,
            ended_at=ended_at,
        )

    def assign_worker(self, worker_id: int, job_id: int) -> bool:
        return self._pools.assign_worker(worker_id, job_id)

    def release_worker(self, worker_id: int, job_id: int) -> None:
        return self._pools.release_worker(worker_id, job_id)

    def worker_of_job(self, job_id: int) -> WorkerRow | None:
        return self._pools.worker_of_job(job_id)

    def pending_pool_jobs(self, pool: str) -> list[JobRow]:
        return self._pools.pending_pool_jobs(pool)

    def attempt_spend(
        self, *, now: float, since: float | None = None, job_ids: Sequence[int] | None = None,
    ) -> list[AttemptSpend]:
        return self._ledger.attempt_spend(now=now, since=since, job_ids=job_ids)

    def spend_sums(self, *, now: float, since: float | None = None) -> SpendSums:
        return self._ledger.spend_sums(now=now, since=since)

    def pool_machine_spend(
        self, *, now: float, since: float | None = None, pools: Sequence[str] | None = None,
    ) -> list[MachineSpend]:
        return self._ledger.pool_machine_spend(now=now, since=since, pools=pools)
