"""Any input, a value or one of our errors, within a time bound: hypothesis properties over the
policy (YAML, ARM JSON), scenario, Terraform-import and recording readers. Inputs are our own
seed files mutated with the constructs that broke the readers before (constructor-rejected
scalars, non-string keys, deep nesting, alias bombs, NUL bytes, non-UTF-8 bytes, huge numbers,
ARM expressions, Terraform self-references), plus structured documents over each format's keys.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from harness.allowlist import candidates, learned_policy, render_allowlist
from harness.diagnose import diagnose
from harness.diff import diff_policy
from harness.events import Event, azfw_record, azure_line
from harness.export import import_to_yaml
from harness.policy.load import load_policy
from harness.report import destinations
from harness.reportfiles import write_run_report
from harness.runfolder import EVENTS, SUMMARY, TIMED_OUTPUT, read_run
from harness.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
Outcome = Callable[[Callable[[], object]], str]


def _texts(*patterns: str) -> list[str]:
    found = [path.read_text(encoding="utf-8") for pattern in patterns for path in
             sorted(ROOT.glob(pattern))]  # fmt: skip
    assert found, f"no seed files match {patterns}"
    return found


POLICY_YAML = """\
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
            name: oryx-cdn
            source_addresses: ["*"]
            protocols: ["Https:443"]
            target_fqdns: ["oryx-cdn.example.test", "*.scm.example.test"]
            fqdn_tags: [KuduSelf]
  - name: DefaultNetworkRuleCollectionGroup
    priority: 200
    rule_collections:
      - name: allow-ntp
        priority: 100
        action: Allow
        rules:
          - rule_type: NetworkRule
            name: ntp
            ip_protocols: [UDP]
            source_addresses: ["10.0.0.0/24"]
            destination_addresses: ["*"]
            destination_fqdns: [ntp.example.test]
            destination_ports: ["123", "1000-2000"]
fqdn_tags:
  KuduSelf: ["*.scm.example.test"]
"""
POLICY_SEEDS = [
    POLICY_YAML, 'allow: ["a.example.test", "*.b.example.test"]\n',
    *_texts("scenarios/policies/*.yaml", "tests/unit/policy/data/*.json",
            "tests/unit/export/golden/*.arm.json", "tests/unit/export/golden/*.classic.json"),
]  # fmt: skip
SCENARIO_SEEDS = _texts("scenarios/*.scenario.yaml")
TERRAFORM_SEEDS = _texts("tests/unit/export/golden/*.tf")

TOKENS = [
    "!!bool maybe", "!!float 'abc'", "!!int x", "!!timestamp 2024-13-01", "0x_", "9" * 4400,
    "2024-13-01", "1.5: x\n", "null: x\n", "? [a, b]\n: c\n", "&a [x, x]", "*a", "<<: *a\n",
    "!!python/object/apply:os.system [id]", "[" * 300, "]" * 300, "{" * 300, "\x00", "\ufeff",
    "\t", "\n  - ", ": ", "- ", "'", '"', "#", "~", ".nan", "-.inf", "1e400", "-1", "70000",
    "*.", "*", "..", "/etc/passwd", "../../../", "${pip.index_host}", "${nope}",
    "[concat('a', 'b')]", "[first(variables('v'))]", "[parameters('p')]", "[replace('a','a','aa')]",
    "[" + "concat(" * 200 + ")" * 200 + "]", "locals { a = local.a }\n", "locals = [1]\n",
    "${var.x}", 'variable "x" {}\n', "= [1]", "{}", "[]", "\u202e", "é",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, seeds: list[str]) -> bytes:
    """A seed with a few edits: tokens inserted, spans cut, replaced or doubled, and now and
    then raw bytes that are not UTF-8."""
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(text)))
        span = draw(st.integers(1, 60))
        operation = draw(st.sampled_from(["insert", "insert", "cut", "replace", "double"]))
        piece = draw(st.sampled_from(TOKENS) | st.text(max_size=12))
        if operation == "insert":
            text = text[:position] + piece + text[position:]
        elif operation == "cut":
            text = text[:position] + text[position + span :]
        elif operation == "replace":
            text = text[:position] + piece + text[position + span :]
        else:
            text = text[:position] + text[position : position + span] * 2 + text[position:]
    data = text.encode("utf-8")
    if draw(st.integers(0, 9)) == 0:
        position = draw(st.integers(0, len(data)))
        data = data[:position] + draw(st.binary(min_size=1, max_size=4)) + data[position:]
    return data


def _documents(keys: list[str]) -> st.SearchStrategy[object]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | (
        st.sampled_from(["*", "Https:443", "Http:80", "Allow", "Deny", "TCP", "10.0.0.0/8",
                         "a.example.test", "*.example.test", "ApplicationRule", "NetworkRule",
                         "443", "1-2", "enforce", "audit", "egress/python"])
    )  # fmt: skip
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), children, max_size=5),
        max_leaves=30,
    )


POLICY_KEYS = [
    "name", "rule_collection_groups", "priority", "rule_collections", "action", "rules",
    "rule_type", "source_addresses", "protocols", "target_fqdns", "fqdn_tags", "ip_protocols",
    "destination_addresses", "destination_fqdns", "destination_ports", "allow", "resources",
    "type", "properties", "ruleCollections", "$schema", "variables", "parameters",
]  # fmt: skip
SCENARIO_KEYS = [
    "name", "description", "workload", "image", "workdir", "command", "env", "trust", "timeout",
    "firewall", "policy", "mode", "https_deny", "hosts", "expect", "outcome", "denied",
    "allowed", "log_contains", "output_contains", "learned", "count", "verified", "upstreams",
    "client", "port",
]  # fmt: skip


def _dumped(keys: list[str]) -> st.SearchStrategy[bytes]:
    def dump(document: object, as_json: bool) -> bytes:
        if as_json:
            return json.dumps(document, allow_nan=False).encode()
        return yaml.safe_dump(document, allow_unicode=True).encode()

    finite = _documents(keys).filter(lambda d: "nan" not in repr(d) and "inf" not in repr(d))
    return st.builds(dump, finite, st.booleans())


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """A scenario's folder with the files the seed scenarios name."""
    with tempfile.TemporaryDirectory(prefix="egress-fuzz-") as name:
        root = Path(name)
        for sub in ("apps/flask", "apps/kudu-site", "apps/npm-small", "apps/kudu-policies",
                    "policies"):  # fmt: skip
            (root / sub).mkdir(parents=True)
        (root / "policies/empty.yaml").write_text("name: empty\nrule_collection_groups: []\n")
        (root / "apps/kudu-policies/kudu-self.yaml").write_text("allow: ['*.example.test']\n")
        yield root


