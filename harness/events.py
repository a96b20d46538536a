"""Events: one JSON object per connection, HTTP request, DNS query or lifecycle step
(formats.md "Recording"), and their renderings as Azure Firewall writes logs: the legacy
diagnostic `msg` line and the resource-specific AZFW* table rows. Pure.

Readiness: the gateway writes a `lifecycle` event with `reason: "ready"` once mitmdump listens
(and prints `egress-harness gateway ready`); the sandbox starts workloads only after it, because
the namespace is unfiltered until then. `reason: "stopped"` is written on a clean shutdown.
Lifecycle events carry only `v`, `ts`, `run`, `kind` and `reason`; every other field is null.

One line per connection (TLS or raw TCP, written when it closes, with its byte counts and
duration), per plain HTTP request (written with its status) and per DNS query.

The Azure line shows `would`: in audit mode the log reads as Azure's would in enforce mode,
while `action` says what the simulation let through.

Three fields are written only when they hold something (older readers never see them):
`upstream: "unreachable"` on a connection or request the firewall allowed whose upstream this
machine could not reach (its name does not resolve here, or the connection failed): not a deny,
and its Azure line stays the Allow line; `answers` (the addresses a DNS query was answered with)
and `sinkholed` (true when the name did not resolve here and the gateway answered with a
sinkhole address, or an empty AAAA answer, as Azure's DNS would have answered it) on DNS events.
"""

from __future__ import annotations

__all__ = [
    "UPSTREAM_UNREACHABLE",
    "Event",
    "azfw_record",
    "azure_line",
    "event_for_decision",
    "lifecycle_event",
    "names_by_address",
    "now_iso",
]

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from harness.policy.model import Decision, Reason, Request, RuleRef

VERSION = 1


