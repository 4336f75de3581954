"""`skytui jobs queue --json` against a remote controller, at 1 job and at N (10,000), and where its time goes.

    .venv/bin/python bench/remote_queue.py [--jobs 10000] [--repeats 10] [--split-runs 5]
        [--seed store|launch] [--timeout 900] [--keep]

Needs root (throwaway login users) and Debian's openssh-server, as the ssh
tests do. Nothing touches the real home, nothing leaves 127.0.0.1:

* the real OpenSSH server (tests/infra/sshd.py `RealSSHD`) with two
  throwaway users, one controller machine each: "1 job" and "N jobs";
* a controller venv those users can read, built from /usr/bin/python3 with
  uv, offline from its cache, with bytecode compiled as `pip install` does
  (without it the machine's Python would compile sqlalchemy and pydantic on
  every API process start: the users cannot write into a root-owned venv);
* four client homes (SKYTUI_HOME): remote-1 and remote-N (config.yaml puts
  the controller on `ssh/<user>`, `python:` the venv, sim enabled), and the
  anchors local-1 and local-N (the local controller's home, same rows);
* `skytui controller start` on both remote homes (timed: the first contact
  sends skytui's code, config.yaml and credentials), then `controller stop`;
* the rows, built fast (`--seed store`, the default): N jobs through
  skytui's own `Store` (`submit_jobs(num_jobs=N)` in one transaction, then
  `cancel_unstarted`, what `jobs cancel -a` does to jobs that never started),
  straight into the controller machine's state DB
  (`<user home>/.skytui-controller/home/state.db`) with its controller
  stopped, every file under that home given back to the user afterwards (a
  root-owned -wal/-shm would lock the controller out), and the same into the
  local homes' DBs. `--seed launch` instead times `jobs launch -y -d
  --num-jobs N` against the remote controller (its max_launching 1, so it
  barely starts any), then `jobs cancel -a -y`, waits for every job to end
  and stops the controller: the bench prints both ways' seconds when run so.

With no job in progress and every controller stopped, a `jobs queue` reads
the state and starts nothing, on either side (the API process supervises the
controller again only when there is work). Measured, each as a fresh CLI
process (`python -m skytui.cli`, as a user types it; its bytecode cached, see
bulk.py), `--repeats` rounds, the four homes interleaved in each round:

* `jobs queue --json` (the latest 50 jobs, the command as typed) and
  `jobs queue -a --json` (every job: the 10,000-row answer), median and p95;
* ratios: remote N / remote 1; remote / local at 1 and at N; local N /
  local 1 beside the issue-11 target (<= 1.5x); SkyPilot's `sky jobs queue`
  7.2 s at 10k jobs (/work/shared/reference/perf_rel.md, S11);
* the split (`--split-runs` more runs of `queue -a --json` per home, the
  same CLI started through a probe that timestamps the client's own calls,
  monkeypatched from outside: nothing in skytui changes): interpreter start,
  imports, the CLI's own work, the code hash, the SSH connection, the `$HOME`
  command, the API process start on the machine (channel open, then its
  Python, imports and hello), each API call (`revive_controller`,
  `queue_json`: request -> answer), close and process exit. Medians; the
  parts are exclusive (a call's time excludes the timed calls inside it).
  The remote client's own modules (asyncssh with them), which the CLI loads
  in `open_client`, are loaded by the probe before it starts the CLI, to
  patch them: on the remote side they count under "imports".
  The steps the API process takes on the machine before its hello are run
  there again by `runuser` (its Python start, imports, store open + read).

A long answer: `RemoteClient` reads each answer as one line through asyncssh's
`readline`, which returns a *partial* line once its receive buffer (the SSH
channel window, 2 MiB) fills without a newline. `jobs queue -a --json` at
10,000 jobs is a line of several MB, so the client gets half a JSON document
and reports the machine lost: the timed runs record that failure and go on.
The probe (only it) replaces `_SSHPipe.readline` with one that reads on to the
newline, so that its runs give the figure skytui would have with that fix;
the probed table's wall times are the `-a --json` figures then.

Exit 0 when every figure was measured, 1 on an error, 2 after `--timeout`.
On every path it stops the controllers, removes the users, stops the sshd
and deletes its temporary directory (unless `--keep`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for extra in (REPO, REPO / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

os.environ.pop("SKYTUI_DB_URL", None)  # never a shared DB

from harness import GlobalTimeout, arm_deadline, Terminated, fmt_ratio, kill_home_processes, machine, pct, stop_everything
from infra.sshd import RealSSHD, SSHUser, skip_reason

from skytui.config import Paths
from skytui.engine.store import NewTask, Store

TARGET_LOCAL_RATIO = 1.5  # issue 11: queue --json at 10k within 1.5x of at 1 job
SKYPILOT_QUEUE_10K_S = 7.2  # S11: `sky jobs queue`, full CLI path, 10k jobs
VENV_PACKAGES = ["asyncssh", "pydantic>=2.7,<3", "pyyaml", "rich", "sqlalchemy>=2.0.30,<3"]
CONTROLLER_BASE = ".skytui-controller"
QUEUE = ("jobs", "queue", "--json")
QUEUE_ALL = ("jobs", "queue", "-a", "--json")
TASK_YAML = "name: rq\nresources: {infra: sim}\nrun: sleep 100000\n"

# Started as `python -c PROBE ARGV...`: the same CLI as `python -m skytui.cli`,
# with timestamps around the client's calls, written to $BENCH_MARKS at the end.
PROBE = r"""
import inspect, json, os, sys, time
T_START = time.time()
marks = [["python start", float(os.environ["BENCH_SPAWN"]), T_START]]
from skytui.cli.main import main
marks.append(["imports", T_START, time.time()])

