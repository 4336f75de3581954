"""The user's language: SkyPilot's task YAML as pydantic models.

The YAML format is SkyPilot's, unchanged (`sky/utils/schemas.py`), so an
existing task file runs as is. Everything a user can get wrong is refused here,
before anything is written anywhere, with a `SpecError` naming the file, the
line, the dotted field path and, where one is close, the field they meant.

This is the bottom layer: it imports nothing else from skytui but its private
helpers (`_yaml_lines`, `_kept_fields`, `_sizes`).

How lines survive validation: `_yaml_lines` records the line of every key and
list item while loading; models raise errors whose pydantic location (plus an
optional `path` in the error context, for errors found in a model-level
validator) is walked back through the raw document to find the key the user
wrote. The models themselves never see line numbers.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
import warnings as _warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from skytui._kept_fields import RESOURCES_FIELDS, STORAGE_FIELDS, TASK_FIELDS, KeptField
from skytui._sizes import UNIT_GB, parse_size_gb
from skytui._yaml_lines import (
    MAX_BYTES,
    YamlDocument,
    YamlProblem,
    load_documents,
    too_large_message,
)

__all__ = [
    "AcceleratorRequest",
    "FileMount",
    "JobRecovery",
    "KNOWN_CLOUDS",
    "OTHER_SKYPILOT_CLOUDS",
    "Overrides",
    "Pipeline",
    "PoolDefinition",
    "PoolSpec",
    "Resources",
    "SpecError",
    "Task",
    "load_pipeline",
    "load_pipeline_text",
    "load_pool",
    "parse_accelerator",
    "parse_env_flag",
]

# Clouds skytui can place work on (DESIGN.md "Infra").
KNOWN_CLOUDS: tuple[str, ...] = ("local", "sim", "ssh", "aws", "gcp", "kubernetes")
# The other clouds of SkyPilot's schema (constants.ALL_CLOUDS, 0.14): a spec
# naming one is valid (as in SkyPilot) and warned about; only where it can run
# is the question, which `jobs launch` answers (infeasible here).
OTHER_SKYPILOT_CLOUDS: tuple[str, ...] = (
    "azure", "ibm", "lambda", "scp", "oci", "runpod", "vast", "vsphere", "cudo", "fluidstack", "paperspace",
    "primeintellect", "do", "nebius", "slurm", "hyperbolic", "seeweb", "shadeform", "yotta", "mithril", "verda",
)
_CLOUD_ALIASES = {"k8s": "kubernetes"}
# Kubernetes contexts and SSH node pools may contain '/', so everything after
# the cloud is one name for these.
_SINGLE_NAME_CLOUDS = frozenset({"kubernetes", "ssh"})

RECOVERY_STRATEGIES: tuple[str, ...] = ("FAILOVER", "EAGER_NEXT_REGION")
_DISK_TIERS = ("low", "medium", "high", "ultra", "best")
_STORES = ("s3", "gcs", "azure", "r2", "ibm", "oci", "nebius", "coreweave", "vastdata", "hf", "volume")
_AUTOSTOP_WAIT_FOR = ("jobs_and_ssh", "jobs", "none")
_AUTOSTOP_TIME = re.compile(r"^[0-9]+[mhdwMHDW]?$")  # SkyPilot's TIME_PATTERN: minutes by default
# SkyPilot's task names (task.py _VALID_NAME_REGEX): they become cluster and
# directory names, so what SkyPilot refuses is refused here too.
_TASK_NAME = re.compile(r"[a-zA-Z0-9]+(?:[._-]{1,2}[a-zA-Z0-9]+)*")
_TASK_NAME_RULE = ("ASCII letters, digits, and single or double '.', '_' or '-' between them "
                   "(starting and ending with a letter or digit)")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VAR_RULE = "letters, digits and _, not starting with a digit"
_NUMBER = r"\d+(?:\.\d+)?"
_CPUS = re.compile(rf"^({_NUMBER})\s*(\+?)$")
_MEMORY = re.compile(rf"^({_NUMBER})\s*([kmgt]i?b?)?\s*([+x]?)$", re.IGNORECASE)
_GPU_MEMORY = re.compile(rf"^({_NUMBER})\s*GB\+$", re.IGNORECASE)
_ACCELERATOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_PORT_RANGE = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$")
REDACTED = "<redacted>"
# Sane upper bounds. Beyond them a request is a typo or an attack, and a
# number this module lets through must fit a 64-bit SQLite integer and stay
# finite through float(): 10**400 does not.
MAX_CPUS = 100_000
MAX_MEMORY_GB = 1_000_000  # about a petabyte
MAX_ACCELERATORS = 10_000  # per node
MAX_NUM_NODES = 10_000
MAX_DISK_GB = 1_000_000
MAX_RESTARTS = 1_000_000
MAX_WHOLE = 1_000_000_000  # counts and durations with no natural bound
_NUL_MESSAGE = "contains a NUL character (\\0), which no command, name or value can hold"

# Legacy spellings SkyPilot still reads; error locations that name the new
# key are walked back to the key the user actually wrote.
_LEGACY_KEY_NAMES = {"job_recovery": "spot_recovery"}


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class SpecError(ValueError):
    """Invalid user input, located as precisely as we can.

    `file` is the path as the user gave it ("" for a command-line flag),
    `line` 1-based or None, `field` a dotted path such as
    "resources.any_of[1].cpus", a flag such as "--env", or for problems
    that belong to no field: "(yaml)" (syntax), "(document)" (a document
    that is not a task mapping, an empty file) and "(file)" (unreadable).
    """

    def __init__(
        self, file: str, line: int | None, field: str, message: str, suggestion: str | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        self.suggestion = suggestion
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.field:
            parts.append(self.field)
        text = ": ".join(parts + [self.message])
        if self.suggestion:
            text += f"; did you mean {self.suggestion!r}?"
        return text

    def __str__(self) -> str:
        return self._render()

    def __reduce__(self) -> tuple[Any, ...]:
        # The default would call SpecError(rendered_text) and fail; errors
        # cross process boundaries (controller -> client), so keep them picklable.
        return (SpecError, (self.file, self.line, self.field, self.message, self.suggestion))


def _context(exc: PydanticCustomError) -> dict[str, Any]:
    """The message, path and suggestion our own errors carry."""
    return exc.context or {}


def _fail(message: str, *path: Any, suggestion: str | None = None) -> PydanticCustomError:
    """An error for a validator to raise; `path` is relative to the validated value."""
    # The message goes through the context rather than the template so that
    # braces in user values ("{H100: 1}") are never taken as placeholders.
    return PydanticCustomError(
        "spec", "{message}", {"message": message, "path": tuple(path), "suggestion": suggestion}
    )


def _suggest(word: Any, choices: Any) -> str | None:
    if not isinstance(word, str):
        return None
    matches = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _from_yaml(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("yaml"))


def _base_dir(info: ValidationInfo) -> str | None:
    # Only files loaded from YAML are checked against the disk: a model built
    # in code, or re-read from the state DB on another machine, is trusted.
    if not info.context:
        return None
    return info.context.get("base_dir")


# --------------------------------------------------------------------------
# Value parsers (shared by the models and the command-line overrides).
# They raise PydanticCustomError, a ValueError whose str() is the message, so
# that inside a validator pydantic keeps our wording and relative `path`.
# --------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    # YAML `true` is a bool, and bool is an int: never let it pass as a count.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def normalize_infra(value: Any) -> str:
    """"AWS/us-east-1" -> "aws/us-east-1", "k8s/ctx" -> "kubernetes/ctx"."""
    if not isinstance(value, str) or not value.strip():
        raise _fail("must be a string: cloud[/region[/zone]]")
    text = value.strip()
    if text.lower().startswith("sim:"):
        text = "sim/" + text[4:]  # the table's spelling, `sim:aws/us-east-1`, pasted back
    parts = text.split("/")
    cloud = _CLOUD_ALIASES.get(parts[0].lower(), parts[0].lower())
    if cloud != "*" and cloud not in KNOWN_CLOUDS and cloud not in OTHER_SKYPILOT_CLOUDS:
        every = KNOWN_CLOUDS + OTHER_SKYPILOT_CLOUDS
        raise _fail(
            f"unknown cloud {parts[0]!r} (skytui runs on {', '.join(KNOWN_CLOUDS)}; "
            f"SkyPilot also names {', '.join(OTHER_SKYPILOT_CLOUDS)})",
            suggestion=_suggest(cloud, every),
        )
    rest = parts[1:]
    if cloud in _SINGLE_NAME_CLOUDS and rest:
        rest = ["/".join(rest)]
    if cloud == "sim" and len(rest) >= 2:
        # sim's regions carry the cloud they mirror: sim/aws/us-east-1[/zone].
        rest = ["/".join(rest[:2]), *rest[2:]]
    if len(rest) > 2:
        raise _fail(f"{value!r} has too many parts; expected cloud[/region[/zone]]")
    if any(not part.strip() or part != part.strip() for part in rest):
        raise _fail(f"{value!r} has an empty or padded part; expected cloud[/region[/zone]]")
    return "/".join([cloud, *rest])


def _legacy_infra(cloud: Any, region: Any, zone: Any) -> str:
    for key, value in (("cloud", cloud), ("region", region), ("zone", zone)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise _fail("must be a non-empty string", key)
    parts = [cloud or "*", region or ("*" if zone else None), zone]
    text = "/".join(p for p in parts if p is not None)
    try:
        return normalize_infra(text)
    except PydanticCustomError as exc:
        # Point at the legacy key that is most likely wrong: the cloud.
        raise _fail(_context(exc)["message"], "cloud" if cloud else "region", suggestion=_context(exc)["suggestion"])


def parse_cpus(value: Any) -> str:
    """4 -> "4", "4+" -> "4+", 0.5 -> "0.5"; anything else is refused."""
    if _is_number(value):
        _check_size(value, MAX_CPUS, "CPUs")
        return str(value)
    if isinstance(value, str):
        match = _CPUS.match(value.strip())
        if match and float(match.group(1)) > 0:
            _check_size(float(match.group(1)), MAX_CPUS, "CPUs")
            return match.group(1) + match.group(2)
    raise _fail(f"{value!r} is not a CPU count: expected a positive number, optionally with '+' (e.g. 4, '4+')")


def parse_memory(value: Any) -> str:
    """16 -> "16", "16+", "32GB+", "4x" (GB per CPU); anything else is refused."""
    if _is_number(value):
        _check_size(value, MAX_MEMORY_GB, "GB")
        return str(value)
    if isinstance(value, str):
        match = _MEMORY.match(value.strip())
        if match and float(match.group(1)) > 0 and not (match.group(2) and match.group(3) == "x"):
            memory = value.strip().replace(" ", "")
            _check_size(_memory_parts(memory)[0], MAX_MEMORY_GB, "GB")
            return memory
    raise _fail(
        f"{value!r} is not a memory size: expected a positive number of GB, "
        "optionally with a unit and '+' (e.g. 16, '16+', '32GB+') or 'x' for GB per CPU (e.g. '4x')"
    )


def _check_size(value: float, maximum: float, unit: str) -> None:
    """A positive, finite size no larger than `maximum`."""
    if isinstance(value, float) and math.isnan(value):
        raise _fail("must be a number, got NaN")
    if value <= 0:
        raise _fail(f"must be positive, got {_short(value)}")
    if value > maximum:  # also infinity
        raise _fail(f"must be at most {maximum} {unit}, got {_short(value)}")


def _short(value: float) -> str:
    """A number as the user wrote it, unless it is absurdly long."""
    text = str(value)
    return text if len(text) <= 20 else f"{float(value):.3g}"


def _memory_parts(memory: str) -> tuple[float, str]:
    """("32GB+") -> (32.0, "+"): the size in GB and its qualifier."""
    match = _MEMORY.match(memory)
    if match is None:  # only reachable for a model built by hand with model_construct
        raise ValueError(f"invalid memory {memory!r}")
    size = float(match.group(1))
    unit = (match.group(2) or "g")[0].lower()
    return size * UNIT_GB[unit], match.group(3)


def _parse_count(text: str, whole: str) -> float:
    try:
        count = float(text)
    except ValueError:
        raise _fail(f"{whole!r} is not a valid accelerator: count {text!r} is not a number") from None
    return _check_count(count, whole)


def _check_count(count: float, whole: str) -> float:
    if math.isnan(count):
        raise _fail(f"{whole!r} is not a valid accelerator: the count must be a number, not NaN")
    if count <= 0:
        raise _fail(f"{whole!r} is not a valid accelerator: the count must be positive")
    if count > MAX_ACCELERATORS:  # also infinity
        raise _fail(f"{whole!r} is not a valid accelerator: at most {MAX_ACCELERATORS} per node")
    if count > 1 and not count.is_integer():
        raise _fail(f"{whole!r} is not a valid accelerator: a count above 1 must be a whole number")
    return count


def parse_accelerator(text: Any) -> AcceleratorRequest:
    """One accelerator in string form: "H100", "H100:8", "80GB+", "nvidia:80GB+:1"."""
    if not isinstance(text, str) or not text.strip():
        raise _fail("an accelerator must be a string such as 'H100:8'")
    whole = text.strip()
    parts = [part.strip() for part in whole.split(":")]
    memory_at = next((i for i, part in enumerate(parts) if _GPU_MEMORY.match(part)), None)
    if memory_at is not None:
        return _accelerator_by_memory(parts, memory_at, whole)
    if len(parts) > 2:
        raise _fail(f"{whole!r} is not a valid accelerator: expected NAME[:COUNT], e.g. 'H100:8'")
    name = parts[0]
    if re.match(rf"^{_NUMBER}\s*GB$", name, re.IGNORECASE):
        # A bare size is almost always a forgotten '+', never a GPU model.
        raise _fail(f"{whole!r} is not a valid accelerator: write {name + '+'!r} for any GPU with at least {name}")
    if not _ACCELERATOR_NAME.match(name):
        raise _fail(f"{whole!r} is not a valid accelerator: {name!r} is not an accelerator name")
    count = _parse_count(parts[1], whole) if len(parts) == 2 else 1.0
    return AcceleratorRequest(name=name, count=count)


def _accelerator_by_memory(parts: list[str], memory_at: int, whole: str) -> AcceleratorRequest:
    # Allowed shapes: MEM+, MEM+:N, MAKER:MEM+, MAKER:MEM+:N.
    if memory_at > 1 or len(parts) - memory_at > 2:
        raise _fail(f"{whole!r} is not a valid accelerator: expected [MAKER:]MEMORY+[:COUNT], e.g. 'nvidia:80GB+:1'")
    manufacturer = parts[0].lower() if memory_at == 1 else None
    if manufacturer is not None and not _ACCELERATOR_NAME.match(manufacturer):
        raise _fail(f"{whole!r} is not a valid accelerator: {parts[0]!r} is not a manufacturer name")
    memory = float(_GPU_MEMORY.match(parts[memory_at]).group(1))  # type: ignore[union-attr]
    if not 0 < memory <= MAX_MEMORY_GB:
        raise _fail(f"{whole!r} is not a valid accelerator: the memory must be from 0 to {MAX_MEMORY_GB} GB")
    count = _parse_count(parts[memory_at + 1], whole) if len(parts) > memory_at + 1 else 1.0
    return AcceleratorRequest(name=None, count=count, min_memory_gb=memory, manufacturer=manufacturer)


def _parse_accelerators(value: Any, from_yaml: bool) -> tuple[list[AcceleratorRequest], bool]:
    """Any of the four YAML forms -> (requests, ordered)."""
    if value is None:
        return [], False
    if isinstance(value, str):
        return [_at(parse_accelerator, value)], False
    if isinstance(value, AcceleratorRequest):
        return [value], False
    if isinstance(value, dict):
        return [_set_member(name, count) for name, count in value.items()], False
    if isinstance(value, list):
        requests = [_list_member(item, index, from_yaml) for index, item in enumerate(value)]
        return requests, True
    raise _fail("must be 'NAME:COUNT', a set {NAME: COUNT, ...} or an ordered list ['NAME:COUNT', ...]")


def _at(parse: Any, value: Any, *path: Any) -> Any:
    """Run a parser, placing its error at `path` below the current location."""
    try:
        return parse(value)
    except PydanticCustomError as exc:
        raise _fail(_context(exc)["message"], *path, *_context(exc)["path"], suggestion=_context(exc)["suggestion"])


def _set_member(name: Any, count: Any) -> AcceleratorRequest:
    request = _at(parse_accelerator, name, name)
    if count is None:
        return request
    if not _is_number(count):
        raise _fail(f"the count of {name!r} must be a number", name)
    if ":" in name and not _GPU_MEMORY.match(name.split(":")[-1].strip()):
        raise _fail(f"{name!r} already has a count; write {name.split(':')[0]}: {count}", name)
    return request.model_copy(update={"count": _at(partial(_check_count, whole=name), float(count), name)})


def _list_member(item: Any, index: int, from_yaml: bool) -> AcceleratorRequest:
    if isinstance(item, AcceleratorRequest):
        return item
    if isinstance(item, dict) and not from_yaml:
        return AcceleratorRequest.model_validate(item)  # our own model_dump, read back
    return _at(parse_accelerator, item, index)


def parse_ports(value: Any) -> list[str]:
    """8080, "8000-8010" or a list of those -> ["8080", "8000-8010"]."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [_at(_port, item, index) if isinstance(value, list) else _port(item) for index, item in enumerate(items)]


