"""The controller on a VM of its own (issue 14): `jobs.controller.resources:
{infra: aws/<region>}` or `gcp/<region>`. moto plays EC2
(tests/infra/moto_server.py), the loopback fake of the Compute API GCE
(tests/infra/fake_gce.py, with real ADC through google-auth); the VM's
made-up address reaches a throwaway login of the real OpenSSH server through
`infra.<cloud>.ssh_proxy_command`, as the job VMs of tests/e2e/test_aws.py and
test_gcp.py do, and that login runs the controller with the
`controller_python` venv. Every command is the real CLI.
"""

from __future__ import annotations

import getpass
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.env import Env
from infra.fake_gce import FakeGCE

pytestmark = pytest.mark.timeout(300)

REGION = "us-east-1"
GCP_REGION = "us-central1"
LIVE = ["pending", "running", "stopping", "stopped", "shutting-down"]

JOB = """\
name: hello
resources:
  infra: sim/aws
  use_spot: true
run: |
  echo hello from the controller VM
"""


def ec2() -> Any:
    import boto3

    return boto3.client("ec2", region_name=REGION)


def stock_image() -> str:
    images = ec2().describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])
    return str(images["Images"][0]["ImageId"])


def controller_instances() -> list[dict[str, Any]]:
    """Every controller VM in moto that is not terminated."""
    pages = ec2().get_paginator("describe_instances").paginate(Filters=[
        {"Name": "tag-key", "Values": ["skytui-controller"]}, {"Name": "instance-state-name", "Values": LIVE}])
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def vm_config(ssh_user: Any, python: Path) -> str:
    # aws is off for jobs: the controller VM is placed through the client's
    # credentials, and the controller there (which gets moto's dummy keys but
    # not its endpoint) must never sweep the real EC2.
    return f"""\
jobs:
  controller:
    resources: {{infra: aws/{REGION}}}
    python: {python}
infra:
  local: {{enabled: false}}
  sim: {{enabled: true, provision_delay_s: 0.2}}
  aws:
    enabled: false
    regions: [{REGION}]
    ssh_user: {ssh_user.name}
    ssh_proxy_command: {ssh_user.proxy_command}
    images: {{{REGION}: {stock_image()}}}
"""


