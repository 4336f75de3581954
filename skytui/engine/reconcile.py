"""The controller's main loop: cancels, sim chaos, new jobs, leaked machines, the node host.

Twice a second, or at once when a client sends SIGUSR1, it reads the intents
in the DB: cancel requests go to their job's coroutine, the sim chaos verbs
to `SimIntents`, and new or resumed jobs get a coroutine while the running
limit allows. At start-up, and every few minutes, it terminates every
machine that no unfinished job owns, so nothing leaks across a crash.
Stopping it (SIGTERM) leaves jobs running on their nodes; the next
controller re-attaches to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from skytui.clouds.base import ClusterHandle
from skytui.clouds.local import LocalCloud
from skytui.clouds.registry import enabled_clouds
from skytui.clouds.sim import SimCloud
from skytui.config import Paths, load_config
from skytui.engine.context import EngineContext
from skytui.engine.controller import JobController, load_tasks
from skytui.engine.job_group import JobGroup
from skytui.engine.job_watch import JobWatch
from skytui.engine.named_buckets import BUCKET_CREATING, JobBuckets
from skytui.engine.notify import Notifier
from skytui.engine.pools import PoolManager
from skytui.engine.scheduler import Scheduler
from skytui.engine.sim_intents import SimIntents
from skytui.engine.status import IN_PROGRESS, TaskStatus
from skytui.engine.store import AsyncStore, ClusterStatus, JobRow, Store, TaskRow
from skytui.spec.stored import stored_group

log = logging.getLogger("skytui.reconcile")

TICK_S = 0.5
SWEEP_EVERY_S = 300.0
NODE_HOST_CHECK_S = 15.0
# `controller stop` waits for the daemon (daemon.stop_controller): it must be
# gone well within that, with thousands of jobs mid-way.
SHUTDOWN_GRACE_S = 1.5
SHUTDOWN_FORCE_S = 1.0
EXIT_LEFTOVERS_S = 1.0
# However busy the loop, the process is gone this long after a stop signal.
STOP_DEADLINE_S = 7.0
SDK_THREAD_PREFIX = "sdk"


class Reconciler:
    def __init__(self, p: Paths) -> None:
        self.paths = p
        config = load_config(p)
        self.store = AsyncStore(Store(p.db_url))
        # The loop's own reads and writes (intents, new jobs) take a lane of
        # their own: a cancel or a stop is not queued behind every job's calls.
        self.control = self.store.lane()
        self.clouds = enabled_clouds(p, config)
        self.scheduler = Scheduler(
            config.jobs.controller.max_launching, config.jobs.controller.max_running
        )
        self.ctx = EngineContext(self.store, self.clouds, p, self.scheduler, config.jobs.recovery,
                                 bucket=config.jobs.bucket, notice_signal=config.jobs.preemption_notice_signal)
        self.pools = PoolManager(self.ctx)
        self.ctx.pools = self.pools
        self.sim_intents = SimIntents(self.control, self.ctx.clouds,
                                     notice_signal=config.jobs.preemption_notice_signal)
        self.notifier = Notifier(self.store, config.jobs.notify)
        self.active: dict[int, JobController] = {}
        self.watch = JobWatch(self.control, p.job_logs, restart_on_stall=config.jobs.stall_action == "restart",
                              controllers=self.active, wake=self.wake)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        # A client's wake (new jobs, cancels) or a tick asks for a whole pass;
        # a job's end only frees a slot. The last look for runnable jobs
        # filled every free slot: more may be waiting for the next one.
        self._intents_due = True
        self._more_runnable = True
        self._stopping = asyncio.Event()
        self._stop_signalled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_sweep = self._last_node_check = self._last_watch = 0.0
        self._sdk: ThreadPoolExecutor | None = None
        self._stop_deadline = threading.Event()  # set by the stop signal; see _exit_at_deadline
        self._notify: asyncio.Task[None] | None = None

    def run(self) -> bool:
        """Serve until stopped, then exit promptly: True if everything ended,
        False if work was left behind (SDK calls still running in threads,
        coroutines that would not end) for the caller to abandon.

        Unlike asyncio.run, what is left after `shutdown` gets a bounded
        moment (`EXIT_LEFTOVERS_S`), not an unbounded wait: `controller stop`
        must return within seconds, and anything cut short here is redone
        idempotently by the next controller, as after a crash."""
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.serve())
            leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in leftovers:
                task.cancel()
            if leftovers:
                loop.run_until_complete(asyncio.wait(leftovers, timeout=EXIT_LEFTOVERS_S))
            stuck = [task for task in leftovers if not task.done()]
            busy = self._stop_sdk_threads(EXIT_LEFTOVERS_S)
        finally:
            asyncio.set_event_loop(None)
        if stuck or busy:
            log.warning("exiting with %d coroutine(s) and %d SDK call(s) unfinished; the next controller "
                        "redoes what they were doing", len(stuck), busy)
            return False
        loop.close()
        return True

    def _stop_sdk_threads(self, timeout: float) -> int:
        """Let the SDK threads finish the calls they are in, for at most
        `timeout`; how many are still busy after it (queued calls are dropped)."""
        if self._sdk is None:
            return 0
        self._sdk.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        threads = [t for t in threading.enumerate() if t.name.startswith(SDK_THREAD_PREFIX)]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(1 for thread in threads if thread.is_alive())

    def wake(self) -> None:
        self._intents_due = True
        self._wake.set()
        self.pools.wake()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _on_stop_signal(self, _signum: int, _frame: object) -> None:
        """SIGTERM/SIGINT, as a plain signal handler: it runs whatever the
        event loop is doing. asyncio's own signal handlers learn of a signal
        through the loop's wake-up pipe, and a loop finishing thousands of
        store calls can fill that pipe and drop the signal; this flag, read
        every tick, cannot be dropped."""
        self._stop_signalled = True
        self._stop_deadline.set()
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(self.stop)

    def _exit_at_deadline(self) -> None:
        """A thread: `STOP_DEADLINE_S` after a stop signal, if the process is
        still here (a loop saturated by thousands of jobs can be slow to wind
        down), it leaves at once. That is safe by design: every transition is
        durable before it is acted on, so the next controller carries on as
        after a `kill -9`."""
        self._stop_deadline.wait()
        time.sleep(STOP_DEADLINE_S)
        log.warning("still stopping %gs after the signal; exiting now, the next controller carries on",
                    STOP_DEADLINE_S)
        with contextlib.suppress(OSError):
            if self.paths.controller_pid.read_text().strip() == str(os.getpid()):
                self.paths.controller_pid.unlink()
        logging.shutdown()
        os._exit(0)

    async def serve(self) -> None:
        if not await self.store.hold_controller_lock():
            log.error("another controller already owns this state DB; exiting")
            self.control.close()
            self.store.close()
            return
        loop = asyncio.get_running_loop()
        # Cloud SDKs are blocking and run in threads (a Kubernetes exec per
        # phase poll, EC2 calls): the default pool (cpus + 4) would queue them.
        self._sdk = ThreadPoolExecutor(max_workers=64, thread_name_prefix=SDK_THREAD_PREFIX)
        loop.set_default_executor(self._sdk)
        loop.add_signal_handler(signal.SIGUSR1, self.wake)
        self._loop = loop
        # Started before the handler can fire: a signal handler must not start threads.
        threading.Thread(target=self._exit_at_deadline, name="stop-deadline", daemon=True).start()
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        await self._supervise_node_host()
        await self.sweep_leaks()
        await self.release_leftover_buckets()
        await self.sim_intents.carry_out_waiting()
        pools = asyncio.create_task(self.pools.run(self._stopping), name="pools")
        self._notify = asyncio.create_task(self.notifier.run(self._stopping), name="notify")
        self._last_sweep = self._last_node_check = time.monotonic()
        while not self._stopping.is_set():
            # A pass may wait on a store queue thousands of calls long; a stop
            # does not wait for it (a pass is idempotent: the next controller
            # reads the same intents).
            intents, self._intents_due = self._intents_due, False
            if not await self._until_stopped(self._pass(intents=intents)):
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=TICK_S)
            except asyncio.TimeoutError:
                self._intents_due = True  # a tick reads everything again
            self._wake.clear()
            if self._stop_signalled:
                self.stop()
        await self.shutdown(pools)

    async def _pass(self, *, intents: bool = True) -> None:
        """One round: intents and new jobs, and now and then the node host and
        the leak sweep. Without `intents` (a job ended, and no client woke
        the loop) only the freed slots are filled, and only if jobs may be
        waiting for one: a thousand pool jobs ending cost no reads."""
        try:
            await self.reconcile(intents=intents)
        except Exception:  # noqa: BLE001 - a DB hiccup must not kill the daemon
            log.exception("reconcile failed; retrying")
        now = time.monotonic()
        if now - self._last_node_check > NODE_HOST_CHECK_S:
            self._last_node_check = now
            await self._supervise_node_host()
        if now - self._last_sweep > SWEEP_EVERY_S:
            self._last_sweep = now
            await self.sweep_leaks()
        if now - self._last_watch > self.watch.next_look_in_s:
            self._last_watch = now
            await self.watch.check()

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run `work` unless the controller is told to stop first (then it is
        cancelled); True if it ran to its end."""
        task = asyncio.create_task(work)
        stopped = asyncio.create_task(self._stopping.wait())
        while not task.done() and not stopped.done():
            await asyncio.wait([task, stopped], timeout=TICK_S, return_when=asyncio.FIRST_COMPLETED)
            if self._stop_signalled:
                self.stop()
        stopped.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=EXIT_LEFTOVERS_S)
            return False
        return True

    async def reconcile(self, *, intents: bool = True) -> None:
        if intents:
            await self._deliver_cancels()
            await self.sim_intents.deliver()
        free = self.scheduler.free_running_slots(len(self.active))
        if free and not self._stopping.is_set() and (intents or self._more_runnable):
            runnable = await self.control.runnable_jobs(set(self.active), free)
            self._more_runnable = len(runnable) >= free
            await self._start_jobs(runnable)

    async def _deliver_cancels(self) -> None:
        """Cancel intents: jobs that never started end CANCELLED in one batch;
        a job with a coroutine is stopped by it; the rest (something of them
        was started before a restart) get a coroutine that cleans them up."""
        requested = await self.control.cancel_requested()
        idle = [job_id for job_id in requested if job_id not in self.active]
        cancelled = set(await self.control.cancel_unstarted(idle)) if idle else set()
        to_start: list[int] = []
        for job_id in requested:
            controller = self.active.get(job_id)
            if controller is not None:
                controller.request_stop("user")
            elif job_id not in cancelled:
                to_start.append(job_id)  # a cancel never waits for a running slot
        if to_start:
            await self._start_jobs(await self.control.jobs_by_ids(to_start))
        if self.active:
            # Cancelled by a client while its coroutine waited for a launch
            # slot or a worker (it had started nothing): that coroutine just
            # ends, with no cleanup to do and no DB write.
            waiting = [job_id for job_id, c in self.active.items() if c.stop_reason is None]
            ended = await self.control.cancelled_among(waiting) if waiting else []
            for job_id in ended:
                controller = self.active.get(job_id)
                if controller is not None:
                    controller.request_stop("ended")
            if ended:
                log.info("%d job(s) cancelled before they started: their coroutines end", len(ended))

    async def _start_jobs(self, jobs: list[JobRow]) -> None:
        """A coroutine for each job; their specs and tasks are read in one go,
        so that a thousand starts cost two store calls, not a thousand."""
        if not jobs:
            return
        specs = await self.control.job_specs([job.id for job in jobs])
        rows = await self.control.tasks_of_jobs([job.id for job in jobs])
        for job in jobs:
            if self._stopping.is_set():
                return  # `controller stop` is not kept waiting by a long batch
            if job.id in self.active or job.id not in specs:
                continue
            spec, secrets = specs[job.id]
            self.pools.expect(job)  # pool jobs get their workers in queue order, whichever coroutine is quicker
            await self._start_job(job, spec, secrets, rows.get(job.id))
            if len(self.active) % 100 == 0:
                await asyncio.sleep(0)  # parsing specs is CPU: let the started ones (and signals) run

    async def _start_job(
        self, job: JobRow, spec: dict[str, Any], secrets: dict[str, dict[str, str]], rows: list[TaskRow] | None,
    ) -> None:
        try:
            tasks = load_tasks(spec, secrets)
        except Exception as exc:  # noqa: BLE001 - a stored spec this version cannot read
            log.exception("job %s: unreadable spec", job.id)
            for row in await self.store.tasks(job.id):
                if not row.status_enum.is_terminal:
                    await self.store.transition_task(
                        job.id, row.task_idx, TaskStatus.FAILED_PRECHECKS,
                        message=f"unreadable job spec: {exc}", failure_reason=f"unreadable job spec: {exc}",
                    )
            return
        controller = JobController(self.ctx, job, tasks, JobGroup.of(stored_group(spec), tasks))
        self.active[job.id] = controller
        task = controller.start(rows)
        self._tasks[job.id] = task
        task.add_done_callback(functools.partial(self._job_done, job.id))

    def _job_done(self, job_id: int, _task: object = None) -> None:
        self.active.pop(job_id, None)
        self.pools.forget(job_id)
        task = self._tasks.pop(job_id, None)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("job %s: controller task died: %r", job_id, task.exception())
        self._wake.set()

    async def _supervise_node_host(self) -> None:
        """Nodes of local and sim live in the node host: keep it running while
        any machine is up (its own process, so a crash there loses no job)."""
        hosts = [cloud for cloud in self.clouds.values() if isinstance(cloud, (LocalCloud, SimCloud))]
        names = {cloud.name for cloud in hosts}
        # Only its own machines need it: with just cloud VMs up, an idle host may go.
        if not hosts or not any(c.cloud in names for c in await self.store.live_clusters()):
            return
        try:
            await hosts[0].ensure_node_host()
        except Exception:  # noqa: BLE001
            log.exception("the local node host could not be started")

    async def sweep_leaks(self) -> None:
        """Terminate every machine that no unfinished job owns.

        The infra is listed before the DB is read: a job records its cluster
        before provisioning it, so whatever the listing holds is in the DB by
        the time it is read, and a launch racing the sweep is never mistaken
        for a leak.
        """
        on_infra: dict[str, list[str]] = {}
        for name, cloud in self.clouds.items():
            try:
                on_infra[name] = await cloud.list_clusters()
            except Exception:  # noqa: BLE001
                log.exception("cannot list clusters on %s", name)
        owned: set[str] = set()
        live = await self.store.live_clusters()
        owners = {job.id: job for job in await self.store.jobs_by_ids(
            sorted({row.job_id for row in live if row.job_id is not None}))}
        for row in live:
            owner = owners.get(row.job_id) if row.job_id is not None else None
            if row.pool is not None or (owner is not None and TaskStatus(owner.status) in IN_PROGRESS):
                owned.add(row.name)  # pool workers are reconciled by their pool
                continue
            row_cloud = self.clouds.get(row.cloud)
            if row_cloud is None:
                log.warning("cluster %s is on %s, which is not enabled; cannot sweep it", row.name, row.cloud)
                continue
            log.info("sweeping %s: its job has finished", row.name)
            try:
                await row_cloud.terminate(row.name, ClusterHandle.from_json(row.handle) if row.handle_json else None)
            except Exception:  # noqa: BLE001
                log.exception("could not terminate %s", row.name)
                continue
            await self.store.update_cluster(row.id, status=ClusterStatus.TERMINATED, end_reason="swept: no live owner")
        for cloud_name, names in on_infra.items():
            for name in names:
                if name not in owned:
                    log.info("sweeping %s on %s: no record owns it", name, cloud_name)
                    try:
                        await self.clouds[cloud_name].terminate(name, None)
                    except Exception:  # noqa: BLE001 - one unreachable infra must not stop the sweep
                        log.exception("could not terminate %s on %s; the next sweep retries", name, cloud_name)

    async def release_leftover_buckets(self) -> None:
        """Delete the buckets finished jobs made and may not keep, where a
        controller died between a job's end and their deletion: the job's
        events say which (JobBuckets.release does nothing twice)."""
        for job_id in await self.store.ended_jobs_with_event(BUCKET_CREATING):
            try:
                spec, _secrets = await self.store.job_spec(job_id)
                await JobBuckets(self.store, job_id, load_tasks(spec, {})).release()
            except Exception:  # noqa: BLE001 - one unreadable job must not stop the others
                log.exception("job %s: could not release its buckets", job_id)

    async def shutdown(self, pools: asyncio.Task[None] | None = None) -> None:
        """Stop every coroutine and exit within about `SHUTDOWN_GRACE_S` +
        `SHUTDOWN_FORCE_S`: jobs keep running on their nodes.

        Coroutines stop at once, except those carrying out a user's cancel
        or tearing down the machine of a job that succeeded, which get the
        grace period to finish (the pools' loop ends at its next
        pass meanwhile); after it they are interrupted too, as a crash would.
        Nothing is lost: the cancel is in the DB (the intent, the task
        CANCELLING, the machine TERMINATING) and the next controller carries
        it on, as it does after a crash; a restart also picks up the workers
        of a pool caught in a long step.
        """
        log.info("controller stopping; jobs keep running on their nodes")
        self.ctx.ends_first.release()  # teardowns after a success go now, within the grace
        for controller in list(self.active.values()):
            controller.request_stop("shutdown")
        extra = [task for task in (pools, self._notify) if task is not None]
        await self._wait_for_coroutines(SHUTDOWN_GRACE_S, extra)
        if pools is not None and not pools.done():
            pools.cancel()
        cancelling = sum(1 for controller in self.active.values() if controller.stop_reason == "user")
        if cancelling:
            log.info("%d cancel(s) still in progress; the next controller finishes them", cancelling)
        for controller in list(self.active.values()):
            controller.request_stop("shutdown", force=True)
        await self._wait_for_coroutines(SHUTDOWN_FORCE_S, extra)
        if self._tasks:
            log.warning("%d job coroutine(s) did not stop; leaving them", len(self._tasks))
        await self.ctx.machines.close()
        self.control.close()
        self.store.close()

    async def _wait_for_coroutines(self, timeout: float, extra: list[asyncio.Task[None]]) -> None:
        tasks = [task for task in [*self._tasks.values(), *extra] if not task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
