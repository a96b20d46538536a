"""`egress import-logs`: Azure Firewall log exports in, a recording folder out, so that every
command that reads a recording (logs, allowlist, diff, report, export) reads production's.

    import_logs(paths, folder, filters) -> ImportResult   (writes the folder)
    parse_filters(since, until, source, action) -> Filters

What is written (formats.md "Recording"), through the harness's own writers:
- `events.jsonl` and `azure.log` by `harness.recording.Recorder`: one event per imported row;
  a legacy line's `azure` is the line exactly as exported, a table row's the legacy line Azure
  writes for the same columns.
- `policy.yaml`: the rules production was missing, one Allow rule per denied destination
  (`harness.allowlist.learned_policy`, the suggester `learn` uses): HTTPS and HTTP denials as
  application rules with their own `Https:<port>` / `Http:<port>`, network denials as network
  rules. The production policy itself is not in the logs, so this is what `egress export DIR`
  writes: the rule collection group to add.
- `summary.json`: `origin: "import-logs"`, the files and their formats, counts, filters, the
  policies named in the rows, `outcome: "failure"` when anything was denied.

Streaming: rows are read one at a time (`harness.logimport.sources`) and written as they come;
what is kept is one entry per denied destination.
"""

from __future__ import annotations

__all__ = [
    "ORIGIN",
    "FileResult",
    "Filters",
    "ImportResult",
    "import_logs",
    "parse_filters",
]

import csv
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import InputError, Location
from harness.events import Event
from harness.logimport.fast import DeniedTally, Rendered, RowRenderer, escape, identity, source
from harness.logimport.parallel import read_csv_in_parallel, read_json_in_parallel
from harness.logimport.rows import (
    RowError,
    Unsupported,
    legacy_event,
    normalize_time,
    table_event,
    table_of,
)
from harness.logimport.sources import (
    FORMATS,
    Bad,
    CsvCells,
    Line,
    LocalTimes,
    Row,
    UnknownFormat,
    detect,
    open_csv_cells,
    stream,
)
from harness.recording import EVENTS_FILE, Recorder, RecorderError
from harness.runfolder import POLICY as POLICY_FILE

ORIGIN = "import-logs"
SHOWN_PROBLEMS = 5
FOLD_EVERY = 20000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Filters:
    since: str = ""  # normalized times (formats.md), compared as strings
    until: str = ""
    source: Network | None = None
    action: str | None = None  # Allow | Deny

    def as_dict(self) -> dict[str, str | None]:
        return {"since": self.since or None, "until": self.until or None,
                "source": str(self.source) if self.source else None, "action": self.action}  # fmt: skip


def parse_filters(
    since: str | None = None, until: str | None = None, source: str | None = None,
    action: str | None = None,
) -> Filters:  # fmt: skip
    """The command line's filters, checked; a bad one is an InputError naming the option."""
    times = []
    for option, value in (("--since", since), ("--until", until)):
        if not value:
            times.append("")
            continue
        text = value.strip()
        if len(text) == 10:  # a date alone: its midnight
            text += "T00:00:00Z"
        try:
            times.append(normalize_time(text, option))
        except RowError:
            raise InputError(f"{value!r} is not a time", key_path=option,
                             fix="write it as 2026-11-28 or 2026-11-28T12:00:00Z (UTC)") from None  # fmt: skip
    network = None
    if source:
        try:
            network = ipaddress.ip_network(source.strip(), strict=False)
        except ValueError:
            raise InputError(f"{source!r} is not an IP address or CIDR", key_path="--source",
                             fix="give one subnet, such as the App Service integration subnet"
                                 " 10.0.2.0/24") from None  # fmt: skip
    normal = action.capitalize() if action else None
    if normal not in (None, "Allow", "Deny"):
        raise InputError(f"{action!r} is not allow or deny", key_path="--action",
                         fix="use --action allow or --action deny")  # fmt: skip
    return Filters(times[0], times[1], network, normal)


