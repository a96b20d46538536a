"""The pytest plugin (entry point `pytest11 = egress`): composition root 2.

- Collects scenario files (ini `egress_scenario_patterns`, default `*.scenario.yaml`; policies
  and app files beside them never match) as one item per scenario.
- A failing item reports each failed expectation with its YAML line, the destinations table,
  the last Azure log lines, the tail of the workload output and the recording; the full logs go
  into report sections. A bad scenario file fails collection with its error line, no traceback.
- The `egress` fixture runs a workload from Python: `egress.run(image=..., command=..., ...)`.

The runtime is looked up in `config.stash[SANDBOX_RUN]`: a conftest puts a
`harness.testing.FakeRuntime` there to run without Docker; by default it is Docker
(`harness.runtime.docker_runtime`, images built once per worker).
"""

from __future__ import annotations

__all__ = ["SANDBOX_RUN", "EgressFixture", "LearnItem", "ScenarioFile", "ScenarioItem"]

import fnmatch
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError, ImageMissing
from harness.execute import Execution, RunOverrides, SandboxRun, execute, with_policy
from harness.policy.model import Policy
from harness.scenario import (
    Expect,
    FirewallSettings,
    Scenario,
    Workload,
    check_learned,
    load_scenario,
)

SANDBOX_RUN = pytest.StashKey[SandboxRun]()
# The scenarios this session runs (after -k and deselection): only their images are built.
SESSION_SCENARIOS = pytest.StashKey[list[Scenario]]()
PREPARED = pytest.StashKey[bool]()
DEFAULT_PATTERNS = ["*.scenario.yaml", "*.scenario.yml"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "egress_scenario_patterns",
        type="linelist",
        default=DEFAULT_PATTERNS,
        help="glob patterns of scenario file names collected by the egress plugin",
    )
    parser.addoption(
        "--allow-outside-paths",
        action="store_true",
        help="egress: let scenarios name files outside their own folder tree (trusted ones only)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "docker: needs a Docker engine (every scenario item runs real containers)"
    )


def sandbox_run(config: pytest.Config) -> SandboxRun:
    """The runtime scenarios run on: one a conftest stashed (a harness.testing.FakeRuntime),
    else Docker; prepared once (the images of the session's scenarios) before the first run."""
    if SANDBOX_RUN not in config.stash:
        from harness.interrupt import unwind_on_sigterm
        from harness.runtime import docker_runtime

        unwind_on_sigterm()  # a cancelled CI job still removes the running scenario's containers
        config.stash[SANDBOX_RUN] = docker_runtime()
    runtime = config.stash[SANDBOX_RUN]
    if not config.stash.get(PREPARED, False):
        prepare = getattr(runtime, "prepare", None)  # a bare function needs nothing prepared
        if prepare is not None:
            prepare(config.stash.get(SESSION_SCENARIOS, None), lambda line: None)
        config.stash[PREPARED] = True
    return runtime


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[SESSION_SCENARIOS] = [
        item.scenario for item in session.items if isinstance(item, ScenarioItem | LearnItem)
    ]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    patterns: Sequence[str] = parent.config.getini("egress_scenario_patterns")
    if any(fnmatch.fnmatch(file_path.name, pattern) for pattern in patterns):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        try:
            scenario = load_scenario(
                self.path, allow_outside_paths=self.config.getoption("allow_outside_paths")
            )
        except HarnessError as error:
            raise self.CollectError(str(error)) from None
        # Every scenario runs real containers, wherever its file is kept: `-m "not docker"`
        # leaves them out.
        item = ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)
        item.add_marker(pytest.mark.docker)
        yield item
        if scenario.expect.learned is not None:
            item = LearnItem.from_parent(self, name=f"{scenario.name}[learn]", scenario=scenario)
            item.add_marker(pytest.mark.docker)
            yield item


class ScenarioFailed(Exception):
    """The scenario ran and some expectations did not hold (reported without a traceback)."""

    def __init__(self, execution: Execution) -> None:
        super().__init__(f"{len(execution.failures)} expectation(s) failed")
        self.execution = execution


