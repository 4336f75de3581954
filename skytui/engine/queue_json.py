"""`jobs queue --json`, written by the database.

At 10,000 jobs, turning rows into tuples, then dicts, then JSON text cost
three times what the database needs to write the JSON itself (SQLite's
`json_object`, PostgreSQL's `json_build_object`). One read returns a row per
task, newest job first: its job's leading fields and the task's whole object
as JSON text, plus the few numbers the job's totals need; `render_queue`
stitches them into the document `JobView.to_json` describes (DESIGN.md): the
same keys in the same order, and numbers that parse back to the same values.

Two values are written by Python, for exactness: `submitted_at` (SQLite
prints reals with 15 significant digits, a timestamp needs 17) and the job's
totals (summed task by task, as `JobView` does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Float,
    Numeric,
    Select,
    Text,
    case,
    cast,
    func,
    literal,
    null,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from skytui.engine.schema import attempts_table, jobs_table, tasks_table

A, J, T = attempts_table.c, jobs_table.c, tasks_table.c


def _json_object(dialect: str, pairs: Sequence[tuple[str, ColumnElement[Any]]]) -> ColumnElement[str]:
    args = [part for key, value in pairs for part in (literal(key), value)]
    if dialect == "postgresql":
        return cast(func.json_build_object(*args), Text)
    return func.json_object(*args)


def _rounded(dialect: str, value: ColumnElement[Any], digits: int) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.round(cast(value, Numeric), digits)  # round(double, int) does not exist there
    return func.round(value, digits)


def _boolean(dialect: str, value: ColumnElement[Any]) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return value
    # SQLite keeps booleans as 0/1: say true/false, as the JSON contract does.
    return case((value.is_(None), null()), else_=func.json(case((value == 1, "true"), else_="false")))


def queue_statement(dialect: str, *, in_progress: Sequence[str] | None, limit: int | None, now: float) -> Select[Any]:
    """Rows of (job_id, job_head, submitted_at, job_recoveries, job_dollars,
    task_json), newest job first, then by task; a job without tasks has one
    row whose task_json is NULL. `job_head` is the job's object up to its
    `status`; `in_progress` (status names) keeps only those jobs."""
    chosen = select(J.id, J.name, J.pool, J.status, J.submitted_at).order_by(J.id.desc())
    if in_progress is not None:
        chosen = chosen.where(J.status.in_(in_progress))
    if limit is not None:
        chosen = chosen.limit(limit)
    job = chosen.subquery("job")
    hours = (func.coalesce(A.ended_at, now) - A.started_at) / 3600.0
    dollars = (
        select(func.sum(case((hours > 0, hours), else_=0.0) * A.price_per_hour))
        .where(A.job_id == T.job_id, A.task_idx == T.task_idx, A.price_per_hour.is_not(None))
        .scalar_subquery()
    )
    later = func.greatest if dialect == "postgresql" else func.max
    running_s = case((T.run_started_at.is_(None), 0.0), else_=later(0.0, now - T.run_started_at))
    task = (
        select(
            job, T.name.label("task_name"), T.status.label("task_status"), *(T[name] for name in _TASK_COLUMNS),
            cast(T.job_duration_s + running_s, Float).label("duration_s"),
            func.coalesce(dollars, 0.0).label("dollars"),
        )
        .select_from(job.outerjoin(tasks_table, T.job_id == job.c.id))
        .subquery("task")
    )
    c = task.c
    task_json = _json_object(dialect, [
        ("task_id", c.task_idx), ("name", c.task_name), ("status", c.task_status), ("infra", c.infra),
        ("instance_type", c.instance_type), ("use_spot", _boolean(dialect, c.use_spot)),
        ("recoveries", c.recoveries), ("restarts_on_errors", c.restarts_on_errors),
        ("exit_code", c.exit_code), ("failure_reason", c.failure_reason),
        ("job_duration_s", _rounded(dialect, c.duration_s, 3)), ("cost_usd", _rounded(dialect, c.dollars, 4)),
    ])
    job_head = _json_object(dialect, [("id", c.id), ("name", c.name), ("pool", c.pool), ("status", c.status)])
    return select(
        c.id, job_head, c.submitted_at,
        func.coalesce(func.sum(c.recoveries).over(partition_by=c.id), 0),
        func.sum(c.dollars).over(partition_by=c.id),
        case((c.task_idx.is_(None), null()), else_=task_json),
    ).order_by(c.id.desc(), c.task_idx)


_TASK_COLUMNS = ("task_idx", "infra", "instance_type", "use_spot", "recoveries", "restarts_on_errors",
                 "exit_code", "failure_reason")


def render_queue(rows: Iterable[Sequence[Any]]) -> str:
    """The document, from `queue_statement`'s rows."""
    parts = ['{"jobs": [']
    current: int | None = None
    for job_id, head, submitted_at, recoveries, dollars, task in rows:
        if job_id != current:
            if current is not None:
                parts.append("]},")
            current = job_id
            parts.append(f'{head[:-1]},"submitted_at":{submitted_at!r},"recoveries":{recoveries},'
                         f'"cost_usd":{round(dollars or 0.0, 4)!r},"tasks":[')
        else:
            parts.append(",")
        if task is not None:
            parts.append(task)
    if current is not None:
        parts.append("]}")
    parts.append("]}")
    return "".join(parts)
