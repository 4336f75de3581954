"""The whole TUI at 10,000 jobs: first paint, key -> frame under 1,000 changes/s, log ingestion.

    .venv/bin/python bench/tui.py [--jobs 10000] [--active 300] [--rate 1000] [--rounds 12]
                                  [--key-seconds 75] [--log-lines 500000] [--timeout 300]

A fresh temporary SKYTUI_HOME (removed at the end; the real home is never
touched) gets a state DB built through the real `skytui.engine.store.Store`:
`--jobs` jobs submitted in a few `submit_jobs` batches (one in ten a 3-task
pipeline), then `Store.transition_task` calls give `--active` of them
PENDING / STARTING / RUNNING and the rest a mix of finished statuses, each
started task with an attempt (`Store.start_attempt` / `end_attempt`), in the
order the controller writes them. (To build
fast, the finished-status transitions run in shared transactions of 800 jobs:
the same SQL, one commit per batch.) No controller is started. The script prints:

* first paint: from creating `SkyTUI()` (its worker reads the snapshot) to the
  first frame in which the queue shows rows, headless in `App.run_test(size=
  (140, 40))`, three times, with its parts (snapshot read, the screen's first
  redraw); and process start -> rows on screen for `SkyTUI().run()` on a
  pseudo-terminal (140x40, Textual's real Linux driver; interpreter, imports,
  DB read included), as bench/tui_table.py measures it; and the same for
  the `skytui` command itself (`skytui.cli:main`, the console script: its CLI imports
  and config look included) from a bare interpreter, which is what a user
  waits for (the controller supervisor is left out: it starts after the
  rows, and would start a controller in the bench's home);
* key -> frame: while a writer process (its own Store) streams `--rate`
  RUNNING -> RECOVERING -> RUNNING transitions per second over the RUNNING
  tasks, and the app follows them through its real feed (`Client.changes`),
  keys go in the way the pilot sends them (`driver.send_message(events.Key)`,
  as `Pilot.press` does, without its wait-for-idle) at human spacing (30-130
  ms apart): cursor down, `/` + a filter word one keystroke at a time, escape
  (clear the filter), enter (open the job under the cursor), escape (back).
  Latency runs from the key leaving the pilot to the first frame that shows
  its effect (the cursor on the next row, the table filtered to the new text,
  the job screen, ...). A "frame" is `App._display` with a compositor update,
  which the script also encodes to a truecolor byte stream as the Linux driver
  would (headless Textual skips that step); p50 / p95 / max per kind of key;
* log ingestion: a RUNNING job with a log segment open (`Store.open_segment`)
  whose `logs/jobs/<id>/0.log` a writer process fills with `--log-lines` lines
  of ~100 characters in 1 MB writes (made beforehand, so the file grows far
  faster than the TUI reads), while the logs screen (`l`) is open;
  lines/s from the first byte written to the first frame after the last line
  reached the LogView, through the screen's real worker and the client's log
  follower; once with the status stream running, once without;
* the machine, each figure beside its anchor (reference/perf_rel.md S11 and
  T2/T3, env.md 3.2) as a ratio, and the targets with PASS/FAIL.

Exit 0 only if every target passes (first paint <= 250 ms; `skytui` -> rows
<= 600 ms; key -> frame p95 <= 50 ms for cursor moves, filter keystrokes and
opening a job; enter -> job details shown p95 <= 150 ms; >= 50,000 log
lines/s with the status stream running); 1 otherwise; 2 after `--timeout`
seconds (the figures gathered so far are printed). Child processes die with
this one (PR_SET_PDEATHSIG) and are stopped on every exit path.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import fcntl
import inspect
import io
import json
import os
import platform
import random
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SIZE = (140, 40)
FIRST_PAINT_TARGET_MS = 250.0
COMMAND_TO_ROWS_TARGET_MS = 600.0  # `skytui` typed -> the queue's rows on screen
KEY_P95_TARGET_MS = 50.0
DETAILS_SHOWN = "enter -> job details shown"
DETAILS_P95_TARGET_MS = 150.0  # the job view's details come from a worker: a budget of their own
LOG_TARGET_LINES_S = 50_000.0
# Anchors (reference/perf_rel.md S11 and T2/T3; reference/env.md 3.2).
SKY_QUEUE_10K_MS = 7200.0  # `sky jobs queue`, 10,000 jobs, end to end
DATATABLE_10K_MS = (1000.0, 3500.0)  # Textual DataTable first paint of 10,000 rows
LOG_WRITE_LINES = (100_000 / 1.5, 100_000 / 0.8)  # Textual Log.write_lines, lines/s
LOG_WRITE_LINE = (100_000 / 83.0, 100_000 / 43.0)  # Textual Log.write_line per line, lines/s

JOB_NAMES = (
    "train-llama-7b", "train-llama-70b", "eval-mmlu", "eval-gsm8k", "sweep-lr", "data-prep",
    "finetune-mistral", "rl-ppo", "embed-corpus", "distill-small", "tokenize-web", "serve-canary",
)
PIPELINE_TASKS = ("prep", "train", "eval")
REQUESTED = ("1x[H100:8]", "1x[A100:8]", "2x[L4:1]", "1x[CPU:4]", "4x[H100:8]")
INFRAS = ("aws/us-east-1", "gcp/us-central1", "sim/eu-west-2", "k8s/gpu-pool", "local")
INSTANCE_TYPES = ("p5.48xlarge", "a3-highgpu-8g", "sim-h100-8", "gpu-pool-h100", "local")
PRICES = (98.32, 88.25, 40.0, 0.0, 0.0)  # $/h, per INFRAS entry
FINISHED_MIX = (  # status, weight
    ("SUCCEEDED", 55), ("CANCELLED", 15), ("FAILED", 15), ("FAILED_SETUP", 5),
    ("FAILED_NO_RESOURCE", 5), ("FAILED_PRECHECKS", 5),
)
FILTER_WORDS = ("eval", "sweep", "fail", "run")
LOG_PID = 4242

# Everything measured so far: printed at the end, or by the watchdog on timeout.
RESULTS: dict[str, Any] = {}
CHILDREN: list[subprocess.Popen[Any]] = []
_PRINT_LOCK = threading.Lock()
_printed = False


def plain_line(i: int) -> str:
    # ~100 characters, like a training log line.
    return f"2026-11-28 12:00:{i % 60:02d} step={i:08d} loss={1 / (i + 1):.6f} lr=3.0e-4 tokens/s=81234 gpu_mem=71.2GiB ok"


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _die_with_parent() -> None:
    """In a child of this script: get SIGKILL when the benchmark process dies, however it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent was already gone
        os._exit(1)


