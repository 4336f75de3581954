"""`kill -9` of the controller in every phase: jobs continue, logs stay exact.

After a restart every job must reach the terminal state it would have reached,
its running processes re-attached (never started twice), and its local log
byte-identical to what it printed. Machines no live job owns are torn down.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time

import pytest
from fixtures.env import Env, wait_for

SETUP_LINES = 20
RUN_LINES = 40


def _task_yaml(setup_sleep: float, run_sleep: float, gate: str = "") -> str:
    """`gate`: the run stops after line 8 until this file exists (no race with a slow machine)."""
    wait = f" [ $i -eq 8 ] && while [ ! -e {gate} ]; do sleep 0.05; done;" if gate else ""
    return (
        "name: crashy\n"
        "setup: |\n"
        f"  for i in $(seq 1 {SETUP_LINES}); do echo \"setup line $i\"; sleep {setup_sleep}; done\n"
        "run: |\n"
        f"  for i in $(seq 1 {RUN_LINES}); do echo \"run line $i of {RUN_LINES}\";{wait} sleep {run_sleep}; done\n"
    )


def _expected_log() -> bytes:
    setup = "".join(f"setup line {i}\n" for i in range(1, SETUP_LINES + 1))
    run = "".join(f"run line {i} of {RUN_LINES}\n" for i in range(1, RUN_LINES + 1))
    return (setup + run).encode()


def _kill_controller(env: Env) -> None:
    pid = env.controller_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "not running" in env.cli("controller", "status").stdout, 10, what="controller gone")


def _segments(env: Env, job_id: int) -> list[tuple[int, str, int]]:
    db = sqlite3.connect(env.home / "state.db")
    return list(
        db.execute(
            "select attempt_no, phase, pid from log_segments where job_id = ? order by id", (job_id,)
        )
    )


def _provisioning(env: Env, job_id: int) -> bool:
    """A machine is being asked for (the task waits PENDING until a place says yes)."""
    db = sqlite3.connect(env.home / "state.db")
    try:
        return bool(db.execute(
            "select 1 from clusters where job_id = ? and status = 'PROVISIONING'", (job_id,)
        ).fetchone())
    finally:
        db.close()


def _restart_and_finish(env: Env, job_id: int) -> dict[str, object]:
    env.cli("controller", "start", check=True)
    job = env.wait_status(job_id, "SUCCEEDED", "FAILED", "FAILED_SETUP", "FAILED_CONTROLLER", timeout=90)
    assert job["status"] == "SUCCEEDED", job
    wait_for(lambda: not env.node_dirs(), 15, what="node torn down")
    return job


def test_kill_while_provisioning(env: Env) -> None:
    env.config("infra:\n  local:\n    provision_delay_s: 3\n")
    job_id = env.launch(env.write("t.yaml", _task_yaml(0.01, 0.01)))
    wait_for(lambda: _provisioning(env, job_id), 30, what="its machine asked for")
    _kill_controller(env)
    _restart_and_finish(env, job_id)
    assert env.log(job_id) == _expected_log()


def test_kill_during_setup_reattaches_setup(env: Env) -> None:
    job_id = env.launch(env.write("t.yaml", _task_yaml(0.15, 0.01)))
    wait_for(lambda: b"setup line 5\n" in env.log(job_id), 30, what="setup output")
    setup_pid = _segments(env, job_id)[0][2]
    _kill_controller(env)
    time.sleep(0.5)
    _restart_and_finish(env, job_id)
    assert env.log(job_id) == _expected_log()
    segments = _segments(env, job_id)
    # One attempt; the setup that was running was re-attached, not started again.
    assert [(a, phase) for a, phase, _ in segments] == [(1, "setup"), (1, "run")]
    assert segments[0][2] == setup_pid


@pytest.mark.parametrize("finish_while_down", [False, True], ids=["restart-mid-run", "job-ends-while-down"])
def test_kill_while_running_reattaches_run(env: Env, finish_while_down: bool) -> None:
    gate = env.tmp / "gate"
    job_id = env.launch(env.write("t.yaml", _task_yaml(0.0, 0.02, str(gate))))
    wait_for(lambda: b"run line 8 " in env.log(job_id), 30, what="run output")
    run_pid = _segments(env, job_id)[-1][2]
    _kill_controller(env)
    assert not list(env.home.glob("nodes/*/.skytui/phases/*-run/exit_code"))  # still running when killed
    gate.touch()
    if finish_while_down:
        wait_for(lambda: list(env.home.glob("nodes/*/.skytui/phases/*-run/exit_code")), 30, what="run to end")
    job = _restart_and_finish(env, job_id)
    assert env.log(job_id) == _expected_log()
    segments = _segments(env, job_id)
    assert [(a, phase) for a, phase, _ in segments] == [(1, "setup"), (1, "run")]
    assert segments[-1][2] == run_pid
    assert job["recoveries"] == 0
    logs = env.cli("jobs", "logs", str(job_id), "--no-follow").stdout
    assert logs.count(f"(crashy, pid={run_pid}) run line") == RUN_LINES


def test_restart_sweeps_machines_no_live_job_owns(env: Env) -> None:
    """An orphan node (no record) and a finished job's node still up are both torn down."""
    from skytui.clouds.local import LocalCloud
    from skytui.config import paths

    env.cli("--run", str(env.write("ok.yaml", "name: ok\nrun: echo ok\n")), check=True)
    wait_for(lambda: not env.node_dirs(), 15, what="the finished job's node torn down")
    p = paths()
    db = sqlite3.connect(p.db_file)
    cloud = LocalCloud(p)

    async def provision() -> None:
        await cloud.provision("orphan-9-0-1", cloud.machine, 1)
        await cloud.provision("finished-1-0-9", cloud.machine, 1)

    asyncio.run(provision())
    handle = json.dumps({"cloud": "local", "name": "finished-1-0-9", "region": None, "zone": None, "nodes": []})
    with db:
        db.execute(
            "insert into clusters (name, cloud, use_spot, num_nodes, job_id, task_idx, attempt_no, status,"
            " handle_json, created_at) values ('finished-1-0-9', 'local', 0, 1, 1, 0, 9, 'UP', ?, ?)",
            (handle, time.time()),
        )
    assert len(env.node_dirs()) == 2
    _kill_controller(env)
    env.cli("controller", "start", check=True)
    wait_for(lambda: not env.node_dirs(), 20, what="sweep at start-up")
    status = db.execute("select status, end_reason from clusters where name = 'finished-1-0-9'").fetchone()
    assert status[0] == "TERMINATED" and "no live owner" in status[1]


