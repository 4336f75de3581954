"""A stored `resources:` back in the user's words: what the job view shows.

The stored spec is pydantic's dump (`stored`): every field, defaults and
None included, accelerators as a list of dicts with float counts. Here it is
turned back into the terms a task YAML uses (`accelerators: {H100: 8, H200:
8}`, `use_spot: true`, `job_recovery: {strategy: FAILOVER, ...}`, `cpus:
4+`), omitting what the user left at its default, and rendered as YAML that
loads again to the same resources.

Pure: reads a dict, imports nothing from skytui (PyYAML only, when rendering).
"""

from __future__ import annotations

import re
from typing import Any

# Written by skytui itself, never by a user (`Resources.internal_keys`), or
# read below with the field they qualify.
_INTERNAL = frozenset({"accelerators_ordered", "kept"})
_JOB_RECOVERY_DEFAULTS: dict[str, Any] = {"strategy": None, "max_restarts_on_errors": 0, "recover_on_exit_codes": []}
_NUMBER_TEXT_FIELDS = ("cpus", "memory")
_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]*\.[0-9]+")
_UNWRAPPED = 1 << 16
"""A line width PyYAML never reaches: one field, one line."""


def written_resources(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored Resources dict as the YAML mapping a user would write for it.

    Fields at their default (None, an empty list or mapping) are left out;
    the accelerators take the form that says what was asked (one
    `NAME:COUNT`, a set `{NAME: COUNT}`, an ordered list `[NAME:COUNT]`);
    SkyPilot's fields skytui keeps but does not act on are shown where the
    user wrote them. Keys keep the model's order, the order of SkyPilot's docs.
    """
    written: dict[str, Any] = {}
    for key, value in stored.items():
        if key in _INTERNAL or _is_empty(value):
            continue
        if key == "accelerators":
            written[key] = _accelerators(value, ordered=bool(stored.get("accelerators_ordered")))
        elif key == "job_recovery":
            recovery = _job_recovery(value)
            if recovery is not None:
                written[key] = recovery
        elif key in ("any_of", "ordered"):
            written[key] = [written_resources(entry) for entry in value]
        elif key in _NUMBER_TEXT_FIELDS:
            written[key] = _number_if_plain(value)
        elif key == "ports":
            written[key] = [_number_if_plain(port) for port in value]
        else:
            written[key] = value
    for key, value in (stored.get("kept") or {}).items():
        if not _is_empty(value):
            written[key] = value
    return written


def resources_yaml(stored: dict[str, Any]) -> str:
    """`written_resources` as YAML text: a line per field, its small mappings
    and lists in flow style (`accelerators: {H100: 8, H200: 8}`), `any_of` and
    `ordered` a line per entry; empty when nothing was asked."""
    import yaml  # loaded by whoever shows a spec, not by every importer of spec

    def flow(value: Any) -> str:
        text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, allow_unicode=True, width=_UNWRAPPED)
        return str(text).rstrip("\n")

    lines: list[str] = []
    for key, value in written_resources(stored).items():
        if isinstance(value, list) and all(isinstance(entry, dict) for entry in value):
            lines.append(f"{key}:")
            lines.extend(f"- {flow(entry)}" for entry in value)
        elif isinstance(value, (dict, list)):
            lines.append(f"{key}: {flow(value)}")
        else:
            # Block style: a scalar is quoted only where YAML needs it (`accelerators: H100:8`).
            block = yaml.safe_dump({key: value}, default_flow_style=False, allow_unicode=True, width=_UNWRAPPED)
            lines.append(str(block).rstrip("\n"))
    return "".join(f"{line}\n" for line in lines)


def _is_empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def _count(count: Any) -> int | float:
    number = float(count)
    return int(number) if number.is_integer() else number


def _accelerator_name(accelerator: dict[str, Any]) -> str:
    """"H100", or by memory "nvidia:80GB+" (as `parse_accelerator` reads it)."""
    name = accelerator.get("name")
    if name is not None:
        return str(name)
    maker = accelerator.get("manufacturer")
    memory = _count(accelerator.get("min_memory_gb") or 0)
    return f"{maker}:{memory}GB+" if maker else f"{memory}GB+"


def _accelerators(accelerators: list[dict[str, Any]], *, ordered: bool) -> str | list[str] | dict[str, int | float]:
    pairs = [(_accelerator_name(a), _count(a.get("count", 1))) for a in accelerators]
    if ordered and len(pairs) > 1:
        return [f"{name}:{count}" for name, count in pairs]
    if len(pairs) == 1:
        name, count = pairs[0]
        return f"{name}:{count}"
    return dict(pairs)


def _job_recovery(recovery: dict[str, Any]) -> str | dict[str, Any] | None:
    """The short form (`FAILOVER`) when only the strategy was given."""
    given = {k: v for k, v in recovery.items() if v != _JOB_RECOVERY_DEFAULTS.get(k) and v is not None}
    if not given:
        return None
    if list(given) == ["strategy"]:
        return str(given["strategy"])
    return given


def _number_if_plain(text: Any) -> Any:
    """"4" -> 4 as a user types it; "4+", "32GB+", "4x", "8000-8010" stay text."""
    if isinstance(text, str) and _WHOLE.fullmatch(text):
        return int(text)
    if isinstance(text, str) and _DECIMAL.fullmatch(text):
        return float(text)
    return text
