"""The node host's native side of the phase launcher (phase_scripts._LAUNCHER).

On a VM the launcher is a bash script that forks base64, mkdir, ln, mv,
setsid and more: a few milliseconds of CPU per start, which a thousand pool
jobs a minute on one local node host pay in full. The node host recognises
the launcher by its first line and does the same in-process: the same
files, the same exactly-once `owner` protocol (a start owned by a process
that died is taken over; a phase whose script began is never started
twice), and the same detached wrapper, started with one posix_spawn into a
session of its own.

Its only state is the wrappers it spawned: its children until it reaps them
(`WrapperReaper`). It never kills them on its own (a phase outlives its node
host); it kills a phase when asked, by the kill command (phase_scripts
.kill_command), natively too: the bash version's `ps` loop, over the
processes of thousands of sandboxes, is what a bulk cancel waited on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from skytui.clouds.local_layout import group_exists, pid_exists
from skytui.clouds.phase_scripts import END_MARK, WRAPPER, KillRequest, LaunchRequest
from skytui.clouds.sandbox_teardown import group_alive

# How long a start that someone else owns waits for that one's pid (as the
# bash launcher: 200 looks 20 ms apart).
OWNER_WAIT_S = 4.0
OWNER_LOOK_S = 0.02
# A child's exit is reaped this soon after its SIGCHLD (many at once: one sweep).
REAP_AFTER_S = 0.2
# How often a kill looks whether the phase's process group is gone (as the bash version).
KILL_LOOK_S = 0.1
# A group still there after this long is looked for over /proc (zombies do not count).
ZOMBIE_SCAN_AFTER_S = 1.0


@dataclass(frozen=True)
class LaunchResult:
    """What the bash launcher would have answered: exit status, stdout, stderr."""

    status: int
    stdout: str = ""
    stderr: str = ""


class WrapperReaper:
    """Reaps the wrappers the node host spawned once they exit, and tells
    whoever asked (the phase watch) that one ended. Swept on SIGCHLD (never
    per wrapper, and never another child's: asyncio waits for its own
    subprocesses), so 10,000 running phases cost nothing and hold no file
    descriptor."""

    def __init__(self) -> None:
        self._pids: set[int] = set()
        self._on_exit: dict[int, Callable[[], None]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._installed = False

    def adopt(self, pid: int) -> None:
        if not self._installed:
            self._installed = True
            asyncio.get_running_loop().add_signal_handler(signal.SIGCHLD, self._soon)
        self._pids.add(pid)

    def on_exit(self, pid: int, callback: Callable[[], None]) -> bool:
        """Call `callback()` once `pid` has exited; False if it is not one
        of the node host's wrappers (or was already reaped)."""
        if pid not in self._pids:
            return False
        self._on_exit[pid] = callback
        return True

    def forget_exit(self, pid: int) -> None:
        self._on_exit.pop(pid, None)

    def _soon(self) -> None:
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(REAP_AFTER_S, self.sweep)

    def sweep(self) -> None:
        self._sweep = None
        for pid in list(self._pids):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self._pids.discard(pid)
                callback = self._on_exit.pop(pid, None)
                if callback is not None:
                    callback()

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        if self._installed:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGCHLD)
        self.sweep()


@dataclass(frozen=True)
class _Input:
    script: bytes
    env: bytes


