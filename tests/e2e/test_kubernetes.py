"""The `kubernetes` infra through the official client, against a loopback fake
of the API server (tests/infra/fake_kube.py) that runs pods as local
processes: `skytui check`, offers from the cluster's nodes, the pod node
driver (exec, uploads, detached phases, the pod log), and jobs end to end
through the real CLI and controller daemon: run, follow, preemption,
cancel, and the leak sweep. Every test ends with the fake's pod list empty.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.env import FAST_CONFIG, Env, wait_for
from infra.fake_kube import FakeKube

from skytui.clouds.base import CapacityError, ClusterState, NodeInfo, PrecheckError
from skytui.config import Config, KubernetesInfraConfig, Paths

pytestmark = pytest.mark.timeout(240)

H100_LABELS = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
# Quick to give up on a pod no node takes, so capacity tests do not wait.
KUBE_CONFIG = "  kubernetes: {unschedulable_timeout_s: 1, provision_timeout_s: 60}\n"


@pytest.fixture
def kube(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKube]:
    """A fake cluster with a CPU node and an H100 node, and a kubeconfig for
    it in KUBECONFIG (the CLI and the controller daemon inherit it)."""
    fake = FakeKube(tmp_path / "kube")
    fake.add_node("cpu-1", cpu="8", memory="32Gi")
    fake.add_node("gpu-1", cpu="16", memory="64Gi", gpus=1, labels=H100_LABELS)
    monkeypatch.setenv("KUBECONFIG", str(fake.kubeconfig(tmp_path / "kubeconfig")))
    try:
        yield fake
        # The controller still runs here (env tears down after this fixture).
        wait_for(lambda: not fake.pod_names(), 30, 0.1, "every pod to be deleted")
    finally:
        fake.stop()


def cloud_for(home: Path, **settings: Any) -> Any:
    from skytui.clouds.kubernetes import KubernetesCloud

    return KubernetesCloud(Paths(home), KubernetesInfraConfig(**settings))


def pod_log(pod: str, namespace: str) -> str:
    """The pod's own log, read as `kubectl logs` reads it (the real client)."""
    from kubernetes import client, config

    # The kubeconfig of this test's fake (the SDK's default was fixed at its import).
    api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    try:
        return str(client.CoreV1Api(api).read_namespaced_pod_log(pod, namespace))
    finally:
        api.close()


def resources(**fields: Any) -> Any:
    from skytui.spec import Resources

    return Resources(infra="kubernetes", **fields)


def write_config(env: Env) -> None:
    env.config(FAST_CONFIG + KUBE_CONFIG)


def pod_node(env: Env, name: str, fake: FakeKube) -> Any:
    """The node driver for a pod the controller made, as a user's tool would build it."""
    info = NodeInfo(rank=0, host=name, port=0, user="", internal_ip="", host_key="",
                    instance_id=fake.pod(name)["metadata"]["uid"])
    return cloud_for(env.home).node(info)


def check(env: Env) -> dict[str, Any]:
    result = env.cli("check", "--json", check=True)
    return next(i for i in json.loads(result.stdout)["infra"] if i["name"] == "kubernetes")


# ----------------------------------------------------------------- check


def test_check_without_kubeconfig_says_how_to_enable(env: Env) -> None:
    status = check(env)
    assert status["enabled"] is False
    assert status["reason"].startswith("no kubeconfig found")
    assert "set KUBECONFIG or create ~/.kube/config" in status["fix"]