@dataclass
class FileResult:
    path: str
    format: str
    rows: int = 0  # rows read (whatever became of them)
    imported: int = 0
    filtered: int = 0
    skipped: int = 0  # unreadable
    problems: list[tuple[int, str]] = field(default_factory=list)  # the first few
    unsupported: dict[str, int] = field(default_factory=dict)
    # Byte ranges read by worker processes, by how: "lines" (csvlines) or "cells" (csv module).
    ranges: dict[str, int] = field(default_factory=dict)
    worker_cpu: float = 0.0  # CPU seconds the worker processes spent on them (benchmarks)
    worker_peak_kib: int = 0  # the largest worker's peak RSS

    def warning(self) -> str | None:
        """One line for every row skipped as unreadable, with the first line numbers."""
        if not self.skipped:
            return None
        shown = "; ".join(f"line {line}: {message}" for line, message in self.problems)
        more = f"; and {self.skipped - len(self.problems)} more" if self.skipped > len(
            self.problems) else ""  # fmt: skip
        return (f"{self.path}: skipped {self.skipped} unreadable row(s) of {self.rows}:"
                f" {shown}{more}")  # fmt: skip


@dataclass
class ImportResult:
    folder: Path
    files: list[FileResult]
    events: int
    denied_destinations: int
    policies: list[str]
    first_seen: str
    last_seen: str

    @property
    def warnings(self) -> list[str]:
        lines = [warning for result in self.files if (warning := result.warning())]
        for result in self.files:
            for what, count in result.unsupported.items():
                lines.append(f"{result.path}: left out {count} {what} row(s): a recording has"
                             f" no {what} events")  # fmt: skip
        return lines


class _Selector:
    """The filters as one fast test per event."""

    def __init__(self, filters: Filters) -> None:
        self.filters = filters
        self._inside: dict[str, bool] = {}

    def __call__(self, event: Event) -> bool:
        return self.keep(event.ts, event.would or event.action, event.src)

    def keep(self, ts: str, action: str | None, src: str | None) -> bool:
        wanted = self.filters
        if wanted.since and (not ts or ts < wanted.since):
            return False
        if wanted.until and (not ts or ts > wanted.until):
            return False
        if wanted.action and action != wanted.action:
            return False
        if wanted.source is not None:
            return self._in_source(src)
        return True

    def _in_source(self, src: str | None) -> bool:
        if not src:
            return False
        ip = src.rsplit(":", 1)[0].strip("[]") if src.count(":") == 1 or src.startswith(
            "[") else src  # fmt: skip
        known = self._inside.get(ip)
        if known is None:
            try:
                known = ipaddress.ip_address(ip) in self.filters.source  # type: ignore[operator]
            except ValueError:
                known = False
            if len(self._inside) < 100000:
                self._inside[ip] = known
        return known


def _event(item: object, run: str) -> Event:
    if isinstance(item, Line):
        return legacy_event(item.text, normalize_time(item.ts) if item.ts else "", run)
    values = item.values  # type: ignore[attr-defined]
    if item.strings:  # type: ignore[attr-defined]
        values = {key: None if value == "None" else value for key, value in values.items()}
    message = values.get("msg_s")
    if message:
        if not isinstance(message, str):
            raise RowError(f"msg_s: {message!r} is not text")
        return legacy_event(message, normalize_time(values.get("TimeGenerated")), run)
    table = table_of(values)
    if table is None:
        raise RowError("no column says which table the row is from (Type, Category or msg_s)")
    return table_event(table, values, run)


# file, bytes read, file size, events written, whether the file is done
ProgressLine = Callable[[str, int, int, int, bool], None]


