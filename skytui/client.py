"""The one API the TUI and the headless CLI use: submit, cancel, queue, events, logs.

Clients read state and write intents through the store, then wake the
controller (starting it if needed). The one status they change is a cancel of
a job that never started (PENDING, nothing provisioned): it ends CANCELLED in
the transaction that records the intent, as SkyPilot's `jobs cancel` does, so
cancelling 10,000 queued jobs needs no controller round trip; see
`Client.cancel`. Logs are read from the local log store, which the controller
fills from the nodes.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skytui.clouds.base import InfraStatus, infra_label
from skytui.config import Paths, load_config
from skytui.config import paths as default_paths
from skytui.engine import daemon
from skytui.engine.status import AUXILIARY, PRIMARY, TaskStatus
from skytui.engine.store import (
    AttemptRow,
    ClusterRow,
    ClusterStatus,
    EventRow,
    JobRow,
    NewTask,
    PoolRow,
    SegmentRow,
    Store,
    StoreError,
    TaskRow,
    WorkerRow,
    WorkerStatus,
)
from skytui.logs.store import controller_log_path, file_size, task_log_path

if TYPE_CHECKING:
    from skytui.engine.optimizer import Plan
    from skytui.spec import Pipeline, PoolDefinition

# The optimizer, the cloud registry and the spec models load only in the
# methods that need them: `jobs queue` and the TUI's first paint read the DB
# and nothing else, and never pay for them (tests/test_imports.py).


@dataclass(frozen=True)
class JobView:
    """A job with its tasks, as the queue shows it."""

    job: JobRow
    tasks: list[TaskRow]
    attempts: list[AttemptRow] = field(default_factory=list)

    def cost(self, now: float, task_idx: int | None = None) -> float | None:
        """Dollars spent so far (one task's, or the job's); None while no
        attempt has a known price."""
        priced = [
            a for a in self.attempts
            if a.price_per_hour is not None and (task_idx is None or a.task_idx == task_idx)
        ]
        return sum(a.cost(now) for a in priced) if priced else None

    @property
    def status(self) -> TaskStatus:
        return TaskStatus(self.job.status)

    @property
    def is_pipeline(self) -> bool:
        """Shown task by task: a pipeline, or a job group (`is_group`)."""
        return len(self.tasks) > 1 or self.is_group

    @property
    def is_group(self) -> bool:
        """A job group: its tasks run at once."""
        return any(task.group_role for task in self.tasks)

    def is_primary(self, task: TaskRow) -> bool:
        """Whether a group's task is one of those whose end ends the group."""
        return task.group_role == PRIMARY

    @property
    def current_task(self) -> TaskRow | None:
        for task in self.tasks:
            if task.status_enum is not TaskStatus.SUCCEEDED:
                return task
        return self.tasks[-1] if self.tasks else None

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.job.id,
            "name": self.job.name,
            "pool": self.job.pool,
            "status": self.job.status,
            "submitted_at": self.job.submitted_at,
            "recoveries": sum(t.recoveries for t in self.tasks),
            # Every attempt's machine time x its price, preempted ones included.
            "cost_usd": round(self.cost(now) or 0.0, 4),
            "tasks": [
                {
                    "task_id": t.task_idx,
                    "name": t.name,
                    "status": t.status,
                    "infra": t.infra,
                    "instance_type": t.instance_type,
                    "use_spot": t.use_spot,
                    "recoveries": t.recoveries,
                    "restarts_on_errors": t.restarts_on_errors,
                    "exit_code": t.exit_code,
                    "failure_reason": t.failure_reason,
                    "job_duration_s": round(t.duration_s(now), 3),
                    "cost_usd": round(self.cost(now, t.task_idx) or 0.0, 4),
                }
                for t in self.tasks
            ],
        }


