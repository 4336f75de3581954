"""Scale: N sleeping jobs RUNNING at once on `sim`, and what they cost while they do.

    .venv/bin/python bench/scale.py [--jobs 10000] [--wave 1000] [--log-sample 50] [--idle-s 60]
        [--max-launching 64] [--provision-delay-s 0] [--running-wait-s 900] [--stall-s 180]
        [--wave-wait-s 300] [--cancel-wait-s 900] [--repeats 3] [--timeout 3600] [--keep] [--quiet]

Everything goes through the real `skytui` command, as a user types it, in a
fresh temporary SKYTUI_HOME (the real home is never touched, nothing leaves
127.0.0.1). config.yaml gives `sim` room for every job in one region
(`ondemand_capacity` N + 64) and the controller room to run them all
(`max_running` N + 64); `--max-launching` and `--provision-delay-s` set the
rest. The soft RLIMIT_NOFILE is raised to the hard limit first thing: the
controller (started by the CLI) and the node host (started by the
controller) inherit it, and the bench prints what they got.

The job (one YAML, `skytui jobs launch -y -d --num-jobs N`) is a shell script
that blocks without a process of its own: by its rank, it waits on a FIFO in
a flag directory outside the sandboxes (`--env FLAG_DIR=...`) and then exits
(the wave), or prints one line stamped with `$EPOCHREALTIME` and sleeps (the
log sample), or just `exec sleep`s. Steps:

1. one job (`-n scale-base`, a sleeper) starts the controller and the node
   host; with it RUNNING: `jobs queue -a --json` at 1 job (`--repeats`,
   median), and the controller's and node host's RSS and CPU at 1 running;
2. submit N: wall time of the command, jobs/s;
3. wait until all N are RUNNING, a progress line every 10 s (statuses, rate,
   CPU and RSS of both processes). If they are not all RUNNING after
   `--running-wait-s`, or no job started for `--stall-s`, the bench says
   where it got stuck (statuses, the reasons the waiting tasks give, the
   controller log's last warnings), cancels the jobs that are not RUNNING,
   and measures the rest at the number it reached;
4. `--idle-s` seconds with every job RUNNING and none printing: CPU of the
   controller and of the node host (utime+stime from /proc/<pid>/stat, plus
   the shells the node host ran and reaped, its cutime+cstime), as % of one
   core; RSS per running job = (controller + node host VmRSS at N running,
   at the end of the window) - (the same at 1 running), / N;
5. `jobs queue -a --json` at N (`--repeats`, median), with all N running,
   each run beside one in a second home that holds a single (finished)
   job: the ratio N / 1 compares the two under the same load. (The figure
   at 1 job from step 1 was taken on a machine without N jobs; it is
   printed too, with its ratio, but a busy 2-core machine slows every
   command, so it is not the target's measure.);
6. log line -> visible: the `--log-sample` jobs print their line together;
   per job, its stamp -> the line in its stored log
   (SKYTUI_HOME/logs/jobs/<id>/0.log, polled every 20 ms), p50/p95/max, and
   `jobs logs --no-follow` of one of them must show it;
7. exit -> SUCCEEDED: the `--wave` jobs are released together at time T;
   per job, T -> its SUCCEEDED status event (the store's events), p50/p95/max,
   split at the moment the job wrote its exit stamp;
8. `jobs cancel -a -y`: wall time of the command, then the time until no
   job is in progress; then `controller stop`.

Each figure is printed beside its target (issue 11: controller + node host
idle CPU <= 10 % of one core; <= 1 MiB RSS per running job; exit noticed
p95 <= 1 s; log line visible p95 <= 1 s; cancel -a <= 2 s; queue --json at N
<= 1.5x at 1 job; and all N RUNNING at once) and SkyPilot's anchors
(/work/shared/reference/perf_rel.md: at most 2,000 running jobs on a 192-vCPU
controller, S4/S5; about 2 MB of controller memory per job, S4; `sky jobs
queue` 7.2 s at 10k jobs, S11; its 15 s status poll and 5 s log-follow
poll, S6), as ratios.

Exit 0 if every target passes, 1 otherwise (or on an error or Ctrl-C), 2
after `--timeout` seconds (the figures gathered so far are printed). On every
path it cancels everything, stops the controller, stops the node host, kills
whatever is left of its jobs and removes its temporary directory (unless
`--keep`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Never the real home, never a shared DB: set before anything reads them.
os.environ.pop("SKYTUI_DB_URL", None)

from harness import (
    arm_deadline,
    MIB,
    GlobalTimeout,
    Terminated,
    cpu_seconds,
    fmt_ratio,
    kill_home_processes,
    machine,
    pct,
    processes_in,
    read_pid,
    rss_bytes,
    sandboxes_left,
    stop_everything,
    system_cpu,
)

from skytui.clouds.local_layout import STATE_FILE
from skytui.config import Paths
from skytui.engine import daemon
from skytui.engine.status import IN_PROGRESS
from skytui.engine.store import Store
from skytui.logs.store import task_log_path

JOB_NAME = "scale"
BASE_NAME = "scale-base"
LINE_MARK = "scale-bench line"
# One `jobs launch --num-jobs` takes at most this many (cli.MAX_NUM_JOBS);
# beyond, the bench submits in chunks and passes the rank offset.
CHUNK = 10_000

TASK_YAML = f"""\
name: {JOB_NAME}
resources:
  infra: sim
envs:
  FLAG_DIR: ""
  WAVE: "0"
  LOGN: "0"
  RANK_BASE: "0"
run: |
  # Blocks without a process of its own: `read` on a FIFO is a builtin.
  # Ranks [0, LOGN) print a line, [LOGN, LOGN + WAVE) exit, the rest sleep.
  r=$(( RANK_BASE + ${{SKYPILOT_JOB_RANK:-0}} ))
  if [ "$r" -lt "$LOGN" ]; then
    until [ -e "$FLAG_DIR/log" ]; do read -r _ < "$FLAG_DIR/log.fifo"; done
    echo "{LINE_MARK} rank=$r at=$EPOCHREALTIME"
  elif [ "$r" -lt $(( LOGN + WAVE )) ]; then
    until [ -e "$FLAG_DIR/exit" ]; do read -r _ < "$FLAG_DIR/exit.fifo"; done
    echo "$EPOCHREALTIME" > "$FLAG_DIR/exited/$r"
    exit 0
  fi
  exec sleep 1000000
