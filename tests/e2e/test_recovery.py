"""Automatic recovery, end to end on `sim` and `local` with real nodes.

Each test runs the real CLI against a real controller daemon; chaos comes
from `skytui sim preempt` / `skytui sim stockout` (the sim cloud reclaims the
machine: its processes die, its sandbox is gone). Every test ends with the
infra's inventory empty: no machine leaks, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from fixtures.env import FAST_CONFIG, Env, events, wait_for

pytestmark = pytest.mark.timeout(240)

def task_yaml(run: str, *, setup: str | None = None, recovery: str | None = None, infra: str = "sim/aws",
              accelerators: str | None = "H100:8", spot: bool = True) -> str:
    lines = ["name: train", "resources:", f"  infra: {infra}"]
    if accelerators:
        lines.append(f"  accelerators: {accelerators}")
    if spot:
        lines.append("  use_spot: true")
    if recovery:
        lines.append(f"  job_recovery: {recovery}")
    if setup:
        lines += ["setup: |", *(f"  {line}" for line in setup.splitlines())]
    lines += ["run: |", *(f"  {line}" for line in run.splitlines())]
    return "\n".join(lines) + "\n"


def wait_first_run(tmp: Path, name: str = "first", timeout: float = 60.0) -> None:
    wait_for(lambda: (tmp / name).exists(), timeout, 0.05, f"{name} to be created by the job")


# The job blocks on its first attempt (until preempted), then finishes.
BLOCK_ONCE = """\
echo "task id $SKYPILOT_TASK_ID"
if [ ! -f {flag} ]; then touch {flag}; sleep 600; fi
echo done"""


def attempts(env: Env, job_id: int) -> list[dict[str, Any]]:
    """The job's attempts as the store keeps them, read through the client."""
    from skytui.client import Client
    from skytui.config import Paths

    client = Client(Paths(env.home))
    try:
        view = client.job(job_id)
        assert view is not None
        return [
            {"attempt": a.attempt_no, "task": a.task_idx, "infra": a.infra, "reason": a.end_reason,
             "exit_code": a.exit_code, "price": a.price_per_hour}
            for a in view.attempts
        ]
    finally:
        client.close()


def inventory(env: Env) -> list[str]:
    """Every machine the local and sim infra hold right now."""
    markers = (env.home / "nodes").glob("*/.skytui-node.json")
    return sorted(json.loads(m.read_text())["cluster"] for m in markers)


def assert_no_leaks(env: Env) -> None:
    wait_for(lambda: not inventory(env), 30, 0.1, "every machine to be torn down")


def preempt(env: Env, job_id: int, *extra: str) -> None:
    env.cli("sim", "preempt", str(job_id), *extra, check=True)


# ------------------------------------------------------------------ preemption


def test_preempted_job_recovers_in_another_region_with_the_same_task_id(fast_env: Env) -> None:
    env = fast_env
    flag = env.tmp / "first"
    job = env.launch(env.write("job.yaml", task_yaml(BLOCK_ONCE.format(flag=flag))))
    wait_first_run(env.tmp)
    first_region = env.job(job)["tasks"][0]["infra"]
    preempt(env, job)
    env.wait_status(job, "SUCCEEDED", timeout=90)
    done = env.job(job)
    task = done["tasks"][0]
    assert task["recoveries"] == 1 and done["recoveries"] == 1
    assert task["restarts_on_errors"] == 0  # preemptions never count
    assert task["infra"] != first_region  # EAGER_NEXT_REGION: somewhere else first
    assert task["infra"].startswith("sim:aws/")
    log = env.log(job).decode()
    ids = [line.split("task id ")[1] for line in log.splitlines() if "task id " in line]
    assert len(ids) == 2 and ids[0] == ids[1]
    tried = attempts(env, job)
    assert [a["reason"] for a in tried][0].startswith("preempted after")
    assert done["cost_usd"] > 0 and all(a["price"] for a in tried)
    # One line explains the recovery: where it was lost and where it went.
    recovered = [e for e in events(env, job) if e.startswith("status:RUNNING:recovered")]
    assert len(recovered) == 1
    assert f"preempted in {first_region}" in recovered[0] and f"relaunched in {task['infra']}" in recovered[0]
    # `jobs logs` shows every attempt, with a separator naming why the first ended.
    shown = env.cli("jobs", "logs", str(job), "--no-follow", check=True).stdout
    assert f"attempt 1 on {first_region} ended: preempted after" in shown
    assert shown.count("task id ") == 2
    assert_no_leaks(env)


def test_failover_stays_in_the_region_while_it_has_capacity(fast_env: Env) -> None:
    env = fast_env
    flag = env.tmp / "first"
    job = env.launch(env.write("job.yaml", task_yaml(BLOCK_ONCE.format(flag=flag), recovery="FAILOVER")))
    wait_first_run(env.tmp)
    first_region = env.job(job)["tasks"][0]["infra"]
    preempt(env, job)
    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    assert done["tasks"][0]["infra"] == first_region
    assert done["recoveries"] == 1
    assert_no_leaks(env)


