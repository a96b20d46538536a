"""The runtime seam: what `egress` (cli.py), the pytest plugin and `learn` need of a sandbox to
run a scenario, and the plain data that crosses it. Nothing here imports docker.

    Runtime             prepare(scenarios, progress): the images those scenarios need;
                        runtime(spec, on_output) -> RunResult: one run;
                        shared(): a context manager whose runs share one gateway (learn)
    RunSpec, StepSpec   one run, and one step of a chain (`steps:`)
    RunResult           what a run gives back (its recording stays in `spec.run_dir`)
    docker_runtime()    the real one: harness.sandbox over the Docker engine
    harness.testing.FakeRuntime  one without Docker, for tests (`cli.main(argv, runtime=...)`,
                        `config.stash[harness.pytest_plugin.SANDBOX_RUN]`, `learn(...)`)
"""

from __future__ import annotations

__all__ = ["RunResult", "RunSpec", "Runtime", "StepSpec", "docker_runtime"]

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.firewall_settings import HttpsDeny, Mode

if TYPE_CHECKING:
    from harness.scenario import InboundClient, Scenario, Upstream

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StepSpec:
    """One step of a chain: its workload (and its client outside the firewall)."""

    name: str
    image: str
    command: str | Sequence[str]
    workdir: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    trust: Sequence[str] = ()
    timeout: float = 600.0
    client: InboundClient | None = None
    pull: str = "missing"


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs. The caller creates `run_dir` and writes policy.yaml in it."""

    run_dir: Path
    image: str
    command: str | Sequence[str]
    workdir: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    trust: Sequence[str] = ()
    timeout: float = 600.0
    mode: Mode = "enforce"
    https_deny: HttpsDeny = "close"
    hosts: Mapping[str, str] = field(default_factory=dict)
    dns: str = "azure"  # azure (sinkhole for names that do not resolve here) | resolve
    policy_path: Path | None = None  # default: run_dir/policy.yaml
    networks: Sequence[str] = ()  # extra Docker networks the gateway joins (fixture upstreams)
    user: str | None = None
    run_id: str | None = None  # default: made from the time and run_dir's name
    addon_root: Path | None = None  # holds harness/ and addons/; default: this checkout
    # Simulated sites started before the gateway (harness.sandbox.upstreams): their hosts are
    # added to `hosts`, their network to `networks`, their test CA to `trust`.
    upstreams: Sequence[Upstream] = ()
    # A command outside the firewall that connects to the workload (harness.sandbox.inbound):
    # the workload then serves until the client is done, and the result is the client's.
    client: InboundClient | None = None
    # When to pull `image` from its registry (harness.sandbox.pull).
    pull: str = "missing"
    # A chain (StepSpec) run behind one gateway instead of `image`.
    steps: Sequence[StepSpec] = ()


@dataclass(frozen=True)
class RunResult:
    exit_code: int  # the workload's; the client's when the spec has one
    timed_out: bool
    duration_s: float  # from the workload's start to its exit (with a client: the client's)
    run_dir: Path
    run_id: str


class Runtime(Protocol):
    """Where scenarios run. `learn` shares one gateway between its runs through `shared()`
    when a runtime has it; a runtime whose `one_at_a_time` is true takes one run at a time."""

    def prepare(self, scenarios: Sequence[Scenario] | None, progress: Progress) -> None:
        """Make ready what these scenarios need (all of it for None) before the first run."""
        ...

    def __call__(self, spec: RunSpec, on_output: Progress | None = None) -> RunResult: ...

    def shared(self) -> AbstractContextManager[Runtime]: ...


def docker_runtime() -> Runtime:
    """The real runtime: harness.sandbox over the local Docker engine."""
    from harness.sandbox.docker_runtime import DockerRuntime

    return DockerRuntime()
