"""The FirewallAddon addon inside mitmproxy's test harness: hand-built transparent connections fed a
real ClientHello, HTTP and DNS flows from mitmproxy.test, and the recording they leave."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest
from mitmproxy import dns, exceptions, http, tls
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.connection import Client, ConnectionState
from mitmproxy.proxy import commands, context, events, layer
from mitmproxy.proxy.layers.tls import parse_client_hello
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.proxy.server_hooks import ServerConnectionHookData
from mitmproxy.test import taddons, tflow, tutils
from tls_hello import client_hello

from harness.events import Event
from harness.gateway.addon import (
    DENY_BODY,
    READY_BANNER,
    TLS_ACCESS_DENIED_ALERT,
    CountingPassthrough,
    FirewallAddon,
    upstream_failure,
)
from harness.policy.decide import Decider
from harness.policy.model import APPLICATION_RULE, DENY, Decision, Reason, Request, RuleRef
from harness.recording import EVENTS_FILE, read_events

SRC = ("10.0.0.2", 50000)
GATEWAY_ADDRESS = "10.0.0.254"  # the gateway's own address in these tests
REFUSED_AS_GATEWAY = f"denied by the egress firewall: {Reason.GATEWAY_ITSELF}"
# The gateway's resolver in these tests (the real one asks /etc/hosts and DNS).
NAMES = {
    "allowed.test": ["192.0.2.10"],
    "deep.sub.wild.test": ["192.0.2.11"],
    "x.wild.test": ["192.0.2.11"],
    "alt.test": ["192.0.2.12"],
    "denied.test": ["192.0.2.20"],
    "loopback.wild.test": ["127.0.0.1"],
    "self.wild.test": [GATEWAY_ADDRESS],
    "half.wild.test": ["192.0.2.13", "127.0.0.2"],
}


async def fake_resolve(host: str, port: int) -> list[str]:
    try:
        return NAMES[host.lower()]
    except KeyError:
        raise socket.gaierror(-2, "Name or service not known") from None


POLICY = """\
name: unit-policy
rule_collection_groups:
  - name: DefaultNetworkRuleCollectionGroup
    priority: 200
    rule_collections:
      - name: allow-net
        priority: 100
        action: Allow
        rules:
          - rule_type: NetworkRule
            name: postgres
            ip_protocols: [TCP]
            source_addresses: ["*"]
            destination_addresses: ["192.0.2.50"]
            destination_ports: ["5432"]
          - rule_type: NetworkRule
            name: redis-by-name
            ip_protocols: [TCP]
            source_addresses: ["*"]
            destination_fqdns: ["db.test"]
            destination_ports: ["6379"]
  - name: DefaultApplicationRuleCollectionGroup
    priority: 300
    rule_collections:
      - name: block-sites
        priority: 100
        action: Deny
        rules:
          - rule_type: ApplicationRule
            name: block-bad
            source_addresses: ["*"]
            protocols: ["Https:443", "Http:80"]
            target_fqdns: ["bad.wild.test"]
      - name: allow-web
        priority: 200
        action: Allow
        rules:
          - rule_type: ApplicationRule
            name: web
            source_addresses: ["*"]
            protocols: ["Https:443", "Http:80"]
            target_fqdns: ["allowed.test", "*.wild.test"]
          - rule_type: ApplicationRule
            name: alt-port
            source_addresses: ["*"]
            protocols: ["Https:8443"]
            target_fqdns: ["alt.test"]
"""




HELLO = {sni: client_hello(sni) for sni in ("allowed.test", "denied.test")}


@dataclass
class Gateway:
    """The addon under test, mitmproxy's test context and where the recording goes."""

    addon: FirewallAddon
    tctx: taddons.context
    record_dir: Path

    def configure(self, **options: object) -> None:
        self.tctx.configure(self.addon, **options)

    def run(self, coroutine):
        return self.tctx.master.event_loop.run_until_complete(coroutine)

    def events(self) -> list[Event]:
        return read_events(self.record_dir) if (self.record_dir / EVENTS_FILE).exists() else []

    def connection(self, dst: tuple[str, int], src: tuple[str, int] = SRC) -> context.Context:
        client = tflow.tclient_conn()
        client.proxy_mode = ProxyMode.parse("transparent")
        client.peername = src
        connection_context = context.Context(client, self.tctx.options)
        connection_context.server.address = dst
        return connection_context

    def first_bytes(self, connection_context: context.Context, data: bytes) -> layer.NextLayer:
        nextlayer = layer.NextLayer(connection_context)
        nextlayer.events.append(events.DataReceived(connection_context.client, data))
        self.addon.next_layer(nextlayer)
        return nextlayer

    def server_connect(self, connection: context.Context | http.HTTPFlow) -> str | None:
        """mitmproxy's hook before it dials upstream: the refusal, or None when approved."""
        if isinstance(connection, http.HTTPFlow):
            client, server = connection.client_conn, connection.server_conn
        else:
            client, server = connection.client, connection.server
        self.run(self.addon.server_connect(ServerConnectionHookData(server=server, client=client)))
        return server.error

    def close(self, client: Client) -> Event:
        """The client hangs up: the connection's event is written; returns it."""
        self.addon.client_disconnected(client)
        return self.events()[-1]


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "unit-policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def gateway(tmp_path: Path, policy_file: Path) -> Iterator[Gateway]:
    addon = FirewallAddon()
    # Proxyserver declares connection_strategy, which the addon forces to lazy.
    with taddons.context(Proxyserver(), addon) as tctx:
        record_dir = tmp_path / "run"
        gateway = Gateway(addon, tctx, record_dir)
        gateway.configure(egress_policy=str(policy_file), egress_record_dir=str(record_dir),
                          egress_run_id="run-1")  # fmt: skip
        addon.own_addresses = frozenset({ip_address(GATEWAY_ADDRESS)})
        addon.resolve = fake_resolve
        addon.hosts_file = {}  # not this machine's /etc/hosts
        yield gateway
        if addon._alert_server is not None:
            addon._alert_server.close()
            gateway.run(addon._alert_server.wait_closed())
        if addon.recorder is not None:
            addon.recorder.close()


@pytest.fixture
def running_gateway(gateway: Gateway) -> Gateway:
    """With the alert responder listening, as after mitmproxy's `running` hook."""
    gateway.run(gateway.addon.running())
    return gateway


# --- options ------------------------------------------------------------------------------------


def test_configure_forces_the_lazy_connection_strategy(gateway: Gateway) -> None:
    assert gateway.tctx.options.connection_strategy == "lazy"
    gateway.tctx.options.update(connection_strategy="eager")
    assert gateway.tctx.options.connection_strategy == "lazy"


