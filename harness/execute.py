"""One scenario run end to end: the recording folder, the effective policy, the sandbox run,
and what it showed (destinations, Azure lines, expectations). Shared by `egress run`, the pytest
plugin and `learn`; the sandbox is passed in so tests can swap in a fake runtime."""

from __future__ import annotations

__all__ = [
    "TIMED_OUTPUT",  # re-exported: the run folder's names live in harness.runfolder now
    "Execution",
    "RunOverrides",
    "execute",
    "new_run_dir",
    "runs_root",
    "with_pull",
]

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, Self

from harness.derive import Prober, resolve_derived
from harness.diagnose import Diagnosis, diagnose
from harness.events import Event
from harness.export.yaml_form import policy_to_yaml
from harness.policy.model import Policy
from harness.report import Destination, destinations
from harness.runfolder import EVENTS, TIMED_OUTPUT, TimedOutput, read_run, write_policy
from harness.runfolder import write_summary as write_summary_file
from harness.scenario import Failure, Observed, Scenario, check_expectations


class SandboxRun(Protocol):
    """What `execute` needs of a runtime (harness.runtime.Runtime): one run of a spec; tests
    pass a harness.testing.FakeRuntime."""

    def __call__(self, spec: Any, on_output: Callable[[str], None] | None = None) -> Any: ...


@dataclass(frozen=True)
class RunOverrides:
    policy: Policy | None = None
    mode: str | None = None
    https_deny: str | None = None


@dataclass
class Execution:
    scenario: Scenario
    policy: Policy
    mode: str
    run_dir: Path
    exit_code: int | None
    timed_out: bool
    duration_s: float
    events: list[Event]
    destinations: list[Destination]
    azure_lines: list[str]
    output: str
    failures: list[Failure]
    diagnosis: Diagnosis | None = None  # only for a failed run

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def denied(self) -> list[Destination]:
        return [row for row in self.destinations if "Deny" in row.would.split("+")]

    @property
    def allowed(self) -> list[Destination]:
        return [row for row in self.destinations if "Allow" in row.would.split("+")]




def runs_root() -> Path:
    """Where recordings go: $EGRESS_RUNS_DIR, else ./runs."""
    return Path(os.environ.get("EGRESS_RUNS_DIR", "runs")).resolve()


def new_run_dir(scenario_name: str, root: Path | None = None, suffix: str = "") -> Path:
    """`runs/<UTC time>-<scenario>[-suffix]/`, unique even for parallel workers."""
    base = root or runs_root()
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    name = f"{stamp}-{scenario_name}" + (f"-{suffix}" if suffix else "")
    for attempt in range(1, 1000):
        folder = base / (name if attempt == 1 else f"{name}.{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise RuntimeError(f"could not make a unique run folder under {base}")


class _EventTail:
    """Reads events.jsonl while the run is going, for a live display of new destinations."""

    def __init__(self, path: Path, on_event: Callable[[Event], None]) -> None:
        self.path, self.on_event = path, on_event
        self.offset = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="egress-event-tail", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=2)
        self._read()

    def _loop(self) -> None:
        while not self.stopped.wait(0.2):
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                handle.seek(self.offset)
                while line := handle.readline():
                    if not line.endswith("\n"):
                        break  # a line still being written: read it next time
                    self.offset += len(line.encode("utf-8"))
                    try:
                        self.on_event(Event.from_json(line))
                    except (ValueError, TypeError):
                        continue
        except FileNotFoundError:
            pass


