"""Chaos: a soak on the `sim` infra that proves nothing is lost under faults.

    .venv/bin/python bench/chaos.py [--jobs 1000] [--timeout 3600 | --minutes M] [--seed 1]
        [--kill-every-s 15] [--drop-every-s 20] [--drop-mode ss|kill-nodehost]
        [--stockout-region aws/us-east-1] [--stockout-at-s 10] [--stockout-s 60]
        [--preempt-share 0.2] [--lines 20] [--line-interval-s 1] [--fail-at-line N]
        [--max-running 64] [--max-launching 32] [--capacity 64] [--provision-delay-s 0.5]
        [--pool-workers W] [--rounds R] [--restart explicit|client] [--restart-delay-s 1]
        [--settle-s 30] [--summary-json PATH] [--quiet] [--keep] [-v]

Into a fresh, temporary SKYTUI_HOME it makes a pool (`skytui jobs pool apply`)
and submits --jobs managed jobs on sim (`skytui jobs launch -y -d --num-jobs K`,
in --rounds rounds so the kinds interleave in the queue), each printing a known
numbered sequence, `chaos job <SKYPILOT_JOB_ID> task <T> line <i>` for i = 1..
--lines (20), one every --line-interval-s (1 s):

* 70 % single-task spot jobs (`infra: sim, cpus: 2+, use_spot: true`);
* 10 % 3-task pipelines (a multi-document YAML; each task prints its own
  sequence);
* 10 % with `job_recovery: {max_restarts_on_errors: 1}` whose first attempt
  to reach line --fail-at-line (a third of --lines) exits 7 (the marker is
  a `mkdir` in a folder of the bench's temporary directory, outside every
  sandbox, passed with `--env CHAOS_MARKS=...`; each attempt gets a fresh
  sandbox, so only a folder outside it can say "an earlier attempt already
  failed");
* 10 % on the pool (`skytui jobs launch -p chaos-pool`).

From the first `jobs launch` on (later launches may meet a dead controller,
which the CLI restarts as it would for a user), the faults:

* --preempt-share (20 %) of the jobs, chosen by --seed, are preempted
  (`Client.sim_preempt`, as `skytui sim preempt ID`) at a random moment of
  their run (uniform over the first 70 % of it, after the bench first sees
  them RUNNING; a job with no machine up at that moment is tried again on the
  next poll until it has one or has finished);
* the controller is killed with SIGKILL every --kill-every-s (15 s). With
  `--restart client` (the default) nothing restarts it but client contact,
  as for a user: `skytui jobs queue --json --skip-finished` every 5 s brings
  a dead controller back by itself. `--restart explicit` (RESTART_EXPLICITLY
  below) restarts it --restart-delay-s later instead (`daemon.start_controller`,
  what `skytui controller start` runs, minus a CLI process);
* every --drop-every-s (20 s) every TCP connection to the node host (the
  asyncssh server on 127.0.0.1 that serves the sim machines) is destroyed
  with `ss -K` (needs root and a kernel with CONFIG_INET_DIAG_DESTROY: the
  bench probes it first and says so). Both ends see a reset, the node host
  and the jobs keep running: exactly an SSH drop, with no change to the
  product. `--drop-mode kill-nodehost` SIGKILLs the node host instead (jobs
  run in their own sessions and survive; the controller starts a new one);
* --stockout-region (aws/us-east-1, where these jobs land first: cheapest)
  is stocked out (`skytui sim stockout REGION on|off`) for --stockout-s
  (60 s), --stockout-at-s after the faults begin.

When every job has reached a terminal state the faults stop, the pool is
taken down (`skytui jobs pool down -y`), and it checks and prints:

* jobs lost: not terminal (or missing) at the end; must be 0;
* wrong final states: terminal but not SUCCEEDED (the job, or any task of a
  pipeline); must be 0; FAILED_CONTROLLER counted on its own, must be 0;
* leaked machines: sandboxes with a node marker under nodes/, cluster rows
  still live, and processes still living in a sandbox, once every job is
  terminal and the pool is down (polled for up to --settle-s); must be 0;
* log lines lost or duplicated within an attempt: each task's stored log
  ($SKYTUI_HOME/logs/jobs/<id>/<task>.log) is cut into attempts by its log
  segments (the DB says where each phase starts); within an attempt the
  sequence must be 1, 2, ..., k with no gap, repeat or foreign line; the
  attempt that exited 0 must reach --lines, a deliberate failure must stop
  at --fail-at-line. The same lines as the user reads them
  (`LogFollower`, what `skytui jobs logs --no-follow` prints) must restart
  their sequence only after an attempt separator; all must be 0;
* needless relaunches: per job, recoveries (the queue's count) minus the
  restarts on errors minus the preemptions that landed on that job's
  machine; and, independent of any counter, the times the job's `run`
  started (run log segments) beyond one per task plus those; both must be 0.
  The reasons those jobs' controller logs give for their recoveries are
  tallied (names and numbers taken out) to point at the cause;
* the time it took, the controller kills and restarts (and how long it was
  down), the SSH drops (connections reset), detection (preemption ->
  RECOVERING) under these faults, CPU of the controllers, node host, bench
  and machine, the ERROR lines of controller.log by message, and the anchors (perf_rel.md F8/F9/F10/F19, S9) as ratios.

It never touches the real ~/.skytui; on every exit path (error, Ctrl-C,
SIGTERM, --timeout) it turns the stock-out off, kills its controller and node
host, kills every process left in its temporary home and removes it (unless
--keep). Exit 0 when every check passes, 1 otherwise, 2 after --timeout (the
partial figures are printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Never the real home, never a shared DB: set before anything reads them.
os.environ.pop("SKYTUI_DB_URL", None)

from harness import (  # noqa: E402
    arm_deadline,
    GlobalTimeout,
    Terminated,
    cpu_seconds,
    fmt_ratio,
    is_our_process,
    kill_home_processes,
    machine,
    own_cpu,
    pct,
    processes_in,
    read_pid,
    rss_bytes,
    run_cli,
    sandboxes_left,
    stop_everything,
    system_cpu,
)

from skytui.client import Client, JobView  # noqa: E402
from skytui.clouds.local_layout import STATE_FILE  # noqa: E402
from skytui.config import Paths  # noqa: E402
from skytui.engine import daemon  # noqa: E402
from skytui.engine.status import TERMINAL, TaskStatus  # noqa: E402
from skytui.engine.store import ClusterRow, SegmentRow  # noqa: E402
from skytui.logs.store import task_log_path  # noqa: E402

POOL = "chaos-pool"
SPOT, PIPELINE, RESTART, POOLED = "spot", "pipeline", "restart", "pool"
KINDS = (SPOT, PIPELINE, RESTART, POOLED)
PIPELINE_TASKS = 3
FAIL_EXIT_CODE = 7

SUCCEEDED = TaskStatus.SUCCEEDED.value
RUNNING = TaskStatus.RUNNING.value
RECOVERING = TaskStatus.RECOVERING.value
FAILED_CONTROLLER = TaskStatus.FAILED_CONTROLLER.value
TERMINAL_VALUES = {s.value for s in TERMINAL}

LINE_RE = re.compile(r"^chaos job (\d+) task (\d+) line (\d+)$")
FOLLOWER_PREFIX_RE = re.compile(r"^\([^)]*\) ")
SEPARATOR = "────"

# Anchors (/work/shared/reference/perf_rel.md).
ANCHOR_5031_FAILED_CONTROLLER_SHARE = 2 / 3  # F19: 100-200 spot jobs, 2/3 FAILED_CONTROLLER
ANCHOR_10155_RELAUNCH_PER_FLAP = 24 / 25  # F10: 25 SSH timeouts -> 24 recoveries of a healthy job
ANCHOR_S9_DETECT_S = 45.0  # S9: RECOVERING within 3 x 15 s of a deleted machine

POLL_S = 1.0
SAMPLE_S = 0.2
PROGRESS_EVERY_S = 10.0
CONTACT_EVERY_S = 5.0  # --restart client: `skytui jobs queue --json` this often
PREEMPT_WINDOW_SHARE = 0.7  # preempt within the first 70 % of a job's run
MIB = 1024 * 1024


# ------------------------------------------------------------------ the jobs


def sequence_loop(task: int, args: argparse.Namespace, *, fail_at: int | None = None) -> str:
    """The `run` of one task: its numbered sequence, optionally failing once."""
    fail = ""
    if fail_at is not None:
        # mkdir is atomic: exactly one attempt (the first to get here) fails.
        fail = (
            f'  if [ "$i" = "{fail_at}" ] && mkdir "$CHAOS_MARKS/job-$SKYPILOT_JOB_ID" 2>/dev/null; '
            f"then exit {FAIL_EXIT_CODE}; fi\n"
        )
    return (
        "run: |\n"
        f"  for i in $(seq 1 {args.lines}); do\n"
        f'  echo "chaos job $SKYPILOT_JOB_ID task {task} line $i"\n'
        f"{fail}"
        f"  sleep {args.line_interval_s:g}\n"
        "  done\n"
    )


RESOURCES = "resources:\n  infra: sim\n  cpus: 2+\n  use_spot: true\n"


def spot_yaml(args: argparse.Namespace) -> str:
    return "name: chaos-spot\n" + RESOURCES + sequence_loop(0, args)


def restart_yaml(args: argparse.Namespace) -> str:
    return (
        "name: chaos-restart\n" + RESOURCES + "  job_recovery:\n    max_restarts_on_errors: 1\n"
        + sequence_loop(0, args, fail_at=args.fail_at_line)
    )


def pipeline_yaml(args: argparse.Namespace) -> str:
    docs = ["name: chaos-pipeline\n"]
    for t in range(PIPELINE_TASKS):
        docs.append(f"name: step{t}\n" + RESOURCES + sequence_loop(t, args))
    return "---\n".join(docs)


def pool_yaml(workers: int) -> str:
    return (
        f"name: {POOL}\n" + RESOURCES
        + "setup: echo ready\n"
        + f"pool:\n  workers: {workers}\n"
    )


def pool_job_yaml(args: argparse.Namespace) -> str:
    return "name: chaos-pooled\n" + sequence_loop(0, args)


def kind_counts(n: int) -> dict[str, int]:
    tenth = round(n * 0.1)
    return {PIPELINE: tenth, RESTART: tenth, POOLED: tenth, SPOT: n - 3 * tenth}


def split_rounds(total: int, rounds: int) -> list[int]:
    base, extra = divmod(total, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


# ------------------------------------------------------------------ records


@dataclass
class Plan:
    job_id: int
    kind: str

    @property
    def tasks(self) -> int:
        return PIPELINE_TASKS if self.kind == PIPELINE else 1


@dataclass
class Preemption:
    job_id: int
    delay_s: float  # after the bench first saw the job RUNNING
    due_at: float | None = None
    fired_at: float | None = None  # time.time() just before the sim_preempt that landed
    cluster: str | None = None
    tries: int = 0
    last_refusal: str | None = None
    victim: int | None = None  # whose machine it really was (resolved at the end)
    recovering_at: float | None = None

    @property
    def landed(self) -> bool:
        return self.cluster is not None


@dataclass
class Kill:
    at: float
    pid: int
    restarted_by_bench: bool = False
    next_pid: int | None = None
    next_up_at: float | None = None

    @property
    def down_s(self) -> float | None:
        return None if self.next_up_at is None else self.next_up_at - self.at


@dataclass
class Drop:
    at: float
    connections: int
    how: str


@dataclass
class LogVerdict:
    lines: int = 0
    lost: int = 0
    duplicated: int = 0
    foreign: int = 0
    unseparated: int = 0  # a sequence restart the user sees with no attempt separator
    run_starts: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class Run:
    n: int
    machine: str = ""
    plans: list[Plan] = field(default_factory=list)
    submit_started_at: float | None = None
    submit_s: float | None = None
    faults_started_at: float | None = None
    all_terminal_at: float | None = None
    preemptions: list[Preemption] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    drop_how: str = ""
    stockout_on_at: float | None = None
    stockout_off_at: float | None = None
    fault_errors: list[str] = field(default_factory=list)
    final: dict[int, JobView] = field(default_factory=dict)
    logs: dict[int, LogVerdict] = field(default_factory=dict)
    needless: dict[int, str] = field(default_factory=dict)
    needless_runs: dict[int, str] = field(default_factory=dict)
    leak_sandboxes: list[str] | None = None
    leak_clusters: list[str] | None = None
    leak_processes: list[int] | None = None
    leaks_at_all_terminal: tuple[int, int] | None = None
    clean_after_s: float | None = None
    controller_log_errors: Counter[str] = field(default_factory=Counter)
    # Why the controller relaunched, from each job's controller log, on jobs
    # with a needless relaunch (diagnostic: the wording is the engine's).
    needless_causes: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    controller_pids: list[int] = field(default_factory=list)
    timed_out: bool = False
    error: str | None = None

    def plan_of(self, job_id: int) -> Plan | None:
        return next((p for p in self.plans if p.job_id == job_id), None)


# ------------------------------------------------------------------ the world


def write_config(p: Paths, args: argparse.Namespace) -> None:
    """config.yaml (format in skytui/config.py): small, fast machines."""
    p.config_file.write_text(
        "jobs:\n"
        "  controller:\n"
        f"    max_launching: {args.max_launching}\n"
        f"    max_running: {args.max_running}\n"
        "  recovery:\n"
        "    backoff_initial_s: 2\n"
        "    backoff_max_s: 10\n"
        "infra:\n"
        "  sim:\n"
        f"    provision_delay_s: {args.provision_delay_s:g}\n"
        f"    spot_capacity: {args.capacity}\n"
        f"    ondemand_capacity: {args.capacity}\n"
    )


def controller_pid(p: Paths) -> int | None:
    """The live controller of this home, if any (never a stranger that reused the pid)."""
    pid = read_pid(p.controller_pid)
    if pid is None or not is_our_process(pid, p.home, "skytui.engine.daemon"):
        return None
    return pid


def nodehost_state(p: Paths) -> tuple[int | None, int | None]:
    try:
        state = json.loads((p.nodes / STATE_FILE).read_text())
        return int(state["pid"]), int(state["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def submit(p: Paths, client: Client, yaml_path: Path, count: int, kind: str, extra: list[str],
           deadline: float) -> list[Plan]:
    """One `skytui jobs launch --num-jobs K`; the new ids are read back from the DB
    (only this bench submits), so a launch whose controller start timed out
    still accounts for every job it wrote."""
    if count <= 0:
        return []
    before = client.store.latest_job_id() or 0
    result = run_cli(p.home, "jobs", "launch", "-y", "-d", "--num-jobs", str(count), *extra, str(yaml_path),
                     timeout=max(5.0, deadline - time.monotonic()), check=False)
    ids = sorted(j.id for j in client.store.jobs() if j.id > before)
    if len(ids) != count:
        raise RuntimeError(
            f"`jobs launch` of {count} {kind} job(s) wrote {len(ids)} (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-600:]}"
        )
    return [Plan(job_id, kind) for job_id in ids]


# ------------------------------------------------------------------ faults


class Faults:
    """The fault injectors, each in its own thread, stopped together."""

    def __init__(self, p: Paths, args: argparse.Namespace, run: Run) -> None:
        self.p = p
        self.args = args
        self.run = run
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.preempt_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="preempt")
        self.in_flight: set[int] = set()

    def start(self) -> None:
        self.run.faults_started_at = time.time()
        for name, target in (
            ("kill-controller", self._kill_loop),
            ("drop-ssh", self._drop_loop),
            ("stockout", self._stockout),
            ("contact", self._contact_loop),
        ):
            thread = threading.Thread(target=self._guard(name, target), name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def _guard(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                target()
            except Exception as exc:  # noqa: BLE001 - reported, never silently dropped
                with self.lock:
                    self.run.fault_errors.append(f"{name}: {type(exc).__name__}: {exc}")
        return body

    def halt(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
        self.preempt_pool.shutdown(wait=True, cancel_futures=True)
        self.stockout_off()

    # ---- kill -9 of the controller

    def _kill_loop(self) -> None:
        next_at = time.monotonic() + self.args.kill_every_s
        while not self.stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.args.kill_every_s
            pid = controller_pid(self.p)
            if pid is None:
                continue  # still down from the last kill: nothing to kill
            os.kill(pid, signal.SIGKILL)
            kill = Kill(at=time.time(), pid=pid)
            with self.lock:
                self.run.kills.append(kill)
            if self.args.restart == "explicit":
                self._restart_explicitly(kill)

    def _restart_explicitly(self, kill: Kill) -> None:
        """RESTART_EXPLICITLY: the bench restarts the controller itself, to
        separate the engine's recovery from the client's supervision.
        `--restart client` (the default) leaves it to client contact."""
        if self.stop.wait(self.args.restart_delay_s):
            return
        if controller_pid(self.p) is not None:
            return  # a client contact (a `jobs launch`) already restarted it
        # What `skytui controller start` runs, without a CLI process's imports
        # (1.7 s of CPU each, every 15 s, on a 2-core machine).
        try:
            daemon.start_controller(self.p)
        except RuntimeError as exc:  # it did not come up: a finding, and the next kill goes on
            with self.lock:
                self.run.fault_errors.append(f"controller restart after the kill of {kill.pid}: {exc}")
            return
        kill.restarted_by_bench = True

    # ---- client contact (--restart client)

    def _contact_loop(self) -> None:
        if self.args.restart != "client":
            return
        while not self.stop.wait(CONTACT_EVERY_S):
            run_cli(self.p.home, "jobs", "queue", "--json", "--skip-finished", timeout=60, check=False)

    # ---- SSH drops

    def _drop_loop(self) -> None:
        while not self.stop.wait(self.args.drop_every_s):
            pid, port = nodehost_state(self.p)
            if pid is None or port is None:
                continue
            if self.run.drop_how == "ss":
                count = destroy_connections(port)
            else:
                count = kill_nodehost(self.p, pid)
            with self.lock:
                self.run.drops.append(Drop(time.time(), count, self.run.drop_how))

    # ---- stock-out

    def _stockout(self) -> None:
        if self.args.stockout_s <= 0 or self.stop.wait(self.args.stockout_at_s):
            return
        self.run.stockout_on_at = time.time()  # before: a halt meanwhile still turns it off
        run_cli(self.p.home, "sim", "stockout", self.args.stockout_region, "on", timeout=60)
        self.stop.wait(self.args.stockout_s)
        self.stockout_off()

    def stockout_off(self) -> None:
        with self.lock:
            if self.run.stockout_on_at is None or self.run.stockout_off_at is not None:
                return
            self.run.stockout_off_at = time.time()
        run_cli(self.p.home, "sim", "stockout", self.args.stockout_region, "off", timeout=60, check=False)

    # ---- preemptions (driven by the main loop's polls)

    def observe(self, views: list[JobView], targets: dict[int, Preemption]) -> None:
        now = time.time()
        for view in views:
            pre = targets.get(view.job.id)
            if pre is None or pre.landed or view.job.id in self.in_flight:
                continue
            if view.job.status == RUNNING and pre.due_at is None:
                pre.due_at = now + pre.delay_s
            if pre.due_at is not None and now >= pre.due_at and view.job.status not in TERMINAL_VALUES:
                self.in_flight.add(view.job.id)
                self.preempt_pool.submit(self._guard("preempt", lambda pre=pre: self._preempt(pre)))

    def _preempt(self, pre: Preemption) -> None:
        client = Client(self.p)
        try:
            pre.tries += 1
            at = time.time()
            pre.cluster = client.sim_preempt(pre.job_id)
            pre.fired_at = at
        except ValueError as exc:  # no machine up right now: the next poll tries again
            pre.last_refusal = str(exc)
        finally:
            client.close()
            self.in_flight.discard(pre.job_id)


def _ss(*argv: str) -> list[str]:
    result = subprocess.run(["ss", *argv], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ss {' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return [line for line in result.stdout.splitlines() if line.strip()]


def destroy_connections(port: int) -> int:
    """`ss -K`: reset every TCP connection to or from the node host's port;
    how many there were (one server-side socket each)."""
    loopback = "src 127.0.0.1 and dst 127.0.0.1"  # never anyone else's connection
    established = _ss("-t", "-n", "-H", "state", "established", f"( sport = :{port} ) and {loopback}")
    # Both ends: whichever is destroyed first sends the other a reset.
    _ss("-K", "-t", "-n", "-H", "state", "established", f"( sport = :{port} or dport = :{port} ) and {loopback}")
    return len(established)


def kill_nodehost(p: Paths, pid: int) -> int:
    if not is_our_process(pid, p.home, "skytui.clouds.nodehost"):
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return 1


def probe_ss_kill() -> str | None:
    """None if `ss -K` destroys a loopback connection here; why not otherwise."""
    import socket

    if shutil.which("ss") is None:
        return "no `ss` on PATH"
    server = socket.socket()
    try:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        peer, _ = server.accept()
        try:
            destroy_connections(port)
            client.settimeout(2)
            try:
                client.sendall(b"x")
                got = client.recv(1)
            except OSError:
                return None  # reset: it works
            return f"the connection survived `ss -K` (read {got!r})"
        finally:
            client.close()
            peer.close()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return str(exc)
    finally:
        server.close()


# ------------------------------------------------------------------ sampling


class Sampler:
    """CPU and RSS of every controller process (a new one after each kill) and
    of the node host, every 200 ms; and when each controller came up."""

    def __init__(self, p: Paths, run: Run) -> None:
        self.p = p
        self.run = run
        self.cpu_by_pid: dict[int, float] = {}
        self.who: dict[int, str] = {}
        self.first_seen: dict[int, float] = {}
        self.ours: set[int] = set()  # controllers this process started (its children)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        pids = {"controller": controller_pid(self.p), "node host": nodehost_state(self.p)[0]}
        for who, pid in pids.items():
            if pid is None:
                continue
            if pid not in self.first_seen:
                self.first_seen[pid] = time.time()
                self.who[pid] = who
                if who == "controller":
                    self.run.controller_pids.append(pid)
                    if parent_pid(pid) == os.getpid():
                        self.ours.add(pid)
            value = cpu_seconds(pid)
            if value is not None:
                self.cpu_by_pid[pid] = max(self.cpu_by_pid.get(pid, 0.0), value)
            rss = rss_bytes(pid)
            if rss is not None:
                self.run.peak_rss[who] = max(self.run.peak_rss.get(who, 0), rss)
        # A killed controller stays a zombie until reaped: its last CPU figure holds.
        for pid in list(self.cpu_by_pid):
            value = cpu_seconds(pid)
            if value is not None:
                self.cpu_by_pid[pid] = max(self.cpu_by_pid[pid], value)

    def cpu_of(self, who: str) -> float:
        return sum(v for pid, v in self.cpu_by_pid.items() if self.who.get(pid) == who)

    def reaped_children_cpu(self) -> float:
        """CPU of the controllers this process started and has since reaped:
        os.times() counts it among the children, and it is the controller's."""
        return sum(v for pid, v in self.cpu_by_pid.items()
                   if pid in self.ours and not Path(f"/proc/{pid}").exists())


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def resolve_controller_restarts(run: Run, sampler: Sampler) -> None:
    """For each kill: the next controller pid to come up, and when."""
    ups = sorted((at, pid) for pid, at in sampler.first_seen.items() if sampler.who.get(pid) == "controller")
    for kill in run.kills:
        nxt = next(((at, pid) for at, pid in ups if at > kill.at and pid != kill.pid), None)
        if nxt is not None:
            kill.next_up_at, kill.next_pid = nxt


