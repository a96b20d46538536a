"""ARM's template expression language, evaluated offline: `[function(args).property[index]]`.

Pure: no I/O. `harness.policy.arm` walks templates and calls `Evaluator.evaluate(text, scope)`;
every failure is an `ExpressionError(problem, fix)` that the caller raises at the node holding
the expression, so the user sees `file:LINE:COL: key.path: problem; fix`.

Functions (case-insensitive, as in ARM): string (`concat`, `format`, `string`, `toLower`,
`toUpper`, `replace`, `split`, `join`, `substring`, `trim`, `startsWith`, `endsWith`,
`indexOf`, `lastIndexOf`, `padLeft`, `uniqueString`, `guid`, `base64`, `base64ToString`,
`dataUri`, `uri`), array and object (`array`, `createArray`, `createObject`, `contains`,
`empty`, `first`, `last`, `length`, `take`, `skip`, `range`, `union`, `intersection`,
`flatten`, `items`, `objectKeys`, `json`, `coalesce`, `null`, `tryGet`, `shallowMerge`,
`indexFromEnd`), comparison and logic (`equals`, `greater`, `greaterOrEquals`, `less`,
`lessOrEquals`, `and`, `or`, `not`, `if` (lazy, as ARM), `bool`, `true`, `false`), numbers
(`int`, `add`, `sub`, `mul`, `div`, `mod`, `min`, `max`), lambdas (`lambda`,
`lambdaVariables`, `filter`, `map`, `reduce`, `sort`, `toObject`), deployment (`parameters`,
`variables`, `copyIndex`, `resourceGroup`, `subscription`, `tenant`, `deployment`,
`environment`, `resourceId`, `subscriptionResourceId`, `tenantResourceId`,
`extensionResourceId`). `reference()`, `list*()`, `newGuid()`, `utcNow()` and the like have
values only during a deployment: they are an error naming the function.

Deterministic hashes (Azure does not publish its own code):
- `uniqueString(a, b, ...)`: MurmurHash64A (seed 0) of the UTF-8 of the arguments joined with
  `-`, its 8 bytes little-endian in RFC 4648 base32, lower case, unpadded: 13 characters. This is
  the algorithm Microsoft's DSC v3 implements for its ARM-compatible `uniqueString()`; a real
  deployment may still produce other characters, so never hard-code such a name elsewhere.
- `guid(a, b, ...)`: a name-based UUID version 5 (SHA-1) of the arguments joined with `-` in the
  namespace 11fb06fb-712d-4ddd-98c7-e71bbd588830, the algorithm observed for ARM's `guid()`.

Limits (over a limit is an ExpressionError naming it; the CLI exits 2): an expression of at most
24,576 characters (ARM's own limit), nesting at most 64 deep, 1,000,000 evaluation steps per
template load, strings at most 4,194,304 characters and arrays at most 100,000 items, integers
within 64 bits (ARM's integers are 64-bit).
"""

from __future__ import annotations

__all__ = [
    "LIMITS",
    "DeploymentContext",
    "Evaluator",
    "ExpressionError",
    "Limits",
    "Scope",
    "guid",
    "is_expression",
    "unique_string",
]

import base64
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# --- errors and limits ---------------------------------------------------------------------


class ExpressionError(Exception):
    """Why an expression has no value offline; raised by the caller at the expression's node."""

    def __init__(self, problem: str, fix: str = "edit the resolved value into the file") -> None:
        super().__init__(problem)
        self.problem, self.fix = problem, fix
        self.named = False  # the problem already names the function it happened in


@dataclass(frozen=True)
class Limits:
    expression_chars: int = 24_576
    depth: int = 64
    steps: int = 1_000_000
    string_chars: int = 4_194_304
    array_items: int = 100_000


LIMITS = Limits()
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def _over(limit: str, fix: str = "simplify the template") -> ExpressionError:
    return ExpressionError(f"over the harness's limit of {limit}", fix)


