"""Pools end to end: real workers (local and sim nodes), the real daemon, the CLI.

Each test drives `skytui jobs pool ...` and `skytui jobs launch -p` as a user
would and reads the outcome from `--json` documents and the job logs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures.env import Env, wait_for

from skytui.format import parse_id_ranges

pytestmark = pytest.mark.timeout(240)

def pool_yaml(env: Env, *, workers: int = 2, setup: str = "echo setting up", infra: str = "local",
              extra: str = "") -> Path:
    text = (
        f"name: workers\nresources:\n  infra: {infra}\n{extra}"
        f"setup: |\n  {setup}\n  echo setup-ran >> {env.tmp}/setups\n"
        f"pool:\n  workers: {workers}\n"
    )
    return env.write(f"pool-{workers}-{abs(hash(setup)) % 1000}.yaml", text)


def apply(env: Env, *args: str) -> str:
    return env.cli("jobs", "pool", "apply", "-y", *args, check=True).stdout


def status(env: Env, name: str = "p") -> dict[str, Any]:
    pools = json.loads(env.cli("jobs", "pool", "status", name, "--json", check=True).stdout)["pools"]
    return pools[0] if pools else {}


def wait_ready(env: Env, count: int, name: str = "p", timeout: float = 60) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pool = status(env, name)
        live = [w for w in pool.get("workers", [])]
        return pool if pool and pool["ready_workers"] == count and len(live) == count else None

    return wait_for(ready, timeout, 0.2, f"pool {name} to have exactly {count} READY workers")


def launch(env: Env, path: Path, *flags: str) -> list[int]:
    out = env.cli("jobs", "launch", "-y", "-d", str(path), *flags, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("Managed job"))
    return parse_id_ranges(line.split(" submitted")[0].split(" ", 2)[2])


def stamped_job(env: Env, seconds: float = 1.0) -> Path:
    """Logs its rank and when it ran, to check ranks and concurrency."""
    return env.write("job.yaml", (
        "name: shard\n"
        "setup: echo job-setup-must-not-run\n"
        "run: |\n"
        "  echo \"start $(date +%s.%N) rank $SKYPILOT_JOB_RANK of $SKYPILOT_NUM_JOBS\"\n"
        f"  sleep {seconds}\n"
        "  echo \"end $(date +%s.%N)\"\n"
    ))


def test_two_workers_run_six_ranks_each_once_two_at_a_time(fast_env: Env) -> None:
    env = fast_env
    apply(env, "-p", "p", str(pool_yaml(env, workers=2)))
    wait_ready(env, 2)
    ids = launch(env, stamped_job(env), "-p", "p", "--num-jobs", "6")
    for job in ids:
        env.wait_status(job, "SUCCEEDED", timeout=90)
    ranks, spans = [], []
    for job in ids:
        log = env.log(job).decode()
        assert "job-setup-must-not-run" not in log  # a pool job runs its `run` only
        start = next(line for line in log.splitlines() if line.startswith("start "))
        end = next(line for line in log.splitlines() if line.startswith("end "))
        ranks.append(int(start.split()[3]))
        assert start.split()[5] == "6"
        spans.append((float(start.split()[1]), float(end.split()[1])))
    assert sorted(ranks) == [0, 1, 2, 3, 4, 5]
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most <= 2
    assert (env.tmp / "setups").read_text().count("setup-ran") == 2  # once per worker
    queue = {j["id"]: j for j in env.queue()}
    assert all(queue[job]["pool"] == "p" for job in ids)
    shown = env.cli("jobs", "queue").stdout
    assert "p (worker=" in shown


def test_a_job_submitted_before_any_worker_is_ready_waits_then_runs(fast_env: Env) -> None:
    env = fast_env
    release = env.tmp / "setup-may-finish"
    # Setup holds until the test says so: however slow the machine, the job
    # is looked at while no worker can be READY yet.
    apply(env, "-p", "p", str(pool_yaml(env, workers=1, setup=f"until [ -e {release} ]; do sleep 0.05; done")))
    [job] = launch(env, stamped_job(env), "-p", "p")
    time.sleep(1.0)
    assert env.job(job)["status"] == "PENDING"
    release.touch()
    env.wait_status(job, "SUCCEEDED", timeout=60)


def test_resize_one_three_one_keeps_the_workers(fast_env: Env) -> None:
    env = fast_env
    apply(env, "-p", "p", str(pool_yaml(env, workers=1)))
    first = wait_ready(env, 1)["workers"][0]["id"]
    assert "resized in place" in apply(env, "-p", "p", "--workers", "3")
    grown = wait_ready(env, 3)
    assert first in [w["id"] for w in grown["workers"]] and grown["version"] == 2
    apply(env, "-p", "p", "--workers", "1")
    shrunk = wait_ready(env, 1)
    assert len(shrunk["workers"]) == 1
    assert (env.tmp / "setups").read_text().count("setup-ran") == 3  # no worker was redone


def test_a_spec_change_rolls_workers_without_failing_a_running_job(fast_env: Env) -> None:
    env = fast_env
    apply(env, "-p", "p", str(pool_yaml(env, workers=1)))
    old = wait_ready(env, 1)["workers"][0]["id"]
    [job] = launch(env, stamped_job(env, seconds=6), "-p", "p")
    env.wait_status(job, "RUNNING", timeout=30)
    assert "updated" in apply(env, "-p", "p", str(pool_yaml(env, workers=1, setup="echo version two")))
    done = env.wait_status(job, "SUCCEEDED", timeout=60)
    assert done["recoveries"] == 0

    def rolled() -> dict[str, Any] | None:
        pool = status(env)
        workers = pool["workers"]
        return pool if len(workers) == 1 and workers[0]["version"] == 2 and workers[0]["status"] == "READY" else None

    pool = wait_for(rolled, 60, 0.2, "the old worker to be replaced by a version-2 one")
    assert pool["workers"][0]["id"] != old


def test_preempted_busy_worker_its_job_finishes_elsewhere_and_the_pool_refills(fast_env: Env) -> None:
    env = fast_env
    apply(env, "-p", "p", str(pool_yaml(env, workers=2, infra="sim", extra="  cpus: 2+\n  use_spot: true\n")))
    wait_ready(env, 2)
    flag = env.tmp / "first"
    job_file = env.write("long.yaml", (
        f"name: long\nrun: |\n  echo \"task $SKYPILOT_TASK_ID\"\n"
        f"  if [ ! -f {flag} ]; then touch {flag}; sleep 600; fi\n  echo finished\n"
    ))
    [job] = launch(env, job_file, "-p", "p")
    wait_for(flag.exists, 30, 0.1, "the job to start")
    busy = next(w["id"] for w in status(env)["workers"] if w["job_id"] == job)
    env.cli("sim", "preempt", str(job), check=True)
    done = env.wait_status(job, "SUCCEEDED", timeout=60)
    assert done["recoveries"] == 1
    ids = [line for line in env.log(job).decode().splitlines() if line.startswith("task ")]
    assert len(ids) == 2 and ids[0] == ids[1]  # same SKYPILOT_TASK_ID on the next worker
    pool = wait_ready(env, 2)
    assert busy not in [w["id"] for w in pool["workers"]]


def test_cancel_one_pool_job_keeps_the_worker_for_the_next(fast_env: Env) -> None:
    env = fast_env
    apply(env, "-p", "p", str(pool_yaml(env, workers=1)))
    worker = wait_ready(env, 1)["workers"][0]["id"]
    [long_job] = launch(env, stamped_job(env, seconds=600), "-p", "p")
    env.wait_status(long_job, "RUNNING", timeout=30)
    [short_job] = launch(env, env.write("short.yaml", "name: short\nrun: echo short\n"), "-p", "p")
    env.cli("jobs", "cancel", "-y", str(long_job), check=True)
    env.wait_status(long_job, "CANCELLED", timeout=30)
    env.wait_status(short_job, "SUCCEEDED", timeout=30)
    pool = status(env)
    assert [w["id"] for w in pool["workers"]] == [worker] and pool["workers"][0]["status"] == "READY"


def test_pool_down_is_refused_with_jobs_then_clean_after_cancel_of_the_pool(fast_env: Env) -> None:
    env = fast_env
    apply(env, "-p", "p", str(pool_yaml(env, workers=1)))
    wait_ready(env, 1)
    ids = launch(env, stamped_job(env, seconds=600), "-p", "p", "--num-jobs", "3")
    env.wait_status(ids[0], "RUNNING", timeout=30)
    refused = env.cli("jobs", "pool", "down", "p", "-y")
    assert refused.code == 2 and "unfinished job" in refused.stderr and "jobs cancel -p p" in refused.stderr
    env.cli("jobs", "cancel", "-y", "-p", "p", check=True)
    for job in ids:
        env.wait_status(job, "CANCELLED", timeout=30)
    env.cli("jobs", "pool", "down", "p", "-y", check=True)
    wait_for(lambda: not status(env), 30, 0.2, "the pool to be gone")
    wait_for(lambda: not list((env.home / "nodes").glob("*/.skytui-node.json")), 30, 0.2, "every worker gone")


def test_cancel_a_pool_job_during_its_recovery(fast_env: Env) -> None:
    env = fast_env
    apply(env, "-p", "p", str(pool_yaml(env, workers=1, infra="sim", extra="  cpus: 2+\n  use_spot: true\n")))
    wait_ready(env, 1)
    env.cli("sim", "stockout", "all", "on", check=True)  # the lost worker cannot be replaced
    [job] = launch(env, stamped_job(env, seconds=600), "-p", "p")
    env.wait_status(job, "RUNNING", timeout=30)
    env.cli("sim", "preempt", str(job), check=True)
    wait_for(lambda: env.job(job)["recoveries"] == 1, 30, 0.2, "the job to start recovering")
    env.cli("jobs", "cancel", "-y", str(job), check=True)
    env.wait_status(job, "CANCELLED", timeout=30)
    env.cli("sim", "stockout", "all", "off", check=True)
    env.cli("jobs", "pool", "down", "p", "-y", check=True)
    wait_for(lambda: not status(env), 30, 0.2, "the pool to be gone")


def test_a_worker_whose_cheapest_place_is_stocked_out_lands_on_the_next(fast_env: Env) -> None:
    env = fast_env
    env.cli("sim", "stockout", "aws/us-east-1", "on", check=True)  # the cheapest place for this spec
    apply(env, "-p", "p", str(pool_yaml(env, workers=1, infra="sim", extra="  cpus: 2+\n  use_spot: true\n")))
    pool = wait_ready(env, 1)
    [worker] = pool["workers"]
    assert worker["id"] == 1 and worker["infra"] != "sim:aws/us-east-1"  # its first launch, elsewhere
    env.cli("jobs", "pool", "down", "p", "-y", check=True)
    wait_for(lambda: not status(env), 30, 0.2, "the pool to be gone")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("pool: {min_workers: 3, max_workers: 2}\n", "pool.min_workers"),
        ("resources:\n  ordered:\n    - cpus: 1+\npool: {workers: 1}\n", "resources.ordered"),
        ("resources:\n  job_recovery: FAILOVER\npool: {workers: 1}\n", "resources.job_recovery"),
        ("pool: {workers: 1, max_workers: 2}\n", "pool.max_workers"),
        ("resources: {cpus: 1+}\n", "pool"),
    ],
)
def test_invalid_pool_specs_are_refused_with_exit_2(env: Env, text: str, field: str) -> None:
    result = env.cli("jobs", "pool", "apply", "-y", "-p", "p", str(env.write("bad.yaml", text)))
    assert result.code == 2 and f": {field}:" in result.stderr
    assert not (env.home / "state.db").exists() or not status(env)


def test_a_pool_yaml_with_run_is_applied_and_its_run_ignored(env: Env) -> None:
    """As in SkyPilot: each job brings its own run; the pool's would never run."""
    path = env.write("pool-run.yaml", f"resources: {{infra: local}}\nsetup: echo set up\n"
                                      f"run: touch {env.tmp}/pool-run-ran\npool: {{workers: 1}}\n")
    result = env.cli("jobs", "pool", "apply", "-y", "-p", "p", str(path), check=True)
    assert f"{path}:3: run: ignored in a pool YAML" in result.stderr
    wait_ready(env, 1)
    assert not (env.tmp / "pool-run-ran").exists()
    env.cli("jobs", "pool", "down", "p", "-y", check=True)
    wait_for(lambda: not status(env), 30, 0.2, "the pool to be gone")


