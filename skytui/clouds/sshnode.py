"""A Node reached over SSH (asyncssh): the one node driver of VM-like infra.

Phases run detached under `setsid` in `~/.skytui/phases/<id>/` on the node:
`pid` (the process-group leader), `out.log` (stdout and stderr), `exit_code`
(written when the phase ends). A `lock` directory makes starting a phase
exactly-once, so a controller that crashed mid-start can simply start again.
Secrets travel in a 0600 env file that the phase deletes once read; they never
appear on a remote command line.

Everything is relative to the login's home, which is also where SFTP starts,
so the same paths work on a VM's OpenSSH and on the local node host's jail.
"""

from __future__ import annotations

import asyncio
import base64
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh

from skytui.clouds.base import PHASES_DIR, CloudError, NodeError, NodeInfo, PhaseState

# The detached wrapper. It traps TERM so that when a cancel signals the
# process group, the user's process dies but the wrapper lives on to record
# its exit code (a handler, not an ignore, so children keep default TERM).
_WRAPPER = r"""
trap 'true' TERM INT HUP
echo $$ > "$D/pid.tmp" && mv "$D/pid.tmp" "$D/pid"
set -a; . "$D/env"; set +a; rm -f "$D/env"
cd "$HOME/$PHASE_CWD" 2>/dev/null || cd "$HOME"
bash "$D/script.sh" > "$D/out.log" 2>&1 < /dev/null
rc=$?
echo $rc > "$D/exit.tmp" && mv "$D/exit.tmp" "$D/exit_code"
"""

# Runs in one exec: take the lock (exactly once), write the script and the
# env file from stdin (so secrets never touch a command line), and launch the
# wrapper in its own session. `$!` is the wrapper's pid: setsid only forks
# for a group leader, and a background job of a shell without job control is
# not one. Both the launcher and the wrapper record it, so it is on disk when
# the launch returns, and even if the launcher died right after the fork.
# A phase started earlier answers with the recorded pid.
_LAUNCHER = r"""
D="$HOME/{phases}/{phase_id}"
mkdir -p "$D"
if mkdir "$D/lock" 2>/dev/null; then
  IFS= read -r script; IFS= read -r env
  printf %s "$script" | base64 -d > "$D/script.sh"
  (umask 077; printf %s "$env" | base64 -d > "$D/env")
  D="$D" PHASE_CWD={cwd} setsid bash -c {wrapper} > /dev/null 2>&1 < /dev/null &
  echo $! > "$D/pid.launcher" && mv "$D/pid.launcher" "$D/pid"
  echo $!
  exit 0
fi
for _ in $(seq 1 200); do [ -s "$D/pid" ] && break; sleep 0.02; done
cat "$D/pid" 2>/dev/null
"""


def _env_file(env: dict[str, str]) -> str:
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())


