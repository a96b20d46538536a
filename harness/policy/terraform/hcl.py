"""Terraform's native syntax (`.tf`, `.tfvars`) to blocks and attributes whose values are still
unevaluated expression trees, with the line and column of each.

python-hcl2's Lark grammar does the parsing; its dict serialization is not used, because it
turns every expression back into text and loses where it was written. The JSON syntax
(`.tf.json`, `.tfvars.json`) is read by `harness.policy.terraform.config` through
`harness.yamlio`, its `${...}` strings parsed here by `parse_template`.

Limits (exit 2 naming the limit): a file over `MAX_FILE_BYTES`, blocks nested deeper than
`MAX_BLOCK_DEPTH`.
"""

from __future__ import annotations

__all__ = [
    "MAX_BLOCK_DEPTH",
    "MAX_FILE_BYTES",
    "Attribute",
    "Block",
    "Body",
    "mark_of",
    "parse_expression",
    "parse_file",
    "parse_hcl",
    "parse_template",
    "read_source",
    "unescape",
]

import functools
import gc
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import EnvironmentProblem, InputError, Location

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_BLOCK_DEPTH = 32
SYNTAX_FIX = "check the syntax (`terraform validate` shows the same problem)"

Mark = tuple[int, int]


@dataclass(frozen=True)
class Attribute:
    name: str
    expression: Any  # a Lark tree, or a plain value from the JSON syntax
    path: str
    mark: Mark


@dataclass
class Block:
    type: str
    labels: tuple[str, ...]
    body: Body
    path: str
    mark: Mark


@dataclass
class Body:
    attributes: dict[str, Attribute] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)


_ESCAPES = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] in "uU" and len(code) > 1:
            point = int(code[1:], 16)
            if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
                return "\\" + code  # not a character: kept as written
            return chr(point)
        return _SIMPLE_ESCAPES.get(code, "\\" + code)

    return _ESCAPES.sub(one, text)


def mark_of(tree: Any, default: Mark = (1, 1)) -> Mark:
    """Where a tree starts: its leftmost token's line and column (the parser keeps positions
    on tokens only, which halves its time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        line = getattr(node, "line", None)
        if line is not None and not hasattr(node, "children"):
            return line, getattr(node, "column", 1) or 1
        children = getattr(node, "children", None)
        if children:
            stack.extend(reversed(children))
    return default


@functools.lru_cache(maxsize=1)
def _lark() -> Any:
    """python-hcl2's grammar and post-lexer, without `propagate_positions` (see mark_of)."""
    try:
        import hcl2.parser
        from hcl2.postlexer import PostLexer
        from lark import Lark
    except ImportError:
        raise EnvironmentProblem(
            "reading Terraform needs the python-hcl2 package, which is not installed"
        ) from None
    return Lark.open("hcl2.lark", parser="lalr", rel_to=hcl2.parser.__file__,
                     propagate_positions=False, postlex=PostLexer(), cache=True)  # fmt: skip


