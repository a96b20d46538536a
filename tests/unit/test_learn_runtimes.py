"""How a learn lends runtimes to its runs: a gateway shared by several runs takes one run at a
time; `parallel` runs at once get up to `parallel` of them, each kept for the whole learn."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_learn import NEEDED, OPTIONAL

from harness.learn import learn, learn_together
from harness.policy.model import Policy
from harness.scenario import FirewallSettings, Scenario, Workload
from harness.testing import FakeRun, FakeRuntime, fetches


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