def test_failover_moves_on_when_its_region_stocks_out_during_recovery(fast_env: Env) -> None:
    env = fast_env
    flag = env.tmp / "first"
    job = env.launch(env.write("job.yaml", task_yaml(BLOCK_ONCE.format(flag=flag), recovery="FAILOVER")))
    wait_first_run(env.tmp)
    first_region = env.job(job)["tasks"][0]["infra"]
    env.cli("sim", "stockout", first_region, "on", check=True)
    preempt(env, job)
    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    assert done["tasks"][0]["infra"] != first_region
    # It did try its own region first: the relaunch's placement says who said no.
    placements = [e for e in events(env, job) if e.startswith("placement:")]
    assert len(placements) == 2 and f"{first_region}: " in placements[1] and "stocked out" in placements[1]
    assert_no_leaks(env)


def preempted_with_no_capacity_left(env: Env) -> int:
    """A job preempted while every region is stocked out: it waits for capacity."""
    job = env.launch(env.write("job.yaml", task_yaml(BLOCK_ONCE.format(flag=env.tmp / "first"))))
    wait_first_run(env.tmp)
    env.cli("sim", "stockout", "all", "on", check=True)
    preempt(env, job)
    env.wait_status(job, "PENDING", timeout=30)
    return job


def test_cancel_during_capacity_backoff_leaves_nothing(fast_env: Env) -> None:
    env = fast_env
    job = preempted_with_no_capacity_left(env)
    env.cli("jobs", "cancel", "-y", str(job), check=True)
    done = env.wait_status(job, "CANCELLED", timeout=30)
    assert done["recoveries"] == 1
    assert_no_leaks(env)


def test_preemption_during_setup_of_a_recovery(fast_env: Env) -> None:
    env = fast_env
    counter, flag = env.tmp / "setups", env.tmp / "first"
    setup = (
        f'n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; echo "setup $n"\n'
        f"if [ $n -eq 1 ]; then touch {env.tmp}/in-setup; sleep 600; fi"
    )
    job = env.launch(env.write("job.yaml", task_yaml(BLOCK_ONCE.format(flag=flag), setup=setup)))
    wait_first_run(env.tmp)
    preempt(env, job)  # while running: attempt 2 starts and blocks in setup
    wait_first_run(env.tmp, "in-setup")
    assert env.job(job)["status"] == "RECOVERING"
    preempt(env, job)  # while in setup of the recovery
    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    # As in SkyPilot, a loss during a recovery is part of that recovery: one
    # return to RUNNING, one recovery; both lost machines are attempts.
    assert done["recoveries"] == 1
    reasons = [a["reason"] or "" for a in attempts(env, job)]
    assert len(reasons) == 3 and all(r.startswith("preempted after") for r in reasons[:2])
    assert counter.read_text().strip() == "3"
    assert_no_leaks(env)


def test_pipeline_preempted_in_task_2_keeps_task_1_succeeded(fast_env: Env) -> None:
    env = fast_env
    flag, count = env.tmp / "first", env.tmp / "task1-runs"
    first = task_yaml(f"echo once >> {count}").replace("name: train", "name: prep")
    second = task_yaml(BLOCK_ONCE.format(flag=flag)).replace("name: train", "name: train")
    job = env.launch(env.write("pipe.yaml", "name: pipe\n---\n" + first + "---\n" + second))
    wait_first_run(env.tmp)
    preempt(env, job)
    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    assert [t["status"] for t in done["tasks"]] == ["SUCCEEDED", "SUCCEEDED"]
    assert [t["recoveries"] for t in done["tasks"]] == [0, 1]
    assert count.read_text() == "once\n"  # task 1 never ran again
    assert_no_leaks(env)


def test_sim_preempt_refuses_jobs_that_are_not_on_sim(env: Env) -> None:
    job = env.launch(env.write("job.yaml", f"run: touch {env.tmp}/first; sleep 600\n"))
    wait_first_run(env.tmp)
    result = env.cli("sim", "preempt", str(job))
    assert result.code == 2 and "only sim machines can be preempted" in result.stderr
    assert env.job(job)["status"] == "RUNNING"
    env.cli("jobs", "cancel", "-y", str(job), check=True)
    env.wait_status(job, "CANCELLED")
    result = env.cli("sim", "stockout", "mars-north-1", "on")
    assert result.code == 2 and "unknown sim region" in result.stderr


# ---------------------------------------------------------------- user errors


