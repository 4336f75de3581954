"""One coroutine per managed job: provision, set up, run, watch, recover, clean up.

Every step is resumable from the DB. The controller records what it is about
to do before doing it (an attempt, a cluster row, a log segment), and every
action on a node is idempotent (a phase starts at most once), so a controller
killed at any moment and started again picks each job up where it was:
running phases are re-attached, never restarted, and logs resume at the byte
where they stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import re
import secrets
import time
from typing import Any, Literal, TypeVar

from skytui.clouds.base import (
    CloudError,
    ClusterHandle,
    ClusterState,
    InstanceOffer,
    NodeError,
    PrecheckError,
    infra_label,
)
from skytui.engine.context import EngineContext
from skytui.engine.file_sync import (
    WORKDIR,
    FileSyncError,
    StagingArea,
    UnsafePathError,
    discard_staging,
    has_local_files,
    sync_task_files,
)
from skytui.engine.job_group import GroupNames, JobGroup
from skytui.engine.named_buckets import JobBuckets
from skytui.engine.optimizer import InfeasibleError, plan_task
from skytui.engine.phase_runner import (
    UNREACHABLE_GRACE_S,
    LiveCluster,
    NodeLost,
    PhaseNeverBegan,
    PhaseOutcome,
    PhaseRunner,
)
from skytui.engine.pools import Lease, PoolGone
from skytui.engine.provisioner import NoCapacity, Provisioner
from skytui.engine.recovery import (
    CapacityBackoff,
    Place,
    RecoveryPolicy,
    launch_order,
    restart_decision,
)
from skytui.engine.status import PRIMARY, TaskStatus
from skytui.engine.store import (
    CancelRequested,
    ClusterRow,
    ClusterStatus,
    JobRow,
    RunEndRequest,
    TaskRow,
)
from skytui.logs.store import append_line, controller_log_path, file_size, task_log_path
from skytui.logs.sync import maskable, sync_phase_output
from skytui.spec import Task
from skytui.spec.stored import tasks_from_stored

S = TaskStatus
T = TypeVar("T")
# A machine lost again within this long after its relaunch is retried after a
# growing pause, not in a tight loop; any other loss is relaunched at once.
FLAPPING_WINDOW_S = 60.0
FLAPPING_BACKOFF_MAX_S = 60.0

log = logging.getLogger("skytui.controller")

# Why a job's coroutine is asked to stop (JobController.request_stop).
StopReason = Literal["user", "shutdown", "ended"]


class TaskFailed(Exception):
    """The task ended in a failure status; the message is the reason.

    `exit_codes` is set when the user's code failed on a machine that is still
    up: only such a failure may be restarted (max_restarts_on_errors,
    recover_on_exit_codes)."""

    def __init__(
        self, status: TaskStatus, reason: str, exit_code: int | None = None,
        exit_codes: list[int] | None = None, ended_at: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.exit_code = exit_code
        self.exit_codes = exit_codes
        self.ended_at = ended_at  # by the node's clock, when its code ended


def _market(offer: InstanceOffer) -> str:
    return "spot" if offer.use_spot else "on-demand"


def _short_duration(seconds: float) -> str:
    """"45s", "12m", "3h 5m": how long a machine lasted, for one-line events."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    return f"{whole // 3600}h {whole % 3600 // 60}m"


def _refusals(errors: list[str]) -> str:
    """"2 place(s) said no (sim:aws/us-east-1: stocked out; …)": the first few, for one line."""
    shown = "; ".join(errors[:2]) + ("; …" if len(errors) > 2 else "")
    return f"{len(errors)} place(s) said no ({shown})"


def cluster_name_for(task_name: str, job_id: int, task_idx: int, attempt: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", task_name.lower()).strip("-")[:20] or "task"
    return f"{slug}-{job_id}-{task_idx}-{attempt}"


def phase_id_for(job_id: int, task_idx: int, attempt: int, phase: str) -> str:
    return f"job{job_id}-task{task_idx}-attempt{attempt}-{phase}"


class JobController:
    def __init__(self, ctx: EngineContext, job: JobRow, tasks: list[Task], group: JobGroup | None = None) -> None:
        self.ctx = ctx
        self.job = job
        self.tasks = tasks
        self.group = group  # a job group: every task at once (_run_group)
        self.store = ctx.store
        self.stop_reason: StopReason | None = None
        self._asyncio_task: asyncio.Task[None] | None = None
        self._clusters: dict[int, LiveCluster] = {}
        self._controller_log = controller_log_path(ctx.paths.job_logs, job.id)
        self._task_ids: list[str] = []
        self._retiring = False  # tearing down after its success: see request_stop
        self._names: GroupNames | None = None  # a job group's `<task>-<rank>.<group>` names
        # Per task: where its last machine was lost, to steer the relaunch.
        self._lost_at: dict[int, Place] = {}
        # Per task: the line that explains the recovery in progress.
        self._recovery_note: dict[int, str] = {}
        # A pool job: the worker it runs on now, and the pool's own task
        # (its workdir and envs are the job's too).
        self._lease: Lease | None = None
        self._pool_task: Task | None = None
        # Per task: log segments whose output is all copied but not yet marked
        # so: the run's last one, closed with the attempt (`_end_attempt`, `end_run`).
        self._unclosed_segments: dict[int, list[int]] = {}

    # ------------------------------------------------------------- plumbing

    @property
    def _masked(self) -> tuple[bytes, ...]:
        """Every secret value this job's phases see (its tasks', its pool's):
        masked in the logs as they are stored."""
        values = [v for task in self.tasks for v in task.secrets.values()]
        if self._pool_task is not None:
            values += self._pool_task.secrets.values()
        return maskable(values)

    def _say(self, message: str) -> None:
        """The controller's account of this job: its own log and the daemon's."""
        log.info("job %s: %s", self.job.id, message)
        append_line(self._controller_log, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def start(self) -> asyncio.Task[None]:
        self._asyncio_task = asyncio.create_task(self.run(), name=f"job-{self.job.id}")
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

    # ------------------------------------------------------------------ run

    async def run(self) -> None:
        try:
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
            if waiting:
                await asyncio.wait(waiting)
                for run in waiting:
                    run.result()  # a bug in one task's coroutine fails the job (run()'s handler)
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

    async def _publish_group_names(self) -> None:
        if self._names is not None:
            for problem in await self._names.publish(self._clusters.values()):
                self._say(problem)

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

    # -------------------------------------------------------------- attempt

    async def _attempt(self, row: TaskRow, task: Task, policy: RecoveryPolicy) -> TaskStatus:
        """One attempt of a task, resumed from wherever the DB says it was."""
        idx = row.task_idx
        if row.status_enum in (S.PENDING, S.STARTING, S.RECOVERING):
            cluster, attempt = await self._launch(row, task, policy)
            current = await self.store.task(self.job.id, idx)
            note = self._recovery_note.pop(idx, None)
            if current.status_enum is S.RECOVERING:
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

    async def _launch(self, row: TaskRow, task: Task, policy: RecoveryPolicy) -> tuple[LiveCluster, int]:
        """Get the task a machine with setup done: re-attach or provision,
        holding a launch slot; when no place has capacity, wait PENDING
        (slot given back) and try again, forever, as SkyPilot does."""
        idx = row.task_idx
        if self.job.pool is not None:
            return await self._launch_on_worker(row)
        backoff = CapacityBackoff(self.ctx.recovery.backoff_initial_s, self.ctx.recovery.backoff_max_s)
        while True:
            async with self.ctx.scheduler.launch_slot(on_wait=lambda why: self._waiting(idx, why)):
                row = await self.store.task(self.job.id, idx)
                if row.status_enum.is_terminal:
                    raise CancelRequested(self.job.id)  # cancelled while it waited for the slot
                try:
                    cluster = await self._reattach(row) or await self._provision(row, task, policy)
                except NoCapacity as exc:
                    wait = backoff.next_wait()
                    await self._wait_for_capacity(idx, exc, wait, backoff.rounds)
                else:
                    attempt = cluster.row.attempt_no or row.attempt
                    await self._placed(idx)
                    await self._runner(cluster).connect()
                    await self._publish_group_names()
                    if not await self._any_phase_started(idx, attempt):
                        await self._sync_files(cluster, idx, task)
                    if task.setup:
                        codes = (await self._run_phase(cluster, idx, attempt, "setup", task.setup, task)).codes
                        failed = [(rank, code) for rank, code in enumerate(codes) if code != 0]
                        if failed:
                            rank, code = failed[0]
                            raise TaskFailed(
                                S.FAILED_SETUP, f"setup failed with exit code {code} on node {rank}", code,
                                exit_codes=codes,
                            )
                    return cluster, attempt
            await asyncio.sleep(wait)

    async def _placed(self, idx: int, *, keep_reason: bool = False) -> None:
        """A place said yes: a task that waited PENDING for one starts now
        (a relaunch stays a recovery). While its machine boots, the reason
        ("provisioning on …") stays shown."""
        row = await self.store.task(self.job.id, idx)
        if row.status_enum is S.PENDING:
            await self.store.transition_task(
                self.job.id, idx, S.RECOVERING if row.recoveries else S.STARTING,
                status_reason=row.status_reason if keep_reason else None,
            )
        elif row.status_reason and not keep_reason:
            await self.store.set_task_fields(self.job.id, idx, status_reason=None)

    async def _wait_for_capacity(self, idx: int, exc: NoCapacity, wait: float, rounds: int) -> None:
        """One round found no place: PENDING until the next, told once per round."""
        # The next round starts from the cheapest place again: the place that
        # was lost is no worse than any other once every place has said no.
        self._lost_at.pop(idx, None)
        next_at = time.strftime("%H:%M:%S", time.localtime(time.time() + wait))
        why = f"{exc}; round {rounds}, next at {next_at} (in {wait:.0f}s)"
        self._say(f"task {idx}: {why}")
        short = f"no capacity in any of {exc.places} place(s); next round at {next_at}"
        row = await self.store.task(self.job.id, idx)
        if row.status_enum is S.PENDING:
            await self.store.note(self.job.id, idx, "capacity", f"round {rounds}: {why}")
            await self.store.set_task_fields(self.job.id, idx, status_reason=short)
        else:
            await self.store.transition_task(
                self.job.id, idx, S.PENDING, message=f"round {rounds}: {why}", status_reason=short,
            )

    async def _launch_on_worker(self, row: TaskRow) -> tuple[LiveCluster, int]:
        """A pool job: wait PENDING for an idle READY worker, then take it.
        Its setup and file_mounts are the pool's, done once per worker."""
        idx = row.task_idx
        pools, pool = self.ctx.pools, self.job.pool
        assert pools is not None and pool is not None
        cluster = await self._reattach(row)
        fresh = cluster is None
        if cluster is None:
            try:
                lease = await pools.acquire(self.job, on_wait=lambda why: self._waiting(idx, why))
            except PoolGone as exc:
                raise TaskFailed(S.FAILED_NO_RESOURCE, str(exc)) from exc
            self._lease = lease
            cloud = self.ctx.clouds.get(lease.cluster.cloud)
            if cloud is None:
                raise TaskFailed(S.FAILED_PRECHECKS, f"pool {pool}'s worker is on {lease.cluster.cloud}, not enabled")
            cluster = LiveCluster(lease.cluster, lease.handle, cloud, nodes=pools.nodes_for(lease, cloud))
            self._clusters[lease.cluster.id] = cluster
        current = await self.store.task(self.job.id, idx)
        if fresh or not await self._attempt_is_on(current, cluster):
            # A worker just taken, or taken by a controller that died before
            # it recorded the attempt on it: the attempt there starts now.
            attempt = await self._start_attempt_on_worker(current, cluster)
        else:
            attempt = current.attempt
        await self._load_pool_task()
        await self._runner(cluster).connect()
        return cluster, attempt

    async def _attempt_is_on(self, task: TaskRow, cluster: LiveCluster) -> bool:
        """Whether the task's current attempt runs on this worker's machine."""
        if not task.attempt:
            return False
        row = next((a for a in await self.store.attempts(self.job.id, task.task_idx)
                    if a.attempt_no == task.attempt), None)
        if row is None or row.ended_at is not None:
            return False
        # An attempt recorded before attempts named their worker: it ran here if it runs.
        return row.cluster_id == cluster.row.id or (row.cluster_id is None and task.status_enum is S.RUNNING)

    async def _start_attempt_on_worker(self, task: TaskRow, cluster: LiveCluster) -> int:
        idx, lease = task.task_idx, self._lease
        assert lease is not None
        if task.status_enum is S.PENDING:
            await self.store.transition_task(self.job.id, idx, S.RECOVERING if task.recoveries else S.STARTING,
                                             status_reason=None)
        else:
            await self.store.set_task_fields(self.job.id, idx, status_reason=None)
        return int(await self.store.start_attempt(
            self.job.id, idx, infra=infra_label(lease.cluster.cloud, lease.cluster.region, lease.cluster.zone),
            instance_type=lease.cluster.instance_type, use_spot=lease.cluster.use_spot,
            message=f"attempt on pool {self.job.pool}, worker {lease.worker.id}", cluster_id=cluster.row.id,
        ))

    async def _load_pool_task(self) -> None:
        if self._pool_task is None and self.job.pool is not None and self.ctx.pools is not None:
            with contextlib.suppress(Exception):  # a pool already gone keeps the job's own envs
                self._pool_task = await self.ctx.pools.pool_task(self.job.pool)

    async def _release_worker(self, *, lost: bool = False) -> None:
        lease = self._lease or (await self.ctx.pools.lease_of(self.job.id) if self.ctx.pools else None)
        self._lease = None
        if lease is None or self.ctx.pools is None or self.job.pool is None:
            return
        cached = self._clusters.pop(lease.cluster.id, None)
        if cached is not None and cached.nodes and not lost:
            self.ctx.pools.keep_nodes(lease.worker.id, cached.nodes)  # open, for the next job
        await self.ctx.pools.release(self.job.pool, lease.worker.id, self.job.id, lost=lost)

    async def _waiting(self, idx: int, why: str) -> None:
        await self.store.set_task_fields(self.job.id, idx, status_reason=why)

    async def _any_phase_started(self, idx: int, attempt: int) -> bool:
        return any(s.attempt_no == attempt for s in await self.store.segments(self.job.id, idx))

    # -------------------------------------------------------------- cluster

    async def _reattach(self, row: TaskRow) -> LiveCluster | None:
        """The current attempt's cluster if it is still up; anything else of the
        task still standing (half-provisioned, gone under us) is torn down."""
        idx = row.task_idx
        if self.job.pool is not None and self.ctx.pools is not None:
            # Even before an attempt: the controller may have died between
            # taking a worker and recording the attempt on it.
            return await self._reattach_worker(row)
        for existing in await self.store.live_clusters(self.job.id):
            if existing.task_idx != idx:
                continue
            cloud = self.ctx.clouds.get(existing.cloud)
            if (
                cloud is not None
                and existing.status == ClusterStatus.UP
                and existing.attempt_no == row.attempt
                and existing.handle_json
            ):
                handle = ClusterHandle.from_json(existing.handle)
                if await cloud.cluster_state(handle) is ClusterState.UP:
                    self._say(f"task {idx}: re-attached to {existing.name}")
                    cluster = LiveCluster(existing, handle, cloud)
                    self._clusters[existing.id] = cluster
                    return cluster
            # A machine of an earlier attempt, or one that came up just as the
            # controller died, before its attempt was recorded: not ours to keep.
            await self._teardown(existing, reason="not usable after a controller restart")
        if row.attempt:
            # Idempotent: an attempt already ended keeps its first reason.
            await self.store.end_attempt(
                self.job.id, idx, row.attempt, reason="its machine was lost while the controller was down"
            )
        return None

    async def _reattach_worker(self, row: TaskRow) -> LiveCluster | None:
        assert self.ctx.pools is not None
        if self.job.worker_id is None:
            return None  # never given a worker (jobs.worker_id is set with the worker's job_id)
        lease = await self.ctx.pools.lease_of(self.job.id)
        cloud = self.ctx.clouds.get(lease.cluster.cloud) if lease else None
        if lease is None or cloud is None:
            return None
        if await cloud.cluster_state(lease.handle) is not ClusterState.UP:
            await self.ctx.pools.release(self.job.pool or "", lease.worker.id, self.job.id, lost=True)
            await self.store.end_attempt(self.job.id, row.task_idx, row.attempt, reason="its worker was lost")
            return None
        self._lease = lease
        self._say(f"task {row.task_idx}: re-attached to worker {lease.worker.id} of pool {self.job.pool}")
        cluster = LiveCluster(lease.cluster, lease.handle, cloud, nodes=self.ctx.pools.nodes_for(lease, cloud))
        self._clusters[lease.cluster.id] = cluster
        return cluster

    async def _provision(self, row: TaskRow, task: Task, policy: RecoveryPolicy) -> LiveCluster:
        """Ask each place in turn (cheapest first, as the strategy orders
        them) until one says yes. Only a machine that came up opens an
        attempt: its cost runs from then, and places that said no leave no
        attempt, no log line and no record behind (NoCapacity sums them up)."""
        idx = row.task_idx
        try:
            plan = plan_task(task, self.ctx.clouds)
        except InfeasibleError as exc:
            # Infeasible now (an infra was disabled, say): fail at once, never wait PENDING.
            raise TaskFailed(S.FAILED_PRECHECKS, str(exc)) from exc
        offers = launch_order(plan.offers, policy.strategy, self._lost_at.get(idx))
        base_name = cluster_name_for(row.name, self.job.id, idx, row.attempt + 1)

        async def name_for(tried: int) -> str:
            # A fresh name per place (a refused one may still be winding down),
            # and past one left over from before a controller restart.
            if tried or await self.store.cluster_name_taken(base_name):
                return f"{base_name}-{secrets.token_hex(2)}"
            return base_name

        async def trying(tried: int, offer: InstanceOffer) -> None:
            await self.store.set_task_fields(
                self.job.id, idx,
                status_reason=f"provisioning on {offer.infra} ({offer.instance_type}, {_market(offer)}); "
                              f"place {tried + 1} of {len(offers)}",
            )

        async def record(offer: InstanceOffer, name: str) -> int:
            log.debug("job %s task %s: trying %s on %s", self.job.id, idx, name, offer.infra)
            return await self.store.insert_cluster(
                name=name, cloud=offer.cloud, region=offer.region, zone=offer.zone,
                instance_type=offer.instance_type, use_spot=offer.use_spot,
                num_nodes=task.num_nodes, job_id=self.job.id, task_idx=idx, attempt_no=row.attempt + 1,
            )

        try:
            placed = await Provisioner(self.store, self.ctx.clouds).provision_with_failover(
                offers, num_nodes=task.num_nodes, labels={"skytui-job": str(self.job.id), "skytui-task": str(idx)},
                name_for=name_for, record=record, trying=trying,
                accepted=functools.partial(self._placed, idx, keep_reason=True),
            )
        except PrecheckError as exc:
            raise TaskFailed(S.FAILED_PRECHECKS, str(exc)) from exc
        offer = placed.offer
        refused = f"after {_refusals(placed.refusals)}" if placed.refusals else None
        attempt = await self.store.start_attempt(
            self.job.id, idx, infra=offer.infra, instance_type=offer.instance_type,
            use_spot=offer.use_spot, price_per_hour=offer.price_per_hour * task.num_nodes, message=refused,
        )
        await self.store.set_attempt_cluster(self.job.id, idx, attempt, placed.cluster_id)
        self._say(f"task {idx}: {placed.name} is up on {offer.infra} ({offer.instance_type}, {_market(offer)}, "
                  f"{task.num_nodes} node(s))" + (f", {refused}" if refused else ""))
        cluster_row = await self.store.cluster(placed.cluster_id)
        assert cluster_row is not None
        cluster = LiveCluster(cluster_row, placed.handle, self.ctx.clouds[offer.cloud])
        self._clusters[placed.cluster_id] = cluster
        return cluster

    async def _sync_files(self, cluster: LiveCluster, idx: int, task: Task) -> None:
        try:
            await self._runner(cluster).while_up("copying files", lambda: sync_task_files(
                cluster.nodes, task, absolute_mounts=cluster.cloud.absolute_mounts,
                staging=self._staging(), staging_part=f"task-{idx}" if idx else "",
                buckets=self._buckets().for_task(idx, cluster.row.cloud, cluster.row.region),
            ))
        except UnsafePathError as exc:
            # The bucket or the spec points outside its target: nothing was written there.
            raise TaskFailed(S.FAILED_SETUP, str(exc)) from exc
        except FileSyncError as exc:
            raise TaskFailed(S.FAILED_PRECHECKS, str(exc)) from exc

    def _staging(self) -> StagingArea | None:
        """The job's files in jobs.bucket; None without a bucket, for a pool job
        (the pool's files are the pool's) or a job with no local files."""
        if not self.ctx.bucket or self.job.pool is not None or not any(map(has_local_files, self.tasks)):
            return None
        return StagingArea(self.ctx.bucket, self.ctx.paths.install_id, f"job-{self.job.id}")

    def _buckets(self) -> JobBuckets:
        """The buckets the job's storage mounts name (made, kept or deleted by file_sync)."""
        return JobBuckets(self.store, self.job.id, self.tasks)

    # --------------------------------------------------------------- phases

    def _env(self, cluster: LiveCluster, idx: int, task: Task, rank: int, phase: str) -> dict[str, str]:
        ips = "\n".join(info.internal_ip for info in cluster.handle.nodes)
        gpus = sum(cluster.handle.accelerators.values())
        row_task_id = self._task_ids[idx]
        env: dict[str, str] = {}
        if self._pool_task is not None:
            env.update(self._pool_task.envs)
            env.update(self._pool_task.secrets)
        env.update(task.envs)
        env.update(task.secrets)
        env.update(
            SKYPILOT_TASK_ID=row_task_id,
            SKYPILOT_TASK_IDS="\n".join(self._task_ids),
            SKYPILOT_JOB_ID=str(self.job.id),
            SKYPILOT_MANAGED_JOB_ID=str(self.job.id),
            SKYPILOT_JOB_RANK=str(self.job.job_rank),
            SKYPILOT_NUM_JOBS=str(self.job.num_jobs),
            SKYPILOT_NUM_NODES=str(len(cluster.handle.nodes)),
            SKYPILOT_CLUSTER_INFO=json.dumps(
                {"cluster_name": cluster.row.name, "cloud": cluster.row.cloud,
                 "region": cluster.row.region, "zone": cluster.row.zone}
            ),
        )
        if self.group is not None:
            env.update(self.group.env(self.job.id))
            if self._names is not None:
                env.update(self._names.env(cluster, rank, env.get("LD_PRELOAD")))
        if phase == "setup":
            env.update(
                SKYPILOT_SETUP_NODE_RANK=str(rank),
                SKYPILOT_SETUP_NODE_IPS=ips,
                SKYPILOT_SETUP_NUM_GPUS_PER_NODE=f"{gpus:g}",
            )
        else:
            env.update(
                SKYPILOT_NODE_RANK=str(rank),
                SKYPILOT_NODE_IPS=ips,
                SKYPILOT_NUM_GPUS_PER_NODE=f"{gpus:g}",
            )
        return env

    def _runner(self, cluster: LiveCluster) -> PhaseRunner:
        return PhaseRunner(cluster, self.ctx.machines, say=self._say, secrets=self._masked)

    async def _run_phase(
        self, cluster: LiveCluster, idx: int, attempt: int, phase: str, script: str, task: Task
    ) -> PhaseOutcome:
        """Start (or re-attach to) a phase on every node and wait for its exit
        codes; each node's output goes to its log, in a segment on record."""
        phase_id = phase_id_for(self.job.id, idx, attempt, phase)
        paths = [
            task_log_path(self.ctx.paths.job_logs, self.job.id, idx, rank)
            for rank in range(len(cluster.nodes))
        ]
        segments = [
            await self.store.open_segment(
                self.job.id, idx, attempt, rank, phase, await asyncio.to_thread(file_size, paths[rank])
            )
            for rank in range(len(cluster.nodes))
        ]
        # A pool job runs in the pool's workdir (its own was ignored, as in SkyPilot).
        owner = self._pool_task if self.job.pool is not None else task
        cwd = cluster.nodes[0].info.path(WORKDIR) if owner is not None and isinstance(owner.workdir, str) else None
        runner = self._runner(cluster)

        def env_for(rank: int) -> dict[str, str]:
            return self._env(cluster, idx, task, rank, phase)

        pids = await runner.start(
            phase_id, script, env_for, cwd=cwd,
            give_up_after_s=None if phase == "run" and any(s.pid for s in segments) else UNREACHABLE_GRACE_S,
        )
        for segment, pid in zip(segments, pids):
            if segment.pid != pid:
                await self.store.update_segment(segment.id, pid=pid)
        if any(not s.finished for s in segments):
            self._say(f"task {idx}: {phase} started (attempt {attempt}, pid {', '.join(map(str, pids))})")

        open_ranks = {rank for rank, segment in enumerate(segments) if not segment.finished}

        async def node_done(rank: int) -> None:
            open_ranks.discard(rank)
            if phase == "run" and not open_ranks:
                # The run's last segment closes in the transaction that ends
                # its attempt (`_unclosed_segments`): one commit per job end.
                self._unclosed_segments.setdefault(idx, []).append(segments[rank].id)
                return
            await self.store.update_segment(segments[rank].id, finished=True)

        while True:
            try:
                return await runner.follow(phase_id, paths, [s.start_offset for s in segments], node_done)
            except PhaseNeverBegan as never:
                rank = never.rank
                self._say(f"task {idx}: {phase} on node {rank} was killed before it began; starting it again")
                [pid] = await runner.start(phase_id, script, env_for, cwd=cwd, ranks=[rank])
                await self.store.update_segment(segments[rank].id, pid=pid)

    # -------------------------------------------------------------- cleanup

    async def _teardown(self, row: ClusterRow, *, reason: str) -> None:
        cloud = self.ctx.clouds.get(row.cloud)
        cached = self._clusters.pop(row.id, None)
        if cached is not None:
            for node in cached.nodes:
                await node.close()
        if cloud is None:
            raise CloudError(f"cluster {row.name} is on {row.cloud}, which is not enabled")
        if row.status != ClusterStatus.TERMINATING:
            await self.store.update_cluster(row.id, status=ClusterStatus.TERMINATING)
        handle = ClusterHandle.from_json(row.handle) if row.handle_json else None
        await cloud.terminate(row.name, handle)
        await self.store.update_cluster(row.id, status=ClusterStatus.TERMINATED, end_reason=reason)
        self._say(f"terminated {row.name} ({reason})")

    async def _teardown_all(self, *, reason: str, machine_lost: bool = False, task_idx: int | None = None) -> None:
        """Tear down the job's machines: those of `task_idx` only, when given
        (a job group's other tasks run on)."""
        if self.job.pool is not None:
            # The worker stays up for the next job, unless its machine is gone.
            await self._release_worker(lost=machine_lost)
            return
        for row in await self.store.live_clusters(self.job.id):
            if task_idx is None or row.task_idx == task_idx:
                await self._teardown(row, reason=reason)

    async def _close_nodes(self) -> None:
        for cluster in list(self._clusters.values()):
            for node in cluster.nodes:
                try:
                    await node.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
        self._clusters.clear()

    async def _cancel(self) -> None:
        """The user's cancel: stop the job wherever it is, keep its logs, leave nothing up."""
        self._say("cancel requested")
        await self._cancel_tasks(None, "cancelled by user")
        self._say("cancelled")

    async def _cancel_tasks(self, only: list[int] | None, why: str) -> None:
        """Stop tasks (`only` these, else all) wherever they are, keep their
        logs, leave none of their machines up; they end CANCELLED."""
        def chosen(task_idx: int | None) -> bool:
            return only is None or task_idx in only

        for row in await self.store.tasks(self.job.id):
            status = row.status_enum
            if not chosen(row.task_idx):
                continue
            if status is S.PENDING:
                await self.store.transition_task(self.job.id, row.task_idx, S.CANCELLED, message=why, expect=S.PENDING)
            elif not status.is_terminal and status is not S.CANCELLING:
                await self.store.transition_task(self.job.id, row.task_idx, S.CANCELLING, message=why)
        try:
            if self.job.pool is not None:
                await self._stop_on_worker()
            for cluster in await self.store.live_clusters(self.job.id):
                if chosen(cluster.task_idx):
                    await self._stop_and_collect(cluster)
                    await self._teardown(cluster, reason=why)
        except Exception as exc:  # noqa: BLE001 - reported on the job, not raised
            log.exception("job %s: cleanup after cancel failed", self.job.id)
            for row in await self.store.tasks(self.job.id):
                if row.status_enum is S.CANCELLING and chosen(row.task_idx):
                    await self.store.transition_task(
                        self.job.id, row.task_idx, S.FAILED_CONTROLLER,
                        message=f"cleanup failed, resources may have leaked: {exc}",
                        failure_reason=f"cleanup failed, resources may have leaked: {exc}",
                    )
            return
        for row in await self.store.tasks(self.job.id):
            if row.status_enum is S.CANCELLING and chosen(row.task_idx):
                await self.store.end_attempt(self.job.id, row.task_idx, row.attempt, reason=why)
                await self.store.transition_task(self.job.id, row.task_idx, S.CANCELLED, message=why)

    async def _stop_on_worker(self) -> None:
        """A pool job's cancel: stop its phase and keep its output; the worker
        stays READY for the next job."""
        lease = self._lease or (await self.ctx.pools.lease_of(self.job.id) if self.ctx.pools else None)
        if lease is None:
            return
        for row in await self.store.tasks(self.job.id):
            if row.status_enum is S.CANCELLING and row.attempt:
                stand_in = dataclasses.replace(lease.cluster, task_idx=row.task_idx, attempt_no=row.attempt)
                await self._stop_and_collect(stand_in)
        self._lease = lease
        await self._release_worker()

    async def _stop_and_collect(self, row: ClusterRow) -> None:
        """Stop the running phase gracefully and copy its last output before teardown."""
        if row.status != ClusterStatus.UP or not row.handle_json or row.task_idx is None:
            return
        cloud = self.ctx.clouds.get(row.cloud)
        if cloud is None:
            return
        handle = ClusterHandle.from_json(row.handle)
        cluster = self._clusters.get(row.id) or LiveCluster(row, handle, cloud)
        self._clusters[row.id] = cluster
        segments = [s for s in await self.store.segments(self.job.id, row.task_idx) if s.attempt_no == row.attempt_no]
        active = [s for s in segments if not s.finished]
        if not active:
            return
        try:
            await asyncio.wait_for(self._runner(cluster).connect(), timeout=10)
            phase_id = phase_id_for(self.job.id, row.task_idx, row.attempt_no or 0, active[0].phase)
            await self._runner(cluster).kill(phase_id)
            for segment in active:
                if segment.rank < len(cluster.nodes):
                    path = task_log_path(self.ctx.paths.job_logs, self.job.id, row.task_idx, segment.rank)
                    await sync_phase_output(cluster.nodes[segment.rank], phase_id, path, segment.start_offset, drain=True,
                                            secrets=self._masked)
                    await self.store.update_segment(segment.id, finished=True)
        except (TimeoutError, NodeError, NodeLost) as exc:
            self._say(f"could not stop {row.name} gracefully ({exc}); terminating it")

    async def _fail_controller(self, reason: str) -> None:
        try:
            await self._teardown_all(reason=reason)
        except Exception:  # noqa: BLE001
            log.exception("job %s: teardown after a controller error failed", self.job.id)
            reason += "; resources may have leaked"
        current = True  # the first unfinished task is the one that failed (PENDING too: waiting for a place)
        for row in await self.store.tasks(self.job.id):
            if not row.status_enum.is_terminal:
                status = S.FAILED_CONTROLLER if current else S.CANCELLED
                current = False
                await self.store.transition_task(
                    self.job.id, row.task_idx, status, message=reason,
                    failure_reason=reason if status is S.FAILED_CONTROLLER else None,
                )


def load_tasks(spec: dict[str, Any], secrets: dict[str, dict[str, str]]) -> list[Task]:
    """Rebuild the job's tasks from the stored spec and their secrets."""
    return tasks_from_stored(spec, secrets)
