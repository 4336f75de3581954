"""What a lease takes of an ssh host, and the book of this install's leases.

Owns the fitting of a request to a host's declared resources (Take), the
Lease record and `$SKYTUI_HOME/ssh_leases.json`, rewritten atomically under
an fcntl lock: the controller daemon and the CLI are different processes.
May touch clouds.base, clouds.ssh (the hosts) and config; no network.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from skytui.clouds.base import CloudError
from skytui.clouds.ssh import declared_gpus
from skytui.config import SSHHost

if TYPE_CHECKING:
    from skytui.spec import Resources

LEASES_FILE = "ssh_leases.json"
LEASES_DIR = ".skytui/leases"
_EPSILON = 1e-9


# ---------------------------------------------------------- what a lease takes


@dataclass(frozen=True)
class Take:
    """What one lease takes of its host."""

    cpus: float
    memory_gb: float
    accelerators: dict[str, float]


def whole_host(host: SSHHost) -> Take:
    return Take(host.resources.cpus or 0.0, host.resources.memory or 0.0, declared_gpus(host))


def take_for(host: SSHHost, request: Resources) -> Take | None:
    """What a lease for `request` takes of `host`, or None if it can never fit.

    A task that asks for nothing specific takes the whole host. A GPU the host
    does not declare never fits; undeclared cpus or memory do not refuse (the
    user knows the machine), but such a lease has the host to itself."""
    gpus = declared_gpus(host)
    if request.cpus is None and request.memory is None and not request.accelerators:
        return whole_host(host)
    accelerators: dict[str, float] = {}
    if request.accelerators:
        wanted = request.accelerators[0]
        if wanted.name is None:
            return None  # by GPU memory: hosts declare no GPU memory
        name = next((n for n in gpus if n.lower() == wanted.name.lower()), None)
        if name is None or gpus[name] + _EPSILON < wanted.count:
            return None
        accelerators = {name: wanted.count}
    declared = host.resources
    cpus = request.cpus_min or 0.0
    if declared.cpus is not None and cpus > declared.cpus + _EPSILON:
        return None
    per_cpu = request.memory_per_cpu
    memory = request.memory_min or (per_cpu * (cpus or declared.cpus or 0.0) if per_cpu else 0.0)
    if declared.memory is not None and memory > declared.memory + _EPSILON:
        return None
    return Take(cpus, memory, accelerators)


def refit(host: SSHHost, take: Take) -> Take | None:
    """The same take on another host (another rank of a multi-node cluster)."""
    declared, gpus = host.resources, declared_gpus(host)
    if take.cpus and declared.cpus is not None and take.cpus > declared.cpus + _EPSILON:
        return None
    if take.memory_gb and declared.memory is not None and take.memory_gb > declared.memory + _EPSILON:
        return None
    accelerators: dict[str, float] = {}
    for wanted, count in take.accelerators.items():
        name = next((n for n in gpus if n.lower() == wanted.lower()), None)
        if name is None or gpus[name] + _EPSILON < count:
            return None
        accelerators[name] = count
    return Take(take.cpus, take.memory_gb, accelerators)


def _shareable(host: SSHHost, take: Take) -> bool:
    """A lease shares its host only when everything it takes is declared, so
    the sum of leases can be checked against it."""
    declared = host.resources
    if not (take.cpus or take.memory_gb or any(take.accelerators.values())):
        return False
    return (not take.cpus or declared.cpus is not None) and (not take.memory_gb or declared.memory is not None)


def busy_reason(host: SSHHost, take: Take, leases: list[Lease]) -> str | None:
    """Why `take` does not fit beside the host's current leases, or None."""
    existing = [lease for lease in leases if lease.host == host.name]
    if not existing:
        return None
    if not _shareable(host, take) or not all(_shareable(host, lease.take) for lease in existing):
        holders = ", ".join(sorted({lease.cluster for lease in existing}))
        return f"{host.name} is busy: leased to {holders}"
    declared = host.resources
    used_cpus = sum(lease.cpus for lease in existing)
    if take.cpus and declared.cpus is not None and used_cpus + take.cpus > declared.cpus + _EPSILON:
        return f"{host.name} is busy: {used_cpus:g} of {declared.cpus:g} CPUs leased"
    used_memory = sum(lease.memory_gb for lease in existing)
    if take.memory_gb and declared.memory is not None and used_memory + take.memory_gb > declared.memory + _EPSILON:
        return f"{host.name} is busy: {used_memory:g} of {declared.memory:g} GB of memory leased"
    gpus = declared_gpus(host)
    for name, count in take.accelerators.items():
        used = sum(lease.accelerators.get(name, 0.0) for lease in existing)
        if used + count > gpus.get(name, 0.0) + _EPSILON:
            return f"{host.name} is busy: {used:g} of {gpus.get(name, 0.0):g} {name} GPUs leased"
    return None


# ------------------------------------------------------------------ leases


@dataclass
class Lease:
    cluster: str
    rank: int
    host: str  # the host's name in config
    cpus: float
    memory_gb: float
    accelerators: dict[str, float]
    workspace: str
    host_key: str = ""  # set once verified
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0

    @property
    def take(self) -> Take:
        return Take(self.cpus, self.memory_gb, self.accelerators)


class LeaseBook:
    """This install's leases, in one JSON file shared by every skytui process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def read(self) -> list[Lease]:
        # Writes are atomic renames: a reader without the lock sees a whole file.
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise CloudError(f"{self.path} is corrupt ({exc}); remove it once no ssh job runs") from None
        return [Lease(**item) for item in data.get("leases", [])]

    @contextmanager
    def locked(self) -> Iterator[list[Lease]]:
        """The leases, for changing in place; written back on exit."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            leases = self.read()
            before = [asdict(lease) for lease in leases]
            yield leases
            after = [asdict(lease) for lease in leases]
            if after != before:
                tmp = self.path.with_name(self.path.name + ".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump({"leases": after}, f, indent=1)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)

    def of(self, cluster: str) -> list[Lease]:
        return sorted((lease for lease in self.read() if lease.cluster == cluster), key=lambda lease: lease.rank)

    def set_key(self, cluster: str, rank: int, host_key: str) -> None:
        with self.locked() as leases:
            for lease in leases:
                if lease.cluster == cluster and lease.rank == rank:
                    lease.host_key = host_key

    def drop(self, cluster: str) -> None:
        with self.locked() as leases:
            leases[:] = [lease for lease in leases if lease.cluster != cluster]
