"""harness.allowlist: merging candidates of several sources with their provenance, `--wildcards`
over registrable domains (the PSL's private section included), rendering and recordings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.allowlist import (
    Candidate,
    allowlist_name,
    candidates,
    learned_policy,
    merge_candidates,
    read_recording,
    registrable_domain,
    render_allowlist,
    wildcard_candidates,
)
from harness.events import Event
from harness.policy.decide import Decider
from harness.policy.load import load_policy
from harness.policy.model import Request


def tls(host: str, second: int = 0, port: int = 443, size: int = 100) -> Event:
    return Event(ts=f"2026-01-01T00:00:{second:02d}.000Z", run="r", kind="tls", host=host,
                 port=port, bytes_up=size // 2, bytes_down=size - size // 2)  # fmt: skip


def found(*hosts: str) -> list[Candidate]:
    return candidates([tls(host, second) for second, host in enumerate(hosts)])


# --- merging -------------------------------------------------------------------------------


def test_merge_keeps_one_candidate_per_host_with_evidence_per_source() -> None:
    first = candidates([tls("index.example.test", 1), tls("files.example.test", 2, size=10)])
    second = candidates([
        tls("files.example.test", 0, size=30), tls("files.example.test", 5, port=8443, size=30),
        tls("registry.example.test", 3),
    ])  # fmt: skip
    merged = merge_candidates([("scenario pip", first), ("scenario npm", second)])
    assert [c.host for c in merged] == [
        "index.example.test", "files.example.test", "registry.example.test",
    ]  # fmt: skip
    files = merged[1]
    assert files.connections == 3 and files.bytes_total == 70
    assert files.protocol_texts() == ["Https:443", "Https:8443"]
    assert files.first_seen == "2026-01-01T00:00:00.000Z"
    assert files.sources == ["scenario pip", "scenario npm"]
    assert [(e.source, e.connections, e.bytes_total) for e in files.evidence] == [
        ("scenario pip", 1, 10), ("scenario npm", 2, 60),
    ]  # fmt: skip
    assert merged[0].sources == ["scenario pip"] and merged[2].sources == ["scenario npm"]


def test_merge_keeps_an_address_and_a_name_apart() -> None:
    events = [Event(ts="2026-01-01T00:00:00.000Z", run="r", kind="tcp", dst="192.0.2.9:5432",
                    port=5432)]  # fmt: skip
    merged = merge_candidates([("a", candidates(events)), ("b", found("192.0.2.9"))])
    assert [(c.host, c.network) for c in merged] == [("192.0.2.9", True), ("192.0.2.9", False)]


@pytest.mark.parametrize(
    ("marks", "merged"),
    [
        (["optional", "required"], "required"),
        (["flaky", "optional"], "flaky"),
        (["required", "flaky"], "required"),
        (["optional", "optional"], "optional"),
        ([None, "optional"], None),
        ([None, None], None),
    ],
)
def test_merge_classification_required_wins_optional_only_when_everywhere(
    marks: list, merged: str | None
) -> None:
    sources = []
    for index, mark in enumerate(marks):
        (candidate,) = found("a.example.test")
        candidate.classification = mark
        sources.append((f"scenario s{index}", [candidate]))
    (result,) = merge_candidates(sources)
    assert result.classification == merged
    assert [e.classification for e in result.evidence] == marks


# --- wildcards -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "listed"),
    [
        (["a.example.test", "b.example.test"], ["*.example.test"]),
        # Azure's *.x does not match x: the apex stays when it was reached itself.
        (["example.test", "a.example.test", "b.example.test"], ["example.test", "*.example.test"]),
        # One host below the apex: nothing to gain.
        (["example.test", "a.example.test"], ["example.test", "a.example.test"]),
        (["a.example.test"], ["a.example.test"]),
        # Any depth below the registrable domain; the wildcard takes the first one's place.
        (["x.one.test", "a.b.example.test", "c.example.test"], ["x.one.test", "*.example.test"]),
        (["a.one.test", "b.two.test"], ["a.one.test", "b.two.test"]),
        # A multi-label ICANN suffix: the registrable domain is below it, never *.co.uk.
        (["a.contoso.co.uk", "b.contoso.co.uk"], ["*.contoso.co.uk"]),
        (["a.contoso.co.uk", "a.fabrikam.co.uk"], ["a.contoso.co.uk", "a.fabrikam.co.uk"]),
        # The PSL's private section: shared hosting suffixes, each customer its own domain.
        (["x.blob.core.windows.net", "y.blob.core.windows.net"],
         ["x.blob.core.windows.net", "y.blob.core.windows.net"]),
        (["a.azureedge.net", "b.azureedge.net"], ["a.azureedge.net", "b.azureedge.net"]),
        (["d1.cloudfront.net", "d2.cloudfront.net"], ["d1.cloudfront.net", "d2.cloudfront.net"]),
        (["x.github.io", "y.github.io"], ["x.github.io", "y.github.io"]),
        # ... but hosts of one customer below its own name may merge.
        (["a.acct.blob.core.windows.net", "b.acct.blob.core.windows.net"],
         ["*.acct.blob.core.windows.net"]),
        # A bare public suffix and a one-label name have no registrable domain.
        (["blob.core.windows.net", "x.blob.core.windows.net"],
         ["blob.core.windows.net", "x.blob.core.windows.net"]),
        (["registry", "mirror"], ["registry", "mirror"]),
        (["192.0.2.1", "192.0.2.2"], ["192.0.2.1", "192.0.2.2"]),
        # Microsoft's documented rule for Kudu's calls to its own site, even for one site; the
        # site's main name is its own registrable domain and stays exact.
        (["mysite.scm.azurewebsites.net"], ["*.scm.azurewebsites.net"]),
        (["mysite.scm.azurewebsites.net", "mysite.azurewebsites.net"],
         ["*.scm.azurewebsites.net", "mysite.azurewebsites.net"]),
    ],
)  # fmt: skip
def test_wildcards_only_for_two_hosts_below_one_registrable_domain(
    hosts: list[str], listed: list[str]
) -> None:
    assert [c.host for c in wildcard_candidates(found(*hosts))] == listed


def test_wildcard_unites_protocols_counts_and_evidence_of_the_hosts_it_covers() -> None:
    events = [tls("a.example.test", 1, size=10), tls("b.example.test", 2, port=8443, size=20),
              Event(ts="2026-01-01T00:00:03.000Z", run="r", kind="http", host="b.example.test",
                    port=80)]  # fmt: skip
    (wildcard,) = wildcard_candidates(candidates(events))
    assert wildcard.host == "*.example.test"
    assert wildcard.covers == ("a.example.test", "b.example.test")
    assert wildcard.protocol_texts() == ["Http:80", "Https:443", "Https:8443"]
    assert (wildcard.connections, wildcard.bytes_total) == (3, 30)
    assert [e.host for e in wildcard.evidence] == ["a.example.test", "b.example.test"]


def test_network_destinations_are_never_wildcarded() -> None:
    events = [Event(ts="2026-01-01T00:00:00.000Z", run="r", kind="tcp", dst=f"{ip}:5432",
                    port=5432) for ip in ("192.0.2.1", "192.0.2.2")]  # fmt: skip
    assert [c.host for c in wildcard_candidates(candidates(events))] == ["192.0.2.1", "192.0.2.2"]


def test_wildcard_policy_allows_the_covered_hosts_and_not_the_apex() -> None:
    policy = learned_policy("p", wildcard_candidates(found("a.example.test", "b.example.test")))
    decider = Decider(policy)

    def action(host: str) -> str:
        return decider.decide(Request("HTTPS", "10.0.0.1", 5000, 443, None, host)).action

    assert action("a.example.test") == "Allow"
    assert action("new.b.example.test") == "Allow"
    assert action("example.test") == "Deny"
    assert action("a.other.test") == "Deny"


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("a.b.example.test", "example.test"),
        ("A.Example.Test.", "example.test"),
        ("x.blob.core.windows.net", "x.blob.core.windows.net"),
        ("blob.core.windows.net", None),
        ("*.example.test", None),
        ("192.0.2.1", None),
        ("2001:db8::1", None),
        ("localhost", None),
    ],
)
def test_registrable_domain(host: str, domain: str | None) -> None:
    assert registrable_domain(host) == domain


# --- the policy and its text ---------------------------------------------------------------


def test_rule_names_stay_unique_when_long_hosts_share_a_prefix(tmp_path: Path) -> None:
    stem = "a" * 60 + ".example.test"
    policy = learned_policy("p", found(f"{stem}.one.test", f"{stem}.two.test"))
    names = [r.name for r in policy.rule_collection_groups[0].rule_collections[0].rules]
    assert len(set(names)) == 2
    path = tmp_path / "p.yaml"
    path.write_text(render_allowlist(policy, [], command="c", scenario="s", verified=None))
    assert load_policy(path) == policy


def test_rendered_merged_allowlist_names_each_scenario_and_loads_back(tmp_path: Path) -> None:
    merged = merge_candidates([
        ("scenario pip", found("index.example.test", "files.example.test")),
        ("scenario npm", found("files.example.test")),
    ])  # fmt: skip
    listed = wildcard_candidates(merged)
    policy = learned_policy(allowlist_name(["pip", "npm"]), listed)
    text = render_allowlist(policy, listed, command="egress learn a b --wildcards",
                            scenario=["pip", "npm"], verified=True, notes=["a note"])  # fmt: skip
    assert text.startswith(
        "# Generated by: egress learn a b --wildcards\n# Scenarios: pip, npm\n"
        "# verified: the workload succeeded behind it\n# a note\n"
    )
    lines = text.splitlines()
    at = lines.index("      target_fqdns: ['*.example.test']")
    seen = [("index", "pip", "00"), ("files", "pip", "01"), ("files", "npm", "00")]
    assert lines[at + 1 : at + 4] == [
        f"      # via {host}.example.test: scenario {source}, first seen 2026-01-01T00:00:{second}"
        ".000Z, 1 connection(s), 100 bytes"
        for host, source, second in seen
    ]
    path = tmp_path / "allow.yaml"
    path.write_text(text)
    loaded = load_policy(path)
    assert loaded == policy and loaded.name == "pip-and-1-more-learned"


def test_single_scenario_text_is_unchanged_by_the_merge_support() -> None:
    listed = found("a.example.test")
    text = render_allowlist(learned_policy("p", listed), listed, command="egress learn s.yaml",
                            scenario="s", verified=None)  # fmt: skip
    assert "# Scenario: s\n# not verified\n" in text
    assert "# via scenario s, first seen 2026-01-01T00:00:00.000Z, 1 connection(s)" in text


# --- recordings ----------------------------------------------------------------------------


def write_recording(folder: Path, events: list[Event], summary: dict | str | None) -> Path:
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_text("".join(event.to_json() + "\n" for event in events))
    if summary is not None:
        text = summary if isinstance(summary, str) else json.dumps(summary)
        (folder / "summary.json").write_text(text)
    return folder


def test_recording_evidence_names_scenario_and_run(tmp_path: Path) -> None:
    folder = write_recording(tmp_path / "20260101T000000-pip-audit", [tls("a.example.test")],
                             {"scenario": "pip", "mode": "audit"})  # fmt: skip
    run = read_recording(folder)
    assert (run.scenario, run.mode) == ("pip", "audit")
    assert run.source == "scenario pip, run 20260101T000000-pip-audit"
    assert run.candidates[0].sources == [run.source]
    assert read_recording(folder / "events.jsonl").source == run.source


def test_recording_without_summary_is_named_by_its_folder(tmp_path: Path) -> None:
    run = read_recording(write_recording(tmp_path / "cut-short", [tls("a.example.test")], None))
    assert (run.scenario, run.source) == (None, "run cut-short")


def test_damaged_summary_reads_as_none_with_a_warning(tmp_path: Path) -> None:
    folder = write_recording(tmp_path / "r", [tls("a.example.test")], '{\n  "scenario": \n')
    run = read_recording(folder)
    assert (run.scenario, run.source) == (None, "run r")
    assert [candidate.host for candidate in run.candidates] == ["a.example.test"]
    assert run.warning is not None and "summary.json: not JSON" in run.warning


# --- the recording's DNS map and unreachable destinations ------------------------------------


def test_raw_tcp_to_a_looked_up_address_is_learned_by_name(tmp_path: Path) -> None:
    events = [
        Event(ts="2026-01-01T00:00:00.000Z", run="r", kind="dns", host="cache.test", port=53,
              answers=["198.18.0.3"], sinkholed=True),
        Event(ts="2026-01-01T00:00:01.000Z", run="r", kind="tcp", dst="198.18.0.3:6379",
              port=6379, action="Allow", would="Allow"),
    ]  # fmt: skip
    [candidate] = candidates(events)
    assert (candidate.host, candidate.network) == ("cache.test", True)
    policy = learned_policy("p", [candidate])
    rule = policy.rule_collection_groups[0].rule_collections[0].rules[0]
    assert (rule.destination_fqdns, rule.destination_addresses) == (("cache.test",), ())
    text = render_allowlist(policy, [candidate], command="egress learn x", scenario="x",
                            verified=None)  # fmt: skip
    path = tmp_path / "allow.yaml"
    path.write_text(text)
    assert "destination_fqdns: [cache.test]\n" in text and "# via scenario x" in text
    decider = Decider(load_policy(path))
    assert decider.decide(Request("TCP", "10.0.0.2", 1, 6379, dst_ip="198.18.0.9",
                                  dst_names=frozenset({"cache.test"}))).allowed  # fmt: skip


def test_an_unreachable_destination_is_learned_with_a_not_verified_note() -> None:
    far = tls("binaries.example.test", 1)
    far.upstream = "unreachable"
    found_ = candidates([tls("registry.example.test", 0), far])
    assert [c.unreachable for c in found_] == [False, True]
    text = render_allowlist(learned_policy("p", found_), found_, command="egress learn x",
                            scenario="x", verified=False)  # fmt: skip
    via = [line.strip() for line in text.splitlines() if "# via" in line]
    assert via[1] == ("# via scenario x, first seen 2026-01-01T00:00:01.000Z, 1 connection(s), "
                      "100 bytes, unreachable from this machine: not verified")  # fmt: skip
    merged = merge_candidates([("scenario a", found_), ("scenario b", found_[:1])])
    assert [c.unreachable for c in merged] == [False, True]
