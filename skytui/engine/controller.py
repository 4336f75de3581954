"""One coroutine per managed job: provision, set up, run, watch, recover, clean up.

Every step is resumable from the DB. The controller records what it is about
to do before doing it (an attempt, a cluster row, a log segment), and every
action on a node is idempotent (a phase starts at most once), so a controller
killed at any moment and started again picks each job up where it was:
running phases are re-attached, never restarted, and logs resume at the byte
where they stopped.

This module owns the job's state machine and its recovery decisions: the
tasks in order (or a job group's all at once), one attempt's run and its
outcome, restarts on errors, a lost machine's recovery, the final status.
The steps it calls live beside it: job_launch (a machine with setup done),
job_phases (env and phases), job_worker (a pool job's worker), job_cleanup
(teardown, cancel); job_base holds the state they share. Each is a class
JobController builds on: LaunchSteps(CleanupSteps(WorkerSteps), PhaseSteps),
all on JobBase, so a step calls another as `self._step(...)`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from skytui.clouds.base import infra_label
from skytui.engine.file_sync import discard_staging
from skytui.engine.job_base import StopReason, TaskFailed, log, phase_id_for
from skytui.engine.job_group import GroupNames
from skytui.engine.job_launch import LaunchSteps
from skytui.engine.phase_runner import NodeLost, PhaseOutcome
from skytui.engine.recovery import Place, RecoveryPolicy, restart_decision
from skytui.engine.status import PRIMARY, TaskStatus
from skytui.engine.store import CancelRequested, RunEndRequest, TaskRow
from skytui.spec import Task
from skytui.spec.stored import tasks_from_stored

__all__ = ["JobController", "StopReason", "TaskFailed", "load_tasks"]

S = TaskStatus
# A machine lost again within this long after its relaunch is retried after a
# growing pause, not in a tight loop; any other loss is relaunched at once.
FLAPPING_WINDOW_S = 60.0
FLAPPING_BACKOFF_MAX_S = 60.0


def _short_duration(seconds: float) -> str:
    """"45s", "12m", "3h 5m": how long a machine lasted, for one-line events."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    return f"{whole // 3600}h {whole % 3600 // 60}m"


class JobController(LaunchSteps):
    """One job's coroutine: `start`, `request_stop`, `stop_reason`; built with
    (ctx, job, tasks, group) as JobBase says."""

    def start(self, rows: list[TaskRow] | None = None) -> asyncio.Task[None]:
        """Start the job's coroutine; `rows`, its tasks' rows if the caller
        read them already (a thousand jobs started together, in one read)."""
        self._asyncio_task = asyncio.create_task(self.run(rows), name=f"job-{self.job.id}")
        return self._asyncio_task

    def request_stop(self, reason: StopReason, *, force: bool = False) -> None:
        """Stop the coroutine: a user's cancel, the controller stopping, or
        "ended": its job was cancelled before it started anything (it waited
        for a launch slot or a worker), so there is nothing to clean up.

        A cancel in progress finishes its cleanup undisturbed, unless `force`
        (the controller is stopping and waited long enough): the cancel is
        durable in the DB, and the next controller carries it on."""
        if self._asyncio_task is None or self._asyncio_task.done():
            return
        if (self.stop_reason == "user" or self._retiring) and not force:
            return
        if reason == "ended" and (self._clusters or self._lease is not None):
            reason = "user"  # it holds something after all: the full cancel cleans it up
        self.stop_reason = "shutdown" if force else reason
        self._asyncio_task.cancel()

    async def restart_stalled(self, task_idx: int, reason: str) -> None:
        """The stall watch's `restart`: stop the task's run; its end counts
        as a failure of the user's code (`_attempt`), restarted if allowed."""
        row = await self.store.task(self.job.id, task_idx)
        if row.status_enum is not S.RUNNING:
            return
        self._stalled[task_idx] = reason
        self._say(f"task {task_idx}: {reason}; stopping its run to restart it")
        for cluster in list(self._clusters.values()):
            if cluster.row.task_idx == task_idx or self.job.pool is not None:
                await self._runner(cluster).kill(phase_id_for(self.job.id, task_idx, row.attempt, "run"))

    # ------------------------------------------------------------------ run

    async def run(self, rows: list[TaskRow] | None = None) -> None:
        try:
            if rows is None:
                rows = await self.store.tasks(self.job.id)
            self._task_ids = [t.skypilot_task_id for t in rows]
            if self.job.cancel_requested_at is not None:
                self.stop_reason = "user"
                await self._cancel()
                return
            if self.group is not None:
                await self._run_group(rows)
            else:
                await self._run_tasks(rows)
        except CancelRequested:
            # Its cancel came as it was about to start something (a machine,
            # a worker); the store refused that, so there is nothing to stop.
            self.stop_reason = "user"
            await self._cancel()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.stop_reason != "user" or current is None:
                raise
            current.uncancel()
            await self._cancel()
        except Exception as exc:  # a bug must not leave a job RUNNING forever
            log.exception("job %s: controller error", self.job.id)
            await self._fail_controller(f"controller error: {type(exc).__name__}: {exc}")
        finally:
            await self._close_nodes()
            staging = self._staging()
            if staging is not None and self.stop_reason != "shutdown":
                await discard_staging(staging)  # the job has ended: its files go
            if self.stop_reason != "shutdown":
                await self._buckets().release()  # and the buckets it made that were not to be kept

    async def _run_tasks(self, rows: list[TaskRow]) -> None:
        for row, task in zip(rows, self.tasks):
            status = row.status_enum
            if status is S.SUCCEEDED:
                continue  # a finished task is never run again
            if status.is_terminal:
                break
            if status is S.CANCELLING:
                self.stop_reason = "user"
                await self._cancel()
                return
            final = await self._run_task(row, task)
            if final is not S.SUCCEEDED:
                break
        # Whatever ended the pipeline early, the tasks after it never run.
        if len(rows) > 1:
            await self.store.cancel_pending_tasks(self.job.id, "an earlier task did not succeed")

    async def _run_group(self, rows: list[TaskRow]) -> None:
        """A job group: every task at once, each recovering on its own. When
        the primaries have all ended, the auxiliaries still running are
        stopped: at once if a primary did not succeed, else after their
        termination_delay. Cancelling the job cancels every task's coroutine."""
        assert self.group is not None
        self._names = GroupNames(self.group, self._controller_log.parent / "hosts")
        warning = self._names.prepare()
        if warning:
            self._say(warning)
        runs: dict[int, asyncio.Task[TaskStatus]] = {}
        for row, task in zip(rows, self.tasks):
            if row.status_enum is S.CANCELLING:
                # An auxiliary being stopped when the controller went down: finish that.
                await self._cancel_tasks([row.task_idx], row.status_reason or "stopped")
                continue
            if not row.status_enum.is_terminal:
                name = f"job-{self.job.id}-task-{row.task_idx}"
                runs[row.task_idx] = asyncio.create_task(self._run_task(row, task), name=name)
        primaries = [row.task_idx for row in rows if row.group_role == PRIMARY] or [row.task_idx for row in rows]
        try:
            waiting = [runs[idx] for idx in primaries if idx in runs]
            while not all(run.done() for run in waiting):
                await asyncio.wait([run for run in runs.values() if not run.done()],
                                   return_when=asyncio.FIRST_COMPLETED)
                for run in runs.values():
                    if run.done() and not run.cancelled() and run.exception() is not None:
                        # A bug in any task's coroutine fails the job at once
                        # (run()'s handler), not once the primaries give up.
                        run.result()
            for run in waiting:
                run.result()
            statuses = {row.task_idx: row.status_enum for row in await self.store.tasks(self.job.id)}
            succeeded = all(statuses[idx] is S.SUCCEEDED for idx in primaries)
            auxiliaries = {idx: run for idx, run in runs.items() if idx not in primaries and not run.done()}
            delays = {idx: self.group.delay_for(self.tasks[idx].name or "") if succeeded else 0.0 for idx in auxiliaries}
            await asyncio.gather(*(self._stop_auxiliary(idx, run, delays[idx]) for idx, run in auxiliaries.items()))
            for run in runs.values():
                if not run.cancelled():
                    await run
        finally:
            for run in runs.values():
                run.cancel()
            await asyncio.gather(*runs.values(), return_exceptions=True)

    async def _stop_auxiliary(self, idx: int, run: asyncio.Task[TaskStatus], delay_s: float) -> None:
        """Every primary task has ended: this auxiliary task goes, after
        `delay_s` (unless it ends by itself first), and ends CANCELLED."""
        if delay_s > 0:
            self._say(f"task {idx}: the primary tasks have ended; stopping it in {_short_duration(delay_s)}")
            done, _ = await asyncio.wait([run], timeout=delay_s)
            if done:
                return
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await self._cancel_tasks([idx], "stopped: the group's primary tasks have ended")

    async def _run_task(self, row: TaskRow, task: Task) -> TaskStatus:
        idx = row.task_idx
        policy = RecoveryPolicy.of(task)
        while True:
            try:
                return await self._attempt(row, task, policy)
            except TaskFailed as failure:
                await self._end_attempt(idx, failure.reason, failure.exit_code)
                await self._teardown_all(reason=failure.reason, task_idx=idx)
                current = await self.store.task(self.job.id, idx)
                reason = failure.reason
                if failure.exit_codes is not None and not current.status_enum.is_terminal:
                    decision = restart_decision(policy, failure.exit_codes, current.restarts_on_errors)
                    if decision.restart:
                        await self._restart_on_error(current, failure, decision.why, decision.counted)
                        row = await self.store.task(self.job.id, idx)
                        continue
                    if policy.max_restarts_on_errors:
                        reason = f"{reason}; {decision.why}"
                await self._finish(idx, failure.status, reason, failure.exit_code, ran_until=failure.ended_at)
                return failure.status
            except NodeLost as lost:
                await self._recover_lost_machine(idx, lost)
                row = await self.store.task(self.job.id, idx)

    async def _restart_on_error(self, current: TaskRow, failure: TaskFailed, why: str, counted: bool) -> None:
        idx = current.task_idx
        note = f"{failure.reason}; restarting ({why})"
        self._say(f"task {idx}: {note}")
        self._recovery_note[idx] = note
        self._lost_at.pop(idx, None)  # the code failed, not the place: cheapest first again
        await self.store.transition_task(
            self.job.id, idx, S.RECOVERING, message=note, exit_code=failure.exit_code,
            ran_until=failure.ended_at, recoveries=current.recoveries + 1,
            restarts_on_errors=current.restarts_on_errors + (1 if counted else 0),
        )

    async def _recover_lost_machine(self, idx: int, lost: NodeLost) -> None:
        """The machine went away under the task: tear down what is left and
        go RECOVERING; the next attempt is placed by the recovery strategy."""
        attempts = await self.store.attempts(self.job.id, idx)
        last = attempts[-1] if attempts else None
        clusters = [c for c in await self.store.live_clusters(self.job.id) if c.task_idx == idx]
        if clusters:
            self._lost_at[idx] = Place(clusters[-1].cloud, clusters[-1].region)
        what = "preempted" if last is not None and last.use_spot else "machine lost"
        where = f" in {last.infra}" if last is not None and last.infra else ""
        lasted = time.time() - last.started_at if last is not None else 0.0
        note = f"{what}{where} after {_short_duration(lasted)}"
        self._say(f"task {idx}: {note} ({lost}); recovering")
        await self._end_attempt(idx, f"{what} after {_short_duration(lasted)}", None)
        current = await self.store.task(self.job.id, idx)
        self._recovery_note[idx] = note
        if current.status_enum in (S.RUNNING, S.STARTING):
            # Said at once; tearing down what is left of the machine can take
            # a cloud a while (a restart re-does it: _reattach sweeps leftovers).
            await self.store.transition_task(
                self.job.id, idx, S.RECOVERING, message=f"{note}; relaunching", recoveries=current.recoveries + 1,
            )
        await self._teardown_all(reason=f"{what}: {lost}", machine_lost=True, task_idx=idx)
        # A machine that keeps vanishing right after its launch is retried with
        # growing pauses instead of in a tight loop; any other loss at once.
        if current.recoveries and lasted < FLAPPING_WINDOW_S:
            await asyncio.sleep(min(FLAPPING_BACKOFF_MAX_S, 2.0 ** current.recoveries))

    async def _finish(
        self, idx: int, status: TaskStatus, reason: str | None, exit_code: int | None = None,
        *, ran_until: float | None = None,
    ) -> None:
        current = await self.store.task(self.job.id, idx)
        if current.status_enum.is_terminal:
            return
        await self.store.transition_task(
            self.job.id, idx, status, message=reason, failure_reason=reason
            if status.is_failure else None, exit_code=exit_code, ran_until=ran_until,
        )
        self._say(f"task {idx}: {status}" + (f" ({reason})" if reason else ""))

    async def _end_attempt(self, idx: int, reason: str, exit_code: int | None) -> None:
        current = await self.store.task(self.job.id, idx)
        closing = self._unclosed_segments.pop(idx, [])
        if current.attempt:
            await self.store.end_attempt(
                self.job.id, idx, current.attempt, reason=reason, exit_code=exit_code, finish_segments=closing
            )
        elif closing:
            for segment_id in closing:
                await self.store.update_segment(segment_id, finished=True)

    async def _attempt(self, row: TaskRow, task: Task, policy: RecoveryPolicy) -> TaskStatus:
        """One attempt of a task, resumed from wherever the DB says it was."""
        idx = row.task_idx
        if row.status_enum in (S.PENDING, S.STARTING, S.RECOVERING):
            cluster, attempt = await self._launch(row, task, policy)
            note = self._recovery_note.pop(idx, None)
            # A launch leaves its task RECOVERING exactly when it had been
            # recovered before (`_placed`, `_start_attempt_on_worker`); `row`
            # is read again after every recovery (`_run_task`), so its count
            # is current: the row is not read again for every job.
            if row.recoveries:
                offer = cluster.row
                place = infra_label(offer.cloud, offer.region, offer.zone)
                price = next((a.price_per_hour for a in await self.store.attempts(self.job.id, idx)
                              if a.attempt_no == attempt), None)
                placed = f"relaunched in {place} ({'spot' if offer.use_spot else 'on-demand'}"
                placed += f", ${price:.2f}/h)" if price else ")"
                message = f"recovered: {note}; {placed}" if note else f"recovered: {placed}"
            else:
                message = None
            await self.store.transition_task(self.job.id, idx, S.RUNNING, message=message)
        else:  # RUNNING: the controller restarted; re-attach
            reattached = await self._reattach(row)
            if reattached is None:
                return await self._settle_without_machine(row)
            cluster = reattached
            attempt = cluster.row.attempt_no or row.attempt
            await self._runner(cluster).connect(give_up_after_s=None)  # its job runs: never relaunch for SSH
            await self._publish_group_names()
        if not task.run:
            outcome = PhaseOutcome([0] * len(cluster.nodes))
        else:
            outcome = await self._run_phase(cluster, idx, attempt, "run", task.run, task)
        codes = outcome.codes
        stalled = self._stalled.pop(idx, None)
        if stalled is not None:
            # Counted as the user's failure whatever the code the stop left (no exit code is "listed").
            raise TaskFailed(S.FAILED, f"{stalled}; its run was stopped", None, exit_codes=[],
                             ended_at=outcome.ended_at)
        failed = [(rank, code) for rank, code in enumerate(codes) if code != 0]
        if failed:
            rank, code = failed[0]
            where = f" on node {rank}" if len(codes) > 1 else ""
            raise TaskFailed(S.FAILED, f"job exited with exit code {code}{where}", code, exit_codes=codes,
                             ended_at=outcome.ended_at)
        closing = self._unclosed_segments.pop(idx, [])
        own_machines = self.job.pool is None  # a pool's worker is released, not torn down
        self.ctx.ends_first.ended()
        ended = await self.store.end_run(RunEndRequest(
            self.job.id, idx, attempt, S.SUCCEEDED, reason="succeeded", exit_code=0, ran_until=outcome.ended_at,
            finish_segments=tuple(closing), retire_clusters=own_machines,
        ))
        if ended.ended:
            self._say(f"task {idx}: {S.SUCCEEDED}")
        if ended.ended and own_machines:
            # Like a user's cancel, this cleanup is not cut short by a stop
            # (within the stop's grace): a finished job leaves no machine.
            # A job group's other tasks may run on: a cancel must still reach them.
            self._retiring = self.group is None
            await self.ctx.ends_first.wave_passed()
            for cluster_row in ended.terminating:
                await self._teardown(cluster_row, reason="task finished")
        else:
            await self._teardown_all(reason="task finished", task_idx=idx)
        return S.SUCCEEDED

    async def _settle_without_machine(self, row: TaskRow) -> TaskStatus:
        """A RUNNING task whose machine is gone after a controller restart. If
        its run had already ended (the controller died between recording the
        exit and deciding on it), that outcome stands: a success is finished,
        a failure goes to the restart rules. Otherwise the machine was lost
        under it: recover."""
        ended = next((a for a in await self.store.attempts(self.job.id, row.task_idx)
                      if a.attempt_no == row.attempt), None)
        if ended is None or ended.exit_code is None:
            raise NodeLost("the machine was lost while the controller was down")
        if ended.exit_code == 0:
            await self._finish(row.task_idx, S.SUCCEEDED, None, 0, ran_until=ended.ended_at)
            return S.SUCCEEDED
        raise TaskFailed(S.FAILED, ended.end_reason or f"job exited with exit code {ended.exit_code}",
                         ended.exit_code, exit_codes=[ended.exit_code], ended_at=ended.ended_at)


def load_tasks(spec: dict[str, Any], secrets: dict[str, dict[str, str]]) -> list[Task]:
    """Rebuild the job's tasks from the stored spec and their secrets."""
    return tasks_from_stored(spec, secrets)
