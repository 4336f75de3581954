"""A task's runs and what they leave: attempts (one per placement), the log
segments of each phase's output, and the events timeline (a run that ends,
with its attempt, segments and status, is one `end_runs` transaction).

Touches `attempts`, `log_segments`, `events`, and in `end_runs` the ended
tasks' rows, their jobs' status and their machines' (TERMINATING).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import Connection, bindparam, func, insert, select, update

from skytui.engine.status import TERMINAL, TERMINAL_NAMES, IllegalTransition, TaskStatus, can_transition
from skytui.engine.store.database import Database
from skytui.engine.store.job_status import refresh_jobs_status
from skytui.engine.store.rows import (
    UNSET,
    AttemptRow,
    ClusterRow,
    ClusterStatus,
    EventRow,
    RunEnd,
    RunEndRequest,
    SegmentRow,
    Unset,
)
from skytui.engine.store.schema import (
    attempts_table,
    clusters_table,
    events_table,
    jobs_table,
    log_segments_table,
    tasks_table,
)
from skytui.engine.store.sql import (
    event_values,
    given,
    id_clauses,
    insert_event,
    record,
    rows_by_job,
    update_params,
    update_statement,
)

# `end_runs`: one statement each for all the runs that ended, run with
# a list of parameters (bind names b_* pick the row).
_END_ATTEMPT = (
    update(attempts_table)
    .where(
        attempts_table.c.job_id == bindparam("b_job"),
        attempts_table.c.task_idx == bindparam("b_task"),
        attempts_table.c.attempt_no == bindparam("b_attempt"),
        attempts_table.c.ended_at.is_(None),
    )
    .values(ended_at=bindparam("ended_at"), end_reason=bindparam("end_reason"), exit_code=bindparam("exit_code"))
)
_END_TASK_RUN = (
    update(tasks_table)
    .where(
        tasks_table.c.job_id == bindparam("b_job"),
        tasks_table.c.task_idx == bindparam("b_task"),
        tasks_table.c.status == bindparam("b_status"),
    )
    .values(
        status=bindparam("status"), ended_at=bindparam("ended_at"), job_duration_s=bindparam("job_duration_s"),
        run_started_at=None, status_reason=None, exit_code=bindparam("exit_code"),
        failure_reason=bindparam("failure_reason"),
    )
)
_THE_TASK = (tasks_table.c.job_id == bindparam("b_job"), tasks_table.c.task_idx == bindparam("b_task"))
_TASK_ATTEMPT = select(tasks_table.c.attempt).where(*_THE_TASK)
_INSERT_ATTEMPT = insert(attempts_table).values({
    name: bindparam(name) for name in (
        "job_id", "task_idx", "attempt_no", "infra", "instance_type", "use_spot", "started_at",
        "price_per_hour", "cluster_id",
    )
})
_SET_TASK_PLACEMENT = update(tasks_table).where(*_THE_TASK).values({
    name: bindparam(name) for name in ("attempt", "infra", "instance_type", "use_spot")
})
_SEGMENT_KEY = ("job_id", "task_idx", "attempt_no", "rank", "phase")
_SEGMENT_OF = select(log_segments_table).where(*(log_segments_table.c[name] == bindparam(name) for name in _SEGMENT_KEY))
_INSERT_SEGMENT = insert(log_segments_table).values({
    name: bindparam(name) for name in (*_SEGMENT_KEY, "start_offset", "started_at")
})
_SEGMENT_BY_ID = select(log_segments_table).where(log_segments_table.c.id == bindparam("b_id"))


class RunRepository:
    """Attempts, log segments and events (see the module's docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def end_run(self, request: RunEndRequest) -> RunEnd:
        """A task's run ended for good (see `end_runs`)."""
        result = self.end_runs([request])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def end_runs(self, requests: Sequence[RunEndRequest]) -> list[RunEnd | Exception]:
        """Tasks whose run ended for good: for each, its attempt ends, its
        open log segments are closed, the task goes to its terminal status
        (with its event and its job's status) and, with `retire_clusters`,
        the job's live machines are marked TERMINATING. One transaction and
        about ten statements for all of them, whatever their number: when a
        thousand jobs end together, the DB is not what they wait for.

        A task that had already ended (a cancel got there first) is left
        alone (`RunEnd(ended=False)`); one that cannot go to its status gets
        an IllegalTransition as its result, and nothing of it is written."""
        now = time.time()
        results: list[RunEnd | Exception] = [RunEnd(ended=False)] * len(requests)
        with self._db._write() as conn:
            job_ids = {r.job_id for r in requests}
            current = {
                (row.job_id, row.task_idx): row
                for clause in id_clauses(tasks_table.c.job_id, job_ids)
                for row in conn.execute(
                    select(tasks_table.c.job_id, tasks_table.c.task_idx, tasks_table.c.status,
                           tasks_table.c.run_started_at, tasks_table.c.job_duration_s).where(clause)
                )
            }
            ending: list[int] = []  # indexes into requests
            for i, request in enumerate(requests):
                row = current[(request.job_id, request.task_idx)]
                status = TaskStatus(row.status)
                if status in TERMINAL:
                    continue
                if not can_transition(status, request.to):
                    results[i] = IllegalTransition(status, request.to)
                    continue
                ending.append(i)
            if not ending:
                return results
            attempts, tasks, events = [], [], []
            segments: list[int] = []
            for i in ending:
                r = requests[i]
                row = current[(r.job_id, r.task_idx)]
                status = TaskStatus(row.status)
                ended = now
                if r.ran_until is not None and row.run_started_at is not None:
                    ended = min(now, max(row.run_started_at, r.ran_until))  # a skewed node clock stays in bounds
                duration = row.job_duration_s
                if status is TaskStatus.RUNNING and row.run_started_at is not None:
                    duration += ended - row.run_started_at
                failure = r.reason if r.to.is_failure else None
                attempts.append({"b_job": r.job_id, "b_task": r.task_idx, "b_attempt": r.attempt_no,
                                 "ended_at": now, "end_reason": r.reason, "exit_code": r.exit_code})
                tasks.append({"b_job": r.job_id, "b_task": r.task_idx, "b_status": status.value,
                              "status": r.to.value, "ended_at": ended, "job_duration_s": duration,
                              "exit_code": r.exit_code, "failure_reason": failure})
                events.append(event_values(r.job_id, r.task_idx, "status", from_status=status, to_status=r.to,
                                            message=failure, at=now))
                segments += r.finish_segments
                results[i] = RunEnd(ended=True)
            conn.execute(_END_ATTEMPT, attempts)
            conn.execute(_END_TASK_RUN, tasks)
            conn.execute(insert(events_table), events)
            if segments:
                for clause in id_clauses(log_segments_table.c.id, segments):
                    conn.execute(update(log_segments_table).where(clause).values(finished=True))
            refresh_jobs_status(self._db, conn, {requests[i].job_id for i in ending}, now)
            # The ended task's machines only: a job group's other tasks run on.
            retiring = {(requests[i].job_id, requests[i].task_idx) for i in ending if requests[i].retire_clusters}
            if retiring:
                by_task: dict[tuple[int, int], list[ClusterRow]] = {}
                retired: list[int] = []
                for clause in id_clauses(clusters_table.c.job_id, {job_id for job_id, _ in retiring}):
                    live = (clause, clusters_table.c.status.in_(ClusterStatus.LIVE))
                    for row in conn.execute(select(clusters_table).where(*live).order_by(clusters_table.c.id)):
                        if (row.job_id, row.task_idx) not in retiring:
                            continue
                        cluster = replace(record(ClusterRow, row), status=ClusterStatus.TERMINATING)
                        by_task.setdefault((row.job_id, row.task_idx), []).append(cluster)
                        retired.append(cluster.id)
                for clause in id_clauses(clusters_table.c.id, retired):
                    conn.execute(update(clusters_table).where(clause).values(status=ClusterStatus.TERMINATING))
                for i in ending:
                    if requests[i].retire_clusters:
                        key = (requests[i].job_id, requests[i].task_idx)
                        results[i] = RunEnd(ended=True, terminating=by_task.get(key, []))
        return results

    # ----------------------------------------------------------------- events

    def note(self, job_id: int, task_idx: int | None, kind: str, message: str) -> None:
        """An event that changes no status (a round of capacity search that
        found none, say): what the job's timeline and followers show."""
        with self._db._write() as conn:
            insert_event(conn, job_id, task_idx, kind, message=message)

    def events(
        self, *, after_id: int = 0, job_id: int | None = None, limit: int = 1000
    ) -> list[EventRow]:
        query = select(events_table).where(events_table.c.id > after_id)
        if job_id is not None:
            query = query.where(events_table.c.job_id == job_id)
        query = query.order_by(events_table.c.id).limit(limit)
        with self._db._read() as conn:
            return [record(EventRow, r) for r in conn.execute(query).all()]

    def ended_jobs_with_event(self, kind: str) -> list[int]:
        """Finished jobs that ever recorded an event of `kind`, ascending."""
        query = (
            select(events_table.c.job_id).distinct()
            .join(jobs_table, jobs_table.c.id == events_table.c.job_id)
            .where(events_table.c.kind == kind, jobs_table.c.status.in_(TERMINAL_NAMES))
            .order_by(events_table.c.job_id)
        )
        with self._db._read() as conn:
            return [int(job_id) for job_id in conn.execute(query).scalars()]

    def last_event_id(self) -> int:
        with self._db._read() as conn:
            return int(conn.execute(select(func.coalesce(func.max(events_table.c.id), 0))).scalar_one())

    # --------------------------------------------------------------- attempts

    def start_attempt(
        self, job_id: int, task_idx: int, *, infra: str, instance_type: str | None,
        use_spot: bool, price_per_hour: float | None = None, message: str | None = None,
        cluster_id: int | None = None,
    ) -> int:
        """Open the next attempt of a task; returns its number (1-based).
        `cluster_id`: the machine it runs on, when already known (a pool's
        worker); otherwise `set_attempt_cluster` names it once provisioned."""
        now = time.time()
        with self._db._write() as conn:
            task = {"b_job": job_id, "b_task": task_idx}
            attempt_no = int(conn.execute(_TASK_ATTEMPT, task).scalar_one()) + 1
            conn.execute(_INSERT_ATTEMPT, dict(
                job_id=job_id, task_idx=task_idx, attempt_no=attempt_no, infra=infra,
                instance_type=instance_type, use_spot=use_spot, started_at=now,
                price_per_hour=price_per_hour, cluster_id=cluster_id,
            ))
            conn.execute(_SET_TASK_PLACEMENT, dict(
                task, attempt=attempt_no, infra=infra, instance_type=instance_type, use_spot=use_spot,
            ))
            where = f"on {infra} ({instance_type or '-'}{', spot' if use_spot else ''})"
            insert_event(
                conn, job_id, task_idx, "placement",
                message=f"attempt {attempt_no} {where}" + (f": {message}" if message else ""), at=now,
            )
            return attempt_no

    def end_attempt(
        self, job_id: int, task_idx: int, attempt_no: int, *, reason: str,
        exit_code: int | None = None, finish_segments: Sequence[int] = (),
    ) -> None:
        """End an attempt (once: a later call leaves the first reason), and
        close the log segments given, whose output was all copied."""
        with self._db._write() as conn:
            self._end_attempt(conn, job_id, task_idx, attempt_no, reason=reason, exit_code=exit_code)
            self._finish_segments(conn, finish_segments)

    @staticmethod
    def _end_attempt(
        conn: Connection, job_id: int, task_idx: int, attempt_no: int, *, reason: str, exit_code: int | None,
    ) -> None:
        conn.execute(
            update(attempts_table)
            .where(
                attempts_table.c.job_id == job_id,
                attempts_table.c.task_idx == task_idx,
                attempts_table.c.attempt_no == attempt_no,
                attempts_table.c.ended_at.is_(None),
            )
            .values(ended_at=time.time(), end_reason=reason, exit_code=exit_code)
        )

    @staticmethod
    def _finish_segments(conn: Connection, segment_ids: Sequence[int]) -> None:
        if segment_ids:
            conn.execute(
                update(log_segments_table).where(log_segments_table.c.id.in_(list(segment_ids))).values(finished=True)
            )

    def attempts(self, job_id: int, task_idx: int | None = None) -> list[AttemptRow]:
        query = select(attempts_table).where(attempts_table.c.job_id == job_id)
        if task_idx is not None:
            query = query.where(attempts_table.c.task_idx == task_idx)
        with self._db._read() as conn:
            rows = conn.execute(
                query.order_by(attempts_table.c.task_idx, attempts_table.c.attempt_no)
            ).all()
        return [record(AttemptRow, r) for r in rows]

    def attempts_of_jobs(self, job_ids: Sequence[int]) -> dict[int, list[AttemptRow]]:
        order = (attempts_table.c.job_id, attempts_table.c.task_idx, attempts_table.c.attempt_no)
        return rows_by_job(self._db, attempts_table, AttemptRow, job_ids, order)

    def set_attempt_cluster(self, job_id: int, task_idx: int, attempt_no: int, cluster_id: int) -> None:
        with self._db._write() as conn:
            conn.execute(
                update(attempts_table)
                .where(
                    attempts_table.c.job_id == job_id,
                    attempts_table.c.task_idx == task_idx,
                    attempts_table.c.attempt_no == attempt_no,
                )
                .values(cluster_id=cluster_id)
            )

    # ----------------------------------------------------------- log segments

    def open_segment(
        self, job_id: int, task_idx: int, attempt_no: int, rank: int, phase: str,
        start_offset: int,
    ) -> SegmentRow:
        """Record that a phase's output starts at `start_offset` (idempotent)."""
        key = dict(job_id=job_id, task_idx=task_idx, attempt_no=attempt_no, rank=rank, phase=phase)
        with self._db._write() as conn:
            existing = conn.execute(_SEGMENT_OF, key).first()
            if existing is not None:
                return record(SegmentRow, existing)
            seg_id = conn.execute(
                _INSERT_SEGMENT, dict(key, start_offset=start_offset, started_at=time.time())
            ).inserted_primary_key[0]  # type: ignore[index]
            return record(SegmentRow, conn.execute(_SEGMENT_BY_ID, {"b_id": seg_id}).one())

    def update_segment(
        self, segment_id: int, *, pid: int | None | Unset = UNSET, finished: bool | Unset = UNSET,
    ) -> None:
        columns, params = update_params(given(pid=pid, finished=finished), id=segment_id)
        with self._db._write() as conn:
            conn.execute(update_statement(log_segments_table, ("id",), columns), params)

    def segments(self, job_id: int, task_idx: int | None = None) -> list[SegmentRow]:
        query = select(log_segments_table).where(log_segments_table.c.job_id == job_id)
        if task_idx is not None:
            query = query.where(log_segments_table.c.task_idx == task_idx)
        with self._db._read() as conn:
            rows = conn.execute(query.order_by(log_segments_table.c.id)).all()
        return [record(SegmentRow, r) for r in rows]