@contextmanager
def not_run_without_image(scenario: Scenario) -> Iterator[None]:
    """A scenario marked `if_image_missing: skip` whose image is not here is reported as not
    run, with the reason, in pytest's summary (-rs); any other missing image fails the item."""
    try:
        yield
    except ImageMissing as missing:
        if (
            scenario.workload.if_image_missing == "skip"
            and missing.image == scenario.workload.image
        ):
            # Reported at the scenario file, not at this line (pytest does so for skip marks).
            raise pytest.skip.Exception(
                f"not run: {missing} (workload.if_image_missing: skip)",
                _use_item_location=True,
            )
        raise


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def runtest(self) -> None:
        with not_run_without_image(self.scenario):
            execution = execute(self.scenario, sandbox_run(self.config))
        self.user_properties.append(("recording", str(execution.run_dir)))
        self.add_report_section("call", "workload output", execution.output)
        self.add_report_section("call", "azure firewall log", "\n".join(execution.azure_lines))
        if execution.failures:
            raise ScenarioFailed(execution)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ScenarioFailed):
            return failure_report(excinfo.value.execution)
        if isinstance(excinfo.value, HarnessError):
            return f"{self.scenario.path}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, _line_index(self.scenario), f"scenario: {self.scenario.name}"


class LearnFailed(Exception):
    def __init__(self, messages: list[str], text: str) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages
        self.text = text


class LearnItem(pytest.Item):
    """`egress learn` on the scenario, checked against its `expect.learned` block."""

    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def runtest(self) -> None:
        from harness.learn import learn, render_allowlist

        with not_run_without_image(self.scenario):
            result = learn(self.scenario, sandbox_run(self.config))
        text = render_allowlist(result.policy, result.candidates, command=f"pytest {self.nodeid}",
                                scenario=self.scenario.name, verified=result.verified)  # fmt: skip
        self.add_report_section("call", "learned allowlist", text)
        hosts = tuple(candidate.host for candidate in result.candidates)
        messages = [str(failure) for failure in check_learned(self.scenario.expect, hosts,
                                                                 result.verified)]  # fmt: skip
        if messages:
            raise LearnFailed(messages, text)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, LearnFailed):
            return "\n".join(
                [*excinfo.value.messages, "", "learned allowlist:", excinfo.value.text]
            )
        if isinstance(excinfo.value, HarnessError):
            return f"{self.scenario.path}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        where = self.scenario.expect.location_of("learned") or self.scenario.location
        line = where.line - 1 if where and where.line else _line_index(self.scenario)
        return self.path, line, f"learn: {self.scenario.name}"


def _line_index(scenario: Scenario) -> int | None:
    """pytest counts lines from 0; our locations from 1."""
    where = scenario.location
    return where.line - 1 if where and where.line else None


def failure_report(execution: Execution) -> str:
    """What a person needs to see first (harness.render, as `egress run` prints it)."""
    from harness.render import execution_blocks, render_text
    from harness.steps import read_steps

    steps = read_steps(execution.run_dir)
    return render_text(execution_blocks(execution, steps=steps))


# --- the fixture ------------------------------------------------------------------------


class EgressFixture:
    """Run a workload behind the firewall from a Python test:

    result = egress.run(image="egress/python", command="pip download six",
                        allow=["files.example.test"], trust=["host"])
    assert result.succeeded and result.denied == []
    """

    def __init__(self, config: pytest.Config, name: str) -> None:
        self._config = config
        self._name = name

    def run(
        self,
        *,
        image: str,
        command: str | Sequence[str],
        policy: Policy | str | Path | None = None,
        allow: Sequence[str] = (),
        mode: str = "enforce",
        https_deny: str = "close",
        trust: Sequence[str] = (),
        env: dict[str, str] | None = None,
        workdir: str | Path | None = None,
        hosts: dict[str, str] | None = None,
        timeout: float = 600.0,
        on_output: Callable[[str], None] | None = None,
    ) -> Execution:
        from harness.policy.load import load_policy
        from harness.policy.shorthand import merge_allow

        if isinstance(policy, str | Path):
            policy = load_policy(policy)
        effective = merge_allow(policy or Policy(f"{self._name}-deny-all"), allow)
        scenario = Scenario(
            name=self._name,
            path=Path(str(self._config.rootpath)),
            workload=Workload(
                image=image,
                command=command if isinstance(command, str) else tuple(command),
                workdir=Path(workdir).resolve() if workdir else None,
                env=tuple((env or {}).items()),
                trust=tuple(trust),
                timeout=timeout,
            ),
            firewall=FirewallSettings(
                policy=effective,
                mode=mode,  # type: ignore[arg-type]
                https_deny=https_deny,  # type: ignore[arg-type]
                hosts=tuple((hosts or {}).items()),
            ),
            expect=Expect(outcome="success"),
        )
        execution = execute(with_policy(scenario, effective), sandbox_run(self._config),
                            RunOverrides(), on_output=on_output)  # fmt: skip
        return execution


@pytest.fixture
def egress(request: pytest.FixtureRequest) -> EgressFixture:
    """Run workloads behind the simulated Azure FirewallSettings; see `EgressFixture.run`."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in request.node.name)[:60]
    return EgressFixture(request.config, safe)
