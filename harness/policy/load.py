"""Policy files to the model, with every check a user's mistake needs.

Accepted forms (detected from the content, not the file name):

- formats.md's YAML form (`rule_collection_groups:`, `fqdn_tags:`), and its shorthand
  `allow: [hosts]`: one Allow application rule `allow` with `Http:80` and `Https:443` in
  collection `allow` (priority 100) of group DefaultApplicationRuleCollectionGroup (priority 300).
- An ARM template, `az network firewall policy rule-collection-group show` output (or a list of
  them), a bare list of ruleCollectionGroups resources, or a classic
  `Microsoft.Network/azureFirewalls` resource: see `harness.policy.arm`.

Every problem is an InputError `path:LINE:COL: key.path: problem; fix`. Checked here:
unknown keys (with the near-miss suggested), types, required keys, priorities 100..65000 and
unique per level, unique names per level, one rule type per collection, actions Allow / Deny
(any case, normalized), FQDN patterns (`harness.policy.fqdn`), exact names in network rules,
application protocols `Http:<port>` / `Https:<port>` (also `http:80`, az's `Https=443` and ARM's
`{protocolType, port}`; `Mssql:<port>` only in classic rules) with ports 0..64000, destination
ports `"443"`, `"1000-2000"`, `"*"` in 1..65535, addresses (`*`, IPv4/IPv6, CIDR, range
`a-b`), FQDN tags (only tags the policy defines under `fqdn_tags:`, as Azure's own are
unpublished), and Premium-only fields (TLS inspection: target URLs, web categories), accepted
only when empty.

Service tags (`AzureCloud`, `Storage.WestEurope`) are accepted in network rules'
destination_addresses, kept as written, and never match in `harness.policy.decide`: their
address lists are Microsoft's and not simulated.
"""

from __future__ import annotations

__all__ = [
    "ALLOW_GROUP_NAME",
    "ARM",
    "CLASSIC_APPLICATION",
    "CLASSIC_NETWORK",
    "YAML",
    "Context",
    "Dialect",
    "action_of",
    "addresses_of",
    "allow_policy",
    "check_groups",
    "check_unique",
    "collection_of",
    "collections_of",
    "fields_of",
    "load_policy",
    "merge_allow",
    "policy_from_document",
    "policy_from_mapping",
    "policy_from_node",
    "priority_of",
    "required",
    "rule_of",
    "rules_of",
    "string_of",
]

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import InputError, excerpt
from harness.limits import MAX_RULES
from harness.policy.fqdn import exact_name_problem, pattern_problem
from harness.policy.model import (
    ALLOW,
    APPLICATION_RULE,
    DENY,
    NETWORK_RULE,
    Action,
    ApplicationRule,
    NetworkRule,
    Policy,
    Protocol,
    Rule,
    RuleCollection,
    RuleCollectionGroup,
)
from harness.yamlio import Document, MarkedDict, MarkedList, Node, load_document

PRIORITY_MIN, PRIORITY_MAX = 100, 65000
APPLICATION_PORT_MAX = 64000
DEFAULT_APPLICATION_GROUP = "DefaultApplicationRuleCollectionGroup"
ALLOW_GROUP_NAME = "AllowFromCommandLine"
_SHORTHAND_PROTOCOLS = (Protocol("Http", 80), Protocol("Https", 443))

# --- dialects ------------------------------------------------------------------------------

# Keys ARM resources and az output carry that say nothing about rules.
_ARM_METADATA = frozenset(
    k.lower()
    for k in (
        "id", "etag", "type", "provisioningState", "resourceGroup", "location", "tags",
        "dependsOn", "apiVersion", "comments", "condition", "size", "kind", "sku",
    )
)  # fmt: skip


