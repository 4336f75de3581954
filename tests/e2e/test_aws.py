"""The `aws` infra: boto3 against moto's server, SSH to a real sshd.

moto plays EC2 (tests/infra/moto_server.py, reached through AWS_ENDPOINT_URL
as boto3 does by itself); its instances' made-up addresses reach the test's
real OpenSSH server through `ssh_user.proxy_command`, so jobs really run.
moto always has capacity, so tests/infra/ec2_faults.py, a proxy in front of
it, answers RunInstances with EC2's own errors where a test says so. A bad
image is moto's own answer: DescribeImages of a missing AMI is
InvalidAMIID.NotFound, as on EC2. Every test ends with no skytui instance
left in moto.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fixtures.clouds import state_becomes
from fixtures.env import FAST_CONFIG, Env, events, wait_for
from infra.ec2_faults import EC2Faults
from infra.sshd import free_port

pytestmark = pytest.mark.timeout(300)

REGION = "us-east-1"
OTHER_REGION = "us-west-2"
LIVE = ["pending", "running", "stopping", "stopped", "shutting-down"]


# ------------------------------------------------------------------ helpers


def ec2(region: str = REGION) -> Any:
    import boto3

    return boto3.client("ec2", region_name=region)


def stock_image(region: str = REGION) -> str:
    """An AMI that exists in moto's region (any will do: moto boots nothing)."""
    images = ec2(region).describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])
    return str(images["Images"][0]["ImageId"])


def instances(region: str = REGION, *filters: dict[str, Any]) -> list[dict[str, Any]]:
    pages = ec2(region).get_paginator("describe_instances").paginate(Filters=list(filters))
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def live_skytui_instances(*regions: str) -> list[str]:
    """Every instance of any skytui install that is not terminated."""
    return [
        f"{region}:{i['InstanceId']}:{tags(i).get('skytui-cluster')}"
        for region in regions
        for i in instances(region, {"Name": "tag-key", "Values": ["skytui-owner"]},
                           {"Name": "instance-state-name", "Values": LIVE})
    ]


def assert_no_instances(*regions: str) -> None:
    wait_for(lambda: not live_skytui_instances(*regions), 30, 0.2, "every skytui instance to be terminated")


def request(**fields: Any) -> Any:
    from skytui.spec import Resources

    candidates, _ = Resources.model_validate(fields).candidates()
    return candidates[0]


def cloud_for(home: Path, ssh_user: Any, **settings: Any) -> Any:
    """An AWSCloud of this test's SKYTUI_HOME whose nodes log in to the real sshd."""
    from skytui.clouds.aws import AWSCloud
    from skytui.clouds.vm_ssh import vm_public_key
    from skytui.config import AWSInfraConfig, Paths

    paths = Paths(home)
    ssh_user.authorize(vm_public_key(paths))
    config = {"regions": [REGION], "ssh_user": ssh_user.name, "ssh_proxy_command": ssh_user.proxy_command,
              **settings}
    return AWSCloud(paths, AWSInfraConfig.model_validate(config))


def cheapest(cloud: Any, **fields: Any) -> Any:
    return min(cloud.offers(request(**fields)), key=lambda o: (o.price_per_hour, o.instance_type))