def test_configure_loads_policy_mode_and_deny_style(gateway: Gateway) -> None:
    gateway.configure(egress_mode="audit", egress_https_deny="alert")
    config = gateway.addon.config
    assert config is not None
    assert (config.policy.name, config.mode, config.https_deny) == ("unit-policy", "audit",
                                                                    "alert")  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"egress_mode": "learn"}, "egress_mode must be one of enforce, audit"),
        ({"egress_https_deny": "reset"}, "egress_https_deny must be one of close, alert, drop"),
        ({"egress_drop_seconds": 0}, "egress_drop_seconds must be positive"),
    ],
    ids=["mode-learn", "deny-reset", "drop-zero"],
)
def test_a_bad_option_refuses_to_start(gateway: Gateway, options: dict, message: str) -> None:
    before = gateway.addon.config
    with pytest.raises(exceptions.OptionsError, match=message):
        gateway.configure(**options)
    assert gateway.addon.config == before  # rolled back: the running configuration stays


def test_a_policy_with_an_error_refuses_to_start(gateway: Gateway, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("allow:\n  - www.contoso.*\n")
    with pytest.raises(exceptions.OptionsError, match=rf"^{broken}:2:"):
        gateway.configure(egress_policy=str(broken))


def test_an_unwritable_record_dir_refuses_to_start(gateway: Gateway, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(exceptions.OptionsError, match="cannot open the recording"):
        gateway.configure(egress_record_dir=str(tmp_path / "a-file" / "run"))


def test_running_writes_the_ready_event_and_banner(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.run(gateway.addon.running())
    assert READY_BANNER in capsys.readouterr().out
    [ready] = gateway.events()
    assert (ready.kind, ready.reason, ready.run) == ("lifecycle", "ready", "run-1")


def test_done_writes_open_connections_then_stopped(gateway: Gateway) -> None:
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, HELLO["allowed.test"])
    gateway.addon.done()
    assert [(event.kind, event.reason) for event in read_events(gateway.record_dir)] == [
        ("tls", Reason.RULE_MATCHED),
        ("lifecycle", "stopped"),
    ]


# --- HTTPS by SNI ------------------------------------------------------------------------------

ALLOWED_HTTPS = [
    # (sni, original destination, rule)
    ("allowed.test", ("192.0.2.10", 443), "web"),
    ("deep.sub.wild.test", ("192.0.2.11", 443), "web"),
    ("alt.test", ("192.0.2.12", 8443), "alt-port"),
    # SNI spoofing: an allowed name sent to another address still goes to the allowed name.
    ("allowed.test", ("198.51.100.99", 443), "web"),
    ("allowed.test", ("10.0.0.1", 443), "web"),
]


@pytest.mark.parametrize(("sni", "dst", "rule"), ALLOWED_HTTPS)
def test_allowed_https_passes_through_pinned_to_the_sni(
    gateway: Gateway, sni: str, dst: tuple[str, int], rule: str
) -> None:
    connection = gateway.connection(dst)
    nextlayer = gateway.first_bytes(connection, client_hello(sni))
    assert isinstance(nextlayer.layer, CountingPassthrough)
    assert connection.server.address == (sni, dst[1])
    assert gateway.server_connect(connection) is None
    event = gateway.close(connection.client)
    assert (event.kind, event.action, event.would) == ("tls", "Allow", "Allow")
    assert (event.host, event.port, event.dst) == (sni, dst[1], f"{dst[0]}:{dst[1]}")
    assert event.rule == {"policy": "unit-policy", "group": "DefaultApplicationRuleCollectionGroup",
                          "collection": "allow-web", "rule": rule}  # fmt: skip
    assert event.azure == (
        f"HTTPS request from 10.0.0.2:50000 to {sni}:{dst[1]}. Action: Allow. Policy: unit-policy."
        f" Rule Collection Group: DefaultApplicationRuleCollectionGroup. Rule Collection: "
        f"allow-web. Rule: {rule}"
    )


def test_allowed_https_dials_the_address_it_checked(gateway: Gateway) -> None:
    connection = gateway.connection(("198.51.100.99", 443))
    gateway.first_bytes(connection, HELLO["allowed.test"])
    assert gateway.server_connect(connection) is None
    assert connection.server.address == ("192.0.2.10", 443)


async def no_lookup(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} was looked up in the thread pool although its address is known")


def test_a_name_in_the_hosts_file_is_dialled_without_a_lookup(gateway: Gateway) -> None:
    gateway.addon.hosts_file = {"allowed.test": ["2001:db8::7", "192.0.2.77"]}
    gateway.addon.resolve = no_lookup
    connection = gateway.connection(("198.51.100.99", 443))
    gateway.first_bytes(connection, HELLO["allowed.test"])
    assert gateway.server_connect(connection) is None
    assert connection.server.address == ("192.0.2.77", 443)  # IPv4 first, as the lookup sorts


def test_the_address_the_firewalls_dns_answered_is_dialled_without_a_lookup(
    gateway: Gateway,
) -> None:
    gateway.addon.names_by_ip["192.0.2.50"] = {"allowed.test"}
    gateway.addon.resolve = no_lookup
    connection = gateway.connection(("192.0.2.50", 443))
    gateway.first_bytes(connection, HELLO["allowed.test"])
    assert gateway.server_connect(connection) is None
    assert connection.server.address == ("192.0.2.50", 443)


def test_an_address_the_dns_gave_another_name_is_still_looked_up(gateway: Gateway) -> None:
    gateway.addon.names_by_ip["198.51.100.99"] = {"other.test"}
    connection = gateway.connection(("198.51.100.99", 443))  # SNI spoofing: allowed name, other IP
    gateway.first_bytes(connection, HELLO["allowed.test"])
    assert gateway.server_connect(connection) is None
    assert connection.server.address == ("192.0.2.10", 443)


def test_a_hosts_file_name_of_the_gateway_itself_is_refused(gateway: Gateway) -> None:
    gateway.addon.hosts_file = {"allowed.test": ["127.0.0.1"]}
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, HELLO["allowed.test"])
    assert gateway.server_connect(connection) == REFUSED_AS_GATEWAY


def test_new_options_while_running_close_one_recording_and_open_the_next(
    running_gateway: Gateway, tmp_path: Path, policy_file: Path
) -> None:
    gateway = running_gateway
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, HELLO["allowed.test"])
    gateway.addon.names_by_ip["192.0.2.60"] = {"db.test"}
    second = tmp_path / "second"
    gateway.tctx.options.update(egress_record_dir=str(second), egress_run_id="run-2",
                                egress_mode="audit")  # fmt: skip
    first_events = [(e.run, e.kind, e.reason) for e in read_events(gateway.record_dir)]
    assert first_events == [("run-1", "lifecycle", "ready"), ("run-1", "tls", Reason.RULE_MATCHED),
                            ("run-1", "lifecycle", "stopped")]  # fmt: skip
    assert [(e.run, e.reason) for e in read_events(second)] == [("run-2", "ready")]
    assert gateway.addon.names_by_ip == {} and gateway.addon.connections == {}
    assert gateway.addon.config is not None and gateway.addon.config.mode == "audit"


