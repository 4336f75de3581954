"""The client's line to a controller machine: commands, file uploads, and
long-lived processes whose stdin/stdout carry the client API.

Owns `Link` (what any transport gives), `SSHLink` (asyncssh, the host key
verified or pinned as for ssh nodes) and `LinkLoop`, the one background event
loop a synchronous face drives them from. May touch asyncssh, the ssh host
keys of clouds, and config; nothing of the engine or the client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncssh

from skytui.clouds.nodes.sshnode import ENCRYPTION_ALGS, close_connection
from skytui.clouds.ssh_host_keys import HostKeys
from skytui.clouds.vm_ssh import proxy_for
from skytui.config import SSHHost
from skytui.remote.errors import LinkError

T = TypeVar("T")

CONNECT_TIMEOUT_S = 20.0


class Pipe(Protocol):
    """A process on the controller machine: bytes in, lines out."""

    def write(self, data: bytes) -> None: ...

    async def readline(self) -> bytes: ...

    def close(self) -> None: ...


class Link(Protocol):
    """What the client needs of a controller machine, whatever reaches it."""

    where: str
    """How the user knows the machine, for messages (`ssh/box1 (alice@10.0.0.5:22)`)."""

    async def run(self, command: str, *, input: bytes | None = None, timeout: float = 60.0) -> tuple[int, str, str]:
        """Run a shell command; (exit status, stdout, stderr)."""
        ...

    async def upload(self, local_path: Path, remote_path: str) -> None: ...

    async def open_pipe(self, command: str) -> Pipe: ...

    async def close(self) -> None: ...


class LinkLoop:
    """A private event loop on a daemon thread: the faces are synchronous,
    the transports are not. Every coroutine a face needs runs here."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="controller-link", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise LinkError(f"the controller machine did not answer within {timeout:g}s") from None

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


class _SSHPipe:
    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self._process = process

    def write(self, data: bytes) -> None:
        self._process.stdin.write(data)

    async def readline(self) -> bytes:
        # asyncssh hands back part of a line once its channel window (2 MiB)
        # fills without a newline: a 10,000-job answer is one line of more.
        line = await self._process.stdout.readline()
        while line and not line.endswith(b"\n"):
            more = await self._process.stdout.readline()
            if not more:
                break
            line += more
        return line

    def close(self) -> None:
        self._process.stdin.write_eof()
        self._process.close()


class SSHLink:
    """One SSH connection to a host of the `ssh` infra that runs the controller."""

    def __init__(self, host: SSHHost, identity_file: Path, host_keys: HostKeys, *,
                 proxy_command: str | None = None) -> None:
        self.host = host
        self.proxy_command = proxy_command  # a VM behind a bastion, as OpenSSH's ProxyCommand (%h, %p)
        self.identity_file = identity_file
        self.host_keys = host_keys
        self.user = host.user
        self.where = f"ssh/{host.name} ({host.user + '@' if host.user else ''}{host.host}:{host.port})"
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            try:
                # A key met before is checked by the connection itself: no second key exchange.
                lines = await asyncio.to_thread(self.host_keys.trusted_lines, self.host)
                if not lines:
                    lines = [await self.host_keys.verify(self.host)]  # first contact: pinned
                known_hosts = asyncssh.import_known_hosts("".join(
                    f"[{self.host.host}]:{self.host.port} {line}\n{self.host.host} {line}\n" for line in lines
                ))
                self._conn = await asyncio.wait_for(
                    asyncssh.connect(
                        self.host.host, self.host.port, username=self.host.user,
                        client_keys=[str(self.identity_file)], known_hosts=known_hosts, agent_path=None,
                        agent_forwarding=False, keepalive_interval=15, keepalive_count_max=4,
                        encryption_algs=ENCRYPTION_ALGS, config=[],
                        proxy_command=proxy_for(self.proxy_command, self.host.host, self.host.port),
                    ),
                    timeout=CONNECT_TIMEOUT_S,
                )
            except Exception as exc:  # noqa: BLE001 - every way of not getting there is one answer
                self._conn = None
                raise LinkError(
                    f"cannot reach the controller machine {self.where}: {exc}. Nothing watches your managed "
                    "jobs while it is unreachable (a preempted spot job is not recovered): bring the machine "
                    "back, or see `skytui controller status`"
                ) from exc
            self._sftp = None
            return self._conn

    async def run(self, command: str, *, input: bytes | None = None, timeout: float = 60.0) -> tuple[int, str, str]:
        conn = await self._connection()
        try:
            result = await asyncio.wait_for(
                # asyncssh sends neither data nor EOF for b"": the command would wait on stdin.
                conn.run(command, check=False, input=input or None, encoding=None,
                         stdin=asyncssh.DEVNULL if not input else asyncssh.PIPE),
                timeout=timeout,
            )
        except TimeoutError:
            raise LinkError(f"a command on the controller machine {self.where} took over {timeout:g}s") from None
        except (OSError, asyncssh.Error) as exc:
            raise LinkError(f"lost the controller machine {self.where}: {exc}") from exc
        out = result.stdout if isinstance(result.stdout, bytes) else b""
        err = result.stderr if isinstance(result.stderr, bytes) else b""
        status = result.exit_status if result.exit_status is not None else 255
        return status, out.decode(errors="replace"), err.decode(errors="replace")

    async def upload(self, local_path: Path, remote_path: str) -> None:
        conn = await self._connection()
        try:
            if self._sftp is None:
                self._sftp = await conn.start_sftp_client()
            parent = remote_path.rsplit("/", 1)[0]
            if parent:
                await self._sftp.makedirs(parent, exist_ok=True)
            await self._sftp.put(str(local_path), remote_path, recurse=local_path.is_dir(), preserve=True)
        except (OSError, asyncssh.Error) as exc:
            raise LinkError(f"upload of {local_path} to the controller machine {self.where} failed: {exc}") from exc

    async def open_pipe(self, command: str) -> Pipe:
        conn = await self._connection()
        try:
            process = await conn.create_process(command, encoding=None)
        except (OSError, asyncssh.Error) as exc:
            raise LinkError(f"cannot start the controller API on {self.where}: {exc}") from exc
        return _SSHPipe(process)

    async def close(self) -> None:
        conn, self._conn, self._sftp = self._conn, None, None
        await close_connection(conn)
