"""Why a failed run failed. Pure.

The causes the firewall can see, in time order: destinations denied (in audit mode: that would
be denied), destinations allowed whose upstream this machine cannot reach (`upstream:
unreachable`, e.g. a name that does not resolve here), and names whose lookup failed (with
`firewall.dns: resolve`). They are ranked by the client's own error first: an error line
(CLIENT_ERRORS, in that order: name resolution, TLS EOF or reset, HTTP 470, connection refused,
timeouts) that names one of them, on the line or the one before, makes it the culprit; an error
line that names a host whose name did not resolve makes that host the culprit even when the
firewall never saw a connection to it. Without such a line the first destination that stopped
traffic in this run is blamed (denied, or allowed but unreachable), then the first that only
would be denied (audit mode let it through), then the first failed lookup.

The diagnosis never says the failure is not the firewall's while a destination was denied,
would be denied, was unreachable or could not be looked up. The fix for a denied culprit is
the smallest rule that allows it, in the policy's YAML form, from the one rule suggester
(`harness.policy.suggest.rule_allowing`), so it always loads.
"""

from __future__ import annotations

__all__ = ["CLIENT_ERRORS", "Diagnosis", "diagnose", "looked_up_only"]

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import yaml

from harness.events import NOT_REACHED, Event
from harness.policy.fqdn import normalize
from harness.policy.suggest import dns_names, request_from_event, rule_allowing
from harness.report import destination_host

# Client error lines, by client, in the order they rank. Each is searched in the workload's
# output; a destination named on (or right before) such a line is the culprit.
CLIENT_ERRORS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (client, re.compile(pattern, re.IGNORECASE))
    for client, pattern in (
        ("Node.js (npm, node)", r"getaddrinfo (ENOTFOUND|EAI_AGAIN)|ENOTFOUND"),
        ("curl", r"Could not resolve host|curl: \(6\)"),
        (
            "the system resolver",
            (
                r"Name or service not known|Temporary failure in name resolution"
                r"|nodename nor servname|No address associated with hostname|NameResolutionError"
            ),
        ),
        (
            # Python's ssl and urllib3 errors, whoever the client (pip, requests, urllib).
            "Python (pip, requests, urllib)",
            r"SSLError|SSLEOFError|UNEXPECTED_EOF|SSLZeroReturnError|Max retries exceeded|Could not fetch URL",
        ),
        ("apt", r"470\s+status code 470|^E: (Failed|Unable) to fetch|^Err:\d+ "),
        ("uv", r"Failed to fetch|error sending request|client error \(Connect\)|tls handshake eof"),
        (
            "npm",
            (
                r"ECONNRESET|EPROTO|socket hang up|ERR_SSL|request to \S+ failed"
                r"|socket disconnected before secure TLS connection"
            ),
        ),
        ("git", r"fatal: unable to access|gnutls_handshake|GnuTLS recv error"),
        ("nuget", r"NU1301|NU3028|Unable to load the service index"),
        ("curl", r"curl: \((7|28|35|52|56)\)"),
        (
            ".NET",
            r"HttpRequestException|The SSL connection could not be established|An error occurred while sending the request",
        ),
        ("oryx", r"Http request to retrieve the SDKs|A task was canceled"),
        ("the client", r"Connection reset by peer|Connection refused|ECONNREFUSED"),
        ("the client", r"timed out|ETIMEDOUT|timeout"),
    )
)
# Where an error line names the host it could not resolve.
_UNRESOLVED_HOST = re.compile(
    r"ENOTFOUND\s+([\w.-]+)|EAI_AGAIN\s+([\w.-]+)|Could not resolve host:\s*([\w.-]+)"
    r"|host='([\w.-]+)'[^\n]*(?:Name or service not known|Temporary failure in name resolution"
    r"|NameResolutionError|nodename nor servname)",
    re.IGNORECASE,
)

DENIED, WOULD_BE_DENIED, UNREACHABLE, NOT_RESOLVED = (
    "denied", "would be denied", "unreachable", "not resolved",
)  # fmt: skip
_CONNECTION_KINDS = ("tls", "http", "tcp", "udp")


