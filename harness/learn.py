"""Learn the minimal allowlist a scenario needs, and prove it.

1. An audit run (everything allowed, every destination recorded) gives the candidates: each
   HTTP/HTTPS host with the ports it was reached on (`candidates`).
2. A verify run in enforce mode behind only those candidates proves them sufficient.
3. With `classify`, one run per candidate with that candidate denied marks it `required` (the
   run fails), `optional` (it still succeeds; the time difference is kept) or `flaky` (two tries
   disagree); the required-only allowlist is then verified again.

The policy written out is headed by the command that made it and carries `# via` evidence per
FQDN. Everything but `learn()` is pure.
"""

from __future__ import annotations

__all__ = ["Candidate", "LearnResult", "candidates", "learn", "learned_policy", "render_allowlist"]

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from harness.events import Event
from harness.execute import Execution, RunOverrides, SandboxRun, execute
from harness.export.yaml_form import policy_to_yaml
from harness.policy.model import (
    ALLOW,
    ApplicationRule,
    NetworkRule,
    Policy,
    Protocol,
    RuleCollection,
    RuleCollectionGroup,
)
from harness.scenario import Scenario

LEARNED_GROUP = "EgressHarnessLearned"
LEARNED_GROUP_PRIORITY = 300
Classification = Literal["required", "optional", "flaky"]


@dataclass
class Candidate:
    """A destination the workload reached in the audit run."""

    host: str
    protocols: set[tuple[str, int]] = field(default_factory=set)  # ("Https", 443)
    first_seen: str = ""
    connections: int = 0
    bytes_total: int = 0
    network: bool = False  # reached without a name (raw TCP/UDP): needs a network rule
    classification: Classification | None = None
    seconds_without: float | None = None  # the run's duration with this host denied

    def protocol_texts(self) -> list[str]:
        return [f"{kind}:{port}" for kind, port in sorted(self.protocols)]


def candidates(events: Iterable[Event]) -> list[Candidate]:
    """What an audit run reached, in order of first appearance. HTTP/HTTPS by name; anything
    else by address and port (a network rule)."""
    found: dict[str, Candidate] = {}
    for event in events:
        if event.kind in ("tls", "http") and event.host:
            key = event.host.lower().rstrip(".")
            kind = "Https" if event.kind == "tls" else "Http"
        elif event.kind in ("tcp", "udp") and event.dst:
            key = event.dst.rsplit(":", 1)[0]
            kind = event.kind.upper()
        else:
            continue
        candidate = found.get(key)
        if candidate is None:
            candidate = found[key] = Candidate(
                key, first_seen=event.ts, network=kind in ("TCP", "UDP")
            )
        candidate.protocols.add((kind, event.port or 0))
        candidate.connections += 1
        candidate.bytes_total += (event.bytes_up or 0) + (event.bytes_down or 0)
        candidate.first_seen = min(candidate.first_seen, event.ts)
    # Events are written when connections close; order by when each was first decided.
    return sorted(found.values(), key=lambda candidate: candidate.first_seen)


def learned_policy(
    name: str, found: Iterable[Candidate], source_addresses: tuple[str, ...] = ("*",)
) -> Policy:
    """One Allow application rule per host (its own protocols) and one network rule per
    address, in one group, so each line of evidence stays next to its rule."""
    application: list[ApplicationRule] = []
    network: list[NetworkRule] = []
    for candidate in found:
        if candidate.network:
            network.append(NetworkRule(
                name=_rule_name(candidate.host),
                ip_protocols=tuple(sorted({kind for kind, _ in candidate.protocols})),  # type: ignore[arg-type]
                source_addresses=source_addresses,
                destination_addresses=(candidate.host,),
                destination_ports=tuple(sorted({str(port) for _, port in candidate.protocols})),
            ))  # fmt: skip
        else:
            application.append(ApplicationRule(
                name=_rule_name(candidate.host),
                source_addresses=source_addresses,
                protocols=tuple(Protocol(kind, port) for kind, port in sorted(candidate.protocols)),  # type: ignore[arg-type]
                target_fqdns=(candidate.host,),
            ))  # fmt: skip
    collections = []
    if network:
        collections.append(RuleCollection("learned-network", 100, ALLOW, tuple(network)))
    if application:
        collections.append(RuleCollection("learned-application", 200, ALLOW, tuple(application)))
    groups = (
        (RuleCollectionGroup(LEARNED_GROUP, LEARNED_GROUP_PRIORITY, tuple(collections)),)
        if collections
        else ()
    )
    return Policy(name, groups)


