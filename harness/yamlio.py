"""YAML (and JSON) loading that keeps where every mapping key and sequence item was written, so
an error can say `path:LINE:COL: key.path: problem; fix`.

Loaded mappings are `MarkedDict`s and sequences `MarkedList`s: plain `dict` / `list` subclasses
that also carry the 1-based (line, column) of the node itself (`start`), of each key
(`key_marks`) and of each item (`item_marks`). Scalars stay plain Python values.

A `Node` is a value plus where it sits: the file, its key path from the document root and its
mark. Loaders walk a document through `Node.child(key)` and raise `node.error(problem, fix)`;
values that came from somewhere without marks (an ARM parameter's default, a plain dict) point
at the nearest marked ancestor.

    document = load_yaml("policy.yaml")
    document.location_of("rule_collection_groups[0].priority")   # Location(path, 4, 5)
    raise document.error_at("rule_collection_groups[0].priority", "outside 100..65000", "...")

JSON goes through a small position-tracking parser (after `json.loads` has validated it and
reported any syntax error with its line), so ARM templates get line numbers too.

Every way PyYAML or `json` can fail on a user's bytes ends as an InputError at a line: a scalar
its constructors reject (`!!bool maybe`, a 5,000-digit integer), a NUL byte, a key that is not a
string (shown in key paths as `[1.5]`, `[null]`). The limits of `harness.limits` are checked
before any value is built: file size, nesting depth (`MAX_DEPTH`) and the node count with every
alias expanded (`MAX_EXPANDED_NODES`, so 300 bytes of nested aliases cannot cost gigabytes in
the first loader that walks the tree). Dates stay strings: no key of ours takes a date, and
`name: 2024-13-01` is a name, not a bad month.
"""

from __future__ import annotations

__all__ = [
    "Document",
    "KeyPath",
    "MarkedDict",
    "MarkedList",
    "Node",
    "format_key_path",
    "load_document",
    "load_json_text",
    "load_yaml",
    "load_yaml_text",
    "parse_key_path",
    "read_text",
]

import bisect
import json
import json.decoder
import json.scanner
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import InputError, Location, excerpt
from harness.limits import MAX_DEPTH, MAX_EXPANDED_NODES, MAX_FILE_BYTES

KeyPath = tuple[str | int, ...]
Mark = tuple[int, int]  # 1-based line and column


class MarkedDict(dict):  # type: ignore[type-arg]
    """A mapping that knows where it and each of its keys were written."""

    start: Mark | None
    key_marks: dict[Any, Mark]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start = None
        self.key_marks = {}


class MarkedList(list):  # type: ignore[type-arg]
    """A sequence that knows where it and each of its items were written."""

    start: Mark | None
    item_marks: list[Mark]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.start = None
        self.item_marks = []


# --- key paths ---------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_$@-]+$")
_KEY_PATH_PART = re.compile(r'\.?([^.\[\]]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


def format_key_path(parts: KeyPath, prefix: str = "") -> str:
    """`("a", 0, "b")` -> `a[0].b`; keys that are not plain words are written `["x.y"]`."""
    text = prefix
    for part in parts:
        if isinstance(part, bool) or part is None:
            text += f"[{json.dumps(part)}]"  # YAML's spelling: [true], [null]
        elif isinstance(part, int):
            text += f"[{part}]"
        elif not isinstance(part, str):
            text += f"[{part}]"  # a YAML key that is a number or a date: [1.5], [2024-01-01]
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += "[" + json.dumps(part) + "]"
    return text


def parse_key_path(text: str) -> KeyPath:
    """The inverse of `format_key_path`."""
    parts: list[str | int] = []
    position = 0
    while position < len(text):
        match = _KEY_PATH_PART.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"not a key path: {text!r}")
        word, index, quoted = match.groups()
        if word is not None:
            parts.append(word)
        elif index is not None:
            parts.append(int(index))
        else:
            parts.append(json.loads(f'"{quoted}"'))
        position = match.end()
    return tuple(parts)


