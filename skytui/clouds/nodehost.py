"""The local node host: one SSH server on 127.0.0.1 serving many sandboxed nodes.

Run as its own process (`python -m skytui.clouds.nodehost`), started by the
local infra and outliving the controller, so that jobs on local nodes survive
controller restarts exactly as jobs on cloud VMs do. Each node is a sandbox
directory under the nodes root; the SSH user name picks the node, its
directory is the login's home and the SFTP jail. Only the controller's key is
accepted, and only for a node that exists.

Detached phases escape into their own sessions (setsid), so stopping the node
host never kills a job; commands still attached to a channel die with it.

Nothing has to stop it: it exits by itself once its directory is gone, and
once it has served no node (no sandbox, no connection) for `--idle-exit-s`.
Whoever needs it next starts a fresh one (sandboxes.ensure_node_host).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import asyncssh

from skytui.clouds.local_layout import LOCK_FILE, NODE_MARKER, STATE_FILE
from skytui.clouds.nodehost_housekeeping import (
    Reclaimer as Reclaimer,  # re-exported: callers reach it as nodehost.Reclaimer
)
from skytui.clouds.nodehost_housekeeping import Watch, withdraw_state, write_state
from skytui.clouds.nodehost_launch import (
    LaunchResult,
    NativeLauncher,
    WrapperReaper,
    kill_phase_group,
)
from skytui.clouds.nodehost_watch import PhaseWatcher, serve_watch
from skytui.clouds.phase_scripts import (
    LaunchRequest,
    kill_request_of,
    launch_request_of,
)
from skytui.clouds.phase_watch import phases_dir_of

# What a fresh VM login would have; nothing of the controller's own environment
# (credentials, SKYTUI_HOME) leaks into jobs.
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")

# A node host started while the previous one is still shutting down waits this
# long for the lock instead of giving up: whoever started it is waiting for it.
LOCK_WAIT_S = 15.0
DEFAULT_IDLE_EXIT_S = 600.0


def sandbox_of(root: Path, user: str) -> Path | None:
    """The node directory for an SSH user name, if that node exists."""
    if not user or "/" in user or user.startswith("."):
        return None
    path = root / user
    return path if (path / NODE_MARKER).is_file() else None


class _Server(asyncssh.SSHServer):
    """One per TCP connection (asyncssh calls the factory on accept)."""

    def __init__(self, host: NodeHost, authorized: set[bytes]) -> None:
        self._host = host
        self._authorized = authorized
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._host.connection_opened(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._host.connection_closed(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return key.public_data in self._authorized and sandbox_of(self._host.root, username) is not None


class NodeHost:
    def __init__(self, root: Path, host_key: Path, authorized_keys: Path, *, job_umask: int = 0o022) -> None:
        self.root = root
        self.host_key = host_key
        self.authorized_keys = authorized_keys
        # The node host keeps its own files owner-only; jobs get the login's usual umask.
        self.job_umask = job_umask
        self._children: set[asyncio.subprocess.Process] = set()
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._server: asyncssh.SSHAcceptor | None = None
        self._last_busy = time.monotonic()
        self.reaper = WrapperReaper()
        self.phase_watcher = PhaseWatcher(self.reaper)
        self.launcher = NativeLauncher(job_umask, self.reaper)
        # Every request served, one line each, when SKYTUI_NODEHOST_TRACE names
        # a file: how tests count what an idle job costs its node.
        self._trace_path = os.environ.get("SKYTUI_NODEHOST_TRACE")

    # ------------------------------------------------------------- idleness

    def connection_opened(self, conn: asyncssh.SSHServerConnection) -> None:
        # Any TCP connection counts, even a bare liveness probe: whoever probes
        # is about to log in, so it restarts the idle clock.
        self._connections.add(conn)
        self._last_busy = time.monotonic()

    def connection_closed(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connections.discard(conn)
        self._last_busy = time.monotonic()

    def idle_for(self, nodes: int, scanned_at: float) -> float | None:
        """How long the node host had served nothing when `nodes` were counted
        at `scanned_at`; None while it serves a node (running job or not) or
        a connection. Measured from the scan's start, not now: a node is made
        just after a login (or probe) asked for it, so one the scan missed
        had that login after the scan began, and the measure sees it."""
        if nodes or self._connections:
            self._last_busy = time.monotonic()
            return None
        return max(0.0, scanned_at - self._last_busy)

    # ------------------------------------------------------------- sessions

    def _env(self, user: str, home: Path, extra: Any) -> dict[str, str]:
        env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(HOME=str(home), USER=user, LOGNAME=user, SHELL="/bin/bash")
        for key, value in dict(extra or {}).items():
            k = key.decode() if isinstance(key, bytes) else str(key)
            env[k] = value.decode() if isinstance(value, bytes) else str(value)
        return env

    async def _handle(self, process: asyncssh.SSHServerProcess[Any]) -> None:
        user = process.get_extra_info("username")
        home = sandbox_of(self.root, user)
        if home is None or process.command is None:
            process.stderr.write(b"skytui node host: exec only, on an existing node\n")
            process.exit(1)
            return
        phases_dir = phases_dir_of(process.command)
        launch = launch_request_of(process.command) if phases_dir is None else None
        kill = kill_request_of(process.command) if phases_dir is None and launch is None else None
        self._trace(user, "watch" if phases_dir is not None else "launch" if launch is not None
                    else "kill" if kill is not None else "exec")
        if phases_dir is not None:
            env = self._env(user, home, process.env)

            async def launch_on_stream(request: LaunchRequest, data: bytes) -> LaunchResult:
                self._trace(user, "stream-launch")
                return await self.launcher.launch(request, data, home, env)

            await serve_watch(self.phase_watcher, process, home, phases_dir, launch_on_stream)
            return
        if launch is not None:
            await self._launch(process, launch, home, user)
            return
        if kill is not None:
            result = await kill_phase_group(kill, home)
            process.stderr.write(result.stderr.encode())
            process.exit(result.status)
            return
        try:
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", process.command,
                cwd=home, env=self._env(user, home, process.env),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True,
                umask=self.job_umask,
            )
        except OSError as exc:  # the node was destroyed since the login
            process.stderr.write(f"skytui node host: cannot run on {user}: {exc}\n".encode())
            process.exit(1)
            return
        self._children.add(proc)
        feeder = asyncio.create_task(self._feed_stdin(process, proc))
        try:
            assert proc.stdout is not None and proc.stderr is not None
            await asyncio.gather(
                self._pump(proc.stdout, process.stdout), self._pump(proc.stderr, process.stderr)
            )
            rc = await proc.wait()
        except (asyncssh.Error, ConnectionError, asyncio.CancelledError):
            self._kill_group(proc)
            await proc.wait()
            raise
        finally:
            feeder.cancel()
            self._children.discard(proc)
        if rc < 0:
            process.exit_with_signal(signal.Signals(-rc).name[3:])
        else:
            process.exit(rc)

    async def _launch(self, process: asyncssh.SSHServerProcess[Any], request: LaunchRequest, home: Path, user: str) -> None:
        """A phase launcher, served in-process (nodehost_launch.py)."""
        try:
            data = await process.stdin.read()
        except (asyncssh.Error, ConnectionError):
            return  # the channel went before the input was whole: nothing was taken
        result = await self.launcher.launch(request, data, home, self._env(user, home, process.env))
        process.stdout.write(result.stdout.encode())
        process.stderr.write(result.stderr.encode())
        process.exit(result.status)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncssh.SSHWriter[bytes]) -> None:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()

    async def _feed_stdin(
        self, process: asyncssh.SSHServerProcess[Any], proc: asyncio.subprocess.Process
    ) -> None:
        assert proc.stdin is not None
        try:
            while data := await process.stdin.read(65536):
                proc.stdin.write(data)
                await proc.stdin.drain()
        except (asyncssh.Error, BrokenPipeError, ConnectionResetError):
            pass
        finally:
            if not proc.stdin.is_closing():
                proc.stdin.close()

    @staticmethod
    def _kill_group(proc: asyncio.subprocess.Process) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _sftp(self, chan: asyncssh.SSHServerChannel[Any]) -> asyncssh.SFTPServer:
        user = chan.get_extra_info("username")
        home = sandbox_of(self.root, user)
        if home is None:  # pragma: no cover - auth already refused unknown nodes
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "no such node")
        if self._trace_path is None:
            return asyncssh.SFTPServer(chan, chroot=os.fsencode(home))
        return _TracedSFTPServer(chan, chroot=os.fsencode(home), trace=lambda what: self._trace(user, what))

    def _trace(self, user: str, what: str) -> None:
        if self._trace_path is not None:
            with open(self._trace_path, "a") as f:
                f.write(f"{time.time():.3f} {user} {what}\n")

    # ------------------------------------------------------------ lifecycle

    async def start(self, port: int = 0) -> int:
        authorized = {key.public_data for key in asyncssh.read_public_key_list(str(self.authorized_keys))}
        self._server = await asyncssh.create_server(
            lambda: _Server(self, authorized),
            "127.0.0.1",
            port,
            server_host_keys=[str(self.host_key)],
            process_factory=self._handle,
            sftp_factory=self._sftp,
            encoding=None,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
            keepalive_interval=0,  # loopback only: a dead controller's sockets close with it
        )
        return int(self._server.sockets[0].getsockname()[1])

    def stop_listening(self) -> None:
        """No new connection from here on (synchronous, so that an idle
        verdict and the close happen with no connection slipping in between)."""
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        self.stop_listening()
        self.phase_watcher.close()
        self.reaper.close()
        for proc in list(self._children):
            self._kill_group(proc)
        for conn in list(self._connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()


class _TracedSFTPServer(asyncssh.SFTPServer):
    """Counts the file opens and stats an SFTP session makes (tracing only)."""

    def __init__(self, chan: asyncssh.SSHServerChannel[Any], *, chroot: bytes, trace: Any) -> None:
        super().__init__(chan, chroot=chroot)
        self._trace = trace

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        self._trace(f"sftp-open {path.decode(errors='replace')}")
        return super().open(path, pflags, attrs)

    def stat(self, path: bytes) -> Any:
        self._trace(f"sftp-stat {path.decode(errors='replace')}")
        return super().stat(path)


# -------------------------------------------------------------- the process


async def _serve(args: argparse.Namespace, job_umask: int) -> int:
    root = Path(args.root)
    host = NodeHost(root, Path(args.host_key), Path(args.authorized_keys), job_umask=job_umask)
    port = await host.start(args.port)
    stop = asyncio.Event()
    watch = Watch(root, host, args.idle_exit_s)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Before the state file names this pid: SIGUSR1's default action is death.
    loop.add_signal_handler(signal.SIGUSR1, watch.ask_exit_if_idle)
    write_state(root, port)
    print(f"node host pid {os.getpid()} serving {root} on 127.0.0.1:{port}"
          f" (exits after {args.idle_exit_s:g}s serving no node)", flush=True)
    watcher = asyncio.create_task(watch.until_done(stop))
    code = 0
    try:
        reason = await watcher
    except Exception:  # noqa: BLE001 - a dead watcher must take the server down with it
        print("node host watcher failed; exiting:\n" + traceback.format_exc(), flush=True)
        reason, code = "its watcher failed", 1
    withdraw_state(root)
    await host.stop()
    print(f"node host pid {os.getpid()} exiting: {reason}", flush=True)
    return code


def _lock(root: Path, wait_s: float) -> int | None:
    """Hold the directory's node host lock (an fd kept until exit), waiting
    for a predecessor that is shutting down; None if another one serves."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline or _state_is_live(root):
                os.close(fd)
                return None
            time.sleep(0.1)


