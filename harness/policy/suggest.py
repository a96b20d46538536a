"""From a recorded event back to the Request the firewall decided, and the smallest rule that
allows a Request. Pure. The one place `diff`, `allowlist` and the diagnosis rebuild requests
and propose rules, so the three cannot drift apart (style.md "One of each").

    dns_names(events)                 -> address: the names DNS events answered with it
    request_from_event(event, names)  -> the Request, with `dst_names` from that map
    rule_allowing(request)            -> (destination as shown, an Allow rule the loader accepts)

A recording's DNS events carry their answers (formats.md), so a network rule with
`destination_fqdns` matches a recorded connection to an address exactly as it matched live.
"""

from __future__ import annotations

__all__ = ["dns_names", "request_from_event", "rule_allowing"]

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from harness.policy.fqdn import normalize
from harness.policy.model import ApplicationRule, NetworkRule, Protocol, Request, Rule

_PROTOCOL_OF_KIND = {"tls": "HTTPS", "http": "HTTP", "tcp": "TCP", "udp": "UDP"}


def _field(event: Any, name: str) -> Any:
    if isinstance(event, Mapping):
        return event.get(name)
    return getattr(event, name, None)


def dns_names(events: Iterable[Any]) -> dict[str, frozenset[str]]:
    """Address -> the names recorded DNS answers gave it (events or mappings of their fields)."""
    found: dict[str, set[str]] = {}
    for event in events:
        host, answers = _field(event, "host"), _field(event, "answers")
        if _field(event, "kind") != "dns" or not isinstance(host, str) or not host:
            continue
        if not isinstance(answers, list):
            continue
        for address in answers:
            if isinstance(address, str):
                found.setdefault(address, set()).add(normalize(host))
    return {address: frozenset(names) for address, names in found.items()}


def _split(address: Any) -> tuple[str | None, int | None]:
    if not isinstance(address, str) or not address:
        return None, None
    host, _, port = address.rpartition(":")
    if not host:
        return address.strip("[]"), None
    return host.strip("[]"), int(port) if port.isdigit() else None


def request_from_event(
    event: Any, names: Mapping[str, frozenset[str]] | None = None
) -> Request | None:
    """The Request a connection event (tls, http, tcp, udp) was decided on; None for others."""
    protocol = _PROTOCOL_OF_KIND.get(str(_field(event, "kind")))
    if protocol is None:
        return None
    src_ip, src_port = _split(_field(event, "src"))
    dst_ip, dst_port = _split(_field(event, "dst"))
    port = _field(event, "port")
    port = port if isinstance(port, int) and not isinstance(port, bool) else dst_port
    if port is None:
        return None
    host = _field(event, "host")
    host = host if isinstance(host, str) and host else None
    dst_names = (names or {}).get(dst_ip, frozenset()) if dst_ip else frozenset()
    return Request(protocol, src_ip or "", src_port or 0, port, dst_ip, host, dst_names)  # type: ignore[arg-type]


def _rule_name(text: str) -> str:
    return "allow-" + "".join(c if c.isalnum() or c in "-." else "-" for c in text)[:70]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def rule_allowing(request: Request) -> tuple[str, Rule]:
    """(destination as shown, the smallest Allow rule for the request). HTTP and HTTPS with a
    name: an application rule for that exact name and port. Anything else (raw TCP/UDP, HTTPS
    without SNI): a network rule for TCP (UDP for UDP) to the name DNS gave the address (an
    address that means nothing elsewhere, such as a sinkhole's, is never proposed when a name
    is known), else to the address, on the port."""
    if request.protocol in ("HTTPS", "HTTP") and request.host:
        host = normalize(request.host)
        kind = "Https" if request.protocol == "HTTPS" else "Http"
        rule = ApplicationRule(
            _rule_name(host), ("*",), (Protocol(kind, request.dst_port),), (host,)
        )
        return f"{host}:{request.dst_port}", rule
    transport = "UDP" if request.protocol == "UDP" else "TCP"
    port = (str(request.dst_port),)
    name = min(request.dst_names) if request.dst_names else None
    if name is None and request.host and not _is_ip(request.host):
        name = normalize(request.host)
    if name is not None:
        rule = NetworkRule(_rule_name(name), (transport,), ("*",), destination_fqdns=(name,),
                           destination_ports=port)  # fmt: skip
        return f"{name}:{request.dst_port}", rule
    target = request.dst_ip or "*"
    rule = NetworkRule(_rule_name(target), (transport,), ("*",), destination_addresses=(target,),
                       destination_ports=port)  # fmt: skip
    return f"{target}:{request.dst_port}", rule