"""

# Targets (issue 11).
TARGET_IDLE_CPU_PCT = 10.0
TARGET_RSS_PER_JOB_MIB = 1.0
TARGET_EXIT_P95_S = 1.0
TARGET_LOG_P95_S = 1.0
TARGET_CANCEL_S = 2.0
TARGET_QUEUE_RATIO = 1.5
# Anchors (/work/shared/reference/perf_rel.md).
SKYPILOT_MAX_RUNNING = 2000  # S4/S5: MAX_TOTAL_RUNNING_JOBS, reached on a 192-vCPU controller
SKYPILOT_CONTROLLER_VCPUS = 192
SKYPILOT_MB_PER_JOB = 2.0  # S4: ~200-300 MB per controller process running up to 200 jobs
SKYPILOT_QUEUE_10K_S = 7.2  # S11: `sky jobs queue`, full CLI path, 10k jobs
SKYPILOT_STATUS_POLL_S = 15.0  # S6: JOB_STATUS_CHECK_GAP_SECONDS
SKYPILOT_LOG_POLL_S = 5.0  # S6: log-follow poll

PROGRESS_EVERY_S = 10.0
STATUS_POLL_S = 2.0
LOG_POLL_S = 0.02
PULSE_EVERY_S = 0.2
SETTLE_S = 5.0
BASE_CPU_S = 5.0
RUNNING = "RUNNING"
NUMBER = re.compile(r"(?<![\w-])[0-9]+(?![\w-])")  # "place 3 of 8" -> "place N of N": reasons grouped
IN_PROGRESS_NAMES = frozenset(s.value for s in IN_PROGRESS)


# ------------------------------------------------------------------ figures


@dataclass
class Cost:
    """CPU of the controller and the node host over one window, and their RSS at its end."""

    wall_s: float = 0.0
    controller_s: float | None = None
    nodehost_s: float | None = None
    shells_s: float | None = None  # the node host's reaped children (exec shells)
    machine_busy_pct: float | None = None
    controller_rss: int | None = None
    nodehost_rss: int | None = None

    def pct(self, seconds: float | None) -> float | None:
        return None if seconds is None or self.wall_s <= 0 else 100 * seconds / self.wall_s

    @property
    def total_pct(self) -> float | None:
        parts = [self.controller_s, self.nodehost_s]
        if any(v is None for v in parts):
            return None
        return self.pct(sum(v for v in parts if v is not None) + (self.shells_s or 0.0))

    @property
    def rss(self) -> int | None:
        if self.controller_rss is None or self.nodehost_rss is None:
            return None
        return self.controller_rss + self.nodehost_rss


@dataclass
class Figures:
    jobs: int
    machine: str = ""
    nofile: str = ""
    limits: dict[str, str] = field(default_factory=dict)
    queue_one: list[float] = field(default_factory=list)
    queue_many: list[float] = field(default_factory=list)
    queue_beside: list[float] = field(default_factory=list)  # at 1 job, run beside each queue_many
    queue_many_jobs: int | None = None
    base: Cost | None = None
    submit_s: float | None = None
    submit_line: str = ""
    running_s: float | None = None  # submit started -> the last job's first RUNNING event
    running_reached: int | None = None  # of the N, RUNNING at once
    peak_controller_rss: int = 0
    peak_nodehost_rss: int = 0
    stuck: str | None = None
    stuck_detail: list[str] = field(default_factory=list)
    not_running_at_end: dict[str, int] = field(default_factory=dict)
    last_counts: dict[str, int] = field(default_factory=dict)  # statuses at the last look while launching
    idle: Cost | None = None
    idle_status_events: int | None = None
    idle_log_bytes: int | None = None
    fds: dict[str, int] = field(default_factory=dict)
    log_lat: list[float] = field(default_factory=list)  # the job's stamp -> the line in the stored log
    log_release: list[float] = field(default_factory=list)  # released -> the line in the stored log
    log_sample: int = 0
    log_cli_ok: bool | None = None
    log_cli_s: float | None = None
    wave_size: int = 0
    wave_lat: list[float] = field(default_factory=list)  # T -> SUCCEEDED
    wave_wake: list[float] = field(default_factory=list)  # T -> the job's exit stamp
    wave_notice: list[float] = field(default_factory=list)  # exit stamp -> SUCCEEDED
    wave_other: Counter = field(default_factory=Counter)  # wave jobs that ended otherwise
    cancel_s: float | None = None
    cancel_line: str = ""
    cancel_in_progress: int | None = None
    drained_s: float | None = None
    stop_s: float | None = None
    stop_code: int | None = None
    cleanup: list[str] = field(default_factory=list)
    pids: dict[str, list[int]] = field(default_factory=dict)
    timed_out: bool = False
    error: str | None = None


# ------------------------------------------------------------------ helpers


def progress(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def raise_nofile() -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    new = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return f"RLIMIT_NOFILE soft {soft} -> {new} (hard {hard})"


def nofile_of(pid: int | None) -> str:
    if pid is None:
        return "?"
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return line.split()[3]
    return "?"


def fd_count(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class World:
    """The temporary skytui home, the `skytui` command that runs in it, and its processes."""

    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root = root
        self.paths = Paths(root / "home")
        self.paths.ensure()
        room = args.jobs + 64
        self.paths.config_file.write_text(
            "jobs:\n"
            "  controller:\n"
            f"    max_running: {room}\n"
            f"    max_launching: {args.max_launching}\n"
            "infra:\n"
            "  sim:\n"
            f"    provision_delay_s: {args.provision_delay_s:g}\n"
            f"    ondemand_capacity: {room}\n"
            f"    spot_capacity: {room}\n"
        )
        self.flags = root / "flags"
        (self.flags / "exited").mkdir(parents=True)
        os.mkfifo(self.flags / "exit.fifo", 0o600)
        os.mkfifo(self.flags / "log.fifo", 0o600)
        self.task = root / "scale.yaml"
        self.task.write_text(TASK_YAML)
        python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, "SKYTUI_HOME": str(self.paths.home), "PYTHONPATH": python_path}
        # As an installed skytui runs: with its bytecode cached (see bulk.py).
        if sys.flags.dont_write_bytecode or os.environ.get("PYTHONDONTWRITEBYTECODE"):
            self.env.pop("PYTHONDONTWRITEBYTECODE", None)
            self.env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        self._store: Store | None = None
        self.pids: dict[str, list[int]] = {"controller": [], "node host": []}  # every one seen, in order

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.paths.db_url)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
            self._store = None

    def cli(
        self, *argv: str, timeout: float = 600.0, home: Path | None = None
    ) -> tuple[float, subprocess.CompletedProcess[str]]:
        """`skytui ARGV` in this world's home, or in `home` (the 1-job reference)."""
        env = self.env if home is None else {**self.env, "SKYTUI_HOME": str(home)}
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "skytui.cli", *argv], env=env, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL, check=False, cwd=self.root,
        )
        return time.perf_counter() - started, proc

    def must(self, *argv: str, timeout: float = 600.0, home: Path | None = None) -> tuple[float, str]:
        seconds, proc = self.cli(*argv, timeout=timeout, home=home)
        if proc.returncode != 0:
            raise RuntimeError(f"`skytui {' '.join(argv)}` exited {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout).strip()[-800:]}")
        return seconds, proc.stdout

    def controller_pid(self) -> int | None:
        pid = daemon.controller_info(self.paths).pid
        if pid is not None and pid not in self.pids["controller"]:
            self.pids["controller"].append(pid)
        return pid

    def nodehost_pid(self) -> int | None:
        pid = read_pid(self.paths.nodes / STATE_FILE, "pid")
        if pid is not None and pid not in self.pids["node host"]:
            self.pids["node host"].append(pid)
        return pid

    def pulse(self, name: str) -> None:
        """Release every job blocked on the FIFO: a writer opens it and closes
        it; their `read` returns at once (no reader: nothing to do)."""
        with contextlib.suppress(OSError):
            os.close(os.open(self.flags / name, os.O_WRONLY | os.O_NONBLOCK))