def test_switching_the_direct_relay_is_no_new_run(running_gateway: Gateway) -> None:
    gateway = running_gateway
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, HELLO["allowed.test"])
    gateway.tctx.options.update(egress_direct_relay=False)
    assert [e.reason for e in read_events(gateway.record_dir)] == ["ready"]
    assert list(gateway.addon.connections) == [connection.client.id]


NAMES_OF_THE_GATEWAY = [
    # (sni, why): allowed by `*.wild.test`, but the gateway's resolver says it is the gateway
    ("loopback.wild.test", "resolves to loopback"),
    ("self.wild.test", "resolves to the gateway's own address"),
    ("half.wild.test", "one of its addresses is loopback"),
]


@pytest.mark.parametrize(("sni", "why"), NAMES_OF_THE_GATEWAY)
def test_an_allowed_name_resolving_to_the_gateway_is_refused(
    gateway: Gateway, sni: str, why: str
) -> None:
    connection = gateway.connection(("192.0.2.11", 443))
    gateway.first_bytes(connection, client_hello(sni))
    assert gateway.server_connect(connection) == REFUSED_AS_GATEWAY
    event = gateway.close(connection.client)
    assert (event.action, event.would, event.reason, event.rule) == (
        "Deny", "Deny", Reason.GATEWAY_ITSELF, None
    )  # fmt: skip
    assert event.azure == (f"HTTPS request from 10.0.0.2:50000 to {sni}:443. Action: Deny. "
                           "No rule matched. Proceeding with default action")  # fmt: skip


def test_an_allowed_http_host_resolving_to_the_gateway_is_refused(gateway: Gateway) -> None:
    flow = http_flow("loopback.wild.test", ("192.0.2.11", 80))
    gateway.addon.requestheaders(flow)
    flow.server_conn.address = (flow.request.host, flow.request.port)  # as mitmproxy dials
    assert gateway.server_connect(flow) == REFUSED_AS_GATEWAY
    flow.error = tflow.terr("Connection killed")
    gateway.addon.error(flow)
    [event] = gateway.events()
    assert (event.kind, event.action, event.reason) == ("http", "Deny", Reason.GATEWAY_ITSELF)


class SpyDecider:
    """The addon's Decider, recording what it is asked; `at_dial` answers a Request that says
    it goes to the gateway itself in its place (None: the real Decider answers)."""

    def __init__(self, decider: Decider, at_dial: Decision | None = None) -> None:
        self.decider, self.at_dial, self.asked = decider, at_dial, []

    def decide(self, request: Request) -> Decision:
        self.asked.append(request)
        if request.to_gateway and self.at_dial is not None:
            return self.at_dial
        return self.decider.decide(request)


def test_the_decider_refuses_a_name_found_at_dial_to_be_the_gateway(gateway: Gateway) -> None:
    assert gateway.addon.decider is not None
    spy = gateway.addon.decider = SpyDecider(gateway.addon.decider)  # type: ignore[assignment]
    connection = gateway.connection(("192.0.2.11", 443))
    gateway.first_bytes(connection, client_hello("loopback.wild.test"))
    assert gateway.server_connect(connection) == REFUSED_AS_GATEWAY
    first, at_dial = spy.asked
    assert not first.to_gateway and at_dial == replace(first, to_gateway=True)


def test_an_allowed_name_that_is_not_the_gateway_is_not_decided_again(gateway: Gateway) -> None:
    assert gateway.addon.decider is not None
    spy = gateway.addon.decider = SpyDecider(gateway.addon.decider)  # type: ignore[assignment]
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, HELLO["allowed.test"])
    assert gateway.server_connect(connection) is None
    assert len(spy.asked) == 1  # the Decider is pure: the same Request, the same Allow


@pytest.mark.parametrize("kind", ["tls", "http"])
def test_the_addon_only_translates_the_decision_at_dial(gateway: Gateway, kind: str) -> None:
    chosen = Decision(DENY, DENY, "a reason the Decider chose",
                      RuleRef("unit-policy", "g", "c", "r"), APPLICATION_RULE)  # fmt: skip
    assert gateway.addon.decider is not None
    gateway.addon.decider = SpyDecider(gateway.addon.decider, at_dial=chosen)  # type: ignore[assignment]
    if kind == "tls":
        connection = gateway.connection(("192.0.2.11", 443))
        gateway.first_bytes(connection, client_hello("loopback.wild.test"))
        assert gateway.server_connect(connection) == f"{Reason.REFUSED}: {chosen.reason}"
        event = gateway.close(connection.client)
    else:
        flow = http_flow("loopback.wild.test", ("192.0.2.11", 80))
        gateway.addon.requestheaders(flow)
        flow.server_conn.address = (flow.request.host, flow.request.port)  # as mitmproxy dials
        assert gateway.server_connect(flow) == f"{Reason.REFUSED}: {chosen.reason}"
        flow.error = tflow.terr("Connection killed")
        gateway.addon.error(flow)
        [event] = gateway.events()
    assert (event.action, event.would, event.reason, event.rule) == (
        "Deny", "Deny", chosen.reason, {"policy": "unit-policy", "group": "g", "collection": "c",
                                        "rule": "r"})  # fmt: skip
    assert event.azure is not None and ". Action: Deny. Policy: unit-policy." in event.azure


def test_a_name_resolving_to_the_gateway_is_refused_in_audit_mode(gateway: Gateway) -> None:
    gateway.configure(egress_mode="audit")
    connection = gateway.connection(("192.0.2.20", 443))
    gateway.first_bytes(connection, client_hello("loopback.wild.test"))
    assert gateway.server_connect(connection) == REFUSED_AS_GATEWAY
    event = gateway.close(connection.client)
    assert (event.action, event.would, event.reason) == ("Deny", "Deny", Reason.GATEWAY_ITSELF)


