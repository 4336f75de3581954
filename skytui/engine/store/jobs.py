"""Jobs and their tasks: submission, each task's status changes (with its
event and its job's derived status, in one transaction), and the reads of
job and task rows the controller, the client and the queue make.

Touches `jobs`, `tasks` and the `events` a status change writes; every
write goes through `Database._write`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, exists, func, insert, not_, select

from skytui.engine.status import IN_PROGRESS, TERMINAL, IllegalTransition, TaskStatus, can_transition
from skytui.engine.store.database import Database
from skytui.engine.store.job_status import refresh_job_status
from skytui.engine.store.queue_json import queue_statement, render_queue
from skytui.engine.store.rows import UNSET, JobRow, NewTask, TaskRow, Unset
from skytui.engine.store.schema import events_table, jobs_table, pools_table, tasks_table
from skytui.engine.store.sql import (
    columns_of,
    event_values,
    given,
    id_clauses,
    insert_event,
    record,
    rows_by_job,
    update_params,
    update_statement,
)


# The statements every job runs several times, built once: building a
# SQLAlchemy statement costs more Python than running it on SQLite.
_TASK_ROW = select(tasks_table).where(
    tasks_table.c.job_id == bindparam("b_job"), tasks_table.c.task_idx == bindparam("b_task")
)
_TASK_ROW_FOR_UPDATE = _TASK_ROW.with_for_update()


class JobRepository:
    """Jobs and tasks (see the module's docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def submit_jobs(
        self,
        *,
        name: str,
        tasks: Sequence[NewTask],
        spec: dict[str, Any],
        secrets: dict[str, dict[str, str]],
        source: str | None = None,
        pool: str | None = None,
        priority: int = 0,
        num_jobs: int = 1,
        max_cost_usd: float | None = None,
        stall_timeout_s: float | None = None,
    ) -> list[int]:
        """Queue `num_jobs` copies (SKYPILOT_JOB_RANK 0..N-1) in one transaction.

        Each table gets one batched insert (ids come back in rank order), so
        10,000 copies cost a few statements, not 30,000."""
        now = time.time()
        spec_json, secrets_json = json.dumps(spec), json.dumps(secrets)
        with self._db._write() as conn:
            job_ids = [
                int(job_id) for job_id in conn.execute(
                    insert(jobs_table).returning(jobs_table.c.id, sort_by_parameter_order=True),
                    [
                        dict(
                            name=name, pool=pool, status=TaskStatus.PENDING.value, priority=priority,
                            submitted_at=now, job_rank=rank, num_jobs=num_jobs, source=source,
                            spec_json=spec_json, secrets_json=secrets_json, max_cost_usd=max_cost_usd,
                            stall_timeout_s=stall_timeout_s,
                        )
                        for rank in range(num_jobs)
                    ],
                ).scalars()
            ]
            conn.execute(insert(tasks_table), [
                dict(
                    job_id=job_id, task_idx=idx, name=task.name, status=TaskStatus.PENDING.value,
                    skypilot_task_id=task.skypilot_task_id.replace("{job_id}", str(job_id)),
                    requested=task.requested, num_nodes=task.num_nodes, submitted_at=now,
                    group_role=task.group_role,
                )
                for job_id in job_ids
                for idx, task in enumerate(tasks)
            ])
            conn.execute(insert(events_table), [
                event_values(job_id, None, "submitted", message=f"job {name!r} submitted", at=now)
                for job_id in job_ids
            ])
        return job_ids

    def job_specs(self, job_ids: Sequence[int]) -> dict[int, tuple[dict[str, Any], dict[str, dict[str, str]]]]:
        """`job_spec` of many jobs in a few reads (the controller starting a
        thousand coroutines at once)."""
        out: dict[int, tuple[dict[str, Any], dict[str, dict[str, str]]]] = {}
        with self._db._read() as conn:
            for among in id_clauses(jobs_table.c.id, job_ids):
                for row in conn.execute(
                    select(jobs_table.c.id, jobs_table.c.spec_json, jobs_table.c.secrets_json).where(among)
                ):
                    out[row.id] = json.loads(row.spec_json), json.loads(row.secrets_json)
        return out

    def job_spec(self, job_id: int) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
        """The stored spec and its secrets: for the controller only."""
        with self._db._read() as conn:
            row = conn.execute(
                select(jobs_table.c.spec_json, jobs_table.c.secrets_json).where(
                    jobs_table.c.id == job_id
                )
            ).one()
        return json.loads(row.spec_json), json.loads(row.secrets_json)

    # ------------------------------------------------------------ transitions

    def transition_task(
        self,
        job_id: int,
        task_idx: int,
        to: TaskStatus,
        *,
        message: str | None = None,
        expect: TaskStatus | None = None,
        ran_until: float | None = None,
        status_reason: str | None | Unset = UNSET,
        exit_code: int | None | Unset = UNSET,
        failure_reason: str | None | Unset = UNSET,
        recoveries: int | Unset = UNSET,
        restarts_on_errors: int | Unset = UNSET,
    ) -> bool:
        """Compare-and-set a task's status, with its event and the job status.

        Raises IllegalTransition for a change outside the table (a terminal
        status is never overwritten). Returns False when `expect` is given and
        the task is no longer in it (another writer got there first).
        `ran_until`: when the run ended by the node's clock, which closes the
        running stretch instead of the moment the controller noticed (it may
        have been down meanwhile). The other keywords are columns written
        with the status.
        """
        values = given(
            status_reason=status_reason, exit_code=exit_code, failure_reason=failure_reason,
            recoveries=recoveries, restarts_on_errors=restarts_on_errors,
        )
        with self._db._write() as conn:
            return self._transition(
                conn, job_id, task_idx, to, message=message, expect=expect, ran_until=ran_until, values=values
            )

    def _transition(
        self, conn: Connection, job_id: int, task_idx: int, to: TaskStatus, *,
        message: str | None, expect: TaskStatus | None = None, ran_until: float | None = None,
        values: dict[str, Any],
    ) -> bool:
        now = time.time()
        row = conn.execute(_TASK_ROW_FOR_UPDATE, {"b_job": job_id, "b_task": task_idx}).one()
        current = TaskStatus(row.status)
        if expect is not None and current is not expect:
            return False
        if not can_transition(current, to):
            raise IllegalTransition(current, to)
        changes: dict[str, Any] = dict(values)
        changes["status"] = to.value
        if to is TaskStatus.RUNNING:
            changes["run_started_at"] = now
            if row.started_at is None:
                changes["started_at"] = now
        ended = now
        if ran_until is not None and row.run_started_at is not None:
            ended = min(now, max(row.run_started_at, ran_until))  # a skewed node clock stays in bounds
        if current is TaskStatus.RUNNING and row.run_started_at is not None:
            changes["job_duration_s"] = row.job_duration_s + (ended - row.run_started_at)
            changes["run_started_at"] = None
        if to in TERMINAL:
            changes["ended_at"] = ended
            changes.setdefault("status_reason", None)
        columns, params = update_params(changes, job_id=job_id, task_idx=task_idx, status=current.value)
        result = conn.execute(update_statement(tasks_table, ("job_id", "task_idx"), columns, "status"), params)
        if result.rowcount != 1:
            return False
        insert_event(
            conn, job_id, task_idx, "status", from_status=current, to_status=to,
            message=message, at=now,
        )
        refresh_job_status(self._db, conn, job_id, now)
        return True

    def cancel_pending_tasks(self, job_id: int, message: str) -> int:
        """Mark every PENDING task of a job CANCELLED (the rest of a pipeline)."""
        count = 0
        for task in self.tasks(job_id):
            if task.status_enum is TaskStatus.PENDING:
                count += self.transition_task(
                    job_id, task.task_idx, TaskStatus.CANCELLED, message=message,
                    expect=TaskStatus.PENDING,
                )
        return count

    def set_task_fields(
        self, job_id: int, task_idx: int, *,
        status_reason: str | None | Unset = UNSET,
        infra: str | None | Unset = UNSET,
        instance_type: str | None | Unset = UNSET,
        use_spot: bool | None | Unset = UNSET,
    ) -> None:
        """Non-status bookkeeping (reason shown while waiting, placement) of a
        task still in progress: a task cancelled under its coroutine keeps no
        stale "waiting for a launch slot"."""
        values = given(status_reason=status_reason, infra=infra, instance_type=instance_type, use_spot=use_spot)
        columns, params = update_params(values, job_id=job_id, task_idx=task_idx)
        with self._db._write() as conn:
            conn.execute(update_statement(tasks_table, ("job_id", "task_idx"), columns, "unfinished"), params)

    # ---------------------------------------------------------------- queries

    def job(self, job_id: int) -> JobRow | None:
        with self._db._read() as conn:
            row = conn.execute(select(*columns_of(jobs_table, JobRow)).where(jobs_table.c.id == job_id)).first()
        return record(JobRow, row) if row else None

    def jobs_by_name(self, name: str) -> list[JobRow]:
        with self._db._read() as conn:
            rows = conn.execute(
                select(*columns_of(jobs_table, JobRow)).where(jobs_table.c.name == name).order_by(jobs_table.c.id)
            ).all()
        return [record(JobRow, r) for r in rows]

    def jobs_by_ids(self, job_ids: Sequence[int]) -> list[JobRow]:
        rows: list[Any] = []
        with self._db._read() as conn:
            for among in id_clauses(jobs_table.c.id, job_ids):
                rows += conn.execute(select(*columns_of(jobs_table, JobRow)).where(among)).all()
        return [record(JobRow, r) for r in rows]

    def job_ids_changed_after(self, event_id: int) -> tuple[list[int], int]:
        """Jobs with an event after `event_id`, and the newest event id seen."""
        with self._db._read() as conn:
            rows = conn.execute(
                select(events_table.c.id, events_table.c.job_id).where(events_table.c.id > event_id)
            ).all()
        if not rows:
            return [], event_id
        return sorted({r.job_id for r in rows if r.job_id is not None}), max(r.id for r in rows)

    def in_progress_job_ids(self, *, name: str | None = None, pool: str | None = None) -> list[int]:
        """The ids of the jobs in progress (of a name, of a pool), ascending:
        what `jobs cancel -a/-n/-p` names, without reading whole rows."""
        query = select(jobs_table.c.id).where(jobs_table.c.status.in_([s.value for s in IN_PROGRESS]))
        if name is not None:
            query = query.where(jobs_table.c.name == name)
        if pool is not None:
            query = query.where(jobs_table.c.pool == pool)
        with self._db._read() as conn:
            return list(conn.execute(query.order_by(jobs_table.c.id)).scalars())

    def has_unfinished_work(self) -> bool:
        """Whether a controller is needed: a job in progress, or a pool (its
        workers are kept, and its `down` carried out, by the controller)."""
        in_progress = [s.value for s in IN_PROGRESS]
        with self._db._read(snapshot=True) as conn:
            if conn.execute(select(jobs_table.c.id).where(jobs_table.c.status.in_(in_progress)).limit(1)).first():
                return True
            return conn.execute(select(pools_table.c.name).limit(1)).first() is not None

    def job_count(self, *, in_progress_only: bool = False) -> int:
        """How many jobs there are (in progress only: not finished), one COUNT."""
        query = select(func.count()).select_from(jobs_table)
        if in_progress_only:
            query = query.where(jobs_table.c.status.in_([s.value for s in IN_PROGRESS]))
        with self._db._read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def latest_job_id(self) -> int | None:
        with self._db._read() as conn:
            return conn.execute(select(func.max(jobs_table.c.id))).scalar()

    def jobs(
        self, *, in_progress_only: bool = False, limit: int | None = None
    ) -> list[JobRow]:
        query = select(*columns_of(jobs_table, JobRow)).order_by(jobs_table.c.id.desc())
        if in_progress_only:
            query = query.where(jobs_table.c.status.in_([s.value for s in IN_PROGRESS]))
        if limit is not None:
            query = query.limit(limit)
        with self._db._read() as conn:
            return [record(JobRow, r) for r in conn.execute(query).all()]

    def queue_json(self, *, in_progress_only: bool = False, limit: int | None = None, now: float) -> str:
        """`jobs queue --json`'s document, rendered by the DB in one read
        (see `queue_json`): at 10,000 jobs no row becomes a Python object."""
        statement = queue_statement(
            self._db._writer.dialect.name,
            in_progress=[s.value for s in IN_PROGRESS] if in_progress_only else None, limit=limit, now=now,
        )
        with self._db._read(snapshot=True) as conn:
            return render_queue(conn.execute(statement))

    def runnable_jobs(self, exclude: set[int], limit: int) -> list[JobRow]:
        """In-progress jobs without a coroutine: resumed ones first, then by
        priority. A job whose cancel was requested is not among them: the
        controller starts its coroutine only to cancel it."""
        if limit <= 0:
            return []
        # The jobs with a coroutine are left out by the DB, as runs of ids:
        # a thousand pool jobs waiting for a worker are not read on every pass.
        excluded = [not_(among) for among in id_clauses(jobs_table.c.id, exclude)]
        query = (
            select(*columns_of(jobs_table, JobRow))
            .where(
                jobs_table.c.status.in_([s.value for s in IN_PROGRESS]),
                jobs_table.c.cancel_requested_at.is_(None),
                *excluded,
            )
            .order_by(
                # A job any of whose tasks has started (a pipeline between
                # tasks included) resumes before new jobs take the slots.
                ~exists(
                    select(tasks_table.c.job_id).where(
                        tasks_table.c.job_id == jobs_table.c.id,
                        tasks_table.c.status != TaskStatus.PENDING.value,
                    )
                ),
                jobs_table.c.priority.desc(),
                jobs_table.c.id.asc(),
            )
        )
        with self._db._read() as conn:
            return [record(JobRow, row) for row in conn.execute(query.limit(limit))]

    def tasks(self, job_id: int) -> list[TaskRow]:
        with self._db._read() as conn:
            rows = conn.execute(
                select(tasks_table)
                .where(tasks_table.c.job_id == job_id)
                .order_by(tasks_table.c.task_idx)
            ).all()
        return [record(TaskRow, r) for r in rows]

    def task(self, job_id: int, task_idx: int) -> TaskRow:
        with self._db._read() as conn:
            row = conn.execute(_TASK_ROW, {"b_job": job_id, "b_task": task_idx}).one()
        return record(TaskRow, row)

    def tasks_of_jobs(self, job_ids: Sequence[int]) -> dict[int, list[TaskRow]]:
        return rows_by_job(
            self._db, tasks_table, TaskRow, job_ids, (tasks_table.c.job_id, tasks_table.c.task_idx)
        )
