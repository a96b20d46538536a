"""The policy as a classic firewall's rules: a `Microsoft.Network/azureFirewalls` resource
fragment with `applicationRuleCollections` and `networkRuleCollections` (rules without a
policy). Classic rules have no groups: the collections of every group are flattened per kind in
the order Azure processed them, renumbered 100, 200, ... when their priorities would clash or
reorder, and renamed on a name clash; the notes say when. A collection without rules is left
out. `load_policy` reads the file back (as classic's two groups)."""

from __future__ import annotations

__all__ = ["policy_to_classic", "render_classic"]

import json
from dataclasses import replace
from typing import Any

from harness.export.arm import API_VERSION
from harness.export.prepare import GENERATOR, Prepared, flatten_collections
from harness.policy.model import ApplicationRule, Policy, RuleCollection

FIREWALL_TYPE = "Microsoft.Network/azureFirewalls"


def _application(collection: RuleCollection) -> dict[str, Any]:
    rules = []
    for rule in collection.rules:
        assert isinstance(rule, ApplicationRule)
        body: dict[str, Any] = {"name": rule.name}
        if rule.description:
            body["description"] = rule.description
        body.update({
            "protocols": [{"protocolType": p.protocol_type, "port": p.port} for p in rule.protocols],
            "targetFqdns": list(rule.target_fqdns),
            "fqdnTags": list(rule.fqdn_tags),
            "sourceAddresses": list(rule.source_addresses),
        })  # fmt: skip
        rules.append(body)
    return _wrap(collection, rules)


def _network(collection: RuleCollection) -> dict[str, Any]:
    rules = []
    for rule in collection.rules:
        assert not isinstance(rule, ApplicationRule)
        body: dict[str, Any] = {"name": rule.name}
        if rule.description:
            body["description"] = rule.description
        body.update({
            "protocols": list(rule.ip_protocols),
            "sourceAddresses": list(rule.source_addresses),
            "destinationAddresses": list(rule.destination_addresses),
            "destinationPorts": list(rule.destination_ports),
            "destinationFqdns": list(rule.destination_fqdns),
        })  # fmt: skip
        rules.append(body)
    return _wrap(collection, rules)


def _wrap(collection: RuleCollection, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": collection.name,
        "properties": {
            "priority": collection.priority,
            "action": {"type": collection.action},
            "rules": rules,
        },
    }


def _of_kind(policy: Policy, application: bool) -> Policy:
    groups = []
    for group in policy.rule_collection_groups:
        kept = tuple(
            collection
            for collection in group.rule_collections
            if collection.rules and isinstance(collection.rules[0], ApplicationRule) == application
        )
        groups.append(replace(group, rule_collections=kept))
    return replace(policy, rule_collection_groups=tuple(groups))


def policy_to_classic(prepared: Prepared) -> dict[str, Any]:
    policy = prepared.policy
    notes = list(prepared.notes)
    notes += [f"left out (no rules): {name}" for name in prepared.collections_without_rules]
    network, network_notes = flatten_collections(_of_kind(policy, False), "network rules")
    application, application_notes = flatten_collections(
        _of_kind(policy, True), "application rules"
    )
    notes += network_notes + application_notes
    fragment: dict[str, Any] = {
        "_generator": f"{GENERATOR} from policy {policy.name!r}",
    }
    if notes:
        fragment["_notes"] = notes
    fragment.update({
        "type": FIREWALL_TYPE,
        "apiVersion": API_VERSION,
        "name": policy.name,
        "properties": {
            "applicationRuleCollections": [_application(c) for _, c in application],
            "networkRuleCollections": [_network(c) for _, c in network],
        },
    })  # fmt: skip
    return fragment


def render_classic(prepared: Prepared) -> str:
    return json.dumps(policy_to_classic(prepared), indent=2) + "\n"
