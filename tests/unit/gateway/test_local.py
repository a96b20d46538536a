"""The gateway's own addresses, parsed from /proc/net text as the kernel writes it."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from harness.gateway.local import is_own_address, parse_fib_trie, parse_if_inet6

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 4
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.231.5.0/29 2 0 2
        |-- 10.231.5.0
           /29 link UNICAST
        |-- 10.231.5.1
           /32 host LOCAL
        |-- 10.231.5.7
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 4
        |-- 10.231.5.1
           /32 host LOCAL
"""

IF_INET6 = """\
fd000000000000000000000000000002 04 40 00 82     eth0
00000000000000000000000000000001 01 80 10 80       lo
"""


def test_fib_trie_yields_only_local_host_routes() -> None:
    assert parse_fib_trie(FIB_TRIE) == {ip_address("10.231.5.1"), ip_address("127.0.0.1")}


def test_if_inet6_yields_every_address() -> None:
    assert parse_if_inet6(IF_INET6) == {ip_address("fd00::2"), ip_address("::1")}


OWN = frozenset({ip_address("10.231.5.1"), ip_address("fd00::2")})


@pytest.mark.parametrize(
    ("host", "own"),
    [
        ("10.231.5.1", True),
        ("fd00::2", True),
        ("[fd00::2]", True),
        ("::ffff:10.231.5.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("0.0.0.0", True),
        ("localhost", True),
        ("LocalHost.", True),
        ("api.localhost", True),
        ("10.231.5.2", False),
        ("allowed.test", False),
        ("localhost.test", False),
    ],
)
def test_is_own_address(host: str, own: bool) -> None:
    assert is_own_address(host, OWN) is own
