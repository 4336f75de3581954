"""The controller daemon: its process, its lock, its wake-up, its main loop.

Exactly one controller owns a state directory (an flock on controller.lock,
held for the process's life). Clients start it on demand and wake it with
SIGUSR1 after writing an intent; without a signal (a shared PostgreSQL DB
written from another machine) it still looks at the DB twice a second.

At start-up it resumes every unfinished job from the DB and terminates every
machine that no unfinished job owns, so nothing leaks across a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from skytui.clouds.base import ClusterHandle
from skytui.clouds.local import LocalCloud
from skytui.clouds.registry import enabled_clouds
from skytui.config import Paths, load_config, paths as default_paths
from skytui.engine.controller import EngineContext, JobController, load_tasks
from skytui.engine.scheduler import Scheduler
from skytui.engine.status import IN_PROGRESS, TaskStatus
from skytui.engine.store import AsyncStore, ClusterStatus, JobRow, Store

log = logging.getLogger("skytui.daemon")

TICK_S = 0.5
SWEEP_EVERY_S = 300.0
NODE_HOST_CHECK_S = 15.0


# ------------------------------------------------------------ process control


@dataclass(frozen=True)
class ControllerInfo:
    running: bool
    pid: int | None


def controller_info(p: Paths) -> ControllerInfo:
    """Running means: someone holds the lock. The pid file only names it."""
    if not p.controller_lock.exists():
        return ControllerInfo(False, None)
    fd = os.open(p.controller_lock, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = int(p.controller_pid.read_text().strip())
            except (OSError, ValueError):
                pid = None
            return ControllerInfo(True, pid)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return ControllerInfo(False, None)
    finally:
        os.close(fd)


def start_controller(p: Paths, timeout: float = 20.0) -> ControllerInfo:
    """Start the daemon if it is not running; wait until it holds its lock."""
    info = controller_info(p)
    if info.running:
        return info
    p.ensure()
    with open(p.controller_log, "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "skytui.engine.daemon"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            close_fds=True, env={**os.environ, "SKYTUI_HOME": str(p.home)},
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = controller_info(p)
        if info.running and info.pid is not None:
            return info
        time.sleep(0.05)
    raise RuntimeError(f"the controller did not start within {timeout:g}s; see {p.controller_log}")


def stop_controller(p: Paths, timeout: float = 30.0) -> bool:
    """SIGTERM the daemon; jobs keep running on their nodes. True if one was stopped."""
    info = controller_info(p)
    if not info.running or info.pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not controller_info(p).running:
            return True
        time.sleep(0.05)
    raise RuntimeError(f"the controller (pid {info.pid}) did not stop within {timeout:g}s")


def wake_controller(p: Paths) -> None:
    info = controller_info(p)
    if info.running and info.pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(info.pid, signal.SIGUSR1)


# ------------------------------------------------------------------- the loop


class Daemon:
    def __init__(self, p: Paths) -> None:
        self.paths = p
        config = load_config(p)
        self.store = AsyncStore(Store(p.db_url))
        self.clouds = enabled_clouds(p, config)
        self.scheduler = Scheduler(
            config.jobs.controller.max_launching, config.jobs.controller.max_running
        )
        self.ctx = EngineContext(self.store, self.clouds, p, self.scheduler)
        self.active: dict[int, JobController] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self.wake)
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        await self._supervise_node_host()
        await self.sweep_leaks()
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
        await self.shutdown()

    async def reconcile(self) -> None:
        for job_id in await self.store.cancel_requested():
            controller = self.active.get(job_id)
            if controller is not None:
                controller.request_stop("user")
            else:
                # A cancel never waits for a running slot.
                job = await self.store.job(job_id)
                if job is not None:
                    await self._start_job(job)
        free = self.scheduler.free_running_slots(len(self.active))
        if free:
            for job in await self.store.runnable_jobs(set(self.active), free):
                await self._start_job(job)

    async def _start_job(self, job: JobRow) -> None:
        spec, secrets = await self.store.job_spec(job.id)
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
        task.add_done_callback(lambda _t, job_id=job.id: self._job_done(job_id))

    def _job_done(self, job_id: int) -> None:
        self.active.pop(job_id, None)
        task = self._tasks.pop(job_id, None)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("job %s: controller task died: %r", job_id, task.exception())
        self._wake.set()

    async def _supervise_node_host(self) -> None:
        local = self.clouds.get("local")
        if not isinstance(local, LocalCloud):
            return
        if not await self.store.live_clusters():
            return
        try:
            await local.ensure_node_host()
        except Exception:  # noqa: BLE001
            log.exception("the local node host could not be started")

    async def sweep_leaks(self) -> None:
        """Terminate every machine that no unfinished job owns."""
        owned: set[str] = set()
        for row in await self.store.live_clusters():
            owner = await self.store.job(row.job_id) if row.job_id is not None else None
            if owner is not None and TaskStatus(owner.status) in IN_PROGRESS:
                owned.add(row.name)
                continue
            if row.pool is not None:
                owned.add(row.name)  # pool workers are reconciled by their pool
                continue
            cloud = self.clouds.get(row.cloud)
            if cloud is None:
                log.warning("cluster %s is on %s, which is not enabled; cannot sweep it", row.name, row.cloud)
                continue
            log.info("sweeping %s: its job has finished", row.name)
            try:
                await cloud.terminate(row.name, ClusterHandle.from_json(row.handle) if row.handle_json else None)
            except Exception:  # noqa: BLE001
                log.exception("could not terminate %s", row.name)
                continue
            await self.store.update_cluster(row.id, status=ClusterStatus.TERMINATED, end_reason="swept: no live owner")
        for cloud in self.clouds.values():
            try:
                names = await cloud.list_clusters()
            except Exception:  # noqa: BLE001
                log.exception("cannot list clusters on %s", cloud.name)
                continue
            for name in names:
                if name not in owned:
                    log.info("sweeping %s on %s: no record owns it", name, cloud.name)
                    await cloud.terminate(name, None)

    async def shutdown(self) -> None:
        log.info("controller stopping; jobs keep running on their nodes")
        for controller in list(self.active.values()):
            controller.request_stop("shutdown")
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=60)
        self.store.close()


def _acquire_lock(p: Paths, patience_s: float = 1.0) -> int | None:
    """Take the controller lock. Clients probe it (controller_info) for an
    instant, so a busy lock is retried briefly before concluding that another
    controller owns it."""
    fd = os.open(p.controller_lock, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + patience_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.01)


def main() -> int:
    p = default_paths()
    p.ensure()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # A client wakes the controller with SIGUSR1 as soon as the pid file names
    # it; the default action would kill it. The first loop pass reads the DB
    # anyway, so an early wake can simply be ignored.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    lock_fd = _acquire_lock(p)
    if lock_fd is None:
        log.info("another controller owns %s; exiting", p.home)
        return 0
    pid_tmp = p.controller_pid.with_suffix(".tmp")
    pid_tmp.write_text(str(os.getpid()))
    os.replace(pid_tmp, p.controller_pid)
    log.info("controller pid %s started for %s", os.getpid(), p.home)
    try:
        asyncio.run(Daemon(p).serve())
    finally:
        with contextlib.suppress(OSError):
            if p.controller_pid.read_text().strip() == str(os.getpid()):
                p.controller_pid.unlink()
        os.close(lock_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
