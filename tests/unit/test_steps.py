"""A chain's events told apart by step (harness.steps) and the `# via step` evidence."""

from __future__ import annotations

import json
from pathlib import Path

from harness.events import Event
from harness.steps import events_by_step, read_steps, step_candidates


def event(ts: str, host: str) -> Event:
    return Event(ts=ts, run="r", kind="tls", src="10.0.0.2:5000", dst="10.9.0.1:443", host=host,
                 port=443, protocol="HTTPS", action="Allow", would="Deny", bytes_up=10,
                 bytes_down=20)  # fmt: skip


def write_steps(folder: Path, *steps: tuple[str, str, str, int]) -> None:
    lines = [json.dumps({"step": n, "started": s, "ended": e, "exit_code": c})
             for n, s, e, c in steps]  # fmt: skip
    (folder / "steps.jsonl").write_text("\n".join(lines) + "\nnot json\n")


def test_an_event_belongs_to_the_last_step_started_before_it(tmp_path: Path) -> None:
    write_steps(tmp_path, ("kudu-deploy", "2026-12-01T10:00:01.000Z", "2026-12-01T10:00:03.000Z", 0),
                ("pip-install", "2026-12-01T10:00:03.500Z", "2026-12-01T10:00:09.000Z", 0))  # fmt: skip
    steps = read_steps(tmp_path)
    assert [step.name for step in steps] == ["kudu-deploy", "pip-install"]  # damaged line skipped
    found = events_by_step(
        [event("2026-12-01T10:00:00.900Z", "early.example.test"),
         event("2026-12-01T10:00:02.000Z", "site.scm.example.test"),
         event("2026-12-01T10:00:04.000Z", "index.example.test")], steps)  # fmt: skip
    assert [e.host for e in found["kudu-deploy"]] == ["early.example.test", "site.scm.example.test"]
    assert [e.host for e in found["pip-install"]] == ["index.example.test"]


def test_candidates_carry_the_step_that_reached_them(tmp_path: Path) -> None:
    write_steps(tmp_path, ("oryx-sdk", "2026-12-01T10:00:01.000Z", "2026-12-01T10:00:02.000Z", 0),
                ("npm-install", "2026-12-01T10:00:02.000Z", "2026-12-01T10:00:05.000Z", 0))  # fmt: skip
    events = [event("2026-12-01T10:00:01.500Z", "cdn.example.test"),
              event("2026-12-01T10:00:03.000Z", "registry.example.test"),
              event("2026-12-01T10:00:04.000Z", "cdn.example.test")]  # fmt: skip
    found = {c.host: c for c in step_candidates(events, tmp_path)}
    assert found["cdn.example.test"].sources == ["step oryx-sdk", "step npm-install"]
    assert found["registry.example.test"].sources == ["step npm-install"]
    assert found["cdn.example.test"].connections == 2


def test_a_run_that_is_not_a_chain_has_no_step_candidates(tmp_path: Path) -> None:
    assert step_candidates([event("2026-12-01T10:00:01.500Z", "a.example.test")], tmp_path) is None
