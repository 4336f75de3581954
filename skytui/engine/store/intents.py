"""What clients ask of the controller and the controller's own claims:
cancel intents (and the cancels of jobs that never started, done at once),
the sim chaos intents and their outcomes, the check that a job may still
start something, and the secrets erased at controller start.

Touches `jobs` (cancel_requested_at, status, secrets), the `tasks` and
`events` of the jobs a cancel ends, `pools` (erased secrets), `intents`, and
reads `clusters` and `pool_workers` to see that nothing started.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Float, bindparam, delete, exists, insert, literal, null, select, update

from skytui.engine.status import IN_PROGRESS, TERMINAL_NAMES, TaskStatus
from skytui.engine.store.database import Database
from skytui.engine.store.errors import CancelRequested
from skytui.engine.store.rows import (
    ClusterStatus,
    IntentOutcome,
    IntentRequest,
    IntentRow,
    SimPreempt,
    SimStockout,
)
from skytui.engine.store.schema import (
    clusters_table,
    events_table,
    intents_table,
    jobs_table,
    pool_workers_table,
    pools_table,
    tasks_table,
)
from skytui.engine.store.sql import EVENT_COLUMNS, NO_SECRETS, id_clauses, insert_event

_STARTABLE_JOB = (
    select(jobs_table.c.status, jobs_table.c.cancel_requested_at)
    .where(jobs_table.c.id == bindparam("b_job"))
    .with_for_update()
)


def lock_startable_job(conn: Connection, job_id: int) -> None:
    """Lock the job's row and raise CancelRequested if it may not start
    anything new (see `IntentRepository._cancel_unstarted`, which takes the same lock)."""
    row = conn.execute(_STARTABLE_JOB, {"b_job": job_id}).first()
    if row is not None and (row.cancel_requested_at is not None or row.status in TERMINAL_NAMES):
        raise CancelRequested(job_id)


# How long a done intent's outcome is kept: far beyond any client's wait for it.
DONE_INTENTS_KEPT_S = 24 * 3600.0

# The `kind` column of each request type (its fields go to `request_json`).
_KINDS: dict[type[IntentRequest], str] = {SimPreempt: "sim_preempt", SimStockout: "sim_stockout"}
_REQUESTS: dict[str, type[IntentRequest]] = {kind: cls for cls, kind in _KINDS.items()}


def _outcome(outcome_json: str | None) -> IntentOutcome | None:
    if outcome_json is None:
        return None
    fields: dict[str, Any] = json.loads(outcome_json)
    return IntentOutcome(**{**fields, "stockouts": tuple(fields.get("stockouts", ()))})


class IntentRepository:
    """Cancel intents, the sim chaos intents, and the controller's start-up
    erasure (see the module's docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def erase_leftover_secrets(self) -> None:
        """At controller start: erase the secrets of every ended job and
        downed pool that still has some (an older skytui kept them), and
        truncate the WAL (a crash may have come before its scrub)."""
        with self._db._write() as conn:
            conn.execute(
                update(jobs_table)
                .where(jobs_table.c.status.in_(TERMINAL_NAMES), jobs_table.c.secrets_json != NO_SECRETS)
                .values(secrets_json=NO_SECRETS)
            )
            conn.execute(
                update(pools_table)
                .where(pools_table.c.down_requested_at.is_not(None), pools_table.c.secrets_json != NO_SECRETS)
                .values(secrets_json=NO_SECRETS)
            )
        self._db._scrub_wal_now()

    def request_cancel(self, job_ids: Sequence[int], reason: str | None = None) -> list[int]:
        """Record cancel intents, all in one transaction; returns the ids
        (sorted) that were in progress and not already being cancelled.

        Jobs that never started (see `_cancel_unstarted`) have nothing to tear
        down and end CANCELLED in this same transaction: `jobs cancel` of
        10,000 PENDING jobs is one commit of a few statements (ids go as
        ranges, events are written by the DB), not 10,000 controller coroutines.
        The rest are the controller's to stop (it reads the intents).
        """
        now = time.time()
        in_progress = [s.value for s in IN_PROGRESS]
        accepted: list[int] = []
        with self._db._write() as conn:
            for among in id_clauses(jobs_table.c.id, job_ids):
                accepted += conn.execute(
                    update(jobs_table)
                    .where(among, jobs_table.c.status.in_(in_progress), jobs_table.c.cancel_requested_at.is_(None))
                    .values(cancel_requested_at=now, cancel_reason=reason)
                    .returning(jobs_table.c.id)
                ).scalars().all()
            accepted.sort()
            for among in id_clauses(jobs_table.c.id, accepted):
                conn.execute(insert(events_table).from_select(EVENT_COLUMNS, select(
                    jobs_table.c.id, null(), literal(now, Float), literal("cancel_requested"), null(), null(),
                    literal(reason or "cancel requested"),
                ).where(among).order_by(jobs_table.c.id)))
            self._cancel_unstarted(conn, accepted, now)
        return accepted

    def cancel_unstarted(self, job_ids: Sequence[int]) -> list[int]:
        """The controller's batch for cancel intents it finds on jobs that
        never started and have no coroutine: CANCELLED in one transaction."""
        with self._db._write() as conn:
            return self._cancel_unstarted(conn, job_ids, time.time())

    def _cancel_unstarted(self, conn: Connection, job_ids: Sequence[int], now: float) -> list[int]:
        """PENDING -> CANCELLED, with every task's event, for the jobs among
        `job_ids` that never started: every task PENDING at attempt 0, no
        machine recorded live, no pool worker held. Returns their ids.

        The conditions are checked in the UPDATE itself, against the job rows
        it locks: the controller records a machine or takes a worker for a
        job only after checking, under the same lock, that it is neither
        cancelled nor ended (`lock_startable_job`). So either the job is
        cancelled here and nothing ever starts for it, or something has
        started and the controller's coroutine cancels it (CANCELLING, teardown).
        """
        pending = TaskStatus.PENDING.value
        cancelled: list[int] = []
        for among in id_clauses(jobs_table.c.id, job_ids):
            cancelled += conn.execute(
                update(jobs_table)
                .where(
                    among,
                    jobs_table.c.status == pending,
                    ~exists().where(
                        tasks_table.c.job_id == jobs_table.c.id,
                        (tasks_table.c.status != pending) | (tasks_table.c.attempt != 0),
                    ),
                    # Uncorrelated: each list is read once, not once per job
                    # (clusters has no index on job_id).
                    jobs_table.c.id.not_in(
                        select(clusters_table.c.job_id).where(
                            clusters_table.c.status.in_(ClusterStatus.LIVE), clusters_table.c.job_id.is_not(None)
                        )
                    ),
                    jobs_table.c.id.not_in(
                        select(pool_workers_table.c.job_id).where(pool_workers_table.c.job_id.is_not(None))
                    ),
                )
                # Nothing will run with the secrets again: they go in this transaction.
                .values(status=TaskStatus.CANCELLED.value, ended_at=now, secrets_json=NO_SECRETS)
                .returning(jobs_table.c.id)
            ).scalars().all()
        if not cancelled:
            return []
        cancelled.sort()
        for among in id_clauses(tasks_table.c.job_id, cancelled):
            # The events first, of the very rows the UPDATE below changes
            # (same predicate, same transaction, the jobs locked).
            ending = (among, tasks_table.c.status == pending)
            conn.execute(insert(events_table).from_select(EVENT_COLUMNS, select(
                tasks_table.c.job_id, tasks_table.c.task_idx, literal(now, Float), literal("status"),
                literal(pending), literal(TaskStatus.CANCELLED.value), literal("cancelled by user"),
            ).where(*ending).order_by(tasks_table.c.job_id, tasks_table.c.task_idx)))
            conn.execute(
                update(tasks_table).where(*ending)
                .values(status=TaskStatus.CANCELLED.value, ended_at=now, status_reason=None)
            )
        self._db._secrets_erased()
        return cancelled

    def cancel_requested(self) -> list[int]:
        with self._db._read() as conn:
            return list(
                conn.execute(
                    select(jobs_table.c.id).where(
                        jobs_table.c.cancel_requested_at.is_not(None),
                        jobs_table.c.status.in_([s.value for s in IN_PROGRESS]),
                    )
                ).scalars()
            )

    def cancelled_among(self, job_ids: Sequence[int]) -> list[int]:
        """Which of these jobs were cancelled and have ended CANCELLED: a
        coroutine the controller started for one of them (it waited for a
        launch slot or a worker when its cancel ended it) has nothing left to do."""
        found: list[int] = []
        with self._db._read() as conn:
            for among in id_clauses(jobs_table.c.id, job_ids):
                found += conn.execute(
                    select(jobs_table.c.id).where(
                        among,
                        jobs_table.c.cancel_requested_at.is_not(None),
                        jobs_table.c.status == TaskStatus.CANCELLED.value,
                    )
                ).scalars().all()
        return found

    def pending_among(self, job_ids: Sequence[int]) -> list[int]:
        """Which of these jobs are still PENDING."""
        found: list[int] = []
        with self._db._read() as conn:
            for among in id_clauses(jobs_table.c.id, job_ids):
                found += conn.execute(
                    select(jobs_table.c.id).where(among, jobs_table.c.status == TaskStatus.PENDING.value)
                ).scalars().all()
        return found


    # ------------------------------------------------------ sim chaos intents

    def request_intent(self, request: IntentRequest) -> int:
        """Record what a client asks the controller to do; the intent's id,
        for `intent_outcome`."""
        with self._db._write() as conn:
            return int(
                conn.execute(
                    insert(intents_table).values(
                        kind=_KINDS[type(request)], request_json=json.dumps(dataclasses.asdict(request)),
                        requested_at=time.time(),
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )

    def open_intents(self) -> list[IntentRow]:
        """The intents not carried out yet, oldest first."""
        with self._db._read() as conn:
            rows = conn.execute(
                select(intents_table).where(intents_table.c.done_at.is_(None)).order_by(intents_table.c.id)
            ).all()
        return [
            IntentRow(row.id, _REQUESTS[row.kind](**json.loads(row.request_json)), row.requested_at, None, None,
                      row.target)
            for row in rows
        ]

    def claim_preempt_target(
        self, intent_id: int, cluster: str, *, job_id: int, task_idx: int, event_kind: str, message: str
    ) -> str:
        """Record the machine an open preemption takes, with its event on the
        job's timeline, in one transaction, before it is taken; returns the
        target that stands (an earlier claim wins). A controller killed while
        the machine went finds the claim at its next start and reports that
        machine, instead of taking the job's next one as well."""
        with self._db._write() as conn:
            claimed = conn.execute(
                update(intents_table)
                .where(intents_table.c.id == intent_id, intents_table.c.target.is_(None))
                .values(target=cluster)
                .returning(intents_table.c.id)
            ).first()
            if claimed is None:
                standing: str | None = conn.execute(
                    select(intents_table.c.target).where(intents_table.c.id == intent_id)
                ).scalar()
                return standing if standing is not None else cluster
            insert_event(conn, job_id, task_idx, event_kind, message=message)
        return cluster

    def finish_intent(self, intent_id: int, outcome: IntentOutcome) -> bool:
        """Record an intent's outcome and mark it done, in one statement;
        False if it was done already (nothing is written then). Intents done
        long ago go: their clients have read or given up on them."""
        now = time.time()
        with self._db._write() as conn:
            conn.execute(delete(intents_table).where(intents_table.c.done_at < now - DONE_INTENTS_KEPT_S))
            done = conn.execute(
                update(intents_table)
                .where(intents_table.c.id == intent_id, intents_table.c.done_at.is_(None))
                .values(done_at=now, outcome_json=json.dumps(dataclasses.asdict(outcome)))
                .returning(intents_table.c.id)
            ).first()
        return done is not None

    def intent_outcome(self, intent_id: int) -> IntentOutcome | None:
        """What the controller made of an intent; None while it is not done."""
        with self._db._read() as conn:
            outcome_json = conn.execute(
                select(intents_table.c.outcome_json).where(
                    intents_table.c.id == intent_id, intents_table.c.done_at.is_not(None)
                )
            ).scalar()
        return _outcome(outcome_json)
