"""The checks every policy form shares: node types, priorities, names, addresses, ports,
protocols, FQDN patterns, rules and collections. `harness.policy.load` (the YAML form and the
entry points), `harness.policy.arm` (ARM and az output) and the Terraform reader build on it;
it imports none of them.

Every problem is an InputError `path:LINE:COL: key.path: problem; fix`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.errors import excerpt
from harness.policy.fqdn import exact_name_problem, pattern_problem
from harness.policy.model import (
    ALLOW,
    APPLICATION_RULE,
    DENY,
    NETWORK_RULE,
    Action,
    ApplicationRule,
    NetworkRule,
    Protocol,
    Rule,
    RuleCollection,
    RuleCollectionGroup,
)
from harness.yamlio import Node

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
    """What rule checks need besides the rule: the form, the FQDN tags the policy or the user
    defined (lower case; None: none can be), how IP group references resolve (None: not in this
    form), where warnings go (None: dropped) and the group and collection being read (named in
    warnings)."""

    dialect: Dialect
    fqdn_tags: frozenset[str] | None = None
    ip_groups: IpGroupResolver | None = None
    classic: bool = False
    warnings: list[str] | None = None
    group: str = ""
    collection: str = ""

    def warn(self, node: Node, message: str) -> None:
        if self.warnings is not None:
            self.warnings.append(f"{node.location}: {node.key_path}: {message}")


# Azure Firewall's Microsoft-managed FQDN tags (docs: firewall/fqdn-tags). Their FQDNs are
# unpublished: a rule naming one loads with a warning and matches only the FQDNs the user gives
# for it (`fqdn_tags:` in the policy, or `--fqdn-tags FILE`).
MANAGED_FQDN_TAGS = frozenset(
    tag.lower()
    for tag in (
        "AppServiceEnvironment", "AzureBackup", "AzureKubernetesService", "AzureMonitor",
        "AzureVirtualDesktop", "HDInsight", "MicrosoftActiveProtectionService", "MicrosoftIntune",
        "Office365.Exchange.Optimize", "Office365.Exchange.Allow.Required",
        "Office365.Exchange.Allow.NotRequired", "Office365.Skype.Optimize",
        "Office365.Skype.Allow.Required", "Office365.Skype.Allow.NotRequired",
        "Office365.SharePoint.Optimize", "Office365.SharePoint.Allow.Required",
        "Office365.SharePoint.Allow.NotRequired", "Office365.Common.Allow.Required",
        "Office365.Common.Allow.NotRequired", "Windows365", "WindowsDiagnostics",
        "WindowsUpdate", "WindowsVirtualDesktop", "CitrixHDXPlusForWindows365",
        "MicrosoftActiveProtectionService", "AzureArc", "AzureCognitiveSearch",
    )
)  # fmt: skip


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


_SPELLINGS: dict[tuple[int, tuple[str, ...]], tuple[dict[str, str], dict[str, str]]] = {}


def _spellings(dialect: Dialect, names: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """(written key -> field, lookup key -> field) for a dialect's fields, computed once: large
    templates check the same few field lists thousands of times."""
    cache_key = (id(dialect), names)
    cached = _SPELLINGS.get(cache_key)
    if cached is None:
        written = {dialect.key(name): name for name in names}
        lookup = {key.lower(): name for key, name in written.items()} if dialect.camel else written
        cached = _SPELLINGS[cache_key] = (written, lookup)
    return cached


def fields_of(node: Node, dialect: Dialect, names: Iterable[str], *, what: str) -> dict[str, Node]:
    """The mapping at `node` by canonical field name. Unknown keys are errors that suggest the
    near miss; null values count as absent; ARM keys match case-insensitively."""
    if not isinstance(node.value, dict):
        raise node.error(
            f"{what} must be a mapping, not {_kind(node.value)}",
            "write `key: value` pairs here (see formats.md)",
        )
    written, lookup = _spellings(dialect, tuple(names))
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


def is_service_tag(text: str) -> bool:
    """`AzureCloud`, `Storage.WestEurope`: a name where a network rule takes addresses."""
    return _ip_problem(text) is not None and bool(_SERVICE_TAG.match(text))


def addresses_of(node: Node, *, service_tags: bool) -> list[str]:
    values = []
    for item, text in _strings(node, "IP addresses"):
        problem = _ip_problem(text)
        if problem and service_tags and _SERVICE_TAG.match(text):
            problem = None  # kept as written; matched through Policy.service_tags
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


def _fqdn_tag_refs(node: Node, context: Context, rule: str = "") -> list[str]:
    values = []
    for item, tag in _strings(node, "FQDN tag names"):
        known = context.fqdn_tags or frozenset()
        if tag.lower() in known and tag.lower() in MANAGED_FQDN_TAGS:
            context.warn(
                item,
                f"FQDN tag {tag!r} is Microsoft-managed: it matches only the FQDNs given for it"
                " here, not the ones Azure puts in it",
            )
        if tag.lower() not in known:
            managed = tag.lower() in MANAGED_FQDN_TAGS
            if not managed and context.dialect.name == "yaml":
                raise item.error(
                    f"FQDN tag {tag!r} is not defined under `fqdn_tags:` and is not a"
                    " Microsoft-managed tag",
                    f'define it at the top level: fqdn_tags: {{{tag}: ["host.example"]}}',
                )
            where = "/".join(part for part in (context.group, context.collection, rule) if part)
            kind = "Microsoft-managed" if managed else "not defined here"
            context.warn(
                item,
                f"FQDN tag {tag!r} ({kind}) in rule {where}: its FQDNs are unpublished, so it"
                " matches nothing here; give the FQDNs you expect it to cover with"
                f" --fqdn-tags FILE or fqdn_tags: {{{tag}: [...]}}",
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
        tags = _fqdn_tag_refs(found["fqdn_tags"], context, name) if "fqdn_tags" in found else []
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
            _nat_collection(node, context)
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
    rules = rules_of(found.get("rules"), replace(context, collection=name))
    return RuleCollection(name, priority, action, rules), priority_node


_NAT_RULE_FIELDS = (
    "rule_type", "name", "description", "ip_protocols", "source_addresses", "source_ip_groups",
    "destination_addresses", "destination_ports", "translated_address", "translated_fqdn",
    "translated_port",
)  # fmt: skip


def _nat_collection(node: Node, context: Context) -> None:
    """A DNAT collection is checked like Azure checks it, then reported, never simulated: it
    translates inbound connections and decides no egress."""
    dialect = context.dialect
    found = fields_of(node, dialect, _COLLECTION_FIELDS, what="a DNAT rule collection")
    name = string_of(required(node, found, "name", dialect, '"name": "inbound"'), "a name")
    priority_of(required(node, found, "priority", dialect, '"priority": 100'))
    action_node = required(node, found, "action", dialect, '{"type": "DNAT"}')
    if isinstance(action_node.value, dict):
        action_found = fields_of(action_node, dialect, ("type",), what="an action")
        action_node = required(action_node, action_found, "type", dialect, "DNAT")
    if string_of(action_node, "DNAT").lower() != "dnat":
        raise action_node.error(
            f"a DNAT collection's action is DNAT, not {action_node.value!r}", "write DNAT"
        )
    rules = _list(found["rules"], "rules") if "rules" in found else []
    for rule in rules:
        rule_found = fields_of(rule, dialect, _NAT_RULE_FIELDS, what="a NAT rule")
        type_node = required(rule, rule_found, "rule_type", dialect, "NatRule")
        if string_of(type_node, "NatRule").lower() != "natrule":
            raise type_node.error(
                f"a DNAT collection holds NatRule rules, not {type_node.value!r}",
                "move the rule into a filter collection",
            )
        string_of(required(rule, rule_found, "name", dialect, '"name": "ssh-in"'), "a name")
        _ip_protocols(required(rule, rule_found, "ip_protocols", dialect, '["TCP"]'))
        if "source_addresses" in rule_found:
            addresses_of(rule_found["source_addresses"], service_tags=False)
        if "destination_addresses" in rule_found:
            addresses_of(rule_found["destination_addresses"], service_tags=False)
        _ports(required(rule, rule_found, "destination_ports", dialect, '["443"]'))
        if "translated_port" in rule_found:
            port = rule_found["translated_port"]
            text = str(port.value)
            if not text.isdigit() or not 1 <= int(text) <= 65535:
                raise port.error(f"translated port {port.value!r} is not a port 1..65535")
        if "translated_address" not in rule_found and "translated_fqdn" not in rule_found:
            raise rule.error(
                "a NAT rule needs translatedAddress or translatedFqdn", "name the inside target"
            )
        if "translated_address" in rule_found:
            text = string_of(rule_found["translated_address"], "an IP address")
            if _ip_problem(text) or text == "*":
                raise rule_found["translated_address"].error(f"{text!r} is not an IP address")
    where = f"group {context.group}, " if context.group else ""
    context.warn(
        node,
        f"DNAT rule collection {name!r} ({where}{len(rules)} rule(s)): inbound, not simulated",
    )


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