def _port(item: Any) -> str:
    text = str(item).strip() if _is_number(item) or isinstance(item, str) else None
    match = _PORT_RANGE.match(text) if text is not None else None
    if match is None:
        raise _fail(f"{item!r} is not a port: expected a number or a range such as '8000-8010'")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if not 1 <= low <= high <= 65535:
        raise _fail(f"{item!r} is not a port: ports run from 1 to 65535, low to high")
    return f"{low}-{high}" if match.group(2) else str(low)


def _resolve_local(path: str, base_dir: str) -> str:
    """Absolute form of a local path given in a YAML file.

    SkyPilot resolves relative paths against the current directory; skytui
    resolves them against the YAML file's folder, so that a job means the same
    thing whichever directory it is launched from (and the controller daemon,
    which has its own working directory, can use the stored absolute path).
    """
    resolved = os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))
    # rsync-style sources distinguish "dir/" (contents) from "dir" (the dir).
    return resolved + "/" if path.endswith("/") and not resolved.endswith("/") else resolved


def _is_url(source: str) -> bool:
    return "://" in source


def _check_local_source(source: str, base_dir: str | None, *path: Any) -> str:
    if _is_url(source) or base_dir is None:
        return source
    resolved = _resolve_local(source, base_dir)
    if not os.path.exists(resolved):
        raise _fail(f"local source {source!r} does not exist (looked for {resolved})", *path)
    return resolved


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


