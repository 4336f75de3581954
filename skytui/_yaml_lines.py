"""YAML loading that remembers where every key and list item came from.

PyYAML builds plain dicts and forgets the source lines, and it silently lets a
later duplicate key win. Error messages must name file:line, so this module
composes the node graph itself and records, for each path into a document,
the 1-based line of the key (for mapping entries) or of the item (for list
entries). spec.py turns the recorded lines into SpecErrors; this module knows
nothing of tasks or resources.

Loading is bounded, because a task YAML may come from anyone: the text is at
most MAX_BYTES, nesting at most MAX_DEPTH levels, a stream at most
MAX_DOCUMENTS documents, and a document at most MAX_VALUES values once its
aliases are expanded. An aliased node is converted once and shared, so an
alias bomb ("billion laughs") costs what its text costs, and is refused by
its expanded size before anything downstream (a JSON dump, a validator)
would walk the expansion. Cycles (`&a [*a]`) are refused, and so is a NUL
character in any string: no shell command, variable, path or name holds one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

# A path into a document: mapping keys and list indexes, outermost first.
Path = tuple[Any, ...]

# A task YAML is a few KiB; 1 MiB leaves room for long inline scripts while
# keeping the worst case (pure-Python YAML, a slow machine) to a second or two.
MAX_BYTES = 1 << 20
# Task fields nest about 6 deep (resources.any_of[0].job_recovery...); the
# composer and the converter recurse once per level, far below Python's limit.
MAX_DEPTH = 64
# Values in one document counting every alias expansion; a real task has a
# few hundred.
MAX_VALUES = 100_000
# Documents in one stream, each a pipeline task; SkyPilot pipelines have a few.
MAX_DOCUMENTS = 1000

# libyaml scans and parses about 10x faster; composing stays ours.
try:
    from yaml import cyaml as _cyaml

    _Parser: Any = getattr(_cyaml, "CParser", None)  # None: PyYAML built without libyaml
except ImportError:  # pragma: no cover
    _Parser = None


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


_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_STR_TAG = "tag:yaml.org,2002:str"


class YamlProblem(Exception):
    """Malformed or hostile YAML: a syntax error, a duplicate or unhashable
    key, a value YAML cannot build, a NUL character, or a document too big,
    too deep or self-referencing."""

    def __init__(self, line: int | None, path: Path, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.path = path
        self.message = message


def too_large_message(size: int | None) -> str:
    """The refusal for a text of `size` bytes above MAX_BYTES (None: a size
    unknown in advance, such as a pipe's or /dev/zero's)."""
    what = f"the file is {_mebibytes(size)}" if size is not None else "the file is larger"
    limit = _mebibytes(MAX_BYTES)
    return f"{what}; a task YAML may be at most {limit} (keep large scripts and data in workdir or file_mounts)"


def _mebibytes(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB" if size % (1 << 20) else f"{size >> 20} MiB"


class _BoundedComposer(Composer):
    """PyYAML's composer with a depth limit and a node count limit.

    The composer recurses once per nesting level, so without a limit a
    10,000-deep flow sequence ends in RecursionError.
    """

    def __init__(self) -> None:
        Composer.__init__(self)
        self._depth = 0
        self._nodes = 0

    def compose_document(self) -> yaml.Node | None:
        self._nodes = 0  # the limit is per document, as MAX_VALUES is
        return super().compose_document()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlProblem(self._event_line(), (), f"nested more than {MAX_DEPTH} levels deep")
            if self._nodes > MAX_VALUES:
                raise YamlProblem(self._event_line(), (), f"more than {MAX_VALUES} values in one document")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _event_line(self) -> int:
        return self.peek_event().start_mark.line + 1  # type: ignore[attr-defined, no-any-return]


if _Parser is not None:

    class _Loader(_BoundedComposer, _Parser, SafeConstructor, Resolver):  # type: ignore[misc]
        """libyaml's parser, our composer, PyYAML's safe scalar constructors."""

        def __init__(self, stream: str) -> None:
            _Parser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover

    class _Loader(_BoundedComposer, yaml.SafeLoader):  # type: ignore[no-redef]
        """SafeLoader with our composer."""

        def __init__(self, stream: str) -> None:
            yaml.SafeLoader.__init__(self, stream)
            _BoundedComposer.__init__(self)


def load_documents(text: str) -> list[YamlDocument]:
    """Every non-empty document of a (multi-document) YAML stream."""
    # A character is at least a byte: only a text that may fit is encoded.
    size = len(text) if len(text) > MAX_BYTES else len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_BYTES:
        raise YamlProblem(None, (), too_large_message(size))
    try:
        return _convert_documents(text)
    except yaml.MarkedYAMLError as exc:
        raise YamlProblem(_mark_line(exc), (), _describe(exc)) from None
    except yaml.reader.ReaderError as exc:
        raise YamlProblem(_line_at(text, exc.position), (), exc.reason) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(None, (), str(exc)) from None


def _convert_documents(text: str) -> list[YamlDocument]:
    loader = _Loader(text)  # PyYAML's own reader already refuses control characters here
    documents: list[YamlDocument] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None or _is_null(node):
                continue  # a stray `---` or an empty document carries no task
            if len(documents) == MAX_DOCUMENTS:
                raise YamlProblem(_line(node), (), f"more than {MAX_DOCUMENTS} documents (tasks) in one file")
            documents.append(_Converter(loader).document(node))
    finally:
        loader.dispose()
    return documents


def load_single(text: str) -> Any:
    """The data of a one-document YAML such as config.yaml, bounded as
    load_documents is; None for an empty text. yaml.safe_load recurses once
    per nesting level and ends in RecursionError on hostile input."""
    documents = load_documents(text)
    if len(documents) > 1:
        raise YamlProblem(documents[1].start_line, (), "expected a single YAML document")
    return documents[0].data if documents else None


def load_file(path: str | os.PathLike[str]) -> Any:
    """`load_single` of a file that is not a task (config.yaml, a hosts file,
    a kubeconfig): at most MAX_BYTES are read. OSError if it cannot be read."""
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise YamlProblem(None, (), f"larger than {_mebibytes(MAX_BYTES)}")
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise YamlProblem(None, (), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return load_single(text)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _line_at(text: str, position: int) -> int:
    if _Parser is not None:  # libyaml counts bytes of the UTF-8 text, PyYAML characters
        return text.encode("utf-8", errors="surrogatepass").count(b"\n", 0, position) + 1
    return text.count("\n", 0, position) + 1


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


class _Converter:
    """Turns one composed document into plain data, recording lines.

    Each node is converted once: an alias gets the very object its anchor
    got, and no lines are recorded below it (an error inside points at the
    key holding the alias). The expanded size of every node is remembered,
    so MAX_VALUES is enforced without walking the expansion.
    """

    def __init__(self, loader: _Loader) -> None:
        self._loader = loader
        self._lines: dict[Path, int] = {}
        self._done: dict[int, tuple[Any, int]] = {}  # id(node) -> (value, expanded size)
        self._open: set[int] = set()  # nodes being converted: meeting one again is a cycle
        self._flat: dict[int, list[tuple[yaml.Node, yaml.Node]]] = {}  # id(mapping) -> merged entries
        self._merging: set[int] = set()
        self._total = 0

    def document(self, node: yaml.Node) -> YamlDocument:
        data, _ = self._convert(node, ())
        return YamlDocument(data, _line(node), self._lines)

    def _convert(self, node: yaml.Node, path: Path) -> tuple[Any, int]:
        done = self._done.get(id(node))
        if done is not None:
            self._count(done[1], node, path)
            return done
        if id(node) in self._open:
            line = self._lines.get(path, _line(node))  # the alias, not its anchor
            raise YamlProblem(line, path, "an alias refers to a node that contains it (a cycle)")
        self._open.add(id(node))
        result: tuple[Any, int]
        try:
            if isinstance(node, yaml.MappingNode):
                result = self._mapping(node, path)
            elif isinstance(node, yaml.SequenceNode):
                result = self._sequence(node, path)
            else:
                self._count(1, node, path)
                result = (self._scalar(node, path), 1)
        finally:
            self._open.discard(id(node))
        self._done[id(node)] = result
        return result

    def _count(self, size: int, node: yaml.Node, path: Path) -> None:
        self._total += size
        if self._total > MAX_VALUES:
            raise YamlProblem(
                _line(node), path, f"more than {MAX_VALUES} values once aliases (*name) are expanded"
            )

    def _sequence(self, node: yaml.SequenceNode, path: Path) -> tuple[list[Any], int]:
        self._count(1, node, path)
        items: list[Any] = []
        size = 1
        for index, item in enumerate(node.value):
            self._lines[path + (index,)] = _line(item)
            value, item_size = self._convert(item, path + (index,))
            items.append(value)
            size += item_size
        return items, size

    def _mapping(self, node: yaml.MappingNode, path: Path) -> tuple[dict[Any, Any], int]:
        self._count(1, node, path)
        self._refuse_duplicate_keys(node, path)
        # Merge keys (`<<: *base`) are legitimate overrides, so duplicates are
        # checked above on the keys as written, before flattening.
        result: dict[Any, Any] = {}
        size = 1
        for key_node, value_node in self._flattened(node, path):
            key = self._key(key_node, path)
            self._lines[path + (key,)] = _line(key_node)
            value, value_size = self._convert(value_node, path + (key,))
            result[key] = value
            size += 1 + value_size
        return result, size

    def _flattened(self, node: yaml.MappingNode, path: Path) -> list[tuple[yaml.Node, yaml.Node]]:
        """The mapping's entries with merge keys resolved, merged ones first
        so that the mapping's own keys win (PyYAML's flatten_mapping, but
        cached per node, bounded and refusing cycles instead of recursing
        forever)."""
        cached = self._flat.get(id(node))
        if cached is not None:
            return cached
        if id(node) in self._merging:
            raise YamlProblem(_line(node), path, "merge keys (<<) refer to each other in a cycle")
        self._merging.add(id(node))
        try:
            merged: list[tuple[yaml.Node, yaml.Node]] = []
            own: list[tuple[yaml.Node, yaml.Node]] = []
            for key_node, value_node in node.value:
                if key_node.tag != _MERGE_TAG:
                    own.append((key_node, value_node))
                    continue
                # In `<<: [*a, *b]` the earlier mapping wins, so it goes last.
                sources = value_node.value[::-1] if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        message = "a merge key (<<) takes a mapping or a list of mappings"
                        raise YamlProblem(_line(key_node), path, message)
                    merged.extend(self._flattened(source, path))
        finally:
            self._merging.discard(id(node))
        entries = merged + own
        self._count(len(merged), node, path)
        self._flat[id(node)] = entries
        return entries

    def _refuse_duplicate_keys(self, node: yaml.MappingNode, path: Path) -> None:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, path)
            if key in seen:
                raise YamlProblem(
                    _line(key_node), path + (key,),
                    f"duplicate key {key!r} (an earlier one would be silently ignored)",
                )
            seen.add(key)

    def _key(self, key_node: yaml.Node, path: Path) -> Any:
        if key_node.tag == _VALUE_TAG:
            key_node.tag = _STR_TAG  # YAML's `=` key, read as a string as PyYAML does
        if not isinstance(key_node, yaml.ScalarNode):
            raise YamlProblem(_line(key_node), path, "a mapping key must be a plain value")
        key = self._scalar(key_node, path, what="a key")
        try:
            hash(key)
        except TypeError:
            raise YamlProblem(_line(key_node), path, "a mapping key must be a plain value") from None
        return key

    def _scalar(self, node: yaml.Node, path: Path, what: str = "") -> Any:
        try:
            value = self._loader.construct_object(node, deep=True)
        except ValueError as exc:
            # PyYAML lets Python's own errors through: a date such as
            # 2024-13-45, an integer of more than 4300 digits.
            raise YamlProblem(_line(node), path, f"not a valid value: {_first_line(exc)}") from None
        if isinstance(value, str) and "\x00" in value:
            subject = f"{what} contains" if what else "contains"
            message = f"{subject} a NUL character (\\0), which no command, name or value can hold"
            raise YamlProblem(_line(node), path, message)
        return value


def _first_line(exc: Exception) -> str:
    return str(exc).split(";")[0].splitlines()[0] if str(exc) else type(exc).__name__
