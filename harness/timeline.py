"""A run drawn on one time axis: one row per destination host with one bar per connection from
open to close, coloured by outcome; DNS lookups as ticks; the workload's and the client's
output lines as tracks below. Pure: `build_timeline` folds events into a `Timeline`,
`render_svg` draws it as inline SVG (no script, no outside asset; a bar's `<title>` is its
hover text: the Azure log line, bytes, duration and rule).

An event's `ts` is when the firewall decided (the connection opened); `duration_ms` is how
long it stayed open, so a bar spans `ts .. ts + duration_ms`.

Readable from 1 to 500 connections: every connection to a host shares the host's row; past
`MAX_ROWS` hosts, hosts under one registrable domain share a row, and what still does not fit
is one last row.
"""

from __future__ import annotations

__all__ = [
    "OUTCOMES",
    "Bar",
    "Mark",
    "Row",
    "Timeline",
    "build_timeline",
    "legend_html",
    "outcome_of",
    "render_svg",
]

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from harness.events import Event

CONNECTION_KINDS = ("tls", "http", "tcp", "udp")

# outcome -> (legend text, fill). Denials are drawn last, so no allowed bar hides them.
OUTCOMES: dict[str, tuple[str, str]] = {
    "allowed": ("allowed", "#2e8b57"),
    "failed-upstream": ("allowed, upstream failed (refused, reset, timeout)", "#8a6d3b"),
    "unreachable": ("allowed, upstream unreachable", "#7b4fb5"),
    "would-be-denied": ("would be denied (audit mode)", "#f08c00"),
    "denied": ("denied", "#d7263d"),
}
DNS_COLOUR = "#3f6fb5"
OUTPUT_COLOURS = {"workload": "#555555", "client": "#1f7a8c"}

MAX_ROWS = 60
LABEL_WIDTH = 280
PLOT_WIDTH = 860
RIGHT_PAD = 20
AXIS_HEIGHT = 26
MIN_BAR_PX = 4.0


def outcome_of(event: Event) -> str:
    """One of OUTCOMES for a connection event."""
    if event.would == "Deny":
        return "denied" if event.action == "Deny" else "would-be-denied"
    upstream = event.upstream
    if upstream == "unreachable":
        return "unreachable"
    if upstream:
        return "failed-upstream"
    return "allowed"


