"""Reading Azure Firewall log exports as a stream of rows, the format told per file from its
first bytes. Memory stays bounded by one read chunk and one row, whatever the file's size.

    detect(path)          -> the format's name (FORMATS), or raises UnknownFormat
    stream(path, format)  -> (line, Row | Line | Bad) in file order

Formats (the names users see):
- `csv`: the Log Analytics portal's CSV export (headers such as `TimeGenerated [UTC]`; the
  bracket is dropped), or any CSV with the tables' column names; AzureDiagnostics' `msg_s` too.
- `json-array`: one JSON array of row objects: `az monitor log-analytics query -o json` (every
  value a string, `None` for empty, a `TableName` column) and the portal's JSON export.
- `json-lines`: one row object a line (`egress logs --format azfw-json`, Azure storage
  archives with `properties`).
- `query-api`: the Log Analytics query API's answer, `{"tables": [{"name", "columns": [{"name",
  "type"}], "rows": [[...]]}]}`.
- `text`: legacy msg lines, one a line, optionally after a timestamp and a tab or spaces.

A row that cannot be parsed (broken JSON, a CSV line with the wrong number of cells) comes out
as `Bad(message)` and the stream goes on at the next row.
"""

from __future__ import annotations

__all__ = [
    "FORMATS",
    "Bad",
    "CsvCells",
    "Line",
    "LocalTimes",
    "Row",
    "UnknownFormat",
    "csv_range_cells",
    "detect",
    "json_array_part",
    "json_array_rest",
    "json_element_lines",
    "open_csv_cells",
    "stream",
]  # fmt: skip

import codecs
import contextlib
import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from harness.logimport.rows import is_legacy_line

FORMATS = {
    "csv": "Log Analytics CSV export (portal, `TimeGenerated [UTC]` headers)",
    "json-array": "JSON array of rows (az monitor log-analytics query -o json, portal JSON export)",
    "json-lines": "JSON lines, one row object a line",
    "query-api": "Log Analytics query API response (tables[].columns / rows)",
    "text": "legacy log lines (AzureDiagnostics msg_s), one a line",
}
# Columns that make a CSV header or a JSON row one of ours.
KNOWN_COLUMNS = frozenset({
    "msg_s", "msg", "Category", "Type", "TimeGenerated", "SourceIp", "SourcePort", "Fqdn",
    "TargetUrl", "DestinationIp", "DestinationPort", "QueryName", "ServerIp", "TranslatedIp",
    "Action", "properties",
})  # fmt: skip
IDENTIFYING_COLUMNS = frozenset({"msg_s", "msg", "SourceIp", "Fqdn", "QueryName", "ServerIp",
                                 "properties"})  # fmt: skip
CHUNK = 1 << 20
HEAD = 64 * 1024


class UnknownFormat(ValueError):
    """No known format matches the file; the message says what its start looks like."""


class LocalTimes(ValueError):
    """A portal CSV exported in local time (`TimeGenerated [Local Time]`): no offset to undo."""


# Plain classes, not frozen dataclasses: one is made per row, and a frozen dataclass's
# __init__ costs several times a plain one's.
class Row:
    """A table row: column name -> value (JSON types, or strings from CSV and az)."""

    __slots__ = ("strings", "values")

    def __init__(self, values: dict[str, Any], strings: bool = False) -> None:
        self.values = values
        self.strings = strings  # az's str() of every value: "None" means empty


class Line:
    """A legacy msg line, with the time written before it (or "")."""

    __slots__ = ("text", "ts")

    def __init__(self, text: str, ts: str = "") -> None:
        self.text = text
        self.ts = ts


class Bad:
    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


Item = Row | Line | Bad


def _open_text(path: Path) -> tuple[IO[bytes], IO[str]]:
    raw = open(path, "rb")  # noqa: SIM115 - the caller closes both
    return raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")


def _head(path: Path) -> str:
    with open(path, "rb") as handle:
        data = handle.read(HEAD)
    return codecs.getincrementaldecoder("utf-8-sig")(errors="replace").decode(data)


_API_START = re.compile(r'\s*\{\s*"tables"\s*:')
_STAMPED = re.compile(r"(\d{4}-\d\d-\d\d[T ][\d:.]+Z?|\d{1,2}/\d{1,2}/\d{4},? [\d:.]+ ?[AP]M)"
                      r"(?:\t| {1,4}|,)(.*)")  # fmt: skip


