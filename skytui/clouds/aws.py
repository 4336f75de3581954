"""The `aws` infra: EC2 instances through boto3.

On when boto3 finds credentials by its own chain (environment, profile, SSO,
instance role), unless config.yaml says `infra.aws.enabled: false`. Offers come
from the shipped catalog (catalogs/aws.csv), restricted to `infra.aws.regions`.
A cluster is `num_nodes` instances of one RunInstances call, tagged
`skytui-owner=<install id>`, `skytui-cluster=<name>` and the engine's labels,
so that a cluster is found, listed and terminated by its tags alone. Nodes are
reached over SSH with skytui's own key (imported as the key pair
`skytui-<install id>`) through the security group `skytui-<install id>` of the
default VPC, which opens TCP 22; the host key is learned at first contact and
pinned. boto3 honours AWS_ENDPOINT_URL, which is how the tests point it at moto.

Every boto3 call runs in a worker thread (aws_ec2.py holds them), with boto3's
timeouts and a deadline on every wait.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skytui.clouds import aws_ec2
from skytui.clouds.base import (
    Accepted,
    CapacityError,
    CloudError,
    ClusterHandle,
    ClusterState,
    InfraStatus,
    InstanceOffer,
    NodeError,
    NodeInfo,
    PrecheckError,
    states_one_by_one,
)
from skytui.clouds.catalog import load_catalog, matching_entries, price_of
from skytui.clouds.catalog import regions as catalog_regions
from skytui.config import AWSInfraConfig, Config, Paths

if TYPE_CHECKING:
    from skytui.clouds.nodes.sshnode import SSHNode
    from skytui.spec import Resources

log = logging.getLogger(__name__)

NAME = "aws"
INSTALL_FIX = "pip install 'skytui[aws]'"
CREDENTIALS_FIX = "run `aws configure` or set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
DEFAULT_SSH_USER = "ubuntu"  # Canonical's Ubuntu images

RUNNING_TIMEOUT_S = 600.0  # pending -> running; EC2 takes seconds to a few minutes
SSH_TIMEOUT_S = 300.0  # running -> sshd answers; Ubuntu boots in under a minute
POLL_MAX_S = 5.0
# Queries retry EC2's throttling and 5xx answers; a launch does not: EC2 sends
# "insufficient capacity" as an HTTP 500, which botocore would retry with
# backoff, while the engine's failover to the next place is the better retry.
QUERY_ATTEMPTS = 5
LAUNCH_ATTEMPTS = 1

# How boto3 found the credentials (creds.method), in the words of `skytui check`.
CREDENTIAL_SOURCES = {
    "env": "environment variables",
    "shared-credentials-file": "the shared credentials file",
    "config-file": "the AWS config file",
    "sso": "AWS SSO",
    "assume-role": "an assumed role",
    "assume-role-with-web-identity": "a web identity role",
    "iam-role": "the instance's IAM role",
    "container-role": "the container's role",
    "custom-process": "a credential_process",
}


# ----------------------------------------------------------------- detection


# Where boto3's credential chain can find anything. Without any of them there
# is nothing to find, and importing boto3 (0.4 s on every launch) is skipped.
_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
_EC2_VENDOR_FILES = ("/sys/class/dmi/id/board_vendor", "/sys/class/dmi/id/sys_vendor", "/sys/hypervisor/uuid")


def _credentials_may_exist() -> bool:
    if any(os.environ.get(name) for name in _CREDENTIAL_VARIABLES):
        return True
    files = (os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
             os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"))
    if any(os.path.exists(os.path.expanduser(path)) for path in files):
        return True
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return False
    for path in _EC2_VENDOR_FILES:  # an instance role is only on EC2
        try:
            text = Path(path).read_text(errors="replace").lower()
        except OSError:
            continue
        if "amazon" in text or text.startswith("ec2"):
            return True
    return False


def detect(paths: Paths, config: Config) -> InfraStatus:
    if importlib.util.find_spec("boto3") is None:
        return InfraStatus(NAME, False, "boto3 is not installed", INSTALL_FIX)
    if config.infra.aws.enabled is False:
        return InfraStatus(NAME, False, "turned off in config.yaml (infra.aws.enabled: false)",
                           "set infra.aws.enabled: true")
    if not _credentials_may_exist():
        return InfraStatus(NAME, False, "no AWS credentials found", CREDENTIALS_FIX)
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        credentials = boto3.Session().get_credentials()
    except BotoCoreError as exc:  # a named profile that does not exist, say; no secret in these
        return InfraStatus(NAME, False, f"AWS credentials could not be loaded: {exc}", CREDENTIALS_FIX)
    if credentials is None:
        return InfraStatus(NAME, False, "no AWS credentials found", CREDENTIALS_FIX)
    method = str(getattr(credentials, "method", "") or "unknown")
    return InfraStatus(NAME, True, f"credentials from {CREDENTIAL_SOURCES.get(method, method)}")


def make(paths: Paths, config: Config) -> AWSCloud:
    return AWSCloud(paths, config.infra.aws)


# --------------------------------------------------------------------- cloud


class AWSCloud:
    name = NAME
    absolute_mounts = True  # a VM of its own
    state_poll_s = 5.0  # one DescribeInstances per region per 5 s, shared by every job there

    def __init__(self, paths: Paths, config: AWSInfraConfig) -> None:
        self.paths = paths
        self.config = config
        self._session: Any = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._clients_lock = threading.Lock()  # a boto3 session is not thread-safe
        self._region_locks: dict[str, asyncio.Lock] = {}
        self._ready: dict[str, tuple[str, str, str]] = {}  # region -> (image, root device, security group)
        self._state_locks: dict[str, asyncio.Lock] = {}
        self._state_cache: dict[str, tuple[float, set[str]]] = {}  # region -> (when, live instance ids)

    # ----------------------------------------------------------------- clients

    def _client(self, region: str, purpose: str = "query") -> Any:
        """One client per region (and purpose), made once: they are thread-safe."""
        with self._clients_lock:
            key = (region, purpose)
            client = self._clients.get(key)
            if client is None:
                import boto3

                if self._session is None:
                    self._session = boto3.session.Session()
                launch = purpose == "launch"
                client = aws_ec2.make_client(
                    self._session, region, attempts=LAUNCH_ATTEMPTS if launch else QUERY_ATTEMPTS,
                    read_timeout_s=120.0 if launch else 60.0,
                )
                self._clients[key] = client
            return client

    async def _call(self, region: str, fn: Any, *args: Any, purpose: str = "query", **kwargs: Any) -> Any:
        """`fn(client, *args)` in a worker thread."""
        def run() -> Any:
            return fn(self._client(region, purpose), *args, **kwargs)

        return await asyncio.to_thread(run)

    @property
    def regions(self) -> list[str]:
        """Where skytui launches and looks for its instances."""
        return list(self.config.regions) or list(catalog_regions(NAME))

    @property
    def _resource_name(self) -> str:
        return f"skytui-{self.paths.install_id}"

    # ------------------------------------------------------------------ offers

    def describe(self) -> str:
        allowed = set(self.config.regions)
        entries = [e for e in load_catalog(NAME) if not allowed or e.region in allowed]
        gpus = sorted({e.accelerator_name for e in entries if e.accelerator_name})
        regions = sorted({e.region for e in entries})
        return (
            f"EC2 in {len(regions)} region(s) ({', '.join(regions) or 'none of the configured ones is in the catalog'}): "
            f"CPU types and GPUs {', '.join(gpus) or '-'}; spot and on-demand"
        )

    def offers(self, request: Resources) -> list[InstanceOffer]:
        if request.cloud not in (None, NAME):
            return []
        allowed = set(self.config.regions)
        if request.region is not None and allowed and request.region not in allowed:
            return []
        use_spot = bool(request.use_spot)
        offers = []
        for entry, zone in matching_entries(load_catalog(NAME), request, region=request.region, zone=request.zone):
            if allowed and entry.region not in allowed:
                continue
            offers.append(InstanceOffer(
                cloud=NAME, instance_type=entry.instance_type, cpus=entry.vcpus, memory_gb=entry.memory_gb,
                region=entry.region, zone=zone,
                accelerators={entry.accelerator_name: entry.accelerator_count} if entry.accelerator_name else {},
                use_spot=use_spot, price_per_hour=price_of(entry, use_spot), disk_size_gb=request.disk_size,
            ))
        return offers

    # --------------------------------------------------------------- provision

    async def _prepare_region(self, region: str) -> tuple[str, str, str]:
        """The image, its root device and the security group of a region; the
        key pair imported. Done once per region, never twice at once."""
        lock = self._region_locks.setdefault(region, asyncio.Lock())
        async with lock:
            if region in self._ready:
                return self._ready[region]
            install_id = self.paths.install_id
            from skytui.clouds.vm_ssh import vm_public_key

            public_key = await asyncio.to_thread(vm_public_key, self.paths)
            image, root_device = await self._call(region, aws_ec2.find_image, region, self.config.images.get(region))
            await self._call(region, aws_ec2.ensure_key_pair, region, self._resource_name, public_key, install_id)
            group = await self._call(region, aws_ec2.ensure_security_group, region, self._resource_name, install_id)
            self._ready[region] = (image, root_device, group)
            return self._ready[region]

    def _launch_params(
        self, cluster_name: str, offer: InstanceOffer, num_nodes: int, labels: Mapping[str, str],
        image: str, root_device: str, group: str,
    ) -> dict[str, Any]:
        tags = {"Name": cluster_name, **labels, "skytui-owner": self.paths.install_id, "skytui-cluster": cluster_name}
        tag_list = [{"Key": key, "Value": str(value)} for key, value in tags.items()]
        params: dict[str, Any] = {
            "ImageId": image,
            "InstanceType": offer.instance_type,
            "MinCount": num_nodes,
            "MaxCount": num_nodes,
            "KeyName": self._resource_name,
            "SecurityGroupIds": [group],
            "BlockDeviceMappings": [{
                "DeviceName": root_device,
                "Ebs": {"VolumeSize": offer.disk_size_gb or self.config.disk_size_gb, "VolumeType": "gp3",
                        "DeleteOnTermination": True},
            }],
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list},
                {"ResourceType": "volume", "Tags": tag_list},
            ],
        }
        if offer.use_spot:
            params["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            }
        if offer.zone:
            params["Placement"] = {"AvailabilityZone": offer.zone}
        return params

    async def provision(
        self, cluster_name: str, offer: InstanceOffer, num_nodes: int, *, labels: Mapping[str, str] | None = None,
        accepted: Accepted | None = None,
    ) -> ClusterHandle:
        if offer.region is None:
            raise PrecheckError("an aws offer needs a region")
        region = offer.region
        image, root_device, group = await self._prepare_region(region)
        params = self._launch_params(cluster_name, offer, num_nodes, labels or {}, image, root_device, group)
        market = "spot" if offer.use_spot else "on-demand"
        try:
            created = await self._call(
                region, aws_ec2.run_instances, region, offer.instance_type, market, params, purpose="launch"
            )
        except CloudError:
            # The image, key pair or group may have been deleted behind the
            # cached lookup: look again next time.
            self._ready.pop(region, None)
            raise
        ids = [str(instance["InstanceId"]) for instance in created]
        try:
            if accepted is not None:
                await accepted()  # EC2 granted the capacity; booting takes the time
            instances = await self._wait_running(region, ids, offer.instance_type)
            nodes = await self._nodes(instances)
        except BaseException as exc:
            # Nothing half-made is left behind, whatever went wrong (cancellation
            # too). Should this fail, the tags still lead the engine's terminate
            # and leak sweep to them.
            try:
                await asyncio.shield(self._call(region, aws_ec2.terminate_instances, ids))
            except Exception:
                log.warning("could not terminate %s after a failed launch", ", ".join(ids), exc_info=True)
            if isinstance(exc, NodeError):
                raise CapacityError(f"aws/{region}: {offer.instance_type}: {exc}") from None
            raise
        zone = offer.zone or (instances[0].get("Placement") or {}).get("AvailabilityZone")
        return ClusterHandle(
            cloud=NAME, name=cluster_name, region=region, zone=zone, nodes=nodes,
            accelerators=dict(offer.accelerators),
            extra={"use_spot": offer.use_spot, "instance_type": offer.instance_type},
        )

    async def _wait_running(self, region: str, ids: list[str], instance_type: str) -> list[dict[str, Any]]:
        """The instances once every one is running, ordered by launch index."""
        deadline = time.monotonic() + RUNNING_TIMEOUT_S
        interval = 0.5
        while True:
            await asyncio.sleep(interval)
            found = await self._describe(region, [{"Name": "instance-id", "Values": ids}])
            states = {str(i["InstanceId"]): i for i in found}
            for instance_id, instance in states.items():
                state = instance["State"]["Name"]
                if state in ("shutting-down", "terminated", "stopping", "stopped"):
                    reason = (instance.get("StateReason") or {}).get("Code") or state
                    raise CapacityError(f"aws/{region}: {instance_type} {instance_id} was {state} before it "
                                        f"came up ({reason})")
            # A fresh id may be missing for a moment (EC2 is eventually consistent).
            if len(states) == len(ids) and all(i["State"]["Name"] == "running" for i in states.values()):
                return sorted(states.values(), key=lambda i: int(i.get("AmiLaunchIndex", 0)))
            if time.monotonic() > deadline:
                raise CapacityError(f"aws/{region}: {instance_type} not running after {RUNNING_TIMEOUT_S:g}s")
            interval = min(POLL_MAX_S, interval * 2)

    async def _nodes(self, instances: list[dict[str, Any]]) -> tuple[NodeInfo, ...]:
        from skytui.clouds.vm_ssh import wait_for_host_key

        addresses = []
        for instance in instances:
            private = str(instance.get("PrivateIpAddress") or "")
            host = private if self.config.use_internal_ips else str(instance.get("PublicIpAddress") or "")
            if not host:
                raise PrecheckError(
                    f"instance {instance['InstanceId']} has no public IP: give the default VPC's subnets public IPs, "
                    "or set infra.aws.use_internal_ips: true (with ssh_proxy_command through a bastion)"
                )
            addresses.append((instance, host, private))
        keys = await asyncio.gather(*(
            wait_for_host_key(host, 22, proxy_command=self.config.ssh_proxy_command, timeout_s=SSH_TIMEOUT_S)
            for _, host, _ in addresses
        ))
        user = self.config.ssh_user or DEFAULT_SSH_USER
        return tuple(
            NodeInfo(rank=rank, host=host, port=22, user=user, internal_ip=private, host_key=key,
                     instance_id=str(instance["InstanceId"]))
            for rank, ((instance, host, private), key) in enumerate(zip(addresses, keys, strict=True))
        )

    # ------------------------------------------------------------------- state

    async def _describe(self, region: str, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found: list[dict[str, Any]] = await self._call(region, aws_ec2.describe_instances, filters)
        except (ClientError, BotoCoreError) as exc:
            raise aws_ec2.translate(exc, region=region, action="DescribeInstances") from None
        return found

    async def _live_ids(self, region: str, *, newer_than: float = 0.0) -> set[str]:
        """This install's pending or running instances in a region. Every job
        in the region shares one DescribeInstances per poll period, so a
        thousand jobs cost what one does against EC2's rate limits."""
        lock = self._state_locks.setdefault(region, asyncio.Lock())
        async with lock:  # concurrent askers wait for the one call in flight
            cached = self._state_cache.get(region)
            if cached is not None and cached[0] > newer_than and time.monotonic() - cached[0] < self.state_poll_s * 0.8:
                return cached[1]
            found = await self._describe(region, [
                {"Name": "tag:skytui-owner", "Values": [self.paths.install_id]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ])
            live = {str(i["InstanceId"]) for i in found}
            self._state_cache[region] = (time.monotonic(), live)
            return live

    async def cluster_states(self, handles: Sequence[ClusterHandle]) -> list[ClusterState]:
        return await states_one_by_one(self, handles)

    async def cluster_state(self, handle: ClusterHandle) -> ClusterState:
        ids = [node.instance_id for node in handle.nodes]
        if not ids or handle.region is None:
            return ClusterState.GONE
        try:
            asked = time.monotonic()
            alive = await self._live_ids(handle.region)
            if not all(instance_id in alive for instance_id in ids):
                # A shared answer may predate this cluster: only a fresh one may call it gone.
                alive = await self._live_ids(handle.region, newer_than=asked)
        except CloudError as exc:
            # Only EC2 can say a machine is gone; not being able to ask is not
            # an answer, and a job must not be torn down over an API hiccup.
            log.warning("cannot tell whether %s is up: %s", handle.name, exc)
            return ClusterState.UP
        up = sum(1 for instance_id in ids if instance_id in alive)
        if up == len(ids):
            return ClusterState.UP
        return ClusterState.PARTIAL if up else ClusterState.GONE

    # --------------------------------------------------------------- terminate

    def _owned(self, *more: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"Name": "tag:skytui-owner", "Values": [self.paths.install_id]},
            {"Name": "instance-state-name", "Values": list(aws_ec2.LIVE_STATES)},
            *more,
        ]

    async def terminate(self, cluster_name: str, handle: ClusterHandle | None) -> None:
        regions = [handle.region] if handle is not None and handle.region else self.regions

        async def in_region(region: str) -> None:
            self._state_cache.pop(region, None)  # what it said is about to change
            found = await self._describe(region, self._owned({"Name": "tag:skytui-cluster", "Values": [cluster_name]}))
            ids = {str(i["InstanceId"]) for i in found}
            if handle is not None and handle.region == region:
                known = [node.instance_id for node in handle.nodes if node.instance_id]
                if known:
                    live = await self._describe(region, [
                        {"Name": "instance-id", "Values": known},
                        {"Name": "instance-state-name", "Values": list(aws_ec2.LIVE_STATES)},
                    ])
                    ids |= {str(i["InstanceId"]) for i in live}
            if ids:
                log.info("terminating %s in %s: %s", cluster_name, region, ", ".join(sorted(ids)))
                await self._terminate_ids(region, sorted(ids))

        await asyncio.gather(*(in_region(region) for region in regions))

    async def _terminate_ids(self, region: str, ids: list[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await self._call(region, aws_ec2.terminate_instances, ids)
        except (ClientError, BotoCoreError) as exc:
            raise aws_ec2.translate(exc, region=region, action="TerminateInstances") from None

    async def list_clusters(self) -> list[str]:
        """Clusters of this install only: another install's instances (same
        account, other owner tag) are never listed, so never swept."""
        regions = self.regions
        results = await asyncio.gather(
            *(self._describe(region, self._owned()) for region in regions), return_exceptions=True
        )
        names: set[str] = set()
        failures: list[BaseException] = []
        for region, result in zip(regions, results, strict=True):
            if isinstance(result, BaseException):
                # One region that cannot be asked (not opted in, say) must not
                # hide the leaks of the others.
                log.warning("cannot list skytui instances in %s: %s", region, result)
                failures.append(result)
                continue
            names.update(name for instance in result if (name := aws_ec2.tag(instance, "skytui-cluster")))
        if failures and len(failures) == len(regions):
            raise failures[0]
        return sorted(names)

    def node(self, info: NodeInfo) -> SSHNode:
        from skytui.clouds.nodes.sshnode import SSHNode
        from skytui.clouds.vm_ssh import vm_key_path

        return SSHNode(info, vm_key_path(self.paths), proxy_command=self.config.ssh_proxy_command)
