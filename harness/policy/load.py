"""Policy files to the model, with every check a user's mistake needs.

Accepted forms (detected from the content, not the file name):

- formats.md's YAML form (`rule_collection_groups:`, `fqdn_tags:`), and its shorthand
  `allow: [hosts]` (`harness.policy.shorthand`, which also merges the CLI's `--allow`).
- An ARM template, `az network firewall policy rule-collection-group show` output (or a list of
  them), a bare list of ruleCollectionGroups resources, or a classic
  `Microsoft.Network/azureFirewalls` resource: see `harness.policy.arm`.

Every problem is an InputError `path:LINE:COL: key.path: problem; fix`; the checks every form
shares live in `harness.policy.checks` (unknown keys with the near miss, types, priorities,
names, addresses, ports, protocols, FQDN patterns, Premium-only fields).

What loading notices without refusing the file goes into `Policy.warnings`: Microsoft-managed
FQDN tags (they match only the FQDNs the user gives: `fqdn_tags:` or `--fqdn-tags FILE`), service
tags without prefixes, DNAT collections (inbound, not simulated).

`PolicyOptions` (`harness.policy.source`) adds what a file lacks: ARM parameter values and the
deployment context, an FQDN tags file, Microsoft's Service Tags JSON. Service tags
(`AzureCloud`, `Storage.WestEurope`) in network rules' destination_addresses are kept as
written; the prefixes the Service Tags file gives the ones used go into `Policy.service_tags`
(the YAML form's `service_tags:` writes them back), and `harness.policy.decide` matches them.
"""

from __future__ import annotations

__all__ = [
    "ARM",
    "CLASSIC_APPLICATION",
    "CLASSIC_NETWORK",
    "YAML",
    "Context",
    "Dialect",
    "PolicyOptions",
    "action_of",
    "addresses_of",
    "check_groups",
    "check_unique",
    "collection_of",
    "collections_of",
    "fields_of",
    "load_policy",
    "policy_from_document",
    "policy_from_mapping",
    "policy_from_node",
    "priority_of",
    "required",
    "rule_of",
    "rules_of",
    "string_of",
]

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.limits import MAX_RULES
from harness.policy.checks import (
    ARM,
    CLASSIC_APPLICATION,
    CLASSIC_NETWORK,
    DEFAULT_APPLICATION_GROUP,
    YAML,
    Context,
    Dialect,
    _fqdn_patterns,
    _kind,
    _list,
    action_of,
    addresses_of,
    check_groups,
    check_unique,
    collection_of,
    collections_of,
    fields_of,
    is_service_tag,
    priority_of,
    required,
    rule_of,
    rules_of,
    string_of,
)
from harness.policy.forms import is_terraform_source, looks_like_arm, looks_like_show_json
from harness.policy.model import (
    ApplicationRule,
    NetworkRule,
    Policy,
    RuleCollectionGroup,
)
from harness.policy.shorthand import shorthand_group
from harness.policy.source import (
    PolicyOptions,
    fqdn_tags_from_file,
    parameters_from_options,
    service_tags_from_file,
)
from harness.yamlio import Document, MarkedDict, MarkedList, Node, load_document

# --- the YAML form -------------------------------------------------------------------------


def _yaml_group(node: Node, context: Context) -> tuple[Node, RuleCollectionGroup]:
    found = fields_of(
        node, YAML, ("name", "priority", "rule_collections"), what="a rule collection group"
    )
    name = string_of(required(node, found, "name", YAML, f"name: {DEFAULT_APPLICATION_GROUP}"))
    priority_node = required(node, found, "priority", YAML, "priority: 300")
    priority = priority_of(priority_node)
    collections = collections_of(found.get("rule_collections"), replace(context, group=name))
    return priority_node, RuleCollectionGroup(name, priority, collections)