def _seconds(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def _duration(event: Event) -> float:
    """Seconds the connection stayed open (0 when unknown)."""
    value = event.duration_ms
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return value / 1000
    return 0.0


def _timed(ts: object) -> bool:
    """A time the axis can place; anything else is left off the drawing (not an error: the
    recording is evidence, and the event log still lists it)."""
    try:
        _seconds(ts)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Bar:
    row: int
    start: float  # seconds from the timeline's start
    end: float
    outcome: str
    label: str  # host:port
    title: str  # the hover text


@dataclass(frozen=True)
class Mark:
    """A DNS lookup (on a row) or an output line (on a track): a moment, not a span."""

    row: int  # the row's index; -1 for output tracks
    at: float
    title: str
    stream: str = "dns"  # dns | workload | client


@dataclass(frozen=True)
class Row:
    label: str
    hosts: tuple[str, ...]
    connections: int
    worst: str  # the row's most serious outcome, for its label's colour


@dataclass(frozen=True)
class Timeline:
    start_ts: str
    span: float  # seconds, > 0
    rows: tuple[Row, ...]
    bars: tuple[Bar, ...]
    dns: tuple[Mark, ...]
    output: tuple[Mark, ...]
    audit: bool

    @property
    def tracks(self) -> tuple[str, ...]:
        present = {mark.stream for mark in self.output}
        return tuple(stream for stream in ("workload", "client") if stream in present)


def _host(event: Event) -> str:
    return (event.host or (event.dst.rsplit(":", 1)[0] if event.dst else "?")).lower()


def _hover(event: Event, outcome: str) -> str:
    rule = event.rule
    rule_text = (
        f"{rule.get('group', '')} / {rule.get('collection', '')} / {rule.get('rule', '')}"
        if rule
        else f"(default action) {event.reason or ''}".rstrip()
    )
    lines = [
        f"{_host(event)}:{event.port} {event.protocol or event.kind.upper()}: {OUTCOMES[outcome][0]}",
        event.azure or "",
        (
            f"bytes up {event.bytes_up or 0}, down {event.bytes_down or 0};"
            f" open {event.duration_ms or 0} ms"
        ),
        f"rule: {rule_text}",
    ]
    upstream = event.upstream
    if upstream:
        lines.append(f"upstream: {upstream}")
    return "\n".join(line for line in lines if line)


_SEVERITY = ("allowed", "failed-upstream", "unreachable", "would-be-denied", "denied")


def _row_keys(hosts: Sequence[str]) -> dict[str, str]:
    """host -> the row it is drawn on (module docstring)."""
    if len(hosts) <= MAX_ROWS:
        return {host: host for host in hosts}
    from harness.allowlist import registrable_domain

    keys = {host: (f"*.{domain}" if (domain := registrable_domain(host)) else host)
            for host in hosts}  # fmt: skip
    distinct = list(dict.fromkeys(keys.values()))
    if len(distinct) > MAX_ROWS:
        kept = set(distinct[: MAX_ROWS - 1])
        keys = {host: key if key in kept else "(other destinations)" for host, key in keys.items()}
    return keys


def build_timeline(
    events: Iterable[Event],
    output: Iterable[tuple[str, str] | tuple[str, str, str]] = (),
    *,
    audit: bool = False,
) -> Timeline:
    """`output` is (ts, line) or (ts, line, stream) with stream `workload` or `client`."""
    events = [event for event in events if event.kind != "lifecycle" and _timed(event.ts)]
    connections = [event for event in events if event.kind in CONNECTION_KINDS]
    lookups = [event for event in events if event.kind == "dns"]
    lines = [(item[0], item[1], item[2] if len(item) > 2 else "workload")
             for item in output if _timed(item[0])]  # fmt: skip
    moments = [_seconds(event.ts) for event in events] + [_seconds(ts) for ts, _, _ in lines]
    ends = [_seconds(e.ts) + _duration(e) for e in connections]
    if not moments:
        return Timeline("", 1.0, (), (), (), (), audit)
    start = min(moments)
    span = max([*moments, *ends]) - start or 1.0
    start_ts = min([event.ts for event in events] + [ts for ts, _, _ in lines])

    hosts = list(dict.fromkeys(_host(event) for event in sorted(connections, key=lambda e: e.ts)))
    keys = _row_keys(hosts)
    order = list(dict.fromkeys(keys[host] for host in hosts))
    index = {key: number for number, key in enumerate(order)}
    members: dict[str, list[str]] = {key: [] for key in order}
    for host in hosts:
        members[keys[host]].append(host)

    bars = []
    counts = dict.fromkeys(order, 0)
    worst = dict.fromkeys(order, "allowed")
    for event in connections:
        outcome = outcome_of(event)
        key = keys[_host(event)]
        counts[key] += 1
        if _SEVERITY.index(outcome) > _SEVERITY.index(worst[key]):
            worst[key] = outcome
        opened = _seconds(event.ts) - start
        bars.append(Bar(index[key], opened, opened + _duration(event), outcome,
                        f"{_host(event)}:{event.port}", _hover(event, outcome)))  # fmt: skip
    bars.sort(key=lambda bar: (_SEVERITY.index(bar.outcome), bar.start))

    rows = []
    for key in order:
        names = tuple(members[key])
        label = key if len(names) == 1 else f"{key} ({len(names)} hosts)"
        rows.append(Row(label, names, counts[key], worst[key]))

    dns = []
    for event in lookups:
        name = (event.host or "").lower().rstrip(".")
        row = index.get(keys.get(name, ""), -1)
        text = event.azure or f"DNS query {name}"
        dns.append(Mark(row, _seconds(event.ts) - start, f"DNS {name}\n{text}"))
    marks = [Mark(-1, _seconds(ts) - start, line, stream) for ts, line, stream in lines]
    return Timeline(start_ts, span, tuple(rows), tuple(bars), tuple(dns), tuple(marks), audit)


# --- drawing --------------------------------------------------------------------------------


def _nice_step(span: float, target: int = 8) -> float:
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _seconds_text(value: float, step: float) -> str:
    if step >= 1:
        return f"{value:.0f} s"
    if step >= 0.1:
        return f"{value:.1f} s"
    return f"{value * 1000:.0f} ms"


def render_svg(timeline: Timeline, svg_id: str = "timeline-svg") -> str:
    """The timeline as one `<svg class=timeline-svg>`; every bar is a `<rect class="bar
    OUTCOME">` with `data-start`/`data-end` in seconds from the start, every tick a `<line>`."""
    row_height = 18 if len(timeline.rows) <= 30 else 13
    tracks = timeline.tracks
    rows_top = AXIS_HEIGHT
    rows_height = max(1, len(timeline.rows)) * row_height
    dns_unplaced = any(mark.row < 0 for mark in timeline.dns)
    extra_rows = 1 if dns_unplaced else 0
    tracks_top = rows_top + rows_height + extra_rows * row_height + 10
    track_height = 22
    height = tracks_top + len(tracks) * track_height + 6
    width = LABEL_WIDTH + PLOT_WIDTH + RIGHT_PAD
    scale = PLOT_WIDTH / timeline.span

    def x_of(seconds: float) -> float:
        return LABEL_WIDTH + seconds * scale

    parts = [
        (
            f'<svg id="{svg_id}" class="timeline-svg" xmlns="http://www.w3.org/2000/svg" width="{width}"'
            f' height="{height}" viewBox="0 0 {width} {height}" data-span="{timeline.span:.6f}"'
            f' data-plot-left="{LABEL_WIDTH}" data-plot-width="{PLOT_WIDTH}"'
            f' font-family="system-ui, sans-serif" font-size="11">'
        ),
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    step = _nice_step(timeline.span)
    tick = 0.0
    while tick <= timeline.span + 1e-9:
        x = x_of(tick)
        parts.append(f'<line class="grid" x1="{x:.2f}" y1="{AXIS_HEIGHT - 6}" x2="{x:.2f}"'
                     f' y2="{height - 4}" stroke="#e6e6e6"/>'
                     f'<text x="{x:.2f}" y="{AXIS_HEIGHT - 10}" text-anchor="middle"'
                     f' fill="#666">+{_seconds_text(tick, step)}</text>')  # fmt: skip
        tick += step
    for number, row in enumerate(timeline.rows):
        y = rows_top + number * row_height
        if number % 2:
            parts.append(f'<rect x="0" y="{y}" width="{width}" height="{row_height}"'
                         ' fill="#f7f7f9"/>')  # fmt: skip
        colour = OUTCOMES[row.worst][1] if row.worst != "allowed" else "#1d1d1f"
        label = row.label if len(row.label) <= 40 else row.label[:39] + "…"
        parts.append(
            f'<text class="row-label" x="{LABEL_WIDTH - 8}" y="{y + row_height - 5}"'
            f' text-anchor="end" fill="{colour}"><title>{escape(", ".join(row.hosts))}:'
            f" {row.connections} connection(s)</title>{escape(label)}</text>"
        )
    if dns_unplaced:
        y = rows_top + rows_height
        parts.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + row_height - 5}" text-anchor="end"'
                     ' fill="#666">DNS lookups (no connection)</text>')  # fmt: skip
    pad = 3 if row_height > 14 else 2
    for bar in timeline.bars:
        y = rows_top + bar.row * row_height + pad
        x = x_of(bar.start)
        bar_width = max(MIN_BAR_PX, (bar.end - bar.start) * scale)
        parts.append(
            f'<rect class="bar {bar.outcome}" x="{x:.2f}" y="{y}" width="{bar_width:.2f}"'
            f' height="{row_height - 2 * pad}" fill="{OUTCOMES[bar.outcome][1]}"'
            f' data-start="{bar.start:.6f}" data-end="{bar.end:.6f}" data-row="{bar.row}"'
            f' data-label="{escape(bar.label)}"><title>{escape(bar.title)}</title></rect>'
        )
    for mark in timeline.dns:
        row = mark.row if mark.row >= 0 else len(timeline.rows)
        y = rows_top + row * row_height
        x = x_of(mark.at)
        parts.append(
            f'<line class="dns-tick" x1="{x:.2f}" y1="{y + 1}" x2="{x:.2f}" y2="{y + 5}"'
            f' stroke="{DNS_COLOUR}" stroke-width="2" data-at="{mark.at:.6f}">'
            f"<title>{escape(mark.title)}</title></line>"
        )
    for number, stream in enumerate(tracks):
        y = tracks_top + number * track_height
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 14}" text-anchor="end" fill="#444">'
            f"{stream} output</text>"
            f'<line x1="{LABEL_WIDTH}" y1="{y + track_height / 2}" x2="{LABEL_WIDTH + PLOT_WIDTH}"'
            f' y2="{y + track_height / 2}" stroke="#dddddd"/>'
        )
        colour = OUTPUT_COLOURS[stream]
        for mark in timeline.output:
            if mark.stream != stream:
                continue
            x = x_of(mark.at)
            parts.append(
                f'<rect class="output-tick {stream}" x="{x - 1:.2f}" y="{y + 4}" width="2"'
                f' height="{track_height - 8}" fill="{colour}" data-at="{mark.at:.6f}">'
                f"<title>{escape(mark.title[:300])}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def legend_html(timeline: Timeline) -> str:
    """The outcomes present (and always "denied", or "would be denied" in audit mode)."""
    present = {bar.outcome for bar in timeline.bars}
    present.add("would-be-denied" if timeline.audit else "denied")
    items = []
    for outcome, (text, colour) in OUTCOMES.items():
        if outcome in present or outcome == "allowed":
            items.append(
                f'<span class="legend-item {outcome}"><span class=swatch'
                f' style="background:{colour}"></span>{escape(text)}</span>'
            )
    items.append(f'<span class="legend-item dns"><span class="swatch tick"'
                 f' style="background:{DNS_COLOUR}"></span>DNS lookup</span>')  # fmt: skip
    return f"<div class=legend>{''.join(items)}</div>"