def test_a_decider_failing_at_dial_refuses_closed(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = gateway.connection(("192.0.2.11", 443))
    gateway.first_bytes(connection, client_hello("loopback.wild.test"))
    monkeypatch.setattr(gateway.addon.decider, "decide", broken_decide)
    assert gateway.server_connect(connection) == "denied by the egress firewall (internal error)"
    event = gateway.close(connection.client)
    assert (event.action, event.would, event.reason, event.rule) == ("Deny", "Deny",
                                                                     "internal error", None)  # fmt: skip


ANY_TCP = """\
name: any-tcp
rule_collection_groups:
  - name: DefaultNetworkRuleCollectionGroup
    priority: 200
    rule_collections:
      - name: allow-all
        priority: 100
        action: Allow
        rules:
          - rule_type: NetworkRule
            name: any
            ip_protocols: [TCP]
            source_addresses: ["*"]
            destination_addresses: ["*"]
            destination_ports: ["*"]
"""


@pytest.mark.parametrize("port", [443, 8080, 22])
def test_a_connection_to_the_gateways_own_address_is_denied(gateway: Gateway, port: int) -> None:
    # A client dialling the gateway's address directly (e.g. its listener's port) with an
    # allowed name: the gateway would otherwise dial the allowed host on that port.
    any_tcp = gateway.record_dir.parent / "any-tcp.yaml"
    any_tcp.write_text(ANY_TCP)
    gateway.configure(egress_policy=str(any_tcp))
    connection = gateway.connection((GATEWAY_ADDRESS, port))
    gateway.first_bytes(connection, HELLO["allowed.test"])
    assert gateway.server_connect(connection) == "denied by the egress firewall"
    assert gateway.close(connection.client).reason == Reason.GATEWAY_ITSELF


def test_an_allowed_name_that_does_not_resolve_is_refused(gateway: Gateway, tmp_path: Path) -> None:
    allow_all = tmp_path / "allow-all.yaml"
    allow_all.write_text('allow: ["*"]\n')
    gateway.configure(egress_policy=str(allow_all))
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, client_hello("nowhere.test"))
    assert gateway.server_connect(connection) == (
        "cannot resolve nowhere.test: [Errno -2] Name or service not known"
    )
    assert gateway.close(connection.client).action == "Allow"  # allowed; the upstream failed


# --- tls_clienthello: a ClientHello that reached mitmproxy's TLS layer -------------------------


def hello_data(connection: context.Context, sni: str | None) -> tls.ClientHelloData:
    hello = parse_client_hello(client_hello(sni))
    assert hello is not None
    return tls.ClientHelloData(connection, hello)


@pytest.mark.parametrize(
    ("sni", "dst", "upstream", "error", "reason"),
    [
        ("allowed.test", ("198.51.100.99", 443), ("192.0.2.10", 443), None, Reason.RULE_MATCHED),
        ("denied.test", ("192.0.2.20", 443), ("192.0.2.20", 443), "denied by the egress firewall",
         Reason.DEFAULT_DENY),
        (None, ("192.0.2.10", 443), ("192.0.2.10", 443), "denied by the egress firewall",
         Reason.SNI_MISSING),
        ("allowed.test", ("127.0.0.1", 443), ("127.0.0.1", 443), "denied by the egress firewall",
         Reason.GATEWAY_ITSELF),
    ],
    ids=["allowed-pinned", "denied", "no-sni", "loopback"],
)  # fmt: skip
def test_tls_clienthello_decides_on_the_sni_and_never_intercepts(
    gateway: Gateway,
    sni: str | None,
    dst: tuple[str, int],
    upstream: tuple[str, int],
    error: str | None,
    reason: str,
) -> None:
    connection = gateway.connection(dst)
    connection.client.proxy_mode = ProxyMode.parse("regular")
    data = hello_data(connection, sni)
    gateway.addon.tls_clienthello(data)
    assert data.ignore_connection is True
    assert gateway.server_connect(connection) == error
    assert connection.server.address == upstream
    event = gateway.close(connection.client)
    assert (event.kind, event.host, event.reason) == ("tls", sni, reason)


def relay(
    nextlayer: layer.NextLayer, upstream_error: str | None, up: bytes = b"", down: bytes = b""
) -> list[commands.Command]:
    """Run the chosen layer as mitmproxy does: the events seen so far, the upstream connection
    opening (or failing with `upstream_error`), then more data each way. Returns the commands."""
    connection = nextlayer.context
    chosen = nextlayer.layer
    assert chosen is not None
    issued = list(chosen.handle_event(events.Start()))
    for event in nextlayer.events:
        issued += chosen.handle_event(event)
    [opening] = [command for command in issued if isinstance(command, commands.OpenConnection)]
    issued += chosen.handle_event(events.OpenConnectionCompleted(opening, upstream_error))
    if up:
        issued += chosen.handle_event(events.DataReceived(connection.client, up))
    if down:
        issued += chosen.handle_event(events.DataReceived(connection.server, down))
    return issued


def test_allowed_https_relays_and_counts_bytes_each_way(gateway: Gateway) -> None:
    connection = gateway.connection(("192.0.2.10", 443))
    hello = HELLO["allowed.test"]
    nextlayer = gateway.first_bytes(connection, hello)
    issued = relay(nextlayer, None, up=b"x" * 100, down=b"y" * 1000)
    sent = [(command.connection, command.data) for command in issued
            if isinstance(command, commands.SendData)]  # fmt: skip
    assert sent == [(connection.server, hello), (connection.server, b"x" * 100),
                    (connection.client, b"y" * 1000)]  # fmt: skip
    event = gateway.close(connection.client)
    assert (event.bytes_up, event.bytes_down) == (len(hello) + 100, 1000)
    assert event.duration_ms is not None and event.duration_ms >= 0


def test_refused_https_closes_the_client_and_counts_its_client_hello(gateway: Gateway) -> None:
    connection = gateway.connection(("192.0.2.20", 443))
    hello = HELLO["denied.test"]
    nextlayer = gateway.first_bytes(connection, hello)
    issued = relay(nextlayer, "denied by the egress firewall", up=b"more")
    assert not any(isinstance(command, commands.SendData) for command in issued)
    assert any(isinstance(command, commands.CloseConnection)
               and command.connection is connection.client for command in issued)  # fmt: skip
    event = gateway.close(connection.client)
    assert (event.bytes_up, event.bytes_down) == (len(hello) + 4, 0)