def _state_is_live(root: Path) -> bool:
    """Another node host advertises itself: it serves, this one is not needed."""
    try:
        pid = int(json.loads((root / STATE_FILE).read_text())["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return pid != os.getpid()


def _umask(text: str) -> int:
    value = int(text, 8)
    if not 0 <= value <= 0o777:
        raise ValueError(text)
    return value


def main(argv: list[str] | None = None) -> int:
    # Everything the node host itself writes is owner-only, whatever the umask
    # it was started with; the jobs it runs get the user's umask back (the one
    # it was started with, unless its starter, itself restricted, names it).
    inherited_umask = os.umask(0o077)
    parser = argparse.ArgumentParser(prog="skytui-nodehost")
    parser.add_argument("--root", required=True, help="the nodes directory")
    parser.add_argument("--host-key", required=True)
    parser.add_argument("--authorized-keys", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--idle-exit-s", type=float, default=DEFAULT_IDLE_EXIT_S,
                        help="exit after serving no node (no sandbox, no connection) this long")
    parser.add_argument("--job-umask", type=_umask, default=None, help="octal, e.g. 022")
    args = parser.parse_args(argv)
    job_umask = inherited_umask if args.job_umask is None else args.job_umask
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    if _lock(root, LOCK_WAIT_S) is None:
        print("another node host already serves this directory", file=sys.stderr)
        return 0
    return asyncio.run(_serve(args, job_umask))


if __name__ == "__main__":
    sys.exit(main())
