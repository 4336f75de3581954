"""The home screen: the live queue, as `sky jobs queue` shows it, at the keyboard.

Rows come from `app.jobs` (kept live by the app's feed); this screen only
filters, sorts and hands the visible rows to a virtualised table, so ten
thousand jobs cost one list rebuild, not ten thousand widgets. Most updates
cost less than that: the feed's few changed jobs are patched into their rows,
and a filter that extends the previous one only searches the previous matches.
The columns, sorts and the `/` filter themselves are `jobs_query`'s; this
module keeps the caches that apply them to ten thousand jobs; it reads the
app's job feed, drives its own widgets and asks the client to cancel.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from itertools import chain

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import var
from textual.widgets import Input, Static

from skytui.client import JobView
from skytui.engine.status import TERMINAL_NAMES, TaskStatus
from skytui.format import in_progress_summary, jobs_phrase, queue_lines
from skytui.screens.base import SkyScreen
from skytui.screens.jobs_query import ORDER_FIXED_SORTS, JobFilter, Scope, SortKey, haystack, queue_columns, sort_value
from skytui.widgets.controller_banner import ControllerBanner
from skytui.widgets.footer import QuietFooter
from skytui.widgets.job_table import JobTable, TableRow

FAULTS = {s.value for s in TaskStatus if s.is_failure} | {TaskStatus.RECOVERING.value}

# (view the rows were made from, finished, time stamp they are valid for, rows)
RowCacheEntry = tuple[JobView, bool, int, list[TableRow]]


class QueueTable(JobTable):
    """The queue's table. Only the rows on screen are kept current: a job that
    changed off screen (or whose durations ticked) is re-rendered when it
    scrolls into view, so the feed and the clock cost ~40 rows, not 10,000."""

    def freshen_rows(self, rows: Sequence[TableRow]) -> Iterable[TableRow]:
        screen = self.screen
        return screen.fresh_rows_for(rows) if isinstance(screen, JobsScreen) else ()

    def on_resize(self, event: events.Resize) -> None:
        columns = queue_columns(event.size.width)
        if tuple(columns) != self.columns:  # a new set of columns drops every cached line
            self.set_columns(columns)


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

    # `var`, not `reactive`: a reactive also repaints the whole screen when
    # set, a second full frame per filter keystroke; the watchers below
    # repaint exactly what changed.
    sort_key: var[SortKey] = var("id", init=False)
    sort_reverse: var[bool] = var(True, init=False)
    """Newest first by default, as `sky jobs queue`."""
    scope: var[Scope] = var("all", init=False)
    filter_text: var[str] = var("", init=False)

    def __init__(self) -> None:
        super().__init__()
        self._row_cache: dict[int, RowCacheEntry] = {}
        self._last_rows: dict[int, list[TableRow]] = {}
        """Each job's latest rows (those in `_row_cache`), for `_table_rows`'s fast path."""
        self._haystack_cache: dict[int, tuple[JobView, tuple[str, str | None]]] = {}
        self._order: list[int] = []
        self._order_set: set[int] = set()
        self._order_key: tuple[str, bool] | None = None
        self._shown: list[int] = []
        """The ids of the jobs in the table, in display order (scope and filter applied)."""
        self._shown_set: set[int] = set()
        self._shown_filter = JobFilter("")
        """The filter `_shown` was made with."""
        self._stale = False
        """Out of date in ways only a full redraw fixes; done when next shown."""
        self._header: dict[str, str] = {}
        """What each header Static shows: an update re-lays out the screen, so only on change."""

    def compose(self) -> ComposeResult:
        yield ControllerBanner()
        with Horizontal(id="jobs-header"):
            yield Static("Loading jobs…", id="jobs-summary")
            yield Static("", id="jobs-view")
        yield QueueTable(id="jobs-table")
        yield Input(placeholder="filter: a regex; !regex inverts; enter applies, esc clears", id="jobs-filter")
        yield Static("", id="jobs-empty")
        yield QuietFooter()

    def on_mount(self) -> None:
        table = self.query_one(JobTable)
        table.set_columns(queue_columns(self.app.size.width))
        self.watch(self.tui, "jobs_revision", self._jobs_changed, init=False)
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
        stable = self.sort_key in ORDER_FIXED_SORTS  # both follow the id order
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
            jobs.values(), key=lambda v: (sort_value(v, self.sort_key, now), v.job.id), reverse=self.sort_reverse
        )
        return [v.job.id for v in views]

    def _matching(self, ids: Iterable[int], job_filter: JobFilter) -> list[int]:
        """The ids (in the given order) of the jobs in scope that pass the filter."""
        jobs = self.tui.jobs
        # Locals: a reactive read costs a microsecond, times ten thousand jobs.
        scope = self.scope
        filtering = job_filter.regex is not None
        if scope == "all" and not filtering:
            return list(ids)
        haystacks = self._haystack_cache
        haystack_of = self._haystack_of
        matches = job_filter.matches
        kept = []
        for job_id in ids:
            view = jobs[job_id]
            if scope == "active" and view.job.status in TERMINAL_NAMES:
                continue
            if scope == "faults" and not any(t.status in FAULTS for t in view.tasks):
                continue
            if filtering:
                # `_haystack_of`, its cache hit inlined: this runs per job per keystroke.
                cached = haystacks.get(job_id)
                if not matches(*(cached[1] if cached is not None and cached[0] is view else haystack_of(view))):
                    continue
            kept.append(job_id)
        return kept

    def _haystack_of(self, view: JobView) -> tuple[str, str | None]:
        """The text a filter searches, and its lower case if it is ASCII (see
        `JobFilter.matches`), kept until the job changes: a filter keystroke
        over ten thousand jobs should not rebuild ten thousand strings."""
        cached = self._haystack_cache.get(view.job.id)
        if cached is not None and cached[0] is view:
            return cached[1]
        text = haystack(view)
        texts = (text, text.lower() if text.isascii() else None)
        self._haystack_cache[view.job.id] = (view, texts)
        return texts

    def _rows_of(self, view: JobView, now: float) -> list[TableRow]:
        """A job's table rows, cached: the feed replaces a JobView object when the
        job changes, and its text only moves with the clock (durations each
        second while it runs, "N mins ago" each minute once it has finished)."""
        job_id = view.job.id
        cached = self._row_cache.get(job_id)
        if cached is not None and cached[0] is view:
            finished = cached[1]
            if cached[2] == self._stamp(job_id, finished, now):
                return cached[3]
        else:
            finished = view.job.status in TERMINAL_NAMES
        rows = [
            TableRow(line.key, line.cells, dim=line.finished, indent=line.task_idx is not None)
            for line in queue_lines(view, now)
        ]
        self._row_cache[job_id] = (view, finished, self._stamp(job_id, finished, now), rows)
        self._last_rows[job_id] = rows
        return rows

    @staticmethod
    def _stamp(job_id: int, finished: bool, now: float) -> int:
        """The clock, as coarse as a job's rows need it: seconds while it runs.
        Finished jobs' "N mins ago" moves once a minute; spread over the minute
        by id, so ten thousand rows never expire in the same frame."""
        return int((now + job_id) // 60) if finished else int(now)

    def _table_rows(
        self, ids: Iterable[int], now: float, *, stale_ok: bool = False, changed_only: bool = False
    ) -> list[TableRow]:
        """The rows of these jobs, in order: `_rows_of` for each, its cache
        check inlined, as this loop runs over every shown job.

        `stale_ok` takes cached rows as they are (only jobs never rendered are
        rendered): for the whole table, of which only the lines on screen
        must be current. `changed_only` returns only the rows re-rendered.
        """
        if stale_ok:
            try:
                # Every job rendered before (the usual case): a C-speed concatenation.
                return list(chain.from_iterable(map(self._last_rows.__getitem__, ids)))
            except KeyError:
                pass
        jobs = self.tui.jobs
        cache = self._row_cache
        rows_of = self._rows_of
        second = int(now)
        rows: list[TableRow] = []
        extend = rows.extend
        for job_id in ids:
            view = jobs[job_id]
            cached = cache.get(job_id)
            if cached is not None and (
                stale_ok
                or cached[0] is view and cached[2] == (int((now + job_id) // 60) if cached[1] else second)
            ):
                if not changed_only:
                    extend(cached[3])
            else:
                extend(rows_of(view, now))
        return rows

    def fresh_rows_for(self, rows: Sequence[TableRow]) -> list[TableRow]:
        """New rows for the jobs of these rows whose rows are out of date."""
        jobs = self.tui.jobs
        # A job's rows are keyed "12", "12/0", "12/1"...: one id per job, in order.
        ids = [i for i in dict.fromkeys(int(row.key.partition("/")[0]) for row in rows) if i in jobs]
        return self._table_rows(ids, self.tui.clock(), changed_only=True)

    def _freshen_on_screen(self, only: set[int] | None = None) -> None:
        """Bring the rows on screen (of the jobs in `only`, if given) up to date.
        The rows off screen are left as they are: `QueueTable.freshen_rows`
        updates them if they scroll into view."""
        table = self.query_one(JobTable)
        rows = table.visible_rows()
        if only is not None:
            rows = tuple(row for row in rows if int(row.key.partition("/")[0]) in only)
        if rows and not table.update_rows(self.fresh_rows_for(rows)):
            # A job's rows changed shape (never, today: its tasks are fixed at submit).
            table.set_rows(self._table_rows(self._shown, self.tui.clock()))

    def _redraw(self) -> None:
        """Sort, scope, filter and lay out every job: for a new sort or scope,
        a filter that is not a narrowing of the last, new jobs, a full snapshot."""
        if not self.is_active:
            # Covered by the job or logs view: catch up when shown again.
            self._stale = True
            return
        self._stale = False
        job_filter = JobFilter(self.filter_text)
        self._show(self._matching(self._sorted_ids(self.tui.clock()), job_filter), job_filter)

    def _show(self, ids: list[int], job_filter: JobFilter) -> None:
        """Put these jobs (in this order) in the table, and say so in the header."""
        self._shown = ids
        self._shown_set = set(ids)
        self._shown_filter = job_filter
        self.query_one(JobTable).set_rows(self._table_rows(ids, self.tui.clock(), stale_ok=True))
        self._freshen_on_screen()
        self._update_header()

    def _update_header(self) -> None:
        jobs = self.tui.jobs
        active = [jobs[i] for i in self.tui.active_job_ids if i in jobs]
        # Its box (the header's width left of the view label) never depends
        # on its text: no layout pass for the feed's every change of counts.
        self._set_static("#jobs-summary", in_progress_summary(active), layout=False)
        # As the CLI's footer: when the view leaves jobs out, it says so, and how to see them.
        limited = len(self._shown) < len(jobs)
        shown = f"showing {len(self._shown):,} of {len(jobs):,} jobs" if limited else f"{len(jobs):,} jobs"
        labels = {"all": "all", "active": "active only · 0 for all", "faults": "faults only · 0 for all"}
        view_label = f"{shown} · {labels[self.scope]} · sorted by {self.sort_key}{' ↓' if self.sort_reverse else ' ↑'}"
        if self.filter_text:
            view_label += f" · /{self.filter_text} (esc clears)"
        self._set_static("#jobs-view", view_label)
        empty = self.query_one("#jobs-empty", Static)
        empty.display = not self._shown
        if not self._shown:
            self._set_static(
                "#jobs-empty",
                "No managed jobs yet. Launch one with `skytui jobs launch FILE`."
                if not jobs else "No job matches this view (0: all, esc: clear the filter).",
            )

    def _set_static(self, selector: str, text: str, *, layout: bool = True) -> None:
        if self._header.get(selector) != text:
            self._header[selector] = text
            self.query_one(selector, Static).update(text, layout=layout)

    def _jobs_changed(self) -> None:
        """The feed changed some jobs: patch their rows, or redraw when that can't do."""
        changed = self.tui.last_changed
        if changed is None or self._stale or not self._can_patch(changed):
            self._redraw()
        else:
            self._patch(changed)
        if changed is None:
            self._index_for_filter()

    def _index_for_filter(self) -> None:
        """Make every job's filter text now, with the snapshot (before the app
        freezes it out of the GC), rather than on the first filter keystroke:
        ten thousand strings take longer than a keystroke's frame budget."""
        haystack_of = self._haystack_of
        for view in self.tui.jobs.values():
            haystack_of(view)

    def _can_patch(self, changed: frozenset[int]) -> bool:
        """True when the changed jobs keep their place in the order: they are
        all known, and the sort doesn't depend on what changes (status, ...)."""
        return (
            self.sort_key in ORDER_FIXED_SORTS
            and self._order_key == (self.sort_key, self.sort_reverse)
            and changed <= self._order_set
        )

    def _patch(self, changed: frozenset[int]) -> None:
        """Re-render the changed jobs that are on screen; rebuild the table only
        if one of them joined or left the view. Cheap enough to run while the
        screen is covered."""
        kept = set(self._matching(changed, self._shown_filter))
        joined = kept - self._shown_set
        left = (changed - kept) & self._shown_set
        if joined or left:
            shown = (self._shown_set | joined) - left
            self._show([i for i in self._sorted_ids(self.tui.clock()) if i in shown], self._shown_filter)
        else:
            self._freshen_on_screen(only=kept)
            self._update_header()

    def on_screen_resume(self) -> None:
        if self._stale:
            self._redraw()
        # Otherwise the resumed screen repaints, and the rows on screen are
        # freshened as they are painted (`QueueTable.freshen_rows`).
        self.tui.collect_garbage_after_frame(self)

    @on(JobTable.Highlighted)
    def _cursor_moved(self, _event: JobTable.Highlighted) -> None:
        self.tui.collect_garbage_after_frame(self)

    def _tick(self) -> None:
        # Durations tick while something runs; a finished queue stays still.
        if not self.tui.active_job_ids:
            return
        if self._stale or self.sort_key == "duration":
            self._redraw()  # the order itself moves with the clock
        elif self.is_active:
            self._freshen_on_screen()

    def watch_sort_key(self) -> None:
        self._redraw()

    def watch_sort_reverse(self) -> None:
        self._redraw()

    def watch_scope(self) -> None:
        self._redraw()

    def watch_filter_text(self, text: str) -> None:
        self._filter_to(JobFilter(text))
        self.tui.collect_garbage_after_frame(self)

    def _filter_to(self, job_filter: JobFilter) -> None:
        """Show the jobs `job_filter` keeps: of the jobs shown now, if it narrows
        the filter they were chosen by (a letter typed), else of every job."""
        if self._stale or not self.is_active or not job_filter.narrows(self._shown_filter):
            self._redraw()
            return
        ids = self._matching(self._shown, job_filter)
        if ids == self._shown:  # the keystroke kept the same jobs: their rows stand
            self._shown_filter = job_filter
            self._update_header()
        else:
            self._show(ids, job_filter)

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
            self.tui.open_job(selected[0], selected[1])

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
        self.notify(f"Cancelling {jobs_phrase(job_ids)}.")

    def action_filter(self) -> None:
        box = self.query_one("#jobs-filter", Input)
        box.value = self.filter_text
        box.display = True
        box.focus()
        self.tui.collect_garbage_after_frame(self)

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
