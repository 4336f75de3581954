"""From a file to its YAML documents: reading it, splitting off a
pipeline's or job group's header, and the job group header's rules.

May touch `errors` and `_yaml_lines`.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

from skytui._yaml_lines import MAX_BYTES, YamlDocument, YamlProblem, load_documents, too_large_message
from skytui.spec.errors import SpecError, _dotted


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
