"""A Node that is a Kubernetes pod, driven through the Kubernetes API.

The pod's main container only stays alive; everything a job does is started
inside it through the exec API (a WebSocket per command), with the same shell
protocol as every VM (phase_scripts.py): setup and run start detached under
`setsid`, so they survive controller restarts and dropped exec streams, and
setup's installs are there for run. Files come back with `cat`, output by
exact byte offset with `tail -c +N | head -c M`, uploads go in as a tar
stream on stdin. The pod sets SKYTUI_LOG_SINK to its PID 1's stdout, so the
job's output is also in the pod log (`kubectl logs`).

The official client is synchronous: every call runs in a thread with explicit
timeouts. `kubernetes.stream.stream` swaps `call_api` on the ApiClient it is
given for the length of the call, so each exec gets an ApiClient of its own
(one shared with REST calls in other threads would send them over WebSocket).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from skytui.clouds.base import NodeError, NodeInfo, PhaseState
from skytui.clouds.nodes.shell_node import ShellNode, env_prefix
from skytui.clouds.phase_scripts import parse_exit_code, parse_node_time

CONTAINER = "main"
# Commands run in bash, as the phase wrapper does (the image must have it):
# the shared scripts use bash's kill (`kill -TERM -- -PGID`; dash's refuses `--`).
SHELL = "bash"
# Left in the pod's home by its PID 1 when the pod is being torn down
# (kubernetes.KEEPALIVE): a phase that ends non-zero then was killed by that.
TERMINATING_MARK = ".skytui/terminating"
STDIN_CHUNK = 1 << 20  # one WebSocket message of stdin at most
# A hung handshake or a silent peer must not hold a thread forever.
SOCKET_TIMEOUT_S = 30.0

Resolver = Callable[[], Awaitable[tuple[str, Any]]]


def _remote(path: str) -> str:
    """A node path as a shell word: relative paths are in the pod's $HOME."""
    if path.startswith("/"):
        return shlex.quote(path)
    return '"$HOME"/' + shlex.quote(path) if path not in ("", ".") else '"$HOME"'


def _error_text(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0][:300]