def wrap(owner, attr, label):
    fn = getattr(owner, attr)
    name = (lambda a: label(a)) if callable(label) else (lambda a: label)
    if inspect.iscoroutinefunction(fn):
        async def timed(*a, **k):
            t0 = time.time()
            try:
                return await fn(*a, **k)
            finally:
                marks.append([name(a), t0, time.time()])
    else:
        def timed(*a, **k):
            t0 = time.time()
            try:
                return fn(*a, **k)
            finally:
                marks.append([name(a), t0, time.time()])
    setattr(owner, attr, timed)

if os.environ.get("BENCH_REMOTE"):
    import skytui.client.remote as remote, skytui.remote.link as link, skytui.remote.site as site

    async def readline_whole(self):
        # asyncssh hands back a partial line once a receive window (2 MiB)
        # fills without a newline: read on until the newline (or EOF).
        line = b""
        while True:
            part = await self._process.stdout.readline()
            line += part
            if not part or part.endswith(b"\n"):
                return line
    link._SSHPipe.readline = readline_whole
    wrap(site, "code_archive", "code hash")
    wrap(link.SSHLink, "_connection", "ssh connect")
    wrap(link.SSHLink, "run", lambda a: "$HOME command" if "HOME" in a[1] else "other ssh command")
    wrap(link.SSHLink, "open_pipe", "API channel open")
    wrap(site.ControllerSite, "open_api", "API process start + hello")
    wrap(remote.ApiChannel, "call", lambda a: "call " + a[1])
    wrap(remote.RemoteClient, "close", "close")
else:
    import skytui.client.api as api
    wrap(api.Client, "revive_controller", "call revive_controller")
    wrap(api.Client, "queue_json", "call queue_json")
    wrap(api.Client, "close", "close")
t0 = time.time()
try:
    code = main(sys.argv[1:])
finally:
    marks.append(["CLI's own work", t0, time.time()])
    with open(os.environ["BENCH_MARKS"], "w") as f:
        json.dump(marks, f)
