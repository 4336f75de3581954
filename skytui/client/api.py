"""The one API the TUI and the headless CLI use: submit, cancel, queue, events, logs.

Owns `Client`, whose public methods are the seam between the faces and the
controller's state (a later controller on another machine answers the same
calls). It may touch the store, the daemon's start/stop/wake, the log store,
and, lazily, the optimizer (always through `client.planning`, so that a face
can tell an InfeasibleError by that module being loaded), the cloud registry
and the spec models.

Clients read state and write intents through the store, then wake the
controller (starting it if needed); nothing here acts on infra itself (the
sim chaos verbs are intents the controller carries out: `sim_preempt`). The
one status they change is a cancel of a job that never started (PENDING,
nothing provisioned): it ends CANCELLED in the transaction that records the
intent, as SkyPilot's `jobs cancel` does, so cancelling 10,000 queued jobs
needs no controller round trip; see `Client.cancel`. Logs are read from the
local log store, which the controller fills from the nodes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from skytui.client.follow import FollowStep, QueueUpdate, follow_job, follow_queue
from skytui.client.ledger_views import CostReport, build_report, job_sums
from skytui.client.submission import Submission, prepare_pool, prepare_submission
from skytui.client.views import JobView, PoolView
from skytui.clouds.base import InfraStatus
from skytui.config import Paths, load_config
from skytui.config import paths as default_paths
from skytui.engine import daemon
from skytui.engine.store import (
    AttemptRow,
    EventRow,
    IntentOutcome,
    IntentRequest,
    JobRow,
    SimPreempt,
    SimStockout,
    StoreError,
    TaskRow,
)
from skytui.engine.store.first_page import read_newest_jobs
from skytui.logs.follow import LogFollower
from skytui.logs.store import controller_log_path

if TYPE_CHECKING:
    from collections.abc import Iterator

    from skytui.engine.store import Store

    from skytui.client.planning import Plan
    from skytui.spec import Pipeline, PoolDefinition

# The optimizer, the cloud registry and the spec models load only in the
# methods that need them: `jobs queue` and the TUI's first paint read the DB
# and nothing else, and never pay for them (tests/unit/test_imports.py).
# SQLAlchemy loads with the store, after the TUI's first rows (`snapshot`).


class Client:
    def __init__(self, p: Paths | None = None) -> None:
        self.paths = p or default_paths()

    @cached_property
    def store(self) -> Store:
        from skytui.engine.store import Store

        self.paths.ensure()
        return Store(self.paths.db_url)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()

    # ------------------------------------------------------------ controller

    def controller_where(self) -> str | None:
        """The remote controller's machine as the user configured it; None: a daemon here."""
        return None

    def notices(self) -> list[str]:
        """What the user should know that no command asked (a remote controller's pending change)."""
        return []

    def controller_report(self) -> list[str]:
        """`controller status`: one line per fact."""
        info = self.controller_info()
        return [f"Controller running (pid {info.pid})." if info.running else "Controller is not running."]

    def controller_credentials(self) -> list[tuple[str, str]]:
        """What a remote controller's machine is given to manage the clouds:
        (what, where it comes from), for `skytui check`. None for a daemon here."""
        return []

    def down_controller(self) -> None:
        """`controller down`: only a remote controller has a machine to take down."""
        raise ValueError("the controller runs on this machine, with its state in "
                         f"{self.paths.home}; `skytui controller stop` stops it")

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
        from skytui.client.planning import plan_task
        from skytui.clouds.registry import enabled_clouds

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
        max_cost_usd: float | None = None,
        stall_timeout_s: float | None = None,
    ) -> list[int]:
        """Queue the job (N copies with --num-jobs); the plan must have been checked
        (or, for a pool, the pool must exist: ValueError otherwise)."""
        if pool is not None and pipeline.is_group:
            raise ValueError("a job group runs on machines of its own, not in a pool; drop --pool")
        submission = prepare_submission(pipeline, priority, max_cost_usd=max_cost_usd,
                                        stall_timeout_s=stall_timeout_s, paths=self.paths)
        return self.submit_prepared(submission, pool=pool, num_jobs=num_jobs, start_controller=start_controller)

    def submit_prepared(
        self, submission: Submission, *, pool: str | None = None, num_jobs: int = 1, start_controller: bool = True,
    ) -> list[int]:
        """`submit` of a job already in its stored form (what a remote client sends)."""
        if pool is not None and self.store.pool(pool) is None:
            raise ValueError(f"no pool {pool!r}; create it with `skytui jobs pool apply -p {pool} POOL.yaml`")
        job_ids = self.store.submit_jobs(
            name=submission.name, tasks=submission.tasks, spec=submission.spec, secrets=submission.secrets,
            source=submission.source, pool=pool, priority=submission.priority, num_jobs=num_jobs,
            max_cost_usd=submission.max_cost_usd, stall_timeout_s=submission.stall_timeout_s,
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
        stored = prepare_pool(definition, workers) if definition is not None else None
        return self.apply_pool_stored(name, stored, workers)

    def apply_pool_stored(
        self, name: str, stored: tuple[dict[str, Any], dict[str, str]] | None, workers: int | None,
    ) -> tuple[int, str]:
        """`apply_pool` of a pool already in its stored form (spec, secrets), or
        of None: a resize to `workers`."""
        from skytui.spec.stored import stored_pool_min_workers, stored_pool_resized, stored_pool_workers

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
            raise ValueError(f"pool name {name!r}: letters, digits, '.', '_' and '-', at most 63")
        if stored is None:
            if workers is None:
                raise ValueError("give a pool YAML, or --workers N to resize an existing pool")
            if self.store.pool(name) is None:
                raise ValueError(f"no pool {name!r}; create it with `skytui jobs pool apply -p {name} POOL.yaml`")
            spec, secrets = self.store.pool_spec(name)
            if stored_pool_workers(spec) is None:
                raise ValueError(f"pool {name!r} autoscales; change min_workers/max_workers in its YAML instead")
            spec = stored_pool_resized(spec, workers)
        else:
            spec, secrets = stored
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

    # How long a sim verb waits for the controller to carry it out: a reclaim
    # takes the machine's grace period (a second), a stock-out a file write.
    SIM_INTENT_TIMEOUT_S = 60.0

    def sim_preempt(self, job_id: int, task_idx: int | None = None, *, notice_s: float = 0.0) -> str:
        """Have the controller reclaim the sim machine under a job's task now,
        or `notice_s` seconds after giving its processes notice (and waiting
        that long); returns its cluster name. ValueError says why not (unknown
        job, not on sim, no machine); RuntimeError if the controller did not answer."""
        if self.store.job(job_id) is None:
            # Said from the DB at once: a mistyped id starts no controller.
            raise ValueError(f"no managed job {job_id}")
        outcome = self._carried_out(SimPreempt(job_id, task_idx, notice_s), "the preemption", extra_s=notice_s)
        if outcome.cluster is None:
            raise RuntimeError(f"the controller preempted job {job_id} but did not say which machine")
        return outcome.cluster

    def sim_stockout(self, region: str, on: bool) -> tuple[str, set[str]]:
        """Have the controller make a sim region (or "all", or a whole
        mirrored cloud) run dry, or give it capacity back; returns the region
        as resolved and every stock-out now in force. ValueError for an
        unknown region; RuntimeError if the controller did not answer."""
        outcome = self._carried_out(SimStockout(region, on), "the stock-out")
        if outcome.region is None:
            raise RuntimeError(f"the controller changed {region!r} but did not say which region it took")
        return outcome.region, set(outcome.stockouts)

    def _carried_out(self, request: IntentRequest, what: str, *, extra_s: float = 0.0) -> IntentOutcome:
        """Record a sim intent, wake the controller (starting it if it is not
        running) and wait for the outcome it records. The intent is durable:
        if the wait ends first, the controller still carries it out."""
        intent_id = self.store.request_intent(request)
        self.ensure_controller()
        daemon.wake_controller(self.paths)
        wait_s = self.SIM_INTENT_TIMEOUT_S + extra_s
        deadline = time.monotonic() + wait_s
        next_look = time.monotonic() + 1.0
        while (outcome := self.store.intent_outcome(intent_id)) is None:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(
                    f"the controller has not carried out {what} within {wait_s:g}s; it is "
                    "still asked for and will be done when the controller gets to it (see `skytui controller logs`)"
                )
            if now > next_look:
                # A controller that died meanwhile left the intent open: the next one carries it out at its start.
                next_look = now + 1.0
                if not daemon.controller_info(self.paths).running:
                    self.ensure_controller()
            time.sleep(0.05)
        if outcome.error is not None:
            raise ValueError(outcome.error)
        return outcome

    def has_unfinished_work(self) -> bool:
        """A job in progress or a pool: what the controller is needed for."""
        return self.store.has_unfinished_work()

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
        return _joined(jobs, self.store.tasks_of_jobs(ids), self.store.attempts_of_jobs(ids))

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

    def job_count(self, *, skip_finished: bool = False) -> int:
        """How many jobs `queue` would list without a limit: the "of N" of a limited view."""
        return self.store.job_count(in_progress_only=skip_finished)

    def snapshot(self, *, limit: int | None = None) -> tuple[list[JobView], int]:
        """Every job (newest first) and the event id to follow changes from.

        The event id is read first: a change racing the read shows up again
        in `changes`, never goes missing. The newest `limit` of a SQLite DB,
        before the store is open, are read without SQLAlchemy: the TUI's
        first rows do not wait for its import.
        """
        if limit is not None and "store" not in self.__dict__ and self.paths.db_url == self.paths.sqlite_url:
            newest = read_newest_jobs(self.paths.db_file, limit)
            if newest is not None:
                return _joined(newest.jobs, newest.tasks, newest.attempts), newest.last_event_id
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

    def cost_report(
        self, *, days: int | None = 30, job_id: int | None = None, now: float | None = None,
    ) -> CostReport:
        """`skytui cost`: spent and lost dollars (see client.ledger_views and
        engine/store/ledger.py) over the last `days` (None: all time); with
        `job_id`, that job alone and its attempts (its pool's machines are
        not the job's)."""
        now = time.time() if now is None else now
        since = None if days is None else now - days * 86400.0
        if job_id is None:
            sums = self.store.spend_sums(now=now, since=since)
            return build_report(sums, self.store.pool_machine_spend(now=now, since=since), now=now, since=since,
                                days=days)
        attempts = self.store.attempt_spend(now=now, since=since, job_ids=[job_id])
        return build_report(job_sums(attempts), [], now=now, since=since, days=days, attempts=attempts)

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

    def read_controller_log(self, job_id: int | None, offset: int, max_bytes: int = 1 << 20) -> bytes:
        """Bytes of the controller's log (a job's account of it, with `job_id`)
        from `offset`: what `controller logs` and `jobs logs --controller` follow."""
        path = self.paths.controller_log if job_id is None else controller_log_path(self.paths.job_logs, job_id)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(max_bytes)
        except FileNotFoundError:
            return b""

    def log_follower(
        self, job_id: int, task_idx: int | None = None, *, tail_bytes: int | None = None
    ) -> LogFollower:
        return LogFollower(self.store, self.paths.job_logs, job_id, task_idx, tail_bytes=tail_bytes)

    # --------------------------------------------------------------- following

    def follow_job(
        self, job_id: int, task_idx: int | None = None, *, tail_bytes: int | None = None,
        with_events: bool = True, poll_s: float = 0.2, rest_after_output: bool = True,
    ) -> Iterator[FollowStep]:
        """A job as it goes: its state, its news and its log lines, one step
        per look, until it has ended and its last line is out (see
        `follow.follow_job`)."""
        return follow_job(self, job_id, task_idx, tail_bytes=tail_bytes, with_events=with_events,
                          poll_s=poll_s, rest_after_output=rest_after_output)

    def follow_queue(self, *, first_paint: int, poll_s: float, follow: bool = True) -> Iterator[QueueUpdate]:
        """The queue: snapshots, then the jobs that changed, one update per
        look (see `follow.follow_queue`)."""
        return follow_queue(self, first_paint=first_paint, poll_s=poll_s, follow=follow)


def _joined(
    jobs: list[JobRow], tasks: dict[int, list[TaskRow]], attempts: dict[int, list[AttemptRow]],
) -> list[JobView]:
    return [JobView(j, tasks[j.id], attempts[j.id]) for j in jobs]
