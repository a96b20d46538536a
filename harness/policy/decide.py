"""The decision engine: one Request in, one Decision out. Pure: no I/O, no clock, no state
that changes between calls (besides a cache of parsed IP addresses).

Precedence (Azure Firewall's rule processing, azure-firewall.md), each clause tested once in
tests/unit/policy/test_decide.py:

1. Default deny. Rules are terminating: the first rule that matches decides, with its
   collection's action (Allow or Deny), reason `Reason.RULE_MATCHED`, its RuleRef and rule type.
   Nothing matched: Deny with `Reason.DEFAULT_DENY`.
2. Two passes, whatever the priorities: first network rules over ALL groups, then application
   rules over ALL groups. Within a pass: groups by priority ascending, then the group's
   collections by priority ascending, then rules in their written order (ties keep the
   written order). A network rule allowing TCP 443 to `*` therefore beats every application
   rule, also for HTTP and HTTPS requests.
3. A network rule matches when all hold:
   - `ip_protocols` holds the request's transport (HTTP, HTTPS and TCP are TCP; UDP; ICMP)
     or `Any`;
   - a source address matches `src_ip` (`*`, an IP, a CIDR or a range `a-b`; IPv4 and IPv6);
   - a destination address matches `dst_ip` (`*`, an IP, a CIDR or a range; `*` matches even
     when the IP is unknown), OR a `destination_fqdns` name equals one of `dst_names` or
     `host` (case and trailing dot ignored). A service tag (`AzureCloud`, `Storage.WestEurope`,
     ...) matches the prefixes `Policy.service_tags` gives it (`--service-tags FILE`, Microsoft's
     published JSON), and nothing without them;
   - a destination port matches `dst_port` (`"443"`, `"1000-2000"`, `"*"`); ICMP ignores ports.
4. Application rules apply only to HTTP and HTTPS requests. A rule matches when all hold:
   - one of its protocols is `Http:<dst_port>` for HTTP or `Https:<dst_port>` for HTTPS;
   - a source address matches `src_ip` (as for network rules);
   - `host` matches one of its `target_fqdns` or a pattern of one of its `fqdn_tags` (the
     policy's own tags, `Policy.fqdn_tag`; an unknown tag matches nothing), with the FQDN
     wildcard rules of `harness.policy.fqdn`.
5. A request without a host: HTTPS is denied with `Reason.SNI_MISSING` (no rule); HTTP gets the
   default deny. Both only after the network pass, where a network rule can still allow them.
6. Audit mode: the action is always Allow; `would`, `reason`, `rule` and `rule_type` are what
   enforce mode decides. Except for the two clauses below, which deny in both modes.
7. Before any rule: an HTTP request whose Host header names a port other than the connection's
   (`host_port`) is denied with `Reason.HOST_PORT_MISMATCH` (Azure drops it; no rule is asked,
   so not even a network rule allows it).
8. After the rules: a request the rules allow (in audit mode, every request) whose destination
   is the gateway itself (`to_gateway`) is denied with `Reason.GATEWAY_ITSELF`: the gateway
   dials with its own unfiltered identity, so no mode lets a workload reach its listeners. A
   rule's own deny keeps its reason and rule. (The gateway asks again, with the same Request
   and `to_gateway` set, when an allowed name turns out to resolve to itself as it dials.)

Unparseable addresses and ports in a policy match nothing (the loader rejects them first).

The order (`in_precedence`) and the compiled matchers (`AddressSet`, `port_ranges`,
`network_transports`, `application_key`, `application_patterns`) are public so that
`harness.policy.coverage` (which rule shadows which, for `egress diff`) reasons with the very
same ones: one precedence order, one reading of a rule.
"""

from __future__ import annotations

__all__ = [
    "AddressSet",
    "Decider",
    "Mode",
    "PlacedRule",
    "application_key",
    "application_patterns",
    "in_precedence",
    "network_transports",
    "port_ranges",
]

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from harness.firewall_settings import MODES, Mode
from harness.policy.fqdn import FqdnIndex, normalize
from harness.policy.model import (
    ALLOW,
    APPLICATION_RULE,
    DENY,
    NETWORK_RULE,
    Action,
    ApplicationRule,
    Decision,
    NetworkRule,
    Policy,
    Protocol,
    Reason,
    Request,
    Rule,
    RuleRef,
    RuleType,
)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_TRANSPORT = {"HTTP": "TCP", "HTTPS": "TCP", "TCP": "TCP", "UDP": "UDP", "ICMP": "ICMP"}
_APPLICATION_PROTOCOL = {"HTTP": "Http", "HTTPS": "Https"}


