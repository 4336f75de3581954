"""The local log store: where each task's output lives on this machine.

One file per task and node rank, `logs/jobs/<job>/<task>.log` (rank 0) and
`<task>.rank<k>.log`, holding every attempt and phase back to back, byte for
byte as the job printed it. Where each phase starts is recorded in the DB
(log segments), so the file needs no markers and its size alone tells how
much of the current phase has been copied.
"""

from __future__ import annotations

from pathlib import Path


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