class CostClock:
    def __init__(self, world: World) -> None:
        self.world = world
        self.ctrl = world.controller_pid()
        self.host = world.nodehost_pid()
        self.t0 = time.monotonic()
        self.c0 = cpu_seconds(self.ctrl)
        self.h0 = cpu_seconds(self.host)
        self.k0 = cpu_seconds(self.host, children=True)
        self.s0 = system_cpu()

    def stop(self) -> Cost:
        cost = Cost(wall_s=time.monotonic() - self.t0)
        same_ctrl = self.world.controller_pid() == self.ctrl
        same_host = self.world.nodehost_pid() == self.host
        c1, h1, k1 = cpu_seconds(self.ctrl), cpu_seconds(self.host), cpu_seconds(self.host, children=True)
        if same_ctrl and c1 is not None and self.c0 is not None:
            cost.controller_s = c1 - self.c0
        if same_host and h1 is not None and self.h0 is not None:
            cost.nodehost_s = h1 - self.h0
        if same_host and k1 is not None and self.k0 is not None:
            cost.shells_s = k1 - self.k0
        s1 = system_cpu()
        if s1[1] > self.s0[1]:
            cost.machine_busy_pct = 100 * (s1[0] - self.s0[0]) / (s1[1] - self.s0[1])
        cost.controller_rss = rss_bytes(self.ctrl) if self.ctrl else None
        cost.nodehost_rss = rss_bytes(self.host) if self.host else None
        return cost


