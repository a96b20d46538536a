"""The run folder's one home: its layout, its writers and its one reader (formats.md "Recording").

    runs/<UTC time>-<scenario>/
      events.jsonl     EVENTS        one Event per line, flushed as it happens (Recorder)
      azure.log        AZURE_LOG     the Azure legacy msg lines of those events (Recorder)
      workload.log     WORKLOAD_LOG  the workload's output, bare (the sandbox)
      workload.jsonl   TIMED_OUTPUT  the same lines as {"ts", "line"} (TimedOutput)
      policy.yaml      POLICY        the effective policy (write_policy)
      summary.json     SUMMARY       outcome, destinations, diagnosis (write_summary)
      gateway.log      GATEWAY_LOG   the gateway's own output, its last lines (the sandbox)
      client.log       CLIENT_LOG    a scenario client's output (the sandbox)
      upstreams/       UPSTREAMS     the test CA, each upstream's certificate and log
      steps.jsonl      STEPS         a chain's steps, one line as each ends (the sandbox's chain;
                                     read by `harness.steps.read_steps`)
      report.html      REPORT        `egress report`'s page

    runs/<UTC time>-learn-<scenario>/     a learn's folder: its runs' folders, and
      learn.json       LEARN         the manifest naming them (`harness.learn.save_learn`)
      report.html      REPORT        its page

    runs/index.html    INDEX         `egress report runs/`: every recording under a folder

Only this module names these files; the gateway container, the sandbox, the importers
(`harness.logimport`) and the readers take the names (and, where writing is simple, the
writers) from here.

A recording is evidence, so `read_run` is lenient: a line that is not UTF-8, not JSON, nested
too deep, too long, or an event whose fields have the wrong types (checked once, in
`Event.from_json`) is skipped and listed in `Recording.skipped`; an empty, unparsable or
non-object summary.json reads as no summary, a field of the wrong type as absent. What is
undamaged is still read, and `Recording.warning()` says in one line how much was skipped, for
the CLI to print once. Only a recording with no events.jsonl at all is an InputError.
"""

from __future__ import annotations

__all__ = [
    "AZURE_LOG",
    "CLIENT_LOG",
    "EVENTS",
    "GATEWAY_LOG",
    "INDEX",
    "LEARN",
    "POLICY",
    "REPORT",
    "STEPS",
    "SUMMARY",
    "TIMED_OUTPUT",
    "UPSTREAMS",
    "WORKLOAD_LOG",
    "Recorder",
    "RecorderError",
    "Recording",
    "Skipped",
    "TimedOutput",
    "events_file",
    "read_events",
    "read_run",
    "write_policy",
    "write_summary",
]

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.errors import InputError
from harness.events import Event, now_iso
from harness.limits import MAX_EVENT_LINE_BYTES

EVENTS = "events.jsonl"
AZURE_LOG = "azure.log"
WORKLOAD_LOG = "workload.log"
TIMED_OUTPUT = "workload.jsonl"
POLICY = "policy.yaml"
SUMMARY = "summary.json"
GATEWAY_LOG = "gateway.log"
CLIENT_LOG = "client.log"
UPSTREAMS = "upstreams"
REPORT = "report.html"
STEPS = "steps.jsonl"
LEARN = "learn.json"
INDEX = "index.html"


# --- writers -------------------------------------------------------------------------------


class RecorderError(Exception):
    """The recording cannot be written; the gateway must stop rather than pass traffic unseen."""


class Recorder:
    """events.jsonl and azure.log, appended and flushed per event (the gateway's writer).
    `flush_each=False` (an import of finished logs, not a live run) leaves flushing to the file
    buffers, which is many times faster."""

    def __init__(self, folder: str | Path, *, flush_each: bool = True) -> None:
        self.folder = Path(folder)
        self._flush_each = flush_each
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._events: IO[str] = open(self.folder / EVENTS, "a", encoding="utf-8")  # noqa: SIM115
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

    def write_lines(self, events: list[str], azure: list[str]) -> None:
        """Lines already rendered (`Event.to_json()` and `Event.azure`, without newlines), in one
        write each: an import's batches."""
        try:
            if events:
                self._events.write("\n".join(events) + "\n")
            if azure:
                self._azure.write("\n".join(azure) + "\n")
        except (OSError, ValueError) as error:
            raise RecorderError(f"cannot write to {self.folder}: {error}") from error

    def append_files(self, events: str | Path, azure: str | Path) -> None:
        """Append the bytes of two files already written as this Recorder writes (an import's
        worker processes'), copied by the kernel."""
        try:
            for handle, source in ((self._events, events), (self._azure, azure)):
                handle.flush()
                # sendfile refuses a file opened to append: a second descriptor at its end.
                target = os.open(handle.name, os.O_WRONLY)
                try:
                    os.lseek(target, 0, os.SEEK_END)
                    with open(source, "rb") as part:
                        size = os.fstat(part.fileno()).st_size
                        copied = 0
                        while copied < size:
                            sent = os.sendfile(target, part.fileno(), copied, size - copied)
                            if not sent:
                                raise OSError(f"{source} ended early")
                            copied += sent
                finally:
                    os.close(target)
        except OSError as error:
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