@dataclass(frozen=True)
class Diagnosis:
    denied: tuple[str, ...]  # host:port, first denial first (in audit mode: would be denied)
    culprit: str | None  # host:port, or the bare name of a failed lookup
    evidence: str | None  # the output line that names it
    client: str | None
    fix: str | None  # the rule to add, as policy YAML; None when no rule would help
    unreachable: tuple[str, ...] = ()  # allowed, but this machine cannot reach them
    not_resolved: tuple[str, ...] = ()  # names whose lookup failed (firewall.dns: resolve)
    cause: str | None = (
        None  # of the culprit: denied | would be denied | unreachable | not resolved
    )
    audit: bool = False  # the run was in audit mode: nothing was denied, only would be
    looked_up_only: tuple[str, ...] = ()  # names looked up but never connected to
    client_error: str | None = None  # the first client error line, whether it names a host or not

    def as_dict(self) -> dict[str, object]:
        return {
            "denied": list(self.denied),
            "unreachable": list(self.unreachable),
            "not_resolved": list(self.not_resolved),
            "looked_up_only": list(self.looked_up_only),
            "culprit": self.culprit,
            "cause": self.cause,
            "evidence": self.evidence,
            "client": self.client,
            "client_error": self.client_error,
            "fix": self.fix,
        }

    def render(self) -> str:
        if not (self.denied or self.unreachable or self.not_resolved):
            return (
                "No destination was denied, would be denied or unreachable: the failure is not"
                " the firewall's."
            )
        lines = []
        if self.denied:
            verb = "Would be denied" if self.audit else "Denied"
            lines.append(f"{verb}, in order: " + ", ".join(self.denied))
        if self.unreachable:
            lines.append(
                "Allowed but unreachable from this machine (no DNS answer here, or no route): "
                + ", ".join(self.unreachable)
            )
        if self.not_resolved:
            lines.append("Names that did not resolve: " + ", ".join(self.not_resolved))
        if self.culprit:
            lines.append(f"Most likely cause: {_cause_text(self.culprit, self.cause)}")
            if self.evidence:
                lines.append(f"  {self.client}: {self.evidence.strip()[:200]}")
            elif self.client_error:
                lines.append(f"  the client said: {self.client_error.strip()[:200]}")
        if self.fix:
            lines.append("Add to the policy:")
            lines += ["  " + line for line in self.fix.splitlines()]
        if self.looked_up_only:
            lines.append("Looked up but never connected to: " + ", ".join(self.looked_up_only))
        return "\n".join(lines)


def _cause_text(culprit: str, cause: str | None) -> str:
    if cause == UNREACHABLE:
        return (
            f"{culprit} was allowed but cannot be reached from this machine (its name does not"
            " resolve here); where Azure can reach it, the allowlist may well be enough"
        )
    if cause == NOT_RESOLVED:
        return (
            f"{culprit} did not resolve, so the client never connected; with firewall.dns: azure"
            " the firewall answers it as Azure's DNS would and decides the connection by name"
        )
    return f"{culprit} {'would be denied' if cause == WOULD_BE_DENIED else 'was denied'}"


@dataclass(frozen=True)
class _Problem:
    label: str  # host:port, or a bare name for a failed lookup
    name: str  # what an error line names
    cause: str
    event: Event | None


def _connection_problems(
    events: Sequence[Event], names: Mapping[str, frozenset[str]]
) -> tuple[list[_Problem], list[_Problem]]:
    """(denied or would be denied, unreachable), each in time order, one per host:port; a
    destination without a name is named by the recording's DNS answers when they have it."""

    def _name_of(event: Event) -> str:
        return destination_host(event, names)

    denied: dict[str, _Problem] = {}
    unreachable: dict[str, _Problem] = {}
    for event in sorted(events, key=lambda event: event.ts):
        if event.kind not in _CONNECTION_KINDS:
            continue
        label = f"{_name_of(event)}:{event.port}"
        if event.would == "Deny":
            cause = WOULD_BE_DENIED if event.action == "Allow" else DENIED
            denied.setdefault(label, _Problem(label, _name_of(event), cause, event))
        if event.upstream in NOT_REACHED and event.action == "Allow":
            # In audit mode also in `denied` (enforce would deny it); it failed as unreachable.
            unreachable.setdefault(label, _Problem(label, _name_of(event), UNREACHABLE, event))
    return list(denied.values()), list(unreachable.values())


