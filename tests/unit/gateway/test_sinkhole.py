"""DNS as Azure answers it: names that do not resolve here get a sinkhole address, connections to
them are decided by name, and an allowed one is recorded as `upstream: unreachable`."""

# The fixtures `gateway` and `policy_file` come from test_addon, so test arguments shadow them.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import time
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from mitmproxy import dns
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.proxy.server_hooks import ServerConnectionHookData
from mitmproxy.test import tflow, tutils
from test_addon import (  # the addon's test harness, shared
    Gateway,
    client_hello,
    gateway,  # noqa: F401 - a fixture used by name
    http_flow,
    policy_file,  # noqa: F401 - a fixture used by name
)

from harness.gateway.sinkhole import SINKHOLE_NETWORK, Sinkhole, answer_as_azure


def query(name: str, qtype: int = dns.types.A) -> dns.DNSFlow:
    question = [dns.Question(name, qtype, dns.classes.IN)]
    flow = tflow.tdnsflow(req=tutils.tdnsreq(questions=question))
    flow.client_conn.peername = ("10.0.0.2", 5353)
    return flow


def answered(flow: dns.DNSFlow, *records: dns.ResourceRecord) -> dns.DNSFlow:
    flow.response = flow.request.succeed(list(records))
    return flow


def failed(flow: dns.DNSFlow, code: int) -> dns.DNSFlow:
    flow.response = flow.request.fail(code)
    return flow


def resolve_through(gateway: Gateway, flow: dns.DNSFlow) -> dns.DNSFlow:
    gateway.addon.dns_request(flow)
    gateway.addon.dns_response(flow)
    return flow


def a_addresses(message: dns.DNSMessage | None) -> list[str]:
    assert message is not None
    return [str(r.ipv4_address) for r in message.answers if r.type == dns.types.A]


# --- the pure answer rewrite -------------------------------------------------------------------


FAILURES = [
    ("nxdomain", dns.response_codes.NXDOMAIN),
    ("servfail", dns.response_codes.SERVFAIL),
    ("refused", dns.response_codes.REFUSED),
]


@pytest.mark.parametrize(("label", "code"), FAILURES)
def test_an_a_query_that_fails_gets_the_names_sinkhole_address(label: str, code: int) -> None:
    sinkhole = Sinkhole()
    flow = failed(query("gone.test"), code)
    response, sinkholed = answer_as_azure(flow.request, flow.response, sinkhole)
    assert sinkholed
    assert response is not None and response.response_code == dns.response_codes.NOERROR
    [address] = a_addresses(response)
    assert IPv4Address(address) in SINKHOLE_NETWORK
    assert sinkhole.name_of(address) == "gone.test"


def test_an_a_query_without_any_response_or_a_record_is_sinkholed() -> None:
    sinkhole = Sinkhole()
    flow = query("silent.test")
    assert answer_as_azure(flow.request, None, sinkhole)[1]
    cname_only = answered(query("alias.test"), dns.ResourceRecord.CNAME("alias.test", "x.test"))
    assert answer_as_azure(cname_only.request, cname_only.response, sinkhole)[1]


def test_a_real_answer_is_kept() -> None:
    flow = answered(query("db.test"), dns.ResourceRecord.A("db.test", IPv4Address("192.0.2.60")))
    response, sinkholed = answer_as_azure(flow.request, flow.response, Sinkhole())
    assert (response, sinkholed) == (flow.response, False)


def test_each_name_keeps_one_address_and_names_get_different_ones() -> None:
    sinkhole = Sinkhole()
    first = sinkhole.address_for("one.test")
    assert sinkhole.address_for("ONE.test.") == first
    assert sinkhole.address_for("two.test") != first
    assert sinkhole.unreachable("one.test") and sinkhole.unreachable(first)
    assert sinkhole.owns("198.19.255.254") and not sinkhole.owns("192.0.2.1")
    assert not sinkhole.unreachable("db.test")


def test_a_failed_aaaa_query_gets_an_empty_answer_so_clients_use_ipv4() -> None:
    flow = failed(query("gone.test", dns.types.AAAA), dns.response_codes.NXDOMAIN)
    response, sinkholed = answer_as_azure(flow.request, flow.response, Sinkhole())
    assert sinkholed
    assert response is not None
    assert (response.response_code, response.answers) == (dns.response_codes.NOERROR, [])


