"""Recovery: spot preemptions injected into N managed jobs on the `sim` infra.

    .venv/bin/python bench/recovery.py [--jobs 100] [--preemptions 20] [--window-s 40]
        [--seed 1] [--provision-delay-s 0.5] [--capacity 64] [--max-launching 32]
        [--backoff-initial-s 1] [--settle-s 5] [--timeout 600] [--keep] [--quiet] [-v]

Submits N copies of a spot task on `sim` (`accelerators: T4:1, use_spot: true`,
`run:` a loop printing a line every 5 s, forever) through the real Client
(`Client.submit(num_jobs=N)`, as `skytui jobs launch --num-jobs N` does) into a
fresh, temporary SKYTUI_HOME, lets the real controller daemon launch them on
sim machines (sandboxes of the real node host, reached over SSH) and waits
until every job is RUNNING. After a short steady-state look at the
controller's cost with N jobs watched, it reclaims the machines of K distinct
RUNNING jobs (default 20) at uniformly random times within --window-s seconds,
exactly as `skytui sim preempt JOB_ID` does (`Client.sim_preempt`: the
controller, asked through an intent, gives the machine's processes SIGTERM,
then SIGKILL after 1 s, and removes the sandbox), each from its own thread so one reclaim never delays the next. The
wall time of each preemption is taken just before `sim_preempt` is called.

From the events table (`Store.events`, same clock as the bench), per
preemption:

* detection: preemption -> the job's first status event to RECOVERING after it
  (the controller noticed, tore the lost attempt down and recorded it);
* relaunch started: that RECOVERING -> the first `placement` event after it
  (a new attempt opened somewhere, EAGER_NEXT_REGION);
* back to RUNNING: preemption -> the first status event to RUNNING after the
  RECOVERING (provision + setup + run started again; its message says
  "recovered: ...");

each as p50 / p95 / max. Detection is split where the time goes: the
sim_preempt call until the machine is taken down (the controller carries the
preemption out, as an intent, and writes a `sim-preempt` event on the job just
before it takes the machine), taken down -> the controller caught the loss (the lost attempt's `ended_at`), caught -> RECOVERING
written (the controller records RECOVERING before it tears the lost machine
down). `-v` prints one line per
preemption. Then:

* needless relaunches: RECOVERING events on jobs that were never preempted,
  plus those beyond one per preemption on the jobs that were (after every
  recovery and --settle-s more seconds of watching); must be 0;
* leaked machines: every job is cancelled (`Client.cancel`, as `skytui jobs
  cancel -a -y`); once all are CANCELLED, the sim sandboxes left (node
  markers under nodes/) plus the cluster rows still live in the store; must
  be 0. Processes still living in a sandbox are counted too;
* the dollars lost to the preemptions, from the cost ledger (`Store.attempt_spend`,
  catalog prices, read before the cancel): the preempted attempts whole,
  plus the provisioning of the attempts that replaced them; beside what all
  N jobs spent and lost by then (`Client.cost_report`: their first
  provisioning is lost too);
* the controller's and node host's CPU (share of one core) and RSS per phase
  (launch, steady, preemption window, cancel), the machine (nproc, model,
  load) and how busy it was before the run;
* the anchors: SkyPilot polls a managed job every 15 s (S6), waits >= 60 s and
  5 failed probes before it recovers on a transient status failure (S7), and
  its smoke test allows 45 s to notice a deleted machine and 200 s to be
  RUNNING again (S9); ratios of our p95s to those.

Targets (this issue, on sim): p95 detection <= 5 s; p95 relaunch started
<= 1 s after detection; 0 needless relaunches; 0 leaked machines (and every
preemption recovered to RUNNING).

It never touches the real ~/.skytui; it stops the controller and the node
host, kills anything left in its temporary home and removes it on every exit
path (error, Ctrl-C, SIGTERM, --timeout). Exit 0 only if every target passes,
1 otherwise, 2 after --timeout (the partial figures are printed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Never the real home, never a shared DB: set before anything reads them.
os.environ.pop("SKYTUI_DB_URL", None)

from harness import (
    arm_deadline,
    GlobalTimeout,
    Terminated,
    cpu_seconds,
    fmt_ratio,
    machine,
    own_cpu,
    pct,
    processes_in,
    read_pid,
    rss_bytes,
    sandboxes_left,
    stop_everything,
    system_cpu,
)
from skytui.client import Client
from skytui.clouds.local_layout import STATE_FILE
from skytui.config import Paths
from skytui.engine import daemon
from skytui.engine.sim_intents import PREEMPT_EVENT
from skytui.engine.status import TERMINAL, TaskStatus
from skytui.spec import load_pipeline

TASK_YAML = """\
name: recovery-bench
resources:
  infra: sim
  accelerators: T4:1
  use_spot: true
run: |
  while true; do echo "tick $SKYPILOT_TASK_ID"; sleep 5; done