def _lookups(events: Sequence[Event]) -> tuple[list[str], list[str]]:
    """(names whose lookup failed and that were never connected to, names looked up but never
    connected to), in the order first looked up."""
    connected: set[str] = set()
    addresses: set[str] = set()
    for event in events:
        if event.kind in _CONNECTION_KINDS:
            if event.host:
                connected.add(normalize(event.host))
            if event.dst:
                addresses.add(event.dst.rsplit(":", 1)[0].strip("[]"))
    failed: dict[str, None] = {}
    unused: dict[str, None] = {}
    for event in sorted(events, key=lambda event: event.ts):
        if event.kind != "dns" or not event.host:
            continue
        name = normalize(event.host)
        if name in connected or any(address in addresses for address in event.answers or ()):
            continue
        unused[name] = None
        if event.reason in ("NXDOMAIN", "SERVFAIL") and not event.sinkholed:
            failed[name] = None
    return list(failed), [name for name in unused if name not in failed]


def looked_up_only(events: Sequence[Event]) -> list[str]:
    """Names the workload looked up but never connected to (a failed lookup included)."""
    failed, unused = _lookups(events)
    return [*failed, *unused]


def _names(text: str, name: str) -> bool:
    return bool(re.search(rf"(?<![\w.-]){re.escape(name.lower())}(?![\w-])", text))


def diagnose(events: Sequence[Event], output: str) -> Diagnosis:
    names = dns_names(events)
    denied, unreachable = _connection_problems(events, names)
    not_resolved, looked_up_only = _lookups(events)
    # What stopped traffic in this run first (a denial, an unreachable upstream), then what only
    # would have (audit mode lets it through, so it cannot have broken this run), then lookups.
    happened = [p for p in denied if p.cause == DENIED] + unreachable
    would = [p for p in denied if p.cause == WOULD_BE_DENIED]
    unresolved = [_Problem(n, n, NOT_RESOLVED, None) for n in not_resolved]
    problems = [*happened, *would, *unresolved]
    audit = bool(would)
    lines = output.splitlines()
    client_error = _first_error_line(lines)

    def result(culprit: _Problem | None, evidence: str | None, client: str | None) -> Diagnosis:
        fix = None
        if culprit is not None and culprit.cause in (DENIED, WOULD_BE_DENIED) and culprit.event:
            request = request_from_event(culprit.event, names)
            fix = _rule_yaml(rule_allowing(request)[1]) if request is not None else None
        return Diagnosis(
            denied=tuple(p.label for p in denied), culprit=culprit.label if culprit else None,
            evidence=evidence, client=client, fix=fix,
            unreachable=tuple(p.label for p in unreachable), not_resolved=tuple(not_resolved),
            cause=culprit.cause if culprit else None, audit=audit,
            looked_up_only=tuple(looked_up_only), client_error=client_error,
        )  # fmt: skip

    for client, pattern in CLIENT_ERRORS:
        for index, line in enumerate(lines):
            if not pattern.search(line):
                continue
            # The host is on the error line or the line before it (pip and npm split them).
            window = " ".join(lines[max(0, index - 1) : index + 1]).lower()
            for problem in problems:
                if _names(window, problem.name):
                    return result(problem, line, client)
            unresolved = _UNRESOLVED_HOST.search(line)
            if unresolved:
                name = normalize(next(group for group in unresolved.groups() if group))
                return result(_Problem(name, name, NOT_RESOLVED, None), line, client)
    return result(problems[0] if problems else None, None, None)


def _first_error_line(lines: Sequence[str]) -> str | None:
    for line in lines:
        if any(pattern.search(line) for _, pattern in CLIENT_ERRORS):
            return line
    return None


def _rule_yaml(rule: object) -> str:
    from harness.export.yaml_form import policy_to_mapping
    from harness.policy.model import ALLOW, Policy, RuleCollection, RuleCollectionGroup

    policy = Policy(
        "p", (RuleCollectionGroup("g", 100, (RuleCollection("c", 100, ALLOW, (rule,)),)),)
    )  # type: ignore[arg-type]
    mapping = policy_to_mapping(policy)["rule_collection_groups"][0]["rule_collections"][0]
    return yaml.safe_dump(mapping["rules"], sort_keys=False, default_flow_style=None).rstrip()
