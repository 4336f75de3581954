"""The remote controller as a Kubernetes pod, through the real CLI, on the
loopback fake of the Kubernetes API (tests/infra/fake_kube.py: a pod's
exec runs as a local process). The pod's Python has skytui's dependencies
but not skytui (`controller_python`): the code it runs is what the client
sends.

The first `jobs launch` makes the pod, sends skytui's code there over exec
and runs a sim job that prints its workdir's file; queue, logs, cancel and
`controller status` answer from the pod; `controller down` is refused while
a job is in progress, then deletes the pod and leaves nothing of it. A pod
no node can hold is a clear error, and no pod stays behind; a pod that was
deleted under its jobs is told as lost, not silently replaced.
"""

from __future__ import annotations

import json
import queue as queue_module
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.env import Env, wait_for
from infra.fake_kube import MARKER, FakeKube, _processes_with

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def kube(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, controller_python: Path) -> Iterator[FakeKube]:
    """A fake cluster of one CPU node, its kubeconfig in KUBECONFIG (the CLI
    inherits it); config.yaml puts the controller in a pod there."""
    pod_config(env, controller_python)
    fake = FakeKube(tmp_path / "kube")
    fake.add_node("cpu-1", cpu="8", memory="32Gi")
    monkeypatch.setenv("KUBECONFIG", str(fake.kubeconfig(tmp_path / "kubeconfig")))
    try:
        yield fake
    finally:
        fake.stop()


def pod_config(env: Env, python: Path, resources: str = "{infra: kubernetes, cpus: 1, memory: 2}") -> None:
    env.config(f"""\
jobs:
  recovery: {{backoff_initial_s: 0.5, backoff_max_s: 1.5}}
  controller:
    resources: {resources}
    python: {python}
    autostop: false
infra:
  local: {{enabled: false}}
  sim: {{enabled: true, provision_delay_s: 0.05}}
  kubernetes: {{provision_timeout_s: 60, unschedulable_timeout_s: 1}}
""")


def queue(env: Env) -> list[dict[str, object]]:
    result = env.cli("jobs", "queue", "--json", check=True)
    return list(json.loads(result.stdout)["jobs"])


def wait_status(env: Env, job_id: int, *statuses: str, timeout: float = 120) -> dict[str, object]:
    """Through the CLI (the state is in the pod): once a second, a CLI call costs a second of CPU."""
    def reached() -> dict[str, object] | None:
        job = next((j for j in queue(env) if j["id"] == job_id), None)
        return job if job is not None and job["status"] in statuses else None

    return wait_for(reached, timeout, 1.0, f"job {job_id} to reach {statuses}")


def _drain_until(lines: queue_module.Queue[str], text: str) -> bool:
    """Whether a line with `text` came (the lines before it are consumed)."""
    while True:
        try:
            if text in lines.get_nowait():
                return True
        except queue_module.Empty:
            return False


def launch(env: Env, name: str, run: str, *, workdir: Path | None = None) -> int:
    task = env.write(f"{name}.yaml", (f"name: {name}\n" + (f"workdir: {workdir}\n" if workdir else "")
                                      + "resources: {infra: sim/aws, cpus: 2}\nrun: |\n"
                                      + "".join(f"  {line}\n" for line in run.splitlines())))
    result = env.cli("jobs", "launch", "-y", "-d", str(task), timeout=240, check=True)
    match = re.search(r"Managed job (\d+) submitted", result.stdout)
    assert match is not None, result.stdout
    return int(match.group(1))


