"""An execution as a person reads it, written once for `egress run` and the pytest plugin.

`execution_blocks` decides what is said and in which order: the headline, the failed
expectations with their YAML lines, the destinations (what an audit run would have denied, what
failed or was unreachable upstream), a chain's steps, the diagnosis, the last Azure log lines,
the tail of the workload's output and where the recording is. It returns plain data: blocks of
lines made of spans, each span with a tone. `render_text` lays them out as plain text (the
plugin's failure report); the CLI lays out the very same blocks with rich's colours and tables.
Pure: the caller passes the steps it read from the run folder.
"""

from __future__ import annotations

__all__ = ["TAIL_LINES", "Block", "Span", "Table", "execution_blocks", "render_text"]

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from harness.diagnose import looked_up_only
from harness.steps import StepRecord, events_by_step

if TYPE_CHECKING:
    from harness.execute import Execution
    from harness.report import Destination

TAIL_LINES = 25
Tone = Literal["", "good", "bad", "warn", "strong"]


@dataclass(frozen=True)
class Span:
    text: str
    tone: Tone = ""


Line = tuple[Span, ...]


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[Line, ...], ...]  # one Line per cell


@dataclass(frozen=True)
class Block:
    """A titled section (its lines indented under the title) or, untitled, bare lines."""

    title: str = ""
    lines: tuple[Line, ...] = ()
    table: Table | None = None


def _line(text: str, tone: Tone = "") -> Line:
    return (Span(text, tone),)


def execution_blocks(
    execution: Execution, *, steps: Sequence[StepRecord] = (), output_shown: bool = False
) -> list[Block]:
    """What to say of `execution`, in order. `output_shown`: the caller already streamed the
    workload's output (the CLI does), so its tail is not repeated. The Azure log tail comes
    with failed expectations, where it explains them."""
    blocks = [_headline(execution)]
    if execution.failures:
        blocks.append(Block("failed expectations",
                            tuple((Span("✗ ", "bad"), Span(str(f))) for f in execution.failures)))  # fmt: skip
    if execution.destinations:
        blocks.append(Block("destinations", table=destination_table(execution.destinations)))
    else:
        blocks.append(Block(lines=(_line("No connection left the workload."),)))
    if steps:
        blocks.append(_steps_block(execution, steps))
    if execution.diagnosis is not None:
        blocks.append(Block("diagnosis", tuple(_line(text) for text in
                                               execution.diagnosis.render().splitlines())))  # fmt: skip
    else:
        names = looked_up_only(execution.events)
        if names:
            blocks.append(Block(lines=(_line(f"Looked up but never connected to: {', '.join(names)}"),)))  # fmt: skip
    if execution.failures:
        azure = execution.azure_lines[-TAIL_LINES:]
        blocks.append(Block(f"last Azure log lines ({len(azure)})", tuple(map(_line, azure))))
        if not output_shown:
            output = execution.output.splitlines()[-TAIL_LINES:]
            blocks.append(Block(f"workload output, last {len(output)} lines",
                                tuple(map(_line, output))))  # fmt: skip
    blocks.append(Block(lines=(_line(f"recording: {execution.run_dir}"),)))
    return blocks


def _headline(execution: Execution) -> Block:
    scenario = execution.scenario
    how = "timed out" if execution.timed_out else f"exit code {execution.exit_code}"
    outcome = Span("success", "good") if execution.succeeded else Span("failure", "bad")
    return Block(lines=((
        Span("Scenario "), Span(scenario.name, "strong"), Span(f" ({scenario.path}): "), outcome,
        Span(f" ({how}, {execution.duration_s:.1f} s) behind policy {execution.policy.name}"
             f" in {execution.mode} mode"),
    ),))  # fmt: skip


def destination_table(destinations: Sequence[Destination]) -> Table:
    columns = ("destination", "protocol", "action", "rule", "connections", "bytes up/down")
    rows = tuple(
        (_line(row.label), _line(row.protocol), verdict(row), _line(row.rule or "(default)"),
         _line(str(row.connections)), _line(f"{row.bytes_up}/{row.bytes_down}"))
        for row in destinations
    )  # fmt: skip
    return Table(columns, rows)


def verdict(row: Destination) -> Line:
    """The action cell: an audit run allowed what enforce mode denies, so it says "would be
    denied", never a plain Allow; an Allow that carried nothing says why."""
    if "Deny" in row.would and "Deny" not in row.action:
        spans = [Span("would be denied", "warn"), Span(" (audit mode: allowed)")]
    else:
        spans = [Span(row.action, "good" if row.action == "Allow" else "bad")]
        if row.would != row.action:
            spans.append(Span(f" (would {row.would})"))
    if row.upstream_failures:
        failed = ", ".join(f"{count} {word}" for word, count in row.upstream_failures.items())
        spans.append(Span(f" (upstream: {failed})", "bad"))
    if row.unreachable:
        spans.append(Span(" (unreachable from this machine)"))
    return tuple(spans)


def _steps_block(execution: Execution, steps: Sequence[StepRecord]) -> Block:
    """A chain's steps as they ran, the hosts each reached, and the steps an earlier failure
    kept from running."""
    reached = events_by_step(execution.events, steps)
    rows = []
    for step in steps:
        hosts = dict.fromkeys(f"{e.host or e.dst}:{e.port}" for e in reached[step.name]
                              if e.kind in ("tls", "http", "tcp", "udp"))  # fmt: skip
        exit_text = "timed out" if step.timed_out else str(step.exit_code)
        rows.append((_line(step.name), _line(exit_text), _line(", ".join(hosts) or "(none)")))
    ran = {step.name for step in steps}
    not_run = [step.name for step in execution.scenario.steps if step.name not in ran]
    lines = (_line(f"Not run (an earlier step failed): {', '.join(not_run)}"),) if not_run else ()
    return Block("steps", lines, Table(("step", "exit", "destinations"), tuple(rows)))


def render_text(blocks: Sequence[Block]) -> str:
    """The blocks as plain text: titles end with a colon, their content indented by two."""
    out: list[str] = []
    for index, block in enumerate(blocks):
        indent = "  " if block.title else ""
        if index:
            out.append("")
        if block.title:
            out.append(f"{block.title}:")
        if block.table is not None:
            out += [indent + text for text in _table_text(block.table)]
        out += [indent + plain(line) for line in block.lines]
    return "\n".join(out)


def plain(line: Line) -> str:
    return "".join(span.text for span in line)


def _table_text(table: Table) -> list[str]:
    cells = [list(table.columns), *([plain(cell) for cell in row] for row in table.rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    return ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip()
            for row in cells]  # fmt: skip