"""

# Targets of this issue.
TARGET_DETECT_P95_S = 5.0
TARGET_RELAUNCH_P95_S = 1.0

# Anchors (see /work/shared/reference/perf_rel.md).
SKYPILOT_POLL_S = 15.0  # S6: JOB_STATUS_CHECK_GAP_SECONDS
SKYPILOT_MIN_ELAPSED_S = 60.0  # S7: JOB_STATUS_FETCH_MIN_ELAPSED_SECONDS (and MIN_RETRIES=5)
SKYPILOT_MIN_RETRIES = 5
SKYPILOT_TEST_DETECT_S = 45.0  # S9: 3 x 15 s in test_managed_jobs_recovery_kubernetes_multinode
SKYPILOT_TEST_RUNNING_S = 200.0  # S9: RUNNING again within 200 s
GOAL_DETECT_P95_S = 20.0  # perf_rel.md section 2: our own goal for real clouds

POLL_S = 0.2
SAMPLE_S = 0.2
STEADY_S = 5.0
MIB = 1024 * 1024

RUNNING = TaskStatus.RUNNING.value
RECOVERING = TaskStatus.RECOVERING.value
CANCELLED = TaskStatus.CANCELLED.value


# ------------------------------------------------------------------ machine


# ------------------------------------------------------------ /proc samplers


@dataclass
class Sampler:
    """VmRSS of the controller and the node host every 200 ms, in a thread;
    the peak per phase (the phase is set by the main thread)."""

    paths: Paths
    controller_pid: int | None = None
    nodehost_pid: int | None = None
    phase: str = "idle"
    peaks: dict[tuple[str, str], int] = field(default_factory=dict)  # (who, phase) -> bytes
    last: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.controller_pid is None:
                self.controller_pid = read_pid(self.paths.controller_pid)
            if self.nodehost_pid is None:
                self.nodehost_pid = read_pid(self.paths.nodes / STATE_FILE, "pid")
            for who, pid in (("controller", self.controller_pid), ("node host", self.nodehost_pid)):
                value = rss_bytes(pid) if pid is not None else None
                if value is None:
                    continue
                self.last[who] = value
                key = (who, self.phase)
                self.peaks[key] = max(self.peaks.get(key, 0), value)
            self._stop.wait(SAMPLE_S)


@dataclass
class Phase:
    """CPU of the controller, the node host (and its reaped exec shells), this
    script and the machine over one stretch of the run."""

    name: str
    wall_s: float = 0.0
    controller_s: float | None = None
    nodehost_s: float | None = None
    nodehost_children_s: float | None = None
    bench_s: float = 0.0
    sys_busy_s: float = 0.0
    sys_total_s: float = 0.0


class PhaseClock:
    def __init__(self, sampler: Sampler, name: str) -> None:
        self.sampler = sampler
        self.phase = Phase(name)
        sampler.phase = name
        self._t0 = time.monotonic()
        self._ctrl0 = cpu_seconds(sampler.controller_pid)
        self._host0 = cpu_seconds(sampler.nodehost_pid)
        self._kids0 = cpu_seconds(sampler.nodehost_pid, children=True)
        self._host_pid = sampler.nodehost_pid
        self._own0 = own_cpu()
        self._sys0 = system_cpu()

    def stop(self) -> Phase:
        s = self.sampler
        ph = self.phase
        ph.wall_s = time.monotonic() - self._t0
        c1 = cpu_seconds(s.controller_pid)
        if c1 is not None and self._ctrl0 is not None:
            ph.controller_s = c1 - self._ctrl0
        if s.nodehost_pid is not None:
            same = self._host_pid == s.nodehost_pid
            h1 = cpu_seconds(s.nodehost_pid)
            k1 = cpu_seconds(s.nodehost_pid, children=True)
            if h1 is not None:
                ph.nodehost_s = h1 - ((self._host0 or 0.0) if same else 0.0)
            if k1 is not None:
                ph.nodehost_children_s = k1 - ((self._kids0 or 0.0) if same else 0.0)
        ph.bench_s = own_cpu() - self._own0
        sys1 = system_cpu()
        ph.sys_busy_s, ph.sys_total_s = sys1[0] - self._sys0[0], sys1[1] - self._sys0[1]
        return ph


# ----------------------------------------------------------------- helpers


def write_config(p: Paths, args: argparse.Namespace) -> None:
    """config.yaml (format in skytui/config.py)."""
    p.config_file.write_text(
        "infra:\n"
        "  sim:\n"
        f"    provision_delay_s: {args.provision_delay_s}\n"
        f"    spot_capacity: {args.capacity}\n"
        f"    ondemand_capacity: {args.capacity}\n"
        "jobs:\n"
        "  controller:\n"
        f"    max_launching: {args.max_launching}\n"
        "  recovery:\n"
        f"    backoff_initial_s: {args.backoff_initial_s}\n"
    )


class EventLog:
    """Every event of the store, read incrementally by id."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.after = 0
        self.by_job: dict[int, list] = defaultdict(list)
        self.count = 0

    def poll(self) -> None:
        while True:
            batch = self.client.store.events(after_id=self.after, limit=1000)
            for e in batch:
                if e.job_id is not None:
                    self.by_job[e.job_id].append(e)
            self.count += len(batch)
            if batch:
                self.after = batch[-1].id
            if len(batch) < 1000:
                return