def _spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start a child (this script in a child role, which calls `_die_with_parent` first)."""
    proc = subprocess.Popen(args, **kwargs)
    CHILDREN.append(proc)
    return proc


def _stop_children() -> None:
    for proc in CHILDREN:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import sqlalchemy
    import textual

    try:
        git = ["git", "-C", str(REPO)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=False, capture_output=True,
                              text=True, timeout=5).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "skytui"], check=False,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        commit = f"{head}{' + uncommitted changes in skytui/' if dirty else ''}" if head else "?"
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return {
        "commit": commit,
        "nproc": os.cpu_count(), "cpu": cpu, "load": os.getloadavg(), "python": platform.python_version(),
        "textual": textual.__version__, "sqlalchemy": sqlalchemy.__version__,
    }


# =============================================================== the state DB


@contextmanager
def _batched(store: Any) -> Any:
    """Run the Store calls inside the block in one transaction (one commit).

    Only for building the fixture: the calls are the real ones, with their
    SQL, events and derived job statuses; only the commits are shared.
    """
    writer = getattr(store, "_writer", None)
    if writer is None or not callable(getattr(type(store), "_write", None)):
        yield  # the Store changed shape: fall back to a commit per call
        return
    with writer.begin() as conn:
        store._write = lambda: nullcontext(conn)
        try:
            yield
        finally:
            del store._write


def build_db(db_url: str, n_jobs: int, n_active: int, rng: random.Random) -> dict[str, Any]:
    from skytui.engine.status import TaskStatus as S
    from skytui.engine.store import NewTask, Store

    t0 = time.monotonic()
    store = Store(db_url)
    n_pipelines = n_jobs // 10
    n_single = n_jobs - n_pipelines - 1  # the last job is the log job
    jobs: list[tuple[int, int]] = []  # (job_id, number of tasks)

    def submit(name: str, tasks: Sequence[str], count: int) -> None:
        new = [NewTask(task, f"sky-managed-bench_{name}_{{job_id}}-{i}", rng.choice(REQUESTED), 1)
               for i, task in enumerate(tasks)]
        spec = {"name": name, "tasks": [{"name": t, "run": "python train.py"} for t in tasks]}
        ids = store.submit_jobs(name=name, tasks=new, spec=spec, secrets={}, num_jobs=count)
        jobs.extend((job_id, len(tasks)) for job_id in ids)

    per_batch = -(-n_single // len(JOB_NAMES))
    left = n_single
    for name in JOB_NAMES:
        count = min(per_batch, left)
        if count > 0:
            submit(name, [name], count)
            left -= count
    if n_pipelines:
        submit("pipe-prep-train-eval", PIPELINE_TASKS, n_pipelines)
    submitted_s = time.monotonic() - t0

    order = [job for job in jobs]
    rng.shuffle(order)
    active, finished = order[:n_active], order[n_active:]
    transitions = 0
    attempts = 0
    running: list[tuple[int, int]] = []
    counts: dict[str, int] = {}
    priced = "price_per_hour" in inspect.signature(store.start_attempt).parameters

    def tr(job_id: int, task_idx: int, to: S, **values: Any) -> None:
        nonlocal transitions
        store.transition_task(job_id, task_idx, to, **values)
        transitions += 1

    def start(job_id: int, task_idx: int, then: S | None = None, end: tuple[str, int | None] | None = None) -> None:
        """As the controller does: STARTING, an attempt placed somewhere, then `then`; `end` closes the attempt."""
        nonlocal attempts
        tr(job_id, task_idx, S.STARTING)
        where = rng.randrange(len(INFRAS))
        extra = {"price_per_hour": PRICES[where]} if priced else {}
        attempt_no = store.start_attempt(
            job_id, task_idx, infra=INFRAS[where], instance_type=INSTANCE_TYPES[where], use_spot=True, **extra
        )
        attempts += 1
        if then is not None:
            tr(job_id, task_idx, then, **({"exit_code": end[1]} if end and end[1] is not None else {}))
        if end is not None:
            store.end_attempt(job_id, task_idx, attempt_no, reason=end[0], exit_code=end[1])

    # Active: 20% PENDING, 15% STARTING, 65% RUNNING (the ones the stream cycles).
    with _batched(store):
        for k, (job_id, _ntasks) in enumerate(active):
            share = k / max(1, len(active))
            if share < 0.20:
                status = "PENDING"
            elif share < 0.35:
                status = "STARTING"
                start(job_id, 0)
            else:
                status = "RUNNING"
                start(job_id, 0, S.RUNNING)
                running.append((job_id, 0))
            counts[status] = counts.get(status, 0) + 1

    statuses = [s for s, w in FINISHED_MIX for _ in range(w)]
    for lo in range(0, len(finished), 800):
        with _batched(store):
            for job_id, ntasks in finished[lo:lo + 800]:
                status = rng.choice(statuses)
                counts[status] = counts.get(status, 0) + 1
                if status == "SUCCEEDED":
                    for task_idx in range(ntasks):
                        start(job_id, task_idx, S.RUNNING)
                        tr(job_id, task_idx, S.SUCCEEDED, exit_code=0)
                        store.end_attempt(job_id, task_idx, 1, reason="succeeded", exit_code=0)
                    continue
                if status == "CANCELLED":
                    tr(job_id, 0, S.CANCELLED)
                elif status == "FAILED":
                    start(job_id, 0, S.RUNNING)
                    tr(job_id, 0, S.FAILED, exit_code=1, failure_reason="exit code 1: CUDA out of memory")
                    store.end_attempt(job_id, 0, 1, reason="job failed", exit_code=1)
                elif status == "FAILED_SETUP":
                    start(job_id, 0, S.FAILED_SETUP, end=("setup failed", 2))
                else:
                    tr(job_id, 0, S(status), failure_reason="no resource satisfies the request")
                for task_idx in range(1, ntasks):
                    tr(job_id, task_idx, S.CANCELLED, message="an earlier task did not succeed")

    # The log job: the newest job (top of the queue), RUNNING, a run segment open at 0.
    log_ids = store.submit_jobs(
        name="train-chatty", tasks=[NewTask("train", "sky-managed-bench_chatty_{job_id}-0", "1x[H100:8]", 1)],
        spec={"name": "train-chatty", "tasks": [{"name": "train"}]}, secrets={}, num_jobs=1,
    )
    log_job = log_ids[0]
    start(log_job, 0, S.RUNNING)
    segment = store.open_segment(log_job, 0, 1, 0, "run", 0)
    store.update_segment(segment.id, pid=LOG_PID)
    counts["RUNNING"] = counts.get("RUNNING", 0) + 1
    store.close()
    return {
        "jobs": len(jobs) + 1, "pipelines": n_pipelines, "tasks": sum(n for _, n in jobs) + 1,
        "counts": counts, "transitions": transitions, "attempts": attempts, "seconds": time.monotonic() - t0,
        "submit_seconds": submitted_s, "running": running, "log_job": log_job,
    }


# ================================================================ writer processes


def status_writer_main(db_url: str, pairs_file: str, rate: float) -> None:
    """Child: cycle RUNNING -> RECOVERING -> RUNNING at `rate`/s; report on stdout; stop at stdin EOF."""
    from skytui.engine.status import TaskStatus as S
    from skytui.engine.store import Store

    pairs = [tuple(p) for p in json.loads(Path(pairs_file).read_text())]
    state = {pair: S.RUNNING for pair in pairs}
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    store = Store(db_url)
    out = sys.stdout
    done = 0
    index = 0
    start = time.monotonic()
    last_report = 0.0
    out.write(json.dumps({"n": 0, "t": start, "cpu": time.process_time()}) + "\n")
    out.flush()
    while not stop.is_set():
        now = time.monotonic()
        due = start + done / rate
        if now < due:
            time.sleep(min(due - now, 0.005))
            continue
        job_id, task_idx = pair = pairs[index % len(pairs)]
        index += 1
        current = state[pair]
        wanted = S.RECOVERING if current is S.RUNNING else S.RUNNING
        if store.transition_task(job_id, task_idx, wanted, expect=current, message="bench: preempted"
                                 if wanted is S.RECOVERING else "bench: recovered"):
            state[pair] = wanted
        done += 1
        if now - last_report >= 0.2:
            last_report = now
            out.write(json.dumps({"n": done, "t": time.monotonic(), "cpu": time.process_time()}) + "\n")
            out.flush()
    out.write(json.dumps({"n": done, "t": time.monotonic(), "cpu": time.process_time(), "final": True}) + "\n")
    out.flush()
    store.close()


class StatusWriter:
    """The writer child and its progress reports, for rates over any window."""

    def __init__(self, db_url: str, pairs: list[tuple[int, int]], rate: float, home: Path) -> None:
        pairs_file = home / "bench-running.json"
        pairs_file.write_text(json.dumps(pairs))
        self.reports: list[dict[str, Any]] = []
        self.proc = _spawn(
            [sys.executable, __file__, "--status-writer", db_url, str(pairs_file), str(rate)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.reports.append(json.loads(line))
            except ValueError:
                pass

    def wait_started(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.reports) < 2 and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the status writer exited early")
            time.sleep(0.05)

    def mark(self) -> dict[str, Any]:
        return dict(self.reports[-1]) if self.reports else {"n": 0, "t": time.monotonic(), "cpu": 0.0}

    @staticmethod
    def rate(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
        """(transitions/s, writer CPU share of one core) between two marks."""
        dt = b["t"] - a["t"]
        if dt <= 0:
            return float("nan"), float("nan")
        return (b["n"] - a["n"]) / dt, (b["cpu"] - a["cpu"]) / dt

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=2)


def log_writer_main(path: str, first: int, lines: int) -> None:
    """Child: append `lines` log lines in 1 MB writes as fast as the page cache takes them.

    The text is made before the clock starts, so the file grows far faster than
    any reader: the figure measured is the TUI's, not this writer's.
    """
    chunk = 10_000
    chunks = [
        ("\n".join(plain_line(i) for i in range(lo, min(first + lines, lo + chunk))) + "\n").encode()
        for lo in range(first, first + lines, chunk)
    ]
    with open(path, "ab", buffering=0) as f:
        start = time.monotonic()
        f.writelines(chunks)
        end = time.monotonic()
    print(json.dumps({"start": start, "end": end}), flush=True)


# ======================================================================= the app


def _css_path(app_class: type) -> Any:
    """The app's stylesheet, which Textual would look for beside a subclass's file."""
    css = app_class.CSS_PATH  # type: ignore[attr-defined]
    return Path(inspect.getfile(app_class)).parent / css if isinstance(css, str) else css


def make_app_classes() -> dict[str, Any]:
    """SkyTUI with a frame hook, a timed client, and timers on the screens' hot paths."""
    from rich.console import Console

    from skytui.app import SkyTUI
    from skytui.client import Client
    from skytui.screens.job import JobScreen
    from skytui.screens.jobs import JobsScreen

    stats: dict[str, list[Any]] = {"redraw": [], "snapshot": [], "changes": [], "job_shown": []}

    original_redraw = JobsScreen._redraw

    def timed_redraw(self: JobsScreen) -> None:
        t0 = time.monotonic()
        original_redraw(self)
        stats["redraw"].append((t0, time.monotonic() - t0, len(self.tui.jobs)))

    JobsScreen._redraw = timed_redraw  # type: ignore[method-assign]

    original_show = JobScreen._show

    def marked_show(self: JobScreen, *args: Any, **kwargs: Any) -> None:
        original_show(self, *args, **kwargs)
        stats["job_shown"].append(time.monotonic())

    JobScreen._show = marked_show  # type: ignore[method-assign]

    class TimedClient(Client):
        def snapshot(self, *, limit: int | None = None) -> Any:
            t0 = time.monotonic()
            result = super().snapshot(limit=limit)
            stats["snapshot"].append((t0, time.monotonic() - t0, len(result[0])))
            return result

        def changes(self, after_event_id: int) -> Any:
            t0 = time.monotonic()
            result = super().changes(after_event_id)
            stats["changes"].append((t0, time.monotonic() - t0, len(result[0])))
            return result

    class _Null(io.StringIO):
        def write(self, s: str) -> int:
            return len(s)

    class BenchTUI(SkyTUI):
        """Calls `frame_watchers` on every frame; encodes frames as the Linux driver would."""

        CSS_PATH = _css_path(SkyTUI)

        def __init__(self, *args: Any, encode: bool = True, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.frame_watchers: list[Callable[[Any, float], bool]] = []
            self.frames: list[float] = []
            self._encode = encode
            self._encoder = Console(
                file=_Null(), color_system="truecolor", force_terminal=True, legacy_windows=False,
                markup=False, highlight=False, emoji=False, width=SIZE[0], height=SIZE[1],
            )

        def _display(self, screen: Any, renderable: Any) -> None:
            super()._display(screen, renderable)
            if renderable is None or self._batch_count:
                return
            if self._encode and self.is_headless and hasattr(renderable, "render_segments"):
                renderable.render_segments(self._encoder)
            now = time.monotonic()
            self.frames.append(now)
            if self.frame_watchers:
                self.frame_watchers = [w for w in self.frame_watchers if not w(screen, now)]

    return {"BenchTUI": BenchTUI, "TimedClient": TimedClient, "stats": stats}


def _key_event(key: str) -> Any:
    """The Key event `Pilot.press(key)` sends (App._press_keys)."""
    import unicodedata

    from textual import events
    from textual.keys import (
        REPLACED_KEYS,
        _character_to_key,
        _get_unicode_name_from_key,
    )

    if len(key) == 1 and not key.isalnum():
        key = _character_to_key(key)
    original = REPLACED_KEYS.get(key, key)
    try:
        char: str | None = unicodedata.lookup(_get_unicode_name_from_key(original))
    except KeyError:
        char = key if len(key) == 1 else None
    return events.Key(key, char)


async def _wait(cond: Callable[[], bool], timeout: float, step: float = 0.003) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def first_paint_headless(classes: dict[str, Any]) -> dict[str, Any]:
    from skytui.config import paths
    from skytui.screens.jobs import JobsScreen
    from skytui.widgets.job_table import JobTable

    stats = classes["stats"]
    stats["redraw"].clear()
    stats["snapshot"].clear()
    marks: dict[str, float] = {}

    def watcher(screen: Any, now: float) -> bool:
        marks.setdefault("first_frame", now)
        if isinstance(screen, JobsScreen) and screen.query_one(JobTable).rows:
            marks["rows"] = now
            marks["row_count"] = len(screen.query_one(JobTable).rows)
            return True
        return False

    t0 = time.monotonic()
    app = classes["BenchTUI"](client=classes["TimedClient"](paths()), follow=False)
    app.frame_watchers.append(watcher)
    async with app.run_test(size=SIZE):
        ok = await _wait(lambda: "rows" in marks, 60)
        if not ok:
            raise RuntimeError("the queue never showed rows")
    snap_t, snap_s, snap_n = stats["snapshot"][0]
    redraws = [r for r in stats["redraw"] if r[2] > 0]
    return {
        "ms": (marks["rows"] - t0) * 1000,
        "first_frame_ms": (marks["first_frame"] - t0) * 1000,
        "snapshot_start_ms": (snap_t - t0) * 1000,
        "snapshot_ms": snap_s * 1000,
        "snapshot_jobs": snap_n,
        "redraw_ms": redraws[0][1] * 1000 if redraws else float("nan"),
        "rows": marks["row_count"],
    }


class Probe:
    """One key press: sent at `sent`, done at the first frame where `effect` holds."""

    def __init__(self, kind: str, effect: Callable[[Any], bool]) -> None:
        self.kind = kind
        self.effect = effect
        self.sent = 0.0
        self.frame: float | None = None

    def __call__(self, screen: Any, now: float) -> bool:
        if self.effect(screen):
            self.frame = now
            return True
        return False


async def interactive(
    classes: dict[str, Any], writer: StatusWriter | None, rounds: int, key_seconds: float, log_job: int,
    log_lines: int, rng: random.Random,
) -> None:
    """Key -> frame under the status stream, then log ingestion (stream on, then off)."""
    from textual.widgets import Input

    from skytui.config import paths
    from skytui.logs.store import task_log_path
    from skytui.screens.job import JobScreen
    from skytui.screens.jobs import JobsScreen
    from skytui.screens.logs import LogsScreen
    from skytui.widgets.job_table import JobTable
    from skytui.widgets.log_view import LogView

    stats = classes["stats"]
    app = classes["BenchTUI"](client=classes["TimedClient"](paths()), supervise=False)
    keys: dict[str, list[float]] = {}
    RESULTS["keys"] = keys
    misses: dict[str, int] = {}
    RESULTS["key_misses"] = misses

    def jobs_screen() -> JobsScreen:
        screen = app.screen_stack[0]
        assert isinstance(screen, JobsScreen)
        return screen

    async def press(
        key: str, kind: str, effect: Callable[[Any], bool], *, also: tuple[str, Callable[[Any], bool]] | None = None,
        timeout: float = 5.0,
    ) -> None:
        """Send `key`; record the time to the first frame where `effect` (and `also`'s effect) shows."""
        await asyncio.sleep(rng.uniform(0.03, 0.13))
        probes = [Probe(kind, effect)] + ([Probe(*also)] if also else [])
        app.frame_watchers.extend(probes)
        sent = time.monotonic()
        assert app._driver is not None
        app._driver.send_message(_key_event(key))
        await _wait(lambda: all(p.frame is not None for p in probes), timeout)
        for probe in probes:
            if probe.frame is None:
                misses[probe.kind] = misses.get(probe.kind, 0) + 1
                if probe in app.frame_watchers:
                    app.frame_watchers.remove(probe)
            else:
                keys.setdefault(probe.kind, []).append((probe.frame - sent) * 1000)

    async with app.run_test(size=SIZE) as pilot:
        await _wait(lambda: app.loaded and bool(jobs_screen().query_one(JobTable).rows), 60)
        await pilot.pause()
        table = jobs_screen().query_one(JobTable)
        box = jobs_screen().query_one("#jobs-filter", Input)
        await asyncio.sleep(1.0)  # let the feed settle into its rhythm
        stats["redraw"].clear()
        stats["changes"].clear()
        frames_before = len(app.frames)
        mark_a = writer.mark() if writer else None
        if writer is not None and mark_a is not None:
            RESULTS["key_writer"] = (writer, mark_a)  # for a partial report
        t_keys = time.monotonic()

        def cursor_on(key: str) -> Callable[[Any], bool]:
            return lambda s: isinstance(s, JobsScreen) and table.cursor_key == key

        def filtered_to(text: str) -> Callable[[Any], bool]:
            return lambda s: isinstance(s, JobsScreen) and s.filter_text == text

        def details_after(count: int) -> Callable[[Any], bool]:
            return lambda s: isinstance(s, JobScreen) and len(stats["job_shown"]) > count

        for round_no in range(rounds):
            if round_no and time.monotonic() - t_keys > key_seconds:
                break  # a slow app gets fewer rounds, not a timeout
            for _ in range(15):
                if table.cursor_index + 1 >= len(table.rows):
                    break
                expected = table.rows[table.cursor_index + 1].key
                await press("down", "cursor down", cursor_on(expected))
            await press("slash", "/ (open the filter)", lambda s: isinstance(s, JobsScreen)
                        and box.display and app.focused is box)
            typed = ""
            for char in FILTER_WORDS[round_no % len(FILTER_WORDS)]:
                typed += char
                await press(char, "filter keystroke", filtered_to(typed))
            await press("escape", "escape (clear the filter)", lambda s: isinstance(s, JobsScreen)
                        and s.filter_text == "" and not box.display)
            # The job's details come from a thread worker: also the first frame after they were shown.
            details = (DETAILS_SHOWN, details_after(len(stats["job_shown"])))
            await press("enter", "enter (open the job)", lambda s: isinstance(s, JobScreen), also=details)
            await press("escape", "escape (back to the queue)", lambda s: isinstance(s, JobsScreen)
                        and app.screen is s)

        t_keys_end = time.monotonic()
        mark_b = writer.mark() if writer else None
        redraws = [r for r in stats["redraw"] if t_keys <= r[0] <= t_keys_end]
        changes = [c for c in stats["changes"] if t_keys <= c[0] <= t_keys_end]
        span = t_keys_end - t_keys
        RESULTS["key_phase"] = {
            "seconds": span,
            "frames_per_s": (len(app.frames) - frames_before) / span,
            "redraws_per_s": len(redraws) / span,
            "redraw_ms": [r[1] * 1000 for r in redraws],
            "redraw_busy": sum(r[1] for r in redraws) / span,
            "changes_ms": [c[1] * 1000 for c in changes],
            "changes_jobs": [c[2] for c in changes],
            "writer": StatusWriter.rate(mark_a, mark_b) if writer and mark_a and mark_b else None,
        }

        # ------------------------------------------------------------ logs
        await _wait(lambda: isinstance(app.screen, JobsScreen), 5)
        table.move_cursor_to_key(str(log_job))
        await pilot.pause()
        await press("l", "l (open the logs)", lambda s: isinstance(s, LogsScreen))
        await _wait(lambda: isinstance(app.screen, LogsScreen), 10)
        await pilot.pause()
        view = app.screen.query_one(LogView)
        batches: list[tuple[float, int, float]] = []  # (when, lines, ms in append_lines)
        received_lines = [0]
        last_line = [""]
        original_append = view.append_lines

        def counting_append(lines: Sequence[str]) -> None:
            t0 = time.monotonic()
            original_append(lines)
            batches.append((t0, len(lines), (time.monotonic() - t0) * 1000))
            received_lines[0] += len(lines)
            if lines:
                last_line[0] = lines[-1]

        view.append_lines = counting_append  # type: ignore[method-assign]
        log_path = task_log_path(paths().job_logs, log_job, 0)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()
        await asyncio.sleep(0.5)  # the screen's worker is polling the empty log
        RESULTS["logs"] = []
        written = 0
        for label in ("status stream on", "status stream off"):
            if label == "status stream off" and writer is not None:
                writer.stop()
                await asyncio.sleep(0.6)  # the feed drains the last changes
            elif label == "status stream off" and writer is None:
                continue
            if label == "status stream on" and writer is None:
                label = "no status stream"
            base = received_lines[0]
            first_batch = len(batches)
            mark_a = writer.mark() if writer and label == "status stream on" else None
            done: dict[str, float] = {}
            target_total = base + log_lines

            def log_watcher(
                screen: Any, now: float, target: int = target_total, done: dict[str, float] = done
            ) -> bool:
                if isinstance(screen, LogsScreen) and received_lines[0] >= target:
                    done["frame"] = now
                    return True
                return False

            app.frame_watchers.append(log_watcher)
            proc = _spawn(
                [sys.executable, __file__, "--log-writer", str(log_path), str(written), str(log_lines)],
                stdout=subprocess.PIPE, text=True,
            )
            cpu0 = time.process_time()
            ok = await _wait(lambda: "frame" in done, 120, step=0.01)  # noqa: B023 (awaited here)
            cpu = time.process_time() - cpu0
            out, _ = await asyncio.to_thread(proc.communicate, None, 30)
            mark_b = writer.mark() if writer is not None and mark_a is not None else None
            timing = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
            written += log_lines
            if not ok or not timing:
                RESULTS["logs"].append({"label": label, "failed": True, "lines": received_lines[0] - base})
                continue
            span = done["frame"] - timing["start"]
            mine = batches[first_batch:]
            RESULTS["logs"].append({
                "label": label,
                "lines": log_lines,
                "seconds": span,
                "rate": log_lines / span,
                "write_rate": log_lines / max(1e-9, timing["end"] - timing["start"]),
                "batches": len(mine),
                "batch_lines": statistics.mean(b[1] for b in mine) if mine else 0,
                "append_ms": statistics.mean(b[2] for b in mine) if mine else 0,
                "append_busy": sum(b[2] for b in mine) / 1000 / span,
                "app_cpu": cpu / span,
                "last_ok": last_line[0].endswith(plain_line(written - 1)),
                "writer": StatusWriter.rate(mark_a, mark_b) if mark_a and mark_b else None,
            })
        await press("escape", "escape (back to the queue)", lambda s: isinstance(s, JobsScreen)
                    and app.screen is s)


# ============================================================== process start


def pty_child_main(report_fd: int) -> None:
    """Child on a pty: `SkyTUI().run()` with Textual's real driver; report the first rows frame."""
    started = time.monotonic()
    report_file = os.fdopen(report_fd, "w", buffering=1)

    def report(event: str, **fields: Any) -> None:
        report_file.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")

    from skytui.app import SkyTUI
    from skytui.screens.jobs import JobsScreen
    from skytui.widgets.job_table import JobTable

    report("imported", ms=(time.monotonic() - started) * 1000)

    class PtyTUI(SkyTUI):
        CSS_PATH = _css_path(SkyTUI)
        painted = False

        def _display(self, screen: Any, renderable: Any) -> None:
            super()._display(screen, renderable)
            if renderable is None or self.painted or self._batch_count:
                return
            if isinstance(screen, JobsScreen) and screen.query_one(JobTable).rows:
                self.painted = True
                report("painted", rows=len(screen.query_one(JobTable).rows), since_create_ms=(
                    time.monotonic() - created) * 1000)
                self.call_later(self.exit)

    created = time.monotonic()
    PtyTUI(follow=False).run()
    report("exited")


# `skytui` as its console script runs it, with a report when the queue first
# shows rows: nothing is imported before the clock starts but what a bare
# interpreter has.
COMMAND_CHILD = """
import json, os, sys, time
started = time.monotonic()
report = os.fdopen(int(sys.argv[1]), "w", buffering=1)
from skytui.cli import main  # the console script's entry point (pyproject.toml)
imported = time.monotonic()
from skytui.app import SkyTUI
from skytui.screens.jobs import JobsScreen
from skytui.widgets.job_table import JobTable
display = SkyTUI._display
def reporting_display(app, screen, renderable):
    display(app, screen, renderable)
    if renderable is None or getattr(app, "painted", False) or app._batch_count:
        return
    if isinstance(screen, JobsScreen) and screen.query_one(JobTable).rows:
        app.painted = True
        report.write(json.dumps({"event": "painted", "t": time.monotonic(),
                                 "rows": len(screen.query_one(JobTable).rows)}) + "\\n")
        app.call_later(app.exit)
SkyTUI._display = reporting_display
SkyTUI.supervise_controller = lambda app: None
report.write(json.dumps({"event": "imported", "t": imported, "ms": (imported - started) * 1000}) + "\\n")
main([])
"""


# The floor under any Textual app here: the interpreter, Textual's import
# and its first frame, for an app of one Static.
EMPTY_TEXTUAL_CHILD = """
import json, os, sys, time
started = time.monotonic()
report = os.fdopen(int(sys.argv[1]), "w", buffering=1)
from textual.app import App
from textual.widgets import Static
imported = time.monotonic()
class Empty(App):
    def compose(self):
        yield Static("rows")
    def _display(self, screen, renderable):
        super()._display(screen, renderable)
        if renderable is not None and not getattr(self, "painted", False):
            self.painted = True
            report.write(json.dumps({"event": "painted", "t": time.monotonic(), "rows": 1}) + "\\n")
            self.call_later(self.exit)
report.write(json.dumps({"event": "imported", "t": imported, "ms": (imported - started) * 1000}) + "\\n")
Empty().run()
"""


def pty_launch(env: dict[str, str], timeout: float = 60, *, script: str | None = None) -> dict[str, Any]:
    """Process start -> rows on a pty: this file's `--pty-child`, or a `script` run by `python -c`."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    report_read, report_write = os.pipe()
    child_env = {**env, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    child_env.pop("NO_COLOR", None)
    child_env.pop("TEXTUAL", None)
    started = time.monotonic()
    args = ([sys.executable, "-c", script, str(report_write)] if script is not None
            else [sys.executable, __file__, "--pty-child", "--report-fd", str(report_write)])
    proc = _spawn(
        args,
        stdin=slave, stdout=slave, stderr=slave, pass_fds=(report_write,), env=child_env,
        start_new_session=True,
    )
    os.close(slave)
    os.close(report_write)
    tail = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            tail.extend(chunk)
            del tail[:-4000]

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    reports = os.fdopen(report_read, "r")
    events: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while "painted" not in events and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([reports], [], [], left)
            if not ready:
                break
            line = reports.readline()
            if not line:
                break
            report = json.loads(line)
            events[report["event"]] = report
    finally:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reports.close()
        os.close(master)
    if "painted" not in events:
        raise RuntimeError("the pty app never painted rows; its terminal showed:\n"
                           + tail.decode(errors="replace")[-1500:])
    return {
        "ms": (events["painted"]["t"] - started) * 1000,
        "imports_ms": events["imported"]["ms"],
        "since_create_ms": events["painted"].get("since_create_ms"),
        "rows": events["painted"]["rows"],
    }


# ==================================================================== report


def _ratio(anchor: float, ours: float) -> str:
    return f"{anchor / ours:,.1f}x faster" if ours > 0 else "n/a"


def print_report(*, partial: bool = False) -> bool:
    """Print whatever has been measured; True when every target passed."""
    global _printed
    with _PRINT_LOCK:
        if _printed:
            return False
        _printed = True
        return _print_report(partial)


def _print_report(partial: bool) -> bool:
    verdicts: list[bool] = []
    m = RESULTS.get("machine")
    if m:
        print(f"machine: {m['nproc']} CPUs ({m['cpu']}), load {m['load'][0]:.2f}/{m['load'][1]:.2f} (1/5 min) at "
              f"start; Python {m['python']}, Textual {m['textual']}, SQLAlchemy {m['sqlalchemy']}; skytui at {m['commit']}")
    db = RESULTS.get("db")
    if db:
        mix = ", ".join(f"{n:,} {s}" for s, n in sorted(db["counts"].items(), key=lambda kv: -kv[1]))
        print(f"state DB: {db['jobs']:,} jobs ({db['pipelines']:,} 3-task pipelines, {db['tasks']:,} tasks): {mix}; "
              f"built in {db['seconds']:.1f} s ({db['transitions']:,} Store.transition_task calls, "
              f"{db.get('attempts', 0):,} attempts)")
    print()

    fp = RESULTS.get("first_paint")
    if fp:
        best = min(fp, key=lambda r: r["ms"])
        median = statistics.median(r["ms"] for r in fp)
        ok = median <= FIRST_PAINT_TARGET_MS
        verdicts.append(ok)
        runs = ", ".join(f"{r['ms']:.0f}" for r in fp)
        print(f"First paint of the queue, headless {SIZE[0]}x{SIZE[1]} (SkyTUI() -> first frame with rows), "
              f"{len(fp)} runs:")
        print(f"  median {median:7.1f} ms  (runs: {runs} ms; "
              f"{best['rows']:,} rows)   target <= {FIRST_PAINT_TARGET_MS:.0f} ms: "
              f"{'PASS' if ok else 'FAIL'} ({median / FIRST_PAINT_TARGET_MS:.2f}x of budget)")
        print(f"  of which (best run): app up, first frame {best['first_frame_ms']:.0f} ms; newest jobs read "
              f"(a thread, beside Textual starting) {best['snapshot_ms']:.0f} ms ({best['snapshot_jobs']:,} jobs, "
              f"started at {best['snapshot_start_ms']:.0f} ms); first redraw (filter, sort, {best['rows']:,} rows, "
              f"set_rows) {best['redraw_ms']:.0f} ms")
        lo, hi = DATATABLE_10K_MS
        print(f"  anchor Textual DataTable, 10,000 rows to first paint: {lo / 1000:.1f}-{hi / 1000:.1f} s; "
              f"ours (median) is {lo / median:,.1f}x-{hi / median:,.1f}x faster, with the DB read included")
    pty = RESULTS.get("pty")
    if pty:
        best = min(r["ms"] for r in pty)
        med = statistics.median(r["ms"] for r in pty)
        print(f"  process start -> rows on a {SIZE[0]}x{SIZE[1]} pty (real driver; interpreter, imports, DB read): "
              f"median {med:.0f} ms, best {best:.0f} ms (imports {statistics.median(r['imports_ms'] for r in pty):.0f}"
              f" ms, SkyTUI() -> rows {statistics.median(r['since_create_ms'] for r in pty):.0f} ms)")
    command = RESULTS.get("pty_command")
    if command:
        med = statistics.median(r["ms"] for r in command)
        ok = med <= COMMAND_TO_ROWS_TARGET_MS
        verdicts.append(ok)
        runs = ", ".join(f"{r['ms']:.0f}" for r in command)
        print(f"  `skytui` (the command, from a bare interpreter) -> rows on the pty: median {med:.0f} ms "
              f"(runs: {runs} ms; its CLI's imports {statistics.median(r['imports_ms'] for r in command):.0f} ms)"
              f"   target <= {COMMAND_TO_ROWS_TARGET_MS:.0f} ms: {'PASS' if ok else 'FAIL'} "
              f"({med / COMMAND_TO_ROWS_TARGET_MS:.2f}x of budget)")
        empty = RESULTS.get("pty_empty")
        if empty:
            floor = statistics.median(r["ms"] for r in empty)
            print(f"  anchor an empty Textual app (one Static) -> first frame on the same pty: median {floor:.0f} ms "
                  f"(Textual's import {statistics.median(r['imports_ms'] for r in empty):.0f} ms): `skytui` takes "
                  f"{med / floor:.2f}x that, {med - floor:+.0f} ms for its own code, the DB read and {SIZE[1]} rows")
        print(f"  anchor `sky jobs queue`, 10,000 jobs, end to end: {SKY_QUEUE_10K_MS / 1000:.1f} s; "
              f"ours (median) is {_ratio(SKY_QUEUE_10K_MS, med)}")
    print()

    # Copies: on a timeout the app is still appending while this prints.
    keys = {kind: list(values) for kind, values in list((RESULTS.get("keys") or {}).items())}
    phase = RESULTS.get("key_phase")
    if keys:
        writer = phase.get("writer") if phase else None
        if not phase and "key_writer" in RESULTS:
            status_writer, since = RESULTS["key_writer"]
            writer = StatusWriter.rate(since, status_writer.mark())
        rate = f"{writer[0]:,.0f} status changes/s achieved (writer process at {writer[1] * 100:.0f}% of a core)" \
            if writer else "no status stream"
        print(f"Key press -> next frame showing its effect, headless {SIZE[0]}x{SIZE[1]}, {rate}:")
        print(f"  {'key':<30} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  target p95 <= "
              f"{KEY_P95_TARGET_MS:.0f} ms")
        # Every key is judged; these must have been measured.
        judged = {"cursor down", "filter keystroke", "enter (open the job)", DETAILS_SHOWN}
        for kind, values in keys.items():
            if not values:
                continue
            p95 = _pct(values, 0.95)
            target = DETAILS_P95_TARGET_MS if kind == DETAILS_SHOWN else KEY_P95_TARGET_MS
            ok = p95 <= target
            verdicts.append(ok)
            verdict = f"{'PASS' if ok else 'FAIL'} ({p95 / target:.2f}x of budget)"
            if kind == DETAILS_SHOWN:
                verdict += f" of {target:.0f} ms"
            print(f"  {kind:<30} {len(values):>4} {_pct(values, 0.5):>8.1f} {p95:>8.1f} {max(values):>8.1f}  {verdict}")
        missed = RESULTS.get("key_misses") or {}
        if missed:
            verdicts.append(False)
            print(f"  presses with no frame within 5 s: {missed}  FAIL")
        for kind in judged - set(keys):
            verdicts.append(False)
            print(f"  {kind}: no measurement  FAIL")
        if phase:
            r = phase["redraw_ms"]
            c = phase["changes_ms"]
            print(f"  meanwhile: {phase['frames_per_s']:.1f} frames/s; JobsScreen._redraw {phase['redraws_per_s']:.1f}x/s, "
                  f"p50 {_pct(r, 0.5):.0f} ms, max {max(r) if r else float('nan'):.0f} ms, "
                  f"{phase['redraw_busy'] * 100:.0f}% of the event loop; feed Client.changes (worker thread) "
                  f"p50 {_pct(c, 0.5):.0f} ms for {_pct(phase['changes_jobs'], 0.5):.0f} jobs")
        print("  anchor (env.md 3.1): Textual DataTable, 10,000 rows, pagedown via the pilot with no updates: "
              "230 ms/press" + (f"; ours (cursor p95) is {_ratio(230.0, _pct(keys['cursor down'], 0.95))}"
                                  if keys.get("cursor down") else ""))
    elif "keys" in RESULTS or not partial:
        verdicts.append(False)
        print("Key press -> next frame: not measured  FAIL")
    print()

    logs = list(RESULTS.get("logs") or [])
    if logs:
        print("Log ingestion, file -> LogView -> frame, through the logs screen's worker and the log follower:")
        for run in logs:
            if run.get("failed"):
                verdicts.append(False)
                print(f"  {run['label']:<20} did not finish ({run['lines']:,} lines arrived)  FAIL")
                continue
            judged = run["label"] != "status stream off"
            ok = run["rate"] >= LOG_TARGET_LINES_S and run["last_ok"]
            if judged:
                verdicts.append(ok)
            writer = run.get("writer")
            wtxt = f"; {writer[0]:,.0f} changes/s meanwhile" if writer else ""
            print(f"  {run['label']:<20} {run['lines']:,} lines in {run['seconds']:.2f} s = {run['rate']:>9,.0f} "
                  f"lines/s  target >= {LOG_TARGET_LINES_S:,.0f}/s: "
                  + (f"{'PASS' if ok else 'FAIL'} ({run['rate'] / LOG_TARGET_LINES_S:.2f}x)" if judged
                     else "(not judged)")
                  + ("" if run["last_ok"] else "  LAST LINE MISSING"))
            print(f"  {'':<20} file written at {run['write_rate']:,.0f} lines/s; {run['batches']} batches of "
                  f"~{run['batch_lines']:,.0f} lines, append_lines {run['append_ms']:.1f} ms each "
                  f"({run['append_busy'] * 100:.0f}% of the time); app process CPU {run['app_cpu'] * 100:.0f}%"
                  f"{wtxt}")
            lo, hi = LOG_WRITE_LINES
            wl, wh = LOG_WRITE_LINE
            print(f"  {'':<20} anchors (env.md 3.2): Log.write_lines {lo:,.0f}-{hi:,.0f} lines/s -> ours "
                  f"{run['rate'] / hi:,.1f}x-{run['rate'] / lo:,.1f}x; Log.write_line {wl:,.0f}-{wh:,.0f} lines/s "
                  f"-> ours {run['rate'] / wh:,.0f}x-{run['rate'] / wl:,.0f}x")
    elif not partial:
        verdicts.append(False)
        print("Log ingestion: not measured  FAIL")
    print()
    ok = bool(verdicts) and all(verdicts) and not partial
    print("PARTIAL (timed out): FAIL" if partial else ("ALL TARGETS PASS" if ok else "FAIL"))
    sys.stdout.flush()
    return ok


# ====================================================================== main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=300, help="PENDING/STARTING/RUNNING jobs (65%% RUNNING)")
    parser.add_argument("--rate", type=float, default=1000.0, help="status changes/s streamed during the keys")
    parser.add_argument("--rounds", type=int, default=12,
                        help="key rounds: 15 downs, / + a word, escape, enter, escape each")
    parser.add_argument("--key-seconds", type=float, default=75.0,
                        help="start no new key round after this many seconds (at least one round runs)")
    parser.add_argument("--log-lines", type=int, default=500_000)
    parser.add_argument("--first-paint-runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before giving up (exit 2)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--status-writer", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--log-writer", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--pty-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.status_writer or args.log_writer or args.pty_child:
        _die_with_parent()
    if args.status_writer:
        status_writer_main(args.status_writer[0], args.status_writer[1], float(args.status_writer[2]))
        return 0
    if args.log_writer:
        log_writer_main(args.log_writer[0], int(args.log_writer[1]), int(args.log_writer[2]))
        return 0
    if args.pty_child:
        pty_child_main(args.report_fd)
        return 0

    home = Path(tempfile.mkdtemp(prefix="skytui-bench-tui-"))
    real_home = Path(os.path.expanduser("~/.skytui")).resolve()
    assert home.resolve() != real_home
    os.environ["SKYTUI_HOME"] = str(home)
    writer: StatusWriter | None = None

    def cleanup() -> None:
        _stop_children()
        shutil.rmtree(home, ignore_errors=True)

    def on_timeout() -> None:
        print(f"\nTIMEOUT: {args.timeout:.0f} s passed; the figures so far:\n", flush=True)
        try:
            print_report(partial=True)
        finally:
            cleanup()
            os._exit(2)

    watchdog = threading.Timer(args.timeout, on_timeout)
    watchdog.daemon = True
    watchdog.start()
    try:
        RESULTS["machine"] = machine()
        from skytui.config import paths

        p = paths()
        p.ensure()
        rng = random.Random(args.seed)
        print(f"building a state DB of {args.jobs:,} jobs in {home} ...", flush=True)
        db = build_db(p.db_url, args.jobs, args.active, rng)
        RESULTS["db"] = db

        classes = make_app_classes()
        print("first paint (headless) ...", flush=True)
        RESULTS["first_paint"] = []
        for _ in range(args.first_paint_runs):
            RESULTS["first_paint"].append(asyncio.run(first_paint_headless(classes)))
        print("process start -> first paint (pty) ...", flush=True)
        RESULTS["pty"] = []
        for _ in range(3):
            RESULTS["pty"].append(pty_launch(dict(os.environ)))
        print("`skytui` -> first paint, and an empty Textual app's (pty) ...", flush=True)
        RESULTS["pty_command"] = []
        RESULTS["pty_empty"] = []
        for _ in range(7):  # in turns: a busy moment of the machine costs both alike
            RESULTS["pty_command"].append(pty_launch(dict(os.environ), script=COMMAND_CHILD))
            RESULTS["pty_empty"].append(pty_launch(dict(os.environ), script=EMPTY_TEXTUAL_CHILD))

        if args.rate > 0 and db["running"]:
            writer = StatusWriter(p.db_url, db["running"], args.rate, home)
            writer.wait_started()
        print(f"keys under {args.rate:,.0f} status changes/s, then log ingestion ...", flush=True)
        asyncio.run(interactive(
            classes, writer, args.rounds, args.key_seconds, db["log_job"], args.log_lines, rng,
        ))
        if writer is not None:
            writer.stop()
        watchdog.cancel()
        print()
        ok = print_report()
        return 0 if ok else 1
    finally:
        watchdog.cancel()
        if writer is not None:
            writer.stop()
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
