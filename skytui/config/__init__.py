"""Where skytui keeps its state ($SKYTUI_HOME) and what config.yaml may say.

Owns `Paths`, the umask rules, `load_config` and `ConfigError`; the models
of each section live in `models` and load on first use (PEP 562 below):
`jobs queue` and the TUI's first frame never wait for pydantic.

config.yaml mirrors the `jobs:` section of SkyPilot's config:

    jobs:
      controller:
        max_launching: 32     # jobs provisioning or in setup at once
        max_running: 2000     # jobs alive at once (launching included)
      recovery:
        backoff_initial_s: 10 # first wait when no region has capacity
        backoff_max_s: 300    # waits grow x1.6 up to this, forever
    infra:
      local:
        enabled: true
        provision_delay_s: 0  # rehearse slow provisioning
        nodehost_idle_exit_s: 600  # the node host exits after serving no node this long
      sim:                    # simulated clouds; `--infra sim` works even when disabled
        enabled: false        # true: the optimizer may pick sim for any task
        clouds: [aws, gcp]    # whose catalogs it mirrors
        provision_delay_s: 0.5
        ondemand_capacity: 64 # nodes per region
        spot_capacity: 64
        preemption_rate_per_hour: 0   # per spot node
        regions:              # per-region overrides, named as in the table
          aws/us-east-1: {spot_capacity: 2, stockout: false, preemption_rate_per_hour: 0.5}
      ssh:                    # your own machines (or hosts_file: hosts.yaml of the same shape)
        hosts:
          - {name: box1, host: 10.0.0.5, port: 22, user: me, identity_file: ~/.ssh/id_ed25519,
             resources: {cpus: 32, memory: 128, accelerators: {A100: 2}}}
        known_hosts_file: ~/.ssh/known_hosts   # trusted; otherwise pinned at first contact
        unreachable_grace_s: 120  # a silent host keeps its jobs this long
      aws:                    # on when boto3 finds credentials; `enabled: false` turns it off
        regions: [us-east-1, us-west-2]
        ssh_user: ubuntu
        images: {us-east-1: ami-0123456789abcdef0}
        ssh_proxy_command: ssh -W %h:%p bastion   # optional
      gcp:
        project: my-project
        regions: [us-central1]
      kubernetes:
        contexts: [gke-a100, on-prem]   # contexts are regions
        namespace: default
        image: python:3.11-slim
        provision_timeout_s: 600      # image pulls included
        unschedulable_timeout_s: 30   # "no node fits" this long: try elsewhere
    tui:
      keymap: {jobs.cancel: ctrl+x}   # remap any binding by its id

`jobs.bucket: s3://my-bucket` (or gs://…) sends workdirs and file_mounts
through a bucket. A private endpoint comes from each SDK's own setting
(AWS_ENDPOINT_URL for S3, STORAGE_EMULATOR_HOST for GCS); gs:// needs
credentials that can sign URLs (a service account key, or IAM signBlob).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skytui.config.models import (
        AWSInfraConfig,
        Config,
        ControllerAutostop,
        ControllerConfig,
        ControllerResources,
        GCPInfraConfig,
        InfraConfig,
        JobsConfig,
        KubernetesInfraConfig,
        LocalInfraConfig,
        NotifySink,
        RecoveryConfig,
        SimInfraConfig,
        SimRegionConfig,
        SSHHost,
        SSHHostResources,
        SSHInfraConfig,
        TuiConfig,
        VMInfraConfig,
    )


class ConfigError(ValueError):
    """config.yaml is unreadable or has a bad value."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration_s(value: str | float | int) -> float:
    """"30m", "1.5h", "90s", "2d" or a number of seconds -> seconds; ValueError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"{value!r} is not a duration such as 30m, 2h or 90s")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be positive")
    return seconds


@dataclass(frozen=True)
class Paths:
    """Every file skytui owns, derived from one root so tests can move it."""

    home: Path
    config_file: Path = field(init=False)
    db_file: Path = field(init=False)
    logs: Path = field(init=False)
    job_logs: Path = field(init=False)
    controller_log: Path = field(init=False)
    keys: Path = field(init=False)
    nodes: Path = field(init=False)
    controller_pid: Path = field(init=False)
    controller_lock: Path = field(init=False)
    sim_state: Path = field(init=False)
    known_hosts: Path = field(init=False)
    install_id_file: Path = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "config_file", self.home / "config.yaml")
        set_(self, "db_file", self.home / "state.db")
        set_(self, "logs", self.home / "logs")
        set_(self, "job_logs", self.home / "logs" / "jobs")
        set_(self, "controller_log", self.home / "logs" / "controller.log")
        set_(self, "keys", self.home / "keys")
        set_(self, "nodes", self.home / "nodes")
        set_(self, "controller_pid", self.home / "controller.pid")
        set_(self, "controller_lock", self.home / "controller.lock")
        set_(self, "sim_state", self.home / "sim.json")  # stock-outs set by `skytui sim`
        set_(self, "known_hosts", self.home / "known_hosts")  # ssh host keys pinned at first contact
        set_(self, "install_id_file", self.home / "install_id")

    @property
    def install_id(self) -> str:
        """A short random id of this state directory. Everything it creates on
        a shared account or host carries it, so two installs never sweep or
        overwrite each other's machines."""
        try:
            return self.install_id_file.read_text().strip()
        except FileNotFoundError:
            pass
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        candidate = secrets.token_hex(4)
        try:
            fd = os.open(self.install_id_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.install_id_file.read_text().strip()  # another process won the race
        with os.fdopen(fd, "w") as f:
            f.write(candidate)
        return candidate

    def ensure(self) -> None:
        """Create the state tree with owner-only permissions, whatever the umask."""
        for directory in (self.home, self.logs, self.job_logs, self.keys, self.nodes):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)

    @property
    def db_url(self) -> str:
        return os.environ.get("SKYTUI_DB_URL") or self.sqlite_url

    @property
    def sqlite_url(self) -> str:
        """The default state DB: the SQLite file in the home."""
        return f"sqlite:///{self.db_file}"


