"""Allowlists: what recorded events show a workload reached, as a policy of Allow rules with
`# via` evidence per destination (`egress learn`, `egress allowlist`). Pure, except
`read_recording`, which reads a recording folder.

    candidates(events)                   -> a Candidate per destination, in order of first use
    merge_candidates([(source, found)])  -> one Candidate per destination over all sources:
                                            protocols united, counts added, evidence per source
    registrable_domain(host)             -> the domain one owner holds, or None
    wildcard_candidates(found)           -> hosts sharing a registrable domain as `*.domain`
    learned_policy(name, found)          -> the Allow rules, one per destination
    allowlist_name(scenario names)       -> the policy's name
    render_allowlist(policy, found, ...) -> the policy YAML, a header, `# via` lines
    read_recording(folder)               -> a recording's candidates and where they came from

Provenance: a source is named like `scenario NAME` (learn) or `scenario NAME, run FOLDER`
(allowlist); each merged destination keeps one Evidence per source that reached it, and the
written policy has one `# via` line per Evidence under the rule.

Wildcards (`--wildcards`): hosts are grouped by registrable domain as the Public Suffix List reads
it *with its private section* (`PublicSuffixList(only_icann=False)`): suffixes shared by many
owners (`blob.core.windows.net`, `azureedge.net`, `cloudfront.net`, `github.io`) count as public
suffixes, so `x.blob.core.windows.net` is a registrable domain of its own and hosts of different
owners under a shared suffix are never merged. A domain with two or more reached hosts strictly
below it becomes one `*.domain` entry with the protocols of all of them. The domain itself stays
an exact entry when it was reached (Azure's `*.x` does not match `x`). IP addresses, network
destinations and names with no registrable domain (a bare public suffix) stay exact.

One exception, `PLATFORM_WILDCARDS`: domains for which Microsoft's own guidance is a wildcard
rule. App Service's deployment engine (Kudu) calls its own site as `<site>.scm.azurewebsites.net`
and Microsoft documents `*.scm.azurewebsites.net` as the rule for it (every site and slot of the
app, which the exact name would miss on the next slot swap), so a single such host becomes the
wildcard too. It covers every app's SCM site, not only yours: the exact name is the narrower
choice, which `learn` without `--wildcards` gives.
"""

from __future__ import annotations

__all__ = [
    "PLATFORM_WILDCARDS",
    "Candidate",
    "Evidence",
    "RecordedRun",
    "allowlist_name",
    "candidates",
    "learned_policy",
    "merge_candidates",
    "read_recording",
    "registrable_domain",
    "render_allowlist",
    "wildcard_candidates",
]

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from publicsuffixlist import PublicSuffixList

from harness.events import NOT_REACHED, Event
from harness.export.yaml_form import policy_to_yaml
from harness.policy.fqdn import normalize
from harness.policy.model import (
    ALLOW,
    ApplicationRule,
    NetworkRule,
    Policy,
    Protocol,
    RuleCollection,
    RuleCollectionGroup,
)
from harness.policy.suggest import dns_names
from harness.runfolder import SUMMARY, read_run

LEARNED_GROUP = "EgressHarnessLearned"
LEARNED_GROUP_PRIORITY = 300
SUMMARY_FILE = SUMMARY
UNREACHABLE_NOTE = "unreachable from this machine: not verified"
Classification = Literal["required", "optional", "flaky"]


@dataclass(frozen=True)
class Evidence:
    """What one source (a scenario, a recorded run) saw of one host."""

    source: str  # "scenario NAME" or "scenario NAME, run FOLDER"; "" for the default source
    host: str
    first_seen: str
    connections: int
    bytes_total: int
    classification: Classification | None = None
    unreachable: bool = False  # tried, allowed, but this machine could not reach it

    def text(self, default_source: str = "") -> str:
        parts = [self.source or default_source, f"first seen {self.first_seen}",
                 f"{self.connections} connection(s)", f"{self.bytes_total} bytes"]  # fmt: skip
        if self.classification:
            parts.append(self.classification)
        if self.unreachable:
            parts.append(UNREACHABLE_NOTE)
        return ", ".join(part for part in parts if part)


