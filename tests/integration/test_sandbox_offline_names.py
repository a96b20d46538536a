"""Offline discovery in the Docker sandbox: a workload contacting names that exist nowhere in DNS
(`*.far.test`) over HTTPS, HTTP and raw TCP. With `firewall.dns: azure` (the default) the
gateway answers them with sinkhole addresses, so every one is recorded by name; allowed ones are
unreachable from this machine, learned as needed but unverified, and diagnosed. `resolve` keeps
the old behaviour: the workload stops at its lookups and only DNS lines are recorded."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from harness.execute import execute
from harness.gateway.sinkhole import SINKHOLE_NETWORK
from harness.learn import learn
from harness.sandbox import PYTHON_IMAGE
from harness.sandbox import run as sandbox_run
from harness.scenario import load_scenario

pytestmark = pytest.mark.docker

# Each attempt is reported and the workload fails when any of them failed, as a build would.
WORKLOAD = """\
import socket, sys, urllib.request
failed = False
for url in ("https://binaries.far.test/tool.tgz", "http://files.far.test/tool.tgz"):
    try:
        urllib.request.urlopen(url, timeout=5)
    except OSError as error:
        failed = True
        print(f"fetch {url} failed: {error}")
try:
    address = socket.getaddrinfo("cache.far.test", 6379, socket.AF_INET)[0][4][0]
    with socket.create_connection((address, 6379), timeout=5) as connection:
        connection.sendall(b"PING\\r\\n")
        if not connection.recv(100):
            raise OSError("cache.far.test closed the connection")
except OSError as error:
    failed = True
    print(f"cache cache.far.test:6379 failed: {error}")
sys.exit(1 if failed else 0)
"""


def scenario_text(dns: str) -> str:
    policy = {"name": "offline", "rule_collection_groups": [
        {"name": "DefaultNetworkRuleCollectionGroup", "priority": 200, "rule_collections": [
            {"name": "allow-cache", "priority": 100, "action": "Allow", "rules": [
                {"rule_type": "NetworkRule", "name": "cache-by-name", "ip_protocols": ["TCP"],
                 "source_addresses": ["*"], "destination_fqdns": ["cache.far.test"],
                 "destination_ports": ["6379"]}]}]},
        {"name": "DefaultApplicationRuleCollectionGroup", "priority": 300, "rule_collections": [
            {"name": "allow-binaries", "priority": 100, "action": "Allow", "rules": [
                {"rule_type": "ApplicationRule", "name": "binaries", "source_addresses": ["*"],
                 "protocols": ["Https:443"], "target_fqdns": ["binaries.far.test"]}]}]},
    ]}  # fmt: skip
    return yaml.safe_dump({
        "name": f"offline-{dns}",
        "workload": {"image": PYTHON_IMAGE, "command": ["python3", "-c", WORKLOAD],
                     "timeout": 120},
        "firewall": {"mode": "enforce", "dns": dns, "policy": policy},
        "expect": {"outcome": "failure"},
    }, sort_keys=False)  # fmt: skip


def load(tmp_path: Path, text: str):
    path = tmp_path / "offline.scenario.yaml"
    path.write_text(text)
    return load_scenario(path)


def test_names_that_do_not_resolve_are_recorded_by_name_and_diagnosed(
    engine, images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    execution = execute(load(tmp_path, scenario_text("azure")), sandbox_run)

    lookups = [e for e in execution.events if e.kind == "dns" and e.answers]
    sinkholed = {e.host: e.answers[0] for e in lookups if e.sinkholed}  # type: ignore[index]
    assert {"binaries.far.test", "files.far.test", "cache.far.test"} <= set(sinkholed)
    assert all(ipaddress.ip_address(a) in SINKHOLE_NETWORK for a in sinkholed.values())

    by_kind = {(e.kind, e.host or e.dst): e for e in execution.events}
    https = by_kind[("tls", "binaries.far.test")]
    assert (https.action, https.upstream) == ("Allow", "unreachable")
    http = by_kind[("http", "files.far.test")]
    assert (http.action, http.status, http.upstream) == ("Deny", 470, None)
    tcp = by_kind[("tcp", f"{sinkholed['cache.far.test']}:6379")]
    assert (tcp.action, tcp.upstream, (tcp.rule or {}).get("rule")) == (
        "Allow", "unreachable", "cache-by-name")  # fmt: skip

    rows = {(row.host, row.port): row for row in execution.destinations}
    assert rows[("cache.far.test", 6379)].unreachable  # named by the recording's DNS answer
    assert execution.diagnosis is not None
    assert "files.far.test:80" in execution.diagnosis.denied
    assert set(execution.diagnosis.unreachable) == {"binaries.far.test:443", "cache.far.test:6379"}
    assert "not the firewall" not in execution.diagnosis.render()


def test_learn_names_the_unreachable_destinations_as_needed_but_unverified(
    engine, images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    result = learn(load(tmp_path, scenario_text("azure")), sandbox_run)

    found = {candidate.host: candidate for candidate in result.candidates}
    assert set(found) == {"binaries.far.test", "files.far.test", "cache.far.test"}
    assert all(candidate.unreachable for candidate in found.values())
    assert found["cache.far.test"].network  # a network rule to the name, not the sinkhole
    assert not result.verified
    why = result.why_not_verified()
    assert why is not None
    for host in found:
        assert host in why
    assert "unreachable from this machine" in why


def test_resolve_mode_leaves_the_workload_at_its_failed_lookups(
    engine, images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    execution = execute(load(tmp_path, scenario_text("resolve")), sandbox_run)

    assert not [e for e in execution.events if e.kind in ("tls", "http", "tcp")]
    failed = {e.host for e in execution.events if e.kind == "dns" and not e.answers}
    assert {"binaries.far.test", "files.far.test", "cache.far.test"} <= failed
    assert not any(e.sinkholed for e in execution.events if e.kind == "dns")
    assert execution.diagnosis is not None
    assert execution.diagnosis.cause == "not resolved"
    assert execution.diagnosis.culprit in {"binaries.far.test", "files.far.test", "cache.far.test"}
    assert "not the firewall" not in execution.diagnosis.render()
