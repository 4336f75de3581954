"""The common base of the spec's models: unknown fields and kept fields.

Owns `_SpecModel` (refuses unknown keys with a suggestion, sets SkyPilot's
kept fields aside) and what a validator learns from its context (loaded from
YAML? relative to which folder?). May touch `errors` and `kept_fields`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo

from skytui.spec.errors import _fail, _suggest
from skytui.spec.kept_fields import KeptField


def _from_yaml(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("yaml"))


def _base_dir(info: ValidationInfo) -> str | None:
    # Only files loaded from YAML are checked against the disk: a model built
    # in code, or re-read from the state DB on another machine, is trusted.
    if not info.context:
        return None
    base_dir: str | None = info.context.get("base_dir")
    return base_dir


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
