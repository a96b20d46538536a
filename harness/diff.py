"""`egress diff POLICY RECORDING`: how a policy fits what a recording saw, and what in the
policy can never match. Pure: events in, a report out.

Every recorded connection (kinds tls, http, tcp, udp) is decided again with
`harness.policy.decide.Decider` against POLICY, so the answer is about this policy even when
the recording was made behind another one (an audit run, an older version). For a recording
made behind POLICY itself the decisions are the recorded `would`.

- Missing: the connections POLICY denies, each with the smallest rule that allows it: an
  application rule (`Https:<port>` / `Http:<port>` to the exact host) for HTTPS and HTTP, a
  network rule (the protocol, the name the recording's DNS gave the address, else the
  destination IP, and the port) for raw TCP/UDP and for HTTPS without SNI
  (`harness.policy.suggest.rule_allowing`). Sources are `*`: the recording's sources are
  the sandbox's, not Azure's (`egress export --source-addresses` sets the real ones). When a Deny
  rule (not the default action) denied it, `denied_by` names that rule: the Allow rule must come
  before it.
- Unused: rules no recorded connection matched first.
- Shadowed: rules an earlier rule of the same pass always matches first (Azure's order:
  network rules, then application rules; groups, collections by priority; rules as written).
  An application rule is shadowed when each of its (protocol, FQDN pattern) pairs is covered by
  an earlier rule with that protocol, a pattern matching every name the pair's pattern matches,
  and sources containing its sources. A network rule is shadowed by one earlier rule whose
  protocols, sources, destinations and ports contain its own. Different actions (a Deny never
  applying because an Allow comes first, or the reverse) are the interesting case: `conflict`.
- Unreachable: a network rule for TCP (or Any) to every destination (`*`, 0.0.0.0/0) on port
  443, 80 or `*` decides every HTTPS / HTTP request before the application pass, so the
  application rules' `Https:443` / `Http:80` (any port it covers) never match.

The CLI exits 1 when rules are missing (`DiffReport.exit_code`), 0 otherwise.
"""

from __future__ import annotations

__all__ = [
    "DiffReport",
    "MissingRule",
    "ShadowedRule",
    "UnreachableApplicationRules",
    "UnusedRule",
    "diff_policy",
    "render_diff",
]

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.policy.decide import Decider
from harness.policy.fqdn import normalize
from harness.policy.model import (
    ALLOW,
    ApplicationRule,
    NetworkRule,
    Policy,
    Protocol,
    Rule,
    RuleCollection,
    RuleCollectionGroup,
    RuleRef,
)
from harness.policy.suggest import dns_names, request_from_event, rule_allowing

MISSING_GROUP = "EgressHarnessMissing"

# --- report --------------------------------------------------------------------------------


def _label(ref: RuleRef) -> str:
    return f"{ref.group} / {ref.collection} / {ref.rule}"


@dataclass(frozen=True)
class MissingRule:
    """Recorded connections to one destination that the policy denies."""

    protocol: str  # HTTPS | HTTP | TCP | UDP
    destination: str  # host:port, or ip:port
    connections: int
    suggestion: Rule
    denied_by: RuleRef | None = None  # a Deny rule; None for the default action

    def as_dict(self) -> dict[str, Any]:
        from harness.export.yaml_form import policy_to_mapping

        rule = policy_to_mapping(_single_rule_policy(self.suggestion))
        return {
            "protocol": self.protocol,
            "destination": self.destination,
            "connections": self.connections,
            "denied_by": self.denied_by.as_dict() if self.denied_by else None,
            "suggestion": rule["rule_collection_groups"][0]["rule_collections"][0]["rules"][0],
        }


@dataclass(frozen=True)
class UnusedRule:
    rule: RuleRef
    rule_type: str
    action: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.as_dict(), "rule_type": self.rule_type, "action": self.action}


