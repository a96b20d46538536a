"""Offline discovery with the real mitmdump: a workload contacting names that do not exist in DNS
(`*-far.test`, in no hosts file, and the lab's name server answers nothing) over HTTPS, HTTP and
raw TCP is recorded by name, learned as needed but unverified, and diagnosed. `firewall.dns:
resolve` keeps the old behaviour: the client stops at its lookup."""

from __future__ import annotations

import ipaddress
import subprocess

import pytest
from netlab import Gateway, Lab

from harness.allowlist import candidates
from harness.diagnose import diagnose
from harness.gateway.sinkhole import SINKHOLE_NETWORK

pytestmark = pytest.mark.e2e

CLIENT_TIMEOUT = "3"
GATEWAY_POLICY = """\
name: offline
rule_collection_groups:
  - name: DefaultNetworkRuleCollectionGroup
    priority: 200
    rule_collections:
      - name: allow-cache
        priority: 100
        action: Allow
        rules:
          - rule_type: NetworkRule
            name: cache-by-name
            ip_protocols: [TCP]
            source_addresses: ["*"]
            destination_fqdns: [cache-far.test]
            destination_ports: ["6379"]
  - name: DefaultApplicationRuleCollectionGroup
    priority: 300
    rule_collections:
      - name: allow
        priority: 100
        action: Allow
        rules:
          - rule_type: ApplicationRule
            name: allow
            source_addresses: ["*"]
            protocols: ["Https:443", "Http:80"]
            target_fqdns: [allowed.test, gw.test, binaries-far.test]
"""


def curl(lab: Lab, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    return lab.client("curl", "-sS", "--cacert", str(lab.ca_pem), "--max-time", CLIENT_TIMEOUT,
                      *arguments)  # fmt: skip


def in_sinkhole(address: str) -> bool:
    return ipaddress.ip_address(address) in SINKHOLE_NETWORK


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_allowed_https_to_a_name_that_does_not_resolve_is_recorded_unreachable(
    lab: Lab, gateway: Gateway
) -> None:
    fetched = curl(lab, "https://binaries-far.test/tool.tgz")
    assert fetched.returncode == 35, fetched.stderr  # the TLS connection ends, no answer
    lookup = gateway.wait_for(lambda e: e.kind == "dns" and e.host == "binaries-far.test"
                              and e.answers)  # fmt: skip
    assert lookup.sinkholed is True and all(in_sinkhole(a) for a in lookup.answers or [])
    event = gateway.wait_for(lambda e: e.kind == "tls" and e.host == "binaries-far.test")
    assert (event.action, event.would, event.upstream) == ("Allow", "Allow", "unreachable")
    assert event.dst == f"{lookup.answers[0]}:443"  # type: ignore[index]
    assert event.azure is not None and "binaries-far.test:443. Action: Allow. Policy: offline." in (
        event.azure)  # fmt: skip

    [candidate] = [c for c in candidates(gateway.events()) if c.host == "binaries-far.test"]
    assert candidate.unreachable
    diagnosis = diagnose(gateway.events(), fetched.stderr.decode())
    assert (diagnosis.culprit, diagnosis.cause) == ("binaries-far.test:443", "unreachable")


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_denied_https_to_a_name_that_does_not_resolve_is_denied_by_name(
    lab: Lab, gateway: Gateway
) -> None:
    refused = curl(lab, "https://mirror-far.test/tool.tgz")
    assert refused.returncode == 35 and b"SSL_ERROR_SYSCALL" in refused.stderr
    event = gateway.wait_for(lambda e: e.kind == "tls" and e.host == "mirror-far.test")
    assert (event.action, event.upstream) == ("Deny", None)
    assert event.azure == (f"HTTPS request from {event.src} to mirror-far.test:443. Action: Deny. "
                           "No rule matched. Proceeding with default action")  # fmt: skip
    diagnosis = diagnose(gateway.events(), refused.stderr.decode())
    assert "mirror-far.test:443" in diagnosis.denied
    assert diagnosis.fix is not None and "mirror-far.test" in diagnosis.fix


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_http_to_names_that_do_not_resolve_is_decided_by_host(lab: Lab, gateway: Gateway) -> None:
    allowed = curl(lab, "-o", "/dev/null", "-w", "%{http_code}", "http://binaries-far.test/x")
    assert allowed.stdout == b"502"  # allowed: the gateway cannot reach it
    denied = curl(lab, "-o", "/dev/null", "-w", "%{http_code}", "http://mirror-far.test/x")
    assert denied.stdout == b"470"
    unreachable = gateway.wait_for(lambda e: e.kind == "http" and e.host == "binaries-far.test")
    assert (unreachable.action, unreachable.upstream) == ("Allow", "unreachable")
    refused = gateway.wait_for(lambda e: e.kind == "http" and e.host == "mirror-far.test")
    assert (refused.action, refused.status, refused.upstream) == ("Deny", 470, None)


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_raw_tcp_to_a_sinkhole_matches_a_network_rule_by_the_name_looked_up(
    lab: Lab, gateway: Gateway
) -> None:
    answer = lab.python_client("dns", "cache-far.test", lab.server_b, CLIENT_TIMEOUT)
    [address] = answer["addresses"]
    assert answer["rcode"] == 0 and in_sinkhole(address)
    allowed = lab.python_client("tcp", address, "6379", CLIENT_TIMEOUT)
    assert allowed["error"] is None or "reset" in allowed["error"].lower()
    assert allowed.get("length", 0) == 0
    event = gateway.wait_for(lambda e: e.kind == "tcp" and e.dst == f"{address}:6379")
    assert (event.action, event.upstream) == ("Allow", "unreachable")
    assert (event.rule or {}).get("rule") == "cache-by-name"
    denied = lab.python_client("tcp", address, "22", CLIENT_TIMEOUT)
    assert denied.get("length", 0) == 0
    refused = gateway.wait_for(lambda e: e.kind == "tcp" and e.dst == f"{address}:22")
    assert (refused.action, refused.upstream) == ("Deny", None)
    # The recording names the destination: learned as a network rule to the name, not the
    # sinkhole address, which means nothing elsewhere.
    assert "cache-far.test" in [c.host for c in candidates(gateway.events()) if c.network]


@pytest.mark.parametrize("gateway", ["close/resolve"], indirect=True)
def test_resolve_mode_leaves_the_client_at_its_failed_lookup(lab: Lab, gateway: Gateway) -> None:
    failed = curl(lab, "https://binaries-far.test/tool.tgz")
    # The lab's name server never answers: curl gives up resolving (or is told it cannot).
    assert failed.returncode in (6, 28), failed.stderr
    assert b"Could not resolve host" in failed.stderr or b"Resolving timed out" in failed.stderr
    # mitmproxy's resolver waits longer than curl did before it answers SERVFAIL.
    lookup = gateway.wait_for(lambda e: e.kind == "dns" and e.host == "binaries-far.test",
                              timeout=30)  # fmt: skip
    assert lookup.sinkholed is False and lookup.reason in ("NXDOMAIN", "SERVFAIL")
    assert not [e for e in gateway.events() if e.kind == "tls" and e.host == "binaries-far.test"]
    diagnosis = diagnose(gateway.events(), failed.stderr.decode())
    assert (diagnosis.culprit, diagnosis.cause) == ("binaries-far.test", "not resolved")
    assert "not the firewall" not in diagnosis.render()
