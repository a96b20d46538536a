"""Azure's own policy formats to the model: ARM templates, az CLI output, classic firewalls.

Accepted (`harness.policy.load.load_policy` detects them):

- An ARM template (`resources` as a list, or languageVersion 2.0's mapping of symbolic names)
  holding `Microsoft.Network/firewallPolicies/ruleCollectionGroups` resources, at the top level
  or as children in a firewallPolicies resource's own `resources`. The policy's name is the
  firewallPolicies name (the part before `/` in a group's name) when it resolves, else the
  file's stem. Groups of more than one policy in one file are refused.
- `az network firewall policy rule-collection-group show` output (`name`, `priority`,
  `ruleCollections` at the top, no `properties`), a list of them (`... list`), or a bare list of
  ruleCollectionGroups resources (`{name, properties: {priority, ruleCollections}}`).
- A classic `Microsoft.Network/azureFirewalls` resource (or `az network firewall show` output)
  with `applicationRuleCollections` / `networkRuleCollections`. Classic rule collections have
  no groups; they become two groups, `ClassicNetworkRuleCollections` (priority 200) and
  `ClassicApplicationRuleCollections` (priority 300), so their priorities stay unique per group
  and the decider's network-then-application passes keep classic's order.

Not simulated, loaded as nothing: DNAT collections (`FirewallPolicyNatRuleCollection`, classic
`natRuleCollections`): they translate inbound traffic and decide no egress.

ARM expressions are evaluated where the template itself defines the answer: `parameters()`
with a `defaultValue`, `variables()`, string literals, numbers, `format`, `concat`, `string`,
`toLower`, `toUpper`, `replace`, `split`, `first`, `last`, `createArray`, `int`, `resourceId`,
and `.property` / `[index]` access. Anything else (`reference()`, `resourceGroup()`, a parameter
without a default) is an InputError naming what could not be resolved. `sourceIpGroups` and
`destinationIpGroups` name `Microsoft.Network/ipGroups` resources of the same template
(`[resourceId('Microsoft.Network/ipGroups', 'name')]` or a literal id); they resolve to that
resource's `properties.ipAddresses`. Microsoft-managed FQDN tags (`fqdnTags`) cannot be
resolved: their contents are unpublished.

JSON files keep line numbers (`harness.yamlio.load_json_text`); key paths are the JSON's own,
e.g. `resources[2].properties.ruleCollections[0].priority`.
"""

from __future__ import annotations

__all__ = ["looks_like_arm", "policy_from_arm"]

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import InputError
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
CLASSIC_NETWORK_GROUP = ("ClassicNetworkRuleCollections", 200)
CLASSIC_APPLICATION_GROUP = ("ClassicApplicationRuleCollections", 300)

_FIX_UNRESOLVED = "give the parameter a defaultValue, or edit the value into the file"
_FIX_EXPRESSION = "edit the resolved value into the file"


def _get(node: Node, key: str) -> Node | None:
    """ARM property names are case-insensitive."""
    if isinstance(node.value, dict):
        for written in node.value:
            if isinstance(written, str) and written.lower() == key.lower():
                child = node.child(written)
                return child if child.value is not None else None
    return None


def looks_like_arm(value: dict[Any, Any]) -> bool:
    keys = {key.lower() for key in value if isinstance(key, str)}
    if keys & {"rule_collection_groups", "allow"}:
        return False
    return bool(
        keys
        & {
            "$schema", "resources", "contentversion", "properties", "rulecollections",
            "applicationrulecollections", "networkrulecollections", "rulecollectiongroups",
        }
    )  # fmt: skip


# --- ARM expressions -----------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>[(),.\[\]]))"
)
_FORMAT_ITEM = re.compile(r"\{\{|\}\}|\{(\d+)(?:,[^}:]*)?(?::[^}]*)?\}")


