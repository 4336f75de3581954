"""Launch flags applied on top of the YAML: --env, --env-file, --secret,
--name, --infra, --gpus, --cpus, --memory, --use-spot, --num-nodes.

Owns the Overrides model (values as typed), their checking into SpecErrors
naming the flag, dotenv files, and the flags' merge into Resources. May
touch `values`, `resources`, `documents` (reading a file) and `errors`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from skytui.spec.documents import read_text_file
from skytui.spec.errors import SpecError, _context
from skytui.spec.resources import Resources
from skytui.spec.values import (
    _NUL_MESSAGE,
    _TASK_NAME,
    _TASK_NAME_RULE,
    _VAR_NAME,
    _VAR_RULE,
    MAX_NUM_NODES,
    _short,
    normalize_infra,
    parse_accelerator,
    parse_cpus,
    parse_memory,
)


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
