"""The controller on a machine of its own (issue 14): one of your ssh hosts,
here a throwaway login of the real OpenSSH server on 127.0.0.1. Every command
is the real CLI on this side; the controller, its state DB and its logs live
on that login, which runs skytui's code as the client sent it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fixtures.env import Env, processes_in, wait_for
from fixtures.remote import remote_config

pytestmark = pytest.mark.timeout(300)

JOB = """\
name: {name}
workdir: {workdir}
resources:
  infra: sim/aws
  accelerators: H100:8
  use_spot: true
run: |
{run}"""


def job_yaml(env: Env, name: str, run: str, workdir: Path | None = None) -> Path:
    if workdir is None:
        workdir = env.tmp / "wd"
        workdir.mkdir(exist_ok=True)
        (workdir / "note.txt").write_text("sent from the laptop\n")
    body = "".join(f"  {line}\n" for line in run.splitlines())
    return env.write(f"{name}.yaml", JOB.format(name=name, workdir=workdir, run=body))


def user_dir(user: Any, name: str) -> Path:
    """A folder the controller machine's login (and so its jobs) can write."""
    path = user.home / name
    path.mkdir()
    shutil.chown(path, user.name, user.name)
    return path


def controller_home(user: Any) -> Path:
    return user.home / ".skytui-controller" / "home"


def remote_pid(user: Any, module: str) -> int | None:
    found = subprocess.run(["pgrep", "-u", user.name, "-f", "--", f"-m {module}"], capture_output=True, text=True)
    pids = [int(pid) for pid in found.stdout.split()]
    return pids[0] if pids else None


def test_jobs_run_on_the_remote_controller_as_on_the_local_one(remote_env: Env, ssh_user: Any) -> None:
    env = remote_env
    result = env.cli("jobs", "launch", "-y", str(job_yaml(env, "hello", "cat note.txt\necho line 2\necho line 3")))
    assert result.code == 0, result.stderr
    assert "(hello, pid=" in result.stdout and ") sent from the laptop" in result.stdout
    assert "line 3" in result.stdout and "Managed job 1 finished: SUCCEEDED" in result.stdout
    # The state and the logs are on the controller machine, none here.
    assert not (env.home / "state.db").exists() and not (env.home / "logs" / "jobs").exists()
    assert (controller_home(ssh_user) / "state.db").exists()
    assert (controller_home(ssh_user) / "logs" / "jobs" / "1").is_dir()
    # Private there too: skytui's folder, and the config and credentials it sent.
    assert (ssh_user.home / ".skytui-controller").stat().st_mode & 0o077 == 0
    sent_key = controller_home(ssh_user) / "credentials" / "ssh" / "ctl.key"
    assert sent_key.read_bytes() == ssh_user.identity_file.read_bytes()
    assert sent_key.stat().st_mode & 0o777 == 0o600

    (job,) = json.loads(env.cli("jobs", "queue", "--json", check=True).stdout)["jobs"]
    assert (job["id"], job["name"], job["status"]) == (1, "hello", "SUCCEEDED")
    logs = env.cli("jobs", "logs", "1")
    assert logs.code == 0 and "sent from the laptop" in logs.stdout and "line 3" in logs.stdout

    blocker = env.launch(job_yaml(env, "blocker", "sleep 600"))
    env.wait_status(blocker, "RUNNING", timeout=60)
    cancelled = env.cli("jobs", "cancel", "-y", str(blocker))
    assert cancelled.code == 0, cancelled.stderr
    assert env.wait_status(blocker, "CANCELLED", timeout=60)["status"] == "CANCELLED"
    # The same errors and exit codes as against the local controller.
    missing = env.cli("jobs", "logs", "99")
    assert (missing.code, missing.stderr) == (2, "Error: no managed job 99\n")
    assert env.cli("jobs", "cancel", "-y", "99").code == 2

    # The machine is wiped (reinstalled, say): the client says the state it knew is gone.
    env.cli("controller", "stop", check=True)
    shutil.rmtree(ssh_user.home / ".skytui-controller")
    after = env.cli("jobs", "queue")
    assert after.code == 0 and "No in-progress managed jobs." in after.stdout
    assert "Note: the controller on ssh/ctl is not the one this client last talked to" in after.stderr
    assert "is not the one" not in env.cli("jobs", "queue", check=True).stderr  # said once


