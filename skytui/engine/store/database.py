"""The connection to the state DB: its engines (a writer and a reader), the
write lock, shared-commit batches, start-up migration, the controller's
advisory lock, and the file's permissions.

Runs no query of its own beyond the `meta` table (the schema version, and
small values the controller keeps, such as the notifier's cursors): the
repositories beside it bring the SQL and borrow `_write` / `_read` from here.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, insert, select, text, update

from skytui.engine.store.migrations import SCHEMA_VERSION, migrate, stored_version
from skytui.engine.store.schema import meta_table
from skytui.engine.store.sqlite import WalScrubber, create_private, sqlite_file, sqlite_setup

CONTROLLER_LOCK_KEY = 0x5C7_7001  # the PostgreSQL advisory lock that names the controller

R = TypeVar("R")


class _BatchRefused(Exception):
    """A call of a batch run without savepoints raised: run it again with them."""


class _BatchConnection(threading.local):
    """The connection of the batch this thread is running (Store.run_batch),
    and how deep in a call's writes it is (its first write takes the savepoint)."""

    conn: Connection | None = None
    depth: int = 0
    savepoints: bool = True


class Database:
    """The state DB's connection, shared by the repositories `Store` composes.
    Thread-safe; each write is one transaction (or one call of a batch)."""

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
        self._db_file = sqlite_file(url) if self.is_sqlite else None
        self._wal_scrubber = WalScrubber(self._db_file, self.SECRETS_SCRUB_DELAY_S) if self._db_file else None
        if self._db_file:
            create_private(self._db_file)
        if self.is_sqlite:
            # Pooled: opening a connection (and its PRAGMAs) per call cost
            # more than the queries. A checked-out connection stays with one
            # thread at a time, so sharing the pool across threads is safe.
            pool_args: dict[str, Any] = {
                "connect_args": {"check_same_thread": False}, "pool_size": 4, "max_overflow": 8,
            }
            self._writer = create_engine(url, **pool_args)
            self._reader = create_engine(url, **pool_args)
            sqlite_setup(self._writer, immediate=True)
            sqlite_setup(self._reader, immediate=False)
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

    def _claim_controller_lock(self) -> bool:
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
        return True

    def _scrub_wal_now(self) -> None:
        """Truncate the WAL at once (a crash may have come before its scrub)."""
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
            migrate(conn)

    def _schema_is_current(self) -> bool:
        """Whether the DB is already at this skytui's schema, read without a
        lock. Every command opens the store: taking the write lock just to
        find nothing to migrate made each one wait out the controller's
        commits (SQLite's busy handler sleeps up to 100 ms a try), which at
        10,000 running jobs was most of `jobs queue`'s time."""
        with self._read() as conn:
            current = stored_version(conn)
        return current == str(SCHEMA_VERSION)

    def schema_version(self) -> int:
        with self._read() as conn:
            return int(
                conn.execute(
                    select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                ).scalar_one()
            )

    def meta_value(self, key: str) -> str | None:
        with self._read() as conn:
            value = conn.execute(select(meta_table.c.value).where(meta_table.c.key == key)).scalar_one_or_none()
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as conn:
            if not conn.execute(update(meta_table).where(meta_table.c.key == key).values(value=value)).rowcount:
                conn.execute(insert(meta_table).values(key=key, value=value))

    def _protect_files(self) -> None:
        if self._db_file is None:
            return
        for suffix in ("", "-wal", "-shm"):
            try:
                os.chmod(self._db_file + suffix, 0o600)
            except FileNotFoundError:
                pass
