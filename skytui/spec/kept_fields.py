"""SkyPilot task fields that skytui accepts, checks and does not act on.

A YAML written for SkyPilot must load unchanged (issue 12): a field SkyPilot's
schema (`sky/utils/schemas.py`, 0.14) accepts is never an "unknown field"
here. Those skytui cannot act on are checked against SkyPilot's own shape
rules (so what SkyPilot refuses is still refused), kept in the stored spec,
and named in one warning line each when the file is loaded.

Each entry says why skytui ignores the field: the warning is the user's only
hint that part of their YAML has no effect here.

Private to `spec` (the bottom layer): imports nothing from skytui but its
sibling `sizes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skytui.spec.sizes import parse_size_gb

# A check returns None when the value has SkyPilot's shape, else what is wrong.
Check = Callable[[Any], "str | None"]


def _as_written(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class KeptField:
    check: Check
    why: str  # completes "skytui does not act on this: ..."
    # What is stored: the value, with anything secret taken out (the stored
    # spec is shown in the TUI and `jobs queue`).
    keep: Callable[[Any], Any] = _as_written


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _mapping(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be a mapping"


def _list_of_mappings(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return None
    return "must be a list of mappings"


def _one_number(value: Any) -> str | None:
    """inputs/outputs: {name: size}, at most one entry (SkyPilot's experimental form)."""
    if not isinstance(value, dict) or len(value) > 1:
        return "must be a mapping of one name to a number"
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value.values()):
        return "must be a mapping of one name to a number"
    return None


def _one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and value.strip().lower() in choices:
            return None
        return f"must be one of {', '.join(choices)}"

    return check


_ACCELERATOR_ARGS = {"runtime_version": _string, "tpu_name": _string, "tpu_vm": _boolean,
                     "gcp_queued_resource": _boolean}


