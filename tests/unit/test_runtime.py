"""The runtime seam (harness.runtime) and the package's FakeRuntime (harness.testing): a fake
run is decided by the policy file it is given and recorded as the gateway records it."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.runfolder import read_run
from harness.runtime import RunSpec, docker_runtime
from harness.testing import FakeRun, FakeRuntime, fetches


def spec(tmp_path: Path, mode: str = "enforce", command: str = "needs a.example.test") -> RunSpec:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "policy.yaml").write_text("allow: [a.example.test]\n")
    return RunSpec(run_dir=run_dir, image="egress/python", command=command, mode=mode)  # type: ignore[arg-type]


def test_the_seam_and_the_fake_runtime_import_no_docker() -> None:
    code = ("import sys, harness.runtime, harness.testing, harness.execute, harness.learn, "
            "harness.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'docker'))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_fake_run_is_decided_by_its_policy_and_recorded(tmp_path: Path) -> None:
    lines: list[str] = []
    runtime = FakeRuntime(fetches("a.example.test", "b.example.test"))
    result = runtime(spec(tmp_path), on_output=lines.append)
    assert result.exit_code == 1 and not result.timed_out
    assert lines == ["fetched https://a.example.test/", "ERROR: could not fetch https://b.example.test/"]
    events = read_run(result.run_dir).events
    assert [(e.host, e.action) for e in events] == [("a.example.test", "Allow"), ("b.example.test", "Deny")]
    assert "to b.example.test:443. Action: Deny. No rule matched" in (result.run_dir / "azure.log").read_text()


def test_in_audit_mode_the_fake_run_gets_through_and_the_event_says_what_enforce_would_do(
    tmp_path: Path,
) -> None:
    runtime = FakeRuntime(fetches("b.example.test"))
    result = runtime(spec(tmp_path, mode="audit"))
    assert result.exit_code == 0
    (event,) = read_run(result.run_dir).events
    assert (event.action, event.would) == ("Allow", "Deny")


def test_by_default_the_workload_needs_the_hosts_its_command_names(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    assert runtime(spec(tmp_path)).exit_code == 0
    assert runtime(spec(tmp_path, command="needs a.example.test c.example.test")).exit_code == 1
    assert len(runtime.specs) == 2


def test_an_unreachable_host_is_allowed_but_fails_the_workload(tmp_path: Path) -> None:
    runtime = FakeRuntime(fetches("a.example.test", unreachable={"a.example.test"}))
    result = runtime(spec(tmp_path))
    assert result.exit_code == 1
    (event,) = read_run(result.run_dir).events
    assert (event.action, event.upstream) == ("Allow", "unreachable")


def test_a_shared_fake_gateway_takes_one_run_at_a_time(tmp_path: Path) -> None:
    inside, leave = threading.Event(), threading.Event()

    def waits(run: FakeRun) -> int:
        inside.set()
        leave.wait(5)
        return 0

    runtime = FakeRuntime(waits)
    assert runtime.shared is not None
    with runtime.shared() as gateway:
        first = threading.Thread(target=gateway, args=(spec(tmp_path),))
        first.start()
        inside.wait(5)
        with pytest.raises(RuntimeError, match="two runs at once"):
            gateway(spec(tmp_path))
        leave.set()
        first.join()
    assert gateway.closed and runtime.gateways == [gateway]
    assert FakeRuntime(shares=False).shared is None


def test_the_docker_runtime_builds_only_what_the_scenarios_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import harness.sandbox.docker_runtime as real

    asked: list = []
    monkeypatch.setattr(real, "build_images", lambda progress, only=None: asked.append(only))
    monkeypatch.setattr(real, "images_for_scenarios", lambda scenarios: {"egress/python"})
    runtime = docker_runtime()
    runtime.prepare([object()], print)  # type: ignore[list-item]
    runtime.prepare(None, print)
    assert asked == [{"egress/python"}, None]
    assert callable(runtime) and callable(runtime.shared)
