"""What the controller's watch reads each few seconds: the in-progress jobs
with a budget and what they have spent, and the RUNNING tasks of jobs with a
stall timeout. Reads only; touches `jobs`, `tasks`, `attempts`, `events`.

Spent is what the queue's COST shows: every attempt's price for the time its
machines were up (the ledger also counts the provisioning before).
"""

from __future__ import annotations

from sqlalchemy import Float, case, cast, exists, func, literal, select

from skytui.engine import event_kinds
from skytui.engine.status import IN_PROGRESS, TaskStatus
from skytui.engine.store.database import Database
from skytui.engine.store.rows import BudgetState, RunningTask
from skytui.engine.store.schema import attempts_table, events_table, jobs_table, tasks_table


class WatchRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def budget_states(self, now: float) -> list[BudgetState]:
        a = attempts_table.c
        spent = (
            select(a.job_id, func.sum(
                func.coalesce(a.price_per_hour, 0.0)
                * func.max(0.0, func.coalesce(a.ended_at, literal(now, Float)) - a.started_at) / 3600.0
            ).label("spent"), func.sum(
                case((a.ended_at.is_(None), func.coalesce(a.price_per_hour, 0.0)), else_=0.0)
            ).label("burn"))
            .group_by(a.job_id)
            .subquery()
        )
        warned = exists().where(events_table.c.job_id == jobs_table.c.id,
                                events_table.c.kind == event_kinds.BUDGET_WARNING)
        query = (
            select(jobs_table.c.id, jobs_table.c.max_cost_usd, func.coalesce(spent.c.spent, 0.0), warned,
                   func.coalesce(spent.c.burn, 0.0))
            .outerjoin(spent, spent.c.job_id == jobs_table.c.id)
            .where(
                jobs_table.c.max_cost_usd.is_not(None),
                jobs_table.c.cancel_requested_at.is_(None),
                jobs_table.c.status.in_([s.value for s in IN_PROGRESS]),
            )
        )
        with self._db._read() as conn:
            return [BudgetState(int(row[0]), float(row[1]), float(row[2]), bool(row[3]), float(row[4]))
                    for row in conn.execute(query)]

    def running_tasks_with_stall_timeout(self) -> list[RunningTask]:
        t = tasks_table.c
        query = (
            select(t.job_id, t.task_idx, t.attempt, t.num_nodes, cast(jobs_table.c.stall_timeout_s, Float),
                   t.run_started_at, t.status_reason)
            .join(jobs_table, jobs_table.c.id == t.job_id)
            .where(
                t.status == TaskStatus.RUNNING.value,
                jobs_table.c.stall_timeout_s.is_not(None),
                jobs_table.c.cancel_requested_at.is_(None),
            )
        )
        with self._db._read() as conn:
            return [RunningTask(*row) for row in conn.execute(query)]
