"""Recordings on disk (formats.md "Recording"): `events.jsonl`, one event per line, and
`azure.log`, the Azure legacy msg lines, both appended and flushed as events happen, so an
interrupted run keeps everything up to its last event."""

from __future__ import annotations

__all__ = [
    "AZURE_LOG",
    "EVENTS_FILE",
    "SUMMARY_FILE",
    "Recorder",
    "RecorderError",
    "read_events",
    "write_summary",
]

import json
from pathlib import Path
from typing import IO

from harness.errors import InputError, Location
from harness.events import Event

EVENTS_FILE = "events.jsonl"
AZURE_LOG = "azure.log"
SUMMARY_FILE = "summary.json"


class RecorderError(Exception):
    """The recording cannot be written; the gateway must stop rather than pass traffic unseen."""


class Recorder:
    """`flush_each=False` (an import of finished logs, not a live run) leaves flushing to the
    file buffers, which is many times faster."""

    def __init__(self, folder: str | Path, *, flush_each: bool = True) -> None:
        self.folder = Path(folder)
        self._flush_each = flush_each
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._events: IO[str] = open(self.folder / EVENTS_FILE, "a", encoding="utf-8")  # noqa: SIM115
            self._azure: IO[str] = open(self.folder / AZURE_LOG, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as error:
            raise RecorderError(f"cannot open the recording in {self.folder}: {error}") from error

    def write(self, event: Event) -> None:
        try:
            self._events.write(event.to_json() + "\n")
            if self._flush_each:
                self._events.flush()
            if event.azure:
                self._azure.write(event.azure + "\n")
                if self._flush_each:
                    self._azure.flush()
        except (OSError, ValueError) as error:
            raise RecorderError(f"cannot write to {self.folder}: {error}") from error

    def close(self) -> None:
        """Raises RecorderError when buffered events cannot be written out."""
        failed = None
        if not self._flush_each:
            for handle in (self._events, self._azure):
                try:
                    handle.flush()
                except (OSError, ValueError) as error:
                    failed = error
        for handle in (self._events, self._azure):
            try:
                handle.close()
            except OSError:
                pass
        if failed is not None:
            raise RecorderError(f"cannot write to {self.folder}: {failed}")


def write_summary(folder: str | Path, summary: dict[str, object]) -> None:
    """`summary.json`, the run's (or import's) facts as one JSON object."""
    (Path(folder) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def read_events(source: str | Path) -> list[Event]:
    """The events of a recording folder (or an events.jsonl file). A last line cut short by an
    interrupted run is left out; any other bad line is an error naming file and line."""
    path = Path(source)
    if path.is_dir():
        path = path / EVENTS_FILE
    if not path.is_file():
        raise InputError(
            f"{path} does not exist",
            fix="give a recording folder (runs/<time>-<scenario>/) or its events.jsonl",
        )
    lines = path.read_text(encoding="utf-8").splitlines()
    events = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(Event.from_json(line))
        except (json.JSONDecodeError, TypeError) as error:
            if number == len(lines):
                break  # written half when the run stopped
            raise InputError(f"not an event: {error}", location=Location(str(path), number),
                             fix="the recording is damaged; record the run again") from None  # fmt: skip
    return events