class _Unresolved(Exception):
    """Why an expression has no value here; becomes an InputError at the node that used it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem, self.fix = problem, fix


# A name part the template cannot resolve: lenient evaluation (resource names) puts this in
# place of the value, so `format('{0}/{1}', parameters('p'), 'G')` still yields the group `G`.
_HOLE = "\x00"


@dataclass
class _Template:
    parameters: Node | None
    variables: Node | None
    depth: int = 0

    def resolve(self, node: Node) -> Node:
        """`node` with every expression in its value evaluated; marks kept where they exist."""
        return node.with_value(self._resolve(node))

    def _resolve(self, node: Node) -> Any:
        value = node.value
        if isinstance(value, str):
            if value.startswith("[[") or not (value.startswith("[") and value.endswith("]")):
                return value[1:] if value.startswith("[[") else value
            try:
                result = self.evaluate(value, lenient=False)
            except _Unresolved as unresolved:
                raise node.error(unresolved.problem, unresolved.fix) from None
            if isinstance(result, dict | list):
                self.depth += 1
                try:
                    if self.depth > 20:
                        raise node.error("expressions nest too deeply", _FIX_EXPRESSION)
                    return self._resolve(node.with_value(result))
                finally:
                    self.depth -= 1
            return result
        if isinstance(value, dict):
            resolved = MarkedDict()
            if isinstance(value, MarkedDict):
                resolved.start, resolved.key_marks = value.start, value.key_marks
            for key, child in node.items():
                resolved[key] = self._resolve(child)
            return resolved
        if isinstance(value, list):
            items = MarkedList()
            if isinstance(value, MarkedList):
                items.start, items.item_marks = value.start, value.item_marks
            items.extend(self._resolve(child) for child in node.elements())
            return items
        return value

    def name_of(self, node: Node) -> str:
        """A resource's name, with unresolvable parts left as holes (see `_HOLE`)."""
        if not isinstance(node.value, str):
            raise node.error(f"a resource name must be a string, not {node.value!r}", "name it")
        text = node.value
        if text.startswith("[") and text.endswith("]") and not text.startswith("[["):
            try:
                result = self.evaluate(text, lenient=True)
            except _Unresolved as unresolved:
                raise node.error(unresolved.problem, unresolved.fix) from None
            return str(result)
        return text[1:] if text.startswith("[[") else text

    def evaluate(self, text: str, *, lenient: bool) -> Any:
        self.depth += 1
        try:
            if self.depth > 20:
                raise _Unresolved(
                    f"{text!r}: parameters or variables refer to each other", _FIX_EXPRESSION
                )
            return _Parser(text[1:-1], self, lenient).parse()
        finally:
            self.depth -= 1

    def _value_of(self, table: Node | None, kind: str, name: str, lenient: bool) -> Any:
        entry = _get(table, name) if table is not None else None
        if entry is None:
            if lenient:
                return _HOLE
            raise _Unresolved(
                f"cannot resolve {kind}('{name}'): the template does not define it",
                f"define it under {kind}, or edit the value into the file",
            )
        if kind == "parameters":
            default = _get(entry, "defaultValue")
            if default is None:
                if lenient:
                    return _HOLE
                raise _Unresolved(
                    f"cannot resolve parameters('{name}'): the parameter has no defaultValue",
                    _FIX_UNRESOLVED,
                )
            entry = default
        value = entry.value
        if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
            return self.evaluate(value, lenient=lenient)
        return value

    def parameter(self, name: str, lenient: bool) -> Any:
        return self._value_of(self.parameters, "parameters", name, lenient)

    def variable(self, name: str, lenient: bool) -> Any:
        return self._value_of(self.variables, "variables", name, lenient)


def _format(template: str, *args: Any) -> str:
    def item(match: re.Match[str]) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        index = int(match.group(1))
        if index >= len(args):
            raise _Unresolved(f"format({template!r}) has no argument {index}", _FIX_EXPRESSION)
        return _text(args[index])

    return _FORMAT_ITEM.sub(item, template)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _concat(*args: Any) -> Any:
    if args and all(isinstance(arg, list) for arg in args):
        return [item for arg in args for item in arg]
    return "".join(_text(arg) for arg in args)


def _resource_id(*args: Any) -> str:
    texts = [_text(arg) for arg in args]
    type_index = next((i for i, t in enumerate(texts) if "." in t and "/" in t), None)
    if type_index is None:
        raise _Unresolved(f"resourceId({', '.join(texts)}) names no resource type", _FIX_EXPRESSION)
    namespace, *types = texts[type_index].split("/")
    names = texts[type_index + 1 :]
    path = "/".join(f"{kind}/{name}" for kind, name in zip(types, names, strict=False))
    return f"/providers/{namespace}/{path}"


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "format": _format,
    "concat": _concat,
    "string": _text,
    "tolower": lambda value: _text(value).lower(),
    "toupper": lambda value: _text(value).upper(),
    "replace": lambda value, old, new: _text(value).replace(_text(old), _text(new)),
    "split": lambda value, separator: _text(value).split(_text(separator)),
    "first": lambda value: value[0],
    "last": lambda value: value[-1],
    "createarray": lambda *values: list(values),
    "int": int,
    "resourceid": _resource_id,
    "true": lambda: True,
    "false": lambda: False,
}
_SUPPORTED = "parameters() with a defaultValue, variables(), format(), concat() and resourceId()"


