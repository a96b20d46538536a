"""The common rows (application and network table rows with a source address) rendered without
an `Event` each: what one import of a large export spends its time on.

A row's event is its time, its source and what all its other columns say (the destination, the
action, the rule). The last part repeats across an export (a deployment's retries, a build's
few hosts), so it is rendered once, through the Event path itself (`table_event`, `to_json`,
`azure_line`), into a template with marks where the time and the source go; each later row
with the same columns fills in its own time and source. A template is kept only when it
renders its first row exactly as the Event path does (checked as it is made); every other
row (legacy lines, DNS, DNAT, unusual values) goes through the Event path as before.

    RowRenderer(run).render(values, strings) -> Rendered | None   (None: use the Event path)
    identity(event) -> the denied destination `allowlist.candidates` would make of it
    DeniedTally: `allowlist.candidates` folded a batch at a time, as `_DeniedFold` does,
                 from (identity, ts) pairs instead of events.
"""

from __future__ import annotations

__all__ = ["DeniedTally", "Rendered", "RowRenderer", "escape", "identity", "source"]

import copy
import json
import operator
from typing import Any, NamedTuple

from harness.events import Event, azure_line
from harness.logimport.rows import APPLICATION, NETWORK, TABLES, normalize_time, table_event

# The escaping json.dumps applies to every str (ensure_ascii), so a template's pieces and a
# row's values join into the very line dumps would write.
escape = _escape = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_TS_MARK = "\ue000ts\ue001"
_SRC_MARK = "\ue000src\ue001"
_TS_ESCAPED = _escape(_TS_MARK)[1:-1]
_SRC_ESCAPED = _escape(_SRC_MARK)[1:-1]
# Every column an application or network row's event reads, apart from its time and source.
KEY_COLUMNS = (
    "Protocol", "Action", "Fqdn", "DestinationPort", "TargetUrl", "DestinationIp", "Policy",
    "RuleCollectionGroup", "RuleCollection", "Rule", "ActionReason",
)  # fmt: skip
TEMPLATES_KEPT = 50000  # then forgotten and made again: memory stays bounded


class Rendered(NamedTuple):
    line: str  # the events.jsonl line, without its newline
    azure: str | None  # the azure.log line
    ts: str
    action: str | None  # what the firewall did (would, else action)
    src: str | None
    policy: str | None  # the policy a rule named
    denied: tuple | None  # identity() of a denial
    size: int = 0  # bytes up and down (none in a table row)


class _Template(NamedTuple):
    # The events.jsonl line is head + time + middle + source + tail, and when there is an azure
    # line, + source + end (the source again, inside it); escaped as json.dumps escapes. An
    # f-string of the pieces, not str.format: several times faster on a line this long.
    head: str
    middle: str
    tail: str
    end: str | None
    azure_head: str  # the azure line is azure_head + source + azure_tail
    azure_tail: str
    action: str | None
    policy: str | None
    denied: tuple | None

    def render(self, ts: str, src: str) -> Rendered:
        escaped = _escape(src)[1:-1]
        if self.end is None:
            return Rendered(f"{self.head}{_escape(ts)[1:-1]}{self.middle}{escaped}{self.tail}",
                            None, ts, self.action, src, self.policy, self.denied)  # fmt: skip
        return Rendered(
            f"{self.head}{_escape(ts)[1:-1]}{self.middle}{escaped}{self.tail}{escaped}{self.end}",
            f"{self.azure_head}{src}{self.azure_tail}", ts, self.action, src, self.policy,
            self.denied,
        )  # fmt: skip


def _text_or_none(values: tuple) -> bool:
    return all(value is None or value.__class__ is str for value in values)


def source(ip: Any, port: Any) -> str | None:
    """`_address(SourceIp, SourcePort)` of table_event for the plain cases (None: let the Event
    path read the row)."""
    if ip.__class__ is not str or not ip:
        return None
    if port is None or port == "":
        return ip
    if port.__class__ is str and port.isdigit() and port.isascii():
        number = int(port)
    elif port.__class__ is int:
        number = port
    else:
        return None
    if number > 65535 or number < 0:
        return None
    return f"[{ip}]:{number}" if ":" in ip else f"{ip}:{number}"


_TABLE_COLUMNS = ("Type", "Category", "category", "msg_s")
_RAW_COLUMNS = (*_TABLE_COLUMNS, *KEY_COLUMNS)


