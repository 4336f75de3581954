"""Pools and their workers: a pool's spec and versions (apply, resize,
down), its workers' lives, and which job holds which worker.

Touches `pools`, `pool_workers`, a job's `worker_id`, and the `events` a
pool's changes write; locks the job's row (`lock_startable_job`) before it
takes a worker.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import bindparam, delete, exists, insert, select, update

from skytui.engine.status import TERMINAL, TaskStatus
from skytui.engine.store.database import Database
from skytui.engine.store.errors import StoreError
from skytui.engine.store.intents import lock_startable_job
from skytui.engine.store.rows import UNSET, JobRow, PoolApplied, PoolRow, Unset, WorkerRow, WorkerStatus
from skytui.engine.store.schema import jobs_table, pool_workers_table, pools_table
from skytui.engine.store.sql import NO_SECRETS, columns_of, given, insert_event, record

# A worker is given only while READY, idle, and its pool is not being taken
# down: the dispatcher may hand over a worker from what it knows (see
# PoolDispatch._hand_over), and this is the check that cannot be stale.
_ASSIGN_WORKER = (
    update(pool_workers_table)
    .where(
        pool_workers_table.c.id == bindparam("b_worker"), pool_workers_table.c.job_id.is_(None),
        pool_workers_table.c.status == bindparam("b_ready"),
        ~exists().where(pools_table.c.name == pool_workers_table.c.pool, pools_table.c.down_requested_at.is_not(None)),
    )
    .values(job_id=bindparam("b_job"))
)
_SET_JOB_WORKER = update(jobs_table).where(jobs_table.c.id == bindparam("b_job")).values(worker_id=bindparam("b_worker"))
_RELEASE_WORKER = (
    update(pool_workers_table)
    .where(pool_workers_table.c.id == bindparam("b_worker"), pool_workers_table.c.job_id == bindparam("b_job"))
    .values(job_id=None, jobs_done=pool_workers_table.c.jobs_done + 1)
)


class PoolRepository:
    """Pools and workers (see the module's docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def apply_pool(
        self, name: str, spec: dict[str, Any], secrets: dict[str, str], target_workers: int
    ) -> tuple[int, str]:
        """Create a pool or give it a new version; returns (version, PoolApplied).

        `spec` holds the workers' task and the pool section; a new spec that
        differs only in the worker count keeps the workers (they move to the
        new version), anything else makes the old workers drain."""
        now = time.time()
        spec_json, secrets_json = json.dumps(spec, sort_keys=True), json.dumps(secrets, sort_keys=True)
        with self._db._write() as conn:
            row = conn.execute(
                select(pools_table).where(pools_table.c.name == name).with_for_update()
            ).first()
            if row is None:
                conn.execute(
                    insert(pools_table).values(
                        name=name, version=1, status="ACTIVE", spec_json=spec_json, secrets_json=secrets_json,
                        created_at=now, target_workers=target_workers, updated_at=now,
                    )
                )
                insert_event(conn, None, None, "pool", message=f"pool {name}: created, {target_workers} worker(s)")
                return 1, PoolApplied.CREATED
            if row.down_requested_at is not None:
                raise StoreError(f"pool {name} is shutting down; apply again once `pool status` no longer lists it")
            old = json.loads(row.spec_json)
            same_workers = _without_count(old) == _without_count(spec) and row.secrets_json == secrets_json
            if same_workers and row.target_workers == target_workers and old == spec:
                return row.version, PoolApplied.UNCHANGED
            version = row.version + 1
            conn.execute(
                update(pools_table).where(pools_table.c.name == name).values(
                    version=version, spec_json=spec_json, secrets_json=secrets_json,
                    target_workers=target_workers, updated_at=now,
                )
            )
            if same_workers:
                conn.execute(
                    update(pool_workers_table)
                    .where(pool_workers_table.c.pool == name, pool_workers_table.c.status.in_(WorkerStatus.LIVE))
                    .values(version=version)
                )
            outcome = PoolApplied.RESIZED if same_workers else PoolApplied.UPDATED
            insert_event(conn, None, None, "pool",
                        message=f"pool {name}: version {version} ({outcome}), {target_workers} worker(s)")
            return version, outcome

    def set_pool_target(self, name: str, target_workers: int) -> None:
        """The autoscaler's choice (no new version)."""
        with self._db._write() as conn:
            conn.execute(update(pools_table).where(pools_table.c.name == name).values(target_workers=target_workers))

    def pool(self, name: str) -> PoolRow | None:
        with self._db._read() as conn:
            row = conn.execute(select(*columns_of(pools_table, PoolRow)).where(pools_table.c.name == name)).first()
        return record(PoolRow, row) if row else None

    def pools(self) -> list[PoolRow]:
        with self._db._read() as conn:
            rows = conn.execute(select(*columns_of(pools_table, PoolRow)).order_by(pools_table.c.name)).all()
        return [record(PoolRow, r) for r in rows]

    def pool_spec(self, name: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The workers' spec and secrets: for the controller only."""
        with self._db._read() as conn:
            row = conn.execute(
                select(pools_table.c.spec_json, pools_table.c.secrets_json).where(pools_table.c.name == name)
            ).one()
        return json.loads(row.spec_json), json.loads(row.secrets_json)

    def request_pool_down(self, name: str) -> list[int]:
        """Mark a pool for teardown; refused (returns the job ids) while any of
        its jobs is unfinished."""
        with self._db._write() as conn:
            unfinished = conn.execute(
                select(jobs_table.c.id).where(
                    jobs_table.c.pool == name, jobs_table.c.status.notin_([s.value for s in TERMINAL])
                ).order_by(jobs_table.c.id)
            ).scalars().all()
            if unfinished:
                return list(unfinished)
            # A pool going down launches no worker again: its secrets go now,
            # not when the last worker is gone.
            erased = conn.execute(
                update(pools_table)
                .where(pools_table.c.name == name, pools_table.c.down_requested_at.is_(None))
                .values(down_requested_at=time.time(), secrets_json=NO_SECRETS)
            ).rowcount
            if erased:
                self._db._secrets_erased()
            insert_event(conn, None, None, "pool", message=f"pool {name}: down requested")
            return []

    def delete_pool(self, name: str) -> None:
        with self._db._write() as conn:
            conn.execute(delete(pools_table).where(pools_table.c.name == name))
            insert_event(conn, None, None, "pool", message=f"pool {name}: down, every worker terminated")

    def workers(self, pool: str | None = None, *, live_only: bool = True) -> list[WorkerRow]:
        query = select(*columns_of(pool_workers_table, WorkerRow))
        if pool is not None:
            query = query.where(pool_workers_table.c.pool == pool)
        if live_only:
            query = query.where(pool_workers_table.c.status.in_(WorkerStatus.LIVE))
        with self._db._read() as conn:
            return [record(WorkerRow, r) for r in conn.execute(query.order_by(pool_workers_table.c.id)).all()]

    def insert_worker(self, pool: str, version: int) -> int:
        with self._db._write() as conn:
            result = conn.execute(
                insert(pool_workers_table).values(
                    pool=pool, version=version, status=WorkerStatus.PROVISIONING, created_at=time.time(),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def update_worker(
        self, worker_id: int, *,
        status: str | Unset = UNSET,
        cluster_id: int | None | Unset = UNSET,
        status_reason: str | None | Unset = UNSET,
        ready_at: float | None | Unset = UNSET,
        ended_at: float | None | Unset = UNSET,
    ) -> None:
        values = given(
            status=status, cluster_id=cluster_id, status_reason=status_reason, ready_at=ready_at, ended_at=ended_at,
        )
        if values.get("status") in (WorkerStatus.TERMINATED, WorkerStatus.FAILED, WorkerStatus.PREEMPTED):
            values.setdefault("ended_at", time.time())
        with self._db._write() as conn:
            conn.execute(update(pool_workers_table).where(pool_workers_table.c.id == worker_id).values(**values))

    def assign_worker(self, worker_id: int, job_id: int) -> bool:
        """Give an idle READY worker to a job; False if it was taken, is no
        longer READY or its pool is being taken down. CancelRequested if the
        job's cancel was requested."""
        with self._db._write() as conn:
            lock_startable_job(conn, job_id)
            params = {"b_worker": worker_id, "b_job": job_id}
            if conn.execute(_ASSIGN_WORKER, dict(params, b_ready=WorkerStatus.READY)).rowcount != 1:
                return False
            conn.execute(_SET_JOB_WORKER, params)
            return True

    def release_worker(self, worker_id: int, job_id: int) -> None:
        """The job is done with the worker (finished, cancelled, or its worker was lost)."""
        with self._db._write() as conn:
            conn.execute(_RELEASE_WORKER, {"b_worker": worker_id, "b_job": job_id})

    def worker_of_job(self, job_id: int) -> WorkerRow | None:
        with self._db._read() as conn:
            row = conn.execute(
                select(*columns_of(pool_workers_table, WorkerRow)).where(pool_workers_table.c.job_id == job_id)
            ).first()
        return record(WorkerRow, row) if row else None

    def pending_pool_jobs(self, pool: str) -> list[JobRow]:
        """The pool's jobs waiting for a worker, first to be served first."""
        with self._db._read() as conn:
            rows = conn.execute(
                select(*columns_of(jobs_table, JobRow))
                .where(jobs_table.c.pool == pool, jobs_table.c.status == TaskStatus.PENDING.value)
                .order_by(jobs_table.c.priority.desc(), jobs_table.c.id)
            ).all()
        return [record(JobRow, r) for r in rows]


def _without_count(spec: dict[str, Any]) -> dict[str, Any]:
    """A pool spec minus how many workers: what the workers themselves are."""
    return {key: value for key, value in spec.items() if key != "pool"}