def _own_fqdn_tags(node: Node | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if node is None:
        return ()
    if not isinstance(node.value, dict):
        raise node.error(
            f"fqdn_tags must be a mapping of tag name to FQDNs, not {_kind(node.value)}",
            'e.g. fqdn_tags: {KuduSelf: ["*.scm.azurewebsites.net"]}',
        )
    tags = []
    for tag, child in node.items():
        if not isinstance(tag, str) or not tag.strip():
            raise child.error(
                f"an FQDN tag name must be a string, not {_kind(tag)}", "name the tag"
            )
        fqdns = _fqdn_patterns(child) if child.value is not None else []
        if not fqdns:
            raise child.error(f"FQDN tag {tag!r} lists no FQDNs", "list the FQDNs it stands for")
        tags.append((tag.strip(), tuple(fqdns)))
    return tuple(tags)


def _own_service_tags(node: Node | None) -> dict[str, tuple[str, ...]]:
    if node is None:
        return {}
    if not isinstance(node.value, dict):
        raise node.error(
            f"service_tags must be a mapping of tag name to CIDRs, not {_kind(node.value)}",
            'e.g. service_tags: {AzureCloud: ["192.0.2.0/24"]}',
        )
    tags = {}
    for tag, child in node.items():
        if not isinstance(tag, str) or not tag.strip():
            raise child.error(f"a service tag name must be a string, not {_kind(tag)}", "name it")
        tags[tag.strip().lower()] = tuple(addresses_of(child, service_tags=False))
    return tags


def _yaml_policy(
    root: Node, default_name: str, extra_tags: Mapping[str, tuple[str, ...]], warnings: list[str]
) -> tuple[Policy, dict[str, tuple[str, ...]]]:
    found = fields_of(
        root, YAML, ("name", "rule_collection_groups", "fqdn_tags", "service_tags", "allow"),
        what="a policy",
    )  # fmt: skip
    if "rule_collection_groups" not in found and "allow" not in found:
        raise root.error(
            "a policy needs `rule_collection_groups:` (or the `allow:` shorthand)",
            'add e.g. allow: ["host.example"], or rule_collection_groups: [] to deny everything',
        )
    name = string_of(found["name"], "a policy name") if "name" in found else default_name
    tags = _merge_tags(_own_fqdn_tags(found.get("fqdn_tags")), extra_tags)
    context = Context(YAML, fqdn_tags=frozenset(tag.lower() for tag, _ in tags), warnings=warnings)
    entries: list[tuple[Node, Node, RuleCollectionGroup]] = []
    if "rule_collection_groups" in found:
        for item in _list(found["rule_collection_groups"], "rule collection groups"):
            priority_node, group = _yaml_group(item, context)
            entries.append((item, priority_node, group))
    if "allow" in found:
        hosts = _fqdn_patterns(found["allow"])
        if hosts:
            group = shorthand_group(hosts, DEFAULT_APPLICATION_GROUP, 300)
            entries.append((found["allow"], found["allow"], group))
    check_groups(entries)
    policy = Policy(name, tuple(group for _, _, group in entries), tags)
    return policy, _own_service_tags(found.get("service_tags"))


def _merge_tags(
    own: tuple[tuple[str, tuple[str, ...]], ...], extra: Mapping[str, tuple[str, ...]]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The policy's own tags, then the user's (`--fqdn-tags`), which win on the same name."""
    merged = {tag.lower(): (tag, fqdns) for tag, fqdns in own}
    for tag, fqdns in extra.items():
        merged[tag.lower()] = (tag, fqdns)
    return tuple(merged.values())


def _used_fqdn_tags(policy: Policy) -> set[str]:
    return {
        tag.lower()
        for group in policy.rule_collection_groups
        for collection in group.rule_collections
        for rule in collection.rules
        if isinstance(rule, ApplicationRule)
        for tag in rule.fqdn_tags
    }


def _with_service_tags(
    policy: Policy, table: Mapping[str, tuple[str, ...]] | None, source: str, warnings: list[str]
) -> Policy:
    """Attach the prefixes of the service tags the network rules use; warn about the rest."""
    used: dict[str, list[str]] = {}
    for group in policy.rule_collection_groups:
        for collection in group.rule_collections:
            for rule in collection.rules:
                if not isinstance(rule, NetworkRule):
                    continue
                for address in rule.destination_addresses:
                    if is_service_tag(address):
                        where = f"{group.name}/{collection.name}/{rule.name}"
                        used.setdefault(address, []).append(where)
    attached = []
    for tag, rules in used.items():
        prefixes = table.get(tag.lower()) if table is not None else None
        if prefixes is not None:
            attached.append((tag, prefixes))
            continue
        if table is None:
            why = "without --service-tags FILE (Microsoft's Service Tags JSON) it matches nothing"
        else:
            why = f"{source} does not list it, so it matches nothing"
        warnings.append(f"{source}: service tag {tag!r} in rule(s) {', '.join(rules)}: {why}")
    return replace(policy, service_tags=tuple(attached))


# --- entry points --------------------------------------------------------------------------


def policy_from_document(
    document: Document, default_name: str, options: PolicyOptions | None = None
) -> Policy:
    return policy_from_node(document.root, default_name, options)


def policy_from_node(root: Node, default_name: str, options: PolicyOptions | None = None) -> Policy:
    """Any accepted form (module docstring), told apart by its keys; `options` add what the
    file itself lacks (ARM parameters and deployment context, FQDN and service tag tables).
    What loading noticed is in the policy's `warnings`."""
    options = options or PolicyOptions()
    value = root.value
    if value is None:
        raise root.error("the policy is empty", 'write e.g. allow: ["host.example"]')
    if isinstance(value, list) and not all(isinstance(item, dict) for item in value):
        raise root.error(
            "the top level is a list, not a mapping (a list is read only as az output of rule"
            " collection groups)",
            'write e.g. allow: ["host.example"], or rule_collection_groups: [...]',
        )
    # The readers of the other forms are imported only for their own documents (policy.forms).
    if looks_like_show_json(value):  # show -json output is JSON like an ARM template
        from harness.policy import terraform

        return terraform.policy_from_show_json(root, default_name)
    warnings: list[str] = []
    user_tags = fqdn_tags_from_file(options.fqdn_tags_file) if options.fqdn_tags_file else {}
    own_service_tags: dict[str, tuple[str, ...]] = {}
    if isinstance(value, list) or (isinstance(value, dict) and looks_like_arm(value)):
        from harness.policy import arm

        inputs = arm.ArmInputs(
            context=options.deployment_context(),
            parameters=parameters_from_options(options),
            fqdn_tags=frozenset(tag.lower() for tag in user_tags),
            warnings=warnings,
        )
        policy = arm.policy_from_arm(root, default_name, inputs)
        used = _used_fqdn_tags(policy)
        tags = tuple((tag, fqdns) for tag, fqdns in user_tags.items() if tag.lower() in used)
        policy = replace(policy, fqdn_tags=tags)
    elif not isinstance(value, dict):
        raise root.error(
            f"a policy must be a mapping, not {_kind(value)}", 'write e.g. allow: ["host.example"]'
        )
    else:
        if options.arm_only:
            raise InputError(
                "--parameters, --resource-group, --location and --subscription apply to ARM"
                " templates; this policy is the YAML form",
                location=root.location,
                fix="drop those flags, or give the ARM template",
            )
        policy, own_service_tags = _yaml_policy(root, default_name, user_tags, warnings)
    table: dict[str, tuple[str, ...]] | None = None
    source = root.path
    if options.service_tags_file:
        table = {**own_service_tags, **service_tags_from_file(options.service_tags_file)}
        source = options.service_tags_file
    elif own_service_tags:
        table = own_service_tags
    policy = _with_service_tags(policy, table, source, warnings)
    return within_rule_limit(replace(policy, warnings=tuple(warnings)), root)


def within_rule_limit(policy: Policy, root: Node) -> Policy:
    count = sum(
        len(collection.rules)
        for group in policy.rule_collection_groups
        for collection in group.rule_collections
    )
    if count > MAX_RULES:
        raise root.error(
            f"the policy has {count:,} rules, over the limit of {MAX_RULES:,} (MAX_RULES)",
            "split it into several policies",
        )
    return policy


def load_policy(path: str | Path, options: PolicyOptions | None = None) -> Policy:
    """A policy file in any accepted form; named by its `name:` (ARM: the firewallPolicies
    resource) or else the file's stem. A `.tf` / `.tf.json` file or a folder of them is a
    Terraform configuration, evaluated with the options' `--var-file` and `--var` values."""
    if is_terraform_source(path):
        from harness.policy import terraform

        return terraform.load_terraform(path, options.terraform_inputs() if options else None)
    document = load_document(path)
    return policy_from_document(document, Path(path).stem, options)


def policy_from_mapping(
    data: Any, source_path: str | Path, key_prefix: str = "firewall.policy",
    default_name: str | None = None, options: PolicyOptions | None = None,
) -> Policy:  # fmt: skip
    """An inline policy inside another file (a scenario's `firewall.policy`). Locations come from
    the marks `harness.yamlio` put on `data`; key paths start with `key_prefix`."""
    start = data.start if isinstance(data, MarkedDict | MarkedList) else None
    root = Node(data, str(source_path), (), start, key_prefix)
    return policy_from_node(root, default_name or Path(source_path).stem, options)