def import_logs(
    paths: Sequence[str | Path],
    folder: str | Path,
    filters: Filters = Filters(),
    progress: ProgressLine | None = None,
    *,
    fast: bool = True,
) -> ImportResult:
    """Read every file (its format detected on its own), write the recording into `folder`.
    A file no format matches stops everything before anything is written. `fast=False` reads
    every row through an Event (the reference the fast path is tested against)."""
    from harness.allowlist import candidates

    out = Path(folder)
    formats = []
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError(f"{path} is not a file", fix="give exported log files")
        try:
            formats.append(detect(path))
        except UnknownFormat as unknown:
            known = "; ".join(f"{name} ({text})" for name, text in FORMATS.items())
            raise InputError(f"no known log format matches: {unknown}",
                             location=Location(str(path)),
                             fix=f"export the rows as one of: {known}") from None  # fmt: skip
        except LocalTimes as local:
            raise InputError(str(local), location=Location(str(path)),
                             fix="export again with the portal's time zone set to UTC (the"
                                 " `TimeGenerated [UTC]` header)") from None  # fmt: skip
        except OSError as error:
            raise InputError(f"cannot read it: {error.strerror}", location=Location(str(path)),
                             fix="check the path and its permissions") from None  # fmt: skip
    if (out / EVENTS_FILE).exists():
        raise InputError(f"{out} already holds a recording", key_path="-o",
                         fix="give a new folder for the imported recording")  # fmt: skip
    try:
        recorder = Recorder(out, flush_each=False)
    except RecorderError as error:
        raise InputError(str(error), key_path="-o", fix="give a folder you can write") from None
    selector = _Selector(filters)
    filtering = filters != Filters()
    run = out.name
    results: list[FileResult] = []
    totals = _Totals()
    read = _read_fast if fast else _read_events
    denied = DeniedTally(FOLD_EVERY) if fast else _DeniedFold(candidates)
    try:
        for path, fmt in zip(map(Path, paths), formats, strict=True):
            result = FileResult(str(path), fmt)
            results.append(result)
            size = path.stat().st_size
            report = _reporter(progress, str(path), size, totals)
            chosen = selector if filtering else None
            if fast and fmt == "csv":
                if not read_csv_in_parallel(path, result, run, filters, recorder, totals,
                                            denied, report):  # fmt: skip
                    with open_csv_cells(path, report) as cells:
                        _read_fast_csv(cells, result, run, chosen, recorder, totals, denied)
            elif not (fast and fmt == "json-array" and read_json_in_parallel(
                    path, result, run, filters, recorder, totals, denied, report)):  # fmt: skip
                read(stream(path, fmt, report), result, run, chosen, recorder, totals, denied)
            if progress:
                progress(str(path), size, size, totals.events, True)
        recorder.close()
    except RecorderError as error:
        raise InputError(str(error), key_path="-o", fix="free space or give another folder") from None
    except BaseException:
        try:
            recorder.close()
        except RecorderError:
            pass
        raise
    found = denied.result()
    _write_policy(out, found, [result.path for result in results])
    outcome = ImportResult(out, results, totals.events, len(found), list(totals.policies),
                           totals.first_seen, totals.last_seen)  # fmt: skip
    _write_summary(out, outcome, filters)
    return outcome


def _reporter(progress: ProgressLine | None, path: str, size: int, totals: _Totals):
    if progress is None:
        return None
    return lambda done: progress(path, done, size, totals.events, False)


class _Totals:
    """What every file adds to: events written, the times seen, the policies named."""

    def __init__(self) -> None:
        self.events = 0
        self.first_seen = ""
        self.last_seen = ""
        self.policies: dict[str, None] = {}


def _read_events(items, result: FileResult, run: str, selector: _Selector | None,
                 recorder: Recorder, totals: _Totals, denied: _DeniedFold) -> None:  # fmt: skip
    """The reference path: an Event per row, written one at a time (`import_logs(fast=False)`,
    what the fast path is tested against)."""
    for line, item in items:
        result.rows += 1
        if isinstance(item, Bad):
            _skip(result, line, item.message)
            continue
        try:
            event = _event(item, run)
        except Unsupported as what:
            result.unsupported[str(what)] = result.unsupported.get(str(what), 0) + 1
            continue
        except RowError as error:
            _skip(result, line, str(error))
            continue
        if selector is not None and not selector(event):
            result.filtered += 1
            continue
        recorder.write(event)
        totals.events += 1
        result.imported += 1
        if event.ts:
            if not totals.first_seen or event.ts < totals.first_seen:
                totals.first_seen = event.ts
            totals.last_seen = max(totals.last_seen, event.ts)
        if event.rule and event.rule.get("policy"):
            totals.policies.setdefault(event.rule["policy"], None)
        if (event.would or event.action) == "Deny":
            denied.add(event)


WRITE_EVERY = 2000  # rows rendered before their lines are written, in one write per file


def _read_fast(items, result: FileResult, run: str, selector: _Selector | None,
               recorder: Recorder, totals: _Totals, denied: DeniedTally,
               renderer: RowRenderer | None = None) -> None:  # fmt: skip
    """The same as _read_events, byte for byte: common table rows through `fast.RowRenderer`
    (no Event each), every other row through its Event; lines written in batches."""
    if renderer is None:
        renderer = RowRenderer(run)
    render = renderer.render
    lines: list[str] = []
    azure: list[str] = []
    first_seen, last_seen = totals.first_seen, totals.last_seen
    policies = totals.policies
    imported = 0
    written_before = totals.events
    try:
        for line, item in items:
            result.rows += 1
            item_class = item.__class__
            try:
                done = render(item.values, item.strings) if item_class is Row else None
                if done is None:
                    if item_class is Bad:
                        _skip(result, line, item.message)  # type: ignore[union-attr]
                        continue
                    done = _rendered(_event(item, run))
            except Unsupported as what:
                result.unsupported[str(what)] = result.unsupported.get(str(what), 0) + 1
                continue
            except RowError as error:
                _skip(result, line, str(error))
                continue
            ts = done.ts
            if selector is not None and not selector.keep(ts, done.action, done.src):
                result.filtered += 1
                continue
            lines.append(done.line)
            if done.azure:
                azure.append(done.azure)
            imported += 1
            if ts:
                if not first_seen or ts < first_seen:
                    first_seen = ts
                last_seen = max(last_seen, ts)
            if done.policy:
                policies.setdefault(done.policy, None)
            if done.action == "Deny":
                denied.add(done.denied, ts, done.size)
            if len(lines) >= WRITE_EVERY:
                recorder.write_lines(lines, azure)
                lines.clear()
                azure.clear()
                totals.events = written_before + imported  # for the progress line
    finally:
        totals.first_seen, totals.last_seen = first_seen, last_seen
    recorder.write_lines(lines, azure)
    result.imported += imported
    totals.events = written_before + imported