class RowRenderer:
    def __init__(self, run: str, names: list[str] | None = None) -> None:
        """`names`: a CSV's columns, for templates_by_cells and render_cells."""
        self.run = run
        self._templates: dict[tuple, _Template | None] = {}
        self._by_raw: dict[tuple, _Template] = {}  # _RAW_COLUMNS' values as given -> template
        self.templates_by_cells: dict[Any, _Template] = {}  # cells_key(cells) -> template
        self.templates_by_line: dict[tuple, _Template] = {}  # csvlines' raw key -> template
        self.names = names or []
        where = {name: index for index, name in enumerate(self.names)}  # the last, as dict(zip)
        shown = [where[name] for name in (*_TABLE_COLUMNS, *KEY_COLUMNS) if name in where]
        self.cells_key = operator.itemgetter(*shown) if shown else None
        # (TimeGenerated, SourceIp, SourcePort) of a CSV row, when it has them all (the portal's
        # export does); else None, and every row goes through render_cells.
        self.time_and_source = operator.itemgetter(
            where["TimeGenerated"], where["SourceIp"], where["SourcePort"]
        ) if self.cells_key and {"TimeGenerated", "SourceIp", "SourcePort"} <= where.keys(
        ) else None  # fmt: skip

    def render_cells(self, cells: list[str]) -> tuple[Rendered | None, dict[str, str]]:
        """A CSV row rendered (or None: the Event path), and its columns as a dict."""
        values = dict(zip(self.names, cells))
        rendered, template = self._render(values, False)
        if template is not None and self.cells_key is not None:
            if len(self.templates_by_cells) >= TEMPLATES_KEPT:
                self.templates_by_cells.clear()
            self.templates_by_cells[self.cells_key(cells)] = template
        return rendered, values

    def render(self, values: dict[str, Any], strings: bool = False) -> Rendered | None:
        """The row's rendering, or None when the Event path must read it. Raises what the
        Event path raises for the row (RowError, Unsupported) when a template is made from it."""
        return self._render(values, strings)[0]

    def _render(self, values: dict[str, Any], strings: bool,
                ) -> tuple[Rendered | None, _Template | None]:  # fmt: skip
        get = values.get
        # The columns as they came (az's "None" left as it is) find a template made before, and
        # with it everything the checks below found from them: only time and source are read.
        raw: tuple | None = (strings, *map(get, _RAW_COLUMNS))
        try:
            template = self._by_raw.get(raw)  # type: ignore[arg-type]
        except TypeError:  # a JSON list or object in a column: no template is made of it
            template = raw = None
        if template is not None:
            ip, port, stamp = get("SourceIp"), get("SourcePort"), get("TimeGenerated")
            if strings:
                ip, port, stamp = (None if value == "None" else value
                                   for value in (ip, port, stamp))  # fmt: skip
            ts = normalize_time(stamp)
            src = source(ip, port)
            if src is None:
                return None, None
            return template.render(ts, src), template
        rendered, template = self._render_columns(values, strings)
        if template is not None and raw is not None:
            if len(self._by_raw) >= TEMPLATES_KEPT:
                self._by_raw.clear()
            self._by_raw[raw] = template
        return rendered, template

    def _render_columns(self, values: dict[str, Any], strings: bool,
                        ) -> tuple[Rendered | None, _Template | None]:  # fmt: skip
        get = values.get
        table = get("Type")
        if table not in TABLES:
            table = get("Category")
            if table not in TABLES:
                table = get("category")
        if table != APPLICATION and table != NETWORK:
            return None, None
        message = get("msg_s")
        ip, port, stamp = get("SourceIp"), get("SourcePort"), get("TimeGenerated")
        key = (table, *map(get, KEY_COLUMNS))
        if strings:  # az's str() of every value: "None" is empty
            if message == "None":
                message = None
            ip, port, stamp = (None if value == "None" else value for value in (ip, port, stamp))
            key = tuple([None if value == "None" else value for value in key])
        if message or not _text_or_none(key):
            return None, None
        ts = normalize_time(stamp)  # first, as table_event does: the same error for a bad time
        src = source(ip, port)
        if src is None:
            return None, None
        template = self._templates.get(key)
        if template is None:
            if key in self._templates:
                return None, None  # its template did not render exactly: the Event path
            return self._make(key, table, values, strings, ts, src)
        return template.render(ts, src), template

    def _make(self, key: tuple, table: str, values: dict[str, Any], strings: bool, ts: str,
              src: str) -> tuple[Rendered | None, _Template | None]:  # fmt: skip
        if strings:
            values = {name: None if value == "None" else value for name, value in values.items()}
        event = table_event(table, values, self.run)  # raises what the Event path raises
        if len(self._templates) >= TEMPLATES_KEPT:
            self._templates.clear()
        template = _template(event)
        self._templates[key] = template
        if template is None:
            return None, None
        rendered = template.render(ts, src)
        if (event.ts, event.src) != (ts, src) or (rendered.line, rendered.azure) != (
            event.to_json(), event.azure):  # fmt: skip
            self._templates[key] = None
            return None, None
        return rendered, template


