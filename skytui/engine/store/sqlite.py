"""SQLite's side of the connection: the PRAGMAs every connection gets, the
DB file made private before SQLite creates it, and the scrubber that
truncates the WAL after secrets were erased.

Touches the DB file and its connections' settings; runs no query of the
schema's.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url


def sqlite_setup(engine: Engine, *, immediate: bool) -> None:
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
    # agree asks for a snapshot (Database._read(snapshot=True)).


def sqlite_file(url: str) -> str | None:
    """The DB file of a SQLite URL (None: in memory)."""
    database = make_url(url).database
    return database if database and database != ":memory:" else None


def create_private(path: str) -> None:
    """Create the DB file 0600 before SQLite does (it would use 0644 minus
    the umask); its -wal and -shm then take the same mode."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class WalScrubber:
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
            return bool(busy == 0)
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
