"""The pieces every repository builds its SQL from: rows to records, ids to
compact clauses, cached UPDATE statements, event rows.

Owns no table of its own; touches only what a caller's connection passes in.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Table, bindparam, insert, or_, select, update
from sqlalchemy import Update as UpdateStatement

from skytui.engine.status import TERMINAL_NAMES, TaskStatus
from skytui.engine.store.rows import UNSET
from skytui.engine.store.schema import events_table

if TYPE_CHECKING:
    from skytui.engine.store.database import Database

NO_SECRETS = "{}"  # what an erased secrets_json holds

R = TypeVar("R")


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def record(cls: type[R], row: Any) -> R:
    mapping = row._mapping
    return cls(*(mapping[name] for name in _field_names(cls)))  # type: ignore[arg-type]


def columns_of(table: Table, cls: type) -> list[Any]:
    """Only the columns a record shows: a queue read never loads a job's spec
    or its secrets."""
    return [table.c[name] for name in _field_names(cls)]


# Past this many ids, reading the whole table beats a giant IN (...) clause.
IN_LIMIT = 500
# Consecutive ids from this many on are one BETWEEN (see id_clauses).
_RUN_MIN = 64

EVENT_COLUMNS = ["job_id", "task_idx", "at", "kind", "from_status", "to_status", "message"]
_INSERT_EVENT = insert(events_table)


@functools.lru_cache(maxsize=128)
def update_statement(
    table: Table, key: tuple[str, ...], columns: tuple[str, ...], guard: str = ""
) -> UpdateStatement:
    """`UPDATE table SET <columns> WHERE <key> = :b_<key>`, built once per
    set of columns (a statement built per call cost more than running it).
    `guard`: "status" adds `status = :b_status`; "unfinished", `status NOT
    IN (terminal)`. Values go as `v_<column>`."""
    statement = update(table).where(*(table.c[name] == bindparam(f"b_{name}") for name in key))
    if guard == "status":
        statement = statement.where(table.c.status == bindparam("b_status"))
    elif guard == "unfinished":
        statement = statement.where(table.c.status.notin_(TERMINAL_NAMES))
    return statement.values({name: bindparam(f"v_{name}") for name in columns})


def update_params(values: dict[str, Any], **key: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The column names (sorted) and the parameters for `update_statement`."""
    params = {f"b_{name}": value for name, value in key.items()}
    params.update((f"v_{name}", value) for name, value in values.items())
    return tuple(sorted(values)), params


def id_clauses(column: Any, ids: Iterable[int]) -> Iterator[Any]:
    """`column` among `ids` in as little SQL as it takes: each long run of
    consecutive ids is one BETWEEN (`cancel -a` of 10,000 jobs is `id BETWEEN
    1 AND 10000`), the rest go in one IN list, and each clause stays small
    enough for any backend. Empty `ids`: no clause at all.

    Only long runs get a BETWEEN: a statement's shape is its number of
    BETWEENs (an IN list of any length is one cached shape), and a shape
    never seen is compiled afresh. A thousand jobs ending in scattered
    batches used to make every batch's statements new."""
    ordered = sorted(set(ids))
    runs: list[tuple[int, int]] = []
    for job_id in ordered:
        if runs and job_id == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], job_id)
        else:
            runs.append((job_id, job_id))
    ranges = [(first, last) for first, last in runs if last - first + 1 >= _RUN_MIN]
    singles = [i for first, last in runs if last - first + 1 < _RUN_MIN for i in range(first, last + 1)]
    for start in range(0, len(ranges), IN_LIMIT):
        part = ranges[start:start + IN_LIMIT]
        yield or_(*(column.between(first, last) for first, last in part)) if len(part) > 1 \
            else column.between(*part[0])
    for start in range(0, len(singles), IN_LIMIT):
        yield column.in_(singles[start:start + IN_LIMIT])


def event_values(
    job_id: int | None,
    task_idx: int | None,
    kind: str,
    *,
    from_status: TaskStatus | None = None,
    to_status: TaskStatus | None = None,
    message: str | None = None,
    at: float | None = None,
) -> dict[str, Any]:
    """One events row, for a single insert or a batch."""
    return {
        "job_id": job_id, "task_idx": task_idx, "at": at if at is not None else time.time(), "kind": kind,
        "from_status": from_status.value if from_status else None,
        "to_status": to_status.value if to_status else None, "message": message,
    }


def insert_event(
    conn: Connection,
    job_id: int | None,
    task_idx: int | None,
    kind: str,
    *,
    from_status: TaskStatus | None = None,
    to_status: TaskStatus | None = None,
    message: str | None = None,
    at: float | None = None,
) -> None:
    conn.execute(_INSERT_EVENT, event_values(
        job_id, task_idx, kind, from_status=from_status, to_status=to_status, message=message, at=at,
    ))


def given(**values: Any) -> dict[str, Any]:
    """The columns of a typed update that were given (not UNSET)."""
    return {name: value for name, value in values.items() if value is not UNSET}


def rows_by_job(
    db: Database, table: Table, cls: type[R], job_ids: Sequence[int], order: tuple[Any, ...]
) -> dict[int, list[R]]:
    """Child rows (tasks, attempts) of many jobs in one read, grouped by job."""
    out: dict[int, list[R]] = {job_id: [] for job_id in job_ids}
    if not job_ids:
        return out
    query = select(table).order_by(*order)
    if len(job_ids) <= IN_LIMIT:
        query = query.where(table.c.job_id.in_(list(job_ids)))
    with db._read() as conn:
        rows = conn.execute(query).all()
    for row in rows:
        if row.job_id in out:
            out[row.job_id].append(record(cls, row))
    return out