def test_node_host_killed_mid_run_is_reattached_not_relaunched(env: Env) -> None:
    """SSH to a machine that is still up drops: the job goes on, no recovery."""
    job_id = env.launch(env.write("t.yaml", _task_yaml(0.0, 0.05)))
    wait_for(lambda: b"run line 5 " in env.log(job_id), 30, what="run output")
    state = json.loads((env.home / "nodes" / "nodehost.json").read_text())
    os.kill(state["pid"], signal.SIGKILL)
    job = env.wait_status(job_id, "SUCCEEDED", "FAILED", "FAILED_CONTROLLER", timeout=90)
    assert job["status"] == "SUCCEEDED" and job["recoveries"] == 0
    assert env.log(job_id) == _expected_log()
    assert [(a, phase) for a, phase, _ in _segments(env, job_id)] == [(1, "setup"), (1, "run")]
    new_state = json.loads((env.home / "nodes" / "nodehost.json").read_text())
    assert new_state["pid"] != state["pid"]  # the controller brought the node host back


def test_machine_lost_while_the_controller_was_down_is_recovered(env: Env) -> None:
    """Not re-attached to nothing, not run without its setup: a new attempt."""
    from skytui.clouds.local import LocalCloud
    from skytui.config import paths

    job_id = env.launch(env.write("t.yaml", _task_yaml(0.0, 0.05)))
    wait_for(lambda: b"run line 5 " in env.log(job_id), 30, what="run output")
    _kill_controller(env)
    cluster = [p.name for p in env.node_dirs()][0].rsplit("-", 1)[0]
    asyncio.run(LocalCloud(paths()).terminate(cluster, None))  # the machine vanishes
    job = _restart_and_finish(env, job_id)
    assert job["recoveries"] == 1
    segments = _segments(env, job_id)
    assert [(a, phase) for a, phase, _ in segments] == [(1, "setup"), (1, "run"), (2, "setup"), (2, "run")]
    log = env.log(job_id).decode()
    assert log.endswith(_expected_log().decode())  # the second attempt ran whole, setup first
    shown = env.cli("jobs", "logs", str(job_id), "--no-follow").stdout
    assert "attempt 2 on local" in shown and "while the controller was down" in shown