@dataclass(frozen=True)
class ShadowedRule:
    rule: RuleRef
    rule_type: str
    action: str
    by: tuple[tuple[RuleRef, str], ...]  # the earlier rules and their actions

    @property
    def conflict(self) -> bool:
        """An earlier rule with the other action decides instead (a Deny that never denies)."""
        return any(action != self.action for _, action in self.by)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.as_dict(),
            "rule_type": self.rule_type,
            "action": self.action,
            "conflict": self.conflict,
            "by": [{"rule": ref.as_dict(), "action": action} for ref, action in self.by],
        }


@dataclass(frozen=True)
class UnreachableApplicationRules:
    """A network rule that decides HTTP/HTTPS requests before any application rule."""

    network_rule: RuleRef
    action: str
    # (application rule, its protocols the network rule takes), in precedence order.
    application_rules: tuple[tuple[RuleRef, tuple[str, ...]], ...]
    # Application rules with every protocol taken: they can never match.
    fully: tuple[RuleRef, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "network_rule": self.network_rule.as_dict(),
            "action": self.action,
            "application_rules": [
                {
                    "rule": ref.as_dict(),
                    "protocols": list(protocols),
                    "never_matches": ref in self.fully,
                }
                for ref, protocols in self.application_rules
            ],
        }


@dataclass
class DiffReport:
    policy: str
    connections: int
    missing: list[MissingRule] = field(default_factory=list)
    unused: list[UnusedRule] = field(default_factory=list)
    shadowed: list[ShadowedRule] = field(default_factory=list)
    unreachable: list[UnreachableApplicationRules] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """For `egress diff`: 1 when rules are missing, else 0."""
        return 1 if self.missing else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "connections": self.connections,
            "missing": [item.as_dict() for item in self.missing],
            "unused": [item.as_dict() for item in self.unused],
            "shadowed": [item.as_dict() for item in self.shadowed],
            "unreachable": [item.as_dict() for item in self.unreachable],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def suggested_policy(self, name: str | None = None) -> Policy:
        """The missing rules as a policy of their own (one group, an application and a network
        collection), to export or merge."""
        application = tuple(m.suggestion for m in self.missing
                            if isinstance(m.suggestion, ApplicationRule))  # fmt: skip
        network = tuple(m.suggestion for m in self.missing if isinstance(m.suggestion, NetworkRule))
        collections = []
        if network:
            collections.append(RuleCollection("missing-network", 100, ALLOW, _unique(network)))
        if application:
            collections.append(
                RuleCollection("missing-application", 200, ALLOW, _unique(application))
            )
        groups = (
            (RuleCollectionGroup(MISSING_GROUP, 300, tuple(collections)),) if collections else ()
        )
        return Policy(name or f"{self.policy}-missing", groups)