@dataclass(frozen=True)
class Dialect:
    """How a form spells the model's fields: snake_case (YAML) or ARM's camelCase, which ARM
    compares case-insensitively."""

    name: str
    camel: bool = False
    renames: Mapping[str, str] = field(default_factory=dict)
    ignored: frozenset[str] = frozenset()

    def key(self, name: str) -> str:
        if name in self.renames:
            return self.renames[name]
        if not self.camel:
            return name
        head, *rest = name.split("_")
        return head + "".join(word.capitalize() for word in rest)


YAML = Dialect("yaml")
ARM = Dialect("arm", camel=True, renames={"terminate_tls": "terminateTLS"}, ignored=_ARM_METADATA)
CLASSIC_NETWORK = Dialect(
    "classic", camel=True, renames={"ip_protocols": "protocols"}, ignored=_ARM_METADATA
)
CLASSIC_APPLICATION = Dialect("classic", camel=True, ignored=_ARM_METADATA)

IpGroupResolver = Callable[[Node], tuple[str, ...]]


@dataclass(frozen=True)
class Context:
    """What rule checks need besides the rule: the form, the policy's own FQDN tags (None: the
    form cannot define any) and how IP group references resolve (None: not in this form)."""

    dialect: Dialect
    fqdn_tags: frozenset[str] | None = None
    ip_groups: IpGroupResolver | None = None
    classic: bool = False


# --- generic checks ------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {excerpt(value)}"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"a {type(value).__name__}"


def fields_of(node: Node, dialect: Dialect, names: Iterable[str], *, what: str) -> dict[str, Node]:
    """The mapping at `node` by canonical field name. Unknown keys are errors that suggest the
    near miss; null values count as absent; ARM keys match case-insensitively."""
    if not isinstance(node.value, dict):
        raise node.error(
            f"{what} must be a mapping, not {_kind(node.value)}",
            "write `key: value` pairs here (see formats.md)",
        )
    written = {dialect.key(name): name for name in names}
    lookup = {key.lower(): name for key, name in written.items()} if dialect.camel else written
    found: dict[str, Node] = {}
    for key, child in node.items():
        probe = key.lower() if dialect.camel and isinstance(key, str) else key
        name = lookup.get(probe)
        if name is None:
            if isinstance(probe, str) and probe in dialect.ignored:
                continue
            near = difflib.get_close_matches(str(key), list(written), n=1, cutoff=0.6)
            fix = f"did you mean {near[0]!r}?" if near else f"{what} takes {', '.join(written)}"
            raise child.error(f"unknown key {excerpt(key)}", fix)
        if child.value is not None:
            found[name] = child
    return found


def required(
    node: Node, found: Mapping[str, Node], name: str, dialect: Dialect, example: str
) -> Node:
    if name not in found:
        key = dialect.key(name)
        raise node.error(f"missing required key {key!r}", f"add it, e.g. {example}")
    return found[name]


def string_of(node: Node, what: str = "a string", fix: str = "") -> str:
    if not isinstance(node.value, str) or not node.value.strip():
        raise node.error(f"expected {what}, got {_kind(node.value)}", fix or f"write {what}")
    return node.value.strip()


def _int(node: Node, what: str, fix: str) -> int:
    if isinstance(node.value, bool) or not isinstance(node.value, int):
        raise node.error(f"expected {what}, got {_kind(node.value)}", fix)
    return node.value


def priority_of(node: Node) -> int:
    value = _int(node, "a priority (a whole number 100..65000)", "write e.g. 300; lower runs first")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise node.error(
            f"priority {value} is outside {PRIORITY_MIN}..{PRIORITY_MAX}",
            "pick a number in range; lower numbers are processed first",
        )
    return value


def _list(node: Node, what: str) -> list[Node]:
    if not isinstance(node.value, list):
        raise node.error(
            f"expected a list of {what}, got {_kind(node.value)}",
            "write a list: `- item` lines, or [item, item]",
        )
    return list(node.elements())


def _strings(node: Node, what: str) -> list[tuple[Node, str]]:
    return [(item, string_of(item, what)) for item in _list(node, what)]


