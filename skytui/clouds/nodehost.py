"""The local node host: one SSH server on 127.0.0.1 serving many sandboxed nodes.

Run as its own process (`python -m skytui.clouds.nodehost`), started by the
local infra and outliving the controller, so that jobs on local nodes survive
controller restarts exactly as jobs on cloud VMs do. Each node is a sandbox
directory under the nodes root; the SSH user name picks the node, its
directory is the login's home and the SFTP jail. Only the controller's key is
accepted, and only for a node that exists.

Detached phases escape into their own sessions (setsid), so stopping the node
host never kills a job; commands still attached to a channel die with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncssh

from skytui.clouds.local_layout import LOCK_FILE, NODE_MARKER, STATE_FILE

# What a fresh VM login would have; nothing of the controller's own environment
# (credentials, SKYTUI_HOME) leaks into jobs.
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")


def sandbox_of(root: Path, user: str) -> Path | None:
    """The node directory for an SSH user name, if that node exists."""
    if not user or "/" in user or user.startswith("."):
        return None
    path = root / user
    return path if (path / NODE_MARKER).is_file() else None


class _Server(asyncssh.SSHServer):
    def __init__(self, root: Path, authorized: list[asyncssh.SSHKey]) -> None:
        self._root = root
        self._authorized = {key.public_data for key in authorized}

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return key.public_data in self._authorized and sandbox_of(self._root, username) is not None


class NodeHost:
    def __init__(self, root: Path, host_key: Path, authorized_keys: Path) -> None:
        self.root = root
        self.host_key = host_key
        self.authorized_keys = authorized_keys
        self._children: set[asyncio.subprocess.Process] = set()
        self._server: asyncssh.SSHAcceptor | None = None

    def _env(self, user: str, home: Path, extra: Any) -> dict[str, str]:
        env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(HOME=str(home), USER=user, LOGNAME=user, SHELL="/bin/bash")
        for key, value in dict(extra or {}).items():
            k = key.decode() if isinstance(key, bytes) else str(key)
            env[k] = value.decode() if isinstance(value, bytes) else str(value)
        return env

    async def _handle(self, process: asyncssh.SSHServerProcess) -> None:
        user = process.get_extra_info("username")
        home = sandbox_of(self.root, user)
        if home is None or process.command is None:
            process.stderr.write(b"skytui node host: exec only, on an existing node\n")
            process.exit(1)
            return
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", process.command,
            cwd=home, env=self._env(user, home, process.env),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
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

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncssh.SSHWriter[bytes]) -> None:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()

    async def _feed_stdin(
        self, process: asyncssh.SSHServerProcess, proc: asyncio.subprocess.Process
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

    def _sftp(self, chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
        home = sandbox_of(self.root, chan.get_extra_info("username"))
        if home is None:  # pragma: no cover - auth already refused unknown nodes
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "no such node")
        return asyncssh.SFTPServer(chan, chroot=os.fsencode(home))

    async def start(self, port: int = 0) -> int:
        authorized = list(asyncssh.read_public_key_list(str(self.authorized_keys)))
        self._server = await asyncssh.create_server(
            lambda: _Server(self.root, authorized),
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
            keepalive_interval=15,
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for proc in list(self._children):
            self._kill_group(proc)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def reclaim_due_nodes(root: Path, stop: asyncio.Event, every_s: float = 0.5) -> None:
    """The simulated clouds' clock: destroy each node whose marker names a
    `reclaim_at` time (a sim spot node drew one at provisioning) once it has
    passed, watched or not, as a cloud reclaims a spot VM."""
    from skytui.clouds.sandboxes import destroy_sandbox

    reclaim_at: dict[str, float | None] = {}  # markers are written once: read each once
    while not stop.is_set():
        now = time.time()
        present = set()
        for entry in root.iterdir():
            present.add(entry.name)
            if entry.name not in reclaim_at:
                try:
                    reclaim_at[entry.name] = json.loads((entry / NODE_MARKER).read_text()).get("reclaim_at")
                except (OSError, ValueError):
                    continue  # not a node, or not written yet
            due = reclaim_at[entry.name]
            if due is not None and due <= now:
                print(f"reclaiming {entry.name} (spot preemption due at {due:.0f})", flush=True)
                await asyncio.to_thread(destroy_sandbox, entry, 1.0)
                reclaim_at[entry.name] = None
        for gone in set(reclaim_at) - present:
            del reclaim_at[gone]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


def _write_state(root: Path, port: int) -> None:
    tmp = root / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "port": port, "host": "127.0.0.1"}))
    os.replace(tmp, root / STATE_FILE)


async def _serve(args: argparse.Namespace) -> int:
    root = Path(args.root)
    host = NodeHost(root, Path(args.host_key), Path(args.authorized_keys))
    port = await host.start(args.port)
    _write_state(root, port)
    print(f"node host pid {os.getpid()} serving {root} on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reclaimer = asyncio.create_task(reclaim_due_nodes(root, stop))
    await stop.wait()
    await reclaimer
    await host.stop()
    try:
        state = json.loads((root / STATE_FILE).read_text())
        if state.get("pid") == os.getpid():
            (root / STATE_FILE).unlink()
    except (OSError, ValueError):
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skytui-nodehost")
    parser.add_argument("--root", required=True, help="the nodes directory")
    parser.add_argument("--host-key", required=True)
    parser.add_argument("--authorized-keys", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another node host already serves this directory", file=sys.stderr)
        return 0
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
