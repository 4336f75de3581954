"""The node host's native side of the phase watch (phase_watch.py's protocol).

One inotify instance for every sandbox the node host serves, and a way to
learn that each watched phase's process ended (SIGCHLD for the node host's
own children, else a pidfd): a phase that prints nothing wakes nothing.
Events on a phase's directory say its output grew (`out.log` modified) or it
ended (`exit_code` written); its wrapper's end says the process
is gone, which without an exit code is a vanished phase (`gone`).

Notices are coalesced per stream for COALESCE_S, so a phase printing a
thousand lines a second sends a few dozen notices, not a thousand. Phases
are started on the stream too, when the node host serves it with a launcher.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import os
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skytui.clouds.inotify import (
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    Inotify,
)
from skytui.clouds.local_layout import process_running
from skytui.clouds.nodehost_launch import LaunchResult, WrapperReaper
from skytui.clouds.phase_scripts import (
    END_MARK,
    LAUNCH_MARK,
    LaunchRequest,
    launch_request_of,
)
from skytui.clouds.phase_watch import CAN_LAUNCH, ENDING, LAUNCH_PREFIX, exit_notice

COALESCE_S = 0.02
# How often phases without a pidfd are looked at (only when pidfds ran out).
SWEEP_EVERY_S = 5.0
_MASK = IN_MODIFY | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR


class WatchStream:
    """One controller's watch channel: what it watches, and its pending notices."""

    def __init__(self, watcher: PhaseWatcher, write: Any, phases_dir: Path) -> None:
        self._watcher = watcher
        self._write = write  # writes bytes to the channel
        self.phases_dir = phases_dir
        self.phases: set[str] = set()
        self._pending: dict[str, str] = {}
        self._flush: asyncio.TimerHandle | None = None

    def notify(self, phase_id: str, what: str, *, now: bool = False) -> None:
        """Queue a notice (coalesced for COALESCE_S); `now`: the controller
        is waiting for this one (a watch's answer)."""
        if _ends_watch(what):
            self._watcher.unsubscribe(self, phase_id)
        # A stronger notice replaces a weaker one still waiting to go out.
        if not _ends_watch(self._pending.get(phase_id, "")):
            self._pending[phase_id] = what
        if now:
            self.flush()
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(COALESCE_S, self.flush)

    def flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if not self._pending:
            return
        lines = "".join(f"{phase_id} {what}\n" for phase_id, what in self._pending.items())
        self._pending.clear()
        with contextlib.suppress(Exception):  # a channel closing: its reader ends the stream
            self._write(lines.encode())

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
        for phase_id in list(self.phases):
            self._watcher.unsubscribe(self, phase_id)


def _ends_watch(what: str) -> bool:
    return what.split(" ", 1)[0] in ENDING


def _ended(phase_dir: Path) -> bool:
    """Its exit code is written (an empty file is one being written)."""
    try:
        return (phase_dir / "exit_code").stat().st_size > 0
    except OSError:
        return False


def _exit_notice(phase_dir: Path) -> str:
    """`exit` with its facts: the exit code, the end time and the output's
    size (the wrapper writes `ended_at` before the code, and the output is
    complete once it has)."""
    def read(name: str) -> str | None:
        try:
            return (phase_dir / name).read_text()
        except OSError:
            return None

    return exit_notice(read("exit_code") or "-", read("ended_at"), _output_size(phase_dir))


def _output_size(phase_dir: Path) -> int | None:
    try:
        return (phase_dir / "out.log").stat().st_size
    except OSError:
        return None


@dataclass(eq=False)
class _Watched:
    """One phase directory under watch, shared by every stream watching it."""

    path: Path
    wd: int
    streams: dict[WatchStream, str] = field(default_factory=dict)  # stream -> phase id
    pid: int | None = None
    pidfd: int | None = None