# ------------------------------------------------------------------ checks


def segment_bytes(path: Path, segments: list[SegmentRow]) -> list[tuple[SegmentRow, bytes]]:
    """Each segment's bytes of one log file (rank 0): from its start to the next one's."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    ordered = sorted(segments, key=lambda s: (s.start_offset, s.id))
    out = []
    for i, seg in enumerate(ordered):
        end = ordered[i + 1].start_offset if i + 1 < len(ordered) else len(data)
        out.append((seg, data[seg.start_offset:end]))
    return out


def check_sequence(numbers: list[int], verdict: LogVerdict, where: str) -> None:
    """1, 2, ..., k: count what is missing or repeated."""
    seen: Counter[int] = Counter(numbers)
    dupes = sum(c - 1 for c in seen.values() if c > 1)
    top = max(numbers, default=0)
    missing = [i for i in range(1, top + 1) if i not in seen]
    ordered = numbers == sorted(numbers)
    verdict.duplicated += dupes
    verdict.lost += len(missing)
    if dupes or missing or not ordered:
        verdict.problems.append(
            f"{where}: lines {compact(numbers)}"
            + (f" ({dupes} repeated)" if dupes else "") + (f" (missing {compact(missing)})" if missing else "")
            + ("" if ordered else " (out of order)")
        )


def compact(numbers: list[int]) -> str:
    if len(numbers) <= 12:
        return ",".join(map(str, numbers))
    return ",".join(map(str, numbers[:6])) + ",…," + ",".join(map(str, numbers[-4:]))


def parse_lines(lines: list[str], job_id: int, task: int, verdict: LogVerdict, where: str) -> list[int]:
    numbers = []
    for line in lines:
        match = LINE_RE.match(line)
        if match is None or int(match.group(1)) != job_id or int(match.group(2)) != task:
            verdict.foreign += 1
            verdict.problems.append(f"{where}: unexpected line {line[:120]!r}")
            continue
        numbers.append(int(match.group(3)))
    verdict.lines += len(numbers)
    return numbers


def check_stored_log(client: Client, plan: Plan, view: JobView, args: argparse.Namespace,
                     verdict: LogVerdict) -> None:
    """The log store, cut into attempts by its segments: each attempt a clean prefix."""
    attempts = {(a.task_idx, a.attempt_no): a for a in view.attempts}
    for task in range(plan.tasks):
        segments = [s for s in client.store.segments(plan.job_id, task) if s.rank == 0]
        path = task_log_path(client.paths.job_logs, plan.job_id, task)
        pieces = segment_bytes(path, segments)
        runs = [(s, b) for s, b in pieces if s.phase == "run"]
        verdict.run_starts += len(runs)
        task_row = view.tasks[task] if task < len(view.tasks) else None
        for seg, data in pieces:
            where = f"job {plan.job_id} task {task} attempt {seg.attempt_no} {seg.phase}"
            text = data.decode("utf-8", errors="replace")
            if text and not text.endswith("\n"):
                verdict.problems.append(f"{where}: ends in a partial line {text[-60:]!r}")
                verdict.foreign += 1
            numbers = parse_lines([ln for ln in text.split("\n") if ln], plan.job_id, task, verdict, where)
            if seg.phase != "run":
                continue
            check_sequence(numbers, verdict, where)
            attempt = attempts.get((task, seg.attempt_no))
            expected = expected_count(plan, attempt, task_row, seg, runs, args)
            if expected is not None and max(numbers, default=0) != expected:
                short = expected - max(numbers, default=0)
                verdict.lost += max(0, short)
                verdict.problems.append(f"{where}: ended at line {max(numbers, default=0)}, expected {expected} "
                                        f"(attempt {attempt.end_reason if attempt else 'unknown'!r})")


def expected_count(plan: Plan, attempt: Any, task_row: Any, seg: SegmentRow,
                   runs: list[tuple[SegmentRow, bytes]], args: argparse.Namespace) -> int | None:
    """How far an attempt's sequence must have got: all of it for an attempt
    that exited 0 (and for the last one of a task that SUCCEEDED), the failing
    line for the deliberate failure; a preempted attempt may stop anywhere
    (its machine, and what had not been copied from it, are gone)."""
    if attempt is None:
        return None
    last_of_success = task_row is not None and task_row.status == SUCCEEDED and seg is runs[-1][0]
    if attempt.exit_code == 0 or last_of_success:
        return args.lines
    if plan.kind == RESTART and attempt.exit_code == FAIL_EXIT_CODE:
        return args.fail_at_line
    return None


def check_follower(client: Client, plan: Plan, verdict: LogVerdict) -> None:
    """What the user reads (`jobs logs --no-follow`): a sequence may restart only
    after an attempt separator (or at the next task of a pipeline)."""
    follower = client.log_follower(plan.job_id)
    lines: list[str] = []
    while True:
        batch = follower.poll(final=True)
        if not batch:
            break
        lines.extend(batch)
    last: tuple[int, int] | None = None  # (task, line) of the previous line in this block
    for raw in lines:
        if SEPARATOR in raw:
            last = None
            continue
        line = FOLLOWER_PREFIX_RE.sub("", raw, count=1)
        match = LINE_RE.match(line)
        if match is None:
            continue  # counted by the stored-log check
        task, number = int(match.group(2)), int(match.group(3))
        if last is not None and last[0] == task and number != last[1] + 1:
            verdict.unseparated += 1
            verdict.problems.append(
                f"job {plan.job_id} task {task}: `jobs logs` shows line {number} after line {last[1]} "
                "with no attempt separator between"
            )
        last = (task, number)


def check_logs(client: Client, run: Run, args: argparse.Namespace) -> None:
    for plan in run.plans:
        view = run.final.get(plan.job_id)
        verdict = run.logs[plan.job_id] = LogVerdict()
        if view is None:
            continue
        check_stored_log(client, plan, view, args, verdict)
        check_follower(client, plan, verdict)


def cluster_at(rows: list[ClusterRow], name: str | None, at: float) -> ClusterRow | None:
    """The machine of that name standing at `at`: a pool worker keeps its
    name across replacements, so one name can have several rows."""
    standing = [c for c in rows if c.name == name and c.created_at <= at]
    live = [c for c in standing if c.ended_at is None or at <= c.ended_at]
    return max(live or standing, key=lambda c: c.created_at, default=None)


def resolve_victims(client: Client, run: Run) -> None:
    """Whose machine each preemption really took: a cluster row names its job;
    a pool worker's belongs to the job whose attempt ran on that machine when
    it was taken, or else to the first job handed the machine afterwards (the
    bench aimed at a job that had just finished; the next one got a worker the
    pool had not yet seen go)."""
    rows = client.store.clusters()
    pooled = [p.job_id for p in run.plans if p.kind == POOLED]
    attempts = [a for job_id in pooled for a in client.store.attempts(job_id)]
    for pre in run.preemptions:
        if pre.fired_at is None:
            continue
        row = cluster_at(rows, pre.cluster, pre.fired_at)
        if row is None:
            continue
        if row.worker_id is None:
            pre.victim = row.job_id
            continue
        on_machine = sorted((a for a in attempts if a.cluster_id == row.id), key=lambda a: a.started_at)
        holding = [a for a in on_machine if a.started_at <= pre.fired_at <= (a.ended_at or math.inf)]
        after = [a for a in on_machine if a.started_at > pre.fired_at]
        if holding or after:
            pre.victim = (holding or after)[0].job_id


def detection_times(client: Client, run: Run) -> None:
    """Preemption -> the victim's first RECOVERING after it."""
    for pre in run.preemptions:
        if pre.victim is None or pre.fired_at is None:
            continue
        for event in client.store.events(job_id=pre.victim, limit=10_000):
            if event.kind == "status" and event.to_status == RECOVERING and event.at >= pre.fired_at:
                pre.recovering_at = event.at
                break