def check_unique(entries: Sequence[tuple[Node, Any, str]], what: str, fix: str) -> None:
    """`entries` are (node, key, label); the second entry with a key already seen is an error."""
    seen: dict[Any, tuple[Node, str]] = {}
    for node, key, label in entries:
        probe = key.lower() if isinstance(key, str) else key
        if probe in seen:
            first_node, first_label = seen[probe]
            raise node.error(
                f"{what} {key!r} is also used by {first_label} ({first_node.key_path})", fix
            )
        seen[probe] = (node, label)


# --- values --------------------------------------------------------------------------------

_SERVICE_TAG = re.compile(r"^[A-Z][A-Za-z0-9]*(\.[A-Z][A-Za-z0-9]*)?$")
_PROTOCOL_TEXT = re.compile(r"^\s*([A-Za-z]+)\s*[:=]\s*(\S+)\s*$")
_PROTOCOL_TYPES = {"http": "Http", "https": "Https", "mssql": "Mssql"}
_IP_PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP", "any": "Any"}


def _ip_problem(text: str) -> str | None:
    if text == "*":
        return None
    if "-" in text:
        low, _, high = text.partition("-")
        try:
            first, last = ipaddress.ip_address(low.strip()), ipaddress.ip_address(high.strip())
        except ValueError:
            return f"{text!r} is not an IP range (first-last)"
        if first.version != last.version or first > last:
            return f"{text!r} is not an IP range: the first address must not exceed the last"
        return None
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return f"{text!r} is not an IP address, CIDR, range or *"
    return None


def addresses_of(node: Node, *, service_tags: bool) -> list[str]:
    values = []
    for item, text in _strings(node, "IP addresses"):
        problem = _ip_problem(text)
        if problem and service_tags and _SERVICE_TAG.match(text):
            problem = None  # kept as written; never matches (module docstring)
        if problem:
            fix = "write an IP, a CIDR like 10.0.0.0/24, a range a-b, or *"
            if service_tags:
                fix += " (or a service tag like AzureCloud); names go in destination_fqdns"
            raise item.error(problem, fix)
        values.append(text)
    return values


def _port_problem(text: str) -> str | None:
    if text == "*":
        return None
    low, dash, high = text.partition("-")
    if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
        return f"{text!r} is not a port, a range like 1000-2000, or *"
    first = int(low)
    last = int(high) if dash else first
    if not (1 <= first <= 65535 and 1 <= last <= 65535):
        return f"port {text!r} is outside 1..65535"
    if first > last:
        return f"port range {text!r} runs backwards"
    return None


def _ports(node: Node) -> list[str]:
    values = []
    for item in _list(node, "ports"):
        value = item.value
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise item.error(f"expected a port as a string, got {_kind(value)}", 'e.g. "443"')
        problem = _port_problem(value.strip())
        if problem:
            raise item.error(problem, 'write "443", "1000-2000" or "*"')
        values.append(value.strip())
    return values


def _protocol(item: Node, context: Context) -> Protocol:
    if isinstance(item.value, dict):
        found = fields_of(item, context.dialect, ("protocol_type", "port"), what="a protocol")
        type_node = required(item, found, "protocol_type", context.dialect, "Https")
        port_node = required(item, found, "port", context.dialect, "443")
        kind, port_value = string_of(type_node, "Http or Https"), port_node.value
        port_at = port_node
    elif isinstance(item.value, str):
        match = _PROTOCOL_TEXT.match(item.value)
        if match is None:
            raise item.error(f"{item.value!r} is not a protocol", 'write "Https:443" or "Http:80"')
        kind, port_value = match.group(1), match.group(2)
        type_node = port_at = item
    else:
        raise item.error(
            f'expected a protocol like "Https:443", got {_kind(item.value)}',
            'write "Https:443" or "Http:80"',
        )
    protocol_type = _PROTOCOL_TYPES.get(kind.lower())
    if protocol_type is None or (protocol_type == "Mssql" and not context.classic):
        allowed = "Http, Https or Mssql" if context.classic else "Http or Https"
        raise type_node.error(f"protocol type {kind!r} is not {allowed}", 'e.g. "Https:443"')
    if isinstance(port_value, str) and port_value.strip().isdigit():
        port_value = int(port_value)
    if isinstance(port_value, bool) or not isinstance(port_value, int):
        raise port_at.error(f"port {port_value!r} is not a number", 'e.g. "Https:443"')
    if not 0 <= port_value <= APPLICATION_PORT_MAX:
        raise port_at.error(
            f"port {port_value} is outside 0..{APPLICATION_PORT_MAX} (Azure's range for"
            " application rules)",
            "use a network rule for other ports",
        )
    return Protocol(protocol_type, port_value)  # type: ignore[arg-type]