@pytest.fixture
def faults(moto: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[EC2Faults]:
    """The fault proxy in front of moto; boto3 (and the CLI, and its controller) go through it."""
    with EC2Faults(moto.endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        yield proxy


def check(env: Env) -> dict[str, Any]:
    report = json.loads(env.cli("check", "--json", check=True).stdout)
    return next(entry for entry in report["infra"] if entry["name"] == "aws")


# -------------------------------------------------------------------- check


def test_check_without_credentials_says_how_to_add_them(env: Env) -> None:
    aws = check(env)
    assert aws["enabled"] is False
    assert aws["reason"] == "no AWS credentials found"
    assert "aws configure" in aws["fix"] and "AWS_PROFILE" in aws["fix"]


def test_check_finds_credentials_and_obeys_enabled_false(env: Env, moto: Any) -> None:
    aws = check(env)
    assert aws["enabled"] is True
    assert aws["reason"] == "credentials from environment variables"
    assert "us-east-1" in aws["offers"] and "spot and on-demand" in aws["offers"]
    shown = env.cli("check", check=True).stdout
    assert "testing-secret-key" not in shown and "testing-secret-key" not in json.dumps(aws)

    env.config("infra:\n  aws: {enabled: false}\n")
    aws = check(env)
    assert aws["enabled"] is False
    assert "infra.aws.enabled: false" in aws["reason"]


def test_check_without_boto3_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from skytui.clouds import aws
    from skytui.config import Config, Paths

    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ImportError
    status = aws.detect(Paths(tmp_path), Config())
    assert status.enabled is False and status.fix == "pip install 'skytui[aws]'"


# ---------------------------------------------------------------- provision


async def test_provision_spot_and_on_demand_then_state_and_terminate(moto: Any, home: Path, ssh_user: Any) -> None:
    from skytui.clouds.base import ClusterState

    cloud = cloud_for(home, ssh_user, images={REGION: stock_image()}, disk_size_gb=64)
    install = cloud.paths.install_id
    spot_offer = cheapest(cloud, infra=f"aws/{REGION}/us-east-1b", cpus=2, use_spot=True, disk_size=200)
    demand_offer = cheapest(cloud, infra=f"aws/{REGION}", cpus=2)
    spot, demand = await asyncio.gather(
        cloud.provision("train-1-0-1", spot_offer, 2, labels={"skytui-job": "1", "skytui-task": "0"}),
        cloud.provision("pool-cpu-w1", demand_offer, 1, labels={"skytui-pool": "cpu", "skytui-worker": "1"}),
    )
    # Someone else's skytui in the same account, with a cluster of the same name.
    foreign = ec2().run_instances(
        ImageId=stock_image(), InstanceType="c6i.large", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "skytui-owner", "Value": "otherinstall"}, {"Key": "skytui-cluster", "Value": "train-1-0-1"}]}],
    )["Instances"][0]["InstanceId"]

    by_cluster: dict[str, list[dict[str, Any]]] = {}
    for instance in instances(REGION, {"Name": "tag:skytui-owner", "Values": [install]}):
        by_cluster.setdefault(tags(instance)["skytui-cluster"], []).append(instance)
    assert sorted(by_cluster) == ["pool-cpu-w1", "train-1-0-1"] and len(by_cluster["train-1-0-1"]) == 2
    for instance in by_cluster["train-1-0-1"]:
        assert instance.get("InstanceLifecycle") == "spot"
        assert instance["Placement"]["AvailabilityZone"] == "us-east-1b"
        assert instance["InstanceType"] == spot_offer.instance_type
        assert tags(instance) == {"Name": "train-1-0-1", "skytui-owner": install, "skytui-cluster": "train-1-0-1",
                                  "skytui-job": "1", "skytui-task": "0"}
    [worker] = by_cluster["pool-cpu-w1"]
    assert worker.get("InstanceLifecycle") is None  # on-demand
    assert tags(worker)["skytui-pool"] == "cpu" and tags(worker)["skytui-worker"] == "1"
    assert {i["KeyName"] for i in [*by_cluster["train-1-0-1"], worker]} == {f"skytui-{install}"}
    assert ec2().describe_key_pairs(KeyNames=[f"skytui-{install}"])["KeyPairs"]
    [group] = ec2().describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"skytui-{install}"]}])[
        "SecurityGroups"]
    assert any(p["FromPort"] == 22 and p["IpProtocol"] == "tcp" for p in group["IpPermissions"])
    assert {g["GroupId"] for g in worker["SecurityGroups"]} == {group["GroupId"]}
    volumes = ec2().describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [worker["InstanceId"]]}])
    assert [v["Size"] for v in volumes["Volumes"]] == [64]  # the config's default
    first = by_cluster["train-1-0-1"][0]["InstanceId"]
    volumes = ec2().describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [first]}])
    assert [v["Size"] for v in volumes["Volumes"]] == [200]  # the task's resources.disk_size

    # The handle reaches the nodes: ranks in launch order, host key pinned.
    assert [n.rank for n in spot.nodes] == [0, 1] and spot.region == REGION
    node = cloud.node(demand.nodes[0])
    try:
        code, out, _ = await node.run("whoami")
    finally:
        await node.close()
    assert (code, out.strip()) == (0, ssh_user.name)
    assert demand.nodes[0].host == worker["PublicIpAddress"]
    assert demand.nodes[0].internal_ip == worker["PrivateIpAddress"]

    assert await cloud.list_clusters() == ["pool-cpu-w1", "train-1-0-1"]
    assert await cloud.cluster_state(spot) is ClusterState.UP
    # A reclaimed spot node: the cluster is partly gone, then gone (seen within
    # a poll period: one DescribeInstances per region serves every cluster there).
    ec2().terminate_instances(InstanceIds=[spot.nodes[1].instance_id])
    await state_becomes(cloud, spot, ClusterState.PARTIAL)
    ec2().terminate_instances(InstanceIds=[spot.nodes[0].instance_id])
    await state_becomes(cloud, spot, ClusterState.GONE)
    await cloud.terminate("train-1-0-1", spot)  # already gone: no error

    # By name alone (the leak sweep's way): only this install's instances.
    await cloud.terminate("pool-cpu-w1", None)
    assert await cloud.cluster_state(demand) is ClusterState.GONE
    await cloud.terminate("pool-cpu-w1", None)
    await cloud.terminate("train-1-0-1", None)
    await cloud.terminate("never-existed", None)
    assert await cloud.list_clusters() == []
    [other] = instances(REGION, {"Name": "instance-id", "Values": [foreign]})
    assert other["State"]["Name"] == "running"  # neither listed nor swept
    ec2().terminate_instances(InstanceIds=[foreign])
    assert_no_instances(REGION)


