"""A large CSV export or JSON array (below) read by two worker processes, a byte range each,
written in file order: the same files as reading it in one process, about twice as fast on two
cores. A CSV range is read line by line (`csvlines`) when every line is a plain row, else by the
csv module.

Ranges end just after a newline where an even number of `"` has been seen since the range
began: between rows, in a well-formed CSV (a quoted cell with a newline inside is not cut).
That is a guess for a damaged file (a stray quote in an unquoted cell), so it is checked: each
worker reads its range and then a line that only this import uses (`sentinel`); the range ended
between rows exactly when that line comes back as a row of its own. A range that fails the
check is thrown away with every range after it, and the rest of the file is read in this
process from where that range began (a row's start, since every range before it passed).

Memory: at most WINDOW ranges are out at a time, each RANGE_BYTES of CSV. A worker appends its
range's lines to the recording's files itself (`_write_in_turn`) when every range before it is
written; one that finishes before its turn does not wait for it (a core would stand idle): it
parks its lines in a file, and the worker that writes the range before appends them next. No
line passes through this process.
"""

from __future__ import annotations

__all__ = ["RANGE_BYTES", "WORKERS", "read_csv_in_parallel", "read_json_in_parallel"]

import codecs
import itertools
import multiprocessing
import os
import pickle
import re
import resource
import shutil
import signal
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from harness.runfolder import RecorderError

WORKERS = 2
RANGE_BYTES = 4 << 20
WINDOW = 2 * WORKERS
PARALLEL_FROM = 24 << 20  # smaller files are read in one process (start-up is not free)
_SCAN = 1 << 16


def workers_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _ends(path: Path, start: int, size: int, every: int):
    """Offsets after `start` that end a range: RANGE_BYTES on, just after a newline with an
    even count of quotes since the previous end; the file's size last."""
    with open(path, "rb") as handle:
        begin = start
        while True:
            target = begin + every
            if target >= size:
                yield size
                return
            handle.seek(begin)
            parity = handle.read(target - begin).count(b'"') & 1
            at = target
            while True:
                piece = handle.read(_SCAN)
                if not piece:
                    yield size
                    return
                index = 0
                found = -1
                while True:
                    newline = piece.find(b"\n", index)
                    if newline < 0:
                        parity ^= piece.count(b'"', index) & 1
                        break
                    parity ^= piece.count(b'"', index, newline) & 1
                    if not parity:
                        found = newline
                        break
                    index = newline + 1
                if found >= 0:
                    begin = at + found + 1
                    yield begin
                    break
                at += len(piece)


def _header_end(path: Path, size: int, sentinel: str) -> tuple[int, list[str], int] | None:
    """(offset after the header, its names, its lines), or None when the header cannot be
    told apart safely (then the file is read in one process, which says what is wrong)."""
    from harness.logimport.sources import csv_range_cells

    with open(path, "rb") as handle:
        head = handle.read(min(size, 1 << 20))
    parity = 0
    index = 0
    while True:
        newline = head.find(b"\n", index)
        if newline < 0:
            return None
        parity ^= head.count(b'"', index, newline) & 1
        if not parity:
            break
        index = newline + 1
    end = newline + 1
    text = head[:end].decode("utf-8-sig", errors="replace")
    # The header is the text's one row when the sentinel comes back as the next row by itself.
    header = csv_range_cells(text, None, sentinel)
    if header.ended or not header.names or list(header.reader) != [[sentinel]]:
        return None
    return end, header.names, _line_count(text)


def _line_count(text: str) -> int:
    """Lines as a universal-newline reader counts them (\\n, \\r and \\r\\n each end one)."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


_RENDERERS: dict[tuple, Any] = {}


def _renderer(run: str, names: list[str]):
    """One a worker: its templates serve every range it reads."""
    from harness.logimport.fast import RowRenderer

    key = (run, tuple(names))
    if key not in _RENDERERS:
        _RENDERERS.clear()
        _RENDERERS[key] = RowRenderer(run, names)
    return _RENDERERS[key]


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


_STOPPED = -1
PARKED_AHEAD = 4 * WORKERS  # ranges handed out beyond the one to write next, at most
# In a worker: (condition, the index of the range to write next, whether a worker is writing,
# the recording's 2 files, the folder where ranges finished out of turn wait).
_TURN: list = []


def _worker_start(condition: Any, turn: Any, writing: Any, events: str, azure: str,
                  parked: str) -> None:  # fmt: skip
    """A worker leaves Ctrl-C and SIGTERM to the parent, which ends the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _TURN[:] = [condition, turn, writing, events, azure, parked]


