"""The cost ledger's records: one attempt's, one pool machine's, a task's
and a window's dollars (`AttemptSpend`, `MachineSpend`, `TaskSpend`,
`SpendSums`). Pure data and arithmetic, no SQLAlchemy: the faces show
them, and `ledger.LedgerRepository` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

SUCCEEDED_REASON = "succeeded"  # the end_reason of an attempt whose task succeeded (controller.py)
HOUR_S = 3600.0


@dataclass(frozen=True)
class AttemptSpend:
    """One attempt's money: `provisioning_s` before it opened, `run_s` after."""

    job_id: int
    task_idx: int
    attempt_no: int
    job_name: str
    pool: str | None
    infra: str | None
    use_spot: bool | None
    spend_started_at: float
    """When its machine was recorded (or the attempt opened, with no machine of its own)."""
    ended_at: float | None
    end_reason: str | None
    price_per_hour: float | None
    provisioning_s: float
    run_s: float

    @property
    def running(self) -> bool:
        return self.ended_at is None

    @property
    def finished_well(self) -> bool:
        return self.end_reason == SUCCEEDED_REASON

    @property
    def spent(self) -> float:
        return (self.provisioning_s + self.run_s) * (self.price_per_hour or 0.0) / HOUR_S

    @property
    def lost(self) -> float:
        wasted = self.provisioning_s
        if not self.running and not self.finished_well:
            wasted += self.run_s
        return wasted * (self.price_per_hour or 0.0) / HOUR_S


@dataclass(frozen=True)
class MachineSpend:
    """One pool worker's machine: `unready_s` before its worker was READY."""

    cluster_id: int
    pool: str
    cloud: str
    region: str | None
    zone: str | None
    instance_type: str | None
    use_spot: bool
    created_at: float
    ended_at: float | None
    price_per_hour: float | None
    life_s: float
    unready_s: float

    @property
    def spent(self) -> float:
        return self.life_s * (self.price_per_hour or 0.0) / HOUR_S

    @property
    def lost(self) -> float:
        return self.unready_s * (self.price_per_hour or 0.0) / HOUR_S


@dataclass(frozen=True)
class TaskSpend:
    """A task's attempts, summed."""

    job_id: int
    task_idx: int
    job_name: str
    pool: str | None
    spent: float
    lost: float


@dataclass(frozen=True)
class SpendSums:
    """Every attempt's dollars in a window, summed three ways (pool
    machines apart: `pool_machine_spend`)."""

    tasks: list[TaskSpend] = field(default_factory=list)
    """Newest job first, then by task."""
    by_day: dict[str, tuple[float, float]] = field(default_factory=dict)
    """UTC day the spend began ("2026-12-05") -> (spent, lost), in day order."""
    by_infra: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Infra label -> (spent, lost), of attempts with a price (a pool job's is its pool's)."""


def utc_day(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%d")
