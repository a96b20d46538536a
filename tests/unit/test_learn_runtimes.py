"""How a learn lends runtimes to its runs: a gateway shared by several runs takes one run at a
time; `parallel` runs at once get up to `parallel` of them, each kept for the whole learn."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_learn import NEEDED, OPTIONAL

from harness.events import lifecycle_event
from harness.learn import learn, learn_together
from harness.policy.model import Policy
from harness.runfolder import Recorder
from harness.scenario import FirewallSettings, Scenario, Workload
from harness.testing import FakeRun, FakeRuntime, FakeSharedGateway, fetches


def runtime() -> FakeRuntime:
    """Offers `shared()` like the Docker runtime; `gateways` are the shared ones handed out,
    each refusing a second run while one is going."""
    needs = fetches(*NEEDED, *OPTIONAL, optional=OPTIONAL)

    def slow(run: FakeRun) -> int:
        time.sleep(0.02)  # long enough for a second worker to try the same gateway
        return needs(run)

    return FakeRuntime(slow)


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
    fake = runtime()
    result = learn(scenario, fake, classify=True, parallel=parallel)
    assert result.verified
    assert {c.host: c.classification for c in result.candidates} == {
        NEEDED[0]: "required", NEEDED[1]: "required", OPTIONAL[0]: "optional"}  # fmt: skip
    assert 1 <= len(fake.gateways) <= parallel
    assert sum(len(gateway.specs) for gateway in fake.gateways) == result.runs
    assert all(gateway.closed for gateway in fake.gateways)


def test_without_classify_audit_and_verify_share_one_gateway(scenario: Scenario) -> None:
    fake = runtime()
    result = learn(scenario, fake)
    assert len(fake.gateways) == 1 and len(fake.gateways[0].specs) == result.runs == 2


def test_several_scenarios_share_the_first_gateway(scenario: Scenario, tmp_path: Path) -> None:
    fake = runtime()
    other = Scenario(name="other", path=tmp_path / "other.scenario.yaml",
                     workload=scenario.workload, firewall=scenario.firewall)  # fmt: skip
    joint = learn_together([scenario, other], fake, parallel=1)
    assert joint.verified
    assert len(fake.gateways) == 1 and len(fake.gateways[0].specs) == joint.runs


def test_a_runtime_without_shared_gateways_takes_runs_at_once(scenario: Scenario) -> None:
    needs = fetches(*NEEDED, *OPTIONAL, optional=OPTIONAL)
    going, most = [], []

    def overlapping(run: FakeRun) -> int:
        going.append(run)
        most.append(len(going))
        time.sleep(0.05)
        going.remove(run)
        return needs(run)

    fake = FakeRuntime(overlapping, shares=False)
    result = learn(scenario, fake, classify=True, parallel=2)
    assert result.verified and fake.gateways == []
    assert max(most) == 2  # the classification runs overlapped


class Warmable(FakeSharedGateway):
    """A fake shared gateway that can be started ahead of its runs, as SharedGateway.warm."""

    def __init__(self, runtime: WarmRuntime) -> None:
        super().__init__(runtime)
        self.owner = runtime
        self.warmed_with = None
        self.warmed_during_audit = False

    def warm(self, spec) -> None:
        self.warmed_with = spec
        self.warmed_during_audit = not self.owner.audit_done.is_set()
        self.owner.warm_calls.release()
        if self.owner.fail:
            raise RuntimeError("no engine")


class AuditFirst(FakeSharedGateway):
    """The learn's first gateway: its first run (the audit) ends once both warm-ups began."""

    def __init__(self, runtime: WarmRuntime) -> None:
        super().__init__(runtime)
        self.owner = runtime

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


class WarmRuntime(FakeRuntime):
    def __init__(self, fail: bool = False, expect_warm: bool = True) -> None:
        super().__init__(fetches(*NEEDED, *OPTIONAL, optional=OPTIONAL))
        self.expect_warm = expect_warm
        self.audit_done = threading.Event()
        self.warm_calls = threading.Semaphore(0)
        self.fail = fail

    def _share(self) -> FakeSharedGateway:
        gateway = (Warmable if self.gateways else AuditFirst)(self)
        self.gateways.append(gateway)
        return gateway


@pytest.mark.parametrize("fail", [False, True])
def test_classify_starts_the_extra_gateways_while_the_audit_runs(
    scenario: Scenario, fail: bool
) -> None:
    runtime = WarmRuntime(fail=fail)
    result = learn(scenario, runtime, classify=True, parallel=3)
    assert result.verified
    warmed = [gateway for gateway in runtime.gateways if isinstance(gateway, Warmable)]
    assert len(warmed) == 2
    assert all(gateway.warmed_with is not None and gateway.warmed_with.mode == "audit"
               for gateway in warmed)  # fmt: skip
    assert all(gateway.warmed_during_audit for gateway in warmed)
    # Warmed or not (a failed warm-up), they take runs and are closed at the end.
    assert sum(len(gateway.specs) for gateway in runtime.gateways) == result.runs
    assert all(gateway.closed for gateway in runtime.gateways)


def test_a_learn_without_classify_warms_no_gateway(scenario: Scenario) -> None:
    runtime = WarmRuntime(expect_warm=False)
    learn(scenario, runtime)
    assert len(runtime.gateways) == 1
