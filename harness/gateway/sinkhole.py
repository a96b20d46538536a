"""DNS as Azure answers it (`firewall.dns: azure`): every A query gets an address.

On Azure, Azure DNS (or the firewall's DNS proxy) answers the names a build looks up, the client
connects, and the firewall denies or allows the connection by name. On a machine that cannot
resolve a name (a closed CI runner, a corporate network) the client would stop at its lookup and
the firewall would never see the destination. So a name that does not resolve here (NXDOMAIN,
SERVFAIL, or no A record) is answered with a sinkhole address of its own, and its AAAA query
with an empty answer, so that clients use IPv4 and connect. The gateway's netfilter rules send
every TCP connection to mitmproxy whatever its address, so a connection to a sinkhole address
is decided like any other (SNI, Host, network rules with `destination_fqdns` through the one name
each sinkhole address stands for); when the decision allows it, the gateway never dials the
sinkhole: the upstream is unreachable from this machine and is recorded so.

Sinkhole addresses come from 198.18.0.0/15 (RFC 2544, reserved for benchmarking, never routed on
the Internet), one per name, in the order names are first looked up.
"""

from __future__ import annotations

__all__ = ["SINKHOLE_NETWORK", "Sinkhole", "answer_as_azure"]

import ipaddress
from collections.abc import Iterator

from mitmproxy import dns

SINKHOLE_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
SINKHOLE_TTL = 60


class Sinkhole:
    """The sinkhole addresses handed out so far: one per name, both ways."""

    def __init__(self, network: ipaddress.IPv4Network = SINKHOLE_NETWORK) -> None:
        self.network = network
        self._free: Iterator[ipaddress.IPv4Address] = network.hosts()
        self._by_name: dict[str, str] = {}
        self._by_address: dict[str, str] = {}

    def address_for(self, name: str) -> str:
        key = _normal(name)
        address = self._by_name.get(key)
        if address is None:
            address = str(next(self._free))  # StopIteration past 131,070 names: fail closed
            self._by_name[key], self._by_address[address] = address, key
        return address

    def holds_name(self, name: str) -> bool:
        return _normal(name) in self._by_name

    def owns(self, host: str) -> bool:
        """`host` is an address of the sinkhole range (handed out or not)."""
        try:
            return ipaddress.ip_address(host.strip("[]")) in self.network
        except ValueError:
            return False

    def name_of(self, address: str) -> str | None:
        return self._by_address.get(address)

    def unreachable(self, host: str) -> bool:
        """`host` (a name or an address) stands for an upstream this machine cannot reach."""
        return self.owns(host) or self.holds_name(host)


def _normal(name: str) -> str:
    return name.lower().rstrip(".")


def _ip_lookup(request: dns.DNSMessage) -> dns.Question | None:
    """The question of a plain A or AAAA query, else None (left as the resolver answered)."""
    if not request.query or request.op_code != dns.op_codes.QUERY or len(request.questions) != 1:
        return None
    question = request.questions[0]
    if question.class_ != dns.classes.IN or question.type not in (dns.types.A, dns.types.AAAA):
        return None
    return question


def answer_as_azure(
    request: dns.DNSMessage, response: dns.DNSMessage | None, sinkhole: Sinkhole
) -> tuple[dns.DNSMessage | None, bool]:
    """(the answer to send, whether it was sinkholed). A real answer is kept; an A query that
    got no A record (NXDOMAIN, SERVFAIL, no data, no answer) gets the name's sinkhole address;
    an AAAA query that failed (or whose name is sinkholed) gets an empty NOERROR answer."""
    question = _ip_lookup(request)
    if question is None:
        return response, False
    answered = response is not None and response.response_code == dns.response_codes.NOERROR
    if question.type == dns.types.A:
        if answered and any(record.type == dns.types.A for record in response.answers):  # type: ignore[union-attr]
            return response, False
        address = ipaddress.IPv4Address(sinkhole.address_for(question.name))
        record = dns.ResourceRecord.A(question.name, address, ttl=SINKHOLE_TTL)
        return request.succeed([record]), True
    if answered and not sinkhole.holds_name(question.name):
        return response, False
    if answered and any(record.type == dns.types.AAAA for record in response.answers):  # type: ignore[union-attr]
        return response, False
    return request.succeed([]), True