def test_in_cluster_service_account_enables_it(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skytui.clouds import kubernetes

    token = tmp_path / "token"
    token.write_text("not-a-real-token")
    monkeypatch.setattr(kubernetes.kubeconfig, "SERVICE_ACCOUNT_TOKEN", token)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    status = kubernetes.detect(Paths(env.home), Config())
    assert status.enabled and "in-cluster" in status.reason
    assert cloud_for(env.home).contexts == ["in-cluster"]


def test_check_with_kubeconfig_names_the_context(env: Env, kube: FakeKube, tmp_path: Path) -> None:
    from skytui.clouds.kubernetes import detect
    from skytui.config import load_config

    status = check(env)
    assert status["enabled"] is True
    assert "contexts: fake" in status["reason"] and str(tmp_path / "kubeconfig") in status["reason"]
    # What it offers comes from the nodes.
    assert "16 CPU, 64 GB, 1 H100" in status["offers"]
    paths = Paths(env.home)
    env.config("infra:\n  kubernetes: {enabled: false}\n")
    off = detect(paths, load_config(paths))
    assert off.enabled is False and "enabled: false" in off.reason
    env.config("infra:\n  kubernetes: {contexts: [prod]}\n")
    missing = detect(paths, load_config(paths))
    assert missing.enabled is False and "prod" in missing.reason and "fake" in missing.reason


# ---------------------------------------------------------------- offers


def test_offers_come_from_the_nodes(env: Env, kube: FakeKube) -> None:
    cloud = cloud_for(env.home)
    [gpu] = cloud.offers(resources(accelerators="H100:1"))
    assert (gpu.instance_type, gpu.infra, gpu.accelerators) == ("4CPU--16GB--1xH100", "kubernetes/fake", {"H100": 1})
    assert gpu.price_per_hour == 0 and not gpu.use_spot
    [cpu] = cloud.offers(resources(cpus="16", memory="64"))
    assert cpu.instance_type == "16CPU--64GB"  # only the GPU node holds it, and CPU pods may go there
    assert cloud.offers(resources(accelerators="H100:2")) == []  # no node has two
    assert cloud.offers(resources(accelerators="A100:1")) == []
    assert cloud.offers(resources(cpus="32")) == []
    assert cloud.offers(resources(accelerators="H100:1", use_spot=True)) == []


def test_a_request_no_node_fits_is_refused_at_launch(env: Env, kube: FakeKube) -> None:
    task = env.write("big.yaml", "name: big\nresources:\n  infra: kubernetes\n  accelerators: H100:8\nrun: echo hi\n")
    result = env.cli("jobs", "launch", "-y", "-d", str(task))
    assert result.code == 2, result.stdout + result.stderr
    assert "nothing fits" in result.stdout + result.stderr
    assert "1 H100" in result.stdout + result.stderr  # what the cluster does have
    dry = env.cli("jobs", "launch", "-y", "--dryrun", str(env.write(
        "one.yaml", "name: one\nresources:\n  infra: kubernetes\n  accelerators: H100:1\nrun: echo hi\n")))
    assert dry.code == 0 and "kubernetes/fake" in dry.stdout and "4CPU--16GB--1xH100" in dry.stdout
    assert kube.pod_names() == []


async def test_contexts_are_regions_and_pods_are_found_in_theirs(
    env: Env, kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = FakeKube(tmp_path / "kube-b")
    try:
        other.add_node("big-1", cpu="64", memory="256Gi", gpus=8, labels={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"})
        merged: dict[str, Any] = {}
        for fake, context in ((kube, "fake"), (other, "gke")):
            config = json.loads(fake.kubeconfig(tmp_path / f"{context}.kubeconfig", context=context).read_text())
            for key in ("clusters", "users", "contexts"):
                merged.setdefault(key, []).extend(config[key])
        merged.update({"apiVersion": "v1", "kind": "Config", "current-context": "fake"})
        (tmp_path / "kubeconfig").write_text(json.dumps(merged))
        cloud = cloud_for(env.home, contexts=["fake", "gke"])
        assert [o.infra for o in cloud.offers(resources(cpus="2", memory="4"))] == ["kubernetes/fake", "kubernetes/gke"]
        [big] = cloud.offers(resources(accelerators="H100:8"))
        assert (big.region, big.instance_type) == ("gke", "4CPU--16GB--8xH100")
        handle = await cloud.provision("train-9-0-1", big, 1)
        assert other.pod_names() == [handle.nodes[0].host] and kube.pod_names() == []
        # A restarted controller knows only the handle's node: the pod is found in its context.
        node = cloud_for(env.home, contexts=["fake", "gke"]).node(handle.nodes[0])
        assert (await node.run("echo $SKYPILOT_NUM_GPUS_PER_NODE"))[1] == "8\n"
        assert await cloud_for(env.home, contexts=["fake", "gke"]).list_clusters() == ["train-9-0-1"]
        await cloud_for(env.home, contexts=["fake", "gke"]).terminate("train-9-0-1", None)
        await until(lambda: not other.pod_names(), "the pod in the second context to be deleted")
    finally:
        other.stop()


# ------------------------------------------------------------ node driver


@pytest.mark.parametrize("protocol", ["v5.channel.k8s.io", "v4.channel.k8s.io"])
async def test_pod_node_runs_phases_uploads_and_serves_output(
    env: Env, kube: FakeKube, tmp_path: Path, protocol: str
) -> None:
    kube.exec_protocols = (protocol,)
    cloud = cloud_for(env.home)
    [offer] = cloud.offers(resources(accelerators="H100:1"))
    handle = await cloud.provision("train-7-0-1", offer, 1, labels={"skytui-job": "7", "skytui-task": "0"})
    name = handle.nodes[0].host
    assert name == f"train-7-0-1-{Paths(env.home).install_id}-0"
    pod = kube.pod(name)
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert pod["spec"]["nodeSelector"] == H100_LABELS and pod["spec"]["nodeName"] == "gpu-1"
    assert pod["metadata"]["labels"]["skytui-job"] == "7" and pod["spec"]["restartPolicy"] == "Never"
    assert await cloud.cluster_state(handle) is ClusterState.UP
    assert await cloud.list_clusters() == ["train-7-0-1"]

    node = cloud.node(handle.nodes[0])
    await node.connect()
    (tmp_path / "wd" / "sub").mkdir(parents=True)
    (tmp_path / "wd" / "sub" / "data.txt").write_text("from the workdir\n")
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)) * 4000)  # ~1 MB: several stdin messages
    await node.upload(str(tmp_path / "wd"), "sky_workdir")
    await node.upload(str(tmp_path / "weights.bin"), "models/weights.bin")
    status, out, _ = await node.run("cat sky_workdir/sub/data.txt; md5sum < models/weights.bin")
    assert status == 0 and out.startswith("from the workdir\n")
    assert out.split()[-2] == hashlib.md5((tmp_path / "weights.bin").read_bytes()).hexdigest()
    assert (await node.run("exit 7"))[0] == 7

    secret = "s3cr3t-value"
    script = "echo setup sees $TOKEN; cat sub/data.txt; printf 'é%.0s' 1 2 3; echo; echo rank=$SKYPILOT_NODE_RANK"
    pid = await node.start_phase("p-1", script, {"TOKEN": secret}, cwd="sky_workdir")
    assert await node.start_phase("p-1", script, {"TOKEN": secret}, cwd="sky_workdir") == pid  # exactly once
    state = await _finished(node, "p-1")
    assert state.exit_code == 0
    expected = f"setup sees {secret}\nfrom the workdir\nééé\nrank=0\n".encode()
    assert await node.read_phase_output("p-1", 0, 1 << 20) == expected
    # Exact byte offsets, even inside a multi-byte character.
    assert await node.read_phase_output("p-1", 5, 7) == expected[5:12]
    assert await node.read_phase_output("p-1", len(expected) - 3, 100) == expected[-3:]
    assert await node.read_phase_output("p-1", len(expected), 100) == b""
    assert await node.read_phase_output("no-such-phase", 0, 100) == b""
    assert secret not in json.dumps(kube.requests)  # on stdin, never in a URL
    # Every phase tees its output to the pod's own log: `kubectl logs` shows the job.
    shown = await asyncio.to_thread(pod_log, name, node.namespace)
    assert shown.splitlines()[:2] == [f"setup sees {secret}", "from the workdir"]

    # Setup's installs are there for run: one container, one file system.
    await node.start_phase("p-2", "echo installed > ~/tool; sleep 600", {})
    await until(lambda: any(b"sleep\x00600" in _cmdline(p) for p in kube.pod_processes(name)), "the phase's sleep")
    state = await node.phase_state("p-2", check_alive=True)
    assert state.alive is True and state.exit_code is None
    await node.kill_phase("p-2", grace_s=2)
    state = await node.phase_state("p-2", check_alive=True)
    assert state.exit_code == 143  # TERM reached the job; the wrapper recorded it
    assert not any(b"sleep\x00600" in _cmdline(p) for p in kube.pod_processes(name))
    assert kube.pod(name)["status"]["phase"] == "Running"  # the pod lives on
    # Once PID 1 marks the pod as going (it was TERMed), a non-zero exit is
    # the pod's doing, not the job's: it is not reported (the API says GONE next).
    assert (await node.run("mkdir -p ~/.skytui && touch ~/.skytui/terminating"))[0] == 0
    assert (await node.phase_state("p-2", check_alive=True)).exit_code is None
    assert (await node.phase_state("p-1")).exit_code == 0
    assert (await node.run("rm ~/.skytui/terminating"))[0] == 0
    assert (await node.run("cat ~/tool"))[1] == "installed\n"

    await cloud.terminate("train-7-0-1", None)
    await cloud.terminate("train-7-0-1", None)  # idempotent
    assert await cloud.cluster_state(handle) is ClusterState.GONE
    assert await cloud.list_clusters() == []


async def _finished(node: Any, phase: str) -> Any:
    for _ in range(200):
        state = await node.phase_state(phase, check_alive=True)
        if state.finished:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"{phase} did not finish")


