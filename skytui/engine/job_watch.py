"""What the reconcile loop looks at every few seconds besides intents: the
budgets of jobs launched with `--max-cost` and the output of jobs launched
with `--stall-timeout`.

Budgets: at 80 % of it spent, a BUDGET_WARNING event (once); at 100 %, a
BUDGET_REACHED event and a cancel whose reason, "budget reached ($X of $Y)",
is what the job ends CANCELLED with (the controller's usual cancel: nothing
is left running). Spent is what the queue's COST shows.

Stalls: a RUNNING task whose log files have not grown for its timeout gets a
STALL event and the `stalled:` status reason the faces mark; with
`jobs.stall_action: restart` its run is stopped and restarted as a failure of
the user's code (counted against max_restarts_on_errors). Output coming again
clears the mark (STALL_CLEARED). A job that prints nothing costs one stat of
its log files per look, no node round trip.

Owns `JobWatch`. May touch the store, the local log files (stat only) and
the job coroutines it is handed (`restart_stalled`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from skytui.engine import event_kinds
from skytui.engine.status import STALLED_PREFIX, is_stalled
from skytui.engine.store import AsyncStore, BudgetState, RunningTask
from skytui.logs.store import task_log_path

log = logging.getLogger("skytui.watch")

WATCH_EVERY_S = 5.0
# A budget's threshold due sooner than the next look is looked at when it
# comes (a little after), not up to WATCH_EVERY_S late.
MIN_LOOK_S = 0.25
BUDGET_WARNING_SHARE = 0.8


class StallRestartable(Protocol):
    async def restart_stalled(self, task_idx: int, reason: str) -> None: ...


def budget_reason(spent: float, budget: float) -> str:
    return f"budget reached (${spent:.2f} of ${budget:.2f})"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole % 3600 == 0 and whole >= 3600:
        return f"{whole // 3600}h"
    if whole % 60 == 0 and whole >= 60:
        return f"{whole // 60}m"
    return f"{whole}s"


def last_output_at(job_logs: Path, task: RunningTask) -> float | None:
    """When any node of the task last wrote a byte to its stored log."""
    latest: float | None = None
    for rank in range(max(1, task.num_nodes)):
        try:
            mtime = os.stat(task_log_path(job_logs, task.job_id, task.task_idx, rank)).st_mtime
        except OSError:
            continue
        latest = mtime if latest is None else max(latest, mtime)
    return latest


class JobWatch:
    def __init__(
        self, store: AsyncStore, job_logs: Path, *, restart_on_stall: bool,
        controllers: Mapping[int, StallRestartable], wake: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.job_logs = job_logs
        self.restart_on_stall = restart_on_stall
        self.controllers = controllers
        self.wake = wake
        self.clock = clock
        self.next_look_in_s = WATCH_EVERY_S
        """When the reconcile loop should look again (a budget threshold may be due sooner)."""
        # Stopping a stalled run reaches its node: never inside the loop's pass.
        self._restarting: set[asyncio.Task[None]] = set()

    async def check(self) -> None:
        now = self.clock()
        try:
            await self._budgets(now)
            await self._stalls(now)
        except Exception:  # noqa: BLE001 - a DB hiccup must not stop the loop; the next look retries
            log.exception("the budget and stall watch failed; looking again shortly")

    async def _budgets(self, now: float) -> None:
        self.next_look_in_s = WATCH_EVERY_S
        for state in await self.store.budget_states(now):
            self._plan_next_look(state)
            job_id, spent, budget = state.job_id, state.spent_usd, state.max_cost_usd
            if spent >= BUDGET_WARNING_SHARE * budget and not state.warned:
                # Said before the stop, even when both came between two looks.
                await self.store.note(job_id, None, event_kinds.BUDGET_WARNING,
                                      f"{min(spent / budget, 1.0):.0%} of the budget spent "
                                      f"(${spent:.2f} of ${budget:.2f})")
            if spent >= budget:
                reason = budget_reason(spent, budget)
                if await self.store.request_cancel([job_id], reason):
                    await self.store.note(job_id, None, event_kinds.BUDGET_REACHED, f"{reason}: stopping the job")
                    log.info("job %s: %s; stopping it", job_id, reason)
                    self.wake()  # the loop delivers the cancel now, not at its next tick

    def _plan_next_look(self, state: BudgetState) -> None:
        """Look again when this job's next threshold comes, at what it burns now."""
        if state.burn_per_hour <= 0:
            return
        threshold = state.max_cost_usd if state.warned else BUDGET_WARNING_SHARE * state.max_cost_usd
        due_s = (threshold - state.spent_usd) / state.burn_per_hour * 3600
        if due_s > 0:
            self.next_look_in_s = min(self.next_look_in_s, max(MIN_LOOK_S, due_s + 0.05))

    async def _stalls(self, now: float) -> None:
        tasks = await self.store.running_tasks_with_stall_timeout()
        if not tasks:
            return
        last = await asyncio.to_thread(lambda: [last_output_at(self.job_logs, task) for task in tasks])
        for task, output_at in zip(tasks, last):
            since = max(output_at or 0.0, task.run_started_at or 0.0)
            stalled = is_stalled("RUNNING", task.status_reason)
            if since and now - since >= task.stall_timeout_s:
                if not stalled:
                    await self._stalled(task, since)
            elif stalled:
                await self.store.set_task_fields(task.job_id, task.task_idx, status_reason=None)
                await self.store.note(task.job_id, task.task_idx, event_kinds.STALL_CLEARED, "output resumed")

    async def _stalled(self, task: RunningTask, since: float) -> None:
        reason = f"{STALLED_PREFIX} no log output for {_duration(task.stall_timeout_s)}"
        at = time.strftime("%H:%M:%S", time.localtime(since))
        restart = self.restart_on_stall and task.job_id in self.controllers
        await self.store.set_task_fields(task.job_id, task.task_idx, status_reason=reason)
        await self.store.note(task.job_id, task.task_idx, event_kinds.STALL,
                              f"{reason} (last output at {at}); "
                              + ("restarting its run (jobs.stall_action: restart)" if restart else "it keeps running"))
        if restart:
            stopping = asyncio.create_task(self.controllers[task.job_id].restart_stalled(task.task_idx, reason),
                                           name=f"stall-restart-{task.job_id}-{task.task_idx}")
            self._restarting.add(stopping)
            stopping.add_done_callback(self._restarting.discard)