class _Parked:
    """A range's lines, finished before its turn, waiting in two files (or its stop)."""

    def __init__(self, folder: str, index: int) -> None:
        self.events = os.path.join(folder, f"range-{index}.events")
        self.azure = os.path.join(folder, f"range-{index}.azure")
        self.ready = os.path.join(folder, f"range-{index}.parked")
        self.stop = os.path.join(folder, f"range-{index}.stop")

    def park(self, lines: _RangeLines | None) -> str:
        """Write them (or the stop); the marker that says they are whole, under a temporary
        name, to be renamed while the turns' lock is held."""
        if lines is None:
            marker = self.stop
        else:
            for name, parts in ((self.events, lines.events), (self.azure, lines.azure)):
                with open(name, "w", encoding="utf-8") as handle:
                    handle.writelines(parts)
            marker = self.ready
        Path(marker + ".tmp").touch()
        return marker

    def found(self) -> _Parked | None:
        """This range, when it is parked (it may be a stop); None when it is not yet."""
        return self if os.path.exists(self.ready) or os.path.exists(self.stop) else None


def _write_in_turn(index: int, lines: _RangeLines | None) -> str | None:
    """Append range `index`'s lines to the recording in file order, without waiting for the
    ranges before it: in its turn, and with nobody writing, the worker writes them (and then
    every range after it that finished early); else it parks them for whoever writes the range
    before (None for `lines`: the range did not end between rows: stop, so that no range after
    it is written either and the parent reads on from it). An error writing, as text; else None."""
    condition, turn, writing, _, _, folder = _TURN
    with condition:
        if turn.value == _STOPPED:
            return None
        mine = turn.value == index and not writing.value
        if mine:
            writing.value = 1
    if not mine:
        parked = _Parked(folder, index)
        try:
            marker = parked.park(lines)
        except OSError as error:
            _stop_writing()
            return str(error)
        with condition:
            os.replace(marker + ".tmp", marker)
            if turn.value != index or writing.value:
                return None  # the writer of the range before finds it
            writing.value = 1  # that writer has finished and passed the turn on: write it
    return _write_on(index, lines)


def _write_on(index: int, lines: _RangeLines | _Parked | None) -> str | None:
    """As the one writing: range `index`, then each next one that is parked."""
    condition, turn, writing, events, azure, folder = _TURN
    failed = None
    while True:
        if lines is None or (isinstance(lines, _Parked) and os.path.exists(lines.stop)):
            _stop_writing()
            return None
        try:
            for name, parts in ((events, lines.events), (azure, lines.azure)):
                if isinstance(parts, str):
                    _append_file(parts, name)
                elif parts:
                    with open(name, "a", encoding="utf-8") as handle:
                        handle.writelines(parts)
        except OSError as error:
            failed = str(error)
        if failed:
            _stop_writing()
            return failed
        with condition:
            index += 1
            turn.value = index
            condition.notify_all()
            lines = _Parked(folder, index).found()
            if lines is None:
                writing.value = 0
                return None


def _stop_writing() -> None:
    """No range is written any more (a stop, or an error writing): the workers and the parent
    waiting on the turns are told."""
    condition, turn, writing = _TURN[:3]
    with condition:
        turn.value, writing.value = _STOPPED, 0
        condition.notify_all()


def _append_file(source_name: str, target_name: str) -> None:
    """Append a parked file to a recording's file, copied by the kernel where it can (only the
    worker writing in turn writes to the file, so it needs no O_APPEND, which the copy refuses)."""
    with (open(source_name, "rb") as source,
          open(os.open(target_name, os.O_WRONLY | os.O_CREAT, 0o644), "wb") as target):  # fmt: skip
        size, at = os.fstat(source.fileno()).st_size, target.seek(0, os.SEEK_END)
        done = 0
        try:
            while done < size:
                copied = os.copy_file_range(source.fileno(), target.fileno(), size - done,
                                            done, at + done)  # fmt: skip
                if copied == 0:
                    break
                done += copied
        except (AttributeError, OSError):  # no copy_file_range here, or not between these
            pass
        if done < size:
            source.seek(done)
            target.seek(at + done)
            shutil.copyfileobj(source, target, 1 << 20)


def _wait_written(turns: tuple, until: int) -> None:
    """In the parent: until the ranges before `until` are written, or the writing stopped
    (until=_STOPPED: until it stopped)."""
    condition, turn = turns[0], turns[1]
    with condition:
        condition.wait_for(lambda: turn.value == _STOPPED or 0 <= until <= turn.value)


