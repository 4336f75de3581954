"""The client's line to a controller pod: the Kubernetes exec API, as the
job pods' driver (clouds/nodes/podnode.py) uses it.

Owns `PodLink` (a `Link`): `run` and `upload` go through a `PodNode`, so
they share its exec, its timeouts and its tar-over-stdin upload; `open_pipe`
keeps one exec stream open for a long-lived process (the controller API)
and turns its stdout into lines. The kubernetes client is blocking: each
stream is driven by threads of its own, never on the event loop. May touch
the node driver of pods, the SDK (lazily) and link.py's protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from skytui.clouds.base import NodeError, NodeInfo
from skytui.clouds.nodes.podnode import CONTAINER, SOCKET_TIMEOUT_S, PodNode
from skytui.remote.errors import LinkError
from skytui.remote.link import Pipe

# The exec's shell: POSIX sh, which every image has (site.py writes POSIX).
SHELL = "sh"
# One line of the API may be a whole queue (10,000 jobs): no practical limit.
LINE_LIMIT = 1 << 30
STDERR_KEPT = 4096  # what is said of a process that ended, from its stderr
CLOSE_WAIT_S = 5.0
V5 = "v5.channel.k8s.io"

# (context, ApiClient) of the pod's cluster, found when first needed.
Resolver = Callable[[], Awaitable[tuple[str, Any]]]


def _in_home(command: str) -> str:
    # Exec starts in the image's WORKDIR, an SSH login in its home: start there, as SSHLink does.
    return f'cd "$HOME" 2>/dev/null; {command}'


class _PodPipe:
    """One exec stream: a writer thread sends stdin, a reader thread feeds
    stdout into an asyncio StreamReader on the loop that opened it."""

    def __init__(self, ws: Any, loop: asyncio.AbstractEventLoop, where: str) -> None:
        self._ws = ws
        self._loop = loop
        self._where = where
        self._out = asyncio.StreamReader(limit=LINE_LIMIT)
        self._outgoing: queue.Queue[bytes | None] = queue.Queue()
        self._stderr = b""
        self._closing = False
        self._failure: str | None = None
        self._reader = threading.Thread(target=self._read_loop, name="pod-pipe-out", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="pod-pipe-in", daemon=True)
        self._reader.start()
        self._writer.start()

    # ------------------------------------------------------------ Pipe

    def write(self, data: bytes) -> None:
        self._outgoing.put(data)

    async def readline(self) -> bytes:
        line = await self._out.readline()
        if not line and self._failure is not None:
            raise LinkError(self._failure)
        return line

    def close(self) -> None:
        self._closing = True
        self._outgoing.put(None)

    async def wait_closed(self, timeout: float) -> None:
        await asyncio.to_thread(self._reader.join, timeout)

    # --------------------------------------------------------- threads

    def _feed(self, method: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has gone: nobody reads any more
            self._loop.call_soon_threadsafe(method, *args)

    def _read_loop(self) -> None:
        ws = self._ws
        try:
            while ws.is_open():
                ws.update(timeout=1.0)
                out = ws.read_channel(1)
                if out:
                    self._feed(self._out.feed_data, bytes(out))
                err = ws.read_channel(2)
                if err:
                    self._stderr = (self._stderr + bytes(err))[-STDERR_KEPT:]
            if not self._closing and self._stderr.strip():
                self._failure = (f"the process on the controller pod {self._where} ended: "
                                 f"{self._stderr.decode(errors='replace').strip()[-1000:]}")
        except Exception as exc:  # noqa: BLE001 - a broken stream, whatever broke it
            if not self._closing:
                self._failure = f"lost the controller pod {self._where}: {type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                ws.close(timeout=1)
            self._feed(self._out.feed_eof)
            self._outgoing.put(None)  # the writer ends too

    def _write_loop(self) -> None:
        ws = self._ws
        while (data := self._outgoing.get()) is not None:
            try:
                ws.write_stdin(data)
            except Exception:  # noqa: BLE001 - the reader notices the broken stream
                break
        # End of input: the API process ends when its stdin does, and the
        # server then ends the stream. v4 cannot close stdin alone: there the
        # stream itself goes, which ends the process's stdin as well.
        if ws.subprotocol == V5:
            with contextlib.suppress(Exception):
                ws.close_channel(0)
            self._reader.join(CLOSE_WAIT_S)
        if self._reader.is_alive():
            with contextlib.suppress(Exception):
                ws.sock.abort()  # wakes the reader, which closes the stream


class PodLink:
    """Commands, uploads and pipes in the controller pod's main container."""

    def __init__(self, context: str, namespace: str, pod: str, resolve: Resolver) -> None:
        self.context = context
        self.namespace = namespace
        self.pod = pod
        self.where = f"kubernetes/{context} (pod {namespace}/{pod})"
        self._resolve = resolve
        info = NodeInfo(rank=0, host=pod, port=0, user="", internal_ip="", host_key="", instance_id="")
        self._node = PodNode(info, None, namespace, None, resolve=resolve)
        self._pipes: list[_PodPipe] = []

    def _lost(self, exc: BaseException) -> LinkError:
        return LinkError(
            f"cannot reach the controller pod {self.where}: {exc}. Nothing watches your managed jobs while "
            "it is unreachable (a preempted spot job is not recovered): see `skytui controller status`"
        )

    async def run(self, command: str, *, input: bytes | None = None, timeout: float = 60.0) -> tuple[int, str, str]:
        # Input is read by exact length (`head -c`): an exec stream of the v4
        # protocol cannot say end-of-input, and `cat > file` would wait for it.
        script = _in_home(command if input is None else f"head -c {len(input)} | {{ {command}\n}}")
        try:
            status, out, err = await self._node._exec([SHELL, "-c", script], stdin=input, timeout=timeout)
        except NodeError as exc:
            if "timed out" in str(exc):
                raise LinkError(f"a command on the controller pod {self.where} took over {timeout:g}s") from exc
            raise self._lost(exc) from exc
        return status, out.decode(errors="replace"), err.decode(errors="replace")

    async def upload(self, local_path: Path, remote_path: str) -> None:
        try:
            await self._node.upload(str(local_path), remote_path)
        except NodeError as exc:
            raise LinkError(f"upload of {local_path} to the controller pod {self.where} failed: {exc}") from exc

    async def open_pipe(self, command: str) -> Pipe:
        _, api = await self._resolve()
        try:
            ws = await asyncio.to_thread(self._open_stream, api.configuration, [SHELL, "-c", _in_home(command)])
        except Exception as exc:  # noqa: BLE001 - every way of not getting a stream is one answer
            raise LinkError(f"cannot start the controller API on {self.where}: "
                            f"{getattr(exc, 'reason', None) or exc}") from exc
        pipe = _PodPipe(ws, asyncio.get_running_loop(), self.where)
        self._pipes = [p for p in self._pipes if p._reader.is_alive()] + [pipe]
        return pipe

    def _open_stream(self, configuration: Any, argv: list[str]) -> Any:
        import websocket
        from kubernetes import client
        from kubernetes.stream import stream

        if websocket.getdefaulttimeout() is None:
            websocket.setdefaulttimeout(SOCKET_TIMEOUT_S)  # as podnode.py: the only connect timeout there is
        # An ApiClient of its own: stream() patches the one it is given.
        api_client: Any = client.ApiClient(configuration)
        try:
            return stream(
                client.CoreV1Api(api_client).connect_get_namespaced_pod_exec, self.pod, self.namespace,
                command=argv, container=CONTAINER, stdin=True, stdout=True, stderr=True, tty=False,
                _preload_content=False, binary=True,
            )
        finally:
            with contextlib.suppress(Exception):
                api_client.close()

    async def close(self) -> None:
        """Ends the pipes this link opened (their processes end with their stdin)."""
        pipes, self._pipes = self._pipes, []
        for pipe in pipes:
            pipe.close()
        await asyncio.gather(*(pipe.wait_closed(CLOSE_WAIT_S) for pipe in pipes))