def execute(
    scenario: Scenario,
    sandbox_run: SandboxRun,
    overrides: RunOverrides = RunOverrides(),
    *,
    on_output: Callable[[str], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    run_dir: Path | None = None,
    run_suffix: str = "",
    prober: Prober | None = None,
) -> Execution:
    from harness.runtime import RunSpec

    firewall = scenario.firewall
    policy = overrides.policy or firewall.policy
    prober = prober or getattr(sandbox_run, "prober", None)  # a fake runtime brings its own
    if scenario.derived:  # `${pip.index_host}` and kin: asked of the workload's image
        from harness.sandbox.probe import docker_prober

        if prober is None:  # the probe needs the image: pull it first when the scenario says so
            from harness.sandbox.pull import ensure_workload_image

            ensure_workload_image(scenario.workload.image, scenario.workload.pull)

        scenario, policy = resolve_derived(scenario, policy, prober or docker_prober())
        firewall = scenario.firewall
    mode = overrides.mode or firewall.mode
    https_deny = overrides.https_deny or firewall.https_deny
    folder = run_dir or new_run_dir(scenario.name, suffix=run_suffix)
    policy_path = write_policy(
        folder,
        policy_to_yaml(policy, header=f"Effective policy of scenario {scenario.name} ({mode})"),
    )
    output_lines: list[str] = []
    timed_output = TimedOutput(folder)

    def collect(line: str) -> None:
        output_lines.append(line)
        timed_output.write(line)
        if on_output is not None:
            on_output(line)

    workload = scenario.workload
    spec = RunSpec(
        run_dir=folder,
        image=workload.image,
        command=workload.command,
        workdir=workload.workdir,
        env=dict(workload.env),
        trust=workload.trust,
        timeout=workload.timeout,
        mode=mode,  # type: ignore[arg-type]
        https_deny=https_deny,  # type: ignore[arg-type]
        hosts=dict(firewall.hosts),
        dns=firewall.dns,
        policy_path=policy_path,
        upstreams=scenario.upstreams,
        client=scenario.client,
        pull=workload.pull,
        steps=_step_specs(scenario),
    )
    try:
        if on_event is None:
            result = sandbox_run(spec, on_output=collect)
        else:
            with _EventTail(folder / EVENTS, on_event):
                result = sandbox_run(spec, on_output=collect)
    finally:
        timed_output.close()
    events = read_run(folder, require_events=False).events
    rows = destinations(events)
    azure_lines = [event.azure for event in events if event.azure]
    output = "\n".join(output_lines)
    observed = Observed(
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        destinations=tuple((row.host, row.port, row.would) for row in rows),
        azure_lines=tuple(azure_lines),
        output=output,
        outcome_of=_outcome_of(scenario, folder),
    )
    failures = check_expectations(scenario.expect, observed)
    execution = Execution(
        scenario=scenario,
        policy=policy,
        mode=mode,
        run_dir=folder,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        duration_s=result.duration_s,
        events=events,
        destinations=rows,
        azure_lines=azure_lines,
        output=output,
        failures=failures,
    )
    if not execution.succeeded:
        execution.diagnosis = diagnose(events, output)
    write_summary(execution)
    return execution


def _step_specs(scenario: Scenario) -> tuple:
    if not scenario.steps:
        return ()
    from harness.runtime import StepSpec

    return tuple(
        StepSpec(
            name=step.name,
            image=step.workload.image,
            command=step.workload.command,
            workdir=step.workload.workdir,
            env=dict(step.workload.env),
            trust=step.workload.trust,
            timeout=step.workload.timeout,
            client=step.client,
            pull=step.workload.pull,
        )
        for step in scenario.steps
    )


def _outcome_of(scenario: Scenario, folder: Path) -> str:
    """Whose exit status the outcome is: the client's, the workload's, or the chain step's that
    ended it (the first that failed, or the last)."""
    if not scenario.steps:
        return "client" if scenario.client is not None else "workload"
    from harness.steps import read_steps

    ran = read_steps(folder)
    return f"step {ran[-1].name}" if ran else "chain"


def write_summary(execution: Execution) -> None:
    summary = {
        "scenario": execution.scenario.name,
        "scenario_file": str(execution.scenario.path),
        "policy": execution.policy.name,
        "mode": execution.mode,
        "outcome": "success" if execution.succeeded else "failure",
        "exit_code": execution.exit_code,
        "timed_out": execution.timed_out,
        "duration_s": round(execution.duration_s, 3),
        "destinations": [row.as_dict() for row in execution.destinations],
        "expectations_failed": [str(failure) for failure in execution.failures],
        "diagnosis": execution.diagnosis.as_dict() if execution.diagnosis else None,
    }
    write_summary_file(execution.run_dir, summary)


def with_policy(scenario: Scenario, policy: Policy) -> Scenario:
    return replace(scenario, firewall=replace(scenario.firewall, policy=policy))


def with_pull(scenario: Scenario, pull: str) -> Scenario:
    """Every image of the scenario pulled as `pull` says (`--pull`), whatever its own `pull:`."""

    def pulled(item):
        return replace(item, pull=pull) if item is not None else None

    return replace(
        scenario,
        workload=pulled(scenario.workload),
        client=pulled(scenario.client),
        upstreams=tuple(pulled(upstream) for upstream in scenario.upstreams),
        steps=tuple(
            replace(step, workload=pulled(step.workload), client=pulled(step.client))
            for step in scenario.steps
        ),
    )
