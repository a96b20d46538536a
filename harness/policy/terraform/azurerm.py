"""azurerm resource instances (from a configuration or from `terraform show -json`) to the model,
through `harness.policy.load`'s rule checks so the same mistakes give the same messages, with
Terraform's key names (`destination_fqdns`, `protocols { type, port }`).

- `azurerm_firewall_policy_rule_collection_group`: application and network rule collections,
  in priority order. `nat_rule_collection` blocks are checked (name, priority, action Dnat,
  rule names) and reported in the policy's warnings as inbound and not simulated.
- `azurerm_ip_group` (and `azurerm_ip_group_cidr`): `source_ip_groups` /
  `destination_ip_groups` resolve to their CIDRs; an id no IP group of the configuration has is
  an error (its addresses are known only to Azure).
- Classic `azurerm_firewall_application_rule_collection` / `_network_rule_collection` become
  the groups `harness.policy.arm` makes of classic collections; `_nat_rule_collection` is
  reported like DNAT.
- The policy's name: `local.firewall_policy_name` (which `egress export` writes), else the
  `azurerm_firewall_policy` the groups' `firewall_policy_id` names, else the last part of that
  id, else the classic collections' `azure_firewall_name`, else the file or folder name.
"""

from __future__ import annotations

__all__ = ["RESOURCE_TYPES", "TerraformResource", "policy_from_resources"]

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import InputError, Location
from harness.policy.arm import CLASSIC_APPLICATION_GROUP, CLASSIC_NETWORK_GROUP
from harness.policy.load import (
    Context,
    Dialect,
    action_of,
    check_groups,
    check_unique,
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
from harness.yamlio import Node

GROUP_TYPE = "azurerm_firewall_policy_rule_collection_group"
POLICY_TYPE = "azurerm_firewall_policy"
IP_GROUP_TYPE = "azurerm_ip_group"
IP_GROUP_CIDR_TYPE = "azurerm_ip_group_cidr"
CLASSIC_APPLICATION_TYPE = "azurerm_firewall_application_rule_collection"
CLASSIC_NETWORK_TYPE = "azurerm_firewall_network_rule_collection"
CLASSIC_NAT_TYPE = "azurerm_firewall_nat_rule_collection"
RESOURCE_TYPES = (GROUP_TYPE, POLICY_TYPE, IP_GROUP_TYPE, IP_GROUP_CIDR_TYPE,
                  CLASSIC_APPLICATION_TYPE, CLASSIC_NETWORK_TYPE, CLASSIC_NAT_TYPE)  # fmt: skip

_COLLECTION_RENAMES = {"rules": "rule"}
_IGNORED = frozenset({"__is_block__"})
APPLICATION = Dialect(
    "terraform",
    renames={
        **_COLLECTION_RENAMES,
        "target_fqdns": "destination_fqdns",
        "fqdn_tags": "destination_fqdn_tags",
        "target_urls": "destination_urls",
        "http_headers_to_insert": "http_headers",
        "protocol_type": "type",
    },
    ignored=_IGNORED,
)
NETWORK = Dialect("terraform", renames={**_COLLECTION_RENAMES, "ip_protocols": "protocols"},
                  ignored=_IGNORED)  # fmt: skip
CLASSIC_APPLICATION = Dialect("terraform", renames={"protocols": "protocol", "protocol_type": "type"},
                              ignored=_IGNORED)  # fmt: skip
CLASSIC_NETWORK = Dialect("terraform", renames={"ip_protocols": "protocols"}, ignored=_IGNORED)
_KINDS = (
    ("application_rule_collection", APPLICATION_RULE, APPLICATION),
    ("network_rule_collection", NETWORK_RULE, NETWORK),
)
_GROUP_KEYS = ("name", "priority", "firewall_policy_id", "application_rule_collection",
               "network_rule_collection", "nat_rule_collection", "id", "timeouts")  # fmt: skip
_CLASSIC_KEYS = ("name", "azure_firewall_name", "resource_group_name", "priority", "action",
                 "rule", "id", "timeouts")  # fmt: skip
_NUMERIC_KEYS = frozenset({"priority", "port"})


@dataclass(frozen=True)
class TerraformResource:
    """One resource instance: type, address, id (None when unknown) and its values as a Node
    whose key paths start with the address."""

    type: str
    address: str
    id: str | None
    node: Node


def _numbers(value: Any) -> None:
    """Terraform converts "300" to the number a `priority` or `port` argument takes."""
    if isinstance(value, dict):
        for key in list(value):
            item = value[key]
            if key in _NUMERIC_KEYS and isinstance(item, str) and item.strip().isdigit():
                value[key] = int(item.strip())
            else:
                _numbers(item)
    elif isinstance(value, list):
        for item in value:
            _numbers(item)


class _IpGroups:
    def __init__(self, resources: Sequence[TerraformResource]) -> None:
        self.cidrs: dict[str, list[str]] = {}
        for resource in resources:
            if resource.type == IP_GROUP_TYPE and resource.id:
                value = resource.node.child("cidrs").value or []
                self.cidrs.setdefault(resource.id.lower(), []).extend(
                    v for v in value if isinstance(v, str))  # fmt: skip
        for resource in resources:
            if resource.type == IP_GROUP_CIDR_TYPE:
                group_id = resource.node.child("ip_group_id").value
                cidr = resource.node.child("cidr").value
                if isinstance(group_id, str) and isinstance(cidr, str):
                    self.cidrs.setdefault(group_id.lower(), []).append(cidr)

    def __call__(self, item: Node) -> tuple[str, ...]:
        if not isinstance(item.value, str):
            raise item.error(f"an IP group id must be a string, not {item.value!r}",
                             "refer to azurerm_ip_group.NAME.id")  # fmt: skip
        found = self.cidrs.get(item.value.lower())
        if found is None:
            raise item.error(
                f"IP group {item.value!r} is not an azurerm_ip_group of this configuration, so"
                " its addresses are known only to Azure",
                "add the azurerm_ip_group resource to the configuration, or write its CIDRs",
            )
        return tuple(found)


def _nat(node: Node, what: str, dialect: Dialect) -> tuple[str, int, Node]:
    found = fields_of(node, dialect, ("name", "priority", "action", "rules", "azure_firewall_name",
                                      "resource_group_name", "id", "timeouts"), what=what)  # fmt: skip
    name = string_of(required(node, found, "name", dialect, 'name = "inbound"'), "a name")
    priority_node = required(node, found, "priority", dialect, "priority = 100")
    priority = priority_of(priority_node)
    action_node = required(node, found, "action", dialect, 'action = "Dnat"')
    action = string_of(action_node, "Dnat or Snat")
    if action.lower() not in ("dnat", "snat"):
        raise action_node.error(
            f"action {action!r} is not Dnat (or Snat in classic)", 'write "Dnat"'
        )
    rules = list(found["rules"].elements()) if "rules" in found else []
    for rule in rules:
        rule_found = {k: v for k, v in rule.items()} if isinstance(rule.value, dict) else {}
        if "name" not in rule_found:
            raise rule.error("missing required key 'name'", 'add name = "rdp"')
        string_of(rule_found["name"], "a name")
    check_unique([(r, string_of(r.child("name")), f"rule {i}") for i, r in enumerate(rules)],
                 "rule name", "give each rule in a collection its own name")  # fmt: skip
    return name, priority, priority_node


def _group(resource: TerraformResource, context_for: Any,
           notes: list[str]) -> tuple[Node, Node, RuleCollectionGroup]:  # fmt: skip
    node = resource.node
    dialect = APPLICATION
    found = fields_of(node, dialect, _GROUP_KEYS, what=f"a {GROUP_TYPE}")
    name = string_of(required(node, found, "name", dialect, 'name = "MyGroup"'), "a name")
    priority_node = required(node, found, "priority", dialect, "priority = 300")
    priority = priority_of(priority_node)
    parsed: list[tuple[Node, RuleCollection | None, str, int, Node]] = []
    for kind, rule_type, kind_dialect in _KINDS:
        for block in found[kind].elements() if kind in found else ():
            collection_found = fields_of(block, kind_dialect, ("name", "priority", "action",
                                                               "rules"), what=f"a {kind}")  # fmt: skip
            collection_name = string_of(required(block, collection_found, "name", kind_dialect,
                                                 'name = "allow-build"'), "a name")  # fmt: skip
            collection_priority = required(block, collection_found, "priority", kind_dialect,
                                           "priority = 100")  # fmt: skip
            number = priority_of(collection_priority)
            action = action_of(required(block, collection_found, "action", kind_dialect,
                                        'action = "Allow"'), kind_dialect)  # fmt: skip
            rules_node = required(block, collection_found, "rules", kind_dialect,
                                  "a rule { ... } block")  # fmt: skip
            rules = rules_of(rules_node, context_for(kind_dialect), rule_type)
            parsed.append((block, RuleCollection(collection_name, number, action, rules),
                           collection_name, number, collection_priority))  # fmt: skip
    for block in (found["nat_rule_collection"].elements() if "nat_rule_collection" in found
                  else ()):  # fmt: skip
        nat_name, nat_priority, nat_priority_node = _nat(
            block, "a nat_rule_collection", APPLICATION
        )
        count = len(block.child("rule").value or [])
        notes.append(f"{resource.address}: DNAT collection {nat_name!r} (group {name!r},"
                     f" {count} rule(s)) is inbound and not simulated")  # fmt: skip
        parsed.append((block, None, nat_name, nat_priority, nat_priority_node))
    # Azure: priorities and names are unique across all the group's collections, of any kind.
    check_unique([(p, number, f"collection {n!r}") for _, _, n, number, p in parsed],
                 "collection priority", "give each collection in a group its own priority")  # fmt: skip
    check_unique([(b, n, f"collection {n!r}") for b, _, n, _, _ in parsed],
                 "collection name", "give each collection in a group its own name")  # fmt: skip
    collections = sorted((c for _, c, _, _, _ in parsed if c is not None), key=lambda c: c.priority)
    return node, priority_node, RuleCollectionGroup(name, priority, tuple(collections))


def _classic(resources: Sequence[TerraformResource], context_for: Any, notes: list[str],
             ) -> tuple[list[tuple[Node, Node, RuleCollectionGroup]], list[tuple[Node, str]]]:  # fmt: skip
    kinds = (
        (CLASSIC_NETWORK_TYPE, CLASSIC_NETWORK_GROUP, NETWORK_RULE, CLASSIC_NETWORK),
        (
            CLASSIC_APPLICATION_TYPE,
            CLASSIC_APPLICATION_GROUP,
            APPLICATION_RULE,
            CLASSIC_APPLICATION,
        ),
    )
    entries = []
    firewalls: list[tuple[Node, str]] = []
    for rtype, (group_name, group_priority), rule_type, dialect in kinds:
        parsed = []
        for resource in (r for r in resources if r.type == rtype):
            node = resource.node
            found = fields_of(node, dialect, _CLASSIC_KEYS, what=f"a {rtype}")
            name = string_of(
                required(node, found, "name", dialect, 'name = "allow-build"'), "a name"
            )
            priority_node = required(node, found, "priority", dialect, "priority = 100")
            priority = priority_of(priority_node)
            action = action_of(required(node, found, "action", dialect, 'action = "Allow"'),
                               dialect)  # fmt: skip
            rules = rules_of(required(node, found, "rule", dialect, "a rule { ... } block"),
                             context_for(dialect, classic=True), rule_type)  # fmt: skip
            if "azure_firewall_name" in found:
                firewalls.append((found["azure_firewall_name"],
                                  string_of(found["azure_firewall_name"], "a firewall name")))  # fmt: skip
            parsed.append((node, RuleCollection(name, priority, action, rules), priority_node))
        if not parsed:
            continue
        check_unique([(p, c.priority, f"collection {c.name!r}") for _, c, p in parsed],
                     "collection priority", "give each collection its own priority")  # fmt: skip
        check_unique([(n, c.name, f"collection {c.name!r}") for n, c, _ in parsed],
                     "collection name", "give each collection its own name")  # fmt: skip
        collections = tuple(sorted((c for _, c, _ in parsed), key=lambda c: c.priority))
        first = parsed[0][0]
        entries.append((first, first, RuleCollectionGroup(group_name, group_priority, collections)))
    for resource in (r for r in resources if r.type == CLASSIC_NAT_TYPE):
        dialect = Dialect("terraform", renames={"rules": "rule"}, ignored=_IGNORED)
        nat_name, _, _ = _nat(resource.node, f"a {CLASSIC_NAT_TYPE}", dialect)
        count = len(resource.node.child("rule").value or [])
        notes.append(f"{resource.address}: classic NAT collection {nat_name!r} ({count} rule(s))"
                     " is inbound and not simulated")  # fmt: skip
    return entries, firewalls


def _policy_name(resources: Sequence[TerraformResource], group_nodes: list[Node],
                 firewalls: list[tuple[Node, str]], hints: dict[str, Any]) -> str | None:  # fmt: skip
    hint = hints.get("firewall_policy_name")
    if isinstance(hint, str) and hint.strip():
        return hint.strip()
    names = {r.id.lower(): r.node.child("name").value for r in resources
             if r.type == POLICY_TYPE and r.id}  # fmt: skip
    ids: dict[str, Node] = {}
    for node in group_nodes:
        policy_id = node.child("firewall_policy_id")
        if isinstance(policy_id.value, str) and policy_id.value:
            ids.setdefault(policy_id.value.lower(), policy_id)
    if len(ids) > 1:
        second = list(ids.values())[1]
        raise second.error(
            f"the configuration defines groups of more than one policy ({', '.join(sorted(ids))})",
            "give one policy's configuration: the harness tests one policy at a time",
        )
    if ids:
        policy_id = next(iter(ids))
        name = names.get(policy_id)
        if isinstance(name, str) and name:
            return name
        match = re.search(r"/firewallPolicies/([^/]+)$", policy_id, re.IGNORECASE)
        if match:
            original = next(iter(ids.values())).value
            return original[match.start(1) :]
    distinct = sorted({name for _, name in firewalls})
    if len(distinct) > 1:
        raise firewalls[-1][0].error(
            f"the classic collections belong to more than one firewall ({', '.join(distinct)})",
            "give one firewall's configuration: the harness tests one firewall at a time",
        )
    return distinct[0] if distinct else None


def policy_from_resources(resources: Sequence[TerraformResource], default_name: str,
                          source: str, hints: dict[str, Any] | None = None, *,
                          fqdn_tags: Mapping[str, tuple[str, ...]] | None = None) -> Policy:  # fmt: skip
    """The policy the resources define (module docstring); `source` names the file or folder in
    the error when there is none. A rule naming an FQDN tag (Microsoft-managed: its FQDNs are
    unpublished) loads with a warning and matches only the FQDNs `fqdn_tags` gives it."""
    for resource in resources:
        _numbers(resource.node.value)
    ip_groups = _IpGroups(resources)

    given = dict(fqdn_tags or {})
    notes: list[str] = []

    def context_for(dialect: Dialect, classic: bool = False) -> Context:
        return Context(dialect, fqdn_tags=frozenset(tag.lower() for tag in given),
                       ip_groups=ip_groups, classic=classic, warnings=notes)  # fmt: skip

    entries = [_group(r, context_for, notes) for r in resources if r.type == GROUP_TYPE]
    classic, firewalls = _classic(resources, context_for, notes)
    if entries and classic:
        raise classic[0][0].error(
            "the configuration has both policy rule collection groups and classic firewall rule"
            " collections (a firewall uses one or the other)",
            "give the configuration of one firewall",
        )
    entries.extend(classic)
    if not entries and not notes:
        raise InputError(
            f"no {GROUP_TYPE} or classic azurerm_firewall_*_rule_collection resources",
            location=Location(source),
            fix="give the Terraform configuration that defines the firewall's rules",
        )
    check_groups(entries)
    name = _policy_name(resources, [n for n, _, _ in entries], firewalls, hints or {})
    groups = tuple(group for _, _, group in entries)
    used = {
        tag.lower()
        for group in groups
        for collection in group.rule_collections
        for rule in collection.rules
        for tag in getattr(rule, "fqdn_tags", ())
    }
    tags = tuple((tag, fqdns) for tag, fqdns in given.items() if tag.lower() in used)
    return Policy(name or default_name, groups, fqdn_tags=tags, warnings=tuple(notes))