def split_stamp(line: str) -> tuple[str, str]:
    """(time, msg) of a pasted line that starts with a timestamp; ("", line) otherwise."""
    if line[:1].isdigit():
        match = _STAMPED.fullmatch(line)
        if match and is_legacy_line(match.group(2)):
            return match.group(1), match.group(2)
    return "", line


def detect(path: Path) -> str:
    head = _head(path)
    text = head.lstrip()
    if not text:
        raise UnknownFormat("the file is empty")
    if text[0] == "[":
        _check_first_object(text)
        return "json-array"
    if text[0] == "{":
        if _API_START.match(text):
            rows_at = text.find('"rows"')
            columns = text[: rows_at if rows_at >= 0 else len(text)]
            if rows_at >= 0 and not _API_COLUMN.search(columns):
                raise UnknownFormat("its tables have none of the columns "
                                    f"{', '.join(sorted(IDENTIFYING_COLUMNS))}")  # fmt: skip
            return "query-api"
        first = text.split("\n", 1)[0].strip()
        try:
            row = json.loads(first)
        except json.JSONDecodeError:
            raise UnknownFormat("it starts with '{' but its first line is not a JSON object"
                                " and it has no \"tables\" key first") from None  # fmt: skip
        if isinstance(row, dict) and IDENTIFYING_COLUMNS & row.keys():
            return "json-lines"
        raise UnknownFormat(f"its first JSON object has none of the columns "
                            f"{', '.join(sorted(IDENTIFYING_COLUMNS))}")  # fmt: skip
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    if is_legacy_line(first_line.strip()) or split_stamp(first_line.strip())[0]:
        return "text"
    header = next(csv.reader([first_line]))
    names = {_column_name(name) for name in header}
    if len(header) > 1 and IDENTIFYING_COLUMNS & names:
        for name in header:
            zone = name.strip()
            if _column_name(zone) != zone and not zone.endswith(" [UTC]"):
                raise LocalTimes(f"the column {zone!r} holds times without an offset")
        return "csv"
    shown = first_line[:80] + ("..." if len(first_line) > 80 else "")
    raise UnknownFormat(f"its first line {shown!r} is neither a CSV header with the tables'"
                        " columns nor an Azure Firewall log line")  # fmt: skip


_API_COLUMN = re.compile(r'"name"\s*:\s*"(?:' + "|".join(sorted(IDENTIFYING_COLUMNS)) + ')"')


def _check_first_object(text: str) -> None:
    """A JSON array whose first row (when it fits in the head) has none of our columns is
    some other export: say so, rather than skip every row."""
    start = _WHITESPACE.match(text, 1).end()  # type: ignore[union-attr]
    try:
        first, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return  # a longer first row, or damage: the rows will tell
    if isinstance(first, dict) and not IDENTIFYING_COLUMNS & first.keys():
        raise UnknownFormat("its first row has none of the columns "
                            f"{', '.join(sorted(IDENTIFYING_COLUMNS))}")  # fmt: skip


def _column_name(header: str) -> str:
    """`TimeGenerated [UTC]` -> `TimeGenerated` (the portal adds the time zone)."""
    name = header.strip()
    if name.endswith("]") and " [" in name:
        name = name[: name.rindex(" [")]
    return name


Progress = Callable[[int], None]  # bytes read so far


def stream(path: Path, fmt: str, progress: Progress | None = None) -> Iterator[tuple[int, Item]]:
    """(line number, item) for every row of `path` read as `fmt`."""
    raw, text = _open_text(path)
    try:
        tell = (lambda: raw.tell()) if progress else None
        if fmt == "text":
            yield from _text_lines(text, progress, tell)
        elif fmt == "csv":
            yield from _csv_rows(text, progress, tell)
        elif fmt == "json-lines":
            yield from _json_lines(text, progress, tell)
        elif fmt == "json-array":
            reader = _JsonReader(text, progress, tell)
            yield from reader.array(_object_row)
            reader.trailing()
        elif fmt == "query-api":
            yield from _JsonReader(text, progress, tell).api_tables()
        else:  # pragma: no cover - fmt comes from detect()
            raise ValueError(fmt)
    finally:
        text.close()
        raw.close()


