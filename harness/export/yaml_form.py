"""The policy model back to formats.md's YAML form (the effective policy of a recording, and
`egress export --format yaml`). Loading what this writes gives an equal model."""

from __future__ import annotations

__all__ = ["policy_to_mapping", "policy_to_yaml"]

from typing import Any

import yaml

from harness.policy.model import ApplicationRule, NetworkRule, Policy


def _rule_to_mapping(rule: ApplicationRule | NetworkRule) -> dict[str, Any]:
    if isinstance(rule, ApplicationRule):
        mapping: dict[str, Any] = {
            "rule_type": rule.rule_type,
            "name": rule.name,
            "source_addresses": list(rule.source_addresses),
            "protocols": [str(protocol) for protocol in rule.protocols],
            "target_fqdns": list(rule.target_fqdns),
        }
        if rule.fqdn_tags:
            mapping["fqdn_tags"] = list(rule.fqdn_tags)
    else:
        mapping = {
            "rule_type": rule.rule_type,
            "name": rule.name,
            "ip_protocols": list(rule.ip_protocols),
            "source_addresses": list(rule.source_addresses),
            "destination_addresses": list(rule.destination_addresses),
            "destination_fqdns": list(rule.destination_fqdns),
            "destination_ports": list(rule.destination_ports),
        }
    if rule.description:
        mapping["description"] = rule.description
    return mapping


def policy_to_mapping(policy: Policy) -> dict[str, Any]:
    mapping: dict[str, Any] = {
        "name": policy.name,
        "rule_collection_groups": [
            {
                "name": group.name,
                "priority": group.priority,
                "rule_collections": [
                    {
                        "name": collection.name,
                        "priority": collection.priority,
                        "action": collection.action,
                        "rules": [_rule_to_mapping(rule) for rule in collection.rules],
                    }
                    for collection in group.rule_collections
                ],
            }
            for group in policy.rule_collection_groups
        ],
    }
    if policy.fqdn_tags:
        mapping["fqdn_tags"] = {tag: list(fqdns) for tag, fqdns in policy.fqdn_tags}
    if policy.service_tags:
        mapping["service_tags"] = {tag: list(prefixes) for tag, prefixes in policy.service_tags}
    return mapping


def policy_to_yaml(policy: Policy, header: str = "") -> str:
    body = yaml.safe_dump(
        policy_to_mapping(policy), sort_keys=False, default_flow_style=None, width=100
    )
    if header:
        comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
        return comment + body
    return body