class _SpecModel(BaseModel):
    # Inputs may hold secrets: keep them out of pydantic's own error text too.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # SkyPilot fields skytui does not act on: checked, kept (in `kept`, for
    # the models that have it) and warned about by the loader (_kept_fields).
    kept_fields: ClassVar[dict[str, KeptField]] = {}
    # Fields skytui itself writes (model_dump) but a user never does.
    internal_keys: ClassVar[frozenset[str]] = frozenset({"kept"})
    legacy_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def _refuse_unknown_keys(cls, data: dict[Any, Any], info: ValidationInfo) -> None:
        allowed = (set(cls.model_fields) | cls.legacy_keys) - (cls.internal_keys if _from_yaml(info) else set())
        for key in data:
            if key in allowed:
                continue
            kept = cls.kept_fields.get(key) if isinstance(key, str) else None
            if kept is None:
                raise _fail("unknown field", key, suggestion=_suggest(key, allowed | set(cls.kept_fields)))
            problem = kept.check(data[key])
            if problem:
                raise _fail(problem, key)

    @classmethod
    def _set_kept_aside(cls, data: dict[Any, Any]) -> dict[Any, Any]:
        """The data with its kept SkyPilot fields moved under `kept`."""
        kept = {key: field.keep(data[key]) for key, field in cls.kept_fields.items() if key in data}
        if not kept:
            return data
        rest = {key: value for key, value in data.items() if key not in kept}
        return {**rest, "kept": {**(rest.get("kept") or {}), **kept}}


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