# --- deployment context --------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentContext:
    """What `resourceGroup()`, `subscription()`, `tenant()` and `deployment()` answer. The
    defaults are stated in the README; `--resource-group`, `--location` and `--subscription`
    override them."""

    resource_group: str = "egress-harness-rg"
    location: str = "westeurope"
    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    tenant_id: str = "00000000-0000-0000-0000-000000000000"
    deployment_name: str = "egress-harness"

    def resource_group_value(self) -> dict[str, Any]:
        return {
            "id": f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}",
            "name": self.resource_group,
            "type": "Microsoft.Resources/resourceGroups",
            "location": self.location,
            "managedBy": None,
            "tags": {},
            "properties": {"provisioningState": "Succeeded"},
        }

    def subscription_value(self) -> dict[str, Any]:
        return {
            "id": f"/subscriptions/{self.subscription_id}",
            "subscriptionId": self.subscription_id,
            "tenantId": self.tenant_id,
            "displayName": "egress-harness",
        }

    def tenant_value(self) -> dict[str, Any]:
        return {
            "countryCode": "",
            "displayName": "egress-harness",
            "id": f"/tenants/{self.tenant_id}",
            "tenantId": self.tenant_id,
        }


_ENVIRONMENT = {
    "name": "AzureCloud",
    "gallery": "https://gallery.azure.com/",
    "graph": "https://graph.windows.net/",
    "portal": "https://portal.azure.com",
    "resourceManager": "https://management.azure.com/",
    "authentication": {
        "loginEndpoint": "https://login.microsoftonline.com/",
        "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
        "tenant": "common",
    },
    "suffixes": {
        "acrLoginServer": ".azurecr.io",
        "azureDatalakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
        "keyvaultDns": ".vault.azure.net",
        "sqlServerHostname": ".database.windows.net",
        "storage": "core.windows.net",
    },
}


# --- hashes --------------------------------------------------------------------------------

_M64 = 0xC6A4A7935BD1E995
_MASK = 0xFFFFFFFFFFFFFFFF


def _murmur64a(data: bytes, seed: int = 0) -> int:
    length = len(data)
    h = (seed ^ (length * _M64)) & _MASK
    whole = length - length % 8
    for offset in range(0, whole, 8):
        k = int.from_bytes(data[offset : offset + 8], "little")
        k = (k * _M64) & _MASK
        k ^= k >> 47
        k = (k * _M64) & _MASK
        h ^= k
        h = (h * _M64) & _MASK
    tail = data[whole:]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * _M64) & _MASK
    h ^= h >> 47
    h = (h * _M64) & _MASK
    return h ^ (h >> 47)


def unique_string(*values: str) -> str:
    digest = _murmur64a("-".join(values).encode()).to_bytes(8, "little")
    return base64.b32encode(digest).decode().rstrip("=").lower()


_GUID_NAMESPACE = uuid.UUID("11fb06fb-712d-4ddd-98c7-e71bbd588830")


def guid(*values: str) -> str:
    return str(uuid.uuid5(_GUID_NAMESPACE, "-".join(values)))


# --- parsing -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>\d+(?:\.\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),.\[\]?-]))"
)

# AST: ("lit", value) | ("call", name_lower, name_written, args) | ("member", target, key_ast)
#      | ("safe", target, key_ast)  (Bicep's `.?` compiles to tryGet; `[?` kept for safety)
Ast = tuple[Any, ...]


def is_expression(text: Any) -> bool:
    return (
        isinstance(text, str)
        and text.startswith("[")
        and text.endswith("]")
        and not text.startswith("[[")
    )


