"""Every way around the gateway we know of, aimed at the project's own canary container: each is
blocked, and the canary hears nothing at all (it logs every connection, datagram and packet)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from harness.sandbox import (
    DEBIAN_IMAGE,
    DNS_PORT,
    GATEWAY_IMAGE,
    PYTHON_IMAGE,
    TRANSPARENT_PORT,
    new_run_id,
    run_workload,
    start_gateway,
)

pytestmark = pytest.mark.docker


@dataclass
class BypassRun:
    probes: dict[str, dict]
    curl: dict[str, str]
    events: list[dict]
    canary_heard: list[dict]
    decoy_heard: list[dict]
    rules_after: str
    canary_ip: str
    gateway_ip: str


@pytest.fixture(scope="module")
def bypass(
    canary_net, tmp_path_factory, addon_root, write_policy, read_events, scripts
) -> BypassRun:
    run_dir = tmp_path_factory.mktemp("bypass")
    write_policy(run_dir, ["allowed.test"])
    canary = canary_net.canary
    probe_dir = tmp_path_factory.mktemp("probes")
    (probe_dir / "probes.py").write_text((scripts / "probes.py").read_text())
    lines: list[str] = []
    curl_lines: list[str] = []
    with start_gateway(
        run_dir=run_dir,
        run_id=new_run_id("bypass"),
        hosts={"allowed.test": canary_net.decoy.ipv4},
        networks=[canary_net.network],
        addon_root=addon_root,
    ) as gateway:
        # The gateway image has iptables and setpriv: the probes try them from a workload.
        run_workload(
            gateway,
            image=GATEWAY_IMAGE,
            entrypoint=["python3", "/app/probes.py"],
            command=[canary.ipv4, canary.ipv6, str(TRANSPARENT_PORT), str(DNS_PORT)],
            run_dir=run_dir,
            workdir=probe_dir,
            timeout=120,
            on_output=lines.append,
        )
        spoof = (
            f"echo sni_spoof; curl -sS -k --max-time 3 --resolve allowed.test:443:{canary.ipv4}"
            f" https://allowed.test/ 2>&1; echo exit=$?;"
            f" echo host_spoof; curl -sS --max-time 3 -H 'Host: allowed.test'"
            f" http://{canary.ipv4}/ 2>&1; echo exit=$?"
        )
        run_workload(
            gateway,
            image=DEBIAN_IMAGE,
            command=spoof,
            run_dir=run_dir,
            timeout=60,
            on_output=curl_lines.append,
            role="curl",
        )
        rules_after = gateway.container.exec_run(
            ["sh", "-c", "iptables -S; iptables -t nat -S; ip6tables -S"]
        ).output.decode()
        gateway_ip = gateway.addresses()[canary_net.network]
    probes = {}
    for line in lines:
        if line.startswith("{"):
            probe = json.loads(line)
            probes[probe["probe"]] = probe
    curl = {}
    for name in ("sni_spoof", "host_spoof"):
        start = curl_lines.index(name)
        curl[name] = "\n".join(curl_lines[start + 1 : start + 3])
    return BypassRun(
        probes=probes,
        curl=curl,
        events=read_events(run_dir),
        canary_heard=canary.events(),
        decoy_heard=canary_net.decoy.events(),
        rules_after=rules_after,
        canary_ip=canary.ipv4,
        gateway_ip=gateway_ip,
    )


def test_canary_hears_nothing_from_any_bypass_attempt(bypass):
    assert bypass.canary_heard == []


def test_direct_tcp_to_the_canary_never_gets_an_answer(bypass):
    assert bypass.probes["tcp_direct"]["outcome"] == "blocked"


def test_direct_tcp_is_recorded_as_denied(bypass):
    denied = [
        e
        for e in bypass.events
        if e.get("action") == "Deny" and bypass.canary_ip in str(e.get("dst"))
    ]
    assert denied, f"no Deny event for {bypass.canary_ip} in {bypass.events}"


@pytest.mark.parametrize("probe", ["udp", "icmp", "ipv6_udp"])
def test_datagrams_and_icmp_are_refused_by_the_kernel(bypass, probe):
    result = bypass.probes[probe]
    assert result["outcome"] == "blocked", result
    assert "EPERM" in result["detail"], result


def test_ipv6_tcp_is_dropped(bypass):
    # A dropped SYN is retransmitted until the client gives up: a timeout, not an error.
    assert bypass.probes["ipv6_tcp"]["outcome"] == "blocked", bypass.probes["ipv6_tcp"]


def test_dns_to_another_resolver_is_answered_by_the_firewall(bypass):
    assert bypass.probes["dns_other_resolver"]["outcome"] == "answered"
    assert any(e.get("kind") == "dns" for e in bypass.events), bypass.events


def test_dns_over_tcp_to_another_resolver_never_reaches_it(bypass):
    assert bypass.probes["dns_tcp_other_resolver"]["outcome"] in ("blocked", "answered")
    assert all(e.get("port") != 53 for e in bypass.canary_heard)


def test_sni_spoofing_is_pinned_to_the_allowed_name(bypass):
    tls_to_decoy = [e for e in bypass.decoy_heard if e.get("port") == 443]
    assert tls_to_decoy, f"the allowed name's upstream got nothing: {bypass.decoy_heard}"
    assert all(e["peer"] == bypass.gateway_ip for e in tls_to_decoy)


def test_http_host_spoofing_is_pinned_to_the_allowed_name(bypass):
    assert "hello from decoy" in bypass.curl["host_spoof"], bypass.curl


@pytest.mark.parametrize("port", [TRANSPARENT_PORT, DNS_PORT])
def test_the_gateways_own_listeners_lead_nowhere(bypass, port):
    # TLS straight to the listener must not complete (no interception, no upstream);
    # plain HTTP may get the firewall's own 470 answer, never an upstream's.
    assert bypass.probes[f"gateway_listener_{port}"]["outcome"] == "blocked"
    raw = bypass.probes[f"gateway_listener_raw_{port}"]
    assert "200 OK" not in raw["detail"] and "hello from" not in raw["detail"], raw


@pytest.mark.parametrize("probe", ["iptables_flush", "iptables_nat_flush"])
def test_workload_cannot_flush_the_rules(bypass, probe):
    assert bypass.probes[probe]["outcome"] == "blocked", bypass.probes[probe]
    assert "-A FW_EGRESS -j DROP" in bypass.rules_after
    assert "-A FW_REDIRECT -p tcp -j REDIRECT" in bypass.rules_after


def test_workload_cannot_become_the_gateway_uid(bypass):
    result = bypass.probes["setpriv_gateway_uid"]
    assert result["outcome"] == "blocked" and "setresuid failed" in result["detail"], result


def test_tcp_stays_blocked_after_the_attempts(bypass):
    assert bypass.probes["tcp_direct_after_attempts"]["outcome"] == "blocked"


def test_canary_logs_traffic_from_an_unfirewalled_container(engine, canary_net):
    """The control: the same probes without the gateway do reach the canary, so the empty log
    above means something."""
    from harness.sandbox import labels, new_run_id

    run_id = new_run_id("control")
    control = engine.containers.create(
        PYTHON_IMAGE,
        network=canary_net.network,
        labels=labels(run_id, "control"),
        command=[
            "python3",
            "-c",
            (
                "import socket\n"
                f"s = socket.create_connection(('{canary_net.canary.ipv4}', 8080), timeout=3)\n"
                "s.sendall(b'control\\n'); s.close()\n"
                "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                f"u.sendto(b'control', ('{canary_net.canary.ipv4}', 9999))\n"
            ),
        ],
    )
    try:
        control.start()
        assert control.wait(timeout=30)["StatusCode"] == 0, control.logs()
        heard = canary_net.canary.events()
    finally:
        control.remove(force=True)
    assert {e["event"] for e in heard} >= {"tcp", "udp", "packet"}, heard