# ------------------------------------------------------------------- the run


@dataclass
class Preemption:
    job_id: int
    planned_s: float  # offset in the window
    issued_at: float | None = None  # time.time() just before sim_preempt
    returned_at: float | None = None  # when sim_preempt returned (machine gone)
    cluster: str | None = None
    error: str | None = None
    down_at: float | None = None  # the controller took the machine down (its sim-preempt event)
    # from the store
    noticed_at: float | None = None  # the controller ended the lost attempt (caught the loss)
    recovering_at: float | None = None
    recovering_msg: str | None = None
    placement_at: float | None = None
    placement_msg: str | None = None
    running_at: float | None = None
    running_msg: str | None = None

    @property
    def detect_s(self) -> float | None:
        if self.issued_at is None or self.recovering_at is None:
            return None
        return self.recovering_at - self.issued_at

    @property
    def issue_s(self) -> float | None:
        """sim_preempt called -> the sandbox marked down (client-side overhead)."""
        if self.issued_at is None or self.down_at is None:
            return None
        return self.down_at - self.issued_at

    @property
    def notice_s(self) -> float | None:
        """machine marked down -> the controller caught the loss."""
        if self.down_at is None or self.noticed_at is None:
            return None
        return self.noticed_at - self.down_at

    @property
    def teardown_s(self) -> float | None:
        """loss caught -> RECOVERING written."""
        if self.noticed_at is None or self.recovering_at is None:
            return None
        return self.recovering_at - self.noticed_at

    @property
    def relaunch_gap_s(self) -> float | None:
        if self.recovering_at is None or self.placement_at is None:
            return None
        return self.placement_at - self.recovering_at

    @property
    def to_running_s(self) -> float | None:
        if self.issued_at is None or self.running_at is None:
            return None
        return self.running_at - self.issued_at


@dataclass
class Run:
    n: int
    k: int
    machine: str = ""
    idle_busy_pct: float | None = None
    job_ids: list[int] = field(default_factory=list)
    submit_s: float | None = None
    all_running_s: float | None = None  # submit -> every job RUNNING
    launch_outcomes: dict[str, int] = field(default_factory=dict)
    preemptions: list[Preemption] = field(default_factory=list)
    window_started_at: float | None = None
    recovered_all_s: float | None = None  # window start -> last preempted job RUNNING again
    needless: int | None = None
    needless_detail: list[str] = field(default_factory=list)
    recovering_total: int = 0
    placements_after_running: int = 0
    capacity_misses: int = 0
    cancel_s: float | None = None  # cancel -> every job CANCELLED
    final_outcomes: dict[str, int] = field(default_factory=dict)
    sandboxes_at_cancelled: list[str] | None = None
    live_clusters_at_cancelled: list[str] | None = None
    sandboxes_later: list[str] | None = None
    live_clusters_later: list[str] | None = None
    processes_left: int | None = None
    lost_preempted_usd: float | None = None  # the preempted attempts, whole
    lost_relaunch_usd: float | None = None  # provisioning the attempts that replaced them
    spent_usd: float | None = None  # every job, by the end of the settle phase
    lost_usd: float | None = None
    phases: list[Phase] = field(default_factory=list)
    sampler: Sampler | None = None
    timed_out: bool = False
    error: str | None = None


def statuses(client: Client, wanted: set[int]) -> dict[int, str]:
    return {j.id: j.status for j in client.store.jobs() if j.id in wanted}


def fire(p: Paths, pre: Preemption) -> None:
    """One reclaim, from its own thread (sim_preempt blocks for the 1 s grace)."""
    client = Client(p)
    try:
        pre.issued_at = time.time()
        pre.cluster = client.sim_preempt(pre.job_id)
        pre.returned_at = time.time()
        # The controller writes this event just before it takes the machine
        # down: the moment the loss became visible.
        marks = [e.at for e in client.store.events(job_id=pre.job_id)
                 if e.kind == PREEMPT_EVENT and e.at >= pre.issued_at]
        if marks:
            pre.down_at = min(marks)
    except Exception as exc:  # noqa: BLE001 - recorded and reported
        pre.error = f"{type(exc).__name__}: {exc}"
    finally:
        client.close()