@dataclass
class Candidate:
    """A destination the workload reached (in an audit run, or in several merged), or a
    `*.domain` entry standing for several of them (`covers`)."""

    host: str
    protocols: set[tuple[str, int]] = field(default_factory=set)  # ("Https", 443)
    first_seen: str = ""
    connections: int = 0
    bytes_total: int = 0
    network: bool = False  # reached without a name (raw TCP/UDP): needs a network rule
    classification: Classification | None = None
    seconds_without: float | None = None  # the run's duration with this host denied
    evidence: list[Evidence] = field(default_factory=list)  # per source; empty: one, unnamed
    covers: tuple[str, ...] = ()  # for `*.domain`: the hosts it stands for
    # Tried (the firewall saw the connection and allowed it) but unreachable from this machine,
    # so a verify run here cannot prove it: learned as needed, marked not verified.
    unreachable: bool = False

    def protocol_texts(self) -> list[str]:
        return [f"{kind}:{port}" for kind, port in sorted(self.protocols)]

    def evidence_or_own(self, source: str = "") -> list[Evidence]:
        """The evidence kept from merging, or this candidate's own counts from `source`."""
        if self.evidence:
            return list(self.evidence)
        return [Evidence(source, self.host, self.first_seen, self.connections,
                         self.bytes_total, self.classification, self.unreachable)]  # fmt: skip

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(item.source for item in self.evidence if item.source))


def candidates(events: Iterable[Event]) -> list[Candidate]:
    """What an audit run tried, in order of first appearance. HTTP/HTTPS by name; anything
    else by the name the recording's DNS answers gave its address (a network rule with
    `destination_fqdns`), else by address, and port. A destination whose upstream was
    unreachable from this machine is a candidate too, marked `unreachable`."""
    events = list(events)
    names = dns_names(events)
    found: dict[str, Candidate] = {}
    for event in events:
        if event.kind in ("tls", "http") and event.host:
            key = event.host.lower().rstrip(".")
            kind = "Https" if event.kind == "tls" else "Http"
            port = event.port or (443 if event.kind == "tls" else 80)
        elif event.kind in ("tcp", "udp") and event.dst:
            address, _, dst_port = event.dst.rpartition(":")
            address = address.strip("[]")
            known = names.get(address)
            key = min(known) if known else address
            kind = event.kind.upper()
            port = int(dst_port)  # Event.from_json checked it is IP:PORT
        else:
            continue
        if not 1 <= port <= 65535:
            continue  # no rule can name it
        candidate = found.get(key)
        if candidate is None:
            candidate = found[key] = Candidate(
                key, first_seen=event.ts, network=kind in ("TCP", "UDP")
            )
        candidate.protocols.add((kind, port))
        candidate.connections += 1
        candidate.bytes_total += (event.bytes_up or 0) + (event.bytes_down or 0)
        candidate.first_seen = min(candidate.first_seen, event.ts)
        if event.upstream in NOT_REACHED:
            candidate.unreachable = True
    # Events are written when connections close; order by when each was first decided.
    return sorted(found.values(), key=lambda candidate: candidate.first_seen)


# --- merging -------------------------------------------------------------------------------


def _merged_classification(
    values: Sequence[Classification | None],
) -> Classification | None:
    """Required anywhere wins, then flaky; optional only when every source says so."""
    for mark in ("required", "flaky"):
        if mark in values:
            return mark  # type: ignore[return-value]
    if values and all(value == "optional" for value in values):
        return "optional"
    return None


def _combine(host: str, parts: Sequence[Candidate], evidence: list[Evidence],
             covers: tuple[str, ...] = ()) -> Candidate:  # fmt: skip
    combined = Candidate(
        host,
        set().union(*(part.protocols for part in parts)),
        first_seen=min(part.first_seen for part in parts),
        connections=sum(part.connections for part in parts),
        bytes_total=sum(part.bytes_total for part in parts),
        network=parts[0].network,
        classification=_merged_classification([part.classification for part in parts]),
        seconds_without=parts[0].seconds_without if len(parts) == 1 else None,
        evidence=evidence,
        covers=covers,
        unreachable=any(part.unreachable for part in parts),
    )
    return combined


