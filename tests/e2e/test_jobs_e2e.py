"""End to end through the real CLI, daemon, node host and SSH: what a user sees."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3

from fixtures.env import Env, processes_in, wait_for


def test_run_streams_prefixed_logs_and_exits_zero(env: Env) -> None:
    task = env.write("hello.yaml", "name: hello\nrun: echo \"hello from skytui\"\n")
    result = env.cli("--run", str(task))
    assert result.code == 0, result.stderr
    assert re.search(r"^\(hello, pid=\d+\) hello from skytui$", result.stdout, re.M), result.stdout
    assert "Considered resources" in result.stdout
    job = env.queue()[0]
    assert job["status"] == "SUCCEEDED"
    assert job["tasks"][0]["exit_code"] == 0
    assert job["tasks"][0]["infra"] == "local"
    # The node was torn down and nothing of the job is left running.
    wait_for(lambda: not env.node_dirs(), 10, what="node sandbox removed")


def test_run_exit_code_is_recorded_and_job_fails(env: Env) -> None:
    task = env.write("fail.yaml", "name: boom\nrun: |\n  echo about to fail\n  exit 7\n")
    result = env.cli("--run", str(task))
    assert result.code == 1
    assert "(boom, pid=" in result.stdout and "about to fail" in result.stdout
    task_row = env.queue()[0]["tasks"][0]
    assert task_row["status"] == "FAILED"
    assert task_row["exit_code"] == 7
    assert "exit code 7" in task_row["failure_reason"]


def test_setup_failure_is_failed_setup_and_run_never_starts(env: Env) -> None:
    task = env.write(
        "setup.yaml",
        "name: badsetup\nsetup: |\n  echo installing\n  exit 3\nrun: echo SHOULD-NOT-RUN\n",
    )
    result = env.cli("--run", str(task))
    assert result.code == 1
    assert "(setup pid=" in result.stdout and "installing" in result.stdout
    assert "SHOULD-NOT-RUN" not in result.stdout
    task_row = env.queue()[0]["tasks"][0]
    assert task_row["status"] == "FAILED_SETUP"
    assert task_row["exit_code"] == 3


def test_pipeline_failure_cancels_the_rest(env: Env) -> None:
    pipeline = env.write(
        "pipe.yaml",
        "name: pipe\n---\nname: first\nrun: echo one\n---\nname: second\nrun: exit 5\n"
        "---\nname: third\nrun: echo THIRD-RAN\n",
    )
    result = env.cli("--run", str(pipeline))
    assert result.code == 1
    assert "(first, pid=" in result.stdout and "THIRD-RAN" not in result.stdout
    job = env.queue()[0]
    assert job["status"] == "FAILED"
    assert [t["status"] for t in job["tasks"]] == ["SUCCEEDED", "FAILED", "CANCELLED"]
    assert [t["name"] for t in job["tasks"]] == ["first", "second", "third"]
    queue = env.cli("jobs", "queue").stdout
    assert " ↳" in queue and "second" in queue


def test_skypilot_environment_and_env_override(env: Env) -> None:
    task = env.write(
        "envs.yaml",
        "name: envcheck\nnum_nodes: 2\nenvs:\n  GREETING: from-yaml\n  KEEP: kept\n"
        "setup: echo \"setup rank=$SKYPILOT_SETUP_NODE_RANK\"\n"
        "run: |\n"
        "  echo \"task=$SKYPILOT_TASK_ID\"\n"
        "  echo \"job=$SKYPILOT_JOB_ID rank=$SKYPILOT_NODE_RANK nodes=$SKYPILOT_NUM_NODES\"\n"
        "  echo \"ips=$(echo $SKYPILOT_NODE_IPS | tr ' ' ,) gpus=$SKYPILOT_NUM_GPUS_PER_NODE jobrank=$SKYPILOT_JOB_RANK\"\n"
        "  echo \"greeting=$GREETING keep=$KEEP\"\n",
    )
    result = env.cli("--run", str(task), "--env", "GREETING=from-flag")
    assert result.code == 0, result.stdout + result.stderr
    head = env.log(1, 0, rank=0).decode()
    worker = env.log(1, 0, rank=1).decode()
    task_id = re.search(r"task=(\S+)", head).group(1)
    assert re.fullmatch(r"sky-managed-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d-\d{6}_envcheck_1-0", task_id)
    assert f"task={task_id}" in worker  # one id for the whole task, on every node
    assert "job=1 rank=0 nodes=2" in head and "job=1 rank=1 nodes=2" in worker
    assert "ips=127.0.0.1,127.0.0.1 gpus=0 jobrank=0" in head
    assert "greeting=from-flag keep=kept" in head
    assert "setup rank=0" in head and "setup rank=1" in worker
    assert re.search(r"^\(worker1, rank=1, pid=\d+\) job=1 rank=1", result.stdout, re.M)


def test_secrets_reach_the_job_but_never_the_queue_or_events(env: Env) -> None:
    canary = "s3cr3t-canary-value"
    task = env.write(
        "secret.yaml",
        f"name: secretive\nsecrets:\n  API_TOKEN: {canary}\n"
        "run: echo \"digest $(printf %s \"$API_TOKEN\" | sha256sum | cut -c1-16)\"\n",
    )
    result = env.cli("--run", str(task))
    digest = hashlib.sha256(canary.encode()).hexdigest()[:16]
    assert result.code == 0 and f"digest {digest}" in result.stdout
    assert canary not in result.stdout + result.stderr
    assert canary not in env.cli("jobs", "queue", "--json").stdout
    db = sqlite3.connect(env.home / "state.db")
    events = " ".join(str(row) for row in db.execute("select * from events"))
    spec = " ".join(row[0] for row in db.execute("select spec_json from jobs"))
    assert canary not in events and canary not in spec
    # Nor on the node: the env file that carried it is gone.
    assert not list(env.home.glob("nodes/*/.skytui/phases/*/env"))


def test_a_job_printing_its_secret_shows_it_masked(env: Env) -> None:
    canary = "hunter2-canary"
    task = env.write("leaky.yaml", f"name: leaky\nsecrets:\n  PASSWORD: {canary}\nrun: echo \"pw=$PASSWORD\"\n")
    result = env.cli("--run", str(task))
    masked = "*" * len(canary)
    assert result.code == 0 and f"pw={masked}" in result.stdout and canary not in result.stdout
    # After the job (its secrets erased from the state), the log still hides it.
    assert f"pw={masked}" in env.cli("jobs", "logs", "1", "--no-follow").stdout
    # The stored log is what the job printed, the secret masked in place (same length).
    assert env.log(1) == f"pw={masked}\n".encode()


def test_workdir_and_file_mounts_are_uploaded(env: Env) -> None:
    (env.tmp / "project").mkdir()
    env.write("project/data.txt", "from the workdir\n")
    env.write("weights.bin", "mounted file\n")
    (env.tmp / "dataset").mkdir()
    env.write("dataset/part-0", "shard zero\n")
    task = env.write(
        "wd.yaml",
        "name: wd\nworkdir: ./project\nfile_mounts:\n  ~/weights.bin: ./weights.bin\n  /data: ./dataset\n"
        "setup: cat data.txt\nrun: |\n  pwd\n  cat data.txt ~/weights.bin ~/data/part-0\n",
    )
    result = env.cli("--run", str(task))
    assert result.code == 0, result.stdout + result.stderr
    log = env.log(1).decode()
    assert log.count("from the workdir") == 2  # setup and run both start in the workdir
    assert "mounted file" in log and "shard zero" in log
    assert log.splitlines()[1].endswith("/sky_workdir")


def test_launch_detached_then_logs_and_queue(env: Env) -> None:
    task = env.write(
        "train.yaml",
        "name: train\nrun: |\n  for i in 1 2 3; do echo step $i; sleep 0.2; done\n",
    )
    job_id = env.launch(task)
    env.wait_status(job_id, "SUCCEEDED")
    logs = env.cli("jobs", "logs", str(job_id))
    assert logs.code == 0
    steps = [line for line in logs.stdout.splitlines() if "step" in line]
    assert steps == [f"(train, pid={steps[0].split('pid=')[1].split(')')[0]}) step {i}" for i in (1, 2, 3)]
    assert env.cli("jobs", "logs", "-n", "train", "--no-follow").stdout.count("step") == 3
    queue = env.cli("jobs", "queue").stdout
    header = queue.splitlines()[1].split()
    assert header[:4] == ["ID", "TASK", "NAME", "REQUESTED"] and header[-4:] == ["STATUS", "POOL", "INFRA", "COST"]
    assert "No in-progress managed jobs." in queue


def test_cancel_running_job_stops_its_processes(env: Env) -> None:
    task = env.write(
        "long.yaml",
        "name: long\nrun: |\n  echo started\n  for i in $(seq 1 600); do echo tick $i; sleep 0.1; done\n",
    )
    job_id = env.launch(task)
    wait_for(lambda: b"tick 3" in env.log(job_id), 30, what="job output")
    assert env.cli("jobs", "cancel", str(job_id), "-y").code == 0
    job = env.wait_status(job_id, "CANCELLED", timeout=30)
    assert job["tasks"][0]["status"] == "CANCELLED"
    wait_for(lambda: not env.node_dirs(), 15, what="node torn down")
    assert not [p for p in processes_in(env.home) if _is_job(p)]
    # Logs of a cancelled job are kept.
    assert b"started" in env.log(job_id)


def _is_job(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"nodehost" not in f.read()
    except OSError:
        return False


def test_cancel_during_setup(env: Env) -> None:
    task = env.write(
        "slowsetup.yaml",
        "name: slowsetup\nsetup: |\n  echo setup-begins\n  sleep 60\nrun: echo RUN-RAN\n",
    )
    job_id = env.launch(task)
    wait_for(lambda: b"setup-begins" in env.log(job_id), 30, what="setup output")
    assert env.job(job_id)["status"] == "STARTING"
    env.cli("jobs", "cancel", "-y", str(job_id), check=True)
    env.wait_status(job_id, "CANCELLED", timeout=30)
    wait_for(lambda: not env.node_dirs(), 15, what="node torn down")
    assert b"RUN-RAN" not in env.log(job_id)


def test_cancel_while_provisioning(env: Env) -> None:
    env.config("infra:\n  local:\n    provision_delay_s: 30\n")
    task = env.write("p.yaml", "name: p\nrun: echo RUN-RAN\n")
    job_id = env.launch(task)
    env.wait_status(job_id, "STARTING", timeout=30)
    env.cli("jobs", "cancel", "-y", str(job_id), check=True)
    job = env.wait_status(job_id, "CANCELLED", timeout=30)
    assert job["tasks"][0]["status"] == "CANCELLED"
    wait_for(lambda: not env.node_dirs(), 15, what="no node left")


def test_cancel_pending_job_and_limits_hold_jobs_pending(env: Env) -> None:
    env.config("jobs:\n  controller:\n    max_running: 1\n")
    blocker = env.write("block.yaml", "name: block\nrun: sleep 60\n")
    waiting = env.write("wait.yaml", "name: waiter\nrun: echo WAITER-RAN\n")
    first = env.launch(blocker)
    env.wait_status(first, "RUNNING")
    second = env.launch(waiting)
    assert env.job(second)["status"] == "PENDING"
    env.cli("jobs", "cancel", "-y", "-n", "waiter", check=True)
    env.wait_status(second, "CANCELLED", timeout=20)
    assert env.job(first)["status"] == "RUNNING"
    assert env.log(second) == b""
    env.cli("jobs", "cancel", "-y", "-a", check=True)
    env.wait_status(first, "CANCELLED", timeout=30)


def test_cancel_unknown_job_is_a_usage_error(env: Env) -> None:
    result = env.cli("jobs", "cancel", "-y", "42")
    assert result.code == 2 and "no managed job 42" in result.stderr


def test_controller_commands(env: Env) -> None:
    assert "not running" in env.cli("controller", "status").stdout
    started = env.cli("controller", "start", check=True)
    pid = env.controller_pid()
    assert pid and str(pid) in started.stdout
    assert f"pid {pid}" in env.cli("controller", "status").stdout
    # Starting again finds the same controller: one per state directory.
    env.cli("controller", "start", check=True)
    assert env.controller_pid() == pid
    assert "controller pid" in env.cli("controller", "logs").stdout
    assert "stopped" in env.cli("controller", "stop").stdout
    assert "not running" in env.cli("controller", "status").stdout


def test_queue_json_shape(env: Env) -> None:
    task = env.write("j.yaml", "name: shape\nrun: exit 0\n")
    env.cli("--run", str(task), check=True)
    document = json.loads(env.cli("jobs", "queue", "--json").stdout)
    job = document["jobs"][0]
    assert set(job) == {"id", "name", "pool", "status", "submitted_at", "recoveries", "cost_usd", "tasks"}
    assert set(job["tasks"][0]) == {
        "task_id", "name", "status", "infra", "instance_type", "use_spot", "recoveries",
        "restarts_on_errors", "exit_code", "failure_reason", "job_duration_s", "cost_usd",
    }


def test_num_jobs_gives_each_copy_its_rank(env: Env) -> None:
    task = env.write(
        "shard.yaml",
        "name: shard\nresources:\n  cpus: 1+\nrun: echo \"rank $SKYPILOT_JOB_RANK of $SKYPILOT_NUM_JOBS\"\n",
    )
    result = env.cli("jobs", "launch", "-y", str(task), "--num-jobs", "3", check=True)
    assert "Managed jobs 1-3 submitted" in result.stdout
    for job_id in (1, 2, 3):
        env.wait_status(job_id, "SUCCEEDED")
    ranks = sorted(env.log(job_id).decode().strip() for job_id in (1, 2, 3))
    assert ranks == ["rank 0 of 3", "rank 1 of 3", "rank 2 of 3"]
    assert "1x[CPU:1+]" in env.cli("jobs", "queue").stdout
