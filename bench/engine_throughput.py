"""Engine throughput: N trivial managed jobs on the `local` infra, end to end.

    .venv/bin/python bench/engine_throughput.py [N] [--max-launching K] [--timeout S] [--keep]

Submits N jobs (`run: echo $SKYPILOT_TASK_ID`, default N=200) through the real
Client into a fresh, temporary SKYTUI_HOME, lets the real controller daemon run
them on the real node host over SSH, and prints:

* submissions/s: the time to write N jobs into the state DB, measured three
  ways (each in its own fresh DB): (a) one `Client.submit(num_jobs=N)` call, as
  `skytui jobs launch --num-jobs N` does, (b) N separate `Client.submit` calls
  (one job each, as N `skytui jobs launch` would, minus interpreter start-up),
  both with no controller running; (c) the real run's `Client.submit(num_jobs=N)`
  with the controller idle and waiting;
* completions/s end to end: first submit -> last SUCCEEDED (from the events table);
* p50/p95 submit -> RUNNING (the job's `submitted` event to its task's first
  `status` event to RUNNING), with the STARTING and RUNNING -> SUCCEEDED
  stages beside it;
* peak RSS of the controller daemon and of the node host (VmRSS sampled every
  50 ms), and RSS per active job: (peak - idle) / the most jobs seen at once
  in STARTING/RUNNING/RECOVERING/CANCELLING (the queue, polled every 0.2 s),
  split into the one-off cost (lazy asyncssh import, first connection) and
  the marginal cost per job;
* where the CPU went: controller, node host (and the exec shells it reaps),
  this script, the rest (detached job wrappers, kernel, other users), and how
  busy the machine was before the run (a shared machine makes every figure
  pessimistic);
* the anchors (SkyPilot S12, Slurm O1, SkyPilot S2/S4) and the issue's
  targets with PASS/FAIL.

It never touches the real ~/.skytui; it stops the controller and the node host
and removes its temporary directory at the end, and gives up (printing what it
has, exit 1) after --timeout seconds (default 600). Exit 0 only if all jobs
succeeded and both targets pass.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
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
    cpu_seconds,
    fmt_ratio,
    machine,
    own_cpu,
    pct,
    read_pid,
    rss_bytes,
    stop_everything,
    system_cpu,
)
from skytui.client import Client
from skytui.clouds.local_layout import STATE_FILE
from skytui.config import Paths
from skytui.engine import daemon
from skytui.engine.status import TERMINAL, TaskStatus
from skytui.spec import load_pipeline

TASK_YAML = "name: bench\nrun: echo $SKYPILOT_TASK_ID\n"

# Targets of this issue.
TARGET_JOBS = 200
TARGET_SECONDS = 60.0
TARGET_RSS_MIB = 300.0

# Anchors (see /work/shared/reference/perf_rel.md).
SLURM_JOBS_PER_S = 500.0  # O1: slurm.schedmd.com/high_throughput.html
SKYPILOT_1000_JOBS_GAP_S = 20.0  # S12: issue #4294, >20 s between scheduled jobs (16-CPU controller)
SKYPILOT_FAST_JOBS_PER_S = 10 / 40.0  # S12: PR #4231 --fast, 10 jobs in ~40 s
SKYPILOT_MB_PER_JOB_NEW = 2.0  # S4: asyncio controller, ~200-300 MB for 200 jobs
SKYPILOT_MB_PER_JOB_OLD = 350.0  # S2: JOB_MEMORY_MB, one Python process per job
# "roughly one job every several seconds": the figure the brief quotes (~0.1/s).
SKYPILOT_TYPICAL_JOBS_PER_S = 0.1

SAMPLE_S = 0.05
QUEUE_POLL_S = 0.2

MIB = 1024 * 1024


# ------------------------------------------------------------------ machine


# ------------------------------------------------------------ /proc samplers


@dataclass
class Series:
    pid: int | None = None
    peak: int = 0
    first: int | None = None
    last: int | None = None
    samples: int = 0
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (time.time(), bytes)

    def add(self, value: int | None) -> None:
        if value is None:
            return
        self.samples += 1
        self.timeline.append((time.time(), value))
        self.first = value if self.first is None else self.first
        self.last = value
        self.peak = max(self.peak, value)


@dataclass
class Sampler:
    """VmRSS of the controller and the node host every 50 ms, in a thread."""

    paths: Paths
    controller: Series = field(default_factory=Series)
    nodehost: Series = field(default_factory=Series)
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
            if self.controller.pid is None:
                self.controller.pid = read_pid(self.paths.controller_pid)
            if self.nodehost.pid is None:
                self.nodehost.pid = read_pid(self.paths.nodes / STATE_FILE, "pid")
            if self.controller.pid is not None:
                self.controller.add(rss_bytes(self.controller.pid))
            if self.nodehost.pid is not None:
                self.nodehost.add(rss_bytes(self.nodehost.pid))
            self._stop.wait(SAMPLE_S)


# ----------------------------------------------------------------- helpers


def fresh_home(root: Path, name: str) -> Paths:
    p = Paths(root / name)
    p.ensure()
    return p


def write_config(p: Paths, max_launching: int | None, max_running: int | None) -> None:
    """config.yaml (format in skytui/config.py), only when a limit is asked for."""
    lines = []
    if max_launching is not None:
        lines.append(f"    max_launching: {int(max_launching)}")
    if max_running is not None:
        lines.append(f"    max_running: {int(max_running)}")
    if lines:
        p.config_file.write_text("jobs:\n  controller:\n" + "\n".join(lines) + "\n")


def measure_submit_only(root: Path, n: int, yaml_path: Path) -> dict[str, float]:
    """DB write rate with no controller: one call with num_jobs=N, and N calls."""
    out: dict[str, float] = {}
    for label in ("num_jobs", "loop"):
        p = fresh_home(root, f"submit-{label}")
        os.environ["SKYTUI_HOME"] = str(p.home)
        client = Client(p)
        try:
            pipeline = load_pipeline(yaml_path)
            client.plan(pipeline)
            client.store  # noqa: B018 - open the DB (migrations) outside the timing
            t0 = time.perf_counter()
            if label == "num_jobs":
                ids = client.submit(pipeline, num_jobs=n, start_controller=False)
            else:
                ids = [client.submit(pipeline, start_controller=False)[0] for _ in range(n)]
            out[label] = time.perf_counter() - t0
            assert len(ids) == n
        finally:
            client.close()
            shutil.rmtree(p.home, ignore_errors=True)
    return out


# ------------------------------------------------------------------- the run


@dataclass
class Run:
    n: int
    machine: str = ""
    submit_s_num_jobs: float | None = None  # (a) no controller
    submit_s_loop: float | None = None  # (b) no controller
    submit_s_live: float | None = None  # (c) controller up
    t_first_submit: float | None = None  # wall clock (time.time) = events' clock
    t_last_success: float | None = None
    wall_done: float | None = None  # poll-observed end, perf_counter based
    outcomes: dict[str, int] = field(default_factory=dict)
    max_in_progress: int = 0
    max_active: int = 0  # past PENDING: STARTING/RUNNING/RECOVERING/CANCELLING
    to_running: list[float] = field(default_factory=list)
    first_running_at: float | None = None  # time.time() of the first RUNNING event
    to_starting: list[float] = field(default_factory=list)
    starting_to_running: list[float] = field(default_factory=list)
    running_to_done: list[float] = field(default_factory=list)
    sched_gaps: list[float] = field(default_factory=list)
    ctrl_idle: int | None = None
    ctrl_after: int | None = None
    ctrl_cpu_s: float | None = None
    sys_busy_s: float | None = None
    idle_busy_pct: float | None = None  # the machine's load before we submit: other users
    host_children_cpu_s: float | None = None
    sys_total_s: float | None = None
    bench_cpu_s: float | None = None
    host_cpu_s: float | None = None
    timed_out: bool = False
    error: str | None = None
    sampler: Sampler | None = None


def collect_latencies(client: Client, job_ids: list[int], run: Run) -> None:
    store = client.store
    starts: list[float] = []
    last_success = None
    for job_id in job_ids:
        events = store.events(job_id=job_id)
        submitted = next((e.at for e in events if e.kind == "submitted"), None)
        status = [e for e in events if e.kind == "status"]
        starting = next((e.at for e in status if e.to_status == TaskStatus.STARTING.value), None)
        running = next((e.at for e in status if e.to_status == TaskStatus.RUNNING.value), None)
        done = next((e.at for e in status if e.to_status == TaskStatus.SUCCEEDED.value), None)
        if running is not None and (run.first_running_at is None or running < run.first_running_at):
            run.first_running_at = running
        if submitted is not None and running is not None:
            run.to_running.append(running - submitted)
        if submitted is not None and starting is not None:
            run.to_starting.append(starting - submitted)
            starts.append(starting)
        if starting is not None and running is not None:
            run.starting_to_running.append(running - starting)
        if running is not None and done is not None:
            run.running_to_done.append(done - running)
        if done is not None:
            last_success = done if last_success is None else max(last_success, done)
    run.t_last_success = last_success
    starts.sort()
    run.sched_gaps = [b - a for a, b in itertools.pairwise(starts)]


def run_bench(args: argparse.Namespace, root: Path, run: Run) -> None:
    yaml_path = root / "bench.yaml"
    yaml_path.write_text(TASK_YAML)

    if not args.skip_submit_only:
        only = measure_submit_only(root, run.n, yaml_path)
        run.submit_s_num_jobs = only.get("num_jobs")
        run.submit_s_loop = only.get("loop")

    p = fresh_home(root, "home")
    os.environ["SKYTUI_HOME"] = str(p.home)
    write_config(p, args.max_launching, args.max_running)
    client = Client(p)
    sampler = run.sampler = Sampler(p)
    try:
        # As `skytui jobs launch` does: load the YAML once, plan once.
        pipeline = load_pipeline(yaml_path)
        client.plan(pipeline)
        client.store  # noqa: B018 - create the DB before the controller opens it
        info = daemon.start_controller(p)
        sampler.controller.pid = info.pid
        sampler.start()
        # The idle baseline: the controller has imported its engine, opened the
        # DB and waits. Meanwhile, how busy is the machine without us?
        time.sleep(0.5)
        b0, c0, o0 = system_cpu(), cpu_seconds(info.pid) if info.pid else 0.0, own_cpu()
        time.sleep(1.0)
        b1, c1, o1 = system_cpu(), cpu_seconds(info.pid) if info.pid else 0.0, own_cpu()
        if b1[1] > b0[1]:
            ours = ((c1 or 0.0) - (c0 or 0.0)) + (o1 - o0)
            run.idle_busy_pct = 100 * max(0.0, b1[0] - b0[0] - ours) / (b1[1] - b0[1])
        run.ctrl_idle = sampler.controller.last
        ctrl_cpu0 = cpu_seconds(info.pid) if info.pid else None
        sys0 = system_cpu()
        own0 = own_cpu()

        run.t_first_submit = time.time()
        t0 = time.perf_counter()
        job_ids = client.submit(pipeline, num_jobs=run.n)  # wakes the controller
        run.submit_s_live = time.perf_counter() - t0
        wanted = set(job_ids)

        deadline = args.deadline
        terminal = {s.value for s in TERMINAL}
        active_states = {
            TaskStatus.STARTING.value, TaskStatus.RUNNING.value,
            TaskStatus.RECOVERING.value, TaskStatus.CANCELLING.value,
        }
        last_report = time.perf_counter()
        while True:
            jobs = [j for j in client.store.jobs() if j.id in wanted]
            done = [j for j in jobs if j.status in terminal]
            in_progress = len(jobs) - len(done)
            active = sum(1 for j in jobs if j.status in active_states)
            run.max_in_progress = max(run.max_in_progress, in_progress)
            run.max_active = max(run.max_active, active)
            if len(done) == run.n:
                run.wall_done = time.perf_counter() - t0
                break
            now = time.perf_counter()
            if args.progress and now - last_report >= 5:
                last_report = now
                rss = sampler.controller.last
                print(
                    f"  t={now - t0:6.1f}s done={len(done)}/{run.n} active={active} "
                    f"pending={in_progress - active} ctrl_rss={rss / MIB if rss else 0:.0f}MiB",
                    flush=True,
                )
            if time.monotonic() > deadline:
                raise GlobalTimeout()
            time.sleep(QUEUE_POLL_S)
        sys1 = system_cpu()
        run.sys_busy_s, run.sys_total_s = sys1[0] - sys0[0], sys1[1] - sys0[1]
        run.bench_cpu_s = own_cpu() - own0
        if info.pid:
            c1 = cpu_seconds(info.pid)
            if c1 is not None and ctrl_cpu0 is not None:
                run.ctrl_cpu_s = c1 - ctrl_cpu0
        if sampler.nodehost.pid:
            run.host_cpu_s = cpu_seconds(sampler.nodehost.pid)
            run.host_children_cpu_s = cpu_seconds(sampler.nodehost.pid, children=True)
        run.outcomes = {}
        for j in client.store.jobs():
            if j.id in wanted:
                run.outcomes[j.status] = run.outcomes.get(j.status, 0) + 1
        collect_latencies(client, job_ids, run)
        time.sleep(1.0)  # let teardown finish, then the "after" RSS
        run.ctrl_after = sampler.controller.last
    finally:
        signal.alarm(90)  # bound the clean-up too
        sampler.stop()
        try:
            with contextlib.suppress(Exception):
                if run.t_first_submit and not run.outcomes:
                    # timed out or failed: still tally what we have
                    jobs = client.store.jobs()
                    for j in jobs:
                        run.outcomes[j.status] = run.outcomes.get(j.status, 0) + 1
                    collect_latencies(client, sorted(j.id for j in jobs), run)
            client.close()
        finally:
            stop_everything(p)


# ------------------------------------------------------------------- report


def report(run: Run, args: argparse.Namespace) -> bool:
    n = run.n
    s = run.sampler
    print()
    print(f"skytui engine throughput — {n} trivial jobs (run: echo $SKYPILOT_TASK_ID) on infra local")
    print(f"machine: {run.machine}")
    limits = []
    if args.max_launching is not None:
        limits.append(f"max_launching={args.max_launching}")
    if args.max_running is not None:
        limits.append(f"max_running={args.max_running}")
    print(f"controller limits: {', '.join(limits) if limits else 'defaults (config.py)'}")
    if run.timed_out:
        print(f"!! GLOBAL TIMEOUT after {args.timeout:g}s: partial figures below")
    if run.error:
        print(f"!! ERROR: {run.error}")
    print()

    print("submissions (writing N jobs into the state DB through Client.submit):")
    for label, secs in (
        ("(a) Client.submit(num_jobs=N), no controller", run.submit_s_num_jobs),
        ("(b) N x Client.submit(), no controller", run.submit_s_loop),
        ("(c) Client.submit(num_jobs=N), controller up", run.submit_s_live),
    ):
        if secs is None:
            continue
        rate = n / secs
        print(
            f"  {label:48s} {secs * 1000:8.1f} ms  {rate:8.1f} submissions/s  "
            f"({fmt_ratio(rate / SLURM_JOBS_PER_S)} Slurm's 500/s; goal >=200/s: "
            f"{'ok' if rate >= 200 else 'below'})"
        )
    print()

    comp_rate = None
    if run.t_first_submit and run.t_last_success and run.outcomes.get("SUCCEEDED") == n:
        elapsed = run.t_last_success - run.t_first_submit
        comp_rate = n / elapsed
        print(f"end to end: first submit -> last SUCCEEDED = {elapsed:.2f} s (poll saw all done at {run.wall_done:.2f} s)")
        print(
            f"  completions/s: {comp_rate:.2f} — {fmt_ratio(comp_rate / SLURM_JOBS_PER_S)} Slurm's "
            f"{SLURM_JOBS_PER_S:g}/s, ~{fmt_ratio(comp_rate / SKYPILOT_TYPICAL_JOBS_PER_S)} SkyPilot's ~0.1/s "
            f"(one every several s), {fmt_ratio(comp_rate / SKYPILOT_FAST_JOBS_PER_S)} SkyPilot --fast "
            f"(10 jobs/~40 s, PR #4231)"
        )
    else:
        print(f"end to end: not all jobs SUCCEEDED: {run.outcomes}")
    print(f"  outcomes: {dict(sorted(run.outcomes.items()))}")
    if run.sched_gaps:
        gap_mean = statistics.fmean(run.sched_gaps)
        print(
            f"  gap between consecutive jobs entering STARTING: mean {gap_mean * 1000:.1f} ms, "
            f"p95 {pct(run.sched_gaps, 95) * 1000:.1f} ms, max {max(run.sched_gaps) * 1000:.1f} ms — "
            f"SkyPilot: >{SKYPILOT_1000_JOBS_GAP_S:g} s at 1,000 submitted (#4294), "
            f"{fmt_ratio(SKYPILOT_1000_JOBS_GAP_S / gap_mean) if gap_mean > 0 else 'inf'} shorter"
        )
    print()

    def dist(name: str, values: list[float]) -> None:
        if not values:
            print(f"  {name:34s} (no data)")
            return
        print(
            f"  {name:34s} p50 {pct(values, 50):7.2f} s   p95 {pct(values, 95):7.2f} s   "
            f"max {max(values):7.2f} s   (n={len(values)})"
        )

    print("latency per job (events table, Store.events(job_id=...)):")
    dist("submit -> RUNNING", run.to_running)
    dist("  submit -> STARTING (scheduling)", run.to_starting)
    dist("  STARTING -> RUNNING (provision)", run.starting_to_running)
    dist("RUNNING -> SUCCEEDED (run+sync)", run.running_to_done)
    print()

    print("memory (VmRSS sampled every 50 ms):")
    peak_mib = None
    if s is not None and s.controller.samples:
        peak_mib = s.controller.peak / MIB
        idle = run.ctrl_idle or s.controller.first or 0
        print(
            f"  controller (pid {s.controller.pid}): idle {idle / MIB:.1f} MiB, peak {peak_mib:.1f} MiB, "
            f"after the run {f'{run.ctrl_after / MIB:.1f} MiB' if run.ctrl_after else 'n/a'}  ({s.controller.samples} samples)"
        )
        delta = s.controller.peak - idle
        if run.max_active:
            per = delta / MIB / run.max_active
            print(
                f"  RSS per active job: ({peak_mib:.1f} - {idle / MIB:.1f}) MiB / {run.max_active} max active "
                f"(STARTING/RUNNING) = {per:.2f} MiB/job — SkyPilot: ~{SKYPILOT_MB_PER_JOB_NEW:g} MB/job "
                f"asyncio controller (S4), {SKYPILOT_MB_PER_JOB_OLD:g} MB/job process-per-job (S2); "
                f"{fmt_ratio(SKYPILOT_MB_PER_JOB_NEW / per) if per > 0 else 'inf'} less than S4's, "
                f"{fmt_ratio(SKYPILOT_MB_PER_JOB_OLD / per) if per > 0 else 'inf'} less than S2's"
            )
        warm = None
        if run.first_running_at is not None:
            warm = next((v for t, v in s.controller.timeline if t >= run.first_running_at), None)
        if warm is not None and run.max_active > 1:
            print(
                f"  of which one-off (lazy imports: asyncssh, SFTP, crypto; first SSH connection): "
                f"{(warm - idle) / MIB:.1f} MiB by the first RUNNING; marginal per active job after it: "
                f"({peak_mib:.1f} - {warm / MIB:.1f}) / {run.max_active - 1} = "
                f"{max(0, s.controller.peak - warm) / MIB / (run.max_active - 1):.2f} MiB/job"
            )
        if run.max_in_progress:
            print(
                f"  (per in-progress job, PENDING included: {delta / MIB / run.max_in_progress:.2f} MiB/job "
                f"over {run.max_in_progress} jobs held by the controller)"
            )
    if s is not None and s.nodehost.samples:
        print(
            f"  node host (pid {s.nodehost.pid}): peak {s.nodehost.peak / MIB:.1f} MiB, "
            f"last {(s.nodehost.last or 0) / MIB:.1f} MiB  ({s.nodehost.samples} samples)"
        )
    if run.ctrl_cpu_s is not None and run.wall_done:
        print(
            f"  CPU: controller {run.ctrl_cpu_s:.1f} s over {run.wall_done:.1f} s wall "
            f"({100 * run.ctrl_cpu_s / run.wall_done:.0f}% of one core)"
            + (f", node host {run.host_cpu_s:.1f} s (lifetime)" if run.host_cpu_s is not None else "")
        )
    if run.sys_busy_s is not None and run.sys_total_s:
        ncpu = os.cpu_count() or 1
        kids = run.host_children_cpu_s or 0
        rest = run.sys_busy_s - (run.ctrl_cpu_s or 0) - (run.host_cpu_s or 0) - kids - (run.bench_cpu_s or 0)
        print(
            f"  machine: {100 * run.sys_busy_s / run.sys_total_s:.0f}% busy over {ncpu} CPUs "
            f"({run.sys_busy_s:.1f} CPU-s): controller {run.ctrl_cpu_s or 0:.1f}, node host "
            f"{run.host_cpu_s or 0:.1f} + its reaped exec shells {kids:.1f}, this benchmark "
            f"{run.bench_cpu_s or 0:.1f}, the rest (detached job wrappers, kernel, other users) {rest:.1f}"
        )
        if run.idle_busy_pct is not None:
            loaded = run.idle_busy_pct > 15
            print(
                f"  other load on the machine in the 1 s before submitting: {run.idle_busy_pct:.0f}% busy"
                + (" — the machine was shared; figures are pessimistic" if loaded else "")
            )
    print()

    print("targets (this issue):")
    ok = True
    total_s: float | None = (
        run.t_last_success - run.t_first_submit
        if comp_rate is not None and run.t_first_submit and run.t_last_success else None
    )
    if total_s is None:
        ok = False
        print(f"  {TARGET_JOBS} jobs complete in < {TARGET_SECONDS:g} s: the jobs did not all succeed  FAIL")
    elif n == TARGET_JOBS:
        passed = total_s < TARGET_SECONDS
        ok &= passed
        print(f"  {TARGET_JOBS} jobs complete in < {TARGET_SECONDS:g} s on a 2-core machine: "
              f"{total_s:.1f} s  {'PASS' if passed else 'FAIL'}")
    else:
        projected = total_s * TARGET_JOBS / n
        print(
            f"  {TARGET_JOBS} jobs complete in < {TARGET_SECONDS:g} s: not measured (N={n}: {total_s:.1f} s); "
            f"linear projection to 200: {projected:.0f} s {'(would pass)' if projected < TARGET_SECONDS else '(would FAIL)'}"
        )
    if peak_mib is not None:
        passed = peak_mib < TARGET_RSS_MIB
        print(f"  controller peak RSS < {TARGET_RSS_MIB:g} MiB: {peak_mib:.1f} MiB  {'PASS' if passed else 'FAIL'}")
        ok &= passed
    else:
        print("  controller peak RSS: not sampled  FAIL")
        ok = False
    if (nproc := os.cpu_count()) and nproc != 2:
        print(f"  note: this machine has {nproc} CPUs; the time target is stated for 2 cores")
    return ok and not run.timed_out and not run.error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", nargs="?", type=int, default=200, help="number of jobs (default 200)")
    parser.add_argument("--max-launching", type=int, default=None, help="jobs.controller.max_launching")
    parser.add_argument("--max-running", type=int, default=None, help="jobs.controller.max_running")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--skip-submit-only", action="store_true", help="skip the no-controller submit timings")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (for debugging)")
    parser.add_argument("--quiet", dest="progress", action="store_false", help="no progress lines")
    args = parser.parse_args()
    if args.n < 1:
        parser.error("N must be 1 or more")

    args.deadline = time.monotonic() + args.timeout
    run = Run(n=args.n, machine=machine())
    root = Path(tempfile.mkdtemp(prefix="skytui-bench-"))
    # A backstop for a hang anywhere (a stuck start/stop): the alarm raises in
    # the main thread, the finally blocks still stop the daemons.
    arm_deadline(int(args.timeout) + 1, on_term=False)
    print(f"skytui bench: N={args.n}, SKYTUI_HOME under {root} (temporary)", flush=True)
    try:
        run_bench(args, root, run)
    except GlobalTimeout:
        run.timed_out = True
    except KeyboardInterrupt:
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
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