class _Parser:
    def __init__(self, text: str, limits: Limits) -> None:
        self.text, self.limits = text, limits
        self.tokens: list[tuple[str, str]] = []
        position, end = 0, len(text.rstrip())
        while position < end:
            match = _TOKEN.match(text, position)
            if match is None:
                raise self.problem(f"unexpected {text[position:].strip()[:20]!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.position = 0
        self.depth = 0

    def problem(self, what: str) -> ExpressionError:
        shown = self.text if len(self.text) <= 120 else self.text[:117] + "..."
        return ExpressionError(
            f"cannot parse the expression [{shown}]: {what}", "fix the expression's syntax"
        )

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise self.problem(f"it ends where {expected or 'a value'!r} was expected")
        token = self.tokens[self.position]
        if expected is not None and token[1] != expected:
            raise self.problem(f"{token[1]!r} where {expected!r} was expected")
        self.position += 1
        return token

    def parse(self) -> Ast:
        tree = self.expression()
        if self.position < len(self.tokens):
            raise self.problem(f"{self.tokens[self.position][1]!r} after the end")
        return tree

    def expression(self) -> Ast:
        self.depth += 1
        if self.depth > self.limits.depth:
            raise _over(f"{self.limits.depth} nested calls or selections in one expression")
        try:
            return self._expression()
        finally:
            self.depth -= 1

    def _expression(self) -> Ast:
        kind, text = self.take()
        tree: Ast
        if kind == "string":
            tree = ("lit", text[1:-1].replace("''", "'"))
        elif kind == "number" or (text == "-" and self.tokens[self.position : self.position + 1]
                                  and self.tokens[self.position][0] == "number"):  # fmt: skip
            if text == "-":
                text = "-" + self.take()[1]
            tree = ("lit", _number(text))
        elif kind == "name":
            if self.peek() == ".":
                raise ExpressionError(
                    f"{text}.{self.tokens[self.position + 1][1] if self.position + 1 < len(self.tokens) else ''}():"
                    " user-defined template functions are not evaluated by the harness",
                    "edit the resolved value into the file",
                )
            tree = self.call(text)
        else:
            raise self.problem(f"{text!r} where a value was expected")
        while (token := self.peek()) in (".", "["):
            self.take()
            safe = self.peek() == "?"
            if safe:
                self.take()
            if token == ".":
                kind, name = self.take()
                if kind != "name":
                    raise self.problem(f"{name!r} after '.'")
                key: Ast = ("lit", name)
            else:
                key = self.expression()
                self.take("]")
            tree = ("safe" if safe else "member", tree, key)
        return tree

    def call(self, name: str) -> Ast:
        self.take("(")
        args: list[Ast] = []
        if self.peek() != ")":
            args.append(self.expression())
            while self.peek() == ",":
                self.take(",")
                args.append(self.expression())
        self.take(")")
        return ("call", name.lower(), name, tuple(args))


def _number(text: str) -> Any:
    if "." in text:
        return float(text)
    if len(text.lstrip("-")) > 19:
        raise _over("64-bit integers", "ARM's integers are 64-bit; write a smaller number")
    value = int(text)
    if not _INT_MIN <= value <= _INT_MAX:
        raise _over("64-bit integers", "ARM's integers are 64-bit; write a smaller number")
    return value


# --- evaluation ----------------------------------------------------------------------------


@dataclass
class Scope:
    """Where an expression is evaluated: the template's parameters and variables (callables, so
    each is evaluated once, when first asked for), the copy loop indexes and lambda variables."""

    parameter: Callable[[str], Any]
    variable: Callable[[str], Any]
    copy_indexes: dict[str | None, int] = field(default_factory=dict)
    lambda_values: dict[str, Any] = field(default_factory=dict)

    def with_copy(self, name: str | None, index: int, *, resource: bool = False) -> Scope:
        """A copy loop's iteration. `copyIndex()` without a name means the innermost resource
        loop (property and variable loops are named)."""
        indexes = dict(self.copy_indexes)
        indexes[name.lower() if name else None] = index
        if resource or None not in self.copy_indexes:
            indexes[None] = index
        return Scope(self.parameter, self.variable, indexes, self.lambda_values)


@dataclass(frozen=True)
class _Lambda:
    names: tuple[str, ...]
    body: Ast
    scope: Scope


_DEPLOYMENT_ONLY = frozenset(
    {"reference", "newguid", "utcnow", "pickzones", "managementgroup", "managementgroupresourceid",
     "deployer", "externalinput", "readenvironmentvariable", "resourceinfo"}
)  # fmt: skip


class Evaluator:
    """Evaluates expressions of one template load; parsed trees are cached by their text and
    the step budget is shared by everything the load evaluates."""

    def __init__(self, context: DeploymentContext, limits: Limits = LIMITS) -> None:
        self.context, self.limits = context, limits
        self.steps = 0
        self._trees: dict[str, Ast] = {}

    def evaluate(self, text: str, scope: Scope) -> Any:
        """`text` is a whole `[...]` string."""
        if len(text) > self.limits.expression_chars:
            raise _over(f"{self.limits.expression_chars:,} characters in one expression")
        tree = self._trees.get(text)
        if tree is None:
            tree = self._trees[text] = _Parser(text[1:-1], self.limits).parse()
        return self._eval(tree, scope)

    def _eval(self, tree: Ast, scope: Scope) -> Any:
        self.steps += 1
        if self.steps > self.limits.steps:
            raise _over(f"{self.limits.steps:,} expression evaluation steps per template")
        kind = tree[0]
        if kind == "lit":
            return tree[1]
        if kind in ("member", "safe"):
            target = self._eval(tree[1], scope)
            key = self._eval(tree[2], scope)
            return _member(target, key, safe=kind == "safe")
        _, name, written, args = tree
        lazy = _LAZY.get(name)
        if lazy is not None:
            return lazy(self, args, scope)
        values = [self._eval(arg, scope) for arg in args]
        if name == "parameters":
            return scope.parameter(_one_name(written, values))
        if name == "variables":
            return scope.variable(_one_name(written, values))
        if name == "copyindex":
            return self._copy_index(values, scope)
        if name == "lambdavariables":
            key = _one_name(written, values)
            if key not in scope.lambda_values:
                raise ExpressionError(f"lambdaVariables('{key}') is not a lambda's variable here")
            return scope.lambda_values[key]
        if name in _DEPLOYMENT_ONLY or name.startswith("list"):
            raise ExpressionError(
                f"{written}() has a value only during a deployment in Azure, so the harness"
                " cannot evaluate it offline",
                "replace it with the value it has in your deployment (a parameter, or a literal)",
            )
        if name in _CONTEXT:
            return _CONTEXT[name](self.context, *values)
        function = _FUNCTIONS.get(name)
        if function is None:
            raise ExpressionError(
                f"{written}() is not a template function the harness evaluates",
                "see harness/policy/arm_expr.py for the list; edit the resolved value in",
            )
        try:
            result = function(*values)
        except ExpressionError as error:
            if not error.named and not error.problem.startswith("over the harness's limit"):
                error.problem = f"{written}() cannot take these arguments: {error.problem}"
            error.named = True
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError,
                OverflowError, RecursionError) as error:  # fmt: skip
            raise ExpressionError(f"{written}() cannot take these arguments: {error}") from None
        return self._checked(result)

    def _checked(self, value: Any) -> Any:
        if isinstance(value, str) and len(value) > self.limits.string_chars:
            raise _over(f"{self.limits.string_chars:,} characters in one string value")
        if isinstance(value, list) and len(value) > self.limits.array_items:
            raise _over(f"{self.limits.array_items:,} items in one array value")
        if _is_number(value) and isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
            raise _over("64-bit integers", "ARM's integers are 64-bit")
        return value

    def _copy_index(self, values: list[Any], scope: Scope) -> int:
        name: str | None = None
        offset = 0
        if values and isinstance(values[0], str):
            name, values = values[0].lower(), values[1:]
        if values:
            offset = _int(values[0])
        if name not in scope.copy_indexes:
            where = f"the copy loop {name!r}" if name else "a copy loop"
            raise ExpressionError(f"copyIndex() is used outside {where}")
        return scope.copy_indexes[name] + offset

    def call_lambda(self, function: Any, *values: Any) -> Any:
        if not isinstance(function, _Lambda):
            raise ExpressionError("expected a lambda(...) argument")
        bound = dict(function.scope.lambda_values)
        bound.update(zip(function.names, values, strict=False))
        scope = Scope(
            function.scope.parameter, function.scope.variable, function.scope.copy_indexes, bound
        )
        return self._eval(function.body, scope)


