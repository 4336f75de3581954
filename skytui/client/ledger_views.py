"""What `skytui cost` and the job view show of the ledger: `CostReport`,
its lines (`CostLine`, `JobCost`) and its JSON form (the `cost --json`
contract), from the store's `SpendSums`, `MachineSpend` and `AttemptSpend`.

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
from itertools import groupby
from operator import attrgetter
from typing import Any

from skytui.clouds.base import infra_label
from skytui.engine.store import AttemptSpend, MachineSpend, SpendSums, TaskSpend, utc_day

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

    def __init__(self, start: dict[str, tuple[float, float]] | None = None) -> None:
        self.sums: dict[str, list[float]] = {key: [spent, lost] for key, (spent, lost) in (start or {}).items()}

    def add(self, key: str, spent: float, lost: float) -> None:
        pair = self.sums.setdefault(key, [0.0, 0.0])
        pair[0] += spent
        pair[1] += lost

    def lines(self) -> list[CostLine]:
        return [CostLine(key, spent, lost) for key, (spent, lost) in self.sums.items()]


def job_sums(attempts: Iterable[AttemptSpend]) -> SpendSums:
    """What `Store.spend_sums` gives, from one job's attempts (a handful: in Python)."""
    tasks: dict[tuple[int, int], tuple[AttemptSpend, _Sums]] = {}
    by_day, by_infra = _Sums(), _Sums()
    for a in attempts:
        tasks.setdefault((a.job_id, a.task_idx), (a, _Sums()))[1].add("", a.spent, a.lost)
        by_day.add(utc_day(a.spend_started_at), a.spent, a.lost)
        if a.price_per_hour is not None:
            by_infra.add(a.infra or "-", a.spent, a.lost)
    task_lines = []
    for (job_id, task_idx), (a, sums) in sorted(tasks.items(), key=lambda item: (-item[0][0], item[0][1])):
        (line,) = sums.lines()
        task_lines.append(TaskSpend(job_id, task_idx, a.job_name, a.pool, line.spent, line.lost))
    return SpendSums(task_lines, {line.key: (line.spent, line.lost) for line in by_day.lines()},
                     {line.key: (line.spent, line.lost) for line in by_infra.lines()})


def build_report(
    sums: SpendSums, machines: Iterable[MachineSpend], *, now: float, since: float | None, days: int | None,
    attempts: list[AttemptSpend] | None = None,
) -> CostReport:
    """The report, from the ledger's sums (by task, day and infra) and its
    pool machines; `attempts` are shown as they are (one job's)."""
    by_day, by_infra, by_pool = _Sums(sums.by_day), _Sums(sums.by_infra), _Sums()
    for m in machines:
        by_day.add(utc_day(m.created_at), m.spent, m.lost)
        by_infra.add(infra_label(m.cloud, m.region, m.zone), m.spent, m.lost)
        by_pool.add(m.pool, m.spent, m.lost)
    jobs: list[JobCost] = []
    for job_id, group in groupby(sums.tasks, key=attrgetter("job_id")):
        tasks = list(group)
        lines = [CostLine(str(t.task_idx), t.spent, t.lost) for t in tasks]
        jobs.append(JobCost(job_id, tasks[0].job_name, tasks[0].pool, sum(t.spent for t in lines),
                            sum(t.lost for t in lines), lines))
    days_lines = by_day.lines()  # every attempt and machine once: the grand total
    total = CostLine("total", sum(d.spent for d in days_lines), sum(d.lost for d in days_lines))
    most_spent = lambda line: (-line.spent, line.key)  # noqa: E731 - a sort key, twice
    return CostReport(
        now=now, since=since, days=days, total=total, jobs=jobs,
        by_day=sorted(days_lines, key=lambda line: line.key),
        by_infra=sorted(by_infra.lines(), key=most_spent), by_pool=sorted(by_pool.lines(), key=most_spent),
        attempts=attempts or [],
    )
