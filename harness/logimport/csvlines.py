"""A worker's byte range of a portal CSV read a line at a time by one regular expression, not
cell by cell by the csv module: what takes the parallel import past 200,000 rows/s.

In a portal export only three cells change between rows with the same destination, action
and rule: `TimeGenerated`, `SourceIp`, `SourcePort`. `LinePattern` is one regex that `findall`
runs over a whole range (in C), taking every line apart into those three cells and the raw
text between them. That raw text is the key of the row's template (`fast.RowRenderer`): a row
whose key was seen before costs a dict lookup and an f-string, no list of cells.

Where every line ends alike (CR LF, or LF with no CR at all), the rest of a line after the
variable cells is taken by a repeat of one excluded character, the regex engine's fastest loop
(the whole pattern checked every character of it against four), and only a rest holding a
quote is checked against the whole pattern's rule for it; as many matches as line feeds then
means every line matched on its own.

Exact by construction, or not used: a line matches only when its cells hold no `"` but pairs
that quote a whole cell, and no CR or LF, so the csv module reads it as one row with the same
cells (the line is the row's text). A range is read this way only when every line matches
(else `read_lines` returns False and the csv loop reads it): then every line is one row and
the range ended between rows. A key seen for the first time is read by the csv module from its
own line and rendered through the usual path, which also says what is wrong with a bad row.

Times: the portal's `11/28/2026, 12:00:01.234 PM` is normalized once a second (`normalize_time`
of the second, cached by its text); other forms by `normalize_time` every row.
"""

from __future__ import annotations

__all__ = ["LinePattern", "line_pattern", "read_lines"]

import csv
import re
from collections.abc import Callable

from harness.logimport.fast import TEMPLATES_KEPT, Rendered, RowRenderer, escape
from harness.logimport.rows import RowError, Unsupported, normalize_time

# A cell: unquoted without quotes, or quoted without quotes inside; never CR or LF.
_CELL = r'(?:[^,"\r\n]*+|"[^"\r\n]*+")'
# The cells after the last variable one (counted when first rendered): a quote only opens a
# cell (after a comma) and closes it (before a comma or the line's end).
_LAST = r'[^"\r\n]*+(?:(?<=,)"[^"\r\n]*+"(?=,|\r?$)[^"\r\n]*+)*+'
_PORTAL_TIME = r'"([^"\r\n]*\.)([0-9]{3})( [AP]M)"'  # the second is checked when first seen
_TIME = rf"(?:{_PORTAL_TIME}|({_CELL}))"
_IP = r"([0-9A-Fa-f.:]*+)"  # text that needs no JSON escaping; anything else: the csv loop
_PORT = r"([0-9]*+)"
_SECONDS: dict[str, str] = {}  # the portal's second (with its AM/PM) -> normalized, no millis


class LinePattern:
    """`regex.findall(range)` gives per line (before, second, millis, half, other, between,
    ip, middle, port, after): the raw cells before, between and after the variable ones (""
    where there are none), the portal's time in three pieces, or another time's raw cell."""

    def __init__(self, names: list[str], time: int, ip: int, port: int) -> None:
        self.width = len(names)
        self.present = (time > 0, ip > time + 1, port > ip + 1, port + 1 < len(names))
        before, between, middle, after = self.present

        def cells(count: int) -> str:
            return "(" + ",".join([_CELL] * count) + ")"

        text = "^" + (cells(time) + "," if before else "()") + _TIME
        text += ("," + cells(ip - time - 1) if between else "()") + "," + _IP
        text += ("," + cells(port - ip - 1) if middle else "()") + "," + _PORT
        self.regex = re.compile(text + ("," + f"({_LAST})" if after else "()") + r"\r?$",
                                re.MULTILINE)  # fmt: skip
        # Where every line ends the same way, the rest of a line is taken by a repeat of one
        # excluded character (the regex engine's fast loop: half the time of the whole
        # pattern); a quote in it is then checked against _LAST on its own (`matches`).
        tail = "," + r"([^\r]*+)" if after else "()"
        self.crlf = re.compile(text + tail + "\r\n", re.MULTILINE)
        self.lf = re.compile(text + tail.replace(r"\r", r"\n") + "\n", re.MULTILINE)
        self.last = re.compile("," + _LAST)  # the comma before: a quote may open a cell

    def matches(self, text: str) -> tuple[list[tuple], int] | None:
        """Every line of `text` taken apart as `regex` takes it, and the count of its line
        feeds; None when a line does not match (then none is taken)."""
        lines = text.count("\n")
        ended = not text or text[-1] == "\n"
        if "\r" in text:
            # Each match ends at a CR LF and holds no other CR or LF: as many matches as line
            # feeds means every line ended so (a bare CR or LF fails its line or joins two).
            fast, end = self.crlf, "\r\n"
        else:
            fast, end = self.lf, "\n"
        found = fast.findall(text if ended else text + end)
        if len(found) != lines + (0 if ended else 1):
            return None
        if self.present[3]:
            whole = self.last.fullmatch
            for match in found:
                if '"' in match[9] and whole("," + match[9]) is None:
                    return None
        return found, lines

    def line(self, match: tuple) -> str:
        """The text of the line `match` was taken from, without its line end."""
        before, second, millis, half, other, between, ip, middle, port, after = match
        has_before, has_between, has_middle, has_after = self.present
        cells = [before] if has_before else []
        cells.append(f'"{second}{millis}{half}"' if half else other)
        if has_between:
            cells.append(between)
        cells.append(ip)
        if has_middle:
            cells.append(middle)
        cells.append(port)
        if has_after:
            cells.append(after)
        return ",".join(cells)


