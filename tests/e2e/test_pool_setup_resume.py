"""A pool worker's setup gets the handling a job's phase gets: a controller
killed during it re-attaches (the worker is kept, its setup runs once, its
log is byte-exact), and a machine lost during it is noticed by the infra."""

from __future__ import annotations

import os
import signal

import pytest
from fixtures.env import Env, wait_for
from test_pools import apply, status, wait_ready

pytestmark = pytest.mark.timeout(240)

LINES = 30


def _setup_pool(env: Env, gate: str) -> None:
    path = env.write("pool.yaml", (
        "name: workers\nresources:\n  infra: local\n"
        "setup: |\n"
        f"  for i in $(seq 1 {LINES}); do echo \"setup line $i\"; [ $i -eq 10 ] && "
        f"while [ ! -e {gate} ]; do sleep 0.05; done; done\n"
        f"  echo ran >> {env.tmp}/setups\n"
        "pool:\n  workers: 1\n"
    ))
    apply(env, "-p", "p", str(path))


def _worker_log(env: Env, worker_id: int) -> bytes:
    path = env.home / "logs" / "pools" / "p" / f"worker-{worker_id}.log"
    return path.read_bytes() if path.exists() else b""


def _wait_for_setup_output(env: Env) -> int:
    """The worker's id, once its setup is under way (stopped at line 10)."""
    def starting() -> int | None:
        workers = status(env).get("workers", [])
        return workers[0]["id"] if workers and b"setup line 10\n" in _worker_log(env, workers[0]["id"]) else None

    return wait_for(starting, 60, 0.2, "the worker's setup to print")


def test_a_controller_killed_during_setup_resumes_it(fast_env: Env) -> None:
    env = fast_env
    gate = env.tmp / "gate"
    _setup_pool(env, str(gate))

    worker_id = _wait_for_setup_output(env)
    pid = env.controller_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "not running" in env.cli("controller", "status").stdout, 10, what="controller gone")
    env.cli("controller", "start", check=True)
    gate.touch()
    pool = wait_ready(env, 1)
    assert [w["id"] for w in pool["workers"]] == [worker_id]  # kept, not replaced
    assert (env.tmp / "setups").read_text() == "ran\n"  # its setup ran once
    assert _worker_log(env, worker_id) == "".join(f"setup line {i}\n" for i in range(1, LINES + 1)).encode()
    env.cli("jobs", "pool", "down", "-y", "p", check=True)
    wait_for(lambda: not env.node_dirs(), 30, what="the worker torn down")


def test_a_machine_lost_during_setup_is_replaced(fast_env: Env) -> None:
    env = fast_env
    gate = env.tmp / "gate"
    _setup_pool(env, str(gate))

    first = _wait_for_setup_output(env)
    from skytui.clouds.sandbox_teardown import destroy_sandbox

    [sandbox] = [p for p in env.node_dirs() if p.name.startswith("p-w")] or env.node_dirs()
    destroy_sandbox(sandbox, 1.0)
    gate.touch()
    pool = wait_ready(env, 1, timeout=120)
    assert [w["id"] for w in pool["workers"]] != [first]  # a fresh worker took its place
    env.cli("jobs", "pool", "down", "-y", "p", check=True)
    wait_for(lambda: not env.node_dirs(), 30, what="the worker torn down")
