"""The fast SNI reader gives exactly what mitmproxy's full ClientHello parser gives."""

from __future__ import annotations

import ssl

import pytest
from mitmproxy.proxy.layers.tls import get_client_hello, parse_client_hello

from harness.gateway.addon import INCOMPLETE, client_hello_sni, hosts_file_addresses
from harness.gateway.clienthello import Unusual, server_name


def hello_bytes(sni: str | None, *, tls13_only: bool = False) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    if tls13_only:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("sni", ["allowed.test", "a.b.c.example.test", "x" * 60 + ".test", None])
@pytest.mark.parametrize("tls13_only", [False, True])
def test_server_name_agrees_with_mitmproxys_parser(sni, tls13_only) -> None:
    data = hello_bytes(sni, tls13_only=tls13_only)
    expected = parse_client_hello(data).sni
    assert client_hello_sni(data) == expected == sni


def test_a_hello_split_over_records_and_cut_short_is_incomplete() -> None:
    data = hello_bytes("allowed.test")
    assert client_hello_sni(data[:20]) is INCOMPLETE
    assert client_hello_sni(data[:-1]) is INCOMPLETE
    body = data[5:]
    half = len(body) // 2
    split = (b"\x16\x03\x01" + half.to_bytes(2, "big") + body[:half]
             + b"\x16\x03\x01" + (len(body) - half).to_bytes(2, "big") + body[half:])  # fmt: skip
    assert client_hello_sni(split) == "allowed.test"


def test_not_tls_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        client_hello_sni(b"\x16\x07\x07\x00\x05hello")


def test_unusual_shapes_go_to_mitmproxys_parser() -> None:
    data = hello_bytes("allowed.test")
    handshake = get_client_hello(data)
    assert handshake is not None
    with pytest.raises(Unusual):
        server_name(b"\x02" + handshake[1:])  # not a ClientHello
    with pytest.raises(Unusual):
        server_name(handshake[:60] + b"\x00" * 3)  # truncated inside the cipher suites


def test_an_invalid_host_name_is_answered_as_mitmproxy_answers_it() -> None:
    data = hello_bytes("allowed.test").replace(b"allowed.test", b"allowed_tes!")
    assert client_hello_sni(data) == parse_client_hello(data).sni


def test_hosts_file_maps_every_name_to_its_addresses_in_order() -> None:
    text = "127.0.0.1 localhost\n# comment\n10.0.0.2 api.test Alias.Test.  # trailing\n10.0.0.3 api.test\n::1 api.test\n"
    assert hosts_file_addresses(text) == {
        "localhost": ["127.0.0.1"],
        "api.test": ["10.0.0.2", "10.0.0.3", "::1"],
        "alias.test": ["10.0.0.2"],
    }