def _report(progress: Progress | None, tell: Callable[[], int] | None, count: int) -> None:
    if progress and tell and count % 20000 == 0:
        progress(tell())


def _text_lines(text: IO[str], progress: Progress | None, tell) -> Iterator[tuple[int, Item]]:
    for number, line in enumerate(text, start=1):
        stripped = line.rstrip("\r\n")
        if not stripped.strip():
            continue
        ts, msg = split_stamp(stripped)
        yield number, Line(msg, ts)
        _report(progress, tell, number)


def _csv_rows(text: IO[str], progress: Progress | None, tell) -> Iterator[tuple[int, Item]]:
    cells_of = _csv_cells(text, progress, tell)
    names = next(cells_of)[1]
    for line, cells in cells_of:
        # An empty cell is an empty column, as in the portal; "None" is only az's.
        yield line, Row(dict(zip(names, cells))) if cells.__class__ is list else cells  # type: ignore[arg-type]


class CsvCells:
    """A CSV's rows as the csv module reads them, for a loop that checks their widths itself
    (the import's: a generator's step a row cost as much as the rest of the row). `names`:
    the header's, or None to read it first; `ended`: nothing more to read (no header);
    `header_problem`: (line, Bad) when the header is not CSV. With a `sentinel`, the loop sets
    `clean` when it comes back as a row of its own (see csv_range_cells)."""

    def __init__(self, lines: Iterable[str], *, names: list[str] | None = None,
                 first_line: int = 0, sentinel: str | None = None,
                 progress: Progress | None = None, tell: Callable[[], int] | None = None,
                 ) -> None:  # fmt: skip
        self.reader = csv.reader(lines)
        self.first_line = first_line
        self.sentinel = sentinel
        self.clean = False
        self.progress = progress
        self.tell = tell
        self.ended = False
        self.header_problem: tuple[int, Bad] | None = None
        if names is None:
            try:
                header = next(self.reader)
            except StopIteration:
                header, self.ended = [], True
            except csv.Error as error:
                header, self.ended = [], True
                self.header_problem = (self.reader.line_num,
                                       Bad(f"the header is not CSV: {error}"))  # fmt: skip
            names = [_column_name(name) for name in header]
        self.names = names


@contextlib.contextmanager
def open_csv_cells(path: Path, progress: Progress | None = None, *, start: int = 0,
                   names: list[str] | None = None, first_line: int = 0,
                   ) -> Iterator[CsvCells]:  # fmt: skip
    """A CSV file as `stream` reads it, its rows left as lists of cells. From `start` (a byte
    offset where a row begins, after line `first_line`) with the header's `names`, to read
    on from there."""
    with open(path, "rb") as raw:
        raw.seek(start)
        text = io.TextIOWrapper(raw, encoding="utf-8-sig" if start == 0 else "utf-8",
                                errors="replace", newline="")  # fmt: skip
        yield CsvCells(text, names=names, first_line=first_line, progress=progress,
                       tell=(lambda: raw.tell()) if progress else None)  # fmt: skip


def csv_range_cells(text: str, names: list[str] | None, sentinel: str) -> CsvCells:
    """The rows of `text`, part of a CSV file from a row's start to just after a newline, as
    open_csv_cells gives them (line numbers from the part's start), then the line `sentinel`:
    the part ended between rows when that comes back as a row of its own (`clean`)."""
    lines = itertools.chain(io.StringIO(text, newline=""), [sentinel + "\r\n"])
    return CsvCells(lines, names=names, sentinel=sentinel)


def json_array_rest(path: Path, start: int, first_line: int, progress: Progress | None = None,
                    *, first: bool = False) -> Iterator[tuple[int, Item]]:  # fmt: skip
    """The rows of a `json-array` file from `start`, a byte offset just after its `[`
    (`first`) or after the comma that ends an element (on line `first_line`), as `stream`
    gives them."""
    with open(path, "rb") as raw:
        raw.seek(start)
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        reader = _JsonReader(text, progress, (lambda: raw.tell()) if progress else None)
        reader.line = first_line
        if first and reader.peek() == "]":  # as array() reads an empty one
            return
        yield from reader.elements(_object_row)