def merge_candidates(per_source: Iterable[tuple[str, Iterable[Candidate]]]) -> list[Candidate]:
    """One Candidate per destination over every source, in order of first appearance (the
    sources in the order given). Each keeps the Evidence of every source that reached it."""
    parts: dict[tuple[bool, str], list[Candidate]] = {}
    evidence: dict[tuple[bool, str], list[Evidence]] = {}
    for source, found in per_source:
        for candidate in found:
            key = (candidate.network, candidate.host)
            parts.setdefault(key, []).append(candidate)
            evidence.setdefault(key, []).extend(candidate.evidence_or_own(source))
    return [
        _combine(
            key[1], found, evidence[key], tuple(dict.fromkeys(h for c in found for h in c.covers))
        )
        for key, found in parts.items()
    ]


# --- wildcards -----------------------------------------------------------------------------


@cache
def _public_suffixes() -> PublicSuffixList:
    # only_icann=False: the PRIVATE section too (blob.core.windows.net, github.io, ...).
    return PublicSuffixList(only_icann=False)


# Registrable domains (as the PSL reads them) whose `*.domain` is the rule Microsoft documents,
# proposed by --wildcards even for a single host below them (module docstring).
PLATFORM_WILDCARDS = frozenset({"scm.azurewebsites.net"})


def registrable_domain(host: str) -> str | None:
    """The domain one owner registers under a public suffix (private suffixes included), or
    None for an IP address, a pattern, a one-label name or a public suffix itself."""
    name = normalize(host)
    if not name or "*" in name or "." not in name:
        return None
    try:
        ipaddress.ip_address(name.strip("[]"))
        return None
    except ValueError:
        pass
    return _public_suffixes().privatesuffix(name)


def _wildcard_domain(candidate: Candidate) -> str | None:
    """The domain whose `*.domain` would cover this candidate; None for an apex or no domain."""
    if candidate.network or candidate.covers:
        return None
    domain = registrable_domain(candidate.host)
    if domain is None or domain == normalize(candidate.host):
        return None
    return domain


def wildcard_candidates(found: Sequence[Candidate]) -> list[Candidate]:
    """`found` with the hosts of each registrable domain that has two or more of them below it
    replaced by one `*.domain` Candidate (at the place of the first), which `covers` them and
    keeps their evidence; everything else as it was (module docstring)."""
    members: dict[str, list[Candidate]] = {}
    for candidate in found:
        domain = _wildcard_domain(candidate)
        if domain is not None:
            members.setdefault(domain, []).append(candidate)
    folded = {
        domain: hosts
        for domain, hosts in members.items()
        if len(hosts) >= 2 or domain in PLATFORM_WILDCARDS
    }
    result: list[Candidate] = []
    for candidate in found:
        domain = _wildcard_domain(candidate)
        if domain not in folded:
            result.append(candidate)
            continue
        hosts = folded[domain]
        if candidate is hosts[0]:
            evidence = [item for host in hosts for item in host.evidence_or_own()]
            result.append(_combine(f"*.{domain}", hosts, evidence, tuple(h.host for h in hosts)))
    return result


# --- the policy ----------------------------------------------------------------------------


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _rule_name(host: str) -> str:
    if host.startswith("*."):
        host = "subdomains-of-" + host[2:]
    return "allow-" + "".join(c if c.isalnum() or c in "-." else "-" for c in host)[:70]


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate.lower() in taken:
        candidate = f"{name[:66]}-{number}"
        number += 1
    taken.add(candidate.lower())
    return candidate