def _read_range(path: str, start: int, end: int, names: list[str], run: str, filters: Any,
                sentinel: str, parts: str, index: int) -> tuple:  # fmt: skip
    """In a worker: range `index` through the import's own CSV loop, its lines appended to the
    recording in turn; what it found, to merge."""
    from harness.logimport import (
        FileResult,
        Filters,
        _read_fast_csv,
        _Selector,
        _Totals,
        cells_renderer,
    )
    from harness.logimport.csvlines import line_pattern, read_lines
    from harness.logimport.fast import summarize
    from harness.logimport.sources import csv_range_cells

    began = time.process_time()
    with open(path, "rb") as handle:
        handle.seek(start)
        text = handle.read(end - start).decode("utf-8", errors="replace")
    result = FileResult(path, "csv")
    totals = _Totals()
    lines = _RangeLines()
    denials = _Denials()
    selector = _Selector(filters) if filters != Filters() else None
    renderer = _renderer(run, names)
    read_by = "lines"
    pattern = line_pattern(names)
    line_count = None if pattern is None else read_lines(
        text, pattern, renderer, cells_renderer(renderer, run), result, selector, lines, totals,
        denials.found)  # fmt: skip
    if line_count is None:
        read_by = "cells"
        cells = csv_range_cells(text, names, sentinel)
        _read_fast_csv(cells, result, run, selector, lines, totals, denials,  # type: ignore[arg-type]
                       renderer)  # fmt: skip
        if not cells.clean:
            _write_in_turn(index, None)
            return (False,)
    failed = _write_in_turn(index, lines)
    if failed:
        return (None, failed)
    # The parent adds a range's denials to its tally per host (summarize), or, when a batch of
    # the tally ends inside the range, each part's from the file, split where the batch ends.
    every_denial = Path(parts) / f"range-{start}.denials"
    every_denial.write_bytes(pickle.dumps(denials.found, pickle.HIGHEST_PROTOCOL))
    if read_by == "cells":  # lines read by lines hold no bare CR: their count is the LFs'
        line_count = _line_count(text)
    return (True, line_count, None, None, result.rows,
            result.imported, result.filtered, result.skipped, result.problems,
            result.unsupported, totals.first_seen, totals.last_seen, list(totals.policies),
            (len(denials.found), summarize(denials.found), str(every_denial)),
            (read_by, time.process_time() - began, _peak_kib()))  # fmt: skip