def read_source(path: Path) -> str:
    """A Terraform file's text; an over-size or non-UTF-8 file is an InputError at the byte."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(
                f"the file is {size} bytes, over the limit of {MAX_FILE_BYTES} bytes"
                " (MAX_FILE_BYTES)",
                location=Location(str(path)),
                fix="split the configuration, or give `terraform show -json` output",
            )
        raw = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read the file: {error.strerror}", location=Location(str(path)),
                         fix="check the path and its permissions") from None  # fmt: skip
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        before = raw[: error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        raise InputError(
            f"byte 0x{raw[error.start]:02x} is not UTF-8 (Terraform reads files as UTF-8)",
            location=Location(str(path), line, column),
            fix="save the file as UTF-8",
        ) from None


def _syntax_error(path: str, error: Exception, what: str = "Terraform") -> InputError:
    from lark.exceptions import UnexpectedInput

    if isinstance(error, UnexpectedInput):
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unexpected input"
        return InputError(f"not valid {what}: {first}",
                          location=Location(path, error.line, error.column), fix=SYNTAX_FIX)  # fmt: skip
    return InputError(f"not valid {what}: {error}", location=Location(path), fix=SYNTAX_FIX)


def parse_hcl(text: str, path: str) -> Any:
    """The Lark tree of a native-syntax file."""
    from lark.exceptions import LarkError

    if "\x00" in text:
        offset = text.index("\x00")
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        raise InputError("the file holds a NUL byte", location=Location(path, line, column),
                         fix="save the file as text (UTF-8)")  # fmt: skip
    parser = _lark()
    # Lark allocates a tree node per token and rule, none of them cyclic: the collector's
    # passes over them cost a third of a large file's parse (bench_policy_load_tf.py).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return parser.parse(text + "\n")
    except (LarkError, ValueError) as error:
        raise _syntax_error(path, error) from None
    except RecursionError:
        raise InputError("the file nests too deeply to parse", location=Location(path),
                         fix="flatten the expressions") from None  # fmt: skip
    finally:
        if collecting:
            gc.enable()


def _label(tree: Any, path: str) -> str:
    """A block type or label: an identifier, or a quoted string without interpolation."""
    from lark import Token, Tree

    if isinstance(tree, Tree) and tree.data == "string":
        parts = []
        for part in tree.children:
            if isinstance(part, Tree) and part.data == "string_part":
                (piece,) = part.children
                if not isinstance(piece, Token):
                    raise InputError("a block label cannot hold an expression",
                                     location=Location(path, *mark_of(tree)),
                                     fix='write the label as a plain string, e.g. "main"')  # fmt: skip
                parts.append(piece.value)
        return unescape("".join(parts))
    if isinstance(tree, Tree):
        return "".join(str(child) for child in tree.children)
    return str(tree)


def _body(tree: Any, path: str, depth: int) -> Body:
    from lark import Tree

    if depth > MAX_BLOCK_DEPTH:
        raise InputError(
            f"blocks nest deeper than {MAX_BLOCK_DEPTH} levels (MAX_BLOCK_DEPTH)",
            location=Location(path, *mark_of(tree)),
            fix="flatten the configuration",
        )
    body = Body()
    for child in tree.children:
        if not isinstance(child, Tree):
            continue
        if child.data == "attribute":
            name_tree, _, expression = child.children
            name = _label(name_tree, path)
            mark = mark_of(child)
            if name in body.attributes:
                first = body.attributes[name].mark
                raise InputError(
                    f"argument {name!r} is set twice (first at line {first[0]})",
                    location=Location(path, *mark), key_path=name,
                    fix="remove one of them",
                )  # fmt: skip
            body.attributes[name] = Attribute(name, expression, path, mark)
        elif child.data == "block":
            parts = [c for c in child.children if isinstance(c, Tree)
                     and c.data not in ("new_line_or_comment", "body")]  # fmt: skip
            (inner,) = [c for c in child.children if isinstance(c, Tree) and c.data == "body"]
            labels = tuple(_label(part, path) for part in parts)
            body.blocks.append(
                Block(labels[0], labels[1:], _body(inner, path, depth + 1), path, mark_of(child))
            )
    return body


def parse_file(text: str, path: str) -> Body:
    """A `.tf` file's top-level body; attributes there (other than in .tfvars) are refused by
    the caller, which knows which kind of file it reads."""
    tree = parse_hcl(text, path)
    (body,) = [c for c in tree.children if getattr(c, "data", None) == "body"]
    return _body(body, path, 0)


def parse_expression(text: str, path: str, mark: Mark) -> Any:
    """One expression (a `--var` value, a JSON-syntax `${...}` string) as a Lark tree."""
    from lark.exceptions import LarkError

    try:
        tree = _lark().parse(f"value = {text}\n")
    except (LarkError, ValueError) as error:
        raise InputError(f"not a valid Terraform expression: {text[:80]!r} ({error.__class__.__name__})",
                         location=Location(path, *mark), fix=SYNTAX_FIX) from None  # fmt: skip
    (body,) = [c for c in tree.children if getattr(c, "data", None) == "body"]
    attributes = [c for c in body.children if getattr(c, "data", None) == "attribute"]
    if len(attributes) != 1:
        raise InputError(f"not a single Terraform expression: {text[:80]!r}",
                         location=Location(path, *mark), fix=SYNTAX_FIX)  # fmt: skip
    return _Relocated(attributes[0].children[2], mark)


def parse_template(text: str, path: str, mark: Mark) -> Any:
    """A JSON-syntax string, which Terraform reads as a template: `"${var.x}"`."""
    return parse_expression(json.dumps(text), path, mark)


class _Relocated:
    """An expression parsed out of its file (a JSON string, a `--var`): every error inside it
    points at where the text was written."""

    def __init__(self, tree: Any, mark: Mark) -> None:
        self.tree = tree
        self.mark = mark
