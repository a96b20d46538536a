"""harness.render: one account of an execution, laid out as text by the plugin and in colour by
`egress run`; both say the same things in the same order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.errors import Location
from harness.execute import Execution
from harness.policy.model import Policy
from harness.render import Block, Span, execution_blocks, plain, render_text, verdict
from harness.report import Destination
from harness.scenario import Failure, FirewallSettings, Scenario, Workload


def destination(host: str, action: str, would: str, **more: object) -> Destination:
    return Destination(host=host, port=443, protocol="HTTPS", action=action, would=would,
                       rule="", reason="", connections=2, bytes_up=517, **more)  # type: ignore[arg-type]  # fmt: skip


def execution(tmp_path: Path, *, failures: int = 1, **more: object) -> Execution:
    policy = Policy("pol")
    scenario = Scenario(name="build", path=tmp_path / "build.scenario.yaml",
                        workload=Workload(image="egress/python", command="build"),
                        firewall=FirewallSettings(policy=policy))  # fmt: skip
    failed = Failure("outcome", "expected success, but the workload exited with 1",
                     Location(scenario.path, 7, 3))  # fmt: skip
    values: dict[str, object] = {
        "scenario": scenario, "policy": policy, "mode": "enforce", "exit_code": 1,
        "run_dir": tmp_path / "runs" / "build", "timed_out": False, "duration_s": 1.5,
        "events": [], "destinations": [destination("blocked.example.test", "Deny", "Deny")],
        "azure_lines": [f"HTTPS request {n}. Action: Deny." for n in range(30)],
        "output": "\n".join(f"output {n}" for n in range(30)), "failures": [failed] * failures,
    }  # fmt: skip
    return Execution(**{**values, **more})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("row", "said"),
    [
        (destination("a.test", "Allow", "Allow"), "Allow"),
        (destination("a.test", "Deny", "Deny"), "Deny"),
        (destination("a.test", "Allow", "Deny"), "would be denied (audit mode: allowed)"),
        (destination("a.test", "Allow+Deny", "Deny"), "Allow+Deny (would Deny)"),
        (destination("a.test", "Allow", "Allow", upstream_failures={"reset": 3, "timeout": 1}),
         "Allow (upstream: 3 reset, 1 timeout)"),
        (destination("a.test", "Allow", "Allow", unreachable=True),
         "Allow (unreachable from this machine)"),
    ],
)  # fmt: skip
def test_the_action_cell_says_what_happened_and_what_would_have(row: Destination, said: str) -> None:
    assert plain(verdict(row)) == said


def test_a_failed_run_reads_in_one_order(tmp_path: Path) -> None:
    text = render_text(execution_blocks(execution(tmp_path)))
    titles = [line for line in text.splitlines() if line.endswith(":") and not line[0].isspace()]
    assert titles == ["failed expectations:", "destinations:", "last Azure log lines (25):",
                      "workload output, last 25 lines:"]  # fmt: skip
    assert text.splitlines()[0] == (
        f"Scenario build ({tmp_path / 'build.scenario.yaml'}): failure (exit code 1, 1.5 s)"
        " behind policy pol in enforce mode"
    )
    assert f"  ✗ {tmp_path / 'build.scenario.yaml'}:7:3: expect.outcome: expected success" in text
    assert re.search(r"\n  blocked\.example\.test:443 +HTTPS +Deny +\(default\) +2 +517/0\n", text)
    assert "output 4\n" not in text and text.endswith(
        f"  output 29\n\nrecording: {tmp_path / 'runs' / 'build'}"
    )


def test_a_passing_run_has_no_log_tails_and_a_streamed_output_is_not_repeated(
    tmp_path: Path,
) -> None:
    passed = render_text(execution_blocks(execution(tmp_path, failures=0, exit_code=0)))
    assert "success (exit code 0" in passed and "Azure" not in passed and "output 29" not in passed
    streamed = render_text(execution_blocks(execution(tmp_path), output_shown=True))
    assert "last Azure log lines (25):" in streamed and "output 29" not in streamed


def test_no_destination_is_said_in_a_sentence(tmp_path: Path) -> None:
    blocks = execution_blocks(execution(tmp_path, destinations=[]))
    assert Block(lines=((Span("No connection left the workload."),),)) in blocks


def test_egress_run_prints_the_same_text_as_the_plugin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.cli import _print_blocks, stdout

    monkeypatch.setattr(stdout, "width", 200)  # a narrow console would fold the table's cells

    blocks = execution_blocks(execution(tmp_path), output_shown=True)
    _print_blocks(blocks)
    printed = capsys.readouterr().out
    for line in render_text(blocks).splitlines():
        words = line.split()
        if words:  # rich pads table cells its own way; the words and their order are the same
            assert " ".join(words) in " ".join(printed.split()), line