class PhaseWatcher:
    """Every watched phase directory of the node host, on one inotify fd.

    A wrapper the node host spawned itself is its child: its end comes with
    SIGCHLD (`children`), at no file descriptor. Any other (a phase started
    before this node host) gets a pidfd while at most a quarter of the
    descriptors are pidfds, and is swept beyond that: 10,000 running phases
    must leave the node host descriptors to accept connections with."""

    def __init__(self, children: WrapperReaper | None = None, *, pidfd_budget: int | None = None) -> None:
        self._inotify: Inotify | None = None
        self._by_wd: dict[int, _Watched] = {}
        self._by_path: dict[Path, _Watched] = {}
        self._swept: set[_Watched] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._children = children
        self._pidfds = 0
        self._pidfd_budget = pidfd_budget if pidfd_budget is not None else _default_pidfd_budget()

    def _ensure(self) -> Inotify:
        if self._inotify is None:
            self._inotify = Inotify()
            asyncio.get_running_loop().add_reader(self._inotify.fd, self._on_events)
        return self._inotify

    @property
    def watched(self) -> int:
        """How many phase directories are under watch (for tests and stats)."""
        return len(self._by_path)

    def subscribe(self, stream: WatchStream, phase_id: str) -> None:
        if "/" in phase_id or phase_id in ("", ".", ".."):
            stream.notify(phase_id, "gone", now=True)
            return
        path = stream.phases_dir / phase_id
        watched = self._by_path.get(path)
        if watched is None:
            try:
                wd = self._ensure().add_watch(str(path), _MASK)
            except OSError:
                stream.notify(phase_id, "gone", now=True)  # no such phase (or no watch): let the controller look
                return
            watched = self._by_wd.get(wd) or _Watched(path, wd)
            self._by_wd[wd] = self._by_path[path] = watched
        watched.streams[stream] = phase_id
        stream.phases.add(phase_id)
        # Where the phase stands as the watch begins (after the inotify watch
        # is in place, so nothing after this goes unsaid): its end, or the
        # size of its output so far. Then its process: gone is said at once.
        if _ended(path):
            stream.notify(phase_id, _exit_notice(path), now=True)
            return
        stream.notify(phase_id, f"seen {_output_size(path) or 0}", now=True)
        if watched.pid is None:
            self._watch_process(watched)

    def unsubscribe(self, stream: WatchStream, phase_id: str) -> None:
        stream.phases.discard(phase_id)
        watched = self._by_path.get(stream.phases_dir / phase_id)
        if watched is None or watched.streams.pop(stream, None) is None or watched.streams:
            return
        self._forget(watched)

    def _forget(self, watched: _Watched) -> None:
        self._by_path.pop(watched.path, None)
        self._by_wd.pop(watched.wd, None)
        if self._inotify is not None:
            self._inotify.remove_watch(watched.wd)
        self._stop_watching_process(watched)

    def _stop_watching_process(self, watched: _Watched) -> None:
        self._swept.discard(watched)
        if self._children is not None and watched.pid is not None:
            self._children.forget_exit(watched.pid)
        if watched.pidfd is not None:
            asyncio.get_running_loop().remove_reader(watched.pidfd)
            os.close(watched.pidfd)
            watched.pidfd = None
            self._pidfds -= 1

    def _watch_process(self, watched: _Watched) -> None:
        """Watch the phase's wrapper, once its pid is on record."""
        try:
            pid = int((watched.path / "pid").read_text().strip())
        except (OSError, ValueError):
            return  # not started yet: its `pid` moving into place calls this again
        watched.pid = pid
        if self._children is not None and self._children.on_exit(pid, functools.partial(self._child_ended, watched)):
            return
        try:
            if self._pidfds >= self._pidfd_budget:
                raise OSError("the pidfd budget is spent")
            watched.pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._process_ended(watched)
            return
        except OSError:
            # Out of the budget, or no pidfd here: one sweep for all such phases looks instead.
            self._swept.add(watched)
            if self._sweeper is None or self._sweeper.done():
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
            return
        self._pidfds += 1
        asyncio.get_running_loop().add_reader(watched.pidfd, self._process_ended, watched)

    def _child_ended(self, watched: _Watched) -> None:
        if watched.path in self._by_path:
            self._process_ended(watched)

    async def _sweep(self) -> None:
        while self._swept:
            await asyncio.sleep(SWEEP_EVERY_S)
            for watched in list(self._swept):
                if watched.pid is None or not process_running(watched.pid):
                    self._swept.discard(watched)
                    if watched.path in self._by_path:
                        self._process_ended(watched)

    def _process_ended(self, watched: _Watched) -> None:
        self._stop_watching_process(watched)
        # The wrapper writes its exit code before it exits: none means it was killed.
        what = _exit_notice(watched.path) if _ended(watched.path) else "gone"
        self._tell(watched, what)

    def _tell(self, watched: _Watched, what: str) -> None:
        for stream, phase_id in list(watched.streams.items()):
            stream.notify(phase_id, what)

    def _on_events(self) -> None:
        assert self._inotify is not None
        for event in self._inotify.read_events():
            if event.mask & IN_Q_OVERFLOW:
                # Lost track: every phase is told again where it stands (an
                # exit may have been among the events lost).
                for every in list(self._by_path.values()):
                    self._tell(every, _exit_notice(every.path) if _ended(every.path) else "out")
                continue
            watched = self._by_wd.get(event.wd)
            if watched is None:
                continue
            if event.mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                self._tell(watched, "gone")  # the sandbox went with it
                if watched.path in self._by_path:
                    self._forget(watched)
            elif event.name == "out.log":
                self._tell(watched, "out")
            elif event.name == "exit_code" and _ended(watched.path):
                self._tell(watched, _exit_notice(watched.path))
            elif event.name == "pid" and watched.pid is None:
                self._watch_process(watched)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for watched in list(self._by_path.values()):
            self._forget(watched)
        if self._inotify is not None:
            asyncio.get_running_loop().remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None


