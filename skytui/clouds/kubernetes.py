"""The `kubernetes` infra: pods in the contexts of your kubeconfig (the regions).

A node is a pod whose main container only stays alive; the job's setup and
run are started inside it through the exec API, detached, with the same
shell protocol as a VM (podnode.py). A pod gets what the task asks for
(requests = limits for cpu and memory, `nvidia.com/gpu` limits, a
nodeSelector on the GPU label), so offers come from the cluster's nodes: one
per context where some node could hold the pod, written as its shape
(`4CPU--16GB--1xH100`), at price 0 and on demand only.

Pods are named `<cluster>-<install id>-<rank>` and labelled
`skytui-owner=<install id>`, `skytui-cluster=<cluster>` plus the engine's
labels, so list_clusters and terminate touch this install's pods only. An
evicted or deleted pod is a preemption (GONE); a pod the scheduler cannot
place is a CapacityError after a short wait; an image that cannot be
pulled, or a 401/403, is a PrecheckError.

The official client is synchronous: every call runs in a thread, with
`_request_timeout` on each.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skytui._yaml_lines import YamlProblem, load_file
from skytui.clouds.base import (
    Accepted,
    CapacityError,
    CloudError,
    ClusterHandle,
    ClusterState,
    InfraStatus,
    InstanceOffer,
    NodeError,
    NodeInfo,
    PrecheckError,
    states_one_by_one,
)
from skytui.clouds.catalog import DEFAULT_CPUS_MIN, load_catalog
from skytui.clouds.podnode import CONTAINER, TERMINATING_MARK, PodNode
from skytui.config import Config, KubernetesInfraConfig, Paths

if TYPE_CHECKING:
    from skytui.spec import Resources

log = logging.getLogger(__name__)

NAME = "kubernetes"
IN_CLUSTER = "in-cluster"  # the context name of the pod's own service account
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
GPU_RESOURCE = "nvidia.com/gpu"
# Where clusters say which GPU a node has: NVIDIA's GPU feature discovery,
# GKE, and the label SkyPilot asks admins to set.
GPU_LABELS = ("nvidia.com/gpu.product", "cloud.google.com/gke-accelerator", "skypilot.co/accelerator")
DEFAULT_MEMORY_PER_CPU_GB = 4.0
# offers() is synchronous (the optimizer calls it in the CLI and inside the
# controller's event loop), so the node list is fetched with a short timeout
# and kept for a while: planning many jobs costs one list per context per TTL.
OFFERS_TTL_S = 60.0
LIST_NODES_TIMEOUT = (2.0, 5.0)
REQUEST_TIMEOUT = (5.0, 30.0)  # (connect, read) of every other call
DELETE_GRACE_S = 5
WAIT_POLL_S = 0.5
IMAGE_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError")
# PID 1 of a node: stays alive; on TERM (pod deleted or evicted) it leaves a
# mark that the pod is going (so a job killed by it is not taken for a job
# that failed: the API may still say Running for a moment), passes TERM to
# the job's processes and gives them a moment before the container goes.
KEEPALIVE = (
    f"trap 'mkdir -p \"$HOME/.skytui\"; touch \"$HOME/{TERMINATING_MARK}\"; kill -TERM -1 2>/dev/null; "
    "sleep 2; exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"
)
_SHAPE = re.compile(r"^(\d+(?:\.\d+)?)CPU--(\d+(?:\.\d+)?)GB(?:--(\d+)x(.+))?$")


# ---------------------------------------------------------------- kubeconfig


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


def make(paths: Paths, config: Config) -> KubernetesCloud:
    return KubernetesCloud(paths, config.infra.kubernetes)


# ------------------------------------------------------------------- names


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _dns_label(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def pod_name(cluster: str, install_id: str, rank: int) -> str:
    """`<cluster>-<install id>-<rank>`, a DNS-1123 label (63 chars at most);
    a cluster name that had to change gets a hash, so names stay distinct."""
    suffix = f"-{_dns_label(install_id)}-{rank}"
    base = _dns_label(cluster) or "node"
    if base != cluster or len(base) + len(suffix) > 63:
        base = (base[: 63 - len(suffix) - 9].strip("-") or "node") + "-" + _short_hash(cluster)
    return base + suffix


def label_value(value: str) -> str:
    """A label value (63 chars, alphanumerics at both ends, -_. inside)."""
    if len(value) <= 63 and re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:54].strip("-_.")
    return f"{cleaned}-{_short_hash(value)}" if cleaned else _short_hash(value)


# ------------------------------------------------------------------ shapes


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity: "4", "3800m", "16Gi", "16384Mi", "1.5G", "17179869184"."""
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
    match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)([A-Za-z]*)\s*", str(text))
    if not match or (match.group(2) and match.group(2) not in units):
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * units.get(match.group(2), 1.0)