@given(data=mutated(POLICY_SEEDS) | _dumped(POLICY_KEYS))
def test_any_policy_file_is_a_policy_or_our_error(folder: Path, outcome: Outcome, data: bytes) -> None:
    path = folder / ("fuzz.json" if data.lstrip()[:1] in (b"{", b"[") else "fuzz.yaml")
    path.write_bytes(data)
    outcome(lambda: load_policy(path))
    outcome(lambda: import_to_yaml(path))


@given(data=mutated(SCENARIO_SEEDS) | _dumped(SCENARIO_KEYS))
def test_any_scenario_file_is_a_scenario_or_our_error(folder: Path, outcome: Outcome, data: bytes) -> None:
    path = folder / "fuzz.scenario.yaml"
    path.write_bytes(data)
    outcome(lambda: load_scenario(path))


@given(data=mutated(TERRAFORM_SEEDS))
def test_any_terraform_file_imports_or_is_our_error(folder: Path, outcome: Outcome, data: bytes) -> None:
    path = folder / "fuzz.tf"
    path.write_bytes(data)
    outcome(lambda: import_to_yaml(path))


# --- recordings ---------------------------------------------------------------------------

GOOD_EVENT = json.loads(Event(
    ts="2026-11-28T12:00:00.123Z", run="r", kind="tls", src="172.18.0.2:50347",
    dst="203.0.113.80:443", host="name.example.test", port=443, protocol="HTTPS", action="Deny",
    would="Deny", reason="No rule matched. Proceeding with default action", bytes_up=517,
    azure="HTTPS request from 172.18.0.2:50347 to name.example.test:443. Action: Deny.",
).to_json())  # fmt: skip

_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | (
    st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=5), st.text(max_size=5),
                                                          max_size=3)
)  # fmt: skip


@st.composite
def event_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=40))
    if kind == 1:
        return b"[" * draw(st.integers(1, 50_000))
    event = dict(GOOD_EVENT)
    event["kind"] = draw(st.sampled_from(["tls", "http", "tcp", "udp", "dns", "lifecycle"]))
    for _ in range(draw(st.integers(0, 3))):
        event[draw(st.sampled_from(list(GOOD_EVENT)))] = draw(_values)
    line = json.dumps(event).encode()
    if kind == 2:
        line = line[: draw(st.integers(0, len(line)))]
    return line


def _use_recording(run: Path) -> None:
    """What every reading command does with a recording: logs, allowlist (and its output loads
    back), diff, diagnosis, report."""
    recording = read_run(run)
    events = recording.events
    for event in events:
        azure_line(event)
        azfw_record(event)
    found = candidates(events)
    policy = learned_policy("fuzz", found)
    allowlist = run / "allowlist.yaml"
    allowlist.write_text(render_allowlist(policy, found, command="fuzz", scenario=["fuzz"],
                                          verified=None, notes=[]))  # fmt: skip
    load_policy(allowlist)  # what allowlist writes must load: a failure here is a crash
    diff_policy(policy, events)
    destinations(events)
    diagnose(events, "\n".join(line for _, line in recording.output)).render()
    write_run_report(run, run / "report.html")  # the page, timeline and fix tabs included


@given(
    lines=st.lists(event_line(), max_size=8),
    summary=st.binary(max_size=30) | st.builds(lambda v: json.dumps(v).encode(), _values)
    | st.just(b'{"scenario": "s", "outcome": "failure", "mode": "audit"}'),
    output=st.lists(st.binary(max_size=30) | st.builds(lambda v: json.dumps(v).encode(),
                                                       _values), max_size=3),
)  # fmt: skip
def test_any_recording_is_read_and_used_without_a_crash(
    folder: Path, outcome: Outcome, lines: list[bytes], summary: bytes, output: list[bytes]
) -> None:
    run = folder / "run"
    run.mkdir(exist_ok=True)
    (run / EVENTS).write_bytes(b"\n".join(lines))
    (run / SUMMARY).write_bytes(summary)
    (run / TIMED_OUTPUT).write_bytes(b"\n".join(output))
    assert outcome(lambda: _use_recording(run)) == "value"