class TimedOutput:
    """workload.jsonl: each output line with the time it arrived, so a report can interleave
    the output with the firewall's events (workload.log keeps the bare text)."""

    def __init__(self, folder: Path) -> None:
        self._handle: IO[str] = open(folder / TIMED_OUTPUT, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, line: str) -> None:
        self._handle.write(json.dumps({"ts": now_iso(), "line": line}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def write_policy(folder: Path, text: str) -> Path:
    path = folder / POLICY
    path.write_text(text, encoding="utf-8")
    return path


def write_summary(folder: str | Path, summary: dict[str, Any]) -> Path:
    """`summary.json`, the run's (or import's) facts as one JSON object."""
    path = Path(folder) / SUMMARY
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return path


# --- the reader ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """One damaged thing the reader left out: a line of a file, or a whole small file."""

    file: str  # the file's name inside the run folder
    line: int | None
    problem: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.problem}"


@dataclass
class Recording:
    folder: Path
    events: list[Event] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # {} when absent or damaged
    output: list[tuple[str, str]] = field(default_factory=list)  # (ts, line) of workload.jsonl
    skipped: list[Skipped] = field(default_factory=list)

    def warning(self) -> str | None:
        """One line saying what was skipped, or None for an undamaged recording."""
        if not self.skipped:
            return None
        by_file: dict[str, int] = {}
        for item in self.skipped:
            by_file[item.file] = by_file.get(item.file, 0) + 1
        counts = ", ".join(f"{count} in {name}" for name, count in by_file.items())
        return (
            f"warning: {self.folder}: skipped {len(self.skipped)} damaged item(s) ({counts});"
            f" first: {self.skipped[0]}; the rest of the recording is read as usual"
        )


def events_file(source: str | Path) -> Path:
    """events.jsonl of a run folder, or `source` itself when it names the file."""
    path = Path(source)
    return path / EVENTS if path.is_dir() else path


def read_run(source: str | Path, *, require_events: bool = True) -> Recording:
    """A run folder (or its events.jsonl), read leniently; see the module docstring."""
    path = events_file(source)
    folder = path.parent
    recording = Recording(folder)
    if path.is_file():
        recording.events = _read_events(path, recording.skipped)
    elif require_events:
        raise InputError(
            f"{path} does not exist",
            fix="give a recording folder (runs/<time>-<scenario>/) or its events.jsonl",
        )
    recording.summary = _read_summary(folder / SUMMARY, recording.skipped)
    recording.output = _read_timed_output(folder / TIMED_OUTPUT, recording.skipped)
    return recording


def read_events(source: str | Path) -> list[Event]:
    """The undamaged events of a recording folder or events.jsonl (see `read_run`)."""
    return read_run(source).events


def _lines(path: Path, skipped: list[Skipped]) -> list[tuple[int, str]]:
    """(number, text) of each non-blank line that is UTF-8 and not over the length limit."""
    try:
        data = path.read_bytes()
    except OSError as error:
        skipped.append(Skipped(path.name, None, f"cannot be read: {error.strerror}"))
        return []
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(raw) > MAX_EVENT_LINE_BYTES:
            skipped.append(Skipped(path.name, number,
                                   f"longer than {MAX_EVENT_LINE_BYTES:,} bytes (the limit)"))  # fmt: skip
            continue
        try:
            lines.append((number, raw.decode("utf-8")))
        except UnicodeDecodeError as error:
            skipped.append(Skipped(path.name, number, f"not UTF-8 (byte {error.start})"))
    return lines


def _json_line(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deep") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg})") from None


def _read_events(path: Path, skipped: list[Skipped]) -> list[Event]:
    events = []
    for number, text in _lines(path, skipped):
        try:
            events.append(Event.from_data(_json_line(text)))
        except (ValueError, TypeError) as error:
            skipped.append(Skipped(path.name, number, str(error)))
    return events


# What summary.json's readers use, and the types they rely on.
_SUMMARY_TYPES: dict[str, tuple[type, ...]] = {
    "scenario": (str,),
    "scenario_file": (str,),
    "policy": (str, type(None)),  # null in an import of firewall logs
    "mode": (str,),
    "outcome": (str,),
    "exit_code": (int, type(None)),
    "timed_out": (bool,),
    "duration_s": (int, float),
    "destinations": (list,),
    "expectations_failed": (list,),
    "diagnosis": (dict, type(None)),
}


def _read_summary(path: Path, skipped: list[Skipped]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    lines = _lines(path, skipped)
    if not lines:
        if not any(item.file == path.name for item in skipped):
            skipped.append(Skipped(path.name, None, "empty"))
        return {}
    try:
        data = _json_line("\n".join(text for _, text in lines))
    except ValueError as error:
        skipped.append(Skipped(path.name, None, str(error)))
        return {}
    if not isinstance(data, dict):
        skipped.append(Skipped(path.name, None, f"a JSON {type(data).__name__}, not an object"))
        return {}
    summary = {}
    for key, value in data.items():
        types = _SUMMARY_TYPES.get(key)
        wrong = types is not None and (
            not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        )
        if wrong:
            skipped.append(Skipped(path.name, None, f"{key} is a {type(value).__name__}"))
            continue
        summary[key] = value
    return summary


def _read_timed_output(path: Path, skipped: list[Skipped]) -> list[tuple[str, str]]:
    if not path.is_file():
        return []
    output = []
    for number, text in _lines(path, skipped):
        try:
            entry = _json_line(text)
        except ValueError as error:
            skipped.append(Skipped(path.name, number, str(error)))
            continue
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("ts"), str)
            or not isinstance(entry.get("line"), str)
        ):
            skipped.append(Skipped(path.name, number, 'not {"ts": TEXT, "line": TEXT}'))
            continue
        output.append((entry["ts"], entry["line"]))
    return output