async def until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    """wait_for for async tests: the event loop keeps running meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# ------------------------------------------------------- provisioning errors


async def test_unschedulable_is_a_capacity_error_and_leaves_nothing(env: Env, kube: FakeKube) -> None:
    cloud = cloud_for(env.home, unschedulable_timeout_s=0.5)
    [offer] = cloud.offers(resources(accelerators="H100:1"))
    kube.set_unschedulable(True)
    with pytest.raises(CapacityError, match=r"no node in fake fits 4 CPU, 16 GB, 1 H100"):
        await cloud.provision("train-1-0-1", offer, 1)
    await until(lambda: not kube.pod_names(), "the pending pod to be deleted")
    # Two pods where one node has one GPU: the second never fits.
    kube.set_unschedulable(False)
    with pytest.raises(CapacityError, match="no node in fake fits"):
        await cloud.provision("train-1-0-2", offer, 2)


async def test_bad_image_and_forbidden_are_precheck_errors(env: Env, kube: FakeKube) -> None:
    cloud = cloud_for(env.home, image="registry.example/nope:1")
    [offer] = cloud.offers(resources())
    kube.fail_image("registry.example/nope:1")
    with pytest.raises(PrecheckError, match=r"image 'registry.example/nope:1' cannot be pulled in fake: ErrImagePull"):
        await cloud.provision("train-2-0-1", offer, 1)
    await until(lambda: not kube.pod_names(), "the pod to be deleted")
    kube.forbid(True)
    with pytest.raises(PrecheckError, match="403") as refused:
        await cloud_for(env.home).provision("train-2-0-2", offer, 1)
    assert kube.token not in str(refused.value)
    kube.forbid(False)


# ------------------------------------------------------------- end to end


def test_job_runs_in_a_pod_end_to_end(env: Env, kube: FakeKube) -> None:
    write_config(env)
    (env.tmp / "project").mkdir()
    env.write("project/data.txt", "from the workdir\n")
    task = env.write("job.yaml", """\
