"""The fast path of `import_logs` (templates per destination, rows as cells) writes the very
bytes the row-by-row Event path (`fast=False`) writes: events.jsonl, azure.log, summary.json
and policy.yaml, for every fixture export and for generated exports whose rows repeat (so
templates are reused) with the values that could trip a template: IPv6 and portless sources,
ports with leading zeros or out of range, quotes, backslashes and non-ASCII text, an address
that is both an HTTPS Fqdn and a network destination, bad times, ICMP and legacy rows."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from harness import logimport
from harness.logimport import import_logs, parse_filters

EXPORTS = Path(__file__).parent / "exports"
FIXTURES = sorted(path.name for path in EXPORTS.iterdir() if path.name != "production-policy.yaml")
OUTPUTS = ("events.jsonl", "azure.log", "summary.json", "policy.yaml")


def _both(tmp_path: Path, files: list[Path], **filters: str) -> dict[str, tuple[bytes, bytes]]:
    """Each output file as (reference, fast); both folders named alike, since the folder's
    name is the events' run."""
    written: dict[str, list[bytes]] = {}
    for fast in (False, True):
        folder = tmp_path / ("fast" if fast else "reference") / "imported"
        result = import_logs(files, folder, parse_filters(**filters), fast=fast)
        for name in OUTPUTS:
            text = (folder / name).read_bytes().replace(str(folder).encode(), b"OUT")
            written.setdefault(name, []).append(text)
        written.setdefault("warnings", []).append("\n".join(result.warnings).encode())
    return {name: tuple(pair) for name, pair in written.items()}  # type: ignore[misc]


def _assert_same(written: dict[str, tuple[bytes, bytes]]) -> None:
    for name, (reference, fast) in written.items():
        assert fast == reference, f"{name} differs"


@pytest.mark.parametrize("name", FIXTURES)
def test_every_fixture_is_written_the_same_by_both_paths(name: str, tmp_path: Path) -> None:
    written = _both(tmp_path, [EXPORTS / name])
    assert written["events.jsonl"][0]  # something was imported
    _assert_same(written)


def test_all_fixtures_at_once_and_filtered_the_same(tmp_path: Path) -> None:
    files = [EXPORTS / name for name in FIXTURES]
    _assert_same(_both(tmp_path / "all", files))
    _assert_same(_both(tmp_path / "filtered", files, source="10.0.2.0/24", action="deny",
                       since="2026-11-28T12:00:02Z"))  # fmt: skip


COLUMNS = [
    "TenantId", "TimeGenerated [UTC]", "Protocol", "SourceIp", "SourcePort", "DestinationPort",
    "Fqdn", "TargetUrl", "Action", "Policy", "RuleCollectionGroup", "RuleCollection", "Rule",
    "ActionReason", "IsTlsInspected", "DestinationIp", "Type", "msg_s",
]  # fmt: skip
SOURCES = [("10.0.2.4", "50000"), ("10.0.2.5", "0443"), ("fd00::5", "40000"), ("10.0.2.6", ""),
           ("10.0.2.7", "70000"), ("", "1"), ("10.0.2.8", " 12"), ("10.0.9.4", "65535"),
           ("10.0.2.ü\\\"", "7")]  # fmt: skip
TIMES = ["11/28/2026, 12:00:01.234 PM", "11/28/2026, 12:00:01.235 PM", "2026-11-28T12:00:02Z",
         "2026-11-28 12:00:03.1234567+01:00", "", "not a time", "11/28/2026, 9:59:59.999 AM",
         # az's form, cached per second: the same second with other fractions, a bad one
         "2026-11-28 12:00:03.123000+00:00", "2026-11-28 12:00:03.987000+00:00",
         "2026-11-28 12:00:03.12x000+00:00", "2026-11-28 12:00:03.123000+01:00",
         " 2026-11-28 12:00:03.12300+00:00"]  # fmt: skip


