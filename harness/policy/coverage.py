"""Which rules of a policy can never decide a request, reasoned with the Decider's own
precedence order and compiled matchers (`harness.policy.decide`), so `egress diff` and the
Decider cannot disagree about which rule comes first or what a rule matches. Pure.

    Coverage(policy).shadowed()    -> rules an earlier rule of the same pass always matches first
    Coverage(policy).preempted()   -> application rules' protocols a network rule takes first
    Coverage(policy).covers(a, b)  -> every request rule b matches, rule a matches too

What "contains" means, per matcher:
- Addresses: `*` contains everything; otherwise every address, CIDR and range of the inner
  set lies within the union of the outer set's (IPv4 and IPv6 apart). A service tag stands for
  the prefixes the policy's table gives it; one without prefixes (the Decider matches nothing
  with it, Azure does) is contained only by the same tag.
- Ports: every inner range within the union of the outer ranges; ICMP has no ports.
- FQDN patterns: `harness.policy.fqdn.pattern_covers`.

Shadowed: a network rule is shadowed by one earlier network rule whose transports, sources,
destinations (addresses; names, unless the earlier rule takes every address) and ports contain
its own. An application rule is shadowed when each of its (protocol, FQDN pattern) pairs is
covered by an earlier application rule with that protocol, a pattern that covers the pair's
pattern, and sources containing its sources; `by` lists those earlier rules, first cover of each
pair, once each.

Preempted: a network rule for TCP to every IPv4 destination (`*`, 0.0.0.0/0) decides every
HTTP and HTTPS request on the ports it lists before the application pass (clause 2), so an
application rule's `Http:<port>` / `Https:<port>` there never matches when the network rule's
sources contain the application rule's. Each such protocol is credited to the first such
network rule in precedence order. The premise is Azure's: the firewall filters IPv4, and
every connection has an address (a request to an IPv6 address, or a recorded one without
an address, is not taken by 0.0.0.0/0).
"""

from __future__ import annotations

__all__ = ["Coverage", "Preemption", "Shadowing", "addresses_contain", "ports_contain"]

from dataclasses import dataclass

from harness.policy.decide import (
    AddressSet,
    PlacedRule,
    application_key,
    application_patterns,
    in_precedence,
    network_transports,
    port_ranges,
)
from harness.policy.fqdn import normalize, pattern_covers
from harness.policy.model import ApplicationRule, NetworkRule, Policy, Protocol

Interval = tuple[int, int]
_EVERY_IPV4 = AddressSet(("0.0.0.0/0",))


@dataclass(frozen=True)
class Shadowing:
    """`rule` never decides a request: the earlier rules `by` always match first."""

    rule: PlacedRule
    by: tuple[PlacedRule, ...]


@dataclass(frozen=True)
class Preemption:
    """A network rule that decides HTTP/HTTPS requests before any application rule."""

    network_rule: PlacedRule
    # (application rule, its protocols the network rule takes), in precedence order.
    application_rules: tuple[tuple[PlacedRule, tuple[Protocol, ...]], ...]
    # The application rules with every protocol taken: they can never match.
    fully: tuple[PlacedRule, ...] = ()


def _merged(intervals: list[Interval]) -> list[Interval]:
    """Inclusive integer intervals, sorted, with overlapping and adjacent ones joined."""
    merged: list[Interval] = []
    for first, last in sorted(intervals):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _within(inner: list[Interval], outer: list[Interval]) -> bool:
    """Every inner interval lies within one interval of `outer` (merged)."""
    return all(any(o_first <= first and last <= o_last for o_first, o_last in outer)
               for first, last in inner)  # fmt: skip


def _address_intervals(addresses: AddressSet) -> dict[int, list[Interval]]:
    """IP version -> the addresses matched, as merged integer intervals."""
    found: dict[int, list[Interval]] = {}
    for network in addresses.networks:
        interval = (int(network.network_address), int(network.broadcast_address))
        found.setdefault(network.version, []).append(interval)
    for first, last in addresses.ranges:
        found.setdefault(first.version, []).append((int(first), int(last)))
    return {version: _merged(intervals) for version, intervals in found.items()}


def addresses_contain(outer: AddressSet, inner: AddressSet) -> bool:
    """Every address `inner` matches, `outer` matches too (module docstring)."""
    if outer.any:
        return True
    if inner.any or not set(inner.names) <= set(outer.names):
        return False
    outer_intervals = _address_intervals(outer)
    return all(
        _within(intervals, outer_intervals.get(version, []))
        for version, intervals in _address_intervals(inner).items()
    )


def ports_contain(outer: tuple[Interval, ...], inner: tuple[Interval, ...]) -> bool:
    return _within(list(inner), _merged(list(outer)))


@dataclass(frozen=True)
class _Network:
    """A network rule compiled with the Decider's matchers."""

    placed: PlacedRule
    transports: frozenset[str]
    sources: AddressSet
    destinations: AddressSet
    names: frozenset[str]
    ports: tuple[Interval, ...]

    def covers(self, inner: _Network) -> bool:
        if not inner.transports <= self.transports:
            return False
        if not addresses_contain(self.sources, inner.sources):
            return False
        if not addresses_contain(self.destinations, inner.destinations):
            return False
        if inner.names and not self.destinations.any and not inner.names <= self.names:
            return False
        return inner.transports == {"ICMP"} or ports_contain(self.ports, inner.ports)

    def takes_all_tcp(self) -> bool:
        """Matches TCP to every IPv4 destination: HTTP/HTTPS on its ports never reach the
        application pass."""
        return "TCP" in self.transports and addresses_contain(self.destinations, _EVERY_IPV4)


