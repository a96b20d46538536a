"""`terraform show -json` output as a policy source: a plan's `planned_values` or a state's
`values`, root module and child modules, read with `harness.policy.terraform.azurerm`.

This is the route for configurations the offline evaluator cannot take (registry modules,
data sources): Terraform has evaluated everything. In a plan, what Azure computes at apply
(`after_unknown` in `resource_changes`) is absent; an unknown value a rule needs (an IP group
id created by the same plan, say) is an error at the resource that says to apply first and
show the state. A group's unknown `firewall_policy_id` only names the policy: the name is then
taken from the `azurerm_firewall_policy` the configuration section says it refers to.
"""

from __future__ import annotations

__all__ = ["looks_like_show_json", "policy_from_show_json"]

import re
from typing import Any

from harness.policy.forms import looks_like_show_json
from harness.policy.model import Policy
from harness.policy.terraform.azurerm import (
    GROUP_TYPE,
    POLICY_TYPE,
    RESOURCE_TYPES,
    TerraformResource,
    policy_from_resources,
)
from harness.yamlio import MarkedDict, Node

MAX_MODULE_DEPTH = 32
_NAMING_ONLY = frozenset({"id", "firewall_policy_id", "timeouts"})


def _modules(node: Node, depth: int = 0) -> list[Node]:
    if depth > MAX_MODULE_DEPTH:
        raise node.error(
            f"modules nest deeper than {MAX_MODULE_DEPTH}", "this is not Terraform's output"
        )
    found = [node]
    for child in node.child("child_modules").elements():
        found.extend(_modules(child, depth + 1))
    return found


def _unknown_paths(value: Any, prefix: str = "") -> list[str]:
    if value is True:
        return [prefix]
    paths: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if prefix == "" and key in _NAMING_ONLY:
                continue
            paths.extend(_unknown_paths(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths.extend(_unknown_paths(item, f"{prefix}[{index}]"))
    return paths


def _without_index(address: str) -> str:
    return re.sub(r"\[[^\]]*\]$", "", address)


def _policy_references(root: Node) -> dict[str, str]:
    """Group address (without instance key) -> the address of the azurerm_firewall_policy its
    firewall_policy_id refers to, from the plan's `configuration` section, following module
    variables up to the module call that sets them."""
    found: dict[str, str] = {}

    def references(expression: Any) -> list[str]:
        if not isinstance(expression, dict):
            return []
        return [r for r in expression.get("references", []) if isinstance(r, str)]

    def resolve(refs: list[str], prefix: str, calls: list[tuple[str, Any]]) -> str | None:
        for reference in refs:
            parts = reference.split(".")
            if reference.startswith(POLICY_TYPE + ".") and len(parts) >= 2:
                return f"{prefix}{parts[0]}.{parts[1]}"
            if parts[0] == "var" and len(parts) >= 2 and calls:
                (parent_prefix, call_expressions), above = calls[-1], calls[:-1]
                argument = call_expressions.get(parts[1]) if isinstance(call_expressions, dict) else None
                target = resolve(references(argument), parent_prefix, above)
                if target:
                    return target
        return None

    def walk(module: Node, prefix: str, calls: list[tuple[str, Any]], depth: int) -> None:
        if depth > MAX_MODULE_DEPTH or not isinstance(module.value, dict):
            return
        for resource in module.child("resources").elements():
            if resource.child("type").value != GROUP_TYPE:
                continue
            expression = resource.child("expressions").child("firewall_policy_id").value
            target = resolve(references(expression), prefix, calls)
            if target:
                found[f"{prefix}{resource.child('address').value}"] = target
        module_calls = module.child("module_calls")
        if isinstance(module_calls.value, dict):
            for name, call in module_calls.items():
                expressions = call.child("expressions").value
                walk(call.child("module"), f"{prefix}module.{name}.",
                     [*calls, (prefix, expressions)], depth + 1)  # fmt: skip

    walk(root.child("configuration").child("root_module"), "", [], 0)
    return found


def policy_from_show_json(root: Node, default_name: str) -> Policy:
    plan = "planned_values" in root.value
    top = root.child("planned_values" if plan else "values").child("root_module")
    if not isinstance(top.value, dict):
        raise top.error("expected the root_module of `terraform show -json` output",
                        "give the file `terraform show -json` wrote")  # fmt: skip
    unknown: dict[str, Any] = {}
    for change in root.child("resource_changes").elements():
        if isinstance(change.value, dict):
            after_unknown = change.child("change").child("after_unknown").value
            unknown[str(change.value.get("address"))] = after_unknown
    resources: list[TerraformResource] = []
    policies: dict[str, TerraformResource] = {}
    for module in _modules(top):
        for item in module.child("resources").elements():
            value = item.value
            if not isinstance(value, dict) or value.get("mode", "managed") != "managed":
                continue
            rtype, address = value.get("type"), str(value.get("address", "?"))
            if rtype not in RESOURCE_TYPES:
                continue
            values = item.child("values")
            body = values.value if isinstance(values.value, dict) else MarkedDict()
            node = Node(body, root.path, (), values.mark or item.mark, address)
            missing = _unknown_paths(unknown.get(address))
            if missing and rtype != POLICY_TYPE:
                raise node.error(
                    f"{', '.join(missing[:5])} known only after apply, so this plan does not"
                    " say what the rules are",
                    "apply, then give `terraform show -json` of the state (without a plan file)",
                )
            resource = TerraformResource(rtype, address, body.get("id"), node)
            resources.append(resource)
            if rtype == POLICY_TYPE:
                policies[address] = resource
    hints: dict[str, Any] = {}
    references = _policy_references(root) if plan else {}
    for resource in resources:
        if resource.type == GROUP_TYPE and not resource.node.child("firewall_policy_id").value:
            policy = policies.get(references.get(_without_index(resource.address), ""))
            name = policy.node.child("name").value if policy else None
            if isinstance(name, str) and name:
                hints.setdefault("firewall_policy_name", name)
    return policy_from_resources(resources, default_name, root.path, hints)