class Events:
    """The store's events, read by id: each job's first RUNNING and its SUCCEEDED."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.after = 0
        self.first_running: dict[int, float] = {}
        self.succeeded: dict[int, float] = {}
        self.status_events = 0

    def poll(self) -> None:
        while True:
            batch = self.store.events(after_id=self.after, limit=5000)
            for e in batch:
                if e.kind != "status" or e.job_id is None:
                    continue
                self.status_events += 1
                if e.to_status == RUNNING:
                    self.first_running.setdefault(e.job_id, e.at)
                elif e.to_status == "SUCCEEDED":
                    self.succeeded[e.job_id] = e.at
            if batch:
                self.after = batch[-1].id
            if len(batch) < 5000:
                return


def counts(store: Store, ids: set[int] | None = None) -> Counter:
    return Counter(j.status for j in store.jobs() if ids is None or j.id in ids)


def show_counts(c: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])) or "none"


def controller_warnings(p: Paths, limit: int = 5) -> list[str]:
    try:
        with open(p.controller_log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 2_000_000))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    bad = [ln for ln in lines if " WARNING " in ln or " ERROR " in ln or "Traceback" in ln]
    return [f"{len(bad)} warning/error line(s) in the last 2 MB of controller.log"] + [ln[:200] for ln in bad[-limit:]]


def check_deadline(args: argparse.Namespace, what: str) -> None:
    if time.monotonic() > args.deadline:
        raise GlobalTimeout(what)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ------------------------------------------------------------------ the run


def run_bench(args: argparse.Namespace, world: World, fig: Figures) -> None:
    p = world.paths
    # Warm-up: the commands' bytecode, the DB file, and the spec checked.
    progress(args, "warming up the CLI (bytecode cache, empty DB)")
    world.must("jobs", "queue", "-a", "--json")
    world.must("validate", str(world.task))
    # The 1-job reference for the queue ratio: a second home holding one
    # finished job (run on `local`, its controller stopped: nothing of it runs).
    one_home = world.root / "one-home"
    one_task = world.root / "one.yaml"
    one_task.write_text("name: one\nresources:\n  infra: local\nrun: 'true'\n")
    world.must("jobs", "launch", "-y", str(one_task), home=one_home, timeout=120)
    world.must("controller", "stop", home=one_home, timeout=60)
    world.must("jobs", "queue", "-a", "--json", home=one_home)

    # ---- 1. one job: controller and node host up; reads and cost at 1 running
    progress(args, "one job first (starts the controller and the node host)")
    world.must("jobs", "launch", "-y", "-d", "-n", BASE_NAME, str(world.task))
    base_deadline = time.monotonic() + 120
    while counts(world.store).get(RUNNING, 0) < 1:
        check_deadline(args, "waiting for the first job")
        if time.monotonic() > base_deadline:
            raise RuntimeError(f"the first job is not RUNNING after 120 s: {show_counts(counts(world.store))}")
        time.sleep(0.2)
    time.sleep(SETTLE_S)
    ctrl, host = world.controller_pid(), world.nodehost_pid()
    fig.limits = {"controller": nofile_of(ctrl), "node host": nofile_of(host)}
    progress(args, f"controller pid {ctrl}, node host pid {host}; RLIMIT_NOFILE they got: "
                   f"{fig.limits['controller']}, {fig.limits['node host']}")
    progress(args, f"jobs queue -a --json x{args.repeats} at 1 job")
    for _ in range(args.repeats):
        seconds, out = world.must("jobs", "queue", "-a", "--json")
        fig.queue_one.append(seconds)
    clock = CostClock(world)
    time.sleep(BASE_CPU_S)
    fig.base = clock.stop()

    # ---- 2. submit N
    env = ["--env", f"FLAG_DIR={world.flags}", "--env", f"WAVE={args.wave}", "--env", f"LOGN={args.log_sample}"]
    progress(args, f"submitting {args.jobs} jobs")
    t_submit = time.time()
    fig.submit_s = 0.0
    rank_of: dict[int, int] = {}  # job id -> its rank among the N (the script's $r)
    for base in range(0, args.jobs, CHUNK):
        n = min(CHUNK, args.jobs - base)
        before = world.store.latest_job_id() or 0
        seconds, out = world.must("jobs", "launch", "-y", "-d", "--num-jobs", str(n), str(world.task),
                                  *env, "--env", f"RANK_BASE={base}", timeout=900)
        fig.submit_s += seconds
        fig.submit_line = next((ln for ln in out.splitlines() if "submitted" in ln.lower()), out.strip()[-120:])
        # Each chunk restarts SKYPILOT_JOB_RANK at 0; RANK_BASE is its offset.
        rank_of.update({j.id: base + j.job_rank for j in world.store.jobs()
                        if j.id > before and j.name == JOB_NAME and j.id not in rank_of})
    submitted_done = time.time()
    ids = set(rank_of)
    if len(ids) != args.jobs:
        raise RuntimeError(f"{len(ids)} jobs named {JOB_NAME!r} in the DB after submitting {args.jobs}")
    events = Events(world.store)

    # ---- 3. until all N are RUNNING (or stuck)
    progress(args, f"waiting for {args.jobs} RUNNING (at most {args.running_wait_s:g} s, "
                   f"stall {args.stall_s:g} s)")
    started = time.monotonic()
    last_print = last_running_change = started
    last_running = 0
    prev = (time.monotonic(), cpu_seconds(world.controller_pid()), cpu_seconds(world.nodehost_pid()),
            cpu_seconds(world.nodehost_pid(), children=True), 0)
    while True:
        check_deadline(args, "waiting for every job to be RUNNING")
        c = counts(world.store, ids)
        running = fig.running_reached = c.get(RUNNING, 0)
        fig.last_counts = dict(c)
        ctrl_pid, host_pid = world.controller_pid(), world.nodehost_pid()
        fig.peak_controller_rss = max(fig.peak_controller_rss, rss_bytes(ctrl_pid) or 0 if ctrl_pid else 0)
        fig.peak_nodehost_rss = max(fig.peak_nodehost_rss, rss_bytes(host_pid) or 0 if host_pid else 0)
        now = time.monotonic()
        if running != last_running:
            last_running, last_running_change = running, now
        if running == args.jobs:
            break
        if not any(s in IN_PROGRESS_NAMES and s != RUNNING for s in c):
            fig.stuck = f"no job left to start: {show_counts(c)}"
            break
        if now - started > args.running_wait_s:
            fig.stuck = f"not all RUNNING after {args.running_wait_s:g} s"
            break
        if now - last_running_change > args.stall_s:
            fig.stuck = f"no job became RUNNING for {args.stall_s:g} s"
            break
        if now - last_print >= PROGRESS_EVERY_S:
            t1, c1, h1, k1 = now, cpu_seconds(ctrl_pid), cpu_seconds(host_pid), cpu_seconds(host_pid, children=True)
            dt = t1 - prev[0]

            def share(a: float | None, b: float | None, dt: float = dt) -> str:
                return f"{100 * (a - b) / dt:3.0f}%" if a is not None and b is not None and dt > 0 else "  ?"

            load = Path("/proc/loadavg").read_text().split()[0]
            progress(args, f"t={now - started:6.1f}s {show_counts(c)}; +{(running - prev[4]) / dt:.1f} RUNNING/s; "
                           f"controller {share(c1, prev[1])} {(rss_bytes(ctrl_pid) or 0) / MIB if ctrl_pid else 0:.0f} MiB"
                           f"{'' if ctrl_pid else ' (NOT RUNNING)'}, node host {share(h1, prev[2])}"
                           f"+{share(k1, prev[3]).strip()} shells {(rss_bytes(host_pid) or 0) / MIB if host_pid else 0:.0f}"
                           f" MiB; load {load}")
            prev = (t1, c1, h1, k1, running)
            last_print = now
        time.sleep(STATUS_POLL_S)
    events.poll()
    reached = [events.first_running[j] for j in ids if j in events.first_running]
    c = counts(world.store, ids)
    fig.running_reached = c.get(RUNNING, 0)
    if fig.stuck is None and reached:
        fig.running_s = max(reached) - t_submit
        progress(args, f"all {args.jobs} RUNNING {fig.running_s:.1f} s after the submit began "
                       f"({max(reached) - submitted_done:.1f} s after it returned)")
    else:
        fig.stuck_detail.append(f"statuses: {show_counts(c)}")
        not_running = sorted(j.id for j in world.store.jobs() if j.id in ids and j.status != RUNNING
                             and j.status in IN_PROGRESS_NAMES)
        if not_running:
            sample = not_running[:400]
            reasons = Counter()
            for tasks in world.store.tasks_of_jobs(sample).values():
                for t in tasks:
                    reasons[f"{t.status}: {NUMBER.sub('N', t.status_reason or '(no reason)')[:110]}"] += 1
            fig.stuck_detail.append(f"what {len(sample)} of the {len(not_running)} waiting jobs say:")
            fig.stuck_detail += [f"  {n:5d} x {r}" for r, n in reasons.most_common(5)]
        fig.stuck_detail += controller_warnings(p)
        progress(args, f"STUCK: {fig.stuck}; {show_counts(c)}")
        if not_running:
            progress(args, f"cancelling the {len(not_running)} jobs not RUNNING, to measure the rest at "
                           f"{fig.running_reached} RUNNING")
            from skytui.client import Client

            client = Client(p)
            try:
                client.cancel(not_running)
            finally:
                client.close()
            drain_deadline = time.monotonic() + 120
            while time.monotonic() < drain_deadline:
                check_deadline(args, "waiting for the jobs not RUNNING to be cancelled")
                c = counts(world.store, ids)
                if not any(s in IN_PROGRESS_NAMES and s != RUNNING for s in c):
                    break
                time.sleep(STATUS_POLL_S)
            fig.not_running_at_end = {k: v for k, v in counts(world.store, ids).items() if k != RUNNING}
            progress(args, f"now: {show_counts(counts(world.store, ids))}")
    running_ids = {j.id for j in world.store.jobs() if j.id in ids and j.status == RUNNING}
    n_running = len(running_ids)

    # ---- 4. idle: every job RUNNING, none printing
    time.sleep(SETTLE_S)
    events.poll()
    status_before = events.status_events
    log_bytes_before = sum(f.stat().st_size for f in p.job_logs.glob("*/0.log"))
    progress(args, f"idle window: {args.idle_s:g} s with {n_running} (+1) RUNNING, nobody printing")
    clock = CostClock(world)
    deadline_idle = time.monotonic() + args.idle_s
    while time.monotonic() < deadline_idle:
        check_deadline(args, "idle window")
        time.sleep(min(1.0, max(0.0, deadline_idle - time.monotonic())))
    fig.idle = clock.stop()
    fig.fds = {"controller": fd_count(clock.ctrl) or 0, "node host": fd_count(clock.host) or 0}
    events.poll()
    fig.idle_status_events = events.status_events - status_before
    fig.idle_log_bytes = sum(f.stat().st_size for f in p.job_logs.glob("*/0.log")) - log_bytes_before
    fig.running_reached = n_running
    progress(args, f"idle: controller {fig.idle.pct(fig.idle.controller_s) or 0:.1f}%, node host "
                   f"{fig.idle.pct(fig.idle.nodehost_s) or 0:.1f}% (+{fig.idle.pct(fig.idle.shells_s) or 0:.1f}% shells), "
                   f"RSS {(fig.idle.rss or 0) / MIB:.0f} MiB")

    # ---- 5. queue at N
    progress(args, f"jobs queue -a --json x{args.repeats} at {args.jobs + 1} jobs")
    for _ in range(args.repeats):
        check_deadline(args, "queue at N")
        seconds, _out = world.must("jobs", "queue", "-a", "--json", home=one_home)
        fig.queue_beside.append(seconds)
        seconds, out = world.must("jobs", "queue", "-a", "--json", timeout=300)
        fig.queue_many.append(seconds)
        fig.queue_many_jobs = len(json.loads(out)["jobs"])

    # ---- 6. log line -> visible
    sample = sorted(j for j in running_ids if rank_of[j] < args.log_sample)
    fig.log_sample = len(sample)
    if sample:
        progress(args, f"log line -> visible: {len(sample)} jobs print one line each")
        paths = {j: task_log_path(p.job_logs, j, 0) for j in sample}
        sizes = {j: -1 for j in sample}
        seen: dict[int, float] = {}
        stamped: dict[int, float] = {}
        t_log = time.time()
        (world.flags / "log").touch()
        world.pulse("log.fifo")
        last_pulse = time.monotonic()
        log_deadline = time.monotonic() + args.log_wait_s
        pattern = re.compile(rf"{LINE_MARK} rank=\d+ at=([0-9.]+)")
        while len(seen) < len(sample) and time.monotonic() < log_deadline:
            check_deadline(args, "waiting for the log lines")
            for j in sample:
                if j in seen:
                    continue
                try:
                    size = paths[j].stat().st_size
                except FileNotFoundError:
                    continue
                if size == sizes[j]:
                    continue
                sizes[j] = size
                now = time.time()
                m = pattern.search(paths[j].read_text(errors="replace"))
                if m:
                    seen[j], stamped[j] = now, float(m.group(1))
            if time.monotonic() - last_pulse > PULSE_EVERY_S:
                world.pulse("log.fifo")  # a job that reached its `read` late
                last_pulse = time.monotonic()
            time.sleep(LOG_POLL_S)
        fig.log_lat = [seen[j] - stamped[j] for j in seen]
        fig.log_release = [seen[j] - t_log for j in seen]
        progress(args, f"{len(seen)}/{len(sample)} lines visible")
        if seen:
            j = min(seen)
            fig.log_cli_s, proc = world.cli("jobs", "logs", str(j), "--no-follow", timeout=120)
            fig.log_cli_ok = proc.returncode == 0 and LINE_MARK in proc.stdout

    # ---- 7. exit -> SUCCEEDED for a wave
    wave = sorted(j for j in running_ids if args.log_sample <= rank_of[j] < args.log_sample + args.wave)
    fig.wave_size = len(wave)
    if wave:
        progress(args, f"exit wave: {len(wave)} jobs released together")
        events.poll()
        t_release = time.time()
        (world.flags / "exit").touch()
        world.pulse("exit.fifo")
        wave_set = set(wave)
        wave_deadline = time.monotonic() + args.wave_wait_s
        last_print = time.monotonic()
        while time.monotonic() < wave_deadline:
            check_deadline(args, "waiting for the wave to succeed")
            world.pulse("exit.fifo")
            time.sleep(PULSE_EVERY_S)
            events.poll()
            done = wave_set & set(events.succeeded)
            if len(done) == len(wave_set):
                break
            if time.monotonic() - last_print > PROGRESS_EVERY_S:
                last_print = time.monotonic()
                progress(args, f"  {len(done)}/{len(wave_set)} SUCCEEDED, "
                               f"{show_counts(counts(world.store, wave_set))}")
        events.poll()
        for j in wave:
            at = events.succeeded.get(j)
            if at is None:
                continue
            fig.wave_lat.append(at - t_release)
            with contextlib.suppress(OSError, ValueError):
                exited = float((world.flags / "exited" / str(rank_of[j])).read_text().strip())
                fig.wave_wake.append(exited - t_release)
                fig.wave_notice.append(at - exited)
        fig.wave_other = Counter(s for s in (counts(world.store, wave_set)).elements() if s != "SUCCEEDED")
        progress(args, f"{len(fig.wave_lat)}/{len(wave)} SUCCEEDED")

    # ---- 8. cancel everything
    progress(args, "jobs cancel -a -y")
    fig.cancel_in_progress = sum(1 for j in world.store.jobs() if j.status in IN_PROGRESS_NAMES)
    t_cancel = time.monotonic()
    fig.cancel_s, out = world.must("jobs", "cancel", "-a", "-y", timeout=600)
    fig.cancel_line = next((ln for ln in out.splitlines() if ln.strip()), "")
    last_print = time.monotonic()
    while True:
        check_deadline(args, "waiting for the cancels to finish")
        left = Counter(j.status for j in world.store.jobs() if j.status in IN_PROGRESS_NAMES)
        if not left:
            fig.drained_s = time.monotonic() - t_cancel
            break
        if time.monotonic() - t_cancel > args.cancel_wait_s:
            progress(args, f"still in progress {args.cancel_wait_s:g} s after cancel -a: {show_counts(left)}")
            break
        if time.monotonic() - last_print > PROGRESS_EVERY_S:
            last_print = time.monotonic()
            progress(args, f"t={time.monotonic() - t_cancel:6.1f}s in progress: {show_counts(left)}")
        time.sleep(1.0 if len(left) > 1000 else 0.2)
    if fig.drained_s is not None:
        progress(args, f"no job in progress {fig.drained_s:.1f} s after cancel -a began")
    progress(args, "controller stop")
    fig.stop_s, proc = world.cli("controller", "stop", timeout=120)
    fig.stop_code = proc.returncode


def clean_up(world: World, fig: Figures, args: argparse.Namespace) -> None:
    """Cancel everything, stop the controller and the node host, kill what is left."""
    p = world.paths
    with contextlib.suppress(Exception):
        if daemon.controller_info(p).running or any(
                j.status in IN_PROGRESS_NAMES for j in world.store.jobs()):
            progress(args, "clean-up: cancel -a, then controller stop")
            world.cli("jobs", "cancel", "-a", "-y", timeout=60)
            deadline = time.monotonic() + args.cleanup_wait_s
            while time.monotonic() < deadline and any(j.status in IN_PROGRESS_NAMES for j in world.store.jobs()):
                time.sleep(0.5)
            world.cli("controller", "stop", timeout=60)
    left = sum(1 for j in world.store.jobs() if j.status in IN_PROGRESS_NAMES) if world._store else 0
    world.close()
    # `controller stop` returns once the lock is free; the process exits a moment later.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in world.pids["controller"]):
        time.sleep(0.05)
    sandboxes = sandboxes_left(p)
    living = processes_in(p.nodes, exclude=os.getpid())
    world.nodehost_pid()
    host_pid = world.pids["node host"][-1] if world.pids["node host"] else None
    stop_everything(p)
    named = {pid: describe(pid) for pid in home_processes(p.home)}
    killed = kill_home_processes(p.home)
    after = processes_in(p.nodes, exclude=os.getpid())
    fig.cleanup.append(
        f"jobs still in progress at clean-up {left}; sandboxes left {len(sandboxes)}; processes in sandboxes "
        f"{len(living)} (killed; {len(after)} after); node host {host_pid} "
        f"{'gone' if host_pid is None or rss_bytes(host_pid) is None else 'STILL THERE'}; other processes of "
        f"the home killed: {len(killed)}" + (f" ({'; '.join(named.get(k, str(k)) for k in killed[:5])})" if killed else "")
    )


def alive(pid: int) -> bool:
    """Running (a zombie is not: it waits for a parent that may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def home_processes(home: Path) -> list[int]:
    """Processes of this home, as kill_home_processes finds them (SKYTUI_HOME in their environment)."""
    marker = f"SKYTUI_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0") or \
                        str(home).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return str(pid)
    return f"{pid} {cmd[:80]}"


