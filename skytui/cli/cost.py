"""`skytui cost`: dollars spent and lost, per job, per day, per infra and
per pool, as tables or one JSON document (`--json`, the contract in
client/ledger_views.py).

May touch the client, `render`'s consoles, `common` and `format`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from skytui.cli.common import EXIT_OK, fail_usage
from skytui.cli.render import out
from skytui.client import AttemptSpend, Client, CostLine, CostReport, JobCost
from skytui.format import readable_cost, readable_duration, readable_lost_share

JOBS_SHOWN = 50  # as `jobs queue`: the latest 50 unless --all
FIGURES = ("SPENT", "LOST", "LOST %")


def _figures(spent: float, lost: float) -> tuple[str, str, str]:
    return readable_cost(spent), readable_cost(lost), readable_lost_share(spent, lost)


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=True, justify="right" if column in FIGURES else "left")
    return table


def _lines_table(title: str, lines: Sequence[CostLine]) -> Table:
    table = _table(title, *FIGURES)
    for line in lines:
        table.add_row(line.key, *_figures(line.spent, line.lost))
    return table


def _jobs_table(jobs: Sequence[JobCost]) -> Table:
    table = _table("ID", "NAME", "POOL", *FIGURES)
    for job in jobs:
        table.add_row(str(job.job_id), job.name, job.pool or "-",
                      *(("(pool's)", "-", "-") if job.pool else _figures(job.spent, job.lost)))
        if len(job.tasks) > 1:
            for task in job.tasks:
                table.add_row("", f" ↳ task {task.key}", "", *_figures(task.spent, task.lost))
    return table


def _attempts_table(attempts: Sequence[AttemptSpend]) -> Table:
    table = _table("TASK", "ATTEMPT", "INFRA", "PROVISIONING", "RUN", "ENDED", *FIGURES)
    for a in attempts:
        ended = "running" if a.running else (a.end_reason or "-")
        table.add_row(str(a.task_idx), str(a.attempt_no), (a.infra or "-") + (" (spot)" if a.use_spot else ""),
                      readable_duration(a.provisioning_s), readable_duration(a.run_s), ended,
                      *_figures(a.spent, a.lost))
    return table


def print_cost(report: CostReport, *, show_all: bool, job_id: int | None) -> None:
    jobs = report.jobs if show_all else report.jobs[:JOBS_SHOWN]
    if job_id is not None:
        out.print(_attempts_table(report.attempts))
    else:
        out.print(Text("Jobs", style="bold"))
        out.print(_jobs_table(jobs))
        if len(jobs) < len(report.jobs):
            out.print(Text(f"... and {len(report.jobs) - len(jobs)} older jobs (--all shows them)", style="dim"))
        for title, column, lines in (("By day (UTC, the day its spend began)", "DAY", report.by_day),
                                     ("By infra", "INFRA", report.by_infra), ("By pool", "POOL", report.by_pool)):
            if lines:
                out.print()
                out.print(Text(title, style="bold"))
                out.print(_lines_table(column, lines))
        out.print()
    total = report.total
    line = Text("Total: ", style="bold")
    line.append(f"spent {readable_cost(total.spent)}, lost {readable_cost(total.lost)} "
                f"({readable_lost_share(total.spent, total.lost)})")
    out.print(line)
    window = "All time" if report.days is None else f"Last {report.days} days"
    out.print(Text(f"{window}; prices: {report.prices} (no infra reports its real prices to skytui); lost: "
                   "provisioning, and attempts that did not succeed (preempted, failed, cancelled)", style="dim"))


def cmd_cost(client: Client, args: argparse.Namespace) -> int:
    if args.days is not None and args.days < 1:
        fail_usage("--days must be 1 or more")
    days = None if args.job is not None else args.days
    if args.job is not None and client.job(args.job) is None:
        fail_usage(f"no managed job {args.job}")
    report = client.cost_report(days=days, job_id=args.job)
    if args.json:
        sys.stdout.write(json.dumps(report.to_json()) + "\n")
        return EXIT_OK
    if args.job is not None and not report.attempts:
        out.print(f"Job {args.job} has no attempts yet.")
    print_cost(report, show_all=args.all, job_id=args.job)
    return EXIT_OK