@dataclass(frozen=True)
class PoolView:
    """A pool and its live workers, as `pool status` shows them."""

    pool: PoolRow
    workers: list[WorkerRow]
    clusters: dict[int, ClusterRow]

    @property
    def ready(self) -> int:
        return sum(1 for w in self.workers if w.status == WorkerStatus.READY)

    @property
    def status(self) -> str:
        """SkyPilot's pool statuses, derived from the workers."""
        if self.pool.down_requested_at is not None:
            return "SHUTTING_DOWN"
        if self.ready:
            return "READY"
        if self.pool.target_workers == 0:
            return "NO_REPLICA"
        return "REPLICA_INIT"

    def infra_of(self, worker: WorkerRow) -> tuple[str | None, str | None]:
        cluster = self.clusters.get(worker.cluster_id) if worker.cluster_id else None
        if cluster is None:
            return None, None
        return infra_label(cluster.cloud, cluster.region, cluster.zone), cluster.instance_type

    def to_json(self) -> dict[str, Any]:
        workers = []
        for w in self.workers:
            infra, instance = self.infra_of(w)
            workers.append({"id": w.id, "version": w.version, "status": w.status, "infra": infra,
                            "instance_type": instance, "job_id": w.job_id, "status_reason": w.status_reason})
        return {"name": self.pool.name, "version": self.pool.version, "status": self.status,
                "target_workers": self.pool.target_workers, "ready_workers": self.ready, "workers": workers}


def skypilot_task_id(job_name: str, task_name: str, task_idx: int, is_pipeline: bool, at: float) -> str:
    """SkyPilot's format; `{job_id}` is filled in by the store at insert."""
    stamp = datetime.fromtimestamp(at).strftime("%Y-%m-%d-%H-%M-%S-%f")
    middle = f"{job_name}_{task_name}" if is_pipeline else job_name
    return f"sky-managed-{stamp}_{middle}_{{job_id}}-{task_idx}"


