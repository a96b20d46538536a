"""One Azure Firewall log row, or one legacy `msg` line, as a recording `Event`. Pure.

Two shapes come in:
- a row of a resource-specific table (AZFWApplicationRule, AZFWNetworkRule, AZFWNatRule,
  AZFWDnsQuery, AZFWInternalFqdnResolutionFailure) as a mapping of column name to value;
- a legacy diagnostic `msg` line (AzureDiagnostics `msg_s`, or pasted text), kept exactly as
  written in `Event.azure`.

Nothing is invented: an empty column stays empty (None in the event); byte counts, which no
table has, are None, not 0. A value of the wrong type raises `RowError` naming the column.
The `azure` line of a table row is the legacy line Azure writes for the same columns
(`harness.events.azure_line`), or None when a column it needs is empty.

Kinds: application rows are `tls` (HTTPS) or `http`; network rows `tcp` or `udp`; DNS rows and
internal FQDN resolution failures `dns`; DNAT rows `dnat` (inbound and translated: no reader
proposes a rule for them). ICMP rows have no kind in a recording and are counted as skipped.
"""

from __future__ import annotations

__all__ = [
    "TABLES",
    "RowError",
    "Unsupported",
    "legacy_event",
    "normalize_time",
    "table_event",
]

import re
from datetime import UTC, datetime
from typing import Any

from harness.events import Event, azure_line

APPLICATION = "AZFWApplicationRule"
NETWORK = "AZFWNetworkRule"
NAT = "AZFWNatRule"
DNS = "AZFWDnsQuery"
RESOLUTION_FAILURE = "AZFWInternalFqdnResolutionFailure"
TABLES = (APPLICATION, NETWORK, NAT, DNS, RESOLUTION_FAILURE)


class RowError(ValueError):
    """A row that cannot be read: the message names the column (or says what is wrong)."""


class Unsupported(ValueError):
    """A readable row the recording has no event for (ICMP); counted, not an error."""


# --- values --------------------------------------------------------------------------------


def _text(values: dict[str, Any], column: str) -> str:
    value = values.get(column)
    if value.__class__ is str:  # the common case first: this runs ten times a row
        return value  # type: ignore[return-value]
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError(f"{column}: {value!r} is not text")
    return str(value)


def _int(values: dict[str, Any], column: str, *, low: int = 0, high: int = 65535) -> int | None:
    value = values.get(column)
    if value is None or value == "":
        return None
    if value.__class__ is int:
        number = value
    elif isinstance(value, bool):
        raise RowError(f"{column}: {value!r} is not a number")
    elif value.__class__ is str and value.isdigit():
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.strip().isdigit()
    ):
        number = int(value)
    else:
        raise RowError(f"{column}: {value!r} is not a whole number")
    if not low <= number <= high:
        raise RowError(f"{column}: {number} is outside {low}..{high}")
    return number


def _real(values: dict[str, Any], column: str) -> float | None:
    value = values.get(column)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RowError(f"{column}: {value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RowError(f"{column}: {value!r} is not a number") from None


_ISO = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?")
_PORTAL = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}),? (\d{1,2}):(\d\d):(\d\d)(?:\.(\d+))? ?([AP]M)")


_SECONDS_CACHE: dict[str, str] = {}


def normalize_time(value: Any, column: str = "TimeGenerated") -> str:
    """Cached per second of the portal's form (one regex and a few ints a second, not a row);
    see _normalize_time."""
    if value.__class__ is str and value[-1:] == "M":
        head, dot, tail = value.rpartition(".")
        if dot and len(tail) == 6 and tail[:3].isdigit():  # `12:00:01.234 PM`
            key = head + tail[3:]
            known = _SECONDS_CACHE.get(key)
            if known is None:
                known = _normalize_time(f"{head}.000{tail[3:]}", column)[:-4]
                if len(_SECONDS_CACHE) > 100000:
                    _SECONDS_CACHE.clear()
                _SECONDS_CACHE[key] = known
            return f"{known}{tail[:3]}Z"
    # az's `2026-11-28 12:00:01.234000+00:00`: its second's form is cached, its fraction read
    if value.__class__ is str and len(value) == 32 and value[19] == "." and value[26:] == "+00:00":
        second = value[:19]
        known = _SECONDS_CACHE.get(second)
        if known is not None and value[20:26].isdecimal():
            return f"{known}.{value[20:23]}Z"
        normal = _normalize_time(value, column)
        if normal == f"{value[:10]}T{value[11:19]}.{value[20:23]}Z":
            if len(_SECONDS_CACHE) > 100000:
                _SECONDS_CACHE.clear()
            _SECONDS_CACHE[second] = normal[:19]
        return normal
    return _normalize_time(value, column)


