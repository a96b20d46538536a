"""YAML and JSON that PyYAML or `json` cannot turn into values end as an InputError at a line, in
policies, scenarios and a recording's policy.yaml alike; the limits of harness.limits hold
before any value is built."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import InputError
from harness.limits import MAX_DEPTH, MAX_EXPANDED_NODES, MAX_FILE_BYTES
from harness.policy.load import load_policy
from harness.scenario import load_scenario
from harness.yamlio import format_key_path, load_document, load_yaml_text

CONSTRUCTOR_FAILURES = {
    "bool-maybe": ("name: !!bool maybe\n", "1:7", "'maybe' cannot be read as a YAML bool"),
    "float-abc": ("name: !!float 'abc'\n", "1:7", "cannot be read as a YAML float"),
    "hex-without-digits": ("name: 0x_\n", "1:7", "'0x_' cannot be read as a YAML int"),
    "timestamp-bad-month": ("name: !!timestamp 2024-13-01\n", "1:7", "YAML timestamp"),
    "integer-over-4300-digits": ("name: " + "9" * 4400 + "\n", "1:7", "YAML int"),
    "int-of-letters": ("name: !!int 'abc'\n", "1:7", "'abc' cannot be read as a YAML int"),
}


@pytest.mark.parametrize("case", list(CONSTRUCTOR_FAILURES), ids=list(CONSTRUCTOR_FAILURES))
def test_a_scalar_pyyaml_cannot_construct_is_an_error_at_its_line(case: str) -> None:
    text, where, words = CONSTRUCTOR_FAILURES[case]
    with pytest.raises(InputError) as raised:
        load_yaml_text(text, "p.yaml")
    assert str(raised.value).startswith(f"p.yaml:{where}: ")
    assert words in str(raised.value)
    assert len(str(raised.value)) < 300


def test_a_date_is_read_as_a_string() -> None:
    assert load_yaml_text("name: 2024-13-01\n", "p.yaml").data == {"name": "2024-13-01"}


@pytest.mark.parametrize(
    ("key", "shown"),
    [("1.5", "[1.5]"), ("null", "[null]"), ("true", "[true]"), ("2024-01-01", "2024-01-01")],
)
def test_a_key_that_is_not_a_string_is_named_in_the_key_path(
    tmp_path: Path, key: str, shown: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"{key}: x\n")
    with pytest.raises(InputError) as raised:
        load_policy(path)
    assert str(raised.value).startswith(f"{path}:1:1: {shown}: unknown key")


def test_key_paths_format_every_yaml_key_type() -> None:
    assert format_key_path(("a", 1.5, None, True, 0, "x.y")) == 'a[1.5][null][true][0]["x.y"]'


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("json-arrays", "[" * 1000 + "]" * 1000, f"1:{MAX_DEPTH + 1}"),
        ("yaml-flow", "name: " + "[" * 500 + "]" * 500, f"1:{MAX_DEPTH + 6}"),
        ("yaml-block", "".join(f"{'  ' * i}k{i}:\n" for i in range(200)), f"{MAX_DEPTH}:"),
    ],
)
def test_nesting_past_the_limit_is_refused_naming_it(
    tmp_path: Path, name: str, text: str, where: str
) -> None:
    path = tmp_path / ("p.json" if name.startswith("json") else "p.yaml")
    path.write_text(text)
    with pytest.raises(InputError) as raised:
        load_document(path)
    assert f"{path}:{where}" in str(raised.value)
    assert "MAX_DEPTH" in str(raised.value)


def _laughs(levels: int, prefix: str = "") -> str:
    lines = [f'{prefix}a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"{prefix}a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["policy", "scenario", "arm-template"])
def test_alias_expansion_past_the_limit_is_refused_before_anything_walks_it(
    tmp_path: Path, where: str
) -> None:
    path = tmp_path / "bomb.yaml"
    if where == "arm-template":
        text = "$schema: x\nresources:\n  - type: Microsoft.Network/firewallPolicies\n"
        text += "    properties:\n" + _laughs(12, "      ")
    else:
        text = _laughs(12)
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(InputError) as raised:
        load_scenario(path) if where == "scenario" else load_policy(path)
    assert time.monotonic() - started < 2
    assert "MAX_EXPANDED_NODES" in str(raised.value)


def test_aliases_within_the_limit_still_work() -> None:
    text = "hosts: &h [a.example.test, b.example.test]\nagain: *h\n"
    assert load_yaml_text(text, "p.yaml").data["again"] == ["a.example.test", "b.example.test"]
    assert MAX_EXPANDED_NODES > 10_000


@pytest.mark.parametrize("text", ["name: a\x00b\n", "name: x\nallow: [a\x00.test]\n"])
def test_a_nul_byte_is_a_one_line_error_with_line_and_column(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as raised:
        load_policy(path)
    message = str(raised.value)
    line = text.count("\n", 0, text.index("\x00")) + 1
    assert message.startswith(f"{path}:{line}:") and "\n" not in message
    assert "#x0000" in message


def test_a_file_over_the_size_limit_is_refused_naming_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    with path.open("wb") as stream:
        stream.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(InputError, match="MAX_FILE_BYTES"):
        load_policy(path)


def test_a_policy_over_the_rule_limit_is_refused_naming_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.policy.load

    monkeypatch.setattr(harness.policy.load, "MAX_RULES", 5)  # 20,000 rules take a while to parse
    path = tmp_path / "p.yaml"
    path.write_text("allow:\n" + "".join(f"  - h{i}.example.test\n" for i in range(10)))
    load_policy(path)  # one rule, many FQDNs: fine
    rules = "".join(
        f"          - {{rule_type: ApplicationRule, name: r{i}, protocols: ['Https:443'],"
        f" target_fqdns: [h{i}.example.test]}}\n"
        for i in range(6)
    )
    path.write_text(
        "rule_collection_groups:\n  - name: g\n    priority: 100\n    rule_collections:\n"
        "      - name: c\n        priority: 100\n        action: Allow\n        rules:\n" + rules
    )
    with pytest.raises(InputError, match="MAX_RULES"):
        load_policy(path)


@pytest.mark.parametrize("command", ["check", "export-recording"])
def test_a_recordings_or_policys_unreadable_yaml_is_exit_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "policy.yaml").write_text("name: !!float 'abc'\n")
    (run / "events.jsonl").write_text("")
    args = (
        ["check", str(run / "policy.yaml"), "a.example.test"]
        if command == "check"
        else ["export", str(run), "--format", "arm"]
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "policy.yaml:1:7:" in err and "Traceback" not in err


def test_an_unexpected_exception_is_exit_70_with_the_traceback_in_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.policy.load

    def broken(path: object, options: object = None) -> None:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(harness.policy.load, "load_policy", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert main(["check", str(tmp_path / "p.yaml"), "a.example.test"]) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("egress: internal error: RuntimeError: a bug over two lines; details in ")
    saved = Path(err.strip().rsplit("details in ", 1)[1])
    assert saved.parent == tmp_path
    assert "Traceback" in saved.read_text() and "RuntimeError: a bug" in saved.read_text()