class PodNode(ShellNode):
    """One pod. `context`/`api` may be left None with a `resolve` callback
    that finds them (a pod in one of several contexts)."""

    def __init__(
        self,
        info: NodeInfo,
        context: str | None,
        namespace: str,
        api: Any | None,
        *,
        resolve: Resolver | None = None,
        container: str = CONTAINER,
    ) -> None:
        self.info = info
        self.context = context
        self.namespace = namespace
        self.api = api  # kubernetes.client.ApiClient for REST calls
        self.container = container
        self._resolve = resolve

    @property
    def pod_name(self) -> str:
        return self.info.host

    # ------------------------------------------------------------ connection

    async def _ensure(self) -> Any:
        if self.api is None:
            if self._resolve is None:
                raise NodeError(f"pod {self.pod_name}: no Kubernetes context to reach it")
            self.context, self.api = await self._resolve()
        return self.api

    async def connect(self) -> None:
        """Check that exec into the pod works (there is no connection to keep)."""
        status, _, err = await self.run("true", timeout=30)
        if status != 0:
            raise NodeError(f"pod {self.pod_name} does not run commands (exit {status}): {err.strip()[:200]}")

    async def close(self) -> None:
        return None

    # ------------------------------------------------------------------ exec

    async def _exec(
        self, argv: list[str], *, stdin: bytes | IO[bytes] | None = None, timeout: float = 60.0
    ) -> tuple[int, bytes, bytes]:
        api = await self._ensure()
        deadline = time.monotonic() + timeout
        try:
            # The thread ends by its own deadline; wait_for is the backstop
            # should a socket call block past it.
            return await asyncio.wait_for(
                asyncio.to_thread(self._exec_blocking, api.configuration, argv, stdin, deadline),
                timeout=timeout + SOCKET_TIMEOUT_S + 5,
            )
        except TimeoutError as exc:
            raise NodeError(f"exec in pod {self.pod_name} timed out after {timeout:g}s") from exc

    def _exec_blocking(
        self, configuration: Any, argv: list[str], stdin: bytes | IO[bytes] | None, deadline: float
    ) -> tuple[int, bytes, bytes]:
        import websocket
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        if websocket.getdefaulttimeout() is None:
            # websocket-client has no per-call connect timeout; the kubernetes
            # client builds the socket itself, so this default is the only knob.
            websocket.setdefaulttimeout(SOCKET_TIMEOUT_S)
        api_client: Any = client.ApiClient(configuration)  # its own: stream() patches it
        try:
            core = client.CoreV1Api(api_client)
            try:
                ws = stream(
                    core.connect_get_namespaced_pod_exec, self.pod_name, self.namespace,
                    command=argv, container=self.container, stdin=stdin is not None,
                    stdout=True, stderr=True, tty=False, _preload_content=False, binary=True,
                )
            except ApiException as exc:
                raise NodeError(f"cannot exec in pod {self.pod_name}: {_error_text(exc)}") from exc
            try:
                return self._talk(ws, stdin, deadline)
            except (OSError, websocket.WebSocketException) as exc:
                raise NodeError(f"exec in pod {self.pod_name} broke off: {_error_text(exc)}") from exc
            finally:
                with contextlib.suppress(Exception):
                    ws.close(timeout=1)
        finally:
            with contextlib.suppress(Exception):
                api_client.close()

    def _talk(self, ws: Any, stdin: bytes | IO[bytes] | None, deadline: float) -> tuple[int, bytes, bytes]:
        if stdin is not None:
            source = stdin if not isinstance(stdin, bytes) else None
            data = stdin if isinstance(stdin, bytes) else b""
            offset = 0
            while True:
                if source is not None:
                    chunk = source.read(STDIN_CHUNK)
                else:
                    chunk, offset = data[offset:offset + STDIN_CHUNK], offset + STDIN_CHUNK
                if not chunk:
                    break
                if time.monotonic() > deadline:
                    raise NodeError(f"exec in pod {self.pod_name} timed out sending input")
                ws.write_stdin(chunk)
            # End of input where the server speaks v5; on v4 the commands read
            # exactly what they need (`head -c N`, `read`), so they never wait for EOF.
            ws.close_channel(0)
        while ws.is_open():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NodeError(f"exec in pod {self.pod_name} timed out")
            ws.update(timeout=min(remaining, 1.0))
        out = bytes(ws.read_channel(1) or b"")
        err = bytes(ws.read_channel(2) or b"")
        raw = ws.read_channel(3)
        try:
            status = json.loads(raw) if raw else None
        except ValueError:
            status = None
        if not isinstance(status, dict):
            raise NodeError(f"exec in pod {self.pod_name} ended without an exit status (pod gone?)")
        if status.get("status") == "Success":
            return 0, out, err
        if status.get("reason") == "NonZeroExitCode":
            for cause in (status.get("details") or {}).get("causes") or []:
                if cause.get("reason") == "ExitCode":
                    return int(cause.get("message", 255)), out, err
        raise NodeError(f"exec in pod {self.pod_name} failed: {str(status.get('message', status))[:300]}")

    async def run(
        self, command: str, *, env: dict[str, str] | None = None, timeout: float = 60.0,
        input: str | None = None,
    ) -> tuple[int, str, str]:
        """Run a short shell command. `env` goes on the command line: never
        secrets there; they travel on `input` (stdin)."""
        # Exec starts in the image's WORKDIR, a login in its home: start there too.
        prefix = 'cd "$HOME" 2>/dev/null; ' + env_prefix(env)
        status, out, err = await self._exec(
            [SHELL, "-c", prefix + command],
            stdin=input.encode() if input is not None else None, timeout=timeout,
        )
        return status, out.decode(errors="replace"), err.decode(errors="replace")

    # --------------------------------------------------------------- upload

    async def upload(self, local_path: str, remote_path: str) -> None:
        """`local_path` (a file, or a directory's contents) to `remote_path`,
        relative to the pod's home unless absolute, as a tar stream."""
        source = Path(local_path).expanduser()
        if not source.exists():
            raise NodeError(f"upload of {local_path}: no such file or directory")
        if source.is_dir():
            target_dir, member = remote_path, None
        else:
            parent, _, base = remote_path.rstrip("/").rpartition("/")
            target_dir, member = parent or ".", base
        archive, size = await asyncio.to_thread(_tar, source, member)
        try:
            command = (
                f"T={_remote(target_dir)}; mkdir -p \"$T\" && "
                f"head -c {size} | tar -xf - --no-same-owner -C \"$T\""
            )
            # Generous: a large workdir goes at the speed of the API server.
            status, out, err = await self._exec(
                [SHELL, "-c", command], stdin=archive, timeout=120 + size / 1e6,
            )
        finally:
            archive.close()
        if status != 0:
            raise NodeError(
                f"upload of {local_path} to {remote_path} failed (exit {status}): "
                f"{(err or out).decode(errors='replace').strip()[:300]}"
            )

    # --------------------------------------------------------------- phases

    async def phase_state(self, phase_id: str, *, check_alive: bool = False) -> PhaseState:
        """One exec: the exit code, and when asked the pid and whether it
        lives (the exit code is read again after a failed liveness check, so
        a phase that just ended is not taken for a vanished one).

        While the pod is being torn down, a non-zero exit is not reported:
        the job was killed with its pod, which the API will say (GONE) in a
        moment, and that is a preemption, not the job's failure."""
        d = f'"$HOME"/{shlex.quote(self._phase_dir(phase_id))}'
        liveness = (
            'if [ -z "$e" ] && [ -n "$p" ]; then '
            'if kill -0 "$p" 2>/dev/null; then a=1; else a=0; e=$(cat "$D/exit_code" 2>/dev/null); fi; fi; '
            if check_alive else ""
        )
        script = (
            f'D={d}; e=$(cat "$D/exit_code" 2>/dev/null); p=$(cat "$D/pid" 2>/dev/null); a=; {liveness}'
            f't=; [ -e "$HOME"/{shlex.quote(TERMINATING_MARK)} ] && t=1; '
            f'w=$(cat "$D/ended_at" 2>/dev/null); '
            f'printf "%s\\n%s\\n%s\\n%s\\n%s\\n" "$e" "$p" "$a" "$t" "$w"'
        )
        _, out, _ = await self.run(script, timeout=30)
        lines = (out.splitlines() + ["", "", "", "", ""])[:5]
        code = parse_exit_code(lines[0])
        ended_at = parse_node_time(lines[4]) if code is not None else None
        pid = int(lines[1]) if lines[1].strip().isdigit() else None
        if lines[3] == "1" and code not in (None, 0):
            return PhaseState(started=True, pid=pid, exit_code=None, alive=None)
        if not check_alive:
            return PhaseState(started=True if code is not None else None, pid=None, exit_code=code, alive=None,
                              ended_at=ended_at)
        alive = None if code is not None or not lines[2] else lines[2] == "1"
        return PhaseState(started=pid is not None or code is not None, pid=pid, exit_code=code, alive=alive,
                          ended_at=ended_at)

    async def watch_phase(self, phase_id: str) -> None:
        """A pod's exec cannot push yet: the controller polls it."""
        return None

    def unwatch_phase(self, phase_id: str) -> None:
        return None

    async def wait_phase_notice(self, phase_id: str) -> float | None:
        """A pod's notice is its API's to give (clouds/preemption_notices.py)."""
        return None

    async def read_phase_output(self, phase_id: str, offset: int, max_bytes: int) -> bytes:
        path = f'"$HOME"/{shlex.quote(self._phase_dir(phase_id))}/out.log'
        command = f"[ -f {path} ] || exit 0; tail -c +{offset + 1} {path} | head -c {max_bytes}"
        status, out, err = await self._exec([SHELL, "-c", command], timeout=60)
        if status != 0:
            raise NodeError(f"cannot read output of {phase_id} (exit {status}): {err.decode(errors='replace')[:200]}")
        return out

    async def _running_pid(self, phase_id: str) -> int | None:
        state = await self.phase_state(phase_id, check_alive=True)
        return None if state.finished else state.pid


def _tar(source: Path, member: str | None) -> tuple[IO[bytes], int]:
    """A tar of `source` in a temporary file: the directory's contents, or the
    file as `member`. Returns the open file (at 0) and its size."""
    archive = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
    try:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            if member is not None:
                tar.add(source, arcname=member)
            else:
                for child in sorted(os.listdir(source)):
                    tar.add(source / child, arcname=child)
        size = archive.tell()
        archive.seek(0)
    except BaseException:
        archive.close()
        raise
    return archive, size
