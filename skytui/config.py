"""Where skytui keeps its state ($SKYTUI_HOME) and what config.yaml may say.

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
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from skytui._yaml_lines import YamlProblem, load_file


class ConfigError(ValueError):
    """config.yaml is unreadable or has a bad value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ControllerResources(_Strict):
    """Where the jobs controller runs, in SkyPilot's `jobs.controller.resources`
    terms. `infra` names the machine: `ssh/<host name>` (one of infra.ssh's
    hosts) or `kubernetes[/<context>]` (a pod)."""

    infra: str = Field(pattern=r"^(ssh/[A-Za-z0-9][A-Za-z0-9._-]{0,62}|(aws|gcp)(/[a-z0-9-]+)?|kubernetes(/\S+)?|k8s(/\S+)?)$")
    cpus: float | str | None = None
    memory: float | str | None = None
    disk_size: int | None = Field(default=None, ge=1, le=65536)


class ControllerAutostop(_Strict):
    """The remote controller stops after this long with no job in progress and no pool."""

    enabled: bool = True
    idle_minutes: float = Field(default=10.0, gt=0.0, le=7 * 24 * 60.0)
    # A controller VM also stops itself then (the next launch starts it
    # again; its disk, with the state, stays). Hosts and pods stay up.
    stop_machine: bool = True


class ControllerConfig(_Strict):
    max_launching: int = Field(default=32, ge=1, le=4096)
    max_running: int = Field(default=2000, ge=1, le=100_000)
    # Unset: the controller is a daemon on this machine.
    resources: ControllerResources | None = None
    autostop: ControllerAutostop | bool = ControllerAutostop()
    # The controller machine's Python (3.10+ with skytui's dependencies);
    # skytui sends its own code there, so the two always match.
    python: str = Field(default="python3", pattern=r"^[A-Za-z0-9_./~+-]+$")
    # Send no credentials: the machine's own identity (an instance profile,
    # a service account, in-cluster config) manages the clouds.
    use_machine_identity: bool = False

    @property
    def autostop_minutes(self) -> float | None:
        """Idle minutes before a remote controller stops itself; None: never."""
        stop = self.autostop
        if isinstance(stop, bool):
            return ControllerAutostop().idle_minutes if stop else None
        return stop.idle_minutes if stop.enabled else None


class RecoveryConfig(_Strict):
    # SkyPilot waits 60 s x1.6 up to 300 s between rounds when no region has
    # capacity; a round here is cheap, so the first retry comes sooner.
    backoff_initial_s: float = Field(default=10.0, gt=0.0, le=3600.0)
    backoff_max_s: float = Field(default=300.0, gt=0.0, le=86400.0)


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


class NotifySink(_Strict):
    """Where the controller tells of a job's news: a webhook (POST JSON) or a
    command (the event in its environment). `events` limits which: terminal,
    recovery, budget, stall (default all)."""

    webhook: str | None = Field(default=None, pattern=r"^https?://\S+$")
    command: str | None = None
    events: list[Literal["terminal", "recovery", "budget", "stall", "preemption-notice"]] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> NotifySink:
        if (self.webhook is None) == (self.command is None):
            raise ValueError("give exactly one of webhook or command")
        return self


