"""The home screen: the live queue, as `sky jobs queue` shows it, at the keyboard.

Rows come from `app.jobs` (kept live by the app's feed); this screen only
filters, sorts and hands the visible rows to a virtualised table, so ten
thousand jobs cost one list rebuild, not ten thousand widgets.
"""

from __future__ import annotations

import bisect
import re
from typing import Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Footer, Input, Static

from skytui.client import JobView
from skytui.engine.status import TERMINAL_NAMES, TaskStatus
from skytui.format import QUEUE_COLUMNS, in_progress_summary, queue_lines, readable_cost
from skytui.screens.base import SkyScreen
from skytui.widgets.job_table import Column, JobTable, TableRow

SortKey = Literal["id", "name", "age", "status", "duration", "recoveries"]
Scope = Literal["all", "active", "faults"]

# Fixed widths: measuring ten thousand cells is what makes big tables slow.
# Fixed widths, about 150 cells with INFRA and COST; narrower terminals scroll sideways.
COLUMN_WIDTHS = {
    "ID": 5, "TASK": 4, "NAME": 18, "REQUESTED": 12, "SUBMITTED": 14, "TOT. DURATION": 13,
    "JOB DURATION": 12, "#RECOVERIES": 11, "STATUS": 20, "POOL": 8, "INFRA": 12, "COST": 9,
}
RIGHT_ALIGNED = {"#RECOVERIES", "COST"}
FAULTS = {s.value for s in TaskStatus if s.is_failure} | {TaskStatus.RECOVERING.value}