def test_an_aaaa_answer_of_a_real_name_is_kept() -> None:
    record = dns.ResourceRecord.AAAA("v6.test", IPv6Address("2001:db8::1"))
    flow = answered(query("v6.test", dns.types.AAAA), record)
    assert answer_as_azure(flow.request, flow.response, Sinkhole()) == (flow.response, False)
    no_data = answered(query("v4only.test", dns.types.AAAA))
    assert answer_as_azure(no_data.request, no_data.response, Sinkhole()) == (
        no_data.response, False)  # fmt: skip


def test_other_query_types_are_left_alone() -> None:
    flow = failed(query("gone.test", dns.types.TXT), dns.response_codes.NXDOMAIN)
    assert answer_as_azure(flow.request, flow.response, Sinkhole()) == (flow.response, False)


# --- in the addon ---------------------------------------------------------------------------------


def test_a_sinkholed_answer_is_recorded_with_its_address(gateway: Gateway) -> None:
    flow = resolve_through(gateway, failed(query("gone.test"), dns.response_codes.NXDOMAIN))
    [address] = a_addresses(flow.response)
    [event] = gateway.events()
    assert (event.kind, event.host, event.reason) == ("dns", "gone.test", "NOERROR")
    assert (event.answers, event.sinkholed) == ([address], True)
    assert " A IN gone.test. udp " in (event.azure or "")


def test_a_real_answer_is_recorded_with_its_addresses(gateway: Gateway) -> None:
    record = dns.ResourceRecord.A("db.test", IPv4Address("192.0.2.60"))
    resolve_through(gateway, answered(query("db.test"), record))
    [event] = gateway.events()
    assert (event.answers, event.sinkholed) == (["192.0.2.60"], False)


def test_resolve_mode_passes_the_failure_on(gateway: Gateway) -> None:
    gateway.configure(egress_dns="resolve")
    flow = resolve_through(gateway, failed(query("gone.test"), dns.response_codes.NXDOMAIN))
    assert flow.response is not None
    assert flow.response.response_code == dns.response_codes.NXDOMAIN
    [event] = gateway.events()
    assert (event.reason, event.answers, event.sinkholed) == ("NXDOMAIN", [], False)


def test_a_bad_dns_mode_refuses_to_start(gateway: Gateway) -> None:
    from mitmproxy import exceptions

    with pytest.raises(exceptions.OptionsError, match="egress_dns must be one of azure, resolve"):
        gateway.configure(egress_dns="bogus")


def sinkholed(gateway: Gateway, name: str) -> str:
    flow = resolve_through(gateway, failed(query(name), dns.response_codes.NXDOMAIN))
    return a_addresses(flow.response)[0]


def test_allowed_https_to_a_sinkhole_is_unreachable_not_denied(gateway: Gateway) -> None:
    address = sinkholed(gateway, "cdn.wild.test")  # allowed by *.wild.test
    connection = gateway.connection((address, 443))
    gateway.first_bytes(connection, client_hello("cdn.wild.test"))
    error = gateway.server_connect(connection)
    assert error is not None and "unreachable from this machine" in error
    event = gateway.close(connection.client)
    assert (event.action, event.would, event.upstream) == ("Allow", "Allow", "unreachable")
    assert (event.host, event.dst) == ("cdn.wild.test", f"{address}:443")
    assert event.azure is not None and ". Action: Allow. Policy: unit-policy." in event.azure
    assert '"upstream": "unreachable"' in (gateway.record_dir / "events.jsonl").read_text()


def test_denied_https_to_a_sinkhole_is_a_deny_by_name(gateway: Gateway) -> None:
    address = sinkholed(gateway, "elsewhere.test")
    connection = gateway.connection((address, 443))
    gateway.first_bytes(connection, client_hello("elsewhere.test"))
    assert gateway.server_connect(connection) == "denied by the egress firewall"
    event = gateway.close(connection.client)
    assert (event.action, event.host, event.upstream) == ("Deny", "elsewhere.test", None)


