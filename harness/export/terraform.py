"""The policy as Terraform (azurerm): one `azurerm_firewall_policy_rule_collection_group` per
group, for the policy whose id `var.firewall_policy_id` gives, each `depends_on` the one before
(Azure rejects concurrent group writes to one policy).

Spelling traps against ARM: an application rule's `targetFqdns` is `destination_fqdns` here and
`fqdnTags` is `destination_fqdn_tags`; a network rule's `ipProtocols` is `protocols`.
`var.source_addresses` holds the sources most rules share; `local.firewall_policy_name` keeps
the exported policy's name so `egress import` reads the file back to an equal model.
Collections are written in priority order (Terraform keeps the two kinds in separate lists);
a collection without rules is left out (Terraform requires at least one `rule`).
"""

from __future__ import annotations

__all__ = ["POLICY_NAME_LOCAL", "RESOURCE_TYPE", "SOURCES_VARIABLE", "render_terraform"]

from collections.abc import Sequence

from harness.export.prepare import GENERATOR, Prepared, terraform_label
from harness.policy.model import ApplicationRule, NetworkRule, Rule, RuleCollection

RESOURCE_TYPE = "azurerm_firewall_policy_rule_collection_group"
SOURCES_VARIABLE = "source_addresses"
POLICY_ID_VARIABLE = "firewall_policy_id"
POLICY_NAME_LOCAL = "firewall_policy_name"
_SOURCES_DESCRIPTION = (
    "Source addresses of the rules that share them, e.g. the App Service integration subnet"
)


def _string(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        .replace("\t", "\\t").replace("${", "$${").replace("%{", "%%{")
    )  # fmt: skip
    return f'"{escaped}"'


def _list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_string(item) for item in items) + "]"


def _attributes(pairs: list[tuple[str, str]], indent: int) -> list[str]:
    """`key = value` lines with the `=` aligned, as `terraform fmt` writes them."""
    width = max((len(key) for key, _ in pairs), default=0)
    pad = "  " * indent
    return [f"{pad}{key.ljust(width)} = {value}" for key, value in pairs]


def _sources(rule: Rule, prepared: Prepared) -> str:
    if prepared.uses_shared_sources(rule):
        return f"var.{SOURCES_VARIABLE}"
    return _list(rule.source_addresses)


def _rule(rule: Rule, prepared: Prepared, indent: int) -> list[str]:
    pad = "  " * indent
    lines = [f"{pad}rule {{"]
    pairs = [("name", _string(rule.name))]
    if rule.description:
        pairs.append(("description", _string(rule.description)))
    if isinstance(rule, ApplicationRule):
        lines += _attributes(pairs, indent + 1)
        for protocol in rule.protocols:
            lines.append(f"{pad}  protocols {{")
            lines += _attributes(
                [("type", _string(protocol.protocol_type)), ("port", str(protocol.port))],
                indent + 2,
            )
            lines.append(f"{pad}  }}")
        pairs = [("source_addresses", _sources(rule, prepared))]
        if rule.target_fqdns:
            pairs.append(("destination_fqdns", _list(rule.target_fqdns)))
        if rule.fqdn_tags:
            pairs.append(("destination_fqdn_tags", _list(rule.fqdn_tags)))
        lines += _attributes(pairs, indent + 1)
    else:
        assert isinstance(rule, NetworkRule)
        pairs += [
            ("protocols", _list(rule.ip_protocols)),
            ("source_addresses", _sources(rule, prepared)),
        ]
        if rule.destination_addresses:
            pairs.append(("destination_addresses", _list(rule.destination_addresses)))
        if rule.destination_fqdns:
            pairs.append(("destination_fqdns", _list(rule.destination_fqdns)))
        pairs.append(("destination_ports", _list(rule.destination_ports)))
        lines += _attributes(pairs, indent + 1)
    lines.append(f"{pad}}}")
    return lines


def _collection(collection: RuleCollection, prepared: Prepared) -> list[str]:
    kind = (
        "application_rule_collection"
        if isinstance(collection.rules[0], ApplicationRule)
        else "network_rule_collection"
    )
    lines = [f"  {kind} {{"]
    lines += _attributes(
        [
            ("name", _string(collection.name)),
            ("priority", str(collection.priority)),
            ("action", _string(collection.action)),
        ],
        2,
    )
    for rule in collection.rules:
        lines.append("")
        lines += _rule(rule, prepared, 2)
    lines.append("  }")
    return lines


def render_terraform(prepared: Prepared) -> str:
    policy = prepared.policy
    out = [f"# {GENERATOR} from policy {_string(policy.name)}."]
    out += [f"# Note: {note}" for note in prepared.notes]
    out += [f"# Left out (no rules): {name}" for name in prepared.collections_without_rules]
    out += [
        "",
        f'variable "{POLICY_ID_VARIABLE}" {{',
        '  description = "Resource id of the existing Azure Firewall Policy"',
        "  type        = string",
        "}",
    ]
    if prepared.shared_sources is not None:
        out += [
            "",
            f'variable "{SOURCES_VARIABLE}" {{',
            f"  description = {_string(_SOURCES_DESCRIPTION)}",
            "  type        = list(string)",
            f"  default     = {_list(prepared.shared_sources)}",
            "}",
        ]
    out += [
        "",
        "locals {",
        "  # The policy these groups were exported from (egress import reads it back).",
        f"  {POLICY_NAME_LOCAL} = {_string(policy.name)}",
        "}",
    ]
    taken: set[str] = set()
    previous: str | None = None
    for group in policy.rule_collection_groups:
        label = terraform_label(group.name, taken)
        out += ["", f'resource "{RESOURCE_TYPE}" "{label}" {{']
        out += _attributes(
            [
                ("name", _string(group.name)),
                ("firewall_policy_id", f"var.{POLICY_ID_VARIABLE}"),
                ("priority", str(group.priority)),
            ],
            1,
        )
        for collection in sorted(group.rule_collections, key=lambda c: c.priority):
            if collection.rules:
                out.append("")
                out += _collection(collection, prepared)
        if previous is not None:
            out += ["", f"  depends_on = [{RESOURCE_TYPE}.{previous}]"]
        out.append("}")
        previous = label
    return "\n".join(out) + "\n"