DENIED_HTTPS = [
    # (sni, original destination, reason, rule)
    ("denied.test", ("192.0.2.20", 443), Reason.DEFAULT_DENY, None),
    ("bad.wild.test", ("192.0.2.21", 443), Reason.RULE_MATCHED, "block-bad"),
    ("allowed.test", ("192.0.2.10", 8443), Reason.DEFAULT_DENY, None),  # Https:443 only
    ("alt.test", ("192.0.2.12", 443), Reason.DEFAULT_DENY, None),  # Https:8443 only
    ("wild.test", ("192.0.2.11", 443), Reason.DEFAULT_DENY, None),  # *.x does not match x
    (None, ("192.0.2.10", 443), Reason.SNI_MISSING, None),
    ("allowed.test", ("127.0.0.1", 443), Reason.GATEWAY_ITSELF, None),
    ("alt.test", ("127.0.0.1", 8443), Reason.GATEWAY_ITSELF, None),
]
DENIED_IDS = ["default", "deny-rule", "wrong-port", "wrong-port-2", "apex", "no-sni",
              "loopback", "listener"]  # fmt: skip


@pytest.mark.parametrize(("sni", "dst", "reason", "rule"), DENIED_HTTPS, ids=DENIED_IDS)
def test_denied_https_with_close_gets_no_upstream(
    gateway: Gateway, sni: str | None, dst: tuple[str, int], reason: str, rule: str | None
) -> None:
    connection = gateway.connection(dst)
    nextlayer = gateway.first_bytes(connection, client_hello(sni))
    assert isinstance(nextlayer.layer, CountingPassthrough)
    assert connection.server.address == dst
    assert gateway.server_connect(connection) == "denied by the egress firewall"
    event = gateway.close(connection.client)
    assert (event.action, event.would, event.reason) == ("Deny", "Deny", reason)
    assert (event.rule or {}).get("rule") == rule


@pytest.mark.parametrize(("sni", "dst", "reason", "rule"), DENIED_HTTPS, ids=DENIED_IDS)
def test_denied_https_with_alert_goes_to_the_alert_responder(
    running_gateway: Gateway, sni: str | None, dst: tuple[str, int], reason: str, rule: str | None
) -> None:
    gateway = running_gateway
    gateway.configure(egress_https_deny="alert")
    connection = gateway.connection(dst)
    gateway.first_bytes(connection, client_hello(sni))
    assert connection.server.address == gateway.addon.alert_address
    assert gateway.server_connect(connection) is None
    assert gateway.close(connection.client).reason == reason


def test_the_alert_responder_answers_access_denied(running_gateway: Gateway) -> None:
    address = running_gateway.addon.alert_address
    assert address is not None

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(HELLO["denied.test"])
        answer = await asyncio.wait_for(reader.read(), timeout=5)
        writer.close()
        return answer

    assert running_gateway.run(exchange()) == TLS_ACCESS_DENIED_ALERT
    assert TLS_ACCESS_DENIED_ALERT[-1] == 49  # access_denied (RFC 8446 section 6)


def test_denied_https_with_drop_holds_the_client_then_refuses(gateway: Gateway) -> None:
    gateway.configure(egress_https_deny="drop", egress_drop_seconds=1)
    connection = gateway.connection(("192.0.2.20", 443))
    gateway.first_bytes(connection, HELLO["denied.test"])
    started = time.monotonic()
    error = gateway.server_connect(connection)
    waited = time.monotonic() - started
    assert error == "denied by the egress firewall"
    assert 0.95 <= waited < 2.0


def test_a_dropped_connection_is_let_go_when_the_client_gives_up(gateway: Gateway) -> None:
    gateway.configure(egress_https_deny="drop", egress_drop_seconds=30)
    connection = gateway.connection(("192.0.2.20", 443))
    gateway.first_bytes(connection, HELLO["denied.test"])
    client = connection.client

    def client_closes() -> None:
        client.state = ConnectionState.CAN_WRITE  # mitmproxy read EOF from the client

    gateway.tctx.master.event_loop.call_later(0.3, client_closes)
    started = time.monotonic()
    assert gateway.server_connect(connection) == "denied by the egress firewall"
    assert 0.25 <= time.monotonic() - started < 1.0
    event = gateway.close(client)
    assert (event.action, event.host) == ("Deny", "denied.test")
    assert event.duration_ms is not None and event.duration_ms >= 250


def test_allowed_https_is_not_held_in_drop_style(gateway: Gateway) -> None:
    gateway.configure(egress_https_deny="drop", egress_drop_seconds=1)
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, HELLO["allowed.test"])
    started = time.monotonic()
    assert gateway.server_connect(connection) is None
    assert time.monotonic() - started < 0.5


def test_missing_sni_is_logged_as_azure_does(gateway: Gateway) -> None:
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, client_hello(None))
    event = gateway.close(connection.client)
    assert event.reason == "SNI TLS extension was missing."
    assert event.azure == (
        "HTTPS request from 10.0.0.2:50000. Action: Deny. Reason: SNI TLS extension was missing."
    )


@pytest.mark.parametrize("sni", ["localhost", "LOCALHOST", "gw.localhost"])
def test_an_sni_naming_the_gateway_itself_is_denied_even_when_all_is_allowed(
    gateway: Gateway, tmp_path: Path, sni: str
) -> None:
    allow_all = tmp_path / "allow-all.yaml"
    allow_all.write_text('allow: ["*"]\n')
    gateway.configure(egress_policy=str(allow_all))
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, client_hello(sni))
    assert gateway.server_connect(connection) == "denied by the egress firewall"
    assert gateway.close(connection.client).reason == Reason.GATEWAY_ITSELF


def test_a_host_header_naming_the_gateway_itself_is_denied_even_when_all_is_allowed(
    gateway: Gateway, tmp_path: Path
) -> None:
    allow_all = tmp_path / "allow-all.yaml"
    allow_all.write_text('allow: ["*"]\n')
    gateway.configure(egress_policy=str(allow_all))
    flow = http_flow("localhost", ("192.0.2.10", 80))
    gateway.addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 470
    assert gateway.events()[0].reason == Reason.GATEWAY_ITSELF


def test_audit_mode_lets_denied_https_through_and_records_the_deny(gateway: Gateway) -> None:
    gateway.configure(egress_mode="audit")
    connection = gateway.connection(("192.0.2.20", 443))
    gateway.first_bytes(connection, HELLO["denied.test"])
    assert connection.server.address == ("denied.test", 443)
    assert gateway.server_connect(connection) is None
    event = gateway.close(connection.client)
    assert (event.action, event.would) == ("Allow", "Deny")
    assert event.azure is not None and ". Action: Deny. No rule matched." in event.azure


