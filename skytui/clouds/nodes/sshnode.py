"""A Node reached over SSH (asyncssh): the one node driver of VM-like infra.

Phases run detached under `setsid` in `<workspace>/.skytui/phases/<id>/` on
the node (the protocol is in phase_scripts.py). Everything is relative to the
login's home, which is also where SFTP starts, so the same paths work on a
VM's OpenSSH and on the local node host's jail.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh

from skytui.clouds.base import CloudError, NodeError, NodeInfo, PhaseState
from skytui.clouds.nodes.shell_node import START_TIMEOUT_S, ShellNode, env_prefix
from skytui.clouds.phase_scripts import (
    ALIVE_FUNCTION,
    encoded_launch_input,
    launch_request_json,
    parse_exit_code,
    parse_node_time,
)
from skytui.clouds.phase_watch import (
    PhaseWatchStream,
    StartRefused,
    WatchStreamClosed,
    watch_command,
)

# How long a new watch waits for the node's answer before looking itself.
WATCH_ANSWER_TIMEOUT_S = 5.0
# AES-GCM first: asyncssh's chacha20-poly1305 builds three cipher contexts per
# packet (14 us each here, against 2 us for AES-GCM on AES-NI), and a job's
# start, watch and output cost a few dozen packets on both ends. The rest is
# asyncssh's default order, for servers without AES-GCM.
ENCRYPTION_ALGS = [
    "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
    "aes256-ctr", "aes192-ctr", "aes128-ctr",
]


async def close_connection(conn: asyncssh.SSHClientConnection | None, timeout: float = 5.0) -> None:
    """Close an SSH connection and wait a little for it; a dead peer is no error."""
    if conn is None:
        return
    conn.close()
    try:
        await asyncio.wait_for(conn.wait_closed(), timeout=timeout)
    except (TimeoutError, OSError, asyncssh.Error):
        pass


class SSHNode(ShellNode):
    """One persistent SSH connection per node; commands are channels on it."""

    def __init__(
        self,
        info: NodeInfo,
        client_key_path: Path,
        *,
        connect_timeout: float = 20.0,
        resolve_port: Callable[[], Awaitable[int]] | None = None,
        proxy_command: str | None = None,
        keepalive_interval_s: float = 5.0,
    ) -> None:
        self.info = info
        # The local node host may have restarted on another port since the
        # node was provisioned; it says where it is now.
        self._resolve_port = resolve_port
        self._client_key_path = client_key_path
        self._connect_timeout = connect_timeout
        # A bastion or tunnel in front of the node (SkyPilot's ssh_proxy_command);
        # %h and %p are the node's address and port, as in OpenSSH.
        self._proxy_command = proxy_command
        # How soon a silently dead connection is noticed (3 missed keepalives;
        # 0: never asked, for a node host on 127.0.0.1, which never drops silently).
        self._keepalive_interval_s = keepalive_interval_s
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._watch: PhaseWatchStream | None = None
        # The phase's follow and its notice watch may both (re)open the stream: one does.
        self._watch_opening = asyncio.Lock()
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------ connection

    async def connect(self) -> None:
        """Connect, with the SFTP session and the watch stream. Only the
        complete set is ever put on the node: another coroutine using the
        node meanwhile (a job group's names published to every node) waits
        here for it, and never sees, or throws away, a half-made connection."""
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed() and self._sftp is not None:
                return
            stale, self._conn, self._sftp = self._conn, None, None
            if stale is not None:
                stale.close()
            conn: asyncssh.SSHClientConnection | None = None
            kept = False
            try:
                port = await self._resolve_port() if self._resolve_port else self.info.port
                known_hosts = asyncssh.import_known_hosts(
                    f"[{self.info.host}]:{port} {self.info.host_key}\n"
                    f"{self.info.host} {self.info.host_key}\n"
                )
                conn = await asyncio.wait_for(
                    asyncssh.connect(
                        self.info.host,
                        port,
                        username=self.info.user,
                        client_keys=[str(self._client_key_path)],
                        known_hosts=known_hosts,
                        agent_path=None,
                        agent_forwarding=False,
                        keepalive_interval=self._keepalive_interval_s,
                        keepalive_count_max=3,
                        encryption_algs=ENCRYPTION_ALGS,
                        config=[],
                        proxy_command=self._proxy_command.replace("%h", self.info.host).replace("%p", str(port))
                        if self._proxy_command else None,
                    ),
                    timeout=self._connect_timeout,
                )
                sftp = await conn.start_sftp_client()
                # Open from the start: a node host says on it that it starts
                # phases sent there, before the first start.
                watch = await self._open_watch(conn)
                self._end_watch()
                self._conn, self._sftp, self._watch = conn, sftp, watch
                kept = True
            except (TimeoutError, OSError, asyncssh.Error, CloudError) as exc:
                raise NodeError(f"cannot reach node {self.info.user}@{self.info.host}:{self.info.port}: {exc}") from exc
            finally:
                if not kept and conn is not None:
                    conn.close()  # made but not kept (failed, or cancelled): not left open

    async def close(self) -> None:
        self._end_watch()
        conn, self._conn, self._sftp = self._conn, None, None
        await close_connection(conn)

    async def _ensure(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        if self._conn is None or self._conn.is_closed() or self._sftp is None:
            await self.connect()  # under its lock: a connect in progress is waited for, not undone
        assert self._conn is not None and self._sftp is not None
        return self._conn, self._sftp

    def _lost(self) -> None:
        """Forget a broken connection so the next call reconnects."""
        self._end_watch()
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._sftp = None

    # ------------------------------------------------------------- commands

    async def run(
        self, command: str, *, env: dict[str, str] | None = None, timeout: float = 60.0,
        input: str | None = None,
    ) -> tuple[int, str, str]:
        """Run a short command. `env` goes on the command line: never secrets
        there; they travel on `input` (stdin)."""
        conn, _ = await self._ensure()
        # Env goes inline (not SSH `env` requests) because OpenSSH drops any
        # variable its AcceptEnv does not list.
        prefix = env_prefix(env)
        if input is None:
            running = conn.run(prefix + command, check=False, stdin=asyncssh.DEVNULL)
        else:
            running = conn.run(prefix + command, check=False, input=input)
        try:
            result = await asyncio.wait_for(running, timeout=timeout)
        except TimeoutError as exc:
            raise NodeError(f"command timed out after {timeout:g}s on {self.info.user}") from exc
        except (OSError, asyncssh.Error) as exc:
            self._lost()
            raise NodeError(f"command failed on {self.info.user}: {exc}") from exc
        status = result.exit_status if result.exit_status is not None else 255
        return status, str(result.stdout or ""), str(result.stderr or "")

    async def upload(self, local_path: str, remote_path: str) -> None:
        _, sftp = await self._ensure()
        source = Path(local_path).expanduser()
        parent = str(Path(remote_path).parent)
        try:
            if parent not in ("", "."):
                await sftp.makedirs(parent, exist_ok=True)
            await sftp.put(str(source), remote_path, recurse=source.is_dir(), preserve=True)
        except (OSError, asyncssh.Error) as exc:
            raise NodeError(f"upload of {local_path} to {remote_path} failed: {exc}") from exc

    # --------------------------------------------------------------- phases

    async def start_phase(
        self, phase_id: str, script: str, env: dict[str, str], *, cwd: str | None = None
    ) -> int:
        """Start a phase detached (a no-op if it was already started); its pid.

        `cwd` is relative to the node's home; the phase falls back to home
        when it does not exist (a task without a workdir).
        """
        watch = self._watch
        if watch is not None and not watch.closed and watch.can_launch:
            # On the watch stream the node host already serves: no channel per start.
            try:
                return await asyncio.wait_for(watch.start(
                    phase_id, launch_request_json(self.info.phases_dir, phase_id, cwd),
                    *encoded_launch_input(script, env),
                ), timeout=START_TIMEOUT_S)
            except StartRefused as exc:
                raise NodeError(f"phase {phase_id} did not start ({exc})") from exc
            except (TimeoutError, WatchStreamClosed) as exc:
                self._lost()
                raise NodeError(f"phase {phase_id}: no answer from {self.info.user} to its start") from exc
        return await super().start_phase(phase_id, script, env, cwd=cwd)

    async def _read_small(self, path: str) -> str | None:
        _, sftp = await self._ensure()
        try:
            async with sftp.open(path, "r") as f:
                return str(await f.read())
        except asyncssh.SFTPNoSuchFile:
            return None
        except (OSError, asyncssh.Error) as exc:
            self._lost()
            raise NodeError(f"cannot read {path}: {exc}") from exc

    async def phase_state(self, phase_id: str, *, check_alive: bool = False) -> PhaseState:
        """The exit code once written; the pid and liveness only when asked,
        since this runs once a second for every running job."""
        phase_dir = self._phase_dir(phase_id)
        if self._watch is not None:
            end = self._watch.ended.get(phase_id)
            if end is not None:  # the node said how it ended: nothing to read
                return PhaseState(started=True, pid=None, exit_code=end.exit_code, alive=None,
                                  ended_at=end.ended_at, output_size=end.output_size)
            if phase_id in self._watch.gone:
                check_alive = True  # the node said its process is gone: see for ourselves
            elif not check_alive and phase_id in self._watch.sizes:
                # The node watches it, checked its process when the watch
                # began, and has told of no end: it runs. Nothing to read.
                return PhaseState(started=None, pid=None, exit_code=None, alive=None,
                                  output_size=self._watch.sizes[phase_id])
        exit_text = await self._read_small(f"{phase_dir}/exit_code")
        exit_code = parse_exit_code(exit_text)
        if exit_code is not None:
            # Read once per phase: the wrapper writes it before the exit code.
            ended_at = parse_node_time(await self._read_small(f"{phase_dir}/ended_at"))
            return PhaseState(started=True, pid=None, exit_code=exit_code, alive=None, ended_at=ended_at)
        if not check_alive:
            return PhaseState(started=None, pid=None, exit_code=None, alive=None)
        # One exec: is the recorded process alive; if not, did it end after
        # all (the exit code is read after the check: a phase that just ended
        # is not taken for a vanished one), and did the user's script ever
        # begin (the wrapper empties its env file before it starts it).
        _, out, _ = await self.run(
            f'{ALIVE_FUNCTION}; D="$HOME"/{shlex.quote(phase_dir)}; p=$(cat "$D/pid" 2>/dev/null); a=; b=1; '
            'if [ -n "$p" ]; then if alive "$p"; then a=1; else a=0; fi; fi; '
            '[ -s "$D/env" ] && b=0; e=$(cat "$D/exit_code" 2>/dev/null); '
            'printf "%s\\n%s\\n%s\\n%s\\n" "$p" "$a" "$b" "$e"',
            timeout=15,
        )
        pid_text, alive_text, began_text, exit_text = (out.splitlines() + ["", "", "", ""])[:4]
        pid = int(pid_text) if pid_text.strip().isdigit() else None
        exit_code = parse_exit_code(exit_text)
        if exit_code is not None:
            return await self.phase_state(phase_id)  # it ended between two looks
        alive = None if not alive_text else alive_text == "1"
        return PhaseState(started=pid is not None and began_text == "1", pid=pid, exit_code=None, alive=alive)

    async def read_phase_output(self, phase_id: str, offset: int, max_bytes: int) -> bytes:
        """What the output holds from `offset` now, up to `max_bytes`: one
        request at a time, up to the first short one. (asyncssh's parallel
        reader asks again for the rest of every short block, so on a file
        still being written it chases the writer until it pauses: a job
        printing every 40 ms showed nothing until it ended.)"""
        _, sftp = await self._ensure()
        chunks: list[bytes] = []
        got = 0
        try:
            async with sftp.open(f"{self._phase_dir(phase_id)}/out.log", "rb", block_size=0) as f:
                step = max(1, sftp.limits.max_read_len)
                while got < max_bytes:
                    want = min(step, max_bytes - got)
                    data = await f.read(want, offset + got)
                    assert isinstance(data, bytes)  # binary mode
                    chunks.append(data)
                    got += len(data)
                    if len(data) < want:
                        break
            return b"".join(chunks)
        except asyncssh.SFTPNoSuchFile:
            return b""
        except (OSError, asyncssh.Error) as exc:
            self._lost()
            raise NodeError(f"cannot read output of {phase_id}: {exc}") from exc

    async def watch_phase(self, phase_id: str) -> asyncio.Event:
        """An Event the node sets whenever the phase may have changed (see
        phase_watch.py): clear it, look, then wait on it. A new watch returns
        once the node has answered it (its output's size, or how the phase
        ended), so the first look reads nothing either."""
        async with self._watch_opening:
            if self._watch is None or self._watch.closed:
                conn, _ = await self._ensure()
                try:
                    self._watch = await self._open_watch(conn)
                except (OSError, asyncssh.Error) as exc:
                    self._lost()
                    raise NodeError(f"cannot watch phases on {self.info.user}: {exc}") from exc
            watch = self._watch
        fresh = not watch.watching(phase_id)
        event = watch.watch(phase_id)
        if fresh:
            # A node that does not answer in time is looked at as before.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), WATCH_ANSWER_TIMEOUT_S)
        return event

    async def _open_watch(self, conn: asyncssh.SSHClientConnection) -> PhaseWatchStream:
        process = await conn.create_process(
            watch_command(self.info.phases_dir), encoding="utf-8", stderr=asyncssh.DEVNULL,
        )
        return PhaseWatchStream(process)

    def unwatch_phase(self, phase_id: str) -> None:
        if self._watch is not None:
            self._watch.unwatch(phase_id)

    async def wait_phase_notice(self, phase_id: str) -> float | None:
        """Told by the watch stream (the phase is watched while it runs)."""
        watch = self._watch
        if watch is None or watch.closed or not watch.watching(phase_id):
            return None
        return await watch.wait_notice(phase_id)

    def _end_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    async def _running_pid(self, phase_id: str) -> int | None:
        if (await self.phase_state(phase_id)).finished:
            return None
        # The pid by SFTP, not by a shell: the kill command itself finds out
        # whether the group still lives (the local node host, natively).
        pid_text = await self._read_small(f"{self._phase_dir(phase_id)}/pid")
        if pid_text is None or not pid_text.strip().isdigit():
            return None  # never started: nothing to stop
        return int(pid_text)
