"""Every way around the gateway we know of, aimed at the project's own canary container: each is
blocked, and the canary hears nothing at all (it logs every connection, datagram and packet)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import pytest

from harness.sandbox import (
    DEBIAN_IMAGE,
    DNS_PORT,
    GATEWAY_IMAGE,
    PYTHON_IMAGE,
    TRANSPARENT_PORT,
    labels,
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


REPLY_RULE = "-p tcp -m conntrack --ctstate ESTABLISHED --ctdir REPLY -j ACCEPT"
INBOUND_PORT = 8080


@dataclass
class InboundRun:
    """A workload that accepted a connection from outside, then tried to get out through it."""

    workload: dict[str, dict]
    peer: dict[str, dict]
    peer_heard: list[dict]
    events: list[dict]
    canary_heard: list[dict]
    rules: dict[str, list[str]]  # iptables / ip6tables: the FW_EGRESS chain
    peer_ip: str
    gateway_ip: str


def _json_lines(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture(scope="module")
def inbound(
    engine, canary_net, tmp_path_factory, addon_root, write_policy, read_events, scripts
) -> InboundRun:
    run_dir = tmp_path_factory.mktemp("inbound")
    write_policy(run_dir, ["allowed.test"])
    probe_dir = tmp_path_factory.mktemp("inbound-probes")
    (probe_dir / "inbound_probes.py").write_text((scripts / "inbound_probes.py").read_text())
    run_id = new_run_id("inbound")
    lines: list[str] = []
    with start_gateway(
        run_dir=run_dir,
        run_id=run_id,
        hosts={"allowed.test": canary_net.decoy.ipv4},
        networks=[canary_net.network],
        addon_root=addon_root,
    ) as gateway:
        gateway_ip = gateway.addresses()[canary_net.network]
        workload = threading.Thread(
            target=run_workload,
            args=(gateway,),
            kwargs={
                "image": PYTHON_IMAGE,
                "command": [
                    "python3",
                    "-u",
                    "/app/inbound_probes.py",
                    "workload",
                    canary_net.canary.ipv4,
                    str(INBOUND_PORT),
                ],
                "run_dir": run_dir,
                "workdir": probe_dir,
                "timeout": 90,
                "on_output": lines.append,
            },
        )
        workload.start()
        deadline = time.monotonic() + 30
        while not any('"listening"' in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        # The peer: outside the gateway, on the canary network, as a deploy client would be.
        peer = engine.containers.create(
            PYTHON_IMAGE,
            command=["python3", "-u", "/inbound_probes.py", "peer", gateway_ip, str(INBOUND_PORT)],
            name=f"egress-{run_id}-peer",
            labels=labels(run_id, "peer"),
            network=canary_net.network,
        )
        try:
            peer.put_archive("/", _tar_of_file(scripts / "inbound_probes.py"))
            peer.start()
            peer.reload()  # while it runs: an exited container has no address
            peer_ip = peer.attrs["NetworkSettings"]["Networks"][canary_net.network]["IPAddress"]
            workload.join(timeout=90)
            time.sleep(0.5)  # whatever the workload sent last has arrived
            peer.exec_run(["touch", "/tmp/inbound-stop"])
            assert peer.wait(timeout=60)["StatusCode"] == 0, peer.logs()
            peer_lines = peer.logs().decode(errors="replace").splitlines()
        finally:
            peer.remove(force=True)
        rules = {
            family: gateway.container.exec_run([family, "-S", "FW_EGRESS"])
            .output.decode()
            .splitlines()
            for family in ("iptables", "ip6tables")
        }
    workload_probes = {probe["probe"]: probe for probe in _json_lines(lines)}
    peer_probes = _json_lines(peer_lines)
    return InboundRun(
        workload=workload_probes,
        peer={probe["probe"]: probe for probe in peer_probes},
        peer_heard=[probe for probe in peer_probes if probe["probe"] == "peer_heard"],
        events=read_events(run_dir),
        canary_heard=[e for e in canary_net.canary.events() if e.get("peer") == gateway_ip],
        rules=rules,
        peer_ip=peer_ip,
        gateway_ip=gateway_ip,
    )


def _tar_of_file(path) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(str(path), arcname=path.name)
    return buffer.getvalue()


@pytest.mark.parametrize("family", ["iptables", "ip6tables"])
def test_the_reply_rule_comes_right_before_the_drop(inbound, family):
    chain = inbound.rules[family]
    assert chain[-2:] == [f"-A FW_EGRESS {REPLY_RULE}", "-A FW_EGRESS -j DROP"], chain


def test_a_connection_from_outside_gets_the_workloads_reply(inbound):
    assert inbound.workload["inbound"]["outcome"] == "answered", inbound.workload
    assert inbound.peer["peer_got_reply"]["outcome"] == "answered", inbound.peer
    assert "reply from the workload" in inbound.peer["peer_got_reply"]["detail"]


def test_a_udp_reply_to_a_datagram_from_outside_is_refused(inbound):
    result = inbound.workload["udp_reply_to_peer"]
    assert result["outcome"] == "blocked" and "EPERM" in result["detail"], result


@pytest.mark.parametrize(
    "probe", ["tcp_reopen_reverse_tuple", "tcp_new_to_peer", "tcp_to_canary_from_the_port"]
)
def test_new_connections_after_an_inbound_one_stay_blocked(inbound, probe):
    assert inbound.workload[probe]["outcome"] == "blocked", inbound.workload[probe]


@pytest.mark.parametrize("probe", ["udp_new_to_peer", "udp_to_canary"])
def test_datagrams_after_an_inbound_connection_stay_refused(inbound, probe):
    result = inbound.workload[probe]
    assert result["outcome"] == "blocked" and "EPERM" in result["detail"], result


def test_the_reverse_tuple_goes_to_the_firewall_not_out(inbound):
    """A SYN on the finished connection's reverse tuple is a new connection (ORIGINAL
    direction): redirected to the proxy and denied there, never let out as a reply."""
    denied = [
        e
        for e in inbound.events
        if e.get("action") == "Deny" and str(e.get("dst")) == f"{inbound.peer_ip}:40404"
    ]
    assert denied, inbound.events


def test_nothing_reaches_the_peer_or_the_canary_outside_the_inbound_connection(inbound):
    assert inbound.workload["done"]["outcome"] == "done", inbound.workload
    assert inbound.peer["done"]["outcome"] == "done", inbound.peer
    assert inbound.peer_heard == []
    assert inbound.canary_heard == []


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
