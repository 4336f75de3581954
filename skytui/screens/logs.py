"""The logs view (`l`): a job's output as it is written, every attempt.

A thread worker polls the client's log follower (which opens big logs at
their tail and reads in bounded steps) and hands each batch of lines to a
line-API view, so a chatty job never turns into one widget update per line.
`p` flips to the controller's own account of the job (placements, failures,
cleanup); `s` switches between all tasks and one task of a pipeline.
"""

from __future__ import annotations

import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import Footer, Input, Static
from textual.worker import get_current_worker

from skytui.screens.base import SkyScreen
from skytui.widgets.controller_banner import ControllerBanner
from skytui.widgets.log_view import LogView

TAIL_BYTES = 4 << 20  # open at the last few MB: a 1 GB log shows at once
POLL_S = 0.1


class LogsScreen(SkyScreen):
    BINDING_GROUP_TITLE = "Logs"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="logs.back"),
        Binding("q", "app.pop_screen", "Back", show=False, id="logs.quit"),
        Binding("slash", "search", "Search", id="logs.search"),
        Binding("p", "toggle_controller", "Controller log", id="logs.controller"),
        Binding("s", "switch_task", "Switch task", id="logs.switch_task"),
    ]

    task_idx: reactive[int | None] = reactive(None, init=False)
    controller: reactive[bool] = reactive(False, init=False)

    def __init__(self, job_id: int, task_idx: int | None = None) -> None:
        super().__init__()
        self.job_id = job_id
        self.set_reactive(LogsScreen.task_idx, task_idx)

    def compose(self) -> ComposeResult:
        yield ControllerBanner()
        yield Static("", id="logs-title")
        yield LogView(id="logs-view")
        yield Input(placeholder="search (enter: find, n/N: next/previous, esc: close)", id="logs-search")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(LogView).focus()
        self._restart()

    def _title(self, follow: bool = True, pending: int = 0) -> None:
        view = self.tui.jobs.get(self.job_id)
        name = view.job.name if view else "?"
        what = "controller log" if self.controller else (
            "all tasks" if self.task_idx is None else f"task {self.task_idx}"
        )
        state = "following" if follow else f"paused — {pending} new line{'s' if pending != 1 else ''}, G to resume"
        self.query_one("#logs-title", Static).update(f"Logs · job {self.job_id} ({name}) · {what} · {state}")

    def _restart(self) -> None:
        self.query_one(LogView).clear()
        self._title()
        self.stream()

    @work(thread=True, exclusive=True, group="log-stream", name="log stream")
    def stream(self) -> None:
        if self.controller:
            self._stream_file(get_current_worker())
            return
        view = self.query_one(LogView)
        self.feed_job_log(view, self.job_id, self.task_idx, tail_bytes=TAIL_BYTES, poll_s=POLL_S)

    def _stream_file(self, worker: object) -> None:
        client = self.tui.client
        position = 0
        pending = b""
        while not getattr(worker, "is_cancelled", False):
            data = client.read_controller_log(self.job_id, position)
            position += len(data)
            *lines, pending = (pending + data).split(b"\n")
            if lines:
                decoded = [line.decode("utf-8", errors="replace") for line in lines]
                self.app.call_from_thread(self.query_one(LogView).append_lines, decoded)
            else:
                time.sleep(POLL_S * 3)

    @on(LogView.FollowChanged)
    def _follow_changed(self, event: LogView.FollowChanged) -> None:
        self._title(event.follow, event.pending)

    def action_toggle_controller(self) -> None:
        self.controller = not self.controller

    def watch_controller(self) -> None:
        self._restart()

    def action_switch_task(self) -> None:
        view = self.tui.jobs.get(self.job_id)
        count = len(view.tasks) if view else 1
        if count <= 1:
            self.notify("This job has a single task.")
            return
        order: list[int | None] = [None, *range(count)]
        self.task_idx = order[(order.index(self.task_idx) + 1) % len(order)]

    def watch_task_idx(self) -> None:
        self._restart()

    def action_search(self) -> None:
        box = self.query_one("#logs-search", Input)
        box.display = True
        box.focus()

    @on(Input.Submitted, "#logs-search")
    def _search(self, event: Input.Submitted) -> None:
        found = self.query_one(LogView).search(event.value) if event.value else 0
        event.input.display = False
        self.query_one(LogView).focus()
        if event.value:
            self.notify(f"{found} matching line{'s' if found != 1 else ''} for {event.value!r}")
