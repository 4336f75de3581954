"""What a loaded file holds that has no effect here, or that needs
something at launch: one `file:line: field: why` line each.

Owns the warnings of `load_pipeline` / `load_pool` (kept SkyPilot fields,
fields no infra acts on, clouds skytui does not run on, instance types no
catalog holds, and for `validate` what a launch would refuse). May touch
`task`, `resources`, `values`, `kept_fields` and `errors`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from skytui._yaml_lines import YamlDocument
from skytui.spec.errors import SpecError, _dotted
from skytui.spec.kept_fields import RESOURCES_FIELDS, STORAGE_FIELDS, TASK_FIELDS
from skytui.spec.resources import Resources
from skytui.spec.task import Task
from skytui.spec.values import KNOWN_CLOUDS, OTHER_SKYPILOT_CLOUDS, _is_url, _resolve_local

# (cloud, region, instance_type) -> (certain, why) when a catalog lacks the
# type; given by the caller (the catalogs are the clouds' business, not the spec's).
InstanceTypeCheck = Callable[[str | None, str | None, str], "tuple[bool, str] | None"]


def _load_warnings(
    task: Task, document: YamlDocument, file: str, spec_only: bool, instance_types: InstanceTypeCheck | None
) -> list[str]:
    """One line per thing in the file that has no effect here, or will need
    something at launch: `file:line: field: why`. A named instance type no
    catalog can hold is an error (SpecError)."""
    warnings: list[tuple[tuple[Any, ...], str]] = []
    data = document.data
    if instance_types is not None:
        warnings += _instance_type_warnings(task, document, file, instance_types)
    for key, kept in TASK_FIELDS.items():
        if key in data:
            warnings.append(((key,), f"skytui does not act on this ({kept.why}); kept and ignored"))
    for path, entry in _resources_entries(data.get("resources")):
        if "spot_recovery" in entry:
            warnings.append(((*path, "spot_recovery"), "is deprecated; use job_recovery"))
        for key, kept in RESOURCES_FIELDS.items():
            if key in entry:
                warnings.append(((*path, key), f"skytui does not act on this ({kept.why}); kept and ignored"))
        for key, why in _NOT_ACTED_ON.items():
            if entry.get(key) not in (None, [], {}):
                warnings.append(((*path, key), f"skytui does not act on this: {why}"))
        cloud = _cloud_named(entry)
        if entry.get("disk_size") is not None and cloud not in (None, "*", "aws", "gcp"):
            warnings.append(((*path, "disk_size"), f"skytui sizes boot disks on aws and gcp only, not on {cloud}"))
        if cloud in OTHER_SKYPILOT_CLOUDS:
            key = "infra" if "infra" in entry else "cloud"
            warnings.append(((*path, key), f"skytui does not run on {cloud}: the spec is valid, but `jobs launch` "
                             f"will find nothing to run it on (skytui runs on {', '.join(KNOWN_CLOUDS)})"))
    mounts = data.get("file_mounts")
    for destination, mount in (mounts.items() if isinstance(mounts, dict) else []):
        for key, kept in STORAGE_FIELDS.items():
            if isinstance(mount, dict) and key in mount:
                warnings.append((("file_mounts", destination, key),
                                 f"skytui does not act on this ({kept.why}); kept and ignored"))
    if spec_only:
        warnings += _launch_notes(task, document, file)
    located = sorted(((document.line_of(path), path, message) for path, message in warnings), key=lambda w: w[0])
    return [f"{file}:{line}: {_dotted(path)}: {message}" for line, path, message in located]


def _instance_type_warnings(
    task: Task, document: YamlDocument, file: str, instance_types: InstanceTypeCheck
) -> list[tuple[tuple[Any, ...], str]]:
    warnings: list[tuple[tuple[Any, ...], str]] = []
    entries = task.resources.any_of or task.resources.ordered
    requests: list[tuple[tuple[Any, ...], Resources]] = [(("resources",), task.resources)]
    kind = "any_of" if task.resources.any_of else "ordered"
    requests += [(("resources", kind, index), task.resources._merged_with(entry)) for index, entry in enumerate(entries)]
    for path, request in requests:
        if request.instance_type is None:
            continue
        verdict = instance_types(request.cloud, request.region, request.instance_type)
        if verdict is None:
            continue
        certain, why = verdict
        where = (*path, "instance_type")
        if where not in document.lines:
            where = ("resources", "instance_type")  # an entry inheriting the base's
        if certain:
            raise SpecError(file, document.line_of(where), _dotted(where), why)
        warnings.append((where, why))
    return warnings


# Fields of skytui's own model that no infra here acts on yet: valid, and
# said so, since a user relying on one would otherwise never know.
_NOT_ACTED_ON = {
    "image_id": "machines run their infra's own image (on kubernetes, infra.kubernetes.image in config.yaml)",
    "disk_tier": "machines get their infra's default disk type",
    "ports": "skytui opens no ports; reach a job's ports over SSH (ssh -L)",
    "labels": "machines carry skytui's own ownership labels only",
    "autostop": "a managed job's machine is torn down when its job ends",
}


def _resources_entries(resources: Any) -> list[tuple[tuple[Any, ...], dict[Any, Any]]]:
    """`resources` and each of its any_of/ordered entries, with their paths."""
    if not isinstance(resources, dict):
        return []
    entries: list[tuple[tuple[Any, ...], dict[Any, Any]]] = [(("resources",), resources)]
    for kind in ("any_of", "ordered"):
        listed = resources.get(kind)
        for index, entry in enumerate(listed if isinstance(listed, list) else []):
            if isinstance(entry, dict):
                entries.append((("resources", kind, index), entry))
    return entries


def _cloud_named(entry: dict[Any, Any]) -> str | None:
    named = entry.get("infra") or entry.get("cloud")
    if not isinstance(named, str):
        return None
    return named.split("/")[0].strip().lower()


def _launch_notes(task: Task, document: YamlDocument, file: str) -> list[tuple[tuple[Any, ...], str]]:
    """What `validate` lets through that `jobs launch` on this machine would refuse."""
    base = os.path.dirname(os.path.abspath(file))
    notes: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(task.workdir, str) and not os.path.isdir(_resolve_local(task.workdir, base)):
        notes.append((("workdir",), f"directory {task.workdir!r} does not exist here; `jobs launch` would refuse"))
    for destination, mount in task.file_mounts.items():
        sources = [mount] if isinstance(mount, str) else (
            [mount.source] if isinstance(mount.source, str) else list(mount.source or [])
        )
        for source in sources:
            if not _is_url(source) and not os.path.exists(_resolve_local(source, base)):
                notes.append((("file_mounts", destination),
                              f"local source {source!r} does not exist here; `jobs launch` would refuse"))
    for name in task.secrets_wanted:
        notes.append((("secrets", name), f"has no value: give it at launch with --secret {name}=VALUE"))
    return notes