_KNOWN_GPUS: dict[str, str] | None = None


def gpu_name(label: str) -> str:
    """A node's GPU label value as the catalogs name it:
    "NVIDIA-H100-80GB-HBM3", "nvidia-h100-80gb", "h100" -> "H100"."""
    global _KNOWN_GPUS
    if _KNOWN_GPUS is None:
        _KNOWN_GPUS = {
            entry.accelerator_name.lower(): entry.accelerator_name
            for cloud in ("aws", "gcp") for entry in load_catalog(cloud) if entry.accelerator_name
        }
    text = label.strip().lower().replace("_", "-").replace(" ", "-")
    for prefix in ("nvidia-", "tesla-"):
        text = text.removeprefix(prefix)
    tokens = [t for t in text.split("-") if t]
    for n in range(len(tokens), 0, -1):
        known = _KNOWN_GPUS.get("-".join(tokens[:n]))
        if known:
            return known
    return tokens[0].upper() if tokens else label


@dataclass(frozen=True)
class NodeShape:
    """What one node can hold (its allocatable) and how to select it."""

    cpus: float
    memory_gb: float
    gpus: int
    gpu: str | None  # catalog name
    gpu_label: tuple[str, str] | None  # (label key, value) that says so

    def holds(self, cpus: float, memory_gb: float, gpus: int, gpu: str | None) -> bool:
        if gpus and (self.gpu is None or gpu is None or self.gpu.lower() != gpu.lower() or self.gpus < gpus):
            return False
        return self.cpus + 1e-9 >= cpus and self.memory_gb + 1e-9 >= memory_gb

    @property
    def text(self) -> str:
        return describe_pod(self.cpus, self.memory_gb, self.gpus, self.gpu)


def node_shape(node: Any) -> NodeShape:
    allocatable = (node.status.allocatable if node.status else None) or {}
    labels = node.metadata.labels or {}
    gpu_label = next(((key, labels[key]) for key in GPU_LABELS if labels.get(key)), None)
    gpus = int(parse_quantity(allocatable.get(GPU_RESOURCE, "0")))
    return NodeShape(
        cpus=parse_quantity(allocatable.get("cpu", "0")),
        memory_gb=round(parse_quantity(allocatable.get("memory", "0")) / 2**30, 1),
        gpus=gpus,
        gpu=gpu_name(gpu_label[1]) if gpu_label and gpus else None,
        gpu_label=gpu_label if gpus else None,
    )


def shape_name(cpus: float, memory_gb: float, gpus: int, gpu: str | None) -> str:
    name = f"{cpus:g}CPU--{memory_gb:g}GB"
    return f"{name}--{gpus}x{gpu}" if gpus and gpu else name


def describe_pod(cpus: float, memory_gb: float, gpus: int, gpu: str | None) -> str:
    text = f"{cpus:g} CPU, {memory_gb:g} GB"
    return f"{text}, {gpus} {gpu}" if gpus and gpu else text