# The umask of the person who started skytui, recorded by the first skytui
# process (CLI, TUI or daemon) before it tightens its own, and inherited by
# every process it starts: jobs on local and sim nodes get it back.
USER_UMASK_ENV = "SKYTUI_USER_UMASK"
PRIVATE_UMASK = 0o077


def restrict_umask() -> int:
    """Make everything this process creates owner-only (0600 files, 0700
    folders), whatever the user's umask; returns the user's umask.

    Call it first thing in every entry point (CLI, TUI, daemon, node host).
    The state directory holds secrets, logs and an SSH server's authorized
    keys: a permissive umask must never widen them.
    """
    previous = os.umask(PRIVATE_UMASK)
    if _parse_umask(os.environ.get(USER_UMASK_ENV)) is None:
        os.environ[USER_UMASK_ENV] = f"{previous:04o}"
    return user_umask()


def user_umask() -> int:
    """The user's own umask, for the processes skytui runs on their behalf
    (jobs on local and sim nodes): `Popen(..., umask=user_umask())`."""
    recorded = _parse_umask(os.environ.get(USER_UMASK_ENV))
    if recorded is not None:
        return recorded
    current = os.umask(PRIVATE_UMASK)  # reading the umask means setting it
    os.umask(current)
    return current


def _parse_umask(raw: str | None) -> int | None:
    try:
        value = int(raw or "", 8)
    except ValueError:
        return None
    return value if 0 <= value <= 0o777 else None


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` atomically with `data`, readable by its owner only, even
    when a wider file was there before or the umask is 000."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # A fresh file (never a leftover, nor through a link planted there): the
    # 0600 of O_CREAT then holds from the first byte.
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def skytui_home() -> Path:
    raw = os.environ.get("SKYTUI_HOME")
    return Path(raw).expanduser().resolve() if raw else Path.home() / ".skytui"


def paths() -> Paths:
    return Paths(skytui_home())


def configured_keymap(p: Paths) -> dict[str, str]:
    """The TUI's remapped keys (`tui.keymap`): none without a config.yaml,
    which then costs no config model at all."""
    if not p.config_file.exists():
        return {}
    return dict(load_config(p).tui.keymap)


def load_config(p: Paths | None = None) -> Config:
    from pydantic import ValidationError

    from skytui._yaml_lines import YamlProblem, load_file
    from skytui.config.models import Config

    p = p or paths()
    if not p.config_file.exists():
        return Config()
    try:
        raw: Any = load_file(p.config_file) or {}
    except YamlProblem as exc:
        line = f":{exc.line}" if exc.line else ""
        raise ConfigError(f"{p.config_file}{line}: {exc.message}") from None
    except OSError as exc:
        raise ConfigError(f"{p.config_file}: cannot read it: {exc.strerror}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p.config_file}: expected a mapping at the top level")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{p.config_file}: {where}: {first['msg']}") from exc


def __getattr__(name: str) -> Any:
    """A model named from here (`from skytui.config import SSHHost`) loads `models` then."""
    models = importlib.import_module("skytui.config.models")
    try:
        value = getattr(models, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


__all__ = [
    "AWSInfraConfig",
    "Config",
    "ConfigError",
    "ControllerAutostop",
    "ControllerConfig",
    "ControllerResources",
    "GCPInfraConfig",
    "InfraConfig",
    "JobsConfig",
    "KubernetesInfraConfig",
    "LocalInfraConfig",
    "NotifySink",
    "PRIVATE_UMASK",
    "Paths",
    "RecoveryConfig",
    "SSHHost",
    "SSHHostResources",
    "SSHInfraConfig",
    "SimInfraConfig",
    "SimRegionConfig",
    "TuiConfig",
    "USER_UMASK_ENV",
    "VMInfraConfig",
    "configured_keymap",
    "load_config",
    "parse_duration_s",
    "paths",
    "restrict_umask",
    "skytui_home",
    "user_umask",
    "write_private",
]
