"""The remote controller on a VM of its own in AWS or GCP
(`jobs.controller.resources.infra: aws[/<region>]` or `gcp[/<region>]`).

The VM is found from config.yaml alone: it carries the tag (GCP: label)
`skytui-controller=<id>`, id = 8 hex of sha256(cloud, region, local user), and
is looked up through the cloud's API, so a client that lost its SKYTUI_HOME
finds the same one. It is made when missing: on-demand, the cheapest catalog
type that fits the controller's cpus/memory/disk_size (4+ CPUs and 16+ GB by
default, as SkyPilot's controller), by the clouds' own provisioning (aws.py,
gcp.py), which also waits for its sshd and learns its host key; then its
Python gets skytui's dependencies if it lacks them (`jobs.controller.python`,
pip's user site). A VM that vanished outside skytui is said plainly, never
silently replaced by an empty one.

What logs in there lives, like SkyPilot's ~/.ssh/sky-key, outside
SKYTUI_HOME: `~/.ssh/skytui-controller/<id>/` holds the VM's login key, the
install id that owns the VM in the cloud (so a local daemon's leak sweep,
which owns by its own install id, never takes the controller VM) and the
host key pinned at first contact.

Owns `VMMachine`. May touch config, the aws and gcp clouds, vm_ssh and
link.py; every cloud call runs in a worker thread (the clouds see to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import json
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from skytui.clouds.base import CloudError, ClusterHandle, InstanceOffer, NodeInfo
from skytui.clouds.ssh_host_keys import HostKeys
from skytui.config import Config, ConfigError, Paths, SSHHost, write_private
from skytui.remote.errors import LinkError, NoController
from skytui.remote.runtime import RUNTIME_REQUIREMENTS
from skytui.remote.link import Link, SSHLink

TAG = "skytui-controller"
DEFAULT_CPUS = "4+"
DEFAULT_MEMORY = "16+"
OFFERS_TRIED = 4  # the cheapest few places, when one has no capacity
GONE_TIMEOUT_S = 600.0
SETUP_TIMEOUT_S = 600.0
# What the controller needs of its Python (pyproject's dependencies, less the
# TUI's); a fresh stock image has Python 3.10+ but none of these.
_AWS_LIVE = ("pending", "running", "stopping", "stopped")
# Being taken away: never adopted, and a new VM waits until they are gone.
_GOING = frozenset({"shutting-down", "STOPPING"})


def controller_id(cloud: str, region: str, user: str) -> str:
    return hashlib.sha256(f"{cloud}\0{region}\0{user}".encode()).hexdigest()[:8]


def keys_root(cloud: str, region: str) -> Path:
    """Where this user's login to the controller VM of (cloud, region) is kept."""
    return Path.home() / ".ssh" / "skytui-controller" / controller_id(cloud, region, getpass.getuser())


class _Pinned(HostKeys):
    """The one host key the VM showed when skytui first met it."""

    def __init__(self, line: str) -> None:
        super().__init__(Path("/nonexistent"), Path("/nonexistent"))
        self.line = line

    def trusted_lines(self, host: SSHHost) -> list[str]:
        return [self.line]

    async def verify(self, host: SSHHost) -> str:
        return self.line