def _template(event: Event) -> _Template | None:
    """The event with marks for its time and source, or None when its text holds a mark."""
    marked = copy.copy(event)
    marked.ts, marked.src = _TS_MARK, _SRC_MARK
    azure = None
    if event.azure is not None:
        azure = azure_line(marked)
        if azure is None or azure.count(_SRC_MARK) != 1:
            return None
        marked.azure = azure
    line = marked.to_json()
    if line.count(_TS_ESCAPED) != 1 or line.count(_SRC_ESCAPED) != (2 if azure else 1):
        return None
    if line.index(_SRC_ESCAPED) < line.index(_TS_ESCAPED):
        return None  # not the order Event writes them in
    head, rest = line.split(_TS_ESCAPED)
    middle, tail, *end = rest.split(_SRC_ESCAPED)
    azure_head, azure_tail = azure.split(_SRC_MARK) if azure is not None else ("", "")
    action = event.would or event.action
    return _Template(
        head, middle, tail, end[0] if end else None, azure_head, azure_tail, action,
        event.rule.get("policy") if event.rule else None,
        identity(event) if action == "Deny" else None,
    )  # fmt: skip


_IDENTITIES: dict[tuple, tuple | None] = {}


def identity(event: Event) -> tuple | None:
    """(host, network, protocol) of the candidate `allowlist.candidates` makes of this one
    event, or None when it makes none; asked of the suggester itself, once per destination."""
    from harness.allowlist import candidates

    key = (event.kind, event.host, event.port, event.dst)
    if key in _IDENTITIES:
        return _IDENTITIES[key]
    alone = Event(ts="", run="", kind=event.kind, host=event.host, port=event.port,
                  dst=event.dst, bytes_up=None, bytes_down=None)  # fmt: skip
    found = candidates([alone])
    result = None
    if found:
        (candidate,) = found
        (protocol,) = candidate.protocols
        result = (candidate.host, candidate.network, protocol)
    if len(_IDENTITIES) > TEMPLATES_KEPT:
        _IDENTITIES.clear()
    _IDENTITIES[key] = result
    return result


def summarize(denials: list[tuple]) -> list[tuple]:
    """`DeniedTally.add` arguments in order, folded per host as `add` folds them into one batch:
    (host, network of its first, protocols, connections, first time, bytes), hosts in the order
    they first come (a batch's order)."""
    hosts: dict[str, list] = {}
    for denied, ts, size in denials:
        if denied is None:
            continue
        host, network, protocol = denied
        known = hosts.get(host)
        if known is None:
            hosts[host] = [host, network, {protocol}, 1, ts, size]
            continue
        known[2].add(protocol)
        known[3] += 1
        known[4] = min(known[4], ts)
        known[5] += size
    return [tuple(known) for known in hosts.values()]


class DeniedTally:
    """What `_DeniedFold` makes of the denied events (batches of `every` through
    `allowlist.candidates`, merged by (network, host)), from each denial's identity and time:
    the same grouping, order and counts, without keeping an event per denial."""

    def __init__(self, every: int) -> None:
        from harness.allowlist import Candidate

        self._candidate = Candidate
        self._every = every
        self._batch: dict[str, Any] = {}  # host -> Candidate, as candidates() builds them
        self._count = 0
        self._found: dict[tuple[bool, str], Any] = {}

    def add(self, denied: tuple | None, ts: str, size: int = 0) -> None:
        """One denied event: its identity (None: no candidate), time and bytes."""
        if denied is not None:
            host, network, protocol = denied
            candidate = self._batch.get(host)
            if candidate is None:
                candidate = self._batch[host] = self._candidate(host, first_seen=ts,
                                                                network=network)  # fmt: skip
            candidate.protocols.add(protocol)
            candidate.connections += 1
            candidate.bytes_total += size
            candidate.first_seen = min(candidate.first_seen, ts)
        self._count += 1
        if self._count >= self._every:
            self._fold()

    @property
    def room(self) -> int:
        """Denials that the batch takes before it ends."""
        return self._every - self._count

    def add_summary(self, count: int, hosts: list[tuple]) -> bool:
        """`count` denials at once, from `summarize`'s hosts: what `add` of each makes, when they
        do not pass the end of the batch (else False, nothing added: split them at `room`)."""
        if self._count + count > self._every:
            return False
        batch = self._batch
        for host, network, protocols, connections, first_seen, size in hosts:
            candidate = batch.get(host)
            if candidate is None:
                candidate = batch[host] = self._candidate(host, first_seen=first_seen,
                                                          network=network)  # fmt: skip
            candidate.protocols |= protocols
            candidate.connections += connections
            candidate.bytes_total += size
            candidate.first_seen = min(candidate.first_seen, first_seen)
        self._count += count
        if self._count >= self._every:
            self._fold()
        return True

    def _fold(self) -> None:
        for candidate in sorted(self._batch.values(), key=lambda item: item.first_seen):
            key = (candidate.network, candidate.host)
            known = self._found.get(key)
            if known is None:
                self._found[key] = candidate
                continue
            known.protocols |= candidate.protocols
            known.connections += candidate.connections
            known.first_seen = min(known.first_seen, candidate.first_seen)
        self._batch = {}
        self._count = 0

    def result(self) -> list:
        self._fold()
        return sorted(self._found.values(), key=lambda candidate: candidate.first_seen)
