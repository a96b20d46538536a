"""What a run reached: events folded into one row per destination (the table `egress run`
prints, `summary.json` keeps and expectations are checked against). Pure."""

from __future__ import annotations

__all__ = ["Destination", "destination_host", "destinations"]

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from harness.events import NOT_REACHED, Event
from harness.policy.suggest import dns_names

CONNECTION_KINDS = ("tls", "http", "tcp", "udp")


@dataclass
class Destination:
    host: str  # the name the firewall decided on, or the IP when there was none
    port: int
    protocol: str
    action: str  # Allow, Deny, or Allow+Deny when both happened
    would: str
    rule: str  # "group / collection / rule", or "" for the default action
    reason: str
    connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    first_seen: str = ""
    # Allowed connections whose upstream refused, reset or timed out: {"reset": 3, ...}
    upstream_failures: dict[str, int] = field(default_factory=dict)
    unreachable: bool = False  # allowed, but this machine could not reach the upstream

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "action": self.action,
            "would": self.would,
            "rule": self.rule or None,
            "reason": self.reason,
            "connections": self.connections,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "first_seen": self.first_seen,
            "upstream_failures": self.upstream_failures,
            "unreachable": self.unreachable,
        }


def destination_host(event: Event, names: Mapping[str, frozenset[str]] | None = None) -> str:
    """The name the firewall decided on, else the name the recording's DNS gave the destination
    IP (`names`, harness.policy.suggest.dns_names), else the IP."""
    if event.host:
        return event.host.lower()
    if not event.dst:
        return "?"
    address = event.dst.rsplit(":", 1)[0]
    known = (names or {}).get(address.strip("[]"))
    return (min(known) if known else address).lower()


def destinations(events: Iterable[Event]) -> list[Destination]:
    """One row per (host, port, protocol), in order of first appearance."""
    events = list(events)
    names = dns_names(events)
    rows: dict[tuple[str, int, str], Destination] = {}
    for event in events:
        if event.kind not in CONNECTION_KINDS:
            continue
        host = destination_host(event, names)
        key = (host, event.port or 0, event.protocol or event.kind.upper())
        row = rows.get(key)
        if row is None:
            rule = event.rule
            row = rows[key] = Destination(
                host=host,
                port=event.port or 0,
                protocol=event.protocol or event.kind.upper(),
                action=event.action or "",
                would=event.would or "",
                rule=f"{rule['group']} / {rule['collection']} / {rule['rule']}" if rule else "",
                reason=event.reason or "",
                first_seen=event.ts,
            )
        row.connections += 1
        row.bytes_up += event.bytes_up or 0
        row.bytes_down += event.bytes_down or 0
        if event.upstream:
            row.upstream_failures[event.upstream] = row.upstream_failures.get(event.upstream, 0) + 1
        if event.action:
            row.action = "+".join(sorted({*row.action.split("+"), event.action} - {""}))
        if event.would:
            row.would = "+".join(sorted({*row.would.split("+"), event.would} - {""}))
        if event.upstream in NOT_REACHED:
            row.unreachable = True
    return list(rows.values())


# The HTML pages (`egress report`) are drawn by harness.pages and harness.timeline.