class VMMachine:
    """A controller VM that skytui makes, finds again and terminates."""

    def __init__(self, paths: Paths, config: Config, cloud: str, region: str) -> None:
        if cloud not in ("aws", "gcp"):
            raise ConfigError(f"{paths.config_file}: jobs.controller.resources.infra: no controller VM on {cloud!r}")
        self.config = config
        self.cloud_name = cloud
        self.region = region
        self.label = f"{cloud}/{region}" if region else cloud
        # A shutdown from inside stops an EC2 instance (its default) or a GCE VM; `ensure` starts it again.
        self.stop_command: str | None = "sudo -n shutdown -h now"
        self.id = controller_id(cloud, region, getpass.getuser())
        self.cluster_name = f"{TAG}-{self.id}"
        self.root = keys_root(cloud, region)
        self.key_paths = Paths(self.root)
        self.vm_config = config.infra.aws if cloud == "aws" else config.infra.gcp
        self._cloud: Any = None
        self._node: NodeInfo | None = None
        self._link: SSHLink | None = None

    # ----------------------------------------------------------------- cloud

    def _make_cloud(self) -> Any:
        if self._cloud is None:
            if self.cloud_name == "aws":
                from skytui.clouds.aws import AWSCloud

                self._cloud = AWSCloud(self.key_paths, self.config.infra.aws)
            else:
                from skytui.clouds import gcp

                self._cloud = gcp.make(self.key_paths, self.config)
        return self._cloud

    def _regions(self) -> list[str]:
        return [self.region] if self.region else list(self._make_cloud().regions)

    async def _find(self) -> list[tuple[str, dict[str, Any]]]:
        """(region or zone, instance) of every controller VM of this id not yet
        gone (stopped and being deleted ones too), oldest first. A GCE instance
        is shown as AWS's are: InstanceId, State.Name (GCE's status), addresses."""
        cloud = self._make_cloud()
        if self.cloud_name == "aws":
            filters = [{"Name": f"tag:{TAG}", "Values": [self.id]},
                       {"Name": "instance-state-name", "Values": [*_AWS_LIVE, "shutting-down"]}]
            found = await asyncio.gather(*(cloud._describe(region, filters) for region in self._regions()))
            rows = [(region, dict(i)) for region, items in zip(self._regions(), found, strict=True) for i in items]
            return sorted(rows, key=lambda row: str(row[1].get("LaunchTime") or ""))
        from skytui.clouds.gcp_api import classify

        try:
            views = await cloud._retrying(cloud.api.labelled, {TAG: self.id})
        except Exception as exc:
            raise classify(exc, self.label) from None
        return [(view.zone, {"InstanceId": view.name, "State": {"Name": view.status},
                             "PublicIpAddress": view.nat_ip, "PrivateIpAddress": view.internal_ip})
                for view in sorted(views, key=lambda view: view.name)]

    # -------------------------------------------------------------- ensure

    async def ensure(self, *, create: bool = True) -> None:
        if self._node is not None:
            return
        try:
            found = await self._find()
            usable = [row for row in found if row[1]["State"]["Name"] not in _GOING]
            if usable:
                self._node = await self._adopt(*usable[0])
                return
            lost = self._pinned_instance()
            if lost is not None:
                raise LinkError(
                    f"the controller VM {lost} on {self.label} is gone (terminated or deleted outside skytui): "
                    "the managed jobs' state and logs went with it, and nobody watches their nodes, which may "
                    f"still run in your account. Check them in the cloud's console; then remove {self._pin_file} "
                    "and the next command launches a new controller VM"
                )
            if found:
                raise LinkError(f"the controller VM on {self.label} is stopping or being deleted; try again "
                                "in a minute")
            if not create:
                raise NoController(f"no controller VM on {self.label} yet: the first `skytui jobs launch` "
                                   "launches it")
            self._node = await self._launch()
        except CloudError as exc:
            raise LinkError(f"cannot get the controller VM on {self.label}: {exc}") from exc

    async def _adopt(self, where: str, instance: dict[str, Any]) -> NodeInfo:
        """The node of a VM found by its tag: started again if stopped (AWS)."""
        from skytui.clouds.vm_ssh import wait_for_host_key

        cloud = self._make_cloud()
        instance_id = str(instance["InstanceId"])
        state = instance["State"]["Name"]
        if self.cloud_name == "aws":
            if state in ("stopping", "stopped"):
                await self._aws_start(where, instance_id)
            if state != "running":
                instance = (await cloud._wait_running(where, [instance_id], str(instance["InstanceType"])))[0]
            user = self.vm_config.ssh_user or "ubuntu"
        else:
            if state in ("PROVISIONING", "STAGING"):
                view = (await cloud._wait_running(where, [instance_id], self.label))[0]
                instance = {"PublicIpAddress": view.nat_ip, "PrivateIpAddress": view.internal_ip}
            elif state != "RUNNING":
                raise LinkError(f"the controller VM {instance_id} on {self.label} is {state}: start it "
                                f"(`gcloud compute instances start {instance_id} --zone {where}`)")
            user = str(cloud.ssh_user)
        private = str(instance.get("PrivateIpAddress") or "")
        host = private if self.vm_config.use_internal_ips else str(instance.get("PublicIpAddress") or "")
        if not host:
            raise LinkError(f"the controller VM {instance_id} on {self.label} has no address to reach it at")
        if not (self.root / "keys" / "vm_ed25519").is_file():
            raise LinkError(
                f"the controller VM {instance_id} on {self.label} runs, but this machine lacks the key it "
                f"lets in ({self.root}/keys/vm_ed25519): copy that folder from the machine that launched it"
            )
        key = self._pinned(instance_id)
        if key is None:  # its pin went missing: trust on first use, as at its launch
            key = await wait_for_host_key(host, 22, proxy_command=self.vm_config.ssh_proxy_command, timeout_s=300)
            self._pin(instance_id, key)
        node = NodeInfo(rank=0, host=host, port=22, user=user, internal_ip=private, host_key=key,
                        instance_id=instance_id)
        if not self._pin_data().get("set_up"):  # its setup at launch did not finish: again
            self._node = node
            await self._install_python()
        return node

    async def _aws_start(self, region: str, instance_id: str) -> None:
        cloud = self._make_cloud()
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while True:  # StartInstances is refused while it is still stopping
            states = [i["State"]["Name"] for _, i in await self._find() if i["InstanceId"] == instance_id]
            state = states[0] if states else None
            if state == "stopped":
                await cloud._call(region, lambda client: client.start_instances(InstanceIds=[instance_id]))
                return
            if state != "stopping" or time.monotonic() > deadline:
                raise LinkError(f"the controller VM {instance_id} on {self.label} is {state or 'gone'}")
            await asyncio.sleep(2.0)

    def _offers(self) -> list[InstanceOffer]:
        from skytui.spec import Resources

        wanted = self.config.jobs.controller.resources
        assert wanted is not None
        fields: dict[str, Any] = {"infra": self.label, "use_spot": False}
        if wanted.cpus is None and wanted.memory is None:
            fields.update(cpus=DEFAULT_CPUS, memory=DEFAULT_MEMORY)
        else:
            fields.update({key: value for key, value in (("cpus", wanted.cpus), ("memory", wanted.memory)) if value})
        if wanted.disk_size:
            fields["disk_size"] = wanted.disk_size
        candidates, _ = Resources.model_validate(fields).candidates()
        offers = self._make_cloud().offers(candidates[0])
        return sorted(offers, key=lambda o: (o.price_per_hour, o.cpus, o.memory_gb, o.instance_type, o.region or ""))

    async def _launch(self) -> NodeInfo:
        offers = [offer for offer in self._offers() if not offer.use_spot]
        if not offers:
            raise LinkError(f"no on-demand instance type on {self.label} fits the controller's resources "
                            "(jobs.controller.resources: cpus, memory, disk_size)")
        last: CloudError | None = None
        for offer in offers[:OFFERS_TRIED]:
            try:
                handle = await self._make_cloud().provision(self.cluster_name, offer, 1, labels={TAG: self.id})
            except CloudError as exc:
                last = exc
                continue
            node: NodeInfo = handle.nodes[0]
            self._pin(node.instance_id, node.host_key)
            self._node = node
            await self._install_python()
            return node
        raise LinkError(f"cannot launch the controller VM on {self.label}: {last}")

    async def _install_python(self) -> None:
        """Give a fresh VM's Python skytui's dependencies when it lacks them,
        as SkyPilot sets up its controller VM (pip from the image's packages,
        then the requirements in the login's user site)."""
        python = shlex.quote(self.config.jobs.controller.python)
        requirements = " ".join(shlex.quote(r) for r in RUNTIME_REQUIREMENTS)
        script = (
            f"{python} -c 'import sqlalchemy, asyncssh, pydantic, yaml, rich' 2>/dev/null && exit 0; "
            f"{python} -m pip --version >/dev/null 2>&1 || {{ sudo -n apt-get update -qq && "
            "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip; } && "
            f"PIP_BREAK_SYSTEM_PACKAGES=1 {python} -m pip install -q --user {requirements}"
        )
        code, out, err = await self.link().run(script, timeout=SETUP_TIMEOUT_S)
        if code != 0:
            raise LinkError(f"cannot install skytui's dependencies on the controller VM on {self.label} "
                            f"(`{self.config.jobs.controller.python}`): {(err.strip() or out.strip())[-500:]}")
        assert self._node is not None
        self._pin(self._node.instance_id, self._node.host_key, set_up=True)

    # ---------------------------------------------------------- host key pin

    @property
    def _pin_file(self) -> Path:
        return self.root / "host_key.json"

    def _pin_data(self) -> dict[str, Any]:
        try:
            data = json.loads(self._pin_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _pinned(self, instance_id: str) -> str | None:
        data = self._pin_data()
        return str(data["host_key"]) if data.get("instance_id") == instance_id and data.get("host_key") else None

    def _pinned_instance(self) -> str | None:
        """The VM this machine last reached (forgotten only by `remove`)."""
        instance_id = self._pin_data().get("instance_id")
        return str(instance_id) if instance_id else None

    def _pin(self, instance_id: str, host_key: str, *, set_up: bool = False) -> None:
        """What this machine knows of the VM: its host key, and whether its Python was set up."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(self._pin_file, json.dumps(
            {"instance_id": instance_id, "host_key": host_key, "set_up": set_up}).encode())

    # ---------------------------------------------------------------- link

    def login_key(self) -> Path:
        """The private key the VM is launched with and logged in to (made on first use)."""
        from skytui.clouds.vm_ssh import vm_key_path

        return vm_key_path(self.key_paths)

    def link(self) -> Link:
        """One SSHLink per VM, shared by the setup at launch and the site."""
        if self._node is None:
            raise LinkError(f"the controller VM on {self.label} was not looked up yet")
        node = self._node
        if self._link is None or self._link.host.host != node.host:
            host = SSHHost(name=self.cluster_name, host=node.host, port=22, user=node.user)
            self._link = SSHLink(host, self.login_key(), _Pinned(node.host_key),
                                 proxy_command=self.vm_config.ssh_proxy_command)
            self._link.where = f"{self.label} ({node.instance_id}, {node.user}@{node.host})"
        return self._link

    # -------------------------------------------------------------- remove

    async def remove(self) -> None:
        """Terminate the VM, wait until it is gone, and take away what was made for it."""
        try:
            found = await self._find()
            cloud = self._make_cloud()
            for where, instance in found:
                instance_id = str(instance["InstanceId"])
                node = NodeInfo(rank=0, host="", port=22, user="", internal_ip="", host_key="", instance_id=instance_id)
                region = where if self.cloud_name == "aws" else where.rsplit("-", 1)[0]
                await cloud.terminate(self.cluster_name, ClusterHandle(self.cloud_name, self.cluster_name, region,
                                                                       None if self.cloud_name == "aws" else where,
                                                                       (node,)))
            deadline = time.monotonic() + GONE_TIMEOUT_S
            while await self._find():
                if time.monotonic() > deadline:
                    raise LinkError(f"the controller VM on {self.label} was not gone after {GONE_TIMEOUT_S:g}s")
                await asyncio.sleep(2.0)
            if self.cloud_name == "aws":
                for region in {where for where, _ in found} | ({self.region} if self.region else set()):
                    await self._aws_forget(region)
        except CloudError as exc:
            raise LinkError(f"cannot terminate the controller VM on {self.label}: {exc}") from exc
        self._node = None
        if self._link is not None:
            await self._link.close()
            self._link = None
        shutil.rmtree(self.root, ignore_errors=True)

    async def _aws_forget(self, region: str) -> None:
        """The key pair and security group made for the controller VM (owned by its id alone)."""
        from botocore.exceptions import BotoCoreError, ClientError

        from skytui.clouds.aws_ec2 import translate

        name = f"skytui-{self.key_paths.install_id}"

        def forget(client: Any) -> None:
            with contextlib.suppress(ClientError):
                client.delete_key_pair(KeyName=name)
            groups = client.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])
            for group in groups["SecurityGroups"]:
                with contextlib.suppress(ClientError):
                    client.delete_security_group(GroupId=group["GroupId"])

        try:
            await self._make_cloud()._call(region, forget)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, region=region, action="delete the controller VM's key pair and group") from None