class JobFilter:
    """The `/` filter: a regex over a job's visible text; a leading `!` inverts it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.invert = text.startswith("!")
        pattern = text[1:] if self.invert else text
        try:
            self.regex: re.Pattern[str] | None = re.compile(pattern, re.IGNORECASE) if pattern else None
            self.error: str | None = None
        except re.error as exc:
            # A half-typed regex matches literally rather than hiding everything.
            self.regex = re.compile(re.escape(pattern), re.IGNORECASE)
            self.error = str(exc)

    def matches(self, haystack: str) -> bool:
        if self.regex is None:
            return True
        found = self.regex.search(haystack) is not None
        return found != self.invert


def _haystack(view: JobView) -> str:
    job = view.job
    parts = [str(job.id), job.name, job.status, job.pool or ""]
    for task in view.tasks:
        parts += [task.name, task.status, task.infra or "", task.requested]
    return " ".join(parts)


def _sort_value(view: JobView, key: SortKey, now: float) -> object:
    if key == "name":
        return view.job.name.lower()
    if key == "age":
        return view.job.submitted_at
    if key == "status":
        return view.job.status
    if key == "duration":
        return sum(t.duration_s(now) for t in view.tasks)
    if key == "recoveries":
        return sum(t.recoveries for t in view.tasks)
    return view.job.id


class JobsScreen(SkyScreen):
    """The live queue."""

    BINDING_GROUP_TITLE = "Jobs"
    BINDINGS = [
        Binding("enter", "open_job", "Open", id="jobs.open"),
        Binding("l", "logs", "Logs", id="jobs.logs"),
        Binding("n", "launch", "Launch", id="jobs.launch"),
        Binding("ctrl+d", "cancel_jobs", "Cancel job", id="jobs.cancel"),
        Binding("slash", "filter", "Filter", id="jobs.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="jobs.clear_filter"),
        Binding("0", "scope('all')", "All", id="jobs.scope_all"),
        Binding("1", "scope('active')", "Active", id="jobs.scope_active"),
        Binding("ctrl+z", "scope('faults')", "Faults", id="jobs.scope_faults"),
        Binding("I", "sort('id')", "Sort by id", show=False, id="jobs.sort_id"),
        Binding("N", "sort('name')", "Sort by name", show=False, id="jobs.sort_name"),
        Binding("A", "sort('age')", "Sort by age", show=False, id="jobs.sort_age"),
        Binding("S", "sort('status')", "Sort by status", show=False, id="jobs.sort_status"),
        Binding("D", "sort('duration')", "Sort by duration", show=False, id="jobs.sort_duration"),
        Binding("R", "sort('recoveries')", "Sort by recoveries", show=False, id="jobs.sort_recoveries"),
        Binding("q", "app.quit", "Quit", id="jobs.quit"),
    ]

    sort_key: reactive[SortKey] = reactive("id", init=False)
    sort_reverse: reactive[bool] = reactive(True, init=False)
    """Newest first by default, as `sky jobs queue`."""
    scope: reactive[Scope] = reactive("all", init=False)
    filter_text: reactive[str] = reactive("", init=False)

    def __init__(self) -> None:
        super().__init__()
        self._row_cache: dict[int, tuple[JobView, int, list[TableRow]]] = {}
        self._haystack_cache: dict[int, tuple[JobView, str]] = {}
        self._order: list[int] = []
        self._order_set: set[int] = set()
        self._order_key: tuple[str, bool] | None = None
        self._stale = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="jobs-header"):
            yield Static("Loading jobs…", id="jobs-summary")
            yield Static("", id="jobs-view")
        yield JobTable(id="jobs-table")
        yield Input(placeholder="filter: a regex; !regex inverts; enter applies, esc clears", id="jobs-filter")
        yield Static("", id="jobs-empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(JobTable)
        names = (*QUEUE_COLUMNS, "INFRA", "COST")
        table.set_columns(
            [Column(name.lower(), name, COLUMN_WIDTHS[name], "right" if name in RIGHT_ALIGNED else "left")
             for name in names]
        )
        self.watch(self.tui, "jobs_revision", self._redraw, init=False)
        self.set_interval(1.0, self._tick)
        table.focus()
        if self.tui.loaded:
            self._redraw()
        else:
            self._stale = True

    # ------------------------------------------------------------ rendering

    def _sorted_ids(self, now: float) -> list[int]:
        """Every job id in display order. Ids and ages never change, so for
        those sorts (the default) a new job is inserted, not the world re-sorted."""
        jobs = self.tui.jobs
        key = (self.sort_key, self.sort_reverse)
        stable = self.sort_key in ("id", "age")  # both follow the id order
        if stable and self._order_key == key and len(self._order) <= len(jobs):
            known = self._order_set
            if len(known) != len(jobs):
                for job_id in jobs:
                    if job_id not in known:
                        # Ascending internally; reversed on the way out when asked.
                        bisect.insort(self._order, job_id)
                        known.add(job_id)
            ids = self._order
            return ids[::-1] if self.sort_reverse else list(ids)
        if stable:
            self._order = sorted(jobs)
            self._order_set = set(self._order)
            self._order_key = key
            return self._order[::-1] if self.sort_reverse else list(self._order)
        self._order_key = None
        views = sorted(
            jobs.values(), key=lambda v: (_sort_value(v, self.sort_key, now), v.job.id), reverse=self.sort_reverse
        )
        return [v.job.id for v in views]

    def _visible_views(self) -> list[JobView]:
        now = self.tui.clock()
        job_filter = JobFilter(self.filter_text)
        jobs = self.tui.jobs
        # Locals: a reactive read costs a microsecond, times ten thousand jobs.
        scope = self.scope
        filtering = job_filter.regex is not None
        views = []
        for job_id in self._sorted_ids(now):
            view = jobs[job_id]
            if scope == "active" and view.job.status in TERMINAL_NAMES:
                continue
            if scope == "faults" and not any(t.status in FAULTS for t in view.tasks):
                continue
            if filtering and not job_filter.matches(self._haystack_of(view)):
                continue
            views.append(view)
        return views

    def _haystack_of(self, view: JobView) -> str:
        """The text a filter searches, kept until the job changes: a filter
        keystroke over ten thousand jobs should not rebuild ten thousand strings."""
        cached = self._haystack_cache.get(view.job.id)
        if cached is not None and cached[0] is view:
            return cached[1]
        text = _haystack(view)
        self._haystack_cache[view.job.id] = (view, text)
        return text

    def _rows_of(self, view: JobView, now: float) -> list[TableRow]:
        """A job's table rows, cached: the feed replaces a JobView object when the
        job changes, and its text only moves with the clock (durations each
        second while it runs, "N mins ago" each minute once it has finished)."""
        finished = view.job.status in TERMINAL_NAMES
        # Finished jobs' "N mins ago" moves once a minute; spread over the
        # minute by id, so ten thousand rows never expire in the same frame.
        stamp = int((now + view.job.id) // 60) if finished else int(now)
        cached = self._row_cache.get(view.job.id)
        if cached is not None and cached[0] is view and cached[1] == stamp:
            return cached[2]
        rows = []
        for line in queue_lines(view, now):
            task = view.tasks[line.task_idx] if line.task_idx is not None else view.current_task
            infra = task.infra if task is not None and task.infra else "-"
            cost = readable_cost(view.cost(now, line.task_idx))
            rows.append(
                TableRow(line.key, (*line.cells, infra, cost), dim=line.finished, indent=line.task_idx is not None)
            )
        self._row_cache[view.job.id] = (view, stamp, rows)
        return rows

    def _redraw(self) -> None:
        if self.app.screen is not self:
            # Covered by the job or logs view: catch up when shown again.
            self._stale = True
            return
        self._stale = False
        now = self.tui.clock()
        views = self._visible_views()
        rows: list[TableRow] = []
        for view in views:
            rows.extend(self._rows_of(view, now))
        self.query_one(JobTable).set_rows(rows)
        active = [self.tui.jobs[i] for i in self.tui.active_job_ids if i in self.tui.jobs]
        self.query_one("#jobs-summary", Static).update(in_progress_summary(active))
        shown = f"{len(views)} of {len(self.tui.jobs)} jobs"
        labels = {"all": "all", "active": "active only", "faults": "faults only"}
        view_label = f"{shown} · {labels[self.scope]} · sorted by {self.sort_key}{' ↓' if self.sort_reverse else ' ↑'}"
        if self.filter_text:
            view_label += f" · /{self.filter_text}"
        self.query_one("#jobs-view", Static).update(view_label)
        empty = self.query_one("#jobs-empty", Static)
        empty.display = not views
        if not views:
            empty.update(
                "No managed jobs yet. Launch one with `skytui jobs launch FILE`."
                if not self.tui.jobs else "No job matches this view (0: all, esc: clear the filter)."
            )

    def on_screen_resume(self) -> None:
        if self._stale:
            self._redraw()

    def _tick(self) -> None:
        # Durations tick while something runs; a finished queue stays still.
        if self.tui.active_job_ids:
            self._redraw()

    def watch_sort_key(self) -> None:
        self._redraw()

    def watch_sort_reverse(self) -> None:
        self._redraw()

    def watch_scope(self) -> None:
        self._redraw()

    def watch_filter_text(self) -> None:
        self._redraw()

    # -------------------------------------------------------------- actions

    def _selected_job(self) -> tuple[int, int | None] | None:
        key = self.query_one(JobTable).cursor_key
        if key is None:
            return None
        job, _, task = key.partition("/")
        return int(job), int(task) if task else None

    def action_open_job(self) -> None:
        selected = self._selected_job()
        if selected is not None:
            from skytui.screens.job import JobScreen

            self.app.push_screen(JobScreen(selected[0], selected[1]))

    @on(JobTable.Selected)
    def _open_selected(self, _event: JobTable.Selected) -> None:
        self.action_open_job()

    def action_logs(self) -> None:
        selected = self._selected_job()
        if selected is not None:
            from skytui.screens.logs import LogsScreen

            self.app.push_screen(LogsScreen(selected[0], selected[1]))

    def action_launch(self) -> None:
        from skytui.screens.launch import LaunchScreen

        self.app.push_screen(LaunchScreen())

    def action_cancel_jobs(self) -> None:
        table = self.query_one(JobTable)
        keys = table.marked or ({table.cursor_key} if table.cursor_key else set())
        job_ids = sorted({int(key.partition("/")[0]) for key in keys})
        cancellable = [
            job_id for job_id in job_ids
            if job_id in self.tui.jobs and self.tui.jobs[job_id].job.status not in TERMINAL_NAMES
        ]
        if not cancellable:
            self.notify("Nothing to cancel: the selected jobs have finished.", severity="warning")
            return
        from skytui.screens.confirm import ConfirmCancel

        def cancel(confirmed: bool | None) -> None:
            if confirmed:
                self._cancel(cancellable)
                table.clear_marks()

        self.app.push_screen(ConfirmCancel(cancellable), cancel)

    def _cancel(self, job_ids: list[int]) -> None:
        self.run_worker(
            lambda: self.tui.client.cancel(job_ids), thread=True, group="cancel", name="cancel jobs"
        )
        self.notify(f"Cancelling job{'s' if len(job_ids) > 1 else ''} {', '.join(map(str, job_ids))}.")

    def action_filter(self) -> None:
        box = self.query_one("#jobs-filter", Input)
        box.value = self.filter_text
        box.display = True
        box.focus()

    @on(Input.Changed, "#jobs-filter")
    def _filter_typed(self, event: Input.Changed) -> None:
        self.filter_text = event.value

    @on(Input.Submitted, "#jobs-filter")
    def _filter_done(self, _event: Input.Submitted) -> None:
        self.query_one("#jobs-filter", Input).display = False
        self.query_one(JobTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#jobs-filter", Input)
        box.value = ""
        box.display = False
        self.filter_text = ""
        self.query_one(JobTable).focus()

    def action_scope(self, scope: Scope) -> None:
        self.scope = scope

    def action_sort(self, key: SortKey) -> None:
        if self.sort_key == key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key = key
            self.sort_reverse = key in ("id", "age", "duration", "recoveries")
