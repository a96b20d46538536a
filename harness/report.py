"""What a run reached: events folded into one row per destination (the table `egress run`
prints, `summary.json` keeps and expectations are checked against). Pure."""

from __future__ import annotations

__all__ = ["Destination", "destination_host", "destinations"]

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from harness.events import UPSTREAM_UNREACHABLE, Event
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
        if event.action:
            row.action = "+".join(sorted({*row.action.split("+"), event.action} - {""}))
        if event.would:
            row.would = "+".join(sorted({*row.would.split("+"), event.would} - {""}))
        if event.upstream == UPSTREAM_UNREACHABLE:
            row.unreachable = True
    return list(rows.values())


# --- the HTML report (`egress report RECORDING`) --------------------------------------------

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1d1d1f; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
th { border-bottom: 1px solid #999; } .num { text-align: right; }
.allow { color: #17663a; } .deny { color: #b3261e; font-weight: 600; }
.success { color: #17663a; } .failure { color: #b3261e; }
#timeline { font: 12px/1.35 ui-monospace, monospace; }
#timeline .row { white-space: pre-wrap; padding: 1px 4px; }
#timeline .output { color: #555; }
#timeline .event.allow { background: #e7f5ec; } #timeline .event.deny { background: #fdecea; }
#timeline .event.dns { background: #f2f2f7; color: #444; }
#timeline .ts { color: #888; margin-right: 1em; }
pre.fix { background: #f6f8fa; padding: 8px; white-space: pre-wrap; }
"""


def _timeline(
    events: Iterable[Event], output: Iterable[tuple[str, str]]
) -> list[tuple[str, str, str, str]]:
    """(ts, kind, css class, text) rows: output lines and events in time order."""
    rows = [(ts, "output", "output", line) for ts, line in output]
    for event in events:
        if event.kind == "lifecycle":
            continue
        css = "dns" if event.kind == "dns" else ("deny" if event.would == "Deny" else "allow")
        rows.append(
            (event.ts, event.kind, f"event {css}", event.azure or f"{event.kind} {event.host}")
        )
    return sorted(rows, key=lambda row: row[0])


def render_html(
    *,
    title: str,
    summary: dict[str, object],
    events: list[Event],
    output: list[tuple[str, str]],
    diagnosis_text: str | None,
) -> str:
    """One self-contained page: no script, no stylesheet or font from anywhere else."""
    from html import escape

    rows = destinations(events)
    outcome = str(summary.get("outcome", "?"))
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        (
            f"<p>Outcome: <span class={escape(outcome)} id=outcome>{escape(outcome)}</span>; "
            f"policy {escape(str(summary.get('policy', '?')))} in {escape(str(summary.get('mode', '?')))} mode; "
            f"{escape(str(summary.get('duration_s', '?')))} s.</p>"
        ),
    ]
    if diagnosis_text:
        parts.append(
            f"<h2>Diagnosis</h2><pre class=fix id=diagnosis>{escape(diagnosis_text)}</pre>"
        )
    parts.append("<h2>Destinations</h2><table id=destinations><tr><th>host</th><th>port</th>"
                 "<th>protocol</th><th>action</th><th>rule</th><th class=num>connections</th>"
                 "<th class=num>bytes up</th><th class=num>bytes down</th></tr>")  # fmt: skip
    for row in rows:
        css = "deny" if "Deny" in row.would else "allow"
        parts.append(
            f"<tr><td>{escape(row.host)}</td><td>{row.port}</td><td>{escape(row.protocol)}</td>"
            f"<td class={css}>{escape(row.action)}</td><td>{escape(row.rule or '(default)')}</td>"
            f"<td class=num>{row.connections}</td><td class=num>{row.bytes_up}</td>"
            f"<td class=num>{row.bytes_down}</td></tr>"
        )
    parts.append("</table>")
    hits: dict[str, int] = {}
    for event in events:
        if event.rule:
            key = f"{event.rule['group']} / {event.rule['collection']} / {event.rule['rule']}"
            hits[key] = hits.get(key, 0) + 1
    parts.append(
        "<h2>Rule hits</h2><table id=rule-hits><tr><th>rule</th><th class=num>hits</th></tr>"
    )
    for rule, count in sorted(hits.items(), key=lambda item: -item[1]):
        parts.append(f"<tr><td>{escape(rule)}</td><td class=num>{count}</td></tr>")
    if not hits:
        parts.append(
            "<tr><td>(no rule matched: every decision was the default action)</td><td></td></tr>"
        )
    parts.append("</table>")
    parts.append("<h2>Timeline</h2><div id=timeline>")
    for ts, kind, css, text in _timeline(events, output):
        parts.append(
            f"<div class='row {css}' data-kind={escape(kind)}><span class=ts>{escape(ts[11:23])}</span>"
            f"{escape(text)}</div>"
        )
    parts.append("</div></body></html>")
    return "\n".join(parts)