def check_relaunches(run: Run) -> None:
    """Recoveries and run starts beyond what the preemptions and the deliberate
    failures explain."""
    landed: Counter[int] = Counter(pre.victim for pre in run.preemptions if pre.victim is not None)
    for plan in run.plans:
        view = run.final.get(plan.job_id)
        if view is None:
            continue
        recoveries = sum(t.recoveries for t in view.tasks)
        restarts = sum(t.restarts_on_errors for t in view.tasks)
        allowed = landed[plan.job_id] + restarts
        if recoveries > allowed:
            run.needless[plan.job_id] = (
                f"job {plan.job_id} ({plan.kind}): {recoveries} recoveries for {landed[plan.job_id]} "
                f"preemption(s) and {restarts} restart(s) on errors"
            )
        verdict = run.logs.get(plan.job_id)
        if verdict is not None and verdict.run_starts > plan.tasks + allowed:
            run.needless_runs[plan.job_id] = (
                f"job {plan.job_id} ({plan.kind}): its run started {verdict.run_starts} times for "
                f"{plan.tasks} task(s), {landed[plan.job_id]} preemption(s), {restarts} restart(s)"
            )


RECOVERY_LINE_RE = re.compile(r"task \d+: (.*?); (?:recovering|restarting)")


def normalise_cause(text: str) -> str:
    """One recovery reason with names, numbers and durations taken out, so equal causes count together."""
    text = re.sub(r"\b[\w.-]*-\d+-\d+-\d+[\w-]*", "<machine>", text)
    text = re.sub(r"\b[\w.-]*-w\d+[\w-]*", "<worker>", text)
    text = re.sub(r"after \d+[hms]( \d+m)?", "after <t>", text)
    text = re.sub(r"sim:[\w/-]+", "<region>", text)
    return re.sub(r"\d+", "N", text)


