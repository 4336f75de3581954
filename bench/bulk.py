"""Bulk operations and reads at 10,000 jobs: submit, `cancel -a`, `controller stop`, `queue --json`.

    .venv/bin/python bench/bulk.py [--jobs 10000] [--max-running 32] [--max-launching 16]
                                   [--settle-s 10] [--repeats 3] [--running-wait-s 120]
                                   [--timeout 900] [--keep]

Everything goes through the real `skytui` command, as a user types it, in a
fresh temporary SKYTUI_HOME (the real home is never touched) on the `local`
infra:

* submit: `jobs launch -y -d --num-jobs N` of a task that sleeps (`run: sleep
  600`), wall time of the command and the line it printed (a range, not N ids);
  the controller then runs `--max-running` of them at a time;
* once those are RUNNING: `jobs cancel -a -y`, wall time; how many jobs are
  PENDING right after it returns and `--settle-s` seconds later; how many
  jobs left PENDING (STARTING/RECOVERING) after it returned (must be 0); and
  how long until every job is CANCELLED (the running ones torn down in
  parallel), if that happens within `--settle-s`;
* then, whatever is still being cancelled, `controller stop`: wall time,
  exit code, and whether it printed a traceback;
* `jobs queue -a --json` at N jobs and, in a second home, at 1 job (launched,
  cancelled and stopped the same way), `--repeats` times each, interleaved;
  the median of each and their ratio.

Each figure is printed beside its target (cancel -a <= 2 s with 0 PENDING
after it and 0 starts after it; controller stop <= 10 s without a traceback;
queue at N <= 1.5x queue at 1) and SkyPilot's anchor (perf_rel.md S11: `sky
jobs queue` 7.2 s at 10k jobs; F19/#4296: cancelling many pending jobs is
slow; goal: cancelling 2,000 jobs < 30 s).

The CLI runs as an installed skytui does: with its bytecode cached. When this
environment forbids writing bytecode (PYTHONDONTWRITEBYTECODE), the commands
get a private PYTHONPYCACHEPREFIX in the temporary directory instead, and one
warm-up run of each command fills it; otherwise every command would pay for
compiling every module it imports, which no installed copy does.

Exit 0 if every target passes, 1 otherwise (or on an error), 2 after
`--timeout` seconds (the figures gathered so far are printed). The controller
and node host of both homes are stopped and their processes killed on every
path, and the temporary directory is removed (unless `--keep`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
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
    fmt_ratio,
    kill_home_processes,
    machine,
    stop_everything,
)

from skytui.config import Paths
from skytui.engine.store import Store

TASK_YAML = "name: bulk\nresources:\n  infra: local\nrun: sleep 600\n"

# Targets (issue 11).
TARGET_CANCEL_S = 2.0
TARGET_STOP_S = 10.0
TARGET_QUEUE_RATIO = 1.5
# Anchors (/work/shared/reference/perf_rel.md).
SKYPILOT_QUEUE_10K_S = 7.2  # S11: `sky jobs queue` full CLI path at 10k jobs (PR #7455)
GOAL_CANCEL_2000_S = 30.0  # section 2 goal, against F19 / #4296 (cancelling many pending jobs is slow)


@dataclass
class Figures:
    jobs: int
    submit_s: float | None = None
    submit_line: str = ""
    running_at_cancel: int = 0
    cancel_s: float | None = None
    cancel_line: str = ""
    pending_after_cancel: int | None = None
    pending_after_settle: int | None = None
    started_after_cancel: int | None = None
    all_cancelled_s: float | None = None
    unfinished_at_stop: int | None = None
    stop_s: float | None = None
    stop_code: int | None = None
    stop_traceback: bool = False
    queue_one: list[float] = field(default_factory=list)
    queue_many: list[float] = field(default_factory=list)
    queue_many_jobs: int | None = None
    timed_out: bool = False
    error: str | None = None


class Home:
    """One temporary skytui world and the `skytui` command that runs in it."""

    def __init__(self, root: Path, name: str, pycache: Path | None, config: str) -> None:
        self.paths = Paths(root / name)
        self.paths.ensure()
        (self.paths.home / "config.yaml").write_text(config)
        # The commands run this checkout's skytui, whatever the venv has installed.
        python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, "SKYTUI_HOME": str(self.paths.home), "PYTHONPATH": python_path}
        if pycache is not None:
            self.env.pop("PYTHONDONTWRITEBYTECODE", None)
            self.env["PYTHONPYCACHEPREFIX"] = str(pycache)

    def cli(self, *argv: str, timeout: float = 300.0) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run `skytui ARGV`; (wall seconds, the process)."""
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "skytui.cli", *argv], env=self.env, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL, check=False, cwd=self.paths.home,
        )
        return time.perf_counter() - started, proc

    def must(self, *argv: str, timeout: float = 300.0) -> tuple[float, str]:
        seconds, proc = self.cli(*argv, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"`skytui {' '.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
        return seconds, proc.stdout

    def store(self) -> Store:
        return Store(self.paths.db_url)

    def tear_down(self) -> None:
        stop_everything(self.paths)
        kill_home_processes(self.paths.home)


def status_counts(store: Store) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in store.jobs():
        counts[job.status] = counts.get(job.status, 0) + 1
    return counts


def starts_after(store: Store, event_id: int) -> int:
    """Jobs that left PENDING (started) in the events after `event_id`."""
    started: set[int] = set()
    while batch := store.events(after_id=event_id):
        for event in batch:
            if event.kind == "status" and event.from_status == "PENDING" and event.to_status in (
                "STARTING", "RECOVERING",
            ):
                started.add(event.job_id or 0)
        event_id = batch[-1].id
    return len(started)


def wait_until(predicate: object, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False


def progress(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_bench(args: argparse.Namespace, root: Path, fig: Figures) -> None:
    pycache = root / "pycache" if sys.flags.dont_write_bytecode or os.environ.get("PYTHONDONTWRITEBYTECODE") else None
    config = (f"jobs:\n  controller:\n    max_running: {args.max_running}\n"
              f"    max_launching: {args.max_launching}\n")
    many, one = Home(root, "many", pycache, config), Home(root, "one", pycache, config)
    homes = [many, one]
    task = root / "bulk.yaml"
    task.write_text(TASK_YAML)
    try:
        # Warm-up: the commands' bytecode (and the DB files of both homes).
        for home in homes:
            home.must("jobs", "queue", "-a", "--json")
        one.must("validate", str(task))

        progress(f"submitting {args.jobs} jobs")
        fig.submit_s, out = many.must("jobs", "launch", "-y", "-d", str(task), "--num-jobs", str(args.jobs))
        fig.submit_line = next((ln for ln in out.splitlines() if " submitted" in ln), "")
        one.must("jobs", "launch", "-y", "-d", str(task))

        store = many.store()
        try:
            target = min(args.max_running, args.jobs)
            progress(f"waiting for {target} RUNNING")
            wait_until(lambda: status_counts(store).get("RUNNING", 0) >= target, args.running_wait_s)
            fig.running_at_cancel = status_counts(store).get("RUNNING", 0)

            progress("jobs cancel -a")
            fig.cancel_s, out = many.must("jobs", "cancel", "-a", "-y")
            returned, last_event = time.time(), store.last_event_id()
            fig.pending_after_cancel = status_counts(store).get("PENDING", 0)
            fig.cancel_line = next((ln for ln in out.splitlines() if ln.startswith("Cancelling")), "")
            one.must("jobs", "cancel", "-a", "-y")

            def all_cancelled() -> bool:
                if fig.all_cancelled_s is None and set(status_counts(store)) == {"CANCELLED"}:
                    fig.all_cancelled_s = time.time() - returned
                return fig.all_cancelled_s is not None

            wait_until(lambda: all_cancelled() and False, returned + args.settle_s - time.time())
            fig.pending_after_settle = status_counts(store).get("PENDING", 0)
            fig.started_after_cancel = starts_after(store, last_event)
            fig.unfinished_at_stop = sum(n for status, n in status_counts(store).items() if status != "CANCELLED")
        finally:
            store.close()

        progress("controller stop")
        fig.stop_s, proc = many.cli("controller", "stop", timeout=120)
        fig.stop_code = proc.returncode
        fig.stop_traceback = "Traceback" in proc.stderr or "Traceback" in proc.stdout
        one.must("controller", "stop", timeout=120)
        settle_for_reads(many, args.running_wait_s)

        progress(f"jobs queue -a --json x{args.repeats} at 1 and at {args.jobs} jobs")
        for _ in range(args.repeats):
            seconds, _out = one.must("jobs", "queue", "-a", "--json")
            fig.queue_one.append(seconds)
            seconds, out = many.must("jobs", "queue", "-a", "--json")
            fig.queue_many.append(seconds)
            fig.queue_many_jobs = len(json.loads(out)["jobs"])
    finally:
        for home in homes:
            home.tear_down()


def shown(text: str, limit: int = 100) -> str:
    """A printed line as the report quotes it: a long one cut, with its length."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text):,} chars)"


def settle_for_reads(home: Home, timeout: float) -> None:
    """Cancels the stop cut short are finished by a controller first: with
    work left, `jobs queue` would revive one, and time its start-up and
    its work instead of the read."""
    store = home.store()
    try:
        if set(status_counts(store)) <= {"CANCELLED"}:
            return
        progress("finishing the cancels the stop left, before timing the reads")
        home.must("controller", "start")
        wait_until(lambda: set(status_counts(store)) <= {"CANCELLED"}, timeout)
        home.must("controller", "stop", timeout=120)
    finally:
        store.close()


def verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


def report(fig: Figures, args: argparse.Namespace) -> bool:
    checks: list[bool] = []

    def line(label: str, value: str, ok: bool | None, target: str, anchor: str = "") -> None:
        if ok is not None:
            checks.append(ok)
        print(f"  {verdict(ok)}  {label:<34} {value:<26} target {target:<22} {anchor}")

    print()
    print(f"figures ({fig.jobs} jobs, max_running {args.max_running}):")
    if fig.submit_s is not None:
        print(f"  submit: {fig.submit_s:.2f} s ({fig.jobs / fig.submit_s:,.0f} jobs/s); printed: {shown(fig.submit_line)}")
        line("submit names a range", f"{len(fig.submit_line)} chars", len(fig.submit_line) < 120, "< 120 chars")
    if fig.cancel_s is not None:
        print(f"  cancel -a with {fig.running_at_cancel} RUNNING; printed: {shown(fig.cancel_line)}")
        line("jobs cancel -a", f"{fig.cancel_s:.2f} s", fig.cancel_s <= TARGET_CANCEL_S, f"<= {TARGET_CANCEL_S:g} s",
             f"goal: 2,000 jobs < {GOAL_CANCEL_2000_S:g} s; SkyPilot #4296: slow")
        line("PENDING when it returned", str(fig.pending_after_cancel), fig.pending_after_cancel == 0, "0")
        line(f"PENDING {args.settle_s:g} s later", str(fig.pending_after_settle), fig.pending_after_settle == 0, "0")
        line("jobs started after it returned", str(fig.started_after_cancel), fig.started_after_cancel == 0, "0")
        done = f"{fig.all_cancelled_s:.1f} s" if fig.all_cancelled_s is not None else f"not within {args.settle_s:g} s"
        line("every job CANCELLED after", done, None, "(running torn down in parallel)")
    if fig.stop_s is not None:
        print(f"  controller stop with {fig.unfinished_at_stop} job(s) not yet CANCELLED")
        line("controller stop", f"{fig.stop_s:.2f} s (exit {fig.stop_code})",
             fig.stop_s <= TARGET_STOP_S and fig.stop_code == 0, f"<= {TARGET_STOP_S:g} s")
        line("controller stop traceback", "yes" if fig.stop_traceback else "no", not fig.stop_traceback, "no")
    if fig.queue_one and fig.queue_many:
        one, many = statistics.median(fig.queue_one), statistics.median(fig.queue_many)
        print(f"  queue -a --json runs: 1 job {', '.join(f'{s:.2f}' for s in fig.queue_one)} s; "
              f"{fig.queue_many_jobs} jobs {', '.join(f'{s:.2f}' for s in fig.queue_many)} s")
        line("queue -a --json at 1 job", f"{one:.2f} s", None, "")
        anchor = (f"SkyPilot S11: {SKYPILOT_QUEUE_10K_S:g} s at 10k ({fmt_ratio(SKYPILOT_QUEUE_10K_S / many)} "
                  "as fast)" if (fig.queue_many_jobs or 0) >= 10_000 else f"SkyPilot S11: {SKYPILOT_QUEUE_10K_S:g} s at 10k")
        line(f"queue -a --json at {fig.queue_many_jobs} jobs", f"{many:.2f} s", None, "", anchor)
        line("queue ratio N / 1", f"{many / one:.2f}x", many / one <= TARGET_QUEUE_RATIO,
             f"<= {TARGET_QUEUE_RATIO:g}x")
    if fig.error:
        print(f"error: {fig.error}")
    if fig.timed_out:
        print(f"timed out after {args.timeout:g} s: the figures above are partial")
    return bool(checks) and all(checks) and not fig.error and not fig.timed_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs submitted at once (default 10,000)")
    parser.add_argument("--max-running", type=int, default=32, help="jobs.controller.max_running (default 32)")
    parser.add_argument("--max-launching", type=int, default=16, help="jobs.controller.max_launching (default 16)")
    parser.add_argument("--settle-s", type=float, default=10.0, help="look at PENDING again this long after cancel")
    parser.add_argument("--repeats", type=int, default=3, help="runs of `queue -a --json` per home (default 3)")
    parser.add_argument("--running-wait-s", type=float, default=120.0, help="wait this long for RUNNING jobs")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.jobs < 1 or args.repeats < 1:
        parser.error("--jobs and --repeats must be 1 or more")

    fig = Figures(jobs=args.jobs)
    root = Path(tempfile.mkdtemp(prefix="skytui-bulk-"))

    arm_deadline(int(args.timeout) + 1, on_term=False)
    print(f"skytui bench/bulk.py: {args.jobs} jobs, SKYTUI_HOME under {root} (temporary)")
    print(f"machine: {machine()}", flush=True)
    try:
        run_bench(args, root, fig)
    except GlobalTimeout:
        fig.timed_out = True
    except KeyboardInterrupt:
        fig.error = "interrupted"
    except Exception as exc:  # noqa: BLE001 - report what we have
        fig.error = f"{type(exc).__name__}: {exc}"
    finally:
        signal.alarm(0)
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    ok = report(fig, args)
    if fig.timed_out:
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
