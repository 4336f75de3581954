"""`resources:` of a task: Resources and its JobRecovery.

Owns the input forms (legacy cloud/region/zone, spot_recovery, the four
accelerator forms), the cross-field rules of any_of/ordered, and the derived
views the optimizer reads (cloud, region, cpus_min, candidates, ...).
May touch `values`, `base`, `errors`, `kept_fields` and `sizes`.
"""

from __future__ import annotations

import warnings as _warnings
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, ClassVar

from pydantic import Field, Strict, ValidationInfo, field_validator, model_validator

from skytui.spec.base import _from_yaml, _SpecModel
from skytui.spec.errors import _fail, _suggest
from skytui.spec.kept_fields import RESOURCES_FIELDS, KeptField
from skytui.spec.sizes import parse_size_gb
from skytui.spec.values import (
    _AUTOSTOP_TIME,
    _AUTOSTOP_WAIT_FOR,
    _DISK_TIERS,
    _SINGLE_NAME_CLOUDS,
    MAX_DISK_GB,
    MAX_RESTARTS,
    MAX_WHOLE,
    RECOVERY_STRATEGIES,
    AcceleratorRequest,
    _at,
    _is_number,
    _legacy_infra,
    _memory_parts,
    _parse_accelerators,
    normalize_infra,
    parse_cpus,
    parse_memory,
    parse_ports,
)

# The fields given as text that one parser turns into their value (None stays None).
_TEXT_PARSERS: dict[str, Callable[[Any], Any]] = {
    "infra": normalize_infra, "cpus": parse_cpus, "memory": parse_memory,
}


