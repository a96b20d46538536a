"""Azure's own policy formats to the model: ARM templates (and compiled Bicep), az CLI output,
classic firewalls.

Accepted (`harness.policy.load.load_policy` detects them):

- An ARM template (`resources` as a list, or languageVersion 2.0's mapping of symbolic names),
  evaluated as Azure deploys it, but only as far as the policy needs: the resources of types
  `Microsoft.Network/firewallPolicies`, `.../firewallPolicies/ruleCollectionGroups`,
  `Microsoft.Network/ipGroups` and `Microsoft.Network/azureFirewalls`, and the nested
  `Microsoft.Resources/deployments` (Bicep modules) whose inline template holds one of them.
  Every other resource is never evaluated, so a copy loop of public IPs or a `reference()` in a
  VM's properties cannot stop the load. For the policy's resources: `condition`, resource copy
  loops (`copy: {name, count}` with `copyIndex()`), property and variable copy loops
  (`copy: [{name, count, input}]`), `existing: true` (a resource that is referenced, not
  deployed), child resources, and nested deployments with `expressionEvaluationOptions.scope`
  `inner` (the module's own parameters, given by the outer template) or `outer` (the default:
  the outer template's parameters and variables). Expressions: `harness.policy.arm_expr`.
- Parameters get their values from `PolicyOptions.parameters` (`--parameters`, as `az
  deployment group create` takes them: a parameters file, `@file`, `KEY=VALUE`, later ones
  win), else their `defaultValue`; `nullable` parameters default to null. Parameters left
  without a value are one error naming every one of them. A value for a parameter the template
  does not declare is an error at that value.
- `az network firewall policy rule-collection-group show` output (`name`, `priority`,
  `ruleCollections` at the top, no `properties`), a list of them (`... list`), or a bare list of
  ruleCollectionGroups resources (`{name, properties: {priority, ruleCollections}}`).
- A classic `Microsoft.Network/azureFirewalls` resource (or `az network firewall show` output)
  with `applicationRuleCollections` / `networkRuleCollections`. Classic rule collections have
  no groups; they become two groups, `ClassicNetworkRuleCollections` (priority 200) and
  `ClassicApplicationRuleCollections` (priority 300), so their priorities stay unique per group
  and the decider's network-then-application passes keep classic's order.

The policy's name is the firewallPolicies resource's (deployed or `existing`), else the part
before `/` in a group's name, else the file's stem. Groups of more than one policy in one file
are refused. `sourceIpGroups` and `destinationIpGroups` name ipGroups resources of the same
deployment (by resource id or name); they resolve to that resource's `properties.ipAddresses`.

DNAT collections (`FirewallPolicyNatRuleCollection`, classic `natRuleCollections`) are
checked and reported in `Policy.warnings` as inbound and not simulated; they decide no egress.
Microsoft-managed FQDN tags are warnings too (see `harness.policy.checks`).

JSON files keep line numbers (`harness.yamlio.load_json_text`); key paths are the JSON's own,
e.g. `resources[2].properties.ruleCollections[0].priority`.
"""

from __future__ import annotations

__all__ = ["looks_like_arm", "policy_from_arm"]

import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from harness.errors import InputError
from harness.policy.arm_expr import (
    DeploymentContext,
    Evaluator,
    ExpressionError,
    Scope,
)
from harness.policy.checks import (
    ARM,
    CLASSIC_APPLICATION,
    CLASSIC_NETWORK,
    Context,
    action_of,
    addresses_of,
    check_groups,
    collections_of,
    fields_of,
    priority_of,
    required,
    rules_of,
    string_of,
)
from harness.policy.forms import looks_like_arm
from harness.policy.model import (
    APPLICATION_RULE,
    NETWORK_RULE,
    Policy,
    RuleCollection,
    RuleCollectionGroup,
)
from harness.yamlio import MarkedDict, MarkedList, Node

RULE_COLLECTION_GROUPS = "microsoft.network/firewallpolicies/rulecollectiongroups"
FIREWALL_POLICIES = "microsoft.network/firewallpolicies"
IP_GROUPS = "microsoft.network/ipgroups"
AZURE_FIREWALLS = "microsoft.network/azurefirewalls"
DEPLOYMENTS = "microsoft.resources/deployments"
_POLICY_TYPES = frozenset({RULE_COLLECTION_GROUPS, FIREWALL_POLICIES, IP_GROUPS, AZURE_FIREWALLS})
CLASSIC_NETWORK_GROUP = ("ClassicNetworkRuleCollections", 200)
CLASSIC_APPLICATION_GROUP = ("ClassicApplicationRuleCollections", 300)
MAX_COPY_COUNT = 800  # ARM's own limit for one copy loop
MAX_REFERENCE_DEPTH = 50  # parameters and variables that refer to each other, in a chain