# --- nodes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A value in a user's file and where it is. `prefix` is prepended to displayed key paths
    (an inline policy inside a scenario file shows `firewall.policy.rule_collection_groups...`).
    """

    value: Any
    path: str
    parts: KeyPath = ()
    mark: Mark | None = None
    prefix: str = ""

    @property
    def key_path(self) -> str:
        return format_key_path(self.parts, self.prefix)

    @property
    def location(self) -> Location:
        if self.mark is None:
            return Location(self.path)
        return Location(self.path, self.mark[0], self.mark[1])

    def child(self, key: str | int) -> Node:
        """The node at `key` (a mapping key or a sequence index); a missing key gives a node
        holding None at the parent's mark."""
        value: Any = None
        mark = None
        if isinstance(self.value, dict):
            value = self.value.get(key)
            if isinstance(self.value, MarkedDict):
                mark = self.value.key_marks.get(key)
        elif isinstance(self.value, list) and isinstance(key, int) and key < len(self.value):
            value = self.value[key]
            if isinstance(self.value, MarkedList) and key < len(self.value.item_marks):
                mark = self.value.item_marks[key]
        return Node(value, self.path, (*self.parts, key), mark or self.mark, self.prefix)

    def items(self) -> Iterator[tuple[Any, Node]]:
        """(key, child node) of a mapping."""
        if isinstance(self.value, dict):
            for key in self.value:
                yield key, self.child(key)

    def elements(self) -> Iterator[Node]:
        """Child nodes of a sequence."""
        if isinstance(self.value, list):
            for index in range(len(self.value)):
                yield self.child(index)

    def with_value(self, value: Any) -> Node:
        """This place in the file holding another value (an ARM expression's result)."""
        return Node(value, self.path, self.parts, self.mark, self.prefix)

    def error(self, problem: str, fix: str = "") -> InputError:
        return InputError(problem, location=self.location, key_path=self.key_path, fix=fix)


@dataclass(frozen=True)
class Document:
    """A loaded file: its root value and the way to find where a key path was written."""

    path: str
    data: Any
    prefix: str = ""

    @property
    def root(self) -> Node:
        # A scalar document has no marks of its own; it starts the file.
        start = self.data.start if isinstance(self.data, MarkedDict | MarkedList) else (1, 1)
        return Node(self.data, self.path, (), start, self.prefix)

    def node(self, key_path: KeyPath | str) -> Node:
        parts = parse_key_path(key_path) if isinstance(key_path, str) else key_path
        node = self.root
        for part in parts:
            node = node.child(part)
        return node

    def location_of(self, key_path: KeyPath | str) -> Location:
        """Where the deepest existing part of `key_path` was written."""
        return self.node(key_path).location

    def error_at(self, key_path: KeyPath | str, problem: str, fix: str = "") -> InputError:
        return self.node(key_path).error(problem, fix)


# --- YAML --------------------------------------------------------------------------------


def _mark(mark: yaml.Mark) -> Mark:
    return mark.line + 1, mark.column + 1