def test_an_incomplete_client_hello_waits_for_more(gateway: Gateway) -> None:
    connection = gateway.connection(("192.0.2.10", 443))
    hello = HELLO["allowed.test"]
    nextlayer = gateway.first_bytes(connection, hello[:20])
    assert nextlayer.layer is None
    assert gateway.addon.connections == {}
    nextlayer.events.append(events.DataReceived(connection.client, hello[20:]))
    gateway.addon.next_layer(nextlayer)
    assert isinstance(nextlayer.layer, CountingPassthrough)
    assert connection.server.address == ("allowed.test", 443)


def test_no_bytes_yet_decides_nothing(gateway: Gateway) -> None:
    connection = gateway.connection(("192.0.2.10", 443))
    nextlayer = layer.NextLayer(connection)
    gateway.addon.next_layer(nextlayer)
    assert nextlayer.layer is None
    assert gateway.addon.connections == {}


def test_a_connection_no_decision_approved_is_refused(gateway: Gateway) -> None:
    assert gateway.server_connect(gateway.connection(("192.0.2.10", 443))) == (
        "denied by the egress firewall"
    )


def test_an_approved_connection_redirected_elsewhere_is_refused(gateway: Gateway) -> None:
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, HELLO["allowed.test"])
    connection.server.address = ("denied.test", 443)
    assert gateway.server_connect(connection) == "denied by the egress firewall"


@pytest.mark.parametrize("mode", ["regular", "dns", "socks5"])
def test_other_proxy_modes_are_left_to_mitmproxy(gateway: Gateway, mode: str) -> None:
    connection = gateway.connection(("192.0.2.10", 443))
    connection.client.proxy_mode = ProxyMode.parse(mode)
    nextlayer = gateway.first_bytes(connection, HELLO["allowed.test"])
    assert nextlayer.layer is None
    assert gateway.addon.connections == {}


# --- raw TCP ------------------------------------------------------------------------------------

