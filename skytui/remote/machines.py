"""The machine a remote controller lives on: found from config.yaml alone
(a client that lost its local state finds it again), made when missing, and
removed by `controller down`.

Owns `ControllerMachine` (what a kind of machine gives: a Link, its making
and removal) and `SSHHostMachine`, one of the user's `ssh` hosts, which
skytui neither makes nor removes (`down` takes away only what skytui put
there). `machine_for` picks one from `jobs.controller.resources.infra`. May
touch config, the ssh infra's hosts and keys, and link.py.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Protocol

from skytui.clouds.ssh import load_hosts
from skytui.clouds.ssh_host_keys import HostKeys
from skytui.config import Config, ConfigError, Paths
from skytui.remote.link import Link, SSHLink


class ControllerMachine(Protocol):
    label: str
    """`ssh/box1`, `kubernetes/ctx`: as the user configured it."""
    stop_command: str | None
    """What the machine runs to stop itself after autostop (a VM: shut down,
    which stops it, disk kept); None: it stays up (your host, a pod)."""

    async def ensure(self, *, create: bool) -> None:
        """Find the machine; make it when missing if `create` (a launch), else
        raise NoController (a look never makes a machine). Nothing to do for a
        host of yours."""
        ...

    def link(self) -> Link: ...

    async def remove(self) -> None:
        """Take the machine away, if skytui made it."""
        ...


class SSHHostMachine:
    def __init__(self, paths: Paths, config: Config, host_name: str) -> None:
        hosts = {host.name: host for host in load_hosts(paths, config.infra.ssh)}
        host = hosts.get(host_name)
        if host is None:
            raise ConfigError(
                f"{paths.config_file}: jobs.controller.resources.infra: no ssh host {host_name!r} under "
                f"infra.ssh.hosts (known: {', '.join(hosts) or 'none'})"
            )
        self.host = host if host.user else host.model_copy(update={"user": getpass.getuser()})
        self.label = f"ssh/{host_name}"
        self.stop_command: str | None = None
        if host.identity_file:
            self.identity_file = Path(host.identity_file).expanduser()
        else:
            from skytui.clouds.vm_ssh import vm_key_path

            self.identity_file = vm_key_path(paths)
        self.host_keys = HostKeys(Path(config.infra.ssh.known_hosts_file).expanduser(), paths.known_hosts)

    async def ensure(self, *, create: bool) -> None:
        return None

    def link(self) -> Link:
        return SSHLink(self.host, self.identity_file, self.host_keys)

    async def remove(self) -> None:
        return None


def machine_for(paths: Paths, config: Config) -> ControllerMachine:
    resources = config.jobs.controller.resources
    if resources is None:
        raise ValueError("no remote controller is configured (jobs.controller.resources)")
    kind, _, rest = resources.infra.partition("/")
    if kind == "ssh":
        return SSHHostMachine(paths, config, rest)
    if kind in ("aws", "gcp"):
        from skytui.remote.vm_machine import VMMachine

        return VMMachine(paths, config, kind, rest)
    from skytui.remote.pod_machine import PodMachine  # the SDK only for a pod's client

    return PodMachine(paths, config, rest or None)
