"""The CLI's contract: exit codes, messages without tracebacks, and `check`'s JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.events import Event
from harness.recording import Recorder

POLICY = """\
name: contoso-build
rule_collection_groups:
  - name: DefaultApplicationRuleCollectionGroup
    priority: 300
    rule_collections:
      - name: allow-build
        priority: 100
        action: Allow
        rules:
          - rule_type: ApplicationRule
            name: kudu-self
            protocols: ["Https:443"]
            target_fqdns: ["*.scm.azurewebsites.net"]
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_check_json_gives_one_object_per_destination(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["check", str(policy), "app.scm.azurewebsites.net", "scm.azurewebsites.net:443", "--json"]
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [line["action"] for line in lines] == ["Allow", "Deny"]
    assert lines[0]["rule"] == {
        "policy": "contoso-build",
        "group": "DefaultApplicationRuleCollectionGroup",
        "collection": "allow-build",
        "rule": "kudu-self",
    }
    assert lines[1]["rule"] is None
    assert lines[1]["azure"] == (
        "HTTPS request from 10.0.2.4:50000 to scm.azurewebsites.net:443. Action: Deny. "
        "No rule matched. Proceeding with default action"
    )


def test_check_http_destination_uses_port_80(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["check", str(policy), "app.scm.azurewebsites.net", "--protocol", "http", "--json"])
    line = json.loads(capsys.readouterr().out)
    assert line["action"] == "Deny"  # the rule allows Https:443 only
    assert line["azure"].startswith(
        "HTTP  request from 10.0.2.4:50000 to app.scm.azurewebsites.net:80."
    )


def test_bad_policy_is_exit_2_with_location_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(POLICY.replace("priority: 100", "priority: 70000"))
    code = main(["check", str(path), "a.example.test"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}:7:9: rule_collection_groups[0].rule_collections[0].priority" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "destination", ["a.example.test:99999", "www.example.*", "a.example.test:x"]
)
def test_bad_destination_is_exit_2(
    policy: Path, destination: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(policy), destination]) == 2
    assert destination in capsys.readouterr().err


def test_logs_prints_azure_lines_and_azfw_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = Recorder(tmp_path)
    recorder.write(Event(ts="2026-11-28T12:00:00.000Z", run="r", kind="lifecycle", reason="ready"))
    recorder.write(Event(
        ts="2026-11-28T12:00:01.000Z", run="r", kind="tls", src="172.18.0.2:50347",
        dst="203.0.113.80:443", host="x.example.test", port=443, protocol="HTTPS",
        action="Deny", would="Deny", reason="No rule matched. Proceeding with default action",
        azure="HTTPS request from 172.18.0.2:50347 to x.example.test:443. Action: Deny. "
        "No rule matched. Proceeding with default action",
    ))  # fmt: skip
    recorder.close()
    assert main(["logs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        ("HTTPS request from 172.18.0.2:50347 to x.example.test:443. Action: Deny. "
        "No rule matched. Proceeding with default action")
    ]
    assert main(["logs", str(tmp_path), "--format", "azfw-json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["Category"] == "AZFWApplicationRule"
    assert row["ActionReason"] == "Default Action"
    assert row["Fqdn"] == "x.example.test"


def test_missing_recording_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", str(tmp_path / "nope")]) == 2