def _one_name(written: str, values: list[Any]) -> str:
    if len(values) != 1 or not isinstance(values[0], str):
        raise ExpressionError(f"{written}() takes one name")
    return values[0]


# --- lazy forms: if, and, or, coalesce, lambda and the functions that take one ---------------


def _if(evaluator: Evaluator, args: tuple[Ast, ...], scope: Scope) -> Any:
    if len(args) != 3:
        raise ExpressionError("if() takes a condition and two values")
    condition = evaluator._eval(args[0], scope)
    if not isinstance(condition, bool):
        raise ExpressionError(f"if() needs a true/false condition, not {_kind(condition)}")
    return evaluator._eval(args[1] if condition else args[2], scope)


def _and(evaluator: Evaluator, args: tuple[Ast, ...], scope: Scope) -> bool:
    return all(_bool_of(evaluator._eval(arg, scope), "and") for arg in args)


def _or(evaluator: Evaluator, args: tuple[Ast, ...], scope: Scope) -> bool:
    return any(_bool_of(evaluator._eval(arg, scope), "or") for arg in args)


def _coalesce(evaluator: Evaluator, args: tuple[Ast, ...], scope: Scope) -> Any:
    for arg in args:
        value = evaluator._eval(arg, scope)
        if value is not None:
            return value
    return None


def _lambda(evaluator: Evaluator, args: tuple[Ast, ...], scope: Scope) -> _Lambda:
    if len(args) < 2 or not all(arg[0] == "lit" and isinstance(arg[1], str) for arg in args[:-1]):
        raise ExpressionError("lambda() takes variable names and then a body")
    return _Lambda(tuple(arg[1] for arg in args[:-1]), args[-1], scope)


