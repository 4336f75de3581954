"""Which kubeconfig files and contexts there are, and `detect` (skytui check).

Owns the discovery of kubeconfig files (merged like kubectl), the in-cluster
service account, and the choice of contexts from the config. Reads files and
the environment only: the SDK is not imported (detect must be fast).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from skytui._yaml_lines import YamlProblem, load_file
from skytui.clouds.base import InfraStatus
from skytui.config import Config, KubernetesInfraConfig, Paths

NAME = "kubernetes"
IN_CLUSTER = "in-cluster"  # the context name of the pod's own service account
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True)
class _KubeConfig:
    files: tuple[Path, ...]  # the kubeconfig files found ((): in-cluster only)
    contexts: tuple[str, ...]  # every context they define
    current: str | None
    in_cluster: bool

    @property
    def where(self) -> str:
        return os.pathsep.join(str(f) for f in self.files) if self.files else "in-cluster service account"


def _kubeconfig_candidates() -> list[Path]:
    raw = os.environ.get("KUBECONFIG")
    if raw:
        return [Path(part).expanduser() for part in raw.split(os.pathsep) if part]
    return [Path.home() / ".kube" / "config"]


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and SERVICE_ACCOUNT_TOKEN.exists()


def _read_kubeconfig() -> tuple[_KubeConfig | None, str]:
    """What the kubeconfig (merged like kubectl: first file wins) and the
    environment offer, without importing the SDK (detect must be fast)."""
    files: list[Path] = []
    contexts: list[str] = []
    current: str | None = None
    problems: list[str] = []
    for path in _kubeconfig_candidates():
        if not path.is_file():
            continue
        try:
            data = load_file(path) or {}
        except (OSError, YamlProblem) as exc:
            problems.append(f"{path}: {type(exc).__name__}")
            continue
        if not isinstance(data, dict):
            problems.append(f"{path}: not a kubeconfig")
            continue
        files.append(path)
        for entry in data.get("contexts") or []:
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name not in contexts:
                contexts.append(name)
        if current is None and isinstance(data.get("current-context"), str) and data["current-context"]:
            current = data["current-context"]
    in_cluster = _in_cluster()
    if contexts or in_cluster:
        return _KubeConfig(tuple(files), tuple(contexts), current, in_cluster), ""
    return None, "; ".join(problems)


def _chosen_contexts(found: _KubeConfig, config: KubernetesInfraConfig) -> tuple[list[str], list[str]]:
    """(contexts to use, configured ones that do not exist)."""
    known = list(found.contexts) + ([IN_CLUSTER] if found.in_cluster and IN_CLUSTER not in found.contexts else [])
    if config.contexts:
        return [c for c in config.contexts if c in known], [c for c in config.contexts if c not in known]
    if found.current in found.contexts:
        return [str(found.current)], []
    if found.contexts:
        return [found.contexts[0]], []
    return [IN_CLUSTER], []


def detect(paths: Paths, config: Config) -> InfraStatus:
    settings = config.infra.kubernetes
    if settings.enabled is False:
        return InfraStatus(NAME, False, "turned off in config.yaml (infra.kubernetes.enabled: false)",
                           "set infra.kubernetes.enabled: true")
    if importlib.util.find_spec("kubernetes") is None:
        return InfraStatus(NAME, False, "the kubernetes Python client is not installed",
                           "pip install 'skytui[kubernetes]'")
    found, problem = _read_kubeconfig()
    if found is None:
        where = os.environ.get("KUBECONFIG") or "~/.kube/config"
        reason = f"no kubeconfig found (looked at {where}" + (f"; {problem})" if problem else ")")
        return InfraStatus(NAME, False, reason, "set KUBECONFIG or create ~/.kube/config (`kubectl config view`)")
    contexts, missing = _chosen_contexts(found, settings)
    if not contexts:
        return InfraStatus(
            NAME, False,
            f"contexts {', '.join(missing)} are not in kubeconfig {found.where} "
            f"(it has: {', '.join(found.contexts) or 'none'})",
            "set infra.kubernetes.contexts to contexts of `kubectl config get-contexts`",
        )
    reason = f"kubeconfig {found.where}, contexts: {', '.join(contexts)}"
    if missing:
        reason += f" ({', '.join(missing)} not found there)"
    return InfraStatus(NAME, True, reason)