def _fqdn_patterns(node: Node) -> list[str]:
    values = []
    for item, text in _strings(node, "FQDNs"):
        problem = pattern_problem(text)
        if problem:
            raise item.error(
                problem, "write a name, *.name (subdomains), *name (suffix) or * (everything)"
            )
        values.append(text)
    return values


def _exact_fqdns(node: Node) -> list[str]:
    values = []
    for item, text in _strings(node, "FQDNs"):
        problem = exact_name_problem(text)
        if problem:
            raise item.error(problem, "list each name, or use an application rule for wildcards")
        values.append(text)
    return values


def _fqdn_tag_refs(node: Node, context: Context) -> list[str]:
    values = []
    for item, tag in _strings(node, "FQDN tag names"):
        if context.fqdn_tags is None:
            raise item.error(
                f"FQDN tag {tag!r} is Microsoft-managed and its FQDNs are unpublished, so the"
                " harness cannot simulate it",
                "list the FQDNs in targetFqdns, or import the policy to YAML (`egress import`)"
                f" and define the tag under `fqdn_tags:`, e.g. fqdn_tags: {{{tag}: [...]}}",
            )
        if tag.lower() not in context.fqdn_tags:
            raise item.error(
                f"FQDN tag {tag!r} is not defined under `fqdn_tags:` (Azure's own tags are"
                " unpublished, so only tags the policy defines are known)",
                f'add it at the top level: fqdn_tags: {{{tag}: ["host.example", "*.cdn.example"]}}',
            )
        values.append(tag)
    return values


def _ip_protocols(node: Node) -> list[str]:
    values = []
    for item, text in _strings(node, "IP protocols"):
        protocol = _IP_PROTOCOLS.get(text.lower())
        if protocol is None:
            raise item.error(
                f"IP protocol {text!r} is not TCP, UDP, ICMP or Any", "write one of those"
            )
        values.append(protocol)
    return values


def action_of(node: Node, dialect: Dialect) -> Action:
    """`Allow` (YAML) or `{type: Allow}` (ARM), any case."""
    if isinstance(node.value, dict):
        found = fields_of(node, dialect, ("type",), what="an action")
        node = required(node, found, "type", dialect, "Allow")
    text = string_of(node, "Allow or Deny")
    if text.lower() == "allow":
        return ALLOW
    if text.lower() == "deny":
        return DENY
    raise node.error(f"action {text!r} is not Allow or Deny", "write Allow or Deny")


# --- rules, collections --------------------------------------------------------------------

_UNSUPPORTED_APPLICATION_FIELDS = {
    "target_urls": "target URLs need TLS inspection (Premium), which the harness does not simulate",
    "web_categories": "web categories are Premium and not simulated",
    "terminate_tls": "TLS inspection (Premium) is not simulated",
    "destination_addresses": "application rules with destination addresses are not simulated",
    "http_headers_to_insert": "HTTP header insertion needs TLS inspection and is not simulated",
}
_APPLICATION_FIELDS = (
    "rule_type", "name", "description", "source_addresses", "protocols", "target_fqdns",
    "fqdn_tags", *_UNSUPPORTED_APPLICATION_FIELDS,
)  # fmt: skip
_NETWORK_FIELDS = (
    "rule_type", "name", "description", "ip_protocols", "source_addresses",
    "destination_addresses", "destination_fqdns", "destination_ports",
)  # fmt: skip
_RULE_TYPES = {"applicationrule": APPLICATION_RULE, "networkrule": NETWORK_RULE}