class _Parser:
    def __init__(self, text: str, template: _Template, lenient: bool) -> None:
        self.text, self.template, self.lenient = text, template, lenient
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            if not text[position:].strip():
                break
            match = _TOKEN.match(text, position)
            if match is None:
                raise _Unresolved(f"cannot parse the expression [{text}]", _FIX_EXPRESSION)
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (expected is not None and token[1] != expected):
            raise _Unresolved(f"cannot parse the expression [{self.text}]", _FIX_EXPRESSION)
        self.position += 1
        return token

    def parse(self) -> Any:
        value = self.expression()
        if self.peek() is not None:
            raise _Unresolved(f"cannot parse the expression [{self.text}]", _FIX_EXPRESSION)
        return value

    def expression(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            value: Any = text[1:-1].replace("''", "'")
        elif kind == "number":
            value = int(text)
        elif kind == "name":
            value = self.call(text)
        else:
            raise _Unresolved(f"cannot parse the expression [{self.text}]", _FIX_EXPRESSION)
        while (token := self.peek()) is not None and token[1] in (".", "["):
            self.take()
            if token[1] == ".":
                value = self.member(value, self.take()[1])
            else:
                index = self.expression()
                self.take("]")
                value = self.member(value, index)
        return value

    def call(self, name: str) -> Any:
        self.take("(")
        args = []
        if self.peek() is not None and self.peek()[1] != ")":  # type: ignore[index]
            args.append(self.expression())
            while self.peek() is not None and self.peek()[1] == ",":  # type: ignore[index]
                self.take(",")
                args.append(self.expression())
        self.take(")")
        function = name.lower()
        if function in ("parameters", "variables"):
            if len(args) != 1 or not isinstance(args[0], str):
                raise _Unresolved(f"{name}() takes one name", _FIX_EXPRESSION)
            if function == "parameters":
                return self.template.parameter(args[0], self.lenient)
            return self.template.variable(args[0], self.lenient)
        implementation = _FUNCTIONS.get(function)
        if implementation is None:
            if self.lenient:
                return _HOLE
            raise _Unresolved(
                f"cannot evaluate {name}() in [{self.text}]: the harness resolves only {_SUPPORTED}"
                " from the template itself",
                _FIX_EXPRESSION,
            )
        try:
            return implementation(*args)
        except (TypeError, ValueError, IndexError) as error:
            raise _Unresolved(
                f"cannot evaluate {name}() in [{self.text}]: {error}", _FIX_EXPRESSION
            ) from None

    def member(self, value: Any, key: Any) -> Any:
        if isinstance(value, dict) and isinstance(key, str):
            for written in value:
                if isinstance(written, str) and written.lower() == key.lower():
                    return value[written]
        if isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
            return value[key]
        if self.lenient:
            return _HOLE
        raise _Unresolved(f"[{self.text}] has no {key!r} to select", _FIX_EXPRESSION)


# --- resources -----------------------------------------------------------------------------


@dataclass
class _Resource:
    node: Node  # the resource mapping
    type: str  # full type, lower case
    name: str  # full name (`policy/group`), holes where unresolvable
    name_node: Node


def _resources(node: Node | None, template: _Template, parent: _Resource | None) -> list[_Resource]:
    """Every resource of a template, children of nested `resources` included, full type and name."""
    if node is None:
        return []
    if isinstance(node.value, dict):
        items = [child for _, child in node.items()]
    elif isinstance(node.value, list):
        items = list(node.elements())
    else:
        raise node.error("resources must be a list of resources", "")
    found = []
    for item in items:
        if not isinstance(item.value, dict):
            continue
        type_node, name_node = _get(item, "type"), _get(item, "name")
        if type_node is None or not isinstance(type_node.value, str) or name_node is None:
            continue
        kind = type_node.value.lower()
        name = template.name_of(name_node)
        if parent is not None:
            # A child may say `ruleCollectionGroups` and `G` for the full type and name.
            if "/" not in kind:
                kind = f"{parent.type}/{kind}"
            if name.count("/") < kind.count("/") - 1:
                name = f"{parent.name}/{name}"
        resource = _Resource(item, kind, name, name_node)
        found.append(resource)
        found.extend(_resources(_get(item, "resources"), template, resource))
    return found


def _hole_problem(node: Node, what: str) -> InputError:
    text = node.value if isinstance(node.value, str) else ""
    return node.error(
        f"cannot resolve the {what} from {text!r}: it uses a parameter without a defaultValue"
        f" or a function other than {_SUPPORTED}",
        _FIX_UNRESOLVED,
    )


class _IpGroups:
    """The template's ipGroups resources by name; resolves `sourceIpGroups` entries."""

    def __init__(self, resources: list[_Resource], template: _Template) -> None:
        self.template = template
        self.by_name: dict[str, _Resource] = {}
        for resource in resources:
            if resource.type == IP_GROUPS and _HOLE not in resource.name:
                self.by_name[resource.name.rsplit("/", 1)[-1].lower()] = resource
        self.cache: dict[str, tuple[str, ...]] = {}

    def __call__(self, item: Node) -> tuple[str, ...]:
        reference = string_of(self.template.resolve(item), "an IP group resource id")
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
        if name.lower() not in self.cache:
            properties = _get(resource.node, "properties")
            addresses = _get(properties, "ipAddresses") if properties is not None else None
            if addresses is None:
                raise resource.node.error(
                    f"IP group {name!r} has no properties.ipAddresses", "list its addresses"
                )
            resolved = self.template.resolve(addresses)
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
    collections = collections_of(found.get("rule_collections"), context)
    if not name:
        raise name_node.error("the group has no name", "name the group")
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
    collections = collections_of(found.get("rule_collections"), context)
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
        rules = rules_of(found.get("rules"), context, kind)
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
        collections = collections_of(
            collections_node, context_for(dialect), _classic_collection(kind)
        )
        if collections:
            group = RuleCollectionGroup(group_name, priority, collections)
            groups.append((collections_node, collections_node, group))
    return groups


def _is_classic(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    keys = {key.lower() for key in value if isinstance(key, str)}
    if keys & {"applicationrulecollections", "networkrulecollections"}:
        return True
    properties = next((v for k, v in value.items() if str(k).lower() == "properties"), None)
    return _is_classic(properties) if isinstance(properties, dict) else False


def _template_policy(root: Node, default_name: str) -> Policy:
    template = _Template(_get(root, "parameters"), _get(root, "variables"))
    resources = _resources(_get(root, "resources"), template, None)
    ip_groups = _IpGroups(resources, template)

    def context_for(dialect: Any) -> Context:
        return Context(dialect, None, ip_groups, classic=dialect is not ARM)

    entries: list[tuple[Node, Node, RuleCollectionGroup]] = []
    policy_names: dict[str, Node] = {}
    firewall_names: list[str] = []
    for resource in resources:
        if copy := _get(resource.node, "copy"):
            raise copy.error("ARM copy loops are not evaluated", "write the resources out")
        if resource.type == RULE_COLLECTION_GROUPS:
            *policy_parts, group_name = resource.name.split("/")
            if _HOLE in group_name:
                raise _hole_problem(resource.name_node, "group name")
            policy_name = "/".join(policy_parts)
            if policy_name and _HOLE not in policy_name:
                policy_names.setdefault(policy_name, resource.name_node)
            properties = _get(resource.node, "properties")
            if properties is None:
                raise resource.node.error("the group has no properties", "add its properties")
            properties = template.resolve(properties)
            entries.append(
                _arm_group(
                    resource.node, group_name, resource.name_node, properties,
                    context_for(ARM),
                )
            )  # fmt: skip
        elif resource.type == AZURE_FIREWALLS and _is_classic(resource.node.value):
            resolved = template.resolve(_get(resource.node, "properties") or resource.node)
            entries.extend(_classic_groups(resolved, context_for))
            if _HOLE not in resource.name:
                firewall_names.append(resource.name)
        elif resource.type == FIREWALL_POLICIES and _HOLE not in resource.name:
            policy_names.setdefault(resource.name, resource.name_node)
    if not entries:
        raise root.error(
            "the template holds no Microsoft.Network/firewallPolicies/ruleCollectionGroups"
            " and no azureFirewalls rule collections",
            "load the template that defines the rule collection groups",
        )
    if len(policy_names) > 1:
        names = list(policy_names)
        raise policy_names[names[1]].error(
            f"the file defines groups of more than one policy ({', '.join(names)})",
            "split the file: the harness tests one policy at a time",
        )
    check_groups(entries)
    name = next(iter(policy_names), None) or (firewall_names[0] if firewall_names else None)
    return Policy(name or default_name, tuple(group for _, _, group in entries))


def policy_from_arm(root: Node, default_name: str) -> Policy:
    """Any of the module docstring's forms, already parsed into marked data."""
    value = root.value
    if isinstance(value, dict) and _get(root, "resources") is not None:
        return _template_policy(root, default_name)
    template = _Template(None, None)
    ip_groups = _IpGroups([], template)
    context = Context(ARM, None, ip_groups)
    if isinstance(value, dict) and _is_classic(value):

        def context_for(dialect: Any) -> Context:
            return Context(dialect, None, ip_groups, classic=True)

        resolved = template.resolve(root)
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
    for item in items:
        item = template.resolve(item)
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
