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

from skytui.clouds.kubernetes.api import REQUEST_TIMEOUT, _api_message, _cloud_error
from skytui.clouds.kubernetes.cloud import (
    LIST_NODES_TIMEOUT,
    OFFERS_TTL_S,
    KubernetesCloud,
    make,
)
from skytui.clouds.kubernetes.kubeconfig import (
    IN_CLUSTER,
    NAME,
    SERVICE_ACCOUNT_TOKEN,
    _chosen_contexts,
    _in_cluster,
    _KubeConfig,
    _kubeconfig_candidates,
    _read_kubeconfig,
    detect,
)
from skytui.clouds.kubernetes.names import (
    _dns_label,
    _short_hash,
    label_value,
    pod_name,
)
from skytui.clouds.kubernetes.pods import (
    CONFIG_ERRORS,
    DELETE_GRACE_S,
    IMAGE_ERRORS,
    KEEPALIVE,
    WAIT_POLL_S,
    PodLifecycle,
    _is_up,
)
from skytui.clouds.kubernetes.shapes import (
    _SHAPE,
    DEFAULT_MEMORY_PER_CPU_GB,
    GPU_LABELS,
    GPU_RESOURCE,
    NodeShape,
    _pod_size,
    describe_pod,
    gpu_name,
    node_shape,
    parse_quantity,
    shape_name,
)
from skytui.clouds.nodes.podnode import CONTAINER, TERMINATING_MARK, PodNode

__all__ = [
    "CONFIG_ERRORS", "CONTAINER", "DEFAULT_MEMORY_PER_CPU_GB", "DELETE_GRACE_S", "GPU_LABELS", "GPU_RESOURCE",
    "IMAGE_ERRORS", "IN_CLUSTER", "KEEPALIVE", "LIST_NODES_TIMEOUT", "NAME", "OFFERS_TTL_S", "REQUEST_TIMEOUT",
    "SERVICE_ACCOUNT_TOKEN", "TERMINATING_MARK", "WAIT_POLL_S", "_SHAPE", "KubernetesCloud", "NodeShape",
    "PodLifecycle", "PodNode", "_KubeConfig", "_api_message", "_chosen_contexts", "_cloud_error", "_dns_label",
    "_in_cluster", "_is_up", "_kubeconfig_candidates", "_pod_size", "_read_kubeconfig", "_short_hash",
    "describe_pod", "detect", "gpu_name", "label_value", "make", "node_shape", "parse_quantity", "pod_name",
    "shape_name",
]