class _RangeLines:
    """A Recorder's write_lines, kept: the text it would write to each file, in pieces."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.azure: list[str] = []

    def write_lines(self, events: list[str], azure: list[str]) -> None:
        if events:
            self.events += ("\n".join(events), "\n")
        if azure:
            self.azure += ("\n".join(azure), "\n")


class _Denials:
    """DeniedTally.add's arguments in order, for the parent's tally (its batches are global)."""

    def __init__(self) -> None:
        self.found: list[tuple] = []

    def add(self, denied: tuple | None, ts: str, size: int = 0) -> None:
        self.found.append((denied, ts, size))


def read_csv_in_parallel(path: Path, result, run: str, filters, recorder, totals, denied,
                         report) -> bool:  # fmt: skip
    """Import the CSV at `path` with WORKERS processes; False (nothing read) when it is too
    small, the machine has one core, or its header is not plain enough to split after."""
    from harness.logimport import _read_fast_csv, _Selector
    from harness.logimport.sources import open_csv_cells

    size = path.stat().st_size
    if size < PARALLEL_FROM or workers_available() < 2:
        return False
    sentinel = f"egress-import-logs-end-of-range-{uuid.uuid4().hex}"
    header = _header_end(path, size, sentinel)
    if header is None:
        return False
    start, names, lines_before = header
    stopped, _, lines_before = _in_turn(
        recorder, _ends(path, start, size, RANGE_BYTES), start, lines_before, size,
        lambda begin, end, parts, index: (_read_range, (str(path), begin, end, names, run, filters,
                                                        sentinel, parts, index)),
        result, totals, denied, report)  # fmt: skip
    if stopped is not None:
        with open_csv_cells(path, report, start=stopped, names=names,
                            first_line=lines_before) as cells:  # fmt: skip
            _read_fast_csv(cells, result, run, _Selector(filters) if _filtering(filters) else None,
                           recorder, totals, denied)  # fmt: skip
    return True


def _in_turn(recorder, ranges, start: int, lines_before: int, stop_at: int | None, task,
             result, totals, denied, report) -> tuple[int | None, int, int]:  # fmt: skip
    """The `ranges` (their ends, from `start`) read by WORKERS processes, WINDOW at a time and
    at most PARKED_AHEAD past the range to write next, each `task(begin, end, parts, index)`
    giving the function and arguments; merged in file order. (Where the first range that did
    not read as whole rows begins, to read on from in this process, or None; where the ranges
    merged end; the lines before that.) Every range merged is written when it returns."""
    context = _context()
    pending: deque = deque()
    with tempfile.TemporaryDirectory(prefix=".import-ranges-", dir=recorder.folder) as parts:
        turns = _turns(context, recorder, parts)
        with context.Pool(WORKERS, initializer=_worker_start, initargs=turns) as pool:
            begin, exhausted, merged, handed = start, False, 0, 0
            try:
                while True:
                    while not exhausted and len(pending) < WINDOW and (
                        not pending or handed - turns[1].value < PARKED_AHEAD
                    ):  # fmt: skip
                        end = next(ranges, None)
                        if end is None or (stop_at is not None and begin >= stop_at):
                            exhausted = True
                            break
                        function, arguments = task(begin, end, parts, handed)
                        pending.append((begin, end, pool.apply_async(function, arguments)))
                        begin, handed = end, handed + 1
                    if not pending:
                        _wait_written(turns, handed)
                        return None, begin, lines_before
                    begin_of, end_of, waiting = pending.popleft()
                    found = waiting.get()
                    merged += 1
                    if found[0] is None:
                        raise RecorderError(f"cannot write to {recorder.folder}: {found[1]}")
                    if not found[0]:
                        _wait_written(turns, _STOPPED)
                        return begin_of, begin_of, lines_before
                    lines_before = _merge(found, lines_before, result, recorder, totals, denied)
                    if report:
                        report(end_of)
            finally:
                pool.terminate()


def _filtering(filters) -> bool:
    from harness.logimport import Filters

    return filters != Filters()


def _merge(found: tuple, lines_before: int, result, recorder, totals, denied) -> int:
    from harness.logimport.fast import summarize

    (_, lines, _, _, rows, imported, filtered, skipped, problems, unsupported,
     first_seen, last_seen, policies, denials, (read_by, seconds, peak)) = found  # fmt: skip
    result.ranges[read_by] = result.ranges.get(read_by, 0) + 1
    result.worker_cpu += seconds
    result.worker_peak_kib = max(result.worker_peak_kib, peak)
    result.rows += rows
    result.imported += imported
    result.filtered += filtered
    result.skipped += skipped
    for line, message in problems:
        if len(result.problems) < 5:
            result.problems.append((line + lines_before, message))
    for what, count in unsupported.items():
        result.unsupported[what] = result.unsupported.get(what, 0) + count
    if first_seen and (not totals.first_seen or first_seen < totals.first_seen):
        totals.first_seen = first_seen
    totals.last_seen = max(totals.last_seen, last_seen)
    for policy in policies:
        totals.policies.setdefault(policy, None)
    count, hosts, every_denial = denials
    if not denied.add_summary(count, hosts):
        # The batch ends inside this range: its denials are split where each batch ends and
        # each part is added as its summary (replaying them one by one was this process's
        # busiest loop).
        every = pickle.loads(Path(every_denial).read_bytes())
        at = 0
        while at < len(every):
            part = every[at:at + denied.room]
            denied.add_summary(len(part), summarize(part))
            at += len(part)
    os.remove(every_denial)
    totals.events += imported
    return lines_before + lines


# --- JSON arrays ------------------------------------------------------------------------------
# A `json-array` export (az monitor log-analytics query -o json, the portal's JSON) is cut the
# same way: a range ends just after a `}` `,` that a `{` follows, and a worker decodes its
# range in one call, as the array `[range]` (json_array_part). That is a guess too (such bytes
# can sit inside a string, or between the objects of a row's own array); it holds exactly when
# every range decodes so: the ranges then join into the file's array, element by element, the
# one way JSON parses it. The last range, and from the first that does not decode every one
# after it, are read in this process (json_array_rest).

_OBJECT_END = re.compile(rb"\}[ \t\r\n]*,(?=[ \t\r\n]*\{)")


def _json_ends(path: Path, start: int, size: int, every: int):
    """Offsets after `start` that end a range: RANGE_BYTES on, just after a `}` `,` before a
    `{`; None when there is none further (the rest is one range, read in this process)."""
    with open(path, "rb") as handle:
        begin = start
        while begin + every < size:
            at = begin + every
            handle.seek(at)
            found = None
            while found is None:
                piece = handle.read(_SCAN)
                if not piece:
                    return
                # Overlap a piece's end with the next one's start: a match may straddle them.
                match = _OBJECT_END.search(piece + handle.read(64))
                handle.seek(at + len(piece))
                if match and match.start() < len(piece):
                    found = at + match.end()
                at += len(piece)
            begin = found
            yield begin


def _array_start(path: Path, size: int) -> tuple[int, int] | None:
    """(offset just after the array's `[`, newlines before it), or None."""
    with open(path, "rb") as handle:
        head = handle.read(min(size, 1 << 16))
    offset = 3 if head.startswith(codecs.BOM_UTF8) else 0
    stripped = head[offset:].lstrip(b" \t\r\n")
    if not stripped.startswith(b"["):
        return None
    at = len(head) - len(stripped) + 1
    return at, head[:at].count(b"\n")


def _read_json_range(path: str, start: int, end: int, run: str, filters: Any, parts: str,
                     first: bool, index: int) -> tuple:  # fmt: skip
    """In a worker: one range of a JSON array, decoded in one call, through the import's own
    row loop; as _read_range. Rows that are skipped need their lines: then the range is read
    again with each element's line (a rare, small cost)."""
    from harness.logimport import FileResult, Filters, _read_fast, _Selector, _Totals
    from harness.logimport.fast import summarize
    from harness.logimport.sources import _object_row, json_array_part, json_element_lines

    began = time.process_time()
    with open(path, "rb") as handle:
        handle.seek(start)
        text = handle.read(end - start).decode("utf-8", errors="replace")
    items = json_array_part(text)
    if items is None:
        _write_in_turn(index, None)
        return (False,)
    selector = _Selector(filters) if filters != Filters() else None
    numbers: Any = itertools.repeat(0)
    while True:
        result = FileResult(path, "json-array")
        totals = _Totals()
        denials = _Denials()
        lines = _RangeLines()
        _read_fast(zip(numbers, map(_object_row, items), strict=False), result, run,
                   selector, lines, totals, denials, _renderer(run, []))  # type: ignore[arg-type]  # fmt: skip
        if not result.skipped or numbers.__class__ is list:
            break
        numbers = json_element_lines(text, first=first)
    failed = _write_in_turn(index, lines)
    if failed:
        return (None, failed)
    every_denial = Path(parts) / f"range-{start}.denials"
    every_denial.write_bytes(pickle.dumps(denials.found, pickle.HIGHEST_PROTOCOL))
    return (True, text.count("\n"), None, None, result.rows,
            result.imported, result.filtered, result.skipped, result.problems,
            result.unsupported, totals.first_seen, totals.last_seen, list(totals.policies),
            (len(denials.found), summarize(denials.found), str(every_denial)),
            ("json", time.process_time() - began, _peak_kib()))  # fmt: skip


def read_json_in_parallel(path: Path, result, run: str, filters, recorder, totals, denied,
                          report) -> bool:  # fmt: skip
    """Import the `json-array` file at `path` with WORKERS processes; False (nothing read) when
    it is too small, the machine has one core, or it does not start as an array."""
    from harness.logimport import _read_fast, _Selector
    from harness.logimport.sources import json_array_rest

    size = path.stat().st_size
    if size < PARALLEL_FROM or workers_available() < 2:
        return False
    found_start = _array_start(path, size)
    if found_start is None:
        return False
    start, lines_before = found_start
    # The rest (after the last range merged: all, or from one that did not decode) read here.
    _, resume, lines_before = _in_turn(
        recorder, _json_ends(path, start, size, RANGE_BYTES), start, lines_before, None,
        lambda begin, end, parts, index: (_read_json_range, (str(path), begin, end, run, filters,
                                                             parts, begin == start, index)),
        result, totals, denied, report)  # fmt: skip
    _read_fast(json_array_rest(path, resume, lines_before + 1, report, first=resume == start),
               result, run,
               _Selector(filters) if _filtering(filters) else None, recorder, totals, denied)  # fmt: skip
    return True


def _turns(context, recorder, parked: str) -> tuple:
    """The workers' turns to write (see _write_in_turn), from the first range; the recording's
    files flushed first (appending no bytes), so that the workers' lines come after its own."""
    from harness.runfolder import AZURE_LOG, EVENTS

    empty = Path(recorder.folder) / ".import-flush"
    empty.touch()
    try:
        recorder.append_files(empty, empty)
    finally:
        empty.unlink()
    return (context.Condition(), context.RawValue("q", 0), context.RawValue("b", 0),
            str(Path(recorder.folder) / EVENTS), str(Path(recorder.folder) / AZURE_LOG), parked)


def _context():
    # forkserver, not fork: the caller may have threads (pytest, a progress thread), and a
    # forked child of a threaded process can deadlock on a lock some thread held. The server
    # imports the import's modules once, not each worker.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["harness.logimport"])
    return context
