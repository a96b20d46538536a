from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.scenario import Expect, Observed, check_expectations, load_scenario

GOOD = """\
name: demo
workload:
  image: egress/python
  workdir: app
  command: [pip, --version]
  env: {A: 1}
  trust: [host]
  timeout: 30
firewall:
  policy:
    allow: [files.example.test]
  mode: audit
  https_deny: drop
  hosts: {files.example.test: 10.9.0.5}
expect:
  outcome: failure
  denied: [index.example.test:443]
  log_contains: ['Action: Deny']
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    path = tmp_path / "scenario.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_scenario_resolves_paths_and_inline_policy(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.workload.workdir == (tmp_path / "app").resolve()
    assert scenario.workload.command == ("pip", "--version")
    assert scenario.workload.env == (("A", "1"),)
    assert scenario.firewall.mode == "audit"
    assert scenario.firewall.https_deny == "drop"
    assert scenario.firewall.hosts == (("files.example.test", "10.9.0.5"),)
    rule = scenario.firewall.policy.rule_collection_groups[0].rule_collections[0].rules[0]
    assert rule.target_fqdns == ("files.example.test",)
    assert scenario.expect.location_of("denied").line == 17
    assert scenario.workload.if_image_missing == "fail"
    assert scenario.firewall.dns == "azure"  # Azure's DNS answers every name


def test_firewall_dns_resolve_keeps_the_real_answers_only(tmp_path: Path) -> None:
    text = GOOD.replace("  https_deny: drop", "  https_deny: drop\n  dns: resolve")
    assert load_scenario(write(tmp_path, text)).firewall.dns == "resolve"


@pytest.mark.parametrize(
    ("old", "new", "line", "key_path", "words"),
    [
        ("  timeout: 30", "  timeot: 30", 8, "workload.timeot", "did you mean 'timeout'"),
        ("  timeout: 30", "  timeout: -1", 8, "workload.timeout", "positive number"),
        ("  timeout: 30", "  timeout: 30\n  if_image_missing: pull", 9,
         "workload.if_image_missing", "fail, skip"),
        ("  workdir: app", "  workdir: missing", 4, "workload.workdir", "is not a folder"),
        ("  mode: audit", "  mode: learn", 12, "firewall.mode", "enforce, audit"),
        ("  https_deny: drop", "  https_deny: reset", 13, "firewall.https_deny", "close, alert, drop"),
        ("  https_deny: drop", "  https_deny: drop\n  dns: bogus", 14, "firewall.dns",
         "dns must be one of azure, resolve, not 'bogus'"),
        ("10.9.0.5}", "nine}", 14, 'firewall.hosts["files.example.test"]', "not an IP address"),
        ("  outcome: failure", "  outcome: maybe", 16, "expect.outcome", "success, failure"),
        ("['Action: Deny']", "['Action: (']", 18, "expect.log_contains[0]", "regular expression"),
        ("    allow: [files.example.test]", "    allow: [www.example.*]", 11,
         "firewall.policy.allow[0]", "wildcard"),
        ("  image: egress/python\n", "", 2, "workload", "missing required key 'image'"),
    ],
)  # fmt: skip
def test_bad_scenario_names_line_and_key(
    tmp_path: Path, old: str, new: str, line: int, key_path: str, words: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert f"{path}:{line}:" in message
    assert key_path in message
    assert words in message


def observed(**overrides: object) -> Observed:
    values: dict[str, object] = {
        "exit_code": 1,
        "timed_out": False,
        "destinations": (("index.example.test", 443, "Deny"), ("files.example.test", 443, "Allow")),
        "azure_lines": ("HTTPS request from 10.0.0.2:5 to index.example.test:443. Action: Deny",),
        "output": "SSLEOFError",
    }
    values.update(overrides)
    return Observed(**values)  # type: ignore[arg-type]


def test_expectations_that_hold_give_no_failures() -> None:
    expect = Expect(
        outcome="failure",
        denied=("index.example.test:443",),
        allowed=("files.example.test",),
        log_contains=("Action: Deny$",),
        output_contains=("SSLEOF",),
    )
    assert check_expectations(expect, observed()) == []


@pytest.mark.parametrize(
    ("expect", "key", "words"),
    [
        (Expect(outcome="success"), "outcome", "exited with 1"),
        (Expect(outcome="failure", denied=("files.example.test",)), "denied", "was Allow"),
        (Expect(outcome="failure", allowed=("other.example.test",)), "allowed", "never contacted"),
        (Expect(outcome="failure", denied=("index.example.test:80",)), "denied", "never contacted"),
        (Expect(outcome="failure", log_contains=("Action: Allow",)), "log_contains", "no line"),
        (
            Expect(outcome="failure", output_contains=("Successfully",)),
            "output_contains",
            "no line",
        ),
    ],
)
def test_each_unmet_expectation_is_reported(expect: Expect, key: str, words: str) -> None:
    failures = check_expectations(expect, observed())
    assert [failure.key for failure in failures] == [key]
    assert words in failures[0].message


def test_timeout_is_a_failure_outcome() -> None:
    failures = check_expectations(
        Expect(outcome="success"), observed(exit_code=None, timed_out=True)
    )
    assert "timed out" in failures[0].message


# --- derived values ------------------------------------------------------------------------

DERIVED = """\
name: derived
workload:
  image: egress/python
  command: echo ${HOME}
firewall:
  policy:
    allow: ['${pip.index_host}']
expect:
  denied: ['${pip.files_host}:443']
  log_contains: ['to (?!${pip.index_host}:)[^ ]+:443']
"""


def test_derived_values_are_listed_where_first_written_and_stand_in_in_the_policy(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, DERIVED)
    scenario = load_scenario(path)
    assert [(use.name, use.location.line, use.key_path) for use in scenario.derived] == [
        ("pip.index_host", 7, "firewall.policy.allow[0]"),
        ("pip.files_host", 9, "expect.denied[0]"),
        ("pip.index_host", 10, "expect.log_contains[0]"),
    ]
    rule = scenario.firewall.policy.rule_collection_groups[0].rule_collections[0].rules[0]
    assert rule.target_fqdns == ("pip-index-host.derived.egress.test",)
    assert scenario.expect.denied == ("${pip.files_host}:443",)
    assert scenario.workload.command == "echo ${HOME}"  # a shell's variable, not a derived value


@pytest.mark.parametrize(
    ("old", "new", "line", "key_path"),
    [
        ("allow: ['${pip.index_host}']", "allow: ['${pip.index_hots}']", 7,
         "firewall.policy.allow[0]"),
        ("denied: ['${pip.files_host}:443']", "denied: ['${npm.registry}']", 9,
         "expect.denied[0]"),
        ("(?!${pip.index_host}:)", "(?!${apt.mirror}:)", 10, "expect.log_contains[0]"),
    ],
)  # fmt: skip
def test_unknown_derived_value_names_line_key_and_known_names(
    tmp_path: Path, old: str, new: str, line: int, key_path: str
) -> None:
    path = write(tmp_path, DERIVED.replace(old, new))
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}:")
    assert f"{key_path}: unknown derived value ${{" in message
    assert "(did you mean ${" in message
    assert "known: ${pip.index_url}, ${pip.index_host}, ${pip.files_host}" in message