def _is_empty(value: Any) -> bool:
    return value in (None, False, "", [], {})


def _sources(node: Node, found: dict[str, Node], context: Context) -> tuple[str, ...]:
    dialect = context.dialect
    sources = (
        addresses_of(found["source_addresses"], service_tags=False)
        if ("source_addresses" in found)
        else []
    )
    if "source_ip_groups" in found and context.ip_groups is not None:
        for item in _list(found["source_ip_groups"], "IP group ids"):
            sources.extend(context.ip_groups(item))
    if dialect is YAML and "source_addresses" not in found:
        return ("*",)
    if not sources:
        where = found.get("source_addresses", node)
        raise where.error(
            "the rule has no source addresses",
            f'add {dialect.key("source_addresses")}: ["*"] or the sources to allow',
        )
    return tuple(sources)


def _rule_type(node: Node, context: Context) -> str:
    dialect = context.dialect
    if not isinstance(node.value, dict):
        raise node.error(
            f"a rule must be a mapping, not {_kind(node.value)}",
            "write the rule's keys (rule_type, name, ...) under the dash",
        )
    key = dialect.key("rule_type")
    for written, child in node.items():
        if (
            isinstance(written, str)
            and written.lower() == key.lower()
            and (dialect.camel or written == key)
        ):
            text = string_of(child, "ApplicationRule or NetworkRule")
            rule_type = _RULE_TYPES.get(text.lower())
            if rule_type is None:
                fix = "DNAT rules are not simulated" if text.lower() == "natrule" else ""
                raise child.error(f"{key} {text!r} is not ApplicationRule or NetworkRule", fix)
            return rule_type
    raise node.error(
        f"missing required key {key!r}", f"add {key}: ApplicationRule (or NetworkRule)"
    )