def _with_lambda(
    implementation: Callable[..., Any],
) -> Callable[[Evaluator, tuple[Ast, ...], Scope], Any]:
    def run(evaluator: Evaluator, args: tuple[Ast, ...], scope: Scope) -> Any:
        values = [evaluator._eval(arg, scope) for arg in args]
        try:
            return evaluator._checked(implementation(evaluator, *values))
        except ExpressionError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
            raise ExpressionError(f"the lambda function cannot take these arguments: {error}")

    return run


def _filter(ev: Evaluator, items: list[Any], function: Any) -> list[Any]:
    return [item for item in _list(items) if _bool_of(ev.call_lambda(function, item), "filter")]


def _map(ev: Evaluator, items: list[Any], function: Any) -> list[Any]:
    return [ev.call_lambda(function, item, index) for index, item in enumerate(_list(items))]


def _reduce(ev: Evaluator, items: list[Any], initial: Any, function: Any) -> Any:
    accumulated = initial
    for index, item in enumerate(_list(items)):
        accumulated = ev.call_lambda(function, accumulated, item, index)
    return accumulated


def _sort(ev: Evaluator, items: list[Any], function: Any) -> list[Any]:
    import functools

    def compare(a: Any, b: Any) -> int:
        if _bool_of(ev.call_lambda(function, a, b), "sort"):
            return -1
        if _bool_of(ev.call_lambda(function, b, a), "sort"):
            return 1
        return 0

    return sorted(_list(items), key=functools.cmp_to_key(compare))


