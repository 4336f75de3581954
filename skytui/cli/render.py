"""What the CLI prints: the consoles, the tables, the job follow's news,
and the JSON contracts of `pool status --json` and `check --json` (that of
`jobs queue --json` is written by the store, through the client).

Colour only on a terminal; NO_COLOR is honoured (rich does both). May touch
the client's views, `format` and `engine.status`; it reads nothing itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from skytui.client import EventRow, InfraStatus, JobView, PoolView
from skytui.engine.event_kinds import (
    BUDGET_REACHED,
    BUDGET_WARNING,
    PREEMPTION_NOTICE,
    STALL,
    STALL_CLEARED,
)
from skytui.engine.status import TaskStatus
from skytui.format import (
    QUEUE_COLUMNS,
    QUEUE_RIGHT_ALIGNED,
    fit_queue_columns,
    in_progress_summary,
    queue_lines,
    readable_ago,
    readable_duration,
    status_text,
)

if TYPE_CHECKING:
    from skytui.client.planning import Plan
    from skytui.spec import Pipeline

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 4096)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_warnings(warnings: Sequence[str]) -> None:
    for warning in warnings:
        err.print(Text(f"Warning: {warning}", style="yellow"))


def print_plans(pipeline: Pipeline, plans: list[Plan]) -> None:
    from skytui.client.planning import considered_rows

    for task, plan in zip(pipeline.tasks, plans):
        label = f" for task {task.name!r}" if pipeline.is_pipeline else ""
        out.print(f"Considered resources{label} ({plan.num_nodes} node{'s' if plan.num_nodes > 1 else ''}):")
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("INFRA", "INSTANCE", "vCPUs", "Mem(GB)", "GPUS", "COST ($)", "CHOSEN"):
            table.add_column(column)
        for row in considered_rows(plan):
            table.add_row(*(Text(cell) for cell in row))
        out.print(table)


def print_queue(views: list[JobView], now: float, *, total: int | None = None) -> None:
    """`jobs queue`: how many are in progress, then a line per job (and per
    task of a pipeline), in the columns that fit the terminal; with `total`
    (the jobs there are, when only the latest were asked for), a footer
    saying so."""
    out.print(in_progress_summary(views))
    if not views:
        return
    lines = [queue_lines(view, now) for view in views]
    natural = {name: cell_len(name) for name in QUEUE_COLUMNS}
    for line in chain.from_iterable(lines):
        for name, cell in zip(QUEUE_COLUMNS, line.cells):
            natural[name] = max(natural[name], cell_len(cell if isinstance(cell, str) else cell.plain))
    # A long name takes the room left over, not that of the columns after it.
    name_width, natural["NAME"] = natural["NAME"], min(natural["NAME"], 40)
    # Rich puts one cell of padding on each side of a column: two between columns.
    widths = fit_queue_columns(out.width, gap=2, natural=natural, flex_max=name_width)
    shown = [QUEUE_COLUMNS.index(name) for name in widths]
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, width in widths.items():
        table.add_column(name, no_wrap=True, width=width, overflow="ellipsis",
                         justify="right" if name in QUEUE_RIGHT_ALIGNED else "left")
    for view, view_lines in zip(views, lines):
        for line in view_lines:
            cells = [line.cells[i] for i in shown]
            table.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in cells))
        if view.is_pipeline:
            table.add_row()
    out.print(table)
    if total is not None and total > len(views):
        out.print(Text(f"showing {len(views):,} of {total:,} · -a for all", style="dim"))


def pools_json(views: list[PoolView]) -> str:
    """`pool status --json`: the document `PoolView.to_json` describes."""
    return json.dumps({"pools": [view.to_json() for view in views]})


def print_pools(views: list[PoolView], now: float) -> None:
    """`pool status`: the pools, then their workers."""
    pools = Table(box=None, pad_edge=False, header_style="bold", title="Pools", title_justify="left")
    for column in ("NAME", "VERSION", "UPTIME", "STATUS", "WORKERS"):
        pools.add_column(column, no_wrap=True)
    workers = Table(box=None, pad_edge=False, header_style="bold", title="Pool Workers", title_justify="left")
    for column in ("POOL_NAME", "ID", "VERSION", "LAUNCHED", "INFRA", "RESOURCES", "STATUS", "USED_BY"):
        workers.add_column(column, no_wrap=True)
    for view in views:
        pools.add_row(view.pool.name, str(view.pool.version), readable_duration(now - view.pool.created_at),
                      view.status, f"{view.ready}/{view.pool.target_workers}")
        for worker in view.workers:
            infra, instance = view.infra_of(worker)
            status = worker.status
            if worker.status_reason and worker.status != "READY":
                status += f" ({worker.status_reason})"
            workers.add_row(view.pool.name, str(worker.id), str(worker.version),
                            readable_ago(worker.created_at, now), infra or "-", instance or "-", status,
                            f"job {worker.job_id}" if worker.job_id else "-")
    out.print(pools)
    out.print()
    out.print(workers)


def check_json(
    report: list[tuple[InfraStatus, str | None]], controller: str | None = None,
    sent: list[tuple[str, str]] | None = None,
) -> str:
    """`check --json`: every infra, enabled or not, why, the fix, and what it
    offers; with a remote controller, where it runs and what it is sent."""
    document: dict[str, Any] = {"infra": [
        {"name": status.name, "enabled": status.enabled, "reason": status.reason, "fix": status.fix or None,
         "offers": offers}
        for status, offers in report
    ]}
    if controller is not None:
        document["controller"] = {"where": controller,
                                  "credentials": [{"what": what, "source": source} for what, source in sent or []]}
    return json.dumps(document)


def print_check(report: list[tuple[InfraStatus, str | None]]) -> None:
    """`check`: a line per infra, with the fix for a disabled one."""
    for status, offers in report:
        line = Text(f"{status.name:<11}", style="bold")
        if status.enabled:
            line.append("enabled  ", style="green")
            line.append(offers or status.reason)
            if offers and status.reason and status.name not in ("local", "sim"):
                line.append(f" ({status.reason})", style="dim")
        else:
            line.append("disabled ", style="red")
            line.append(status.reason)
            if status.fix:
                line.append(f"\n{'':<20}fix: {status.fix}", style="yellow")
        out.print(line)


WAITING_MESSAGES = {
    TaskStatus.PENDING: "Waiting for the controller to schedule the job.",
    TaskStatus.STARTING: "Waiting for task resources on {nodes} node{s}.",
    TaskStatus.RECOVERING: "Recovering the task: waiting for resources on {nodes} node{s}.",
    TaskStatus.CANCELLING: "Cancelling the job.",
}


def waiting_message(view: JobView) -> str | None:
    task = view.current_task
    if task is None:
        return None
    template = WAITING_MESSAGES.get(task.status_enum)
    if template is None:
        return None
    message = template.format(nodes=task.num_nodes, s="s" if task.num_nodes > 1 else "")
    if task.status_reason:
        message += f" ({task.status_reason})"
    if view.is_pipeline:
        message = f"Task {task.task_idx} ({task.name}): {message}"
    return message


# News that is neither a status change nor a placement, shown as it comes.
NOTICE_KINDS = frozenset({BUDGET_WARNING, BUDGET_REACHED, STALL, STALL_CLEARED, PREEMPTION_NOTICE})


def event_lines(event: EventRow, view: JobView) -> list[str | Text]:
    if event.kind in NOTICE_KINDS:
        which = f" task {event.task_idx}" if event.task_idx is not None and view.is_pipeline else ""
        return [Text(f"⚠ Job {view.job.id}{which}: {event.message}", style="yellow")]
    if event.kind == "placement":
        return [Text(f"⚙︎ {event.message}", style="dim")]
    if event.kind == "capacity" or (event.kind == "status" and event.to_status == "PENDING" and event.message):
        return [Text(f"⚙︎ {event.message}", style="dim")]  # a round of capacity search found none
    if event.kind == "status" and event.to_status in ("STARTING", "RUNNING", "RECOVERING"):
        task = next((t for t in view.tasks if t.task_idx == event.task_idx), None)
        name = f" task {task.task_idx} ({task.name})" if task and view.is_pipeline else ""
        reason = f" ({event.message})" if event.message else ""
        return [Text(f"⚙︎ Job {view.job.id}{name}: {event.to_status}{reason}", style="dim")]
    return []


def print_outcome(view: JobView) -> None:
    """The job's last line: ✓ only for a success, ✗ for a failure, ⊘ for a cancel (with why)."""
    status = view.status
    mark = "✓" if status is TaskStatus.SUCCEEDED else "⊘" if status is TaskStatus.CANCELLED else "✗"
    text = Text(f"{mark} Managed job {view.job.id} finished: ")
    text.append_text(status_text(status.value))
    failed = next((t for t in view.tasks if t.failure_reason), None)
    if failed is not None and status is not TaskStatus.SUCCEEDED:
        text.append(f" ({failed.name}: {failed.failure_reason})")
    elif status is TaskStatus.CANCELLED and view.job.cancel_reason:
        text.append(f" ({view.job.cancel_reason})")
    out.print(text)
