"""The `ssh` infra's hosts: the machines the user already has, listed in
config.yaml (`infra.ssh.hosts`) or in a hosts file of the same shape, and
whether the infra is enabled. Light on purpose (no SSH library): every launch
asks every infra whether it is enabled. The cloud itself is in ssh_cloud.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from skytui._yaml_lines import YamlProblem, load_file
from skytui.clouds.base import InfraStatus, PrecheckError
from skytui.config import Config, Paths, SSHHost, SSHInfraConfig

if TYPE_CHECKING:
    from skytui.clouds.ssh_cloud import SSHCloud

NAME = "ssh"


# ------------------------------------------------------------------ hosts


class _HostsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hosts: list[SSHHost] = []


def declared_gpus(host: SSHHost) -> dict[str, float]:
    """{H100: 8} from either form the config allows ({H100: 8} or "H100:8")."""
    value = host.resources.accelerators
    if value is None:
        return {}
    if isinstance(value, dict):
        return {name: float(count) for name, count in value.items()}
    gpus: dict[str, float] = {}
    for part in value.split(","):
        name, _, count = part.strip().partition(":")
        number = float(count) if count.strip() else 1.0  # ValueError: reported by load_hosts
        if not name.strip() or number <= 0:
            raise ValueError(f"{part.strip()!r} is not NAME:COUNT")
        gpus[name.strip()] = number
    return gpus


def _hosts_file_path(paths: Paths, raw: str) -> Path:
    path = Path(raw).expanduser()
    # Relative to config.yaml, which is where the user wrote it.
    return path if path.is_absolute() else Path(os.path.normpath(paths.config_file.parent / path))


def load_hosts(paths: Paths, config: SSHInfraConfig) -> list[SSHHost]:
    """The hosts of config.yaml and of `hosts_file`; PrecheckError naming the
    file and the field when either is wrong."""
    sources: list[tuple[Path, str, SSHHost]] = [
        (paths.config_file, f"infra.ssh.hosts.{index}", host) for index, host in enumerate(config.hosts)
    ]
    if config.hosts_file:
        path = _hosts_file_path(paths, config.hosts_file)
        try:
            raw: Any = load_file(path) or {}
        except OSError as exc:
            raise PrecheckError(f"{path}: cannot read the ssh hosts file: {exc.strerror}") from None
        except YamlProblem as exc:
            line = f":{exc.line}" if exc.line else ""
            raise PrecheckError(f"{path}{line}: not valid YAML: {exc.message}") from None
        if not isinstance(raw, dict):
            raise PrecheckError(f"{path}: expected a mapping `hosts: [...]` at the top level")
        try:
            parsed = _HostsFile.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise PrecheckError(f"{path}: {where}: {first['msg']}") from None
        sources += [(path, f"hosts.{index}", host) for index, host in enumerate(parsed.hosts)]
    seen: dict[str, str] = {}
    for path, where, host in sources:
        try:
            declared_gpus(host)
        except ValueError as exc:
            raise PrecheckError(f"{path}: {where}.resources.accelerators: {exc}") from None
        if host.name in seen:
            raise PrecheckError(f"{path}: {where}.name: host {host.name!r} is already listed at {seen[host.name]}")
        seen[host.name] = f"{path}: {where}"
    return [host for _, _, host in sources]


# ---------------------------------------------------------------- registry


def detect(paths: Paths, config: Config) -> InfraStatus:
    try:
        hosts = load_hosts(paths, config.infra.ssh)
    except PrecheckError as exc:
        return InfraStatus(NAME, False, str(exc), "correct the field named above")
    if not hosts:
        return InfraStatus(NAME, False, "no hosts configured",
                           f"list your machines under infra.ssh.hosts in {paths.config_file}")
    names = ", ".join(host.name for host in hosts)
    return InfraStatus(NAME, True, f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}: {names}")


def make(paths: Paths, config: Config) -> SSHCloud:
    from skytui.clouds.ssh_cloud import SSHCloud

    return SSHCloud(paths, config.infra.ssh)
