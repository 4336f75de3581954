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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from skytui.aio import first_of
from skytui.clouds.base import (
    CapacityError,
    Cloud,
    CloudError,
    ClusterHandle,
    ClusterState,
    Node,
    NodeError,
    PrecheckError,
    infra_label,
)
from skytui.config import Paths, RecoveryConfig
from skytui.engine.file_sync import (
    WORKDIR,
    FileSyncError,
    StagingArea,
    UnsafePathError,
    discard_staging,
    has_local_files,
    sync_task_files,
)
from skytui.engine.machine_watch import MachineWatch, MachineWatcher
from skytui.engine.optimizer import InfeasibleError, plan_task
from skytui.engine.pools import Lease, PoolGone, PoolManager, load_pool_task
from skytui.engine.recovery import (
    CapacityBackoff,
    Place,
    RecoveryPolicy,
    launch_order,
    restart_decision,
)
from skytui.engine.scheduler import Scheduler
from skytui.engine.status import TaskStatus
from skytui.engine.store import (
    AsyncStore,
    CancelRequested,
    ClusterRow,
    ClusterStatus,
    JobRow,
    TaskRow,
)
from skytui.logs.store import controller_log_path, file_size, task_log_path
from skytui.logs.sync import maskable, sync_phase_output
from skytui.spec import Task

S = TaskStatus
T = TypeVar("T")
# Poll fast right after a phase starts (short jobs end in milliseconds), then
# settle at one poll a second per job.
POLL_FIRST_S = 0.05
POLL_MAX_S = 1.0
LIVENESS_EVERY_S = 10.0
# A node that pushes its phases' changes is still looked at this often, in
# case a notice was lost: never needed, so rare.
SAFETY_LOOK_S = 600.0
# How long a freshly provisioned node may refuse SSH before the launch gives up
# on it (a running job is never given up while its machine is up).
UNREACHABLE_GRACE_S = 60.0
# A machine lost again within this long after its relaunch is retried after a
# growing pause, not in a tight loop; any other loss is relaunched at once.
FLAPPING_WINDOW_S = 60.0
FLAPPING_BACKOFF_MAX_S = 60.0

log = logging.getLogger("skytui.controller")

# Why a job's coroutine is asked to stop (JobController.request_stop).
StopReason = Literal["user", "shutdown", "ended"]


class NodeLost(Exception):
    """The machine under a phase is gone (or its process vanished)."""


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


class PhaseNeverBegan(Exception):
    """A phase's wrapper was killed before it started the user's script (a
    connection cut at the wrong moment): it is started again, in place."""

    def __init__(self, rank: int) -> None:
        super().__init__(f"node {rank}")
        self.rank = rank


class NoCapacity(Exception):
    """Every place the task may run refused it for lack of capacity, this round."""

    def __init__(self, reasons: list[str]) -> None:
        shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
        super().__init__(f"no capacity in any of {len(reasons)} place(s): {shown}")
        self.places = len(reasons)


@dataclass(frozen=True)
class PhaseOutcome:
    """How a phase ended on every node: exit codes by rank, and when the last
    node finished by its own clock (None if no node said)."""

    codes: list[int]
    ended_at: float | None = None


@dataclass
class EngineContext:
    store: AsyncStore
    clouds: dict[str, Cloud]
    paths: Paths
    scheduler: Scheduler
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    pools: PoolManager | None = None
    bucket: str | None = None  # jobs.bucket: files go to nodes through it
    machines: MachineWatcher = field(default_factory=MachineWatcher)