def _destinations() -> list[dict[str, str]]:
    rule = {"Policy": "fw-prod", "RuleCollectionGroup": "DefaultApplicationRuleCollectionGroup",
            "RuleCollection": "allow-build", "Rule": "build"}  # fmt: skip
    deny = {"ActionReason": "Default Action"}
    return [
        {"Type": "AZFWApplicationRule", "Protocol": "HTTPS", "DestinationPort": "443",
         "Fqdn": "mysite.scm.azurewebsites.net", "Action": "Deny", **deny},
        {"Type": "AZFWApplicationRule", "Protocol": "HTTPS", "DestinationPort": "443",
         "Fqdn": "files.contoso.test", "Action": "Allow", **rule},
        {"Type": "AZFWApplicationRule", "Protocol": "HTTP", "DestinationPort": "80",
         "Fqdn": 'we"ird\\host.test', "TargetUrl": 'http://we"ird/ä?q=1', "Action": "Deny", **deny},
        {"Type": "AZFWApplicationRule", "Protocol": "HTTPS", "DestinationPort": "8443",
         "Fqdn": "203.0.113.7", "Action": "Deny", **deny},
        {"Type": "AZFWNetworkRule", "Protocol": "TCP", "DestinationPort": "8443",
         "DestinationIp": "203.0.113.7", "Action": "Deny", **deny},
        {"Type": "AZFWNetworkRule", "Protocol": "UDP", "DestinationPort": "123",
         "DestinationIp": "2001:db8::1", "Action": "Allow", **rule, "Policy": "fw-ñ"},
        {"Type": "AZFWNetworkRule", "Protocol": "ICMP", "DestinationIp": "203.0.113.9",
         "Action": "Deny"},
        {"Type": "AZFWApplicationRule", "Protocol": "HTTPS", "DestinationPort": "443",
         "Fqdn": "oryx-cdn.microsoft.io", "Action": "deny", **deny},
        {"Type": "AZFWApplicationRule", "Protocol": "FTP", "Fqdn": "x.test", "Action": "Deny"},
        {"Type": "AZFWApplicationRule", "Protocol": "HTTPS", "DestinationPort": "99999",
         "Fqdn": "y.test", "Action": "Deny"},
        {"Type": "AZFWApplicationRule", "Protocol": "HTTPS", "DestinationPort": "443",
         "Fqdn": "", "Action": "Deny", **deny},
        {"Type": "AZFWApplicationRule", "Protocol": "HTTPS", "DestinationPort": "443",
         "Fqdn": "\ue000src\ue001.test", "Action": "Deny", **deny},
        {"Type": "", "msg_s": "HTTPS request from 10.0.2.9:5000 to legacy.test:443. Action: Deny."
         " No rule matched. Proceeding with default action"},
        {"Type": "AZFWApplicationRule", "Protocol": "HTTPS", "DestinationPort": "443",
         "Fqdn": "nosource.test", "Action": "", **deny},
    ]  # fmt: skip


def _rows(count: int) -> list[dict[str, str]]:
    rng = random.Random(13)
    destinations = _destinations()
    rows = []
    for _ in range(count):
        ip, port = rng.choice(SOURCES) if rng.random() < 0.3 else SOURCES[0]
        row = dict.fromkeys(COLUMNS, "")
        row.update(rng.choice(destinations))
        row.update({"TimeGenerated [UTC]": rng.choice(TIMES) if rng.random() < 0.2 else TIMES[0],
                    "SourceIp": ip, "SourcePort": port, "TenantId": "t"})  # fmt: skip
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(row.values())
        handle.write('"broken,row\r\n')  # unreadable to the end: a Bad row at the end
    return path


