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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    def of(cls, spec: dict[str, Any]) -> JobGroup | None:
        if spec.get("execution") != "parallel":
            return None
        tasks = spec["tasks"]
        return cls(
            name=spec["name"], task_names=tuple(str(t["name"]) for t in tasks),
            num_nodes=tuple(int(t.get("num_nodes") or 1) for t in tasks),
            infra=tuple(_cloud_of(t) for t in tasks),
            termination_delay_s=dict(spec.get("termination_delay_s") or {}),
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


def _cloud_of(task: dict[str, Any]) -> str | None:
    infra = (task.get("resources") or {}).get("infra")
    return str(infra).split("/")[0] if infra else None


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
