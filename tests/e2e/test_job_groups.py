"""Job groups (`execution: parallel`): every task at once, found by name,
each recovering on its own, the group following its primary tasks.

Real jobs on `local` and `sim` through the CLI, as a user runs them; names
resolve through nss_wrapper (Debian's libnss-wrapper, which
scripts/install-test-deps installs).
"""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest
from fixtures.env import Env, events, wait_for

from skytui.engine.job_group import find_nss_wrapper


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tasks_of(env: Env, job_id: int) -> dict[str, dict[str, object]]:
    return {task["name"]: task for task in env.job(job_id)["tasks"]}


@pytest.fixture(autouse=True)
def nss_wrapper() -> None:
    if find_nss_wrapper() is None:
        pytest.fail("libnss-wrapper is not installed (scripts/install-test-deps installs it)")


def test_a_client_finds_its_server_by_name_and_the_server_stops_with_it(env: Env) -> None:
    port = free_port()
    path = env.write("group.yaml", textwrap.dedent(f"""\
        name: echo-group
        execution: parallel
        primary_tasks: [client]
        ---
        name: server
        run: |
          python3 -u -c "
          import socket
          server = socket.create_server(('127.0.0.1', {port}))
          print('serving', flush=True)
          while True:
              connection, _ = server.accept()
              connection.sendall(b'hello from the server ' + connection.recv(100))
              connection.close()
          "
        ---
        name: client
        run: |
          echo "group=$SKYPILOT_JOBGROUP_NAME root=$SKYPILOT_ROOT_JOB_ID job=$SKYPILOT_JOB_ID"
          python3 -u -c "
          import socket, time
          for _ in range(300):
              try:
                  connection = socket.create_connection(('server-0.echo-group', {port}), timeout=1)
                  break
              except OSError:
                  time.sleep(0.1)
          connection.sendall(b'client-0')
          print('reply:', connection.recv(100).decode())
          "
        """))
    job = env.launch(path)
    final = env.wait_status(job, "SUCCEEDED", "FAILED", "CANCELLED", timeout=90)
    assert final["status"] == "SUCCEEDED", env.log(job, 1).decode() + str(events(env, job))
    tasks = tasks_of(env, job)
    assert tasks["client"]["status"] == "SUCCEEDED"
    assert tasks["server"]["status"] == "CANCELLED"  # an auxiliary: stopped when the primary ended
    client_log = env.log(job, 1).decode()
    assert f"group=echo-group root={job} job={job}" in client_log
    assert "reply: hello from the server client-0" in client_log
    assert "serving" in env.log(job, 0).decode()
    stopped = [e for e in events(env, job) if e.startswith("status:CANCELLED:")]
    assert stopped == ["status:CANCELLED:stopped: the group's primary tasks have ended"]

    table = env.cli("jobs", "queue", check=True).stdout
    assert "echo-group (parallel)" in table and "client [P]" in table


def test_each_task_recovers_on_its_own(fast_env: Env) -> None:
    env = fast_env
    gate = env.tmp / "gate"
    path = env.write("group.yaml", textwrap.dedent(f"""\
        name: pair
        execution: parallel
        ---
        name: left
        resources: {{infra: sim}}
        run: while [ ! -e {gate} ]; do sleep 0.1; done; echo left done
        ---
        name: right
        resources: {{infra: sim}}
        run: while [ ! -e {gate} ]; do sleep 0.1; done; echo right done
        """))
    job = env.launch(path)
    wait_for(lambda: all(t["status"] == "RUNNING" for t in tasks_of(env, job).values()), 60,
             what="both tasks RUNNING")
    env.cli("sim", "preempt", str(job), "--task", "1", check=True)
    wait_for(lambda: tasks_of(env, job)["right"]["recoveries"] == 1
             and tasks_of(env, job)["right"]["status"] == "RUNNING", 60, what="the right task to recover")
    assert tasks_of(env, job)["left"]["recoveries"] == 0  # its sibling ran on, untouched
    gate.touch()
    final = env.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    assert final["status"] == "SUCCEEDED"
    assert b"left done" in env.log(job, 0) and b"right done" in env.log(job, 1)


