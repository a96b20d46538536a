"""The gateway's own addresses, so that no decision lets a client reach the gateway itself.

Read from /proc/net of the process's network namespace: the kernel's LOCAL routes
(`fib_trie`) for IPv4 and `if_inet6` for IPv6. A workload connecting to one of them, or naming a
host that resolves to one, would otherwise make the gateway dial its own listeners (or, in the
network-namespace backend, the host's) with the gateway's unfiltered uid.
"""

from __future__ import annotations

__all__ = ["is_own_address", "own_addresses", "parse_fib_trie", "parse_if_inet6"]

import ipaddress
from pathlib import Path

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_fib_trie(text: str) -> set[IpAddress]:
    """The addresses of `/proc/net/fib_trie` lines followed by a `host LOCAL` route."""
    found: set[IpAddress] = set()
    last: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|-- "):
            last = stripped[4:].strip()
        elif stripped.endswith("host LOCAL") and last is not None:
            try:
                found.add(ipaddress.ip_address(last))
            except ValueError:
                pass
    return found


def parse_if_inet6(text: str) -> set[IpAddress]:
    """The addresses of `/proc/net/if_inet6` (32 hex digits first on each line)."""
    found: set[IpAddress] = set()
    for line in text.splitlines():
        digits = line.split()[0] if line.split() else ""
        if len(digits) == 32:
            try:
                found.add(ipaddress.IPv6Address(int(digits, 16)))
            except ValueError:
                pass
    return found


def own_addresses(proc_net: Path = Path("/proc/net")) -> frozenset[IpAddress]:
    """Every address of this network namespace; an unreadable file contributes nothing."""
    found: set[IpAddress] = set()
    for name, parse in (("fib_trie", parse_fib_trie), ("if_inet6", parse_if_inet6)):
        try:
            found |= parse((proc_net / name).read_text())
        except OSError:
            continue
    return frozenset(found)


def is_own_address(host: str, own: frozenset[IpAddress]) -> bool:
    """Loopback, unspecified (0.0.0.0 dials the local host), one of `own`, or a name that
    always means this host (`localhost`, `*.localhost`, RFC 6761)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        name = host.lower().rstrip(".")
        return name == "localhost" or name.endswith(".localhost")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified or address in own
