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
from itertools import groupby
from operator import itemgetter
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

from skytui.engine.store.schema import attempts_table, jobs_table, tasks_table

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
    """Rows of (job_id, job_head, submitted_at, task_recoveries,
    task_dollars, task_json), newest job first, then by task; a job without
    tasks has one row whose task fields are NULL. `job_head` is the job's
    object up to its `status`; `in_progress` (status names) keeps only those jobs.

    Each task's dollars come from one aggregate over the attempts, joined (a
    correlated subquery was run once per use: twice per task), and the job's
    totals are summed by `render_queue`, not by window functions: together
    half of what the read cost at 10,000 jobs."""
    chosen = select(J.id, J.name, J.pool, J.status, J.submitted_at)
    if in_progress is not None:
        chosen = chosen.where(J.status.in_(in_progress))
    if limit is not None:
        chosen = chosen.order_by(J.id.desc()).limit(limit)
    job = chosen.subquery("job")
    hours = (func.coalesce(A.ended_at, now) - A.started_at) / 3600.0
    cost = (
        select(A.job_id, A.task_idx, func.sum(case((hours > 0, hours), else_=0.0) * A.price_per_hour).label("dollars"))
        .where(A.price_per_hour.is_not(None))
        .group_by(A.job_id, A.task_idx)
        .subquery("cost")
    )
    later = func.greatest if dialect == "postgresql" else func.max
    running_s = case((T.run_started_at.is_(None), 0.0), else_=later(0.0, now - T.run_started_at))
    task = (
        select(
            job, T.name.label("task_name"), T.status.label("task_status"), *(T[name] for name in _TASK_COLUMNS),
            cast(T.job_duration_s + running_s, Float).label("duration_s"),
            func.coalesce(cost.c.dollars, 0.0).label("dollars"),
        )
        .select_from(
            job.outerjoin(tasks_table, T.job_id == job.c.id).outerjoin(
                cost, (cost.c.job_id == T.job_id) & (cost.c.task_idx == T.task_idx)
            )
        )
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
        c.id, job_head, c.submitted_at, c.recoveries, c.dollars,
        case((c.task_idx.is_(None), null()), else_=task_json),
    ).order_by(c.id.desc(), c.task_idx)


_TASK_COLUMNS = ("task_idx", "infra", "instance_type", "use_spot", "recoveries", "restarts_on_errors",
                 "exit_code", "failure_reason")


def render_queue(rows: Iterable[Sequence[Any]]) -> str:
    """The document, from `queue_statement`'s rows. A job's totals are
    summed task by task in task order, as JobView sums them."""
    jobs = []
    for _job_id, job_rows in groupby(rows, key=itemgetter(0)):
        tasks: list[str] = []
        recoveries, dollars = 0, 0.0
        head, submitted_at = "", 0.0
        for _, head, submitted_at, task_recoveries, task_dollars, task in job_rows:
            if task is not None:
                tasks.append(task)
                recoveries += task_recoveries or 0
                dollars += task_dollars or 0.0
        jobs.append(f'{head[:-1]},"submitted_at":{submitted_at!r},"recoveries":{recoveries},'
                    f'"cost_usd":{round(dollars, 4)!r},"tasks":[{",".join(tasks)}]}}')
    return '{"jobs": [' + ",".join(jobs) + "]}"
