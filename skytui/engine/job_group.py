"""Job groups (a YAML whose header says `execution: parallel`): what the
controller needs beyond a pipeline's (the group's shape, names and delays,
the hosts files and the node command that publishes them); the controller
does the running (JobController._run_group).

All of a group's tasks run at once, each on machines of its own, each
recovering on its own; when every primary task has ended, the auxiliary ones
are stopped (after `termination_delay`, when the primaries all succeeded) and
end CANCELLED. The group's status follows its primaries (status.derived_job_status).

Tasks find each other by name, as in SkyPilot: `<task>-<rank>.<group>`. On
`local` and `sim`, whose nodes are sandboxes of this machine, the names are
in a hosts file of the job's that the phases read through nss_wrapper
(Debian's libnss-wrapper; LD_PRELOAD with NSS_WRAPPER_HOSTS), so nothing of
the machine's own /etc/hosts changes; other names resolve as before. Other
nodes (VMs, ssh hosts, pods) get the names of every node of the group that
is up, each time one comes up (`publish_command`): in a hosts file of their
own read through nss_wrapper where the node has it, else in /etc/hosts (as
root, or through passwordless sudo), between marker comments; a node that
allows neither is reported, and its tasks run without the names.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skytui.clouds.base import NodeError
from skytui.engine.phase_runner import LiveCluster
from skytui.spec import Task
from skytui.spec.stored import StoredGroup

# Where Debian, Fedora and others install nss_wrapper.
NSS_WRAPPER_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
    "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so",
    "/usr/lib64/libnss_wrapper.so",
    "/usr/lib/libnss_wrapper.so",
)
# Infra whose nodes are sandboxes of this machine: one hosts file serves them all.
THIS_MACHINE_INFRA = frozenset({"local", "sim"})
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class JobGroup:
    """A job group's stored shape (the spec of a job whose header said parallel)."""

    name: str
    task_names: tuple[str, ...]
    num_nodes: tuple[int, ...]
    infra: tuple[str | None, ...]  # each task's cloud as asked (None: wherever is cheapest)
    termination_delay_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, header: StoredGroup | None, tasks: Sequence[Task]) -> JobGroup | None:
        """The group a job's tasks form, from its stored header (None: not a group)."""
        if header is None:
            return None
        return cls(
            name=header.name, task_names=tuple(str(t.name) for t in tasks),
            num_nodes=tuple(t.num_nodes for t in tasks),
            infra=tuple(t.resources.infra.split("/")[0] if t.resources.infra else None for t in tasks),
            termination_delay_s=header.termination_delay_s,
        )

    def delay_for(self, task_name: str) -> float:
        """How long an auxiliary task runs on after the primaries all succeeded."""
        return self.termination_delay_s.get(task_name, self.termination_delay_s.get("default", 0.0))

    def hostnames(self, task_idx: int) -> list[str]:
        """`<task>-<rank>.<group>` of each node of a task, rank order."""
        return [f"{self.task_names[task_idx]}-{rank}.{self.name}" for rank in range(self.num_nodes[task_idx])]

    def on_this_machine(self) -> list[tuple[str, str]]:
        """(ip, name) of every node of the tasks asked to run on local or sim
        (their names are known before they are placed: the loopback)."""
        return [
            (LOOPBACK, name)
            for idx, infra in enumerate(self.infra)
            if infra in THIS_MACHINE_INFRA
            for name in self.hostnames(idx)
        ]

    def env(self, job_id: int) -> dict[str, str]:
        """What SkyPilot sets in every task of a group, besides a job's usual variables."""
        return {"SKYPILOT_JOBGROUP_NAME": self.name, "SKYPILOT_ROOT_JOB_ID": str(job_id)}