name: train
workdir: ./project
resources:
  infra: kubernetes
  accelerators: H100:1
setup: |
  echo setup-ran
  echo installed > ~/tool
run: |
  cat data.txt
  echo "tool $(cat ~/tool) rank $SKYPILOT_NODE_RANK gpus $SKYPILOT_NUM_GPUS_PER_NODE"
  echo waiting
  while [ ! -f release ]; do sleep 0.1; done
  echo goodbye
""")
    job = env.launch(task)
    env.wait_status(job, "RUNNING", timeout=60)
    [name] = kube.pod_names()
    assert env.job(job)["tasks"][0]["infra"] == "kubernetes/fake"
    node = pod_node(env, name, kube)

    def logs() -> str:
        return str(env.cli("jobs", "logs", str(job), "--no-follow", check=True).stdout)

    # The job's output as the product shows it, while it runs.
    wait_for(lambda: "waiting" in logs(), 60, 0.2, "the job's log to show it waits")
    # As `kubectl exec` would: the job waits for this file.
    assert asyncio.run(node.run("touch sky_workdir/release"))[0] == 0
    env.wait_status(job, "SUCCEEDED", timeout=60)
    shown = logs()
    for line in ("setup-ran", "from the workdir", "tool installed rank 0 gpus 1", "waiting", "goodbye"):
        assert line in shown
    assert shown.index("setup-ran") < shown.index("waiting") < shown.index("goodbye")
    wait_for(lambda: not kube.pod_names(), 30, 0.1, "the pod to be deleted")


@pytest.mark.parametrize("how", ["evicted", "deleted"])
def test_a_lost_pod_is_a_preemption_and_the_job_recovers(env: Env, kube: FakeKube, how: str) -> None:
    from kubernetes import client
    from kubernetes import config as kube_config

    write_config(env)
    flag = env.tmp / "first"
    task = env.write("job.yaml", f"""\