def json_array_part(text: str) -> list[Any] | None:
    """The elements of `text`, the part of a JSON array from an element's start to just after
    the comma that ends one, or None when it is not that (then it was not cut between rows)."""
    body = text.rstrip(" \t\r\n")
    if not body.endswith(","):
        return None
    try:
        items = json.loads(f"[{body[:-1]}]")
    except (json.JSONDecodeError, RecursionError):
        return None
    return items if items.__class__ is list else None


def json_element_lines(text: str, first: bool = False) -> list[int]:
    """The line (from 1) `stream` gives each element of json_array_part(text): the line of the
    comma before it, or for the array's first element (`first`: text starts after `[`), its own."""
    decode = json.JSONDecoder().raw_decode
    lines = []
    position = line = 0
    while True:
        start = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
        if start >= len(text):
            return lines
        if first:
            line += text.count("\n", position, start)
            lines.append(line + 1)
            first = False
        else:
            lines.append(line + 1)
            line += text.count("\n", position, start)
        _, end = decode(text, start)
        line += text.count("\n", start, end)
        after = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
        line += text.count("\n", end, after)
        position = after + 1  # past the comma
        if after >= len(text) or text[after] != ",":
            return lines


def _csv_cells(text: IO[str], progress: Progress | None, tell) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        yield 0, []
        return
    except csv.Error as error:
        yield 0, []
        yield reader.line_num, Bad(f"the header is not CSV: {error}")
        return
    names = [_column_name(name) for name in header]
    yield 0, names
    width = len(names)
    count = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield reader.line_num, Bad(f"not CSV: {error}")
            continue
        if len(cells) != width:
            if cells:
                yield reader.line_num, Bad(f"{len(cells)} cells where the header has {width}")
            continue
        yield reader.line_num, cells
        count += 1
        if progress and not count % 20000:
            progress(tell())


def _object_row(item: Any) -> Item:
    if not isinstance(item, dict):
        return Bad(f"a row is a JSON object, not {type(item).__name__}")
    properties = item.get("properties")
    if isinstance(properties, dict):  # Azure's storage and Event Hub archives
        merged = {**properties, **{k: v for k, v in item.items() if k != "properties"}}
        if "TimeGenerated" not in merged and "time" in item:
            merged["TimeGenerated"] = item["time"]
        if "msg" in properties and "msg_s" not in merged:
            merged["msg_s"] = properties["msg"]
        item = merged
    # az monitor log-analytics query prints str() of every value and a TableName column.
    return Row(item, strings="TableName" in item)


def _json_lines(text: IO[str], progress: Progress | None, tell) -> Iterator[tuple[int, Item]]:
    decode = json.JSONDecoder().decode
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            item = decode(line)
        except json.JSONDecodeError as error:
            yield number, Bad(f"not JSON: {error.msg}")
            continue
        except RecursionError:
            yield number, Bad("JSON nested too deeply for a row")
            continue
        yield number, _object_row(item)
        _report(progress, tell, number)


_WHITESPACE = re.compile(r"[ \t\r\n]*")
# Where the next row of an array probably starts after a damaged one.
_RESYNC = re.compile(r"[}\]]\s*,\s*(?=[\[{])")