def test_a_failing_primary_fails_the_group_and_stops_the_rest_at_once(env: Env) -> None:
    path = env.write("group.yaml", textwrap.dedent("""\
        name: doomed
        execution: parallel
        primary_tasks: [trainer]
        termination_delay: 1h
        ---
        name: trainer
        run: sleep 1; exit 3
        ---
        name: helper
        run: sleep 600
        """))
    job = env.launch(path)
    final = env.wait_status(job, "FAILED", "SUCCEEDED", "CANCELLED", timeout=60)
    assert final["status"] == "FAILED"
    tasks = tasks_of(env, job)
    assert (tasks["trainer"]["status"], tasks["trainer"]["exit_code"]) == ("FAILED", 3)
    assert tasks["helper"]["status"] == "CANCELLED"  # not after the hour: a primary failed


def test_an_auxiliary_runs_on_for_its_termination_delay(env: Env) -> None:
    path = env.write("group.yaml", textwrap.dedent("""\
        name: grace
        execution: parallel
        primary_tasks: [main]
        termination_delay: {default: 0s, flusher: 3s}
        ---
        name: main
        run: echo main done
        ---
        name: flusher
        run: while true; do echo tick; sleep 0.5; done
        """))
    job = env.launch(path)
    env.wait_status(job, "SUCCEEDED", "FAILED", "CANCELLED", timeout=60)
    from skytui.config import Paths
    from skytui.engine.store import Store

    store = Store(Paths(env.home).db_url)
    try:
        ends = {(e.task_idx, e.to_status): e.at for e in store.events(job_id=job) if e.kind == "status"}
    finally:
        store.close()
    assert ends[(1, "CANCELLED")] - ends[(0, "SUCCEEDED")] >= 3.0
    assert env.log(job, 1).count(b"tick") >= 4


def test_cancelling_a_group_cancels_every_task(env: Env) -> None:
    path = env.write("group.yaml", "name: pair\nexecution: parallel\n---\nname: a\nrun: sleep 600\n"
                                   "---\nname: b\nrun: sleep 600\n")
    job = env.launch(path)
    wait_for(lambda: all(t["status"] == "RUNNING" for t in tasks_of(env, job).values()), 60, what="RUNNING")
    env.cli("jobs", "cancel", "-y", str(job), check=True)
    final = env.wait_status(job, "CANCELLED", timeout=60)
    assert {t["status"] for t in final["tasks"]} == {"CANCELLED"}


def test_a_group_is_not_launched_into_a_pool(env: Env) -> None:
    path = env.write("group.yaml", "name: g\nexecution: parallel\n---\nname: a\nrun: echo\n")
    result = env.cli("jobs", "launch", "-y", "-d", "-p", "somepool", str(path))
    assert result.code == 2
    assert json.loads(env.cli("jobs", "queue", "-a", "--json", check=True).stdout) == {"jobs": []}


def test_names_reach_a_task_on_an_ssh_host(env: Env, ssh_user: Any, tmp_path: Path) -> None:
    """A group across infra: the server on an ssh host, the client on this
    machine. The host is given the group's names (through its own hosts file
    and nss_wrapper: the host here is this machine), and this machine's file
    learns the host's address once its task is up."""
    port = free_port()
    host = (f"{{name: box1, host: 127.0.0.1, port: {ssh_user.port}, user: {ssh_user.name}, "
            f"identity_file: {ssh_user.identity_file}}}")
    env.config(f"infra:\n  ssh:\n    known_hosts_file: {tmp_path / 'known_hosts'}\n    hosts:\n      - {host}\n")
    path = env.write("group.yaml", textwrap.dedent(f"""\
        name: across
        execution: parallel
        primary_tasks: [client]
        ---
        name: server
        resources: {{infra: ssh}}
        run: |
          python3 -u -c "
          import socket
          print('I am', socket.gethostbyname('server-0.across'), flush=True)
          server = socket.create_server(('127.0.0.1', {port}))
          while True:
              connection, _ = server.accept()
              connection.sendall(b'hello across')
              connection.close()
          "
        ---
        name: client
        resources: {{infra: local}}
        run: |
          python3 -u -c "
          import socket, time
          for _ in range(600):
              try:
                  connection = socket.create_connection(('server-0.across', {port}), timeout=1)
                  break
              except OSError:
                  time.sleep(0.1)
          print('reply:', connection.recv(100).decode())
          "
        """))
    job = env.launch(path)
    final = env.wait_status(job, "SUCCEEDED", "FAILED", "CANCELLED", timeout=120)
    assert final["status"] == "SUCCEEDED", env.log(job, 1).decode() + str(events(env, job))
    assert "reply: hello across" in env.log(job, 1).decode()
    assert "I am 127.0.0.1" in env.log(job, 0).decode()  # the host resolves its own name too
    assert tasks_of(env, job)["server"]["status"] == "CANCELLED"