def test_controller_pod_runs_jobs_and_goes_down_leaving_nothing(env: Env, kube: FakeKube) -> None:
    assert kube.pod_names() == []
    workdir = env.tmp / "wd"
    workdir.mkdir()
    (workdir / "hello.txt").write_text("hi from the workdir\n")

    first = launch(env, "hello", "cat hello.txt\nfor i in 1 2 3; do echo line $i; done", workdir=workdir)
    # The first launch made the controller pod, named from config.yaml alone, labelled as skytui's.
    [pod_name] = kube.pod_names()
    assert re.fullmatch(r"skytui-controller-[0-9a-f]{8}", pod_name)
    pod = kube.pod(pod_name)
    assert pod["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "skytui"
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "2048Mi"}
    assert pod["status"]["phase"] == "Running"
    uid = pod["metadata"]["uid"]
    # The state is in the pod, not here.
    assert not (env.home / "state.db").exists()

    done = wait_status(env, first, "SUCCEEDED")
    assert done["name"] == "hello"
    logs = env.cli("jobs", "logs", str(first), check=True)
    assert "hi from the workdir" in logs.stdout
    assert logs.stdout.index("line 1") < logs.stdout.index("line 3")

    # A client that lost everything but config.yaml finds the same pod, and its jobs.
    for path in env.home.iterdir():
        if path.name != "config.yaml":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert [j["id"] for j in queue(env)] == [first]
    assert kube.pod_names() == [pod_name]

    blocking = launch(env, "blocker", "echo started; sleep 600")
    wait_status(env, blocking, "RUNNING")
    refused = env.cli("controller", "down", "-y")
    assert refused.code == 2, refused
    assert "in progress" in refused.stderr and str(blocking) in refused.stderr
    assert kube.pod_names() == [pod_name]

    status = env.cli("controller", "status", check=True)
    assert pod_name in status.stdout and "kubernetes/fake" in status.stdout
    assert "running (pid" in status.stdout

    # A follow streams from the pod while the job runs, and ends with the job.
    follow = env.popen("jobs", "logs", str(blocking))
    try:
        lines: queue_module.Queue[str] = queue_module.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in follow.stdout or []], daemon=True).start()
        wait_for(lambda: _drain_until(lines, "started"), 60, 0.1, "the follow to print the running job's line")
        assert follow.poll() is None

        cancelled = env.cli("jobs", "cancel", "-y", str(blocking), check=True)
        assert str(blocking) in cancelled.stdout
        follow.wait(timeout=60)
        assert _drain_until(lines, "CANCELLED")
    finally:
        follow.kill()
        follow.wait(timeout=10)
    wait_status(env, blocking, "CANCELLED")

    # The kubeconfig went to the pod on stdin (0600), never in an exec's arguments.
    [kubeconfig] = kube.root.glob(f"{pod_name}-*/home/.skytui-controller/home/credentials/kubeconfig")
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    execs = [path for _, path in kube.requests if "/exec?" in path]
    assert execs and not any(kube.token in path for path in execs)

    down = env.cli("controller", "down", "-y", check=True)
    assert pod_name in down.stdout or "kubernetes/fake" in down.stdout
    # Nothing is left: no pod, and no process it started (the supervisor, the daemon, the node host, jobs).
    assert kube.pod_names() == []
    wait_for(lambda: not _processes_with(f"{MARKER}={uid}".encode()), 10, 0.1, "the pod's processes to end")


def test_a_pod_no_node_can_hold_is_a_clear_error_and_leaves_no_pod(
    env: Env, kube: FakeKube, controller_python: Path,
) -> None:
    pod_config(env, controller_python, "{infra: kubernetes/fake, cpus: 64}")
    task = env.write("t.yaml", "resources: {infra: sim/aws}\nrun: echo hi\n")
    result = env.cli("jobs", "launch", "-y", "-d", str(task), timeout=120)
    assert result.code != 0
    text = result.stdout + result.stderr
    assert "cannot be scheduled" in text and "64 CPU" in text, text
    assert "Insufficient cpu" in text, text
    wait_for(lambda: not kube.pod_names(), 15, 0.1, "the unschedulable pod to be deleted")


@pytest.mark.parametrize("loss", ["deleted", "evicted"])
def test_a_lost_controller_pod_is_told_as_lost_before_a_new_one_starts(env: Env, kube: FakeKube, loss: str) -> None:
    job = launch(env, "blocker", "echo started; sleep 600")
    wait_status(env, job, "RUNNING")
    [pod_name] = kube.pod_names()
    uid = kube.pod(pod_name)["metadata"]["uid"]
    if loss == "deleted":
        kube.delete(pod_name)
        wait_for(lambda: not kube.pod_names(), 15, 0.1, "the pod to be deleted")
    else:
        kube.evict(pod_name)  # it stays listed, Failed, as the kubelet leaves it

    lost = env.cli("jobs", "queue", "--json")
    assert lost.code == 1 and lost.stdout == ""
    said = "is gone" if loss == "deleted" else "has ended (Evicted: The node was low on resource"
    assert said in lost.stderr and "nothing watches the managed jobs" in lost.stderr, lost.stderr
    assert kube.pod_names() == []  # no empty controller took its place unannounced

    # Told once: the next command starts a new controller, under the same name.
    assert json.loads(env.cli("jobs", "queue", "--json", check=True).stdout) == {"jobs": []}
    assert kube.pod_names() == [pod_name] and kube.pod(pod_name)["metadata"]["uid"] != uid
    env.cli("controller", "down", "-y", check=True)
    assert kube.pod_names() == []


def test_a_cluster_of_the_v4_exec_protocol_serves_the_controller_too(env: Env, kube: FakeKube) -> None:
    """Before Kubernetes 1.30 an exec stream cannot close stdin alone: files
    sent on stdin (skytui's code, the config) are read by length, and the
    API process ends with its stream."""
    kube.exec_protocols = ("v4.channel.k8s.io",)
    assert json.loads(env.cli("jobs", "queue", "--json", timeout=60, check=True).stdout) == {"jobs": []}
    [pod_name] = kube.pod_names()
    assert "running (pid" in env.cli("controller", "status", check=True).stdout
    serving = [pid for pid in kube.pod_processes(pod_name)
               if b"skytui.client.serve" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert serving == []  # no API process outlives the command that opened it
    env.cli("controller", "down", "-y", check=True)
    assert kube.pod_names() == []