def test_raw_tcp_to_a_sinkhole_matches_a_network_rule_by_the_looked_up_name(
    gateway: Gateway,
) -> None:
    address = sinkholed(gateway, "db.test")  # the network rule redis-by-name: db.test:6379
    connection = gateway.connection((address, 6379))
    gateway.first_bytes(connection, b"*1\r\n$4\r\nPING\r\n")
    error = gateway.server_connect(connection)
    assert error is not None and "unreachable" in error  # never dialled: it is a sinkhole
    event = gateway.close(connection.client)
    assert (event.action, event.upstream) == ("Allow", "unreachable")
    assert (event.rule or {}).get("rule") == "redis-by-name"


def test_raw_tcp_to_a_sinkhole_without_a_rule_is_denied(gateway: Gateway) -> None:
    address = sinkholed(gateway, "other.test")
    connection = gateway.connection((address, 22))
    gateway.first_bytes(connection, b"SSH-2.0-client\r\n")
    assert gateway.server_connect(connection) == "denied by the egress firewall"
    assert gateway.close(connection.client).action == "Deny"


def test_allowed_http_to_a_sinkholed_host_is_unreachable(gateway: Gateway) -> None:
    address = sinkholed(gateway, "files.wild.test")
    flow = http_flow("files.wild.test", (address, 80))
    gateway.addon.requestheaders(flow)
    assert flow.response is None  # allowed: on to the upstream
    flow.server_conn.address = (flow.request.host, flow.request.port)  # as mitmproxy dials
    error = gateway.server_connect(flow)
    assert error is not None and "unreachable" in error
    flow.error = tflow.terr(error)
    gateway.addon.error(flow)
    event = gateway.events()[-1]
    assert (event.kind, event.action, event.upstream) == ("http", "Allow", "unreachable")
    assert event.url == "files.wild.test/simple/pip/"


def test_a_failed_dial_of_an_allowed_upstream_is_unreachable(gateway: Gateway) -> None:
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, client_hello("allowed.test"))
    assert gateway.server_connect(connection) is None
    connection.server.error = "Connect call failed"
    gateway.addon.server_connect_error(
        ServerConnectionHookData(server=connection.server, client=connection.client)
    )
    event = gateway.close(connection.client)
    assert (event.action, event.upstream) == ("Allow", "unreachable")


def test_a_refused_connection_is_not_called_unreachable(gateway: Gateway) -> None:
    connection = gateway.connection(("192.0.2.20", 443))
    gateway.first_bytes(connection, client_hello("denied.test"))
    assert gateway.server_connect(connection) == "denied by the egress firewall"
    gateway.addon.server_connect_error(
        ServerConnectionHookData(server=connection.server, client=connection.client)
    )
    event = gateway.close(connection.client)
    assert (event.action, event.upstream) == ("Deny", None)


def test_an_allowed_name_that_does_not_resolve_at_connect_is_unreachable(
    gateway: Gateway, tmp_path: Path
) -> None:
    allow_all = tmp_path / "allow-all.yaml"
    allow_all.write_text('allow: ["*"]\n')
    gateway.configure(egress_policy=str(allow_all))
    connection = gateway.connection(("192.0.2.10", 443))
    gateway.first_bytes(connection, client_hello("nowhere.test"))
    assert gateway.server_connect(connection) is not None
    assert gateway.close(connection.client).upstream == "unreachable"


class DnsResolver:
    """Stands in for mitmproxy's resolver addon (same name): answers after `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def resolve(self, message: dns.DNSMessage) -> dns.DNSMessage:
        await asyncio.sleep(self.seconds)
        return message.succeed([dns.ResourceRecord.A("slow.test", IPv4Address("192.0.2.70"))])


@pytest.mark.parametrize(("seconds", "sinkholed_"), [(0.01, False), (5, True)])
def test_a_name_that_does_not_answer_in_time_is_sinkholed(
    gateway: Gateway, seconds: float, sinkholed_: bool
) -> None:
    gateway.tctx.master.addons.add(DnsResolver(seconds))
    gateway.configure(egress_dns_ms=200)
    flow = query("slow.test")
    flow.client_conn.proxy_mode = ProxyMode.parse("dns")
    started = time.monotonic()
    gateway.run(gateway.addon.dns_request(flow))
    gateway.addon.dns_response(flow)
    assert time.monotonic() - started < 2
    [event] = gateway.events()
    assert event.sinkholed is sinkholed_
    assert (event.answers == ["192.0.2.70"]) is not sinkholed_
