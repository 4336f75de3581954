"""The `gcp` infra: Compute Engine VMs through google-cloud-compute.

Enabled when Application Default Credentials and a project are found
(config.yaml `infra.gcp`: project, regions, image, ssh_user, api_endpoint,
ssh_proxy_command, use_internal_ips, disk_size_gb). Offers come from the
shipped GCP catalog; a VM is found again by its labels (skytui-owner = this
install, skytui-cluster = the cluster), never by listing names, so two
installs sharing a project never touch each other's machines. Nodes are
reached over SSH with skytui's VM key, put in the instance's `ssh-keys`
metadata; the host key is learned at first contact and pinned.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

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
from skytui.clouds.catalog import CatalogEntry, load_catalog, matching_entries, price_of
from skytui.clouds.gcp_api import (
    API_TIMEOUT_S,
    OPERATION_TIMEOUT_S,
    ComputeAPI,
    InstanceView,
    classify,
    is_transient,
)
from skytui.clouds.gcp_auth import FIX as CREDENTIALS_FIX
from skytui.clouds.gcp_auth import CredentialsError, Found, find_credentials
from skytui.config import Config, GCPInfraConfig, Paths

if TYPE_CHECKING:
    from skytui.clouds.nodes.sshnode import SSHNode
    from skytui.spec import Resources

log = logging.getLogger(__name__)
T = TypeVar("T")

NAME = "gcp"
INSTALL_FIX = "pip install 'skytui[gcp]'"
DEFAULT_SSH_USER = "skytui"
RUNNING_TIMEOUT_S = 600.0  # from insert done to RUNNING
SSH_TIMEOUT_S = 300.0  # from RUNNING to sshd answering
# A thread's call may outlive its own timeouts a little (retries, DNS).
CALL_SLACK_S = 30.0
# States of an instance that will not run the job again: a spot reclaim
# leaves it TERMINATED (or deleting it, STOPPING); a person may suspend it.
GONE_STATUSES = frozenset({"TERMINATED", "STOPPING", "STOPPED", "SUSPENDING", "SUSPENDED"})
# GPUs that N1 VMs take as guest accelerators; A2, A3 and G2 come with theirs.
GUEST_ACCELERATOR_FAMILIES = ("n1-",)
ACCELERATOR_TYPES = {"T4": "nvidia-tesla-t4", "V100": "nvidia-tesla-v100", "P100": "nvidia-tesla-p100",
                     "P4": "nvidia-tesla-p4", "K80": "nvidia-tesla-k80"}
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")


# ---------------------------------------------------------------- detection


def _sdk_installed() -> bool:
    try:
        return importlib.util.find_spec("google.cloud.compute_v1") is not None
    except ModuleNotFoundError:  # no google.cloud at all
        return False


def _credentials(config: GCPInfraConfig) -> tuple[Found | None, str | None, InfraStatus | None]:
    """(credentials, project, None) or (.., .., why gcp is off)."""
    try:
        found = find_credentials()
    except CredentialsError as exc:
        return None, None, InfraStatus(NAME, False, str(exc), CREDENTIALS_FIX)
    if found is None:
        return None, None, InfraStatus(NAME, False, "no GCP credentials found", CREDENTIALS_FIX)
    project = config.project or found.project
    if not project:
        return found, None, InfraStatus(NAME, False, f"{found.description}, but no project", "set infra.gcp.project")
    return found, project, None


def detect(paths: Paths, config: Config) -> InfraStatus:
    gcp = config.infra.gcp
    if gcp.enabled is False:
        return InfraStatus(NAME, False, "turned off in config.yaml (infra.gcp.enabled: false)",
                           "set infra.gcp.enabled: true")
    if not _sdk_installed():
        return InfraStatus(NAME, False, "google-cloud-compute is not installed", INSTALL_FIX)
    found, project, off = _credentials(gcp)
    if off is not None:
        return off
    assert found is not None
    return InfraStatus(NAME, True, f"{found.description}, project {project}")


def make(paths: Paths, config: Config) -> GCPCloud:
    found, project, off = _credentials(config.infra.gcp)
    if off is not None:
        raise PrecheckError(f"gcp: {off.reason}; {off.fix}")
    assert found is not None and project is not None
    return GCPCloud(paths, config.infra.gcp, found, project)


# ------------------------------------------------------------------- naming


def instance_name(cluster_name: str, install_id: str, rank: int) -> str:
    """`<cluster>-<install id>-<rank>`, a valid GCE name (a letter first, at
    most 63 of [a-z0-9-]): the cluster part gives way when too long."""
    suffix = f"-{install_id}-{rank}"
    base = re.sub(r"[^a-z0-9-]+", "-", cluster_name.lower()).strip("-") or "skytui"
    if not base[0].isalpha():
        base = "s" + base
    return base[: 63 - len(suffix)].rstrip("-") + suffix


def instance_labels(install_id: str, cluster_name: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    """The engine's labels (made valid), then the owner and the cluster,
    which must be exact: list_clusters reads the cluster name back from them."""
    if not _LABEL_VALUE.fullmatch(cluster_name):
        raise PrecheckError(f"cluster name {cluster_name!r} cannot be a GCE label value")
    labels = {}
    for key, value in (extra or {}).items():
        clean_key = re.sub(r"[^a-z0-9_-]", "_", key.lower())[:63]
        if _LABEL_KEY.fullmatch(clean_key):
            labels[clean_key] = re.sub(r"[^a-z0-9_-]", "_", str(value).lower())[:63]
    labels.update({"skytui-owner": install_id, "skytui-cluster": cluster_name})
    return labels


def guest_accelerators(entry: CatalogEntry, zone: str) -> list[dict[str, Any]]:
    if not entry.accelerator_name or not entry.instance_type.startswith(GUEST_ACCELERATOR_FAMILIES):
        return []
    kind = ACCELERATOR_TYPES.get(entry.accelerator_name, f"nvidia-{entry.accelerator_name.lower()}")
    return [{"accelerator_type": f"zones/{zone}/acceleratorTypes/{kind}",
             "accelerator_count": int(entry.accelerator_count)}]


# -------------------------------------------------------------------- cloud


class GCPCloud:
    name = NAME
    # Each state check is one GET per node: cheap, but an API quota.
    state_poll_s = 5.0  # one aggregated list per 5 s, shared by every job
    absolute_mounts = True  # a VM of its own

    def __init__(self, paths: Paths, config: GCPInfraConfig, found: Found, project: str) -> None:
        self.paths = paths
        self.config = config
        self.project = project
        self.found = found
        self.ssh_user = config.ssh_user or DEFAULT_SSH_USER
        self.api = ComputeAPI(found.credentials, project, config.api_endpoint)
        self._state_lock = asyncio.Lock()
        self._state_cache: tuple[float, dict[str, str]] | None = None  # (when, name -> status)

    # ----------------------------------------------------------------- offers

    def _entries(self) -> list[CatalogEntry]:
        allowed = set(self.config.regions)
        return [entry for entry in load_catalog(NAME) if not allowed or entry.region in allowed]

    def describe(self) -> str:
        entries = self._entries()
        regions = sorted({entry.region for entry in entries})
        gpus = sorted({entry.accelerator_name for entry in entries if entry.accelerator_name})
        where = f" at {self.config.api_endpoint}" if self.config.api_endpoint else ""
        return (f"GCP project {self.project}{where}: {len(regions)} region(s) ({', '.join(regions)}), "
                f"CPU types and GPUs {', '.join(gpus) or 'none'}, spot and on-demand")

    def offers(self, request: Resources) -> list[InstanceOffer]:
        if request.cloud not in (None, NAME):
            return []
        use_spot = bool(request.use_spot)
        return [
            InstanceOffer(
                cloud=NAME, instance_type=entry.instance_type, cpus=entry.vcpus, memory_gb=entry.memory_gb,
                region=entry.region, zone=zone,
                accelerators={entry.accelerator_name: entry.accelerator_count} if entry.accelerator_name else {},
                use_spot=use_spot, price_per_hour=price_of(entry, use_spot), disk_size_gb=request.disk_size,
            )
            for entry, zone in matching_entries(self._entries(), request, region=request.region, zone=request.zone)
        ]

    def _entry(self, offer: InstanceOffer) -> CatalogEntry:
        for entry in load_catalog(NAME):
            if entry.instance_type == offer.instance_type and entry.region == offer.region:
                return entry
        raise PrecheckError(f"gcp: {offer.instance_type} is not in the catalog for {offer.region}")

    # ------------------------------------------------------------ the API

    async def _call(self, fn: Callable[..., T], *args: Any, timeout: float = API_TIMEOUT_S) -> T:
        """A blocking SDK call in a thread; the await gives up a little after
        the call's own timeout, so nothing here waits forever."""
        return await asyncio.wait_for(asyncio.to_thread(fn, *args), timeout=timeout + CALL_SLACK_S)

    async def _retrying(self, fn: Callable[..., T], *args: Any, timeout: float = API_TIMEOUT_S,
                        tries: int = 3) -> T:
        """For reads and deletes: a server hiccup is asked again, not reported."""
        for attempt in range(tries):
            try:
                return await self._call(fn, *args, timeout=timeout)
            except Exception as exc:
                if attempt == tries - 1 or not is_transient(exc):  # TimeoutError included
                    raise
                await asyncio.sleep(1.0 + attempt)
        raise AssertionError("unreachable")

    # ---------------------------------------------------------- provisioning

    def _body(self, name: str, zone: str, entry: CatalogEntry, offer: InstanceOffer, labels: dict[str, str],
              public_key: str) -> dict[str, Any]:
        use_spot = offer.use_spot
        accelerators = guest_accelerators(entry, zone)
        scheduling: dict[str, Any] = {}
        if use_spot:
            # STOP: a reclaimed VM stays TERMINATED, which cluster_state reads as gone.
            scheduling = {"provisioning_model": "SPOT", "instance_termination_action": "STOP",
                          "on_host_maintenance": "TERMINATE", "automatic_restart": False}
        elif entry.accelerator_name:
            scheduling = {"on_host_maintenance": "TERMINATE", "automatic_restart": True}  # GPUs cannot live-migrate
        nic: dict[str, Any] = {"network": "global/networks/default"}
        if not self.config.use_internal_ips:
            nic["access_configs"] = [{"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}]
        body: dict[str, Any] = {
            "name": name,
            "machine_type": f"zones/{zone}/machineTypes/{entry.instance_type}",
            "disks": [{"boot": True, "auto_delete": True, "initialize_params": {
                "source_image": self.config.image, "disk_size_gb": offer.disk_size_gb or self.config.disk_size_gb}}],
            "network_interfaces": [nic],
            "labels": labels,
            "metadata": {"items": [{"key": "ssh-keys", "value": f"{self.ssh_user}:{public_key}"}]},
        }
        if scheduling:
            body["scheduling"] = scheduling
        if accelerators:
            body["guest_accelerators"] = accelerators
        return body

    async def provision(
        self, cluster_name: str, offer: InstanceOffer, num_nodes: int, *, labels: Mapping[str, str] | None = None,
        accepted: Accepted | None = None,
    ) -> ClusterHandle:
        entry = self._entry(offer)
        # A zone runs dry on its own: without a zone asked for, try each of the region's.
        zones = [offer.zone] if offer.zone else list(entry.zones)
        failures: list[str] = []
        for zone in zones:
            try:
                return await self._provision_in(zone, cluster_name, offer, entry, num_nodes, labels)
            except CapacityError as exc:
                log.info("gcp: %s: no capacity in %s: %s", cluster_name, zone, exc)
                failures.append(str(exc))
        market = "spot" if offer.use_spot else "on-demand"
        raise CapacityError(f"no {market} {offer.instance_type} in {offer.region}: {'; '.join(failures)}")

    async def _provision_in(
        self, zone: str, cluster_name: str, offer: InstanceOffer, entry: CatalogEntry, num_nodes: int,
        labels: Mapping[str, str] | None,
    ) -> ClusterHandle:
        from skytui.clouds.vm_ssh import vm_public_key

        where = f"gcp/{zone}"
        tags = instance_labels(self.paths.install_id, cluster_name, labels)
        public_key = await asyncio.to_thread(vm_public_key, self.paths)
        names = [instance_name(cluster_name, self.paths.install_id, rank) for rank in range(num_nodes)]
        try:
            # Every insert is let finish before judging, so that none creates
            # a VM after the cleanup below has looked for it.
            results = await asyncio.gather(
                *(self._call(self.api.insert, zone, self._body(name, zone, entry, offer, tags, public_key),
                             timeout=API_TIMEOUT_S + OPERATION_TIMEOUT_S) for name in names),
                return_exceptions=True,
            )
            errors = [classify(result, where) for result in results if isinstance(result, BaseException)]
            if errors:
                # A request that can never work outranks a zone that is full.
                raise next((e for e in errors if isinstance(e, PrecheckError)), errors[0])
            views = await self._wait_running(zone, names, where)
            reaching = [asyncio.create_task(self._reach(rank, view, where)) for rank, view in enumerate(views)]
            try:
                nodes = await asyncio.gather(*reaching)
            except BaseException:
                for task in reaching:
                    task.cancel()
                raise
        except BaseException:
            # Shielded: a cancelled launch still deletes what it created.
            try:
                await asyncio.shield(self._delete_all([(zone, name) for name in names]))
            except Exception:
                log.exception("gcp: cleaning up %s after a failed launch", cluster_name)  # the sweep retries
            raise
        return ClusterHandle(
            cloud=NAME, name=cluster_name, region=offer.region, zone=zone, nodes=tuple(nodes),
            accelerators=dict(offer.accelerators),
            extra={"project": self.project, "use_spot": offer.use_spot, "instance_type": offer.instance_type},
        )

    async def _wait_running(self, zone: str, names: list[str], where: str) -> list[InstanceView]:
        deadline = time.monotonic() + RUNNING_TIMEOUT_S
        interval = 0.5
        while True:
            try:
                views = await asyncio.gather(*(self._retrying(self.api.get, zone, name) for name in names))
            except Exception as exc:
                raise classify(exc, where) from None
            for name, view in zip(names, views):
                if view is None or view.status in GONE_STATUSES:
                    # Reclaimed (or deleted) before it ever ran: capacity, not a bug.
                    raise CapacityError(f"{where}: {name} was {view.status if view else 'deleted'} before it ran")
            if all(view is not None and view.status == "RUNNING" for view in views):
                return [view for view in views if view is not None]
            if time.monotonic() > deadline:
                raise CapacityError(f"{where}: not RUNNING after {RUNNING_TIMEOUT_S:g}s")
            await asyncio.sleep(interval)
            interval = min(5.0, interval * 1.5)

    async def _reach(self, rank: int, view: InstanceView, where: str) -> NodeInfo:
        from skytui.clouds.vm_ssh import wait_for_host_key

        host = view.internal_ip if self.config.use_internal_ips else view.nat_ip
        if not host:
            kind = "internal" if self.config.use_internal_ips else "external"
            raise PrecheckError(f"{where}: {view.name} has no {kind} IP")
        try:
            host_key = await wait_for_host_key(
                host, 22, proxy_command=self.config.ssh_proxy_command, timeout_s=SSH_TIMEOUT_S
            )
        except NodeError as exc:
            # A VM whose sshd never answers is given up, like one never granted.
            raise CapacityError(f"{where}: {view.name}: {exc}") from None
        return NodeInfo(rank=rank, host=host, port=22, user=self.ssh_user, internal_ip=view.internal_ip or host,
                        host_key=host_key, instance_id=view.name)

    # -------------------------------------------------------------- lifecycle

    async def _statuses(self, *, newer_than: float = 0.0) -> dict[str, str]:
        """Instance name -> status of every instance of this install. Every job
        shares one aggregated list per poll period, so a thousand jobs cost
        what one does against the project's read quota."""
        async with self._state_lock:  # concurrent askers wait for the one call in flight
            cached = self._state_cache
            if cached is not None and cached[0] > newer_than and time.monotonic() - cached[0] < self.state_poll_s * 0.8:
                return cached[1]
            found = await self._retrying(self.api.labelled, {"skytui-owner": self.paths.install_id})
            statuses = {view.name: view.status for view in found}
            self._state_cache = (time.monotonic(), statuses)
            return statuses

    async def cluster_states(self, handles: Sequence[ClusterHandle]) -> list[ClusterState]:
        return await states_one_by_one(self, handles)

    async def cluster_state(self, handle: ClusterHandle) -> ClusterState:
        names = [node.instance_id for node in handle.nodes]
        try:
            asked = time.monotonic()
            statuses = await self._statuses()
            if any(statuses.get(name) != "RUNNING" for name in names):
                # A shared answer may predate this cluster: only a fresh one may call it down.
                statuses = await self._statuses(newer_than=asked)
        except Exception as exc:  # noqa: BLE001 - sorted below: transient or not
            if not is_transient(exc):
                raise classify(exc, "gcp") from None
            # The API cannot say now: the machine is not known to be gone,
            # and only the infra may declare it so (SSH tells the rest).
            log.warning("gcp: cannot read the state of %s: %s; taking it as up", handle.name, type(exc).__name__)
            return ClusterState.UP
        # Only RUNNING runs the job: a reclaimed, stopped, suspended or
        # repairing VM (its processes died with its host) is not up; nor is one not listed.
        down = sum(1 for name in names if statuses.get(name) != "RUNNING")
        if down == 0:
            return ClusterState.UP
        return ClusterState.GONE if down == len(names) else ClusterState.PARTIAL

    async def _delete_all(self, targets: list[tuple[str, str]]) -> None:
        results = await asyncio.gather(
            *(self._retrying(self.api.delete, zone, name, timeout=API_TIMEOUT_S + OPERATION_TIMEOUT_S)
              for zone, name in targets),
            return_exceptions=True,
        )
        failed = [(name, result) for (_, name), result in zip(targets, results) if isinstance(result, BaseException)]
        if failed:
            shown = ", ".join(f"{name} ({classify(exc, 'gcp')})" for name, exc in failed)
            raise CloudError(f"gcp: could not delete {shown}")

    async def terminate(self, cluster_name: str, handle: ClusterHandle | None) -> None:
        self._state_cache = None  # what it said is about to change
        targets: set[tuple[str, str]] = set()
        if handle is not None and handle.zone:
            targets.update((handle.zone, node.instance_id) for node in handle.nodes)
        # The labels also find what a handle never knew (a half-made cluster).
        try:
            found = await self._retrying(
                self.api.labelled, {"skytui-owner": self.paths.install_id, "skytui-cluster": cluster_name}
            )
        except Exception as exc:
            raise classify(exc, "gcp") from None
        targets.update((view.zone, view.name) for view in found)
        if targets:
            await self._delete_all(sorted(targets))

    async def list_clusters(self) -> list[str]:
        try:
            found = await self._retrying(self.api.labelled, {"skytui-owner": self.paths.install_id})
        except Exception as exc:
            raise classify(exc, "gcp") from None
        return sorted({
            view.labels["skytui-cluster"] for view in found
            if view.status != "STOPPING" and view.labels.get("skytui-cluster")  # STOPPING: being deleted
        })

    def node(self, info: NodeInfo) -> SSHNode:
        from skytui.clouds.nodes.sshnode import SSHNode
        from skytui.clouds.vm_ssh import vm_key_path

        return SSHNode(info, vm_key_path(self.paths), proxy_command=self.config.ssh_proxy_command)