def _rule_name(host: str) -> str:
    return "allow-" + "".join(c if c.isalnum() or c in "-." else "-" for c in host)[:70]


def render_allowlist(policy: Policy, found: Iterable[Candidate], *, command: str, scenario: str,
                     verified: bool | None) -> str:  # fmt: skip
    """The policy YAML with a header naming the command and a `# via` line per destination."""
    status = {True: "verified: the workload succeeded behind it",
              False: "NOT verified: the workload failed behind it", None: "not verified"}[verified]  # fmt: skip
    header = f"Generated by: {command}\nScenario: {scenario}\n{status}"
    text = policy_to_yaml(policy, header=header)
    evidence = []
    for candidate in found:
        parts = [f"scenario {scenario}", f"first seen {candidate.first_seen}",
                 f"{candidate.connections} connection(s)", f"{candidate.bytes_total} bytes"]  # fmt: skip
        if candidate.classification:
            parts.append(candidate.classification)
        evidence.append((candidate.host, ", ".join(parts)))
    lines = []
    for line in text.splitlines():
        lines.append(line)
        for host, via in evidence:
            if line.strip() in (f"target_fqdns: [{host}]", f"destination_addresses: ['{host}']",
                                f"destination_addresses: [{host}]"):  # fmt: skip
                indent = len(line) - len(line.lstrip())
                lines.append(" " * indent + f"# via {via}")
    return "\n".join(lines) + "\n"


@dataclass
class LearnResult:
    scenario: Scenario
    audit: Execution
    candidates: list[Candidate]
    policy: Policy
    verify: Execution | None
    runs: int
    classify_runs: list[Execution] = field(default_factory=list)
    required_verify: Execution | None = None

    @property
    def verified(self) -> bool:
        final = self.required_verify or self.verify
        return final is not None and final.succeeded


def learn(
    scenario: Scenario,
    sandbox_run: SandboxRun,
    *,
    classify: bool = False,
    parallel: int = 2,
    on_step: Callable[[str], None] = lambda _: None,
    on_event: Callable[[Event], None] | None = None,
) -> LearnResult:
    on_step(f"audit run of {scenario.name}: everything allowed, every destination recorded")
    audit = execute(
        scenario,
        sandbox_run,
        RunOverrides(policy=Policy(f"{scenario.name}-audit"), mode="audit"),
        run_suffix="audit",
        on_event=on_event,
    )
    found = candidates(audit.events)
    policy = learned_policy(f"{scenario.name}-learned", found)
    on_step(f"verify run: enforce, behind the {len(found)} learned destination(s)")
    verify = execute(
        scenario, sandbox_run, RunOverrides(policy=policy, mode="enforce"), run_suffix="verify"
    )
    result = LearnResult(scenario, audit, found, policy, verify, runs=2)
    if not classify or not found:
        return result

    def without(candidate: Candidate, attempt: int) -> Execution:
        others = [other for other in found if other is not candidate]
        reduced = learned_policy(f"{scenario.name}-without-{candidate.host}", others)
        return execute(scenario, sandbox_run, RunOverrides(policy=reduced, mode="enforce"),
                       run_suffix=f"without-{candidate.host}-{attempt}")  # fmt: skip

    on_step(f"classify: {len(found)} run(s) with one destination denied each, {parallel} at a time")
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        first = list(pool.map(lambda c: without(c, 1), found))
        # A second try only where the first says "optional": a run that still succeeded without
        # a host is the surprising answer, and the one a retry or cache could fake.
        second_for = [c for c, run in zip(found, first, strict=True) if run.succeeded]
        second = dict(
            zip(
                [c.host for c in second_for],
                pool.map(lambda c: without(c, 2), second_for),
                strict=True,
            )
        )
    result.classify_runs = first + list(second.values())
    result.runs += len(result.classify_runs)
    for candidate, run in zip(found, first, strict=True):
        candidate.seconds_without = run.duration_s
        if not run.succeeded:
            candidate.classification = "required"
        elif second[candidate.host].succeeded:
            candidate.classification = "optional"
        else:
            candidate.classification = "flaky"
    required = [c for c in found if c.classification in ("required", "flaky")]
    result.policy = learned_policy(f"{scenario.name}-learned", required)
    on_step(f"verify run: enforce, behind the {len(required)} required destination(s)")
    result.required_verify = execute(scenario, sandbox_run, RunOverrides(policy=result.policy, mode="enforce"),
                                     run_suffix="verify-required")  # fmt: skip
    result.runs += 1
    return result