async def test_default_image_is_the_newest_ubuntu_2204(moto: Any, home: Path, ssh_user: Any) -> None:
    # moto ships no Ubuntu 22.04 image: seed its in-process EC2 with three of
    # Canonical's, as EC2 lists them (an older and a newer amd64, a newest arm64).
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami

    backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
    for ami, date, arch in [("ami-0aaaa00000000000a", "20240110", "amd64"), ("ami-0bbbb00000000000b", "20250601", "amd64"),
                            ("ami-0cccc00000000000c", "20260101", "arm64")]:
        backend.amis[ami] = Ami(
            backend, ami_id=ami, owner_id="099720109477", public=True, state="available",
            architecture="x86_64" if arch == "amd64" else "arm64", root_device_name="/dev/sda1",
            name=f"ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-{arch}-server-{date}",
            creation_date=datetime.strptime(date, "%Y%m%d").replace(tzinfo=UTC),
        )
    cloud = cloud_for(home, ssh_user)
    handle = await cloud.provision("img-1-0-1", cheapest(cloud, infra=f"aws/{REGION}", cpus=2), 1)
    [instance] = instances(REGION, {"Name": "instance-id", "Values": [handle.nodes[0].instance_id]})
    assert instance["ImageId"] == "ami-0bbbb00000000000b"
    assert handle.nodes[0].user == ssh_user.name
    await cloud.terminate("img-1-0-1", handle)
    assert_no_instances(REGION)


# ------------------------------------------------------------ failures mapped


async def test_ec2_errors_become_capacity_or_precheck_errors(faults: EC2Faults, home: Path, ssh_user: Any) -> None:
    from skytui.clouds.base import CapacityError, ClusterState, PrecheckError

    cloud = cloud_for(home, ssh_user, images={REGION: stock_image()})
    spot = cheapest(cloud, infra=f"aws/{REGION}", cpus=2, use_spot=True)
    cases = [("InsufficientInstanceCapacity", 500, CapacityError), ("InstanceLimitExceeded", 400, CapacityError),
             ("SpotMaxPriceTooLow", 400, CapacityError), ("UnauthorizedOperation", 403, PrecheckError),
             ("AuthFailure", 401, PrecheckError)]
    for code, status, error in cases:
        faults.dry(REGION, "spot", code=code, status=status)
        seen = len(faults.run_instances)
        with pytest.raises(error) as raised:
            await cloud.provision("dry-1-0-1", spot, 1)
        message = str(raised.value)
        assert REGION in message and code in message, message
        if error is CapacityError:
            assert spot.instance_type in message
        assert "testing" not in message  # no credential, ever
        assert len(faults.run_instances) == seen + 1  # asked once: the engine's failover is the retry
    assert live_skytui_instances(REGION) == []

    # Dry for spot only: on-demand in the same region still launches.
    demand = cheapest(cloud, infra=f"aws/{REGION}", cpus=2)
    handle = await cloud.provision("wet-1-0-1", demand, 1)
    assert faults.run_instances[-1] == (REGION, "on-demand", "")
    assert await cloud.cluster_state(handle) is ClusterState.UP
    await cloud.terminate("wet-1-0-1", None)
    assert_no_instances(REGION)