def test_a_preemption_is_recovered_while_no_client_runs(remote_env: Env, ssh_user: Any) -> None:
    """The laptop goes away (no skytui process, its local state wiped) right
    after a spot job is preempted: the controller machine recovers the job on
    its own, and a fresh client with only config.yaml sees it all."""
    env = remote_env
    marks = user_dir(ssh_user, "marks")
    job = env.launch(job_yaml(env, "train", (
        f"echo run >> {marks}/runs\n"
        f"if [ ! -f {marks}/first ]; then touch {marks}/first; sleep 600; fi\n"
        f"echo done; touch {marks}/done"
    )))
    wait_for(lambda: (marks / "first").exists(), 90, 0.1, "the first run")
    preempted = env.cli("sim", "preempt", str(job))
    assert preempted.code == 0, preempted.stderr
    assert processes_in(env.home) == []  # no skytui process runs for this client
    for path in env.home.iterdir():
        if path.name != "config.yaml":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    # Watched through the machine's files alone: no client contact meanwhile.
    wait_for(lambda: (marks / "done").exists(), 120, 0.2, "the recovered run, with no client")
    done = env.wait_status(job, "SUCCEEDED", timeout=60)
    assert done["recoveries"] == 1
    assert (marks / "runs").read_text() == "run\nrun\n"
    assert "done" in env.cli("jobs", "logs", str(job), check=True).stdout


def test_the_controller_is_restarted_on_its_machine_when_it_dies(remote_env: Env, ssh_user: Any) -> None:
    env = remote_env
    marks = user_dir(ssh_user, "marks")
    job = env.launch(job_yaml(env, "long", f"touch {marks}/started\nwhile [ ! -f {marks}/go ]; do sleep 0.1; done"))
    wait_for(lambda: (marks / "started").exists(), 90, 0.1, "the run")
    first = remote_pid(ssh_user, "skytui.engine.daemon")
    assert first is not None
    os.kill(first, signal.SIGKILL)
    # The machine's supervisor brings it back; nobody on this side asks.
    wait_for(lambda: (pid := remote_pid(ssh_user, "skytui.engine.daemon")) is not None and pid != first,
             30, 0.1, "the supervisor to restart the controller")
    (marks / "go").touch()
    assert env.wait_status(job, "SUCCEEDED", timeout=90)["recoveries"] == 0


def _down(env: Env, answer: str | None, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "skytui.cli", "controller", "down", *flags], env=env.environ,
                          input=answer, capture_output=True, text=True, timeout=200)


def test_autostop_then_down_leaves_nothing(env: Env, ssh_user: Any, controller_python: Path) -> None:
    env.config(remote_config(ssh_user, controller_python, extra_controller="    autostop: {idle_minutes: 0.05}\n"))
    assert env.cli("jobs", "launch", "-y", str(job_yaml(env, "quick", "echo hi"))).code == 0
    # Idle for 3 s: the supervisor stops the controller, and itself.
    wait_for(lambda: remote_pid(ssh_user, "skytui.engine.daemon") is None
             and remote_pid(ssh_user, "skytui.remote.supervisor") is None, 60, 0.2, "the autostop")
    status = env.cli("controller", "status", check=True).stdout
    assert status.startswith("Controller on ssh/ctl (") and ": not running." in status

    blocker = env.launch(job_yaml(env, "blocker", "sleep 600"))  # starts it again
    env.wait_status(blocker, "RUNNING", timeout=60)
    refused = _down(env, None, "-y")
    assert refused.returncode == 2 and "in progress" in refused.stderr, refused.stderr
    env.cli("jobs", "cancel", "-y", str(blocker), check=True)
    env.wait_status(blocker, "CANCELLED", timeout=60)

    kept = _down(env, "no\n")
    assert kept.returncode == 1 and "Aborted: nothing was deleted." in kept.stderr
    assert controller_home(ssh_user).exists()
    gone = _down(env, "delete\n")
    assert gone.returncode == 0, gone.stderr
    assert "Type `delete`" in gone.stdout + gone.stderr and "is down" in gone.stdout
    assert not (ssh_user.home / ".skytui-controller").exists()
    # Taken down on purpose: the next contact makes a new one, and that is no surprise.
    assert "is not the one" not in env.cli("jobs", "queue", check=True).stderr
    gone = _down(env, None, "-y")
    assert gone.returncode == 0, gone.stderr
    assert not (ssh_user.home / ".skytui-controller").exists()
    wait_for(lambda: not any(remote_pid(ssh_user, module) for module in (
        "skytui.engine.daemon", "skytui.remote.supervisor", "skytui.clouds.nodehost")), 30, 0.2,
        "every skytui process on the machine to end")


