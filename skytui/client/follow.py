"""Following through the client: the one loop both faces watch a job and
the queue with.

Owns `follow_job` (snapshot -> events -> logs -> stop at a terminal state:
what `skytui jobs logs` and `--run` print, and what the TUI's log views
show) and `follow_queue` (a snapshot, then the jobs that changed, by event
id: the TUI's live queue). They read only through the client's public
methods, so they keep working whatever answers those (a controller on
another machine included). They never print and never touch a widget: the
faces render each step themselves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skytui.client.views import JobView
from skytui.engine.status import TERMINAL
from skytui.engine.store import EventRow

if TYPE_CHECKING:
    from skytui.client.api import Client


@dataclass(frozen=True)
class FollowStep:
    """One look at a followed job."""

    view: JobView | None
    """The job as read at this step; None once it is not there (never was, or gone)."""
    output: list[str | EventRow]
    """Its new log lines (str) and, when events are followed, its news
    (EventRow), in the order they happened: earlier tasks' output before a
    later task's news."""
    finished: bool
    """The job had ended (or is not there) when this step read it; its
    output up to the end is in this step and the next ones."""

    @property
    def lines(self) -> list[str]:
        """The log lines alone."""
        return [item for item in self.output if isinstance(item, str)]


def follow_job(
    client: Client, job_id: int, task_idx: int | None = None, *, tail_bytes: int | None = None,
    with_events: bool = True, poll_s: float = 0.2, rest_after_output: bool = True,
) -> Iterator[FollowStep]:
    """Steps of a job until it has ended and its last line is out.

    Each step reads the job, then its events since the last step (with
    `with_events`), then the log lines that came meanwhile. A caller that
    has seen enough (a finished step, a cancelled worker, `--no-follow`)
    just stops iterating. Between steps it waits `poll_s`, or, without
    `rest_after_output`, only when a step brought no output, so that a big
    log is read in steps back to back.
    """
    follower = client.log_follower(job_id, task_idx, tail_bytes=tail_bytes)
    last_event = 0
    while True:
        view = client.job(job_id)
        output: list[str | EventRow] = []
        if with_events and view is not None:
            for event in client.events(after_id=last_event, job_id=job_id):
                last_event = event.id
                if event.task_idx is not None:
                    # Earlier tasks' output comes before a later task's news.
                    output += follower.poll(before_task=event.task_idx)
                output.append(event)
        finished = view is None or view.status in TERMINAL
        output += follower.poll(final=finished)
        yield FollowStep(view, output, finished)
        if finished and not output:
            return
        if rest_after_output or not output:
            time.sleep(poll_s)


@dataclass(frozen=True)
class QueueUpdate:
    """Jobs read at one look at the queue."""

    views: list[JobView]
    full: bool
    """A snapshot (every job, or the newest `first_paint`), not only those that changed."""


def follow_queue(client: Client, *, first_paint: int, poll_s: float, follow: bool = True) -> Iterator[QueueUpdate]:
    """The newest `first_paint` jobs, then every job if there are more, then,
    with `follow`, the jobs changed since, every `poll_s` (an empty update
    when none did, so that the caller can stop between looks). Changes are
    followed from the first read's event id: nothing is missed."""
    views, last_event = client.snapshot(limit=first_paint)
    yield QueueUpdate(views, True)
    if len(views) == first_paint:
        everything, _ = client.snapshot()
        yield QueueUpdate(everything, True)
    while follow:
        time.sleep(poll_s)
        changed, last_event = client.changes(last_event)
        yield QueueUpdate(changed, False)
