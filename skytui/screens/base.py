"""What every skytui screen shares: the typed app, and feeding a log view
from the client's job follow (the body of a thread worker).

`SkyAppBase` is what the screens use of the app, declared here so that no
screen imports `skytui.app` (which imports the screens): the app derives from
it. May touch the client, the widgets and Textual; never `skytui.app`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker, get_current_worker

from skytui.client import Client, JobView
from skytui.widgets.controller_banner import UP, ControllerState

if TYPE_CHECKING:  # only the screens that show a log load it
    from skytui.widgets.log_view import LogView


class SkyAppBase(App[None]):
    """The app as the screens know it: its state and the calls they make.
    `skytui.app.SkyTUI` is the one implementation."""

    jobs_revision: reactive[int] = reactive(0, init=False)
    """Bumped whenever `jobs` changed; screens watch it."""
    controller: reactive[ControllerState] = reactive(UP, init=False)
    """The controller as last checked; banners watch it."""

    client: Client
    jobs: dict[int, JobView]
    """Every job the app knows, by id: the queue's source of truth on screen."""
    last_changed: frozenset[int] | None
    """The jobs the last update touched; None after a full snapshot."""
    active_job_ids: set[int]
    """Jobs not finished yet: what ticks, and what the header counts."""
    loaded: bool

    def clock(self) -> float:
        """Now, for everything shown."""
        raise NotImplementedError

    def open_job(self, job_id: int, task_idx: int | None = None) -> None:
        """Push the job view for `job_id`."""
        raise NotImplementedError

    def collect_garbage(self) -> None:
        """A full garbage collection, at a moment no key is waiting for a frame."""
        raise NotImplementedError

    def collect_garbage_after_frame(self, screen: Screen[Any]) -> None:
        """Collect garbage (if one is due) right after `screen`'s next frame."""
        raise NotImplementedError

    def is_on_a_stack(self, screen: Screen[Any]) -> bool:
        """True while `screen` is pushed, in any mode."""
        raise NotImplementedError


class SkyScreen(Screen[None]):
    @property
    def tui(self) -> SkyAppBase:
        assert isinstance(self.app, SkyAppBase)
        return self.app

    def feed_job_log(
        self, view: LogView, job_id: int, task_idx: int | None, *, tail_bytes: int, poll_s: float
    ) -> None:
        """Follow a job's log into `view` until the job ends and its last line
        is shown, or the worker is cancelled. Runs in a thread worker; the
        view is only touched on the app's loop."""
        worker = get_current_worker()
        steps = self.tui.client.follow_job(
            job_id, task_idx, tail_bytes=tail_bytes, with_events=False, poll_s=poll_s, rest_after_output=False
        )
        for step in steps:
            if worker.is_cancelled:
                return
            lines = step.lines
            if lines:
                self.app.call_from_thread(_append_unless_cancelled, worker, view, lines)


def _append_unless_cancelled(worker: Worker[None], view: LogView, lines: list[str]) -> None:
    """On the app's loop: the worker may have been cancelled (and the view
    cleared for another job or task) after it read these lines."""
    if not worker.is_cancelled:
        view.append_lines(lines)
