"""The cost ledger at scale: `skytui cost` over N jobs' attempts.

    .venv/bin/python bench/ledger.py [--jobs 10000] [--repeats 5] [--keep]

Seeds a fresh temporary SKYTUI_HOME through the real Store (no controller:
the ledger only reads): N jobs submitted at once, each with two attempts on
machines of their own, the first preempted, the second succeeded. Every job
has finished, so no command starts a controller (a pool, or a job left in
progress, would have `jobs queue` revive one to run them). The writes go in
batches (`Store.run_batch`), as the controller's do. Then, per `--repeats`
(median):

* `Client.cost_report()` in this process (the read and the sums);
* `skytui cost --json` and `skytui cost`, as a user types them (a process
  each: Python start-up and imports included);
* the anchor: `skytui jobs queue -a --json` on the same DB, the read the
  project keeps within 1.5x of its cost at one job; and `skytui cost --json`
  in a second home holding one job, for the N / 1 ratio.

Prints the figures; exits 0. It never touches the real ~/.skytui.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.pop("SKYTUI_DB_URL", None)

from harness import stop_everything  # noqa: E402

from skytui.client import Client  # noqa: E402
from skytui.config import Paths  # noqa: E402
from skytui.engine.status import TaskStatus as S  # noqa: E402
from skytui.engine.store import ClusterStatus, NewTask, Store  # noqa: E402

BATCH = 500


def seed(home: Path, n: int) -> float:
    """N finished jobs, two attempts each; returns the seconds it took."""
    t0 = time.monotonic()
    p = Paths(home)
    p.ensure()
    store = Store(p.db_url)
    try:
        task = NewTask("ledger", "sky-managed-2026-01-01-00-00-00-000000_ledger_{job_id}-0", "1x[CPU:1+]", 1)
        ids = store.submit_jobs(name="ledger", tasks=[task], spec={"name": "ledger", "tasks": [{}]}, secrets={},
                                num_jobs=n)
        for start in range(0, len(ids), BATCH):
            for attempt_no in (1, 2):
                chunk = ids[start:start + BATCH]
                clusters = store.run_batch([_machine(store, job_id, attempt_no) for job_id in chunk])
                calls: list[Callable[[], Any]] = []
                for job_id, cluster in zip(chunk, clusters):
                    assert isinstance(cluster, int)
                    calls.append(_attempt(store, job_id, attempt_no, cluster))
                store.run_batch(calls)
        assert not store.has_unfinished_work()  # nothing for a controller to start
    finally:
        store.close()
    return time.monotonic() - t0


def _machine(store: Store, job_id: int, attempt_no: int) -> Callable[[], int]:
    return lambda: store.insert_cluster(
        name=f"ledger-{job_id}-{attempt_no}", cloud="sim", region="aws/us-east-1", zone=None,
        instance_type="g4dn.xlarge", use_spot=True, num_nodes=1, job_id=job_id, task_idx=0,
        attempt_no=attempt_no, price_per_hour=0.16,
    )


def _attempt(store: Store, job_id: int, attempt_no: int, cluster: int) -> Callable[[], None]:
    def run() -> None:
        store.transition_task(job_id, 0, S.STARTING if attempt_no == 1 else S.RECOVERING)
        store.start_attempt(job_id, 0, infra="sim:aws/us-east-1", instance_type="g4dn.xlarge", use_spot=True,
                            price_per_hour=0.16, cluster_id=cluster)
        store.transition_task(job_id, 0, S.RUNNING)
        reason = "preempted in sim:aws/us-east-1" if attempt_no == 1 else "succeeded"
        store.end_attempt(job_id, 0, attempt_no, reason=reason)
        store.update_cluster(cluster, status=ClusterStatus.TERMINATED)
        if attempt_no == 2:
            store.transition_task(job_id, 0, S.SUCCEEDED)
    return run


def timed(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cli(home: Path, *argv: str) -> Callable[[], object]:
    env = {**os.environ, "SKYTUI_HOME": str(home), "PYTHONPATH": str(REPO)}
    return lambda: subprocess.run([sys.executable, "-m", "skytui.cli", *argv], env=env, check=True,
                                  capture_output=True, stdin=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="skytui-bench-ledger-"))
    big, one = root / "big", root / "one"
    try:
        seeded = seed(big, args.jobs)
        seed(one, 1)
        client = Client(Paths(big))
        try:
            report = client.cost_report()
            in_process = timed(client.cost_report, args.repeats)
        finally:
            client.close()
        cost_json = timed(cli(big, "cost", "--json"), args.repeats)
        cost_text = timed(cli(big, "cost"), args.repeats)
        queue_json = timed(cli(big, "jobs", "queue", "-a", "--json"), args.repeats)
        cost_one = timed(cli(one, "cost", "--json"), args.repeats)
        print(f"skytui ledger bench: {args.jobs} finished jobs x 2 attempts "
              f"(seeded in {seeded:.1f} s); median of {args.repeats}")
        print(f"  report: {len(report.jobs)} jobs, spent ${report.total.spent:,.2f}, "
              f"lost ${report.total.lost:,.2f}")
        print(f"  Client.cost_report() in process        {in_process * 1000:8.1f} ms")
        print(f"  skytui cost --json                     {cost_json * 1000:8.1f} ms   "
              f"(at 1 job {cost_one * 1000:.1f} ms: {cost_json / cost_one:.2f}x)")
        print(f"  skytui cost (tables, latest 50 jobs)   {cost_text * 1000:8.1f} ms")
        print(f"  anchor: skytui jobs queue -a --json    {queue_json * 1000:8.1f} ms   "
              f"(cost --json / queue --json: {cost_json / queue_json:.2f}x)")
    finally:
        for home in (big, one):  # none should have started; a leftover is never left running
            stop_everything(Paths(home))
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