class Client:
    def __init__(self, p: Paths | None = None) -> None:
        self.paths = p or default_paths()

    @cached_property
    def store(self) -> Store:
        self.paths.ensure()
        return Store(self.paths.db_url)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()

    # ------------------------------------------------------------ controller

    def ensure_controller(self) -> daemon.ControllerInfo:
        return daemon.start_controller(self.paths)

    def controller_info(self) -> daemon.ControllerInfo:
        return daemon.controller_info(self.paths)

    def stop_controller(self) -> bool:
        return daemon.stop_controller(self.paths)

    def stop_idle_node_host(self) -> bool:
        """After `controller stop`: the local/sim node host goes too when it
        serves no node (one with nodes keeps serving their jobs). True if it was stopped."""
        from skytui.clouds.local import stop_nodehost_if_idle

        return stop_nodehost_if_idle(self.paths)

    def revive_controller(self) -> daemon.ControllerInfo | None:
        """Start the controller again if it is dead while it has work (a job
        in progress, a pool); the new one when it was, else None. Cheap when
        it runs: a lock probe, no DB read. RuntimeError if it will not start."""
        if not self.paths.home.exists():
            return None  # nothing has ever run here (and a bad command must write nothing)
        if daemon.controller_info(self.paths).running or not self.store.has_unfinished_work():
            return None
        return daemon.start_controller(self.paths)

    # ------------------------------------------------------------- launching

    def plan(self, pipeline: Pipeline) -> list[Plan]:
        """Where each task would go; raises InfeasibleError before anything is written."""
        from skytui.clouds.registry import enabled_clouds
        from skytui.engine.optimizer import plan_task

        clouds = enabled_clouds(self.paths, load_config(self.paths))
        return [plan_task(task, clouds) for task in pipeline.tasks]

    @staticmethod
    def instance_type_problem(cloud: str | None, region: str | None, instance_type: str) -> tuple[bool, str] | None:
        """Whether the catalogs know an instance type (see catalog.instance_type_problem)."""
        from skytui.clouds.catalog import instance_type_problem

        return instance_type_problem(cloud, region, instance_type)

    def submit(
        self,
        pipeline: Pipeline,
        *,
        pool: str | None = None,
        num_jobs: int = 1,
        priority: int | None = None,
        start_controller: bool = True,
    ) -> list[int]:
        """Queue the job (N copies with --num-jobs); the plan must have been checked
        (or, for a pool, the pool must exist: ValueError otherwise)."""
        from skytui.engine.optimizer import requested_str
        from skytui.spec.stored import stored_job_secrets, stored_job_spec

        if pool is not None and pipeline.is_group:
            raise ValueError("a job group runs on machines of its own, not in a pool; drop --pool")
        if pool is not None and self.store.pool(pool) is None:
            raise ValueError(f"no pool {pool!r}; create it with `skytui jobs pool apply -p {pool} POOL.yaml`")
        now = time.time()
        spec = stored_job_spec(pipeline)
        secrets = stored_job_secrets(pipeline)
        job_priority = priority if priority is not None else (pipeline.tasks[0].resources.priority or 0)
        tasks = [
            NewTask(
                name=task.name or f"{pipeline.name}-{i}",
                skypilot_task_id=skypilot_task_id(
                    pipeline.name, task.name or str(i), i, pipeline.is_pipeline, now
                ),
                requested=requested_str(task.resources, task.num_nodes),
                num_nodes=task.num_nodes,
                group_role=(PRIMARY if pipeline.is_primary(task.name or "") else AUXILIARY)
                if pipeline.is_group else None,
            )
            for i, task in enumerate(pipeline.tasks)
        ]
        job_ids = self.store.submit_jobs(
            name=pipeline.name, tasks=tasks, spec=spec, secrets=secrets,
            source=os.path.abspath(pipeline.source) if pipeline.source else None,
            pool=pool, priority=job_priority, num_jobs=num_jobs,
        )
        if start_controller:
            self.ensure_controller()
            daemon.wake_controller(self.paths)
        return job_ids

    # -------------------------------------------------------------- cancelling

    # How long `cancel` waits for the controller to take the jobs it owns
    # (those that had started something) out of PENDING.
    CANCEL_SETTLE_S = 5.0

    def cancel(self, job_ids: Sequence[int]) -> list[int]:
        """Cancel jobs; returns the ids accepted (in progress, not already
        being cancelled), ascending.

        One transaction records every intent and ends the jobs that never
        started (PENDING with nothing provisioned) CANCELLED at once, as
        SkyPilot's `jobs cancel` does for pending jobs: they have nothing to
        tear down, so no controller round trip is needed, and the store's
        compare-and-set makes sure the controller never starts them after.
        The controller stops the others; the few of those still PENDING (a
        machine being asked for) are waited for briefly, so that nothing the
        user cancelled still reads PENDING when this returns.
        """
        accepted = self.store.request_cancel(job_ids)
        if not accepted:
            return accepted
        waiting = self.store.pending_among(accepted)
        if self.store.cancel_requested():
            self.ensure_controller()  # jobs left to stop need it
        # A running controller also stops the coroutines of jobs that ended here.
        daemon.wake_controller(self.paths)
        deadline = time.monotonic() + self.CANCEL_SETTLE_S
        while waiting and time.monotonic() < deadline:
            time.sleep(0.05)
            waiting = self.store.pending_among(waiting)
        return accepted

    def infra_report(self) -> list[tuple[InfraStatus, str | None]]:
        """Every infra: enabled or not and why, and what an enabled one offers (`skytui check`)."""
        from skytui.clouds.registry import enabled_clouds, infra_statuses

        config = load_config(self.paths)
        statuses = infra_statuses(self.paths, config)
        clouds = enabled_clouds(self.paths, config, statuses)
        report: list[tuple[InfraStatus, str | None]] = []
        for status in statuses:
            cloud = clouds.get(status.name) if status.enabled else None
            if status.enabled and cloud is None:
                status = InfraStatus(status.name, False, f"{status.reason}, but it could not be set up",
                                     "see `skytui controller logs`")
            report.append((status, cloud.describe() if cloud is not None else None))
        return report

    # ------------------------------------------------------------------- pools

    def apply_pool(self, name: str, definition: PoolDefinition | None, workers: int | None) -> tuple[int, str]:
        """Create or update a pool (from its YAML, or just a new worker count);
        returns (version, what changed). ValueError for what cannot be done."""
        from skytui.spec.stored import (
            stored_pool_min_workers,
            stored_pool_resized,
            stored_pool_secrets,
            stored_pool_spec,
            stored_pool_workers,
        )

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
            raise ValueError(f"pool name {name!r}: letters, digits, '.', '_' and '-', at most 63")
        if definition is None:
            if workers is None:
                raise ValueError("give a pool YAML, or --workers N to resize an existing pool")
            if self.store.pool(name) is None:
                raise ValueError(f"no pool {name!r}; create it with `skytui jobs pool apply -p {name} POOL.yaml`")
            spec, secrets = self.store.pool_spec(name)
            if stored_pool_workers(spec) is None:
                raise ValueError(f"pool {name!r} autoscales; change min_workers/max_workers in its YAML instead")
            spec = stored_pool_resized(spec, workers)
        else:
            pool_spec = definition.spec
            if workers is not None:
                if pool_spec.autoscaling:
                    raise ValueError("--workers cannot be combined with an autoscaling pool YAML")
                pool_spec = pool_spec.model_copy(update={"workers": workers})
            spec = stored_pool_spec(definition.task, pool_spec)
            secrets = stored_pool_secrets(definition.task)
        target = stored_pool_workers(spec)
        if target is None:
            current = self.store.pool(name)
            target = current.target_workers if current else stored_pool_min_workers(spec)
        try:
            applied = self.store.apply_pool(name, spec, secrets, target)
        except StoreError as exc:
            raise ValueError(str(exc)) from exc
        self.ensure_controller()
        daemon.wake_controller(self.paths)
        return applied

    def pools(self, name: str | None = None) -> list[PoolView]:
        rows = [p for p in self.store.pools() if name is None or p.name == name]
        views = []
        for row in rows:
            workers = self.store.workers(row.name)
            clusters = {w.cluster_id: self.store.cluster(w.cluster_id) for w in workers if w.cluster_id}
            views.append(PoolView(row, workers, {k: v for k, v in clusters.items() if v is not None}))
        return views

    def pool_down(self, name: str) -> None:
        """Tear a pool down; ValueError if it does not exist or still has jobs."""
        if self.store.pool(name) is None:
            raise ValueError(f"no pool {name!r}")
        unfinished = self.store.request_pool_down(name)
        if unfinished:
            shown = ", ".join(map(str, unfinished[:10])) + (" …" if len(unfinished) > 10 else "")
            raise ValueError(
                f"pool {name!r} has {len(unfinished)} unfinished job(s) ({shown}); "
                f"cancel them first with `skytui jobs cancel -p {name} -y`"
            )
        self.ensure_controller()
        daemon.wake_controller(self.paths)

    # --------------------------------------------------------------- sim chaos

    def sim_preempt(self, job_id: int, task_idx: int | None = None) -> str:
        """Reclaim the sim machine under a job's task now; returns its cluster
        name. ValueError says why not (unknown job, not on sim, no machine)."""
        from skytui.clouds.sim import SimCloud

        view = self.job(job_id)
        if view is None:
            raise ValueError(f"no managed job {job_id}")
        if task_idx is None:
            current = view.current_task
            task_idx = current.task_idx if current is not None else 0
        clusters = [c for c in self.store.live_clusters(job_id) if c.task_idx == task_idx]
        worker = self.store.worker_of_job(job_id) if view.job.pool else None
        if worker is not None and worker.cluster_id is not None:
            # A pool job runs on its worker's machine: preempting it takes the worker.
            cluster_row = self.store.cluster(worker.cluster_id)
            clusters = [cluster_row] if cluster_row is not None and cluster_row.status in ClusterStatus.LIVE else []
        if not clusters:
            raise ValueError(f"job {job_id} task {task_idx} has no machine up ({view.tasks[task_idx].status})"
                             if task_idx < len(view.tasks) else f"job {job_id} has no task {task_idx}")
        cluster = clusters[-1]
        if cluster.cloud != "sim":
            raise ValueError(f"job {job_id} runs on {cluster.cloud}; only sim machines can be preempted")
        sim = SimCloud(self.paths, load_config(self.paths).infra.sim)
        if not asyncio.run(sim.preempt(cluster.name)):
            raise ValueError(f"{cluster.name} is already gone")
        return cluster.name

    def sim_stockout(self, region: str, on: bool) -> tuple[str, set[str]]:
        """Make a sim region (or "all", or a whole mirrored cloud) run dry, or
        give it capacity back; returns the region as resolved and every
        stock-out now in force. ValueError for an unknown region."""
        from skytui.clouds.base import CloudError
        from skytui.clouds.sim import resolve_region, set_stockout

        try:
            resolved = resolve_region(region, load_config(self.paths).infra.sim.clouds)
        except CloudError as exc:
            raise ValueError(str(exc)) from exc
        self.paths.ensure()
        return resolved, set_stockout(self.paths.sim_state, resolved, on)

    def in_progress_ids(self, *, name: str | None = None, pool: str | None = None) -> list[int]:
        return self.store.in_progress_job_ids(name=name, pool=pool)

    # ----------------------------------------------------------------- reading

    def job(self, job_id: int) -> JobView | None:
        job = self.store.job(job_id)
        if job is None:
            return None
        return JobView(job, self.store.tasks(job_id), self.store.attempts(job_id))

    def _views(self, jobs: list[JobRow]) -> list[JobView]:
        ids = [j.id for j in jobs]
        tasks = self.store.tasks_of_jobs(ids)
        attempts = self.store.attempts_of_jobs(ids)
        return [JobView(j, tasks[j.id], attempts[j.id]) for j in jobs]

    def queue_json(
        self, *, skip_finished: bool = False, limit: int | None = None, now: float | None = None
    ) -> str:
        """`jobs queue --json`: the document `JobView.to_json` describes, as
        JSON text the DB writes itself. At 10,000 jobs this is what keeps the
        command within 1.5x of its cost at one job."""
        now = time.time() if now is None else now
        return self.store.queue_json(in_progress_only=skip_finished, limit=limit, now=now)

    def queue(self, *, skip_finished: bool = False, limit: int | None = None) -> list[JobView]:
        return self._views(self.store.jobs(in_progress_only=skip_finished, limit=limit))

    def snapshot(self, *, limit: int | None = None) -> tuple[list[JobView], int]:
        """Every job (newest first) and the event id to follow changes from.

        The event id is read first: a change racing the read shows up again
        in `changes`, never goes missing.
        """
        last_event = self.store.last_event_id()
        return self.queue(limit=limit), last_event

    def changes(self, after_event_id: int) -> tuple[list[JobView], int]:
        """The jobs that changed since an event id, fresh, and the new event id."""
        job_ids, last_event = self.store.job_ids_changed_after(after_event_id)
        return self._views(self.store.jobs_by_ids(job_ids)), last_event

    def events(self, *, after_id: int = 0, job_id: int | None = None) -> list[EventRow]:
        return self.store.events(after_id=after_id, job_id=job_id)

    def job_spec(self, job_id: int) -> dict[str, Any]:
        """What was submitted, as stored: secrets live elsewhere and are not included."""
        spec, _secrets = self.store.job_spec(job_id)
        return spec

    def attempts(self, job_id: int) -> list[AttemptRow]:
        return self.store.attempts(job_id)

    def resolve_job(self, job_id: int | None, name: str | None) -> int | None:
        """`jobs logs` without an id: the named job's latest run, else the latest job."""
        if job_id is not None:
            return job_id if self.store.job(job_id) else None
        if name is not None:
            jobs = self.store.jobs_by_name(name)
            return jobs[-1].id if jobs else None
        return self.store.latest_job_id()

    def controller_log_path(self, job_id: int | None = None) -> Path:
        if job_id is None:
            return self.paths.controller_log
        return controller_log_path(self.paths.job_logs, job_id)

    def log_follower(
        self, job_id: int, task_idx: int | None = None, *, tail_bytes: int | None = None
    ) -> LogFollower:
        return LogFollower(self, job_id, task_idx, tail_bytes=tail_bytes)