def rule_of(node: Node, context: Context, rule_type: str | None = None) -> Rule:
    """One rule; `rule_type` is given for classic rules, which do not say it themselves."""
    dialect = context.dialect
    if rule_type is None:
        rule_type = _rule_type(node, context)
        names: tuple[str, ...] = ()
    else:
        names = ("rule_type",)  # classic rules have no ruleType key
    ip_group_fields = ("source_ip_groups",) if context.ip_groups else ()
    if rule_type == APPLICATION_RULE:
        allowed = tuple(n for n in _APPLICATION_FIELDS if n not in names) + ip_group_fields
        found = fields_of(node, dialect, allowed, what="an application rule")
        name = string_of(required(node, found, "name", dialect, "name: allow-cdn"), "a name")
        for unsupported, why in _UNSUPPORTED_APPLICATION_FIELDS.items():
            if unsupported in found and not _is_empty(found[unsupported].value):
                raise found[unsupported].error(why, "remove it, or test it in Azure")
        protocols_node = required(node, found, "protocols", dialect, '["Https:443"]')
        protocols = tuple(_protocol(item, context) for item in _list(protocols_node, "protocols"))
        if not protocols:
            raise protocols_node.error("the rule has no protocols", 'add e.g. "Https:443"')
        fqdns = _fqdn_patterns(found["target_fqdns"]) if "target_fqdns" in found else []
        tags = _fqdn_tag_refs(found["fqdn_tags"], context) if "fqdn_tags" in found else []
        if not fqdns and not tags:
            raise node.error(
                "an application rule needs target_fqdns or fqdn_tags",
                f'add {dialect.key("target_fqdns")}: ["host.example"]',
            )
        return ApplicationRule(
            name=name,
            source_addresses=_sources(node, found, context),
            protocols=protocols,
            target_fqdns=tuple(fqdns),
            fqdn_tags=tuple(tags),
            description=_description(found),
        )
    if context.ip_groups:
        ip_group_fields += ("destination_ip_groups",)
    allowed = tuple(n for n in _NETWORK_FIELDS if n not in names) + ip_group_fields
    found = fields_of(node, dialect, allowed, what="a network rule")
    name = string_of(required(node, found, "name", dialect, "name: allow-ntp"), "a name")
    protocols_node = required(node, found, "ip_protocols", dialect, "[TCP]")
    ip_protocols = _ip_protocols(protocols_node)
    if not ip_protocols:
        raise protocols_node.error("the rule has no IP protocols", "add TCP, UDP, ICMP or Any")
    destinations = (
        addresses_of(found["destination_addresses"], service_tags=True)
        if "destination_addresses" in found
        else []
    )
    if "destination_ip_groups" in found and context.ip_groups is not None:
        for item in _list(found["destination_ip_groups"], "IP group ids"):
            destinations.extend(context.ip_groups(item))
    fqdns = _exact_fqdns(found["destination_fqdns"]) if "destination_fqdns" in found else []
    if not destinations and not fqdns:
        raise node.error(
            "a network rule needs destination addresses or destination FQDNs",
            f'add {dialect.key("destination_addresses")}: ["*"] or'
            f' {dialect.key("destination_fqdns")}: ["host.example"]',
        )
    ports_node = required(node, found, "destination_ports", dialect, '["443"]')
    ports = _ports(ports_node)
    if not ports:
        raise ports_node.error("the rule has no destination ports", 'add e.g. "443" or "*"')
    return NetworkRule(
        name=name,
        ip_protocols=tuple(ip_protocols),  # type: ignore[arg-type]
        source_addresses=_sources(node, found, context),
        destination_addresses=tuple(destinations),
        destination_fqdns=tuple(fqdns),
        destination_ports=tuple(ports),
        description=_description(found),
    )


def _description(found: dict[str, Node]) -> str:
    if "description" not in found:
        return ""
    return string_of(found["description"], "a description") if found["description"].value else ""


def rules_of(node: Node | None, context: Context, rule_type: str | None = None) -> tuple[Rule, ...]:
    """A collection's rules: one rule type, unique names."""
    if node is None:
        return ()
    items = _list(node, "rules")
    rules = [rule_of(item, context, rule_type) for item in items]
    for item, rule in zip(items, rules, strict=True):
        if rule.rule_type != rules[0].rule_type:
            raise item.error(
                f"the collection mixes {rules[0].rule_type} and {rule.rule_type} rules (Azure"
                " takes one rule type per collection)",
                f"move the {rule.rule_type} rules into a collection of their own",
            )
    check_unique(
        [
            (item, rule.name, f"rule {index}")
            for index, (item, rule) in enumerate(zip(items, rules))
        ],
        "rule name",
        "give each rule in a collection its own name",
    )
    return tuple(rules)


_COLLECTION_FIELDS = ("name", "priority", "action", "rules", "rule_collection_type")
FILTER_COLLECTION = "FirewallPolicyFilterRuleCollection"
NAT_COLLECTION = "FirewallPolicyNatRuleCollection"


def collection_of(node: Node, context: Context) -> tuple[RuleCollection, Node] | None:
    """A filter collection and its priority node; None for a DNAT collection in ARM, which the
    harness does not simulate (inbound translation has no egress effect)."""
    dialect = context.dialect
    found = fields_of(node, dialect, _COLLECTION_FIELDS, what="a rule collection")
    if "rule_collection_type" in found:
        kind_node = found["rule_collection_type"]
        kind = string_of(kind_node, FILTER_COLLECTION)
        if kind.lower() == NAT_COLLECTION.lower() and dialect is not YAML:
            return None
        if kind.lower() != FILTER_COLLECTION.lower():
            raise kind_node.error(
                f"rule collection type {kind!r} is not {FILTER_COLLECTION}",
                "DNAT collections are not simulated; remove it",
            )
    name = string_of(required(node, found, "name", dialect, "name: allow-build"), "a name")
    priority_node = required(node, found, "priority", dialect, "priority: 100")
    priority = priority_of(priority_node)
    action = action_of(required(node, found, "action", dialect, "action: Allow"), dialect)
    rules = rules_of(found.get("rules"), context)
    return RuleCollection(name, priority, action, rules), priority_node


