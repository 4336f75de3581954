"""The newest jobs of a SQLite state DB, read with the standard library's
sqlite3 for a process's first frame: importing SQLAlchemy costs 0.1-0.25 s,
more than the whole read, and the TUI's first rows need only these records.

Owns `read_newest_jobs`; reads `meta`, `events`, `jobs`, `tasks` and
`attempts`, writes nothing (the connection is read-only). Whatever it is not
sure of answers None and the caller reads through the `Store` as usual: no
DB file yet, a schema version other than this skytui's (the Store migrates
it), a DB busy past the timeout. The records are built exactly as the
repositories build them (tests/unit/test_first_page.py holds the two equal).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from skytui.engine.store.rows import AttemptRow, JobRow, TaskRow
from skytui.engine.store.version import SCHEMA_VERSION

R = TypeVar("R")
BUSY_TIMEOUT_S = 2.0
"""How long a read waits for a writer's lock before giving up (to the Store)."""


@dataclass(frozen=True)
class NewestJobs:
    """The newest jobs, their tasks and attempts, and the event id they are as of."""

    last_event_id: int
    """Of the same snapshot as the jobs: a change after it is followed from here."""
    jobs: list[JobRow]
    """Newest first."""
    tasks: dict[int, list[TaskRow]]
    attempts: dict[int, list[AttemptRow]]


def _columns(cls: type) -> tuple[tuple[str, ...], list[bool]]:
    """A record's column names, and which of them SQLite hands back as 0/1 for a bool."""
    return tuple(f.name for f in fields(cls)), [str(f.type).startswith("bool") for f in fields(cls)]


def _records(conn: sqlite3.Connection, cls: type[R], sql: str, params: tuple[Any, ...]) -> list[R]:
    names, flags = _columns(cls)
    cursor = conn.execute(sql.format(columns=", ".join(names)), params)
    return [
        cls(*(bool(v) if flag and v is not None else v for v, flag in zip(row, flags)))
        for row in cursor
    ]


def _by_job(job_ids: list[int], records: list[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {job_id: [] for job_id in job_ids}
    for record in records:
        out[record.job_id].append(record)
    return out


def read_newest_jobs(db_file: Path, limit: int) -> NewestJobs | None:
    """The `limit` newest jobs, as `Store.jobs(limit=...)` and its children reads would give them."""
    if not db_file.is_file():
        return None
    try:
        conn = sqlite3.connect(
            f"{db_file.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
        )
    except sqlite3.Error:
        return None
    try:
        conn.execute("BEGIN")  # one snapshot: the jobs, their children and the event id agree
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None or version[0] != str(SCHEMA_VERSION):
            return None
        last_event_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])
        jobs = _records(conn, JobRow, "SELECT {columns} FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        ids = [job.id for job in jobs]
        marks = ", ".join("?" * len(ids))
        tasks = _records(
            conn, TaskRow, f"SELECT {{columns}} FROM tasks WHERE job_id IN ({marks}) ORDER BY job_id, task_idx",
            tuple(ids),
        )
        attempts = _records(
            conn, AttemptRow,
            f"SELECT {{columns}} FROM attempts WHERE job_id IN ({marks}) ORDER BY job_id, task_idx, attempt_no",
            tuple(ids),
        )
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return NewestJobs(last_event_id, jobs, _by_job(ids, tasks), _by_job(ids, attempts))
