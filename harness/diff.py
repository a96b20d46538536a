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
- Shadowed: rules an earlier rule of the same pass always matches first, in the Decider's
  order (`harness.policy.coverage`, which says what "covers" means per matcher). Different
  actions (a Deny never applying because an Allow comes first, or the reverse) are the
  interesting case: `conflict`.
- Unreachable: a network rule for TCP (or Any) to every destination (`*`, 0.0.0.0/0) on port
  443, 80 or `*` decides every HTTPS / HTTP request before the application pass, so the
  application rules' `Https:443` / `Http:80` (any port it covers) never match
  (`harness.policy.coverage`'s preempted rules).

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

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.policy.coverage import Coverage
from harness.policy.decide import Decider, in_precedence
from harness.policy.model import (
    ALLOW,
    ApplicationRule,
    NetworkRule,
    Policy,
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


# --- shadowed and unreachable: harness.policy.coverage, in the Decider's own terms -----------


def _shadowed(coverage: Coverage) -> list[ShadowedRule]:
    found = []
    for shadowing in coverage.shadowed():
        placed = shadowing.rule
        by = tuple((earlier.ref, earlier.action) for earlier in shadowing.by)
        found.append(ShadowedRule(placed.ref, placed.rule.rule_type, placed.action, by))
    return found


def _unreachable(coverage: Coverage) -> list[UnreachableApplicationRules]:
    found = []
    for preemption in coverage.preempted():
        taken = tuple(
            (placed.ref, tuple(str(protocol) for protocol in protocols))
            for placed, protocols in preemption.application_rules
        )
        fully = tuple(placed.ref for placed in preemption.fully)
        network_rule = preemption.network_rule
        found.append(
            UnreachableApplicationRules(network_rule.ref, network_rule.action, taken, fully)
        )
    return found


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
    network, application = in_precedence(policy)
    unused = [
        UnusedRule(placed.ref, placed.rule.rule_type, placed.action)
        for placed in network + application
        if placed.ref not in used
    ]
    coverage = Coverage(policy)
    return DiffReport(
        policy=policy.name,
        connections=connections,
        missing=[MissingRule(*entry) for entry in missing.values()],
        unused=unused,
        shadowed=_shadowed(coverage),
        unreachable=_unreachable(coverage),
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