def line_pattern(names: list[str]) -> LinePattern | None:
    """The header's pattern, or None when its columns allow none (a name twice; TimeGenerated,
    SourceIp and SourcePort missing or not in that order)."""
    if len(set(names)) != len(names):
        return None
    try:
        time, ip, port = (names.index(name) for name in ("TimeGenerated", "SourceIp", "SourcePort"))
    except ValueError:
        return None
    if not time < ip < port:
        return None
    return LinePattern(names, time, ip, port)


# A row's rendering the usual way from its cells: (Rendered, its template or None); raises
# RowError or Unsupported as the csv loop's rows do.
RenderCells = Callable[[list[str]], tuple[Rendered, object]]


def read_lines(text: str, pattern: LinePattern, renderer: RowRenderer, render_cells: RenderCells,
               result, selector, lines, totals, denied: list) -> int | None:  # fmt: skip
    """Import `text` (whole rows of a CSV from a row's start; line numbers from 1) as the csv
    loop (`_read_fast_csv`) would, each denial's (denied, ts, size) appended to `denied`; its
    count of line feeds, or None, with nothing done, when a line does not match."""
    taken = pattern.matches(text)
    if taken is None:
        return None
    matches, line_feeds = taken
    templates = renderer.templates_by_line
    if len(templates) > TEMPLATES_KEPT:
        templates.clear()
    if len(_SECONDS) > TEMPLATES_KEPT:
        _SECONDS.clear()
    get_template, get_second = templates.get, _SECONDS.get
    width = pattern.width
    out: list[str] = []
    azure: list[str] = []
    add_line, add_azure = out.append, azure.append
    first_seen, last_seen = totals.first_seen, totals.last_seen
    policies = totals.policies
    keep = selector.keep if selector is not None else None
    imported = 0
    result.rows += len(matches)
    add_denied = denied.append
    last_policy = None
    # The portal's rows come in time order: most share the previous row's second.
    last_second = last_half = known = None
    for number, match in enumerate(matches, 1):
        before, second, millis, half, other, between, ip, middle, port, after = match
        template = get_template((before, between, middle, after))
        done = None
        try:
            if template is not None and ip:
                if half:
                    if second != last_second or half != last_half:
                        found_second = get_second(second + half)
                        if found_second is None:  # a bad time raises what table_event raises
                            found_second = _SECONDS[second + half] = normalize_time(
                                f"{second}{millis}{half}")[:-4]  # fmt: skip
                        known, last_second, last_half = found_second, second, half
                    ts = ts_text = f"{known}{millis}Z"
                else:
                    ts = normalize_time(other[1:-1] if other[:1] == '"' else other)
                    ts_text = escape(ts)[1:-1]
                if not port:
                    src = ip
                elif port[0] != "0" and len(port) < 5:
                    src = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
                else:
                    value = int(port)
                    if value > 65535:
                        template = None
                    src = f"[{ip}]:{value}" if ":" in ip else f"{ip}:{value}"
            else:
                template = None
            if template is None:
                cells = next(csv.reader([pattern.line(match)]))
                if len(cells) != width:
                    _skip(result, number, f"{len(cells)} cells where the header has {width}")
                    continue
                done, made = render_cells(cells)
                if made is not None:
                    templates[(before, between, middle, after)] = made
        except Unsupported as what:
            result.unsupported[str(what)] = result.unsupported.get(str(what), 0) + 1
            continue
        except RowError as error:
            _skip(result, number, str(error))
            continue
        except csv.Error as error:  # pragma: no cover - a matched line is plain CSV
            _skip(result, number, f"not CSV: {error}")
            continue
        if done is None:
            (head, middle_text, tail, end, azure_head, azure_tail, action, policy,
             found) = template  # type: ignore[misc]  # fmt: skip
            if keep is not None and not keep(ts, action, src):
                result.filtered += 1
                continue
            if end is None:
                add_line(f"{head}{ts_text}{middle_text}{src}{tail}")
            else:
                add_line(f"{head}{ts_text}{middle_text}{src}{tail}{src}{end}")
                add_azure(f"{azure_head}{src}{azure_tail}")
            size = 0
        else:
            ts, src, action, policy, found, size = (done.ts, done.src, done.action, done.policy,
                                                    done.denied, done.size)  # fmt: skip
            if keep is not None and not keep(ts, action, src):
                result.filtered += 1
                continue
            add_line(done.line)
            if done.azure:
                add_azure(done.azure)
        imported += 1
        if ts:
            if not first_seen or ts < first_seen:
                first_seen = ts
            if ts > last_seen:  # noqa: PLR1730 - no call of max() per row on the hot path
                last_seen = ts
        if policy and policy != last_policy:
            policies.setdefault(policy, None)
            last_policy = policy
        if action == "Deny":
            add_denied((found, ts, size))
        if imported % 4000 == 0:
            lines.write_lines(out, azure)
            out.clear()
            azure.clear()
    lines.write_lines(out, azure)
    totals.first_seen, totals.last_seen = first_seen, last_seen
    result.imported += imported
    totals.events += imported
    return line_feeds


def _skip(result, line: int, message: str) -> None:
    from harness.logimport import _skip as skip

    skip(result, line, message)