# ------------------------------------------------------------------- report


def verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


def report(fig: Figures, args: argparse.Namespace) -> bool:
    checks: list[bool] = []

    def line(label: str, value: str, ok: bool | None, target: str = "", anchor: str = "") -> None:
        if ok is not None:
            checks.append(ok)
        print(f"  {verdict(ok)}  {label:<40} {value:<24} {('target ' + target) if target else '':<20} {anchor}")

    def dist(values: list[float]) -> str:
        return f"p50 {pct(values, 50):.2f} p95 {pct(values, 95):.2f} max {max(values):.2f} s"

    n = fig.jobs
    print()
    print(f"skytui bench/scale.py — {n} sleeping jobs on sim, all RUNNING at once "
          f"(max_launching {args.max_launching}, sim provision_delay_s {args.provision_delay_s:g})")
    print(f"machine: {fig.machine}")
    print(f"limits: {fig.nofile}; controller got {fig.limits.get('controller', '?')}, "
          f"node host {fig.limits.get('node host', '?')}")
    if fig.timed_out:
        print(f"!! TIMEOUT after {args.timeout:g} s ({fig.error or ''}): the figures below are partial")
    elif fig.error:
        print(f"!! ERROR: {fig.error}")
    print()
    if fig.submit_s:
        print(f"  submit: {n} jobs in {fig.submit_s:.2f} s ({n / fig.submit_s:,.0f} jobs/s); printed: "
              f"{fig.submit_line[:100]!r}")
    if fig.running_reached is not None:
        reached = fig.running_reached
        per_vcpu = (reached / (os.cpu_count() or 2)) / (SKYPILOT_MAX_RUNNING / SKYPILOT_CONTROLLER_VCPUS)
        anchor = (f"SkyPilot: <= {SKYPILOT_MAX_RUNNING:,} on {SKYPILOT_CONTROLLER_VCPUS} vCPUs "
                  f"({fmt_ratio(reached / SKYPILOT_MAX_RUNNING)} the jobs, {fmt_ratio(per_vcpu)} per vCPU)")
        line("jobs RUNNING at once", f"{reached:,} of {n:,}", reached == n, f"{n:,}", anchor)
        if fig.running_s is None and fig.stuck is None:
            print(f"        interrupted while launching: {show_counts(Counter(fig.last_counts))}")
        if fig.running_s is not None:
            line("time until all RUNNING", f"{fig.running_s:.1f} s ({n / fig.running_s:.1f}/s)", None)
        if fig.stuck:
            print(f"        stuck: {fig.stuck}")
            for detail in fig.stuck_detail:
                print(f"          {detail}")
            if fig.not_running_at_end:
                print(f"          after cancelling the rest: {show_counts(Counter(fig.not_running_at_end))}; "
                      f"the figures below are at {reached:,} RUNNING")
        print(f"        peak RSS while launching: controller {fig.peak_controller_rss / MIB:.0f} MiB, "
              f"node host {fig.peak_nodehost_rss / MIB:.0f} MiB")
    base, idle = fig.base, fig.idle
    if base is not None:
        print(f"  at 1 running ({base.wall_s:.0f} s): controller {base.pct(base.controller_s) or 0:.1f}% "
              f"{(base.controller_rss or 0) / MIB:.0f} MiB, node host {base.pct(base.nodehost_s) or 0:.1f}% "
              f"(+{base.pct(base.shells_s) or 0:.1f}% shells) {(base.nodehost_rss or 0) / MIB:.0f} MiB")
    if idle is not None and fig.running_reached:
        reached = fig.running_reached
        print(f"  idle at {reached:,} (+1) running, {idle.wall_s:.0f} s: controller {idle.pct(idle.controller_s) or 0:.1f}%, "
              f"node host {idle.pct(idle.nodehost_s) or 0:.1f}%, its exec shells {idle.pct(idle.shells_s) or 0:.1f}% "
              f"(machine {idle.machine_busy_pct or 0:.0f}% busy of {os.cpu_count()} CPUs); "
              f"{fig.idle_status_events} status events and {fig.idle_log_bytes} log bytes in the window; "
              f"open fds: controller {fig.fds.get('controller')}, node host {fig.fds.get('node host')}")
        total = idle.total_pct
        line("idle CPU, controller + node host", "n/a" if total is None else f"{total:.1f}% of a core",
             None if total is None else total <= TARGET_IDLE_CPU_PCT, f"<= {TARGET_IDLE_CPU_PCT:g}%",
             "(shells included)")
        if base is not None and base.rss is not None and idle.rss is not None:
            per_job = (idle.rss - base.rss) / reached / MIB
            print(f"        RSS controller + node host: {base.rss / MIB:.0f} MiB at 1 running, "
                  f"{idle.rss / MIB:.0f} MiB at {reached:,} (controller {(idle.controller_rss or 0) / MIB:.0f}, "
                  f"node host {(idle.nodehost_rss or 0) / MIB:.0f})")
            line("RSS per running job", f"{per_job * 1024:.0f} KiB", per_job <= TARGET_RSS_PER_JOB_MIB,
                 f"<= {TARGET_RSS_PER_JOB_MIB:g} MiB",
                 f"SkyPilot ~{SKYPILOT_MB_PER_JOB:g} MB/job ({fmt_ratio(SKYPILOT_MB_PER_JOB * 1e6 / MIB / per_job)} "
                 "less)" if per_job > 0 else f"SkyPilot ~{SKYPILOT_MB_PER_JOB:g} MB/job")
    if fig.queue_one:
        one = median(fig.queue_one)
        print(f"  queue -a --json runs: 1 job (step 1) {', '.join(f'{s:.2f}' for s in fig.queue_one)} s"
              + (f"; {fig.queue_many_jobs} jobs {', '.join(f'{s:.2f}' for s in fig.queue_many)} s, "
                 f"1 job beside them {', '.join(f'{s:.2f}' for s in fig.queue_beside)} s" if fig.queue_many else ""))
        line("queue -a --json at 1 job (step 1)", f"{one:.2f} s", None)
        if fig.queue_many:
            many, beside = median(fig.queue_many), median(fig.queue_beside)
            anchor = f"SkyPilot S11: {SKYPILOT_QUEUE_10K_S:g} s at 10k"
            if (fig.queue_many_jobs or 0) >= 10_000:
                anchor += f" ({fmt_ratio(SKYPILOT_QUEUE_10K_S / many)} as fast)"
            line(f"queue -a --json at {fig.queue_many_jobs} jobs", f"{many:.2f} s", None, "", anchor)
            line("queue -a --json at 1 job, beside", f"{beside:.2f} s", None)
            line("queue ratio N / 1 (beside)", f"{many / beside:.2f}x", many / beside <= TARGET_QUEUE_RATIO,
                 f"<= {TARGET_QUEUE_RATIO:g}x", f"against step 1's quiet machine: {many / one:.2f}x")
    if fig.log_sample:
        value = f"{pct(fig.log_lat, 95):.2f} s" if fig.log_lat else "none seen"
        ok = len(fig.log_lat) == fig.log_sample and pct(fig.log_lat, 95) <= TARGET_LOG_P95_S
        line(f"log line -> visible p95 ({len(fig.log_lat)}/{fig.log_sample})", value, ok,
             f"<= {TARGET_LOG_P95_S:g} s",
             f"SkyPilot log-follow poll {SKYPILOT_LOG_POLL_S:g} s"
             + (f" ({fmt_ratio(SKYPILOT_LOG_POLL_S / pct(fig.log_lat, 95))} as fast)" if fig.log_lat else ""))
        if fig.log_lat:
            print(f"        printed -> stored {dist(fig.log_lat)}; released -> stored {dist(fig.log_release)}")
            print(f"        `jobs logs --no-follow` shows it: "
                  f"{'yes' if fig.log_cli_ok else 'NO'} ({fig.log_cli_s or 0:.2f} s)")
    if fig.wave_size:
        value = f"{pct(fig.wave_lat, 95):.2f} s" if fig.wave_lat else "none"
        ok = len(fig.wave_lat) == fig.wave_size and pct(fig.wave_lat, 95) <= TARGET_EXIT_P95_S
        line(f"exit -> SUCCEEDED p95 ({len(fig.wave_lat)}/{fig.wave_size})", value, ok,
             f"<= {TARGET_EXIT_P95_S:g} s",
             f"SkyPilot status poll {SKYPILOT_STATUS_POLL_S:g} s"
             + (f" ({fmt_ratio(SKYPILOT_STATUS_POLL_S / pct(fig.wave_lat, 95))} as fast)" if fig.wave_lat else ""))
        if fig.wave_lat:
            print(f"        release -> SUCCEEDED {dist(fig.wave_lat)}")
        if fig.wave_wake:
            print(f"        release -> job exited {dist(fig.wave_wake)}; exited -> SUCCEEDED {dist(fig.wave_notice)}")
        if fig.wave_other:
            print(f"        wave jobs not SUCCEEDED: {show_counts(fig.wave_other)}")
    if fig.cancel_s is not None:
        print(f"  cancel -a with {fig.cancel_in_progress:,} jobs in progress; printed: {fig.cancel_line[:100]!r}")
        line("jobs cancel -a", f"{fig.cancel_s:.2f} s", fig.cancel_s <= TARGET_CANCEL_S, f"<= {TARGET_CANCEL_S:g} s",
             f"SkyPilot: 'hard to handle cancellation of >{SKYPILOT_MAX_RUNNING:,} jobs' (S4)")
        drained = f"{fig.drained_s:.1f} s" if fig.drained_s is not None else f"not within {args.cancel_wait_s:g} s"
        line("cancel -a -> no job in progress", drained, None, "", "goal: 2,000 jobs < 30 s")
    if fig.stop_s is not None:
        line("controller stop", f"{fig.stop_s:.2f} s (exit {fig.stop_code})", None)
    for who, pids in fig.pids.items():
        if len(pids) > 1:
            print(f"  !! the {who} was restarted during the run: pids {pids}")
    for text in fig.cleanup:
        print(f"  clean-up: {text}")
    if (nproc := os.cpu_count()) and nproc != 2:
        print(f"  note: this machine has {nproc} CPUs; the project's reference machine has 2")
    if fig.timed_out:
        print(f"timed out after {args.timeout:g} s: the figures above are partial")
    return bool(checks) and all(checks) and not fig.error and not fig.timed_out


