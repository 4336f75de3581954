"""What every skytui screen shares: the typed app, and feeding a log view
from the client's log follower (the body of a thread worker)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual.screen import Screen
from textual.worker import Worker, get_current_worker

from skytui.engine.status import TERMINAL_NAMES
from skytui.widgets.log_view import LogView

if TYPE_CHECKING:
    from skytui.app import SkyTUI


class SkyScreen(Screen[None]):
    @property
    def tui(self) -> SkyTUI:
        from skytui.app import SkyTUI

        assert isinstance(self.app, SkyTUI)
        return self.app

    def feed_job_log(
        self, view: LogView, job_id: int, task_idx: int | None, *, tail_bytes: int, poll_s: float
    ) -> None:
        """Follow a job's log into `view` until the job ends and its last line
        is shown, or the worker is cancelled. Runs in a thread worker; the
        view is only touched on the app's loop."""
        worker = get_current_worker()
        client = self.tui.client
        follower = client.log_follower(job_id, task_idx, tail_bytes=tail_bytes)
        while not worker.is_cancelled:
            job = client.job(job_id)
            finished = job is None or job.job.status in TERMINAL_NAMES
            lines = follower.poll(final=finished)
            if lines and not worker.is_cancelled:
                self.app.call_from_thread(_append_unless_cancelled, worker, view, lines)
            if finished and not lines:
                return
            if not lines:
                time.sleep(poll_s)


def _append_unless_cancelled(worker: Worker[None], view: LogView, lines: list[str]) -> None:
    """On the app's loop: the worker may have been cancelled (and the view
    cleared for another job or task) after it read these lines."""
    if not worker.is_cancelled:
        view.append_lines(lines)
