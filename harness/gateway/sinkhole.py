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

"No answer in time" is the gateway's deadline (`egress_dns_ms`, default 3 s, under the 5 s
a glibc client waits before it asks again): mitmproxy's resolver waits far longer for a name
server that never answers, and the client would give up first. A name sinkholed so stays
unreachable for the rest of the run.

Sinkhole addresses come from 198.18.0.0/15 (RFC 2544, reserved for benchmarking, never routed on
the Internet), one per name, in the order names are first looked up.
"""

from __future__ import annotations

__all__ = ["SINKHOLE_NETWORK", "Sinkhole", "answer_as_azure", "needs_deadline", "resolve_in_time"]

import asyncio
import ipaddress
import logging
from collections.abc import Iterator

from mitmproxy import ctx, dns
from mitmproxy.proxy.mode_specs import DnsMode

logger = logging.getLogger(__name__)

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


def needs_deadline(flow: dns.DNSFlow) -> bool:
    """An A or AAAA query of DNS mode that nothing has answered yet."""
    return (
        flow.response is None
        and flow.error is None
        and isinstance(flow.client_conn.proxy_mode, DnsMode)
        and _ip_lookup(flow.request) is not None
    )


async def resolve_in_time(flow: dns.DNSFlow, seconds: float) -> None:
    """Ask mitmproxy's resolver (its hosts file and name servers, as it would) for an A or AAAA
    query (`needs_deadline`), but give up after `seconds` with SERVFAIL, which
    `answer_as_azure` then sinkholes. A resolver this cannot use is left to mitmproxy."""
    resolver = ctx.master.addons.get("dnsresolver")
    if resolver is None or not hasattr(resolver, "resolve"):
        return
    try:
        flow.response = await asyncio.wait_for(resolver.resolve(flow.request), seconds)
    except TimeoutError:
        flow.response = flow.request.fail(dns.response_codes.SERVFAIL)
    except Exception:  # mitmproxy's resolver then answers as it always does
        logger.debug("egress: the DNS deadline could not ask the resolver", exc_info=True)
