"""The timeline's model (harness.timeline): bars from open to close, outcomes, rows per host
collapsing past MAX_ROWS, ticks; and the SVG's geometry as numbers."""

from __future__ import annotations

import re

import pytest

from harness.events import Event
from harness.timeline import (
    LABEL_WIDTH,
    MAX_ROWS,
    MIN_BAR_PX,
    PLOT_WIDTH,
    build_timeline,
    outcome_of,
    render_svg,
)


def connection(host: str, second: float, ms: int = 100, action="Allow", would="Allow", **extra):
    whole, fraction = divmod(second, 1)
    ts = f"2026-11-28T12:00:{int(whole):02d}.{round(fraction * 1000):03d}Z"
    return Event(ts=ts, run="r", kind="tls", host=host, port=443, protocol="HTTPS",
                 action=action, would=would, duration_ms=ms, **extra)  # fmt: skip


@pytest.mark.parametrize(
    ("action", "would", "upstream", "outcome"),
    [
        ("Allow", "Allow", None, "allowed"),
        ("Deny", "Deny", None, "denied"),
        ("Allow", "Deny", None, "would-be-denied"),
        ("Allow", "Allow", "unreachable", "unreachable"),
        ("Allow", "Allow", "refused", "failed-upstream"),
        ("Allow", "Allow", "reset", "failed-upstream"),
        ("Allow", "Allow", "timeout", "failed-upstream"),
        ("Allow", "Deny", "unreachable", "would-be-denied"),
    ],
)
def test_outcome_of_a_connection(action, would, upstream, outcome) -> None:
    event = connection("a.example.test", 0, action=action, would=would, upstream=upstream)
    assert outcome_of(event) == outcome


def test_bars_span_open_to_close_on_one_axis_with_output() -> None:
    events = [connection("a.example.test", 1.0, 500), connection("b.example.test", 2.0, 3000),
              connection("a.example.test", 4.0, 0, action="Deny", would="Deny")]  # fmt: skip
    timeline = build_timeline(events, [("2026-11-28T12:00:00.000Z", "start")])
    assert timeline.span == pytest.approx(5.0)  # from the output line to b's close
    assert [row.label for row in timeline.rows] == ["a.example.test", "b.example.test"]
    assert [row.worst for row in timeline.rows] == ["denied", "allowed"]
    bars = {(bar.label, bar.start): bar for bar in timeline.bars}
    assert bars[("a.example.test:443", 1.0)].end == pytest.approx(1.5)
    assert bars[("b.example.test:443", 2.0)].end == pytest.approx(5.0)
    assert timeline.bars[-1].outcome == "denied"  # drawn last, on top
    svg = render_svg(timeline)
    rects = re.findall(r'<rect class="bar (\S+)" x="([\d.]+)" y="\d+" width="([\d.]+)"', svg)
    drawn = {(outcome, float(x)): float(width) for outcome, x, width in rects}
    scale = PLOT_WIDTH / 5.0
    assert drawn[("allowed", LABEL_WIDTH + 1.0 * scale)] == pytest.approx(0.5 * scale)
    assert drawn[("denied", LABEL_WIDTH + 4.0 * scale)] == MIN_BAR_PX


def test_dns_ticks_go_on_their_hosts_row_or_a_row_of_their_own() -> None:
    dns = [Event(ts="2026-11-28T12:00:00.500Z", run="r", kind="dns", host="a.example.test."),
           Event(ts="2026-11-28T12:00:00.600Z", run="r", kind="dns", host="z.example.test")]  # fmt: skip
    timeline = build_timeline([*dns, connection("a.example.test", 1.0)])
    assert [mark.row for mark in timeline.dns] == [0, -1]
    assert "DNS lookups (no connection)" in render_svg(timeline)


def test_output_lines_keep_their_stream_as_tracks() -> None:
    timeline = build_timeline(
        [connection("a.example.test", 1.0)],
        [
            ("2026-11-28T12:00:00.000Z", "w", "workload"),
            ("2026-11-28T12:00:02.000Z", "c", "client"),
        ],
    )
    assert timeline.tracks == ("workload", "client")
    assert [mark.at for mark in timeline.output] == [0.0, 2.0]


def test_many_hosts_collapse_per_registrable_domain_then_into_one_last_row() -> None:
    few = [connection(f"h{n}.site{n // 2}.test", n / 100) for n in range(2 * (MAX_ROWS - 10))]
    collapsed = build_timeline(few)
    assert len(collapsed.rows) == MAX_ROWS - 10
    assert collapsed.rows[0].label == "*.site0.test (2 hosts)"
    many = [connection(f"h{n}.site{n}.test", n / 100) for n in range(500)]
    rows = build_timeline(many).rows
    assert len(rows) == MAX_ROWS
    assert rows[-1].label == f"(other destinations) ({500 - MAX_ROWS + 1} hosts)"
    assert sum(row.connections for row in rows) == 500


def test_an_empty_recording_draws_an_empty_axis() -> None:
    timeline = build_timeline([])
    assert timeline.bars == () and timeline.span == 1.0
    assert render_svg(timeline).startswith('<svg id="timeline-svg"')


def test_events_without_a_usable_time_or_duration_are_left_off_the_drawing() -> None:
    odd = connection("b.example.test", 2.0)
    odd.ts = "yesterday"
    weird = connection("c.example.test", 3.0)
    weird.duration_ms = "long"  # type: ignore[assignment]
    timeline = build_timeline([connection("a.example.test", 1.0), odd, weird],
                              [("not a time", "line")])  # fmt: skip
    assert [bar.label for bar in timeline.bars] == ["a.example.test:443", "c.example.test:443"]
    assert timeline.bars[1].end == timeline.bars[1].start
    assert timeline.output == ()
