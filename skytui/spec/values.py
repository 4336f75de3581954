"""Value parsers and the vocabulary of the spec: infra strings, CPU and
memory sizes, accelerators, ports, local paths, and their bounds.

Shared by the models and the command-line overrides. Owns the constants the
models check against (clouds, strategies, name rules, upper bounds) and the
AcceleratorRequest model an accelerator string parses to. May touch
`errors`, `base` and `sizes`.
"""

from __future__ import annotations

import math
import os
import re
from functools import partial
from typing import Any

from pydantic import ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from skytui.spec.base import _SpecModel
from skytui.spec.errors import _context, _fail, _suggest
from skytui.spec.sizes import UNIT_GB

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
    request: AcceleratorRequest = _at(parse_accelerator, name, name)
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
    request: AcceleratorRequest = _at(parse_accelerator, item, index)
    return request


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