# --------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs RUNNING at once (default 10,000)")
    parser.add_argument("--wave", type=int, default=1000, help="jobs that exit together (default 1,000)")
    parser.add_argument("--log-sample", type=int, default=50, help="jobs that print a line together (default 50)")
    parser.add_argument("--idle-s", type=float, default=60.0, help="the idle window (default 60 s)")
    parser.add_argument("--max-launching", type=int, default=64, help="jobs.controller.max_launching (default 64)")
    parser.add_argument("--provision-delay-s", type=float, default=0.0, help="infra.sim.provision_delay_s (default 0)")
    parser.add_argument("--running-wait-s", type=float, default=900.0,
                        help="give up waiting for all RUNNING after this long (default 900 s)")
    parser.add_argument("--stall-s", type=float, default=180.0,
                        help="... or when no job became RUNNING for this long (default 180 s)")
    parser.add_argument("--wave-wait-s", type=float, default=300.0, help="wait this long for the wave to succeed")
    parser.add_argument("--log-wait-s", type=float, default=60.0, help="wait this long for the log lines")
    parser.add_argument("--cancel-wait-s", type=float, default=900.0,
                        help="wait this long after cancel -a for no job in progress")
    parser.add_argument("--cleanup-wait-s", type=float, default=60.0,
                        help="on an early exit, wait this long for the cancels before killing what is left")
    parser.add_argument("--repeats", type=int, default=3, help="runs of `queue -a --json` at 1 and at N (default 3)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args()
    if args.jobs < 1 or args.repeats < 1:
        parser.error("--jobs and --repeats must be 1 or more")
    if args.wave < 0 or args.log_sample < 0 or args.wave + args.log_sample > args.jobs:
        parser.error("--wave + --log-sample must be between 0 and --jobs")

    fig = Figures(jobs=args.jobs, machine=machine())
    # Before anything starts: the CLI, the controller it starts and the node
    # host the controller starts all inherit this process's limits.
    fig.nofile = raise_nofile()
    args.deadline = time.monotonic() + args.timeout
    root = Path(tempfile.mkdtemp(prefix="skytui-scale-"))
    world = World(root, args)

    arm_deadline(int(args.timeout) + 1, message="global timeout")
    print(f"skytui bench/scale.py: {args.jobs} jobs, SKYTUI_HOME {world.paths.home} (temporary)")
    print(f"machine: {fig.machine}; {fig.nofile}", flush=True)
    try:
        run_bench(args, world, fig)
    except GlobalTimeout as exc:
        fig.timed_out = True
        fig.error = str(exc) or None
    except (KeyboardInterrupt, Terminated):
        fig.error = "interrupted"
    except Exception as exc:  # noqa: BLE001 - report what we have
        fig.error = f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
        # The clean-up runs to its end: no Ctrl-C in the middle, bounded by its own alarm.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.alarm(int(args.cleanup_wait_s) + 240)
        try:
            clean_up(world, fig, args)
        except GlobalTimeout:
            fig.cleanup.append("clean-up timed out; killing what is left")
            with contextlib.suppress(Exception):
                stop_everything(world.paths)
                kill_home_processes(world.paths.home)
        except Exception as exc:  # noqa: BLE001
            fig.cleanup.append(f"clean-up error: {type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):
                kill_home_processes(world.paths.home)
        finally:
            signal.alarm(0)
            if args.keep:
                print(f"kept {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    fig.pids = world.pids
    ok = report(fig, args)
    if fig.timed_out:
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
