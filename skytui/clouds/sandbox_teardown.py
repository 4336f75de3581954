"""Ending sandboxes as terminating a VM would: every process on them ends,
their disk is gone. Used by the controller (through `SandboxTeardown`) and
by the node host (a spot reclaim).

Tearing down a thousand sandboxes at once (a wave of jobs ending, a bulk
cancel) must not starve the controller's event loop: `SandboxTeardown` ends
whatever is queued as one batch on one thread, with one look over /proc and
one grace period for the whole batch, instead of a thread per sandbox each
holding the GIL in turn.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from skytui.clouds.base import PHASES_DIR
from skytui.clouds.local_layout import (
    NODE_MARKER,
    TERMINATING_FLAG,
    group_exists,
    process_running,
    touch_nodes_dir,
)
from skytui.clouds.phase_scripts import NOTICE_FILE

# How long the processes killed at the end may take to be gone.
KILLED_WAIT_S = 2.0


def _phase_pids(sandbox: Path) -> list[int]:
    """Process groups of the phases still running. A finished phase's id may
    long since belong to someone else's process (a pool worker runs thousands
    of phases): signalling it would hit a stranger. What a finished phase left
    behind still lives in the sandbox and is found by `_scan_sandbox_processes`."""
    pids = []
    for pid_file in (sandbox / PHASES_DIR).glob("*/pid"):
        if (pid_file.parent / "exit_code").exists():
            continue
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(pid_file.read_text().strip()))
    return pids


def give_notice(sandboxes: Sequence[Path], deadline: float, signum: int | None) -> int:
    """A preemption notice to these sandboxes, as an infra gives a VM's
    processes: each running phase gets its `notice` file (the deadline, which
    the wrapper reads so that a job ending in answer to the notice reads as
    the machine's loss, not as its own end), then `signum` to its process
    group (None: no signal). The number of phases noticed."""
    noticed = 0
    for sandbox in sandboxes:
        for pid_file in (sandbox / PHASES_DIR).glob("*/pid"):
            phase_dir = pid_file.parent
            if (phase_dir / "exit_code").exists():
                continue
            try:
                pgid = int(pid_file.read_text().strip())
                tmp = phase_dir / "notice.tmp"
                tmp.write_text(f"{deadline:.3f}\n")
                tmp.replace(phase_dir / NOTICE_FILE)
            except (OSError, ValueError):
                continue
            noticed += 1
            if signum is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signum)
    return noticed


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs. A zombie does not count:
    `killpg(pgid, 0)` says yes for a group of zombies until their parent
    (often PID 1, which may reap late or never) collects them."""
    return group_exists(pgid) and pgid in _LIVE_GROUPS.fresh()


class _SharedScan:
    """One look over /proc serving every teardown that asked before it began.

    Tearing down thousands of sandboxes at once (a bulk cancel) used to read
    every process of the machine once per sandbox, from 64 threads at a time;
    now a scan begun after a caller asked answers that caller, and callers
    queued behind a scan share the next one."""

    def __init__(self, scan: Callable[[], dict[Any, Any]], *, max_age_s: float = 0.0) -> None:
        self._scan = scan
        self._lock = threading.Lock()
        self._began = float("-inf")
        self._result: dict[Any, Any] = {}
        self._max_age_s = max_age_s

    def fresh(self) -> dict[Any, Any]:
        asked = time.monotonic() - self._max_age_s
        with self._lock:
            if self._began < asked:
                self._began = time.monotonic()
                self._result = self._scan()
            return self._result


def _scan_live_groups() -> dict[int, bool]:
    """Process groups with a process that is not a zombie."""
    groups: dict[int, bool] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z":
            groups[int(fields[2])] = True
    return groups


def _scan_sandbox_processes() -> dict[str, list[int]]:
    """Every process whose cwd is in a directory, or whose HOME the node host
    set to one, under that directory and each of its parents: a sandbox's
    processes (those a job detached from its phase's group too, such as
    setsid daemons) are one lookup of its path."""
    found: dict[str, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError):
            cwd = os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)")
            homes = [value[5:].decode(errors="replace") for value in _environ(pid) if value.startswith(b"HOME=")]
            places: set[str] = set()
            for where in (cwd, *homes):
                # Each parent too: a sandbox finds its processes in one lookup.
                while where not in places:
                    places.add(where)
                    where = os.path.dirname(where)
            for place in places:
                found.setdefault(place, []).append(pid)
    return found


