"""The state DB: migrations and every query skytui runs (the tables are in
`schema`).

Nothing else in skytui writes SQL, save `queue_json`, the one read the DB
itself renders. The DB is the contract between clients and
the controller: clients write intents (a job, a cancel request), the controller
writes state (save one case: a cancel ends a job that never started at once,
see `request_cancel`), and every task status change commits in the same
transaction as its event row and the job's derived status. Status changes are compare-and-set
against `status.TRANSITIONS`, so a finished task is never rewritten.

SQLite (WAL) by default; any SQLAlchemy URL (PostgreSQL) works, which is why
nothing here leans on SQLite beyond the connection set-up (`queue_json` has
one builder per dialect).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Float,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    inspect,
    literal,
    not_,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import Update as UpdateStatement
from sqlalchemy.engine import make_url

from skytui.engine.queue_json import queue_statement, render_queue
from skytui.engine.schema import (
    attempts_table,
    clusters_table,
    events_table,
    jobs_table,
    log_segments_table,
    meta_table,
    metadata,
    pool_workers_table,
    pools_table,
    tasks_table,
)
from skytui.engine.status import (
    IN_PROGRESS,
    TERMINAL,
    TERMINAL_NAMES,
    IllegalTransition,
    TaskStatus,
    can_transition,
    derived_job_status,
)

SCHEMA_VERSION = 4
_NO_SECRETS = "{}"  # what an erased secrets_json holds
CONTROLLER_LOCK_KEY = 0x5C7_7001  # the PostgreSQL advisory lock that names the controller


class StoreError(RuntimeError):
    """The DB cannot be used (newer schema, unreachable)."""


class CancelRequested(RuntimeError):
    """Nothing new may start for this job: its cancel was requested, or it
    has ended (a PENDING job cancelled before it started). Raised by the
    writes that start something (a machine recorded, a pool worker taken), in
    the transaction that checks it, so a cancel racing a launch always wins."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


# ---------------------------------------------------------------- row records

R = TypeVar("R")


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _record(cls: type[R], row: Any) -> R:
    mapping = row._mapping
    return cls(*(mapping[name] for name in _field_names(cls)))  # type: ignore[arg-type]


def _columns(table: Table, cls: type) -> list[Any]:
    """Only the columns a record shows: a queue read never loads a job's spec
    or its secrets."""
    return [table.c[name] for name in _field_names(cls)]


# Past this many ids, reading the whole table beats a giant IN (...) clause.
_IN_LIMIT = 500
# Consecutive ids from this many on are one BETWEEN (see _id_clauses).
_RUN_MIN = 64


_EVENT_COLUMNS = ["job_id", "task_idx", "at", "kind", "from_status", "to_status", "message"]

# `Store.end_runs`: one statement each for all the runs that ended, run with
# a list of parameters (bind names b_* pick the row).
_END_ATTEMPT = (
    update(attempts_table)
    .where(
        attempts_table.c.job_id == bindparam("b_job"),
        attempts_table.c.task_idx == bindparam("b_task"),
        attempts_table.c.attempt_no == bindparam("b_attempt"),
        attempts_table.c.ended_at.is_(None),
    )
    .values(ended_at=bindparam("ended_at"), end_reason=bindparam("end_reason"), exit_code=bindparam("exit_code"))
)
_END_TASK_RUN = (
    update(tasks_table)
    .where(
        tasks_table.c.job_id == bindparam("b_job"),
        tasks_table.c.task_idx == bindparam("b_task"),
        tasks_table.c.status == bindparam("b_status"),
    )
    .values(
        status=bindparam("status"), ended_at=bindparam("ended_at"), job_duration_s=bindparam("job_duration_s"),
        run_started_at=None, status_reason=None, exit_code=bindparam("exit_code"),
        failure_reason=bindparam("failure_reason"),
    )
)
_SET_JOB_STATUS = (
    update(jobs_table)
    .where(jobs_table.c.id == bindparam("b_job"))
    .values(status=bindparam("status"), ended_at=bindparam("ended_at"))
)
# The statements every job runs several times, built once: building a
# SQLAlchemy statement costs more Python than running it on SQLite.
_INSERT_EVENT = insert(events_table)
_TASK_ROW = select(tasks_table).where(
    tasks_table.c.job_id == bindparam("b_job"), tasks_table.c.task_idx == bindparam("b_task")
)
_TASK_ROW_FOR_UPDATE = _TASK_ROW.with_for_update()
_JOB_TASK_STATUSES = (
    select(tasks_table.c.status, tasks_table.c.group_role)
    .where(tasks_table.c.job_id == bindparam("b_job")).order_by(tasks_table.c.task_idx)
)
_THE_TASK = (tasks_table.c.job_id == bindparam("b_job"), tasks_table.c.task_idx == bindparam("b_task"))
_TASK_ATTEMPT = select(tasks_table.c.attempt).where(*_THE_TASK)
_INSERT_ATTEMPT = insert(attempts_table).values({
    name: bindparam(name) for name in (
        "job_id", "task_idx", "attempt_no", "infra", "instance_type", "use_spot", "started_at",
        "price_per_hour", "cluster_id",
    )
})
_SET_TASK_PLACEMENT = update(tasks_table).where(*_THE_TASK).values({
    name: bindparam(name) for name in ("attempt", "infra", "instance_type", "use_spot")
})
_SEGMENT_KEY = ("job_id", "task_idx", "attempt_no", "rank", "phase")
_SEGMENT_OF = select(log_segments_table).where(*(log_segments_table.c[name] == bindparam(name) for name in _SEGMENT_KEY))
_INSERT_SEGMENT = insert(log_segments_table).values({
    name: bindparam(name) for name in (*_SEGMENT_KEY, "start_offset", "started_at")
})
_SEGMENT_BY_ID = select(log_segments_table).where(log_segments_table.c.id == bindparam("b_id"))
_STARTABLE_JOB = (
    select(jobs_table.c.status, jobs_table.c.cancel_requested_at)
    .where(jobs_table.c.id == bindparam("b_job"))
    .with_for_update()
)
_ASSIGN_WORKER = (
    update(pool_workers_table)
    .where(
        pool_workers_table.c.id == bindparam("b_worker"), pool_workers_table.c.job_id.is_(None),
        pool_workers_table.c.status == bindparam("b_ready"),
    )
    .values(job_id=bindparam("b_job"))
)
_SET_JOB_WORKER = update(jobs_table).where(jobs_table.c.id == bindparam("b_job")).values(worker_id=bindparam("b_worker"))
_RELEASE_WORKER = (
    update(pool_workers_table)
    .where(pool_workers_table.c.id == bindparam("b_worker"), pool_workers_table.c.job_id == bindparam("b_job"))
    .values(job_id=None, jobs_done=pool_workers_table.c.jobs_done + 1)
)