def test_an_unreachable_controller_machine_is_said_plainly(env: Env, ssh_user: Any, controller_python: Path) -> None:
    from infra.sshd import free_port

    env.config(remote_config(ssh_user, controller_python, port=free_port()))
    result = env.cli("jobs", "queue")
    assert result.code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: cannot reach the controller machine ssh/ctl (")
    assert "Nothing watches your managed jobs while it is unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_pool_lives_on_the_remote_controller(remote_env: Env, ssh_user: Any) -> None:
    env = remote_env
    workdir = env.tmp / "pool-wd"
    workdir.mkdir()
    (workdir / "setup.sh").write_text("echo warm > ready.txt\n")
    pool = env.write("pool.yaml", f"""\
pool:
  workers: 1
workdir: {workdir}
resources: {{infra: sim/aws, accelerators: H100:8}}
setup: bash setup.sh
""")
    applied = env.cli("jobs", "pool", "apply", "-y", "-p", "p", str(pool))
    assert applied.code == 0, applied.stderr
    job = env.launch(env.write("use.yaml", "name: use\nrun: cat ready.txt\n"), "-p", "p")
    assert env.wait_status(job, "SUCCEEDED", timeout=120)["pool"] == "p"
    assert "warm" in env.cli("jobs", "logs", str(job), check=True).stdout  # the worker's setup ran there
    (status,) = json.loads(env.cli("jobs", "pool", "status", "--json", check=True).stdout)["pools"]
    assert (status["name"], status["target_workers"]) == ("p", 1)
    env.cli("jobs", "pool", "down", "p", "-y", check=True)
    wait_for(lambda: json.loads(env.cli("jobs", "pool", "status", "--json").stdout)["pools"] == [], 90, 0.5,
             "the pool to go")


def test_credentials_reach_the_controller_privately(remote_env: Env, ssh_user: Any) -> None:
    """`check` lists what the controller is sent; a secret from the
    environment lands in one 0600 file there, and nowhere else: no process's
    arguments, no log, no DB."""
    env = remote_env
    secret = "skytui-test-secret-" + os.urandom(6).hex()
    environ = {**env.environ, "AWS_SECRET_ACCESS_KEY": secret, "AWS_ACCESS_KEY_ID": "AKIASKYTUITEST"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "skytui.cli", *args], env=environ, capture_output=True,
                              text=True, timeout=200)

    check = cli("check")
    assert check.returncode == 0, check.stderr
    assert "The controller runs on ssh/ctl; it is sent (0600, never logged):" in check.stdout
    assert f"ssh key of host ctl: {ssh_user.identity_file}" in check.stdout
    assert "AWS_SECRET_ACCESS_KEY: environment variable" in check.stdout
    sent = json.loads(cli("check", "--json").stdout)["controller"]
    assert {"what": "AWS_SECRET_ACCESS_KEY", "source": "environment variable"} in sent["credentials"]
    assert secret not in check.stdout + check.stderr

    launched = cli("jobs", "launch", "-y", str(job_yaml(env, "quiet", "echo ok")))
    assert launched.returncode == 0, launched.stderr
    env_file = controller_home(ssh_user) / "credentials" / "env.yaml"
    assert secret in env_file.read_text() and env_file.stat().st_mode & 0o777 == 0o600
    arguments = subprocess.run(["ps", "-u", ssh_user.name, "-o", "args="], capture_output=True, text=True).stdout
    assert "skytui.engine.daemon" in arguments and secret not in arguments
    for path in ssh_user.home.rglob("*"):
        if path.is_file() and path != env_file:
            assert secret.encode() not in path.read_bytes(), path


def test_changed_controller_resources_are_said_to_wait_for_the_next_machine(
    env: Env, ssh_user: Any, controller_python: Path,
) -> None:
    env.config(remote_config(ssh_user, controller_python))
    env.cli("controller", "start", check=True)
    env.config(remote_config(ssh_user, controller_python).replace("{infra: ssh/ctl}", "{infra: ssh/ctl, cpus: 4}"))
    status = env.cli("controller", "status", check=True).stdout
    flat = " ".join(status.split())
    assert "Note: config.yaml asks for controller resources infra=ssh/ctl, cpus=4, but the running controller " \
           "started with infra=ssh/ctl: they take effect when its machine is made again" in flat, repr(flat)
    queue = env.cli("jobs", "queue", check=True)
    assert "Note: config.yaml asks for controller resources" in queue.stderr  # said with any command
