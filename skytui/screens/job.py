"""One job (`enter`): the pipeline as a tree of tasks and attempts, the event
timeline, what was asked and where it landed, and the selected task's log.

The app keeps one JobScreen and re-points it at each job opened (`show_job`):
its first frame is painted from the queue's copy of the job (`app.jobs`), and
everything else is read through the client in thread workers started after
that frame. The screen reloads when the app's feed says this job changed.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Log, Static, Tree

from skytui.client import AttemptRow, CostReport, EventRow, JobView
from skytui.engine.status import TERMINAL_NAMES
from skytui.format import readable_cost, readable_duration, readable_lost_share, status_style
from skytui.screens.base import SkyScreen
from skytui.widgets.controller_banner import ControllerBanner
from skytui.widgets.footer import QuietFooter
from skytui.widgets.job_details import attempt_label, attempt_place, event_line, resources_text
from skytui.widgets.log_view import LogView

TAIL_BYTES = 1 << 20
DETAILS_GROUP = "job-details"
LOG_GROUP = "job-log"


class JobScreen(SkyScreen):
    BINDING_GROUP_TITLE = "Job"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="job.back"),
        Binding("q", "app.pop_screen", "Back", show=False, id="job.quit"),
        Binding("l", "logs", "Full logs", id="job.logs"),
        Binding("p", "controller_logs", "Controller log", id="job.controller_logs"),
        Binding("ctrl+d", "cancel_job", "Cancel job", id="job.cancel"),
    ]

    def __init__(self, job_id: int, task_idx: int | None = None) -> None:
        super().__init__()
        self.job_id = job_id
        self.task_idx = task_idx
        self._last_event = 0
        self._spec: dict[str, Any] | None = None
        self._generation = 0
        """Bumped for each job shown, so details read for an earlier job are dropped."""
        self._details_stale = True
        """The details (timeline, attempts, resources) need reading, once the screen is up."""
        self._log_pending = True
        """The log stream is not started for the job shown yet."""
        self._css_seen = -1
        """The app's CSS revision when this screen last restyled itself."""
        self._ledger: CostReport | None = None
        """The job's spend, per attempt (read with the details)."""
        self._attempts: list[AttemptRow] = []
        """The job's attempts as last read: the Resources panel says what was chosen."""

    def compose(self) -> ComposeResult:
        yield ControllerBanner()
        yield Static("", id="job-title")
        with Horizontal(id="job-body"):
            with Vertical(id="job-left"):
                yield Tree("tasks", id="job-tree")
                yield Static("", id="job-resources")
            with Vertical(id="job-right"):
                yield Log(id="job-events", max_lines=2000)
                yield LogView(id="job-log")
        yield QuietFooter()

    def on_mount(self) -> None:
        if not self.app.is_running:
            return  # mounted as the app shuts down, its children already gone
        tree = self.query_one(Tree)
        tree.show_root = False
        tree.border_title = "Tasks and attempts"
        self.query_one("#job-resources").border_title = "Resources"
        self.query_one("#job-events").border_title = "Timeline"
        self.query_one("#job-log").border_title = "Log"
        self.watch(self.tui, "jobs_revision", self._job_changed, init=False)
        self._open()

    def show_job(self, job_id: int, task_idx: int | None = None) -> None:
        """Point this screen at another job, before it is pushed again.

        Nothing of the previous job survives: its workers are stopped and
        every panel is cleared or repainted for the new job at once.
        """
        self.job_id = job_id
        self.task_idx = task_idx
        if self.is_mounted:
            self._open()

    def _open(self) -> None:
        """Paint what the queue already knows of the job; the rest is read
        after the first frame (`on_screen_resume`), so the key that opened
        the job is answered by a frame, not by a thread worker's start-up."""
        self._generation += 1
        self._stop_workers()
        self._last_event = 0
        self._spec = None
        self._ledger = None
        self._attempts = []
        self._details_stale = True
        self._log_pending = True
        self.query_one("#job-events", Log).clear()
        self.query_one("#job-log", LogView).clear()
        self.query_one("#job-resources", Static).update("")
        tree = self.query_one(Tree)
        tree.clear()
        # As in a new Tree: the first fill highlights the first task, which
        # selects the log shown (`_task_highlighted`).
        tree.cursor_line = -1
        tree.focus()
        view = self.tui.jobs.get(self.job_id)
        if view is None:
            self.query_one("#job-title", Static).update("")
        else:
            self._show_title(view)
            self._fill_tree(view, view.attempts, self.tui.clock())

    @on(events.ScreenResume)
    def _restyle_only_if_css_changed(self, event: events.ScreenResume) -> None:
        """Each push restyles every widget of the screen (5-15 ms), in case the
        app's CSS changed (a theme switch) while the screen was off the stack.
        This one is pushed for every job opened: restyle only when the CSS did
        change, which Textual counts. Runs before Screen's own handler."""
        seen = self.app._css_update_count
        if self._css_seen == seen:
            event.refresh_styles = False
        self._css_seen = seen

    def on_screen_resume(self) -> None:
        if self._details_stale or self._log_pending:
            self.call_after_refresh(self._catch_up, self._generation)

    def on_screen_suspend(self) -> None:
        # Popped (not merely covered by the logs view or a dialog): a job
        # nobody looks at must not keep a thread polling its log.
        if not self.tui.is_on_a_stack(self):
            self._stop_workers()

    def _stop_workers(self) -> None:
        self.workers.cancel_group(self, DETAILS_GROUP)
        self.workers.cancel_group(self, LOG_GROUP)

    def _catch_up(self, generation: int) -> None:
        """Start what the job shown still needs read; run after a frame."""
        if generation != self._generation or not self.is_active:
            return  # another job was opened, or the screen left, before the frame
        self.tui.collect_garbage()  # the frame answering `enter` is out: a quiet moment
        if self._details_stale:
            self._reload()
        if self._log_pending:
            self._log_pending = False
            self.stream_log(self.query_one("#job-log", LogView), self.job_id, self.task_idx)

    # -------------------------------------------------------------- loading

    def _job_changed(self) -> None:
        changed = self.tui.last_changed
        if changed is not None and self.job_id not in changed:
            return
        if self.is_active:
            self._reload()
        else:
            self._details_stale = True  # read when shown again

    def _reload(self) -> None:
        self._details_stale = False
        self.load_details(self.job_id, self._generation, self._last_event, self._spec is None)

    @work(thread=True, exclusive=True, group=DETAILS_GROUP, name="job details")
    def load_details(self, job_id: int, generation: int, after_event: int, with_spec: bool) -> None:
        client = self.tui.client
        view = client.job(job_id)
        if view is None:
            return
        attempts = client.attempts(job_id)
        events = client.events(after_id=after_event, job_id=job_id)
        spec = client.job_spec(job_id) if with_spec else None
        ledger = client.cost_report(job_id=job_id, days=None, now=self.tui.clock())
        self.app.call_from_thread(self._deliver, generation, view, attempts, events, spec, ledger)

    def _deliver(
        self, generation: int, view: JobView, attempts: list[AttemptRow], events: list[EventRow],
        spec: dict[str, Any] | None, ledger: CostReport,
    ) -> None:
        if generation != self._generation:
            return  # read for a job this screen no longer shows
        if spec is not None and self._spec is None:
            self._spec = spec
        self._ledger = ledger
        # Two reads may overlap (the feed reports changes quickly): show each event once.
        self._show(view, attempts, [e for e in events if e.id > self._last_event])

    def _show(self, view: JobView, attempts: list[AttemptRow], events: list[EventRow]) -> None:
        now = self.tui.clock()
        self._attempts = attempts
        self._show_title(view)
        self._fill_tree(view, attempts, now)
        if events:
            self._last_event = events[-1].id
            self.query_one("#job-events", Log).write_lines([event_line(e) for e in events])
        self._show_resources(view)

    def _show_title(self, view: JobView) -> None:
        job = view.job
        title = Text(f"Job {job.id} · {job.name} · ")
        title.append(job.status, style=status_style(job.status))
        title.append(f" · submitted {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(job.submitted_at))}")
        total = self._ledger.total if self._ledger is not None else None
        if total is not None and total.spent > 0:
            title.append(f" · spent {readable_cost(total.spent)}, lost {readable_cost(total.lost)} "
                         f"({readable_lost_share(total.spent, total.lost)})")
        # One line, whatever it says: no layout pass needed.
        self.query_one("#job-title", Static).update(title, layout=False)

    def _fill_tree(self, view: JobView, attempts: list[AttemptRow], now: float) -> None:
        tree = self.query_one(Tree)
        cursor = tree.cursor_line
        tree.clear()
        # A job group's tasks run side by side (∥), a pipeline's one after another.
        tree.border_title = "Tasks (parallel) and attempts" if view.is_group else "Tasks and attempts"
        spends = {(s.task_idx, s.attempt_no): s for s in self._ledger.attempts} if self._ledger else {}
        for task in view.tasks:
            label = Text(f"{'∥ ' if view.is_group else ''}{task.task_idx} {task.name} ")
            if view.marked_primary(task):
                label.append("[P] ", style="bold")
            label.append(task.status, style=status_style(task.status))
            label.append(f" · {readable_duration(task.duration_s(now) if task.started_at else None)}")
            if task.recoveries:
                label.append(f" · {task.recoveries} recover{'ies' if task.recoveries > 1 else 'y'}")
            if task.failure_reason:
                label.append(f" · {task.failure_reason}", style="red")
            node = tree.root.add(label, data=task.task_idx, expand=True)
            for attempt in (a for a in attempts if a.task_idx == task.task_idx):
                spend = spends.get((attempt.task_idx, attempt.attempt_no))
                # Two lines, so that a narrow tree keeps the duration and cost in view.
                line = node.add(attempt_label(attempt, now, spend), data=task.task_idx, expand=True,
                                allow_expand=False)
                line.add_leaf(attempt_place(attempt), data=task.task_idx)
        tree.cursor_line = max(0, min(cursor, tree.last_line))

    def _show_resources(self, view: JobView) -> None:
        task_idx = self.task_idx if self.task_idx is not None else (
            view.current_task.task_idx if view.current_task else 0
        )
        task = view.tasks[task_idx] if task_idx < len(view.tasks) else None
        if task is None or self._spec is None:
            return
        spec = self._spec["tasks"][task_idx] if task_idx < len(self._spec["tasks"]) else {}
        tried = [a for a in self._attempts if a.task_idx == task_idx]
        latest = max(tried, key=lambda a: a.attempt_no) if tried else None
        self.query_one("#job-resources", Static).update(resources_text(task, spec, latest))

    @work(thread=True, exclusive=True, group=LOG_GROUP, name="job log")
    def stream_log(self, view: LogView, job_id: int, task_idx: int | None) -> None:
        self.feed_job_log(view, job_id, task_idx, tail_bytes=TAIL_BYTES, poll_s=0.2)

    # -------------------------------------------------------------- actions

    @on(Tree.NodeHighlighted)
    def _task_highlighted(self, event: Tree.NodeHighlighted[int]) -> None:
        task_idx = event.node.data
        if task_idx is None or task_idx == self.task_idx:
            return
        self.task_idx = task_idx
        view = self.tui.jobs.get(self.job_id)
        if view is not None:
            self._show_resources(view)
        if self._log_pending:
            return  # the stream starts after the first frame, on this task
        log = self.query_one("#job-log", LogView)
        log.clear()
        self.stream_log(log, self.job_id, task_idx)

    def action_logs(self) -> None:
        from skytui.screens.logs import LogsScreen

        self.app.push_screen(LogsScreen(self.job_id, self.task_idx))

    def action_controller_logs(self) -> None:
        from skytui.screens.logs import LogsScreen

        screen = LogsScreen(self.job_id, self.task_idx)
        screen.set_reactive(LogsScreen.controller, True)
        self.app.push_screen(screen)

    def action_cancel_job(self) -> None:
        view = self.tui.jobs.get(self.job_id)
        if view is None or view.job.status in TERMINAL_NAMES:
            self.notify("This job has finished; there is nothing to cancel.", severity="warning")
            return
        from skytui.screens.confirm import ConfirmCancel

        def cancel(confirmed: bool | None) -> None:
            if confirmed:
                self.run_worker(lambda: self.tui.client.cancel([self.job_id]), thread=True, group="cancel")
                self.notify(f"Cancelling job {self.job_id}.")

        self.app.push_screen(ConfirmCancel([self.job_id]), cancel)
