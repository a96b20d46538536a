"""Which step of a chain each destination came from (scenario `steps:`).

The chain's runner (harness.sandbox.chain) writes `steps.jsonl`, one line per step as it ends,
with the UTC times it started and ended in the events' own format. The steps run one after the
other, so an event belongs to the last step that had started when the firewall decided it
(events before the first step: the first step). `step_candidates` gives the candidates of an
audit run with one Evidence per step (`# via step kudu-deploy: ...`), as `merge_candidates`
gives one per scenario. Reading is lenient (a recording is evidence): a damaged line is skipped.
"""

from __future__ import annotations

__all__ = ["STEPS_FILE", "StepRecord", "events_by_step", "read_steps", "step_candidates"]

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.allowlist import Candidate, candidates, merge_candidates
from harness.events import Event
from harness.runfolder import STEPS as STEPS_FILE


@dataclass(frozen=True)
class StepRecord:
    name: str
    started: str
    ended: str
    exit_code: int | None
    timed_out: bool = False

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def read_steps(folder: Path) -> list[StepRecord]:
    """The steps a chain run ran, in order; [] for a run that is not a chain."""
    path = Path(folder) / STEPS_FILE
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            steps.append(StepRecord(str(entry["step"]), str(entry["started"]),
                                    str(entry["ended"]), entry.get("exit_code"),
                                    bool(entry.get("timed_out"))))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            continue
    return steps


def events_by_step(events: Iterable[Event], steps: Sequence[StepRecord]) -> dict[str, list[Event]]:
    """Each step's events (module docstring); every step has an entry, perhaps empty."""
    ordered = sorted(steps, key=lambda step: step.started)
    found: dict[str, list[Event]] = {step.name: [] for step in ordered}
    if not ordered:
        return found
    for event in events:
        owner = ordered[0].name
        for step in ordered:
            if step.started <= event.ts:
                owner = step.name
        found[owner].append(event)
    return found


def step_candidates(events: Sequence[Event], folder: Path) -> list[Candidate] | None:
    """The audit run's candidates with evidence per step, or None when it was not a chain."""
    steps = read_steps(folder)
    if not steps:
        return None
    per_step = events_by_step(events, steps)
    return merge_candidates((f"step {name}", candidates(found)) for name, found in per_step.items())