def _read_fast_csv(source_cells: CsvCells, result: FileResult, run: str,
                   selector: _Selector | None, recorder: Recorder, totals: _Totals,
                   denied: DeniedTally, renderer: RowRenderer | None = None,
                   ) -> None:  # fmt: skip
    """_read_fast for a CSV, its rows left as lists of cells: a row whose columns were rendered
    before takes its template straight from its cells (no dict, no Row, no Rendered). This
    loop is most of an import's time, hence written out in one piece, the csv reader's own
    loop included."""
    names = source_cells.names
    if renderer is None:
        renderer = RowRenderer(run, names)
    templates, cells_key = renderer.templates_by_cells, renderer.cells_key
    time_and_source = renderer.time_and_source
    render_cells = renderer.render_cells
    reader, first_line, sentinel = source_cells.reader, source_cells.first_line, source_cells.sentinel
    progress, tell = source_cells.progress, source_cells.tell
    width = len(names)
    lines: list[str] = []
    azure: list[str] = []
    add_line, add_azure = lines.append, azure.append
    first_seen, last_seen = totals.first_seen, totals.last_seen
    policies = totals.policies
    imported = rows = count = 0
    written_before = totals.events
    reading = not source_cells.ended
    if source_cells.header_problem:
        rows += 1
        header_line, problem = source_cells.header_problem
        _skip(result, header_line, problem.message)
    try:
        while reading:
            try:
                for cells in reader:
                    if len(cells) != width:
                        if sentinel is not None and cells == [sentinel]:
                            source_cells.clean = True
                            reading = False
                            break
                        if cells:
                            rows += 1
                            _skip(result, reader.line_num + first_line,
                                  f"{len(cells)} cells where the header has {width}")  # fmt: skip
                        continue
                    rows += 1
                    count += 1
                    if progress and not count % 20000:
                        progress(tell())  # type: ignore[misc]
                    try:
                        template = None
                        if time_and_source is not None:
                            template = templates.get(cells_key(cells))  # type: ignore[misc]
                        if template is not None:
                            (head, middle, tail, end, azure_head, azure_tail, action, policy,
                             found) = template  # fmt: skip
                            stamp, ip, port = time_and_source(cells)  # type: ignore[misc]
                            ts = normalize_time(stamp)  # as table_event: a bad time is its error
                            src = source(ip, port)
                            if src is None:
                                template = None
                        if template is None:
                            done, values = render_cells(cells)
                            if done is None:
                                done = _rendered(_event(Row(values), run))
                            ts, src, action, policy, found = (done.ts, done.src, done.action,
                                                              done.policy, done.denied)  # fmt: skip
                            size = done.size
                        else:
                            done = None
                            size = 0
                    except Unsupported as what:
                        result.unsupported[str(what)] = result.unsupported.get(str(what), 0) + 1
                        continue
                    except RowError as error:
                        _skip(result, reader.line_num + first_line, str(error))
                        continue
                    if selector is not None and not selector.keep(ts, action, src):
                        result.filtered += 1
                        continue
                    if done is None:
                        escaped = escape(src)[1:-1]
                        if end is None:
                            add_line(f"{head}{escape(ts)[1:-1]}{middle}{escaped}{tail}")
                        else:
                            add_line(f"{head}{escape(ts)[1:-1]}{middle}{escaped}{tail}{escaped}"
                                     f"{end}")  # fmt: skip
                            add_azure(f"{azure_head}{src}{azure_tail}")
                    else:
                        add_line(done.line)
                        if done.azure:
                            add_azure(done.azure)
                    imported += 1
                    if ts:
                        if not first_seen or ts < first_seen:
                            first_seen = ts
                        last_seen = max(last_seen, ts)
                    if policy:
                        policies.setdefault(policy, None)
                    if action == "Deny":
                        denied.add(found, ts, size)
                    if len(lines) >= WRITE_EVERY:
                        recorder.write_lines(lines, azure)
                        lines.clear()
                        azure.clear()
                        totals.events = written_before + imported  # for the progress line
                else:
                    reading = False
            except csv.Error as error:  # the reader goes on at the next line
                rows += 1
                _skip(result, reader.line_num + first_line, f"not CSV: {error}")
    finally:
        totals.first_seen, totals.last_seen = first_seen, last_seen
        result.rows += rows
    recorder.write_lines(lines, azure)
    result.imported += imported
    totals.events = written_before + imported


