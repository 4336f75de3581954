"""KubernetesCloud: the Cloud of the `kubernetes` infra, and `make`.

Owns the API clients per context, the offers (node shapes, cached), the
cluster states (one shared pod list per context and poll), terminate,
list_clusters and the node driver of a pod; the pod lifecycle comes from
pods.py. May touch clouds.base, the other modules of this package and
the SDK (lazily); nothing of the engine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from skytui.clouds.base import (
    CloudError,
    ClusterHandle,
    ClusterState,
    InstanceOffer,
    NodeError,
    NodeInfo,
    PrecheckError,
    states_one_by_one,
)
from skytui.clouds.kubernetes.api import REQUEST_TIMEOUT, _cloud_error
from skytui.clouds.kubernetes.kubeconfig import (
    IN_CLUSTER,
    NAME,
    _chosen_contexts,
    _read_kubeconfig,
)
from skytui.clouds.kubernetes.names import label_value
from skytui.clouds.kubernetes.pods import PodLifecycle, _is_up
from skytui.clouds.kubernetes.shapes import NodeShape, _pod_size, node_shape, shape_name
from skytui.clouds.nodes.podnode import PodNode
from skytui.config import Config, KubernetesInfraConfig, Paths

if TYPE_CHECKING:
    from skytui.spec import Resources

log = logging.getLogger("skytui.clouds.kubernetes")

# offers() is synchronous (the optimizer calls it in the CLI and inside the
# controller's event loop), so the node list is fetched with a short timeout
# and kept for a while: planning many jobs costs one list per context per TTL.
OFFERS_TTL_S = 60.0
LIST_NODES_TIMEOUT = (2.0, 5.0)


class KubernetesCloud(PodLifecycle):
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
        # Pod uid -> its deletionTimestamp, as any listing saw it: a pod gone by
        # the time its job's controller asks still had its notice (`preemption_notice`).
        self._deleting: dict[str, float] = {}
        self._pod_contexts: dict[str, str] = {}  # pod name -> context, as found

    # ------------------------------------------------------------- clients

    def _api(self, context: str) -> Any:
        """The ApiClient of a context (blocking: reads the kubeconfig)."""
        with self._lock:
            cached = self._clients.get(context)
        if cached is not None:
            return cached
        from kubernetes import client
        from kubernetes import config as kube_config_module
        from kubernetes.config.config_exception import ConfigException

        kube_config: Any = kube_config_module  # its loaders carry no types

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
            for pod in pods:
                if pod.metadata.deletion_timestamp is not None:
                    self._deleting[pod.metadata.uid] = pod.metadata.deletion_timestamp.timestamp()
            if len(self._deleting) > 10_000:  # long-gone pods: a bound, not a cache policy
                self._deleting.clear()
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

    async def preemption_notice(self, handle: ClusterHandle, *, fresh: bool = False) -> float | None:
        """The end of the grace period of the cluster's first pod being
        deleted or evicted (its deletionTimestamp), as the shared listing saw
        it, or (`fresh`) as each pod reads now; None if none is (or the API
        cannot say). The kubelet signals the pod's processes itself (see
        pods.KEEPALIVE)."""
        context = handle.region or (self.contexts[0] if self.contexts else "")
        try:
            if fresh:
                for info in handle.nodes:
                    pod = await asyncio.to_thread(self._read_pod_blocking, context, info.host)
                    if pod is not None and pod.metadata.uid == info.instance_id \
                            and pod.metadata.deletion_timestamp is not None:
                        self._deleting[info.instance_id] = pod.metadata.deletion_timestamp.timestamp()
            else:
                await self._pods(context)  # what it saw lands in _deleting
        except Exception:  # noqa: BLE001 - no answer is no notice; the state's look says the rest
            pass
        deadlines = [self._deleting[info.instance_id] for info in handle.nodes if info.instance_id in self._deleting]
        return min(deadlines, default=None)

    def _read_pod_blocking(self, context: str, name: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._core(context).read_namespaced_pod(name, self.config.namespace,
                                                           _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
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
        from kubernetes.client.exceptions import ApiException

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


def make(paths: Paths, config: Config) -> KubernetesCloud:
    return KubernetesCloud(paths, config.infra.kubernetes)