def _unique(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    """One rule per name: the suggestions for one host over several ports merge."""
    merged: dict[str, Rule] = {}
    for rule in rules:
        known = merged.get(rule.name)
        if known is None:
            merged[rule.name] = rule
        elif isinstance(known, ApplicationRule) and isinstance(rule, ApplicationRule):
            protocols = known.protocols + tuple(
                p for p in rule.protocols if p not in known.protocols
            )
            merged[rule.name] = ApplicationRule(known.name, known.source_addresses, protocols,
                                                known.target_fqdns)  # fmt: skip
        elif isinstance(known, NetworkRule) and isinstance(rule, NetworkRule):
            merged[rule.name] = NetworkRule(
                known.name,
                tuple(dict.fromkeys(known.ip_protocols + rule.ip_protocols)),
                known.source_addresses,
                known.destination_addresses,
                known.destination_fqdns,
                tuple(dict.fromkeys(known.destination_ports + rule.destination_ports)),
            )
    return tuple(merged.values())


def _single_rule_policy(rule: Rule) -> Policy:
    return Policy(
        "p", (RuleCollectionGroup("g", 100, (RuleCollection("c", 100, ALLOW, (rule,)),)),)
    )


# --- events to requests: harness.policy.suggest (shared with allowlist and the diagnosis) ------


# --- precedence and coverage ---------------------------------------------------------------


@dataclass(frozen=True)
class _Placed:
    ref: RuleRef
    action: str
    rule: Rule


def _in_precedence(policy: Policy) -> tuple[list[_Placed], list[_Placed]]:
    """(network rules, application rules), each in the order Azure tries them."""
    network: list[_Placed] = []
    application: list[_Placed] = []
    for group in sorted(policy.rule_collection_groups, key=lambda g: g.priority):
        for collection in sorted(group.rule_collections, key=lambda c: c.priority):
            for rule in collection.rules:
                placed = _Placed(
                    RuleRef(policy.name, group.name, collection.name, rule.name),
                    collection.action,
                    rule,
                )
                (network if isinstance(rule, NetworkRule) else application).append(placed)
    return network, application


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_EVERYWHERE_V4 = ipaddress.ip_network("0.0.0.0/0")


def _networks(spec: str) -> list[Network] | None:
    """An address spec as networks; None when it is no address (a service tag)."""
    text = spec.strip()
    try:
        if "-" in text:
            low, _, high = text.partition("-")
            first, last = ipaddress.ip_address(low.strip()), ipaddress.ip_address(high.strip())
            return list(ipaddress.summarize_address_range(first, last))  # type: ignore[arg-type]
        return [ipaddress.ip_network(text, strict=False)]
    except (ValueError, TypeError):
        return None


def _addresses_cover(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    """Every address `inner` matches, `outer` matches too."""
    if any(spec.strip() == "*" for spec in outer):
        return True
    outer_networks = [n for spec in outer for n in (_networks(spec) or [])]
    outer_names = {spec.strip().lower() for spec in outer if _networks(spec) is None}
    for spec in inner:
        if spec.strip() == "*":
            return False
        networks = _networks(spec)
        if networks is None:
            if spec.strip().lower() not in outer_names:
                return False
            continue
        for network in networks:
            if not any(
                network.version == candidate.version and network.subnet_of(candidate)  # type: ignore[arg-type]
                for candidate in outer_networks
            ):
                return False
    return True


def _pattern_covers(outer: str, inner: str) -> bool:
    """Every name FQDN pattern `inner` matches, `outer` matches too (harness.policy.fqdn)."""
    outer, inner = normalize(outer), normalize(inner)
    if outer == "*":
        return True
    if inner == "*":
        return False
    if not outer.startswith("*"):
        return outer == inner
    if outer.startswith("*."):
        key = outer[2:]
        if inner.startswith("*."):
            return inner[2:] == key or inner[2:].endswith("." + key)
        if inner.startswith("*"):
            return inner[1:].endswith("." + key)
        return inner.endswith("." + key)
    key = outer[1:]  # `*x`: a plain suffix
    if inner.startswith("*."):
        return ("." + inner[2:]).endswith(key)
    return inner.lstrip("*").endswith(key)


def _transports(protocols: tuple[str, ...]) -> set[str]:
    found: set[str] = set()
    for protocol in protocols:
        found |= {"TCP", "UDP", "ICMP"} if protocol.upper() == "ANY" else {protocol.upper()}
    return found


def _port_ranges(ports: tuple[str, ...]) -> list[tuple[int, int]]:
    ranges = []
    for port in ports:
        text = port.strip()
        if text == "*":
            ranges.append((0, 65535))
            continue
        low, _, high = text.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            ranges.append((int(low), int(high or low)))
    return ranges


def _ports_cover(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    outer_ranges = _port_ranges(outer)
    return all(
        any(first <= low and high <= last for first, last in outer_ranges)
        for low, high in _port_ranges(inner)
    )


def _network_covers(outer: NetworkRule, inner: NetworkRule) -> bool:
    if not _transports(inner.ip_protocols) <= _transports(outer.ip_protocols):
        return False
    if not _addresses_cover(outer.source_addresses, inner.source_addresses):
        return False
    if inner.destination_addresses and not _addresses_cover(
        outer.destination_addresses, inner.destination_addresses
    ):
        return False
    if inner.destination_fqdns and not any(a.strip() == "*" for a in outer.destination_addresses):
        names = {normalize(name) for name in outer.destination_fqdns}
        if not all(normalize(name) in names for name in inner.destination_fqdns):
            return False
    if _transports(inner.ip_protocols) == {"ICMP"}:
        return True  # ICMP has no ports
    return _ports_cover(outer.destination_ports, inner.destination_ports)


def _patterns(rule: ApplicationRule, policy: Policy) -> list[str]:
    patterns = list(rule.target_fqdns)
    for tag in rule.fqdn_tags:
        patterns.extend(policy.fqdn_tag(tag) or ())
    return patterns


def _protocol_key(protocol: Protocol) -> tuple[str, int]:
    return protocol.protocol_type.lower(), protocol.port


def _shadowed(
    policy: Policy, network: list[_Placed], application: list[_Placed]
) -> list[ShadowedRule]:
    found = []
    for index, placed in enumerate(network):
        rule = placed.rule
        assert isinstance(rule, NetworkRule)
        for earlier in network[:index]:
            assert isinstance(earlier.rule, NetworkRule)
            if _network_covers(earlier.rule, rule):
                found.append(ShadowedRule(placed.ref, rule.rule_type, placed.action,
                                          ((earlier.ref, earlier.action),)))  # fmt: skip
                break
    for index, placed in enumerate(application):
        rule = placed.rule
        assert isinstance(rule, ApplicationRule)
        pairs = [
            (_protocol_key(p), pattern)
            for p in rule.protocols
            for pattern in _patterns(rule, policy)
        ]
        if not pairs:
            continue
        by: list[tuple[RuleRef, str]] = []
        for protocol, pattern in pairs:
            cover = next(
                (
                    earlier
                    for earlier in application[:index]
                    if isinstance(earlier.rule, ApplicationRule)
                    and protocol in {_protocol_key(p) for p in earlier.rule.protocols}
                    and _addresses_cover(earlier.rule.source_addresses, rule.source_addresses)
                    and any(_pattern_covers(o, pattern) for o in _patterns(earlier.rule, policy))
                ),
                None,
            )
            if cover is None:
                break
            if (cover.ref, cover.action) not in by:
                by.append((cover.ref, cover.action))
        else:
            found.append(ShadowedRule(placed.ref, rule.rule_type, placed.action, tuple(by)))
    return found


def _takes_all_tcp(rule: NetworkRule) -> bool:
    """The rule matches TCP to every destination: it decides HTTP/HTTPS before the
    application pass for the ports it lists."""
    if "TCP" not in _transports(rule.ip_protocols):
        return False
    return any(
        spec.strip() == "*" or _networks(spec) == [_EVERYWHERE_V4]
        for spec in rule.destination_addresses
    )


def _unreachable(
    network: list[_Placed], application: list[_Placed]
) -> list[UnreachableApplicationRules]:
    taken_by: dict[RuleRef, list[tuple[RuleRef, list[str]]]] = {}
    actions: dict[RuleRef, str] = {}
    fully: dict[RuleRef, list[RuleRef]] = {}
    takers = [n for n in network if isinstance(n.rule, NetworkRule) and _takes_all_tcp(n.rule)]
    for placed in application:
        rule = placed.rule
        assert isinstance(rule, ApplicationRule)
        taken_protocols: dict[RuleRef, list[str]] = {}
        for protocol in rule.protocols:
            if protocol.protocol_type not in ("Http", "Https"):
                continue
            taker = next(
                (
                    n
                    for n in takers
                    if isinstance(n.rule, NetworkRule)
                    and _ports_cover(n.rule.destination_ports, (str(protocol.port),))
                    and _addresses_cover(n.rule.source_addresses, rule.source_addresses)
                ),
                None,
            )
            if taker is not None:
                taken_protocols.setdefault(taker.ref, []).append(str(protocol))
                actions[taker.ref] = taker.action
        for ref, protocols in taken_protocols.items():
            taken_by.setdefault(ref, []).append((placed.ref, protocols))
        if sum(len(p) for p in taken_protocols.values()) == len(rule.protocols):
            for ref in taken_protocols:
                fully.setdefault(ref, []).append(placed.ref)
    return [
        UnreachableApplicationRules(
            ref, actions[ref], tuple((a, tuple(p)) for a, p in rules), tuple(fully.get(ref, ()))
        )
        for ref, rules in taken_by.items()
    ]


# --- the diff ------------------------------------------------------------------------------


def diff_policy(policy: Policy, events: Iterable[Any]) -> DiffReport:
    """The report for `policy` against recorded events (`harness.events.Event`, or mappings
    with the same fields). The recording's DNS answers give each address its names, so a network
    rule with `destination_fqdns` matches as it did live (`harness.policy.suggest`)."""
    events = list(events)
    names = dns_names(events)
    decider = Decider(policy, "enforce")
    used: set[RuleRef] = set()
    missing: dict[tuple[str, str, str | None], list[Any]] = {}
    connections = 0
    for event in events:
        request = request_from_event(event, names)
        if request is None:
            continue
        connections += 1
        decision = decider.decide(request)
        if decision.rule is not None:
            used.add(decision.rule)
        if decision.would == ALLOW:
            continue
        destination, suggestion = rule_allowing(request)
        denied_by = decision.rule
        key = (request.protocol, destination, denied_by.rule if denied_by else None)
        entry = missing.setdefault(key, [request.protocol, destination, 0, suggestion, denied_by])
        entry[2] += 1
    network, application = _in_precedence(policy)
    unused = [
        UnusedRule(placed.ref, placed.rule.rule_type, placed.action)
        for placed in network + application
        if placed.ref not in used
    ]
    return DiffReport(
        policy=policy.name,
        connections=connections,
        missing=[MissingRule(*entry) for entry in missing.values()],
        unused=unused,
        shadowed=_shadowed(policy, network, application),
        unreachable=_unreachable(network, application),
    )


# --- text ----------------------------------------------------------------------------------


def _describe(rule: Rule) -> str:
    if isinstance(rule, ApplicationRule):
        protocols = ", ".join(str(p) for p in rule.protocols)
        return f"ApplicationRule {rule.name}: {protocols} to {', '.join(rule.target_fqdns)}"
    destinations = ", ".join(rule.destination_addresses + rule.destination_fqdns)
    return (
        f"NetworkRule {rule.name}: {'/'.join(rule.ip_protocols)} to {destinations}"
        f" port {', '.join(rule.destination_ports)}"
    )


def render_diff(report: DiffReport) -> str:
    """Plain text for `egress diff`: one section per finding, `none` when empty."""
    lines = [f"Policy {report.policy} against {report.connections} recorded connection(s)", ""]

    def section(title: str, count: int, items: list[str]) -> None:
        lines.append(f"{title} ({count})")
        lines.extend(items or ["  none"])
        lines.append("")

    missing = []
    for item in report.missing:
        why = f"denied by {_label(item.denied_by)}" if item.denied_by else "default action"
        missing.append(f"  {item.protocol} {item.destination}: denied {item.connections}x ({why})")
        missing.append(f"    add {_describe(item.suggestion)}")
        if item.denied_by:
            missing.append("    (in a collection processed before the Deny rule)")
    section("Missing rules: the recording needs them, the policy denies", len(report.missing),
            missing)  # fmt: skip
    section(
        "Unused rules: no recorded connection matched them",
        len(report.unused),
        [f"  {_label(u.rule)} ({u.rule_type}, {u.action})" for u in report.unused],
    )
    shadowed = []
    for item in report.shadowed:
        by = "; ".join(f"{_label(ref)} ({action})" for ref, action in item.by)
        mark = " CONFLICT" if item.conflict else ""
        shadowed.append(f"  {_label(item.rule)} ({item.action}) never matches:{mark}"
                        f" {by} matches first")  # fmt: skip
    section("Shadowed rules: an earlier rule always matches first", len(report.shadowed), shadowed)
    unreachable = []
    for item in report.unreachable:
        unreachable.append(
            f"  network rule {_label(item.network_rule)} ({item.action}, TCP to every destination)"
            " decides before the application pass:"
        )
        for ref, protocols in item.application_rules:
            never = " (never matches)" if ref in item.fully else ""
            unreachable.append(f"    {_label(ref)}: {', '.join(protocols)}{never}")
    section("Application rules a network rule makes unreachable", len(report.unreachable),
            unreachable)  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"
