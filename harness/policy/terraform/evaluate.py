"""Terraform expressions evaluated offline: literals, templates, references, operators,
conditionals, `for` expressions, splats and the common functions.

Values are Python's: str, int/float, bool, None, list, dict (maps and objects), `TfSet` (a
list that came from `toset`/`set(...)`), and `Lazy` objects (namespaces such as `var`, `local`,
a resource type, a resource instance) whose attributes are evaluated when asked for.

Maps and objects iterate in key order, as in Terraform, so a `for_each` over a map makes its
blocks in key order. Sets of strings iterate in lexical order.

Limits (exit 2 naming the limit): `MAX_DEPTH` nested evaluations (expression nesting plus
reference chains), `MAX_STEPS` evaluation steps per configuration (each step one expression
node, or one element a function builds), `MAX_STRING` characters in one string.
"""

from __future__ import annotations

__all__ = [
    "MAX_DEPTH",
    "MAX_STEPS",
    "MAX_STRING",
    "Budget",
    "Evaluator",
    "JsonExpression",
    "Lazy",
    "TfSet",
    "Where",
    "convert",
    "describe",
]

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from harness.errors import InputError, Location
from harness.policy.terraform.hcl import _Relocated, mark_of, parse_template, unescape
from harness.yamlio import format_key_path

MAX_DEPTH = 160
MAX_STEPS = 2_000_000
MAX_STRING = 1_000_000

SHOW_JSON_FIX = (
    "run `terraform plan -out tf.plan && terraform show -json tf.plan > plan.json` (or"
    " `terraform show -json > state.json` after apply) and give that file instead"
)


class TfSet(list):  # type: ignore[type-arg]
    """A Terraform set: unique elements; strings in lexical order."""


def _make_set(items: list[Any]) -> TfSet:
    unique: list[Any] = []
    seen: set[str] = set()
    for item in items:
        probe = json.dumps(_plain(item), sort_keys=True, default=str)
        if probe not in seen:
            seen.add(probe)
            unique.append(item)
    if all(isinstance(item, str) for item in unique):
        unique.sort()
    return TfSet(unique)


class Lazy:
    """A value whose attributes are evaluated on demand (module docstring)."""

    what = "an object"

    def attr(self, name: str, fail: Callable[[str, str], InputError]) -> Any:
        raise fail(f"{self.what} has no attribute {name!r}", "check the reference")

    def as_value(self, fail: Callable[[str, str], InputError]) -> Any:
        raise fail(f"{self.what} cannot be used as a value here", "refer to one of its attributes")


def _plain(value: Any) -> Any:
    if isinstance(value, Lazy):
        return repr(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, TfSet):
        return "a set"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, Lazy):
        return value.what
    return type(value).__name__


@dataclass
class Budget:
    """What one configuration may spend (module docstring)."""

    steps: int = 0
    depth: int = 0


@dataclass(frozen=True)
class Where:
    """Where an expression is being evaluated, for errors: the file, the key path shown, and
    (for an expression parsed out of a JSON string or the command line) a fixed mark."""

    path: str
    key_path: str = ""
    mark: tuple[int, int] | None = None
    parts: tuple[str | int, ...] = ()  # appended to key_path when shown (built only on error)

    @property
    def shown_key_path(self) -> str:
        return format_key_path(self.parts, self.key_path) if self.parts else self.key_path

    def error(self, tree: Any, problem: str, fix: str = "") -> InputError:
        line, column = self.mark or mark_of(tree)
        return InputError(problem, location=Location(self.path, line, column),
                          key_path=self.shown_key_path, fix=fix)  # fmt: skip


Roots = Callable[[str, Callable[[str, str], InputError]], Any]

_METHOD_NAMES: dict[str, str] = {}
_OPERATOR = re.compile(r"(==|!=|<=|>=|&&|\|\||[<>+\-*/%])\s*$")


def _number(text: str) -> int | float:
    value = float(text)
    if "." not in text and "e" not in text.lower():
        return int(text)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _tidy(value: float) -> int | float:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