@dataclass
class _Cluster:
    row: ClusterRow
    handle: ClusterHandle
    cloud: Cloud
    nodes: list[Node] = field(default_factory=list)


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
    def __init__(self, ctx: EngineContext, job: JobRow, tasks: list[Task]) -> None:
        self.ctx = ctx
        self.job = job
        self.tasks = tasks
        self.store = ctx.store
        self.stop_reason: StopReason | None = None
        self._asyncio_task: asyncio.Task[None] | None = None
        self._clusters: dict[int, _Cluster] = {}
        self._controller_log = controller_log_path(ctx.paths.job_logs, job.id)
        self._task_ids: list[str] = []
        # Per task: where its last machine was lost, to steer the relaunch.
        self._lost_at: dict[int, Place] = {}
        # Per task: the line that explains the recovery in progress.
        self._recovery_note: dict[int, str] = {}
        # A pool job: the worker it runs on now, and the pool's own task
        # (its workdir and envs are the job's too).
        self._lease: Lease | None = None
        self._pool_task: Task | None = None

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
        self._controller_log.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self._controller_log, "a") as f:
            f.write(f"{stamp} {message}\n")

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
        if self.stop_reason == "user" and not force:
            return
        if reason == "ended" and (self._clusters or self._lease is not None):
            reason = "user"  # it holds something after all: the full cancel cleans it up
        self.stop_reason = "shutdown" if force else reason
        self._asyncio_task.cancel()

    # ------------------------------------------------------------------ run

    async def run(self) -> None:
        try:
            self._task_ids = [t.skypilot_task_id for t in await self.store.tasks(self.job.id)]
            if self.job.cancel_requested_at is not None:
                self.stop_reason = "user"
                await self._cancel()
                return
            await self._run_tasks()
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

    async def _run_tasks(self) -> None:
        rows = await self.store.tasks(self.job.id)
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

    async def _run_task(self, row: TaskRow, task: Task) -> TaskStatus:
        idx = row.task_idx
        policy = RecoveryPolicy.of(task)
        while True:
            try:
                return await self._attempt(row, task, policy)
            except TaskFailed as failure:
                await self._end_attempt(idx, failure.reason, failure.exit_code)
                await self._teardown_all(reason=failure.reason)
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
        await self._teardown_all(reason=f"{what}: {lost}", machine_lost=True)
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
        if current.attempt:
            await self.store.end_attempt(
                self.job.id, idx, current.attempt, reason=reason, exit_code=exit_code
            )

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
            await self._connect(cluster, give_up_after_s=None)  # its job runs: never relaunch for SSH
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
        await self._end_attempt(idx, "succeeded", 0)
        await self._finish(idx, S.SUCCEEDED, None, 0, ran_until=outcome.ended_at)
        await self._teardown_all(reason="task finished")
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

    async def _launch(self, row: TaskRow, task: Task, policy: RecoveryPolicy) -> tuple[_Cluster, int]:
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
                    await self._connect(cluster)
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

    async def _launch_on_worker(self, row: TaskRow) -> tuple[_Cluster, int]:
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
            cluster = _Cluster(lease.cluster, lease.handle, cloud, nodes=pools.nodes_for(lease, cloud))
            self._clusters[lease.cluster.id] = cluster
        current = await self.store.task(self.job.id, idx)
        if fresh or not await self._attempt_is_on(current, cluster):
            # A worker just taken, or taken by a controller that died before
            # it recorded the attempt on it: the attempt there starts now.
            attempt = await self._start_attempt_on_worker(current, cluster)
        else:
            attempt = current.attempt
        await self._load_pool_task()
        await self._connect(cluster)
        return cluster, attempt

    async def _attempt_is_on(self, task: TaskRow, cluster: _Cluster) -> bool:
        """Whether the task's current attempt runs on this worker's machine."""
        if not task.attempt:
            return False
        row = next((a for a in await self.store.attempts(self.job.id, task.task_idx)
                    if a.attempt_no == task.attempt), None)
        if row is None or row.ended_at is not None:
            return False
        # An attempt recorded before attempts named their worker: it ran here if it runs.
        return row.cluster_id == cluster.row.id or (row.cluster_id is None and task.status_enum is S.RUNNING)

    async def _start_attempt_on_worker(self, task: TaskRow, cluster: _Cluster) -> int:
        idx, lease = task.task_idx, self._lease
        assert lease is not None
        if task.status_enum is S.PENDING:
            await self.store.transition_task(self.job.id, idx, S.RECOVERING if task.recoveries else S.STARTING,
                                             status_reason=None)
        else:
            await self.store.set_task_fields(self.job.id, idx, status_reason=None)
        attempt = await self.store.start_attempt(
            self.job.id, idx, infra=infra_label(lease.cluster.cloud, lease.cluster.region, lease.cluster.zone),
            instance_type=lease.cluster.instance_type, use_spot=lease.cluster.use_spot,
            message=f"attempt on pool {self.job.pool}, worker {lease.worker.id}",
        )
        await self.store.set_attempt_cluster(self.job.id, idx, attempt, cluster.row.id)
        return attempt

    async def _load_pool_task(self) -> None:
        if self._pool_task is None and self.job.pool is not None:
            with contextlib.suppress(Exception):  # a pool already gone keeps the job's own envs
                spec, secrets = await self.store.pool_spec(self.job.pool)
                self._pool_task, _ = load_pool_task(spec, secrets)

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

    async def _reattach(self, row: TaskRow) -> _Cluster | None:
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
                    cluster = _Cluster(existing, handle, cloud)
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

    async def _reattach_worker(self, row: TaskRow) -> _Cluster | None:
        assert self.ctx.pools is not None
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
        cluster = _Cluster(lease.cluster, lease.handle, cloud, nodes=self.ctx.pools.nodes_for(lease, cloud))
        self._clusters[lease.cluster.id] = cluster
        return cluster

    async def _provision(self, row: TaskRow, task: Task, policy: RecoveryPolicy) -> _Cluster:
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
        errors: list[str] = []
        for tried, offer in enumerate(offers):
            cloud = self.ctx.clouds[offer.cloud]
            # A fresh name per place (a refused one may still be winding down),
            # and past one left over from before a controller restart.
            name = base_name
            if tried or await self.store.cluster_name_taken(base_name):
                name = f"{base_name}-{secrets.token_hex(2)}"
            market = "spot" if offer.use_spot else "on-demand"
            await self.store.set_task_fields(
                self.job.id, idx,
                status_reason=f"provisioning on {offer.infra} ({offer.instance_type}, {market}); "
                              f"place {tried + 1} of {len(offers)}",
            )
            cluster_id = await self.store.insert_cluster(
                name=name, cloud=offer.cloud, region=offer.region, zone=offer.zone,
                instance_type=offer.instance_type, use_spot=offer.use_spot,
                num_nodes=task.num_nodes, job_id=self.job.id, task_idx=idx, attempt_no=row.attempt + 1,
            )
            log.debug("job %s task %s: trying %s on %s", self.job.id, idx, name, offer.infra)
            try:
                handle = await cloud.provision(
                    name, offer, task.num_nodes, labels={"skytui-job": str(self.job.id), "skytui-task": str(idx)},
                    accepted=functools.partial(self._placed, idx, keep_reason=True),
                )
            except PrecheckError as exc:
                await self._give_back(cluster_id, cloud, name)
                raise TaskFailed(S.FAILED_PRECHECKS, str(exc)) from exc
            except CapacityError as exc:
                errors.append(f"{offer.infra}: {exc}")
                await self._give_back(cluster_id, cloud, name)
                continue
            await self.store.update_cluster(cluster_id, status=ClusterStatus.UP, handle=handle.to_json())
            refused = f"after {_refusals(errors)}" if errors else None
            attempt = await self.store.start_attempt(
                self.job.id, idx, infra=offer.infra, instance_type=offer.instance_type,
                use_spot=offer.use_spot, price_per_hour=offer.price_per_hour * task.num_nodes, message=refused,
            )
            await self.store.set_attempt_cluster(self.job.id, idx, attempt, cluster_id)
            self._say(f"task {idx}: {name} is up on {offer.infra} ({offer.instance_type}, {market}, "
                      f"{task.num_nodes} node(s))" + (f", {refused}" if refused else ""))
            cluster_row = await self.store.cluster(cluster_id)
            assert cluster_row is not None
            cluster = _Cluster(cluster_row, handle, cloud)
            self._clusters[cluster_id] = cluster
            return cluster
        raise NoCapacity(errors)

    async def _give_back(self, cluster_id: int, cloud: Cloud, name: str) -> None:
        """A place said no: make sure nothing of it stands, then forget the try.
        If terminating fails the record stays, live, for the sweep to retry."""
        await cloud.terminate(name, None)
        await self.store.forget_cluster(cluster_id)

    async def _connect(self, cluster: _Cluster, *, give_up_after_s: float | None = UNREACHABLE_GRACE_S) -> None:
        """Reach every node. A fresh machine that never answers is given up
        after a grace period; one running a job (give_up_after_s=None) only
        when the infra says it is gone."""
        if not cluster.nodes:
            cluster.nodes = [cluster.cloud.node(info) for info in cluster.handle.nodes]
        await self._while_up(
            cluster, "connecting", lambda: asyncio.gather(*(node.connect() for node in cluster.nodes)),
            give_up_after_s=give_up_after_s,
        )

    async def _sync_files(self, cluster: _Cluster, idx: int, task: Task) -> None:
        try:
            await self._while_up(cluster, "copying files", lambda: sync_task_files(
                cluster.nodes, task, absolute_mounts=cluster.cloud.absolute_mounts,
                staging=self._staging(), staging_part=f"task-{idx}" if idx else "",
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

    # --------------------------------------------------------------- phases

    def _env(self, cluster: _Cluster, idx: int, task: Task, rank: int, phase: str) -> dict[str, str]:
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

    async def _run_phase(
        self, cluster: _Cluster, idx: int, attempt: int, phase: str, script: str, task: Task
    ) -> PhaseOutcome:
        """Start (or re-attach to) a phase on every node and wait for its exit codes."""
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

        async def start(rank: int) -> int:
            node = cluster.nodes[rank]
            return await node.start_phase(phase_id, script, self._env(cluster, idx, task, rank, phase), cwd=cwd)

        pids = await self._while_up(
            cluster, f"starting {phase}", lambda: asyncio.gather(*(start(rank) for rank in range(len(cluster.nodes)))),
            give_up_after_s=None if phase == "run" and any(s.pid for s in segments) else UNREACHABLE_GRACE_S,
        )
        for segment, pid in zip(segments, pids):
            if segment.pid != pid:
                await self.store.update_segment(segment.id, pid=pid)
        if any(not s.finished for s in segments):
            self._say(f"task {idx}: {phase} started (attempt {attempt}, pid {', '.join(map(str, pids))})")
        while True:
            try:
                return await self._watch_phase(
                    cluster, phase_id, paths, [s.start_offset for s in segments], [s.id for s in segments]
                )
            except PhaseNeverBegan as never:
                rank = never.rank
                self._say(f"task {idx}: {phase} on node {rank} was killed before it began; starting it again")
                pid = await self._while_up(cluster, f"starting {phase} again", lambda: start(rank))
                await self.store.update_segment(segments[rank].id, pid=pid)

    async def _watch_phase(
        self, cluster: _Cluster, phase_id: str, paths: list[Path], starts: list[int],
        segment_ids: list[int],
    ) -> PhaseOutcome:
        machine = self.ctx.machines.watch(cluster.cloud, cluster.handle)
        try:
            return await self._follow_phase(cluster, machine, phase_id, paths, starts, segment_ids)
        finally:
            self.ctx.machines.unwatch(cluster.cloud, machine)
            for node in cluster.nodes:
                node.unwatch_phase(phase_id)

    async def _follow_phase(
        self, cluster: _Cluster, machine: MachineWatch, phase_id: str, paths: list[Path], starts: list[int],
        segment_ids: list[int],
    ) -> PhaseOutcome:
        """Look at the phase on every node whenever a node says it changed (or,
        on a node that cannot say, every so often), until every node has an
        exit code; the infra's word that the machine is gone ends it at once.
        A phase that prints nothing costs nothing between two looks."""
        interval = POLL_FIRST_S
        # The first look checks that the phase lives: after a (re)start, a pid
        # on record may name a process that never got going. A node that
        # cannot push is asked again every LIVENESS_EVERY_S; one that pushes
        # says itself when the process is gone.
        first_look = [True] * len(cluster.nodes)
        last_liveness = time.monotonic()
        unreachable_since: float | None = None
        codes: list[int | None] = [None] * len(cluster.nodes)
        ended: list[float] = []
        while True:
            if machine.lost.is_set():
                raise NodeLost(f"{cluster.row.name} is no longer up")
            liveness_due = time.monotonic() - last_liveness > LIVENESS_EVERY_S
            if liveness_due:
                last_liveness = time.monotonic()
            signals: list[asyncio.Event | None] = []
            try:
                for rank, node in enumerate(cluster.nodes):
                    if codes[rank] is not None:
                        continue
                    # Cleared before the look: a change made after it wakes the wait below.
                    signal = await node.watch_phase(phase_id)
                    if signal is not None:
                        signal.clear()
                    signals.append(signal)
                    # A node that pushes says itself when the process is gone.
                    state = await node.phase_state(
                        phase_id, check_alive=first_look[rank] or (signal is None and liveness_due))
                    # Read the output after the exit code: once the code is there,
                    # everything the phase printed is on disk.
                    await sync_phase_output(node, phase_id, paths[rank], starts[rank], drain=state.finished,
                                            secrets=self._masked)
                    first_look[rank] = False
                    if state.finished:
                        codes[rank] = state.exit_code
                        if state.ended_at is not None:
                            ended.append(state.ended_at)
                        await self.store.update_segment(segment_ids[rank], finished=True)
                    elif state.alive is False:
                        if state.started is False:
                            raise PhaseNeverBegan(rank)
                        raise NodeLost(f"the {phase_id} process vanished on node {rank}")
                unreachable_since = None
            except NodeError as exc:
                # Only the infra can say a machine is gone; SSH alone never can.
                if await cluster.cloud.cluster_state(cluster.handle) is not ClusterState.UP:
                    raise NodeLost(f"{cluster.row.name} is no longer up") from exc
                # The machine is up and SSH dropped: re-attach, never relaunch a live job.
                if unreachable_since is None:
                    unreachable_since = time.monotonic()
                    self._say(f"{cluster.row.name} is up but unreachable ({exc}); re-attaching")
                await self._reconnect(cluster)
                first_look = [True] * len(cluster.nodes)
                continue
            if any(code not in (None, 0) for code in codes) and (
                await cluster.cloud.cluster_state(cluster.handle) is not ClusterState.UP
            ):
                # Killed by its machine going away (SIGTERM at a spot reclaim),
                # not by its own fault: a preemption, never a user failure.
                raise NodeLost(f"{cluster.row.name} went down under {phase_id}")
            if all(code is not None for code in codes):
                return PhaseOutcome([int(code) for code in codes if code is not None], max(ended, default=None))
            if any(code not in (None, 0) for code in codes):
                # One node failed: the task has failed; stop the others, keep their output.
                await self._kill_phase(cluster, phase_id)
                for rank, node in enumerate(cluster.nodes):
                    if codes[rank] is None:
                        with contextlib.suppress(NodeError):
                            await sync_phase_output(node, phase_id, paths[rank], starts[rank], drain=True,
                                                    secrets=self._masked)
                return PhaseOutcome([code if code is not None else -1 for code in codes], max(ended, default=None))
            if all(signal is not None for signal in signals):
                # Every node pushes: wait for one to speak, or for the infra.
                waits = [signal.wait() for signal in signals if signal is not None]
                await first_of(*waits, machine.lost.wait(), timeout=SAFETY_LOOK_S)
                interval = POLL_MAX_S
            else:
                await first_of(machine.lost.wait(), timeout=interval)
                interval = min(POLL_MAX_S, interval * 1.5)

    async def _reconnect(self, cluster: _Cluster) -> None:
        old, cluster.nodes = cluster.nodes, [cluster.cloud.node(info) for info in cluster.handle.nodes]
        for node in old:
            with contextlib.suppress(Exception):
                await node.close()
        await asyncio.sleep(1.0)

    async def _while_up(
        self, cluster: _Cluster, what: str, action: Callable[[], Awaitable[T]],
        *, give_up_after_s: float | None = UNREACHABLE_GRACE_S,
    ) -> T:
        """Do an idempotent `action` on the nodes, again after reconnecting
        while SSH fails and the infra says the machine is up: an SSH drop
        never relaunches a job. A fresh machine is given up after
        `give_up_after_s` (None: never, while it is up)."""
        deadline = None if give_up_after_s is None else time.monotonic() + give_up_after_s
        told = False
        while True:
            try:
                return await action()
            except NodeError as exc:
                if await cluster.cloud.cluster_state(cluster.handle) is not ClusterState.UP:
                    raise NodeLost(f"{cluster.row.name} is no longer up") from exc
                if deadline is not None and time.monotonic() > deadline:
                    raise NodeLost(f"{cluster.row.name} unreachable for {give_up_after_s:g}s: {exc}") from exc
                if not told:
                    told = True
                    self._say(f"{cluster.row.name} is up but SSH failed while {what} ({exc}); retrying")
                await self._reconnect(cluster)

    async def _kill_phase(self, cluster: _Cluster, phase_id: str) -> None:
        async def kill(node: Node) -> None:
            try:
                await node.kill_phase(phase_id)
            except NodeError as exc:
                self._say(f"could not stop {phase_id} on {node.info.user}: {exc}")

        await asyncio.gather(*(kill(node) for node in cluster.nodes))

    # -------------------------------------------------------------- cleanup

    async def _teardown(self, row: ClusterRow, *, reason: str) -> None:
        cloud = self.ctx.clouds.get(row.cloud)
        cached = self._clusters.pop(row.id, None)
        if cached is not None:
            for node in cached.nodes:
                await node.close()
        if cloud is None:
            raise CloudError(f"cluster {row.name} is on {row.cloud}, which is not enabled")
        await self.store.update_cluster(row.id, status=ClusterStatus.TERMINATING)
        handle = ClusterHandle.from_json(row.handle) if row.handle_json else None
        await cloud.terminate(row.name, handle)
        await self.store.update_cluster(row.id, status=ClusterStatus.TERMINATED, end_reason=reason)
        self._say(f"terminated {row.name} ({reason})")

    async def _teardown_all(self, *, reason: str, machine_lost: bool = False) -> None:
        if self.job.pool is not None:
            # The worker stays up for the next job, unless its machine is gone.
            await self._release_worker(lost=machine_lost)
            return
        for row in await self.store.live_clusters(self.job.id):
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
        for row in await self.store.tasks(self.job.id):
            status = row.status_enum
            if status is S.PENDING:
                await self.store.transition_task(
                    self.job.id, row.task_idx, S.CANCELLED, message="cancelled by user", expect=S.PENDING
                )
            elif not status.is_terminal and status is not S.CANCELLING:
                await self.store.transition_task(
                    self.job.id, row.task_idx, S.CANCELLING, message="cancelled by user"
                )
        try:
            if self.job.pool is not None:
                await self._stop_on_worker()
            for row in await self.store.live_clusters(self.job.id):
                await self._stop_and_collect(row)
                await self._teardown(row, reason="cancelled by user")
        except Exception as exc:  # noqa: BLE001 - reported on the job, not raised
            log.exception("job %s: cleanup after cancel failed", self.job.id)
            for row in await self.store.tasks(self.job.id):
                if row.status_enum is S.CANCELLING:
                    await self.store.transition_task(
                        self.job.id, row.task_idx, S.FAILED_CONTROLLER,
                        message=f"cleanup failed, resources may have leaked: {exc}",
                        failure_reason=f"cleanup failed, resources may have leaked: {exc}",
                    )
            return
        for row in await self.store.tasks(self.job.id):
            if row.status_enum is S.CANCELLING:
                await self.store.end_attempt(self.job.id, row.task_idx, row.attempt, reason="cancelled by user")
                await self.store.transition_task(
                    self.job.id, row.task_idx, S.CANCELLED, message="cancelled by user"
                )
        self._say("cancelled")

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
        cluster = self._clusters.get(row.id) or _Cluster(row, handle, cloud)
        self._clusters[row.id] = cluster
        segments = [s for s in await self.store.segments(self.job.id, row.task_idx) if s.attempt_no == row.attempt_no]
        active = [s for s in segments if not s.finished]
        if not active:
            return
        try:
            await asyncio.wait_for(self._connect(cluster), timeout=10)
            phase_id = phase_id_for(self.job.id, row.task_idx, row.attempt_no or 0, active[0].phase)
            await self._kill_phase(cluster, phase_id)
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
    return [
        Task.model_validate({**task, "secrets": secrets.get(str(index), {})})
        for index, task in enumerate(spec["tasks"])
    ]
