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
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from harness.policy.model import Decision, Reason, Request, RuleRef

VERSION = 1


def now_iso() -> str:
    """UTC with milliseconds and a Z, as in formats.md."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Event:
    ts: str  # "" only in an import of pasted log lines that carry no time
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
    # Set on an allowed connection whose upstream failed: `unreachable` (no route or name),
    # `refused`, `reset`, `timeout`; None when it answered (or the connection was denied).
    upstream: str | None = None
    answers: list[str] | None = None  # dns: the addresses answered
    sinkholed: bool | None = None  # dns: answered with a sinkhole address (formats.md)
    v: int = VERSION

    def to_json(self) -> str:
        # `v` first, then the fields in their order; vars() rather than asdict(), which
        # deep-copies every value. No arguments to dumps: its defaults are the separators
        # (", ", ": ") and it reuses one encoder instead of building one per call.
        data = {"v": self.v, **vars(self)}
        for name in WRITTEN_WHEN_SET:  # optional fields: lines without them read as before
            if data[name] is None:
                del data[name]
        return json.dumps(data)

    @classmethod
    def from_json(cls, line: str) -> Event:
        """An event from one line of events.jsonl; ValueError (or its JSONDecodeError) when the
        line is not an event. Every field's type is checked here, once, so readers trust them."""
        return cls.from_data(json.loads(line))

    @classmethod
    def from_data(cls, data: Any) -> Event:
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        values = {key: value for key, value in data.items() if key in _FIELD_TYPES}
        for name in ("ts", "run", "kind"):
            if name not in values:
                raise ValueError(f"the field {name!r} is missing")
        for name, value in values.items():
            problem = _field_problem(name, value)
            if problem:
                raise ValueError(f"{name}: {problem}")
        return cls(**values)


KINDS = ("tls", "http", "tcp", "udp", "dns", "lifecycle", "dnat")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?$")
_RULE_KEYS = ("policy", "group", "collection", "rule")


def _type_names(annotation: str) -> set[str]:
    """`"dict[str, str] | None"` -> {"dict", "None"}: the JSON shapes a field may hold."""
    return {part.strip().split("[")[0] for part in annotation.split("|")}


_FIELD_TYPES = {field.name: _type_names(str(field.type)) for field in fields(Event)}
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str, "int": int, "float": (int, float), "dict": dict, "list": list, "bool": bool,
}  # fmt: skip


def _field_problem(name: str, value: Any) -> str | None:
    allowed = _FIELD_TYPES[name]
    if value is None:
        return None if "None" in allowed else "must not be null"
    ok = any(
        isinstance(value, _JSON_TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))
        for kind in allowed
        if kind in _JSON_TYPES
    )
    if not ok:
        return f"expected {' or '.join(sorted(allowed - {'None'}))}, got {type(value).__name__}"
    if isinstance(value, str) and _CONTROL.search(value):
        return "has a control character"
    if name == "ts" and value and not _TIMESTAMP.match(value):
        return f"{value[:30]!r} is not an ISO 8601 time"
    if name == "kind" and value not in KINDS:
        return f"{value[:20]!r} is not one of {', '.join(KINDS)}"
    if name == "port" and not 1 <= value <= 65535:
        return f"{value} is outside 1..65535"
    if name in ("bytes_up", "bytes_down", "duration_ms") and value < 0:
        return f"{value} is negative"
    if name in ("src", "dst") and not _is_address(value):
        return f"{value[:40]!r} is not IP:PORT"
    if name == "answers" and not all(isinstance(item, str) for item in value):
        return "expected a list of addresses (strings)"
    if name == "rule" and (
        any(not isinstance(value.get(key, ""), str) for key in _RULE_KEYS)
        or not all(value.get(key) for key in ("collection", "rule"))
    ):
        return "expected {policy, group, collection, rule} with text values"
    return None


def _is_address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) <= 65535 and " " not in host


# Fields left out of a JSON line while they are None (module docstring).
WRITTEN_WHEN_SET = ("upstream", "answers", "sinkholed")
UPSTREAM_UNREACHABLE = "unreachable"
# The upstream words that mean this machine could not reach an allowed destination at all (no
# name, no route, nothing listening, no answer): learned as needed but not verified. `reset`
# is not among them: the upstream answered, then hung up.
NOT_REACHED = (UPSTREAM_UNREACHABLE, "refused", "timeout")


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