def tally_needless_causes(p: Paths, run: Run) -> None:
    for job_id in sorted(set(run.needless) | set(run.needless_runs)):
        path = p.job_logs / str(job_id) / "controller.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            match = RECOVERY_LINE_RE.search(line)
            if match:
                run.needless_causes[normalise_cause(match.group(1))] += 1


def wrong_states(run: Run) -> list[str]:
    out = []
    for plan in run.plans:
        view = run.final.get(plan.job_id)
        if view is None or view.job.status not in TERMINAL_VALUES:
            continue
        bad = [t for t in view.tasks if t.status != SUCCEEDED]
        if view.job.status != SUCCEEDED or bad or len(view.tasks) != plan.tasks:
            why = "; ".join(f"task {t.task_idx} {t.status}: {t.failure_reason or t.status_reason or ''}"
                            for t in bad)
            out.append(f"job {plan.job_id} ({plan.kind}) {view.job.status}" + (f" — {why}" if why else ""))
    return out


def lost_jobs(run: Run) -> list[str]:
    out = []
    for plan in run.plans:
        view = run.final.get(plan.job_id)
        if view is None:
            out.append(f"job {plan.job_id} ({plan.kind}): missing from the queue")
        elif view.job.status not in TERMINAL_VALUES:
            detail = ", ".join(f"{t.status}{' (' + t.status_reason + ')' if t.status_reason else ''}"
                               for t in view.tasks)
            out.append(f"job {plan.job_id} ({plan.kind}) still {view.job.status}: {detail}")
    return out