RAW_TCP = [
    # (first bytes, destination, action, rule)
    (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", ("192.0.2.50", 5432), "Allow", "postgres"),
    (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", ("192.0.2.50", 5433), "Deny", None),
    (b"SSH-2.0-OpenSSH_9.6\r\n", ("192.0.2.51", 22), "Deny", None),
    (b"\x16garbage that is not TLS", ("192.0.2.50", 5432), "Allow", "postgres"),
    (b"\x16garbage that is not TLS", ("192.0.2.52", 443), "Deny", None),
    (b"*1\r\n$4\r\nPING\r\n", ("192.0.2.60", 6379), "Deny", None),  # db.test unknown yet
    (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", ("127.0.0.1", 5432), "Deny", None),
]


@pytest.mark.parametrize(("data", "dst", "action", "rule"), RAW_TCP)
def test_raw_tcp_is_decided_by_network_rules(
    gateway: Gateway, data: bytes, dst: tuple[str, int], action: str, rule: str | None
) -> None:
    connection = gateway.connection(dst)
    nextlayer = gateway.first_bytes(connection, data)
    assert isinstance(nextlayer.layer, CountingPassthrough)
    assert connection.server.address == dst  # no name to pin to: the address the rule allowed
    error = gateway.server_connect(connection)
    assert error == (None if action == "Allow" else "denied by the egress firewall")
    event = gateway.close(connection.client)
    assert (event.kind, event.protocol, event.action) == ("tcp", "TCP", action)
    assert (event.rule or {}).get("rule") == rule
    tail = "" if rule is None else (
        ". Policy: unit-policy. Rule Collection Group: DefaultNetworkRuleCollectionGroup. "
        f"Rule Collection: allow-net. Rule: {rule}")  # fmt: skip
    assert (
        event.azure
        == f"TCP request from 10.0.0.2:50000 to {dst[0]}:{dst[1]}. Action: {action}{tail}"
    )


def test_a_network_rule_allowing_443_beats_application_rules(
    gateway: Gateway, tmp_path: Path
) -> None:
    policy = tmp_path / "net-443.yaml"
    policy.write_text(POLICY.replace('destination_ports: ["5432"]', 'destination_ports: ["443"]')
                      .replace('destination_addresses: ["192.0.2.50"]',
                               'destination_addresses: ["*"]'))  # fmt: skip
    gateway.configure(egress_policy=str(policy))
    connection = gateway.connection(("192.0.2.20", 443))
    gateway.first_bytes(connection, HELLO["denied.test"])
    assert connection.server.address == ("denied.test", 443)
    assert gateway.server_connect(connection) is None
    assert gateway.close(connection.client).rule["rule"] == "postgres"  # type: ignore[index]


# --- plain HTTP ---------------------------------------------------------------------------------


def http_flow(host_header: str | None, dst: tuple[str, int], path: str = "/simple/pip/"):
    headers = http.Headers(host=host_header) if host_header is not None else http.Headers()
    flow = tflow.tflow(req=tutils.treq(host=dst[0], port=dst[1], path=path.encode(),
                                       headers=headers, content=b""))  # fmt: skip
    flow.client_conn.peername = SRC
    flow.client_conn.proxy_mode = ProxyMode.parse("transparent")
    flow.server_conn.address = dst
    return flow


ALLOWED_HTTP = [
    # (Host header, original destination, pinned upstream host, logged URL)
    ("allowed.test", ("192.0.2.10", 80), "allowed.test", "allowed.test/simple/pip/"),
    ("Allowed.Test", ("192.0.2.10", 80), "Allowed.Test", "Allowed.Test/simple/pip/"),
    ("allowed.test:80", ("192.0.2.10", 80), "allowed.test", "allowed.test/simple/pip/"),
    ("x.wild.test", ("192.0.2.11", 80), "x.wild.test", "x.wild.test/simple/pip/"),
    ("allowed.test", ("198.51.100.99", 80), "allowed.test", "allowed.test/simple/pip/"),
]


@pytest.mark.parametrize(("host_header", "dst", "pinned", "url"), ALLOWED_HTTP)
def test_allowed_http_is_pinned_to_the_host_name(
    gateway: Gateway, host_header: str, dst: tuple[str, int], pinned: str, url: str
) -> None:
    flow = http_flow(host_header, dst)
    gateway.addon.requestheaders(flow)
    assert flow.response is None
    assert flow.error is None
    assert (flow.request.host, flow.request.port) == (pinned, 80)
    assert flow.request.host_header == host_header
    flow.server_conn.address = (pinned, 80)
    assert gateway.server_connect(flow) is None
    flow.response = tutils.tresp(content=b"0123456789")
    gateway.addon.response(flow)
    [event] = gateway.events()
    assert (event.kind, event.action, event.status, event.bytes_down) == ("http", "Allow", 200, 10)
    assert event.url == url


DENIED_HTTP = [
    ("denied.test", ("192.0.2.20", 80), Reason.DEFAULT_DENY, None),
    ("bad.wild.test", ("192.0.2.21", 80), Reason.RULE_MATCHED, "block-bad"),
    ("alt.test", ("192.0.2.12", 80), Reason.DEFAULT_DENY, None),
    (None, ("192.0.2.10", 80), Reason.DEFAULT_DENY, None),
    ("allowed.test", ("192.0.2.10", 8080), Reason.DEFAULT_DENY, None),
    ("allowed.test", ("127.0.0.1", 80), Reason.GATEWAY_ITSELF, None),
]


@pytest.mark.parametrize(("host_header", "dst", "reason", "rule"), DENIED_HTTP)
def test_denied_http_gets_azures_470_answer(
    gateway: Gateway, host_header: str | None, dst: tuple[str, int], reason: str, rule: str | None
) -> None:
    flow = http_flow(host_header, dst)
    gateway.addon.requestheaders(flow)
    response = flow.response
    assert response is not None
    assert (response.status_code, response.reason) == (470, "status code 470")
    assert (
        response.content
        == b"Action: Deny. Reason: No rule matched. Proceeding with default action."
    )
    assert response.content == DENY_BODY
    assert response.headers["Content-Length"] == "70"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert gateway.server_connect(flow) == "denied by the egress firewall"
    [event] = gateway.events()
    assert (event.kind, event.action, event.status, event.reason) == ("http", "Deny", 470, reason)
    assert (event.rule or {}).get("rule") == rule


def test_denied_http_log_line_is_azures(gateway: Gateway) -> None:
    flow = http_flow("denied.test", ("192.0.2.20", 80), path="/path")
    gateway.addon.requestheaders(flow)
    assert gateway.events()[0].azure == (
        "HTTP  request from 10.0.0.2:50000 to denied.test:80. Url: denied.test/path. "
        "Action: Deny. No rule matched. Proceeding with default action"
    )


@pytest.mark.parametrize("host_header", ["allowed.test:8080", "denied.test:81"])
def test_a_host_port_unlike_the_connection_port_kills_the_flow(
    gateway: Gateway, host_header: str
) -> None:
    flow = http_flow(host_header, ("192.0.2.10", 80))
    gateway.addon.requestheaders(flow)
    assert flow.error is not None and flow.error.msg == "Connection killed."
    assert flow.response is None
    [event] = gateway.events()
    assert (event.action, event.reason) == ("Deny", Reason.HOST_PORT_MISMATCH)


def test_audit_mode_forwards_denied_http_and_records_the_deny(gateway: Gateway) -> None:
    gateway.configure(egress_mode="audit")
    flow = http_flow("denied.test", ("192.0.2.20", 80))
    gateway.addon.requestheaders(flow)
    assert flow.response is None
    assert flow.request.host == "denied.test"
    gateway.addon.error(flow)
    [event] = gateway.events()
    assert (event.action, event.would, event.status) == ("Allow", "Deny", None)


# --- DNS ----------------------------------------------------------------------------------------


def dns_flow(name: str, *answers: dns.ResourceRecord) -> dns.DNSFlow:
    question = [dns.Question(name, dns.types.A, dns.classes.IN)]
    flow = tflow.tdnsflow(req=tutils.tdnsreq(questions=question))
    flow.client_conn.peername = ("10.0.0.2", 5353)
    if answers:
        flow.response = flow.request.succeed(list(answers))
    return flow


def test_dns_answers_are_recorded_with_azures_line(gateway: Gateway) -> None:
    flow = dns_flow("db.test", dns.ResourceRecord.A("db.test", IPv4Address("192.0.2.60")))
    gateway.addon.dns_request(flow)
    gateway.addon.dns_response(flow)
    [event] = gateway.events()
    assert (event.kind, event.host, event.action, event.reason) == ("dns", "db.test", "Allow",
                                                                    "NOERROR")  # fmt: skip
    assert event.bytes_up == len(flow.request.packed) and event.bytes_down > event.bytes_up
    assert event.azure is not None
    assert event.azure.startswith(
        f"DNS Request: 10.0.0.2:5353 - 42 A IN db.test. udp {len(flow.request.packed)} false 1232 "
        f"NOERROR qr,rd,ra {len(flow.response.packed)} "  # type: ignore[union-attr]
    )


def test_dns_answers_let_a_network_rule_match_its_fqdn(gateway: Gateway) -> None:
    flow = dns_flow("DB.test", dns.ResourceRecord.A("db.test", IPv4Address("192.0.2.60")))
    gateway.addon.dns_request(flow)
    gateway.addon.dns_response(flow)
    assert gateway.addon.names_by_ip["192.0.2.60"] == {"db.test"}
    connection = gateway.connection(("192.0.2.60", 6379))
    gateway.first_bytes(connection, b"*1\r\n$4\r\nPING\r\n")
    assert gateway.server_connect(connection) is None
    assert gateway.close(connection.client).rule["rule"] == "redis-by-name"  # type: ignore[index]


def test_a_cname_chain_maps_the_address_to_every_name(gateway: Gateway) -> None:
    flow = dns_flow(
        "db.test",
        dns.ResourceRecord.CNAME("db.test", "db.cdn.test"),
        dns.ResourceRecord.A("db.cdn.test", IPv4Address("192.0.2.61")),
    )
    gateway.addon.dns_response(flow)
    assert gateway.addon.names_by_ip["192.0.2.61"] == {"db.test", "db.cdn.test"}


def test_a_failed_dns_query_is_recorded_as_servfail(gateway: Gateway) -> None:
    flow = dns_flow("gone.test")
    flow.error = tflow.terr("upstream timeout")
    gateway.addon.dns_request(flow)
    gateway.addon.dns_error(flow)
    [event] = gateway.events()
    assert (event.host, event.reason, event.bytes_down) == ("gone.test", "SERVFAIL", 0)
    assert " gone.test. udp " in (event.azure or "")


# --- failing closed -----------------------------------------------------------------------------


def broken_decide(request: object) -> object:
    raise RuntimeError("decider bug")


def test_a_failing_decider_denies_the_connection(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway.addon.decider, "decide", broken_decide)
    connection = gateway.connection(("192.0.2.10", 443))
    nextlayer = gateway.first_bytes(connection, HELLO["allowed.test"])
    assert isinstance(nextlayer.layer, CountingPassthrough)
    assert connection.server.address == ("192.0.2.10", 443)
    assert gateway.server_connect(connection) == "denied by the egress firewall"
    event = gateway.close(connection.client)
    assert (event.action, event.reason) == ("Deny", "internal error")


def test_a_failing_decider_kills_the_http_flow(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway.addon.decider, "decide", broken_decide)
    flow = http_flow("allowed.test", ("192.0.2.10", 80))
    gateway.addon.requestheaders(flow)
    assert flow.error is not None and flow.error.msg == "Connection killed."
    assert flow.request.host == "192.0.2.10"
    assert gateway.server_connect(flow) == "denied by the egress firewall"
    [event] = gateway.events()
    assert (event.kind, event.action, event.reason) == ("http", "Deny", "internal error")


def test_a_failing_server_connect_check_still_refuses(gateway: Gateway) -> None:
    class BrokenConnections(dict):
        def get(self, *args: object) -> None:
            raise RuntimeError("bug")

    gateway.addon.connections = BrokenConnections()
    connection = gateway.connection(("192.0.2.10", 443))
    assert gateway.server_connect(connection) == "denied by the egress firewall (internal error)"


def test_a_failing_resolver_refuses_and_records_an_internal_error(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_resolve(host: str, port: int) -> list[str]:
        raise RuntimeError("resolver bug")

    gateway.addon.resolve = broken_resolve
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, HELLO["allowed.test"])
    assert gateway.server_connect(connection) == "denied by the egress firewall (internal error)"
    event = gateway.close(connection.client)
    assert (event.action, event.would, event.reason, event.rule) == ("Deny", "Deny",
                                                                     "internal error", None)  # fmt: skip


def test_a_failing_decider_in_tls_clienthello_denies_without_interception(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway.addon.decider, "decide", broken_decide)
    connection = gateway.connection(("192.0.2.10", 443))
    data = hello_data(connection, "allowed.test")
    gateway.addon.tls_clienthello(data)
    assert data.ignore_connection is True
    assert gateway.server_connect(connection) == "denied by the egress firewall"
    assert gateway.close(connection.client).reason == "internal error"


def test_after_a_recording_failure_the_gateway_exits_nonzero(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway.tctx.master, "shutdown", lambda: None)
    exits: list[bool] = []
    monkeypatch.setattr(gateway.addon, "exit_nonzero", lambda: exits.append(True))
    gateway.addon.recorder._events = open("/dev/full", "w")  # type: ignore[union-attr]  # noqa: SIM115
    gateway.addon.requestheaders(http_flow("denied.test", ("192.0.2.20", 80)))
    assert exits == []
    gateway.addon.done()
    assert exits == [True]


def test_a_clean_stop_exits_normally_and_writes_stopped(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    exits: list[bool] = []
    monkeypatch.setattr(gateway.addon, "exit_nonzero", lambda: exits.append(True))
    gateway.addon.done()
    assert exits == []
    assert [event.reason for event in gateway.events()] == ["stopped"]


def test_a_recording_that_cannot_be_written_stops_the_gateway(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped: list[bool] = []
    monkeypatch.setattr(gateway.tctx.master, "shutdown", lambda: stopped.append(True))
    gateway.addon.recorder._events = open("/dev/full", "w")  # type: ignore[union-attr]  # noqa: SIM115
    flow = http_flow("denied.test", ("192.0.2.20", 80))
    gateway.addon.requestheaders(flow)
    assert stopped == [True]
    assert flow.error is not None and flow.error.msg == "Connection killed."


# --- the recording ------------------------------------------------------------------------------


def test_every_event_reaches_the_record_dir_as_it_happens(gateway: Gateway) -> None:
    allowed = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(allowed, HELLO["allowed.test"])
    gateway.addon.client_disconnected(allowed.client)
    gateway.addon.requestheaders(http_flow("denied.test", ("192.0.2.20", 80)))
    lines = (gateway.record_dir / EVENTS_FILE).read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["tls", "http"]
    assert all(json.loads(line)["run"] == "run-1" for line in lines)
    azure = (gateway.record_dir / "azure.log").read_text().splitlines()
    assert azure == [event.azure for event in gateway.events()]


# --- upstream failures: an allowed connection that failed says why (issue 16) ---------------


@pytest.mark.parametrize(
    ("error", "word"),
    [
        ("[Errno 111] Connect call failed ('192.0.2.10', 443)", "refused"),
        ("[Errno 110] Connection timed out", "timeout"),
        ("timed out", "timeout"),
        ("[Errno 113] No route to host", "unreachable"),
        ("[Errno 104] Connection reset by peer", "reset"),
    ],
)
def test_connect_errors_are_named_in_one_word(error: str, word: str) -> None:
    assert upstream_failure(error) == word


def _allowed(gateway: Gateway):
    connection = gateway.connection(("192.0.2.10", 443))
    nextlayer = gateway.first_bytes(connection, HELLO["allowed.test"])
    assert gateway.server_connect(connection) is None
    return connection, nextlayer


def test_an_allowed_connection_the_upstream_refuses_records_refused(gateway: Gateway) -> None:
    connection, nextlayer = _allowed(gateway)
    connection.server.error = "[Errno 111] Connect call failed ('192.0.2.10', 443)"
    gateway.addon.server_connect_error(
        ServerConnectionHookData(server=connection.server, client=connection.client)
    )
    relay(nextlayer, connection.server.error)
    event = gateway.close(connection.client)
    assert (event.action, event.upstream, event.bytes_down) == ("Allow", "refused", 0)


def test_an_upstream_hanging_up_before_answering_records_reset(gateway: Gateway) -> None:
    connection, nextlayer = _allowed(gateway)
    relay(nextlayer, None)
    connection.client.state = ConnectionState.OPEN
    list(nextlayer.layer.handle_event(events.ConnectionClosed(connection.server)))
    event = gateway.close(connection.client)
    assert (event.action, event.upstream) == ("Allow", "reset")


def test_an_upstream_that_answered_then_closed_is_no_failure(gateway: Gateway) -> None:
    connection, nextlayer = _allowed(gateway)
    relay(nextlayer, None, down=b"server hello")
    connection.client.state = ConnectionState.OPEN
    list(nextlayer.layer.handle_event(events.ConnectionClosed(connection.server)))
    event = gateway.close(connection.client)
    assert (event.action, event.upstream) == ("Allow", None)


def test_a_connection_the_firewall_refused_has_no_upstream_failure(gateway: Gateway) -> None:
    connection = gateway.connection(("192.0.2.20", 443))
    nextlayer = gateway.first_bytes(connection, HELLO["denied.test"])
    error = gateway.server_connect(connection)
    gateway.addon.server_connect_error(
        ServerConnectionHookData(server=connection.server, client=connection.client)
    )
    relay(nextlayer, error)
    event = gateway.close(connection.client)
    assert (event.action, event.upstream) == ("Deny", None)
