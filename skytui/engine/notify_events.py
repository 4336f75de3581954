"""Which events of the events table are news worth a notification, and what
a notification says: `Notification` (the webhook's JSON, the command's
environment) and `notifications_for` (event rows to notifications).

The categories a sink may pick (config.py `NotifySink.events`): "terminal"
(the job reached a terminal status), "recovery" (a task went RECOVERING),
"budget" (80 % and 100 % of --max-cost), "stall", "preemption-notice".

Reads the store (jobs, tasks, attempts, a job's later events); writes nothing.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from skytui.engine import event_kinds
from skytui.engine.status import TERMINAL_NAMES, TaskStatus
from skytui.engine.store import AsyncStore, EventRow, JobRow, TaskRow

TERMINAL = "terminal"
RECOVERY = "recovery"
BUDGET = "budget"
STALL = "stall"
PREEMPTION_NOTICE = "preemption-notice"
CATEGORIES = (TERMINAL, RECOVERY, BUDGET, STALL, PREEMPTION_NOTICE)

# Event kinds that are news as they are, and the category each belongs to.
_KIND_CATEGORY = {
    event_kinds.BUDGET_WARNING: BUDGET,
    event_kinds.BUDGET_REACHED: BUDGET,
    event_kinds.STALL: STALL,
    event_kinds.PREEMPTION_NOTICE: PREEMPTION_NOTICE,
}


@dataclass(frozen=True)
class Notification:
    """One piece of news about a job. `event` is the category for a status
    change ("terminal", "recovery") and the event kind otherwise ("budget-80",
    "budget-reached", "stall", "preemption-notice"): a receiver that tells
    80 % from 100 % needs the kind, a sink's filter needs the category."""

    event_id: int  # the events row: a receiver may use it to drop a repeat
    category: str
    event: str
    job: int
    name: str
    task: int | None
    status: str
    reason: str | None
    cost_usd: float | None
    at: float

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {
            "id": self.event_id, "job": self.job, "name": self.name, "task": self.task, "event": self.event,
            "status": self.status, "reason": self.reason,
            "cost": None if self.cost_usd is None else round(self.cost_usd, 4), "at": iso_time(self.at),
        }

    def environment(self) -> dict[str, str]:
        """A command sink's variables (values only: nothing here is run as code)."""
        env = {
            "SKYTUI_EVENT": self.event, "SKYTUI_EVENT_ID": str(self.event_id), "SKYTUI_JOB_ID": str(self.job),
            "SKYTUI_JOB_NAME": self.name, "SKYTUI_STATUS": self.status, "SKYTUI_AT": iso_time(self.at),
            "SKYTUI_TASK": "" if self.task is None else str(self.task), "SKYTUI_REASON": self.reason or "",
            "SKYTUI_COST_USD": "" if self.cost_usd is None else f"{self.cost_usd:.4f}",
        }
        return env


def iso_time(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def category_of(event: EventRow) -> str | None:
    """The category an event may be news of, before looking at its job
    (a terminal status change is news only if it ended the whole job)."""
    if event.job_id is None:
        return None
    if event.kind == event_kinds.STATUS:
        if event.to_status == TaskStatus.RECOVERING.value:
            return RECOVERY
        if event.to_status in TERMINAL_NAMES:
            return TERMINAL
        return None
    return _KIND_CATEGORY.get(event.kind)


async def notifications_for(store: AsyncStore, events: list[EventRow], now: float) -> dict[int, Notification]:
    """The notifications among `events`, by event id (an event that is not
    news has none). The jobs' rows are read in a few queries per call, not
    a few per event: a thousand jobs ending together is one page."""
    candidates = [(event, category) for event in events if (category := category_of(event)) is not None]
    job_ids = sorted({event.job_id for event, _ in candidates if event.job_id is not None})
    if not job_ids:
        return {}
    jobs = {job.id: job for job in await store.jobs_by_ids(job_ids)}
    tasks = await store.tasks_of_jobs(job_ids)
    # Unknown (None) until an attempt ran at a known price: a local job's $0
    # is a price, a job that never started has none.
    costs = {job_id: sum(a.cost(now) for a in attempts)
             for job_id, attempts in (await store.attempts_of_jobs(job_ids)).items()
             if any(a.price_per_hour is not None for a in attempts)}
    found: dict[int, Notification] = {}
    for event, category in candidates:
        assert event.job_id is not None
        job = jobs.get(event.job_id)
        if job is None:
            continue
        of_job = tasks.get(job.id, [])
        if category == TERMINAL and not await _ended_the_job(store, event, job, of_job):
            continue
        task = next((t for t in of_job if t.task_idx == event.task_idx), None)
        if category == TERMINAL and job.status != TaskStatus.SUCCEEDED.value:
            # The task that gave the job its status tells of it, not the last
            # one to end (a pipeline's later tasks end CANCELLED after one failed).
            task = next((t for t in of_job if t.status == job.status), task)
        found[event.id] = Notification(
            event_id=event.id, category=category, event=category if event.kind == event_kinds.STATUS else event.kind,
            job=job.id, name=job.name, task=task.task_idx if task is not None else event.task_idx,
            status=job.status if category == TERMINAL else (event.to_status or job.status),
            reason=_reason(event, category, job, task), cost_usd=costs.get(job.id), at=event.at,
        )
    return found


async def _ended_the_job(store: AsyncStore, event: EventRow, job: JobRow, tasks: list[TaskRow]) -> bool:
    """Whether this terminal status change is the one that ended the job:
    every task has ended (so no status event can follow) and no later event
    of the job ended a task. Read at any later time, the answer is the same,
    so a restarted notifier decides as the first one did."""
    if job.status not in TERMINAL_NAMES or not all(t.status in TERMINAL_NAMES for t in tasks):
        return False
    later = await store.events(after_id=event.id, job_id=job.id)
    return not any(e.kind == event_kinds.STATUS and e.to_status in TERMINAL_NAMES for e in later)


def _reason(event: EventRow, category: str, job: JobRow, task: TaskRow | None) -> str | None:
    if category != TERMINAL:
        return event.message
    if job.status == TaskStatus.SUCCEEDED.value:
        return None
    if task is None:
        return event.message
    own_event = task.task_idx == event.task_idx
    return task.failure_reason or task.status_reason or (event.message if own_event else None)
