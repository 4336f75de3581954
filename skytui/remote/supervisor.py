"""On the controller machine: the process that keeps the controller daemon
up, and stops it after `jobs.controller.autostop` idle minutes (no job in
progress, no pool), as SkyPilot's controller autostops.

`python -m skytui.remote.supervisor ensure|status|stop|sweep|run`: `ensure`
starts the supervisor (detached, one per controller home: an flock) unless
it runs; `run` is the supervisor itself; `status` prints JSON; `stop` ends
it and the daemon (jobs keep running on their nodes); `sweep` stops what
skytui runs for sandboxes there (the local/sim node host) before `down`.
Exit 3 is kept for "skytui's code is not there" (site.py). May touch the
daemon's process control, the store (has work?) and config.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from skytui.config import Paths, load_config, restrict_umask
from skytui.config import paths as default_paths
from skytui.engine import daemon
from skytui.logs.store import open_private_append
from skytui.remote.credentials import load_environment

log = logging.getLogger("skytui.supervisor")

LOOK_EVERY_S = 2.0
LOCK_FILE = "supervisor.lock"
PID_FILE = "supervisor.pid"
SITE_FILE = "site.json"  # what the client sent last (site.py)
STARTED_FILE = "started.json"  # site.json as it was when the supervisor started
STOP_TIMEOUT_S = 60.0


def _lock_path(p: Paths) -> Path:
    return p.home / LOCK_FILE


def supervisor_pid(p: Paths) -> int | None:
    """The running supervisor's pid (someone holds its lock), else None."""
    path = _lock_path(p)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with contextlib.suppress(OSError, ValueError):
                return int((p.home / PID_FILE).read_text().strip())
            return -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def ensure(p: Paths) -> int:
    """Start the supervisor unless it runs; its pid."""
    pid = supervisor_pid(p)
    if pid is not None:
        return pid
    p.ensure()
    with open_private_append(p.logs / "supervisor.log") as out:
        subprocess.Popen(
            [sys.executable, "-m", "skytui.remote.supervisor", "run"], stdin=subprocess.DEVNULL, stdout=out,
            stderr=out, start_new_session=True, close_fds=True, env={**os.environ, "SKYTUI_HOME": str(p.home)},
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pid = supervisor_pid(p)
        # Up once the controller it starts first is (`controller start` says its pid).
        if pid is not None and pid > 0 and daemon.controller_info(p).pid is not None:
            return pid
        time.sleep(0.05)
    raise RuntimeError(f"the supervisor did not start the controller; see {p.logs / 'supervisor.log'} "
                       f"and {p.controller_log}")


def stop(p: Paths) -> bool:
    """End the supervisor and the daemon; True if either ran."""
    pid = supervisor_pid(p)
    if pid is not None and pid > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while supervisor_pid(p) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    stopped_daemon = daemon.stop_controller(p, timeout=STOP_TIMEOUT_S)
    sweep(p)
    return pid is not None or stopped_daemon


def run(p: Paths) -> int:
    """The supervisor: start the daemon, restart it when it dies while there
    is work, stop it (and end) after the idle minutes."""
    p.ensure()
    fd = os.open(_lock_path(p), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another one supervises this home
    (p.home / PID_FILE).write_text(str(os.getpid()))
    # What this controller started with: a later config (site.json) takes effect at the next start.
    with contextlib.suppress(OSError):
        (p.home / STARTED_FILE).write_bytes((p.home / SITE_FILE).read_bytes())
    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    idle_minutes = load_config(p).jobs.controller.autostop_minutes
    log.info("supervisor pid %s for %s (autostop: %s)", os.getpid(), p.home,
             f"{idle_minutes:g} idle minutes" if idle_minutes is not None else "off")
    from skytui.engine.store import Store

    store = Store(p.db_url)
    idle_since: float | None = None
    autostopped = False
    try:
        daemon.start_controller(p)
        while not stopping:
            work = store.has_unfinished_work()
            if work:
                idle_since = None
                if not daemon.controller_info(p).running:
                    log.warning("the controller is not running while there is work: starting it")
                    with contextlib.suppress(RuntimeError):
                        daemon.start_controller(p)
            else:
                idle_since = idle_since or time.monotonic()
                if idle_minutes is not None and time.monotonic() - idle_since >= idle_minutes * 60:
                    log.info("autostop: idle for %g minutes; stopping the controller", idle_minutes)
                    autostopped = True
                    break
            deadline = time.monotonic() + LOOK_EVERY_S
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.1)
        daemon.stop_controller(p, timeout=STOP_TIMEOUT_S)
        if autostopped:
            _stop_machine(p)
    finally:
        store.close()
        with contextlib.suppress(OSError):
            (p.home / PID_FILE).unlink()
        os.close(fd)
    return 0


def _stop_machine(p: Paths) -> None:
    """After autostop: the machine stops itself if it is one that can (a VM),
    as site.json says; the next client contact starts it again."""
    site = started_with(p) or {}
    command = site.get("autostop_command")
    if not isinstance(command, str) or not command:
        return
    log.info("autostop: stopping this machine (%s)", command)
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        log.warning("autostop: the machine did not stop (exit %s): %s", done.returncode,
                    (done.stderr or done.stdout).strip()[-300:])


def sweep(p: Paths) -> None:
    """With the controller: the local/sim node host of this home, when it serves no node."""
    from skytui.clouds.local import stop_nodehost_if_idle

    with contextlib.suppress(Exception):
        stop_nodehost_if_idle(p)


def started_with(p: Paths) -> dict[str, object] | None:
    """site.json as the running (or last) supervisor started with it."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((p.home / STARTED_FILE).read_text())
        return data if isinstance(data, dict) else None
    return None


def status(p: Paths) -> dict[str, object]:
    info = daemon.controller_info(p)
    supervisor = supervisor_pid(p)
    return {"supervisor": supervisor, "controller": info.pid if info.running else None,
            "started_with": started_with(p) if supervisor is not None else None,
            "autostop_minutes": load_config(p).jobs.controller.autostop_minutes}


def main(argv: list[str]) -> int:
    restrict_umask()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    p = default_paths()
    load_environment(p.home)
    verb = argv[0] if argv else ""
    if verb == "run":
        return run(p)
    if verb == "ensure":
        print(ensure(p))
        return 0
    if verb == "stop":
        return 0 if stop(p) else 1
    if verb == "status":
        print(json.dumps(status(p)))
        return 0
    if verb == "sweep":
        sweep(p)
        return 0
    print("usage: python -m skytui.remote.supervisor ensure|status|stop|sweep|run", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