@lru_cache(maxsize=4096)
def _parse_ip(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d; rules name them as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class AddressSet:
    """Precompiled `source_addresses` / `destination_addresses`: IPs, CIDRs, ranges, `*`.

    `names` keeps the specs that are no address and got no prefixes (a service tag the policy's
    table lacks): they match nothing here, and coverage compares them by name."""

    __slots__ = ("any", "names", "networks", "ranges")

    def __init__(
        self,
        specs: tuple[str, ...],
        service_tags: Callable[[str], tuple[str, ...] | None] | None = None,
    ) -> None:
        self.any = False
        self.names: list[str] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.ranges: list[tuple[IpAddress, IpAddress]] = []
        for spec in specs:
            text = spec.strip()
            if text == "*":
                self.any = True
            elif "-" in text:
                low, _, high = text.partition("-")
                first, last = _parse_ip(low), _parse_ip(high)
                if first is not None and last is not None and first.version == last.version:
                    self.ranges.append((first, last))
            else:
                try:
                    self.networks.append(ipaddress.ip_network(text, strict=False))
                except ValueError:
                    prefixes = service_tags(text) if service_tags is not None else None
                    if not prefixes:
                        self.names.append(text.lower())
                    for prefix in prefixes or ():  # else matches nothing (module docstring)
                        try:
                            self.networks.append(ipaddress.ip_network(prefix, strict=False))
                        except ValueError:
                            continue

    def contains(self, text: str | None) -> bool:
        if self.any:
            return True
        if text is None:
            return False
        address = _parse_ip(text)
        if address is None:
            return False
        for network in self.networks:
            if address in network:  # False, not an error, across IP versions
                return True
        for first, last in self.ranges:
            if address.version == first.version and first <= address <= last:
                return True
        return False


def _source_matcher(specs: tuple[str, ...]) -> AddressSet | None:
    """None stands for `*` so the hot path skips the call."""
    addresses = AddressSet(specs)
    return None if addresses.any else addresses


def port_ranges(specs: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """`destination_ports` as inclusive (first, last) ranges; `*` is 0-65535."""
    ranges: list[tuple[int, int]] = []
    for spec in specs:
        text = spec.strip()
        if text == "*":
            ranges.append((0, 65535))
            continue
        low, _, high = text.partition("-")
        try:
            first = int(low)
            last = int(high) if high else first
        except ValueError:
            continue  # matches nothing (module docstring)
        ranges.append((first, last))
    return tuple(ranges)


def network_transports(rule: NetworkRule) -> frozenset[str]:
    """The transports (TCP, UDP, ICMP) whose requests a network rule is tried on."""
    protocols = {protocol.upper() for protocol in rule.ip_protocols}
    if "ANY" in protocols:
        return frozenset(("TCP", "UDP", "ICMP"))
    return frozenset(protocols & {"TCP", "UDP", "ICMP"})


def application_key(protocol: Protocol) -> tuple[str, int]:
    """The (protocol type, port) an application rule's protocol is indexed under."""
    return protocol.protocol_type.capitalize(), protocol.port


def application_patterns(rule: ApplicationRule, policy: Policy) -> list[str]:
    """An application rule's FQDN patterns: its targets, then its FQDN tags' patterns (the
    policy's own tags; an unknown tag adds none)."""
    patterns = list(rule.target_fqdns)
    for tag in rule.fqdn_tags:
        patterns.extend(policy.fqdn_tag(tag) or ())
    return patterns


@dataclass(frozen=True, slots=True)
class PlacedRule:
    """A rule where the policy puts it: its reference and its collection's action."""

    ref: RuleRef
    action: Action
    rule: Rule


def in_precedence(policy: Policy) -> tuple[list[PlacedRule], list[PlacedRule]]:
    """(network rules, application rules), each in the order the Decider tries them (clause 2):
    groups by priority, then collections by priority, then rules as written."""
    network: list[PlacedRule] = []
    application: list[PlacedRule] = []
    for group in sorted(policy.rule_collection_groups, key=lambda group: group.priority):
        for collection in sorted(group.rule_collections, key=lambda coll: coll.priority):
            for rule in collection.rules:
                placed = PlacedRule(
                    RuleRef(policy.name, group.name, collection.name, rule.name),
                    collection.action,
                    rule,
                )
                if isinstance(rule, NetworkRule):
                    network.append(placed)
                elif isinstance(rule, ApplicationRule):
                    application.append(placed)
    return network, application


@dataclass(frozen=True, slots=True)
class _CompiledNetworkRule:
    source: AddressSet | None
    destination: AddressSet
    destination_fqdns: frozenset[str]
    ports: tuple[tuple[int, int], ...]
    decision: Decision

    def matches(self, request: Request, transport: str) -> bool:
        if self.source is not None and not self.source.contains(request.src_ip):
            return False
        if transport != "ICMP":
            port = request.dst_port
            for first, last in self.ports:
                if first <= port <= last:
                    break
            else:
                return False
        if self.destination.contains(request.dst_ip):
            return True
        if self.destination_fqdns:
            if request.host is not None and normalize(request.host) in self.destination_fqdns:
                return True
            return any(normalize(name) in self.destination_fqdns for name in request.dst_names)
        return False


# An application index entry: (source matcher or None for `*`, the decision of the rule).
_ApplicationEntry = tuple[AddressSet | None, Decision]


class Decider:
    """Decides requests against one policy; see the module docstring for the precedence."""

    def __init__(self, policy: Policy, mode: Mode = "enforce") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be 'enforce' or 'audit', not {mode!r}")
        self.policy = policy
        self.mode: Mode = mode
        self._default = self._decision(DENY, Reason.DEFAULT_DENY, None, None)
        self._sni_missing = self._decision(DENY, Reason.SNI_MISSING, None, None)
        self._host_port_mismatch = Decision(DENY, DENY, Reason.HOST_PORT_MISMATCH)  # both modes
        self._gateway_itself = Decision(DENY, DENY, Reason.GATEWAY_ITSELF)  # both modes
        self._network: dict[str, list[_CompiledNetworkRule]] = {"TCP": [], "UDP": [], "ICMP": []}
        # (protocol type, port) -> host patterns -> entries, added in precedence order.
        self._application: dict[tuple[str, int], FqdnIndex[_ApplicationEntry]] = {}
        self._compile(policy)

    def _decision(
        self, action: Action, reason: str, rule: RuleRef | None, rule_type: RuleType | None
    ) -> Decision:
        shown = ALLOW if self.mode == "audit" else action
        return Decision(shown, action, reason, rule, rule_type)

    def _compile(self, policy: Policy) -> None:
        network, application = in_precedence(policy)
        for placed in network:
            assert isinstance(placed.rule, NetworkRule)
            decision = self._decision(placed.action, Reason.RULE_MATCHED, placed.ref, NETWORK_RULE)
            self._add_network_rule(placed.rule, decision)
        for placed in application:
            assert isinstance(placed.rule, ApplicationRule)
            decision = self._decision(
                placed.action, Reason.RULE_MATCHED, placed.ref, APPLICATION_RULE
            )
            self._add_application_rule(placed.rule, decision)

    def _add_network_rule(self, rule: NetworkRule, decision: Decision) -> None:
        compiled = _CompiledNetworkRule(
            source=_source_matcher(rule.source_addresses),
            destination=AddressSet(rule.destination_addresses, self.policy.service_tag),
            destination_fqdns=frozenset(normalize(name) for name in rule.destination_fqdns),
            ports=port_ranges(rule.destination_ports),
            decision=decision,
        )
        transports = network_transports(rule)
        for transport, rules in self._network.items():
            if transport in transports:
                rules.append(compiled)

    def _add_application_rule(self, rule: ApplicationRule, decision: Decision) -> None:
        patterns = application_patterns(rule, self.policy)
        entry: _ApplicationEntry = (_source_matcher(rule.source_addresses), decision)
        for protocol in rule.protocols:
            # Mssql never matches: the gateway sees only HTTP and HTTPS requests.
            key = application_key(protocol)
            index = self._application.get(key)
            if index is None:
                index = self._application[key] = FqdnIndex()
            for pattern in patterns:
                index.add(pattern, entry)

    def decide(self, request: Request) -> Decision:
        """The decision for `request` (module docstring). Never raises for a Request."""
        if (
            request.host_port is not None and request.protocol == "HTTP"
            and request.host_port != request.dst_port
        ):  # fmt: skip
            return self._host_port_mismatch
        decision = self._by_rules(request)
        if request.to_gateway and decision.allowed:
            return self._gateway_itself
        return decision

    def _by_rules(self, request: Request) -> Decision:
        transport = _TRANSPORT.get(request.protocol)
        if transport is None:
            return self._default
        for rule in self._network[transport]:
            if rule.matches(request, transport):
                return rule.decision
        protocol_type = _APPLICATION_PROTOCOL.get(request.protocol)
        if protocol_type is None:
            return self._default
        host = normalize(request.host) if request.host is not None else ""
        if not host:
            return self._sni_missing if protocol_type == "Https" else self._default
        index = self._application.get((protocol_type, request.dst_port))
        if index is None:
            return self._default
        for source, decision in index.matching_normalized(host):
            if source is None or source.contains(request.src_ip):
                return decision
        return self._default
