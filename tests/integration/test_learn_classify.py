"""`egress learn` on real runs: a workload that needs one simulated site and only tries another
(a telemetry host, its failure ignored), so --classify must tell required from optional."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.learn import learn
from harness.sandbox import PYTHON_IMAGE
from harness.sandbox import run as sandbox_run
from harness.sandbox.images import UPSTREAMS_IMAGE
from harness.scenario import load_scenario

pytestmark = pytest.mark.docker

# The build fails without the API host and shrugs off a failed telemetry ping, as many do.
SCENARIO = textwrap.dedent(
    f"""\
    name: learn-classify
    upstreams:
      - name: sites
        image: {UPSTREAMS_IMAGE}
        hosts: [api.build.test, telemetry.build.test]
    workload:
      image: {PYTHON_IMAGE}
      command:
        - python3
        - -c
        - |
          import urllib.request
          try:
              urllib.request.urlopen("https://telemetry.build.test/ping", timeout=5)
          except OSError as error:
              print("telemetry skipped:", error)
          print(urllib.request.urlopen("https://api.build.test/pkg", timeout=5).status)
      timeout: 60
    expect:
      outcome: success
    """
)


def test_classify_marks_the_needed_host_required_and_the_telemetry_host_optional(
    engine, images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    path = tmp_path / "learn-classify.scenario.yaml"
    path.write_text(SCENARIO)
    result = learn(load_scenario(path), sandbox_run, classify=True, parallel=2)

    classes = {candidate.host: candidate.classification for candidate in result.candidates}
    assert classes == {"telemetry.build.test": "optional", "api.build.test": "required"}
    optional = next(c for c in result.candidates if c.host == "telemetry.build.test")
    assert optional.seconds_without is not None
    listed = [candidate.host for candidate in result.listed]
    assert listed == ["api.build.test"]
    assert result.verified
    # audit, verify, one run per host denied, a second try of the optional one, the
    # required-only verify
    assert result.runs == 6, result.runs


def test_every_run_of_a_learn_goes_through_one_gateway_with_its_own_recording(
    engine, images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.recording import read_events
    from harness.sandbox import shared_gateway

    runs_root = tmp_path / "runs"
    runs_root.mkdir(mode=0o700)  # a private folder (mkdtemp's mode): the gateway passes through
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(runs_root))
    path = tmp_path / "learn-classify.scenario.yaml"
    path.write_text(SCENARIO)
    with shared_gateway() as shared:
        result = learn(load_scenario(path), shared, classify=True)
    assert result.verified
    assert (shared.gateway_starts, shared.runs) == (1, result.runs)
    runs = [result.audit, result.verify, *result.classify_runs, result.required_verify]
    run_ids = set()
    for execution in runs:
        assert execution is not None
        events = read_events(execution.run_dir)
        ids = {event.run for event in events}
        assert len(ids) == 1, (execution.run_dir, ids)  # nothing of another run in it
        assert [e.reason for e in events if e.kind == "lifecycle"][:1] == ["ready"]
        run_ids |= ids
    assert len(run_ids) == len(runs)
    # The audit run recorded would-deny, the verify run enforced: modes switched per run.
    assert {e.action for e in result.audit.events if e.kind == "tls"} == {"Allow"}
    denied = [e for run in result.classify_runs for e in run.events if e.action == "Deny"]
    assert denied, "a classify run denied nothing: its policy was not switched in"
