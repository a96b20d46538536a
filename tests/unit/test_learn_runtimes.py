"""How a learn lends runtimes to its runs: a gateway shared by several runs takes one run at a
time; `parallel` runs at once get up to `parallel` of them, each kept for the whole learn."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Self

import pytest
from test_learn import NEEDED, OPTIONAL, FakeRuntime

from harness.events import lifecycle_event
from harness.learn import learn, learn_together
from harness.policy.model import Policy
from harness.runfolder import Recorder
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


class Warmable(OneAtATime):
    """A fake shared gateway that can be started ahead of its runs, as SharedGateway.warm."""

    def __init__(self, made: list[OneAtATime], owner: WarmRuntime) -> None:
        super().__init__(made)
        self.owner = owner
        self.warmed_with = None
        self.warmed_during_audit = False

    def warm(self, spec) -> None:
        self.warmed_with = spec
        self.warmed_during_audit = not self.owner.audit_done.is_set()
        self.owner.warm_calls.release()
        if self.owner.fail:
            raise RuntimeError("no engine")


class AuditFirst(OneAtATime):
    """The learn's first gateway: its first run (the audit) ends once both warm-ups began."""

    def __init__(self, made: list[OneAtATime], owner: WarmRuntime) -> None:
        super().__init__(made)
        self.owner = owner

    def __call__(self, spec, on_output=None):
        if not self.specs and self.owner.expect_warm:
            # As a gateway does once it listens: the learn warms the others on this event.
            recorder = Recorder(spec.run_dir)
            recorder.write(lifecycle_event(spec.run_dir.name, "ready"))
            recorder.close()
            for _ in range(2):
                assert self.owner.warm_calls.acquire(timeout=10), "no gateway was warmed"
        try:
            return super().__call__(spec, on_output)
        finally:
            self.owner.audit_done.set()


class WarmRuntime(Runtime):
    def __init__(self, fail: bool = False, expect_warm: bool = True) -> None:
        super().__init__()
        self.expect_warm = expect_warm
        self.audit_done = threading.Event()
        self.warm_calls = threading.Semaphore(0)
        self.fail = fail

    def shared(self) -> OneAtATime:
        return (Warmable if self.made else AuditFirst)(self.made, self)


@pytest.mark.parametrize("fail", [False, True])
def test_classify_starts_the_extra_gateways_while_the_audit_runs(
    scenario: Scenario, fail: bool
) -> None:
    runtime = WarmRuntime(fail=fail)
    result = learn(scenario, runtime, classify=True, parallel=3)
    assert result.verified
    warmed = [gateway for gateway in runtime.made if isinstance(gateway, Warmable)]
    assert len(warmed) == 2
    assert all(gateway.warmed_with is not None and gateway.warmed_with.mode == "audit"
               for gateway in warmed)  # fmt: skip
    assert all(gateway.warmed_during_audit for gateway in warmed)
    # Warmed or not (a failed warm-up), they take runs and are closed at the end.
    assert sum(len(gateway.specs) for gateway in runtime.made) == result.runs
    assert all(getattr(gateway, "closed", False) for gateway in runtime.made)


def test_a_learn_without_classify_warms_no_gateway(scenario: Scenario) -> None:
    runtime = WarmRuntime(expect_warm=False)
    learn(scenario, runtime)
    assert len(runtime.made) == 1
