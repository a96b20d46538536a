"""The policy as a deployable ARM template of `Microsoft.Network/firewallPolicies/
ruleCollectionGroups` (API 2024-05-01) for an existing firewall policy.

Parameters: the policy's name (default: the exported policy's name) and `sourceAddresses`
(default: the sources most rules share; the rules with those sources refer to it, the others
keep their own list). Each group `dependsOn` the one before it: Azure rejects concurrent writes
of rule collection groups to one policy, which a template deploys in parallel otherwise.

`harness.policy.load.load_policy` reads the file back to an equal model (FQDN tags expanded).
"""

from __future__ import annotations

__all__ = [
    "API_VERSION",
    "GROUP_TYPE",
    "SOURCES_PARAMETER",
    "SharedSources",
    "group_properties",
    "policy_to_arm",
    "render_arm",
]

import json
from typing import Any

from harness.export.prepare import GENERATOR, Prepared
from harness.policy.model import ApplicationRule, Rule, RuleCollection, RuleCollectionGroup

API_VERSION = "2024-05-01"
GROUP_TYPE = "Microsoft.Network/firewallPolicies/ruleCollectionGroups"
POLICY_TYPE = "Microsoft.Network/firewallPolicies"
SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
SOURCES_PARAMETER = "sourceAddresses"
FILTER_COLLECTION = "FirewallPolicyFilterRuleCollection"


class SharedSources:
    """Stands for the source-addresses parameter in a rule; each format writes its reference."""

    def __repr__(self) -> str:
        return "SharedSources()"


SHARED = SharedSources()


def _rule(rule: Rule, prepared: Prepared) -> dict[str, Any]:
    sources: Any = SHARED if prepared.uses_shared_sources(rule) else list(rule.source_addresses)
    body: dict[str, Any] = {"ruleType": rule.rule_type, "name": rule.name}
    if rule.description:
        body["description"] = rule.description
    if isinstance(rule, ApplicationRule):
        body.update({
            "sourceAddresses": sources,
            "protocols": [{"protocolType": p.protocol_type, "port": p.port} for p in rule.protocols],
            "targetFqdns": list(rule.target_fqdns),
            "fqdnTags": list(rule.fqdn_tags),
        })  # fmt: skip
    else:
        body.update({
            "ipProtocols": list(rule.ip_protocols),
            "sourceAddresses": sources,
            "destinationAddresses": list(rule.destination_addresses),
            "destinationPorts": list(rule.destination_ports),
            "destinationFqdns": list(rule.destination_fqdns),
        })  # fmt: skip
    return body


def _collection(collection: RuleCollection, prepared: Prepared) -> dict[str, Any]:
    return {
        "ruleCollectionType": FILTER_COLLECTION,
        "name": collection.name,
        "priority": collection.priority,
        "action": {"type": collection.action},
        "rules": [_rule(rule, prepared) for rule in collection.rules],
    }


def group_properties(group: RuleCollectionGroup, prepared: Prepared) -> dict[str, Any]:
    """A group's `properties`, shared by the ARM and Bicep writers; SHARED marks the
    source-addresses parameter."""
    return {
        "priority": group.priority,
        "ruleCollections": [_collection(c, prepared) for c in group.rule_collections],
    }


def _literal(text: str) -> str:
    """ARM reads a string starting with `[` as an expression; `[[` escapes it."""
    return "[" + text if text.startswith("[") else text


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _to_arm(value: Any) -> Any:
    if isinstance(value, SharedSources):
        return f"[parameters('{SOURCES_PARAMETER}')]"
    if isinstance(value, str):
        return _literal(value)
    if isinstance(value, dict):
        return {key: _to_arm(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_arm(item) for item in value]
    return value


def describe(prepared: Prepared) -> str:
    return (
        f"{GENERATOR} from policy {prepared.policy.name!r}: its rule collection groups for an"
        " existing Azure Firewall Policy"
    )


def policy_to_arm(
    prepared: Prepared, policy_name_param: str = "firewallPolicyName"
) -> dict[str, Any]:
    policy = prepared.policy
    parameters: dict[str, Any] = {
        policy_name_param: {
            "type": "string",
            "defaultValue": _literal(policy.name),
            "metadata": {"description": "Name of the existing Azure Firewall Policy"},
        }
    }
    if prepared.shared_sources is not None:
        parameters[SOURCES_PARAMETER] = {
            "type": "array",
            "defaultValue": [_literal(s) for s in prepared.shared_sources],
            "metadata": {
                "description": "Source addresses of the rules that share them, e.g. the App"
                " Service integration subnet"
            },
        }
    resources = []
    previous: str | None = None
    for group in policy.rule_collection_groups:
        resource: dict[str, Any] = {
            "type": GROUP_TYPE,
            "apiVersion": API_VERSION,
            "name": f"[format('{{0}}/{{1}}', parameters('{policy_name_param}'), {_quoted(group.name)})]",
        }
        if previous is not None:
            resource["dependsOn"] = [
                f"[resourceId('{GROUP_TYPE}', parameters('{policy_name_param}'), {_quoted(previous)})]"
            ]
        resource["properties"] = _to_arm(group_properties(group, prepared))
        resources.append(resource)
        previous = group.name
    metadata: dict[str, Any] = {
        "_generator": {"name": "egress-harness export", "comment": GENERATOR},
        "description": describe(prepared),
    }
    if prepared.notes:
        metadata["notes"] = list(prepared.notes)
    return {
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "metadata": metadata,
        "parameters": parameters,
        "resources": resources,
    }


def render_arm(prepared: Prepared, policy_name_param: str = "firewallPolicyName") -> str:
    return json.dumps(policy_to_arm(prepared, policy_name_param), indent=2) + "\n"