# ---------------------------------------------------------------- log follower


@dataclass
class _Source:
    task_idx: int
    rank: int
    path: Path
    position: int = 0
    pending: bytes = b""
    segment: SegmentRow | None = None


class LogFollower:
    """Turns a job's log files into prefixed lines, following them as they grow.

    `(train, pid=123) step 1`; setup lines read `(setup pid=123)`, and other
    nodes `(worker1, rank=1, pid=124)`, as SkyPilot prints them. A line is
    shown once it is complete, or when its phase has ended without a newline.
    """

    # Bytes read per poll at most, so a huge log is consumed in steps and the
    # caller stays responsive.
    POLL_BUDGET = 4 << 20

    def __init__(
        self, client: Client, job_id: int, task_idx: int | None, *, tail_bytes: int | None = None
    ) -> None:
        self.client = client
        self.job_id = job_id
        self.task_idx = task_idx
        self.tail_bytes = tail_bytes
        self._sources: dict[tuple[int, int], _Source] = {}
        self._shown_attempt: dict[int, int] = {}
        # A secret the job printed is already masked in the stored log
        # (logs/sync.py): clients never read secrets.

    def _segments(self) -> list[SegmentRow]:
        return self.client.store.segments(self.job_id, self.task_idx)

    def poll(self, *, final: bool = False, before_task: int | None = None) -> list[str]:
        """New complete lines since the last call (everything left with `final`).

        `before_task` limits the read to the tasks before it, so a caller can
        print a pipeline's output and its status news in order.
        """
        segments = self._segments()
        if not segments:
            return []
        tasks = {t.task_idx: t for t in self.client.store.tasks(self.job_id)}
        attempts = {(a.task_idx, a.attempt_no): a for a in self.client.store.attempts(self.job_id)}
        out: list[str] = []
        keys = sorted(
            {(s.task_idx, s.rank) for s in segments if before_task is None or s.task_idx < before_task}
        )
        for key in keys:
            source = self._sources.get(key)
            if source is None:
                path = task_log_path(self.client.paths.job_logs, self.job_id, key[0], key[1])
                source = self._sources[key] = _Source(key[0], key[1], path, _tail_start(path, self.tail_bytes))
            mine = sorted(
                (s for s in segments if (s.task_idx, s.rank) == key), key=lambda s: s.start_offset
            )
            out.extend(self._read(source, mine, tasks, attempts, final))
        return out

    def _read(
        self,
        source: _Source,
        segments: list[SegmentRow],
        tasks: dict[int, TaskRow],
        attempts: dict[tuple[int, int], AttemptRow],
        final: bool,
    ) -> list[str]:
        size = file_size(source.path)
        out: list[str] = []
        if source.segment is not None:  # take the fresh row: `finished` may have changed
            source.segment = next((s for s in segments if s.id == source.segment.id), source.segment)
        budget = self.POLL_BUDGET
        while source.position < size and budget > 0:
            index = 0
            for i, candidate in enumerate(segments):
                if candidate.start_offset <= source.position:
                    index = i
            segment = segments[index]
            if source.segment is not None and source.segment.id != segment.id and source.pending:
                out.extend(self._lines(source, b"", source.segment, tasks, closed=True))
            if source.segment is None or source.segment.id != segment.id:
                out.extend(self._separator(segment, tasks, attempts))
            source.segment = segment
            end = segments[index + 1].start_offset if index + 1 < len(segments) else size
            with open(source.path, "rb") as f:
                f.seek(source.position)
                data = f.read(min(min(end, size) - source.position, budget))
            source.position += len(data)
            budget -= len(data)
            closed = index + 1 < len(segments) or segment.finished or final
            out.extend(self._lines(source, data, segment, tasks, closed and source.position >= min(end, size)))
        caught_up = source.position >= size
        if caught_up and source.pending and source.segment is not None and (final or source.segment.finished):
            out.extend(self._lines(source, b"", source.segment, tasks, closed=True))
        return out

    def _separator(
        self, segment: SegmentRow, tasks: dict[int, TaskRow], attempts: dict[tuple[int, int], AttemptRow]
    ) -> list[str]:
        shown = self._shown_attempt.get(segment.task_idx)
        self._shown_attempt[segment.task_idx] = segment.attempt_no
        if shown is None or shown == segment.attempt_no or segment.rank != 0:
            return []
        previous = attempts.get((segment.task_idx, shown))
        current = attempts.get((segment.task_idx, segment.attempt_no))
        ended = ""
        if previous is not None:
            was = f" on {previous.infra}" if previous.infra else ""
            ended = f"attempt {shown}{was} ended: {previous.end_reason or 'unknown'} · "
        where = f" on {current.infra}" if current and current.infra else ""
        task = tasks.get(segment.task_idx)
        name = task.name if task else str(segment.task_idx)
        return [f"──── {name}: {ended}attempt {segment.attempt_no}{where} ────"]

    def _lines(
        self, source: _Source, data: bytes, segment: SegmentRow, tasks: dict[int, TaskRow], closed: bool
    ) -> list[str]:
        buffer = source.pending + data
        parts = buffer.split(b"\n")
        source.pending = parts.pop()
        if closed and source.pending:
            parts.append(source.pending)
            source.pending = b""
        prefix = self._prefix(segment, tasks)
        return [f"{prefix} {part.decode('utf-8', errors='replace')}" for part in parts]

    @staticmethod
    def _prefix(segment: SegmentRow, tasks: dict[int, TaskRow]) -> str:
        pid = segment.pid if segment.pid is not None else "?"
        if segment.phase == "setup":
            return f"(setup pid={pid})"
        if segment.rank:
            return f"(worker{segment.rank}, rank={segment.rank}, pid={pid})"
        task = tasks.get(segment.task_idx)
        return f"({task.name if task else segment.task_idx}, pid={pid})"


def _tail_start(path: Path, tail_bytes: int | None) -> int:
    """Where to start reading so that only about the last `tail_bytes` are
    shown, at the start of a line: a 1 GB log opens at its end at once."""
    size = file_size(path)
    if tail_bytes is None or size <= tail_bytes:
        return 0
    start = size - tail_bytes
    with open(path, "rb") as f:
        f.seek(start)
        newline = f.read(64 * 1024).find(b"\n")
    return start + newline + 1 if newline >= 0 else start

