"""The `ssh` infra's cloud: leases of the hosts listed in config.yaml (ssh.py).

A node here is a *lease* of a host, not a machine of its own: provisioning
records the lease (what it takes of the host's declared cpus, memory and
GPUs) and makes the lease's own workspace on the host,
`~/.skytui/leases/<install id>/<cluster>-<rank>`, where its phases, workdir
and uploads live; terminating kills the lease's processes, removes the
workspace and drops the record. A host runs one job at a time unless its
declared resources leave room for more; a full host is a CapacityError, so
the job waits or goes to another host.

The leases live in `$SKYTUI_HOME/ssh_leases.json`, rewritten atomically under
an fcntl lock: the controller daemon and the CLI are different processes.

Host keys are checked against the user's known_hosts, else pinned at first
contact in `$SKYTUI_HOME/known_hosts`; a changed key is refused, and the
verified key rides in NodeInfo.host_key for every later connection.

Since SSH can drop while the machine is fine, a host that stops answering
keeps its leases UP for a grace period (`unreachable_grace_s`): skytui must
never relaunch a healthy job because a network flapped.

The leases are in ssh_leases.py, the host keys in ssh_host_keys.py; this
module owns the Cloud: offers, provisioning, states and clean-up. May touch
clouds.base, the node driver and those two modules; nothing of the engine.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from skytui.clouds.base import (
    Accepted,
    CapacityError,
    ClusterHandle,
    ClusterState,
    InstanceOffer,
    NodeError,
    NodeInfo,
    PrecheckError,
    states_one_by_one,
)
from skytui.clouds.nodes.sshnode import SSHNode
from skytui.clouds.phase_scripts import kill_command
from skytui.clouds.ssh import NAME, declared_gpus, load_hosts
from skytui.clouds.ssh_host_keys import PROBE_TIMEOUT_S, HostKeys
from skytui.clouds.ssh_leases import (
    LEASES_DIR,
    LEASES_FILE,
    Lease,
    LeaseBook,
    Take,
    busy_reason,
    refit,
    take_for,
    whole_host,
)
from skytui.clouds.vm_ssh import vm_key_path
from skytui.config import Paths, SSHHost, SSHInfraConfig

if TYPE_CHECKING:
    from skytui.spec import Resources

log = logging.getLogger("skytui.clouds.ssh")

# Asking a host whether it still answers is an SSH round trip: not every second.
STATE_POLL_S = 10.0
# Leftover phases get this long after TERM before KILL (a cancel already
# stopped the job gracefully; this is the sweep behind it).
KILL_GRACE_S = 3.0
_PHASE_ID = re.compile(r"^[A-Za-z0-9._-]+$")
_PROBE_OK = "skytui-probe-ok"


# ------------------------------------------------------------------- cloud


class SSHCloud:
    name = NAME
    state_poll_s = STATE_POLL_S
    # A host is a real machine: a mount to /data lands at /data.
    absolute_mounts = True

    def __init__(self, paths: Paths, config: SSHInfraConfig) -> None:
        self.paths = paths
        self.config = config
        self.hosts = load_hosts(paths, config)
        self.book = LeaseBook(paths.home / LEASES_FILE)
        self.host_keys = HostKeys(Path(config.known_hosts_file).expanduser(), paths.known_hosts)
        # Host name -> when it stopped answering (this process's view: a
        # restarted controller starts the grace period over, never shortens it).
        self._unreachable_since: dict[str, float] = {}
        self._probes: dict[tuple[str, int, str, str], tuple[asyncio.AbstractEventLoop, SSHNode]] = {}

    def _host(self, name: str) -> SSHHost | None:
        return next((host for host in self.hosts if host.name == name), None)

    def _user(self, host: SSHHost | None) -> str:
        return (host.user if host is not None else None) or getpass.getuser()

    def _key_path(self, host: SSHHost | None) -> Path:
        if host is not None and host.identity_file:
            return Path(host.identity_file).expanduser()
        return vm_key_path(self.paths)

    # ----------------------------------------------------------------- offers

    def describe(self) -> str:
        shown = []
        for host in self.hosts:
            declared = host.resources
            parts = [f"{declared.cpus:g} CPUs"] if declared.cpus is not None else []
            parts += [f"{declared.memory:g} GB"] if declared.memory is not None else []
            parts += [f"{name}:{count:g}" for name, count in declared_gpus(host).items()]
            shown.append(f"{host.name} ({', '.join(parts) or 'resources not declared: one job at a time'})")
        return f"your machines over SSH (on-demand only): {'; '.join(shown)}"

    def offers(self, request: Resources) -> list[InstanceOffer]:
        if request.cloud not in (None, self.name) or request.zone or request.use_spot:
            return []  # a host cannot be preempted: no spot
        offers = []
        for host in self.hosts:
            if request.region not in (None, host.name) or request.instance_type not in (None, host.name):
                continue
            take = take_for(host, request)
            if take is None:
                continue
            offers.append(InstanceOffer(
                cloud=self.name, instance_type=host.name, cpus=take.cpus, memory_gb=take.memory_gb,
                region=host.name, accelerators=dict(take.accelerators), use_spot=False, price_per_hour=0.0,
            ))
        return offers

    # -------------------------------------------------------------- leasing


    def _take_leases(
        self, cluster: str, first: SSHHost, take: Take, num_nodes: int, labels: dict[str, str]
    ) -> list[Lease]:
        """Record the leases of a new cluster, all or nothing (CapacityError)."""
        whole = take == whole_host(first)
        with self.book.locked() as leases:
            mine = sorted((lease for lease in leases if lease.cluster == cluster), key=lambda lease: lease.rank)
            if mine:
                return mine  # a provision retried under the same name keeps what it took
            reason = busy_reason(first, take, leases)
            if reason is not None:
                raise CapacityError(reason)
            chosen: list[tuple[SSHHost, Take]] = [(first, take)]
            refused: list[str] = []
            for host in self.hosts:
                if len(chosen) == num_nodes:
                    break
                if host.name == first.name:
                    continue
                other = whole_host(host) if whole else refit(host, take)
                if other is None:
                    continue
                reason = busy_reason(host, other, leases)
                if reason is not None:
                    refused.append(reason)
                    continue
                chosen.append((host, other))
            if len(chosen) < num_nodes:
                why = f" ({'; '.join(refused)})" if refused else ""
                raise CapacityError(
                    f"{num_nodes} nodes need {num_nodes} hosts that fit; {len(chosen)} free{why}"
                )
            now = time.time()
            new = [
                Lease(
                    cluster=cluster, rank=rank, host=host.name, cpus=part.cpus, memory_gb=part.memory_gb,
                    accelerators=dict(part.accelerators),
                    workspace=f"{LEASES_DIR}/{self.paths.install_id}/{cluster}-{rank}",
                    labels={"skytui-owner": self.paths.install_id, "skytui-cluster": cluster, **labels},
                    created_at=now,
                )
                for rank, (host, part) in enumerate(chosen)
            ]
            leases.extend(new)
            return new

    def _info(self, host: SSHHost, lease: Lease, host_key: str) -> NodeInfo:
        return NodeInfo(
            rank=lease.rank, host=host.host, port=host.port, user=self._user(host), internal_ip=host.host,
            host_key=host_key, instance_id=f"{host.name}/{lease.cluster}-{lease.rank}", workspace=lease.workspace,
        )

    # ------------------------------------------------------------- clusters

    async def provision(
        self, cluster_name: str, offer: InstanceOffer, num_nodes: int, *, labels: Mapping[str, str] | None = None,
        accepted: Accepted | None = None,
    ) -> ClusterHandle:
        if offer.use_spot:
            raise PrecheckError("ssh hosts are on-demand only: they have no spot market")
        first = self._host(offer.region or offer.instance_type)
        if first is None:
            raise PrecheckError(f"no ssh host named {offer.region or offer.instance_type!r} in config")
        take = Take(offer.cpus, offer.memory_gb, dict(offer.accelerators))
        leases = await asyncio.to_thread(self._take_leases, cluster_name, first, take, num_nodes, dict(labels or {}))
        results = await asyncio.gather(*(self._open(lease) for lease in leases), return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            if any(isinstance(failure, asyncio.CancelledError) for failure in failures):
                raise asyncio.CancelledError()  # the caller's teardown terminates by name
            await self.terminate(cluster_name, None)
            # A host that can never work says so before one that is merely busy.
            raise next((f for f in failures if isinstance(f, PrecheckError)), failures[0])
        infos = tuple(result for result in results if isinstance(result, NodeInfo))
        return ClusterHandle(
            cloud=self.name, name=cluster_name, region=first.name, zone=None, nodes=infos,
            accelerators=dict(offer.accelerators), extra={"hosts": [lease.host for lease in leases]},
        )

    async def _open(self, lease: Lease) -> NodeInfo:
        """Verify the lease's host and make its workspace there."""
        host = self._host(lease.host)
        if host is None:
            raise PrecheckError(f"ssh host {lease.host} is no longer in config")
        key_path = self._key_path(host)
        if not key_path.exists():
            raise PrecheckError(f"identity_file {key_path} of ssh host {host.name} does not exist")
        host_key = lease.host_key or await self.host_keys.verify(host)
        await asyncio.to_thread(self.book.set_key, lease.cluster, lease.rank, host_key)
        info = self._info(host, lease, host_key)
        node = self.node(info)
        try:
            await node.connect()
            status, _, err = await node.run(f'mkdir -p "$HOME"/{shlex.quote(lease.workspace)}', timeout=30)
        except NodeError as exc:
            cause = exc.__cause__
            if isinstance(cause, asyncssh.PermissionDenied):
                raise PrecheckError(
                    f"ssh host {host.name} refused {info.user}'s key {key_path}: add {key_path}.pub to "
                    f"~{info.user}/.ssh/authorized_keys there, or set its identity_file"
                ) from None
            raise CapacityError(f"{host.name} is unreachable: {exc}") from None
        finally:
            await node.close()
        if status != 0:
            raise CapacityError(f"cannot create {lease.workspace} on {host.name}: {err.strip()}")
        return info

    async def cluster_states(self, handles: Sequence[ClusterHandle]) -> list[ClusterState]:
        return await states_one_by_one(self, handles)

    async def cluster_state(self, handle: ClusterHandle) -> ClusterState:
        ranks = {lease.rank for lease in await asyncio.to_thread(self.book.of, handle.name)}
        by_host: dict[str, list[NodeInfo]] = {}
        for info in handle.nodes:
            if info.rank in ranks:
                by_host.setdefault(info.instance_id.split("/", 1)[0], []).append(info)
        counts = await asyncio.gather(*(self._alive(name, infos) for name, infos in by_host.items()))
        up = sum(counts)
        if up == len(handle.nodes):
            return ClusterState.UP
        return ClusterState.GONE if up == 0 else ClusterState.PARTIAL

    def _probe_node(self, info: NodeInfo) -> SSHNode:
        """One kept connection per host for liveness checks (per event loop:
        a connection cannot outlive the loop that made it)."""
        loop = asyncio.get_running_loop()
        key = (info.host, info.port, info.user, info.host_key)
        cached = self._probes.get(key)
        if cached is None or cached[0] is not loop:
            node = SSHNode(
                NodeInfo(rank=0, host=info.host, port=info.port, user=info.user, internal_ip=info.internal_ip,
                         host_key=info.host_key, instance_id=info.instance_id),
                self._key_path(self._host(info.instance_id.split("/", 1)[0])),
                connect_timeout=PROBE_TIMEOUT_S,
            )
            cached = self._probes[key] = (loop, node)
        return cached[1]

    async def _alive(self, host_name: str, infos: list[NodeInfo]) -> int:
        """How many of these leases are alive on their host. An unreachable
        host counts as alive until the grace period is over."""
        checks = "\n".join(
            f'test -d "$HOME"/{shlex.quote(info.workspace)} && echo rank={info.rank}' for info in infos
        )
        node = self._probe_node(infos[0])
        try:
            _, out, _ = await asyncio.wait_for(
                node.run(f"{checks}\necho {_PROBE_OK}", timeout=PROBE_TIMEOUT_S), timeout=2 * PROBE_TIMEOUT_S,
            )
            answered = _PROBE_OK in out
        except (NodeError, TimeoutError) as exc:
            answered, out = False, ""
            if host_name not in self._unreachable_since:
                log.warning("ssh host %s does not answer (%s); its jobs keep their lease for %gs",
                            host_name, exc, self.config.unreachable_grace_s)
        if not answered:
            since = self._unreachable_since.setdefault(host_name, time.monotonic())
            if time.monotonic() - since < self.config.unreachable_grace_s:
                return len(infos)
            log.warning("ssh host %s has not answered for %.0fs: its leases count as gone",
                        host_name, time.monotonic() - since)
            return 0
        if self._unreachable_since.pop(host_name, None) is not None:
            log.info("ssh host %s answers again", host_name)
        present = {line.strip() for line in out.splitlines()}
        return sum(1 for info in infos if f"rank={info.rank}" in present)

    async def terminate(self, cluster_name: str, handle: ClusterHandle | None) -> None:
        leases = await asyncio.to_thread(self.book.of, cluster_name)
        targets = [(lease.host, lease.workspace, lease.host_key, lease.rank) for lease in leases]
        if not leases and handle is not None and handle.cloud == self.name:
            # No record (a lost lease file): the handle still says where it was.
            targets = [(info.instance_id.split("/", 1)[0], info.workspace, info.host_key, info.rank)
                       for info in handle.nodes if info.workspace]
        await asyncio.gather(*(self._clean(cluster_name, *target) for target in targets))
        await asyncio.to_thread(self.book.drop, cluster_name)

    async def _clean(self, cluster: str, host_name: str, workspace: str, host_key: str, rank: int) -> None:
        """Kill every phase of a lease and remove its workspace; a host that
        cannot be reached is given up with a warning."""
        host = self._host(host_name)
        if host is None:
            log.warning("ssh host %s is no longer in config: processes of %s may remain there", host_name, cluster)
            return
        if not host_key:
            return  # never verified, so nothing was made there: the key is recorded before the workspace
        info = self._info(host, Lease(cluster, rank, host_name, 0, 0, {}, workspace), host_key)
        node = self.node(info)
        try:
            await node.connect()
            _, out, _ = await node.run(
                f'for d in "$HOME"/{shlex.quote(info.phases_dir)}/*/; do '
                f'[ -s "$d/pid" ] && echo "$(basename "$d") $(cat "$d/pid")"; done; true',
                timeout=30,
            )
            kills = []
            for line in out.splitlines():
                phase_id, _, pid = line.strip().partition(" ")
                if _PHASE_ID.match(phase_id) and pid.isdigit():
                    kills.append(f"( {kill_command(f'{info.phases_dir}/{phase_id}', int(pid), KILL_GRACE_S)} ) &")
            parent = f"{LEASES_DIR}/{self.paths.install_id}"
            await node.run(
                "\n".join(kills) + f'\nwait\nrm -rf "$HOME"/{shlex.quote(workspace)}\n'
                f'rmdir "$HOME"/{shlex.quote(parent)} "$HOME"/{LEASES_DIR} 2>/dev/null; true',
                timeout=KILL_GRACE_S + 60,
            )
        except NodeError as exc:
            log.warning("cannot reach ssh host %s to clean %s (%s): its processes may remain", host_name, cluster, exc)
        finally:
            await node.close()

    async def list_clusters(self) -> list[str]:
        return sorted({lease.cluster for lease in await asyncio.to_thread(self.book.read)})

    def node(self, info: NodeInfo) -> SSHNode:
        return SSHNode(info, self._key_path(self._host(info.instance_id.split("/", 1)[0])))