def _parse_input(data: bytes) -> _Input | LaunchResult:
    lines = data.split(b"\n")
    if len(lines) < 3 or lines[2] != END_MARK.encode():
        return LaunchResult(3, stderr="the phase's input was cut short\n")
    try:
        return _Input(base64.b64decode(lines[0], validate=True), base64.b64decode(lines[1], validate=True))
    except (binascii.Error, ValueError):
        return LaunchResult(3, stderr="the phase's input is not base64\n")


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write and rename into place: a file there is a whole one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _env_unread(directory: Path) -> bool:
    """The phase's env file is there and not yet emptied by its wrapper."""
    try:
        return (directory / "env").stat().st_size > 0
    except FileNotFoundError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class NativeLauncher:
    """Starts phases for the node host: `launch` answers as the bash
    launcher would, for one request and its input."""

    def __init__(self, job_umask: int, reaper: WrapperReaper) -> None:
        self.job_umask = job_umask
        self.reaper = reaper
        self._bash: str | None = None

    def _bash_path(self, env: dict[str, str]) -> str:
        if self._bash is None:
            self._bash = shutil.which("bash", path=env.get("PATH")) or "/bin/bash"
        return self._bash

    async def launch(self, request: LaunchRequest, data: bytes, home: Path, env: dict[str, str]) -> LaunchResult:
        directory = home / request.phases_dir / request.phase_id
        if not directory.resolve().is_relative_to(home.resolve()) or "/" in request.phase_id:
            return LaunchResult(2, stderr="the phase directory is outside the node\n")
        self._makedirs(directory)
        parsed = _parse_input(data)
        if isinstance(parsed, LaunchResult):
            return parsed
        locked = (directory / "lock").exists()  # started by an older skytui: never taken
        pid = None if locked else self._take(directory, parsed, request, env)
        if pid is not None:
            return LaunchResult(0, f"{pid}\n")
        deadline = asyncio.get_running_loop().time() + OWNER_WAIT_S
        while _read_pid(directory / "pid") is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(OWNER_LOOK_S)
        if not locked and not (directory / "exit_code").exists():
            recorded = _read_pid(directory / "pid")
            try:
                owner: int | None = int(os.readlink(directory / "owner"))
            except (OSError, ValueError):
                owner = None
            # Its owner died before the wrapper was on its own, or the wrapper
            # died before it read its env (the user's script never began).
            if (recorded is None and (owner is None or not pid_exists(owner))) or (
                recorded is not None and _env_unread(directory) and not pid_exists(recorded)
            ):
                for name in ("pid", "owner"):
                    with contextlib.suppress(FileNotFoundError):
                        (directory / name).unlink()
                pid = self._take(directory, parsed, request, env)
                if pid is not None:
                    return LaunchResult(0, f"{pid}\n")
        recorded = _read_pid(directory / "pid")
        return LaunchResult(0, f"{recorded}\n" if recorded is not None else "")

    def _makedirs(self, directory: Path) -> None:
        missing = []
        path = directory
        while not path.exists():
            missing.append(path)
            path = path.parent
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir()
                path.chmod(0o777 & ~self.job_umask)

    def _take(self, directory: Path, parsed: _Input, request: LaunchRequest, env: dict[str, str]) -> int | None:
        """Own the start and start the wrapper; None if someone else owns it.
        No await in here: nothing else of this node host runs in between."""
        try:
            os.symlink(str(os.getpid()), directory / "owner")
        except FileExistsError:
            return None
        file_mode = 0o666 & ~self.job_umask
        _write(directory / "script.sh", parsed.script, file_mode)
        _write(directory / "env", parsed.env, 0o600)
        wrapper_env = {**env, "D": str(directory), "PHASE_CWD": request.cwd}
        devnull = os.devnull
        pid = os.posix_spawn(
            self._bash_path(env),
            ["bash", "-c", f"umask {self.job_umask:04o}\n{WRAPPER}"],
            wrapper_env,
            setsid=True,
            # As subprocess's restore_signals: Python ignores these, a job must not.
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, devnull, os.O_WRONLY, 0),
            ],
        )
        self.reaper.adopt(pid)
        _write(directory / "pid", f"{pid}\n".encode(), file_mode)
        return pid


async def kill_phase_group(request: KillRequest, home: Path) -> LaunchResult:
    """What the kill command does, without a process: TERM the group, KILL
    it once the grace is over, and record 137 if the wrapper wrote no exit
    code. A group of zombies is done: the node host's own wrappers are
    reaped within REAP_AFTER_S, and past ZOMBIE_SCAN_AFTER_S a look over
    /proc tells the rest (init may reap late or never)."""
    directory = home / request.phase_dir
    if request.pid <= 1 or not directory.resolve().is_relative_to(home.resolve()):
        return LaunchResult(2, stderr="not a phase of this node\n")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(request.pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(KILL_LOOK_S, request.grace_s)
    next_scan = loop.time() + ZOMBIE_SCAN_AFTER_S
    while group_exists(request.pid):
        if loop.time() >= next_scan:
            # Still there: maybe only zombies whose parent (init, here) reaps
            # late. One look over /proc, shared by every kill waiting now.
            if not await asyncio.to_thread(group_alive, request.pid):
                break
            next_scan = loop.time() + ZOMBIE_SCAN_AFTER_S
        if loop.time() >= deadline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(request.pid, signal.SIGKILL)
            if not (directory / "exit_code").exists():
                with contextlib.suppress(OSError):  # the phase's directory went with its node
                    _write(directory / "exit_code", b"137\n", 0o644)
            break
        await asyncio.sleep(KILL_LOOK_S)
    return LaunchResult(0)