class _JsonReader:
    """Just enough of a streaming JSON reader for one array of rows, or the query API's
    `tables`: values are decoded one row at a time with the C decoder (`raw_decode`)."""

    def __init__(self, text: IO[str], progress: Progress | None, tell) -> None:
        self.text = text
        self.buffer = ""
        self.pos = 0
        self.line = 1  # the line at self.pos
        self.eof = False
        self.decode = json.JSONDecoder().raw_decode
        self.progress = progress
        self.tell = tell
        self.rows = 0

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.text.read(CHUNK)
        if not data:
            self.eof = True
            return False
        self.buffer = self.buffer[self.pos :] + data
        self.pos = 0
        if self.progress and self.tell:
            self.progress(self.tell())
        return True

    def _advance(self, to: int) -> None:
        self.line += self.buffer.count("\n", self.pos, to)
        self.pos = to

    def peek(self) -> str:
        """The next non-blank character ("" at the end), not consumed."""
        while True:
            end = _WHITESPACE.match(self.buffer, self.pos).end()  # type: ignore[union-attr]
            self._advance(end)
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self._fill():
                return ""

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            raise _Broken(f"expected {char!r}, found {found or 'the end of the file'!r}", self.line)
        self._advance(self.pos + 1)

    def value(self) -> Any:
        self.peek()  # raw_decode does not skip leading blanks
        while len(self.buffer) - self.pos < HEAD and self._fill():
            pass
        while True:
            try:
                item, end = self.decode(self.buffer, self.pos)
            except json.JSONDecodeError as error:
                if self._fill():
                    continue
                raise _Broken(f"not JSON: {error.msg}", self.line) from None
            except RecursionError:
                raise _Broken("JSON nested too deeply for a row", self.line) from None
            self._advance(end)
            return item

    def _resync(self) -> bool:
        """After a damaged row: on to the next one, if one can be found."""
        while True:
            match = _RESYNC.search(self.buffer, self.pos + 1)
            if match:
                self._advance(match.end())
                return True
            if not self._fill():
                return False

    def array(self, convert: Callable[[Any], Item]) -> Iterator[tuple[int, Item]]:
        try:
            self.expect("[")
            if self.peek() == "]":
                self._advance(self.pos + 1)
                return
        except _Broken as broken:
            yield broken.line, Bad(broken.message)
            return
        yield from self.elements(convert)

    def elements(self, convert: Callable[[Any], Item]) -> Iterator[tuple[int, Item]]:
        """An array's elements from one's start (after `[` or a `,`) to its `]`."""
        while True:
            line = self.line
            try:
                item = self.value()
            except _Broken as broken:
                yield line, Bad(broken.message)
                if self._resync():
                    continue
                return
            yield line, convert(item)
            self.rows += 1
            if self.rows % 20000 == 0 and self.progress and self.tell:
                self.progress(self.tell())
            after = self.peek()
            if after == ",":
                self._advance(self.pos + 1)
            elif after == "]":
                self._advance(self.pos + 1)
                return
            else:
                yield self.line, Bad(f"expected ',' or ']' after a row, found {after or 'the end'!r}")
                if not after or not self._resync():
                    return

    def trailing(self) -> None:
        """Nothing but blanks may follow the array."""

    def api_tables(self) -> Iterator[tuple[int, Item]]:
        try:
            self.expect("{")
            while True:
                key = self.value()
                self.expect(":")
                if key == "tables":
                    self.expect("[")
                    if self.peek() == "]":
                        self._advance(self.pos + 1)
                    else:
                        while True:
                            yield from self._api_table()
                            if self.peek() == ",":
                                self._advance(self.pos + 1)
                                continue
                            self.expect("]")
                            break
                else:
                    self.value()
                if self.peek() == ",":
                    self._advance(self.pos + 1)
                    continue
                self.expect("}")
                return
        except _Broken as broken:
            yield broken.line, Bad(broken.message)

    def _api_table(self) -> Iterator[tuple[int, Item]]:
        self.expect("{")
        names: list[str] | None = None
        held: list[Any] | None = None
        held_line = self.line
        if self.peek() == "}":
            self._advance(self.pos + 1)
            return
        while True:
            key = self.value()
            self.expect(":")
            if key == "columns":
                columns = self.value()
                names = _column_names(columns, self.line)
                if held is not None:  # rows came first: the small, unusual case
                    for row in held:
                        yield held_line, _api_row(names, row)
                    held = None
            elif key == "rows" and names is not None:
                yield from self.array(lambda row, names=names: _api_row(names, row))
            elif key == "rows":
                held_line = self.line
                held = self.value()
                if not isinstance(held, list):
                    raise _Broken("rows is not a list", held_line)
            else:
                self.value()
            if self.peek() == ",":
                self._advance(self.pos + 1)
                continue
            self.expect("}")
            if held is not None:
                raise _Broken("a table has rows but no columns", held_line)
            return


class _Broken(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _column_names(columns: Any, line: int) -> list[str]:
    if not isinstance(columns, list) or not all(
        isinstance(column, dict) and isinstance(column.get("name"), str) for column in columns
    ):
        raise _Broken('columns is not a list of {"name", "type"} objects', line)
    return [column["name"] for column in columns]


def _api_row(names: list[str], row: Any) -> Item:
    if not isinstance(row, list):
        return Bad(f"a row is a JSON array, not {type(row).__name__}")
    if len(row) != len(names):
        return Bad(f"{len(row)} values where the table has {len(names)} columns")
    return Row(dict(zip(names, row, strict=True)))