sys.exit(code)
"""
# Run on the controller machine as its login (runuser, no sshd): what the API
# process does before its hello, timed; prints [started, imported, store read].
MACHINE_PROBE = r"""
import json, time
t0 = time.time()
import skytui.client.serve
t1 = time.time()
from skytui.client.api import Client
from skytui.config import paths
from skytui.remote.credentials import load_environment
p = paths()
load_environment(p.home)
Client(p).store.has_unfinished_work()
print(json.dumps([t0, t1, time.time()]))
"""
MACHINE_PARTS = ["its python start", "its imports", "its store open + read"]
PARTS = ["python start", "imports", "CLI's own work", "code hash", "ssh connect", "$HOME command", "other ssh command",
         "API channel open", "API process start + hello", "call revive_controller", "call queue_json", "close",
         "exit"]


@dataclass
class Figures:
    jobs: int
    machine: str = ""
    venv_s: float | None = None
    start_s: dict[str, float] = field(default_factory=dict)  # controller start (first contact) per remote home
    seed_s: dict[str, float] = field(default_factory=dict)
    launch_s: float | None = None
    launch_cancel_s: float | None = None
    launch_drain_s: float | None = None
    runs: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (home, command) -> seconds
    rows: dict[tuple[str, str], int] = field(default_factory=dict)  # jobs in the answer
    split: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # home -> per run, part -> s
    split_wall: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)  # (home, command) -> the first failure
    answer_bytes: dict[tuple[str, str], int] = field(default_factory=dict)
    machine_split: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # remote home -> runs
    timed_out: bool = False
    error: str | None = None


class Home:
    """One client SKYTUI_HOME and the `skytui` command that runs in it."""

    def __init__(self, root: Path, name: str, config: str, pycache: Path, user: SSHUser | None = None) -> None:
        self.name = name
        self.user = user
        self.jobs = 0  # in its state DB, once seeded
        self.paths = Paths(root / name)
        self.paths.ensure()
        self.paths.config_file.write_text(config)
        python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, "SKYTUI_HOME": str(self.paths.home), "PYTHONPATH": python_path,
                    "NO_COLOR": "1", "PYTHONPYCACHEPREFIX": str(pycache)}
        # As an installed skytui runs: with its bytecode cached (see bulk.py).
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    @property
    def state_paths(self) -> Paths:
        """Where the state DB is: the controller machine's home, or this one."""
        if self.user is None:
            return self.paths
        return Paths(self.user.home / CONTROLLER_BASE / "home")

    def cli(self, *argv: str, timeout: float = 300.0) -> tuple[float, str]:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "skytui.cli", *argv], env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False,
                              cwd=self.paths.home)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: `skytui {' '.join(argv)}` exited {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout).strip()[-800:]}")
        return seconds, proc.stdout

    def probe(self, *argv: str, timeout: float = 300.0) -> tuple[float, dict[str, float]]:
        """One run through PROBE: (wall seconds, exclusive seconds per part)."""
        marks_file = self.paths.home.parent / f"marks-{self.name}.json"
        env = {**self.env, "BENCH_MARKS": str(marks_file)}
        if self.user is not None:
            env["BENCH_REMOTE"] = "1"
        spawn = time.time()
        env["BENCH_SPAWN"] = repr(spawn)
        proc = subprocess.run([sys.executable, "-c", PROBE, *argv], env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False, cwd=self.paths.home)
        ended = time.time()
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: probe `{' '.join(argv)}` exited {proc.returncode}: "
                               f"{proc.stderr.strip()[-800:]}")
        answered = len(json.loads(proc.stdout)["jobs"])
        if answered != self.jobs:
            raise RuntimeError(f"{self.name}: probe `{' '.join(argv)}` answered {answered} jobs of {self.jobs}")
        marks = [(str(n), float(a), float(b)) for n, a, b in json.loads(marks_file.read_text())]
        last = max(b for _, _, b in marks)
        return ended - spawn, exclusive([*marks, ("exit", last, ended)])

    def probe_machine(self, venv: Path) -> dict[str, float]:
        """The API process's start on the controller machine, as its login runs it there."""
        assert self.user is not None
        base = self.user.home / CONTROLLER_BASE
        runtime = next(d for d in (base / "runtime").iterdir() if (d / ".complete").exists())
        command = (f"cd && exec env SKYTUI_HOME={base / 'home'} PYTHONPATH={runtime} "
                   f"{venv / 'bin' / 'python'} -c {shlex.quote(MACHINE_PROBE)}")
        spawn = time.time()
        proc = subprocess.run(["runuser", "-u", self.user.name, "--", "sh", "-c", command], capture_output=True,
                              text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: the machine probe exited {proc.returncode}: {proc.stderr[-800:]}")
        started, imported, read = json.loads(proc.stdout.strip().splitlines()[-1])
        return dict(zip(MACHINE_PARTS, (started - spawn, imported - started, read - imported)))


def exclusive(marks: list[tuple[str, float, float]]) -> dict[str, float]:
    """Seconds per part, each interval less the intervals nested directly in it."""
    ordered = sorted(marks, key=lambda m: (m[1], -m[2]))
    own = [b - a for _, a, b in ordered]
    for i, (_, a, b) in enumerate(ordered):
        parent = None  # the innermost earlier interval that contains this one
        for j in range(i - 1, -1, -1):
            pa, pb = ordered[j][1], ordered[j][2]
            if pa <= a and b <= pb and (parent is None or pb - pa < ordered[parent][2] - ordered[parent][1]):
                parent = j
        if parent is not None:
            own[parent] -= b - a
    out: dict[str, float] = {}
    for (name, _, _), seconds in zip(ordered, own):
        out[name] = out.get(name, 0.0) + max(0.0, seconds)
    return out


def progress(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------ set-up


def uv_python() -> list[str]:
    for python in (sys.executable, shutil.which("python3") or "python3"):
        with contextlib.suppress(OSError):
            if subprocess.run([python, "-m", "uv", "--version"], capture_output=True, check=False).returncode == 0:
                return [python, "-m", "uv"]
    raise RuntimeError("uv is not installed (python3 -m uv): the controller venv is built with it")


def build_venv(target: Path) -> None:
    uv = uv_python()
    subprocess.run([*uv, "venv", "-q", "--python", "/usr/bin/python3", str(target)], check=True, capture_output=True)
    proc = subprocess.run([*uv, "pip", "install", "-q", "--offline", "--compile-bytecode", "-p",
                           str(target / "bin" / "python"), *VENV_PACKAGES], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the controller venv: uv pip install failed: {proc.stderr.strip()[-800:]}")


def remote_config(user: SSHUser, venv: Path, known_hosts: Path) -> str:
    return (
        "jobs:\n"
        "  controller:\n"
        "    max_launching: 1\n"  # --seed launch: the controller barely starts any before the cancel
        f"    resources: {{infra: ssh/{user.name}}}\n"
        f"    python: {venv}/bin/python\n"
        "infra:\n"
        "  local: {enabled: false}\n"
        "  sim: {enabled: true, provision_delay_s: 0}\n"
        "  ssh:\n"
        f"    known_hosts_file: {known_hosts}\n"
        "    hosts:\n"
        f"      - {{name: {user.name}, host: 127.0.0.1, port: {user.port}, user: {user.name}, "
        f"identity_file: {user.identity_file}}}\n"
    )


LOCAL_CONFIG = "infra:\n  local: {enabled: false}\n  sim: {enabled: true, provision_delay_s: 0}\n"


def seed(paths: Paths, n: int) -> float:
    """N finished jobs in the state DB through skytui's own Store (its controller stopped); seconds."""
    started = time.perf_counter()
    store = Store(paths.db_url)
    try:
        ids = store.submit_jobs(
            name="rq", tasks=[NewTask("rq", "sky-managed-rq_{job_id}-0", "sim", 1)],
            spec={"name": "rq", "tasks": [{"name": "rq", "run": "sleep 100000", "resources": {"infra": "sim"}}]},
            secrets={}, num_jobs=n,
        )
        cancelled = store.cancel_unstarted(ids)
        if len(cancelled) != n:
            raise RuntimeError(f"seeding {paths.home}: {len(cancelled)} of {n} jobs cancelled")
    finally:
        store.close()
    return time.perf_counter() - started


def give_back(user: SSHUser) -> None:
    """Every file under the controller's home to its login (root wrote the DB)."""
    subprocess.run(["chown", "-R", f"{user.name}:{user.name}", str(user.home / CONTROLLER_BASE)], check=True)


def wait_all_ended(home: Home, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        _, out = home.cli("jobs", "queue", "--json", "--skip-finished")
        if not json.loads(out)["jobs"]:
            return time.monotonic() - started
        time.sleep(2)
    raise RuntimeError(f"{home.name}: jobs still in progress {timeout:g} s after cancel -a")


# ------------------------------------------------------------------ the run


def run_bench(args: argparse.Namespace, root: Path, fig: Figures, cleanups: list[Any]) -> None:
    venv = root / "ctlvenv"
    progress("building the controller venv (uv, offline, bytecode compiled)")
    started = time.perf_counter()
    build_venv(venv)
    fig.venv_s = time.perf_counter() - started
    server = RealSSHD(root / "sshd")
    cleanups.append(server.stop)
    one_user, many_user = server.new_user(), server.new_user()
    pycache = root / "pycache"
    # Not created: an empty credential file hangs the first contact (asyncssh
    # sends no EOF after an empty `input`, so `cat` there never ends).
    known_hosts = root / "known_hosts"
    homes = {
        "remote-1": Home(root, "remote-1", remote_config(one_user, venv, known_hosts), pycache, one_user),
        "remote-N": Home(root, "remote-N", remote_config(many_user, venv, known_hosts), pycache, many_user),
        "local-1": Home(root, "local-1", LOCAL_CONFIG, pycache),
        "local-N": Home(root, "local-N", LOCAL_CONFIG, pycache),
    }
    for home in homes.values():
        cleanups.append(lambda h=home: (stop_everything(h.paths), kill_home_processes(h.paths.home)))
    remotes = [homes["remote-1"], homes["remote-N"]]
    for home in reversed(remotes):  # stopped before the users go (cleanups run last first)
        cleanups.append(lambda h=home: h.cli("controller", "stop", timeout=120))

    for home in remotes:
        progress(f"{home.name}: skytui controller start (first contact: code, config, credentials)")
        fig.start_s[home.name], _ = home.cli("controller", "start", timeout=300)
    if args.seed == "launch":
        task = root / "rq.yaml"
        task.write_text(TASK_YAML)
        many = homes["remote-N"]
        progress(f"remote-N: jobs launch -y -d --num-jobs {args.jobs}")
        fig.launch_s, _ = many.cli("jobs", "launch", "-y", "-d", str(task), "--num-jobs", str(args.jobs),
                                   timeout=600)
        fig.launch_cancel_s, _ = many.cli("jobs", "cancel", "-a", "-y", timeout=300)
        fig.launch_drain_s = wait_all_ended(many, 600)
    for home in remotes:
        home.cli("controller", "stop", timeout=120)

    for name, home in homes.items():
        n = home.jobs = 1 if name.endswith("-1") else args.jobs
        if name == "remote-N" and args.seed == "launch":
            continue
        progress(f"{name}: {n} jobs through Store into {home.state_paths.db_url}")
        if home.user is not None:
            home.state_paths.home.mkdir(parents=True, exist_ok=True)
        fig.seed_s[name] = seed(home.state_paths, n)
        if home.user is not None:
            give_back(home.user)

    progress("warm-up: one queue per home (bytecode on both ends)")
    for home in homes.values():
        home.cli(*QUEUE)  # not -a: that one may fail at N (see the docstring), and is recorded below

    progress(f"{args.repeats} rounds of `jobs queue --json` and `jobs queue -a --json`, the four homes interleaved")
    for _ in range(args.repeats):
        for command in (QUEUE, QUEUE_ALL):
            for name, home in homes.items():
                key = (name, " ".join(command[2:]))
                if key in fig.failed:
                    continue
                try:
                    seconds, out = home.cli(*command)
                except RuntimeError as exc:  # said in the report; the other figures go on
                    fig.failed[key] = str(exc)
                    continue
                fig.runs.setdefault(key, []).append(seconds)
                fig.rows[key] = len(json.loads(out)["jobs"])
                fig.answer_bytes[key] = len(out.encode())

    progress(f"{args.split_runs} probed runs of `jobs queue -a --json` per home (the split)")
    for _ in range(args.split_runs):
        for name, home in homes.items():
            wall, parts = home.probe(*QUEUE_ALL)
            fig.split.setdefault(name, []).append(parts)
            fig.split_wall.setdefault(name, []).append(wall)
            if home.user is not None:
                fig.machine_split.setdefault(name, []).append(home.probe_machine(venv))


# ------------------------------------------------------------------ report


def report(fig: Figures, args: argparse.Namespace) -> None:
    n = fig.jobs
    print()
    print(f"skytui bench/remote_queue.py: `jobs queue --json` against a remote controller (ssh, 127.0.0.1), "
          f"1 job and {n:,}")
    print(f"machine: {fig.machine}")
    if fig.timed_out:
        print(f"!! TIMEOUT ({fig.error or ''}): the figures below are partial")
    elif fig.error:
        print(f"!! ERROR: {fig.error}")
    if fig.venv_s is not None:
        print(f"  set-up: controller venv {fig.venv_s:.1f} s; controller start (first contact) "
              + ", ".join(f"{k} {v:.1f} s" for k, v in fig.start_s.items()))
    if fig.seed_s:
        print("  rows through Store: " + ", ".join(f"{k} {v:.2f} s" for k, v in fig.seed_s.items()))
    if fig.launch_s is not None:
        print(f"  rows through `jobs launch -y -d --num-jobs {n}` (remote): {fig.launch_s:.2f} s, then `jobs cancel "
              f"-a -y` {fig.launch_cancel_s or 0:.2f} s and {fig.launch_drain_s or 0:.1f} s until every job ended "
              "(the Store way: see `--seed store`)")

    def med(key: tuple[str, str]) -> float:
        return statistics.median(fig.runs[key])

    for command in ("--json", "-a --json"):
        keys = [(home, command) for home in ("remote-1", "remote-N", "local-1", "local-N")]
        if not any(k in fig.runs or k in fig.failed for k in keys):
            continue
        print()
        print(f"  `skytui jobs queue {command}` ({args.repeats} runs each, interleaved)")
        for key in keys:
            if key in fig.failed:
                print(f"    {key[0]:<9} FAILS: {fig.failed[key][:300]}")
                continue
            values = fig.runs[key]
            print(f"    {key[0]:<9} {fig.rows[key]:>6,} jobs ({fig.answer_bytes[key] / 1e6:5.2f} MB) in the answer   "
                  f"median {med(key):6.3f} s   p95 {pct(values, 95):6.3f} s   min {min(values):.3f}  max {max(values):.3f}")
        if not all(k in fig.runs for k in keys):
            print("    (ratios: see the probed runs below)")
            continue
        r1, rn, l1, ln = (med(k) for k in keys)
        print(f"    remote N / remote 1: {rn / r1:.2f}x          local N / local 1: {ln / l1:.2f}x "
              f"(issue-11 target for local: <= {TARGET_LOCAL_RATIO:g}x: "
              f"{'PASS' if ln / l1 <= TARGET_LOCAL_RATIO else 'FAIL'}; remote against it: "
              f"{'within' if rn / r1 <= TARGET_LOCAL_RATIO else 'beyond'})")
        print(f"    remote / local: {r1 / l1:.2f}x at 1 job, {rn / ln:.2f}x at {n:,} "
              f"(remote adds {r1 - l1:+.3f} s at 1, {rn - ln:+.3f} s at {n:,})")
        if n >= 10_000:
            print(f"    SkyPilot `sky jobs queue` {SKYPILOT_QUEUE_10K_S:g} s at 10k (S11): remote at {n:,} is "
                  f"{fmt_ratio(SKYPILOT_QUEUE_10K_S / rn)} as fast, local {fmt_ratio(SKYPILOT_QUEUE_10K_S / ln)}")
    if fig.split:
        names = [h for h in ("remote-1", "remote-N", "local-1", "local-N") if h in fig.split]
        print()
        print(f"  where `jobs queue -a --json` spends its time (median of {args.split_runs} probed runs, each answering "
              "every job; seconds, exclusive parts)")
        print("    " + f"{'part':<28}" + "".join(f"{h:>10}" for h in names))
        for part in PARTS:
            cells = [statistics.median(run.get(part, 0.0) for run in fig.split[h]) for h in names]
            if any(c > 0.0005 for c in cells):
                print("    " + f"{part:<28}" + "".join(f"{c:>10.3f}" for c in cells))
        print("    " + f"{'wall (probed), median':<28}"
              + "".join(f"{statistics.median(fig.split_wall[h]):>10.3f}" for h in names))
        print("    " + f"{'wall (probed), p95':<28}" + "".join(f"{pct(fig.split_wall[h], 95):>10.3f}" for h in names))
        if len(names) == 4:
            r1, rn, l1, ln = (statistics.median(fig.split_wall[h]) for h in names)
            print(f"    probed: remote N / remote 1 {rn / r1:.2f}x; local N / local 1 {ln / l1:.2f}x (issue-11 "
                  f"target for local <= {TARGET_LOCAL_RATIO:g}x); remote / local {r1 / l1:.2f}x at 1, {rn / ln:.2f}x "
                  f"at {n:,}" + (f"; SkyPilot {SKYPILOT_QUEUE_10K_S:g} s at 10k (S11): remote "
                                 f"{fmt_ratio(SKYPILOT_QUEUE_10K_S / rn)} as fast" if n >= 10_000 else ""))
        print("    (the probe, unlike skytui today, reads an answer line longer than asyncssh's 2 MiB receive "
              "window whole: see the docstring)")
        print("    (API process start + hello: from the channel opened to the first line of "
              "`python -m skytui.client.serve` there: its interpreter, imports, store open, hello)")
        remote_names = [h for h in names if h in fig.machine_split]
        if remote_names:
            print("    of which, on the machine (the same steps run there by runuser, no sshd):")
            for part in MACHINE_PARTS:
                print("    " + f"  {part:<26}" + "".join(
                    f"{statistics.median(run[part] for run in fig.machine_split[h]):>10.3f}" for h in remote_names))
    if (nproc := os.cpu_count()) and nproc != 2:
        print(f"  note: this machine has {nproc} CPUs; the project's reference machine has 2")


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in the big homes (default 10,000)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per home and command (default 10)")
    parser.add_argument("--split-runs", type=int, default=10, help="probed runs per home (default 10)")
    parser.add_argument("--seed", choices=("store", "launch"), default="store",
                        help="how remote-N gets its jobs (default: through Store, straight into its DB)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (the users go)")
    args = parser.parse_args()
    if args.jobs < 2 or args.repeats < 1 or args.split_runs < 0:
        parser.error("--jobs must be 2 or more, --repeats 1 or more")
    if (reason := skip_reason()) is not None:
        print(f"cannot run: {reason}")
        return 1
    fig = Figures(jobs=args.jobs, machine=machine())
    root = Path(tempfile.mkdtemp(prefix="skytui-rq-"))
    os.chmod(root, 0o755)  # the users read the controller venv under it

    arm_deadline(int(args.timeout) + 1, message="global timeout")
    print(f"skytui bench/remote_queue.py: {args.jobs} jobs, temporary directory {root}")
    print(f"machine: {fig.machine}", flush=True)
    cleanups: list[Any] = []
    try:
        run_bench(args, root, fig, cleanups)
    except GlobalTimeout as exc:
        fig.timed_out, fig.error = True, str(exc)
    except (KeyboardInterrupt, Terminated):
        fig.error = "interrupted"
    except Exception as exc:  # noqa: BLE001 - report what we have
        fig.error = f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - the rest still runs
                print(f"  clean-up: {type(exc).__name__}: {str(exc)[:200]}")
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(fig, args)
    if fig.timed_out:
        return 2
    return 1 if fig.error else 0


if __name__ == "__main__":
    sys.exit(main())