def _to_object(ev: Evaluator, items: list[Any], key: Any, value: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in _list(items):
        name = ev.call_lambda(key, item)
        result[_text(name)] = ev.call_lambda(value, item) if value is not None else item
    return result


_LAZY: dict[str, Callable[[Evaluator, tuple[Ast, ...], Scope], Any]] = {
    "if": _if,
    "and": _and,
    "or": _or,
    "coalesce": _coalesce,
    "lambda": _lambda,
    "filter": _with_lambda(_filter),
    "map": _with_lambda(_map),
    "reduce": _with_lambda(_reduce),
    "sort": _with_lambda(_sort),
    "toobject": _with_lambda(_to_object),
}


# --- values --------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _bool_of(value: Any, function: str) -> bool:
    if not isinstance(value, bool):
        raise ExpressionError(f"{function}() needs true/false values, not {_kind(value)}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ExpressionError(f"expected an array, got {_kind(value)}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExpressionError(f"expected an integer, got {_kind(value)}")
    return value


def _text(value: Any) -> str:
    """ARM's string(): bools as True/False; arrays and objects as compact JSON."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _get_key(value: dict[str, Any], key: str) -> tuple[bool, Any]:
    if key in value:
        return True, value[key]
    lowered = key.lower()
    for written, item in value.items():
        if isinstance(written, str) and written.lower() == lowered:
            return True, item
    return False, None


def _member(target: Any, key: Any, *, safe: bool = False) -> Any:
    if isinstance(target, dict) and isinstance(key, str):
        found, value = _get_key(target, key)
        if found or safe:
            return value
        shown = ", ".join(sorted(str(k) for k in target)[:10]) or "none"
        raise ExpressionError(f"the object has no property {key!r} (its properties: {shown})")
    if isinstance(target, list) and isinstance(key, int) and not isinstance(key, bool):
        if 0 <= key < len(target):
            return target[key]
        if safe:
            return None
        raise ExpressionError(f"index {key} is outside the array of {len(target)} items")
    if safe and target is None:
        return None
    raise ExpressionError(f"cannot select {key!r} from {_kind(target)}")


def _format(template: str, *args: Any) -> str:
    def item(match: re.Match[str]) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        index = int(match.group(1))
        if index >= len(args):
            raise ExpressionError(f"format({template!r}) has no argument {index}")
        value, spec = args[index], match.group(2)
        if spec and isinstance(value, int) and not isinstance(value, bool):
            if spec.upper().startswith("D") and spec[1:].isdigit():
                return str(value).zfill(int(spec[1:]))
            if spec.upper().startswith("X"):
                return format(value, spec[0]).zfill(int(spec[1:] or 0))
        return _text(value)

    if not isinstance(template, str):
        raise ExpressionError("format() takes a format string first")
    return _FORMAT_ITEM.sub(item, template)


_FORMAT_ITEM = re.compile(r"\{\{|\}\}|\{(\d+)(?:,[^}:]*)?(?::([^}]*))?\}")


def _concat(*args: Any) -> Any:
    if args and all(isinstance(arg, list) for arg in args):
        return [item for arg in args for item in arg]
    if any(isinstance(arg, list) for arg in args):
        raise ExpressionError("concat() takes all arrays or all strings")
    return "".join(_text(arg) for arg in args)


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return _text(item).lower() in container.lower()
    if isinstance(container, dict):
        return _get_key(container, _text(item))[0]
    return any(_equals(element, item) for element in _list(container))


def _equals(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a == b and type(a) is type(b) or (_is_number(a) and _is_number(b) and a == b)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


def _first(value: Any) -> Any:
    if isinstance(value, str):
        return value[:1]
    items = _list(value)
    return items[0] if items else None


def _last(value: Any) -> Any:
    if isinstance(value, str):
        return value[-1:]
    items = _list(value)
    return items[-1] if items else None


def _length(value: Any) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise ExpressionError(f"length() takes a string, array or object, not {_kind(value)}")


def _take(value: Any, count: Any) -> Any:
    count = max(0, _int(count))
    if isinstance(value, str):
        return value[:count]
    return _list(value)[:count]


def _skip(value: Any, count: Any) -> Any:
    count = max(0, _int(count))
    if isinstance(value, str):
        return value[count:]
    return _list(value)[count:]


def _range(start: Any, count: Any) -> list[int]:
    start, count = _int(start), _int(count)
    if count < 0 or count > LIMITS.array_items:
        raise _over(f"{LIMITS.array_items:,} items in one array value")
    return list(range(start, start + count))


def _union(*values: Any) -> Any:
    if all(isinstance(value, dict) for value in values):
        merged: dict[str, Any] = {}
        for value in values:
            for key, item in value.items():
                if isinstance(merged.get(key), dict) and isinstance(item, dict):
                    merged[key] = _union(merged[key], item)
                else:
                    merged[key] = item
        return merged
    result: list[Any] = []
    for value in values:
        for item in _list(value):
            if not any(_equals(item, seen) for seen in result):
                result.append(item)
    return result


def _intersection(*values: Any) -> Any:
    if all(isinstance(value, dict) for value in values):
        first, *rest = values
        return {
            key: item for key, item in first.items()
            if all(key in other and _equals(other[key], item) for other in rest)
        }  # fmt: skip
    first, *rest = [_list(value) for value in values]
    result: list[Any] = []
    for item in first:
        in_all = all(any(_equals(item, other) for other in others) for others in rest)
        if in_all and not any(_equals(item, seen) for seen in result):
            result.append(item)
    return result


def _shallow_merge(values: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for value in _list(values):
        if not isinstance(value, dict):
            raise ExpressionError("shallowMerge() takes an array of objects")
        merged.update(value)
    return merged


def _flatten(values: Any) -> list[Any]:
    return [item for value in _list(values) for item in _list(value)]


def _items(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        raise ExpressionError(f"items() takes an object, not {_kind(value)}")
    return [{"key": key, "value": value[key]} for key in sorted(value, key=str.lower)]


def _object_keys(value: Any) -> list[str]:
    if not isinstance(value, dict):
        raise ExpressionError(f"objectKeys() takes an object, not {_kind(value)}")
    return list(value)


def _try_get(value: Any, *keys: Any) -> Any:
    for key in keys:
        if value is None:
            return None
        if isinstance(value, dict) and isinstance(key, str):
            value = _get_key(value, key)[1]
        elif isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool):
            value = value[key] if 0 <= key < len(value) else None
        else:
            return None
    return value


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        raise ExpressionError("json() takes a string")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ExpressionError(f"json() got text that is not JSON: {error}") from None


def _array(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _create_object(*args: Any) -> dict[str, Any]:
    if len(args) % 2:
        raise ExpressionError("createObject() takes key, value pairs")
    return {_text(args[i]): args[i + 1] for i in range(0, len(args), 2)}


def _compare(name: str, check: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
            return check(a, b)
        raise ExpressionError(f"{name}() compares two numbers or two strings")

    return compare


def _int_of(value: Any) -> int:
    if isinstance(value, str):
        text = value.strip()
        if len(text.lstrip("+-")) > 19:
            raise _over("64-bit integers", "ARM's integers are 64-bit")
        return int(text)
    if isinstance(value, float):
        return int(value)
    return _int(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if _is_number(value):
        return value != 0
    raise ExpressionError(f"bool() cannot convert {_kind(value)}")


def _div(a: Any, b: Any) -> int:
    a, b = _int(a), _int(b)
    if b == 0:
        raise ExpressionError("div() by zero")
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b >= 0) else -quotient


def _mod(a: Any, b: Any) -> int:
    a, b = _int(a), _int(b)
    if b == 0:
        raise ExpressionError("mod() by zero")
    return a - b * _div(a, b)


def _extremes(pick: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        values = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
        if not values:
            raise ExpressionError("min()/max() need at least one number")
        return pick(_int(value) for value in values)

    return run


def _replace(value: Any, old: Any, new: Any) -> str:
    text, old_text, new_text = _text(value), _text(old), _text(new)
    if old_text and len(new_text) > len(old_text):
        growth = text.count(old_text) * (len(new_text) - len(old_text))
        if len(text) + growth > LIMITS.string_chars:
            raise _over(f"{LIMITS.string_chars:,} characters in one string value")
    return text.replace(old_text, new_text) if old_text else text


def _pad_left(value: Any, width: Any, pad: Any = " ") -> str:
    width = _int(width)
    if width > LIMITS.string_chars:
        raise _over(f"{LIMITS.string_chars:,} characters in one string value")
    return _text(value).rjust(width, _text(pad)[:1] or " ")


def _index_of(value: Any, item: Any) -> int:
    if isinstance(value, str):
        return value.lower().find(_text(item).lower())
    for index, element in enumerate(_list(value)):
        if _equals(element, item):
            return index
    return -1


def _last_index_of(value: Any, item: Any) -> int:
    if isinstance(value, str):
        return value.lower().rfind(_text(item).lower())
    found = -1
    for index, element in enumerate(_list(value)):
        if _equals(element, item):
            found = index
    return found


def _substring(value: Any, start: Any, length: Any = None) -> str:
    text, start = _text(value), _int(start)
    if start < 0 or start > len(text):
        raise ExpressionError(f"substring() start {start} is outside the string")
    if length is None:
        return text[start:]
    length = _int(length)
    if length < 0 or start + length > len(text):
        raise ExpressionError("substring() runs past the end of the string")
    return text[start : start + length]


def _split(value: Any, separators: Any) -> list[str]:
    text = _text(value)
    seps = [_text(s) for s in separators] if isinstance(separators, list) else [_text(separators)]
    parts = [text]
    for separator in seps:
        if separator:
            parts = [piece for part in parts for piece in part.split(separator)]
    return parts


def _join(values: Any, separator: Any) -> str:
    return _text(separator).join(_text(value) for value in _list(values))


def _index_from_end(values: Any, index: Any) -> Any:
    items, index = _list(values), _int(index)
    if not 1 <= index <= len(items):
        raise ExpressionError(f"indexFromEnd() index {index} is outside the array")
    return items[-index]


def _resource_id(*args: Any) -> str:
    texts = [_text(arg) for arg in args]
    type_index = next((i for i, t in enumerate(texts) if "." in t and "/" in t), None)
    if type_index is None:
        raise ExpressionError(f"resourceId({', '.join(texts)}) names no resource type")
    scope = texts[:type_index]
    namespace, *types = texts[type_index].split("/")
    names = texts[type_index + 1 :]
    if len(names) != len(types):
        raise ExpressionError(
            f"resourceId() of {texts[type_index]} needs {len(types)} name(s), got {len(names)}"
        )
    path = "/".join(f"{kind}/{name}" for kind, name in zip(types, names, strict=True))
    return (
        "/".join((*scope, f"providers/{namespace}/{path}"))
        if scope
        else (f"providers/{namespace}/{path}")
    )


def _scoped_resource_id(
    prefix: Callable[[DeploymentContext, list[str]], str],
) -> Callable[..., str]:
    def run(context: DeploymentContext, *args: Any) -> str:
        texts = [_text(arg) for arg in args]
        type_index = next((i for i, t in enumerate(texts) if "." in t and "/" in t), 0)
        return prefix(context, texts[:type_index]) + "/" + _resource_id(*texts[type_index:])

    return run


def _rg_prefix(context: DeploymentContext, scope: list[str]) -> str:
    subscription, group = context.subscription_id, context.resource_group
    if len(scope) == 1:
        group = scope[0]
    elif len(scope) >= 2:
        subscription, group = scope[0], scope[1]
    return f"/subscriptions/{subscription}/resourceGroups/{group}"


def _subscription_prefix(context: DeploymentContext, scope: list[str]) -> str:
    return f"/subscriptions/{scope[0] if scope else context.subscription_id}"


def _extension_resource_id(context: DeploymentContext, base: Any, *args: Any) -> str:
    return _text(base) + "/" + _resource_id(*args)


def _deployment(context: DeploymentContext) -> dict[str, Any]:
    return {
        "name": context.deployment_name,
        "properties": {
            "templateLink": None,
            "template": {},
            "parameters": {},
            "mode": "Incremental",
        },
        "location": context.location,
    }


_CONTEXT: Mapping[str, Callable[..., Any]] = {
    "resourcegroup": lambda context: context.resource_group_value(),
    "subscription": lambda context: context.subscription_value(),
    "tenant": lambda context: context.tenant_value(),
    "deployment": _deployment,
    "environment": lambda context: _ENVIRONMENT,
    "resourceid": _scoped_resource_id(_rg_prefix),
    "subscriptionresourceid": _scoped_resource_id(_subscription_prefix),
    "tenantresourceid": lambda context, *args: "/" + _resource_id(*args),
    "extensionresourceid": _extension_resource_id,
}


def _strings_only(function: Callable[..., str], name: str) -> Callable[..., str]:
    def run(*args: Any) -> str:
        if not args or not all(isinstance(arg, str) for arg in args):
            raise ExpressionError(f"{name}() takes one or more strings")
        return function(*args)

    return run


_FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "format": _format,
    "concat": _concat,
    "string": _text,
    "tolower": lambda value: _text(value).lower(),
    "toupper": lambda value: _text(value).upper(),
    "trim": lambda value: _text(value).strip(),
    "replace": _replace,
    "split": _split,
    "join": _join,
    "substring": _substring,
    "startswith": lambda value, prefix: _text(value).lower().startswith(_text(prefix).lower()),
    "endswith": lambda value, suffix: _text(value).lower().endswith(_text(suffix).lower()),
    "indexof": _index_of,
    "lastindexof": _last_index_of,
    "padleft": _pad_left,
    "uniquestring": _strings_only(unique_string, "uniqueString"),
    "guid": _strings_only(guid, "guid"),
    "base64": lambda value: base64.b64encode(_text(value).encode()).decode(),
    "base64tostring": lambda value: base64.b64decode(_text(value)).decode(),
    "datauri": lambda value: (
        "data:text/plain;charset=utf8;base64," + base64.b64encode(_text(value).encode()).decode()
    ),
    "uri": lambda base, relative: (
        _text(base).rsplit("/", 1)[0] + "/" + _text(relative).lstrip("/")
        if not _text(base).endswith("/")
        else _text(base) + _text(relative).lstrip("/")
    ),
    "array": _array,
    "createarray": lambda *values: list(values),
    "createobject": _create_object,
    "contains": _contains,
    "empty": _empty,
    "first": _first,
    "last": _last,
    "length": _length,
    "take": _take,
    "skip": _skip,
    "range": _range,
    "union": _union,
    "intersection": _intersection,
    "shallowmerge": _shallow_merge,
    "flatten": _flatten,
    "items": _items,
    "objectkeys": _object_keys,
    "json": _json,
    "null": lambda: None,
    "trygetvalue": _try_get,
    "tryget": _try_get,
    "indexfromend": _index_from_end,
    "tryindexfromend": lambda values, index: (
        _index_from_end(values, index) if 1 <= _int(index) <= len(_list(values)) else None
    ),
    "equals": _equals,
    "greater": _compare("greater", lambda a, b: a > b),
    "greaterorequals": _compare("greaterOrEquals", lambda a, b: a >= b),
    "less": _compare("less", lambda a, b: a < b),
    "lessorequals": _compare("lessOrEquals", lambda a, b: a <= b),
    "not": lambda value: not _bool_of(value, "not"),
    "bool": _bool,
    "true": lambda: True,
    "false": lambda: False,
    "int": _int_of,
    "add": lambda a, b: _int(a) + _int(b),
    "sub": lambda a, b: _int(a) - _int(b),
    "mul": lambda a, b: _int(a) * _int(b),
    "div": _div,
    "mod": _mod,
    "min": _extremes(min),
    "max": _extremes(max),
}