class _MarkingLoader(yaml.SafeLoader):
    """SafeLoader building MarkedDict / MarkedList, refusing duplicate keys, nesting past
    MAX_DEPTH, and scalars its constructors cannot read (as errors at their mark)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # The composer recurses once per level: stop at the limit, not at Python's stack.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH and not self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels (the limit)",
                    self.peek_event().start_mark,
                )  # fmt: skip
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, KeyError, TypeError, OverflowError, AttributeError) as error:
            # PyYAML's constructors raise these for `!!bool maybe`, `!!float abc`, `0x_`,
            # `!!timestamp 2024-13-01` or an integer over Python's 4,300-digit conversion limit.
            tag = node.tag.rsplit(":", 1)[-1]
            value = node.value if isinstance(node, yaml.ScalarNode) else tag
            raise yaml.constructor.ConstructorError(
                None, None, f"{excerpt(value)} cannot be read as a YAML {tag}{_reason(error)}",
                node.start_mark,
            ) from None  # fmt: skip


def _reason(error: Exception) -> str:
    if not isinstance(error, ValueError) or not str(error):
        return ""
    return f" ({excerpt(str(error).split(';')[0], 80)[1:-1]})"


# Dates and times stay strings (see the module docstring).
_MarkingLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _alias_expansion(root: yaml.Node) -> int:
    """How many nodes aliases add to the document once expanded, stopping past the limit.
    Each distinct node is sized once, so this is linear in the file, not in the expansion."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack = [root]
    while stack:  # children before parents, without recursion
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1
        order.append(node)
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    for node in reversed(order):
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(sizes[id(child)] for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(sizes[id(key)] + sizes[id(value)] for key, value in node.value)
        sizes[id(node)] = min(size, len(order) + MAX_EXPANDED_NODES + 1)
    return sizes[id(root)] - len(order)


def _construct_mapping(loader: _MarkingLoader, node: yaml.MappingNode) -> Iterator[MarkedDict]:
    data = MarkedDict()
    data.start = _mark(node.start_mark)
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in data:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_marks[key] = _mark(key_node.start_mark)


def _construct_sequence(loader: _MarkingLoader, node: yaml.SequenceNode) -> Iterator[MarkedList]:
    data = MarkedList()
    data.start = _mark(node.start_mark)
    yield data
    for item_node in node.value:
        data.append(loader.construct_object(item_node, deep=True))
        data.item_marks.append(_mark(item_node.start_mark))


_MarkingLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_MarkingLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def read_text(path: str | Path) -> str:
    """A user's file as text; a missing, unreadable or over-limit file is an InputError."""
    file = Path(path)
    try:
        if file.is_file() and file.stat().st_size > MAX_FILE_BYTES:
            raise InputError(
                f"the file is {file.stat().st_size:,} bytes, over the limit of "
                f"{MAX_FILE_BYTES:,} bytes (MAX_FILE_BYTES)",
                location=Location(str(path)), fix="split it, or check that this is the right file",
            )  # fmt: skip
        return file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(
            "no such file", location=Location(str(path)), fix="check the path"
        ) from None
    except IsADirectoryError:
        raise InputError(
            "is a directory, not a file", location=Location(str(path)), fix="name a file"
        ) from None
    except UnicodeDecodeError as error:
        raise InputError(
            f"not UTF-8 text ({error.reason} at byte {error.start})",
            location=Location(str(path)),
            fix="save the file as UTF-8",
        ) from None
    except OSError as error:
        raise InputError(
            f"cannot read: {error.strerror}", location=Location(str(path)), fix="check the path"
        ) from None


def _check_top(data: Any, path: str, expect_mapping: bool) -> None:
    if data is None:
        raise InputError(
            "the file is empty", location=Location(path, 1, 1), fix="write a mapping of keys"
        )
    if expect_mapping and not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise InputError(
            f"the top level is {kind}, not a mapping",
            location=Location(path, 1, 1),
            fix="write `key: value` lines at the top level",
        )


def load_yaml_text(text: str, path: str | Path, *, expect_mapping: bool = True) -> Document:
    """Parse YAML `text` (read from `path`, used in messages) into a marked Document.

    A syntax error, an empty document and (with `expect_mapping`) a top level that is not a
    mapping are InputErrors pointing into the file.
    """
    name = str(path)
    loader: _MarkingLoader | None = None
    try:
        loader = _MarkingLoader(text)  # a SafeLoader subclass: no arbitrary objects
        root = loader.get_single_node()
        if root is not None and _alias_expansion(root) > MAX_EXPANDED_NODES:
            raise InputError(
                f"aliases expand to more than {MAX_EXPANDED_NODES:,} further values (the limit"
                " MAX_EXPANDED_NODES)",
                location=Location(name, *_mark(root.start_mark)),
                fix="write the repeated parts out, or use fewer nested aliases",
            )
        data = loader.construct_document(root) if root is not None else None
    except yaml.reader.ReaderError as error:
        # A NUL or other control character: PyYAML gives a character offset, not a line.
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        raise InputError(
            f"character #x{error.character:04x} is not allowed in YAML",
            location=Location(name, line, column),
            fix="remove it (is this a binary file?)",
        ) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        location = Location(name, *_mark(mark)) if mark is not None else Location(name)
        problem = " ".join((error.problem or error.context or "invalid YAML").split())
        if problem.startswith("duplicate key"):
            raise InputError(
                problem, location=location, fix="keep one of them (YAML keeps only the last)"
            ) from None
        if "(the limit)" in problem:
            raise InputError(problem.replace("(the limit)", "(the limit MAX_DEPTH)"),
                             location=location, fix="flatten the file") from None  # fmt: skip
        if "cannot be read as a YAML" in problem:
            raise InputError(problem, location=location,
                             fix="quote the value to make it a string, or correct it") from None  # fmt: skip
        raise InputError(
            f"YAML syntax error: {problem}",
            location=location,
            fix="fix the YAML syntax (indentation, quotes, a missing ':')",
        ) from None
    except yaml.YAMLError as error:
        raise InputError(
            f"YAML syntax error: {' '.join(str(error).split())}", location=Location(name),
            fix="fix the YAML syntax",
        ) from None  # fmt: skip
    finally:
        if loader is not None:
            loader.dispose()
    _check_top(data, name, expect_mapping)
    return Document(name, data)


def load_yaml(path: str | Path, *, expect_mapping: bool = True) -> Document:
    return load_yaml_text(read_text(path), path, expect_mapping=expect_mapping)


# --- JSON --------------------------------------------------------------------------------

_NUMBER = json.scanner.NUMBER_RE  # type: ignore[attr-defined]
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class _MarkingJsonParser:
    """Builds MarkedDict / MarkedList from JSON already validated by `json.loads`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.line_starts = [0] + [match.end() for match in re.finditer("\n", text)]

    def mark(self, offset: int) -> Mark:
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def skip(self, offset: int) -> int:
        return _WHITESPACE.match(self.text, offset).end()  # type: ignore[union-attr]

    def value(self, offset: int) -> tuple[Any, int]:
        text = self.text
        char = text[offset]
        if char == "{":
            data = MarkedDict()
            data.start = self.mark(offset)
            offset = self.skip(offset + 1)
            if text[offset] == "}":
                return data, offset + 1
            while True:
                key_mark = self.mark(offset)
                key, offset = json.decoder.scanstring(text, offset + 1)
                offset = self.skip(self.skip(offset) + 1)  # past ':'
                value, offset = self.value(offset)
                data[key] = value  # json keeps the last of duplicate keys; so do we
                data.key_marks[key] = key_mark
                offset = self.skip(offset)
                if text[offset] == "}":
                    return data, offset + 1
                offset = self.skip(offset + 1)  # past ','
        if char == "[":
            items = MarkedList()
            items.start = self.mark(offset)
            offset = self.skip(offset + 1)
            if text[offset] == "]":
                return items, offset + 1
            while True:
                items.item_marks.append(self.mark(offset))
                value, offset = self.value(offset)
                items.append(value)
                offset = self.skip(offset)
                if text[offset] == "]":
                    return items, offset + 1
                offset = self.skip(offset + 1)
        if char == '"':
            return json.decoder.scanstring(text, offset + 1)
        for literal, value in (("true", True), ("false", False), ("null", None)):
            if text.startswith(literal, offset):
                return value, offset + len(literal)
        match = _NUMBER.match(text, offset)
        integer, fraction, exponent = match.groups()  # type: ignore[union-attr]
        if fraction or exponent:
            return float(integer + (fraction or "") + (exponent or "")), match.end()  # type: ignore[union-attr]
        return int(integer), match.end()  # type: ignore[union-attr]


def load_json_text(text: str, path: str | Path, *, expect_mapping: bool = False) -> Document:
    """Parse JSON `text` into a marked Document; a syntax error is an InputError with its line.

    NaN / Infinity literals, which `json.loads` accepts, are refused as not JSON.
    """
    name = str(path)
    _check_json_depth(text, name)
    try:
        json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        before = text[: error.pos].rstrip()
        if before.endswith(",") and text[error.pos : error.pos + 1] in "]}":
            # Python 3.13 names a trailing comma itself; 3.12 blames the bracket after it.
            offset = len(before) - 1
            line = text.count("\n", 0, offset) + 1
            column = offset - (text.rfind("\n", 0, offset) + 1) + 1
            raise InputError(
                "JSON syntax error: a trailing comma", location=Location(name, line, column),
                fix="remove the comma before the closing bracket",
            ) from None  # fmt: skip
        raise InputError(
            f"JSON syntax error: {error.msg}",
            location=Location(name, error.lineno, error.colno),
            fix="fix the JSON syntax (ARM templates with // comments: remove the comments)",
        ) from None
    except ValueError as error:
        raise InputError(f"JSON syntax error: {error}", location=Location(name)) from None
    parser = _MarkingJsonParser(text)
    data, _ = parser.value(parser.skip(0))
    _check_top(data, name, expect_mapping)
    return Document(name, data)


_JSON_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _check_json_depth(text: str, name: str) -> None:
    """Nesting past MAX_DEPTH is refused before `json` or our parser recurse into it."""
    depth = 0
    for match in _JSON_STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                offset = match.start()
                line = text.count("\n", 0, offset) + 1
                column = offset - (text.rfind("\n", 0, offset) + 1) + 1
                raise InputError(
                    f"nested deeper than {MAX_DEPTH} levels (the limit MAX_DEPTH)",
                    location=Location(name, line, column), fix="flatten the file",
                )  # fmt: skip
        elif token in "]}":
            depth = max(depth - 1, 0)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _looks_like_json(text: str) -> bool:
    stripped = text.lstrip()
    return stripped.startswith(("{", "["))


def load_document(path: str | Path, *, expect_mapping: bool = False) -> Document:
    """A YAML or JSON file: `.json` files and text that starts with `{` or `[` are read as
    JSON (falling back to YAML for flow-style YAML that is not JSON), everything else as YAML.
    """
    text = read_text(path)
    if Path(path).suffix.lower() == ".json":
        if not text.strip():
            _check_top(None, str(path), expect_mapping)
        return load_json_text(text, path, expect_mapping=expect_mapping)
    if _looks_like_json(text):
        try:
            return load_json_text(text, path, expect_mapping=expect_mapping)
        except InputError:
            pass
    return load_yaml_text(text, path, expect_mapping=expect_mapping)