def test_pool_yaml_as_a_job_and_unknown_pool_are_refused(env: Env) -> None:
    pool_file = env.write("pool.yaml", "setup: echo\npool: {workers: 1}\n")
    result = env.cli("jobs", "launch", "-y", str(pool_file))
    assert result.code == 2 and "pool apply" in result.stderr
    job_file = env.write("job.yaml", "run: echo hi\n")
    result = env.cli("jobs", "launch", "-y", "-p", "nope", str(job_file))
    assert result.code == 2 and "no pool 'nope'" in result.stderr


def test_autoscaling_grows_with_the_queue_and_shrinks_when_idle(fast_env: Env) -> None:
    env = fast_env
    spec = env.write("auto.yaml", (
        "name: auto\nresources: {infra: local}\nsetup: echo up\n"
        "pool:\n  min_workers: 1\n  max_workers: 3\n  queue_length_threshold: 1\n"
        "  upscale_delay_seconds: 0\n  downscale_delay_seconds: 2\n"
    ))
    apply(env, "-p", "p", str(spec))
    wait_ready(env, 1)
    ids = launch(env, stamped_job(env, seconds=3), "-p", "p", "--num-jobs", "8")
    wait_for(lambda: status(env)["ready_workers"] == 3, 60, 0.2, "the pool to grow to max_workers")
    assert status(env)["target_workers"] == 3
    for job in ids:
        env.wait_status(job, "SUCCEEDED", timeout=120)
    wait_ready(env, 1, timeout=60)  # idle: back to min_workers, one step per delay
