"""The controller's main loop: cancels, new jobs, leaked machines, the node host.

Twice a second, or at once when a client sends SIGUSR1, it reads the intents
in the DB: cancel requests go to their job's coroutine, and new or resumed
jobs get a coroutine while the running limit allows. At start-up, and every
few minutes, it terminates every machine that no unfinished job owns, so
nothing leaks across a crash. Stopping it (SIGTERM) leaves jobs running on
their nodes; the next controller re-attaches to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from skytui.clouds.base import ClusterHandle
from skytui.clouds.local import LocalCloud
from skytui.clouds.registry import enabled_clouds
from skytui.clouds.sim import SimCloud
from skytui.config import Paths, load_config
from skytui.engine.controller import EngineContext, JobController, load_tasks
from skytui.engine.pools import PoolManager
from skytui.engine.scheduler import Scheduler
from skytui.engine.status import IN_PROGRESS, TaskStatus
from skytui.engine.store import AsyncStore, ClusterStatus, JobRow, Store

log = logging.getLogger("skytui.reconcile")

TICK_S = 0.5
SWEEP_EVERY_S = 300.0
NODE_HOST_CHECK_S = 15.0
# `controller stop` waits for the daemon (daemon.stop_controller): it must be
# gone well within that, with thousands of jobs mid-way.
SHUTDOWN_GRACE_S = 3.0
SHUTDOWN_FORCE_S = 2.0


class Reconciler:
    def __init__(self, p: Paths) -> None:
        self.paths = p
        config = load_config(p)
        self.store = AsyncStore(Store(p.db_url))
        self.clouds = enabled_clouds(p, config)
        self.scheduler = Scheduler(
            config.jobs.controller.max_launching, config.jobs.controller.max_running
        )
        self.ctx = EngineContext(self.store, self.clouds, p, self.scheduler, config.jobs.recovery,
                                 bucket=config.jobs.bucket)
        self.pools = PoolManager(self.ctx)
        self.ctx.pools = self.pools
        self.active: dict[int, JobController] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()
        self.pools.wake()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def serve(self) -> None:
        if not await self.store.hold_controller_lock():
            log.error("another controller already owns this state DB; exiting")
            self.store.close()
            return
        loop = asyncio.get_running_loop()
        # Cloud SDKs are blocking and run in threads (a Kubernetes exec per
        # phase poll, EC2 calls): the default pool (cpus + 4) would queue them.
        loop.set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="sdk"))
        loop.add_signal_handler(signal.SIGUSR1, self.wake)
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        await self._supervise_node_host()
        await self.sweep_leaks()
        pools = asyncio.create_task(self.pools.run(self._stopping), name="pools")
        last_sweep = last_node_check = time.monotonic()
        while not self._stopping.is_set():
            try:
                await self.reconcile()
            except Exception:  # noqa: BLE001 - a DB hiccup must not kill the daemon
                log.exception("reconcile failed; retrying")
            now = time.monotonic()
            if now - last_node_check > NODE_HOST_CHECK_S:
                last_node_check = now
                await self._supervise_node_host()
            if now - last_sweep > SWEEP_EVERY_S:
                last_sweep = now
                await self.sweep_leaks()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=TICK_S)
            self._wake.clear()
        await self._stop_pools(pools)
        await self.shutdown()

    async def _stop_pools(self, pools: asyncio.Task[None]) -> None:
        """The pools' loop ends at its next pass; one caught in a long step
        (a worker's teardown) is interrupted, as a crash would: a restart
        picks its workers up."""
        done, _ = await asyncio.wait([pools], timeout=SHUTDOWN_GRACE_S)
        if not done:
            pools.cancel()
            await asyncio.wait([pools], timeout=SHUTDOWN_FORCE_S)

    async def reconcile(self) -> None:
        await self._deliver_cancels()
        free = self.scheduler.free_running_slots(len(self.active))
        if free and not self._stopping.is_set():
            await self._start_jobs(await self.store.runnable_jobs(set(self.active), free))

    async def _deliver_cancels(self) -> None:
        """Cancel intents: jobs that never started end CANCELLED in one batch;
        a job with a coroutine is stopped by it; the rest (something of them
        was started before a restart) get a coroutine that cleans them up."""
        requested = await self.store.cancel_requested()
        idle = [job_id for job_id in requested if job_id not in self.active]
        cancelled = set(await self.store.cancel_unstarted(idle)) if idle else set()
        to_start: list[int] = []
        for job_id in requested:
            controller = self.active.get(job_id)
            if controller is not None:
                controller.request_stop("user")
            elif job_id not in cancelled:
                to_start.append(job_id)  # a cancel never waits for a running slot
        if to_start:
            await self._start_jobs(await self.store.jobs_by_ids(to_start))
        if self.active:
            # Cancelled by a client while its coroutine waited for a launch
            # slot or a worker (it had started nothing): that coroutine ends.
            for job_id in await self.store.cancelled_among(list(self.active)):
                controller = self.active.get(job_id)
                if controller is not None:
                    controller.request_stop("user")

    async def _start_jobs(self, jobs: list[JobRow]) -> None:
        """A coroutine for each job; their specs are read in one go, so that
        a thousand starts cost one store call, not a thousand."""
        if not jobs:
            return
        specs = await self.store.job_specs([job.id for job in jobs])
        for job in jobs:
            if self._stopping.is_set():
                return  # `controller stop` is not kept waiting by a long batch
            if job.id in self.active or job.id not in specs:
                continue
            spec, secrets = specs[job.id]
            await self._start_job(job, spec, secrets)
            if len(self.active) % 100 == 0:
                await asyncio.sleep(0)  # parsing specs is CPU: let the started ones (and signals) run

    async def _start_job(self, job: JobRow, spec: dict[str, Any], secrets: dict[str, dict[str, str]]) -> None:
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
        controller = JobController(self.ctx, job, tasks)
        self.active[job.id] = controller
        task = controller.start()
        self._tasks[job.id] = task
        task.add_done_callback(functools.partial(self._job_done, job.id))

    def _job_done(self, job_id: int, _task: object = None) -> None:
        self.active.pop(job_id, None)
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

    async def shutdown(self) -> None:
        """Stop every coroutine and exit within `SHUTDOWN_GRACE_S` +
        `SHUTDOWN_FORCE_S`: jobs keep running on their nodes.

        Coroutines stop at once, except those carrying out a user's cancel,
        which get the grace period to finish; after it they are interrupted
        too. Nothing is lost: the cancel is in the DB (the intent, the task
        CANCELLING, the machine TERMINATING) and the next controller carries
        it on, as it does after a crash.
        """
        log.info("controller stopping; jobs keep running on their nodes")
        for controller in list(self.active.values()):
            controller.request_stop("shutdown")
        await self._wait_for_coroutines(SHUTDOWN_GRACE_S)
        if self._tasks:
            log.info("%d cancel(s) still in progress; the next controller finishes them", len(self._tasks))
            for controller in list(self.active.values()):
                controller.request_stop("shutdown", force=True)
            await self._wait_for_coroutines(SHUTDOWN_FORCE_S)
        if self._tasks:
            log.warning("%d job coroutine(s) did not stop; leaving them", len(self._tasks))
        self.store.close()

    async def _wait_for_coroutines(self, timeout: float) -> None:
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
