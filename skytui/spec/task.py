"""A task document and a job: Task, FileMount (a storage mount) and Pipeline.

Owns the task's own fields (name, workdir, envs, secrets, file_mounts,
config) and secret redaction. May touch `resources`, `pool`, `values`,
`base`, `errors` and `kept_fields`.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from skytui.spec.base import _base_dir, _SpecModel
from skytui.spec.errors import _fail, _suggest
from skytui.spec.kept_fields import STORAGE_FIELDS, TASK_FIELDS, KeptField
from skytui.spec.pool import PoolSpec
from skytui.spec.resources import Resources
from skytui.spec.values import (
    _STORES,
    _TASK_NAME,
    _TASK_NAME_RULE,
    _VAR_NAME,
    _VAR_RULE,
    MAX_NUM_NODES,
    REDACTED,
    _check_local_source,
    _is_url,
    _resolve_local,
)


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
