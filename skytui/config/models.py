"""What config.yaml may say: one pydantic model per section (`Config` at the
top), validated by `skytui.config.load_config`.

Loaded only when a config is read or a model is named (pydantic and its
schemas cost about 0.07 s at start-up, before the TUI's first frame), so
import the models from `skytui.config` as before: it loads this module on
first use.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skytui.config import parse_duration_s


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