def test_max_restarts_on_errors_gives_exactly_three_attempts_then_failed(env: Env) -> None:
    spec = task_yaml("echo attempt; exit 1", recovery="{max_restarts_on_errors: 2}", infra="local",
                     accelerators=None, spot=False)
    job = env.launch(env.write("job.yaml", spec))
    done = env.wait_status(job, "FAILED", timeout=90)
    task = done["tasks"][0]
    assert task["restarts_on_errors"] == 2 and task["recoveries"] == 2
    assert task["exit_code"] == 1
    assert "all 2 restarts on errors used" in task["failure_reason"]
    assert len(attempts(env, job)) == 3
    assert env.log(job).decode().count("attempt\n") == 3
    assert_no_leaks(env)


def test_recover_on_exit_codes_restarts_without_using_the_budget(env: Env) -> None:
    run = f'if [ ! -f {env.tmp}/first ]; then touch {env.tmp}/first; exit 29; fi; echo second'
    spec = task_yaml(run, recovery="{recover_on_exit_codes: [29]}", infra="local", accelerators=None,
                     spot=False)
    job = env.launch(env.write("job.yaml", spec))
    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    task = done["tasks"][0]
    assert task["recoveries"] == 1 and task["restarts_on_errors"] == 0
    assert b"second" in env.log(job)
    assert_no_leaks(env)


def test_setup_failure_without_restarts_is_failed_setup(env: Env) -> None:
    spec = "setup: exit 3\nrun: echo never\n"
    job = env.launch(env.write("job.yaml", spec))
    done = env.wait_status(job, "FAILED_SETUP", timeout=60)
    assert done["tasks"][0]["recoveries"] == 0
    assert b"never" not in env.log(job)
    assert_no_leaks(env)


# ---------------------------------------------------- SSH and controller faults


def test_ssh_cut_while_the_machine_is_up_reattaches_without_relaunch(fast_env: Env) -> None:
    env = fast_env
    run = f"touch {env.tmp}/first; for i in $(seq 1 40); do echo line $i; sleep 0.1; done"
    job = env.launch(env.write("job.yaml", task_yaml(run)))
    wait_first_run(env.tmp)
    state = json.loads((env.home / "nodes" / "nodehost.json").read_text())
    os.kill(int(state["pid"]), signal.SIGKILL)  # every SSH connection drops at once
    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    assert done["recoveries"] == 0
    assert len(attempts(env, job)) == 1
    lines = [line for line in env.log(job).decode().splitlines() if line.startswith("line ")]
    assert lines == [f"line {i}" for i in range(1, 41)]
    assert_no_leaks(env)


def test_controller_killed_during_recovery_resumes_it(fast_env: Env) -> None:
    env = fast_env
    job = preempted_with_no_capacity_left(env)
    pid = env.controller_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, 0.05, "the controller to die")
    env.cli("sim", "stockout", "all", "off", check=True)
    env.cli("controller", "start", check=True)
    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    assert done["recoveries"] == 1
    assert env.log(job).decode().count("task id ") == 2
    assert_no_leaks(env)


def test_random_spot_preemptions_from_the_configured_rate_are_recovered(env: Env) -> None:
    # A very high rate: each spot node is reclaimed within seconds, until the
    # job gets lucky; on-demand in the same region is never touched.
    env.config(FAST_CONFIG.replace("{provision_delay_s: 0.05}", "{provision_delay_s: 0.05, preemption_rate_per_hour: 1800}"))
    job = env.launch(env.write("job.yaml", task_yaml(f"touch {env.tmp}/first; sleep 30; echo done")))
    wait_for(lambda: env.job(job)["recoveries"] >= 1, 90, 0.2, "a preemption to be recovered")
    env.cli("jobs", "cancel", "-y", str(job), check=True)
    env.wait_status(job, "CANCELLED", timeout=30)
    assert_no_leaks(env)
    started = time.time()
    job = env.launch(env.write("od.yaml", task_yaml("sleep 3; echo done", spot=False)))
    done = env.wait_status(job, "SUCCEEDED", timeout=60)
    assert done["recoveries"] == 0 and time.time() - started < 60
    assert_no_leaks(env)


def test_a_request_that_becomes_infeasible_during_recovery_fails_prechecks_at_once(fast_env: Env) -> None:
    env = fast_env
    flag = env.tmp / "first"
    job = env.launch(env.write("job.yaml", task_yaml(BLOCK_ONCE.format(flag=flag))))  # sim/aws, H100:8
    wait_first_run(env.tmp)
    env.cli("controller", "stop", check=True)  # the job keeps running on its node
    env.config(FAST_CONFIG.replace("{provision_delay_s: 0.05}", "{provision_delay_s: 0.05, clouds: [gcp]}"))
    preempt(env, job)
    env.cli("controller", "start", check=True)  # sim now mirrors gcp only: sim/aws is gone
    done = env.wait_status(job, "FAILED_PRECHECKS", timeout=60)
    assert "nothing fits" in done["tasks"][0]["failure_reason"]
    assert_no_leaks(env)