class Evaluator:
    """Evaluates expression trees; `roots` answers the names no scope binds (`var`, `local`,
    resource types, ...), returning None when the name is unknown."""

    def __init__(self, roots: Roots, budget: Budget | None = None) -> None:
        self.roots = roots
        self.budget = budget or Budget()

    # --- entry ----------------------------------------------------------------------------

    def evaluate(self, expression: Any, scope: dict[str, Any], where: Where) -> Any:
        if isinstance(expression, JsonExpression):
            return expression.evaluate(self, scope, where)
        if isinstance(expression, _Relocated):
            return self.evaluate(expression.tree, scope, replace(where, mark=expression.mark))
        if not _is_tree(expression):
            return expression  # a JSON-syntax literal
        budget = self.budget
        budget.depth += 1
        try:
            if budget.depth > MAX_DEPTH:
                raise where.error(
                    expression,
                    f"evaluation nests deeper than {MAX_DEPTH} levels (MAX_DEPTH)",
                    "simplify the expression or the chain of locals it refers to",
                )
            self.step(where, expression)
            return self._eval(expression, scope, where)
        finally:
            budget.depth -= 1

    def step(self, where: Where, tree: Any, count: int = 1) -> None:
        self.budget.steps += count
        if self.budget.steps > MAX_STEPS:
            raise where.error(
                tree,
                f"evaluation took more than {MAX_STEPS} steps (MAX_STEPS)",
                "simplify the configuration, or give `terraform show -json` output",
            )

    # --- dispatch -------------------------------------------------------------------------

    def _eval(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        kind = tree.data
        method = getattr(self, _METHOD_NAMES.get(kind) or f"_e_{kind}", None)
        if method is None:
            raise where.error(tree, f"the expression form {kind!r} is not evaluated",
                              SHOW_JSON_FIX)  # fmt: skip
        return method(tree, scope, where)

    def _fail(self, tree: Any, where: Where) -> Callable[[str, str], InputError]:
        return lambda problem, fix="": where.error(tree, problem, fix)

    def _e_expr_term(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        (inner,) = _kids(tree)
        return self.evaluate(inner, scope, where)

    def _e_int_lit(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        text = str(tree.children[0])
        if len(text) > 40:
            raise where.error(tree, "the number has more than 40 digits", "write a smaller number")
        return int(text)

    def _e_float_lit(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        text = str(tree.children[0])
        if len(text) > 60:
            raise where.error(tree, "the number is too long", "write a smaller number")
        return _number(text)

    def _e_literal_value(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        return {"true": True, "false": False, "null": None}[str(tree.children[0])]

    def _e_identifier(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        name = str(tree.children[0])
        if name in scope:
            return scope[name]
        value = self.roots(name, self._fail(tree, where))
        if value is None:
            raise where.error(tree, f"unknown name {name!r}",
                              "refer to var.NAME, local.NAME, a resource TYPE.NAME, or an"
                              " iterator in scope")  # fmt: skip
        return value

    def _e_keyword(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        return self._e_identifier(tree, scope, where)

    def _e_string(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        parts = [c for c in tree.children if _is_tree(c) and c.data == "string_part"]
        pieces: list[Any] = []
        for part in parts:
            (piece,) = part.children
            if not _is_tree(piece):
                kind = getattr(piece, "type", "")
                text = str(piece)
                if kind == "ESCAPED_INTERPOLATION" or kind == "ESCAPED_DIRECTIVE":
                    pieces.append(text[1:])
                else:
                    pieces.append(unescape(text))
            elif piece.data == "interpolation":
                (inner,) = _kids(piece)
                pieces.append(_Hole(self.evaluate(inner, scope, where), piece))
            else:
                raise where.error(piece, "template directives (%{if}, %{for}) are not evaluated",
                                  "write the value with a conditional or a for expression")  # fmt: skip
        if len(pieces) == 1 and isinstance(pieces[0], _Hole):
            return self._value(pieces[0].value, pieces[0].tree, where)  # "${x}" is x itself
        text = "".join(
            self._text(p.value, p.tree, where) if isinstance(p, _Hole) else p for p in pieces
        )
        return self._checked_string(text, tree, where)

    def _checked_string(self, text: str, tree: Any, where: Where) -> str:
        if len(text) > MAX_STRING:
            raise where.error(tree, f"a string grows over {MAX_STRING} characters (MAX_STRING)",
                              "simplify the expression")  # fmt: skip
        return text

    def _text(self, value: Any, tree: Any, where: Where) -> str:
        value = self._value(value, tree, where)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(_tidy(value))
        if isinstance(value, str):
            return value
        if value is None:
            raise where.error(tree, "a null value in a string template", "give the value")
        raise where.error(tree, f"{describe(value)} cannot be written into a string",
                          "use join() or refer to one element")  # fmt: skip

    def _value(self, value: Any, tree: Any, where: Where) -> Any:
        if isinstance(value, Lazy):
            return value.as_value(self._fail(tree, where))
        return value

    def _e_heredoc_template(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        text = str(tree.children[0])
        body = text.split("\n", 1)[1] if "\n" in text else ""
        body = body.rstrip("\n")
        body = body[: body.rfind("\n") + 1] if "\n" in body else ""
        if "${" in body.replace("$${", "") or "%{" in body.replace("%%{", ""):
            raise where.error(tree, "interpolation in a heredoc is not evaluated",
                              "write the value as a quoted string")  # fmt: skip
        if tree.data == "heredoc_template_trim":
            lines = body.split("\n")
            indents = [len(x) - len(x.lstrip()) for x in lines if x.strip()]
            cut = min(indents) if indents else 0
            body = "\n".join(x[cut:] for x in lines)
        return body.replace("$${", "${").replace("%%{", "%{")

    _e_heredoc_template_trim = _e_heredoc_template

    def _e_template_string(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        raise where.error(tree, "template directives are not evaluated",
                          "write the value with a conditional or a for expression")  # fmt: skip

    def _e_tuple(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        return [self._value(self.evaluate(item, scope, where), item, where)
                for item in _kids(tree)]  # fmt: skip

    def _e_object(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        result: dict[str, Any] = {}
        for element in _kids(tree):
            key_tree, value_tree = [c for c in element.children if _is_tree(c)]
            key = self._object_key(key_tree, scope, where)
            result[key] = self._value(self.evaluate(value_tree, scope, where), value_tree, where)
        return result

    def _object_key(self, key_tree: Any, scope: dict[str, Any], where: Where) -> str:
        (inner,) = _kids(key_tree)
        bare = inner
        if _is_tree(bare) and bare.data == "expr_term" and len(_kids(bare)) == 1:
            bare = _kids(bare)[0]
        if _is_tree(bare) and bare.data in ("identifier", "keyword"):
            return str(bare.children[0])
        if _is_tree(bare) and bare.data == "literal_value":
            return str(bare.children[0])
        key = self._value(self.evaluate(inner, scope, where), inner, where)
        if isinstance(key, bool) or key is None or isinstance(key, list | dict):
            raise where.error(inner, f"an object key must be a string, not {describe(key)}",
                              "use a string key")  # fmt: skip
        return self._text(key, inner, where)

    # --- operators ------------------------------------------------------------------------

    def _e_conditional(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        condition, yes, no = _kids(tree)
        test = self._value(self.evaluate(condition, scope, where), condition, where)
        if not isinstance(test, bool):
            raise where.error(condition, f"the condition is {describe(test)}, not a bool",
                              "compare it, e.g. x != null")  # fmt: skip
        chosen = yes if test else no
        return self.evaluate(chosen, scope, where)

    def _e_unary_op(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        operator, operand = tree.children[0], tree.children[1]
        value = self._value(self.evaluate(operand, scope, where), operand, where)
        if str(operator).strip() == "!":
            if not isinstance(value, bool):
                raise where.error(tree, f"! needs a bool, got {describe(value)}", "")
            return not value
        return -self._arith(value, operand, where)

    def _arith(self, value: Any, tree: Any, where: Where) -> int | float:
        if isinstance(value, str):
            try:
                return _number(value.strip())
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise where.error(tree, f"expected a number, got {describe(value)}", "")
        return value

    def _e_binary_op(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        left_tree, term = _kids(tree)
        operator_tree, right_tree = _kids(term)
        match = _OPERATOR.search(str(operator_tree.children[0]))
        operator = match.group(1) if match else str(operator_tree.children[0]).strip()
        left = self._value(self.evaluate(left_tree, scope, where), left_tree, where)
        if operator in ("&&", "||"):
            if not isinstance(left, bool):
                raise where.error(left_tree, f"{operator} needs bools, got {describe(left)}", "")
            if (operator == "&&" and not left) or (operator == "||" and left):
                return left
            right = self._value(self.evaluate(right_tree, scope, where), right_tree, where)
            if not isinstance(right, bool):
                raise where.error(right_tree, f"{operator} needs bools, got {describe(right)}", "")
            return right
        right = self._value(self.evaluate(right_tree, scope, where), right_tree, where)
        if operator == "==":
            return _plain(left) == _plain(right)
        if operator == "!=":
            return _plain(left) != _plain(right)
        a, b = self._arith(left, left_tree, where), self._arith(right, right_tree, where)
        if operator in ("<", ">", "<=", ">="):
            return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[operator]
        if operator in ("/", "%") and b == 0:
            raise where.error(right_tree, "division by zero", "")
        result = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                  "/": lambda: a / b, "%": lambda: math.fmod(a, b)}[operator]()  # fmt: skip
        if isinstance(result, int) and abs(result) > 10**40:
            raise where.error(tree, "the number grows over 40 digits", "")
        return _tidy(result)

    # --- traversal ------------------------------------------------------------------------

    def _e_get_attr_expr_term(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        base_tree, get_attr = _kids(tree)
        base = self.evaluate(base_tree, scope, where)
        return self._get_attr(base, get_attr, where)

    def _get_attr(self, base: Any, get_attr: Any, where: Where) -> Any:
        (name_tree,) = _kids(get_attr)
        name = str(name_tree.children[0])
        fail = self._fail(get_attr, where)
        if isinstance(base, Lazy):
            return base.attr(name, fail)
        if isinstance(base, dict):
            if name not in base:
                known = ", ".join(sorted(base)[:12]) or "none"
                raise fail(f"the object has no attribute {name!r}", f"its attributes: {known}")
            return base[name]
        if isinstance(base, list) and name.isdigit():
            return self._at(base, int(name), get_attr, where)
        raise fail(f"{describe(base)} has no attribute {name!r}", "check the reference")

    def _at(self, base: Any, key: Any, tree: Any, where: Where) -> Any:
        fail = self._fail(tree, where)
        if isinstance(base, Lazy):
            base = base.as_value(fail)
        if isinstance(base, dict):
            key_text = self._text(key, tree, where)
            if key_text not in base:
                known = ", ".join(repr(k) for k in sorted(base)[:12]) or "none"
                raise fail(f"the map has no key {key_text!r}", f"its keys: {known}")
            return base[key_text]
        if isinstance(base, TfSet):
            raise fail("a set cannot be indexed", "convert it with tolist()")
        if isinstance(base, list):
            index = self._arith(key, tree, where)
            if not isinstance(index, int) or not 0 <= index < len(base):
                raise fail(f"index {key!r} is outside the list of {len(base)}", "")
            return base[index]
        raise fail(f"{describe(base)} cannot be indexed", "")

    def _e_index_expr_term(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        base_tree, index = _kids(tree)
        base = self.evaluate(base_tree, scope, where)
        return self._index(base, index, scope, where)

    def _index(self, base: Any, index: Any, scope: dict[str, Any], where: Where) -> Any:
        if index.data == "short_index":
            key: Any = int(str(index.children[-1]))
        else:
            (key_tree,) = _kids(index)
            key = self._value(self.evaluate(key_tree, scope, where), key_tree, where)
        return self._at(base, key, index, where)

    def _splat(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        base_tree, splat = _kids(tree)
        base = self._value(self.evaluate(base_tree, scope, where), base_tree, where)
        if base is None:
            return []
        items = base if isinstance(base, list) else [base]
        results = []
        for item in items:
            value = item
            for operation in _kids(splat):
                if operation.data == "get_attr":
                    value = self._get_attr(value, operation, where)
                else:
                    value = self._index(value, operation, scope, where)
            results.append(value)
        self.step(where, tree, len(results))
        return results

    _e_attr_splat_expr_term = _splat
    _e_full_splat_expr_term = _splat

    # --- calls ----------------------------------------------------------------------------

    def _e_function_call(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        names = [c for c in tree.children if _is_tree(c) and c.data == "identifier"]
        if len(names) > 1:
            raise where.error(tree, "provider-defined functions are not evaluated", SHOW_JSON_FIX)
        name = str(names[0].children[0])
        arguments = [c for c in tree.children if _is_tree(c) and c.data == "arguments"]
        argument_trees = _kids(arguments[0]) if arguments else []
        expand = bool(arguments) and any(
            getattr(c, "type", "") == "ELLIPSIS" for c in arguments[0].children
        )
        if name in ("try", "can"):
            return self._try(name, argument_trees, scope, where, tree)
        function = FUNCTIONS.get(name)
        if function is None:
            raise where.error(tree, f"the function {name}() is not evaluated offline",
                              f"write the value, or {SHOW_JSON_FIX}")  # fmt: skip
        values = [self._value(self.evaluate(a, scope, where), a, where) for a in argument_trees]
        if expand:
            last = values.pop() if values else None
            if not isinstance(last, list):
                raise where.error(tree, "... needs a list as the last argument", "")
            values.extend(last)
        fail = self._fail(tree, where)
        result = function(values, fail)
        if isinstance(result, list | dict):
            self.step(where, tree, len(result))
        elif isinstance(result, str):
            self._checked_string(result, tree, where)
        return result

    def _try(self, name: str, trees: list[Any], scope: dict[str, Any], where: Where,
             tree: Any) -> Any:  # fmt: skip
        for argument in trees:
            try:
                value = self._value(self.evaluate(argument, scope, where), argument, where)
            except InputError as error:
                if "(MAX_" in error.problem:
                    raise
                if name == "can":
                    return False
                continue
            return True if name == "can" else value
        if name == "can":
            return True
        raise where.error(tree, "no argument of try() could be evaluated", "")

    # --- for expressions ------------------------------------------------------------------

    def _for(
        self, tree: Any, scope: dict[str, Any], where: Where
    ) -> list[tuple[dict[str, Any], Any]]:
        intro = next(c for c in tree.children if _is_tree(c) and c.data == "for_intro")
        names, collection_tree, seen_in = [], None, False
        for child in intro.children:
            if not _is_tree(child):
                if str(child).strip() == "in":
                    seen_in = True
                continue
            if child.data == "new_line_or_comment":
                continue
            if not seen_in and child.data == "identifier":
                names.append(str(child.children[0]))
            elif seen_in:
                collection_tree = child
        collection = self._value(self.evaluate(collection_tree, scope, where), collection_tree,
                                 where)  # fmt: skip
        condition = next((c for c in tree.children if _is_tree(c) and c.data == "for_cond"), None)
        condition_tree = _kids(condition)[0] if condition is not None else None
        pairs = iterate(collection, self._fail(collection_tree, where))
        self.step(where, tree, len(pairs))
        bound = []
        for key, value in pairs:
            inner = dict(scope)
            if len(names) == 2:
                inner[names[0]], inner[names[1]] = key, value
            else:
                inner[names[0]] = value
            if condition_tree is not None:
                keep = self._value(self.evaluate(condition_tree, inner, where), condition_tree,
                                   where)  # fmt: skip
                if not isinstance(keep, bool):
                    raise where.error(condition_tree, "the if condition is not a bool", "")
                if not keep:
                    continue
            bound.append((inner, value))
        return bound

    def _e_for_tuple_expr(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        body = [c for c in tree.children if _is_tree(c)
                and c.data not in ("for_intro", "for_cond", "new_line_or_comment")]  # fmt: skip
        (value_tree,) = body
        return [self._value(self.evaluate(value_tree, inner, where), value_tree, where)
                for inner, _ in self._for(tree, scope, where)]  # fmt: skip

    def _e_for_object_expr(self, tree: Any, scope: dict[str, Any], where: Where) -> Any:
        body = [c for c in tree.children if _is_tree(c)
                and c.data not in ("for_intro", "for_cond", "new_line_or_comment")]  # fmt: skip
        key_tree, value_tree = body
        grouping = any(getattr(c, "type", "") == "ELLIPSIS" for c in tree.children)
        result: dict[str, Any] = {}
        for inner, _ in self._for(tree, scope, where):
            key = self._text(self.evaluate(key_tree, inner, where), key_tree, where)
            value = self._value(self.evaluate(value_tree, inner, where), value_tree, where)
            if grouping:
                result.setdefault(key, []).append(value)
            elif key in result:
                raise where.error(key_tree, f"two elements have the key {key!r}",
                                  "use ... after the value to group them")  # fmt: skip
            else:
                result[key] = value
        return result


class JsonExpression:
    """A value written in Terraform's JSON syntax: literals as they are, strings read as
    templates (`"${var.x}"`)."""

    def __init__(self, value: Any, path: str, mark: tuple[int, int]) -> None:
        self.value, self.path, self.mark = value, path, mark

    def evaluate(self, evaluator: Evaluator, scope: dict[str, Any], where: Where) -> Any:
        def walk(value: Any, depth: int) -> Any:
            if depth > MAX_DEPTH:
                raise where.error(None, f"the value nests deeper than {MAX_DEPTH} (MAX_DEPTH)", "")
            evaluator.step(where, None)
            if isinstance(value, str) and ("${" in value or "%{" in value):
                tree = parse_template(value, self.path, self.mark)
                return evaluator.evaluate(tree, scope, replace(where, mark=self.mark))
            if isinstance(value, dict):
                return {k: walk(v, depth + 1) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v, depth + 1) for v in value]
            return value

        return walk(self.value, 0)


@dataclass(frozen=True)
class _Hole:
    value: Any
    tree: Any


try:
    from lark import Tree as _Tree
except ImportError:  # python-hcl2 missing: hcl.parse_hcl says so before any tree exists
    _Tree = type("_Tree", (), {})


def _is_tree(value: Any) -> bool:
    return isinstance(value, _Tree)


_KIDS: dict[int, tuple[Any, list[Any]]] = {}


def _kids(tree: Any) -> list[Any]:
    """A tree's child trees, without layout (newlines, comments) and punctuation tokens;
    remembered per tree (keyed by id, the tree kept alive with it), as dynamic blocks evaluate
    the same trees once per element."""
    found = _KIDS.get(id(tree))
    if found is not None and found[0] is tree:
        return found[1]
    kids = [c for c in tree.children if isinstance(c, _Tree) and c.data != "new_line_or_comment"]
    if len(_KIDS) > 500_000:
        _KIDS.clear()
    _KIDS[id(tree)] = (tree, kids)
    return kids


def iterate(collection: Any, fail: Callable[[str, str], InputError]) -> list[tuple[Any, Any]]:
    """(key, value) pairs as Terraform's for and for_each see them: lists by index, sets by
    value, maps and objects in key order."""
    if isinstance(collection, Lazy):
        collection = collection.as_value(fail)
    if isinstance(collection, TfSet):
        return [(item, item) for item in collection]
    if isinstance(collection, list):
        return list(enumerate(collection))
    if isinstance(collection, dict):
        return [(key, collection[key]) for key in sorted(collection)]
    raise fail(f"cannot iterate over {describe(collection)}", "give a list, set or map")


# --- functions ---------------------------------------------------------------------------

Fail = Callable[[str, str], InputError]


def _arity(name: str, values: list[Any], fail: Fail, low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(values) <= high:
        count = str(low) if low == high else f"{low} to {high}"
        raise fail(f"{name}() takes {count} argument(s), got {len(values)}", "")


def _want(value: Any, kind: type | tuple[type, ...], name: str, fail: Fail) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise fail(f"{name}() got {describe(value)}", "")
    if not isinstance(value, kind):
        raise fail(f"{name}() got {describe(value)} where it needs another type", "")
    return value


def _string(value: Any, name: str, fail: Fail) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(_tidy(value))
    return _want(value, str, name, fail)


def _f_concat(values: list[Any], fail: Fail) -> Any:
    result: list[Any] = []
    for value in values:
        result.extend(_want(value, list, "concat", fail))
    return result


def _f_flatten(values: list[Any], fail: Fail) -> Any:
    _arity("flatten", values, fail, 1)

    def walk(items: list[Any], depth: int) -> list[Any]:
        if depth > MAX_DEPTH:
            raise fail(f"flatten() nests deeper than {MAX_DEPTH} (MAX_DEPTH)", "")
        out: list[Any] = []
        for item in items:
            out.extend(walk(item, depth + 1) if isinstance(item, list) else [item])
        return out

    return walk(_want(values[0], list, "flatten", fail), 0)


def _f_merge(values: list[Any], fail: Fail) -> Any:
    result: dict[str, Any] = {}
    for value in values:
        if value is None:
            continue
        result.update(_want(value, dict, "merge", fail))
    return result


def _f_lookup(values: list[Any], fail: Fail) -> Any:
    _arity("lookup", values, fail, 2, 3)
    mapping = _want(values[0], dict, "lookup", fail)
    key = _string(values[1], "lookup", fail)
    if key in mapping:
        return mapping[key]
    if len(values) == 3:
        return values[2]
    raise fail(f"lookup(): the map has no key {key!r}", "give a default as the third argument")


_FORMAT_VERB = re.compile(r"%(%|[-+# 0]*\d*(?:\.\d+)?[sdvqtfeEgGxXob])")


def _f_format(values: list[Any], fail: Fail) -> Any:
    if not values:
        raise fail("format() needs a format string", "")
    spec, arguments = _string(values[0], "format", fail), list(values[1:])

    def one(match: re.Match[str]) -> str:
        verb = match.group(1)
        if verb == "%":
            return "%"
        if not arguments:
            raise fail(f"format(): not enough arguments for {spec!r}", "")
        value = arguments.pop(0)
        letter = verb[-1]
        if letter in "sv":
            text = (
                json.dumps(value)
                if isinstance(value, list | dict)
                else _string(value, "format", fail)
            )
            return ("%" + verb[:-1] + "s") % text
        if letter == "q":
            return json.dumps(_string(value, "format", fail))
        if letter == "t":
            return "true" if value else "false"
        number = _want(value, (int, float), "format", fail)
        if letter == "d":
            number = int(number)
        return ("%" + verb) % number

    return _FORMAT_VERB.sub(one, spec)


def _f_distinct(values: list[Any], fail: Fail) -> Any:
    _arity("distinct", values, fail, 1)
    result: list[Any] = []
    for item in _want(values[0], list, "distinct", fail):
        if _plain(item) not in [_plain(x) for x in result]:
            result.append(item)
    return result


def _f_keys(values: list[Any], fail: Fail) -> Any:
    _arity("keys", values, fail, 1)
    return sorted(_want(values[0], dict, "keys", fail))


def _f_values(values: list[Any], fail: Fail) -> Any:
    _arity("values", values, fail, 1)
    mapping = _want(values[0], dict, "values", fail)
    return [mapping[key] for key in sorted(mapping)]


def _f_length(values: list[Any], fail: Fail) -> Any:
    _arity("length", values, fail, 1)
    return len(_want(values[0], (list, dict, str), "length", fail))


def _f_join(values: list[Any], fail: Fail) -> Any:
    _arity("join", values, fail, 2)
    separator = _string(values[0], "join", fail)
    return separator.join(_string(v, "join", fail) for v in _want(values[1], list, "join", fail))


def _f_split(values: list[Any], fail: Fail) -> Any:
    _arity("split", values, fail, 2)
    separator, text = _string(values[0], "split", fail), _string(values[1], "split", fail)
    if not separator:
        raise fail("split() needs a separator", "")
    return text.split(separator)


def _f_replace(values: list[Any], fail: Fail) -> Any:
    _arity("replace", values, fail, 3)
    text, old, new = (_string(v, "replace", fail) for v in values)
    if len(old) > 1 and old.startswith("/") and old.endswith("/"):
        try:
            return re.sub(old[1:-1], re.sub(r"\$\{?(\d+)\}?", r"\\\1", new), text)
        except re.error as error:
            raise fail(f"replace(): bad pattern {old!r}: {error}", "") from None
    if not old:
        raise fail("replace(): the substring is empty", "")
    if len(text) + text.count(old) * max(0, len(new) - len(old)) > MAX_STRING:
        raise fail(f"replace() grows a string over {MAX_STRING} characters (MAX_STRING)", "")
    return text.replace(old, new)


def _f_contains(values: list[Any], fail: Fail) -> Any:
    _arity("contains", values, fail, 2)
    return _plain(values[1]) in [_plain(x) for x in _want(values[0], list, "contains", fail)]


def _f_coalesce(values: list[Any], fail: Fail) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    raise fail("coalesce(): every argument is null or empty", "")


def _f_coalescelist(values: list[Any], fail: Fail) -> Any:
    for value in values:
        if _want(value, list, "coalescelist", fail):
            return value
    raise fail("coalescelist(): every list is empty", "")


def _f_compact(values: list[Any], fail: Fail) -> Any:
    _arity("compact", values, fail, 1)
    return [v for v in _want(values[0], list, "compact", fail) if v not in (None, "")]


def _f_element(values: list[Any], fail: Fail) -> Any:
    _arity("element", values, fail, 2)
    items = _want(values[0], list, "element", fail)
    index = _want(values[1], int, "element", fail)
    if not items:
        raise fail("element() of an empty list", "")
    return items[index % len(items)]


def _f_range(values: list[Any], fail: Fail) -> Any:
    _arity("range", values, fail, 1, 3)
    numbers = [_want(v, (int, float), "range", fail) for v in values]
    start, stop, step = (0, numbers[0], 1) if len(numbers) == 1 else (
        numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else 1)  # fmt: skip
    if step == 0 or (stop - start) / step > 100_000:
        raise fail("range() would make more than 100000 numbers", "")
    result, value = [], start
    while (step > 0 and value < stop) or (step < 0 and value > stop):
        result.append(_tidy(value))
        value += step
    return result


def _f_zipmap(values: list[Any], fail: Fail) -> Any:
    _arity("zipmap", values, fail, 2)
    keys, items = _want(values[0], list, "zipmap", fail), _want(values[1], list, "zipmap", fail)
    if len(keys) != len(items):
        raise fail("zipmap(): the lists differ in length", "")
    return {_string(k, "zipmap", fail): v for k, v in zip(keys, items, strict=True)}


def _f_tonumber(values: list[Any], fail: Fail) -> Any:
    _arity("tonumber", values, fail, 1)
    value = values[0]
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    try:
        return _number(_want(value, str, "tonumber", fail).strip())
    except ValueError:
        raise fail(f"tonumber(): {value!r} is not a number", "") from None


def _f_tobool(values: list[Any], fail: Fail) -> Any:
    _arity("tobool", values, fail, 1)
    value = values[0]
    if value is None or isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise fail(f"tobool(): {value!r} is not a bool", "")


def _one(function: Callable[[Any], Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    def call(values: list[Any], fail: Fail) -> Any:
        _arity(name, values, fail, 1)
        value = values[0]
        if kind is str:
            value = _string(value, name, fail)
        else:
            value = _want(value, kind, name, fail)
        return function(value)

    return call


def _f_setproduct(values: list[Any], fail: Fail) -> Any:
    result: list[list[Any]] = [[]]
    for value in values:
        items = _want(value, list, "setproduct", fail)
        result = [[*prefix, item] for prefix in result for item in items]
        if len(result) > 100_000:
            raise fail("setproduct() would make more than 100000 elements", "")
    return result


def _f_try_one(values: list[Any], fail: Fail) -> Any:
    _arity("one", values, fail, 1)
    items = _want(values[0], list, "one", fail)
    if len(items) > 1:
        raise fail("one() of a list with more than one element", "")
    return items[0] if items else None


FUNCTIONS: dict[str, Callable[[list[Any], Fail], Any]] = {
    "concat": _f_concat,
    "flatten": _f_flatten,
    "merge": _f_merge,
    "lookup": _f_lookup,
    "format": _f_format,
    "lower": _one(str.lower, "lower"),
    "upper": _one(str.upper, "upper"),
    "trimspace": _one(str.strip, "trimspace"),
    "title": _one(str.title, "title"),
    "toset": lambda v, f: (
        _make_set(_want(v[0], list, "toset", f)) if len(v) == 1 else _arity("toset", v, f, 1)
    ),
    "tolist": lambda v, f: (
        list(_want(v[0], list, "tolist", f)) if len(v) == 1 else _arity("tolist", v, f, 1)
    ),
    "tomap": lambda v, f: (
        dict(_want(v[0], dict, "tomap", f)) if len(v) == 1 else _arity("tomap", v, f, 1)
    ),
    "tostring": lambda v, f: None if v and v[0] is None else _one(lambda x: x, "tostring")(v, f),
    "tonumber": _f_tonumber,
    "tobool": _f_tobool,
    "distinct": _f_distinct,
    "keys": _f_keys,
    "values": _f_values,
    "length": _f_length,
    "join": _f_join,
    "split": _f_split,
    "replace": _f_replace,
    "contains": _f_contains,
    "coalesce": _f_coalesce,
    "coalescelist": _f_coalescelist,
    "compact": _f_compact,
    "element": _f_element,
    "range": _f_range,
    "zipmap": _f_zipmap,
    "setproduct": _f_setproduct,
    "one": _f_try_one,
    "sort": lambda v, f: sorted(_string(x, "sort", f) for x in _want(v[0], list, "sort", f)),
    "reverse": lambda v, f: list(reversed(_want(v[0], list, "reverse", f))),
    "max": lambda v, f: (
        max(_want(x, (int, float), "max", f) for x in v) if v else _arity("max", v, f, 1, 99)
    ),
    "min": lambda v, f: (
        min(_want(x, (int, float), "min", f) for x in v) if v else _arity("min", v, f, 1, 99)
    ),
    "jsonencode": lambda v, f: (
        json.dumps(_plain(v[0]), separators=(",", ":"))
        if len(v) == 1
        else _arity("jsonencode", v, f, 1)
    ),
    "startswith": lambda v, f: _string(v[0], "startswith", f).startswith(
        _string(v[1], "startswith", f)
    ),
    "endswith": lambda v, f: _string(v[0], "endswith", f).endswith(_string(v[1], "endswith", f)),
}


# --- type constraints ---------------------------------------------------------------------


def convert(value: Any, constraint: Any, fail: Fail, what: str) -> Any:
    """`value` converted to a variable's `type` (a parsed constraint: see `type_of`), as
    Terraform converts: strings to numbers and bools, lists to sets, optional object
    attributes filled with their defaults."""
    if constraint is None or constraint == "any" or value is None:
        return value
    if constraint == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(_tidy(value))
        if isinstance(value, str):
            return value
        raise fail(f"{what} must be a string, not {describe(value)}", "")
    if constraint == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return _number(value.strip())
            except ValueError:
                pass
        raise fail(f"{what} must be a number, not {describe(value)}", "")
    if constraint == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise fail(f"{what} must be a bool, not {describe(value)}", "")
    kind, inner = constraint
    if kind in ("list", "set"):
        if not isinstance(value, list):
            raise fail(f"{what} must be a {kind}, not {describe(value)}", "")
        items = [convert(v, inner, fail, f"{what}[{i}]") for i, v in enumerate(value)]
        return _make_set(items) if kind == "set" else items
    if kind == "tuple":
        if not isinstance(value, list) or len(value) != len(inner):
            raise fail(f"{what} must be a tuple of {len(inner)}", "")
        return [convert(v, t, fail, f"{what}[{i}]") for i, (v, t) in enumerate(zip(value, inner))]
    if kind == "map":
        if not isinstance(value, dict):
            raise fail(f"{what} must be a map, not {describe(value)}", "")
        return {k: convert(v, inner, fail, f'{what}["{k}"]') for k, v in value.items()}
    if kind == "object":
        if not isinstance(value, dict):
            raise fail(f"{what} must be an object, not {describe(value)}", "")
        result = {}
        for name, (attribute_type, optional, default) in inner.items():
            if name in value and value[name] is not None:
                result[name] = convert(value[name], attribute_type, fail, f"{what}.{name}")
            elif optional:
                result[name] = convert(default, attribute_type, fail, f"{what}.{name}")
            elif name in value:
                result[name] = None
            else:
                raise fail(f"{what} lacks the attribute {name!r} its type requires",
                           f"add {name} = ...")  # fmt: skip
        return result
    return value
