"""The run folder's one reader: lenient, counting what it skipped; the event types it relies
on, checked once in Event.from_json; and its file names typed nowhere else."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import harness
from harness import runfolder
from harness.errors import InputError
from harness.events import Event
from harness.runfolder import EVENTS, SUMMARY, TIMED_OUTPUT, Recorder, read_run, write_summary

GOOD = Event(ts="2026-11-28T12:00:00.123Z", run="r", kind="tcp", src="10.0.0.2:40000",
             dst="192.0.2.1:22", port=22, protocol="TCP", action="Deny", would="Deny")  # fmt: skip


def _line(**changes: object) -> str:
    data = json.loads(GOOD.to_json())
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"host": 5}, "host: expected str, got int"),
        ({"rule": "x"}, "rule: expected dict, got str"),
        ({"rule": {"collection": 1, "rule": "r"}}, "rule: expected {policy"),
        ({"src": 5}, "src: expected str"),
        ({"src": "nowhere"}, "is not IP:PORT"),
        ({"kind": 5}, "kind: expected str"),
        ({"kind": "smtp"}, "is not one of"),
        ({"port": "x"}, "port: expected int"),
        ({"port": True}, "port: expected int, got bool"),
        ({"port": 0}, "outside 1..65535"),
        ({"bytes_up": -1}, "negative"),
        ({"ts": "yesterday"}, "not an ISO 8601 time"),
        ({"reason": "a\x1fb"}, "control character"),
        ({"ts": None}, "ts: must not be null"),
    ],
)
def test_event_field_types_are_checked_at_the_boundary(changes: dict, words: str) -> None:
    with pytest.raises(ValueError) as raised:
        Event.from_json(_line(**changes))
    assert words in str(raised.value)


def test_an_event_with_unknown_fields_keeps_the_known_ones() -> None:
    assert Event.from_json(_line(written_by_a_later_version=["192.0.2.1"])) == GOOD


def test_the_reader_keeps_what_is_undamaged_and_counts_the_rest(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    recorder.write(GOOD)
    recorder.close()
    with (tmp_path / EVENTS).open("ab") as stream:
        stream.write(b"\xff\xfe\n" + _line(port="x").encode() + b"\n" + GOOD.to_json().encode())
    (tmp_path / TIMED_OUTPUT).write_text(
        json.dumps({"ts": "2026-11-28T12:00:01.000Z", "line": "ok"}) + "\n" + '{"line": 1}\n'
    )
    run = read_run(tmp_path)
    assert run.events == [GOOD, GOOD]
    assert run.output == [("2026-11-28T12:00:01.000Z", "ok")]
    assert [str(item) for item in run.skipped] == [
        "events.jsonl:2: not UTF-8 (byte 0)",
        "events.jsonl:3: port: expected int, got str",
        'workload.jsonl:2: not {"ts": TEXT, "line": TEXT}',
    ]
    assert run.warning() == (
        f"warning: {tmp_path}: skipped 3 damaged item(s) (2 in events.jsonl, 1 in workload.jsonl);"
        " first: events.jsonl:2: not UTF-8 (byte 0); the rest of the recording is read as usual"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "empty"), ("{", "not JSON"), ("[1]", "a JSON list, not an object")],
)
def test_a_damaged_summary_reads_as_none(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / EVENTS).write_text("")
    (tmp_path / SUMMARY).write_text(text)
    run = read_run(tmp_path)
    assert run.summary == {}
    assert [item.problem.split(" (")[0] for item in run.skipped] == [problem]


def test_summary_fields_of_the_wrong_type_are_left_out(tmp_path: Path) -> None:
    (tmp_path / EVENTS).write_text("")
    write_summary(tmp_path, {"scenario": "s", "outcome": ["failure"], "exit_code": "1"})
    run = read_run(tmp_path)
    assert run.summary == {"scenario": "s"}
    assert len(run.skipped) == 2


def test_an_undamaged_recording_has_no_warning(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    recorder.write(GOOD)
    recorder.close()
    write_summary(tmp_path, {"scenario": "s", "outcome": "success"})
    assert read_run(tmp_path).warning() is None


def test_a_folder_without_events_is_an_input_error_unless_events_are_optional(
    tmp_path: Path,
) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_run(tmp_path)
    assert read_run(tmp_path, require_events=False).events == []


# --- the layout has one home ------------------------------------------------------------------

RUN_FOLDER_FILES = {
    getattr(runfolder, name)
    for name in ("EVENTS", "AZURE_LOG", "WORKLOAD_LOG", "TIMED_OUTPUT", "POLICY", "SUMMARY",
                 "GATEWAY_LOG", "CLIENT_LOG", "REPORT", "STEPS", "LEARN", "INDEX")
}  # fmt: skip


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_only_runfolder_names_the_files_of_a_run_folder() -> None:
    package = Path(harness.__file__).parent
    typed_elsewhere = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "runfolder.py" and path.parent == package:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and node.value in RUN_FOLDER_FILES
                    and id(node) not in docstrings):  # fmt: skip
                typed_elsewhere.append(f"{path.relative_to(package)}:{node.lineno}: {node.value}")
    assert typed_elsewhere == []
