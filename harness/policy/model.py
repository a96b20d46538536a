"""The policy model: Azure Firewall Policy's shape in frozen dataclasses.

Field names are ARM's camelCase names in snake_case (formats.md), so import from and export to
ARM, Bicep, Terraform and az CLI stay mechanical. Everything here is already validated: the
loaders in `harness.policy.load` are the only constructors users reach.
"""

from __future__ import annotations

__all__ = [
    "ALLOW",
    "APPLICATION_RULE",
    "DENY",
    "NETWORK_RULE",
    "ApplicationRule",
    "Decision",
    "NetworkRule",
    "Policy",
    "Protocol",
    "Reason",
    "Request",
    "Rule",
    "RuleCollection",
    "RuleCollectionGroup",
    "RuleRef",
]

from dataclasses import dataclass, field
from typing import Literal

Action = Literal["Allow", "Deny"]
ALLOW: Action = "Allow"
DENY: Action = "Deny"

RuleType = Literal["ApplicationRule", "NetworkRule"]
APPLICATION_RULE: RuleType = "ApplicationRule"
NETWORK_RULE: RuleType = "NetworkRule"


@dataclass(frozen=True)
class Protocol:
    """An application rule's `Http:80` / `Https:443` (and classic `Mssql:1433`)."""

    protocol_type: Literal["Http", "Https", "Mssql"]
    port: int

    def __str__(self) -> str:
        return f"{self.protocol_type}:{self.port}"


@dataclass(frozen=True)
class ApplicationRule:
    name: str
    source_addresses: tuple[str, ...] = ("*",)
    protocols: tuple[Protocol, ...] = (Protocol("Http", 80), Protocol("Https", 443))
    target_fqdns: tuple[str, ...] = ()
    fqdn_tags: tuple[str, ...] = ()
    description: str = ""
    rule_type: RuleType = field(default=APPLICATION_RULE, init=False)


@dataclass(frozen=True)
class NetworkRule:
    name: str
    ip_protocols: tuple[Literal["TCP", "UDP", "ICMP", "Any"], ...] = ("TCP",)
    source_addresses: tuple[str, ...] = ("*",)
    destination_addresses: tuple[str, ...] = ()
    destination_fqdns: tuple[str, ...] = ()
    destination_ports: tuple[str, ...] = ()
    description: str = ""
    rule_type: RuleType = field(default=NETWORK_RULE, init=False)


Rule = ApplicationRule | NetworkRule


@dataclass(frozen=True)
class RuleCollection:
    name: str
    priority: int
    action: Action
    rules: tuple[Rule, ...]

    @property
    def rule_type(self) -> RuleType | None:
        """All rules of a collection share one type (validated on load); None when empty."""
        return self.rules[0].rule_type if self.rules else None


@dataclass(frozen=True)
class RuleCollectionGroup:
    name: str
    priority: int
    rule_collections: tuple[RuleCollection, ...]


@dataclass(frozen=True)
class Policy:
    name: str
    rule_collection_groups: tuple[RuleCollectionGroup, ...] = ()
    # The policy's own FQDN tags: (tag name, fqdn patterns). Azure's own tags are unpublished.
    fqdn_tags: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Service tags the network rules use, with the prefixes `--service-tags FILE` gave them
    # (Microsoft's published Service Tags JSON): (tag name, CIDRs). A tag not listed matches
    # nothing. Not part of equality: the rules name tags, the table is the environment's.
    service_tags: tuple[tuple[str, tuple[str, ...]], ...] = field(default=(), compare=False)
    # What loading noticed and the user must hear (managed FQDN tags, service tags without
    # prefixes, DNAT collections not simulated): `file:LINE:COL: key.path: message` lines.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def service_tag(self, name: str) -> tuple[str, ...] | None:
        for tag, prefixes in self.service_tags:
            if tag.lower() == name.lower():
                return prefixes
        return None

    def fqdn_tag(self, name: str) -> tuple[str, ...] | None:
        for tag, fqdns in self.fqdn_tags:
            if tag.lower() == name.lower():
                return fqdns
        return None


# --- decisions ---------------------------------------------------------------------------

Wire = Literal["HTTP", "HTTPS", "TCP", "UDP", "ICMP"]


@dataclass(frozen=True)
class Request:
    """One connection (or HTTP request) as the firewall sees it.

    `host` is the SNI for HTTPS and the Host header (port stripped) for HTTP; None when the
    client sent none. `dst_names` are the names the firewall's own DNS answered with `dst_ip`,
    which is how network rules with destination FQDNs match (Azure needs its DNS proxy for
    those too).

    Two facts only the gateway can establish, decided by the Decider like the rest:
    `host_port` is the port written in an HTTP Host header (None when it names none), and
    `to_gateway` says the destination address or name is the gateway itself (loopback, one of
    its own addresses, `localhost`). The gateway learns the last fact a second time when it
    dials an allowed name: a name that resolves to the gateway itself is the same Request with
    `to_gateway` set, decided again.
    """

    protocol: Wire
    src_ip: str
    src_port: int
    dst_port: int
    dst_ip: str | None = None
    host: str | None = None
    dst_names: frozenset[str] = frozenset()
    host_port: int | None = None
    to_gateway: bool = False


@dataclass(frozen=True)
class RuleRef:
    policy: str
    group: str
    collection: str
    rule: str

    def as_dict(self) -> dict[str, str]:
        return {
            "policy": self.policy,
            "group": self.group,
            "collection": self.collection,
            "rule": self.rule,
        }


class Reason:
    """Every reason a decision or an event gives; tests compare them word for word.

    `AZURE`: Azure Firewall's own wording (azure-firewall.md), which its log lines carry.
    `OURS`: the harness's words for what Azure's logs have none for: a Host port unlike the
    connection's (Azure drops the request), a destination that is the gateway itself (the
    simulation's own machine, not a thing Azure has), a hook that failed (denied closed), and
    `REFUSED`, the error an upstream connection the gateway refuses to dial carries (mitmproxy
    logs it; an HTTP client sees it in the gateway's 502), followed by `: <reason>` when a
    decision refused it after the rules had allowed it.
    """

    DEFAULT_DENY = "No rule matched. Proceeding with default action"
    SNI_MISSING = "SNI TLS extension was missing."
    RULE_MATCHED = "Rule matched"

    HOST_PORT_MISMATCH = "Host header port differs from the connection's port"
    GATEWAY_ITSELF = "destination is the gateway itself"
    INTERNAL_ERROR = "internal error"
    REFUSED = "denied by the egress firewall"

    AZURE = (DEFAULT_DENY, SNI_MISSING, RULE_MATCHED)
    OURS = (HOST_PORT_MISMATCH, GATEWAY_ITSELF, INTERNAL_ERROR, REFUSED)


@dataclass(frozen=True)
class Decision:
    """What the firewall does with a request.

    `action` is what happens; `would` is what enforce mode does (they differ only in audit
    mode). `rule` is the matching rule, None for the default action.
    """

    action: Action
    would: Action
    reason: str
    rule: RuleRef | None = None
    rule_type: RuleType | None = None

    @property
    def allowed(self) -> bool:
        return self.action == ALLOW