@dataclass(frozen=True)
class _Application:
    """An application rule compiled with the Decider's matchers."""

    placed: PlacedRule
    protocols: frozenset[tuple[str, int]]
    sources: AddressSet
    pairs: tuple[tuple[tuple[str, int], str], ...]  # (protocol key, FQDN pattern)
    patterns: tuple[str, ...]

    def covers_pair(self, inner: _Application, protocol: tuple[str, int], pattern: str) -> bool:
        return (
            protocol in self.protocols
            and addresses_contain(self.sources, inner.sources)
            and any(pattern_covers(outer, pattern) for outer in self.patterns)
        )


class Coverage:
    """One policy's rules compiled once, in the Decider's precedence order."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        network, application = in_precedence(policy)
        self.network = [self._network(placed) for placed in network]
        self.application = [self._application(placed) for placed in application]

    def _network(self, placed: PlacedRule) -> _Network:
        rule = placed.rule
        assert isinstance(rule, NetworkRule)
        return _Network(
            placed,
            network_transports(rule),
            AddressSet(rule.source_addresses),
            AddressSet(rule.destination_addresses, self.policy.service_tag),
            frozenset(normalize(name) for name in rule.destination_fqdns),
            port_ranges(rule.destination_ports),
        )

    def _application(self, placed: PlacedRule) -> _Application:
        rule = placed.rule
        assert isinstance(rule, ApplicationRule)
        patterns = tuple(application_patterns(rule, self.policy))
        return _Application(
            placed,
            frozenset(application_key(protocol) for protocol in rule.protocols),
            AddressSet(rule.source_addresses),
            tuple((application_key(p), pattern) for p in rule.protocols for pattern in patterns),
            patterns,
        )

    def covers(self, outer: PlacedRule, inner: PlacedRule) -> bool:
        """Every request `inner` matches, `outer` matches too (rules of one pass)."""
        if isinstance(outer.rule, NetworkRule) and isinstance(inner.rule, NetworkRule):
            return self._network(outer).covers(self._network(inner))
        if isinstance(outer.rule, ApplicationRule) and isinstance(inner.rule, ApplicationRule):
            compiled_outer, compiled_inner = self._application(outer), self._application(inner)
            return bool(compiled_inner.pairs) and all(
                compiled_outer.covers_pair(compiled_inner, protocol, pattern)
                for protocol, pattern in compiled_inner.pairs
            )
        return False

    def shadowed(self) -> list[Shadowing]:
        """Network rules, then application rules, each in precedence order (module docstring)."""
        found = []
        for index, rule in enumerate(self.network):
            earlier = next((e for e in self.network[:index] if e.covers(rule)), None)
            if earlier is not None:
                found.append(Shadowing(rule.placed, (earlier.placed,)))
        for index, rule in enumerate(self.application):
            by = self._application_covers(rule, self.application[:index])
            if by is not None:
                found.append(Shadowing(rule.placed, by))
        return found

    @staticmethod
    def _application_covers(
        rule: _Application, earlier: list[_Application]
    ) -> tuple[PlacedRule, ...] | None:
        """The earlier rules covering each of the rule's pairs, or None when one is uncovered."""
        if not rule.pairs:
            return None
        by: list[PlacedRule] = []
        for protocol, pattern in rule.pairs:
            cover = next((e for e in earlier if e.covers_pair(rule, protocol, pattern)), None)
            if cover is None:
                return None
            if cover.placed not in by:
                by.append(cover.placed)
        return tuple(by)

    def preempted(self) -> list[Preemption]:
        """Per network rule taking all TCP, the application protocols it takes (docstring)."""
        takers = [rule for rule in self.network if rule.takes_all_tcp()]
        taken_by: dict[PlacedRule, list[tuple[PlacedRule, tuple[Protocol, ...]]]] = {}
        fully: dict[PlacedRule, list[PlacedRule]] = {}
        for application in self.application:
            rule = application.placed.rule
            assert isinstance(rule, ApplicationRule)
            taken: dict[PlacedRule, list[Protocol]] = {}
            for protocol in rule.protocols:
                if protocol.protocol_type not in ("Http", "Https"):
                    continue
                port = ((protocol.port, protocol.port),)
                taker = next(
                    (
                        n for n in takers
                        if ports_contain(n.ports, port)
                        and addresses_contain(n.sources, application.sources)
                    ),
                    None,
                )  # fmt: skip
                if taker is not None:
                    taken.setdefault(taker.placed, []).append(protocol)
            for network_rule, protocols in taken.items():
                taken_by.setdefault(network_rule, []).append((application.placed, tuple(protocols)))
            if sum(len(protocols) for protocols in taken.values()) == len(rule.protocols):
                for network_rule in taken:
                    fully.setdefault(network_rule, []).append(application.placed)
        return [
            Preemption(network_rule, tuple(rules), tuple(fully.get(network_rule, ())))
            for network_rule, rules in taken_by.items()
        ]