def _pod_size(request: Resources) -> tuple[float, float, int, str | None] | None:
    """(cpus, memory GB, GPUs, GPU name) a pod for this request asks for;
    None when a pod cannot express it."""
    if request.instance_type is not None:
        match = _SHAPE.match(request.instance_type)
        if match is None:
            return None
        count = int(match.group(3) or 0)
        return float(match.group(1)), float(match.group(2)), count, match.group(4) if count else None
    gpus, gpu = 0, None
    if request.accelerators:
        wanted = request.accelerators[0]
        if wanted.name is None or not float(wanted.count).is_integer():
            return None  # by GPU memory only, or a fraction of a GPU: nodes do not say
        if wanted.manufacturer is not None and wanted.manufacturer.lower() != "nvidia":
            return None
        gpus, gpu = int(wanted.count), wanted.name
    cpus = request.cpus_min if request.cpus_min is not None else DEFAULT_CPUS_MIN
    per_cpu = request.memory_per_cpu
    memory = request.memory_min if request.memory_min is not None else (per_cpu or DEFAULT_MEMORY_PER_CPU_GB) * cpus
    if cpus <= 0 or memory <= 0 or not math.isfinite(cpus) or not math.isfinite(memory):
        return None
    return cpus, memory, gpus, gpu


# ------------------------------------------------------------------- errors


def _api_message(exc: Any) -> str:
    """What an ApiException says, from its body (never its headers)."""
    try:
        body = json.loads(exc.body) if getattr(exc, "body", None) else {}
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or getattr(exc, "reason", "") or "error")[:300]


def _cloud_error(exc: BaseException, context: str, what: str) -> CloudError:
    """An SDK failure as the engine understands it."""
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        status = exc.status or 0
        text = f"kubernetes context {context}: {what} failed: {status} {_api_message(exc)}"
        if status in (401, 403):
            return PrecheckError(f"{text} (check the credentials and RBAC of this context)")
        if status in (400, 404, 422):
            return PrecheckError(text)
        return CapacityError(text)
    if isinstance(exc, (HTTPError, OSError)):
        return CapacityError(f"kubernetes context {context}: cannot reach the API server to {what}: "
                             f"{type(exc).__name__}")
    return CloudError(f"kubernetes context {context}: {what} failed: {type(exc).__name__}: {exc}")


def _is_up(pod: Any, instance_id: str) -> bool:
    if pod is None or pod.metadata.uid != instance_id or pod.metadata.deletion_timestamp is not None:
        return False
    status = pod.status
    return status is not None and status.phase == "Running" and status.reason != "Evicted"


# -------------------------------------------------------------------- cloud