def match_attempt(pre: Preemption, client: Client) -> None:
    """When the controller caught the loss: the lost attempt's end (written
    just before the RECOVERING event)."""
    if pre.issued_at is None or pre.error or pre.noticed_at is not None:
        return
    ended = [a.ended_at for a in client.store.attempts(pre.job_id)
             if a.ended_at is not None and a.ended_at >= pre.issued_at and a.end_reason
             and not a.end_reason.startswith("no capacity")]
    if ended:
        pre.noticed_at = min(ended)


def match_events(pre: Preemption, events: list) -> None:
    if pre.issued_at is None or pre.error:
        return
    rec = next(
        (e for e in events if e.kind == "status" and e.to_status == RECOVERING and e.at >= pre.issued_at), None
    )
    if rec is None:
        return
    pre.recovering_at, pre.recovering_msg = rec.at, rec.message
    place = next((e for e in events if e.kind == "placement" and e.id > rec.id), None)
    if place is not None:
        pre.placement_at, pre.placement_msg = place.at, place.message
    back = next((e for e in events if e.kind == "status" and e.to_status == RUNNING and e.id > rec.id), None)
    if back is not None:
        pre.running_at, pre.running_msg = back.at, back.message


def wait_until(args: argparse.Namespace, done, what: str, progress) -> None:
    last = time.monotonic()
    while not done():
        if time.monotonic() > args.deadline:
            raise GlobalTimeout(what)
        if args.progress and time.monotonic() - last >= 5:
            last = time.monotonic()
            progress()
        time.sleep(POLL_S)


def run_bench(args: argparse.Namespace, root: Path, run: Run) -> None:
    yaml_path = root / "recovery.yaml"
    yaml_path.write_text(TASK_YAML)
    p = Paths(root / "home")
    p.ensure()
    os.environ["SKYTUI_HOME"] = str(p.home)
    write_config(p, args)
    client = Client(p)
    sampler = run.sampler = Sampler(p)
    threads: list[threading.Thread] = []
    log = EventLog(client)
    try:
        pipeline = load_pipeline(yaml_path)
        client.plan(pipeline)  # infeasible: fail here, before anything is written
        client.store  # noqa: B018 - create the DB before the controller opens it
        info = daemon.start_controller(p)
        sampler.controller_pid = info.pid
        sampler.start()
        # How busy is the machine without us (the controller idles)?
        time.sleep(0.5)
        b0, c0, o0 = system_cpu(), cpu_seconds(info.pid) or 0.0, own_cpu()
        time.sleep(1.0)
        b1, c1, o1 = system_cpu(), cpu_seconds(info.pid) or 0.0, own_cpu()
        if b1[1] > b0[1]:
            ours = (c1 - c0) + (o1 - o0)
            run.idle_busy_pct = 100 * max(0.0, b1[0] - b0[0] - ours) / (b1[1] - b0[1])

        # ---- launch: N jobs, until every one is RUNNING
        clock = PhaseClock(sampler, "launch")
        t0 = time.monotonic()
        run.job_ids = client.submit(pipeline, num_jobs=run.n)
        run.submit_s = time.monotonic() - t0
        wanted = set(run.job_ids)
        terminal = {s.value for s in TERMINAL}

        def all_running() -> bool:
            st = statuses(client, wanted)
            bad = {j: s for j, s in st.items() if s in terminal}
            if bad:
                raise RuntimeError(f"{len(bad)} job(s) ended before the preemptions: {Counter(bad.values())}")
            return sum(1 for s in st.values() if s == RUNNING) == run.n

        def launch_progress() -> None:
            print(f"  launch t={time.monotonic() - t0:5.1f}s {dict(Counter(statuses(client, wanted).values()))}",
                  flush=True)

        wait_until(args, all_running, "waiting for every job to be RUNNING", launch_progress)
        run.all_running_s = time.monotonic() - t0
        sampler.nodehost_pid = sampler.nodehost_pid or read_pid(p.nodes / STATE_FILE, "pid")
        run.phases.append(clock.stop())
        if args.progress:
            print(f"  all {run.n} jobs RUNNING after {run.all_running_s:.1f}s", flush=True)

        # ---- steady: N jobs watched, nothing happening
        clock = PhaseClock(sampler, "steady")
        time.sleep(STEADY_S)
        run.phases.append(clock.stop())

        # ---- preemptions at random times in the window, on distinct RUNNING jobs
        rng = random.Random(args.seed)
        offsets = sorted(rng.uniform(0.0, args.window_s) for _ in range(run.k))
        clock = PhaseClock(sampler, "preemptions")
        log.poll()
        start = time.monotonic()
        run.window_started_at = time.time()
        chosen: set[int] = set()
        for i, offset in enumerate(offsets):
            delay = start + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if time.monotonic() > args.deadline:
                raise GlobalTimeout("injecting preemptions")
            st = statuses(client, wanted)
            candidates = sorted(j for j, s in st.items() if s == RUNNING and j not in chosen)
            if not candidates:
                run.preemptions.append(Preemption(-1, offset, error="no RUNNING job left to preempt"))
                continue
            job_id = rng.choice(candidates)
            chosen.add(job_id)
            pre = Preemption(job_id, offset)
            run.preemptions.append(pre)
            th = threading.Thread(target=fire, args=(p, pre), name=f"preempt-{i}", daemon=True)
            th.start()
            threads.append(th)
            if args.progress:
                print(f"  t={offset:5.1f}s preempting job {job_id} ({i + 1}/{run.k})", flush=True)
        for th in threads:
            th.join(timeout=max(1.0, args.deadline - time.monotonic()))

        def recovered() -> bool:
            log.poll()
            for pre in run.preemptions:
                if pre.error is None and pre.running_at is None:
                    match_events(pre, log.by_job.get(pre.job_id, []))
            return all(pre.error is not None or pre.running_at is not None for pre in run.preemptions)

        def recovery_progress() -> None:
            waiting = [pre.job_id for pre in run.preemptions if pre.error is None and pre.running_at is None]
            print(f"  waiting for {len(waiting)} job(s) to be RUNNING again: {waiting[:10]}", flush=True)

        wait_until(args, recovered, "waiting for the preempted jobs to be RUNNING again", recovery_progress)
        run.recovered_all_s = time.monotonic() - start
        for pre in run.preemptions:
            match_attempt(pre, client)
        run.phases.append(clock.stop())

        # ---- settle: anything relaunched without reason shows up here
        clock = PhaseClock(sampler, "settle")
        time.sleep(args.settle_s)
        log.poll()
        run.phases.append(clock.stop())
        count_relaunches(run, log)
        count_dollars(run, client)

        # ---- cancel everything; then count what is left standing
        clock = PhaseClock(sampler, "cancel")
        t_cancel = time.monotonic()
        client.cancel(run.job_ids)

        def all_cancelled() -> bool:
            return all(s in terminal for s in statuses(client, wanted).values())

        def cancel_progress() -> None:
            print(f"  cancel t={time.monotonic() - t_cancel:5.1f}s "
                  f"{dict(Counter(statuses(client, wanted).values()))}", flush=True)

        wait_until(args, all_cancelled, "waiting for every job to be CANCELLED", cancel_progress)
        run.cancel_s = time.monotonic() - t_cancel
        run.sandboxes_at_cancelled = sandboxes_left(p)
        run.live_clusters_at_cancelled = [c.name for c in client.store.live_clusters()]
        run.phases.append(clock.stop())
        run.final_outcomes = dict(Counter(statuses(client, wanted).values()))
        # A second look: a machine that goes away a moment later was still
        # standing when its job said CANCELLED (an ordering bug, not a leak).
        time.sleep(2.0)
        run.sandboxes_later = sandboxes_left(p)
        run.live_clusters_later = [c.name for c in client.store.live_clusters()]
        run.processes_left = len(processes_in(p.nodes, exclude=os.getpid()))
    finally:
        signal.alarm(90)  # bound the clean-up too
        sampler.stop()
        try:
            with contextlib.suppress(Exception):
                log.poll()
                for pre in run.preemptions:
                    if pre.running_at is None:
                        match_events(pre, log.by_job.get(pre.job_id, []))
                    match_attempt(pre, client)
                if run.needless is None and run.preemptions:
                    count_relaunches(run, log)
            client.close()
        finally:
            stop_everything(p)