def failed_controller(run: Run) -> list[int]:
    return sorted(job_id for job_id, view in run.final.items()
                  if view.job.status == FAILED_CONTROLLER or any(t.status == FAILED_CONTROLLER for t in view.tasks))


# ------------------------------------------------------------------ the run


def wait_for_pool(client: Client, deadline: float) -> None:
    """Until the pool row exists (its workers come up under the faults)."""
    while time.monotonic() < deadline:
        if client.store.pool(POOL) is not None:
            return
        time.sleep(0.2)
    raise GlobalTimeout("the pool never appeared")


def preemption_plan(n: int, args: argparse.Namespace, rng: random.Random) -> dict[int, float]:
    """Which jobs (by submission order) are preempted, and how long after the
    bench first sees them RUNNING: decided by --seed before anything runs."""
    k = round(n * args.preempt_share)
    return {index: rng.random() for index in sorted(rng.sample(range(n), k))}


class Submitter:
    """Submits every job through the CLI in its own thread, so the watch loop
    (and the preemptions of the jobs already in) run while later rounds go in."""

    def __init__(self, p: Paths, client: Client, root: Path, args: argparse.Namespace, run: Run,
                 on_first_submit: Callable[[], None]) -> None:
        self.p = p
        self.client = client
        self.root = root
        self.args = args
        self.run = run
        self.on_first_submit = on_first_submit
        self.targets: dict[int, Preemption] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._chosen = preemption_plan(run.n, args, random.Random(args.seed))
        self._thread = threading.Thread(target=self._body, name="submitter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _body(self) -> None:
        try:
            self._submit_all()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the watch loop
            self.error = exc
        finally:
            self.done.set()

    def _files(self) -> dict[str, tuple[Path, list[str]]]:
        texts = {
            SPOT: (spot_yaml(self.args), []),
            PIPELINE: (pipeline_yaml(self.args), []),
            RESTART: (restart_yaml(self.args), ["--env", f"CHAOS_MARKS={self.root / 'marks'}"]),
            POOLED: (pool_job_yaml(self.args), ["-p", POOL]),
        }
        files = {}
        for kind, (text, extra) in texts.items():
            path = self.root / f"{kind}.yaml"
            path.write_text(text)
            files[kind] = (path, extra)
        (self.root / "marks").mkdir(exist_ok=True)
        return files

    def _submit_all(self) -> None:
        files = self._files()
        counts = kind_counts(self.run.n)
        per_round = {kind: split_rounds(counts[kind], self.args.rounds) for kind in KINDS}
        self.run.submit_started_at = time.time()
        t0 = time.monotonic()
        for r in range(self.args.rounds):
            for kind in KINDS:
                path, extra = files[kind]
                plans = submit(self.p, self.client, path, per_round[kind][r], kind, extra, self.args.deadline)
                self._add(plans)
                if self.run.faults_started_at is None:
                    # The faults begin once there is something to hurt; later
                    # launches meet a controller that may be dead (the CLI
                    # restarts it, as it would for a user).
                    self.on_first_submit()
        self.run.submit_s = time.monotonic() - t0

    def _add(self, plans: list[Plan]) -> None:
        run_s = self.args.lines * self.args.line_interval_s
        with self.lock:
            for plan in plans:
                share = self._chosen.get(len(self.run.plans))
                self.run.plans.append(plan)
                if share is not None:
                    delay = share * run_s * plan.tasks * PREEMPT_WINDOW_SHARE
                    pre = Preemption(plan.job_id, delay_s=delay)
                    self.targets[plan.job_id] = pre
                    self.run.preemptions.append(pre)


def progress(run: Run, views: list[JobView], t0: float) -> None:
    counts = Counter(v.job.status for v in views)
    done = sum(c for s, c in counts.items() if s in TERMINAL_VALUES)
    landed = sum(1 for pre in run.preemptions if pre.landed)
    stock = "on" if run.stockout_on_at and not run.stockout_off_at else "off"
    active = {s: c for s, c in counts.items() if s not in TERMINAL_VALUES}
    print(f"  t={time.monotonic() - t0:6.1f}s done={done}/{run.n} {dict(sorted(active.items()))} "
          f"kills={len(run.kills)} drops={len(run.drops)} preempted={landed}/{len(run.preemptions)} "
          f"stockout={stock}", flush=True)


def watch_until_done(client: Client, run: Run, faults: Faults, submitter: Submitter,
                     args: argparse.Namespace) -> None:
    t0 = time.monotonic()
    last_progress = t0
    while True:
        submitted = submitter.done.is_set()
        with submitter.lock:
            wanted = {p.job_id for p in run.plans}
        views = [v for v in client.queue() if v.job.id in wanted]
        faults.observe(views, submitter.targets)
        if submitter.error is not None:
            raise submitter.error
        if submitted and len(views) == len(wanted) and all(v.job.status in TERMINAL_VALUES for v in views):
            run.all_terminal_at = time.time()
            return
        if args.progress and time.monotonic() - last_progress >= PROGRESS_EVERY_S:
            last_progress = time.monotonic()
            progress(run, views, t0)
        if time.monotonic() > args.deadline:
            raise GlobalTimeout(f"jobs still in progress after {args.timeout:g} s")
        time.sleep(POLL_S)


def leftovers(p: Paths, client: Client) -> tuple[list[str], list[str], list[int]]:
    sandboxes = sandboxes_left(p)
    live = [c.name for c in client.store.live_clusters()]
    procs = processes_in(p.nodes, exclude=os.getpid())
    return sandboxes, live, procs


def settle_and_count_leaks(p: Paths, client: Client, run: Run, args: argparse.Namespace) -> None:
    """Pool down, then poll until nothing is left standing (or --settle-s)."""
    sandboxes, live, _ = leftovers(p, client)
    run.leaks_at_all_terminal = (len(sandboxes), len(live))
    if controller_pid(p) is None:
        run_cli(p.home, "controller", "start", timeout=60, check=False)
    down = run_cli(p.home, "jobs", "pool", "down", POOL, "-y", timeout=120, check=False)
    if down.returncode != 0:
        run.fault_errors.append(f"pool down exited {down.returncode}: {(down.stderr or down.stdout).strip()[-300:]}")
    t0 = time.monotonic()
    deadline = t0 + args.settle_s  # beyond --timeout: the run itself is over
    while True:
        sandboxes, live, procs = leftovers(p, client)
        if not sandboxes and not live and not procs:
            run.clean_after_s = time.monotonic() - t0
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    run.leak_sandboxes, run.leak_clusters, run.leak_processes = sandboxes, live, procs


def final_views(client: Client, run: Run) -> None:
    wanted = {p.job_id for p in run.plans}
    run.final = {v.job.id: v for v in client.queue() if v.job.id in wanted}


def controller_log_errors(p: Paths) -> Counter[str]:
    """ERROR lines of the daemon's log (every controller process appends to
    it), by message with the time and numbers taken out."""
    try:
        text = p.controller_log.read_text(errors="replace")
    except OSError:
        return Counter()
    errors: Counter[str] = Counter()
    for line in text.splitlines():
        if " ERROR " in line:
            errors[re.sub(r"\d+", "N", line.split(" ERROR ", 1)[1])] += 1
        elif line.startswith("Traceback"):
            errors["Traceback"] += 1
    return errors


def analyse(p: Paths, client: Client, run: Run, args: argparse.Namespace) -> None:
    """Everything read back from the state (also after a timeout: partial figures)."""
    final_views(client, run)
    resolve_victims(client, run)
    detection_times(client, run)
    check_logs(client, run, args)
    check_relaunches(run)
    tally_needless_causes(p, run)
    run.controller_log_errors = controller_log_errors(p)


def run_bench(args: argparse.Namespace, root: Path, run: Run) -> None:
    p = Paths(root / "home")
    p.ensure()
    os.environ["SKYTUI_HOME"] = str(p.home)
    write_config(p, args)
    client = Client(p)
    sampler = Sampler(p, run)
    faults = Faults(p, args, run)
    submitter = Submitter(p, client, root, args, run, on_first_submit=faults.start)
    cpu0 = (own_cpu(children=True), system_cpu())
    try:
        client.store  # noqa: B018 - create the DB before any controller opens it
        pool_path = root / "pool.yaml"
        pool_path.write_text(pool_yaml(args.pool_workers))
        run_cli(p.home, "jobs", "pool", "apply", "-y", "-p", POOL, str(pool_path),
                timeout=max(5.0, args.deadline - time.monotonic()))
        wait_for_pool(client, args.deadline)
        sampler.start()
        submitter.start()
        try:
            watch_until_done(client, run, faults, submitter, args)
        finally:
            faults.halt()
            submitter.join(timeout=5)
        if args.progress:
            print(f"  every job terminal; {run.n} were submitted in {run.submit_s or 0:.1f} s; "
                  "taking the pool down", flush=True)
        settle_and_count_leaks(p, client, run, args)
    finally:
        with contextlib.suppress(Exception):
            faults.halt()
        sampler.sample()
        sampler.stop()
        resolve_controller_restarts(run, sampler)
        run.cpu["controller"] = sampler.cpu_of("controller")
        run.cpu["node host"] = sampler.cpu_of("node host")
        run.cpu["bench + CLI"] = own_cpu(children=True) - cpu0[0] - sampler.reaped_children_cpu()
        sys1 = system_cpu()
        run.cpu["machine busy"] = sys1[0] - cpu0[1][0]
        run.cpu["machine total"] = sys1[1] - cpu0[1][1]
        try:
            analyse(p, client, run, args)
        except Exception as exc:  # noqa: BLE001 - the report says what could not be read
            run.error = run.error or f"analysis failed: {type(exc).__name__}: {exc}"
        client.close()
        take_down(p)


def take_down(p: Paths) -> None:
    """Controller first (SIGKILL: we killed it all run long), then node host and jobs."""
    pid = controller_pid(p)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stop_everything(p)
    kill_home_processes(p.home)


# ------------------------------------------------------------------ report


@dataclass
class Check:
    key: str  # stable, for --summary-json and the test
    label: str
    value: int | None
    detail: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.value == 0


def checks(run: Run) -> list[Check]:
    verdicts = list(run.logs.values())
    leaks = None
    if run.leak_sandboxes is not None and run.leak_clusters is not None and run.leak_processes is not None:
        leaks = len(run.leak_sandboxes) + len(run.leak_clusters) + len(run.leak_processes)
    have_final = bool(run.final)
    lost = lost_jobs(run) if have_final else None
    wrong = wrong_states(run) if have_final else None
    fc = failed_controller(run) if have_final else None
    log_problems = [pr for v in verdicts for pr in v.problems]
    return [
        Check("jobs_lost", "jobs lost (not terminal at the end)", None if lost is None else len(lost), lost or []),
        Check("wrong_final_states", "wrong final states (not SUCCEEDED)", None if wrong is None else len(wrong),
              wrong or []),
        Check("failed_controller", "FAILED_CONTROLLER", None if fc is None else len(fc), [f"job {j}" for j in fc or []]),
        Check("leaked", "leaked machines (sandboxes + live rows + processes)", leaks,
              [*(run.leak_sandboxes or []), *(run.leak_clusters or []),
               *(f"pid {pid}" for pid in run.leak_processes or [])]),
        Check("log_lines_lost", "log lines lost within an attempt",
              sum(v.lost for v in verdicts) if verdicts else None, log_problems),
        Check("log_lines_duplicated", "log lines duplicated within an attempt",
              sum(v.duplicated for v in verdicts) if verdicts else None),
        Check("foreign_lines", "foreign or partial log lines", sum(v.foreign for v in verdicts) if verdicts else None),
        Check("unseparated_restarts", "sequence restarts shown without a separator",
              sum(v.unseparated for v in verdicts) if verdicts else None),
        Check("needless_relaunches", "needless relaunches (recoveries > preemptions + restarts)",
              len(run.needless) if have_final else None, list(run.needless.values())),
        Check("needless_run_starts", "needless run starts (log segments)",
              len(run.needless_runs) if have_final else None, list(run.needless_runs.values())),
    ]


def report(run: Run, args: argparse.Namespace) -> tuple[bool, list[Check]]:
    print()
    counts = Counter(pl.kind for pl in run.plans)
    print(f"skytui chaos — {run.n} jobs on sim ({dict(counts) or kind_counts(run.n)}), "
          f"{args.lines} lines x {args.line_interval_s:g} s each, seed {args.seed}")
    print(f"machine: {run.machine}")
    print(f"config: max_running={args.max_running}, max_launching={args.max_launching}, sim capacity "
          f"{args.capacity}/region, provision_delay_s={args.provision_delay_s:g}, pool workers {args.pool_workers}")
    if run.timed_out:
        print(f"!! TIMEOUT after {args.timeout:g} s ({run.error or ''}): partial figures below")
    elif run.error:
        print(f"!! ERROR: {run.error}")
    for err in run.fault_errors:
        print(f"!! fault injector: {err}")
    print()
    report_faults(run, args)
    report_timing(run)
    report_cpu(run)
    report_anchors(run, args)
    all_checks = checks(run)
    print("checks:")
    for check in all_checks:
        value = "n/a" if check.value is None else str(check.value)
        print(f"  {check.label:58s} {value:>6s}  {'PASS' if check.passed else 'FAIL'}")
        limit = len(check.detail) if args.verbose else 8
        for line in check.detail[:limit]:
            print(f"      {one_line(line)}")
        if len(check.detail) > limit:
            print(f"      … and {len(check.detail) - limit} more (-v shows all)")
    if run.needless_causes:
        print("  recoveries on the jobs with a needless relaunch, by the reason in their controller log:")
        for cause, count in run.needless_causes.most_common(8):
            print(f"    {count:4d}  {one_line(cause, 200)}")
    ok = all(c.passed for c in all_checks) and not run.timed_out and not run.error and not run.fault_errors
    print()
    print("RESULT: " + ("PASS" if ok else "FAIL"))
    return ok, all_checks


def one_line(text: str, width: int = 240) -> str:
    """A problem as one short line (failure reasons may carry SQL and newlines)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def report_faults(run: Run, args: argparse.Namespace) -> None:
    landed = [pre for pre in run.preemptions if pre.landed]
    missed = [pre for pre in run.preemptions if not pre.landed]
    print("faults:")
    print(f"  preemptions: {len(landed)} landed of {len(run.preemptions)} planned "
          f"({args.preempt_share:.0%} of the jobs); tries {sum(pre.tries for pre in run.preemptions)}")
    for pre in missed[:5]:
        print(f"    missed job {pre.job_id}: {pre.last_refusal or 'never due (it finished first)'}")
    restarted = [k for k in run.kills if k.down_s is not None]
    downs = [k.down_s for k in restarted if k.down_s is not None]
    by_bench = sum(k.restarted_by_bench for k in run.kills)
    print(f"  controller SIGKILLs: {len(run.kills)} (every {args.kill_every_s:g} s); "
          f"controller processes seen: {len(run.controller_pids)}; restarted by "
          + (f"the bench (`skytui controller start`, RESTART_EXPLICITLY): {by_bench}" if args.restart == "explicit"
             else f"client contact alone: {len(restarted) - by_bench}"))
    if downs:
        print(f"    kill -> next controller up: p50 {pct(downs, 50):.2f} s, max {max(downs):.2f} s "
              f"({len(downs)}/{len(run.kills)} came back)")
    conns = [d.connections for d in run.drops]
    if args.verbose and conns:
        print(f"    connections reset per drop: {conns}")
    print(f"  SSH drops ({run.drop_how}): {len(run.drops)} (every {args.drop_every_s:g} s), "
          + (f"{sum(conns)} connections reset (p50 {pct(conns, 50):.0f} per drop)" if run.drop_how == "ss"
             else f"{sum(conns)} node host SIGKILLs"))
    if run.stockout_on_at is not None:
        lasted = (run.stockout_off_at or time.time()) - run.stockout_on_at
        print(f"  stock-out of {args.stockout_region}: {lasted:.0f} s, from "
              f"{run.stockout_on_at - (run.faults_started_at or run.stockout_on_at):.0f} s after the faults began")
    else:
        print("  stock-out: not reached")
    print()


def report_timing(run: Run) -> None:
    if run.submit_s is not None:
        print(f"submission: {run.n} jobs in {run.submit_s:.1f} s")
    if run.all_terminal_at is not None and run.submit_started_at is not None:
        print(f"time: submission -> every job terminal {run.all_terminal_at - run.submit_started_at:.1f} s")
    if run.leaks_at_all_terminal is not None:
        print(f"  at all-terminal (pool still up): {run.leaks_at_all_terminal[0]} sandbox(es), "
              f"{run.leaks_at_all_terminal[1]} live cluster row(s)")
    if run.clean_after_s is not None:
        print(f"  after `pool down`: nothing left standing after {run.clean_after_s:.1f} s")
    detect = [pre.recovering_at - pre.fired_at for pre in run.preemptions
              if pre.recovering_at is not None and pre.fired_at is not None]
    if detect:
        print(f"detection under chaos (preemption -> RECOVERING): p50 {pct(detect, 50):.2f} s, "
              f"p95 {pct(detect, 95):.2f} s, max {max(detect):.2f} s (n={len(detect)})")
    if run.final:
        recoveries = sum(t.recoveries for v in run.final.values() for t in v.tasks)
        restarts = sum(t.restarts_on_errors for v in run.final.values() for t in v.tasks)
        restart_jobs = [run.final[p.job_id] for p in run.plans if p.kind == RESTART and p.job_id in run.final]
        per = Counter(sum(t.restarts_on_errors for t in v.tasks) for v in restart_jobs)
        print(f"recoveries: {recoveries} in all; restarts on errors {restarts} "
              f"(restart jobs by restarts used: {dict(sorted(per.items()))}); "
              f"preemptions landed {sum(1 for pre in run.preemptions if pre.landed)}")
    lines = sum(v.lines for v in run.logs.values())
    if lines:
        print(f"log lines checked: {lines:,} in {len(run.logs)} jobs")
    print(f"controller.log: {sum(run.controller_log_errors.values())} ERROR/Traceback line(s)")
    for message, count in run.controller_log_errors.most_common(3):
        print(f"  {count:4d}  {one_line(message, 200)}")
    print()


def report_cpu(run: Run) -> None:
    if run.all_terminal_at is None and not run.cpu:
        return
    wall = None
    if run.submit_started_at is not None:
        wall = (run.all_terminal_at or time.time()) - run.submit_started_at
    total = run.cpu.get("machine total") or 0.0
    ncpu = os.cpu_count() or 1
    print("CPU over the run (seconds; controllers summed over every process, sampled every 0.2 s):")
    for who in ("controller", "node host", "bench + CLI"):
        value = run.cpu.get(who)
        if value is not None:
            share = f" = {100 * value / wall:.0f}% of one core" if wall else ""
            print(f"  {who:12s} {value:7.1f} s{share}")
    if total:
        print(f"  machine busy {100 * run.cpu.get('machine busy', 0.0) / total:.0f}% of {ncpu} CPUs")
    for who, value in run.peak_rss.items():
        print(f"  peak RSS {who}: {value / MIB:.0f} MiB")
    print()


def report_anchors(run: Run, args: argparse.Namespace) -> None:
    print("anchors (/work/shared/reference/perf_rel.md):")
    if run.final:
        fc = len(failed_controller(run))
        share = fc / len(run.final)
        print(f"  FAILED_CONTROLLER {fc}/{len(run.final)} = {share:.1%} vs ~2/3 of 100-200 spot jobs in "
              f"SkyPilot #5031 (F19): {fmt_ratio(share / ANCHOR_5031_FAILED_CONTROLLER_SHARE)}")
    if run.drops and run.final:
        needless = len(run.needless)
        per_flap = needless / len(run.drops)
        print(f"  needless relaunches per SSH drop {per_flap:.2f} vs 24 recoveries from 25 SSH timeouts in "
              f"#10155 (F10, {ANCHOR_10155_RELAUNCH_PER_FLAP:.2f}): {fmt_ratio(per_flap / ANCHOR_10155_RELAUNCH_PER_FLAP)}")
    detect = [pre.recovering_at - pre.fired_at for pre in run.preemptions
              if pre.recovering_at is not None and pre.fired_at is not None]
    if detect:
        p95 = pct(detect, 95)
        print(f"  p95 detection {p95:.2f} s with the controller killed every {args.kill_every_s:g} s vs the "
              f"{ANCHOR_S9_DETECT_S:g} s "
              f"SkyPilot's smoke test allows (S9): {fmt_ratio(p95 / ANCHOR_S9_DETECT_S)}")
    print(f"  kill -9 of the controller ({len(run.kills)} times): every job must still reach SUCCEEDED with no "
          "FAILED_CONTROLLER and no duplicate machine (F8, F9; SkyPilot #7707 saw FAILED_CONTROLLER on a restart)")
    print()


def summary(run: Run, all_checks: list[Check], ok: bool) -> dict[str, Any]:
    return {
        "passed": ok,
        "timed_out": run.timed_out,
        "error": run.error,
        "fault_errors": run.fault_errors,
        "jobs": run.n,
        "kinds": dict(Counter(pl.kind for pl in run.plans)),
        "checks": {c.key: c.value for c in all_checks},
        "details": {c.key: [one_line(d) for d in c.detail[:50]] for c in all_checks if c.detail},
        "stockout_on": run.stockout_on_at is not None,
        "kills": len(run.kills),
        "controller_processes": len(run.controller_pids),
        "drops": len(run.drops),
        "connections_reset_per_drop": [d.connections for d in run.drops],
        "kill_to_next_controller_s": [k.down_s for k in run.kills],
        "drop_how": run.drop_how,
        "preemptions_landed": sum(1 for pre in run.preemptions if pre.landed),
        "preemptions_planned": len(run.preemptions),
        "stockout_s": (run.stockout_off_at - run.stockout_on_at)
        if run.stockout_on_at and run.stockout_off_at else None,
        "wall_s": (run.all_terminal_at - run.submit_started_at)
        if run.all_terminal_at and run.submit_started_at else None,
        "cpu_s": run.cpu,
        "needless_causes": dict(run.needless_causes.most_common(20)),
        "controller_log_errors": dict(run.controller_log_errors.most_common(20)),
        "preemptions": [asdict(pre) for pre in run.preemptions],
    }


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000, help="managed jobs (default 1000)")
    parser.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 2)")
    parser.add_argument("--minutes", type=float, default=None, help="the same as --timeout, in minutes")
    parser.add_argument("--seed", type=int, default=1, help="which jobs are preempted, when")
    parser.add_argument("--kill-every-s", type=float, default=15.0, help="SIGKILL the controller this often")
    parser.add_argument("--restart", choices=["explicit", "client"], default="client",
                        help="explicit: `skytui controller start` after each kill; client: rely on the client")
    parser.add_argument("--restart-delay-s", type=float, default=1.0, help="explicit restart this long after a kill")
    parser.add_argument("--drop-every-s", type=float, default=20.0, help="drop the node host's SSH connections")
    parser.add_argument("--drop-mode", choices=["ss", "kill-nodehost"], default="ss",
                        help="ss: `ss -K` its connections (falls back to kill-nodehost if ss -K cannot)")
    parser.add_argument("--stockout-region", default="aws/us-east-1")
    parser.add_argument("--stockout-at-s", type=float, default=10.0, help="after the faults begin")
    parser.add_argument("--stockout-s", type=float, default=60.0, help="how long (0: none)")
    parser.add_argument("--preempt-share", type=float, default=0.2, help="share of the jobs preempted")
    parser.add_argument("--lines", type=int, default=20, help="lines each task prints")
    parser.add_argument("--line-interval-s", type=float, default=1.0, help="sleep between lines")
    parser.add_argument("--fail-at-line", type=int, default=None,
                        help="restart jobs fail once, at this line (default: a third of --lines)")
    parser.add_argument("--max-running", type=int, default=64, help="jobs.controller.max_running")
    parser.add_argument("--max-launching", type=int, default=32, help="jobs.controller.max_launching")
    parser.add_argument("--capacity", type=int, default=64, help="infra.sim spot/on-demand capacity per region")
    parser.add_argument("--provision-delay-s", type=float, default=0.5, help="infra.sim.provision_delay_s")
    parser.add_argument("--pool-workers", type=int, default=None, help="pool size (default: 8, 4 under 200 jobs)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="submission rounds, so the kinds interleave in the queue (default: one per 250 jobs)")
    parser.add_argument("--settle-s", type=float, default=30.0,
                        help="after `pool down`, wait this long for nothing left standing")
    parser.add_argument("--summary-json", type=Path, help="write the checks and figures here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--quiet", dest="progress", action="store_false", help="no progress lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="every problem, not the first 8")
    args = parser.parse_args(argv)
    if args.jobs < 10:
        parser.error("--jobs must be 10 or more (a tenth of them per kind)")
    if args.fail_at_line is None:
        args.fail_at_line = max(1, args.lines // 3)
    if not 1 <= args.fail_at_line <= args.lines:
        parser.error("--fail-at-line must be within --lines")
    if args.timeout is None:
        args.timeout = args.minutes * 60 if args.minutes is not None else 3600.0
    if args.pool_workers is None:
        args.pool_workers = 8 if args.jobs >= 200 else 4
    if args.rounds is None:
        args.rounds = max(1, args.jobs // 250)
    args.rounds = max(1, min(args.rounds, round(args.jobs * 0.1)))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.deadline = time.monotonic() + args.timeout
    run = Run(n=args.jobs, machine=machine())
    root = Path(tempfile.mkdtemp(prefix="skytui-bench-chaos-"))
    why_not_ss = probe_ss_kill() if args.drop_mode == "ss" else "not asked for"
    run.drop_how = "ss" if why_not_ss is None else "kill-nodehost"
    if args.drop_mode == "ss" and why_not_ss is not None:
        print(f"note: `ss -K` cannot drop connections here ({why_not_ss}); SIGKILL of the node host instead")

    # Backstops: a hang (the alarm, a little after --timeout) or SIGTERM raise
    # in the main thread, so the finally blocks still take everything down.
    arm_deadline(int(args.timeout) + 120, message="global timeout (hung)")
    print(f"skytui bench chaos: {args.jobs} jobs, SKYTUI_HOME under {root} (temporary)", flush=True)
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
    ok, all_checks = report(run, args)
    if args.summary_json is not None:
        args.summary_json.write_text(json.dumps(summary(run, all_checks, ok), indent=1, default=str))
    if run.timed_out:
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