class JobsConfig(_Strict):
    controller: ControllerConfig = ControllerConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    # Defaults of `jobs launch --max-cost` and `--stall-timeout` (never in the task YAML).
    max_cost_usd: float | None = Field(default=None, gt=0)
    stall_timeout: str | float | None = None
    # What a stall does besides an event and a notification: "restart" counts
    # it as a failure of the user's code (against max_restarts_on_errors).
    stall_action: Literal["notify", "restart"] = "notify"
    notify: list[NotifySink] = Field(default_factory=list)
    # What the job's processes get when the infra gives notice before taking its machine.
    preemption_notice_signal: Literal["TERM", "INT", "USR1", "USR2", "HUP", "none"] = "TERM"

    @field_validator("stall_timeout")
    @classmethod
    def _check_stall_timeout(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            parse_duration_s(value)
        return value

    @property
    def stall_timeout_s(self) -> float | None:
        return parse_duration_s(self.stall_timeout) if self.stall_timeout is not None else None
    # Where workdirs and local file_mounts go on their way to nodes
    # (`s3://bucket[/prefix]` or `gs://…`); unset: straight from here over SFTP.
    bucket: str | None = Field(default=None, pattern=r"^(s3|gs)://[a-z0-9][a-z0-9.\-_]{1,254}(/.*)?$")


class LocalInfraConfig(_Strict):
    enabled: bool = True
    # Rehearse slow provisioning on this machine (seconds before nodes exist).
    provision_delay_s: float = Field(default=0.0, ge=0.0, le=3600.0)
    # The node host (shared by local and sim nodes) exits once it has served
    # no node for this long: nothing stays behind from a finished session.
    nodehost_idle_exit_s: float = Field(default=600.0, ge=1.0, le=7 * 86400.0)


class SimRegionConfig(_Strict):
    """Overrides for one simulated region; unset fields take the sim-wide value."""

    ondemand_capacity: int | None = Field(default=None, ge=0)
    spot_capacity: int | None = Field(default=None, ge=0)
    stockout: bool = False
    preemption_rate_per_hour: float | None = Field(default=None, ge=0.0)


class SimInfraConfig(_Strict):
    enabled: bool = False
    clouds: list[Literal["aws", "gcp"]] = ["aws", "gcp"]  # pydantic copies the default
    provision_delay_s: float = Field(default=0.5, ge=0.0, le=3600.0)
    ondemand_capacity: int = Field(default=64, ge=0)
    spot_capacity: int = Field(default=64, ge=0)
    preemption_rate_per_hour: float = Field(default=0.0, ge=0.0)
    regions: dict[str, SimRegionConfig] = Field(default_factory=dict)


class SSHHostResources(_Strict):
    cpus: float | None = Field(default=None, gt=0)
    memory: float | None = Field(default=None, gt=0)  # GB
    accelerators: dict[str, int] | str | None = None  # {H100: 8} or "H100:8"


class SSHHost(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None  # default: the user running skytui
    identity_file: str | None = None  # default: skytui's own key
    resources: SSHHostResources = SSHHostResources()


class SSHInfraConfig(_Strict):
    """Machines you already have. Host keys are checked against
    ~/.ssh/known_hosts, or pinned at first contact in $SKYTUI_HOME/known_hosts."""

    hosts: list[SSHHost] = Field(default_factory=list)
    hosts_file: str | None = None  # a YAML file of the same shape: {hosts: [...]}
    known_hosts_file: str = "~/.ssh/known_hosts"  # trusted first; no entry there: pinned at first contact
    # A host that stops answering loses its jobs (relaunched elsewhere) only
    # after this long: an SSH hiccup never restarts a healthy job.
    unreachable_grace_s: float = Field(default=120.0, ge=0.0, le=86400.0)


class VMInfraConfig(_Strict):
    """What AWS and GCP share: which regions, and how nodes are reached."""

    enabled: bool | None = None  # None: when credentials are found
    regions: list[str] = Field(default_factory=list)  # empty: every catalog region
    ssh_user: str | None = None  # the image's login user
    # A bastion in front of the nodes, as OpenSSH's ProxyCommand (%h, %p).
    ssh_proxy_command: str | None = None
    use_internal_ips: bool = False
    disk_size_gb: int = Field(default=256, ge=10, le=65536)


class AWSInfraConfig(VMInfraConfig):
    images: dict[str, str] = Field(default_factory=dict)  # region -> AMI id; default: Canonical's Ubuntu 22.04


class GCPInfraConfig(VMInfraConfig):
    project: str | None = None  # default: the credentials' project, or $GOOGLE_CLOUD_PROJECT
    image: str = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts"
    api_endpoint: str | None = None  # a private endpoint instead of compute.googleapis.com


class KubernetesInfraConfig(_Strict):
    enabled: bool | None = None  # None: when a kubeconfig or in-cluster config is found
    contexts: list[str] = Field(default_factory=list)  # the regions; empty: the current context
    namespace: str = "default"
    image: str = "python:3.11-slim"
    # How long pods may take to run (image pulls included), and how long the
    # scheduler may say "no node fits" before another place is tried.
    provision_timeout_s: float = Field(default=600.0, gt=0.0, le=86400.0)
    unschedulable_timeout_s: float = Field(default=30.0, ge=0.0, le=86400.0)


class InfraConfig(_Strict):
    local: LocalInfraConfig = LocalInfraConfig()
    sim: SimInfraConfig = SimInfraConfig()
    ssh: SSHInfraConfig = SSHInfraConfig()
    aws: AWSInfraConfig = AWSInfraConfig()
    gcp: GCPInfraConfig = GCPInfraConfig()
    kubernetes: KubernetesInfraConfig = KubernetesInfraConfig()


class TuiConfig(_Strict):
    # Binding id -> keys, e.g. {"jobs.cancel": "ctrl+x", "jobs.logs": "o"}: every
    # binding of the TUI has an id (press `?` to see them).
    keymap: dict[str, str] = Field(default_factory=dict)


class Config(_Strict):
    jobs: JobsConfig = JobsConfig()
    infra: InfraConfig = InfraConfig()
    tui: TuiConfig = TuiConfig()


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
        return os.environ.get("SKYTUI_DB_URL") or f"sqlite:///{self.db_file}"


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


def load_config(p: Paths | None = None) -> Config:
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
