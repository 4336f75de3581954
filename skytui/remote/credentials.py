"""What a remote controller needs to manage the user's clouds, as SkyPilot
hands its controller the user's credentials: the files, found where each
cloud's own tools look, sent to the machine 0600; and the controller's
config.yaml, rewritten to point at them there.

Owns `credential_files` (also what `skytui check` lists) and
`controller_config_text`. With `jobs.controller.use_machine_identity`, no
credential goes: the machine's own (an instance profile, a service account,
in-cluster config) is used. Credentials never go on a command line, into a
log or into the DB: files travel on stdin, and environment credentials in a
0600 file read by the processes on the machine. Touches config and the
user's credential files (read only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from skytui._yaml_lines import load_file
from skytui.config import Config, Paths

# Under the controller's SKYTUI_HOME on the machine.
CREDENTIALS_DIR = "credentials"
# Environment credentials (names and values), loaded at start by the
# processes on the machine (`load_environment`).
ENV_FILE = f"{CREDENTIALS_DIR}/env.yaml"
_ENV_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                    "AWS_DEFAULT_REGION", "GOOGLE_CLOUD_PROJECT")


@dataclass(frozen=True)
class CredentialFile:
    what: str
    local: Path
    remote: str
    """Relative to the controller's SKYTUI_HOME on the machine."""
    env: str | None = None
    """The variable that tells the cloud's library where it is, there."""


def _first_existing(*candidates: str | None) -> Path | None:
    for candidate in candidates:
        if candidate:
            path = Path(candidate).expanduser()
            if path.is_file():
                return path
    return None


def credential_files(paths: Paths, config: Config) -> list[CredentialFile]:
    """The credential files the controller machine gets (none with use_machine_identity)."""
    if config.jobs.controller.use_machine_identity:
        return []
    found: list[CredentialFile] = []
    infra = config.infra
    if infra.aws.enabled is not False:
        for what, env, default, name in (
            ("AWS credentials", "AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials", "aws/credentials"),
            ("AWS config", "AWS_CONFIG_FILE", "~/.aws/config", "aws/config"),
        ):
            path = _first_existing(os.environ.get(env), default)
            if path is not None:
                found.append(CredentialFile(what, path, f"{CREDENTIALS_DIR}/{name}", env))
    if infra.gcp.enabled is not False:
        path = _first_existing(os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"),
                               "~/.config/gcloud/application_default_credentials.json")
        if path is not None:
            found.append(CredentialFile("GCP credentials", path, f"{CREDENTIALS_DIR}/gcp.json",
                                        "GOOGLE_APPLICATION_CREDENTIALS"))
    if infra.kubernetes.enabled is not False:
        kubeconfig = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or None
        path = _first_existing(kubeconfig, "~/.kube/config")
        if path is not None:
            found.append(CredentialFile("kubeconfig", path, f"{CREDENTIALS_DIR}/kubeconfig", "KUBECONFIG"))
    for host in infra.ssh.hosts:
        if host.identity_file:
            path = _first_existing(host.identity_file)
            if path is not None:
                found.append(CredentialFile(f"ssh key of host {host.name}", path,
                                            f"{CREDENTIALS_DIR}/ssh/{host.name}.key"))
    vm_key = paths.keys / "vm_ed25519"
    if vm_key.is_file():
        # skytui's own key (VMs, and ssh hosts without identity_file): the same place there.
        found.append(CredentialFile("skytui's VM key", vm_key, "keys/vm_ed25519"))
        if vm_key.with_suffix(".pub").is_file():
            found.append(CredentialFile("skytui's VM key (public)", vm_key.with_suffix(".pub"),
                                        "keys/vm_ed25519.pub"))
    known_hosts = _first_existing(infra.ssh.known_hosts_file)
    if known_hosts is not None:
        found.append(CredentialFile("ssh known hosts", known_hosts, f"{CREDENTIALS_DIR}/ssh/known_hosts"))
    if paths.known_hosts.is_file():
        found.append(CredentialFile("ssh host keys pinned by skytui", paths.known_hosts, "known_hosts"))
    return found


def environment_credentials(config: Config) -> dict[str, str]:
    """The credentials this process has in its environment, for the machine's env file."""
    if config.jobs.controller.use_machine_identity:
        return {}
    return {name: os.environ[name] for name in _ENV_CREDENTIALS if os.environ.get(name)}


def controller_config_text(paths: Paths, config: Config, remote_home: str) -> str:
    """The controller's config.yaml: the user's, with the controller placed
    where it now is (no `resources`: it is the local daemon there) and every
    credential path pointing at the copies on the machine."""
    raw: Any = (load_file(paths.config_file) or {}) if paths.config_file.exists() else {}
    raw = dict(raw)
    jobs = dict(raw.get("jobs") or {})
    controller = dict(jobs.get("controller") or {})
    controller.pop("resources", None)
    jobs["controller"] = controller
    raw["jobs"] = jobs
    infra = dict(raw.get("infra") or {})
    ssh = dict(infra.get("ssh") or {})
    if ssh:
        hosts = []
        for host in ssh.get("hosts") or []:
            host = dict(host)
            if host.get("identity_file") and not config.jobs.controller.use_machine_identity:
                host["identity_file"] = f"{remote_home}/{CREDENTIALS_DIR}/ssh/{host['name']}.key"
            hosts.append(host)
        ssh["hosts"] = hosts
        ssh["known_hosts_file"] = f"{remote_home}/{CREDENTIALS_DIR}/ssh/known_hosts"
        infra["ssh"] = ssh
        raw["infra"] = infra
    return yaml.safe_dump(raw, sort_keys=False)


def load_environment(home: Path) -> None:
    """On the machine: take the environment credentials the client sent."""
    path = home / ENV_FILE
    if not path.is_file():
        return
    data: Any = yaml.safe_load(path.read_text()) or {}
    if isinstance(data, dict):
        for name, value in data.items():
            if isinstance(name, str) and isinstance(value, str):
                os.environ[name] = value