def _environ(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read().split(b"\0")


_LIVE_GROUPS = _SharedScan(_scan_live_groups, max_age_s=0.05)
_SANDBOX_PROCESSES = _SharedScan(_scan_sandbox_processes)


def destroy_sandboxes(sandboxes: Sequence[Path], grace_s: float = 5.0) -> None:
    """What terminating these VMs does: every process on them ends (TERM,
    then KILL after `grace_s`), their disks are gone."""
    # Down from the first moment: a job that dies of the SIGTERM below must
    # read as a lost machine, never as a failure of its own.
    for sandbox in sandboxes:
        with contextlib.suppress(OSError):
            (sandbox / TERMINATING_FLAG).touch(mode=0o600)
    for root in {sandbox.parent for sandbox in sandboxes}:
        touch_nodes_dir(root)
    groups = [pgid for sandbox in sandboxes for pgid in _phase_pids(sandbox)]
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    processes = _SANDBOX_PROCESSES.fresh()
    killed = [pid for sandbox in sandboxes for pid in processes.get(str(sandbox), [])]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    # A SIGKILL lands a moment after it is sent: a process still finishing a
    # write into its sandbox would leave the directory behind the rmtree.
    deadline = time.monotonic() + KILLED_WAIT_S
    while (any(group_alive(g) for g in groups) or any(process_running(pid) for pid in killed)) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    for sandbox in sandboxes:
        # The marker goes first so a half-removed sandbox never reads as a live node.
        with contextlib.suppress(FileNotFoundError):
            (sandbox / NODE_MARKER).unlink()
        for _ in range(3):
            shutil.rmtree(sandbox, ignore_errors=True)
            if not sandbox.exists():
                break
            time.sleep(0.05)


def destroy_sandbox(sandbox: Path, grace_s: float = 5.0) -> None:
    destroy_sandboxes([sandbox], grace_s)


class SandboxTeardown:
    """Sandboxes to destroy, ended in batches on one thread: what was queued
    while a batch ran goes in the next one (grouped by grace period)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: list[tuple[Path, float, concurrent.futures.Future[None]]] = []
        self._worker: threading.Thread | None = None

    async def destroy(self, sandboxes: Sequence[Path], grace_s: float) -> None:
        if not sandboxes:
            return
        futures: list[concurrent.futures.Future[None]] = []
        with self._lock:
            for sandbox in sandboxes:
                future: concurrent.futures.Future[None] = concurrent.futures.Future()
                self._queued.append((sandbox, grace_s, future))
                futures.append(future)
            if self._worker is None:
                # Not a daemon: a controller that exits finishes the teardowns
                # it began (its stop deadline bounds the wait), as the thread
                # pool did; a half-removed sandbox would be found by no one.
                self._worker = threading.Thread(target=self._run, name="sandbox-teardown")
                self._worker.start()
        await asyncio.gather(*(asyncio.wrap_future(future) for future in futures))

    def _run(self) -> None:
        while True:
            with self._lock:
                batch, self._queued = self._queued, []
                if not batch:
                    self._worker = None
                    return
            by_grace: dict[float, list[tuple[Path, concurrent.futures.Future[None]]]] = {}
            for sandbox, grace_s, future in batch:
                by_grace.setdefault(grace_s, []).append((sandbox, future))
            for grace_s, entries in sorted(by_grace.items()):
                try:
                    destroy_sandboxes([sandbox for sandbox, _ in entries], grace_s)
                except Exception as exc:  # noqa: BLE001 - every waiter hears of it
                    for _, future in entries:
                        future.set_exception(exc)
                else:
                    for _, future in entries:
                        future.set_result(None)
