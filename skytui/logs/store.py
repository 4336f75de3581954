"""The local log store: where each task's output lives on this machine.

One file per task and node rank, `logs/jobs/<job>/<task>.log` (rank 0) and
`<task>.rank<k>.log`, holding every attempt and phase back to back, byte for
byte as the job printed it. Where each phase starts is recorded in the DB
(log segments), so the file needs no markers and its size alone tells how
much of the current phase has been copied.

Logs hold whatever jobs print (tokens, data), so every log file is 0600 and
every log folder 0700, whatever the umask: create them through
`open_private_append`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


def job_log_dir(job_logs: Path, job_id: int) -> Path:
    return job_logs / str(job_id)


def task_log_path(job_logs: Path, job_id: int, task_idx: int, rank: int = 0) -> Path:
    name = f"{task_idx}.log" if rank == 0 else f"{task_idx}.rank{rank}.log"
    return job_log_dir(job_logs, job_id) / name


def controller_log_path(job_logs: Path, job_id: int) -> Path:
    """The controller's own account of one job: placements, failures, cleanup."""
    return job_log_dir(job_logs, job_id) / "controller.log"


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def append_bytes(path: Path, data: bytes) -> None:
    """Append in one write (0600), making the folder (0700) only when it is
    missing: a controller appends a few times per job, and a file object and a
    `mkdir` per append cost more than the write itself."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def append_line(path: Path, line: str) -> None:
    append_bytes(path, line.encode())


def open_private_append(path: Path) -> BinaryIO:
    """Open a log for appending (binary), its folder 0700 and the file 0600.

    The mode is set on the open file too: a log created by an older skytui
    under a permissive umask is narrowed the next time it is written.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")