class KubernetesCloud:
    name = NAME
    state_poll_s = 3.0
    absolute_mounts = True  # a pod is a machine of its own

    def __init__(self, paths: Paths, config: KubernetesInfraConfig) -> None:
        self.paths = paths
        self.config = config
        self.install_id = paths.install_id
        found, _ = _read_kubeconfig()
        self._kubeconfig = found
        self.contexts = _chosen_contexts(found, config)[0] if found else []
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._shapes: dict[str, tuple[float, list[NodeShape]]] = {}
        self._shape_errors: dict[str, str] = {}
        self._refreshing: set[str] = set()  # contexts whose node list a thread is reading
        self._state_locks: dict[str, asyncio.Lock] = {}
        self._state_cache: dict[str, tuple[float, dict[str, Any]]] = {}  # context -> (when, pods by name)
        self._pod_contexts: dict[str, str] = {}  # pod name -> context, as found

    # ------------------------------------------------------------- clients

    def _api(self, context: str) -> Any:
        """The ApiClient of a context (blocking: reads the kubeconfig)."""
        with self._lock:
            cached = self._clients.get(context)
        if cached is not None:
            return cached
        from kubernetes import client
        from kubernetes import config as kube_config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        try:
            if context == IN_CLUSTER and (self._kubeconfig is None or IN_CLUSTER not in self._kubeconfig.contexts):
                kube_config.load_incluster_config(client_configuration=configuration)
            else:
                files = os.pathsep.join(map(str, self._kubeconfig.files)) if self._kubeconfig else ""
                kube_config.load_kube_config(config_file=files or None, context=context,
                                             client_configuration=configuration, persist_config=False)
        except (ConfigException, OSError, ValueError) as exc:
            raise PrecheckError(f"kubernetes context {context}: cannot load its configuration: "
                                f"{type(exc).__name__}") from exc
        api = client.ApiClient(configuration)
        with self._lock:
            return self._clients.setdefault(context, api)

    def _core(self, context: str) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self._api(context))

    def _selector(self, cluster: str | None = None) -> str:
        selector = f"skytui-owner={label_value(self.install_id)}"
        return selector + (f",skytui-cluster={label_value(cluster)}" if cluster is not None else "")

    # -------------------------------------------------------------- offers

    def node_shapes(self, context: str, *, max_age_s: float = OFFERS_TTL_S) -> list[NodeShape]:
        """Distinct shapes of the context's schedulable nodes. Asked from the
        optimizer, which is synchronous and runs on the controller's event
        loop: a stale answer is served at once while a thread refreshes it;
        only the very first question of a context waits for the API."""
        with self._lock:
            cached = self._shapes.get(context)
            stale = cached is None or time.monotonic() - cached[0] >= max_age_s
            refresh = stale and cached is not None and context not in self._refreshing
            if refresh:
                self._refreshing.add(context)
        if cached is None:
            return self._fetch_shapes(context)
        if refresh:
            threading.Thread(target=self._fetch_shapes, args=(context,), name=f"k8s-nodes-{context}",
                             daemon=True).start()
        return cached[1]

    def _fetch_shapes(self, context: str) -> list[NodeShape]:
        try:
            try:
                nodes = self._core(context).list_node(_request_timeout=LIST_NODES_TIMEOUT).items
            except Exception as exc:  # noqa: BLE001 - an unreachable cluster offers nothing now
                self._shape_errors[context] = str(_cloud_error(exc, context, "list nodes"))
                log.warning("%s", self._shape_errors[context])
                with self._lock:
                    cached = self._shapes.get(context)
                return cached[1] if cached is not None else []
            shapes: list[NodeShape] = []
            for node in nodes:
                if node.spec is not None and node.spec.unschedulable:
                    continue  # cordoned
                try:
                    shape = node_shape(node)
                except (ValueError, AttributeError):
                    continue
                if shape not in shapes:
                    shapes.append(shape)
            with self._lock:
                self._shapes[context] = (time.monotonic(), shapes)
            self._shape_errors.pop(context, None)
            return shapes
        finally:
            with self._lock:
                self._refreshing.discard(context)

    def describe(self) -> str:
        parts = []
        for context in self.contexts:
            shapes = self.node_shapes(context)
            if shapes:
                parts.append(f"{context}: nodes of {'; '.join(s.text for s in shapes)}")
            else:
                parts.append(f"{context}: {self._shape_errors.get(context, 'no schedulable node')}")
        return (f"pods in namespace {self.config.namespace} ({' | '.join(parts) or 'no context'}), "
                "on-demand only")

    def offers(self, request: Resources) -> list[InstanceOffer]:
        if request.cloud not in (None, self.name) or request.zone or request.use_spot:
            return []
        size = _pod_size(request)
        if size is None:
            return []
        cpus, memory, gpus, gpu = size
        offers = []
        for context in self.contexts:
            if request.region is not None and request.region != context:
                continue
            fitting = [s for s in self.node_shapes(context) if s.holds(cpus, memory, gpus, gpu)]
            if not fitting:
                continue
            name = next(s.gpu for s in fitting) if gpus else None  # the cluster's spelling
            offers.append(InstanceOffer(
                cloud=self.name, instance_type=shape_name(cpus, memory, gpus, name), cpus=cpus,
                memory_gb=memory, region=context, accelerators={name: float(gpus)} if gpus and name else {},
                use_spot=False, price_per_hour=0.0,
            ))
        return offers

    # ------------------------------------------------------------ provision

    def _manifest(
        self, cluster: str, rank: int, num_nodes: int, context: str, offer: InstanceOffer,
        gpu_label: tuple[str, str] | None, labels: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        gpus = int(sum(offer.accelerators.values()))
        quantities = {"cpu": f"{offer.cpus:g}", "memory": f"{offer.memory_gb:g}Gi"}
        limits = dict(quantities)
        if gpus:
            limits[GPU_RESOURCE] = str(gpus)
        all_labels = {key: label_value(str(value)) for key, value in (labels or {}).items()}
        all_labels.update({
            "skytui-owner": label_value(self.install_id), "skytui-cluster": label_value(cluster),
            "app.kubernetes.io/managed-by": "skytui",
        })
        info = json.dumps({"cluster_name": cluster, "cloud": self.name, "region": context, "zone": None})
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 10,
            "automountServiceAccountToken": False,  # jobs get no credentials of this namespace
            "enableServiceLinks": False,
            "containers": [{
                "name": CONTAINER,
                "image": self.config.image,
                "command": ["/bin/sh", "-c", KEEPALIVE],
                "env": [
                    # The phase wrapper tees job output here: PID 1's stdout is the pod log.
                    {"name": "SKYTUI_LOG_SINK", "value": "/proc/1/fd/1"},
                    {"name": "SKYPILOT_NODE_RANK", "value": str(rank)},
                    {"name": "SKYPILOT_NUM_NODES", "value": str(num_nodes)},
                    {"name": "SKYPILOT_NUM_GPUS_PER_NODE", "value": str(gpus)},
                    {"name": "SKYPILOT_CLUSTER_INFO", "value": info},
                ],
                "resources": {"requests": quantities, "limits": limits},
            }],
        }
        if gpu_label is not None:
            spec["nodeSelector"] = {gpu_label[0]: gpu_label[1]}
        if gpus:
            spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": pod_name(cluster, self.install_id, rank),
                "namespace": self.config.namespace,
                "labels": all_labels,
                "annotations": {"skytui/cluster": cluster},
            },
            "spec": spec,
        }

    def _gpu_label(self, context: str, offer: InstanceOffer) -> tuple[str, str] | None:
        """The label value to select nodes of the offer's GPU: the one most
        nodes that hold the pod carry."""
        if not offer.accelerators:
            return None
        gpu, count = next(iter(offer.accelerators.items()))
        fitting = [s for s in self.node_shapes(context, max_age_s=5.0)
                   if s.gpu_label and s.holds(offer.cpus, offer.memory_gb, int(count), gpu)]
        if not fitting:
            return None
        labels = [s.gpu_label for s in fitting if s.gpu_label]
        return max(labels, key=labels.count)

    def _create_blocking(self, context: str, manifest: dict[str, Any]) -> None:
        from kubernetes.client.rest import ApiException

        core = self._core(context)
        name = manifest["metadata"]["name"]
        try:
            core.create_namespaced_pod(self.config.namespace, manifest, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status != 409:
                raise
            # Created by an earlier try of this same provisioning: take it over if it is ours.
            pod = core.read_namespaced_pod(name, self.config.namespace, _request_timeout=REQUEST_TIMEOUT)
            if (pod.metadata.labels or {}).get("skytui-owner") != label_value(self.install_id):
                raise PrecheckError(f"pod {name} already exists in {context} and is not skytui's") from exc

    def _list_blocking(self, context: str, selector: str) -> list[Any]:
        return list(self._core(context).list_namespaced_pod(
            self.config.namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT,
        ).items)

    async def provision(
        self, cluster_name: str, offer: InstanceOffer, num_nodes: int, *, labels: Mapping[str, str] | None = None,
        accepted: Accepted | None = None,
    ) -> ClusterHandle:
        context = offer.region or (self.contexts[0] if self.contexts else "")
        if context not in self.contexts:
            raise PrecheckError(f"kubernetes context {context!r} is not enabled (contexts: {', '.join(self.contexts)})")
        gpu_label = await asyncio.to_thread(self._gpu_label, context, offer)
        manifests = [
            self._manifest(cluster_name, rank, num_nodes, context, offer, gpu_label, labels)
            for rank in range(num_nodes)
        ]
        names = [m["metadata"]["name"] for m in manifests]
        try:
            try:
                await asyncio.gather(*(asyncio.to_thread(self._create_blocking, context, m) for m in manifests))
            except CloudError:
                raise
            except Exception as exc:
                raise _cloud_error(exc, context, "create pods") from exc
            pods = await self._wait_running(context, cluster_name, names, offer)
        except BaseException:
            # Nothing half-made is left behind (the engine also terminates by name).
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.to_thread(self._delete_blocking, context, cluster_name))
            raise
        for name in names:
            self._pod_contexts[name] = context
        nodes = tuple(
            NodeInfo(rank=rank, host=pod.metadata.name, port=0, user="", internal_ip=pod.status.pod_ip or "",
                     host_key="", instance_id=pod.metadata.uid)
            for rank, pod in enumerate(pods)
        )
        return ClusterHandle(
            cloud=self.name, name=cluster_name, region=context, zone=None, nodes=nodes,
            accelerators=dict(offer.accelerators), extra={"namespace": self.config.namespace},
        )

    async def _wait_running(self, context: str, cluster: str, names: list[str], offer: InstanceOffer) -> list[Any]:
        gpus = int(sum(offer.accelerators.values()))
        wanted = describe_pod(offer.cpus, offer.memory_gb, gpus, next(iter(offer.accelerators), None))
        deadline = time.monotonic() + self.config.provision_timeout_s
        unschedulable_since: float | None = None
        last = "Pending"
        while True:
            try:
                pods = await asyncio.to_thread(self._list_blocking, context, self._selector(cluster))
            except Exception as exc:
                error = _cloud_error(exc, context, "read pods")
                if isinstance(error, PrecheckError):
                    raise error from exc
                log.warning("%s (retrying)", error)
                pods = None
            if pods is not None:
                by_name = {pod.metadata.name: pod for pod in pods}
                ready = []
                unschedulable: str | None = None
                for name in names:
                    pod = by_name.get(name)
                    if pod is None or pod.metadata.deletion_timestamp is not None:
                        raise CapacityError(f"pod {name} in {context} was deleted while starting")
                    verdict = self._starting(pod, context)
                    if verdict == "up":
                        ready.append(pod)
                    elif verdict.startswith("unschedulable:"):
                        unschedulable = verdict.removeprefix("unschedulable:")
                    else:
                        last = verdict
                if len(ready) == len(names):
                    return ready
                if unschedulable is not None:
                    unschedulable_since = unschedulable_since or time.monotonic()
                    if time.monotonic() - unschedulable_since > self.config.unschedulable_timeout_s:
                        raise CapacityError(f"no node in {context} fits {wanted}: {unschedulable}")
                else:
                    unschedulable_since = None
            if time.monotonic() > deadline:
                raise CapacityError(
                    f"pods of {cluster} not running in {context} after {self.config.provision_timeout_s:g}s ({last})"
                )
            await asyncio.sleep(WAIT_POLL_S)

    def _starting(self, pod: Any, context: str) -> str:
        """"up", "unschedulable:<why>", or what it waits for; raises when it never will start."""
        status = pod.status
        phase = status.phase if status else None
        if phase == "Running" and status.pod_ip:
            return "up"
        if phase in ("Failed", "Succeeded"):
            if status.reason == "Evicted":
                raise CapacityError(f"pod {pod.metadata.name} was evicted in {context} while starting")
            raise PrecheckError(f"pod {pod.metadata.name} in {context} ended as it started: "
                                f"{status.reason or phase} {status.message or ''}".strip())
        for container in (status.container_statuses or []) if status else []:
            waiting = container.state.waiting if container.state else None
            if waiting is None:
                continue
            if waiting.reason in IMAGE_ERRORS:
                raise PrecheckError(f"image {self.config.image!r} cannot be pulled in {context}: "
                                    f"{waiting.reason}: {(waiting.message or '')[:200]}")
            if waiting.reason in CONFIG_ERRORS:
                raise PrecheckError(f"pod {pod.metadata.name} cannot start in {context}: "
                                    f"{waiting.reason}: {(waiting.message or '')[:200]}")
            return f"{waiting.reason or 'waiting'}"
        for condition in (status.conditions or []) if status else []:
            if condition.type == "PodScheduled" and condition.status == "False" and condition.reason == "Unschedulable":
                return f"unschedulable:{condition.message or 'Unschedulable'}"
        return phase or "Pending"

    # ---------------------------------------------------------------- state

    async def _pods(self, context: str, *, newer_than: float = 0.0) -> dict[str, Any]:
        """Pod name -> pod, of this install in a context. Every job there shares
        one list per poll period: the API server sees one call, not one per job."""
        lock = self._state_locks.setdefault(context, asyncio.Lock())
        async with lock:  # concurrent askers wait for the one call in flight
            cached = self._state_cache.get(context)
            if cached is not None and cached[0] > newer_than and time.monotonic() - cached[0] < self.state_poll_s * 0.8:
                return cached[1]
            pods = await asyncio.to_thread(self._list_blocking, context, self._selector())
            by_name = {pod.metadata.name: pod for pod in pods}
            self._state_cache[context] = (time.monotonic(), by_name)
            return by_name

    async def cluster_states(self, handles: Sequence[ClusterHandle]) -> list[ClusterState]:
        return await states_one_by_one(self, handles)

    async def cluster_state(self, handle: ClusterHandle) -> ClusterState:
        context = handle.region or (self.contexts[0] if self.contexts else "")

        def up(pods: dict[str, Any]) -> int:
            return sum(1 for info in handle.nodes if _is_up(pods.get(info.host), info.instance_id))

        try:
            asked = time.monotonic()
            running = up(await self._pods(context))
            if running < len(handle.nodes):
                # A shared answer may predate this cluster: only a fresh one may call it gone.
                running = up(await self._pods(context, newer_than=asked))
        except Exception as exc:  # noqa: BLE001
            # Only the API can say a pod is gone; not hearing from it is not that.
            log.warning("%s; taking %s as still up", _cloud_error(exc, context, "read pods"), handle.name)
            return ClusterState.UP
        if running == len(handle.nodes):
            return ClusterState.UP
        return ClusterState.PARTIAL if running else ClusterState.GONE

    def _delete_blocking(self, context: str, cluster: str) -> None:
        from kubernetes.client.rest import ApiException

        core = self._core(context)
        for pod in self._list_blocking(context, self._selector(cluster)):
            try:
                core.delete_namespaced_pod(
                    pod.metadata.name, self.config.namespace, grace_period_seconds=DELETE_GRACE_S,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

    async def terminate(self, cluster_name: str, handle: ClusterHandle | None) -> None:
        """Delete this install's pods of the cluster, in every context when
        there is no handle. Idempotent."""
        contexts = [handle.region] if handle is not None and handle.region in self.contexts else self.contexts
        errors = []
        for context in contexts:
            self._state_cache.pop(context, None)  # what it said is about to change
            try:
                await asyncio.to_thread(self._delete_blocking, context, cluster_name)
            except Exception as exc:  # noqa: BLE001 - reported after the other contexts
                errors.append(str(_cloud_error(exc, context, f"delete the pods of {cluster_name}")))
        if errors:
            raise CloudError("; ".join(errors))

    async def list_clusters(self) -> list[str]:
        """This install's clusters (owner label), pods being deleted left out."""
        names: set[str] = set()
        for context in self.contexts:
            try:
                pods = await asyncio.to_thread(self._list_blocking, context, self._selector())
            except Exception as exc:  # noqa: BLE001 - another context may still answer
                log.warning("%s", _cloud_error(exc, context, "list pods"))
                continue
            for pod in pods:
                if pod.metadata.deletion_timestamp is not None:
                    continue
                annotations = pod.metadata.annotations or {}
                labels = pod.metadata.labels or {}
                name = annotations.get("skytui/cluster") or labels.get("skytui-cluster")
                if name:
                    names.add(name)
                    self._pod_contexts[pod.metadata.name] = context
        return sorted(names)

    # ---------------------------------------------------------------- nodes

    async def _locate(self, info: NodeInfo) -> tuple[str, Any]:
        """The context a pod lives in, and its ApiClient."""
        from kubernetes.client.rest import ApiException

        context = self._pod_contexts.get(info.host) or (self.contexts[0] if len(self.contexts) == 1 else None)
        if context is not None:
            return context, await asyncio.to_thread(self._api, context)
        def read(context: str) -> Any:
            return self._core(context).read_namespaced_pod(
                info.host, self.config.namespace, _request_timeout=REQUEST_TIMEOUT)

        for candidate in self.contexts:
            try:
                pod = await asyncio.to_thread(read, candidate)
            except (ApiException, CloudError, OSError):
                continue
            if pod.metadata.uid == info.instance_id:
                self._pod_contexts[info.host] = candidate
                return candidate, await asyncio.to_thread(self._api, candidate)
        raise NodeError(f"pod {info.host} is in none of the contexts {', '.join(self.contexts)}")

    def node(self, info: NodeInfo) -> PodNode:
        return PodNode(info, None, self.config.namespace, None, resolve=lambda: self._locate(info))