async def test_missing_image_is_a_precheck_error(moto: Any, home: Path, ssh_user: Any) -> None:
    from skytui.clouds.base import PrecheckError

    cloud = cloud_for(home, ssh_user, images={REGION: "ami-0123456789abcdef0"})
    with pytest.raises(PrecheckError) as raised:
        await cloud.provision("img-1-0-1", cheapest(cloud, infra=f"aws/{REGION}", cpus=2), 1)
    assert "InvalidAMIID.NotFound" in str(raised.value) and f"infra.aws.images.{REGION}" in str(raised.value)

    # No image configured, and no Ubuntu 22.04 in the region (moto has none).
    cloud = cloud_for(home, ssh_user)
    with pytest.raises(PrecheckError, match=rf"set infra\.aws\.images\.{REGION}"):
        await cloud.provision("img-1-0-1", cheapest(cloud, infra=f"aws/{REGION}", cpus=2), 1)
    assert live_skytui_instances(REGION) == []


async def test_unreachable_instances_are_terminated(
    moto: Any, home: Path, ssh_user: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from skytui.clouds import aws
    from skytui.clouds.base import CapacityError

    monkeypatch.setattr(aws, "SSH_TIMEOUT_S", 3.0)
    relay = Path(__file__).parent.parent / "infra" / "relay.py"
    cloud = cloud_for(home, ssh_user, images={REGION: stock_image()},
                      ssh_proxy_command=f"{sys.executable} {relay} 127.0.0.1 {free_port()}")  # nothing listens
    with pytest.raises(CapacityError, match="did not answer SSH"):
        await cloud.provision("mute-1-0-1", cheapest(cloud, infra=f"aws/{REGION}", cpus=2), 2)
    made = instances(REGION, {"Name": "tag:skytui-cluster", "Values": ["mute-1-0-1"]})
    assert len(made) == 2  # they were made, and are gone again
    assert_no_instances(REGION)


# --------------------------------------------------------------- end to end


def aws_config(ssh_user: Any, *, regions: list[str], extra: str = "") -> str:
    images = ", ".join(f"{region}: {stock_image(region)}" for region in regions)
    return FAST_CONFIG.replace("infra:\n", "infra:\n" + extra) + (
        f"  aws:\n    regions: [{', '.join(regions)}]\n    images: {{{images}}}\n"
        f"    ssh_user: {ssh_user.name}\n    ssh_proxy_command: {ssh_user.proxy_command}\n"
    )


# Blocks on its first attempt (until its machine goes), then finishes. The flag
# is in the test login's home, which the sim's nodes (this machine) see too.
BLOCK_ONCE = """\
echo "hello from $(whoami) on rank $SKYPILOT_NODE_RANK"
if [ ! -f {flag} ]; then touch {flag}; sleep 600; fi
echo done"""


def job_yaml(resources: str, flag: Path) -> str:
    run = "\n".join(f"  {line}" for line in BLOCK_ONCE.format(flag=flag).splitlines())
    return f"name: train\nresources: {resources}\nrun: |\n{run}\n"


def authorize_vm_key(env: Env, ssh_user: Any) -> None:
    from skytui.clouds.vm_ssh import vm_public_key
    from skytui.config import Paths

    ssh_user.authorize(vm_public_key(Paths(env.home)))


def job_instances(job_id: int, region: str = REGION) -> list[dict[str, Any]]:
    return instances(region, {"Name": "tag:skytui-job", "Values": [str(job_id)]})


def running_instance(job_id: int, region: str = REGION) -> str:
    live = [i["InstanceId"] for i in job_instances(job_id, region) if i["State"]["Name"] == "running"]
    return live[0] if len(live) == 1 else ""


def test_job_on_aws_recovers_when_its_instance_is_terminated(env: Env, moto: Any, ssh_user: Any) -> None:
    env.config(aws_config(ssh_user, regions=[REGION]))
    authorize_vm_key(env, ssh_user)
    job = env.launch(env.write("job.yaml", job_yaml(f"{{infra: aws/{REGION}, cpus: 2}}", ssh_user.home / "first")))
    wait_for(lambda: (ssh_user.home / "first").exists(), 90, 0.2, "the job to start on the aws node")
    env.wait_status(job, "RUNNING")
    wait_for(lambda: b"hello from" in env.log(job), 30, 0.2, "the job's output")
    assert f"hello from {ssh_user.name} on rank 0" in env.log(job).decode()
    first = wait_for(lambda: running_instance(job), 30, 0.2, "the job's instance")
    assert env.job(job)["tasks"][0]["infra"].startswith(f"aws/{REGION}")

    ec2().terminate_instances(InstanceIds=[first])  # a spot reclaim, as far as skytui can tell
    wait_for(lambda: env.job(job)["recoveries"] >= 1, 60, 0.2, "the recovery to start")
    env.wait_status(job, "SUCCEEDED", timeout=120)
    assert any(e.startswith("status:RECOVERING:") for e in events(env, job))
    done = env.job(job)
    assert done["recoveries"] == 1 and done["tasks"][0]["infra"].startswith(f"aws/{REGION}")
    log = env.log(job).decode()
    assert log.count("hello from") == 2 and log.rstrip().endswith("done")
    launched = job_instances(job)
    assert len(launched) == 2 and first in {i["InstanceId"] for i in launched}
    assert_no_instances(REGION)


def test_job_fails_over_from_aws_to_sim_when_aws_runs_dry(env: Env, faults: EC2Faults, ssh_user: Any) -> None:
    regions = [REGION, OTHER_REGION]
    env.config(aws_config(ssh_user, regions=regions,
                          extra="  local: {enabled: false}\n").replace(
        "  sim: {provision_delay_s: 0.05}", "  sim: {enabled: true, clouds: [aws], provision_delay_s: 0.05}"))
    authorize_vm_key(env, ssh_user)
    path = env.write("job.yaml", job_yaml("{cpus: 2}", ssh_user.home / "first"))
    plan = env.cli("jobs", "launch", "--dryrun", str(path), check=True).stdout
    rows = [line.split() for line in plan.splitlines() if line.startswith(("aws/", "sim:"))]
    assert rows[0][0] == f"aws/{REGION}" and rows[0][-1] == "✔", plan  # aws is the first choice
    assert any(row[0].startswith("sim:aws/") for row in rows)

    job = env.launch(path)
    wait_for(lambda: (ssh_user.home / "first").exists(), 90, 0.2, "the job to start on the aws node")
    env.wait_status(job, "RUNNING")
    first = wait_for(lambda: running_instance(job), 30, 0.2, "the job's instance")
    faults.dry()  # every region, every market
    ec2().terminate_instances(InstanceIds=[first])

    done = env.wait_status(job, "SUCCEEDED", "FAILED", "FAILED_NO_RESOURCE", "FAILED_CONTROLLER", timeout=120)
    assert done["status"] == "SUCCEEDED", done
    assert done["recoveries"] == 1 and done["tasks"][0]["infra"].startswith("sim:aws/")
    tried = {(region, code) for region, _, code in faults.run_instances}
    assert {(REGION, ""), (OTHER_REGION, "InsufficientInstanceCapacity")} <= tried  # aws was asked, and was dry
    assert env.log(job).decode().rstrip().endswith("done")
    assert_no_instances(*regions)


# F4: a cancel in any phase leaves nothing running on the cloud.


def test_cancel_during_setup_leaves_no_instance(env: Env, moto: Any, ssh_user: Any) -> None:
    env.config(aws_config(ssh_user, regions=[REGION]))
    authorize_vm_key(env, ssh_user)
    job = env.launch(env.write("job.yaml", (
        f"name: slow\nresources: {{infra: aws/{REGION}, cpus: 2}}\n"
        "setup: echo installing; sleep 600\nrun: echo never\n"
    )))
    wait_for(lambda: b"installing" in env.log(job), 90, what="setup to start on the instance")
    assert job_instances(job) and env.job(job)["status"] == "STARTING"
    env.cli("jobs", "cancel", "-y", str(job), check=True)
    env.wait_status(job, "CANCELLED", timeout=60)
    wait_for(lambda: not live_skytui_instances(REGION), 30, 0.2, "the instance to be terminated")
    assert not [line for line in ssh_user.command_lines() if b"sleep 600" in line]
    assert "never" not in env.log(job).decode()


def test_cancel_while_provisioning_leaves_no_instance(env: Env, moto: Any, ssh_user: Any) -> None:
    # The instance runs but its sshd never answers (a dead proxy port): the
    # launch is stuck waiting for it when the cancel comes.
    env.config(aws_config(ssh_user, regions=[REGION]).replace(
        ssh_user.proxy_command, ssh_user.proxy_command.rsplit(" ", 1)[0] + f" {free_port()}"))
    job = env.launch(env.write("job.yaml", f"name: stuck\nresources: {{infra: aws/{REGION}, cpus: 2}}\nrun: echo x\n"))
    wait_for(lambda: running_instance(job), 60, 0.2, "the instance to be running")
    assert env.job(job)["status"] == "STARTING"
    env.cli("jobs", "cancel", "-y", str(job), check=True)
    env.wait_status(job, "CANCELLED", timeout=60)
    wait_for(lambda: not live_skytui_instances(REGION), 30, 0.2, "the instance to be terminated")