def learned_policy(
    name: str, found: Iterable[Candidate], source_addresses: tuple[str, ...] = ("*",)
) -> Policy:
    """One Allow application rule per host or `*.domain` (its own protocols) and one network
    rule per address, in one group, so each line of evidence stays next to its rule."""
    application: list[ApplicationRule] = []
    network: list[NetworkRule] = []
    taken: set[str] = set()
    for candidate in found:
        rule_name = _unique_name(_rule_name(candidate.host), taken)
        if candidate.network:
            by_name = not _is_address(candidate.host)
            network.append(NetworkRule(
                name=rule_name,
                ip_protocols=tuple(sorted({kind for kind, _ in candidate.protocols})),  # type: ignore[arg-type]
                source_addresses=source_addresses,
                destination_addresses=() if by_name else (candidate.host,),
                destination_fqdns=(candidate.host,) if by_name else (),
                destination_ports=tuple(sorted({str(port) for _, port in candidate.protocols})),
            ))  # fmt: skip
        else:
            application.append(ApplicationRule(
                name=rule_name,
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


def allowlist_name(names: Sequence[str]) -> str:
    """The policy's name: `<name>-learned`, or `<first>-and-<n>-more-learned` for several."""
    unique = list(dict.fromkeys(names)) or ["egress"]
    if len(unique) == 1:
        return f"{unique[0]}-learned"
    return f"{unique[0]}-and-{len(unique) - 1}-more-learned"


def _target_line(key: str, value: str) -> str:
    """The line policy_to_yaml writes for a one-item list (quoted when YAML needs it)."""
    return yaml.safe_dump({key: [value]}, default_flow_style=None, width=1000).strip()


def render_allowlist(
    policy: Policy,
    found: Iterable[Candidate],
    *,
    command: str,
    scenario: str | Sequence[str],
    verified: bool | None,
    notes: Sequence[str] = (),
) -> str:
    """The policy YAML, headed by the command that made it, the scenario(s), whether it was
    verified and `notes`; under each rule a `# via` line per source that reached it (for a
    `*.domain` rule, per host it covers: `# via HOST: ...`)."""
    status = {True: "verified: the workload succeeded behind it",
              False: "NOT verified: the workload failed behind it", None: "not verified"}[verified]  # fmt: skip
    names = [scenario] if isinstance(scenario, str) else list(scenario)
    title = "Scenario" if len(names) == 1 else "Scenarios"
    header = "\n".join([f"Generated by: {command}", f"{title}: {', '.join(names)}", status, *notes])
    text = policy_to_yaml(policy, header=header)
    default_source = f"scenario {names[0]}" if len(names) == 1 else ""
    evidence: dict[str, list[str]] = {}
    for candidate in found:
        via = []
        for item in candidate.evidence_or_own():
            prefix = f"{item.host}: " if item.host != candidate.host else ""
            via.append(f"# via {prefix}{item.text(default_source)}")
        key = "target_fqdns"
        if candidate.network:
            key = (
                "destination_fqdns" if not _is_address(candidate.host) else "destination_addresses"
            )
        evidence.setdefault(_target_line(key, candidate.host), []).extend(via)
    lines = []
    for line in text.splitlines():
        lines.append(line)
        for via in evidence.pop(line.strip(), []):
            lines.append(" " * (len(line) - len(line.lstrip())) + via)
    return "\n".join(lines) + "\n"


# --- recordings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRun:
    """A recording folder read for `egress allowlist`."""

    folder: Path
    scenario: str | None  # from summary.json; None without one (an interrupted run)
    mode: str | None
    candidates: list[Candidate]
    # `egress import-logs`: production's firewall logs, whose allowed destinations have rules
    # already; its candidates are the denied destinations only (the rules to add).
    imported: bool = False
    warning: str | None = None  # what the lenient reader skipped, to be said once

    @property
    def source(self) -> str:
        run = f"run {self.folder.name}"
        return f"scenario {self.scenario}, {run}" if self.scenario else run


def read_recording(path: str | Path) -> RecordedRun:
    """A recording folder (or its events.jsonl): its candidates, with each candidate's evidence
    named after the run, and the scenario and mode its summary.json gives."""
    recording = read_run(path)
    summary = recording.summary
    scenario = summary.get("scenario")
    mode = summary.get("mode")
    imported = summary.get("origin") == "import-logs"
    run = RecordedRun(recording.folder, scenario if isinstance(scenario, str) else None,
                      mode if isinstance(mode, str) else None, [], imported,
                      warning=recording.warning())  # fmt: skip
    events = recording.events
    if imported:
        events = [event for event in events if (event.would or event.action) == "Deny"]
    found = candidates(events)
    for candidate in found:
        candidate.evidence = candidate.evidence_or_own(run.source)
    run.candidates.extend(found)
    return run
