"""Every command that reads a recording, over every kind of damage a recording can carry: the
undamaged part is still read, the damage is named in one warning, and nothing crashes. A
recording is evidence; it is read leniently (harness.runfolder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.events import Event
from harness.runfolder import EVENTS, SUMMARY, TIMED_OUTPUT, Recorder

POLICY = 'name: p\nallow: ["kept.example.test"]\n'


def allowed(host: str, second: int) -> Event:
    return Event(
        ts=f"2026-11-28T12:00:0{second}.000Z", run="r", kind="tls", src="10.0.2.4:5000",
        dst="203.0.113.8:443", host=host, port=443, protocol="HTTPS", action="Deny",
        would="Deny", reason="No rule matched. Proceeding with default action", bytes_up=10,
        azure=f"HTTPS request from 10.0.2.4:5000 to {host}:443. Action: Deny. No rule matched.",
    )  # fmt: skip


def tcp(second: int) -> Event:
    return Event(
        ts=f"2026-11-28T12:00:0{second}.000Z", run="r", kind="tcp", src="10.0.2.4:5001",
        dst="192.0.2.9:22", port=22, protocol="TCP", action="Deny", would="Deny",
        azure="TCP request from 10.0.2.4:5001 to 192.0.2.9:22. Action: Deny",
    )  # fmt: skip


def good_recording(folder: Path) -> Path:
    recorder = Recorder(folder)
    recorder.write(allowed("kept.example.test", 1))
    recorder.write(tcp(2))
    recorder.write(allowed("also-kept.example.test", 3))
    recorder.close()
    (folder / SUMMARY).write_text(json.dumps({"scenario": "s", "mode": "audit",
                                              "outcome": "failure", "policy": "p"}))  # fmt: skip
    (folder / TIMED_OUTPUT).write_text(
        json.dumps({"ts": "2026-11-28T12:00:01.500Z", "line": "ERROR: could not connect"}) + "\n"
    )
    (folder / "policy.yaml").write_text(POLICY)
    return folder


def _event_line(**fields: object) -> bytes:
    data = json.loads(allowed("damaged.example.test", 4).to_json())
    data.update(fields)
    return json.dumps(data).encode()


def _insert_event_line(line: bytes):
    def damage(folder: Path) -> None:
        path = folder / EVENTS
        lines = path.read_bytes().splitlines()
        path.write_bytes(b"\n".join([lines[0], line, *lines[1:]]) + b"\n")

    return damage


def _append_cut(line: bytes):
    def damage(folder: Path) -> None:
        with (folder / EVENTS).open("ab") as stream:
            stream.write(line)

    return damage


def _write(name: str, data: bytes):
    def damage(folder: Path) -> None:
        (folder / name).write_bytes(data)

    return damage


def _append(name: str, data: bytes):
    def damage(folder: Path) -> None:
        with (folder / name).open("ab") as stream:
            stream.write(data)

    return damage


DAMAGE = {
    "non-utf8-line": _insert_event_line(b'{"v": 1, "host": "\xff\xfe"}'),
    "non-utf8-cut-last-line": _append_cut(b'{"v": 1, "ts": "\xc3'),
    "not-json": _insert_event_line(b"{not json"),
    "a-json-list": _insert_event_line(b"[1, 2]"),
    "deeply-nested": _insert_event_line(b"[" * 100_000 + b"]" * 100_000),
    "host-a-number": _insert_event_line(_event_line(host=5)),
    "rule-a-string": _insert_event_line(_event_line(rule="x")),
    "src-a-number": _insert_event_line(_event_line(src=5)),
    "kind-a-number": _insert_event_line(_event_line(kind=5)),
    "kind-unknown": _insert_event_line(_event_line(kind="smtp")),
    "port-a-string": _insert_event_line(_event_line(port="x")),
    "port-too-big": _insert_event_line(_event_line(port=70000)),
    "bytes-a-float-nan": _insert_event_line(b'{"v": 1, "ts": "t", "run": "r", "kind": "tls",'
                                            b' "bytes_up": NaN}'),
    "ts-missing": _insert_event_line(b'{"v": 1, "run": "r", "kind": "tls"}'),
    "summary-empty": _write(SUMMARY, b""),
    "summary-unparsable": _write(SUMMARY, b'{"scenario": '),
    "summary-a-list": _write(SUMMARY, b"[1, 2]"),
    "summary-non-utf8": _write(SUMMARY, b'{"scenario": "\xff"}'),
    "summary-wrong-types": _write(SUMMARY, b'{"scenario": 5, "outcome": ["failure"]}'),
    "output-without-ts": _append(TIMED_OUTPUT, b'{"line": "x"}\n'),
    "output-without-line": _append(TIMED_OUTPUT, b'{"ts": "2026-11-28T12:00:02.000Z"}\n'),
    "output-not-json": _append(TIMED_OUTPUT, b"garbage\n"),
}

COMMANDS = {
    "logs-azure": (["logs", "{run}"], 0),
    "logs-azfw-json": (["logs", "{run}", "--format", "azfw-json"], 0),
    "logs-table": (["logs", "{run}", "--format", "table"], 0),
    "report": (["report", "{run}", "-o", "{tmp}/report.html"], 0),
    "allowlist": (["allowlist", "{run}"], 0),
    "allowlist-o": (["allowlist", "{run}", "-o", "{tmp}/allow.yaml"], 0),
    "diff": (["diff", "{tmp}/policy.yaml", "{run}"], 1),  # also-kept is missing from the policy
    "export": (["export", "{run}", "--format", "arm"], 0),
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
@pytest.mark.parametrize("command", list(COMMANDS), ids=list(COMMANDS))
def test_a_damaged_recording_is_read_with_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, damage: str
) -> None:
    run = good_recording(tmp_path / "run")
    (tmp_path / "policy.yaml").write_text(POLICY)
    DAMAGE[damage](run)
    args, expected = COMMANDS[command]
    code = main([arg.format(run=run, tmp=tmp_path) for arg in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "internal error" not in captured.err
    assert code == expected, captured.err
    if command != "export":  # export reads only the recording's policy.yaml
        assert captured.err.count("warning:") == 1, captured.err
        count = 2 if damage == "summary-wrong-types" else 1  # each wrong field is named
        assert f"skipped {count} damaged item(s)" in captured.err


def test_allowlist_of_a_damaged_recording_still_lists_the_undamaged_hosts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = good_recording(tmp_path / "run")
    DAMAGE["port-a-string"](run)
    assert main(["allowlist", str(run), "-o", str(tmp_path / "allow.yaml")]) == 0
    written = (tmp_path / "allow.yaml").read_text()
    assert "kept.example.test" in written and "also-kept.example.test" in written
    assert "damaged.example.test" not in written and "Https:x" not in written
    assert main(["check", str(tmp_path / "allow.yaml"), "kept.example.test"]) == 0


def test_logs_table_shows_a_tcp_destination_once_with_its_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = good_recording(tmp_path / "run")
    assert main(["logs", str(run), "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "192.0.2.9:22" in out
    assert "192.0.2.9:22:22" not in out


def test_report_of_a_summary_that_is_a_list_and_output_without_line_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The drift bug of issue 15: `egress report` crashed on these with a traceback."""
    run = good_recording(tmp_path / "run")
    (run / SUMMARY).write_text("[]")
    (run / TIMED_OUTPUT).write_text('{"ts": "2026-11-28T12:00:02.000Z"}\n{"line": "x"}\n')
    assert main(["report", str(run)]) == 0
    captured = capsys.readouterr()
    assert (run / "report.html").is_file()
    assert "kept.example.test" in (run / "report.html").read_text()
    assert "skipped 3 damaged item(s) (1 in summary.json, 2 in workload.jsonl)" in captured.err


def test_a_recording_without_events_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["logs", str(tmp_path / "empty")]) == 2
    assert "events.jsonl does not exist" in capsys.readouterr().err
