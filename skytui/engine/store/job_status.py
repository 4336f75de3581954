"""A job's status, derived from its tasks' (`status.derived_job_status`) and
written in the transaction that changed them; a job that has ended loses
its secrets in that same transaction.

Touches the `jobs` rows (status, ended_at, secrets_json) of the jobs a
caller's write changed, and reads their `tasks`.
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select, update

from skytui.engine.status import TERMINAL, TaskStatus, derived_job_status
from skytui.engine.store.database import Database
from skytui.engine.store.schema import jobs_table, tasks_table
from skytui.engine.store.sql import NO_SECRETS, id_clauses

_SET_JOB_STATUS = (
    update(jobs_table)
    .where(jobs_table.c.id == bindparam("b_job"))
    .values(status=bindparam("status"), ended_at=bindparam("ended_at"))
)
_JOB_TASK_STATUSES = (
    select(tasks_table.c.status, tasks_table.c.group_role)
    .where(tasks_table.c.job_id == bindparam("b_job")).order_by(tasks_table.c.task_idx)
)


def refresh_job_status(db: Database, conn: Connection, job_id: int, now: float) -> None:
    rows = conn.execute(_JOB_TASK_STATUSES, {"b_job": job_id}).all()
    statuses = [TaskStatus(row[0]) for row in rows]
    status = derived_job_status(statuses, [row[1] for row in rows])
    finished = all(s in TERMINAL for s in statuses)
    conn.execute(
        _SET_JOB_STATUS, {"b_job": job_id, "status": status.value, "ended_at": now if status in TERMINAL else None}
    )
    if finished:
        erase_job_secrets(db, conn, job_id)


def refresh_jobs_status(db: Database, conn: Connection, job_ids: set[int], now: float) -> None:
    """`refresh_job_status` for many jobs, in a few statements."""
    statuses: dict[int, list[TaskStatus]] = {}
    roles: dict[int, list[str | None]] = {}
    for clause in id_clauses(tasks_table.c.job_id, job_ids):
        for job_id, status, role in conn.execute(
            select(tasks_table.c.job_id, tasks_table.c.status, tasks_table.c.group_role).where(clause)
            .order_by(tasks_table.c.job_id, tasks_table.c.task_idx)
        ):
            statuses.setdefault(job_id, []).append(TaskStatus(status))
            roles.setdefault(job_id, []).append(role)
    updates, finished = [], []
    for job_id, of_job in statuses.items():
        status = derived_job_status(of_job, roles[job_id])
        if all(s in TERMINAL for s in of_job):
            finished.append(job_id)
        updates.append({"b_job": job_id, "status": status.value,
                        "ended_at": now if status in TERMINAL else None})
    conn.execute(_SET_JOB_STATUS, updates)
    erased = 0
    for clause in id_clauses(jobs_table.c.id, finished):
        erased += conn.execute(
            update(jobs_table).where(clause, jobs_table.c.secrets_json != NO_SECRETS)
            .values(secrets_json=NO_SECRETS)
        ).rowcount
    if erased:
        db._secrets_erased()


def erase_job_secrets(db: Database, conn: Connection, job_id: int) -> None:
    """Every task has ended, so nothing will run with the secrets again:
    they go in the transaction that ends the job, and no crash can leave
    an ended job holding them."""
    erased = conn.execute(
        update(jobs_table)
        .where(jobs_table.c.id == job_id, jobs_table.c.secrets_json != NO_SECRETS)
        .values(secrets_json=NO_SECRETS)
    ).rowcount
    if erased:
        db._secrets_erased()
