"""Why a failed run failed: the denied destinations in time order, the one whose denial most
likely broke the build (matched against the client's own error lines), and the rule that
fixes it, written in the policy's YAML form. Pure."""

from __future__ import annotations

__all__ = ["CLIENT_ERRORS", "Diagnosis", "diagnose"]

import re
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from harness.events import Event

# Client error lines that mean "the network said no", by client. Each is searched in the
# workload's output; a denied host named on (or right before) such a line is the culprit.
CLIENT_ERRORS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (client, re.compile(pattern, re.IGNORECASE))
    for client, pattern in (
        (
            # Python's ssl and urllib3 errors, whoever the client (pip, requests, urllib).
            "Python (pip, requests, urllib)",
            r"SSLError|SSLEOFError|UNEXPECTED_EOF|SSLZeroReturnError|Max retries exceeded|Could not fetch URL",
        ),
        ("apt", r"470\s+status code 470|^E: (Failed|Unable) to fetch|^Err:\d+ "),
        ("uv", r"Failed to fetch|error sending request|client error \(Connect\)|tls handshake eof"),
        ("npm", r"ECONNRESET|EPROTO|socket hang up|ERR_SSL|request to \S+ failed"),
        ("nuget", r"NU1301|NU3028|Unable to load the service index"),
        ("curl", r"curl: \((6|7|28|35|52|56)\)"),
        (
            ".NET",
            r"HttpRequestException|The SSL connection could not be established|An error occurred while sending the request",
        ),
        ("oryx", r"Http request to retrieve the SDKs|A task was canceled"),
    )
)


@dataclass(frozen=True)
class Diagnosis:
    denied: tuple[str, ...]  # host:port, first denial first
    culprit: str | None
    evidence: str | None  # the output line that names it
    client: str | None
    fix: str | None  # the rule to add, as policy YAML

    def as_dict(self) -> dict[str, object]:
        return {
            "denied": list(self.denied),
            "culprit": self.culprit,
            "evidence": self.evidence,
            "client": self.client,
            "fix": self.fix,
        }

    def render(self) -> str:
        if not self.denied:
            return "No destination was denied: the failure is not the firewall's."
        lines = ["Denied, in order: " + ", ".join(self.denied)]
        if self.culprit:
            lines.append(f"Most likely cause: {self.culprit} was denied")
            if self.evidence:
                lines.append(f"  {self.client}: {self.evidence.strip()[:200]}")
        if self.fix:
            lines.append("Add to the policy:")
            lines += ["  " + line for line in self.fix.splitlines()]
        return "\n".join(lines)


def _denied_in_order(events: Sequence[Event]) -> list[Event]:
    seen: dict[str, Event] = {}
    for event in sorted(events, key=lambda event: event.ts):
        if event.kind in ("tls", "http", "tcp", "udp") and event.would == "Deny":
            key = f"{event.host or (event.dst or '?').rsplit(':', 1)[0]}:{event.port}"
            seen.setdefault(key, event)
    return list(seen.values())


def _fix_for(event: Event) -> str:
    if event.host and event.kind in ("tls", "http"):
        protocol = f"{'Https' if event.kind == 'tls' else 'Http'}:{event.port}"
        rule = {"rule_type": "ApplicationRule", "name": f"allow-{event.host}",
                "source_addresses": ["*"], "protocols": [protocol], "target_fqdns": [event.host]}  # fmt: skip
    else:
        address = (event.dst or "?").rsplit(":", 1)[0]
        rule = {"rule_type": "NetworkRule", "name": f"allow-{address}",
                "ip_protocols": [event.kind.upper()], "source_addresses": ["*"],
                "destination_addresses": [address], "destination_ports": [str(event.port)]}  # fmt: skip
    return yaml.safe_dump([rule], sort_keys=False, default_flow_style=None).rstrip()


def diagnose(events: Sequence[Event], output: str) -> Diagnosis:
    denied = _denied_in_order(events)
    labels = [
        f"{event.host or (event.dst or '?').rsplit(':', 1)[0]}:{event.port}" for event in denied
    ]
    if not denied:
        return Diagnosis((), None, None, None, None)
    lines = output.splitlines()
    for client, pattern in CLIENT_ERRORS:
        for index, line in enumerate(lines):
            if not pattern.search(line):
                continue
            # The host is on the error line or the line before it (pip and npm split them).
            window = " ".join(lines[max(0, index - 1) : index + 1]).lower()
            for event, label in zip(denied, labels, strict=True):
                name = (event.host or (event.dst or "").rsplit(":", 1)[0]).lower()
                if name and re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", window):
                    return Diagnosis(tuple(labels), label, line, client, _fix_for(event))
    # No error line names a denied host: the first denial is the likeliest cause.
    return Diagnosis(tuple(labels), labels[0], None, None, _fix_for(denied[0]))