def cells_renderer(renderer: RowRenderer, run: str):
    """A CSV row's cells rendered as `_read_fast_csv` renders a row it has no template for:
    (Rendered, the template now kept for its columns, or None)."""
    templates, cells_key = renderer.templates_by_cells, renderer.cells_key

    def render(cells: list[str]) -> tuple[Rendered, object]:
        done, values = renderer.render_cells(cells)
        if done is None:
            done = _rendered(_event(Row(values), run))
        return done, templates.get(cells_key(cells)) if cells_key is not None else None

    return render


def _rendered(event: Event) -> Rendered:
    action = event.would or event.action
    return Rendered(
        event.to_json(), event.azure, event.ts, action, event.src,
        event.rule.get("policy") if event.rule else None,
        identity(event) if action == "Deny" else None,
        (event.bytes_up or 0) + (event.bytes_down or 0),
    )  # fmt: skip


def _skip(result: FileResult, line: int, message: str) -> None:
    result.skipped += 1
    if len(result.problems) < SHOWN_PROBLEMS:
        result.problems.append((line, message))


class _DeniedFold:
    """The denied destinations, folded a batch at a time through `allowlist.candidates` (the
    suggester's own grouping), so memory holds one entry per destination, not every event."""

    def __init__(self, candidates) -> None:
        self._candidates = candidates
        self._batch: list[Event] = []
        self._found: dict[tuple[bool, str], object] = {}

    def add(self, event: Event) -> None:
        self._batch.append(event)
        if len(self._batch) >= FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        for candidate in self._candidates(self._batch):
            key = (candidate.network, candidate.host)
            known = self._found.get(key)
            if known is None:
                self._found[key] = candidate
                continue
            known.protocols |= candidate.protocols  # type: ignore[attr-defined]
            known.connections += candidate.connections  # type: ignore[attr-defined]
            known.first_seen = min(known.first_seen, candidate.first_seen)  # type: ignore[attr-defined]
        self._batch.clear()

    def result(self) -> list:
        self._fold()
        return sorted(self._found.values(), key=lambda candidate: candidate.first_seen)  # type: ignore[attr-defined]


def _write_policy(out: Path, found: list, files: list[str]) -> None:
    from harness.allowlist import learned_policy
    from harness.export.yaml_form import policy_to_yaml

    policy = learned_policy("azure-logs-missing", found)
    header = "\n".join([
        f"Generated by: egress import-logs {' '.join(files)} -o {out}",
        "The rules production was missing: one Allow rule per destination Azure Firewall denied.",
        "Sources are *: set the App Service integration subnet with egress export DIR"
        " --format F --source-addresses CIDR".replace("DIR", str(out)),
    ])  # fmt: skip
    (out / POLICY_FILE).write_text(policy_to_yaml(policy, header=header), encoding="utf-8")


def _write_summary(out: Path, result: ImportResult, filters: Filters) -> None:
    from harness.recording import write_summary

    write_summary(out, {
        "scenario": "azure-logs",
        "origin": ORIGIN,
        "policy": ", ".join(result.policies) or None,
        "mode": "enforce",
        "outcome": "failure" if result.denied_destinations else "success",
        "first_seen": result.first_seen or None,
        "last_seen": result.last_seen or None,
        "events": result.events,
        "denied_destinations": result.denied_destinations,
        "filters": filters.as_dict(),
        "files": [{
            "path": item.path, "format": item.format, "rows": item.rows,
            "imported": item.imported, "filtered": item.filtered, "skipped": item.skipped,
            "unsupported": item.unsupported,
        } for item in result.files],
    })  # fmt: skip
