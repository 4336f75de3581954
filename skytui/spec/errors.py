"""SpecError, and pydantic's errors walked back to what the user wrote.

Owns the error type every refusal of the spec package raises, the helpers
validators raise errors with (`_fail`, with a path relative to the value),
and the translation of a pydantic ValidationError into "file:line: field:
message". Imports nothing from skytui but `_yaml_lines` (its YamlDocument
knows the lines).
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from skytui._yaml_lines import YamlDocument

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
