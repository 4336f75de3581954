"""The cost ledger: what each attempt's machines and each pool's workers
cost, and how much of it bought nothing. Read-only.

Owns `LedgerRepository` (its records are in `spend`: no SQLAlchemy there,
the faces import them); reads `attempts`, `clusters`, `jobs` and
`pool_workers`, writes nothing.

What is counted (prices are the catalog's, recorded when the machine was
chosen; an unknown price counts as $0):

* an attempt of a job's own machine spends from the moment its machine was
  recorded (`clusters.created_at`: provisioning, asked of the cloud) to its
  end (`attempts.ended_at`, or `now` while it runs), at its
  `price_per_hour`. Its provisioning (machine recorded -> attempt opened,
  which happens when the machine came up) is always lost; the rest is lost
  too when the attempt ended in any way but "succeeded" (preempted, machine
  lost, failed, cancelled). A running attempt's run time is not lost (yet).
* a pool job's attempts carry no price: their machine is a worker's, whose
  cost is the pool's. A pool's machine spends from `created_at` to
  `ended_at` (or `now`); what it spent before its worker became READY
  (all of it, for a worker that never did) is lost. Idle time of a ready
  worker is the pool's choice, not lost.
* places that refused a machine leave no row (`forget_cluster`) and cost
  nothing; a machine that came up as the controller died, before its
  attempt was recorded, has no attempt and is not counted.

At 10,000 jobs the sums run in SQL (`spend_sums`: one statement per
grouping, by task, by UTC day and by infra, in one snapshot): a record per
attempt summed in Python was several times slower (bench/ledger.py). A
job's own attempts (`attempt_spend`, for the job view and budgets) come one
record each, their arithmetic in Python; a test holds the two to agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Float, Integer, and_, case, cast, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from skytui.engine.store.database import Database
from skytui.engine.store.schema import attempts_table, clusters_table, jobs_table, pool_workers_table
from skytui.engine.store.spend import (
    HOUR_S,
    SUCCEEDED_REASON,
    AttemptSpend,
    MachineSpend,
    SpendSums,
    TaskSpend,
    utc_day,
)
from skytui.engine.store.sql import id_clauses

A, C, J, W = attempts_table.c, clusters_table.c, jobs_table.c, pool_workers_table.c
# A job's own machine (a pool worker's is not the job's: no provisioning of its own).
OWN_MACHINE = and_(C.id == A.cluster_id, C.job_id == A.job_id)
ATTEMPTS = attempts_table.join(jobs_table, J.id == A.job_id).outerjoin(clusters_table, OWN_MACHINE)


def _dollars(now: float) -> tuple[ColumnElement[Any], ColumnElement[Any], ColumnElement[Any]]:
    """(spend began, spent, lost) of an attempt row of ATTEMPTS, as SQL: the
    same arithmetic as AttemptSpend's."""
    began = case((or_(C.created_at.is_(None), C.created_at > A.started_at), A.started_at), else_=C.created_at)
    end = func.coalesce(A.ended_at, now)
    run_s = case((end > A.started_at, end - A.started_at), else_=0.0)
    provisioning_s = A.started_at - began
    per_s = cast(func.coalesce(A.price_per_hour, 0.0), Float) / HOUR_S
    ended_badly = and_(A.ended_at.is_not(None), func.coalesce(A.end_reason, "") != SUCCEEDED_REASON)
    spent = (provisioning_s + run_s) * per_s
    lost = (provisioning_s + case((ended_badly, run_s), else_=0.0)) * per_s
    return began, spent, lost


