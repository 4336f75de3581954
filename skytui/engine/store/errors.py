"""What the store raises to its callers (no SQLAlchemy here: the CLI and the
client catch these without loading the DB layer)."""

from __future__ import annotations


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

