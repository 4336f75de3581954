"""`AsyncStore`: the Store for the controller's event loop, one typed async
method per Store method the engine uses.

Every call runs in a worker thread, so a slow fsync never stalls the loop;
the writes job coroutines make share commits (`_grouped`, `Store.run_batch`)
instead of queueing one fsync each. Touches the DB only through its `Store`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from skytui.engine.status import TaskStatus
from skytui.engine.store.spend import AttemptSpend
from skytui.engine.store.rows import (
    UNSET,
    AttemptRow,
    BudgetState,
    ClusterRow,
    EventRow,
    IntentOutcome,
    IntentRow,
    JobRow,
    PoolRow,
    RunEnd,
    RunEndRequest,
    RunningTask,
    SegmentRow,
    TaskRow,
    Unset,
    WorkerRow,
)
from skytui.engine.store.sync_store import Store

R = TypeVar("R")


class AsyncStore:
    """The Store for the controller's event loop: every call runs in a worker
    thread, so a slow fsync never stalls the loop. `await astore.job(1)`.

    The writes job coroutines make, thousands at a time when jobs start or
    end together, share commits (Store.run_batch) instead of queueing one
    fsync each: transition_task, set_task_fields, note, start_attempt,
    end_attempt, set_attempt_cluster, open_segment, update_segment,
    insert_cluster, update_cluster, update_worker, assign_worker and
    release_worker (`_grouped`). Each writes through one connection and reads
    nothing back through the reader (run_batch's rule). `end_run` goes
    further: see below. Every other call runs on its own (`_threaded`).
    """

    def __init__(self, store: Store, max_threads: int = 4, *, owns_store: bool = True) -> None:
        self.sync = store
        self._owns_store = owns_store
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="store")
        # Queued for the next shared commit: store calls, and runs that ended.
        self._calls: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._run_ends: list[tuple[RunEndRequest, asyncio.Future[Any]]] = []
        self._committing = False
        # Its own thread: a shared commit never queues behind reads.
        self._commit_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-commit")

    def lane(self, max_threads: int = 1) -> AsyncStore:
        """Another queue onto the same Store. Calls made through it never
        wait behind the calls queued here: the controller's own loop (cancel
        intents, new jobs, stopping) stays prompt while thousands of job
        coroutines keep this queue long. Closing it leaves the Store open."""
        return AsyncStore(self.sync, max_threads, owns_store=False)

    async def _threaded(self, call: Callable[[], R]) -> R:
        """A call on its own, in one of this queue's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, call)

    async def _grouped(self, call: Callable[[], R]) -> R:
        """A write queued for the next shared commit."""
        future = self._queue_for_commit()
        self._calls.append((call, future))
        result: R = await future
        return result

    async def hold_controller_lock(self) -> bool:
        return await self._threaded(self.sync.hold_controller_lock)

    async def job(self, job_id: int) -> JobRow | None:
        return await self._threaded(functools.partial(self.sync.job, job_id))

    async def jobs_by_ids(self, job_ids: Sequence[int]) -> list[JobRow]:
        return await self._threaded(functools.partial(self.sync.jobs_by_ids, job_ids))

    async def job_spec(self, job_id: int) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
        return await self._threaded(functools.partial(self.sync.job_spec, job_id))

    async def job_specs(
        self, job_ids: Sequence[int],
    ) -> dict[int, tuple[dict[str, Any], dict[str, dict[str, str]]]]:
        return await self._threaded(functools.partial(self.sync.job_specs, job_ids))

    async def runnable_jobs(self, exclude: set[int], limit: int) -> list[JobRow]:
        return await self._threaded(functools.partial(self.sync.runnable_jobs, exclude, limit))

    async def cancel_requested(self) -> list[int]:
        return await self._threaded(self.sync.cancel_requested)

    async def cancel_unstarted(self, job_ids: Sequence[int]) -> list[int]:
        return await self._threaded(functools.partial(self.sync.cancel_unstarted, job_ids))

    async def cancelled_among(self, job_ids: Sequence[int]) -> list[int]:
        return await self._threaded(functools.partial(self.sync.cancelled_among, job_ids))

    async def budget_states(self, now: float) -> list[BudgetState]:
        return await self._threaded(functools.partial(self.sync.budget_states, now))

    async def running_tasks_with_stall_timeout(self) -> list[RunningTask]:
        return await self._threaded(self.sync.running_tasks_with_stall_timeout)

    async def request_cancel(self, job_ids: Sequence[int], reason: str | None = None) -> list[int]:
        return await self._threaded(functools.partial(self.sync.request_cancel, job_ids, reason))

    async def open_intents(self) -> list[IntentRow]:
        return await self._threaded(self.sync.open_intents)

    async def claim_preempt_target(
        self, intent_id: int, cluster: str, *, job_id: int, task_idx: int, event_kind: str, message: str
    ) -> str:
        return await self._threaded(functools.partial(
            self.sync.claim_preempt_target, intent_id, cluster,
            job_id=job_id, task_idx=task_idx, event_kind=event_kind, message=message,
        ))

    async def finish_intent(self, intent_id: int, outcome: IntentOutcome) -> bool:
        return await self._threaded(functools.partial(self.sync.finish_intent, intent_id, outcome))

    async def transition_task(
        self, job_id: int, task_idx: int, to: TaskStatus, *, message: str | None = None,
        expect: TaskStatus | None = None, ran_until: float | None = None,
        status_reason: str | None | Unset = UNSET, exit_code: int | None | Unset = UNSET,
        failure_reason: str | None | Unset = UNSET, recoveries: int | Unset = UNSET,
        restarts_on_errors: int | Unset = UNSET,
    ) -> bool:
        return await self._grouped(functools.partial(
            self.sync.transition_task, job_id, task_idx, to, message=message, expect=expect, ran_until=ran_until,
            status_reason=status_reason, exit_code=exit_code, failure_reason=failure_reason, recoveries=recoveries,
            restarts_on_errors=restarts_on_errors,
        ))

    async def set_task_fields(
        self, job_id: int, task_idx: int, *, status_reason: str | None | Unset = UNSET,
        infra: str | None | Unset = UNSET, instance_type: str | None | Unset = UNSET,
        use_spot: bool | None | Unset = UNSET,
    ) -> None:
        return await self._grouped(functools.partial(
            self.sync.set_task_fields, job_id, task_idx, status_reason=status_reason, infra=infra,
            instance_type=instance_type, use_spot=use_spot,
        ))

    async def cancel_pending_tasks(self, job_id: int, message: str) -> int:
        return await self._threaded(functools.partial(self.sync.cancel_pending_tasks, job_id, message))

    async def tasks_of_jobs(self, job_ids: Sequence[int]) -> dict[int, list[TaskRow]]:
        return await self._threaded(functools.partial(self.sync.tasks_of_jobs, job_ids))

    async def attempts_of_jobs(self, job_ids: Sequence[int]) -> dict[int, list[AttemptRow]]:
        return await self._threaded(functools.partial(self.sync.attempts_of_jobs, job_ids))

    async def task(self, job_id: int, task_idx: int) -> TaskRow:
        return await self._threaded(functools.partial(self.sync.task, job_id, task_idx))

    async def tasks(self, job_id: int) -> list[TaskRow]:
        return await self._threaded(functools.partial(self.sync.tasks, job_id))

    async def note(self, job_id: int, task_idx: int | None, kind: str, message: str) -> None:
        return await self._grouped(functools.partial(self.sync.note, job_id, task_idx, kind, message))

    async def events(self, *, after_id: int = 0, job_id: int | None = None, limit: int = 1000) -> list[EventRow]:
        return await self._threaded(functools.partial(
            self.sync.events, after_id=after_id, job_id=job_id, limit=limit,
        ))

    async def last_event_id(self) -> int:
        return await self._threaded(self.sync.last_event_id)

    async def meta_value(self, key: str) -> str | None:
        return await self._threaded(functools.partial(self.sync.meta_value, key))

    async def set_meta(self, key: str, value: str) -> None:
        return await self._threaded(functools.partial(self.sync.set_meta, key, value))

    async def ended_jobs_with_event(self, kind: str) -> list[int]:
        return await self._threaded(functools.partial(self.sync.ended_jobs_with_event, kind))

    async def start_attempt(
        self, job_id: int, task_idx: int, *, infra: str, instance_type: str | None, use_spot: bool,
        price_per_hour: float | None = None, message: str | None = None, cluster_id: int | None = None,
    ) -> int:
        return await self._grouped(functools.partial(
            self.sync.start_attempt, job_id, task_idx, infra=infra, instance_type=instance_type, use_spot=use_spot,
            price_per_hour=price_per_hour, message=message, cluster_id=cluster_id,
        ))

    async def end_attempt(
        self, job_id: int, task_idx: int, attempt_no: int, *, reason: str, exit_code: int | None = None,
        finish_segments: Sequence[int] = (),
    ) -> None:
        return await self._grouped(functools.partial(
            self.sync.end_attempt, job_id, task_idx, attempt_no, reason=reason, exit_code=exit_code,
            finish_segments=finish_segments,
        ))

    async def attempts(self, job_id: int, task_idx: int | None = None) -> list[AttemptRow]:
        return await self._threaded(functools.partial(self.sync.attempts, job_id, task_idx))

    async def attempt_spend(
        self, *, now: float, since: float | None = None, job_ids: Sequence[int] | None = None,
    ) -> list[AttemptSpend]:
        """The ledger's attempts (`Store.attempt_spend`): a budget's figure."""
        return await self._threaded(functools.partial(self.sync.attempt_spend, now=now, since=since, job_ids=job_ids))

    async def set_attempt_cluster(self, job_id: int, task_idx: int, attempt_no: int, cluster_id: int) -> None:
        return await self._grouped(functools.partial(
            self.sync.set_attempt_cluster, job_id, task_idx, attempt_no, cluster_id,
        ))

    async def open_segment(
        self, job_id: int, task_idx: int, attempt_no: int, rank: int, phase: str, start_offset: int,
    ) -> SegmentRow:
        return await self._grouped(functools.partial(
            self.sync.open_segment, job_id, task_idx, attempt_no, rank, phase, start_offset,
        ))

    async def update_segment(
        self, segment_id: int, *, pid: int | None | Unset = UNSET, finished: bool | Unset = UNSET,
    ) -> None:
        return await self._grouped(functools.partial(
            self.sync.update_segment, segment_id, pid=pid, finished=finished,
        ))

    async def segments(self, job_id: int, task_idx: int | None = None) -> list[SegmentRow]:
        return await self._threaded(functools.partial(self.sync.segments, job_id, task_idx))

    async def insert_cluster(
        self, *, name: str, cloud: str, region: str | None, zone: str | None, instance_type: str | None,
        use_spot: bool, num_nodes: int, job_id: int | None = None, task_idx: int | None = None,
        attempt_no: int | None = None, pool: str | None = None, worker_id: int | None = None,
        price_per_hour: float | None = None,
    ) -> int:
        return await self._grouped(functools.partial(
            self.sync.insert_cluster, name=name, cloud=cloud, region=region, zone=zone,
            instance_type=instance_type, use_spot=use_spot, num_nodes=num_nodes, job_id=job_id, task_idx=task_idx,
            attempt_no=attempt_no, pool=pool, worker_id=worker_id, price_per_hour=price_per_hour,
        ))

    async def update_cluster(
        self, cluster_id: int, *, status: str, handle: dict[str, Any] | None = None, end_reason: str | None = None,
    ) -> None:
        return await self._grouped(functools.partial(
            self.sync.update_cluster, cluster_id, status=status, handle=handle, end_reason=end_reason,
        ))

    async def cluster_name_taken(self, name: str) -> bool:
        return await self._threaded(functools.partial(self.sync.cluster_name_taken, name))

    async def forget_cluster(self, cluster_id: int) -> None:
        return await self._threaded(functools.partial(self.sync.forget_cluster, cluster_id))

    async def cluster(self, cluster_id: int) -> ClusterRow | None:
        return await self._threaded(functools.partial(self.sync.cluster, cluster_id))

    async def live_clusters(self, job_id: int | None = None) -> list[ClusterRow]:
        return await self._threaded(functools.partial(self.sync.live_clusters, job_id))

    async def pool(self, name: str) -> PoolRow | None:
        return await self._threaded(functools.partial(self.sync.pool, name))

    async def pools(self) -> list[PoolRow]:
        return await self._threaded(self.sync.pools)

    async def pool_spec(self, name: str) -> tuple[dict[str, Any], dict[str, str]]:
        return await self._threaded(functools.partial(self.sync.pool_spec, name))

    async def set_pool_target(self, name: str, target_workers: int) -> None:
        return await self._threaded(functools.partial(self.sync.set_pool_target, name, target_workers))

    async def delete_pool(self, name: str) -> None:
        return await self._threaded(functools.partial(self.sync.delete_pool, name))

    async def workers(self, pool: str | None = None, *, live_only: bool = True) -> list[WorkerRow]:
        return await self._threaded(functools.partial(self.sync.workers, pool, live_only=live_only))

    async def insert_worker(self, pool: str, version: int) -> int:
        return await self._threaded(functools.partial(self.sync.insert_worker, pool, version))

    async def update_worker(
        self, worker_id: int, *, status: str | Unset = UNSET, cluster_id: int | None | Unset = UNSET,
        status_reason: str | None | Unset = UNSET, ready_at: float | None | Unset = UNSET,
        ended_at: float | None | Unset = UNSET,
    ) -> None:
        return await self._grouped(functools.partial(
            self.sync.update_worker, worker_id, status=status, cluster_id=cluster_id, status_reason=status_reason,
            ready_at=ready_at, ended_at=ended_at,
        ))

    async def assign_worker(self, worker_id: int, job_id: int) -> bool:
        return await self._grouped(functools.partial(self.sync.assign_worker, worker_id, job_id))

    async def release_worker(self, worker_id: int, job_id: int) -> None:
        return await self._grouped(functools.partial(self.sync.release_worker, worker_id, job_id))

    async def worker_of_job(self, job_id: int) -> WorkerRow | None:
        return await self._threaded(functools.partial(self.sync.worker_of_job, job_id))

    async def pending_pool_jobs(self, pool: str) -> list[JobRow]:
        return await self._threaded(functools.partial(self.sync.pending_pool_jobs, pool))

    async def end_run(self, request: RunEndRequest) -> RunEnd:
        """`Store.end_run`, with every run that ends meanwhile: they go in
        one `Store.end_runs` (a few statements for all) in the next commit."""
        future = self._queue_for_commit()
        self._run_ends.append((request, future))
        result: RunEnd = await future
        return result

    def _queue_for_commit(self) -> asyncio.Future[Any]:
        """A future for a write queued for the next shared commit; starts
        the committer if it is not running."""
        loop = asyncio.get_running_loop()
        if not self._committing:
            self._committing = True
            loop.create_task(self._commit_queued(), name="store-group-commit")
        return loop.create_future()

    async def _commit_queued(self) -> None:
        """While writes are queued: all of them in one transaction, then the
        ones queued meanwhile. A caller that stopped waiting (cancelled) still
        has its write made: it may already be in the running batch."""
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[Any]] = []
        try:
            while self._calls or self._run_ends:
                calls, self._calls = self._calls, []
                run_ends, self._run_ends = self._run_ends, []
                waiting = [f for _, f in calls] + [f for _, f in run_ends]
                batch = [call for call, _ in calls]
                if run_ends:
                    requests = [request for request, _ in run_ends]
                    batch.append(functools.partial(self.sync.end_runs, requests))
                try:
                    results = await loop.run_in_executor(self._commit_thread, self.sync.run_batch, batch)
                except Exception as exc:  # noqa: BLE001 - the commit failed: every caller hears of it
                    results = [exc] * len(batch)
                outcomes = list(results[:len(calls)])
                if run_ends:
                    ended = results[-1]
                    outcomes += ended if isinstance(ended, list) else [ended] * len(run_ends)
                for future, outcome in zip(waiting, outcomes):
                    if future.done():
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
                waiting = []
        except asyncio.CancelledError:
            # The loop is going away: nobody is left to wait, but say so to any who are.
            for future in waiting + [f for _, f in self._calls] + [f for _, f in self._run_ends]:
                future.cancel()
            self._calls, self._run_ends = [], []
            raise
        finally:
            self._committing = False

    def close(self) -> None:
        # Calls still queued belong to coroutines that were stopped: drop them
        # (thousands may be queued), finish only those already running.
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._commit_thread.shutdown(wait=True, cancel_futures=True)
        if self._owns_store:
            self.sync.close()