def _normalize_time(value: Any, column: str = "TimeGenerated") -> str:
    """A timestamp as formats.md writes it (UTC, milliseconds, Z), from the forms exports use:
    ISO 8601 with 0..7 fraction digits (`...T12:00:00.1234567Z`, the API), Python's
    `2026-11-28 12:00:00.123000+00:00` (az CLI), the portal's `11/28/2026, 12:00:00.123 PM`.
    Empty stays empty."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise RowError(f"{column}: {value!r} is not a time")
    text = value.strip()
    match = _ISO.fullmatch(text)
    if match:
        fraction, zone = match.group(1) or "", match.group(2)
        if zone in (None, "Z", "+00:00", "+0000", "-00:00"):
            return f"{text[:10]}T{text[11:19]}.{(fraction + '000')[:3]}Z"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise RowError(f"{column}: {value!r} is not a time") from None
        return _iso(moment)
    match = _PORTAL.fullmatch(text)
    if match:
        month, day, year, hour, minute, second, fraction, half = match.groups()
        hour24 = int(hour) % 12 + (12 if half == "PM" else 0)
        if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31 and int(hour) <= 12
                and int(minute) < 60 and int(second) < 61):  # fmt: skip
            raise RowError(f"{column}: {value!r} is not a time")
        # Written out without datetime: this runs once a row.
        return (f"{year}-{month:0>2}-{day:0>2}T{hour24:02}:{minute}:{second}."
                f"{((fraction or '') + '000')[:3]}Z")  # fmt: skip
    raise RowError(f"{column}: {value!r} is not a time (ISO 8601, or as the portal exports it)")


def _iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _action(values: dict[str, Any]) -> str | None:
    action = _text(values, "Action")
    if not action:
        return None
    normal = action.capitalize()
    if normal not in ("Allow", "Deny"):
        raise RowError(f"Action: {action!r} is not Allow or Deny")
    return normal


def _rule(values: dict[str, Any]) -> dict[str, str] | None:
    if not values.get("Rule") and not values.get("RuleCollection"):
        return None  # the default action
    rule = {
        "policy": _text(values, "Policy"),
        "group": _text(values, "RuleCollectionGroup"),
        "collection": _text(values, "RuleCollection"),
        "rule": _text(values, "Rule"),
    }
    return rule if rule["collection"] or rule["rule"] else None


def _address(ip: str, port: int | None) -> str | None:
    if not ip:
        return None
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# --- table rows ----------------------------------------------------------------------------


def table_of(values: dict[str, Any]) -> str | None:
    """The resource-specific table a row belongs to: its `Type` (or `Category`) column, else
    what its non-empty columns say (a query that projected `Type` away)."""
    for column in ("Type", "Category", "category"):
        name = values.get(column)
        if name in TABLES:
            return name  # type: ignore[return-value]
    if values.get("TranslatedIp"):
        return NAT
    if values.get("QueryName"):
        return DNS
    if values.get("ServerIp") or "Error" in values and "Fqdn" in values:
        return RESOLUTION_FAILURE
    if values.get("Fqdn") or values.get("TargetUrl") or "IsTlsInspected" in values:
        return APPLICATION
    if "DestinationIp" in values and "SourceIp" in values:
        return NETWORK
    return None


def table_event(table: str, values: dict[str, Any], run: str) -> Event:
    ts = normalize_time(values.get("TimeGenerated"))
    src = _address(_text(values, "SourceIp"), _int(values, "SourcePort"))
    if table == APPLICATION:
        return _application(values, ts, src, run)
    if table == NETWORK:
        return _network(values, ts, src, run)
    if table == NAT:
        return _nat(values, ts, src, run)
    if table == DNS:
        return _dns(values, ts, src, run)
    return _resolution_failure(values, ts, run)


def _application(values: dict[str, Any], ts: str, src: str | None, run: str) -> Event:
    protocol = _text(values, "Protocol").upper()
    if protocol not in ("HTTP", "HTTPS"):
        raise RowError(f"Protocol: {protocol or 'empty'!r} is not HTTP or HTTPS")
    action = _action(values)
    event = Event(
        ts=ts, run=run, kind="tls" if protocol == "HTTPS" else "http", src=src, dst=None,
        host=_text(values, "Fqdn") or None, port=_int(values, "DestinationPort"),
        protocol=protocol, action=action, would=action, rule=_rule(values),
        reason=_text(values, "ActionReason") or None, bytes_up=None, bytes_down=None,
        url=_text(values, "TargetUrl") or None,
    )  # fmt: skip
    event.azure = azure_line(event) if action and src else None
    return event


def _network(values: dict[str, Any], ts: str, src: str | None, run: str) -> Event:
    protocol = _text(values, "Protocol").upper()
    if protocol == "ICMP":
        raise Unsupported("ICMP")
    if protocol not in ("TCP", "UDP"):
        raise RowError(f"Protocol: {protocol or 'empty'!r} is not TCP, UDP or ICMP")
    port = _int(values, "DestinationPort")
    action = _action(values)
    event = Event(
        ts=ts, run=run, kind=protocol.lower(), src=src,
        dst=_address(_text(values, "DestinationIp"), port), host=None, port=port,
        protocol=protocol, action=action, would=action, rule=_rule(values),
        reason=_text(values, "ActionReason") or None, bytes_up=None, bytes_down=None,
    )  # fmt: skip
    event.azure = azure_line(event) if action and src and event.dst else None
    return event


def _rule_tail(rule: dict[str, str] | None) -> str:
    if not rule:
        return ""
    parts = [f"{label}: {rule[key]}" for label, key in (
        ("Policy", "policy"), ("Rule Collection Group", "group"),
        ("Rule Collection", "collection"), ("Rule", "rule"),
    ) if rule[key]]  # fmt: skip
    return ". " + ". ".join(parts) if parts else ""


def _nat(values: dict[str, Any], ts: str, src: str | None, run: str) -> Event:
    protocol = _text(values, "Protocol").upper()
    if protocol not in ("TCP", "UDP"):
        raise RowError(f"Protocol: {protocol or 'empty'!r} is not TCP or UDP")
    port = _int(values, "DestinationPort")
    dst = _address(_text(values, "DestinationIp"), port)
    translated = _address(_text(values, "TranslatedIp"), _int(values, "TranslatedPort"))
    rule = _rule(values)
    event = Event(
        ts=ts, run=run, kind="dnat", src=src, dst=dst, host=None, port=port, protocol=protocol,
        rule=rule, reason=f"DNAT'ed to {translated}" if translated else None,
        bytes_up=None, bytes_down=None,
    )  # fmt: skip
    if src and dst and translated:
        event.azure = f"{protocol} request from {src} to {dst} was DNAT'ed to {translated}"
        event.azure += _rule_tail(rule)
    return event


def _dns(values: dict[str, Any], ts: str, src: str | None, run: str) -> Event:
    name = _text(values, "QueryName")
    seconds = _real(values, "RequestDurationSecs")
    request_size = _int(values, "RequestSize", high=1 << 31)
    response_size = _int(values, "ResponseSize", high=1 << 31)
    error = _text(values, "ErrorMessage")
    event = Event(
        ts=ts, run=run, kind="dns", src=src, host=name.rstrip(".") or None,
        protocol=_text(values, "Protocol") or None,
        reason=_text(values, "ResponseCode") or error or None,
        bytes_up=request_size, bytes_down=response_size,
        duration_ms=round(seconds * 1000) if seconds is not None else None,
    )  # fmt: skip
    fields = [
        str(_int(values, "QueryId") if values.get("QueryId") not in (None, "") else ""),
        _text(values, "QueryType"), _text(values, "QueryClass"), name, event.protocol or "",
        "" if request_size is None else str(request_size), _flag(values, "DnssecOkBit"),
        str(_int(values, "EDNS0BufferSize") or "") if values.get("EDNS0BufferSize") else "",
        _text(values, "ResponseCode"), _text(values, "ResponseFlags"),
        "" if response_size is None else str(response_size),
        "" if seconds is None else f"{seconds}s",
    ]  # fmt: skip
    if src and all(fields):
        event.azure = f"DNS Request: {src} - " + " ".join(fields)
    return event


def _flag(values: dict[str, Any], column: str) -> str:
    value = values.get(column)
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower()
    raise RowError(f"{column}: {value!r} is not true or false")


def _resolution_failure(values: dict[str, Any], ts: str, run: str) -> Event:
    return Event(
        ts=ts, run=run, kind="dns", src=None,
        dst=_address(_text(values, "ServerIp"), _int(values, "ServerPort")),
        host=_text(values, "Fqdn").rstrip(".") or None, rule=_rule(values),
        reason=_text(values, "Error") or None, bytes_up=None, bytes_down=None,
    )  # fmt: skip


# --- legacy msg lines ------------------------------------------------------------------------

_APPLICATION_LINE = re.compile(
    r"(?P<protocol>HTTPS|HTTP) +request from (?P<src>\S+?)"
    r"(?: to (?P<host>[^\s:]*):(?P<port>\d+))?\."
    r"(?: Url: (?P<url>.*?)\.)? Action: (?P<action>Allow|Deny)(?P<tail>\. .*|\.)?"
)
_NETWORK_LINE = re.compile(
    r"(?P<protocol>TCP|UDP) request from (?P<src>\S+) to (?P<dst>\S+?)"
    r"(?:\. Action: (?P<action>Allow|Deny)| was DNAT'ed to (?P<translated>\S+?))(?P<tail>\. .*|\.)?"
)
_ICMP_LINE = re.compile(r"ICMP(?: Type=\d+)? request from ")
_DNS_LINE = re.compile(r"DNS Request: (?P<src>\S+) - \d+ \S+ \S+ (?P<name>\S+) (?P<proto>\S+) ")
_TAIL_RULE = re.compile(
    r"(?:\. Policy: (?P<policy>.*?))?(?:\. Rule Collection Group: (?P<group>.*?))?"
    r"\. Rule Collection: (?P<collection>.*?)\. Rule: (?P<rule>.*?)\.?"
)
_TAIL_REASON = re.compile(r"\. (?:Reason: )?(?P<reason>.+?)")


def _split_port(address: str) -> tuple[str, int | None]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return address, None
    return host, int(port)


def _tail(tail: str | None) -> tuple[dict[str, str] | None, str | None]:
    """(rule, reason) from what follows `Action: X` in a legacy line."""
    if not tail:
        return None, None
    match = _TAIL_RULE.fullmatch(tail)
    if match:
        rule = {key: match.group(key) or "" for key in ("policy", "group", "collection", "rule")}
        return rule, None
    match = _TAIL_REASON.fullmatch(tail)
    return None, match.group("reason") if match else None


def legacy_event(line: str, ts: str, run: str) -> Event:
    """The event of one legacy `msg` line; `azure` is the line exactly as given."""
    match = _APPLICATION_LINE.fullmatch(line)
    if match:
        rule, reason = _tail(match.group("tail"))
        protocol, action = match.group("protocol"), match.group("action")
        port = match.group("port")
        return Event(
            ts=ts, run=run, kind="tls" if protocol == "HTTPS" else "http", src=match.group("src"),
            host=match.group("host") or None, port=int(port) if port else None,
            protocol=protocol, action=action, would=action, rule=rule, reason=reason,
            bytes_up=None, bytes_down=None, url=match.group("url"), azure=line,
        )  # fmt: skip
    match = _NETWORK_LINE.fullmatch(line)
    if match:
        rule, reason = _tail(match.group("tail"))
        protocol, dst = match.group("protocol"), match.group("dst")
        translated, action = match.group("translated"), match.group("action")
        return Event(
            ts=ts, run=run, kind="dnat" if translated else protocol.lower(),
            src=match.group("src"), dst=dst, port=_split_port(dst)[1], protocol=protocol,
            action=action, would=action, rule=rule,
            reason=f"DNAT'ed to {translated}" if translated else reason,
            bytes_up=None, bytes_down=None, azure=line,
        )  # fmt: skip
    match = _DNS_LINE.match(line)
    if match:
        return Event(
            ts=ts, run=run, kind="dns", src=match.group("src"),
            host=match.group("name").rstrip(".") or None, protocol=match.group("proto"),
            bytes_up=None, bytes_down=None, azure=line,
        )  # fmt: skip
    if _ICMP_LINE.match(line):
        raise Unsupported("ICMP")
    raise RowError("not an Azure Firewall log line")


def is_legacy_line(line: str) -> bool:
    """Whether `line` has the shape of a legacy msg line (for format detection)."""
    return bool(
        _APPLICATION_LINE.fullmatch(line)
        or _NETWORK_LINE.fullmatch(line)
        or _DNS_LINE.match(line)
        or _ICMP_LINE.match(line)
    )