def count_dollars(run: Run, client: Client) -> None:
    """The ledger's figures, before the cancel (which would make every
    attempt left a lost one)."""
    now = time.time()
    preempted = sorted({pre.job_id for pre in run.preemptions if pre.error is None and pre.issued_at is not None})
    spends = client.store.attempt_spend(now=now, job_ids=preempted)
    run.lost_preempted_usd = sum(a.lost for a in spends if not a.running)
    run.lost_relaunch_usd = sum(a.provisioning_s * (a.price_per_hour or 0.0) / 3600
                                for a in spends if a.running and a.attempt_no > 1)
    total = client.cost_report(days=None, now=now).total
    run.spent_usd, run.lost_usd = total.spent, total.lost


def count_relaunches(run: Run, log: EventLog) -> None:
    preempted = Counter(pre.job_id for pre in run.preemptions if pre.error is None and pre.issued_at is not None)
    needless = 0
    detail = []
    run.recovering_total = 0
    run.placements_after_running = 0
    for job_id in run.job_ids:
        events = log.by_job.get(job_id, [])
        recs = [e for e in events if e.kind == "status" and e.to_status == RECOVERING]
        run.recovering_total += len(recs)
        extra = max(0, len(recs) - preempted.get(job_id, 0))
        if extra:
            needless += extra
            detail.append(f"job {job_id}: {len(recs)} RECOVERING for {preempted.get(job_id, 0)} preemption(s): "
                          + "; ".join(f"{e.message}" for e in recs))
        first_running = next((e.id for e in events if e.kind == "status" and e.to_status == RUNNING), None)
        if first_running is not None:
            run.placements_after_running += sum(1 for e in events if e.kind == "placement" and e.id > first_running)
    run.needless = needless
    run.needless_detail = detail
    with contextlib.suppress(Exception):
        run.capacity_misses = sum(
            1 for job_id in run.job_ids for a in log.client.store.attempts(job_id)
            if a.end_reason and a.end_reason.startswith("no capacity")
        )


