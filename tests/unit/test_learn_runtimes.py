"""How a learn lends runtimes to its runs: a gateway shared by several runs takes one run at a
time; `parallel` runs at once get up to `parallel` of them, each kept for the whole learn."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Self

import pytest
from test_learn import NEEDED, OPTIONAL, FakeRuntime

from harness.learn import learn, learn_together
from harness.policy.model import Policy
from harness.scenario import FirewallSettings, Scenario, Workload


class OneAtATime(FakeRuntime):
    """A fake shared gateway: refuses a second run while one is going."""

    one_at_a_time = True

    def __init__(self, made: list[OneAtATime]) -> None:
        super().__init__()
        self.busy = threading.Lock()
        made.append(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.closed = True

    def __call__(self, spec, on_output=None):
        if not self.busy.acquire(blocking=False):
            raise AssertionError("two runs at once on one shared gateway")
        try:
            time.sleep(0.02)  # long enough for a second worker to try the same gateway
            return super().__call__(spec, on_output)
        finally:
            self.busy.release()


class Runtime(FakeRuntime):
    """Offers `.shared()` like harness.sandbox.run; counts the gateways it hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[OneAtATime] = []

    def shared(self) -> OneAtATime:
        return OneAtATime(self.made)


@pytest.fixture
def scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scenario:
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    return Scenario(name="fake", path=tmp_path / "fake.scenario.yaml",
                    workload=Workload(image="egress/python", command="build"),
                    firewall=FirewallSettings(policy=Policy("deny-all")))  # fmt: skip


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_classify_uses_at_most_parallel_gateways_one_run_each_at_a_time(
    scenario: Scenario, parallel: int
) -> None:
    runtime = Runtime()
    result = learn(scenario, runtime, classify=True, parallel=parallel)
    assert result.verified
    assert {c.host: c.classification for c in result.candidates} == {
        NEEDED[0]: "required", NEEDED[1]: "required", OPTIONAL[0]: "optional"}  # fmt: skip
    assert 1 <= len(runtime.made) <= parallel
    assert sum(len(gateway.specs) for gateway in runtime.made) == result.runs
    assert all(getattr(gateway, "closed", False) for gateway in runtime.made)


def test_without_classify_audit_and_verify_share_one_gateway(scenario: Scenario) -> None:
    runtime = Runtime()
    result = learn(scenario, runtime)
    assert len(runtime.made) == 1 and len(runtime.made[0].specs) == result.runs == 2


def test_several_scenarios_share_the_first_gateway(scenario: Scenario, tmp_path: Path) -> None:
    runtime = Runtime()
    other = Scenario(name="other", path=tmp_path / "other.scenario.yaml",
                     workload=scenario.workload, firewall=scenario.firewall)  # fmt: skip
    joint = learn_together([scenario, other], runtime, parallel=1)
    assert joint.verified
    assert len(runtime.made) == 1 and len(runtime.made[0].specs) == joint.runs
