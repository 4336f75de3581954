"""The pod lifecycle of a cluster: the manifest, creating the pods, waiting
until they run (or saying why they never will), and deleting them.

A mixin of KubernetesCloud (cloud.py), which brings the API clients, the
selector of this install's pods and the node shapes. May touch clouds.base,
the node driver's constants and the SDK (lazily); nothing of the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from skytui.clouds.base import (
    PHASES_DIR,
    Accepted,
    CapacityError,
    CloudError,
    ClusterHandle,
    InstanceOffer,
    NodeInfo,
    PrecheckError,
)
from skytui.clouds.kubernetes.api import REQUEST_TIMEOUT, _cloud_error
from skytui.clouds.kubernetes.names import label_value, pod_name
from skytui.clouds.kubernetes.shapes import GPU_RESOURCE, NodeShape, describe_pod
from skytui.clouds.nodes.podnode import CONTAINER, TERMINATING_MARK
from skytui.clouds.phase_scripts import NOTICE_FILE
from skytui.config import KubernetesInfraConfig

log = logging.getLogger("skytui.clouds.kubernetes")

DELETE_GRACE_S = 5
WAIT_POLL_S = 0.5
IMAGE_ERRORS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError")
# How long a pod's processes have between the kubelet's TERM and its KILL.
TERMINATION_GRACE_S = 10
# PID 1 of a node (POSIX sh): stays alive; on TERM (pod deleted or evicted) it
# leaves a mark that the pod is going (so a job killed by it is not taken for
# a job that failed: the API may still say Running for a moment), and the
# preemption notice in each running phase's directory (so a job that ends in
# answer to it, even with 0, is the pod's loss: clouds/phase_scripts.py),
# passes TERM to the job's processes and waits for them to end, for the grace
# period at most (the kubelet's KILL ends it anyway): the job may checkpoint.
KEEPALIVE = (
    f"trap 'mkdir -p \"$HOME/.skytui\"; touch \"$HOME/{TERMINATING_MARK}\"; "
    f"t=$(( $(date +%s) + {TERMINATION_GRACE_S} )); "
    f"for d in \"$HOME\"/{PHASES_DIR}/*/; do [ -e \"$d\"pid ] && [ ! -e \"$d\"exit_code ] && "
    f"echo $t > \"$d\"{NOTICE_FILE}; done; "
    "kill -TERM -1 2>/dev/null; wait; "
    f"n=0; while [ $n -lt {TERMINATION_GRACE_S * 5} ] && kill -0 -1 2>/dev/null; do sleep 0.2; n=$((n+1)); done; "
    "exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"
)


def _is_up(pod: Any, instance_id: str) -> bool:
    if pod is None or pod.metadata.uid != instance_id or pod.metadata.deletion_timestamp is not None:
        return False
    status = pod.status
    return status is not None and status.phase == "Running" and status.reason != "Evicted"


class PodLifecycle:
    """Provisioning and deleting a cluster's pods, for KubernetesCloud."""

    name: str
    config: KubernetesInfraConfig
    install_id: str
    contexts: list[str]
    _pod_contexts: dict[str, str]

    if TYPE_CHECKING:
        def _core(self, context: str) -> Any: ...

        def _selector(self, cluster: str | None = None) -> str: ...

        def node_shapes(self, context: str, *, max_age_s: float = ...) -> list[NodeShape]: ...

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
            "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
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
        from kubernetes.client.exceptions import ApiException

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

    def _delete_blocking(self, context: str, cluster: str) -> None:
        from kubernetes.client.exceptions import ApiException

        core = self._core(context)
        for pod in self._list_blocking(context, self._selector(cluster)):
            if pod.metadata.deletion_timestamp is not None:
                # Going already (an eviction, a delete): deleting it again
                # would cut short the grace period its job was given.
                continue
            try:
                core.delete_namespaced_pod(
                    pod.metadata.name, self.config.namespace, grace_period_seconds=DELETE_GRACE_S,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