@functools.lru_cache(maxsize=128)
def _update_statement(
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


def _update_params(values: dict[str, Any], **key: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The column names (sorted) and the parameters for `_update_statement`."""
    params = {f"b_{name}": value for name, value in key.items()}
    params.update((f"v_{name}", value) for name, value in values.items())
    return tuple(sorted(values)), params


def _id_clauses(column: Any, ids: Iterable[int]) -> Iterator[Any]:
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
    for start in range(0, len(ranges), _IN_LIMIT):
        part = ranges[start:start + _IN_LIMIT]
        yield or_(*(column.between(first, last) for first, last in part)) if len(part) > 1 \
            else column.between(*part[0])
    for start in range(0, len(singles), _IN_LIMIT):
        yield column.in_(singles[start:start + _IN_LIMIT])


def _event_values(
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


@dataclass(frozen=True)
class JobRow:
    id: int
    name: str
    pool: str | None
    status: str
    priority: int
    submitted_at: float
    ended_at: float | None
    cancel_requested_at: float | None
    job_rank: int
    num_jobs: int
    source: str | None
    worker_id: int | None = None


@dataclass(frozen=True)
class TaskRow:
    job_id: int
    task_idx: int
    name: str
    status: str
    status_reason: str | None
    skypilot_task_id: str
    requested: str
    num_nodes: int
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    run_started_at: float | None
    job_duration_s: float
    recoveries: int
    restarts_on_errors: int
    attempt: int
    exit_code: int | None
    failure_reason: str | None
    infra: str | None
    instance_type: str | None
    use_spot: bool | None
    group_role: str | None  # a job group's task: "primary" or "auxiliary"

    @property
    def status_enum(self) -> TaskStatus:
        return TaskStatus(self.status)

    def duration_s(self, now: float) -> float:
        """JOB DURATION: running time only, the open stretch included."""
        open_stretch = now - self.run_started_at if self.run_started_at is not None else 0.0
        return self.job_duration_s + max(0.0, open_stretch)


@dataclass(frozen=True)
class AttemptRow:
    id: int
    job_id: int
    task_idx: int
    attempt_no: int
    cluster_id: int | None
    infra: str | None
    instance_type: str | None
    use_spot: bool | None
    started_at: float
    ended_at: float | None
    end_reason: str | None
    exit_code: int | None
    price_per_hour: float | None

    def cost(self, now: float) -> float:
        """Dollars spent on this attempt's machines so far (unknown price: 0)."""
        hours = ((self.ended_at or now) - self.started_at) / 3600
        return max(0.0, hours) * (self.price_per_hour or 0.0)


@dataclass(frozen=True)
class SegmentRow:
    id: int
    job_id: int
    task_idx: int
    attempt_no: int
    rank: int
    phase: str
    pid: int | None
    start_offset: int
    started_at: float
    finished: bool


@dataclass(frozen=True)
class ClusterRow:
    id: int
    name: str
    cloud: str
    region: str | None
    zone: str | None
    instance_type: str | None
    use_spot: bool
    num_nodes: int
    job_id: int | None
    task_idx: int | None
    attempt_no: int | None
    pool: str | None
    worker_id: int | None
    status: str
    handle_json: str | None
    created_at: float
    ended_at: float | None
    end_reason: str | None

    @property
    def handle(self) -> dict[str, Any]:
        return json.loads(self.handle_json) if self.handle_json else {}


@dataclass(frozen=True)
class RunEndRequest:
    """One task whose run ended (`Store.end_runs`)."""

    job_id: int
    task_idx: int
    attempt_no: int
    to: TaskStatus
    reason: str
    exit_code: int | None
    ran_until: float | None  # when the run ended by the node's clock
    finish_segments: tuple[int, ...] = ()
    retire_clusters: bool = False


@dataclass(frozen=True)
class RunEnd:
    """What `Store.end_run` did: whether it ended the task, and the
    machines it marked TERMINATING (to be terminated next)."""

    ended: bool
    terminating: list[ClusterRow] = field(default_factory=list)


@dataclass(frozen=True)
class EventRow:
    id: int
    job_id: int | None
    task_idx: int | None
    at: float
    kind: str
    from_status: str | None
    to_status: str | None
    message: str | None


@dataclass(frozen=True)
class NewTask:
    """What a client submits per task; the store assigns statuses and times."""

    name: str
    skypilot_task_id: str
    requested: str
    num_nodes: int
    group_role: str | None = None  # in a job group: "primary" or "auxiliary"


@dataclass(frozen=True)
class PoolRow:
    name: str
    version: int
    status: str
    created_at: float
    down_requested_at: float | None
    target_workers: int
    updated_at: float | None


@dataclass(frozen=True)
class WorkerRow:
    id: int
    pool: str
    version: int
    status: str
    cluster_id: int | None
    job_id: int | None
    created_at: float
    ended_at: float | None
    status_reason: str | None
    ready_at: float | None
    jobs_done: int


class WorkerStatus:
    """A pool worker's life, in SkyPilot's words."""

    PROVISIONING = "PROVISIONING"
    STARTING = "STARTING"  # setup running
    READY = "READY"
    NOT_READY = "NOT_READY"  # up but unreachable
    SHUTTING_DOWN = "SHUTTING_DOWN"
    FAILED = "FAILED"  # setup failed, or could not be launched
    PREEMPTED = "PREEMPTED"
    TERMINATED = "TERMINATED"
    LIVE = (PROVISIONING, STARTING, READY, NOT_READY, SHUTTING_DOWN)


class PoolApplied:
    CREATED = "created"
    RESIZED = "resized"  # only the worker count changed: workers kept
    UPDATED = "updated"  # a new spec: new workers, old ones drained
    UNCHANGED = "unchanged"


class ClusterStatus:
    PROVISIONING = "PROVISIONING"
    UP = "UP"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    LIVE = (PROVISIONING, UP, TERMINATING)


# ---------------------------------------------------------------------- store


def _sqlite_setup(engine: Engine, *, immediate: bool) -> None:
    """WAL, a generous busy timeout, and BEGIN IMMEDIATE for writers.

    pysqlite's own transaction handling starts transactions lazily and cannot
    take the write lock up front, so a read-then-write transaction may fail with
    SQLITE_BUSY without waiting. Writers take the lock at BEGIN instead.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Erased secrets are overwritten with zeros, not left in free space
        # (in the page, or on the freelist) for anyone reading the file.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    if immediate:
        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    # Readers run each statement in its own implicit transaction (one
    # statement sees one snapshot); a read of several statements that must
    # agree asks for a snapshot (Store._read(snapshot=True)).


def _sqlite_file(url: str) -> str | None:
    """The DB file of a SQLite URL (None: in memory)."""
    database = make_url(url).database
    return database if database and database != ":memory:" else None


def _create_private(path: str) -> None:
    """Create the DB file 0600 before SQLite does (it would use 0644 minus
    the umask); its -wal and -shm then take the same mode."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class _WalScrubber:
    """Truncates the SQLite WAL soon after secrets were erased.

    An erased value's old page image stays in the WAL until a checkpoint
    copies the WAL back and truncates it. One TRUNCATE checkpoint per
    `delay_s` covers every erasure in between, so thousands of jobs ending
    cost a few checkpoints, on a timer thread, off the controller's path.
    """

    def __init__(self, db_file: str, delay_s: float) -> None:
        self.db_file = db_file
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._pending = False

    def soon(self) -> None:
        with self._lock:
            self._pending = True
            if self._timer is None:
                self._timer = threading.Timer(self.delay_s, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def now(self) -> bool:
        """Checkpoint and truncate the WAL; False if readers kept it busy."""
        try:
            conn = sqlite3.connect(self.db_file, timeout=5.0, isolation_level=None)
        except sqlite3.Error:
            return False
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return busy == 0
        except sqlite3.Error:
            return False
        finally:
            conn.close()

    def close(self) -> None:
        """Cancel the timer; a scrub still owed is done now."""
        with self._lock:
            owed, self._pending = self._pending, False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if owed:
            self.now()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if not self._pending:
                return
            self._pending = False
        if not self.now():
            self.soon()  # a long reader held the WAL: try again later


class _BatchRefused(Exception):
    """A call of a batch run without savepoints raised: run it again with them."""


class _BatchConnection(threading.local):
    """The connection of the batch this thread is running (Store.run_batch),
    and how deep in a call's writes it is (its first write takes the savepoint)."""

    conn: Connection | None = None
    depth: int = 0
    savepoints: bool = True


class Store:
    """Typed access to the state DB. Thread-safe; each call is one transaction."""

    # How long erasures are batched before the WAL is truncated (SQLite).
    SECRETS_SCRUB_DELAY_S = 2.0

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._controller_lock: Connection | None = None
        self._write_lock: threading.Lock | contextlib.nullcontext[None] = (
            threading.Lock() if url.startswith("sqlite") else contextlib.nullcontext()
        )
        self._batch = _BatchConnection()
        self._db_file = _sqlite_file(url) if self.is_sqlite else None
        self._wal_scrubber = _WalScrubber(self._db_file, self.SECRETS_SCRUB_DELAY_S) if self._db_file else None
        if self._db_file:
            _create_private(self._db_file)
        if self.is_sqlite:
            # Pooled: opening a connection (and its PRAGMAs) per call cost
            # more than the queries. A checked-out connection stays with one
            # thread at a time, so sharing the pool across threads is safe.
            pool_args: dict[str, Any] = {
                "connect_args": {"check_same_thread": False}, "pool_size": 4, "max_overflow": 8,
            }
            self._writer = create_engine(url, **pool_args)
            self._reader = create_engine(url, **pool_args)
            _sqlite_setup(self._writer, immediate=True)
            _sqlite_setup(self._reader, immediate=False)
        else:
            self._writer = create_engine(url, pool_pre_ping=True)
            self._reader = self._writer
        self._migrate()
        self._protect_files()

    def close(self) -> None:
        if self._wal_scrubber is not None:
            self._wal_scrubber.close()
        if self._controller_lock is not None:
            # Unlocked before the connection goes: a closed socket frees the
            # lock only once its server process has ended, which another
            # controller (or this one, restarting) could otherwise race.
            with contextlib.suppress(Exception):
                self._controller_lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": CONTROLLER_LOCK_KEY})
                self._controller_lock.commit()
            self._controller_lock.close()
            self._controller_lock = None
        self._writer.dispose()
        self._reader.dispose()

    def hold_controller_lock(self) -> bool:
        """Claim the DB for one controller, until close().

        A shared PostgreSQL DB may be reached from several machines, where the
        daemon's flock on its state directory cannot see the others: a session
        advisory lock can. On SQLite the flock is the lock (one file, one host).
        """
        if not self.is_sqlite:
            conn = self._writer.connect()
            got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": CONTROLLER_LOCK_KEY}).scalar()
            conn.commit()
            if not got:
                conn.close()
                return False
            self._controller_lock = conn
        self._erase_leftover_secrets()
        return True

    def _erase_leftover_secrets(self) -> None:
        """At controller start: erase the secrets of every ended job and
        downed pool that still has some (an older skytui kept them), and
        truncate the WAL (a crash may have come before its scrub)."""
        with self._write() as conn:
            conn.execute(
                update(jobs_table)
                .where(jobs_table.c.status.in_(TERMINAL_NAMES), jobs_table.c.secrets_json != _NO_SECRETS)
                .values(secrets_json=_NO_SECRETS)
            )
            conn.execute(
                update(pools_table)
                .where(pools_table.c.down_requested_at.is_not(None), pools_table.c.secrets_json != _NO_SECRETS)
                .values(secrets_json=_NO_SECRETS)
            )
        if self._wal_scrubber is not None:
            self._wal_scrubber.now()

    def _secrets_erased(self) -> None:
        """Called inside the erasing transaction: the WAL still holds the old
        page until the scrubber's checkpoint, which waits for this commit."""
        if self._wal_scrubber is not None:
            self._wal_scrubber.soon()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        # SQLite has one writer at a time, and a writer that finds the lock
        # taken sleeps in its busy handler (1, 2, 5 ... 100 ms steps) however
        # soon the lock is free. This process's writers queue on a lock
        # instead and go the moment it is free; other processes (a client's
        # submit or cancel) still meet the busy handler.
        batch = self._batch.conn
        if batch is not None:  # inside run_batch: one savepoint per call of the batch
            if self._batch.depth or not self._batch.savepoints:
                yield batch  # a write within the call's own: its savepoint covers both
                return
            self._batch.depth += 1
            try:
                with batch.begin_nested():
                    yield batch
            finally:
                self._batch.depth -= 1
            return
        with self._write_lock, self._writer.begin() as conn:
            yield conn

    def run_batch(self, calls: Sequence[Callable[[], R]]) -> list[R | Exception]:
        """Run write calls (this Store's own methods) in one transaction, one
        commit for all: one that raises is undone alone and its exception is
        its result. A call's changes are durable only when this returns. Only
        for methods that write and then read nothing back through the reader
        (it would not see them yet).

        The batch first runs without savepoints: they were two statements per
        call, a third of what the controller sent while jobs ended and
        started, for a refusal that is rare. If a call raises, all is rolled
        back and the batch runs again with one savepoint per call (the calls
        only write to the DB, so running them again is safe)."""
        if len(calls) == 1:  # a transaction of its own: no savepoint needed
            try:
                return [calls[0]()]
            except Exception as exc:  # noqa: BLE001 - the caller's, handed back
                return [exc]
        try:
            return self._run_calls(calls, savepoints=False)
        except _BatchRefused:
            return self._run_calls(calls, savepoints=True)

    def _run_calls(self, calls: Sequence[Callable[[], R]], *, savepoints: bool) -> list[R | Exception]:
        results: list[R | Exception] = []
        with self._write_lock, self._writer.begin() as conn:
            self._batch.conn, self._batch.savepoints = conn, savepoints
            try:
                for call in calls:
                    try:
                        results.append(call())
                    except Exception as exc:  # noqa: BLE001 - the caller's, handed back
                        if not savepoints:
                            raise _BatchRefused from exc  # leaves the `begin`: all rolled back
                        results.append(exc)
            finally:
                self._batch.conn, self._batch.savepoints = None, True
        return results

    @contextmanager
    def _read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A connection to read with. On SQLite each statement is its own
        snapshot unless `snapshot` (several statements that must agree): a
        BEGIN per read was a fifth of the controller's statements."""
        with self._reader.begin() as conn:
            if snapshot and self.is_sqlite:
                conn.exec_driver_sql("BEGIN")
            yield conn

    # ------------------------------------------------------------ migrations

    def _migrate(self) -> None:
        if self._schema_is_current():
            return
        with self._write() as conn:
            metadata.create_all(conn)
            current = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar()
            if current is None:
                conn.execute(insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION)))
                return
            version = int(current)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the state DB has schema version {version}, newer than this skytui "
                    f"({SCHEMA_VERSION}); upgrade skytui"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[step](conn)
            if version != SCHEMA_VERSION:
                conn.execute(
                    update(meta_table)
                    .where(meta_table.c.key == "schema_version")
                    .values(value=str(SCHEMA_VERSION))
                )

    def _schema_is_current(self) -> bool:
        """Whether the DB is already at this skytui's schema, read without a
        lock. Every command opens the store: taking the write lock just to
        find nothing to migrate made each one wait out the controller's
        commits (SQLite's busy handler sleeps up to 100 ms a try), which at
        10,000 running jobs was most of `jobs queue`'s time."""
        with self._read() as conn:
            if not inspect(conn).has_table(meta_table.name):
                return False
            current = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar()
        return current == str(SCHEMA_VERSION)

    def schema_version(self) -> int:
        with self._read() as conn:
            return int(
                conn.execute(
                    select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                ).scalar_one()
            )

    def _protect_files(self) -> None:
        if self._db_file is None:
            return
        for suffix in ("", "-wal", "-shm"):
            try:
                os.chmod(self._db_file + suffix, 0o600)
            except FileNotFoundError:
                pass

    # ------------------------------------------------------------- submission

    def submit_job(self, **job: Any) -> int:
        """One job: `submit_jobs` with the same keywords and num_jobs=1."""
        return self.submit_jobs(**job, num_jobs=1)[0]

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
    ) -> list[int]:
        """Queue `num_jobs` copies (SKYPILOT_JOB_RANK 0..N-1) in one transaction.

        Each table gets one batched insert (ids come back in rank order), so
        10,000 copies cost a few statements, not 30,000."""
        now = time.time()
        spec_json, secrets_json = json.dumps(spec), json.dumps(secrets)
        with self._write() as conn:
            job_ids = [
                int(job_id) for job_id in conn.execute(
                    insert(jobs_table).returning(jobs_table.c.id, sort_by_parameter_order=True),
                    [
                        dict(
                            name=name, pool=pool, status=TaskStatus.PENDING.value, priority=priority,
                            submitted_at=now, job_rank=rank, num_jobs=num_jobs, source=source,
                            spec_json=spec_json, secrets_json=secrets_json,
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
                _event_values(job_id, None, "submitted", message=f"job {name!r} submitted", at=now)
                for job_id in job_ids
            ])
        return job_ids

    def job_specs(self, job_ids: Sequence[int]) -> dict[int, tuple[dict[str, Any], dict[str, dict[str, str]]]]:
        """`job_spec` of many jobs in a few reads (the controller starting a
        thousand coroutines at once)."""
        out: dict[int, tuple[dict[str, Any], dict[str, dict[str, str]]]] = {}
        with self._read() as conn:
            for among in _id_clauses(jobs_table.c.id, job_ids):
                for row in conn.execute(
                    select(jobs_table.c.id, jobs_table.c.spec_json, jobs_table.c.secrets_json).where(among)
                ):
                    out[row.id] = json.loads(row.spec_json), json.loads(row.secrets_json)
        return out

    def job_spec(self, job_id: int) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
        """The stored spec and its secrets: for the controller only."""
        with self._read() as conn:
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
        **values: Any,
    ) -> bool:
        """Compare-and-set a task's status, with its event and the job status.

        Raises IllegalTransition for a change outside the table (a terminal
        status is never overwritten). Returns False when `expect` is given and
        the task is no longer in it (another writer got there first).
        `ran_until`: when the run ended by the node's clock, which closes the
        running stretch instead of the moment the controller noticed (it may
        have been down meanwhile).
        """
        with self._write() as conn:
            return self._transition(
                conn, job_id, task_idx, to, message=message, expect=expect, ran_until=ran_until, **values
            )

    def end_run(self, request: RunEndRequest) -> RunEnd:
        """A task's run ended for good (see `end_runs`)."""
        result = self.end_runs([request])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def end_runs(self, requests: Sequence[RunEndRequest]) -> list[RunEnd | Exception]:
        """Tasks whose run ended for good: for each, its attempt ends, its
        open log segments are closed, the task goes to its terminal status
        (with its event and its job's status) and, with `retire_clusters`,
        the job's live machines are marked TERMINATING. One transaction and
        about ten statements for all of them, whatever their number: when a
        thousand jobs end together, the DB is not what they wait for.

        A task that had already ended (a cancel got there first) is left
        alone (`RunEnd(ended=False)`); one that cannot go to its status gets
        an IllegalTransition as its result, and nothing of it is written."""
        now = time.time()
        results: list[RunEnd | Exception] = [RunEnd(ended=False)] * len(requests)
        with self._write() as conn:
            job_ids = {r.job_id for r in requests}
            current = {
                (row.job_id, row.task_idx): row
                for clause in _id_clauses(tasks_table.c.job_id, job_ids)
                for row in conn.execute(
                    select(tasks_table.c.job_id, tasks_table.c.task_idx, tasks_table.c.status,
                           tasks_table.c.run_started_at, tasks_table.c.job_duration_s).where(clause)
                )
            }
            ending: list[int] = []  # indexes into requests
            for i, request in enumerate(requests):
                row = current[(request.job_id, request.task_idx)]
                status = TaskStatus(row.status)
                if status in TERMINAL:
                    continue
                if not can_transition(status, request.to):
                    results[i] = IllegalTransition(status, request.to)
                    continue
                ending.append(i)
            if not ending:
                return results
            attempts, tasks, events = [], [], []
            segments: list[int] = []
            for i in ending:
                r = requests[i]
                row = current[(r.job_id, r.task_idx)]
                status = TaskStatus(row.status)
                ended = now
                if r.ran_until is not None and row.run_started_at is not None:
                    ended = min(now, max(row.run_started_at, r.ran_until))  # a skewed node clock stays in bounds
                duration = row.job_duration_s
                if status is TaskStatus.RUNNING and row.run_started_at is not None:
                    duration += ended - row.run_started_at
                failure = r.reason if r.to.is_failure else None
                attempts.append({"b_job": r.job_id, "b_task": r.task_idx, "b_attempt": r.attempt_no,
                                 "ended_at": now, "end_reason": r.reason, "exit_code": r.exit_code})
                tasks.append({"b_job": r.job_id, "b_task": r.task_idx, "b_status": status.value,
                              "status": r.to.value, "ended_at": ended, "job_duration_s": duration,
                              "exit_code": r.exit_code, "failure_reason": failure})
                events.append(_event_values(r.job_id, r.task_idx, "status", from_status=status, to_status=r.to,
                                            message=failure, at=now))
                segments += r.finish_segments
                results[i] = RunEnd(ended=True)
            conn.execute(_END_ATTEMPT, attempts)
            conn.execute(_END_TASK_RUN, tasks)
            conn.execute(insert(events_table), events)
            if segments:
                for clause in _id_clauses(log_segments_table.c.id, segments):
                    conn.execute(update(log_segments_table).where(clause).values(finished=True))
            self._refresh_jobs_status(conn, {requests[i].job_id for i in ending}, now)
            # The ended task's machines only: a job group's other tasks run on.
            retiring = {(requests[i].job_id, requests[i].task_idx) for i in ending if requests[i].retire_clusters}
            if retiring:
                by_task: dict[tuple[int, int], list[ClusterRow]] = {}
                retired: list[int] = []
                for clause in _id_clauses(clusters_table.c.job_id, {job_id for job_id, _ in retiring}):
                    live = (clause, clusters_table.c.status.in_(ClusterStatus.LIVE))
                    for row in conn.execute(select(clusters_table).where(*live).order_by(clusters_table.c.id)):
                        if (row.job_id, row.task_idx) not in retiring:
                            continue
                        cluster = replace(_record(ClusterRow, row), status=ClusterStatus.TERMINATING)
                        by_task.setdefault((row.job_id, row.task_idx), []).append(cluster)
                        retired.append(cluster.id)
                for clause in _id_clauses(clusters_table.c.id, retired):
                    conn.execute(update(clusters_table).where(clause).values(status=ClusterStatus.TERMINATING))
                for i in ending:
                    if requests[i].retire_clusters:
                        key = (requests[i].job_id, requests[i].task_idx)
                        results[i] = RunEnd(ended=True, terminating=by_task.get(key, []))
        return results

    def _transition(
        self, conn: Connection, job_id: int, task_idx: int, to: TaskStatus, *,
        message: str | None, expect: TaskStatus | None = None, ran_until: float | None = None, **values: Any,
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
        columns, params = _update_params(changes, job_id=job_id, task_idx=task_idx, status=current.value)
        result = conn.execute(_update_statement(tasks_table, ("job_id", "task_idx"), columns, "status"), params)
        if result.rowcount != 1:
            return False
        self._event(
            conn, job_id, task_idx, "status", from_status=current, to_status=to,
            message=message, at=now,
        )
        self._refresh_job_status(conn, job_id, now)
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

    def _refresh_job_status(self, conn: Connection, job_id: int, now: float) -> None:
        rows = conn.execute(_JOB_TASK_STATUSES, {"b_job": job_id}).all()
        statuses = [TaskStatus(row[0]) for row in rows]
        status = derived_job_status(statuses, [row[1] for row in rows])
        finished = all(s in TERMINAL for s in statuses)
        conn.execute(
            _SET_JOB_STATUS, {"b_job": job_id, "status": status.value, "ended_at": now if status in TERMINAL else None}
        )
        if finished:
            self._erase_job_secrets(conn, job_id)

    def _refresh_jobs_status(self, conn: Connection, job_ids: set[int], now: float) -> None:
        """`_refresh_job_status` for many jobs, in a few statements."""
        statuses: dict[int, list[TaskStatus]] = {}
        roles: dict[int, list[str | None]] = {}
        for clause in _id_clauses(tasks_table.c.job_id, job_ids):
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
        for clause in _id_clauses(jobs_table.c.id, finished):
            erased += conn.execute(
                update(jobs_table).where(clause, jobs_table.c.secrets_json != _NO_SECRETS)
                .values(secrets_json=_NO_SECRETS)
            ).rowcount
        if erased:
            self._secrets_erased()

    def _erase_job_secrets(self, conn: Connection, job_id: int) -> None:
        """Every task has ended, so nothing will run with the secrets again:
        they go in the transaction that ends the job, and no crash can leave
        an ended job holding them."""
        erased = conn.execute(
            update(jobs_table)
            .where(jobs_table.c.id == job_id, jobs_table.c.secrets_json != _NO_SECRETS)
            .values(secrets_json=_NO_SECRETS)
        ).rowcount
        if erased:
            self._secrets_erased()

    def set_task_fields(self, job_id: int, task_idx: int, **values: Any) -> None:
        """Non-status bookkeeping (reason shown while waiting, placement) of a
        task still in progress: a task cancelled under its coroutine keeps no
        stale "waiting for a launch slot"."""
        columns, params = _update_params(values, job_id=job_id, task_idx=task_idx)
        with self._write() as conn:
            conn.execute(_update_statement(tasks_table, ("job_id", "task_idx"), columns, "unfinished"), params)

    @staticmethod
    def _event(
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
        conn.execute(_INSERT_EVENT, _event_values(
            job_id, task_idx, kind, from_status=from_status, to_status=to_status, message=message, at=at,
        ))

    def note(self, job_id: int, task_idx: int | None, kind: str, message: str) -> None:
        """An event that changes no status (a round of capacity search that
        found none, say): what the job's timeline and followers show."""
        with self._write() as conn:
            self._event(conn, job_id, task_idx, kind, message=message)

    # ---------------------------------------------------------------- intents

    def request_cancel(self, job_ids: Sequence[int]) -> list[int]:
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
        with self._write() as conn:
            for among in _id_clauses(jobs_table.c.id, job_ids):
                accepted += conn.execute(
                    update(jobs_table)
                    .where(among, jobs_table.c.status.in_(in_progress), jobs_table.c.cancel_requested_at.is_(None))
                    .values(cancel_requested_at=now)
                    .returning(jobs_table.c.id)
                ).scalars().all()
            accepted.sort()
            for among in _id_clauses(jobs_table.c.id, accepted):
                conn.execute(insert(events_table).from_select(_EVENT_COLUMNS, select(
                    jobs_table.c.id, null(), literal(now, Float), literal("cancel_requested"), null(), null(),
                    literal("cancel requested"),
                ).where(among).order_by(jobs_table.c.id)))
            self._cancel_unstarted(conn, accepted, now)
        return accepted

    def cancel_unstarted(self, job_ids: Sequence[int]) -> list[int]:
        """The controller's batch for cancel intents it finds on jobs that
        never started and have no coroutine: CANCELLED in one transaction."""
        with self._write() as conn:
            return self._cancel_unstarted(conn, job_ids, time.time())

    def _cancel_unstarted(self, conn: Connection, job_ids: Sequence[int], now: float) -> list[int]:
        """PENDING -> CANCELLED, with every task's event, for the jobs among
        `job_ids` that never started: every task PENDING at attempt 0, no
        machine recorded live, no pool worker held. Returns their ids.

        The conditions are checked in the UPDATE itself, against the job rows
        it locks: the controller records a machine or takes a worker for a
        job only after checking, under the same lock, that it is neither
        cancelled nor ended (`_lock_startable_job`). So either the job is
        cancelled here and nothing ever starts for it, or something has
        started and the controller's coroutine cancels it (CANCELLING, teardown).
        """
        pending = TaskStatus.PENDING.value
        cancelled: list[int] = []
        for among in _id_clauses(jobs_table.c.id, job_ids):
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
                .values(status=TaskStatus.CANCELLED.value, ended_at=now, secrets_json=_NO_SECRETS)
                .returning(jobs_table.c.id)
            ).scalars().all()
        if not cancelled:
            return []
        cancelled.sort()
        for among in _id_clauses(tasks_table.c.job_id, cancelled):
            # The events first, of the very rows the UPDATE below changes
            # (same predicate, same transaction, the jobs locked).
            ending = (among, tasks_table.c.status == pending)
            conn.execute(insert(events_table).from_select(_EVENT_COLUMNS, select(
                tasks_table.c.job_id, tasks_table.c.task_idx, literal(now, Float), literal("status"),
                literal(pending), literal(TaskStatus.CANCELLED.value), literal("cancelled by user"),
            ).where(*ending).order_by(tasks_table.c.job_id, tasks_table.c.task_idx)))
            conn.execute(
                update(tasks_table).where(*ending)
                .values(status=TaskStatus.CANCELLED.value, ended_at=now, status_reason=None)
            )
        self._secrets_erased()
        return cancelled

    @staticmethod
    def _lock_startable_job(conn: Connection, job_id: int) -> None:
        """Lock the job's row and raise CancelRequested if it may not start
        anything new (see `_cancel_unstarted`, which takes the same lock)."""
        row = conn.execute(_STARTABLE_JOB, {"b_job": job_id}).first()
        if row is not None and (row.cancel_requested_at is not None or row.status in TERMINAL_NAMES):
            raise CancelRequested(job_id)

    def cancel_requested(self) -> list[int]:
        with self._read() as conn:
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
        with self._read() as conn:
            for among in _id_clauses(jobs_table.c.id, job_ids):
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
        with self._read() as conn:
            for among in _id_clauses(jobs_table.c.id, job_ids):
                found += conn.execute(
                    select(jobs_table.c.id).where(among, jobs_table.c.status == TaskStatus.PENDING.value)
                ).scalars().all()
        return found

    # ---------------------------------------------------------------- queries

    def job(self, job_id: int) -> JobRow | None:
        with self._read() as conn:
            row = conn.execute(select(*_columns(jobs_table, JobRow)).where(jobs_table.c.id == job_id)).first()
        return _record(JobRow, row) if row else None

    def jobs_by_name(self, name: str) -> list[JobRow]:
        with self._read() as conn:
            rows = conn.execute(
                select(*_columns(jobs_table, JobRow)).where(jobs_table.c.name == name).order_by(jobs_table.c.id)
            ).all()
        return [_record(JobRow, r) for r in rows]

    def jobs_by_ids(self, job_ids: Sequence[int]) -> list[JobRow]:
        rows: list[Any] = []
        with self._read() as conn:
            for among in _id_clauses(jobs_table.c.id, job_ids):
                rows += conn.execute(select(*_columns(jobs_table, JobRow)).where(among)).all()
        return [_record(JobRow, r) for r in rows]

    def job_ids_changed_after(self, event_id: int) -> tuple[list[int], int]:
        """Jobs with an event after `event_id`, and the newest event id seen."""
        with self._read() as conn:
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
        with self._read() as conn:
            return list(conn.execute(query.order_by(jobs_table.c.id)).scalars())

    def has_unfinished_work(self) -> bool:
        """Whether a controller is needed: a job in progress, or a pool (its
        workers are kept, and its `down` carried out, by the controller)."""
        in_progress = [s.value for s in IN_PROGRESS]
        with self._read(snapshot=True) as conn:
            if conn.execute(select(jobs_table.c.id).where(jobs_table.c.status.in_(in_progress)).limit(1)).first():
                return True
            return conn.execute(select(pools_table.c.name).limit(1)).first() is not None

    def latest_job_id(self) -> int | None:
        with self._read() as conn:
            return conn.execute(select(func.max(jobs_table.c.id))).scalar()

    def jobs(
        self, *, in_progress_only: bool = False, limit: int | None = None
    ) -> list[JobRow]:
        query = select(*_columns(jobs_table, JobRow)).order_by(jobs_table.c.id.desc())
        if in_progress_only:
            query = query.where(jobs_table.c.status.in_([s.value for s in IN_PROGRESS]))
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [_record(JobRow, r) for r in conn.execute(query).all()]

    def queue_json(self, *, in_progress_only: bool = False, limit: int | None = None, now: float) -> str:
        """`jobs queue --json`'s document, rendered by the DB in one read
        (see `queue_json`): at 10,000 jobs no row becomes a Python object."""
        statement = queue_statement(
            self._writer.dialect.name,
            in_progress=[s.value for s in IN_PROGRESS] if in_progress_only else None, limit=limit, now=now,
        )
        with self._read(snapshot=True) as conn:
            return render_queue(conn.execute(statement))

    def runnable_jobs(self, exclude: set[int], limit: int) -> list[JobRow]:
        """In-progress jobs without a coroutine: resumed ones first, then by
        priority. A job whose cancel was requested is not among them: the
        controller starts its coroutine only to cancel it."""
        if limit <= 0:
            return []
        # The jobs with a coroutine are left out by the DB, as runs of ids:
        # a thousand pool jobs waiting for a worker are not read on every pass.
        excluded = [not_(among) for among in _id_clauses(jobs_table.c.id, exclude)]
        query = (
            select(*_columns(jobs_table, JobRow))
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
        with self._read() as conn:
            return [_record(JobRow, row) for row in conn.execute(query.limit(limit))]

    def tasks(self, job_id: int) -> list[TaskRow]:
        with self._read() as conn:
            rows = conn.execute(
                select(tasks_table)
                .where(tasks_table.c.job_id == job_id)
                .order_by(tasks_table.c.task_idx)
            ).all()
        return [_record(TaskRow, r) for r in rows]

    def task(self, job_id: int, task_idx: int) -> TaskRow:
        with self._read() as conn:
            row = conn.execute(_TASK_ROW, {"b_job": job_id, "b_task": task_idx}).one()
        return _record(TaskRow, row)

    def tasks_of_jobs(self, job_ids: Sequence[int]) -> dict[int, list[TaskRow]]:
        return self._rows_by_job(
            tasks_table, TaskRow, job_ids, (tasks_table.c.job_id, tasks_table.c.task_idx)
        )

    def _rows_by_job(
        self, table: Table, cls: type[R], job_ids: Sequence[int], order: tuple[Any, ...]
    ) -> dict[int, list[R]]:
        """Child rows (tasks, attempts) of many jobs in one read, grouped by job."""
        out: dict[int, list[R]] = {job_id: [] for job_id in job_ids}
        if not job_ids:
            return out
        query = select(table).order_by(*order)
        if len(job_ids) <= _IN_LIMIT:
            query = query.where(table.c.job_id.in_(list(job_ids)))
        with self._read() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            if row.job_id in out:
                out[row.job_id].append(_record(cls, row))
        return out

    def events(
        self, *, after_id: int = 0, job_id: int | None = None, limit: int = 1000
    ) -> list[EventRow]:
        query = select(events_table).where(events_table.c.id > after_id)
        if job_id is not None:
            query = query.where(events_table.c.job_id == job_id)
        query = query.order_by(events_table.c.id).limit(limit)
        with self._read() as conn:
            return [_record(EventRow, r) for r in conn.execute(query).all()]

    def ended_jobs_with_event(self, kind: str) -> list[int]:
        """Finished jobs that ever recorded an event of `kind`, ascending."""
        query = (
            select(events_table.c.job_id).distinct()
            .join(jobs_table, jobs_table.c.id == events_table.c.job_id)
            .where(events_table.c.kind == kind, jobs_table.c.status.in_(TERMINAL_NAMES))
            .order_by(events_table.c.job_id)
        )
        with self._read() as conn:
            return [int(job_id) for job_id in conn.execute(query).scalars()]

    def last_event_id(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.coalesce(func.max(events_table.c.id), 0))).scalar_one())

    # --------------------------------------------------------------- attempts

    def start_attempt(
        self, job_id: int, task_idx: int, *, infra: str, instance_type: str | None,
        use_spot: bool, price_per_hour: float | None = None, message: str | None = None,
        cluster_id: int | None = None,
    ) -> int:
        """Open the next attempt of a task; returns its number (1-based).
        `cluster_id`: the machine it runs on, when already known (a pool's
        worker); otherwise `set_attempt_cluster` names it once provisioned."""
        now = time.time()
        with self._write() as conn:
            task = {"b_job": job_id, "b_task": task_idx}
            attempt_no = int(conn.execute(_TASK_ATTEMPT, task).scalar_one()) + 1
            conn.execute(_INSERT_ATTEMPT, dict(
                job_id=job_id, task_idx=task_idx, attempt_no=attempt_no, infra=infra,
                instance_type=instance_type, use_spot=use_spot, started_at=now,
                price_per_hour=price_per_hour, cluster_id=cluster_id,
            ))
            conn.execute(_SET_TASK_PLACEMENT, dict(
                task, attempt=attempt_no, infra=infra, instance_type=instance_type, use_spot=use_spot,
            ))
            where = f"on {infra} ({instance_type or '-'}{', spot' if use_spot else ''})"
            self._event(
                conn, job_id, task_idx, "placement",
                message=f"attempt {attempt_no} {where}" + (f": {message}" if message else ""), at=now,
            )
            return attempt_no

    def end_attempt(
        self, job_id: int, task_idx: int, attempt_no: int, *, reason: str,
        exit_code: int | None = None, finish_segments: Sequence[int] = (),
    ) -> None:
        """End an attempt (once: a later call leaves the first reason), and
        close the log segments given, whose output was all copied."""
        with self._write() as conn:
            self._end_attempt(conn, job_id, task_idx, attempt_no, reason=reason, exit_code=exit_code)
            self._finish_segments(conn, finish_segments)

    @staticmethod
    def _end_attempt(
        conn: Connection, job_id: int, task_idx: int, attempt_no: int, *, reason: str, exit_code: int | None,
    ) -> None:
        conn.execute(
            update(attempts_table)
            .where(
                attempts_table.c.job_id == job_id,
                attempts_table.c.task_idx == task_idx,
                attempts_table.c.attempt_no == attempt_no,
                attempts_table.c.ended_at.is_(None),
            )
            .values(ended_at=time.time(), end_reason=reason, exit_code=exit_code)
        )

    @staticmethod
    def _finish_segments(conn: Connection, segment_ids: Sequence[int]) -> None:
        if segment_ids:
            conn.execute(
                update(log_segments_table).where(log_segments_table.c.id.in_(list(segment_ids))).values(finished=True)
            )

    def attempts(self, job_id: int, task_idx: int | None = None) -> list[AttemptRow]:
        query = select(attempts_table).where(attempts_table.c.job_id == job_id)
        if task_idx is not None:
            query = query.where(attempts_table.c.task_idx == task_idx)
        with self._read() as conn:
            rows = conn.execute(
                query.order_by(attempts_table.c.task_idx, attempts_table.c.attempt_no)
            ).all()
        return [_record(AttemptRow, r) for r in rows]

    def attempts_of_jobs(self, job_ids: Sequence[int]) -> dict[int, list[AttemptRow]]:
        order = (attempts_table.c.job_id, attempts_table.c.task_idx, attempts_table.c.attempt_no)
        return self._rows_by_job(attempts_table, AttemptRow, job_ids, order)

    def set_attempt_cluster(self, job_id: int, task_idx: int, attempt_no: int, cluster_id: int) -> None:
        with self._write() as conn:
            conn.execute(
                update(attempts_table)
                .where(
                    attempts_table.c.job_id == job_id,
                    attempts_table.c.task_idx == task_idx,
                    attempts_table.c.attempt_no == attempt_no,
                )
                .values(cluster_id=cluster_id)
            )

    # ----------------------------------------------------------- log segments

    def open_segment(
        self, job_id: int, task_idx: int, attempt_no: int, rank: int, phase: str,
        start_offset: int,
    ) -> SegmentRow:
        """Record that a phase's output starts at `start_offset` (idempotent)."""
        key = dict(job_id=job_id, task_idx=task_idx, attempt_no=attempt_no, rank=rank, phase=phase)
        with self._write() as conn:
            existing = conn.execute(_SEGMENT_OF, key).first()
            if existing is not None:
                return _record(SegmentRow, existing)
            seg_id = conn.execute(
                _INSERT_SEGMENT, dict(key, start_offset=start_offset, started_at=time.time())
            ).inserted_primary_key[0]  # type: ignore[index]
            return _record(SegmentRow, conn.execute(_SEGMENT_BY_ID, {"b_id": seg_id}).one())

    def update_segment(self, segment_id: int, **values: Any) -> None:
        columns, params = _update_params(values, id=segment_id)
        with self._write() as conn:
            conn.execute(_update_statement(log_segments_table, ("id",), columns), params)

    def segments(self, job_id: int, task_idx: int | None = None) -> list[SegmentRow]:
        query = select(log_segments_table).where(log_segments_table.c.job_id == job_id)
        if task_idx is not None:
            query = query.where(log_segments_table.c.task_idx == task_idx)
        with self._read() as conn:
            rows = conn.execute(query.order_by(log_segments_table.c.id)).all()
        return [_record(SegmentRow, r) for r in rows]

    # --------------------------------------------------------------- clusters

    def insert_cluster(
        self, *, name: str, cloud: str, region: str | None, zone: str | None,
        instance_type: str | None, use_spot: bool, num_nodes: int,
        job_id: int | None = None, task_idx: int | None = None,
        attempt_no: int | None = None, pool: str | None = None,
        worker_id: int | None = None,
    ) -> int:
        """Record a machine before it is asked for, so a crash can never leak it.

        A job's machine is refused (CancelRequested) once its cancel was
        requested: nothing starts for a job being cancelled."""
        with self._write() as conn:
            if job_id is not None:
                self._lock_startable_job(conn, job_id)
            return int(
                conn.execute(
                    insert(clusters_table).values(
                        name=name, cloud=cloud, region=region, zone=zone,
                        instance_type=instance_type, use_spot=use_spot, num_nodes=num_nodes,
                        job_id=job_id, task_idx=task_idx, attempt_no=attempt_no, pool=pool,
                        worker_id=worker_id, status=ClusterStatus.PROVISIONING,
                        created_at=time.time(),
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )

    def update_cluster(
        self, cluster_id: int, *, status: str, handle: dict[str, Any] | None = None,
        end_reason: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status}
        if handle is not None:
            values["handle_json"] = json.dumps(handle)
        if status == ClusterStatus.TERMINATED:
            values["ended_at"] = time.time()
            values["end_reason"] = end_reason
        with self._write() as conn:
            conn.execute(update(clusters_table).where(clusters_table.c.id == cluster_id).values(**values))

    def cluster_name_taken(self, name: str) -> bool:
        """Whether a machine was ever recorded under this name (names are unique)."""
        with self._read() as conn:
            return conn.execute(select(clusters_table.c.id).where(clusters_table.c.name == name)).first() is not None

    def forget_cluster(self, cluster_id: int) -> None:
        """Drop the record of a machine that was asked for and never came
        (the cloud said no, and terminating the name confirmed nothing is
        left): a job waiting out a stock-out tries places every round, forever."""
        with self._write() as conn:
            conn.execute(delete(clusters_table).where(clusters_table.c.id == cluster_id))

    def cluster(self, cluster_id: int) -> ClusterRow | None:
        with self._read() as conn:
            row = conn.execute(select(clusters_table).where(clusters_table.c.id == cluster_id)).first()
        return _record(ClusterRow, row) if row else None

    def live_clusters(self, job_id: int | None = None) -> list[ClusterRow]:
        query = select(clusters_table).where(clusters_table.c.status.in_(ClusterStatus.LIVE))
        if job_id is not None:
            query = query.where(clusters_table.c.job_id == job_id)
        with self._read() as conn:
            return [_record(ClusterRow, r) for r in conn.execute(query.order_by(clusters_table.c.id)).all()]

    def clusters(self) -> list[ClusterRow]:
        with self._read() as conn:
            return [_record(ClusterRow, r) for r in conn.execute(select(clusters_table)).all()]

    # ------------------------------------------------------------------ pools

    def apply_pool(
        self, name: str, spec: dict[str, Any], secrets: dict[str, str], target_workers: int
    ) -> tuple[int, str]:
        """Create a pool or give it a new version; returns (version, PoolApplied).

        `spec` holds the workers' task and the pool section; a new spec that
        differs only in the worker count keeps the workers (they move to the
        new version), anything else makes the old workers drain."""
        now = time.time()
        spec_json, secrets_json = json.dumps(spec, sort_keys=True), json.dumps(secrets, sort_keys=True)
        with self._write() as conn:
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
                self._event(conn, None, None, "pool", message=f"pool {name}: created, {target_workers} worker(s)")
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
            self._event(conn, None, None, "pool",
                        message=f"pool {name}: version {version} ({outcome}), {target_workers} worker(s)")
            return version, outcome

    def set_pool_target(self, name: str, target_workers: int) -> None:
        """The autoscaler's choice (no new version)."""
        with self._write() as conn:
            conn.execute(update(pools_table).where(pools_table.c.name == name).values(target_workers=target_workers))

    def pool(self, name: str) -> PoolRow | None:
        with self._read() as conn:
            row = conn.execute(select(*_columns(pools_table, PoolRow)).where(pools_table.c.name == name)).first()
        return _record(PoolRow, row) if row else None

    def pools(self) -> list[PoolRow]:
        with self._read() as conn:
            rows = conn.execute(select(*_columns(pools_table, PoolRow)).order_by(pools_table.c.name)).all()
        return [_record(PoolRow, r) for r in rows]

    def pool_spec(self, name: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The workers' spec and secrets: for the controller only."""
        with self._read() as conn:
            row = conn.execute(
                select(pools_table.c.spec_json, pools_table.c.secrets_json).where(pools_table.c.name == name)
            ).one()
        return json.loads(row.spec_json), json.loads(row.secrets_json)

    def request_pool_down(self, name: str) -> list[int]:
        """Mark a pool for teardown; refused (returns the job ids) while any of
        its jobs is unfinished."""
        with self._write() as conn:
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
                .values(down_requested_at=time.time(), secrets_json=_NO_SECRETS)
            ).rowcount
            if erased:
                self._secrets_erased()
            self._event(conn, None, None, "pool", message=f"pool {name}: down requested")
            return []

    def delete_pool(self, name: str) -> None:
        with self._write() as conn:
            conn.execute(delete(pools_table).where(pools_table.c.name == name))
            self._event(conn, None, None, "pool", message=f"pool {name}: down, every worker terminated")

    def workers(self, pool: str | None = None, *, live_only: bool = True) -> list[WorkerRow]:
        query = select(*_columns(pool_workers_table, WorkerRow))
        if pool is not None:
            query = query.where(pool_workers_table.c.pool == pool)
        if live_only:
            query = query.where(pool_workers_table.c.status.in_(WorkerStatus.LIVE))
        with self._read() as conn:
            return [_record(WorkerRow, r) for r in conn.execute(query.order_by(pool_workers_table.c.id)).all()]

    def insert_worker(self, pool: str, version: int) -> int:
        with self._write() as conn:
            result = conn.execute(
                insert(pool_workers_table).values(
                    pool=pool, version=version, status=WorkerStatus.PROVISIONING, created_at=time.time(),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def update_worker(self, worker_id: int, **values: Any) -> None:
        if values.get("status") in (WorkerStatus.TERMINATED, WorkerStatus.FAILED, WorkerStatus.PREEMPTED):
            values.setdefault("ended_at", time.time())
        with self._write() as conn:
            conn.execute(update(pool_workers_table).where(pool_workers_table.c.id == worker_id).values(**values))

    def assign_worker(self, worker_id: int, job_id: int) -> bool:
        """Give an idle READY worker to a job; False if it was taken or is no
        longer READY. CancelRequested if the job's cancel was requested."""
        with self._write() as conn:
            self._lock_startable_job(conn, job_id)
            params = {"b_worker": worker_id, "b_job": job_id}
            if conn.execute(_ASSIGN_WORKER, dict(params, b_ready=WorkerStatus.READY)).rowcount != 1:
                return False
            conn.execute(_SET_JOB_WORKER, params)
            return True

    def release_worker(self, worker_id: int, job_id: int) -> None:
        """The job is done with the worker (finished, cancelled, or its worker was lost)."""
        with self._write() as conn:
            conn.execute(_RELEASE_WORKER, {"b_worker": worker_id, "b_job": job_id})

    def worker_of_job(self, job_id: int) -> WorkerRow | None:
        with self._read() as conn:
            row = conn.execute(
                select(*_columns(pool_workers_table, WorkerRow)).where(pool_workers_table.c.job_id == job_id)
            ).first()
        return _record(WorkerRow, row) if row else None

    def pending_pool_jobs(self, pool: str) -> list[JobRow]:
        """The pool's jobs waiting for a worker, first to be served first."""
        with self._read() as conn:
            rows = conn.execute(
                select(*_columns(jobs_table, JobRow))
                .where(jobs_table.c.pool == pool, jobs_table.c.status == TaskStatus.PENDING.value)
                .order_by(jobs_table.c.priority.desc(), jobs_table.c.id)
            ).all()
        return [_record(JobRow, r) for r in rows]


def _without_count(spec: dict[str, Any]) -> dict[str, Any]:
    """A pool spec minus how many workers: what the workers themselves are."""
    return {key: value for key, value in spec.items() if key != "pool"}


# Step N upgrades a DB at schema version N-1 to N, inside the start-up transaction.
def _v2_attempt_prices(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE attempts ADD COLUMN price_per_hour FLOAT"))


def _v3_pools(conn: Connection) -> None:
    for statement in (
        "ALTER TABLE jobs ADD COLUMN worker_id INTEGER",
        "ALTER TABLE pools ADD COLUMN secrets_json TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE pools ADD COLUMN target_workers INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE pools ADD COLUMN updated_at FLOAT",
        "ALTER TABLE pool_workers ADD COLUMN status_reason TEXT",
        "ALTER TABLE pool_workers ADD COLUMN ready_at FLOAT",
        "ALTER TABLE pool_workers ADD COLUMN jobs_done INTEGER NOT NULL DEFAULT 0",
    ):
        conn.execute(text(statement))


def _v4_job_groups(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE tasks ADD COLUMN group_role VARCHAR(16)"))


MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _v2_attempt_prices, 3: _v3_pools, 4: _v4_job_groups}


class AsyncStore:
    """The Store for the controller's event loop: every call runs in a worker
    thread, so a slow fsync never stalls the loop. `await astore.job(1)`."""

    # The writes job coroutines make, thousands at a time when jobs start or
    # end together: they share commits (Store.run_batch) instead of queueing
    # one fsync each. Each writes through one connection and reads nothing
    # back through the reader (run_batch's rule). `end_run` goes further:
    # see below.
    GROUPED = frozenset({
        "transition_task", "set_task_fields", "note", "start_attempt", "end_attempt", "set_attempt_cluster",
        "open_segment", "update_segment", "insert_cluster", "update_cluster", "update_worker",
        "assign_worker", "release_worker",
    })

    def __init__(self, store: Store, max_threads: int = 4, *, owns_store: bool = True) -> None:
        self.sync = store
        self._owns_store = owns_store
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="store")
        # Queued for the next shared commit: store calls, and runs that ended.
        self._calls: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._run_ends: list[tuple[RunEndRequest, asyncio.Future[Any]]] = []
        self._committing = False
        # Its own thread: a shared commit never queues behind reads.
        self._commit_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-commit")

    def lane(self, max_threads: int = 1) -> AsyncStore:
        """Another queue onto the same Store. Calls made through it never
        wait behind the calls queued here: the controller's own loop (cancel
        intents, new jobs, stopping) stays prompt while thousands of job
        coroutines keep this queue long. Closing it leaves the Store open."""
        return AsyncStore(self.sync, max_threads, owns_store=False)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.sync, name)
        if name in self.GROUPED:
            async def grouped(*args: Any, **kwargs: Any) -> Any:
                future = self._queue_for_commit()
                self._calls.append((functools.partial(method, *args, **kwargs), future))
                return await future

            return grouped

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, functools.partial(method, *args, **kwargs))

        return call

    async def end_run(self, request: RunEndRequest) -> RunEnd:
        """`Store.end_run`, with every run that ends meanwhile: they go in
        one `Store.end_runs` (a few statements for all) in the next commit."""
        future = self._queue_for_commit()
        self._run_ends.append((request, future))
        result: RunEnd = await future
        return result

    def _queue_for_commit(self) -> asyncio.Future[Any]:
        """A future for a write queued for the next shared commit; starts
        the committer if it is not running."""
        loop = asyncio.get_running_loop()
        if not self._committing:
            self._committing = True
            loop.create_task(self._commit_queued(), name="store-group-commit")
        return loop.create_future()

    async def _commit_queued(self) -> None:
        """While writes are queued: all of them in one transaction, then the
        ones queued meanwhile. A caller that stopped waiting (cancelled) still
        has its write made: it may already be in the running batch."""
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[Any]] = []
        try:
            while self._calls or self._run_ends:
                calls, self._calls = self._calls, []
                run_ends, self._run_ends = self._run_ends, []
                waiting = [f for _, f in calls] + [f for _, f in run_ends]
                batch = [call for call, _ in calls]
                if run_ends:
                    requests = [request for request, _ in run_ends]
                    batch.append(functools.partial(self.sync.end_runs, requests))
                try:
                    results = await loop.run_in_executor(self._commit_thread, self.sync.run_batch, batch)
                except Exception as exc:  # noqa: BLE001 - the commit failed: every caller hears of it
                    results = [exc] * len(batch)
                outcomes = list(results[:len(calls)])
                if run_ends:
                    ended = results[-1]
                    outcomes += ended if isinstance(ended, list) else [ended] * len(run_ends)
                for future, outcome in zip(waiting, outcomes):
                    if future.done():
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
                waiting = []
        except asyncio.CancelledError:
            # The loop is going away: nobody is left to wait, but say so to any who are.
            for future in waiting + [f for _, f in self._calls] + [f for _, f in self._run_ends]:
                future.cancel()
            self._calls, self._run_ends = [], []
            raise
        finally:
            self._committing = False

    def close(self) -> None:
        # Calls still queued belong to coroutines that were stopped: drop them
        # (thousands may be queued), finish only those already running.
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._commit_thread.shutdown(wait=True, cancel_futures=True)
        if self._owns_store:
            self.sync.close()
