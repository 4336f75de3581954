"""How jobs read to people: the queue's columns, relative times, durations,
status colours. Shared by the headless CLI and the TUI so both say the same
thing the same way (SkyPilot's `sky jobs queue` wording)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rich.text import Text

from skytui.client import JobView
from skytui.engine.status import TERMINAL, TERMINAL_NAMES, is_stalled

QUEUE_COLUMNS = (
    "ID", "TASK", "NAME", "REQUESTED", "SUBMITTED", "TOT. DURATION", "JOB DURATION",
    "#RECOVERIES", "STATUS", "POOL", "INFRA", "COST",
)
# Most important first. A narrow terminal hides the last ones (k9s does the
# same): what a job is, how it is doing, how long it ran, how often it was
# recovered, what it costs and where, before when and what it asked for.
QUEUE_PRIORITY = (
    "ID", "NAME", "STATUS", "JOB DURATION", "#RECOVERIES", "COST", "INFRA",
    "SUBMITTED", "TASK", "TOT. DURATION", "REQUESTED", "POOL",
)
# (narrowest still worth showing, comfortable) widths in cells. Comfortable
# fits the usual values whole: `sim:aws/us-east-1`, `RECOVERING ⚠ stalled`,
# `a few secs ago`, `$1,234.56`; a header label may be cut short below it.
QUEUE_WIDTHS = {
    "ID": (5, 5), "TASK": (4, 4), "NAME": (10, 16), "REQUESTED": (8, 10), "SUBMITTED": (9, 14),
    "TOT. DURATION": (8, 13), "JOB DURATION": (8, 12), "#RECOVERIES": (5, 11), "STATUS": (12, 20),
    "POOL": (4, 8), "INFRA": (13, 17), "COST": (9, 9),
}
QUEUE_RIGHT_ALIGNED = frozenset({"#RECOVERIES", "COST"})
# The column that takes the room left once every shown column is comfortable.
QUEUE_FLEX = "NAME"


def fit_queue_columns(
    width: int, *, gap: int = 1, natural: Mapping[str, int] | None = None, flex_max: int = 40,
) -> dict[str, int]:
    """Which queue columns fit in `width` cells, and how wide each is, in QUEUE_COLUMNS order.

    In priority order, a column is shown when every more important shown
    column can have its comfortable width and this one at least its narrowest;
    then each, most important first, grows toward comfortable, and the flex
    column takes what is left (up to `flex_max`). `natural` replaces the
    comfortable widths (the CLI measures its cells); `gap` is the space
    between two columns.
    """
    sizes = {name: QUEUE_WIDTHS[name] for name in QUEUE_COLUMNS}
    if natural is not None:
        sizes = {name: (min(low, natural[name]), natural[name]) for name, (low, _) in sizes.items()}
    shown: list[str] = []
    comfortable = -gap
    for name in QUEUE_PRIORITY:
        low, high = sizes[name]
        if not shown or comfortable + gap + low <= width:
            shown.append(name)
            comfortable += gap + high
    widths = {name: sizes[name][0] for name in shown}
    spare = width - (sum(widths.values()) + gap * (len(shown) - 1))
    for name in shown:
        grow = max(0, min(spare, sizes[name][1] - widths[name]))
        widths[name] += grow
        spare -= grow
    if QUEUE_FLEX in widths:
        widths[QUEUE_FLEX] += max(0, min(spare, flex_max - widths[QUEUE_FLEX]))
    return {name: widths[name] for name in QUEUE_COLUMNS if name in widths}


STATUS_STYLES = {
    "PENDING": "yellow",
    "STARTING": "cyan",
    "RUNNING": "green",
    "RECOVERING": "magenta",
    "CANCELLING": "yellow",
    "SUCCEEDED": "bold green",
    "CANCELLED": "yellow",
}


# Past this many ranges, a list of ids is cut short: a message about 10,000
# scattered jobs stays one readable line.
MAX_ID_RANGES = 20


def id_ranges(ids: Iterable[int], *, max_parts: int | None = MAX_ID_RANGES) -> str:
    """Job ids as ascending ranges: `1-5, 9, 12-20` (`1-10000`, not 10,000 ids).

    With more than `max_parts` ranges (None: no limit), the first ones, `…`,
    the last one and how many ids there are in all: `1, 3, …, 9999 (5000 ids)`.
    """
    ordered = sorted(set(ids))
    parts: list[str] = []
    start = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            first, last = ordered[start], ordered[i - 1]
            parts.append(str(first) if first == last else f"{first}-{last}")
            start = i
    if max_parts is not None and len(parts) > max_parts:
        head = max(1, max_parts - 1)
        return f"{', '.join(parts[:head])}, …, {parts[-1]} ({len(ordered)} ids)"
    return ", ".join(parts)


def parse_id_ranges(text: str) -> list[int]:
    """The ids `id_ranges` wrote (uncut): `1-3, 7` -> [1, 2, 3, 7]."""
    ids: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        ids.extend(range(int(first), int(last or first) + 1))
    return ids


def jobs_phrase(ids: Sequence[int]) -> str:
    """`job 7` or `jobs 1-10000`: the noun agrees with the count."""
    return f"{'jobs' if len(ids) > 1 else 'job'} {id_ranges(ids)}"


def status_style(status: str) -> str:
    return STATUS_STYLES.get(status, "bold red" if status.startswith("FAILED") else "")


def status_text(status: str, *, stalled: bool = False) -> Text:
    """A status in its colour; a stalled RUNNING one marked so (no log line for its --stall-timeout)."""
    text = Text(status, style=status_style(status))
    if stalled:
        text.append(" ⚠ stalled", style="bold yellow")
    return text


def readable_ago(then: float | None, now: float) -> str:
    if then is None:
        return "-"
    seconds = max(0.0, now - then)
    if seconds < 60:
        return "a few secs ago"
    for unit, size in (("day", 86400), ("hr", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "-"  # pragma: no cover - the loop always returns


def readable_cost(dollars: float | None) -> str:
    return "-" if dollars is None else f"${dollars:,.2f}"


def readable_lost_share(spent: float, lost: float) -> str:
    """What part of the dollars spent bought nothing, as `38 %` (`-` when
    nothing was spent). Rounded twice so that 1.2/3.2 prints the same
    however the division was carried."""
    return f"{round(100 * lost / spent, 6):.0f} %" if spent > 0 else "-"


def readable_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, whole = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {whole}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


@dataclass(frozen=True)
class QueueLine:
    """One line of the queue: a job, or a pipeline task under it (`↳`)."""

    key: str  # "12" for a job, "12/0" for its first task
    job_id: int
    task_idx: int | None
    cells: tuple[str | Text, ...]  # in QUEUE_COLUMNS order; STATUS is a coloured Text
    finished: bool


def queue_lines(view: JobView, now: float) -> list[QueueLine]:
    job = view.job
    tot = readable_duration((job.ended_at or now) - job.submitted_at)
    # SkyPilot's POOL column: `name (worker=ID)` once a worker took the job.
    pool = (f"{job.pool} (worker={job.worker_id})" if job.worker_id is not None else job.pool) if job.pool else "-"
    finished = view.status in TERMINAL
    if not view.is_pipeline:
        task = view.tasks[0]
        cells = (
            str(job.id), "-", job.name, task.requested, readable_ago(job.submitted_at, now), tot,
            readable_duration(task.duration_s(now) if task.started_at else None),
            str(task.recoveries), status_text(job.status, stalled=is_stalled(task.status, task.status_reason)), pool,
            task.infra or "-", readable_cost(view.cost(now, None)),
        )
        return [QueueLine(str(job.id), job.id, None, cells, finished)]
    status = status_text(job.status, stalled=any(is_stalled(t.status, t.status_reason) for t in view.tasks))
    current = view.current_task
    if current is not None and not finished and not view.is_group:
        status.append(f" (task: {current.task_idx})")
    started = any(t.started_at for t in view.tasks)
    # A job group's tasks run at once: its row says so; with auxiliary tasks,
    # the primaries (whose end ends the group) are marked [P], as in SkyPilot.
    name = f"{job.name} (parallel)" if view.is_group else job.name
    lines = [QueueLine(str(job.id), job.id, None, (
        str(job.id), "", name, "-", readable_ago(job.submitted_at, now), tot,
        readable_duration(sum(t.duration_s(now) for t in view.tasks) if started else None),
        str(sum(t.recoveries for t in view.tasks)), status, pool,
        current.infra or "-" if current is not None else "-", readable_cost(view.cost(now, None)),
    ), finished)]
    for task in view.tasks:
        task_tot = (task.ended_at or now) - task.submitted_at if task.started_at or task.ended_at else None
        task_name = f"{task.name} [P]" if view.marked_primary(task) else task.name
        lines.append(QueueLine(f"{job.id}/{task.task_idx}", job.id, task.task_idx, (
            " ↳", str(task.task_idx), task_name, task.requested, readable_ago(task.submitted_at, now),
            readable_duration(task_tot), readable_duration(task.duration_s(now) if task.started_at else None),
            str(task.recoveries), status_text(task.status, stalled=is_stalled(task.status, task.status_reason)), pool,
            task.infra or "-", readable_cost(view.cost(now, task.task_idx)),
        ), finished))
    return lines


def in_progress_counts(views: Iterable[JobView]) -> dict[str, int]:
    """Unfinished tasks by status, for "In progress tasks: 1 RECOVERING, 2 RUNNING"."""
    counts: dict[str, int] = {}
    for view in views:
        for task in view.tasks:
            if task.status not in TERMINAL_NAMES:
                counts[task.status] = counts.get(task.status, 0) + 1
    return counts


def in_progress_summary(views: Iterable[JobView]) -> str:
    counts = in_progress_counts(views)
    if not counts:
        return "No in-progress managed jobs."
    return "In progress tasks: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