# ------------------------------------------------------------------- report


def report(run: Run, args: argparse.Namespace) -> bool:
    print()
    print(
        f"skytui recovery — {run.n} spot jobs on sim (T4:1, use_spot), {run.k} preemptions at random times "
        f"in {args.window_s:g} s (seed {args.seed})"
    )
    print(f"machine: {run.machine}")
    print(
        f"config: sim provision_delay_s={args.provision_delay_s:g}, capacity {args.capacity}/region, "
        f"max_launching={args.max_launching}, recovery backoff_initial_s={args.backoff_initial_s:g}"
    )
    if run.idle_busy_pct is not None:
        print(
            f"other load on the machine in the 1 s before submitting: {run.idle_busy_pct:.0f}% busy"
            + (" — the machine was shared; figures are pessimistic" if run.idle_busy_pct > 15 else "")
        )
    if run.timed_out:
        print(f"!! GLOBAL TIMEOUT after {args.timeout:g}s ({run.error or ''}): partial figures below")
    elif run.error:
        print(f"!! ERROR: {run.error}")
    print()

    if run.submit_s is not None:
        print(f"launch: {run.n} jobs submitted in {run.submit_s * 1000:.0f} ms; "
              + (f"all RUNNING after {run.all_running_s:.1f} s" if run.all_running_s is not None
                 else "not all RUNNING"))

    pres = run.preemptions
    issued = [pre for pre in pres if pre.error is None and pre.issued_at is not None]
    failed = [pre for pre in pres if pre.error is not None]
    print(f"preemptions: {len(issued)} issued" + (f", {len(failed)} failed to issue" if failed else ""))
    for pre in failed:
        print(f"  job {pre.job_id}: {pre.error}")
    reclaim = [pre.returned_at - pre.issued_at for pre in issued if pre.returned_at is not None]
    if reclaim:
        print(f"  sim_preempt call, whole (SIGTERM, 1 s grace, SIGKILL, sandbox removed): p50 {pct(reclaim, 50):.2f} s, "
              f"max {max(reclaim):.2f} s")
    print()

    def dist(name: str, values: list[float], of: int) -> None:
        if not values:
            print(f"  {name:52s} (no data)")
            return
        print(
            f"  {name:52s} p50 {pct(values, 50):6.2f} s   p95 {pct(values, 95):6.2f} s   "
            f"max {max(values):6.2f} s   (n={len(values)}/{of})"
        )

    detect = [v for pre in issued if (v := pre.detect_s) is not None]
    gap = [v for pre in issued if (v := pre.relaunch_gap_s) is not None]
    back = [v for pre in issued if (v := pre.to_running_s) is not None]
    back_after = [pre.running_at - pre.recovering_at for pre in issued
                  if pre.running_at is not None and pre.recovering_at is not None]
    placed_to_running = [pre.running_at - pre.placement_at for pre in issued
                         if pre.running_at is not None and pre.placement_at is not None]
    print("per preemption (events table, same clock as the bench):")
    dist("preemption -> RECOVERING (detection)", detect, len(issued))
    split = [
        ("  sim_preempt called -> machine marked down", [v for pre in issued if (v := pre.issue_s) is not None]),
        ("  marked down -> controller caught the loss", [v for pre in issued if (v := pre.notice_s) is not None]),
        ("  caught -> RECOVERING written", [v for pre in issued if (v := pre.teardown_s) is not None]),
    ]
    reclaim_done = [pre.returned_at - pre.issued_at for pre in issued
                    if pre.returned_at is not None and pre.issued_at is not None]
    for name, values in split:
        if values:
            dist(name, values, len(issued))
    if reclaim_done:
        dist("  (ref: sim_preempt called -> returned: sandbox gone)", reclaim_done, len(issued))
    dist("RECOVERING -> placement (relaunch started)", gap, len(issued))
    dist("placement -> RUNNING (provision+setup)", placed_to_running, len(issued))
    dist("RECOVERING -> RUNNING", back_after, len(issued))
    dist("preemption -> RUNNING again", back, len(issued))
    if run.recovered_all_s is not None:
        print(f"  every preempted job RUNNING again {run.recovered_all_s:.1f} s after the window opened")
    odd = [pre for pre in issued if pre.recovering_msg is not None and "preempted in sim" not in pre.recovering_msg]
    for pre in odd:
        print(f"  !! job {pre.job_id}: RECOVERING message not a sim preemption: {pre.recovering_msg!r}")
    odd = [pre for pre in issued if pre.running_msg is not None and not pre.running_msg.startswith("recovered:")]
    for pre in odd:
        print(f"  !! job {pre.job_id}: RUNNING message does not start 'recovered:': {pre.running_msg!r}")
    if issued and args.verbose:
        print("   job  at(s)  issue notice  tear  detect    gap running  gone  "
              "RECOVERING message / placement / RUNNING message")
        for pre in sorted(issued, key=lambda x: x.planned_s):
            def f(v: float | None) -> str:
                return f"{v:6.2f}" if v is not None else "   n/a"
            print(f"  {pre.job_id:4d} {pre.planned_s:5.1f} {f(pre.issue_s)} {f(pre.notice_s)} {f(pre.teardown_s)} "
                  f"{f(pre.detect_s)} {f(pre.relaunch_gap_s)} {f(pre.to_running_s)} "
                  f"{f(pre.returned_at - pre.issued_at if pre.returned_at and pre.issued_at else None)}  "
                  f"{pre.recovering_msg} / {pre.placement_msg} / {pre.running_msg}")
    print()

    if detect:
        p95 = pct(detect, 95)
        print("anchors (SkyPilot, /work/shared/reference/perf_rel.md):")
        print(
            f"  p95 detection {p95:.2f} s vs SkyPilot's smoke-test bound {SKYPILOT_TEST_DETECT_S:g} s (S9, 3 x 15 s): "
            f"{fmt_ratio(p95 / SKYPILOT_TEST_DETECT_S)} ({fmt_ratio(SKYPILOT_TEST_DETECT_S / p95)} faster)"
        )
        print(
            f"  p95 detection vs SkyPilot's >= {SKYPILOT_MIN_ELAPSED_S:g} s and {SKYPILOT_MIN_RETRIES} failed probes "
            f"before recover() on a status-fetch failure (S7): {fmt_ratio(p95 / SKYPILOT_MIN_ELAPSED_S)} "
            f"({fmt_ratio(SKYPILOT_MIN_ELAPSED_S / p95)} faster)"
        )
        print(
            f"  SkyPilot polls every {SKYPILOT_POLL_S:g} s (S6): its mean wait to the next poll alone is "
            f"{SKYPILOT_POLL_S / 2:g} s; our p50 detection {pct(detect, 50):.2f} s"
        )
        if back:
            print(
                f"  p95 preemption -> RUNNING again {pct(back, 95):.2f} s vs the {SKYPILOT_TEST_RUNNING_S:g} s its test "
                f"allows (S9): {fmt_ratio(pct(back, 95) / SKYPILOT_TEST_RUNNING_S)}"
            )
        print(f"  (our own goal for real clouds, perf_rel.md section 2: p95 <= {GOAL_DETECT_P95_S:g} s)")
        print()

    print("relaunches and machines:")
    if run.needless is not None:
        print(
            f"  RECOVERING events: {run.recovering_total} for {len(issued)} preemptions; needless relaunches "
            f"(on jobs never preempted, or beyond one per preemption): {run.needless}"
        )
        for line in run.needless_detail[:10]:
            print(f"    {line}")
        print(f"  placements after a job's first RUNNING: {run.placements_after_running} "
              f"(no-capacity attempts, launch included, over the run: {run.capacity_misses})")
    if run.lost_preempted_usd is not None and run.lost_relaunch_usd is not None:
        lost = run.lost_preempted_usd + run.lost_relaunch_usd
        # Four places: a bench's attempts last seconds, at cents an hour.
        print(f"  dollars lost to the {len(issued)} preemptions (ledger, catalog prices): ${lost:.4f} "
              f"(preempted attempts ${run.lost_preempted_usd:.4f}, provisioning their replacements "
              f"${run.lost_relaunch_usd:.4f}); all {run.n} jobs by then: spent ${run.spent_usd or 0:.4f}, "
              f"lost ${run.lost_usd or 0:.4f} (first provisioning included)")
    if run.cancel_s is not None:
        print(f"  cancel of all {run.n} jobs: every one terminal after {run.cancel_s:.1f} s "
              f"({dict(sorted(run.final_outcomes.items()))})")
    if run.sandboxes_at_cancelled is not None:
        left = run.sandboxes_at_cancelled
        live = run.live_clusters_at_cancelled or []
        print(f"  at all-CANCELLED: {len(left)} sim sandbox(es) left under nodes/, {len(live)} live cluster row(s)"
              + (f": {(left + live)[:6]}" if left or live else ""))
        later = run.sandboxes_later or []
        live_later = run.live_clusters_later or []
        print(f"  2 s later: {len(later)} sandbox(es), {len(live_later)} live cluster row(s); "
              f"processes still living in a sandbox: {run.processes_left}")
    print()

    s = run.sampler
    if run.phases:
        print("cost (CPU as % of one core over the phase; peak RSS in the phase):")
        ncpu = os.cpu_count() or 1
        for ph in run.phases:
            if ph.wall_s <= 0:
                continue

            def share(v: float | None, ph: Phase = ph) -> str:
                return f"{100 * v / ph.wall_s:5.1f}%" if v is not None else "  n/a"

            def peak(who: str, ph: Phase = ph) -> str:
                v = s.peaks.get((who, ph.name)) if s is not None else None
                return f"{v / MIB:6.1f} MiB" if v else "     n/a"

            busy = 100 * ph.sys_busy_s / ph.sys_total_s if ph.sys_total_s else float("nan")
            print(
                f"  {ph.name:11s} {ph.wall_s:6.1f} s  controller {share(ph.controller_s)} {peak('controller')}  "
                f"node host {share(ph.nodehost_s)} (+ exec shells {share(ph.nodehost_children_s)}) "
                f"{peak('node host')}  bench {share(ph.bench_s)}  machine {busy:4.0f}% of {ncpu} CPUs"
            )
        print()

    print("targets (this issue, on sim):")
    ok = True

    def target(label: str, passed: bool, value: str) -> None:
        nonlocal ok
        ok &= passed
        print(f"  {label:58s} {value:>9s}  {'PASS' if passed else 'FAIL'}")

    all_detected = len(detect) == len(issued) == run.k
    target(f"p95 preemption -> RECOVERING <= {TARGET_DETECT_P95_S:g} s",
           all_detected and pct(detect, 95) <= TARGET_DETECT_P95_S,
           f"{pct(detect, 95):.2f} s" if detect else "no data")
    if not all_detected:
        print(f"    ({len(detect)} of {run.k} preemptions reached RECOVERING)")
    target(f"p95 RECOVERING -> relaunch started <= {TARGET_RELAUNCH_P95_S:g} s",
           len(gap) == run.k and pct(gap, 95) <= TARGET_RELAUNCH_P95_S,
           f"{pct(gap, 95):.2f} s" if gap else "no data")
    target("every preempted job RUNNING again", len(back) == run.k, f"{len(back)}/{run.k}")
    target("needless relaunches == 0", run.needless == 0, "n/a" if run.needless is None else str(run.needless))
    leaked = None
    if run.sandboxes_at_cancelled is not None and run.live_clusters_at_cancelled is not None:
        leaked = len(run.sandboxes_at_cancelled) + len(run.live_clusters_at_cancelled)
    target("leaked machines after cancel == 0 (sandboxes + live rows)", leaked == 0,
           "n/a" if leaked is None else str(leaked))
    if (nproc := os.cpu_count()) and nproc != 2:
        print(f"  note: this machine has {nproc} CPUs; the project's reference machine has 2")
    return ok and not run.timed_out and not run.error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100, help="managed jobs to launch (default 100)")
    parser.add_argument("--preemptions", type=int, default=20, help="distinct jobs to preempt (default 20)")
    parser.add_argument("--window-s", type=float, default=40.0,
                        help="preemptions at uniformly random times within this many seconds (default 40)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the times and the jobs chosen")
    parser.add_argument("--provision-delay-s", type=float, default=0.5, help="infra.sim.provision_delay_s")
    parser.add_argument("--capacity", type=int, default=64, help="infra.sim spot/on-demand capacity per region")
    parser.add_argument("--max-launching", type=int, default=32, help="jobs.controller.max_launching")
    parser.add_argument("--backoff-initial-s", type=float, default=1.0, help="jobs.recovery.backoff_initial_s")
    parser.add_argument("--settle-s", type=float, default=5.0,
                        help="keep watching this long after the last recovery for needless relaunches")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (for debugging)")
    parser.add_argument("--quiet", dest="progress", action="store_false", help="no progress lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per preemption")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be 1 or more")
    if not 1 <= args.preemptions <= args.jobs:
        parser.error("--preemptions must be between 1 and --jobs")
    if args.window_s < 0:
        parser.error("--window-s must be >= 0")

    args.deadline = time.monotonic() + args.timeout
    run = Run(n=args.jobs, k=args.preemptions, machine=machine())
    root = Path(tempfile.mkdtemp(prefix="skytui-bench-recovery-"))

    # Backstops: a hang anywhere (the alarm) or a SIGTERM raise in the main
    # thread, so the finally blocks still stop the daemons and kill the jobs.
    arm_deadline(int(args.timeout) + 1, message="global timeout")
    print(f"skytui bench recovery: {args.jobs} jobs, {args.preemptions} preemptions, "
          f"SKYTUI_HOME under {root} (temporary)", flush=True)
    try:
        run_bench(args, root, run)
    except GlobalTimeout as exc:
        run.timed_out = True
        run.error = str(exc) or None
    except (KeyboardInterrupt, Terminated):
        run.error = "interrupted"
    except Exception as exc:  # noqa: BLE001 - report what we have
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    ok = report(run, args)
    if run.timed_out:
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
