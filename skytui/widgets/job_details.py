"""The job view's words: an attempt's lines in the tree, a task's resources
(as the user asked for them, and what was chosen), a timeline event.

Pure functions of the client's rows to Rich Text; no widget is touched. May
use the client's row types, `format` and `spec` (the user's YAML terms).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from skytui.client import AttemptRow, AttemptSpend, EventRow, TaskRow
from skytui.format import readable_cost, readable_duration
from skytui.spec import resources_yaml

__all__ = ["attempt_label", "attempt_place", "event_line", "resources_text", "spend_text"]

KEY_STYLE = "bold"
"""A YAML key in the Resources panel; its value stays plain."""


def spend_text(spent: float, lost: float, *, over: bool) -> str:
    """An attempt's dollars and what of them bought nothing: all of it
    ("(lost)") once it ended badly, its provisioning otherwise."""
    if over and lost > 0 and lost >= spent - 0.005:
        return f"{readable_cost(spent)} (lost)"
    if lost >= 0.005:
        return f"{readable_cost(spent)} ({readable_cost(lost)} lost)"
    return readable_cost(spent)


def attempt_label(attempt: AttemptRow, now: float, spend: AttemptSpend | None = None) -> Text:
    """An attempt's first line: how long, what it cost, how it ended. These
    come first so that a narrow tree (120 columns: 46 for the tree) cuts
    only the end reason; where it ran is the line below (`attempt_place`)."""
    ended = attempt.ended_at or now
    label = Text(f"attempt {attempt.attempt_no} · {readable_duration(ended - attempt.started_at)}")
    if spend is not None and spend.price_per_hour is not None:
        label.append(f" · {spend_text(spend.spent, spend.lost, over=not spend.running)}")
    elif attempt.price_per_hour is not None:
        label.append(f" · {readable_cost(attempt.cost(now))}")
    if attempt.end_reason:
        label.append(f" · {attempt.end_reason}", style="dim")
    elif attempt.ended_at is None:
        label.append(" · current", style="bold")
    return label


def attempt_place(attempt: AttemptRow) -> Text:
    """An attempt's second line: where it ran, on what, spot or on-demand
    (the price per hour is in the Resources panel: this line is cut first)."""
    return Text(_place(attempt.infra, attempt.instance_type, attempt.use_spot, None), style="dim")


def _place(infra: str | None, instance_type: str | None, use_spot: bool | None, price: float | None) -> str:
    """`sim:aws/us-east-1 · p5.48xlarge · spot · $98.32/h`."""
    parts = [infra or "?", instance_type or "-", "spot" if use_spot else "on-demand"]
    if price is not None:
        parts.append(f"{readable_cost(price)}/h")
    return " · ".join(parts)


def event_line(event: EventRow) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
    task = f"task {event.task_idx} " if event.task_idx is not None else ""
    if event.kind == "status":
        what = f"{event.from_status} → {event.to_status}"
        return f"{stamp} {task}{what}" + (f" ({event.message})" if event.message else "")
    return f"{stamp} {task}{event.kind}: {event.message or ''}"


def resources_text(task: TaskRow, spec_task: dict[str, Any], attempt: AttemptRow | None) -> Group:
    """The Resources panel: the task, its `resources:` as the user wrote
    them (YAML), and what was chosen for its latest attempt. Keys and values
    in columns, so that a value too long for a narrow panel (120 columns: 44
    for the panel) wraps under itself, not under its key."""
    nodes = f"{task.num_nodes} node{'s' if task.num_nodes > 1 else ''}"
    head = _grid()
    head.add_row("task:", f"{task.task_idx} {task.name} · {task.requested} × {nodes}")
    asked = resources_yaml(spec_task.get("resources") or {})
    if not asked:
        head.add_row("resources:", Text("{}  (none given: the defaults)", style="dim"))
    else:
        head.add_row("resources:", "")
    yaml = _grid(indent=True)
    for line in asked.splitlines():
        if line.startswith("- "):
            yaml.add_row("", "-", line[2:])  # an entry of `any_of:` or `ordered:`
        else:
            key, colon, value = line.partition(": ")
            yaml.add_row("", key + ":" if colon else line, value)
    tail = _grid()
    tail.add_row("chosen:", _chosen(task, attempt))
    tail.add_row("task id:", task.skypilot_task_id)
    if task.exit_code is not None:
        tail.add_row("exit code:", str(task.exit_code))
    return Group(head, yaml, tail) if asked else Group(head, tail)


def _grid(*, indent: bool = False) -> Table:
    table = Table.grid(padding=(0, 1))
    if indent:
        table.add_column("indent", width=1)
    # The outer grids' values start in one column: the widest key is `resources:`.
    table.add_column("key", no_wrap=True, style=KEY_STYLE, min_width=None if indent else len("resources:"))
    table.add_column("value", overflow="fold")
    return table


def _chosen(task: TaskRow, attempt: AttemptRow | None) -> Text:
    if attempt is not None:
        return Text(_place(attempt.infra, attempt.instance_type, attempt.use_spot, attempt.price_per_hour))
    if task.infra is None:
        return Text("nothing yet", style="dim")
    return Text(_place(task.infra, task.instance_type, task.use_spot, None))