class JobRecovery(_SpecModel):
    """`resources.job_recovery`: what to do on preemption and on user errors."""

    strategy: str | None = None  # None: the default, EAGER_NEXT_REGION
    max_restarts_on_errors: Annotated[int, Strict(), Field(ge=0, le=MAX_RESTARTS)] = 0
    recover_on_exit_codes: list[Annotated[int, Strict(), Field(ge=0, le=255)]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _accept_forms(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, str):
            return {"strategy": data}  # `job_recovery: FAILOVER`
        if isinstance(data, dict):
            cls._refuse_unknown_keys(data, info)
        elif not isinstance(data, JobRecovery):
            raise _fail(
                "must be a strategy name or a mapping with strategy, max_restarts_on_errors, recover_on_exit_codes"
            )
        return data

    @field_validator("strategy", mode="before")
    @classmethod
    def _check_strategy(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise _fail(f"must be one of {', '.join(RECOVERY_STRATEGIES)}")
        upper = value.strip().upper()
        if upper not in RECOVERY_STRATEGIES:
            raise _fail(
                f"unknown strategy {value!r}; expected one of {', '.join(RECOVERY_STRATEGIES)}",
                suggestion=_suggest(upper, RECOVERY_STRATEGIES),
            )
        return upper

    @field_validator("recover_on_exit_codes", mode="before")
    @classmethod
    def _accept_single_code(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if _is_number(value) else value

    @field_validator("recover_on_exit_codes")
    @classmethod
    def _check_unique(cls, value: list[int]) -> list[int]:
        for index, code in enumerate(value):
            if code in value[:index]:
                raise _fail(f"exit code {code} is listed twice", index)
        return value


class Resources(_SpecModel):
    """`resources:` of a task, or one `any_of`/`ordered` entry."""

    infra: str | None = None
    cpus: str | None = None
    memory: str | None = None
    accelerators: list[AcceleratorRequest] = Field(default_factory=list)
    accelerators_ordered: bool = False
    instance_type: str | None = None
    use_spot: Annotated[bool, Strict()] | None = None
    disk_size: Annotated[int, Strict(), Field(gt=0, le=MAX_DISK_GB)] | None = None  # GB
    max_hourly_cost: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None  # USD, the optimizer's cap
    disk_tier: str | None = None
    ports: list[str] = Field(default_factory=list)
    image_id: str | dict[str, str] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    autostop: bool | int | str | dict[str, Any] | None = None
    priority: Annotated[int, Strict(), Field(ge=-1000, le=1000)] | None = None
    job_recovery: JobRecovery | None = None
    any_of: list[Resources] = Field(default_factory=list)
    ordered: list[Resources] = Field(default_factory=list)

    kept: dict[str, Any] = Field(default_factory=dict)

    kept_fields: ClassVar[dict[str, KeptField]] = RESOURCES_FIELDS
    internal_keys: ClassVar[frozenset[str]] = frozenset({"accelerators_ordered", "kept"})
    legacy_keys: ClassVar[frozenset[str]] = frozenset({"cloud", "region", "zone", "spot_recovery"})

    # ---- input forms -----------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _accept_forms(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data  # an instance, or a wrong type pydantic will name
        cls._refuse_unknown_keys(data, info)
        data = dict(cls._set_kept_aside(data))
        cls._fold_legacy_location(data)
        cls._rename_spot_recovery(data, info)
        if "accelerators" in data:
            from_yaml = _from_yaml(info)
            parse = partial(_parse_accelerators, from_yaml=from_yaml)
            data["accelerators"], ordered = _at(parse, data["accelerators"], "accelerators")
            # Our own model_dump carries the flag; in YAML only the form says it.
            if from_yaml or "accelerators_ordered" not in data:
                data["accelerators_ordered"] = ordered
        return data

    @staticmethod
    def _fold_legacy_location(data: dict[str, Any]) -> None:
        legacy = [key for key in ("cloud", "region", "zone") if key in data]
        if not legacy:
            return
        if data.get("infra") is not None:
            raise _fail("cannot be combined with infra; write everything in infra: cloud/region/zone", legacy[0])
        values = [data.pop(key, None) for key in ("cloud", "region", "zone")]
        if any(value is not None for value in values):
            data["infra"] = _legacy_infra(*values)

    @staticmethod
    def _rename_spot_recovery(data: dict[str, Any], info: ValidationInfo) -> None:
        if "spot_recovery" not in data:
            return
        if "job_recovery" in data:
            raise _fail("cannot be combined with job_recovery (its new name)", "spot_recovery")
        data["job_recovery"] = data.pop("spot_recovery")
        if not info.context:
            # From YAML the loader reports this with file:line instead.
            _warnings.warn("resources.spot_recovery is deprecated; use job_recovery", DeprecationWarning, stacklevel=2)

    @field_validator("infra", "cpus", "memory", mode="before")
    @classmethod
    def _parse_optional_text(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None  # a field validator's
        return None if value is None else _TEXT_PARSERS[info.field_name](value)

    @field_validator("ports", mode="before")
    @classmethod
    def _check_ports(cls, value: Any) -> Any:
        return parse_ports(value)

    @field_validator("disk_size", mode="before")
    @classmethod
    def _check_disk_size(cls, value: Any) -> Any:
        if value is None or isinstance(value, int):
            return value  # a whole number of GB; bounds and type are checked by the field
        size = parse_size_gb(value)
        if size is None:
            raise _fail('must be a whole number of GB, or a size such as "100GB" or "1TB"')
        if size < 1 or not size.is_integer():
            raise _fail(f"must be a whole number of GB (at least 1), got {value!r}")
        return int(size)

    @field_validator("max_hourly_cost", mode="before")
    @classmethod
    def _check_max_hourly_cost(cls, value: Any) -> Any:
        if value is not None and not _is_number(value):
            raise _fail("must be a positive number of dollars per hour")
        return value

    @field_validator("disk_tier", mode="before")
    @classmethod
    def _check_disk_tier(cls, value: Any) -> Any:
        if value is None:
            return None
        tier = value.strip().lower() if isinstance(value, str) else None
        if tier not in _DISK_TIERS:
            raise _fail(f"must be one of {', '.join(_DISK_TIERS)}", suggestion=_suggest(tier, _DISK_TIERS))
        return tier

    @field_validator("image_id", mode="before")
    @classmethod
    def _check_image_id(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip()):
            return value
        if isinstance(value, dict):
            for region, image in value.items():
                if not isinstance(region, str) or not isinstance(image, str) or not image.strip():
                    raise _fail("a per-region image_id maps region names to image ids", region)
            return value
        raise _fail("must be an image id (e.g. 'docker:ubuntu:22.04') or a mapping of region to image id")

    @field_validator("labels", mode="before")
    @classmethod
    def _check_labels(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _fail("must be a mapping of label names to values")
        return value

    @field_validator("autostop", mode="before")
    @classmethod
    def _check_autostop(cls, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if _is_number(value) and isinstance(value, int):
            if not 0 <= value <= MAX_WHOLE:
                raise _fail(f"idle minutes must be from 0 to {MAX_WHOLE}")
            return value
        if isinstance(value, str) and _AUTOSTOP_TIME.match(value):
            return value  # "30m", "2h", "1d": kept as written (a managed job's machine stops when it ends)
        if isinstance(value, dict):
            return _check_autostop_mapping(value)
        raise _fail('must be true/false, idle minutes (10, "30m", "2h"), or {idle_minutes, down, wait_for}')

    @field_validator("any_of", "ordered", mode="before")
    @classmethod
    def _check_alternatives(cls, value: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list):
            raise _fail("must be a list of resource mappings")
        return value

    # ---- cross-field rules (SkyPilot's resources.py::from_yaml_config) ---

    @model_validator(mode="after")
    def _check_alternative_rules(self) -> Resources:
        if self.any_of and self.ordered:
            raise _fail("cannot be combined with any_of; use one or the other", "ordered")
        if self.ordered and len(self.accelerators) > 1:
            raise _fail("a set or list of accelerators cannot be combined with ordered", "accelerators")
        if self.any_of and self.accelerators_ordered and len(self.accelerators) > 1:
            raise _fail("an ordered accelerator list cannot be combined with any_of", "accelerators")
        kind = "any_of" if self.any_of else "ordered"
        for index, entry in enumerate(self.any_of or self.ordered):
            _check_entry(entry, kind, index)
        self._check_same_job_recovery(kind)
        return self

    def _check_same_job_recovery(self, kind: str) -> None:
        entries = self.any_of or self.ordered
        if not entries:
            return
        effective = [_explicit(entry, "job_recovery", self.job_recovery) for entry in entries]
        for index, recovery in enumerate(effective):
            if recovery != effective[0]:
                at = index if "job_recovery" in entries[index].model_fields_set else 0
                raise _fail(f"every {kind} entry must use the same job_recovery", kind, at, "job_recovery")

    # ---- derived views ---------------------------------------------------

    def _infra_part(self, index: int) -> str | None:
        if self.infra is None:
            return None
        parts = self.infra.split("/", 1 if self.infra.split("/")[0] in _SINGLE_NAME_CLOUDS else 2)
        if parts[0] == "sim" and len(parts) == 3:
            # sim/aws/us-east-1[/zone]: the region is "aws/us-east-1".
            sim_parts = self.infra.split("/")
            parts = ["sim", "/".join(sim_parts[1:3]), *sim_parts[3:]]
        part = parts[index] if index < len(parts) else None
        return None if part == "*" else part

    @property
    def cloud(self) -> str | None:
        return self._infra_part(0)

    @property
    def region(self) -> str | None:
        """The region; for kubernetes the context, for ssh the node pool."""
        return self._infra_part(1)

    @property
    def zone(self) -> str | None:
        return self._infra_part(2)

    @property
    def cpus_min(self) -> float | None:
        return None if self.cpus is None else float(self.cpus.rstrip("+"))

    @property
    def cpus_exact(self) -> bool:
        return self.cpus is not None and not self.cpus.endswith("+")

    @property
    def memory_min(self) -> float | None:
        """At least this many GB; None when unset or given per CPU ("4x")."""
        if self.memory is None:
            return None
        size, qualifier = _memory_parts(self.memory)
        return None if qualifier == "x" else size

    @property
    def memory_exact(self) -> bool:
        return self.memory is not None and _memory_parts(self.memory)[1] == ""

    @property
    def memory_per_cpu(self) -> float | None:
        """GB per CPU for the "4x" form, else None."""
        if self.memory is None:
            return None
        size, qualifier = _memory_parts(self.memory)
        return size if qualifier == "x" else None

    def candidates(self) -> tuple[list[Resources], bool]:
        """Flatten into concrete candidates.

        Each candidate has at most one accelerator and no any_of/ordered;
        any_of/ordered entries are merged over the base fields (an entry's
        explicit, non-default field wins); an accelerator set or list expands
        into one candidate per accelerator. Returns (candidates, ordered),
        ordered being True for `ordered:` or the accelerator list form.
        """
        entries = self.any_of or self.ordered
        merged = [self._merged_with(entry) for entry in entries] if entries else [self._merged_with(None)]
        ordered = bool(self.ordered) or any(r.accelerators_ordered and len(r.accelerators) > 1 for r in merged)
        out: list[Resources] = []
        for resources in merged:
            singles = [[a] for a in resources.accelerators] or [[]]
            out.extend(
                resources.model_copy(update={"accelerators": one, "accelerators_ordered": False}) for one in singles
            )
        return out, ordered

    def _merged_with(self, entry: Resources | None) -> Resources:
        update: dict[str, Any] = {"any_of": [], "ordered": []}
        if entry is not None:
            for name in entry.model_fields_set - {"any_of", "ordered", "accelerators_ordered"}:
                if getattr(entry, name) != _default(name):
                    update[name] = getattr(entry, name)
            if "accelerators" in update:
                update["accelerators_ordered"] = entry.accelerators_ordered
        return self.model_copy(update=update)


def _default(name: str) -> Any:
    return Resources.model_fields[name].get_default(call_default_factory=True)


def _explicit(entry: Resources, name: str, fallback: Any) -> Any:
    if name in entry.model_fields_set and getattr(entry, name) != _default(name):
        return getattr(entry, name)
    return fallback


def _check_entry(entry: Resources, kind: str, index: int) -> None:
    if entry.any_of or entry.ordered:
        nested = "any_of" if entry.any_of else "ordered"
        raise _fail(f"is not allowed inside {kind}", kind, index, nested)
    if kind == "ordered" and len(entry.accelerators) > 1:
        raise _fail("an ordered entry takes a single accelerator", kind, index, "accelerators")
    if kind == "any_of" and entry.accelerators_ordered and len(entry.accelerators) > 1:
        raise _fail("an ordered accelerator list cannot be used inside any_of", kind, index, "accelerators")


def _check_autostop_mapping(value: dict[Any, Any]) -> dict[Any, Any]:
    allowed = ("idle_minutes", "down", "wait_for", "hook", "hook_timeout")
    for key, item in value.items():
        if key not in allowed:
            raise _fail("unknown field", key, suggestion=_suggest(key, allowed))
        whole_minutes = isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= MAX_WHOLE
        if key == "idle_minutes" and not whole_minutes:
            raise _fail(f"must be a whole number of minutes, from 0 to {MAX_WHOLE}", key)
        if key == "down" and not isinstance(item, bool):
            raise _fail("must be true or false", key)
        if key == "wait_for" and (not isinstance(item, str) or item.lower() not in _AUTOSTOP_WAIT_FOR):
            raise _fail(f"must be one of {', '.join(_AUTOSTOP_WAIT_FOR)}", key)
        if key == "hook" and not isinstance(item, str):
            raise _fail("must be a shell command", key)
        if key == "hook_timeout" and not (isinstance(item, int) and not isinstance(item, bool) and item >= 1):
            raise _fail("must be a whole number of seconds, at least 1", key)
    return value
