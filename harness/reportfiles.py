"""What `egress report` reads: one recording (events, summary, timed output), a learn's folder
(its `learn.json` naming its runs, as `harness.learn.save_learn` writes it) or a folder of
recordings (for the index). Reading stays as `egress report` always read a run; the pages are
drawn by `harness.pages`."""

from __future__ import annotations

__all__ = [
    "LearnView",
    "RunView",
    "is_learn",
    "is_recording",
    "load_learn",
    "load_run",
    "recordings_under",
]

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import InputError
from harness.events import Event
from harness.runfolder import CLIENT_LOG, EVENTS, INDEX, LEARN, REPORT, SUMMARY, read_run


@dataclass
class RunView:
    folder: Path
    summary: dict[str, object]
    events: list[Event]
    output: list[tuple[str, str, str]]  # (ts, line, workload|client)

    @property
    def scenario(self) -> str:
        return str(self.summary.get("scenario") or self.folder.name)

    @property
    def mode(self) -> str:
        return str(self.summary.get("mode") or "?")

    @property
    def audit(self) -> bool:
        return self.mode == "audit" or any(
            event.action == "Allow" and event.would == "Deny" for event in self.events
        )

    @property
    def outcome(self) -> str:
        return str(self.summary.get("outcome") or "?")

    @property
    def expectations_failed(self) -> list[str]:
        failed = self.summary.get("expectations_failed")
        return [str(line) for line in failed] if isinstance(failed, list) else []

    @property
    def output_text(self) -> str:
        return "\n".join(line for _, line, _ in self.output)


@dataclass
class LearnView:
    folder: Path
    manifest: dict[str, object]
    runs: list[tuple[dict[str, object], RunView | None]] = field(default_factory=list)

    @property
    def scenario(self) -> str:
        return str(self.manifest.get("scenario") or self.folder.name)


def is_recording(folder: Path) -> bool:
    return (folder / EVENTS).is_file() or (folder / SUMMARY).is_file()


def is_learn(folder: Path) -> bool:
    return (folder / LEARN).is_file()


def _json_file(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is not JSON: {error}", fix="record the run again") from None
    return data if isinstance(data, dict) else {}


def load_run(folder: Path) -> RunView:
    """A recording read leniently (harness.runfolder): what is damaged is skipped and said
    once on stderr; each output line is told apart as the client's or the workload's."""
    recording = read_run(folder, require_events=False)
    warning = recording.warning()
    if warning:
        print(f"egress: {warning}", file=sys.stderr)
    client_lines = set()
    if (folder / CLIENT_LOG).is_file():
        client_lines = set(
            (folder / CLIENT_LOG).read_text(encoding="utf-8", errors="replace").splitlines()
        )
    output = [
        (ts, text, "client" if text in client_lines else "workload")
        for ts, text in recording.output
    ]
    return RunView(folder, recording.summary, recording.events, output)


def load_learn(folder: Path) -> LearnView:
    """The learn's manifest and each run it names (None for a run folder no longer there)."""
    manifest = _json_file(folder / LEARN)
    view = LearnView(folder, manifest)
    for run in manifest.get("runs") or []:
        if not isinstance(run, dict):
            continue
        path = (folder / str(run.get("folder", ""))).resolve()
        view.runs.append((run, load_run(path) if is_recording(path) else None))
    return view


def recordings_under(folder: Path) -> list[Path]:
    """The recordings and learn folders directly under `folder`, newest first (folder names
    start with their UTC time)."""
    found = [
        child for child in folder.iterdir()
        if child.is_dir() and (is_recording(child) or is_learn(child))
    ]  # fmt: skip
    return sorted(found, key=lambda path: path.name, reverse=True)


# --- writing the pages ------------------------------------------------------------------------


def _write_page(target: Path, page: str) -> Path:
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot write {target}: {error.strerror}",
                         fix="give a folder that exists and is writable") from None  # fmt: skip
    return target


def write_run_report(folder: Path, target: Path | None = None) -> tuple[Path, RunView]:
    from harness.pages import run_page

    view = load_run(folder)
    return _write_page(target or folder / REPORT, run_page(view)), view


def write_learn_report(folder: Path, target: Path | None = None) -> tuple[Path, LearnView]:
    """The learn's page, and each of its runs' own report next to its recording."""
    import os

    from harness.pages import learn_page

    learn = load_learn(folder)
    page_path = target or folder / REPORT
    links: dict[str, str] = {}
    for run, view in learn.runs:
        if view is None:
            continue
        report, _ = write_run_report(view.folder)
        links[str(run.get("folder", ""))] = os.path.relpath(report, page_path.parent)
    return _write_page(page_path, learn_page(learn, links)), learn


def write_index(folder: Path, target: Path | None = None) -> tuple[Path, list]:
    """A report for every recording under `folder` and one index page listing them. A
    recording that cannot be read is listed as such; the others still are."""
    import os

    from harness.pages import IndexEntry, destination_verdict, index_page
    from harness.report import destinations

    page_path = target or folder / INDEX
    entries = []
    for child in recordings_under(folder):
        try:
            if is_learn(child):
                report, learn = write_learn_report(child)
                verified = bool(learn.manifest.get("verified"))
                audit_view = next(
                    (v for r, v in learn.runs if r.get("role") == "audit" and v), None
                )
                rows = destinations(audit_view.events) if audit_view else []
                total = sum(float(str(r.get("duration_s") or 0)) for r, _ in learn.runs)
                entries.append(IndexEntry(
                    child.name, os.path.relpath(report, page_path.parent), "learn",
                    learn.scenario, "audit, enforce", "verified" if verified else "NOT verified",
                    len(rows), 0, False, f"{total:.1f}",
                ))  # fmt: skip
                continue
            report, view = write_run_report(child)
        except InputError as error:
            entries.append(IndexEntry(child.name, "", "run", "?", "?", "unreadable", 0, 0, False,
                                      "?", problem=str(error)))  # fmt: skip
            continue
        rows = destinations(view.events)
        stopped = sum(destination_verdict(row)[0] in ("deny", "would-deny") for row in rows)
        entries.append(IndexEntry(
            child.name, os.path.relpath(report, page_path.parent), "run", view.scenario,
            view.mode, view.outcome, len(rows), stopped, view.audit,
            str(view.summary.get("duration_s", "?")),
            expectations_failed=len(view.expectations_failed),
        ))  # fmt: skip
    if not entries:
        raise InputError(
            f"{folder} holds no recording",
            fix="give a recording folder (runs/<time>-<scenario>/), a learn's folder or the"
            " folder of recordings (runs/)",
        )
    title = f"Egress recordings in {folder.name or folder}"
    return _write_page(page_path, index_page(title, entries)), entries
