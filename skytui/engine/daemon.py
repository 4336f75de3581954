"""The controller daemon's process: start, stop, find, wake, and its lock.

Exactly one controller owns a state directory (an flock on controller.lock,
held for the process's life). Clients start it on demand and wake it with
SIGUSR1 after writing an intent; the loop it runs is engine/reconcile.py.
This module stays light: every CLI call imports it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from skytui.config import ConfigError, Paths, restrict_umask, write_private
from skytui.config import paths as default_paths
from skytui.logs.store import open_private_append

log = logging.getLogger("skytui.daemon")


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
    with open_private_append(p.controller_log) as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "skytui.engine.daemon"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            close_fds=True, env={**os.environ, "SKYTUI_HOME": str(p.home)},
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = controller_info(p)
        # The pid file is written once the controller is set up (a stale one
        # is removed first): a pid seen here is a live, working controller.
        if info.running and info.pid is not None:
            return info
        code = proc.poll()
        if code is not None and not info.running:
            # It died at start (a bad config.yaml, say): say why now, not after the timeout.
            raise RuntimeError(f"the controller exited at start (exit {code}): {_last_line(p.controller_log)}")
        time.sleep(0.05)
    raise RuntimeError(f"the controller did not start within {timeout:g}s; see {p.controller_log}")


def _last_line(log_file: Path) -> str:
    """The controller log's last line: why a controller that died at start died."""
    try:
        with open(log_file, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return f"see {log_file}"
    if not lines:
        return f"see {log_file}"
    # "2026-12-03 19:13:57,426 ERROR skytui.daemon: the controller cannot start: …": the message.
    return re.sub(r"^\S+ \S+ [A-Z]+ [\w.]+: ", "", lines[-1])


STOP_RESIGNAL_S = 1.0


def stop_controller(p: Paths, timeout: float = 30.0) -> bool:
    """SIGTERM the daemon; jobs keep running on their nodes. True if one was stopped."""
    info = controller_info(p)
    if not info.running or info.pid is None:
        return False
    deadline = time.monotonic() + timeout
    next_signal = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_signal:
            # Again every second: stopping is idempotent, and a signal that
            # reached a controller busy with thousands of jobs could have been
            # dropped by its event loop (a full wake-up pipe).
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGTERM)
            next_signal = time.monotonic() + STOP_RESIGNAL_S
        if not controller_info(p).running:
            return True
        time.sleep(0.05)
    raise RuntimeError(f"the controller (pid {info.pid}) did not stop within {timeout:g}s")


def wake_controller(p: Paths) -> None:
    info = controller_info(p)
    if info.running and info.pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(info.pid, signal.SIGUSR1)


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
    # Before anything is created: the pid file, logs, the node host it starts
    # and their files are owner-only whatever the umask it was started with.
    restrict_umask()
    p = default_paths()
    p.ensure()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # asyncssh logs every channel at INFO: a dozen lines per job, and CPU.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    # The cloud SDKs log each credential lookup and retry at INFO: noise, and
    # the less they say in a log file the less can ever leak there.
    for sdk in ("botocore", "boto3", "urllib3", "google", "kubernetes", "websocket"):
        logging.getLogger(sdk).setLevel(logging.WARNING)
    # A client wakes the controller with SIGUSR1 as soon as the pid file names
    # it; the default action would kill it. The first loop pass reads the DB
    # anyway, so an early wake can simply be ignored.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    lock_fd = _acquire_lock(p)
    if lock_fd is None:
        log.info("another controller owns %s; exiting", p.home)
        return 0
    # A pid file left by a controller that was killed names a dead process
    # (or, later, someone else's): nobody may signal it while this one starts.
    with contextlib.suppress(FileNotFoundError):
        p.controller_pid.unlink()
    from skytui.engine.reconcile import Reconciler  # the heavy part, only in the daemon

    finished = True
    try:
        try:
            reconciler = Reconciler(p)
        except ConfigError as exc:
            log.error("the controller cannot start: %s", exc)
            return 1
        write_private(p.controller_pid, str(os.getpid()).encode())
        log.info("controller pid %s started for %s", os.getpid(), p.home)
        finished = reconciler.run()
    finally:
        with contextlib.suppress(OSError):
            if p.controller_pid.read_text().strip() == str(os.getpid()):
                p.controller_pid.unlink()
        os.close(lock_fd)
    if not finished:
        # Threads still in SDK calls would hold the exit (the interpreter joins
        # them) while `controller stop` waits: leave now, as a crash would.
        logging.shutdown()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