class GroupNames:
    """Where a group's tasks find each other's names: the hosts file of this
    machine's nodes (local, sim), and what each other node reads them
    through (by cluster id and rank), as the last publish found it."""

    def __init__(self, group: JobGroup, hosts_file: Path) -> None:
        self.group = group
        self.hosts_file = hosts_file
        self.nss_wrapper = find_nss_wrapper()
        self._node_env: dict[tuple[int, int], dict[str, str]] = {}

    def prepare(self) -> str | None:
        """Write the names known before any placement; what to tell the user
        when this machine's nodes cannot read them."""
        write_hosts_file(self.hosts_file, self.group.on_this_machine())
        if self.nss_wrapper is None and any(infra in (None, *THIS_MACHINE_INFRA) for infra in self.group.infra):
            return ("job group names (<task>-<rank>.<group>) resolve on local and sim nodes through nss_wrapper, "
                    "which this machine lacks (apt install libnss-wrapper); tasks run, but cannot find each "
                    "other by name")
        return None

    async def publish(self, clusters: Iterable[LiveCluster]) -> list[str]:
        """Every node of the group that is up (not on this machine) learns
        the names of every node that is up, a task's own included; this
        machine's file learns the remote ones. Each launch and re-attach
        publishes again, so a peer placed later or relaunched elsewhere is
        found under its new address. Returns what went wrong, to be said."""
        placed = [c for c in clusters if c.row.task_idx is not None]
        here = {name: ip for ip, name in self.group.on_this_machine()}
        there: dict[str, str] = {}
        for cluster in placed:
            for info, name in zip(cluster.handle.nodes, self.group.hostnames(cluster.row.task_idx or 0)):
                if cluster.row.cloud in THIS_MACHINE_INFRA:
                    here[name] = LOOPBACK
                else:
                    here[name] = info.host  # as this machine reaches it
                    there[name] = info.internal_ip  # as its peers in the same network do
        write_hosts_file(self.hosts_file, [(ip, name) for name, ip in here.items()])
        lines = hosts_lines([(ip, name) for name, ip in there.items()])
        problems: list[str] = []
        for cluster in placed:
            if cluster.row.cloud in THIS_MACHINE_INFRA:
                continue  # this machine's hosts file has their names
            for rank, node in enumerate(cluster.nodes):
                where = f"task {cluster.row.task_idx}: node {rank}"
                try:
                    code, out, _ = await node.run(publish_command(self.group.name), input=lines, timeout=60.0)
                except (NodeError, TimeoutError) as exc:
                    problems.append(f"{where}: could not be given the group's names: {exc}")
                    continue
                answer = out.split()
                if code == 0 and answer[:1] == ["nss"] and len(answer) == 3:
                    self._node_env[(cluster.row.id, rank)] = resolver_env(Path(answer[2]), answer[1])
                elif code != 0 or answer[:1] != ["etc"]:
                    problems.append(f"{where} has neither nss_wrapper nor a writable /etc/hosts (no root, no "
                                    "passwordless sudo): its tasks cannot find the group's others by name")
        return problems

    def env(self, cluster: LiveCluster, rank: int, preload: str | None) -> dict[str, str]:
        """What a phase on this node needs to read the names (LD_PRELOAD kept
        after nss_wrapper when the task sets one)."""
        if cluster.row.cloud in THIS_MACHINE_INFRA:
            names = resolver_env(self.hosts_file, self.nss_wrapper) if self.nss_wrapper else {}
        else:
            names = dict(self._node_env.get((cluster.row.id, rank), {}))
        if names and preload:
            names["LD_PRELOAD"] = f"{names['LD_PRELOAD']} {preload}"
        return names


def find_nss_wrapper(candidates: Sequence[str] = NSS_WRAPPER_CANDIDATES) -> str | None:
    return next((path for path in candidates if os.path.exists(path)), None)


def write_hosts_file(path: Path, entries: Sequence[tuple[str, str]]) -> None:
    """Write it whole, then rename: a phase starting meanwhile reads the old
    file or the new one, never half of one. No comment line: nss_wrapper
    refuses the whole file for one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(hosts_lines(entries))
    os.replace(partial, path)


def resolver_env(hosts_file: Path, nss_wrapper: str) -> dict[str, str]:
    """The environment that makes a phase's programs read `hosts_file` first."""
    return {"LD_PRELOAD": nss_wrapper, "NSS_WRAPPER_HOSTS": str(hosts_file)}


def hosts_lines(entries: Sequence[tuple[str, str]]) -> str:
    """(ip, name) pairs as hosts-file lines."""
    return "".join(f"{ip} {name}\n" for ip, name in entries)


def publish_command(group: str) -> str:
    """Run on a node with the group's hosts lines on stdin: prints `nss LIB
    FILE` (phases read FILE through LIB), `etc` (/etc/hosts has them) or
    `none`. Idempotent: each run replaces what the last one wrote."""
    marker = f"# skytui job group {group}"
    libraries = " ".join(NSS_WRAPPER_CANDIDATES)
    return f"""
set -e
lines=$(cat)
f="$HOME/.skytui/group-{group}.hosts"
mkdir -p "$HOME/.skytui"
printf '%s\\n' "$lines" > "$f.tmp" && mv "$f.tmp" "$f"
for lib in {libraries}; do
  if [ -e "$lib" ]; then echo "nss $lib $f"; exit 0; fi
done
as_root() {{ if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }}
kept=$(grep -v '{marker}$' /etc/hosts || true)
if printf '%s\\n' "$kept" > "$f.etc" \
   && printf '%s\\n' "$lines" | sed '/^$/d; s/$/ {marker}/' >> "$f.etc" \
   && as_root sh -c 'cat "$1" > /etc/hosts' sh "$f.etc" 2>/dev/null; then
  rm -f "$f.etc"; echo etc
else
  rm -f "$f.etc"; echo none
fi
"""