def _write_az(path: Path, rows: list[dict[str, str]]) -> Path:
    items = []
    for row in rows:
        item = {"TableName": "PrimaryResult"}
        for column, value in row.items():
            item[column.removesuffix(" [UTC]")] = "None" if value == "" else value
        items.append(item)
    path.write_text(json.dumps(items, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def _write_json_lines(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for index, row in enumerate(rows):
            item: dict[str, object] = {k.removesuffix(" [UTC]"): v for k, v in row.items() if v}
            if index % 3 == 0 and str(item.get("SourcePort", "")).isdigit():
                item["SourcePort"] = int(item["SourcePort"])  # type: ignore[arg-type]
            if index % 7 == 0 and str(item.get("DestinationPort", "")).isdigit():
                item["DestinationPort"] = int(item["DestinationPort"])  # type: ignore[arg-type]
            if index % 11 == 0:
                item["DestinationPort"] = True
            if index % 13 == 0:
                item["Fqdn"] = ["not", "text"]  # unhashable: no template is looked up by it
            if index % 17 == 0 and str(item.get("DestinationPort", "")).isdigit():
                item["DestinationPort"] = float(item["DestinationPort"])  # type: ignore[arg-type]
            handle.write(json.dumps(item) + "\n")
    return path


@pytest.mark.parametrize("write", [_write_csv, _write_az, _write_json_lines])
def test_generated_exports_are_written_the_same_by_both_paths(
    write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    # Small fold batches, so that the denied destinations are merged across many of them.
    monkeypatch.setattr(logimport, "FOLD_EVERY", 7)
    export = write(tmp_path / f"export{write.__name__}", _rows(3000))
    written = _both(tmp_path / "plain", [export])
    assert written["events.jsonl"][0].count(b"\n") > 1500
    assert json.loads(written["summary.json"][0])["files"][0]["skipped"] > 0
    _assert_same(written)
    _assert_same(_both(tmp_path / "filtered", [export, export], source="fd00::/64"))
    _assert_same(_both(tmp_path / "allowed", [export], action="allow", until="2026-11-28"))


def test_a_template_is_checked_against_the_event_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A template that would render a row differently from the Event path is not used."""
    from harness.logimport import fast

    renderer = fast.RowRenderer("run")
    row = dict.fromkeys(COLUMNS, "") | _destinations()[0] | {
        "TimeGenerated": "2026-11-28T12:00:01Z", "SourceIp": "10.0.2.4", "SourcePort": "5"}
    assert renderer.render(dict(row)) is not None
    monkeypatch.setattr(fast, "_template", lambda event: fast._Template(
        "x", "", "", None, "", "", "Deny", None, None))  # fmt: skip
    other = fast.RowRenderer("run")
    assert other.render(dict(row)) is None
    assert other.render(dict(row)) is None  # and remembered as not usable


# --- two workers over byte ranges ------------------------------------------------------------


@pytest.fixture
def in_parallel(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Every CSV read by the workers in ranges of a few rows; what happened, to check."""
    from harness.logimport import parallel, sources

    monkeypatch.setattr(parallel, "PARALLEL_FROM", 0)
    monkeypatch.setattr(parallel, "RANGE_BYTES", 1500)
    monkeypatch.setattr(parallel, "workers_available", lambda: 2)
    seen: dict[str, list] = {"parallel": [], "resumed": []}
    real_parallel, real_cells = logimport.read_csv_in_parallel, sources.open_csv_cells

    def spied_parallel(*args, **kwargs):
        seen["parallel"].append(real_parallel(*args, **kwargs))
        return seen["parallel"][-1]

    def spied_cells(*args, **kwargs):
        if kwargs.get("start"):
            seen["resumed"].append(kwargs["start"])
        return real_cells(*args, **kwargs)

    monkeypatch.setattr(logimport, "read_csv_in_parallel", spied_parallel)
    monkeypatch.setattr(sources, "open_csv_cells", spied_cells)
    return seen


def test_a_csv_read_in_ranges_is_written_as_in_one_piece(
    tmp_path: Path, in_parallel: dict[str, list], monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    monkeypatch.setattr(logimport, "FOLD_EVERY", 7)
    rows = _rows(2000)
    for index, row in enumerate(rows[::50]):  # quoted cells with newlines, across ranges
        row["TargetUrl"] = f"http://x.test/{index}\nsecond line\r\nthird"
    export = _write_csv(tmp_path / "export.csv", rows)
    written = _both(tmp_path / "plain", [export])
    assert in_parallel["parallel"] == [True]
    # Only the last range, which ends in the unclosed quote of the broken last row, is read
    # again in this process.
    (resumed,) = in_parallel["resumed"]
    assert resumed > export.stat().st_size - 3000
    assert b"line " in written["warnings"][0]  # the first problems, with their line numbers
    _assert_same(written)
    _assert_same(_both(tmp_path / "filtered", [export, export], source="10.0.2.0/24",
                       action="deny"))  # fmt: skip
    assert in_parallel["parallel"] == [True] * 3


def test_a_damaged_csv_that_fools_the_ranges_is_read_on_in_one_process(
    tmp_path: Path, in_parallel: dict[str, list]
) -> None:  # fmt: skip
    export = _write_csv(tmp_path / "export.csv", _rows(1500))
    text = export.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    # A stray quote in an unquoted cell: the csv module keeps it as text, the quote count
    # that chooses the ranges goes odd, and a range ends inside a row.
    text[700] = text[700].replace(",t,", ',t"x,', 1)
    export.write_text("".join(text), encoding="utf-8-sig")
    written = _both(tmp_path, [export])
    assert in_parallel["parallel"] == [True]
    assert in_parallel["resumed"]
    _assert_same(written)


def test_a_csv_too_plain_to_split_is_read_in_one_process(
    tmp_path: Path, in_parallel: dict[str, list]
) -> None:  # fmt: skip
    export = tmp_path / "export.csv"
    # A bare carriage return in the header's line: two rows before the first newline.
    export.write_text("Type,Fqdn\rSourceIp,x\r\n" + "AZFWApplicationRule,x.test\r\n" * 50)
    _assert_same(_both(tmp_path, [export]))
    assert in_parallel["parallel"] == [False]


# --- a range read line by line (csvlines) -----------------------------------------------------

LINE_SOURCES = [("10.0.2.4", "50000"), ("10.0.2.5", "0443"), ("fd00::5", "40000"),
                ("10.0.2.6", ""), ("10.0.2.7", "70000"), ("", "1"), ("10.0.9.4", "65535"),
                ("10.0.2.8", "0"), ("FD00::A", "9")]  # fmt: skip
LINE_TIMES = ["11/28/2026, 12:00:01.234 PM", "11/28/2026, 12:00:01.999 AM",
              "11/28/2026, 9:59:59.000 PM", "2026-11-28T12:00:02Z",
              "2026-11-28 12:00:03.1234567+01:00", "", "not a time", "13/28/2026, 1:00:00.000 PM",
              "11/28/2026, 1:00:00.0 PM", "11/28/2026, 12:00:01.234 XM"]  # fmt: skip


def _line_rows(count: int) -> list[dict[str, str]]:
    """Rows whose every line the line pattern takes (no quote inside a cell, no line break),
    with the values it must treat as the csv loop does: IPv6, portless and out-of-range
    sources, ports with leading zeros, every time form, bad times, ICMP, DNS-less columns,
    quoted cells with commas in the key, rows too short."""
    rng = random.Random(7)
    destinations = [row for row in _destinations()
                    if '"' not in "".join(row.values())]  # fmt: skip
    destinations.append({"Type": "AZFWApplicationRule", "Protocol": "HTTP",
                         "DestinationPort": "80", "Fqdn": "comma.test", "Action": "Deny",
                         "TargetUrl": "http://comma.test/?a=1,b=2", "ActionReason": "x, y"})  # fmt: skip
    rows = []
    for _ in range(count):
        ip, port = rng.choice(LINE_SOURCES) if rng.random() < 0.4 else LINE_SOURCES[0]
        row = dict.fromkeys(COLUMNS, "")
        row.update(rng.choice(destinations))
        row.update({"TimeGenerated [UTC]": rng.choice(LINE_TIMES) if rng.random() < 0.3
                    else LINE_TIMES[0], "SourceIp": ip, "SourcePort": port, "TenantId": "t"})  # fmt: skip
        rows.append(row)
    return rows


def test_ranges_read_line_by_line_are_written_as_in_one_piece(
    tmp_path: Path, in_parallel: dict[str, list], monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    monkeypatch.setattr(logimport, "FOLD_EVERY", 29)  # batches end inside ranges, and not
    export = tmp_path / "export.csv"
    with export.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for index, row in enumerate(_line_rows(3000)):
            if index == 1000:  # too short for the pattern: its range is read by the csv loop
                handle.write("t,short,row\r\n")
            if index % 700 == 1:  # one cell too many: the pattern takes it, the csv module counts
                writer.writerow([*row.values(), "extra"])
                continue
            writer.writerow(row.values())
    written = _both(tmp_path / "plain", [export])
    assert in_parallel["parallel"] == [True]
    ranges = import_logs([export], tmp_path / "again").files[0].ranges
    assert ranges["lines"] > 200 and ranges["cells"] == 1  # every range but the short row's
    assert b"cells where the header has" in written["warnings"][0]
    assert b"is not a time" in written["warnings"][0]
    _assert_same(written)
    _assert_same(_both(tmp_path / "filtered", [export], source="10.0.2.0/24", action="deny",
                       since="2026-11-28T12:00:01.500Z"))  # fmt: skip


@pytest.mark.parametrize("line", [
    'a,"11/28/2026, 12:00:01.234 PM",HTTPS,10.0.2.4,5,"x""y",AZFWApplicationRule',  # "" in a cell
    'a,"11/28/2026, 12:00:01.234 PM",HTTPS,10.0.2.4,5,"x\rz",AZFWApplicationRule',  # a bare CR
    'a,"11/28/2026, 12:00:01.234 PM",HTTPS,10.0.2.4, 5,x,AZFWApplicationRule',  # a port's space
    'a,"11/28/2026, 12:00:01.234 PM",HTTPS,10.0.2.ü,5,x,AZFWApplicationRule',  # not an IP's text
    'a,11/28/2026" 12:00,HTTPS,10.0.2.4,5,x,AZFWApplicationRule',  # a quote inside a cell
    '',  # an empty line
])  # fmt: skip
def test_a_range_with_a_line_the_pattern_does_not_take_is_left_to_the_csv_loop(line: str) -> None:
    from harness.logimport.csvlines import line_pattern, read_lines

    names = ["TenantId", "TimeGenerated", "Protocol", "SourceIp", "SourcePort", "Fqdn", "Type"]
    pattern = line_pattern(names)
    assert pattern is not None
    good = 'a,"11/28/2026, 12:00:01.234 PM",HTTPS,10.0.2.4,5,x.test,AZFWApplicationRule\r\n'
    assert pattern.regex.findall(good) and not pattern.regex.findall(line + "\r\n")
    result = logimport.FileResult("x", "csv")
    assert read_lines(good + line + "\r\n" + good, pattern, None, None, result, None,  # type: ignore[arg-type]
                          None, None, None) is None  # fmt: skip
    assert result.rows == 0  # nothing was done


@pytest.mark.parametrize("names", [
    ["TimeGenerated", "SourceIp", "SourcePort"], ["SourceIp", "SourcePort", "TimeGenerated", "x"],
    ["TimeGenerated", "x", "SourceIp", "y", "SourcePort", "z"], ["x", "TimeGenerated", "SourceIp"],
    ["TimeGenerated", "SourceIp", "SourceIp", "SourcePort"],
])  # fmt: skip
def test_the_line_pattern_gives_back_each_line_or_is_not_made(names: list[str]) -> None:
    from harness.logimport.csvlines import line_pattern

    pattern = line_pattern(names)
    if {"TimeGenerated", "SourceIp", "SourcePort"} - set(names) or len(set(names)) < len(names) or (
        names.index("SourcePort") < names.index("TimeGenerated")
    ):  # fmt: skip
        assert pattern is None
        return
    assert pattern is not None
    values = {"TimeGenerated": '"11/28/2026, 1:02:03.456 PM"', "SourceIp": "10.0.2.4",
              "SourcePort": "50000", "x": '"a,b"', "y": "", "z": "q,r,s"}  # fmt: skip
    line = ",".join(values[name] for name in names)
    (match,) = pattern.regex.findall(line + "\r\n")
    assert pattern.line(match) == line


_NAMES = ["TenantId", "TimeGenerated", "Protocol", "SourceIp", "SourcePort", "Fqdn", "Type"]
_LINES = ['a,"11/28/2026, 12:00:01.234 PM",HTTPS,10.0.2.4,5,x.test,AZFWApplicationRule',
          'a,"11/28/2026, 12:00:01.234 PM",HTTPS,10.0.2.4,5,"a,b",AZFWApplicationRule',
          'a,"11/28/2026, 12:00:02.5 PM",HTTP,10.0.2.4,,x.test,"AZFW,Rule"',
          '"a,b",2026-11-28T12:00:03Z,"HTTPS",fe80::1,0,"",""']  # fmt: skip


@pytest.mark.parametrize("end", ["\r\n", "\n"])
@pytest.mark.parametrize("last_ended", [True, False])
def test_lines_ending_alike_are_taken_apart_as_the_whole_pattern_takes_them(
    end: str, last_ended: bool,
) -> None:  # fmt: skip
    from harness.logimport.csvlines import line_pattern

    pattern = line_pattern(_NAMES)
    assert pattern is not None
    text = end.join(_LINES) + (end if last_ended else "")
    taken = pattern.matches(text)
    assert taken is not None
    assert taken == (pattern.regex.findall(text), text.count("\n"))
    assert [pattern.line(match) for match in taken[0]] == _LINES


@pytest.mark.parametrize("text", [
    _LINES[0] + '\r\na,"1",HTTPS,10.0.2.4,5,"x\r\ny",z\r\n',  # a cell over two lines
    _LINES[0] + '\r\na,"1",HTTPS,10.0.2.4,5,"x"y,z\r\n',  # a quote that does not end a cell
    _LINES[0] + '\r\na,"1",HTTPS,10.0.2.4,5,x,"z\r\n',  # a quote that never closes
    _LINES[0] + "\r\n" + _LINES[0] + "\n" + _LINES[0] + "\r\n",  # line ends mixed
    _LINES[0] + "\r\n" + _LINES[0] + "\rx\r\n",  # a bare CR
    _LINES[0] + "\n" + _LINES[0] + "\rx\n",  # a bare CR where lines end in LF
])  # fmt: skip
def test_lines_the_csv_module_would_read_otherwise_are_not_taken(text: str) -> None:
    from harness.logimport.csvlines import line_pattern

    pattern = line_pattern(_NAMES)
    assert pattern is not None
    assert pattern.matches(text) is None


# --- JSON arrays in ranges --------------------------------------------------------------------


def _json_ranges_read(tmp_path: Path, export: Path) -> dict[str, int]:
    return import_logs([export], tmp_path / "ranges").files[0].ranges


@pytest.mark.parametrize("indent", [2, None])
def test_a_json_array_read_in_ranges_is_written_as_in_one_piece(
    indent: int | None, tmp_path: Path, in_parallel: dict[str, list],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """az's pretty JSON and a compact array, cut between rows, with the values that could fool
    a cut: `},{` inside strings, a row's own array of objects, a row that is not an object,
    rows with a field of the wrong type (skipped, with their lines), a BOM."""
    monkeypatch.setattr(logimport, "FOLD_EVERY", 29)
    items: list[object] = []
    for index, row in enumerate(_rows(1500)):
        item: dict[str, object] = {"TableName": "PrimaryResult"}
        for column, value in row.items():
            item[column.removesuffix(" [UTC]")] = "None" if value == "" else value
        if index % 97 == 0:
            item["TargetUrl"] = 'http://x.test/?q=},{"a": 1},\n  {'
        if index % 211 == 0:
            item["Extra"] = [{"a": 1}, {"b": [2, {"c": 3}]}]
        items.append(item)
        if index == 400:
            items.append(["not", "an", "object"])
    export = tmp_path / "rows.json"
    export.write_text("\ufeff" + json.dumps(items, indent=indent), encoding="utf-8")
    written = _both(tmp_path / "plain", [export])
    assert b"line " in written["warnings"][0]  # skipped rows, by line
    assert _json_ranges_read(tmp_path, export)["json"] > 20
    _assert_same(written)
    _assert_same(_both(tmp_path / "filtered", [export, export], source="10.0.2.0/24",
                       action="deny", since="2026-11-28T12:00:02Z"))  # fmt: skip


def test_a_json_array_cut_inside_a_row_is_read_on_in_one_process(
    tmp_path: Path, in_parallel: dict[str, list]
) -> None:  # fmt: skip
    """Rows whose own arrays of objects are long enough to hold the cut: the range that does
    not decode, and every one after it, are read in this process, as one array."""
    items = []
    for index, row in enumerate(_rows(300)):
        item = {key.removesuffix(" [UTC]"): value for key, value in row.items() if value}
        if index % 50 == 10:
            item["Nested"] = [{"n": number, "pad": "x" * 40} for number in range(60)]
        items.append(item)
    export = tmp_path / "rows.json"
    export.write_text(json.dumps(items, indent=1), encoding="utf-8")
    written = _both(tmp_path, [export])
    assert _json_ranges_read(tmp_path, export)["json"] >= 1
    _assert_same(written)


@pytest.mark.parametrize("text", ["[]", "  [ \n ]\n", "[\n  {\"SourceIp\": \"10.0.2.4\"},\n  {broken\n]"])
def test_json_arrays_with_no_range_to_cut_are_read_as_one(
    text: str, tmp_path: Path, in_parallel: dict[str, list]
) -> None:  # fmt: skip
    export = tmp_path / "rows.json"
    export.write_text(text, encoding="utf-8")
    _assert_same(_both(tmp_path, [export]))


def test_json_element_lines_are_the_lines_the_stream_gives() -> None:
    from harness.logimport.sources import json_element_lines

    text = '\n  {"a": 1},\n  {"b": "x\\ny"},\n\n  [1,\n 2],'
    assert json_element_lines(text, first=True) == [2, 2, 3]
    assert json_element_lines(text) == [1, 2, 3]


def _turns(tmp_path: Path) -> tuple:
    import threading
    import types

    from harness.logimport import parallel

    (tmp_path / "parked").mkdir()
    turns = (threading.Condition(), types.SimpleNamespace(value=0),
             types.SimpleNamespace(value=0), str(tmp_path / "events.jsonl"),
             str(tmp_path / "azure.log"), str(tmp_path / "parked"))  # fmt: skip
    parallel._worker_start(*turns)
    return turns


def _range_lines(index: int):
    from harness.logimport import parallel

    lines = parallel._RangeLines()
    lines.write_lines([f"event {index}", f"event {index}b"], [f"azure {index}"] if index % 2 else [])
    return lines


def test_ranges_are_appended_in_turn_and_a_failed_one_stops_the_rest(tmp_path: Path) -> None:
    import threading

    from harness.logimport import parallel

    _, turn, writing, events, azure, _ = _turns(tmp_path)
    try:
        ranges = [_range_lines(index) for index in range(5)]
        done: list[object] = []
        # Finished in reverse order; written in file order; range 3 stops, range 4 is not written.
        threads = [threading.Thread(target=lambda i=index: done.append(
            parallel._write_in_turn(i, ranges[i] if i != 3 else None))) for index in (4, 3, 2, 1, 0)]  # fmt: skip
        for thread in threads:
            thread.start()
            thread.join(timeout=10)  # none waits for the ranges before it
            assert not thread.is_alive()
        assert Path(events).read_text() == "".join(
            f"event {index}\nevent {index}b\n" for index in range(3))  # fmt: skip
        assert Path(azure).read_text() == "azure 1\n"
        assert turn.value == parallel._STOPPED and done == [None] * 5 and writing.value == 0
        turn.value = 0
        parallel._TURN[3] = str(tmp_path)  # a folder: cannot be written
        assert "Is a directory" in (parallel._write_in_turn(0, ranges[0]) or "")
        assert turn.value == parallel._STOPPED and writing.value == 0
    finally:
        parallel._TURN.clear()


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (1, 3, 0, 2), (2, 0, 3, 1)])
def test_ranges_finished_in_any_order_are_written_in_file_order(
    order: tuple[int, ...], tmp_path: Path,
) -> None:  # fmt: skip
    from harness.logimport import parallel

    turns = _turns(tmp_path)
    try:
        for index in order:
            assert parallel._write_in_turn(index, _range_lines(index)) is None
        assert Path(turns[3]).read_text() == "".join(
            f"event {index}\nevent {index}b\n" for index in range(4))  # fmt: skip
        assert Path(turns[4]).read_text() == "azure 1\nazure 3\n"
        assert turns[1].value == 4 and turns[2].value == 0
        parallel._wait_written(turns, 4)  # returns: all four are written
    finally:
        parallel._TURN.clear()


def test_ranges_written_by_racing_threads_come_out_in_file_order(tmp_path: Path) -> None:
    import random
    import threading
    import time

    from harness.logimport import parallel

    turns = _turns(tmp_path)
    try:
        rng = random.Random(7)
        delays = [rng.random() / 200 for _ in range(60)]

        def finish(index: int) -> None:
            time.sleep(delays[index])
            assert parallel._write_in_turn(index, _range_lines(index)) is None

        threads = [threading.Thread(target=finish, args=(index,)) for index in range(60)]
        for thread in threads:
            thread.start()
        parallel._wait_written(turns, 60)
        for thread in threads:
            thread.join(timeout=10)
        assert Path(turns[3]).read_text() == "".join(
            f"event {index}\nevent {index}b\n" for index in range(60))  # fmt: skip
        assert turns[1].value == 60 and turns[2].value == 0
    finally:
        parallel._TURN.clear()


@pytest.mark.parametrize("every", [1, 7, 50, 1000])
def test_denials_added_as_summaries_split_where_batches_end_tally_as_one_by_one(every: int) -> None:
    import random

    from harness.logimport.fast import DeniedTally, summarize

    rng = random.Random(every)
    hosts = [(f"h{n}.test", n % 3 == 0, rng.choice(["Https:443", "Http:80", "TCP"])) for n in range(9)]
    denials = [(rng.choice([*hosts, None]), f"2026-11-28T12:00:{rng.randrange(60):02}.000Z",
                rng.randrange(3)) for _ in range(400)]  # fmt: skip
    one_by_one, by_parts = DeniedTally(every), DeniedTally(every)
    for denial in denials:
        one_by_one.add(*denial)
    at = 0
    while at < len(denials):
        size = min(rng.randrange(1, 60), by_parts.room)  # ranges of any size, split at a batch's end
        part = denials[at:at + size]
        assert by_parts.add_summary(len(part), summarize(part))
        at += len(part)
    assert not by_parts.add_summary(by_parts.room + 1, [])  # past the batch's end: refused
    assert [vars(c) for c in by_parts.result()] == [vars(c) for c in one_by_one.result()]
