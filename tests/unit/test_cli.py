"""The CLI's contract: exit codes, messages without tracebacks, and `check`'s JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.events import Event
from harness.recording import Recorder
from harness.testing import FakeRun, FakeRuntime, fetches

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
        (
            "HTTPS request from 172.18.0.2:50347 to x.example.test:443. Action: Deny. "
            "No rule matched. Proceeding with default action"
        )
    ]
    assert main(["logs", str(tmp_path), "--format", "azfw-json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["Category"] == "AZFWApplicationRule"
    assert row["ActionReason"] == "Default Action"
    assert row["Fqdn"] == "x.example.test"


def test_missing_recording_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", str(tmp_path / "nope")]) == 2


# --- export, import -------------------------------------------------------------------------


def _parse_export(fmt: str, text: str) -> object:
    """Each format read with a parser of its own kind, so a broken output fails here."""
    if fmt in ("arm", "classic-arm"):
        return json.loads(text)
    if fmt == "terraform":
        import hcl2

        return hcl2.loads(text)
    if fmt == "yaml":
        import yaml

        return yaml.safe_load(text)
    return text


@pytest.mark.parametrize("fmt", ["yaml", "arm", "bicep", "terraform", "azcli", "classic-arm"])
def test_export_writes_each_format_parseably(
    policy: Path, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(policy), "--format", fmt]) == 0
    printed = capsys.readouterr().out
    target = tmp_path / f"out.{fmt}"
    assert main(["export", str(policy), "--format", fmt, "-o", str(target)]) == 0
    assert target.read_text() == printed
    assert f"written to {target}" in capsys.readouterr().err
    parsed = _parse_export(fmt, printed)
    assert parsed
    assert "*.scm.azurewebsites.net" in printed
    if fmt == "bicep":
        assert "Microsoft.Network/firewallPolicies/ruleCollectionGroups@" in printed
    if fmt == "azcli":
        assert "az network firewall policy rule-collection-group" in printed


def test_export_formats_are_the_exporters_formats() -> None:
    from harness.cli import EXPORT_FORMATS
    from harness.export import FORMATS

    assert EXPORT_FORMATS == FORMATS


def _arm_rules(text: str) -> list[dict]:
    template = json.loads(text)
    return [
        rule
        for resource in template["resources"]
        for collection in resource["properties"]["ruleCollections"]
        for rule in collection["rules"]
    ]


def test_export_options_set_sources_group_and_priorities(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([
        "export", str(policy), "--format", "arm", "--source-addresses", "10.20.1.0/24,10.20.2.0/24",
        "--source-addresses", "10.20.3.4", "--group", "Build", "--priority", "400",
        "--collection-priority", "1000",
    ])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    template = json.loads(text)
    (group,) = template["resources"]
    assert group["name"] == "[format('{0}/{1}', parameters('firewallPolicyName'), 'Build')]"
    assert group["properties"]["priority"] == 400
    assert [c["priority"] for c in group["properties"]["ruleCollections"]] == [1000]
    assert {rule["sourceAddresses"] for rule in _arm_rules(text)} == {
        "[parameters('sourceAddresses')]"
    }
    assert template["parameters"]["sourceAddresses"]["defaultValue"] == [
        "10.20.1.0/24", "10.20.2.0/24", "10.20.3.4",
    ]  # fmt: skip


def test_export_of_a_recording_uses_its_policy(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "20260101T000000-s"
    run.mkdir(parents=True)
    (run / "policy.yaml").write_text(policy.read_text())
    assert main(["export", str(run), "--format", "yaml"]) == 0
    assert "name: contoso-build" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--priority", "70000", "--priority: priority 70000 is outside 100..65000"),
        ("--source-addresses", "10.0.0.0/33", "--source-addresses: '10.0.0.0/33' is not an IP"),
        ("--source-addresses", ",", "--source-addresses: no source addresses given"),
    ],
)
def test_export_bad_option_is_exit_2_naming_it(
    policy: Path, option: str, value: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(policy), "--format", "arm", option, value]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_export_to_a_missing_folder_is_exit_2(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "nope" / "out.json"
    assert main(["export", str(policy), "--format", "arm", "-o", str(target)]) == 2
    assert f"-o: cannot write {target}" in capsys.readouterr().err


@pytest.mark.parametrize(("fmt", "suffix"), [("arm", "json"), ("terraform", "tf")])
def test_import_gives_back_the_exported_policy(
    policy: Path, fmt: str, suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.policy.load import load_policy

    exported = tmp_path / f"policy.{suffix}"
    assert main(["export", str(policy), "--format", fmt, "-o", str(exported)]) == 0
    assert main(["import", str(exported)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"# Generated by egress-harness import from {exported}\n")
    back = tmp_path / "back.yaml"
    assert main(["import", str(exported), "-o", str(back)]) == 0
    assert back.read_text() == printed
    assert load_policy(back) == load_policy(policy)


def test_import_of_a_bad_file_is_exit_2_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(POLICY.replace("priority: 100", "priority: 70000"))
    assert main(["import", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:7:9: " in err and "Traceback" not in err


# --- recordings for diff and allowlist ------------------------------------------------------


def _event(host: str, second: int, port: int = 443, would: str = "Deny") -> Event:
    kind = "tls" if port == 443 else "http"
    return Event(
        ts=f"2026-11-28T12:00:{second:02d}.000Z", run="r", kind=kind, src="172.18.0.2:50000",
        dst=f"192.0.2.80:{port}", host=host, port=port, protocol=kind.upper(), action="Allow",
        would=would, bytes_up=100, bytes_down=400,
    )  # fmt: skip


def write_run(root: Path, name: str, scenario: str | None, hosts: list[str],
              mode: str = "audit") -> Path:  # fmt: skip
    folder = root / name
    recorder = Recorder(folder)
    for second, host in enumerate(hosts):
        host, _, port = host.partition(":")
        recorder.write(_event(host, second, int(port or 443)))
    recorder.close()
    if scenario is not None:
        (folder / "summary.json").write_text(json.dumps({"scenario": scenario, "mode": mode}))
    return folder


# --- diff -------------------------------------------------------------------------------------


def test_diff_exits_0_when_nothing_is_missing(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path, "run", "kudu", ["app.scm.azurewebsites.net"])
    assert main(["diff", str(policy), str(run)]) == 0
    out = capsys.readouterr().out
    assert "Missing rules: the recording needs them, the policy denies (0)" in out


def test_diff_exits_1_when_rules_are_missing_and_names_them(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path, "run", "kudu", ["app.scm.azurewebsites.net", "cdn.example.test"])
    assert main(["diff", str(policy), str(run)]) == 1
    captured = capsys.readouterr()
    assert "HTTPS cdn.example.test:443: denied 1x (default action)" in captured.out
    assert (
        "add ApplicationRule allow-cdn.example.test: Https:443 to cdn.example.test" in captured.out
    )
    assert "1 destination(s)" in captured.err and "Traceback" not in captured.err
    assert main(["diff", str(policy), str(run), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [item["destination"] for item in report["missing"]] == ["cdn.example.test:443"]
    assert report["unused"] == []


def test_diff_of_a_damaged_recording_skips_the_line_and_says_so_once(
    policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path, "run", "kudu", ["a.example.test", "b.example.test"])
    lines = (run / "events.jsonl").read_text().splitlines()
    (run / "events.jsonl").write_text("\n".join([lines[0], "{not json", lines[1]]) + "\n")
    assert main(["diff", str(policy), str(run), "--json"]) == 1  # both hosts still need rules
    captured = capsys.readouterr()
    missing = [item["destination"] for item in json.loads(captured.out)["missing"]]
    assert missing == ["a.example.test:443", "b.example.test:443"]
    assert captured.err.count("warning:") == 1
    assert "skipped 1 damaged item(s) (1 in events.jsonl); first: events.jsonl:2: not JSON" in (
        captured.err
    )
    assert "Traceback" not in captured.err


# --- allowlist --------------------------------------------------------------------------------


def test_allowlist_merges_recordings_with_scenario_and_run_in_via_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.policy.load import load_policy

    pip = write_run(tmp_path, "20261128T120000-pip-audit", "pip",
                    ["index.example.test", "files.example.test"])  # fmt: skip
    npm = write_run(tmp_path, "20261128T120100-npm-audit", "npm",
                    ["registry.example.test", "files.example.test:80"])  # fmt: skip
    out = tmp_path / "allow.yaml"
    assert main(["allowlist", str(pip), str(npm), "-o", str(out)]) == 0
    text = out.read_text()
    assert "# Scenarios: pip, npm\n# not verified\n" in text
    lines = text.splitlines()
    at = lines.index("      target_fqdns: [files.example.test]")
    assert lines[at + 1].startswith(
        "      # via scenario pip, run 20261128T120000-pip-audit, first seen"
    )
    assert lines[at + 2].startswith(
        "      # via scenario npm, run 20261128T120100-npm-audit, first seen"
    )
    policy = load_policy(out)
    rules = policy.rule_collection_groups[0].rule_collections[0].rules
    assert [(r.target_fqdns[0], [str(p) for p in r.protocols]) for r in rules] == [
        ("index.example.test", ["Https:443"]),
        ("files.example.test", ["Http:80", "Https:443"]),
        ("registry.example.test", ["Https:443"]),
    ]
    table = capsys.readouterr().out
    assert "3 destination(s) from 2 recording(s)" in table and "pip, npm" in table


def test_allowlist_without_output_prints_only_the_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    run = write_run(tmp_path, "run", "pip", ["a.example.test"])
    assert main(["allowlist", str(run)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["name"] == "pip-learned"


def test_allowlist_wildcards_fold_shared_domains_but_not_shared_suffixes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.policy.load import load_policy

    a = write_run(tmp_path, "a", "a", ["one.example.test", "x.blob.core.windows.net"])
    b = write_run(tmp_path, "b", "b", ["two.example.test", "y.blob.core.windows.net"])
    out = tmp_path / "allow.yaml"
    assert main(["allowlist", str(a), str(b), "--wildcards", "-o", str(out)]) == 0
    rules = load_policy(out).rule_collection_groups[0].rule_collections[0].rules
    assert [r.target_fqdns[0] for r in rules] == [
        "*.example.test", "x.blob.core.windows.net", "y.blob.core.windows.net",
    ]  # fmt: skip
    text = out.read_text()
    assert "# --wildcards: *.example.test stands for one.example.test, two.example.test" in text
    assert "      # via two.example.test: scenario b, run b, first seen" in text


def test_allowlist_notes_a_recording_made_in_enforce_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path, "run", "pip", ["a.example.test"], mode="enforce")
    assert main(["allowlist", str(run)]) == 0
    assert "recorded in enforce mode" in capsys.readouterr().err


def test_allowlist_of_a_damaged_recording_keeps_the_undamaged_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path, "run", "pip", ["a.example.test", "b.example.test"])
    events = run / "events.jsonl"
    events.write_text('["not", "an", "object"]\n' + events.read_text())
    assert main(["allowlist", str(run)]) == 0
    captured = capsys.readouterr()
    assert "a.example.test" in captured.out and "b.example.test" in captured.out
    assert "first: events.jsonl:1: expected a JSON object, got list" in captured.err
    assert "Traceback" not in captured.err


# --- learn with a fake sandbox -------------------------------------------------------------


def _scenario_file(tmp_path: Path, name: str, *hosts: str) -> Path:
    path = tmp_path / f"{name}.scenario.yaml"
    path.write_text(
        f"name: {name}\nworkload:\n  image: egress/python\n  command: [needs, {', '.join(hosts)}]\n"
        "firewall:\n  policy: {allow: [nothing.example.test]}\n"
    )
    return path


def test_learn_several_scenarios_writes_one_allowlist_with_provenance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.policy.load import load_policy

    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    runtime = FakeRuntime()  # the workload needs the hosts its command names
    pip = _scenario_file(tmp_path, "pip", "index.example.test", "files.example.test")
    npm = _scenario_file(tmp_path, "npm", "registry.other.test", "files.example.test")
    out = tmp_path / "allow.yaml"
    code = main(["learn", str(pip), str(npm), "--wildcards", "-o", str(out)], runtime=runtime)
    printed = capsys.readouterr().out
    assert code == 0, printed
    text = out.read_text()
    assert text.startswith(f"# Generated by: egress learn {pip} {npm} --wildcards -o {out}\n")
    assert "# Scenarios: pip, npm\n# verified: the workload succeeded behind it\n" in text
    assert "      # via files.example.test: scenario npm, first seen" in text
    rules = load_policy(out).rule_collection_groups[0].rule_collections[0].rules
    assert [r.target_fqdns[0] for r in rules] == ["*.example.test", "registry.other.test"]
    # Each scenario's own audit and verify, then each behind the merged allowlist.
    assert len(runtime.specs) == 6
    assert "verified behind the merged allowlist of 2 scenarios" in printed
    assert "As an Azure Firewall rule collection group" in printed


def test_learn_exits_1_when_the_merged_allowlist_does_not_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:

    needs = fetches()

    def fails_joint(run: FakeRun) -> int:
        return needs(run) or (1 if run.name.endswith("verify-joint") else 0)

    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    a = _scenario_file(tmp_path, "a", "a.example.test")
    b = _scenario_file(tmp_path, "b", "b.example.test")
    assert main(["learn", str(a), str(b)], runtime=FakeRuntime(fails_joint)) == 1
    captured = capsys.readouterr()
    assert "NOT verified" in captured.out
    assert "the learned allowlist did not make the workload succeed" in captured.err


@pytest.mark.parametrize(("count", "code"), [(2, 0), (3, 1)])
def test_learn_checks_the_scenarios_expect_learned_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    count: int, code: int,
) -> None:

    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    path = _scenario_file(tmp_path, "pip", "index.example.test", "files.example.test")
    path.write_text(path.read_text() + f"expect:\n  outcome: failure\n  learned: {{count: {count}}}\n")
    assert main(["learn", str(path)], runtime=FakeRuntime()) == code
    captured = capsys.readouterr()
    if code:
        assert (f"{path}:9:3: expect.learned.count: expected 3 destination(s), learned 2"
                in captured.out.replace("\n", " "))  # fmt: skip
        assert "1 expect.learned expectation(s) failed" in captured.err
    else:
        assert "expect.learned" not in captured.out


def test_learn_with_a_bad_scenario_stops_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:

    runtime = FakeRuntime()
    good = _scenario_file(tmp_path, "good", "a.example.test")
    bad = tmp_path / "bad.scenario.yaml"
    bad.write_text("name: bad\nworkload:\n  image: egress/python\n  comand: [x]\n")
    assert main(["learn", str(good), str(bad)], runtime=runtime) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4:3: workload.comand" in err and "Traceback" not in err
    assert runtime.specs == []