def _accelerator_args(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be a mapping"
    for key, item in value.items():
        check = _ACCELERATOR_ARGS.get(key)
        if check is None:
            return f"unknown field {key!r} (expected {', '.join(_ACCELERATOR_ARGS)})"
        problem = check(item)
        if problem:
            return f"{key} {problem}"
    return None


def _managed_secrets(value: Any) -> str | None:
    message = "must be a list of secret names, or of {NAME: {mount_path: PATH}}"
    if not isinstance(value, list):
        return message
    for item in value:
        if isinstance(item, str):
            continue
        if not (isinstance(item, dict) and len(item) == 1):
            return message
        options = next(iter(item.values()))
        if not isinstance(options, dict) or set(options) - {"mount_path"}:
            return message
    return None


# SkyPilot's service schema (schemas.get_service_schema, 0.14), to the depth a
# misspelt or outdated section is caught: its keys, and those of the mappings
# inside it that refuse unknown keys.
_SERVICE_KEYS = frozenset({"readiness_probe", "load_balancer", "pool", "replica_policy", "ports", "replicas",
                           "workers", "load_balancing_policy", "tls"})
_PROBE_KEYS = frozenset({"path", "initial_delay_seconds", "timeout_seconds", "endpoint_probe_interval_seconds",
                         "consecutive_failure_threshold_timeout", "post_data", "headers"})
_REPLICA_POLICY_KEYS = frozenset({"min_replicas", "max_replicas", "num_overprovision", "target_qps_per_replica",
                                  "dynamic_ondemand_fallback", "base_ondemand_fallback_replicas", "spot_placer",
                                  "upscale_delay_seconds", "downscale_delay_seconds"})


def _unknown(value: dict[Any, Any], known: frozenset[str], where: str = "") -> str | None:
    extra = sorted(str(key) for key in value if key not in known)
    if not extra:
        return None
    return f"{where + ': ' if where else ''}unknown field {extra[0]!r} (expected {', '.join(sorted(known))})"


def _service(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be a mapping"
    problem = _unknown(value, _SERVICE_KEYS)
    probe, policy, tls = value.get("readiness_probe"), value.get("replica_policy"), value.get("tls")
    if problem is None and probe is not None and not isinstance(probe, str):
        if not isinstance(probe, dict) or "path" not in probe:
            return "readiness_probe must be a path, or a mapping with a path"
        problem = _unknown(probe, _PROBE_KEYS, "readiness_probe")
    if problem is None and policy is not None:
        if not isinstance(policy, dict) or "min_replicas" not in policy:
            return "replica_policy must be a mapping with min_replicas"
        problem = _unknown(policy, _REPLICA_POLICY_KEYS, "replica_policy")
    if problem is None and tls is not None and (not isinstance(tls, dict) or set(tls) != {"keyfile", "certfile"}):
        return "tls must be a mapping of keyfile and certfile"
    return problem


def _docker_login(value: Any) -> str | None:
    fields = ("username", "password", "server")
    if not isinstance(value, dict) or set(value) != set(fields) or not all(isinstance(value[f], str) for f in fields):
        return "must be a mapping of username, password and server"
    return None


def _without_password(value: dict[str, Any]) -> dict[str, Any]:
    return {**value, "password": "<redacted>"}


def _memory_size(value: Any) -> str | None:
    return None if parse_size_gb(value) is not None else "must be a size such as 100 or \"100GB\""


_SERVING = "SkyServe's section; a managed job ignores it, as SkyPilot's does"
_NO_API_SERVER = "skytui has no API server"
_NO_VOLUMES = "skytui does not provide SkyPilot volumes; use file_mounts"

TASK_FIELDS: dict[str, KeptField] = {
    "service": KeptField(_service, _SERVING),
    "event_callback": KeptField(_string, "skytui reports events itself (see `jobs logs --controller`)"),
    "inputs": KeptField(_one_number, "SkyPilot's experimental data-size hint; the optimizer here ignores it"),
    "outputs": KeptField(_one_number, "SkyPilot's experimental data-size hint; the optimizer here ignores it"),
    "api_server_access": KeptField(_boolean, _NO_API_SERVER),
    "volumes": KeptField(_mapping, _NO_VOLUMES),
    "volume_mounts": KeptField(_list_of_mappings, _NO_VOLUMES),
    "managed_secrets": KeptField(_managed_secrets, "skytui has no secrets manager; give values with --secret"),
    "file_mounts_mapping": KeptField(_mapping, "SkyPilot writes this itself when it uploads files"),
    "_metadata": KeptField(_mapping, "SkyPilot's own bookkeeping"),
}

RESOURCES_FIELDS: dict[str, KeptField] = {
    "network_tier": KeptField(_one_of("standard", "best"), "skytui places machines on the standard network"),
    "local_disk": KeptField(_string, "skytui does not choose machines by local disk"),
    "accelerator_args": KeptField(_accelerator_args, "skytui does not run TPUs"),
    "volumes": KeptField(_list_of_mappings, _NO_VOLUMES),
    "priority_class": KeptField(_string, "skytui sets no Kubernetes priority class"),
    "ephemeral_storage": KeptField(_memory_size, "deprecated in SkyPilot; use disk_size"),
    "_no_missing_accel_warnings": KeptField(_boolean, "SkyPilot's own bookkeeping"),
    "_docker_login_config": KeptField(_docker_login, "skytui does not log in to registries", _without_password),
    "_is_image_managed": KeptField(_boolean, "SkyPilot's own bookkeeping"),
    "_requires_fuse": KeptField(_boolean, "SkyPilot's own bookkeeping"),
    "_cluster_config_overrides": KeptField(_mapping, "SkyPilot's own bookkeeping"),
}

STORAGE_FIELDS: dict[str, KeptField] = {
    "type": KeptField(_one_of("model_checkpoint_ro", "model_checkpoint_rw", "dataset_ro", "dataset_rw"),
                      "a MOUNT_CACHED tuning preset for rclone, which skytui does not use"),
    "config": KeptField(_mapping, "rclone and disk tuning skytui does not use"),
    "_is_sky_managed": KeptField(_boolean, "SkyPilot's own bookkeeping"),
    "_bucket_sub_path": KeptField(_string, "SkyPilot's own bookkeeping"),
    "_force_delete": KeptField(_boolean, "SkyPilot's own bookkeeping"),
}