def collections_of(
    node: Node | None,
    context: Context,
    parse: Callable[[Node, Context], tuple[RuleCollection, Node] | None] = collection_of,
) -> tuple[RuleCollection, ...]:
    """A group's collections: unique priorities and names."""
    if node is None:
        return ()
    parsed = []
    for item in _list(node, "rule collections"):
        result = parse(item, context)
        if result is not None:
            parsed.append((item, *result))
    check_unique(
        [(p, c.priority, f"collection {c.name!r}") for _, c, p in parsed],
        "collection priority",
        "give each collection in a group its own priority",
    )
    check_unique(
        [(item, c.name, f"collection {i}") for i, (item, c, _) in enumerate(parsed)],
        "collection name",
        "give each collection in a group its own name",
    )
    return tuple(collection for _, collection, _ in parsed)


def check_groups(entries: Sequence[tuple[Node, Node, RuleCollectionGroup]]) -> None:
    """(group node, priority node, group): priorities and names unique in the policy."""
    check_unique(
        [(p, g.priority, f"group {g.name!r}") for _, p, g in entries],
        "group priority",
        "give each rule collection group its own priority",
    )
    check_unique(
        [(node, g.name, f"group {i}") for i, (node, _, g) in enumerate(entries)],
        "group name",
        "give each rule collection group its own name",
    )


# --- the YAML form -------------------------------------------------------------------------


def _yaml_group(node: Node, context: Context) -> tuple[Node, RuleCollectionGroup]:
    found = fields_of(
        node, YAML, ("name", "priority", "rule_collections"), what="a rule collection group"
    )
    name = string_of(required(node, found, "name", YAML, f"name: {DEFAULT_APPLICATION_GROUP}"))
    priority_node = required(node, found, "priority", YAML, "priority: 300")
    priority = priority_of(priority_node)
    collections = collections_of(found.get("rule_collections"), context)
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


def _shorthand_group(hosts: Sequence[str], name: str, priority: int) -> RuleCollectionGroup:
    rule = ApplicationRule(
        name="allow", source_addresses=("*",), protocols=_SHORTHAND_PROTOCOLS,
        target_fqdns=tuple(hosts),
    )  # fmt: skip
    return RuleCollectionGroup(name, priority, (RuleCollection("allow", 100, ALLOW, (rule,)),))


def _yaml_policy(root: Node, default_name: str) -> Policy:
    found = fields_of(
        root, YAML, ("name", "rule_collection_groups", "fqdn_tags", "allow"), what="a policy"
    )
    if "rule_collection_groups" not in found and "allow" not in found:
        raise root.error(
            "a policy needs `rule_collection_groups:` (or the `allow:` shorthand)",
            'add e.g. allow: ["host.example"], or rule_collection_groups: [] to deny everything',
        )
    name = string_of(found["name"], "a policy name") if "name" in found else default_name
    tags = _own_fqdn_tags(found.get("fqdn_tags"))
    context = Context(YAML, fqdn_tags=frozenset(tag.lower() for tag, _ in tags))
    entries: list[tuple[Node, Node, RuleCollectionGroup]] = []
    if "rule_collection_groups" in found:
        for item in _list(found["rule_collection_groups"], "rule collection groups"):
            priority_node, group = _yaml_group(item, context)
            entries.append((item, priority_node, group))
    if "allow" in found:
        hosts = _fqdn_patterns(found["allow"])
        if hosts:
            group = _shorthand_group(hosts, DEFAULT_APPLICATION_GROUP, 300)
            entries.append((found["allow"], found["allow"], group))
    check_groups(entries)
    return Policy(name, tuple(group for _, _, group in entries), tags)


