"""The client of a remote controller: the same public methods as `Client`,
answered by the API process on the controller machine (`client.serve`) over
one channel (an SSH channel, a pod exec stream), so that every command, its
flags, its `--json` and its exit codes, and the TUI, behave as against the
local controller.

Owns `RemoteClient` and `ApiChannel` (request ids, answers and streams on
one pipe). What needs only this machine stays here: planning (the catalogs
and config.yaml), `check`. A job's local files go to the controller machine
once, at submission (`_send_files`), and on to the nodes from there. May
touch the client's own modules, wire.py, and `skytui.remote` (the site).
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from skytui.client.api import Client
from skytui.client.follow import FollowStep, QueueUpdate
from skytui.client.ledger_views import CostReport
from skytui.client.submission import Submission, prepare_pool, prepare_submission
from skytui.client.views import JobView, PoolView
from skytui.client.wire import decode, dumps, encode, raise_error
from skytui.config import Config, Paths, write_private
from skytui.engine.daemon import ControllerInfo
from skytui.engine.store import AttemptRow, EventRow
from skytui.remote.errors import LinkError, NoController
from skytui.remote.link import LinkLoop, Pipe
from skytui.remote.site import ControllerSite, SiteStatus

if TYPE_CHECKING:
    from skytui.logs.follow import LogFollower
    from skytui.spec import Pipeline, PoolDefinition

# A plain call's answer: a cancel waits a few seconds, a sim preempt a minute.
CALL_TIMEOUT_S = 300.0
OPEN_TIMEOUT_S = 900.0  # the first contact may launch a controller VM and set it up, then send skytui's code
# The calls that make a missing controller pod or VM: a launch, a pool.
CREATES = frozenset({"submit_prepared", "apply_pool_stored"})
# What a read answers while no controller machine exists (by the call's args).
NO_CONTROLLER_ANSWERS: dict[str, Callable[[tuple[Any, ...]], Any]] = {
    "queue": lambda _: [], "queue_json": lambda _: '{"jobs": []}', "snapshot": lambda _: ([], 0),
    "changes": lambda args: ([], args[0]), "job": lambda _: None, "pools": lambda _: [],
    "in_progress_ids": lambda _: [], "has_unfinished_work": lambda _: False, "events": lambda _: [],
    "resolve_job": lambda _: None, "controller_info": lambda _: ControllerInfo(False, None),
    "read_controller_log": lambda _: b"", "cancel": lambda _: [],
    "attempts": lambda _: [], "job_count": lambda _: 0,
}
# In the client's SKYTUI_HOME: which controller it talked to last (a cache: losing it loses nothing).
LAST_CONTROLLER_FILE = "last_controller.json"


class ApiChannel:
    """Calls and streams over one API process on the controller machine; any thread may call."""

    def __init__(self, pipe: Pipe, loop: LinkLoop, where: str) -> None:
        self._pipe = pipe
        self._loop = loop
        self._where = where
        self._ids = itertools.count(1)
        self._waiting: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.lost: str | None = None
        loop.submit(self._read())

    async def _read(self) -> None:
        reason = "the controller API process ended"
        try:
            while line := await self._pipe.readline():
                message = json.loads(line)
                with self._lock:
                    waiting = self._waiting.get(message.get("id"))
                if waiting is not None:
                    waiting.put(message)
        except Exception as exc:  # noqa: BLE001 - a broken channel, whatever broke it
            reason = f"lost the controller machine {self._where}: {exc}"
        with self._lock:
            self.lost = reason
            everyone = list(self._waiting.values())
        for waiting in everyone:
            waiting.put({"lost": reason})

    def _open(self) -> tuple[int, queue.Queue[dict[str, Any]]]:
        with self._lock:
            if self.lost is not None:
                raise LinkError(self.lost)
            rid = next(self._ids)
            self._waiting[rid] = queue.Queue()
            return rid, self._waiting[rid]

    def _close(self, rid: int) -> None:
        with self._lock:
            self._waiting.pop(rid, None)

    def _send(self, message: dict[str, Any]) -> None:
        self._loop.loop.call_soon_threadsafe(self._pipe.write, dumps(message))

    @staticmethod
    def _request(rid: int, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"id": rid, "call": name, "args": encode(list(args)), "kwargs": encode(kwargs)}

    def _answer(self, message: dict[str, Any]) -> None:
        if "error" in message:
            raise_error(message["error"])
        if "lost" in message:
            raise LinkError(message["lost"])

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        rid, answers = self._open()
        try:
            self._send(self._request(rid, method, args, kwargs))
            try:
                message = answers.get(timeout=CALL_TIMEOUT_S)
            except queue.Empty:
                raise LinkError(f"the controller on {self._where} did not answer {method} "
                                f"within {CALL_TIMEOUT_S:g}s") from None
            self._answer(message)
            return decode(message["result"])
        finally:
            self._close(rid)

    def stream(self, method: str, /, *args: Any, **kwargs: Any) -> Iterator[Any]:
        rid, answers = self._open()
        ended = False
        try:
            self._send(self._request(rid, method, args, kwargs))
            while True:
                message = answers.get()
                if "item" in message:
                    yield decode(message["item"])
                    continue
                ended = True
                if message.get("end"):
                    return
                self._answer(message)
        finally:
            if not ended and self.lost is None:
                self._send({"id": rid, "cancel": True})  # the caller stopped early
            self._close(rid)

    def close(self) -> None:
        self._loop.loop.call_soon_threadsafe(self._pipe.close)


class RemoteClient(Client):
    """`Client`, answered by the controller on its own machine."""

    def __init__(self, p: Paths, config: Config) -> None:
        super().__init__(p)
        self.config = config
        self._loop = LinkLoop()
        self.site = ControllerSite(p, config, self._loop)
        self._channel: ApiChannel | None = None
        self._channel_lock = threading.Lock()
        self._notices: list[str] = []

    @property
    def store(self) -> NoReturn:
        raise RuntimeError("a remote controller's state is on its machine: ask through the client's methods")

    def _api(self, *, create: bool = False) -> ApiChannel:
        """The channel to the controller's API; `create` makes a missing pod or
        VM (a launch), else NoController says there is none yet."""
        with self._channel_lock:
            if self._channel is None or self._channel.lost is not None:
                pipe, hello = self._loop.run(self.site.open_api(create=create), timeout=OPEN_TIMEOUT_S)
                self._channel = ApiChannel(pipe, self._loop, self.site.where)
                for notice in (self.site.resources_differ(hello.get("started_with")),
                               self._met_before(str(hello.get("controller_id")))):
                    if notice is not None and notice not in self._notices:
                        self._notices.append(notice)
            return self._channel

    def _met_before(self, controller_id: str) -> str | None:
        """Remember which controller this client talks to; what to say when it
        is not the one it talked to last (its state was deleted, or the
        machine lost and made again)."""
        marker = self.paths.home / LAST_CONTROLLER_FILE
        where = self.site.machine.label
        try:
            last = json.loads(marker.read_text())
        except (OSError, ValueError):
            last = None
        if last != {"where": where, "id": controller_id}:
            self.paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private(marker, json.dumps({"where": where, "id": controller_id}).encode())
        if isinstance(last, dict) and last.get("where") == where and last.get("id") != controller_id:
            return (f"the controller on {where} is not the one this client last talked to: its state was "
                    "deleted or its machine lost and made again, and the jobs it managed (and their logs) "
                    "went with it. Jobs still running on machines it had started are not watched; "
                    "check your cloud consoles for them")
        return None

    def _call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """A call there. Before any launch made the pod or VM, a read answers
        as an empty controller would (`NO_CONTROLLER_ANSWERS`), and nothing is made."""
        try:
            channel = self._api(create=method in CREATES)
        except NoController:
            if method not in NO_CONTROLLER_ANSWERS:
                raise
            return NO_CONTROLLER_ANSWERS[method](args)
        return channel.call(method, *args, **kwargs)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        try:
            self._loop.run(self.site.close(), timeout=10)
        except LinkError:
            pass
        self._loop.close()

    # ------------------------------------------------------------ controller

    def controller_where(self) -> str | None:
        return self.site.where

    def notices(self) -> list[str]:
        return list(self._notices)

    def controller_credentials(self) -> list[tuple[str, str]]:
        from skytui.remote.credentials import credential_files, environment_credentials

        sent = [(item.what, str(item.local)) for item in credential_files(self.paths, self.config)]
        return sent + [(name, "environment variable") for name in environment_credentials(self.config)]

    def site_status(self) -> SiteStatus:
        return self._loop.run(self.site.status(), timeout=120)

    def controller_report(self) -> list[str]:
        status = self.site_status()
        if not status.reachable:
            return [f"Controller on {status.where}: unreachable. {status.problem}"]
        if status.problem is not None:
            return [f"Controller on {status.where}: {status.problem}."]
        running = (f"running (pid {status.controller_pid})" if status.controller_pid is not None
                   else "not running")
        lines = [f"Controller on {status.where}: {running}"
                 + (f", supervised (pid {status.supervisor_pid})." if status.supervisor_pid else ".")]
        if status.supervisor_pid is not None:
            lines.append(f"Autostop: after {status.autostop_minutes:g} idle minutes (no job in progress, no pool)."
                         if status.autostop_minutes is not None else "Autostop: off.")
        differ = self.site.resources_differ(status.started_with)
        if differ is not None:
            lines.append(f"Note: {differ}.")
        return lines

    def ensure_controller(self) -> ControllerInfo:
        status = self._loop.run(self.site.start(), timeout=OPEN_TIMEOUT_S)
        return ControllerInfo(status.controller_pid is not None, status.controller_pid)

    def controller_info(self) -> ControllerInfo:
        """The daemon there, asked on the open channel (the TUI asks every few seconds)."""
        info: ControllerInfo = self._call("controller_info")
        return info

    def stop_controller(self) -> bool:
        return self._loop.run(self.site.stop(), timeout=120)

    def stop_idle_node_host(self) -> bool:
        return False  # `stop_controller` did it there, without opening the API (which would supervise again)

    def revive_controller(self) -> ControllerInfo | None:
        """Nothing to ask: the API process, at its start, has the machine's
        supervisor restart a controller that has work (serve.main)."""
        return None

    def down_controller(self) -> None:
        """Everything skytui has on the controller machine goes (see `ControllerSite.down`)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self._loop.run(self.site.down(), timeout=300)
        # Taken down on purpose: the next controller is no surprise.
        (self.paths.home / LAST_CONTROLLER_FILE).unlink(missing_ok=True)

    # ------------------------------------------------------------- launching

    def _send_files(self, task: dict[str, Any]) -> dict[str, Any]:
        """A stored task whose local workdir and file_mounts sources were sent to
        the controller machine, pointing at the copies there."""
        sent: dict[str, str] = {}
        upload_dir: list[str] = []

        def send(local: str) -> str:
            if local in sent:
                return sent[local]
            if not upload_dir:
                upload_dir.append(self._loop.run(self.site.upload_dir(), timeout=60))
            remote = f"{upload_dir[0]}/{len(sent)}/{Path(local).name or 'root'}"
            self._loop.run(self.site.upload(Path(local), remote), timeout=None)
            sent[local] = remote
            return remote

        task = dict(task)
        if isinstance(task.get("workdir"), str):
            task["workdir"] = send(task["workdir"])
        mounts: dict[str, Any] = {}
        for target, source in (task.get("file_mounts") or {}).items():
            if isinstance(source, str):
                mounts[target] = source if "://" in source else send(source)
            elif isinstance(source, dict) and source.get("source") is not None:
                inner = source["source"]
                if isinstance(inner, str):
                    inner = inner if "://" in inner else send(inner)
                else:
                    inner = [item if "://" in item else send(item) for item in inner]
                mounts[target] = {**source, "source": inner}
            else:
                mounts[target] = source
        task["file_mounts"] = mounts
        return task

    def submit(
        self, pipeline: Pipeline, *, pool: str | None = None, num_jobs: int = 1, priority: int | None = None,
        start_controller: bool = True, max_cost_usd: float | None = None, stall_timeout_s: float | None = None,
    ) -> list[int]:
        if pool is not None and pipeline.is_group:
            raise ValueError("a job group runs on machines of its own, not in a pool; drop --pool")
        submission = prepare_submission(pipeline, priority, max_cost_usd=max_cost_usd,
                                        stall_timeout_s=stall_timeout_s, paths=self.paths)
        self._api(create=True)  # the first launch makes the controller's machine, before its files go there
        spec = {**submission.spec, "tasks": [self._send_files(task) for task in submission.spec["tasks"]]}
        return self.submit_prepared(replace(submission, spec=spec), pool=pool, num_jobs=num_jobs,
                                    start_controller=start_controller)

    def apply_pool(self, name: str, definition: PoolDefinition | None, workers: int | None) -> tuple[int, str]:
        stored = prepare_pool(definition, workers) if definition is not None else None
        if stored is not None:
            self._api(create=True)
            spec, secrets = stored
            stored = ({**spec, "task": self._send_files(spec["task"])}, secrets)
        return self.apply_pool_stored(name, stored, workers)

    def submit_prepared(
        self, submission: Submission, *, pool: str | None = None, num_jobs: int = 1, start_controller: bool = True,
    ) -> list[int]:
        """A submission whose files are already on the controller machine."""
        ids: list[int] = self._call("submit_prepared", submission, pool=pool, num_jobs=num_jobs,
                                    start_controller=start_controller)
        return ids

    def apply_pool_stored(
        self, name: str, stored: tuple[dict[str, Any], dict[str, str]] | None, workers: int | None,
    ) -> tuple[int, str]:
        applied: tuple[int, str] = self._call("apply_pool_stored", name, stored, workers)
        return applied

    # ------------------------------------------------------- the rest, there

    def cancel(self, job_ids: Any) -> list[int]:
        return list(self._call("cancel", list(job_ids)))

    def pools(self, name: str | None = None) -> list[PoolView]:
        return list(self._call("pools", name))

    def pool_down(self, name: str) -> None:
        self._call("pool_down", name)

    def sim_preempt(self, job_id: int, task_idx: int | None = None, *, notice_s: float = 0.0) -> str:
        return str(self._call("sim_preempt", job_id, task_idx, notice_s=notice_s))

    def sim_stockout(self, region: str, on: bool) -> tuple[str, set[str]]:
        resolved, stockouts = self._call("sim_stockout", region, on)
        return str(resolved), set(stockouts)

    def has_unfinished_work(self) -> bool:
        return bool(self._call("has_unfinished_work"))

    def in_progress_ids(self, *, name: str | None = None, pool: str | None = None) -> list[int]:
        return list(self._call("in_progress_ids", name=name, pool=pool))

    def job(self, job_id: int) -> JobView | None:
        view: JobView | None = self._call("job", job_id)
        return view

    def queue_json(self, *, skip_finished: bool = False, limit: int | None = None, now: float | None = None) -> str:
        return str(self._call("queue_json", skip_finished=skip_finished, limit=limit, now=now))

    def queue(self, *, skip_finished: bool = False, limit: int | None = None) -> list[JobView]:
        return list(self._call("queue", skip_finished=skip_finished, limit=limit))

    def job_count(self, *, skip_finished: bool = False) -> int:
        return int(self._call("job_count", skip_finished=skip_finished))

    def snapshot(self, *, limit: int | None = None) -> tuple[list[JobView], int]:
        views, last = self._call("snapshot", limit=limit)
        return list(views), int(last)

    def changes(self, after_event_id: int) -> tuple[list[JobView], int]:
        views, last = self._call("changes", after_event_id)
        return list(views), int(last)

    def events(self, *, after_id: int = 0, job_id: int | None = None) -> list[EventRow]:
        return list(self._call("events", after_id=after_id, job_id=job_id))

    def job_spec(self, job_id: int) -> dict[str, Any]:
        return dict(self._call("job_spec", job_id))

    def cost_report(
        self, *, days: int | None = 30, job_id: int | None = None, now: float | None = None,
    ) -> CostReport:
        report: CostReport = self._call("cost_report", days=days, job_id=job_id, now=now)
        return report

    def attempts(self, job_id: int) -> list[AttemptRow]:
        return list(self._call("attempts", job_id))

    def resolve_job(self, job_id: int | None, name: str | None) -> int | None:
        found: int | None = self._call("resolve_job", job_id, name)
        return found

    def read_controller_log(self, job_id: int | None, offset: int, max_bytes: int = 1 << 20) -> bytes:
        return bytes(self._call("read_controller_log", job_id, offset, max_bytes))

    def log_follower(self, job_id: int, task_idx: int | None = None, *,
                     tail_bytes: int | None = None) -> LogFollower:
        raise RuntimeError("a remote controller's logs are followed there: use follow_job")

    def follow_job(
        self, job_id: int, task_idx: int | None = None, *, tail_bytes: int | None = None,
        with_events: bool = True, poll_s: float = 0.2, rest_after_output: bool = True,
    ) -> Iterator[FollowStep]:
        return self._api(create=True).stream("follow_job", job_id, task_idx, tail_bytes=tail_bytes, with_events=with_events,
                                  poll_s=poll_s, rest_after_output=rest_after_output)

    def follow_queue(self, *, first_paint: int, poll_s: float, follow: bool = True) -> Iterator[QueueUpdate]:
        # The TUI's queue: opening it with a remote controller starts one.
        return self._api(create=True).stream("follow_queue", first_paint=first_paint, poll_s=poll_s, follow=follow)
