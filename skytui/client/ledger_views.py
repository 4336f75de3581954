"""What `skytui cost` and the job view show of the ledger: `CostReport`,
its lines (`CostLine`, `JobCost`) and its JSON form (the `cost --json`
contract), summed from the store's `AttemptSpend` and `MachineSpend`.

May touch the store's ledger records and `clouds.base`'s infra label;
nothing that reads or writes. What is spent and what is lost is the
store's `ledger` module's to say; here it is only summed.

The `--json` document:

    {"now": 1765000000.0, "since": 1762400000.0, "days": 30, "prices": "catalog",
     "total": {"spent_usd": 1.23, "lost_usd": 0.2, "lost_share": 0.1626},
     "jobs": [{"id": 7, "name": "train", "pool": null, <the three figures>,
               "tasks": [{"task_id": 0, <the three figures>}]}],
     "by_day": [{"day": "2026-12-05", <the three figures>}],
     "by_infra": [{"infra": "sim/us-east-1", ...}], "by_pool": [{"pool": "p", ...}],
     "attempts": [...]}

Dollars are rounded to 4 places, `lost_share` (lost / spent, 0 when nothing
was spent) to 4. `since` is null with no window. `jobs` is newest first, a
pool job's figures are $0 (its machine is its pool's); `by_day` is by the
UTC day each attempt or pool machine began spending (one spanning midnight
counts whole on the day it began); `by_infra` and `by_pool` by most spent.
`attempts` (only with `--job`): job_id, task_id, attempt, infra, use_spot,
started_at, ended_at, end_reason, price_per_hour, provisioning_s, run_s and
the three figures. `prices: "catalog"`: every price is skytui's catalog's,
as no infra reports its real prices to skytui today.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from skytui.clouds.base import infra_label
from skytui.engine.store import AttemptSpend, MachineSpend

PRICES = "catalog"


@dataclass(frozen=True)
class CostLine:
    """Spent and lost dollars of one thing: a task, a day, an infra, a pool."""

    key: str
    spent: float = 0.0
    lost: float = 0.0

    @property
    def lost_share(self) -> float:
        return self.lost / self.spent if self.spent > 0 else 0.0

    def figures(self) -> dict[str, float]:
        return {"spent_usd": round(self.spent, 4), "lost_usd": round(self.lost, 4),
                "lost_share": round(self.lost_share, 4)}


@dataclass(frozen=True)
class JobCost:
    job_id: int
    name: str
    pool: str | None
    spent: float
    lost: float
    tasks: list[CostLine] = field(default_factory=list)

    @property
    def lost_share(self) -> float:
        return self.lost / self.spent if self.spent > 0 else 0.0


@dataclass(frozen=True)
class CostReport:
    now: float
    since: float | None
    days: int | None
    total: CostLine
    jobs: list[JobCost]
    by_day: list[CostLine]
    by_infra: list[CostLine]
    by_pool: list[CostLine]
    attempts: list[AttemptSpend] = field(default_factory=list)
    prices: str = PRICES

    def to_json(self) -> dict[str, Any]:
        return {
            "now": self.now, "since": self.since, "days": self.days, "prices": self.prices,
            "total": self.total.figures(),
            "jobs": [
                {"id": job.job_id, "name": job.name, "pool": job.pool,
                 **CostLine("", job.spent, job.lost).figures(),
                 "tasks": [{"task_id": int(task.key), **task.figures()} for task in job.tasks]}
                for job in self.jobs
            ],
            "by_day": [{"day": line.key, **line.figures()} for line in self.by_day],
            "by_infra": [{"infra": line.key, **line.figures()} for line in self.by_infra],
            "by_pool": [{"pool": line.key, **line.figures()} for line in self.by_pool],
            "attempts": [
                {"job_id": a.job_id, "task_id": a.task_idx, "attempt": a.attempt_no, "infra": a.infra,
                 "use_spot": a.use_spot, "started_at": a.spend_started_at, "ended_at": a.ended_at,
                 "end_reason": a.end_reason, "price_per_hour": a.price_per_hour,
                 "provisioning_s": round(a.provisioning_s, 3), "run_s": round(a.run_s, 3),
                 **CostLine("", a.spent, a.lost).figures()}
                for a in self.attempts
            ],
        }


class _Sums:
    """Running spent/lost totals by key, in first-seen order."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, key: str, spent: float, lost: float) -> None:
        pair = self.sums.setdefault(key, [0.0, 0.0])
        pair[0] += spent
        pair[1] += lost

    def lines(self) -> list[CostLine]:
        return [CostLine(key, spent, lost) for key, (spent, lost) in self.sums.items()]


def utc_day(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%d")


def build_report(
    attempts: Iterable[AttemptSpend], machines: Iterable[MachineSpend], *, now: float, since: float | None,
    days: int | None, with_attempts: bool = False,
) -> CostReport:
    """The report, from the ledger's attempts (by job, task, attempt) and pool machines."""
    total, by_day, by_infra, by_pool = _Sums(), _Sums(), _Sums(), _Sums()
    jobs: dict[int, tuple[AttemptSpend, _Sums]] = {}
    kept: list[AttemptSpend] = []
    for a in attempts:
        spent, lost = a.spent, a.lost
        total.add("total", spent, lost)
        by_day.add(utc_day(a.spend_started_at), spent, lost)
        if a.price_per_hour is not None:  # a pool job's machine is counted as its pool's, below
            by_infra.add(a.infra or "-", spent, lost)
        jobs.setdefault(a.job_id, (a, _Sums()))[1].add(str(a.task_idx), spent, lost)
        if with_attempts:
            kept.append(a)
    for m in machines:
        spent, lost = m.spent, m.lost
        total.add("total", spent, lost)
        by_day.add(utc_day(m.created_at), spent, lost)
        by_infra.add(infra_label(m.cloud, m.region, m.zone), spent, lost)
        by_pool.add(m.pool, spent, lost)
    job_costs = []
    for job_id in sorted(jobs, reverse=True):
        first, tasks = jobs[job_id]
        lines = tasks.lines()
        job_costs.append(JobCost(job_id, first.job_name, first.pool, sum(t.spent for t in lines),
                                 sum(t.lost for t in lines), lines))
    most_spent = lambda line: (-line.spent, line.key)  # noqa: E731 - a sort key, twice
    return CostReport(
        now=now, since=since, days=days, total=(total.lines() or [CostLine("total")])[0], jobs=job_costs,
        by_day=sorted(by_day.lines(), key=lambda line: line.key),
        by_infra=sorted(by_infra.lines(), key=most_spent), by_pool=sorted(by_pool.lines(), key=most_spent),
        attempts=kept,
    )