class LedgerRepository:
    """The ledger's reads (see the module's docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def attempt_spend(
        self, *, now: float, since: float | None = None, job_ids: Sequence[int] | None = None,
    ) -> list[AttemptSpend]:
        """Every attempt that spent anything at or after `since` (still
        running, or ended since then), of the jobs given (all by default),
        by job, task and attempt."""
        query = (
            select(A.job_id, A.task_idx, A.attempt_no, J.name, J.pool, A.infra, A.use_spot, A.started_at,
                   A.ended_at, A.end_reason, A.price_per_hour, C.created_at)
            .select_from(ATTEMPTS)
            .order_by(A.job_id, A.task_idx, A.attempt_no)
        )
        if since is not None:
            query = query.where(func.coalesce(A.ended_at, now) >= since)
        clauses: list[Any] = [None] if job_ids is None else list(id_clauses(A.job_id, job_ids))
        spends = []
        with self._db._read() as conn:
            for clause in clauses:
                for row in conn.execute(query if clause is None else query.where(clause)):
                    (job_id, task_idx, attempt_no, name, pool, infra, use_spot, started_at, ended_at, reason,
                     price, created_at) = row
                    began = started_at if created_at is None else min(created_at, started_at)
                    spends.append(AttemptSpend(
                        job_id, task_idx, attempt_no, name, pool, infra, use_spot, began, ended_at, reason, price,
                        provisioning_s=started_at - began,
                        run_s=max(0.0, (now if ended_at is None else ended_at) - started_at),
                    ))
        if job_ids is not None:
            spends.sort(key=lambda s: (s.job_id, s.task_idx, s.attempt_no))
        return spends

    def spend_sums(self, *, now: float, since: float | None = None) -> SpendSums:
        """Every attempt that spent anything at or after `since`, summed by
        task, by the UTC day its spend began and by infra."""
        began, spent, lost = _dollars(now)
        window = [] if since is None else [func.coalesce(A.ended_at, now) >= since]
        money = (func.sum(spent), func.sum(lost))
        by_task = (
            select(A.job_id, A.task_idx, J.name, J.pool, *money).select_from(ATTEMPTS).where(*window)
            .group_by(A.job_id, A.task_idx, J.name, J.pool).order_by(A.job_id.desc(), A.task_idx)
        )
        # Whole days since the epoch: SQLite's CAST truncates, PostgreSQL's rounds.
        day = cast(began / 86400.0, Integer) if self._db.is_sqlite else cast(func.floor(began / 86400.0), Integer)
        by_day = select(day, *money).select_from(ATTEMPTS).where(*window).group_by(day).order_by(day)
        by_infra = (
            select(A.infra, *money).select_from(ATTEMPTS).where(A.price_per_hour.is_not(None), *window)
            .group_by(A.infra)
        )
        with self._db._read(snapshot=True) as conn:
            tasks = [TaskSpend(*row) for row in conn.execute(by_task)]
            days = {utc_day(int(n) * 86400.0): (s, lo) for n, s, lo in conn.execute(by_day)}
            infras = {infra or "-": (s, lo) for infra, s, lo in conn.execute(by_infra)}
        return SpendSums(tasks, days, infras)

    def pool_machine_spend(
        self, *, now: float, since: float | None = None, pools: Sequence[str] | None = None,
    ) -> list[MachineSpend]:
        """Every pool worker's machine still up, or ended at or after
        `since`, of the pools given (all by default), by id."""
        query = (
            select(C.id, C.pool, C.cloud, C.region, C.zone, C.instance_type, C.use_spot, C.created_at,
                   C.ended_at, C.price_per_hour, W.ready_at)
            .select_from(clusters_table.outerjoin(pool_workers_table, W.id == C.worker_id))
            .where(C.pool.is_not(None))
            .order_by(C.id)
        )
        if since is not None:
            query = query.where(func.coalesce(C.ended_at, now) >= since)
        if pools is not None:
            query = query.where(C.pool.in_(list(pools)))
        spends = []
        with self._db._read() as conn:
            for row in conn.execute(query):
                (cluster_id, pool, cloud, region, zone, instance, spot, created_at, ended_at, price, ready_at) = row
                end = now if ended_at is None else ended_at
                life = max(0.0, end - created_at)
                unready = life if ready_at is None else min(life, max(0.0, ready_at - created_at))
                spends.append(MachineSpend(
                    cluster_id, pool, cloud, region, zone, instance, bool(spot), created_at, ended_at, price,
                    life_s=life, unready_s=unready,
                ))
        return spends
