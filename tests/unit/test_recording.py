"""The recorder flushes every event as it happens; the reader keeps what an interrupted run left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.events import Event, lifecycle_event
from harness.recording import AZURE_LOG, EVENTS_FILE, Recorder, RecorderError, read_events
from harness.runfolder import read_run


def tcp_event(port: int) -> Event:
    return Event(
        ts="2026-11-28T12:00:00.123Z", run="run-1", kind="tcp", src="10.0.0.2:40000",
        dst=f"192.0.2.1:{port}", port=port, protocol="TCP", action="Deny", would="Deny",
        reason="No rule matched. Proceeding with default action",
        azure=f"TCP request from 10.0.0.2:40000 to 192.0.2.1:{port}. Action: Deny",
    )  # fmt: skip


def test_each_event_is_on_disk_while_the_recorder_is_open(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "run")
    try:
        recorder.write(tcp_event(22))
        assert (tmp_path / "run" / EVENTS_FILE).read_text() == tcp_event(22).to_json() + "\n"
        assert (tmp_path / "run" / AZURE_LOG).read_text() == tcp_event(22).azure + "\n"
        recorder.write(tcp_event(23))
        assert read_events(tmp_path / "run") == [tcp_event(22), tcp_event(23)]
    finally:
        recorder.close()


def test_events_without_azure_line_stay_out_of_azure_log(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    recorder.write(lifecycle_event("run-1", "ready"))
    recorder.write(tcp_event(22))
    recorder.close()
    assert (tmp_path / AZURE_LOG).read_text().splitlines() == [tcp_event(22).azure]
    assert [event.kind for event in read_events(tmp_path)] == ["lifecycle", "tcp"]


def test_a_second_recorder_appends(tmp_path: Path) -> None:
    for port in (1, 2):
        recorder = Recorder(tmp_path)
        recorder.write(tcp_event(port))
        recorder.close()
    assert [event.port for event in read_events(tmp_path / EVENTS_FILE)] == [1, 2]


def test_a_last_line_cut_short_is_left_out(tmp_path: Path) -> None:
    whole = tcp_event(22).to_json() + "\n"
    cut = tcp_event(23).to_json()[:40]
    (tmp_path / EVENTS_FILE).write_text(whole + cut)
    assert read_events(tmp_path) == [tcp_event(22)]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    (tmp_path / EVENTS_FILE).write_text("\n" + tcp_event(22).to_json() + "\n\n")
    assert read_events(tmp_path) == [tcp_event(22)]


@pytest.mark.parametrize("bad_line", ["{not json", '{"v": 1, "run": "r"}', "[1, 2]"],
                         ids=["broken-json", "missing-fields", "not-an-object"])  # fmt: skip
def test_a_bad_middle_line_is_skipped_and_named(tmp_path: Path, bad_line: str) -> None:
    path = tmp_path / EVENTS_FILE
    path.write_text("\n".join([tcp_event(1).to_json(), bad_line, tcp_event(3).to_json()]) + "\n")
    assert read_events(tmp_path) == [tcp_event(1), tcp_event(3)]
    run = read_run(tmp_path)
    assert [(item.file, item.line) for item in run.skipped] == [(EVENTS_FILE, 2)]
    assert run.warning() is not None and "skipped 1 damaged item(s)" in run.warning()


def test_a_missing_recording_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_events(tmp_path / "nowhere")


def test_a_folder_that_cannot_be_created_raises_recorder_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(RecorderError, match="cannot open the recording in"):
        Recorder(tmp_path / "a-file" / "run")


def test_a_folder_refusing_new_files_raises_recorder_error() -> None:
    # Permission bits do not stop root (the tests run as root); /proc refuses new files to all.
    with pytest.raises(RecorderError):
        Recorder("/proc/self")


def test_a_full_disk_raises_recorder_error_on_write(tmp_path: Path) -> None:
    os.symlink("/dev/full", tmp_path / EVENTS_FILE)
    recorder = Recorder(tmp_path)
    with pytest.raises(RecorderError, match="cannot write to"):
        recorder.write(tcp_event(22))
    recorder.close()


def test_writing_after_close_raises_recorder_error(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    recorder.close()
    with pytest.raises(RecorderError):
        recorder.write(tcp_event(22))