def ran_there_and_found_again(env: Env, ssh_user: Any) -> None:
    """Job 1 succeeded with its state on the VM; a client that lost
    everything but config.yaml finds the same VM and the job."""
    assert env.wait_status(1, "SUCCEEDED", timeout=90)["status"] == "SUCCEEDED"
    assert "hello from the controller VM" in env.cli("jobs", "logs", "1", check=True).stdout
    assert not (env.home / "state.db").exists()
    assert (ssh_user.home / ".skytui-controller" / "home" / "state.db").exists()
    for path in env.home.iterdir():
        if path.name != "config.yaml":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    started = time.monotonic()
    (job,) = json.loads(env.cli("jobs", "queue", "--json", check=True).stdout)["jobs"]
    print(f"`jobs queue --json` of a client with only config.yaml: {time.monotonic() - started:.1f}s")
    assert (job["id"], job["name"], job["status"]) == (1, "hello", "SUCCEEDED")


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's own home (where the controller VM's login key is kept), private to the test."""
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def test_the_controller_vm_is_made_once_found_again_and_taken_down(
    env: Env, moto: Any, ssh_user: Any, controller_python: Path, user_home: Path,
) -> None:
    from skytui.clouds.catalog import load_catalog
    from skytui.clouds.keys import ensure_keypair, public_key_line
    from skytui.remote.vm_machine import controller_id, keys_root

    root = keys_root("aws", REGION)
    assert root.is_relative_to(user_home)
    # "The VM" is the sshd login: it lets in the key the VM is launched with.
    ssh_user.authorize(public_key_line(ensure_keypair(root / "keys" / "vm_ed25519")))
    env.config(vm_config(ssh_user, controller_python))
    job_file = env.write("hello.yaml", JOB)

    started = time.monotonic()
    launched = env.cli("jobs", "launch", "-y", "-d", str(job_file))
    first_launch_s = time.monotonic() - started
    assert launched.code == 0, launched.stderr
    assert "Managed job 1 submitted" in launched.stdout
    print(f"first `jobs launch -d` with the controller VM made in moto: {first_launch_s:.1f}s")

    [vm] = controller_instances()
    assert vm["State"]["Name"] == "running"
    assert vm.get("InstanceLifecycle") is None  # on-demand, never spot
    cid = controller_id("aws", REGION, getpass.getuser())
    assert tags(vm)["skytui-controller"] == cid and tags(vm)["Name"] == f"skytui-controller-{cid}"
    # The cheapest type of the region with 4+ CPUs and 16+ GB, SkyPilot's controller default.
    fits = [e for e in load_catalog("aws") if e.region == REGION and not e.accelerator_name
            and e.vcpus >= 4 and e.memory_gb >= 16]
    assert vm["InstanceType"] == min(fits, key=lambda e: (e.price, e.vcpus, e.memory_gb)).instance_type
    ran_there_and_found_again(env, ssh_user)
    assert [i["InstanceId"] for i in controller_instances()] == [vm["InstanceId"]]
    status = env.cli("controller", "status", check=True).stdout
    assert f"aws/{REGION} ({vm['InstanceId']}" in status, status

    down = env.cli("controller", "down", "-y", timeout=200)
    assert down.code == 0, down.stderr
    assert controller_instances() == []
    [gone] = ec2().describe_instances(InstanceIds=[vm["InstanceId"]])["Reservations"][0]["Instances"]
    assert gone["State"]["Name"] == "terminated"
    # Nothing made for it is left in the account, on the machine or here.
    owner = tags(vm)["skytui-owner"]
    assert not [k for k in ec2().describe_key_pairs()["KeyPairs"] if k["KeyName"] == f"skytui-{owner}"]
    assert not ec2().describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"skytui-{owner}"]}])["SecurityGroups"]
    assert not (ssh_user.home / ".skytui-controller").exists()
    assert not root.exists()


def test_a_controller_vm_lost_outside_skytui_is_said_plainly(
    env: Env, moto: Any, ssh_user: Any, controller_python: Path, user_home: Path,
) -> None:
    """Terminated behind skytui's back, the VM took the jobs' state with it:
    the next command says so and what to do, and launches no empty new one."""
    from skytui.clouds.keys import ensure_keypair, public_key_line
    from skytui.remote.vm_machine import keys_root

    root = keys_root("aws", REGION)
    ssh_user.authorize(public_key_line(ensure_keypair(root / "keys" / "vm_ed25519")))
    env.config(vm_config(ssh_user, controller_python))
    env.launch(env.write("hello.yaml", JOB))
    [vm] = controller_instances()
    ec2().terminate_instances(InstanceIds=[vm["InstanceId"]])

    result = env.cli("jobs", "queue")
    assert result.code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"Error: the controller VM {vm['InstanceId']} on aws/{REGION} is gone"), \
        result.stderr
    assert "nobody watches their nodes" in result.stderr and str(root / "host_key.json") in result.stderr
    assert "Traceback" not in result.stderr
    assert controller_instances() == []

    (root / "host_key.json").unlink()  # as the message says: the next command starts afresh
    # (The "new VM" here is the same sshd login, whose files outlived the old one: only its instance is new.)
    env.cli("jobs", "queue", "--json", check=True)
    [fresh] = controller_instances()
    assert fresh["InstanceId"] != vm["InstanceId"]
    assert env.cli("controller", "down", "-y", timeout=200).code == 0
    assert controller_instances() == []


# ----------------------------------------------------------------------- gcp


@pytest.fixture
def gce(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGCE]:
    """The fake Compute API, and ADC that lead google-auth to it (this process, the CLI)."""
    fake = FakeGCE()
    try:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(fake.write_adc(tmp_path / "adc.json")))
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", fake.project)
        yield fake
    finally:
        fake.stop()


def test_the_controller_vm_on_gcp(
    env: Env, gce: FakeGCE, ssh_user: Any, controller_python: Path, user_home: Path,
) -> None:
    from skytui.clouds.catalog import load_catalog
    from skytui.remote.vm_machine import controller_id, keys_root

    def guest_agent(instance: dict[str, Any]) -> None:  # GCE's: authorizes the ssh-keys of the metadata
        for item in instance.get("metadata", {}).get("items", []):
            if item["key"] == "ssh-keys":
                ssh_user.authorize(item["value"].partition(":")[2])

    gce.on_insert = guest_agent
    env.config(f"""\
jobs:
  controller:
    resources: {{infra: gcp/{GCP_REGION}, cpus: 2}}
    python: {controller_python}
infra:
  local: {{enabled: false}}
  sim: {{enabled: true, provision_delay_s: 0.2}}
  gcp:
    enabled: false
    regions: [{GCP_REGION}]
    api_endpoint: {gce.endpoint}
    ssh_user: {ssh_user.name}
    ssh_proxy_command: {ssh_user.proxy_command}
""")
    launched = env.cli("jobs", "launch", "-y", "-d", str(env.write("hello.yaml", JOB)))
    assert launched.code == 0, launched.stderr
    [name] = gce.inventory()
    [body] = gce.insert_bodies()
    cid = controller_id("gcp", GCP_REGION, getpass.getuser())
    assert body["labels"]["skytui-controller"] == cid
    assert body.get("scheduling", {}).get("provisioningModel") != "SPOT"
    # cpus: 2 asked (memory then free): the cheapest such type of the region.
    fits = [e for e in load_catalog("gcp") if e.region == GCP_REGION and not e.accelerator_name and e.vcpus >= 2]
    assert body["machineType"].rsplit("/", 1)[1] == min(fits, key=lambda e: (e.price, e.vcpus)).instance_type

    ran_there_and_found_again(env, ssh_user)
    assert gce.inventory() == [name]

    down = env.cli("controller", "down", "-y", timeout=200)
    assert down.code == 0, down.stderr
    assert gce.inventory() == []
    assert not (ssh_user.home / ".skytui-controller").exists()
    assert not keys_root("gcp", GCP_REGION).exists()
