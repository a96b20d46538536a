"""`egress learn` when a build needs a host this machine cannot reach: the host is learned as
needed but not verified, and the exit is 1 with a sentence that names it and says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main, progress_verdict
from harness.events import Event
from harness.policy.decide import Decider
from harness.policy.load import load_policy
from harness.policy.model import Request
from harness.testing import FakeRun, FakeRuntime

FAR = "far:"  # a host given as far:NAME is one this machine cannot reach


def far_fetches(run: FakeRun) -> int:
    """The workload fetches each host of its command over HTTPS. A far host's name does not
    resolve here: the firewall (answering it with a sinkhole) decides its connection by name;
    when allowed, the upstream is unreachable and the download fails."""
    failed = False
    for word in run.spec.command[1:]:
        host = word.removeprefix(FAR)
        if not run.connect(host, unreachable=word.startswith(FAR)):
            failed = True
            run.say(f"npm error request to https://{host}/tool.tgz failed, reason: socket hang up")
    return 1 if failed else 0


def scenario_file(tmp_path: Path, *hosts: str) -> Path:
    path = tmp_path / "tool.scenario.yaml"
    path.write_text(
        f"name: tool\nworkload:\n  image: egress/node\n  command: [fetch, {', '.join(hosts)}]\n"
    )
    return path


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRuntime:
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    return FakeRuntime(far_fetches)


def test_an_unreachable_host_is_learned_as_needed_but_unverified_and_named(
    tmp_path: Path, runtime: FakeRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "allow.yaml"
    scenario = scenario_file(tmp_path, "registry.example.test", f"{FAR}binaries.example.test")
    assert main(["learn", str(scenario), "-o", str(out)], runtime=runtime) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    # The sentence names the host and says why, on the error line.
    assert "binaries.example.test" in captured.err
    assert "could not reach it from this machine" in captured.err
    assert "allowed but unreachable from this machine" in captured.err
    assert "socket hang up" in captured.err  # the client's own error
    # Learned as needed, with the evidence saying it could not be verified here.
    text = out.read_text()
    assert "target_fqdns: [binaries.example.test]" in text
    assert "unreachable from this machine: not verified" in text
    assert "NOT verified" in text
    [verify] = [spec for spec in runtime.specs if spec.run_dir.name.endswith("verify")]
    verify_policy = load_policy(verify.policy_path)
    decider = Decider(verify_policy)
    assert decider.decide(
        Request("HTTPS", "10.0.0.1", 1, 443, host="binaries.example.test")
    ).allowed


def test_a_verify_run_failing_for_a_denial_says_that_not_unreachable(
    tmp_path: Path, runtime: FakeRuntime, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Nothing unreachable: a plain host that the verify run denies is reported as denied.
    def denies_in_verify(run: FakeRun) -> int:
        if run.name.endswith("verify"):
            run.spec.policy_path.write_text("allow: [nothing.example.test]\n")
        return far_fetches(run)

    scenario = scenario_file(tmp_path, "registry.example.test")
    assert main(["learn", str(scenario)], runtime=FakeRuntime(denies_in_verify)) == 1
    err = capsys.readouterr().err
    assert "registry.example.test:443 denied" in err
    assert "unreachable" not in err


@pytest.mark.parametrize(
    ("action", "would", "upstream", "said"),
    [
        ("Allow", "Deny", None, "would be denied"),
        ("Allow", "Allow", None, "Allow"),
        ("Deny", "Deny", None, "Deny"),
        ("Allow", "Allow", "unreachable", "Allow (unreachable from this machine)"),
        ("Allow", "Deny", "unreachable", "would be denied (unreachable from this machine)"),
    ],
)
def test_audit_progress_says_would_deny_never_deny(
    action: str, would: str, upstream: str | None, said: str
) -> None:
    event = Event(ts="t", run="r", kind="tls", host="a.example.test", port=443, action=action,
                  would=would, upstream=upstream)  # fmt: skip
    assert progress_verdict(event) == said


@pytest.mark.parametrize("command", ["run", "learn"])
def test_a_bogus_dns_mode_is_exit_2_at_its_line(
    tmp_path: Path, runtime: FakeRuntime, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = tmp_path / "bogus.scenario.yaml"
    path.write_text("name: bogus\nworkload:\n  image: egress/node\n  command: [x]\n"
                    "firewall:\n  dns: bogus\n")  # fmt: skip
    assert main([command, str(path)], runtime=runtime) == 2
    err = capsys.readouterr().err
    assert f"{path}:6:3: firewall.dns: dns must be one of azure, resolve, not 'bogus'" in err
    assert "Traceback" not in err
    assert runtime.specs == []
