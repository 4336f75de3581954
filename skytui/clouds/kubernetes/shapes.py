"""What a node can hold and what a pod asks for, written as a shape.

Owns Kubernetes quantities, GPU label values as the catalogs name them, a
node's shape (`4CPU--16GB--1xH100`) and the pod size a request asks for.
Pure functions over SDK objects and the catalogs; no API calls.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skytui.clouds.catalog import DEFAULT_CPUS_MIN, load_catalog

if TYPE_CHECKING:
    from skytui.spec import Resources

GPU_RESOURCE = "nvidia.com/gpu"
# Where clusters say which GPU a node has: NVIDIA's GPU feature discovery,
# GKE, and the label SkyPilot asks admins to set.
GPU_LABELS = ("nvidia.com/gpu.product", "cloud.google.com/gke-accelerator", "skypilot.co/accelerator")
DEFAULT_MEMORY_PER_CPU_GB = 4.0
_SHAPE = re.compile(r"^(\d+(?:\.\d+)?)CPU--(\d+(?:\.\d+)?)GB(?:--(\d+)x(.+))?$")


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
