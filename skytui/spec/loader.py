"""YAML documents -> Pipeline / PoolDefinition, with file:line in every error.

Owns `load_pipeline`, `load_pipeline_text` and `load_pool`: the documents
(`documents`), the flags (`overrides`), SkyPilot's secret references and env
substitution, task and job names, then validation with pydantic's errors
located in the file (`errors`) and the warnings (`load_warnings`). The top
of the spec package: may touch any module of it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from skytui._yaml_lines import YamlDocument
from skytui.spec.documents import _check_group, _read_documents, _split_header, _termination_delays, read_text_file
from skytui.spec.errors import SpecError, _dotted, _spec_error
from skytui.spec.load_warnings import InstanceTypeCheck, _load_warnings
from skytui.spec.overrides import Overrides, _check_overrides, _CheckedOverrides, _override_resources
from skytui.spec.pool import PoolSpec
from skytui.spec.task import Pipeline, Task

# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


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