class AcceleratorRequest(_SpecModel):
    """One accelerator type and how many per node: "H100:8" or "nvidia:80GB+:1"."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)

    name: str | None = None  # None only when asking by memory
    count: float = 1.0
    min_memory_gb: float | None = None
    manufacturer: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AcceleratorRequest:
        if self.name is None and self.min_memory_gb is None:
            raise _fail("an accelerator needs a name or a memory size")
        if not math.isfinite(self.count) or self.count <= 0:
            raise _fail("the accelerator count must be positive", "count")
        return self

    def __str__(self) -> str:
        count = int(self.count) if self.count.is_integer() else self.count
        if self.name is not None:
            return f"{self.name}:{count}"
        memory = self.min_memory_gb or 0.0
        memory = int(memory) if memory.is_integer() else memory
        maker = f"{self.manufacturer}:" if self.manufacturer else ""
        return f"{maker}{memory}GB+:{count}"


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

    @field_validator("infra", mode="before")
    @classmethod
    def _check_infra(cls, value: Any) -> Any:
        return None if value is None else normalize_infra(value)

    @field_validator("cpus", mode="before")
    @classmethod
    def _check_cpus(cls, value: Any) -> Any:
        return None if value is None else parse_cpus(value)

    @field_validator("memory", mode="before")
    @classmethod
    def _check_memory(cls, value: Any) -> Any:
        return None if value is None else parse_memory(value)

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


class FileMount(_SpecModel):
    """The mapping form of a `file_mounts` entry (a storage bucket)."""

    name: str | None = None
    source: str | list[str] | None = None
    store: str | None = None
    persistent: Annotated[bool, Strict()] = True
    mode: Literal["MOUNT", "COPY", "MOUNT_CACHED"] = "MOUNT"
    kept: dict[str, Any] = Field(default_factory=dict)

    kept_fields: ClassVar[dict[str, KeptField]] = STORAGE_FIELDS

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            cls._refuse_unknown_keys(data, info)
            data = cls._set_kept_aside(data)
        return data

    @field_validator("source", mode="before")
    @classmethod
    def _check_source(cls, value: Any, info: ValidationInfo) -> Any:
        base = _base_dir(info)
        if value is None:
            return None
        if isinstance(value, str) and value.strip():
            return _check_local_source(value, base)
        if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
            return [_check_local_source(v, base, index) for index, v in enumerate(value)]
        raise _fail("must be a path or URL, or a non-empty list of them")

    @field_validator("store", mode="before")
    @classmethod
    def _check_store(cls, value: Any) -> Any:
        if value is None:
            return None
        store = value.strip().lower() if isinstance(value, str) else None
        if store not in _STORES:
            raise _fail(f"must be one of {', '.join(_STORES)}", suggestion=_suggest(store, _STORES))
        return store

    @field_validator("mode", mode="before")
    @classmethod
    def _upper_mode(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_named(self) -> FileMount:
        if self.name is None and self.source is None:
            raise _fail("a storage mount needs a name or a source (or both)")
        if self.name is not None and isinstance(self.source, str) and _is_url(self.source):
            # SkyPilot's rule (storage.py): the URL names the bucket already.
            raise _fail("give the bucket either as `name:` or as a bucket URL `source:`, not both", "name")
        return self


def _file_mount_kind(value: Any) -> str:
    return "<path>" if isinstance(value, str) else "<mount>"


# A file_mounts value is a plain path/URL or a FileMount; tagging the union
# makes pydantic report FileMount errors at file_mounts.<dst>.<key> instead
# of once per union member. Tags are in <> so they never clash with a key.
_FileMountValue = Annotated[
    Union[Annotated[str, Tag("<path>")], Annotated[FileMount, Tag("<mount>")]],
    Discriminator(_file_mount_kind),
]


class PoolSpec(_SpecModel):
    """`pool:` of a pool YAML: a fixed number of workers, or autoscaling
    between min_workers and max_workers on the length of the pool's queue."""

    workers: Annotated[int, Strict(), Field(ge=0, le=10_000)] | None = None
    min_workers: Annotated[int, Strict(), Field(ge=0, le=10_000)] | None = None
    max_workers: Annotated[int, Strict(), Field(ge=1, le=10_000)] | None = None
    queue_length_threshold: Annotated[int, Strict(), Field(ge=1, le=MAX_WHOLE)] | None = None
    upscale_delay_seconds: Annotated[float, Field(ge=0, le=MAX_WHOLE, allow_inf_nan=False)] | None = None
    downscale_delay_seconds: Annotated[float, Field(ge=0, le=MAX_WHOLE, allow_inf_nan=False)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if data is None:
            raise _fail("must be a mapping: {workers: N} or {min_workers, max_workers}")
        if isinstance(data, dict):
            cls._refuse_unknown_keys(data, info)
        return data

    @model_validator(mode="after")
    def _check_shape(self) -> PoolSpec:
        autoscaling = {
            name for name in ("min_workers", "max_workers", "queue_length_threshold",
                              "upscale_delay_seconds", "downscale_delay_seconds")
            if getattr(self, name) is not None
        }
        if self.workers is not None and autoscaling:
            raise _fail(f"give either workers or autoscaling ({', '.join(sorted(autoscaling))}), not both",
                        sorted(autoscaling)[0])
        if self.workers is None and self.max_workers is None:
            if autoscaling:
                raise _fail("autoscaling needs max_workers", sorted(autoscaling)[0])
            raise _fail("needs workers: N, or min_workers and max_workers")
        if self.min_workers is not None and self.max_workers is not None and self.min_workers > self.max_workers:
            raise _fail(f"min_workers ({self.min_workers}) is greater than max_workers ({self.max_workers})",
                        "min_workers")
        return self

    @property
    def autoscaling(self) -> bool:
        return self.workers is None


class Task(_SpecModel):
    """One task document of a task YAML."""

    name: str | None = None
    workdir: str | dict[str, str] | None = None
    num_nodes: Annotated[int, Strict(), Field(ge=1, le=MAX_NUM_NODES)] = 1
    resources: Resources = Field(default_factory=Resources)
    envs: dict[str, str] = Field(default_factory=dict)
    # repr=False keeps secret values out of repr()/str() of the task and of
    # everything that contains it (Pipeline, logs of a model, tracebacks).
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)
    file_mounts: dict[str, _FileMountValue] = Field(default_factory=dict)
    setup: str | None = None
    run: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    pool: PoolSpec | None = None  # only in a pool YAML (load_pool)

    # Secrets the YAML names without a value (`HF_TOKEN:` or `secrets:HF_TOKEN`):
    # SkyPilot resolves them at launch from --secret or its secrets manager;
    # skytui has no manager, so a launch needs --secret for each.
    secrets_wanted: list[str] = Field(default_factory=list)
    kept: dict[str, Any] = Field(default_factory=dict)

    kept_fields: ClassVar[dict[str, KeptField]] = TASK_FIELDS
    internal_keys: ClassVar[frozenset[str]] = frozenset({"kept", "secrets_wanted"})

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            cls._refuse_unknown_keys(data, info)
            data = cls._set_kept_aside(data)
            if isinstance(data.get("secrets"), dict) and None in data["secrets"].values():
                data = cls._set_wanted_secrets_aside(data, info)
            # `resources:` with nothing under it is an empty mapping to a user.
            if "resources" in data and data["resources"] is None:
                data = {**data, "resources": {}}
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: Any) -> Any:
        if isinstance(value, str) and not _TASK_NAME.fullmatch(value):
            raise _fail(f"{value!r} is not a valid task name: {_TASK_NAME_RULE}")
        return value

    @field_validator("workdir", mode="before")
    @classmethod
    def _check_workdir(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if isinstance(value, dict):
            return _check_git_workdir(value)
        if not isinstance(value, str) or not value.strip():
            raise _fail("must be a directory path or a mapping {url, ref}")
        base = _base_dir(info)
        if base is None:
            return value
        resolved = _resolve_local(value, base)
        if not os.path.isdir(resolved):
            raise _fail(f"directory {value!r} does not exist (looked for {resolved})")
        return resolved

    @staticmethod
    def _set_wanted_secrets_aside(data: dict[Any, Any], info: ValidationInfo) -> dict[Any, Any]:
        secrets = data["secrets"]
        wanted = [key for key, value in secrets.items() if value is None]
        if not (info.context and info.context.get("spec_only")):
            raise _fail(f"has no value; give it with --secret {wanted[0]}=VALUE (skytui has no secrets manager)",
                        "secrets", wanted[0])
        for key in wanted:
            if not isinstance(key, str) or not _VAR_NAME.match(key):
                raise _fail(f"{key!r} is not a valid variable name ({_VAR_RULE})", "secrets", key)
        valued = {key: value for key, value in secrets.items() if value is not None}
        return {**data, "secrets": valued, "secrets_wanted": [*data.get("secrets_wanted", []), *wanted]}

    @field_validator("envs", "secrets", mode="before")
    @classmethod
    def _check_variables(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_variables(value, info.field_name or "envs")

    @field_validator("file_mounts", mode="before")
    @classmethod
    def _check_file_mounts(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _fail("must be a mapping of remote path to local path, URL or storage mapping")
        checked: dict[Any, Any] = {}
        for destination, source in value.items():
            if not isinstance(destination, str) or not destination.strip():
                raise _fail("a mount destination must be a path", destination)
            if isinstance(source, str):
                if not source.strip():
                    raise _fail("the source must not be empty", destination)
                source = _check_local_source(source, _base_dir(info), destination)
            elif not isinstance(source, (dict, FileMount)):
                raise _fail("must be a local path, a URL, or a storage mapping", destination)
            checked[destination] = source
        return checked

    @field_validator("config", mode="before")
    @classmethod
    def _check_config(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _fail("must be a mapping")
        return value

    def redacted(self) -> dict[str, Any]:
        """A JSON-able dict of the task, every secret value replaced."""
        data = self.model_dump(mode="json")
        data["secrets"] = {key: REDACTED for key in self.secrets}
        return data


def _check_git_workdir(value: dict[Any, Any]) -> dict[Any, Any]:
    for key in value:
        if key not in ("url", "ref"):
            raise _fail("unknown field", key, suggestion=_suggest(key, ("url", "ref")))
    if not isinstance(value.get("url"), str) or not value["url"].strip():
        raise _fail("a git workdir needs a url", "url" if "url" in value else ())
    if "ref" in value and not isinstance(value["ref"], str):
        raise _fail("must be a branch, tag or commit", "ref")
    return value


def _check_variables(value: Any, kind: str) -> dict[str, str]:
    """Checks envs or secrets; error messages name keys, never values."""
    flag = "--env" if kind == "envs" else "--secret"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail("must be a mapping of NAME: value")
    checked: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _VAR_NAME.match(key):
            raise _fail(f"{key!r} is not a valid variable name ({_VAR_RULE})", key)
        if item is None:
            raise _fail(f"has no value; give it one in the YAML or with {flag} {key}=VALUE", key)
        if isinstance(item, (bool, int, float)):
            item = str(item)  # what SkyPilot does with YAML numbers and booleans
        if not isinstance(item, str):
            raise _fail("must be a string or a number", key)
        checked[key] = item
    return checked


class Pipeline(BaseModel):
    """A job: one task, or a pipeline of tasks run one after another."""

    model_config = ConfigDict(hide_input_in_errors=True)

    name: str
    tasks: list[Task]
    source: str  # the YAML file as the user named it
    has_header: bool = False  # the file began with a `name:`-only header document
    warnings: list[str] = Field(default_factory=list)  # for the CLI to print on stderr
    # A job group (header `execution: parallel`): every task runs at once;
    # the group follows its primary tasks (all of them when none are named).
    execution: Literal["serial", "parallel"] = "serial"
    primary_tasks: list[str] = Field(default_factory=list)
    # How long an auxiliary task runs on after the primaries all succeeded,
    # in seconds, by task name or "default".
    termination_delay_s: dict[str, float] = Field(default_factory=dict)

    def is_primary(self, task_name: str) -> bool:
        return not self.primary_tasks or task_name in self.primary_tasks

    @property
    def is_pipeline(self) -> bool:
        return len(self.tasks) > 1 or self.has_header

    @property
    def is_group(self) -> bool:
        return self.execution == "parallel"

    def redacted(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"tasks"})
        data["tasks"] = [task.redacted() for task in self.tasks]
        return data


class Overrides(BaseModel):
    """Launch flags, applied on top of the YAML to every task.

    Values are kept as the user typed them; `load_pipeline` checks them and
    refuses bad ones with a SpecError naming the flag.
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: str | None = None
    envs: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)
    env_file: str | None = None
    infra: str | None = None
    use_spot: bool | None = None
    gpus: str | None = None
    cpus: str | None = None
    memory: str | None = None
    num_nodes: int | None = None


# --------------------------------------------------------------------------
# Command-line flags
# --------------------------------------------------------------------------


def parse_env_flag(value: str) -> tuple[str, str]:
    """`--env K=V` -> (K, V); `--env K` takes K from this process's environment."""
    key, sep, item = value.partition("=")
    if not sep:
        if not _VAR_NAME.match(value):
            raise SpecError("", None, "--env", f"{value!r} is not KEY=VALUE")
        if value not in os.environ:
            raise SpecError("", None, "--env", f"{value!r} is not set in the environment; use --env {value}=VALUE")
        return value, os.environ[value]
    if not _VAR_NAME.match(key):
        raise SpecError("", None, "--env", f"{key!r} is not a valid variable name ({_VAR_RULE})")
    return key, item


def read_env_file(path: str) -> dict[str, str]:
    """A dotenv file: KEY=VALUE lines, optional `export`, # comments, quotes."""
    text = read_text_file(path, "--env-file")
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        entry = _env_file_line(line)
        if entry is None:
            continue
        if entry is False:
            # Never echo the line: env files hold secrets.
            raise SpecError(path, number, "--env-file", "expected KEY=VALUE")
        if "\0" in entry[1]:
            raise SpecError(path, number, "--env-file", f"{entry[0]}: {_NUL_MESSAGE}")
        values[entry[0]] = entry[1]
    return values


def _env_file_line(line: str) -> tuple[str, str] | None | Literal[False]:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    if stripped.startswith("export "):
        stripped = stripped[len("export ") :].lstrip()
    key, sep, value = stripped.partition("=")
    key = key.strip()
    if not sep or not _VAR_NAME.match(key):
        return False
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return key, value[1:-1]
    # Like python-dotenv: an unquoted value ends where " #" starts a comment.
    return key, value.split(" #", 1)[0].rstrip()


@dataclass
class _CheckedOverrides:
    name: str | None = None
    envs: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    resources: dict[str, Any] = field(default_factory=dict)
    num_nodes: int | None = None


def _flag_error(flag: str, exc: PydanticCustomError) -> SpecError:
    return SpecError("", None, flag, _context(exc)["message"], _context(exc)["suggestion"])


def _check_overrides(overrides: Overrides) -> _CheckedOverrides:
    _refuse_nul_in_flags(overrides)
    checked = _CheckedOverrides()
    if overrides.name is not None:
        if not _TASK_NAME.fullmatch(overrides.name):
            raise SpecError("", None, "--name", f"{overrides.name!r} is not a valid name: {_TASK_NAME_RULE}")
        checked.name = overrides.name
    if overrides.env_file is not None:
        checked.envs.update(read_env_file(overrides.env_file))
    flags = (("--env", overrides.envs, checked.envs), ("--secret", overrides.secrets, checked.secrets))
    for flag, source, target in flags:
        for key, value in source.items():
            if not _VAR_NAME.match(key):
                raise SpecError("", None, flag, f"{key!r} is not a valid variable name")
            target[key] = value
    checked.resources = _check_resource_flags(overrides)
    if overrides.num_nodes is not None:
        if not 1 <= overrides.num_nodes <= MAX_NUM_NODES:
            message = f"must be from 1 to {MAX_NUM_NODES}, got {_short(overrides.num_nodes)}"
            raise SpecError("", None, "--num-nodes", message)
        checked.num_nodes = overrides.num_nodes
    return checked


def _refuse_nul_in_flags(overrides: Overrides) -> None:
    """Flags typed in the TUI or passed by code may carry a NUL (argv cannot)."""
    flags: list[tuple[str, Any]] = [
        ("--name", overrides.name), ("--env-file", overrides.env_file), ("--infra", overrides.infra),
        ("--gpus", overrides.gpus), ("--cpus", overrides.cpus), ("--memory", overrides.memory),
    ]
    flags += [("--env", f"{key}={value}") for key, value in overrides.envs.items()]
    flags += [("--secret", f"{key}={value}") for key, value in overrides.secrets.items()]
    for flag, value in flags:
        if isinstance(value, str) and "\0" in value:
            raise SpecError("", None, flag, _NUL_MESSAGE)


def _check_resource_flags(overrides: Overrides) -> dict[str, Any]:
    update: dict[str, Any] = {}
    parsers = (
        ("infra", "--infra", normalize_infra),
        ("cpus", "--cpus", parse_cpus),
        ("memory", "--memory", parse_memory),
    )
    for name, flag, parse in parsers:
        value = getattr(overrides, name)
        if value is not None:
            try:
                update[name] = parse(value)
            except PydanticCustomError as exc:
                raise _flag_error(flag, exc) from None
    if overrides.gpus is not None:
        try:
            update["accelerators"] = [parse_accelerator(overrides.gpus)]
        except PydanticCustomError as exc:
            raise _flag_error("--gpus", exc) from None
        update["accelerators_ordered"] = False
    if overrides.use_spot is not None:
        update["use_spot"] = overrides.use_spot
    return update


def _override_resources(resources: Resources, update: dict[str, Any]) -> Resources:
    # Like SkyPilot's set_resources_override: the flag wins on every
    # candidate, including any_of/ordered entries that set the field.
    if not update:
        return resources
    alternatives = {
        kind: [entry.model_copy(update=update) for entry in getattr(resources, kind)] for kind in ("any_of", "ordered")
    }
    return resources.model_copy(update={**update, **alternatives})


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


# (cloud, region, instance_type) -> (certain, why) when a catalog lacks the
# type; given by the caller (the catalogs are the clouds' business, not the spec's).
InstanceTypeCheck = Callable[[str | None, str | None, str], "tuple[bool, str] | None"]


def load_pipeline(
    path: str | os.PathLike[str], overrides: Overrides | None = None, *, spec_only: bool = False,
    instance_types: InstanceTypeCheck | None = None,
) -> Pipeline:
    """Read a task, pipeline or job group YAML file; SpecError on any invalid input.

    `spec_only` (what `skytui validate` asks): SkyPilot's verdict on the spec
    alone. Local paths that do not exist here, and secrets left for --secret,
    are then warnings instead of errors: they are this machine's business at
    launch, not the spec's. `instance_types` judges named instance types: a
    certain miss is an error, a likely one a warning."""
    file = os.fspath(path)
    text = read_text_file(file, "(file)")
    return load_pipeline_text(text, file, overrides, spec_only=spec_only, instance_types=instance_types)


def load_pipeline_text(
    text: str, file: str, overrides: Overrides | None = None, *, spec_only: bool = False,
    instance_types: InstanceTypeCheck | None = None,
) -> Pipeline:
    """Parse YAML text as if read from `file` (used for messages and relative paths)."""
    checked = _check_overrides(overrides or Overrides())
    documents = _read_documents(text, file)
    header, task_documents = _split_header(documents, file)
    context = _load_context(file, spec_only)
    tasks = [_load_task(document, file, checked, context) for document in task_documents]
    for task, document in zip(tasks, task_documents):
        if task.pool is not None:
            raise SpecError(
                file, document.line_of(("pool",)), "pool",
                "this is a pool YAML: create the pool with `skytui jobs pool apply -p NAME FILE`, "
                "then launch jobs into it with `skytui jobs launch -p NAME JOB.yaml`",
            )
    group = header is not None and header.data.get("execution") == "parallel"
    if group:
        assert header is not None
        _check_group(header, task_documents, file)
    name = _job_name(header, tasks, file, checked)
    tasks = _named_tasks(tasks, name, header is not None, checked)
    _check_unique_names(tasks, task_documents, file)
    warnings = [
        warning for task, document in zip(tasks, task_documents)
        for warning in _load_warnings(task, document, file, spec_only, instance_types)
    ]
    group_fields: dict[str, Any] = {}
    if group:
        assert header is not None
        group_fields = {
            "execution": "parallel", "primary_tasks": list(header.data.get("primary_tasks") or []),
            "termination_delay_s": _termination_delays(header.data.get("termination_delay")),
        }
    return Pipeline(
        name=name, tasks=tasks, source=file, has_header=header is not None, warnings=warnings, **group_fields
    )


def _load_context(file: str, spec_only: bool) -> dict[str, Any]:
    # Without a base directory no local path is looked for (_base_dir).
    return {"yaml": True, "spec_only": spec_only,
            "base_dir": None if spec_only else os.path.dirname(os.path.abspath(file))}


@dataclass(frozen=True)
class PoolDefinition:
    """A pool YAML: the workers' task (resources, setup, workdir, file_mounts,
    envs; no run) and how many workers to keep."""

    task: Task
    spec: PoolSpec
    source: str
    warnings: list[str] = field(default_factory=list)  # for the CLI to print on stderr


def load_pool(
    path: str | os.PathLike[str], overrides: Overrides | None = None, *, spec_only: bool = False,
    instance_types: InstanceTypeCheck | None = None,
) -> PoolDefinition:
    """Read a pool YAML; SpecError (file, line, field) on anything a pool
    cannot be. `spec_only` as in `load_pipeline`."""
    file = os.fspath(path)
    text = read_text_file(file, "(file)")
    checked = _check_overrides(overrides or Overrides())
    documents = _read_documents(text, file)
    if len(documents) != 1:
        raise SpecError(file, documents[1].start_line, "(document)", "a pool YAML is a single task document")
    document = documents[0]
    if not isinstance(document.data, dict):
        raise SpecError(file, document.start_line, "(document)", "a pool YAML must be a mapping of fields")
    task = _load_task(document, file, checked, _load_context(file, spec_only))
    data = document.data

    def refuse(path: tuple[Any, ...], message: str) -> SpecError:
        return SpecError(file, document.line_of(path), _dotted(path), message)

    if task.pool is None:
        raise SpecError(file, document.start_line, "pool",
                        "missing: a pool YAML needs a `pool:` section, e.g. `pool: {workers: 2}`")
    pool = task.pool
    warnings = _load_warnings(task, document, file, spec_only, instance_types)
    if task.run is not None:
        # As SkyPilot: each job brings its own run; the pool's is ignored.
        warnings.append(f"{file}:{document.line_of(('run',))}: run: ignored in a pool YAML "
                        "(each job launched into the pool brings its own; setup runs once per worker)")
        task = task.model_copy(update={"run": None})
    if task.num_nodes != 1:
        raise refuse(("num_nodes",), "pool workers are single machines; drop num_nodes")
    raw_resources = data.get("resources")
    resources: dict[Any, Any] = raw_resources if isinstance(raw_resources, dict) else {}
    if "ordered" in resources:
        raise refuse(("resources", "ordered"), "pools take any_of, not ordered: every worker is placed on its own")
    if "job_recovery" in resources or "spot_recovery" in resources:
        key = "job_recovery" if "job_recovery" in resources else "spot_recovery"
        raise refuse(("resources", key), "job_recovery belongs to the jobs launched into the pool, not to the pool")
    for index, entry in enumerate(resources.get("any_of") or []):
        if isinstance(entry, dict) and "job_recovery" in entry:
            raise refuse(("resources", "any_of", index, "job_recovery"),
                         "job_recovery belongs to the jobs launched into the pool, not to the pool")
    name = task.name or Path(file).stem
    return PoolDefinition(task=task.model_copy(update={"name": name}), spec=pool, source=file,
                          warnings=warnings)


def read_text_file(file: str, field: str) -> str:
    """A UTF-8 text file of at most MAX_BYTES; SpecError naming `field` otherwise.

    Only MAX_BYTES + 1 bytes are ever read, so /dev/zero or a huge file is
    refused at once instead of filling memory.
    """
    try:
        with open(file, "rb") as stream:
            data = stream.read(MAX_BYTES + 1)
            status = os.fstat(stream.fileno())
    except FileNotFoundError:
        raise SpecError(file, None, field, "no such file") from None
    except OSError as exc:
        raise SpecError(file, None, field, f"cannot read it: {exc.strerror or exc}") from None
    except ValueError:  # a NUL in the path itself
        raise SpecError(file.replace("\0", "\\0"), None, field, "not a valid path") from None
    if len(data) > MAX_BYTES:
        size = status.st_size if stat.S_ISREG(status.st_mode) and status.st_size > MAX_BYTES else None
        raise SpecError(file, None, field, too_large_message(size))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(file, None, field, "not a UTF-8 text file") from None
    # What text-mode reading did before: universal newlines.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _read_documents(text: str, file: str) -> list[YamlDocument]:
    try:
        documents = load_documents(text)
    except YamlProblem as problem:
        field_path = _dotted(problem.path) if problem.path else "(yaml)"
        raise SpecError(file, problem.line, field_path, problem.message) from None
    if not documents:
        raise SpecError(file, 1, "(document)", "the file is empty; a task needs at least a `run:` command")
    return documents


def _split_header(documents: list[YamlDocument], file: str) -> tuple[YamlDocument | None, list[YamlDocument]]:
    """Separate the optional header: a pipeline's (`name`, `execution:
    serial`) or a job group's (`execution: parallel`, SkyPilot's dag_utils)."""
    first = documents[0]
    data = first.data
    is_header = isinstance(data, dict) and (
        data.get("execution") == "parallel"
        or (
            "name" in data
            and set(data) <= {"name", "execution"}
            # A lone `name: x` document is a (do-nothing) task, as in SkyPilot.
            and (len(documents) > 1 or "execution" in data)
        )
    )
    for document in documents[1:] if is_header else documents:
        if not isinstance(document.data, dict):
            kind = type(document.data).__name__
            message = f"a task must be a mapping of fields, not a {kind}"
            raise SpecError(file, document.start_line, "(document)", message)
    if not is_header:
        return None, documents
    _check_header(first, file)
    if len(documents) == 1:
        kind = "job group" if data.get("execution") == "parallel" else "pipeline"
        raise SpecError(file, first.start_line, "(document)", f"the {kind} header is not followed by any task")
    return first, documents[1:]


def _check_header(header: YamlDocument, file: str) -> None:
    if "name" not in header.data:
        raise SpecError(file, header.start_line, "name", "missing: a job group header needs a name")
    name = header.data["name"]
    if not isinstance(name, str) or not name.strip():
        raise SpecError(file, header.line_of(("name",)), "name", "must be a non-empty string")
    execution = header.data.get("execution", "serial")
    if execution not in ("serial", "parallel"):
        raise SpecError(file, header.line_of(("execution",)), "execution",
                        "must be 'serial' (a pipeline) or 'parallel' (a job group)")


# SkyPilot's job group header (dag_utils._JOB_GROUP_HEADER_FIELDS); its group
# and job names must be safe as host names: letters, digits, '-' and '_'.
_GROUP_FIELDS = ("name", "execution", "primary_tasks", "termination_delay", "inter_connection")
_GROUP_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_DURATION_S = re.compile(r"^[0-9]+[smhdwSMHDW]?$")


_SECONDS_PER = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _termination_delays(value: Any) -> dict[str, float]:
    """termination_delay as seconds by task name (or "default"); already checked."""
    if value is None:
        return {}
    items = value.items() if isinstance(value, dict) else [("default", value)]
    delays: dict[str, float] = {}
    for key, item in items:
        text = str(item).lower()
        unit = text[-1] if text[-1] in _SECONDS_PER else "s"
        delays[str(key)] = float(text.rstrip("smhdw")) * _SECONDS_PER[unit]
    return delays


def _check_group(header: YamlDocument, documents: list[YamlDocument], file: str) -> None:
    """SkyPilot's job group rules (dag_utils._load_job_group)."""
    data = header.data

    def refuse(path: tuple[Any, ...], message: str, line: int | None = None) -> SpecError:
        return SpecError(file, line or header.line_of(path), _dotted(path), message)

    if not _GROUP_NAME.match(str(data["name"])):
        raise refuse(("name",), f"{data['name']!r} is not a valid job group name: letters, digits, '-' and '_'")
    names: list[str] = []
    for document in documents:
        name = document.data.get("name")
        if name is None:
            raise SpecError(file, document.start_line, "name", "missing: every task of a job group needs a name")
        if not isinstance(name, str) or not _GROUP_NAME.match(name):
            raise SpecError(file, document.line_of(("name",)), "name",
                            f"{name!r} is not a valid job group task name: letters, digits, '-' and '_'")
        names.append(name)
    primary = data.get("primary_tasks")
    if primary is not None:
        if not isinstance(primary, list):
            raise refuse(("primary_tasks",), "must be a list of task names")
        for index, item in enumerate(primary):
            if item not in names:
                raise refuse(("primary_tasks", index),
                             f"{item!r} is not a task of this group (tasks: {', '.join(names)})",
                             header.line_of(("primary_tasks", index)))
    delay = data.get("termination_delay")
    if delay is not None:
        items = delay.items() if isinstance(delay, dict) else [(None, delay)]
        for key, value in items:
            path = ("termination_delay",) if key is None else ("termination_delay", key)
            if key is not None and key != "default" and key not in names:
                raise refuse(path, f"{key!r} is not a task of this group (or 'default')")
            if isinstance(value, bool) or not isinstance(value, (str, int)) or not _DURATION_S.match(str(value)):
                raise refuse(path, 'must be a duration such as 30, "30s", "5m" or "1h"')
    if "inter_connection" in data and not isinstance(data["inter_connection"], bool):
        raise refuse(("inter_connection",), "must be true or false")


def _load_task(document: YamlDocument, file: str, checked: _CheckedOverrides, context: dict[str, Any]) -> Task:
    raw = dict(document.data)
    if "secrets" in raw:
        raw["secrets"] = _secret_references(raw["secrets"], document, file)
    # Flags are merged before validation so that an env left null in the YAML
    # ("give it with --env") is only refused when no flag supplies it.
    for key, values in (("envs", checked.envs), ("secrets", checked.secrets)):
        if values and (raw.get(key) is None or isinstance(raw.get(key), dict)):
            raw[key] = {**(raw.get(key) or {}), **values}
    _fill_in_envs(raw)
    try:
        task = Task.model_validate(raw, context=context)
    except ValidationError as exc:
        raise _spec_error(exc, document, file) from None
    update: dict[str, Any] = {}
    if checked.resources:
        update["resources"] = _override_resources(task.resources, checked.resources)
    if checked.num_nodes is not None:
        update["num_nodes"] = checked.num_nodes
    return task.model_copy(update=update) if update else task


_SECRET_SCOPES = ("personal.", "workspace.", "global.")


def _secret_references(value: Any, document: YamlDocument, file: str) -> Any:
    """SkyPilot's secret forms as one mapping of NAME to value (None: to be
    given at launch): `[secrets:NAME]`, `{secrets:NAME: null}` and `{NAME: null}`
    all ask for NAME; a scope (`secrets:workspace.NAME`) is SkyPilot's
    secrets manager's and is dropped."""

    def reference(item: str) -> str:
        name = item.removeprefix("secrets:")
        for scope in _SECRET_SCOPES:
            name = name.removeprefix(scope)
        return name

    if isinstance(value, list):
        names: dict[str, Any] = {}
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.startswith("secrets:"):
                raise SpecError(file, document.line_of(("secrets", index)), f"secrets[{index}]",
                                "in the list form each item is a reference, secrets:NAME; "
                                "for a value, use the mapping form NAME: value")
            names[reference(item)] = None
        return names
    if not isinstance(value, dict) or not any(isinstance(key, str) and key.startswith("secrets:") for key in value):
        return value
    named: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(key, str) and key.startswith("secrets:"):
            if item is not None:
                raise SpecError(file, document.line_of(("secrets", key)), f"secrets.{key}",
                                "a reference (secrets:NAME) takes no value; for a value, drop the secrets: prefix")
            key = reference(key)
        named[key] = item
    return named


# SkyPilot's substitution (task.py _fill_in_env_vars): $NAME and ${NAME} in
# file_mounts (paths, bucket names, sources) and workdir, for NAME in envs.
# Secrets are not substituted here: a path would carry their value into the
# stored spec, the TUI and logs.
_ENV_REFERENCE = re.compile(r"\$\{?\b([a-zA-Z_][a-zA-Z0-9_]*)\b\}?")


def _fill_in_envs(raw: dict[Any, Any]) -> None:
    envs = raw.get("envs")
    if not isinstance(envs, dict) or not envs:
        return
    values = {str(key): str(value) for key, value in envs.items() if value is not None and not isinstance(value, dict)}

    def fill(node: Any) -> Any:
        if isinstance(node, str):
            return _ENV_REFERENCE.sub(lambda match: values.get(match.group(1), match.group(0)), node)
        if isinstance(node, dict):
            return {fill(key): fill(item) for key, item in node.items()}
        if isinstance(node, list):
            return [fill(item) for item in node]
        return node

    for key in ("file_mounts", "workdir"):
        if raw.get(key) is not None:
            raw[key] = fill(raw[key])


def _job_name(header: YamlDocument | None, tasks: list[Task], file: str, checked: _CheckedOverrides) -> str:
    if checked.name is not None:
        return checked.name
    if header is not None:
        return str(header.data["name"])
    if len(tasks) == 1 and tasks[0].name is not None:
        return tasks[0].name
    # SkyPilot leaves such a job unnamed; the file stem reads better in logs.
    return Path(file).stem or "task"


def _named_tasks(tasks: list[Task], job_name: str, has_header: bool, checked: _CheckedOverrides) -> list[Task]:
    if len(tasks) == 1 and not has_header:
        if checked.name is not None or tasks[0].name is None:
            return [tasks[0].model_copy(update={"name": job_name})]
        return tasks
    # SkyPilot's dag_utils: unnamed pipeline tasks are <job>-<index>, 0-based.
    return [t if t.name is not None else t.model_copy(update={"name": f"{job_name}-{i}"}) for i, t in enumerate(tasks)]


def _check_unique_names(tasks: list[Task], documents: list[YamlDocument], file: str) -> None:
    first_seen: dict[str, int] = {}
    for task, document in zip(tasks, documents):
        assert task.name is not None
        line = document.line_of(("name",))
        if task.name in first_seen:
            raise SpecError(
                file,
                line,
                "name",
                f"task name {task.name!r} is already used at line {first_seen[task.name]}; "
                "pipeline task names must be unique",
            )
        first_seen[task.name] = line


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


# --------------------------------------------------------------------------
# Translating pydantic errors back to what the user wrote
# --------------------------------------------------------------------------


def _spec_error(exc: ValidationError, document: YamlDocument, file: str) -> SpecError:
    """The first (by line) of the validation errors, located in the file."""
    errors = [_locate(error, document, file) for error in exc.errors(include_url=False, include_input=False)]
    return min(errors, key=lambda error: error.line if error.line is not None else math.inf)


def _locate(error: Any, document: YamlDocument, file: str) -> SpecError:
    context = error.get("ctx") or {}
    location = [seg for seg in error["loc"] if not _is_internal_segment(seg)]
    location += list(context.get("path", ()))
    raw_path = _raw_path(document.data, location)
    leftover = location[len(raw_path) :]
    message = _message(error, leftover)
    return SpecError(file, document.line_of(raw_path), _dotted(raw_path), message, context.get("suggestion"))


def _is_internal_segment(segment: Any) -> bool:
    # '[key]' marks dict-key errors; '<...>' are our union tags.
    return isinstance(segment, str) and (segment == "[key]" or (segment.startswith("<") and segment.endswith(">")))


def _raw_path(data: Any, location: list[Any]) -> tuple[Any, ...]:
    """The longest prefix of `location` that exists in the document as written."""
    path: list[Any] = []
    node = data
    for segment in location:
        if isinstance(node, dict):
            key = segment if _has_key(node, segment) else _LEGACY_KEY_NAMES.get(segment)
            if key is None or not _has_key(node, key):
                break
            path.append(key)
            node = node[key]
        elif isinstance(node, list) and isinstance(segment, int) and 0 <= segment < len(node):
            path.append(segment)
            node = node[segment]
        else:
            break
    return tuple(path)


def _has_key(node: dict[Any, Any], key: Any) -> bool:
    try:
        return key in node
    except TypeError:
        return False


def _message(error: Any, leftover: list[Any]) -> str:
    kind = error["type"]
    if kind == "missing" and leftover:
        return f"{leftover[-1]!r} is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a mapping"
    if kind == "list_type":
        return "must be a list"
    friendly = _FRIENDLY_MESSAGES.get(kind)
    if friendly is not None:
        return friendly.format(**(error.get("ctx") or {}))
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


# Pydantic's wording for the common cases, said the way the rest of our messages are.
_FRIENDLY_MESSAGES = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "finite_number": "must be a finite number, not NaN or infinity",
}


def _dotted(path: tuple[Any, ...] | list[Any]) -> str:
    text = ""
    for segment in path:
        if isinstance(segment, int) and not isinstance(segment, bool):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else str(segment)
    return text