# Keys an ARM resource may carry (ARM's resource schema); others on a policy resource are typos.
_RESOURCE_KEYS = (
    "type", "apiVersion", "name", "location", "tags", "properties", "dependsOn", "condition",
    "copy", "comments", "sku", "kind", "identity", "zones", "scope", "existing", "resources",
    "plan", "managedBy", "extendedLocation", "metadata", "parent", "import", "asserts",
    "subscriptionId", "resourceGroup", "etag", "id",
)  # fmt: skip
_RESOURCE_KEYS_LOWER = {key.lower(): key for key in _RESOURCE_KEYS}


def _get(node: Node, key: str) -> Node | None:
    """ARM property names are case-insensitive."""
    if isinstance(node.value, dict):
        for written in node.value:
            if isinstance(written, str) and written.lower() == key.lower():
                child = node.child(written)
                return child if child.value is not None else None
    return None


def _plain(value: Any) -> Any:
    """A value from another file without its marks, so errors point at the expression that
    used it rather than at a line of the wrong file."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


# --- parameter values ----------------------------------------------------------------------


@dataclass(frozen=True)
class GivenValue:
    """A parameter's value from outside the template: `--parameters` or a nested deployment's
    `properties.parameters`. `text` values (KEY=VALUE) are typed by the parameter's declared
    type; `thunk` values are evaluated only when the template asks for them."""

    node: Node | None = None  # where it was given, for errors
    value: Any = None
    text: str | None = None
    thunk: Callable[[], Any] | None = None


_TYPES = {
    "string": str, "securestring": str, "int": int, "bool": bool, "array": list,
    "object": dict, "secureobject": dict,
}  # fmt: skip


class _Template:
    """One template's parameters and variables in one deployment: each evaluated once."""

    def __init__(
        self,
        loader: _Loader,
        root: Node,
        given: Mapping[str, GivenValue],
        where: str,
    ) -> None:
        self.loader, self.root = loader, root
        self.parameters = _get(root, "parameters")
        self.variables = _get(root, "variables")
        self.written_given = dict(given)
        self.given = {name.lower(): value for name, value in given.items()}
        self._values: dict[tuple[str, str], Any] = {}
        self._pending: list[tuple[str, str]] = []
        self.scope = Scope(self.parameter, self.variable)
        self._check_parameters(where)
        for name, value in self.written_given.items():
            if value.thunk is None:  # given as data: typed and checked now, as Azure does
                try:
                    self.parameter(name)
                except ExpressionError as error:
                    raise (value.node or root).error(error.problem, error.fix) from None

    def _declared(self) -> Iterator[tuple[str, Node]]:
        if self.parameters is not None:
            for name, node in self.parameters.items():
                if isinstance(name, str):
                    yield name, node

    def _check_parameters(self, where: str) -> None:
        declared = {name.lower(): name for name, _ in self._declared()}
        for name, given in self.written_given.items():
            if name.lower() not in declared:
                shown = ", ".join(n for n, _ in self._declared()) or "none"
                message = f"{where} declares no parameter {name!r} (its parameters: {shown})"
                near = difflib.get_close_matches(name, list(declared.values()), n=1, cutoff=0.6)
                fix = f"did you mean {near[0]!r}?" if near else "remove it, or fix its name"
                if given.node is not None:
                    raise given.node.error(message, fix)
                raise InputError(message, key_path="--parameters", fix=fix)
        for name, node in self._declared():
            if not isinstance(node.value, dict):
                raise node.error(
                    f"parameter {name!r} must be declared as a mapping, not {node.value!r}",
                    '"name": {"type": "string"}',
                )
        missing: list[str] = []
        first: Node | None = None
        for name, node in self._declared():
            if name.lower() in self.given or not isinstance(node.value, dict):
                continue
            if _get(node, "defaultValue") is None and "defaultvalue" not in {
                str(k).lower() for k in node.value
            }:
                nullable = _get(node, "nullable")
                if not (nullable is not None and nullable.value is True):
                    line = f" (line {node.mark[0]})" if node.mark else ""
                    missing.append(f"{name}{line}")
                    first = first or node
        if missing:
            at = first or self.root
            raise at.error(
                f"{where}: {len(missing)} required parameter(s) have no value: "
                + ", ".join(missing),
                "give them, as az deployment takes them: --parameters main.parameters.json,"
                " or --parameters NAME=VALUE for each",
            )

    def _enter(self, key: tuple[str, str]) -> None:
        if key in self._pending:
            chain = " -> ".join(f"{kind}('{name}')" for kind, name in self._pending + [key])
            raise ExpressionError(f"{chain} refer to each other in a loop", "break the loop")
        if len(self._pending) >= MAX_REFERENCE_DEPTH:
            raise ExpressionError(
                f"over the harness's limit of {MAX_REFERENCE_DEPTH} parameters and variables"
                " referring to each other in one chain",
                "simplify the template",
            )
        self._pending.append(key)

    def parameter(self, name: str) -> Any:
        key = ("parameters", name.lower())
        if key in self._values:
            return self._values[key]
        definition = _get(self.parameters, name) if self.parameters is not None else None
        if definition is None:
            raise ExpressionError(
                f"cannot resolve parameters('{name}'): the template does not declare it",
                "declare it under parameters, or fix its name",
            )
        self._enter(key)
        try:
            value = self._parameter_value(name, definition)
        finally:
            self._pending.pop()
        self._values[key] = value
        return value

    def _parameter_value(self, name: str, definition: Node) -> Any:
        type_node = _get(definition, "type")
        declared = type_node.value.lower() if type_node and isinstance(type_node.value, str) else ""
        given = self.given.get(name.lower())
        if given is None:
            default = _get(definition, "defaultValue")
            if default is None:
                return None  # nullable, or a null default
            return self.loader.value(default, self.scope)
        if given.thunk is not None:
            value = given.thunk()
        elif given.text is not None:
            value = given.text
            if declared in ("int", "bool", "array", "object", "secureobject"):
                try:
                    value = json.loads(given.text)
                except (json.JSONDecodeError, RecursionError):
                    raise InputError(
                        f"parameter {name!r} is of type {declared}; {given.text!r} is not one",
                        key_path="--parameters",
                        fix=f"write e.g. {name}="
                        + {"int": "300", "bool": "true", "array": "'[\"a\"]'"}.get(
                            declared, "'{}'"
                        ),
                    ) from None
        else:
            value = _plain(given.value)
        expected = _TYPES.get(declared)
        if expected is not None and value is not None:
            wrong = not isinstance(value, expected) or (expected is int and isinstance(value, bool))
            if wrong:
                problem = f"parameter {name!r} is of type {declared}, the value given is not"
                if given.node is not None:
                    raise given.node.error(problem, f"give a {declared}")
                raise InputError(problem, key_path="--parameters", fix=f"give a {declared}")
        allowed = _get(definition, "allowedValues")
        # For an array parameter, allowedValues constrains each item (ARM's rule).
        items = value if isinstance(value, list) and declared == "array" else [value]
        if (
            allowed is not None
            and isinstance(allowed.value, list)
            and any(item not in allowed.value for item in items)
        ):
            problem = f"parameter {name!r}: {value!r} is not one of its allowedValues"
            if given.node is not None:
                raise given.node.error(problem, f"give one of {_plain(allowed.value)}")
            raise InputError(problem, key_path="--parameters", fix="give an allowed value")
        return value

    def variable(self, name: str) -> Any:
        key = ("variables", name.lower())
        if key in self._values:
            return self._values[key]
        node = _get(self.variables, name) if self.variables is not None else None
        self._enter(key)
        try:
            if node is None:
                value = self._copied_variable(name)
            else:
                value = self.loader.value(node, self.scope)
        finally:
            self._pending.pop()
        self._values[key] = value
        return value

    def _copied_variable(self, name: str) -> Any:
        loops = _get(self.variables, "copy") if self.variables is not None else None
        if loops is not None and isinstance(loops.value, list):
            for loop in loops.elements():
                loop_name = _get(loop, "name")
                if loop_name is not None and str(loop_name.value).lower() == name.lower():
                    return self.loader.copy_loop(loop, self.scope)
        raise ExpressionError(
            f"cannot resolve variables('{name}'): the template does not define it",
            "define it under variables, or edit the value into the file",
        )