def now_iso() -> str:
    """UTC with milliseconds and a Z, as in formats.md."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Event:
    ts: str
    run: str
    kind: str  # tls | http | tcp | udp | dns | lifecycle
    src: str | None = None
    dst: str | None = None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    action: str | None = None
    would: str | None = None
    rule: dict[str, str] | None = None
    reason: str | None = None
    bytes_up: int | None = 0
    bytes_down: int | None = 0
    duration_ms: int | None = None
    url: str | None = None
    status: int | None = None
    azure: str | None = None
    upstream: str | None = None  # "unreachable": allowed, but this machine could not reach it
    answers: list[str] | None = None  # dns: the addresses answered
    sinkholed: bool | None = None  # dns: answered with a sinkhole address (formats.md)
    v: int = VERSION

    def to_json(self) -> str:
        data = asdict(self)
        for name in WRITTEN_WHEN_SET:
            if data[name] is None:
                del data[name]
        ordered = {"v": data.pop("v"), **data}
        return json.dumps(ordered, separators=(", ", ": "))

    @classmethod
    def from_json(cls, line: str) -> Event:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        known = {field.name for field in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        _check_optional_types(values)
        return cls(**values)


# Fields left out of a JSON line while they are None (module docstring).
WRITTEN_WHEN_SET = ("upstream", "answers", "sinkholed")
UPSTREAM_UNREACHABLE = "unreachable"


def _check_optional_types(values: dict[str, Any]) -> None:
    upstream, answers, sinkholed = (values.get(name) for name in WRITTEN_WHEN_SET)
    if upstream is not None and not isinstance(upstream, str):
        raise TypeError(f"upstream must be a string, not {type(upstream).__name__}")
    if answers is not None and not (
        isinstance(answers, list) and all(isinstance(item, str) for item in answers)
    ):
        raise TypeError("answers must be a list of addresses (strings)")
    if sinkholed is not None and not isinstance(sinkholed, bool):
        raise TypeError(f"sinkholed must be true or false, not {type(sinkholed).__name__}")


def names_by_address(events: Iterable[Event]) -> dict[str, set[str]]:
    """Address -> the names DNS events answered with it: the firewall's DNS map, rebuilt from a
    recording (for network rules with `destination_fqdns`, diff and allowlist)."""
    names: dict[str, set[str]] = {}
    for event in events:
        if event.kind == "dns" and event.host and event.answers:
            name = event.host.lower().rstrip(".")
            for address in event.answers:
                names.setdefault(address, set()).add(name)
    return names


def _split(address: str | None) -> tuple[str, str]:
    if not address:
        return "", ""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), port


def _rule_tail(rule: dict[str, str] | None, with_policy: bool = True) -> str:
    if rule is None:
        return ""
    parts = []
    if with_policy and rule.get("policy"):
        parts.append(f"Policy: {rule['policy']}")
    if rule.get("group"):
        parts.append(f"Rule Collection Group: {rule['group']}")
    parts.append(f"Rule Collection: {rule['collection']}")
    parts.append(f"Rule: {rule['rule']}")
    return ". " + ". ".join(parts)


def azure_line(event: Event) -> str | None:
    """The legacy diagnostic `msg` line Azure Firewall writes for this event."""
    if event.kind == "lifecycle":
        return None
    if event.kind == "dns":
        return event.azure
    action = event.would if event.would else event.action
    if event.kind in ("tls", "http"):
        protocol = "HTTPS" if event.kind == "tls" else "HTTP "
        if event.kind == "tls" and not event.host:
            return f"HTTPS request from {event.src}. Action: {action}. Reason: {Reason.SNI_MISSING}"
        head = f"{protocol} request from {event.src} to {event.host}:{event.port}."
        if event.kind == "http" and event.url:
            head += f" Url: {event.url}."
    else:
        head = f"{event.kind.upper()} request from {event.src} to {event.dst}."
    if event.rule:
        return f"{head} Action: {action}{_rule_tail(event.rule)}"
    if event.kind in ("tcp", "udp"):
        return f"{head} Action: {action}"
    return f"{head} Action: {action}. {Reason.DEFAULT_DENY}"


def dns_line(
    src: str, query_id: int, qtype: str, name: str, transport: str, request_size: int,
    rcode: str, flags: str, response_size: int, seconds: float,
) -> str:  # fmt: skip
    """Azure's DNS proxy line: `DNS Request: IP:PORT - ID TYPE IN name. udp SIZE false 1232
    RCODE flags RESPSIZE 0.0032s`."""
    fqdn = name if name.endswith(".") else f"{name}."
    return (
        f"DNS Request: {src} - {query_id} {qtype} IN {fqdn} {transport} {request_size} false 1232 "
        f"{rcode} {flags} {response_size} {seconds:.4f}s"
    )


def lifecycle_event(run: str, what: str) -> Event:
    """`what` is "ready" or "stopped"."""
    return Event(
        ts=now_iso(), run=run, kind="lifecycle", reason=what, bytes_up=None, bytes_down=None
    )


def event_for_decision(
    request: Request,
    decision: Decision,
    *,
    policy_name: str,
    run: str = "",
    url: str | None = None,
    kind: str | None = None,
) -> Event:
    """The event (and Azure line) for a decision, before any bytes have moved."""
    rule: RuleRef | None = decision.rule
    rule_dict = rule.as_dict() if rule else None
    if rule_dict is not None and not rule_dict.get("policy"):
        rule_dict["policy"] = policy_name
    event = Event(
        ts=now_iso(),
        run=run,
        kind=kind or {"HTTPS": "tls", "HTTP": "http", "UDP": "udp"}.get(request.protocol, "tcp"),
        src=f"{request.src_ip}:{request.src_port}",
        dst=f"{request.dst_ip}:{request.dst_port}" if request.dst_ip else None,
        host=request.host,
        port=request.dst_port,
        protocol=request.protocol,
        action=decision.action,
        would=decision.would,
        rule=rule_dict,
        reason=decision.reason,
        url=url,
    )
    event.azure = azure_line(event)
    return event


# --- resource-specific tables (AZFWApplicationRule, AZFWNetworkRule, AZFWDnsQuery) ----------


def azfw_record(event: Event) -> dict[str, Any] | None:
    """The row Azure writes in resource-specific mode, as a dict with its column names."""
    src_ip, src_port = _split(event.src)
    rule = event.rule or {}
    common = {
        "TimeGenerated": event.ts,
        "SourceIp": src_ip,
        "SourcePort": int(src_port) if src_port.isdigit() else None,
    }
    if event.kind in ("tls", "http"):
        return {
            "Category": "AZFWApplicationRule",
            **common,
            "Protocol": "HTTPS" if event.kind == "tls" else "HTTP",
            "DestinationPort": event.port,
            "Fqdn": event.host or "",
            "TargetUrl": event.url or "",
            "Action": event.would or event.action,
            "Policy": rule.get("policy", ""),
            "RuleCollectionGroup": rule.get("group", ""),
            "RuleCollection": rule.get("collection", ""),
            "Rule": rule.get("rule", ""),
            "ActionReason": "" if rule else "Default Action",
            "IsTlsInspected": False,
            "WebCategory": "",
            "IsExplicitProxyRequest": False,
        }
    if event.kind in ("tcp", "udp"):
        dst_ip, dst_port = _split(event.dst)
        return {
            "Category": "AZFWNetworkRule",
            **common,
            "Protocol": event.kind.upper(),
            "DestinationIp": dst_ip,
            "DestinationPort": int(dst_port) if dst_port.isdigit() else None,
            "Action": event.would or event.action,
            "ActionReason": "" if rule else "Default Action",
            "Policy": rule.get("policy", ""),
            "RuleCollectionGroup": rule.get("group", ""),
            "RuleCollection": rule.get("collection", ""),
            "Rule": rule.get("rule", ""),
        }
    if event.kind == "dns":
        fields_ = (event.azure or "").split()
        # DNS Request: SRC - ID TYPE IN NAME PROTO SIZE DO BUF RCODE FLAGS RESP SECONDS
        try:
            return {
                "Category": "AZFWDnsQuery",
                **common,
                "QueryId": int(fields_[4]),
                "QueryType": fields_[5],
                "QueryClass": fields_[6],
                "QueryName": fields_[7],
                "Protocol": fields_[8],
                "RequestSize": int(fields_[9]),
                "DnssecOkBit": fields_[10] == "true",
                "EDNS0BufferSize": int(fields_[11]),
                "ResponseCode": fields_[12],
                "ResponseFlags": fields_[13],
                "ResponseSize": int(fields_[14]),
                "RequestDurationSecs": float(fields_[15].rstrip("s")),
                "ErrorNumber": 0,
                "ErrorMessage": "",
            }
        except (IndexError, ValueError):
            return None
    return None
