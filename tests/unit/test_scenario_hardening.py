"""Scenario values that used to be accepted or to crash: a timeout that is not a finite number,
DNS overrides for names that are not host names, and paths that leave the scenario's folder."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import InputError
from harness.scenario import load_scenario

BASE = """\
name: demo
workload:
  image: egress/python
  command: [pip, --version]
{workload}firewall:
{firewall}"""


def write(folder: Path, workload: str = "", firewall: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "demo.scenario.yaml"
    if "policy:" not in firewall:
        firewall = "policy: {allow: [files.example.test]}\n" + firewall
    path.write_text(BASE.format(workload=textwrap.indent(workload, "  "),
                                firewall=textwrap.indent(firewall, "  ")))  # fmt: skip
    return path


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "0", "1e12"])
def test_a_timeout_that_is_not_a_finite_positive_number_is_refused(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(InputError) as raised:
        load_scenario(write(tmp_path, workload=f"timeout: {value}\n"))
    assert ":5:" in str(raised.value) and "workload.timeout" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ('"bad name!"', "bad name!"),
        ('"*.wild.example.test"', "is a pattern"),
        ("null", "not a host name"),
        ("1.5", "not a host name"),
        ('""', ""),
    ],
)
def test_a_dns_override_for_what_is_not_a_host_name_is_refused(
    tmp_path: Path, name: str, words: str
) -> None:
    with pytest.raises(InputError) as raised:
        load_scenario(write(tmp_path, firewall=f"hosts: {{{name}: 10.9.0.5}}\n"))
    assert "firewall.hosts" in str(raised.value) and words in str(raised.value)


def test_dns_override_names_are_normalized(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, firewall="hosts: {Files.Example.Test.: 10.9.0.5}\n"))
    assert scenario.firewall.hosts == (("files.example.test", "10.9.0.5"),)


@pytest.mark.parametrize(
    ("workload", "firewall", "key"),
    [
        ("workdir: ../outside\n", "", "workload.workdir"),
        ("trust: [../outside/ca.pem]\n", "", "workload.trust[0]"),
        ("", "policy: ../outside/policy.yaml\n", "firewall.policy"),
        ("workdir: link-out\n", "", "workload.workdir"),
    ],
    ids=["workdir", "trust", "policy", "symlink"],
)
def test_a_path_outside_the_scenarios_folder_is_refused_unless_allowed(
    tmp_path: Path, workload: str, firewall: str, key: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (outside / "policy.yaml").write_text("allow: [a.example.test]\n")
    (tmp_path / "repo").mkdir()
    os.symlink(outside, tmp_path / "repo" / "link-out")
    path = write(tmp_path / "repo", workload=workload, firewall=firewall)
    with pytest.raises(InputError) as raised:
        load_scenario(path)
    message = str(raised.value)
    assert key in message and "outside the scenario's own tree" in message
    assert "--allow-outside-paths" in message
    load_scenario(path, allow_outside_paths=True)  # the user's say-so lifts it


def test_the_environment_variable_allows_outside_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "outside").mkdir()
    path = write(tmp_path / "repo", workload="workdir: ../outside\n")
    monkeypatch.setenv("EGRESS_ALLOW_OUTSIDE_PATHS", "1")
    assert load_scenario(path).workload.workdir == (tmp_path / "outside").resolve()


def test_a_host_file_named_as_policy_is_neither_read_nor_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n" * 200)
    path = write(tmp_path / "repo", firewall=f"policy: {secret}\n")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "outside the scenario's own tree" in err and "root:x" not in err
    assert len(err) < 600


def test_a_whole_file_in_an_error_is_quoted_as_a_short_excerpt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "policy.yaml").write_text("root:x:0:0:root:/root:/bin/bash\n" * 200)
    path = write(tmp_path / "repo", firewall="policy: policy.yaml\n")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "must be a mapping" in err and len(err) < 600