# --- resources -----------------------------------------------------------------------------


@dataclass
class _Resource:
    node: Node  # the resource mapping
    type: str  # full type, lower case
    name: str  # full name (`policy/group`)
    name_node: Node
    template: _Template
    scope: Scope
    existing: bool = False


@dataclass
class _Loader:
    """One load of one template: the evaluator, its step budget and what it found."""

    context: DeploymentContext
    evaluator: Evaluator = field(init=False)
    warnings: list[str] = field(default_factory=list)
    resources: list[_Resource] = field(default_factory=list)
    _relevant: dict[int, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.evaluator = Evaluator(self.context)

    # evaluation --------------------------------------------------------------------------

    def value(self, node: Node, scope: Scope) -> Any:
        """`node`'s value with every expression and property copy loop evaluated; mappings and
        lists written in the file stay marked, so rule errors point at their lines. Subtrees
        without expressions are returned as they are, not copied."""
        return self._value(node.value, node, (), scope)

    def _value(self, value: Any, base: Node, where: tuple[Any, ...], scope: Scope) -> Any:
        # `base` and the keys in `where` say where `value` is; its Node is built only for an
        # error or a copy loop (building one per value costs more than the evaluation).
        if isinstance(value, str):
            if value[:1] != "[":
                return value
            if value.startswith("[["):
                return value[1:]
            if not value.endswith("]"):
                return value
            try:
                return self.evaluator.evaluate(value, scope)
            except ExpressionError as error:
                raise _node_at(base, where).error(error.problem, error.fix) from None
            except RecursionError:
                raise _node_at(base, where).error(
                    "over the harness's limit of nesting: expressions refer to each other too"
                    " deeply",
                    "simplify the template",
                ) from None
        if isinstance(value, dict):
            changed = False
            items: list[tuple[Any, Any]] = []
            copies = None
            for key, child in value.items():
                if isinstance(key, str) and isinstance(child, list) and key.lower() == "copy":
                    copies = key
                    changed = True
                    continue
                resolved = self._value(child, base, (*where, key), scope)
                changed = changed or resolved is not child
                items.append((key, resolved))
            if not changed:
                return value
            result = MarkedDict(items)
            if isinstance(value, MarkedDict):
                result.start, result.key_marks = value.start, dict(value.key_marks)
            if copies is not None:
                for loop in _node_at(base, (*where, copies)).elements():
                    loop_name = _get(loop, "name")
                    if loop_name is None or not isinstance(loop_name.value, str):
                        raise loop.error("a property copy loop needs a name", "name it")
                    result[loop_name.value] = self.copy_loop(loop, scope)
                    result.key_marks[loop_name.value] = loop.mark or (0, 0)
            return result
        if isinstance(value, list):
            resolved_items = [
                self._value(item, base, (*where, index), scope) for index, item in enumerate(value)
            ]
            if all(a is b for a, b in zip(resolved_items, value, strict=True)):
                return value
            result_list = MarkedList(resolved_items)
            if isinstance(value, MarkedList):
                result_list.start, result_list.item_marks = value.start, list(value.item_marks)
            return result_list
        return value

    def resolve(self, node: Node, scope: Scope) -> Node:
        return node.with_value(self.value(node, scope))

    def count(self, loop: Node, scope: Scope) -> int:
        count_node = _get(loop, "count")
        if count_node is None:
            raise loop.error("the copy loop has no count", 'add "count": 2')
        count = self.value(count_node, scope)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise count_node.error(f"a copy count must be a whole number >= 0, not {count!r}")
        if count > MAX_COPY_COUNT:
            raise count_node.error(
                f"copy count {count} is over ARM's limit of {MAX_COPY_COUNT}", "split the loop"
            )
        return count

    def copy_loop(self, loop: Node, scope: Scope) -> list[Any]:
        name_node, input_node = _get(loop, "name"), _get(loop, "input")
        if input_node is None:
            raise loop.error("the copy loop has no input", "add the input each copy gets")
        name = name_node.value if name_node is not None else None
        items = MarkedList()
        items.start = loop.mark
        for index in range(self.count(loop, scope)):
            items.append(self.value(input_node, scope.with_copy(name, index)))
            items.item_marks.append(input_node.mark or (0, 0))
        return items

    # resources ---------------------------------------------------------------------------

    def mentions_policy(self, node: Node | None) -> bool:
        """Whether a resource list (with nested templates) names a policy resource type at all,
        read without evaluating anything."""
        if node is None:
            return False
        key = id(node.value)
        if key not in self._relevant:
            self._relevant[key] = _mentions_policy_type(node.value)
        return self._relevant[key]

    def walk(
        self, resources: Node | None, template: _Template, scope: Scope,
        parent: _Resource | None = None,
    ) -> None:  # fmt: skip
        if resources is None:
            return
        if isinstance(resources.value, dict):
            items = [child for _, child in resources.items()]
        elif isinstance(resources.value, list):
            items = list(resources.elements())
        else:
            raise resources.error("resources must be a list (or languageVersion 2.0's mapping)")
        for item in items:
            if not isinstance(item.value, dict):
                raise item.error("a resource must be a mapping", "write the resource's keys")
            type_node = _get(item, "type")
            if type_node is None or not isinstance(type_node.value, str):
                raise item.error("the resource has no type", 'add e.g. "type": "..."')
            kind = type_node.value.lower()
            if parent is not None and "/" not in kind:
                kind = f"{parent.type}/{kind}"  # a child may say `ruleCollectionGroups`
            if kind == AZURE_FIREWALLS and not _is_classic(item.value):
                continue  # a firewall that points at a policy: the policy's resources decide
            if kind in _POLICY_TYPES:
                self._policy_resource(item, kind, template, scope, parent)
            elif kind == DEPLOYMENTS:
                properties = _get(item, "properties")
                inner = _get(properties, "template") if properties is not None else None
                if inner is not None and self.mentions_policy(_get(inner, "resources")):
                    self._each_copy(item, scope, lambda s, n=item: self._deployment(n, template, s))
                elif properties is not None and _get(properties, "templateLink") is not None:
                    self.warnings.append(
                        f"{item.location}: {item.key_path}: a linked template (templateLink) is"
                        " not followed; if it defines policy resources, compile it inline"
                        " (az bicep build) or load it on its own"
                    )
            elif self.mentions_policy(_get(item, "resources")):
                # Only its children matter; they may name their type relative to it.
                self._each_copy(
                    item, scope, lambda s, n=item, k=kind: self._children(n, k, template, s)
                )

    def _children(self, item: Node, kind: str, template: _Template, scope: Scope) -> None:
        name_node = _get(item, "name")
        name = self.value(name_node, scope) if name_node is not None else ""
        holder = _Resource(item, kind, str(name), name_node or item, template, scope)
        self.walk(_get(item, "resources"), template, scope, holder)

    def _each_copy(self, item: Node, scope: Scope, then: Callable[[Scope], None]) -> None:
        copy = _get(item, "copy")
        if copy is None:
            self._if_condition(item, scope, then)
            return
        if not isinstance(copy.value, dict):
            raise copy.error("a resource copy loop must be a mapping", '"copy": {"name", "count"}')
        name_node = _get(copy, "name")
        name = name_node.value if name_node is not None else None
        for index in range(self.count(copy, scope)):
            self._if_condition(item, scope.with_copy(name, index, resource=True), then)

    def _if_condition(self, item: Node, scope: Scope, then: Callable[[Scope], None]) -> None:
        condition = _get(item, "condition")
        if condition is not None:
            value = self.value(condition, scope)
            if not isinstance(value, bool):
                raise condition.error(f"a condition must be true or false, not {value!r}")
            if not value:
                return
        then(scope)

    def _policy_resource(
        self, item: Node, kind: str, template: _Template, scope: Scope, parent: _Resource | None
    ) -> None:
        type_node = _get(item, "type")
        written_type = str(type_node.value if type_node is not None else kind).split("/")[-1]
        for key, child in item.items():
            if isinstance(key, str) and key.lower() not in _RESOURCE_KEYS_LOWER:
                near = difflib.get_close_matches(key, _RESOURCE_KEYS, n=1, cutoff=0.6)
                raise child.error(
                    f"unknown key {key!r} in a {written_type} resource",
                    f"did you mean {near[0]!r}?" if near else "remove it",
                )
        name_node = _get(item, "name")
        if name_node is None:
            raise item.error(
                "missing required key 'name' (a resource without a name is not deployed)",
                "add e.g. \"name\": \"[format('{0}/{1}', parameters('policyName'), 'Egress')]\"",
            )

        def add(copy_scope: Scope) -> None:
            name = self.value(name_node, copy_scope)
            if not isinstance(name, str) or not name.strip():
                raise name_node.error(f"a resource name must be a string, not {name!r}", "name it")
            if parent is not None and name.count("/") < kind.count("/") - 1:
                name = f"{parent.name}/{name}"
            existing_node = _get(item, "existing")
            existing = existing_node is not None and self.value(existing_node, copy_scope) is True
            resource = _Resource(item, kind, name, name_node, template, copy_scope, existing)
            self.resources.append(resource)
            self.walk(_get(item, "resources"), template, copy_scope, resource)

        self._each_copy(item, scope, add)

    def _deployment(self, item: Node, outer: _Template, scope: Scope) -> None:
        properties = _get(item, "properties")
        assert properties is not None
        inner_root = _get(properties, "template")
        assert inner_root is not None
        options = _get(properties, "expressionEvaluationOptions")
        scope_node = _get(options, "scope") if options is not None else None
        name_node = _get(item, "name")
        shown = name_node.value if name_node is not None else item.key_path
        if scope_node is None or str(scope_node.value).lower() != "inner":
            self.walk(_get(inner_root, "resources"), outer, scope)  # outer: the parent's names
            return
        given: dict[str, GivenValue] = {}
        parameters = _get(properties, "parameters")
        if parameters is not None and isinstance(parameters.value, dict):
            for name, entry in parameters.items():
                value_node = _get(entry, "value") if isinstance(entry.value, dict) else None
                if (
                    value_node is None
                    and isinstance(entry.value, dict)
                    and "value" in {str(k).lower() for k in entry.value}
                ):
                    given[name] = GivenValue(entry, value=None)
                    continue
                if value_node is None:
                    given[name] = GivenValue(entry, thunk=_deployment_only(entry, name))
                    continue
                given[name] = GivenValue(
                    entry, thunk=lambda v=value_node, s=scope: self.value(v, s)
                )
        template = _Template(self, inner_root, given, f"the nested deployment {shown!r}")
        self.walk(_get(inner_root, "resources"), template, template.scope)


def _node_at(base: Node, where: tuple[Any, ...]) -> Node:
    node = base
    for key in where:
        node = node.child(key)
    return node


def _deployment_only(entry: Node, name: str) -> Callable[[], Any]:
    def fail() -> Any:
        raise entry.error(
            f"parameter {name!r} takes its value from a Key Vault reference, known only during"
            " a deployment",
            "give the module a plain value instead",
        )

    return fail


def _mentions_policy_type(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and key.lower() == "type" and isinstance(child, str):
                    if child.lower() in _POLICY_TYPES or child.lower().startswith(
                        "microsoft.network/firewallpolicies"
                    ):
                        return True
                    if child.lower() == "rulecollectiongroups":
                        return True
                elif isinstance(child, dict | list):
                    stack.append(child)
        elif isinstance(item, list):
            stack.extend(child for child in item if isinstance(child, dict | list))
    return False


class _IpGroups:
    """The deployment's ipGroups resources by name; resolves `sourceIpGroups` entries."""

    def __init__(self, loader: _Loader) -> None:
        self.loader = loader
        self.by_name: dict[str, _Resource] = {}
        for resource in loader.resources:
            if resource.type == IP_GROUPS:
                self.by_name.setdefault(resource.name.rsplit("/", 1)[-1].lower(), resource)
        self.cache: dict[str, tuple[str, ...]] = {}

    def __call__(self, item: Node) -> tuple[str, ...]:
        reference = string_of(item, "an IP group resource id")
        match = re.search(r"ipgroups/([^/]+)/?$", reference, re.IGNORECASE)
        name = match.group(1) if match else reference
        resource = self.by_name.get(name.lower())
        if resource is None:
            defined = ", ".join(sorted(self.by_name)) or "none"
            raise item.error(
                f"IP group {name!r} is not defined in this file (ipGroups here: {defined})",
                "add its Microsoft.Network/ipGroups resource to the template, or write its"
                " addresses into the rule",
            )
        if resource.existing:
            raise item.error(
                f"IP group {name!r} is declared `existing`: its addresses live in Azure",
                "define the ipGroups resource in the template, or write its addresses into the"
                " rule",
            )
        if name.lower() not in self.cache:
            properties = _get(resource.node, "properties")
            addresses = _get(properties, "ipAddresses") if properties is not None else None
            if addresses is None:
                raise resource.node.error(
                    f"IP group {name!r} has no properties.ipAddresses", "list its addresses"
                )
            resolved = self.loader.resolve(addresses, resource.scope)
            self.cache[name.lower()] = tuple(addresses_of(resolved, service_tags=False))
        return self.cache[name.lower()]


def _arm_group(
    node: Node, name: str, name_node: Node, properties: Node, context: Context
) -> tuple[Node, Node, RuleCollectionGroup]:
    found = fields_of(
        properties, ARM, ("priority", "rule_collections"), what="ruleCollectionGroup properties"
    )
    priority_node = required(properties, found, "priority", ARM, '"priority": 300')
    priority = priority_of(priority_node)
    if not name:
        raise name_node.error("the group has no name", "name the group")
    collections = collections_of(found.get("rule_collections"), replace(context, group=name))
    return node, priority_node, RuleCollectionGroup(name, priority, collections)


def _az_group(node: Node, context: Context) -> tuple[Node, Node, RuleCollectionGroup]:
    found = fields_of(
        node, ARM, ("name", "priority", "rule_collections"), what="a rule collection group"
    )
    name_node = required(
        node, found, "name", ARM, '"name": "DefaultApplicationRuleCollectionGroup"'
    )
    name = string_of(name_node, "a group name").rsplit("/", 1)[-1]
    priority_node = required(node, found, "priority", ARM, '"priority": 300')
    priority = priority_of(priority_node)
    collections = collections_of(found.get("rule_collections"), replace(context, group=name))
    return node, priority_node, RuleCollectionGroup(name, priority, collections)


def _policy_name_from_id(node: Node) -> str | None:
    id_node = _get(node, "id")
    if id_node is not None and isinstance(id_node.value, str):
        match = re.search(r"/firewallPolicies/([^/]+)/", id_node.value, re.IGNORECASE)
        if match:
            return match.group(1)
    return None


def _classic_collection(
    kind: str,
) -> Callable[[Node, Context], tuple[RuleCollection, Node] | None]:
    """Classic collections: `{name, properties: {priority, action, rules}}` (ARM) or the same
    fields flattened (az output)."""

    def parse(node: Node, context: Context) -> tuple[RuleCollection, Node]:
        dialect = context.dialect
        properties = _get(node, "properties")
        if properties is not None:
            outer = fields_of(node, dialect, ("name", "properties"), what="a rule collection")
            name_node = required(node, outer, "name", dialect, '"name": "allow-build"')
            body = properties
        else:
            name_node = _get(node, "name") or node
            body = node
        names = ("priority", "action", "rules") + (() if properties is not None else ("name",))
        found = fields_of(body, dialect, names, what="a rule collection")
        if properties is None:
            name_node = required(node, found, "name", dialect, '"name": "allow-build"')
        name = string_of(name_node, "a collection name")
        priority_node = required(body, found, "priority", dialect, '"priority": 100')
        priority = priority_of(priority_node)
        action = action_of(required(body, found, "action", dialect, '{"type": "Allow"}'), dialect)
        rules = rules_of(found.get("rules"), replace(context, collection=name), kind)
        return RuleCollection(name, priority, action, rules), priority_node

    return parse


def _classic_groups(
    firewall: Node, context_for: Callable[[Any], Context]
) -> list[tuple[Node, Node, RuleCollectionGroup]]:
    body = _get(firewall, "properties") or firewall
    groups = []
    for key, (group_name, priority), kind, dialect in (
        ("networkRuleCollections", CLASSIC_NETWORK_GROUP, NETWORK_RULE, CLASSIC_NETWORK),
        ("applicationRuleCollections", CLASSIC_APPLICATION_GROUP, APPLICATION_RULE,
         CLASSIC_APPLICATION),
    ):  # fmt: skip
        collections_node = _get(body, key)
        if collections_node is None:
            continue
        context = replace(context_for(dialect), group=group_name)
        collections = collections_of(collections_node, context, _classic_collection(kind))
        if collections:
            group = RuleCollectionGroup(group_name, priority, collections)
            groups.append((collections_node, collections_node, group))
    nat = _get(body, "natRuleCollections")
    if nat is not None and isinstance(nat.value, list) and nat.value:
        warnings = context_for(CLASSIC_NETWORK).warnings
        if warnings is not None:
            warnings.append(
                f"{nat.location}: {nat.key_path}: {len(nat.value)} classic DNAT rule"
                " collection(s): inbound, not simulated"
            )
    return groups


def _is_classic(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    keys = {key.lower() for key in value if isinstance(key, str)}
    if keys & {"applicationrulecollections", "networkrulecollections"}:
        return True
    properties = next((v for k, v in value.items() if str(k).lower() == "properties"), None)
    return _is_classic(properties) if isinstance(properties, dict) else False


@dataclass(frozen=True)
class ArmInputs:
    """What a template's deployment gets besides the file: the deployment context, the
    parameter values, the FQDN tags the user defined, and where warnings go."""

    context: DeploymentContext = field(default_factory=DeploymentContext)
    parameters: Mapping[str, GivenValue] = field(default_factory=dict)
    fqdn_tags: frozenset[str] = frozenset()
    warnings: list[str] | None = None


def _template_policy(root: Node, default_name: str, inputs: ArmInputs) -> Policy:
    loader = _Loader(inputs.context)
    if inputs.warnings is not None:
        loader.warnings = inputs.warnings
    template = _Template(loader, root, inputs.parameters, "the template")
    loader.walk(_get(root, "resources"), template, template.scope)
    ip_groups = _IpGroups(loader)

    def context_for(dialect: Any) -> Context:
        return Context(
            dialect, inputs.fqdn_tags, ip_groups, classic=dialect is not ARM,
            warnings=loader.warnings,
        )  # fmt: skip

    entries: list[tuple[Node, Node, RuleCollectionGroup]] = []
    policy_names: dict[str, Node] = {}
    firewall_names: list[str] = []
    for resource in loader.resources:
        if resource.type == RULE_COLLECTION_GROUPS and not resource.existing:
            *policy_parts, group_name = resource.name.split("/")
            policy_name = "/".join(policy_parts)
            if policy_name:
                policy_names.setdefault(policy_name.lower(), resource.name_node)
            properties = _get(resource.node, "properties")
            if properties is None:
                raise resource.node.error("the group has no properties", "add its properties")
            properties = loader.resolve(properties, resource.scope)
            entries.append(
                _arm_group(
                    resource.node, group_name, resource.name_node, properties,
                    context_for(ARM),
                )
            )  # fmt: skip
        elif resource.type == AZURE_FIREWALLS and not resource.existing:
            body = _get(resource.node, "properties") or resource.node
            if _is_classic(body.value):
                resolved = loader.resolve(body, resource.scope)
                entries.extend(_classic_groups(resolved, context_for))
                firewall_names.append(resource.name)
        elif resource.type == FIREWALL_POLICIES:
            policy_names.setdefault(resource.name.lower(), resource.name_node)
    if not entries:
        raise root.error(
            "the template holds no Microsoft.Network/firewallPolicies/ruleCollectionGroups"
            " and no azureFirewalls rule collections",
            "load the template that defines the rule collection groups",
        )
    # A base policy may sit beside the policy the groups belong to: the groups' policy counts.
    used = {name.lower() for name in _group_policy_names(loader)}
    names = {key: node for key, node in policy_names.items() if key in used} or policy_names
    if len(names) > 1:
        raise list(names.values())[1].error(
            f"the file defines groups of more than one policy ({', '.join(sorted(names))})",
            "split the file: the harness tests one policy at a time",
        )
    written = next(
        (r.name for r in loader.resources
         if r.type == FIREWALL_POLICIES and r.name.lower() in names),
        next((n.rsplit("/", 1)[0] for n in _group_policy_names(loader)), None),
    )  # fmt: skip
    check_groups(entries)
    name = written or (firewall_names[0] if firewall_names else None)
    return Policy(name or default_name, tuple(group for _, _, group in entries))


def _group_policy_names(loader: _Loader) -> list[str]:
    return [
        resource.name.rsplit("/", 1)[0]
        for resource in loader.resources
        if resource.type == RULE_COLLECTION_GROUPS and "/" in resource.name
    ]


def policy_from_arm(root: Node, default_name: str, inputs: ArmInputs | None = None) -> Policy:
    """Any of the module docstring's forms, already parsed into marked data."""
    inputs = inputs or ArmInputs()
    value = root.value
    if isinstance(value, dict) and _get(root, "resources") is not None:
        try:
            return _template_policy(root, default_name, inputs)
        except ExpressionError as error:  # one not raised at its own node: the file's top
            raise root.error(error.problem, error.fix) from None
    loader = _Loader(inputs.context)
    template = _Template(loader, Node(MarkedDict(), root.path), {}, "the file")
    ip_groups = _IpGroups(loader)

    def context_for(dialect: Any) -> Context:
        return Context(
            dialect, inputs.fqdn_tags, ip_groups, classic=dialect is not ARM,
            warnings=inputs.warnings,
        )  # fmt: skip

    if isinstance(value, dict) and _is_classic(value):
        resolved = loader.resolve(root, template.scope)
        entries = _classic_groups(resolved, context_for)
        name_node = _get(root, "name")
        name = (
            name_node.value if name_node is not None and isinstance(name_node.value, str) else None
        )
        check_groups(entries)
        return Policy(name or default_name, tuple(group for _, _, group in entries))
    properties = _get(root, "properties")
    if _get(root, "ruleCollectionGroups") is not None or (
        properties is not None and _get(properties, "ruleCollectionGroups") is not None
    ):
        raise root.error(
            "this is a firewallPolicies resource, which only references its rule collection"
            " groups by id",
            "export the groups: az network firewall policy rule-collection-group list"
            " --policy-name NAME --resource-group RG",
        )
    items = list(root.elements()) if isinstance(value, list) else [root]
    if not items:
        raise root.error("the list holds no rule collection groups", "export them with az")
    entries = []
    policy_name = None
    context = context_for(ARM)
    for item in items:
        item = loader.resolve(item, template.scope)
        policy_name = policy_name or _policy_name_from_id(item)
        properties = _get(item, "properties")
        if properties is not None:
            name_node = _get(item, "name")
            if name_node is None:
                raise item.error("missing required key 'name'", 'add "name": "MyGroup"')
            full_name = string_of(name_node, "a group name")
            policy_parts, _, group_name = full_name.rpartition("/")
            policy_name = policy_name or policy_parts or None
            entries.append(_arm_group(item, group_name, name_node, properties, context))
        elif isinstance(item.value, dict) and _get(item, "ruleCollections") is not None:
            entries.append(_az_group(item, context))
        else:
            raise item.error(
                "not a rule collection group: no ruleCollections or properties",
                "give az output of `az network firewall policy rule-collection-group show`,"
                " an ARM template or the YAML form",
            )
    check_groups(entries)
    return Policy(policy_name or default_name, tuple(group for _, _, group in entries))