name: train
resources:
  infra: kubernetes
run: |
  echo "task id $SKYPILOT_TASK_ID"
  if [ ! -f {flag} ]; then touch {flag}; sleep 600; fi
  echo done
""")
    job = env.launch(task)
    wait_for(flag.exists, 60, what="the first run")
    # Output still on a pod is lost with it: lose the pod once its line was copied.
    wait_for(lambda: b"task id" in env.log(job), 30, what="the first run's output")
    [first] = kube.pod_names()
    if how == "evicted":
        kube.evict(first)
    else:
        api = client.CoreV1Api(kube_config.new_client_from_config(config_file=os.environ["KUBECONFIG"]))
        api.delete_namespaced_pod(first, "default", grace_period_seconds=0)
    env.wait_status(job, "RECOVERING", "SUCCEEDED", timeout=60)
    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    assert done["recoveries"] == 1 and done["tasks"][0]["restarts_on_errors"] == 0
    log = env.log(job).decode()
    ids = [line.split("task id ")[1] for line in log.splitlines() if "task id " in line]
    assert len(ids) == 2 and ids[0] == ids[1] and "done" in log


def test_cancel_kills_the_job_in_the_pod(env: Env, kube: FakeKube) -> None:
    write_config(env)
    task = env.write("long.yaml", "name: long\nresources:\n  infra: kubernetes\n"
                                  "run: |\n  echo started\n  exec sleep 600\n")
    job = env.launch(task)
    wait_for(lambda: b"started" in env.log(job), 60, what="the job to start")
    [name] = kube.pod_names()
    sleeper = wait_for(lambda: [p for p in kube.pod_processes(name) if b"sleep\x00600" in _cmdline(p)],
                       10, what="the job's process")[0]
    env.cli("jobs", "cancel", "-y", str(job), check=True)
    env.wait_status(job, "CANCELLED", timeout=60)
    wait_for(lambda: not Path(f"/proc/{sleeper}").exists() or b"sleep" not in _cmdline(sleeper), 15,
             what="the job's process to end")
    wait_for(lambda: not kube.pod_names(), 30, 0.1, "the pod to be deleted")


def test_leak_sweep_deletes_orphans_and_leaves_other_installs_alone(env: Env, kube: FakeKube, tmp_path: Path) -> None:
    write_config(env)
    ours = cloud_for(env.home)
    theirs = cloud_for(tmp_path / "other-install")
    [offer] = ours.offers(resources(cpus="1", memory="1"))

    async def make() -> None:
        await ours.provision("orphan-1-0-1", offer, 1, labels={"skytui-job": "1", "skytui-task": "0"})
        await theirs.provision("orphan-1-0-1", offer, 1, labels={"skytui-job": "1", "skytui-task": "0"})

    asyncio.run(make())
    assert len(kube.pod_names()) == 2 and ours.install_id != theirs.install_id
    env.cli("controller", "start", check=True)  # sweeps at start-up: no job owns our orphan
    mine = f"orphan-1-0-1-{ours.install_id}-0"
    wait_for(lambda: mine not in kube.pod_names(), 30, 0.1, "our orphan to be swept")
    assert kube.pod_names() == [f"orphan-1-0-1-{theirs.install_id}-0"]
    assert asyncio.run(ours.list_clusters()) == [] and asyncio.run(theirs.list_clusters()) == ["orphan-1-0-1"]
    asyncio.run(theirs.terminate("orphan-1-0-1", None))