def _default_pidfd_budget() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, soft // 4) if soft != resource.RLIM_INFINITY else 1 << 16


async def serve_watch(
    watcher: PhaseWatcher, process: Any, home: Path, phases_dir: str,
    launch: Callable[[LaunchRequest, bytes], Awaitable[LaunchResult]] | None = None,
) -> None:
    """Serve one watch channel until the controller closes it; with `launch`,
    also the starts sent on it (see phase_watch.py)."""
    base = (home / phases_dir).resolve()
    if not base.is_relative_to(home.resolve()):
        process.stderr.write(b"skytui node host: the phases directory is outside the node\n")
        process.exit(2)
        return
    stream = WatchStream(watcher, process.stdout.write, base)
    starts: set[asyncio.Task[None]] = set()
    if launch is not None:
        process.stdout.write(f"{CAN_LAUNCH}\n".encode())
    buffer = b""
    try:
        while data := await process.stdin.read(65536):
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").strip()
                if line.startswith("+"):
                    watcher.subscribe(stream, line[1:])
                elif line.startswith("-"):
                    watcher.unsubscribe(stream, line[1:])
                elif line.startswith(LAUNCH_PREFIX) and launch is not None:
                    # Concurrently: a start that waits for another's owner
                    # (up to OWNER_WAIT_S) holds up no other start.
                    task = asyncio.create_task(_start(process.stdout.write, launch, line[len(LAUNCH_PREFIX):]))
                    starts.add(task)
                    task.add_done_callback(starts.discard)
    except Exception:  # noqa: BLE001, S110 - a dropped channel simply ends the watch
        pass
    finally:
        stream.close()
    with contextlib.suppress(Exception):
        process.exit(0)


async def _start(
    write: Callable[[bytes], Any], launch: Callable[[LaunchRequest, bytes], Awaitable[LaunchResult]], line: str,
) -> None:
    """One start sent on a watch stream: `<request JSON>\\t<script>\\t<env>`."""
    request_text, _, rest = line.partition("\t")
    script, _, env = rest.partition("\t")
    request = launch_request_of(LAUNCH_MARK + request_text)
    if request is None or " " in request.phase_id:
        return  # not a start this node host can answer for: the controller's wait times out
    result = await launch(request, f"{script}\n{env}\n{END_MARK}\n".encode())
    pid = result.stdout.strip()
    with contextlib.suppress(Exception):  # the channel went: the controller starts it again
        if result.status == 0 and pid.isdigit():
            write(f"{request.phase_id} started {pid}\n".encode())
        else:
            message = base64.b64encode(result.stderr.encode()).decode() or "-"
            write(f"{request.phase_id} started - {result.status} {message}\n".encode())
