"""The policy as a bash script of az CLI commands (extension azure-firewall): one
`rule-collection-group create` per group, then per collection `add-filter-collection` with its
first rule and `collection rule add` for each further rule. The commands run one after another,
as Azure needs for groups of one policy. Every value is quoted for the shell."""

from __future__ import annotations

__all__ = ["render_azcli"]

import shlex

from harness.export.prepare import GENERATOR, Prepared
from harness.policy.model import ApplicationRule, NetworkRule, Rule, RuleCollection

_GROUP = "az network firewall policy rule-collection-group"
_TARGET = '--resource-group "$RG" --policy-name "$POLICY"'
SOURCES_ARRAY = "SOURCE_ADDRESSES"


def _values(items: tuple[str, ...] | list[str]) -> str:
    return " ".join(shlex.quote(item) for item in items)


def _rule_options(rule: Rule, prepared: Prepared) -> list[str]:
    if prepared.uses_shared_sources(rule):
        sources = f'"${{{SOURCES_ARRAY}[@]}}"'
    else:
        sources = _values(rule.source_addresses)
    options = []
    if rule.description:
        options.append(f"--description {shlex.quote(rule.description)}")
    if isinstance(rule, ApplicationRule):
        options.append(f"--source-addresses {sources}")
        protocols = [f"{p.protocol_type}={p.port}" for p in rule.protocols]
        options.append(f"--protocols {_values(protocols)}")
        if rule.target_fqdns:
            options.append(f"--target-fqdns {_values(rule.target_fqdns)}")
        if rule.fqdn_tags:
            options.append(f"--fqdn-tags {_values(rule.fqdn_tags)}")
    else:
        assert isinstance(rule, NetworkRule)
        options.append(f"--ip-protocols {_values(rule.ip_protocols)}")
        options.append(f"--source-addresses {sources}")
        if rule.destination_addresses:
            options.append(f"--destination-addresses {_values(rule.destination_addresses)}")
        if rule.destination_fqdns:
            options.append(f"--destination-fqdns {_values(rule.destination_fqdns)}")
        options.append(f"--destination-ports {_values(rule.destination_ports)}")
    return options


def _command(head: str, options: list[str]) -> str:
    return " \\\n  ".join([head, *options]) + "\n"


def _collection(group: str, collection: RuleCollection, prepared: Prepared) -> list[str]:
    first, *rest = collection.rules
    quoted_group = shlex.quote(group)
    commands = [
        _command(
            f"{_GROUP} collection add-filter-collection",
            [
                _TARGET,
                f"--rule-collection-group-name {quoted_group}",
                f"--name {shlex.quote(collection.name)} --collection-priority"
                + f" {collection.priority} --action {shlex.quote(collection.action)}",
                f"--rule-type {first.rule_type} --rule-name {shlex.quote(first.name)}",
                *_rule_options(first, prepared),
            ],
        )
    ]
    for rule in rest:
        commands.append(
            _command(
                f"{_GROUP} collection rule add",
                [
                    _TARGET,
                    f"--rule-collection-group-name {quoted_group}",
                    f"--collection-name {shlex.quote(collection.name)}",
                    f"--name {shlex.quote(rule.name)} --rule-type {rule.rule_type}",
                    *_rule_options(rule, prepared),
                ],
            )
        )
    return commands


def render_azcli(prepared: Prepared) -> str:
    policy = prepared.policy
    out = [
        "#!/usr/bin/env bash\n",
        f"# {GENERATOR} from policy {shlex.quote(policy.name)}.\n",
        "# Needs the az CLI extension azure-firewall (az extension add --name azure-firewall).\n",
        "# Usage: RG=<resource group> [POLICY=<firewall policy name>] bash this-file.sh\n",
    ]
    out += [f"# Note: {note}\n" for note in prepared.notes]
    out += [f"# Left out (no rules): {name}\n" for name in prepared.collections_without_rules]
    out += [
        "set -euo pipefail\n\n",
        'RG="${RG:?set RG to the resource group of the firewall policy}"\n',
        f"POLICY=${{POLICY:-{shlex.quote(policy.name)}}}\n",
    ]
    if prepared.shared_sources is not None:
        out.append(f"{SOURCES_ARRAY}=({_values(prepared.shared_sources)})\n")
    for group in policy.rule_collection_groups:
        out.append(f"\n# Rule collection group {group.name} (priority {group.priority})\n")
        out.append(
            _command(
                f"{_GROUP} create",
                [_TARGET, f"--name {shlex.quote(group.name)} --priority {group.priority}"],
            )
        )
        for collection in group.rule_collections:
            if collection.rules:
                out.extend(_collection(group.name, collection, prepared))
    return "".join(out)