class SSHNode:
    """One persistent SSH connection per node; commands are channels on it."""

    def __init__(
        self,
        info: NodeInfo,
        client_key_path: Path,
        *,
        connect_timeout: float = 20.0,
        resolve_port: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self.info = info
        # The local node host may have restarted on another port since the
        # node was provisioned; it says where it is now.
        self._resolve_port = resolve_port
        self._client_key_path = client_key_path
        self._connect_timeout = connect_timeout
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------ connection

    async def connect(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            try:
                port = await self._resolve_port() if self._resolve_port else self.info.port
                known_hosts = asyncssh.import_known_hosts(
                    f"[{self.info.host}]:{port} {self.info.host_key}\n"
                    f"{self.info.host} {self.info.host_key}\n"
                )
                self._conn = await asyncio.wait_for(
                    asyncssh.connect(
                        self.info.host,
                        port,
                        username=self.info.user,
                        client_keys=[str(self._client_key_path)],
                        known_hosts=known_hosts,
                        agent_path=None,
                        agent_forwarding=False,
                        keepalive_interval=5,
                        keepalive_count_max=3,
                        config=[],
                    ),
                    timeout=self._connect_timeout,
                )
                self._sftp = await self._conn.start_sftp_client()
            except (OSError, asyncssh.Error, asyncio.TimeoutError, CloudError) as exc:
                self._conn = None
                self._sftp = None
                raise NodeError(f"cannot reach node {self.info.user}@{self.info.host}:{self.info.port}: {exc}") from exc

    async def close(self) -> None:
        conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            conn.close()
            try:
                await asyncio.wait_for(conn.wait_closed(), timeout=5)
            except (asyncio.TimeoutError, OSError, asyncssh.Error):
                pass

    async def _ensure(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        if self._conn is None or self._conn.is_closed() or self._sftp is None:
            self._conn = None
            await self.connect()
        assert self._conn is not None and self._sftp is not None
        return self._conn, self._sftp

    def _lost(self) -> None:
        """Forget a broken connection so the next call reconnects."""
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
        prefix = "".join(f"export {k}={shlex.quote(v)}; " for k, v in (env or {}).items())
        if input is None:
            running = conn.run(prefix + command, check=False, stdin=asyncssh.DEVNULL)
        else:
            running = conn.run(prefix + command, check=False, input=input)
        try:
            result = await asyncio.wait_for(running, timeout=timeout)
        except asyncio.TimeoutError as exc:
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

    def _phase_dir(self, phase_id: str) -> str:
        return f"{PHASES_DIR}/{phase_id}"

    async def start_phase(
        self, phase_id: str, script: str, env: dict[str, str], *, cwd: str | None = None
    ) -> int:
        """Start a phase detached (a no-op if it was already started); its pid.

        `cwd` is relative to the node's home; the phase falls back to home
        when it does not exist (a task without a workdir).
        """
        command = _LAUNCHER.format(
            phases=PHASES_DIR,
            phase_id=phase_id,
            cwd=shlex.quote(cwd or ""),
            wrapper=shlex.quote(_WRAPPER),
        )
        payload = (
            base64.b64encode(script.encode()).decode() + "\n"
            + base64.b64encode(_env_file(env).encode()).decode() + "\n"
        )
        status, out, err = await self.run(command, timeout=30, input=payload)
        try:
            return int(out.strip())
        except ValueError as exc:
            raise NodeError(f"phase {phase_id} did not start (exit {status}): {err.strip()}") from exc

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
        exit_text = await self._read_small(f"{phase_dir}/exit_code")
        exit_code = int(exit_text) if exit_text and exit_text.strip().lstrip("-").isdigit() else None
        if exit_code is not None or not check_alive:
            return PhaseState(started=True if exit_code is not None else None, pid=None, exit_code=exit_code, alive=None)
        pid_text = await self._read_small(f"{phase_dir}/pid")
        pid = int(pid_text) if pid_text and pid_text.strip().isdigit() else None
        alive: bool | None = None
        if pid is not None:
            status, _, _ = await self.run(f"kill -0 {pid} 2>/dev/null", timeout=15)
            alive = status == 0
        return PhaseState(started=pid is not None, pid=pid, exit_code=exit_code, alive=alive)

    async def read_phase_output(self, phase_id: str, offset: int, max_bytes: int) -> bytes:
        _, sftp = await self._ensure()
        try:
            async with sftp.open(f"{self._phase_dir(phase_id)}/out.log", "rb") as f:
                data = await f.read(max_bytes, offset)
            assert isinstance(data, bytes)  # binary mode
            return data
        except asyncssh.SFTPNoSuchFile:
            return b""
        except (OSError, asyncssh.Error) as exc:
            self._lost()
            raise NodeError(f"cannot read output of {phase_id}: {exc}") from exc

    async def kill_phase(self, phase_id: str, *, grace_s: float = 5.0) -> None:
        """TERM the phase's process group, KILL it after the grace period.

        By process group from a second exec, because OpenSSH ignores channel
        signals for root logins and keeps no-pty processes when a channel closes.
        """
        state = await self.phase_state(phase_id, check_alive=True)
        if state.pid is None or state.finished:
            return
        pid = state.pid
        # Zombies do not count as alive (kill -0 says they are until reaped).
        alive = (
            f"if command -v ps >/dev/null 2>&1; then "
            f"ps -eo pgid=,stat= | awk -v g={pid} '$1==g && $2 !~ /^Z/ {{f=1}} END {{exit !f}}'; "
            f"else kill -0 -- -{pid} 2>/dev/null; fi"
        )
        await self.run(
            f"kill -TERM -- -{pid} 2>/dev/null; "
            f"for _ in $(seq 1 {max(1, int(grace_s * 10))}); do "
            f"{{ {alive}; }} || exit 0; sleep 0.1; done; "
            f"kill -KILL -- -{pid} 2>/dev/null; "
            # KILL took the wrapper too, so it wrote no exit code: record the kill.
            f'D="$HOME/{self._phase_dir(phase_id)}"; '
            f'[ -e "$D/exit_code" ] || {{ echo 137 > "$D/exit.tmp" && mv "$D/exit.tmp" "$D/exit_code"; }}; exit 0',
            timeout=grace_s + 15,
        )
