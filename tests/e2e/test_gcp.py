"""The `gcp` infra: google-cloud-compute against a loopback fake of the Compute
REST API (tests/infra/fake_gce.py), SSH to a real sshd.

Credentials are real Application Default Credentials: an ADC file whose
token endpoint is the fake, so google.auth.default() and every token refresh
run through google-auth unchanged, and the fake refuses calls without a token
it issued. The fake plays GCE's guest agent too: the `ssh-keys` metadata of a
new instance is authorized on the test's throwaway sshd user, and the
instances' made-up addresses reach that sshd through `ssh_user.proxy_command`.
Every test ends with the fake's inventory empty.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.clouds import state_becomes
from fixtures.env import FAST_CONFIG, Env, events, wait_for
from infra.fake_gce import FakeGCE

pytestmark = pytest.mark.timeout(300)

REGION = "us-central1"
ZONES = ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"]  # the catalog's, in order
LOOPBACK = ("127.0.0.1", "::1", "localhost")


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def gce() -> Iterator[FakeGCE]:
    fake = FakeGCE()
    try:
        yield fake
        assert fake.inventory() == [], "instances left in the fake"
    finally:
        fake.stop()


@pytest.fixture
def adc(gce: FakeGCE, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's process, CLI and controller find the fake's ADC file."""
    path = gce.write_adc(tmp_path / "adc.json")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", gce.project)
    return path


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every name this process looks up in DNS and every address it connects
    to beyond loopback (refused, and listed): google-auth and the Compute
    client must only ever talk to the fake."""
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK and not _numeric(name):
            attempts.append(f"resolve {name}")
            raise socket.gaierror(socket.EAI_NONAME, "blocked by the test")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            attempts.append(f"connect {address[0]}:{address[1]}")
            raise OSError("blocked by the test")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield attempts
    assert attempts == []


def _numeric(host: str) -> bool:
    """An address needs no DNS (asyncssh "resolves" a node's IP even through a proxy)."""
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def guest_agent(ssh_user: Any) -> Callable[[dict[str, Any]], None]:
    """What GCE's guest agent does with `ssh-keys`: authorize each key for its user."""
    def install(instance: dict[str, Any]) -> None:
        for item in instance.get("metadata", {}).get("items", []):
            if item["key"] != "ssh-keys":
                continue
            for line in item["value"].splitlines():
                user, _, key = line.partition(":")
                if user == ssh_user.name:
                    ssh_user.authorize(key)
    return install


def cloud_for(home: Path, gce: FakeGCE, ssh_user: Any, **settings: Any) -> Any:
    """The GCPCloud that `make` builds from config, talking to the fake."""
    from skytui.clouds import gcp
    from skytui.config import Config, Paths

    gce.on_insert = guest_agent(ssh_user)
    section = {"regions": [REGION], "api_endpoint": gce.endpoint, "ssh_user": ssh_user.name,
               "ssh_proxy_command": ssh_user.proxy_command, **settings}
    return gcp.make(Paths(home), Config.model_validate({"infra": {"gcp": section}}))


def request(**fields: Any) -> Any:
    from skytui.spec import Resources

    candidates, _ = Resources.model_validate(fields).candidates()
    return candidates[0]


def cheapest(cloud: Any, **fields: Any) -> Any:
    return min(cloud.offers(request(**fields)), key=lambda o: (o.price_per_hour, o.instance_type))


def inserted(gce: FakeGCE, name: str) -> dict[str, Any]:
    return next(body for body in gce.insert_bodies() if body["name"] == name)


def metadata(body: dict[str, Any]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in body["metadata"]["items"]}


def assert_empty(gce: FakeGCE) -> None:
    wait_for(lambda: not gce.inventory(), 30, 0.1, "the fake's inventory to be empty")


def assert_only_issued_tokens(gce: FakeGCE) -> None:
    """Every API call carried a token the fake's token endpoint had issued."""
    api = [r for r in gce.requests if r.path.startswith("/compute/")]
    assert api and all((r.authorization or "").removeprefix("Bearer ") in gce.tokens for r in api)
    assert any(r.path == "/token" for r in gce.requests)


# -------------------------------------------------------------------- check


def detect(home: Path, **section: Any) -> Any:
    from skytui.clouds import gcp
    from skytui.config import Config, Paths

    return gcp.detect(Paths(home), Config.model_validate({"infra": {"gcp": section}}))


def test_check_without_credentials_says_how_to_add_them(home: Path, loopback_only: list[str]) -> None:
    status = detect(home)
    assert (status.enabled, status.reason) == (False, "no GCP credentials found")
    assert "gcloud auth application-default login" in status.fix and "GOOGLE_APPLICATION_CREDENTIALS" in status.fix
    assert loopback_only == []  # no metadata server was probed


def test_check_finds_adc_names_their_kind_and_obeys_enabled_false(
    env: Env, gce: FakeGCE, adc: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    env.config(f"infra:\n  gcp: {{regions: [{REGION}], api_endpoint: '{gce.endpoint}'}}\n")
    report = json.loads(env.cli("check", "--json", check=True).stdout)
    status = next(entry for entry in report["infra"] if entry["name"] == "gcp")
    assert status["enabled"] is True
    assert status["reason"] == (
        f"workforce identity user credentials from GOOGLE_APPLICATION_CREDENTIALS, project {gce.project}"
    )
    assert f"GCP project {gce.project}" in status["offers"] and REGION in status["offers"]
    shown = env.cli("check", check=True).stdout + json.dumps(report)
    assert gce.refresh_token not in shown and "fake-client-secret" not in shown

    # No project anywhere: off, with the fix; a project in config turns it on.
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    status = detect(env.home)
    assert status.enabled is False and status.fix == "set infra.gcp.project"
    assert detect(env.home, project="from-config").reason.endswith("project from-config")

    status = detect(env.home, enabled=False)
    assert status.enabled is False and "infra.gcp.enabled: false" in status.reason
    assert [r for r in gce.requests if r.path.startswith("/compute/")] == []  # checking never calls the API


def test_check_without_the_sdk_says_what_to_install(home: Path, adc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "google.cloud.compute_v1", None)  # not importable
    status = detect(home)
    assert status.enabled is False and status.fix == "pip install 'skytui[gcp]'"


# ---------------------------------------------------------------- provision


async def test_spot_provision_state_preemption_and_terminate(
    gce: FakeGCE, adc: Path, home: Path, ssh_user: Any, loopback_only: list[str],
) -> None:
    from skytui.clouds.base import ClusterState
    from skytui.clouds.vm_ssh import vm_public_key

    cloud = cloud_for(home, gce, ssh_user, disk_size_gb=64)
    install = cloud.paths.install_id
    offer = cheapest(cloud, infra=f"gcp/{REGION}", accelerators="T4:1", use_spot=True, disk_size=256)
    assert (offer.instance_type, offer.use_spot) == ("n1-standard-4", True)
    handle = await cloud.provision("train-1-0-1", offer, 1, labels={"skytui-job": "1", "skytui-task": "0"})

    [node] = handle.nodes
    name = f"train-1-0-1-{install}-0"
    assert (node.instance_id, handle.zone, node.user) == (name, ZONES[0], ssh_user.name)
    body = inserted(gce, name)
    assert body["scheduling"] == {"provisioningModel": "SPOT", "instanceTerminationAction": "STOP",
                                  "onHostMaintenance": "TERMINATE", "automaticRestart": False}
    assert body["machineType"] == f"zones/{ZONES[0]}/machineTypes/n1-standard-4"
    assert body["guestAccelerators"] == [
        {"acceleratorType": f"zones/{ZONES[0]}/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": 1}]
    assert body["labels"] == {"skytui-owner": install, "skytui-cluster": "train-1-0-1",
                              "skytui-job": "1", "skytui-task": "0"}
    assert metadata(body) == {"ssh-keys": f"{ssh_user.name}:{vm_public_key(cloud.paths)}"}
    assert "PRIVATE" not in json.dumps(body)
    assert body["disks"][0]["initializeParams"]["diskSizeGb"] == "256"  # the task's disk_size over the config's 64
    assert body["networkInterfaces"][0]["accessConfigs"][0]["type"] == "ONE_TO_ONE_NAT"
    assert node.host.startswith("203.0.113.") and node.internal_ip.startswith("10.")

    ssh = cloud.node(node)
    try:
        code, out, _ = await ssh.run("whoami")
    finally:
        await ssh.close()
    assert (code, out.strip()) == (0, ssh_user.name)

    assert await cloud.cluster_state(handle) is ClusterState.UP
    await asyncio.sleep(cloud.state_poll_s)  # the shared answer has aged: the next call asks the API
    gce.fail_next(3)  # the API hiccups: a running job's machine is never declared gone on a guess
    assert await cloud.cluster_state(handle) is ClusterState.UP
    assert await cloud.list_clusters() == ["train-1-0-1"]
    gce.preempt(name)
    gce.fail_next(1)  # asked again, then answered
    await state_becomes(cloud, handle, ClusterState.GONE)
    assert await cloud.list_clusters() == ["train-1-0-1"]  # a reclaimed VM still costs its disk: swept

    await cloud.terminate("train-1-0-1", handle)
    assert gce.inventory() == []
    await cloud.terminate("train-1-0-1", handle)  # idempotent: 404s are fine
    await cloud.terminate("train-1-0-1", None)
    assert await cloud.cluster_state(handle) is ClusterState.GONE  # deleted: 404
    assert await cloud.list_clusters() == []
    assert_only_issued_tokens(gce)
    assert loopback_only == []


async def test_on_demand_cluster_of_two_partial_loss_and_terminate_by_label(
    gce: FakeGCE, adc: Path, home: Path, ssh_user: Any, loopback_only: list[str],
) -> None:
    from skytui.clouds.base import ClusterState

    cloud = cloud_for(home, gce, ssh_user)
    install = cloud.paths.install_id
    offer = cheapest(cloud, infra=f"gcp/{REGION}", accelerators="A100:1")
    assert (offer.instance_type, offer.use_spot) == ("a2-highgpu-1g", False)
    handle = await cloud.provision("pool-gpu-w3", offer, 2, labels={"skytui-pool": "gpu", "skytui-worker": "3"})

    assert [n.rank for n in handle.nodes] == [0, 1]
    assert sorted(gce.inventory()) == [f"pool-gpu-w3-{install}-0", f"pool-gpu-w3-{install}-1"]
    for node in handle.nodes:
        body = inserted(gce, node.instance_id)
        # On demand; A2 brings its own GPUs, which cannot live-migrate.
        assert body["scheduling"] == {"onHostMaintenance": "TERMINATE", "automaticRestart": True}
        assert "guestAccelerators" not in body
        assert body["labels"]["skytui-pool"] == "gpu" and body["labels"]["skytui-worker"] == "3"
        ssh = cloud.node(node)
        try:
            assert (await ssh.run("echo $((6*7))"))[:2] == (0, "42\n")
        finally:
            await ssh.close()

    assert await cloud.cluster_state(handle) is ClusterState.UP
    gce.preempt(handle.nodes[1].instance_id)
    await state_becomes(cloud, handle, ClusterState.PARTIAL)
    await cloud.terminate("pool-gpu-w3", None)  # no handle: found by its labels
    assert gce.inventory() == []
    assert loopback_only == []


async def test_list_clusters_and_terminate_never_touch_another_install(
    gce: FakeGCE, adc: Path, home: Path, tmp_path: Path, loopback_only: list[str],
) -> None:
    from skytui.clouds import gcp
    from skytui.config import Config, Paths

    config = Config.model_validate({"infra": {"gcp": {"regions": [REGION], "api_endpoint": gce.endpoint}}})
    mine = gcp.make(Paths(home), config)
    theirs = gcp.make(Paths(tmp_path / "other-home"), config)
    assert mine.paths.install_id != theirs.paths.install_id
    # Same cluster names on both installs, and a VM that is not skytui's at all.
    for cloud in (mine, theirs):
        for cluster in ("train-4-0-1", "pool-cpu-w1"):
            gce.seed(ZONES[1], f"{cluster}-{cloud.paths.install_id}-0",
                     {"skytui-owner": cloud.paths.install_id, "skytui-cluster": cluster})
    gce.seed(ZONES[2], "someones-vm", {"team": "research"})

    assert await mine.list_clusters() == ["pool-cpu-w1", "train-4-0-1"]
    await mine.terminate("train-4-0-1", None)
    assert await mine.list_clusters() == ["pool-cpu-w1"]
    assert await theirs.list_clusters() == ["pool-cpu-w1", "train-4-0-1"]
    assert "someones-vm" in gce.inventory()

    await mine.terminate("pool-cpu-w1", None)
    for cluster in await theirs.list_clusters():
        await theirs.terminate(cluster, None)
    assert gce.inventory() == ["someones-vm"]
    with gce._lock:
        gce.instances.clear()  # not skytui's to delete
    assert_empty(gce)
    assert loopback_only == []


async def test_a_dry_zone_is_skipped_and_a_dry_region_is_a_capacity_error(
    gce: FakeGCE, adc: Path, home: Path, ssh_user: Any, loopback_only: list[str],
) -> None:
    from skytui.clouds.base import CapacityError

    cloud = cloud_for(home, gce, ssh_user)
    gce.run_dry(ZONES[0])
    # Pinned to the dry zone: no capacity, said shortly with the zone and GCE's code.
    pinned = cheapest(cloud, infra=f"gcp/{REGION}/{ZONES[0]}", cpus=2, use_spot=True)
    with pytest.raises(CapacityError) as caught:
        await cloud.provision("train-5-0-1", pinned, 1)
    assert f"gcp/{ZONES[0]}: ZONE_RESOURCE_POOL_EXHAUSTED" in str(caught.value)
    assert len(str(caught.value)) < 200
    assert gce.inventory() == []

    # The region's next zone has room.
    offer = cheapest(cloud, infra=f"gcp/{REGION}", cpus=2, use_spot=True)
    handle = await cloud.provision("train-5-0-2", offer, 1)
    assert handle.zone == ZONES[1]
    await cloud.terminate("train-5-0-2", handle)

    for zone in ZONES:
        gce.run_dry(zone)
    with pytest.raises(CapacityError) as caught:
        await cloud.provision("train-5-0-3", offer, 2)
    assert all(f"gcp/{zone}: ZONE_RESOURCE_POOL_EXHAUSTED" in str(caught.value) for zone in ZONES)
    assert gce.inventory() == []
    assert loopback_only == []


async def test_bad_image_or_foreign_project_is_a_precheck_error(
    gce: FakeGCE, adc: Path, home: Path, ssh_user: Any, loopback_only: list[str],
) -> None:
    from skytui.clouds.base import PrecheckError

    cloud = cloud_for(home, gce, ssh_user, image="projects/no-such-project/global/images/family/nothing")
    offer = cheapest(cloud, infra=f"gcp/{REGION}", cpus=2)
    with pytest.raises(PrecheckError) as caught:
        await cloud.provision("train-6-0-1", offer, 2)
    assert "no-such-project/global/images/family/nothing" in str(caught.value)

    cloud = cloud_for(home, gce, ssh_user, project="someone-elses")
    with pytest.raises(PrecheckError) as caught:
        await cloud.provision("train-6-0-2", offer, 1)
    assert "403" in str(caught.value) and "someone-elses" in str(caught.value)
    assert gce.refresh_token not in str(caught.value)
    assert gce.inventory() == []
    assert loopback_only == []


async def test_instances_that_never_answer_ssh_are_deleted(
    gce: FakeGCE, adc: Path, home: Path, ssh_user: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from infra.sshd import RELAY, free_port

    from skytui.clouds import gcp
    from skytui.clouds.base import CapacityError

    monkeypatch.setattr(gcp, "SSH_TIMEOUT_S", 3.0)
    cloud = cloud_for(home, gce, ssh_user, ssh_proxy_command=f"{sys.executable} {RELAY} 127.0.0.1 {free_port()}")
    offer = cheapest(cloud, infra=f"gcp/{REGION}/{ZONES[2]}", cpus=2)
    with pytest.raises(CapacityError) as caught:
        await cloud.provision("train-7-0-1", offer, 2)
    assert f"gcp/{ZONES[2]}" in str(caught.value) and "did not answer SSH" in str(caught.value)
    assert len(gce.insert_bodies()) == 2 and gce.inventory() == []


# --------------------------------------------------------------- end to end

BLOCK_ONCE = """\
echo "task id $SKYPILOT_TASK_ID as $(whoami)"
if [ ! -f {flag} ]; then touch {flag}; sleep 600; fi
echo done"""


def test_job_on_gcp_runs_over_ssh_and_recovers_from_a_preemption(
    gce: FakeGCE, adc: Path, fast_env: Env, ssh_user: Any,
) -> None:
    env = fast_env
    gce.on_insert = guest_agent(ssh_user)
    settings = {"regions": [REGION], "api_endpoint": gce.endpoint, "ssh_user": ssh_user.name,
                "ssh_proxy_command": ssh_user.proxy_command}
    env.config(FAST_CONFIG + f"  gcp: {json.dumps(settings)}\n")
    flag = ssh_user.home / "first-run"
    job_yaml = "\n".join([
        "name: train", "resources:", f"  infra: gcp/{REGION}", "  cpus: 2", "  use_spot: true", "run: |",
        *(f"  {line}" for line in BLOCK_ONCE.format(flag=flag).splitlines()),
    ]) + "\n"
    job = env.launch(env.write("job.yaml", job_yaml))

    wait_for(lambda: flag.exists(), 120, 0.1, "the job's first run on the GCE instance")
    [first] = gce.inventory()
    assert gce.status_of(first) == "RUNNING"
    wait_for(lambda: b"task id" in env.log(job), 30, 0.1, "the first run's output in the log")
    gce.preempt(first)

    done = env.wait_status(job, "SUCCEEDED", "FAILED", "FAILED_CONTROLLER", "FAILED_NO_RESOURCE", timeout=180)
    assert done["status"] == "SUCCEEDED", done
    task = done["tasks"][0]
    assert task["recoveries"] == 1 and task["infra"].startswith(f"gcp/{REGION}")
    assert task["use_spot"] is True
    log = env.log(job).decode()
    runs = [line for line in log.splitlines() if "task id" in line]
    assert len(runs) == 2 and runs[0] == runs[1] and runs[0].endswith(f"as {ssh_user.name}")
    assert "done" in log
    statuses = [e.split(":")[1] for e in events(env, job) if e.startswith("status:")]
    assert "RECOVERING" in statuses and statuses.index("RECOVERING") < len(statuses) - 1

    # A new instance ran the second attempt; every one is deleted in the end.
    names = [body["name"] for body in gce.insert_bodies()]
    assert len(names) == 2 and first == names[0] and names[1] != first
    assert all(body["scheduling"]["provisioningModel"] == "SPOT" for body in gce.insert_bodies())
    assert_empty(gce)
    assert_only_issued_tokens(gce)
