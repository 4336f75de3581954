"""YAML loading that remembers where every key and list item came from.

PyYAML builds plain dicts and forgets the source lines, and it silently lets a
later duplicate key win. Error messages must name file:line, so this module
composes the node graph itself and records, for each path into a document,
the 1-based line of the key (for mapping entries) or of the item (for list
entries). spec.py turns the recorded lines into SpecErrors; this module knows
nothing of tasks or resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

# A path into a document: mapping keys and list indexes, outermost first.
Path = tuple[Any, ...]


@dataclass
class YamlDocument:
    data: Any
    start_line: int
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int:
        """The line of the deepest recorded prefix of `path`."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return self.start_line


class YamlProblem(Exception):
    """Malformed YAML: a syntax error, a duplicate key, an unhashable key."""

    def __init__(self, line: int | None, path: Path, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.path = path
        self.message = message


class _Loader(yaml.SafeLoader):
    """SafeLoader used only for its composer and scalar constructors."""


def load_documents(text: str) -> list[YamlDocument]:
    """Every non-empty document of a (multi-document) YAML stream."""
    loader = _Loader(text)
    documents: list[YamlDocument] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None or _is_null(node):
                continue  # a stray `---` or an empty document carries no task
            lines: dict[Path, int] = {}
            data = _convert(loader, node, (), lines)
            documents.append(YamlDocument(data, _line(node), lines))
    except yaml.MarkedYAMLError as exc:
        raise YamlProblem(_mark_line(exc), (), _describe(exc)) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(None, (), str(exc)) from None
    finally:
        loader.dispose()
    return documents


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _mark_line(exc: yaml.MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else None


def _describe(exc: yaml.MarkedYAMLError) -> str:
    # Only the parser's own words: str(exc) would quote the offending source
    # line, which may hold a secret.
    problem = exc.problem or "invalid YAML"
    if exc.context:
        return f"{problem} ({exc.context})"
    return problem


def _convert(loader: _Loader, node: yaml.Node, path: Path, lines: dict[Path, int]) -> Any:
    if isinstance(node, yaml.MappingNode):
        return _convert_mapping(loader, node, path, lines)
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[path + (index,)] = _line(item)
            items.append(_convert(loader, item, path + (index,), lines))
        return items
    return loader.construct_object(node, deep=True)


def _convert_mapping(
    loader: _Loader, node: yaml.MappingNode, path: Path, lines: dict[Path, int]
) -> dict[Any, Any]:
    _refuse_duplicate_keys(loader, node, path)
    # Merge keys (`<<: *base`) are legitimate overrides, so duplicates are
    # checked above on the keys as written, before flattening.
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = _key(loader, key_node, path)
        lines[path + (key,)] = _line(key_node)
        result[key] = _convert(loader, value_node, path + (key,), lines)
    return result


def _refuse_duplicate_keys(loader: _Loader, node: yaml.MappingNode, path: Path) -> None:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = _key(loader, key_node, path)
        if key in seen:
            raise YamlProblem(
                _line(key_node), path + (key,), f"duplicate key {key!r} (an earlier one would be silently ignored)"
            )
        seen.add(key)


def _key(loader: _Loader, key_node: yaml.Node, path: Path) -> Any:
    key = loader.construct_object(key_node, deep=True)
    try:
        hash(key)
    except TypeError:
        raise YamlProblem(_line(key_node), path, "a mapping key must be a plain value") from None
    return key