# --- entry points --------------------------------------------------------------------------


def policy_from_document(document: Document, default_name: str) -> Policy:
    return policy_from_node(document.root, default_name)


def policy_from_node(root: Node, default_name: str) -> Policy:
    """Any accepted form (module docstring), told apart by its keys."""
    from harness.policy import arm  # arm builds on this module's checks

    value = root.value
    if value is None:
        raise root.error("the policy is empty", 'write e.g. allow: ["host.example"]')
    if isinstance(value, list) and not all(isinstance(item, dict) for item in value):
        raise root.error(
            "the top level is a list, not a mapping (a list is read only as az output of rule"
            " collection groups)",
            'write e.g. allow: ["host.example"], or rule_collection_groups: [...]',
        )
    if isinstance(value, list) or (isinstance(value, dict) and arm.looks_like_arm(value)):
        return within_rule_limit(arm.policy_from_arm(root, default_name), root)
    if not isinstance(value, dict):
        raise root.error(
            f"a policy must be a mapping, not {_kind(value)}", 'write e.g. allow: ["host.example"]'
        )
    return within_rule_limit(_yaml_policy(root, default_name), root)


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


def load_policy(path: str | Path) -> Policy:
    """A policy file in any accepted form; named by its `name:` (ARM: the firewallPolicies
    resource) or else the file's stem."""
    document = load_document(path)
    return policy_from_document(document, Path(path).stem)


def policy_from_mapping(
    data: Any, source_path: str | Path, key_prefix: str = "firewall.policy",
    default_name: str | None = None,
) -> Policy:  # fmt: skip
    """An inline policy inside another file (a scenario's `firewall.policy`). Locations come from
    the marks `harness.yamlio` put on `data`; key paths start with `key_prefix`."""
    start = data.start if isinstance(data, MarkedDict | MarkedList) else None
    root = Node(data, str(source_path), (), start, key_prefix)
    return policy_from_node(root, default_name or Path(source_path).stem)


def _allow_hosts(hosts: Sequence[str]) -> tuple[str, ...]:
    checked = []
    for host in hosts:
        problem = pattern_problem(host) if isinstance(host, str) else f"{host!r} is not a name"
        if problem:
            raise InputError(
                problem,
                key_path="--allow",
                fix="write a name, *.name (subdomains), *name (suffix) or * (everything)",
            )
        checked.append(host.strip())
    return tuple(checked)


def allow_policy(hosts: Sequence[str], name: str = "allow") -> Policy:
    """The `allow:` shorthand from the command line: Http:80 and Https:443 to `hosts`."""
    checked = _allow_hosts(hosts)
    if not checked:
        return Policy(name)
    return Policy(name, (_shorthand_group(checked, DEFAULT_APPLICATION_GROUP, 300),))


def merge_allow(policy: Policy, hosts: Sequence[str]) -> Policy:
    """`policy` plus a group allowing `hosts` (`egress run --allow`).

    The group comes last (priority 65000, or the highest free one below), so the policy's own
    Deny collections still win over it, as they would in Azure for a rule added at the end.
    """
    checked = _allow_hosts(hosts)
    if not checked:
        return policy
    used = {group.priority for group in policy.rule_collection_groups}
    priority = next(p for p in range(PRIORITY_MAX, PRIORITY_MIN - 1, -1) if p not in used)
    names = {group.name.lower() for group in policy.rule_collection_groups}
    name, suffix = ALLOW_GROUP_NAME, 1
    while name.lower() in names:
        suffix += 1
        name = f"{ALLOW_GROUP_NAME}{suffix}"
    group = _shorthand_group(checked, name, priority)
    return replace(policy, rule_collection_groups=(*policy.rule_collection_groups, group))
