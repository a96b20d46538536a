"""Azure Firewall's FQDN patterns (firewall FAQ), validated here and matched here.

    pattern         matches                                   does not match
    *               everything
    *.contoso.com   a.contoso.com, a.b.contoso.com            contoso.com
    *contoso.com    contoso.com, a.contoso.com, xcontoso.com
    contoso.com     contoso.com                               a.contoso.com

Case-insensitive; a trailing dot is ignored. `www.contoso.*`, `a.*.b` and `**` are invalid.

`matches` decides one pattern against one name; `pattern_covers` says whether one pattern
matches every name another one matches (for `harness.policy.coverage`). `FqdnIndex` holds many patterns and answers,
for a name, which of them match without scanning them all: exact names and `*.x` keys are dict
lookups over the name and its label suffixes, `*x` keys are dict lookups over the name's
character suffixes (only the lengths some pattern has), `*` is a list that always matches.
A pattern that `pattern_problem` rejects is matched literally (so it matches nothing real).
"""

from __future__ import annotations

__all__ = [
    "FqdnIndex",
    "exact_name_problem",
    "matches",
    "normalize",
    "pattern_covers",
    "pattern_problem",
]

import bisect
import re
from collections.abc import Iterable
from operator import itemgetter
from typing import Literal

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")
_LABEL_TAIL = re.compile(r"^[a-z0-9_-]*[a-z0-9_]$")


def normalize(name: str) -> str:
    """The form names are compared in: lower case, no trailing dot."""
    return name.strip().lower().rstrip(".")


def pattern_problem(pattern: str) -> str | None:
    """What is wrong with an application rule's FQDN pattern, or None when it is valid."""
    text = normalize(pattern)
    if not text:
        return "an empty FQDN"
    if text == "*":
        return None
    if text.count("*") > 1:
        return f"{pattern!r} has more than one '*'"
    if "*" in text and not text.startswith("*"):
        return (
            f"{pattern!r} has '*' that is not the first character"
            " (Azure allows only a leading wildcard)"
        )
    plain_suffix = text.startswith("*") and not text.startswith("*.")
    rest = text[2:] if text.startswith("*.") else text.lstrip("*")
    if not rest:
        return f"{pattern!r} has nothing after the wildcard"
    labels = rest.split(".")
    for index, label in enumerate(labels):
        if not label:
            return f"{pattern!r} has an empty label"
        # `*-cdn.example` is a plain suffix match, so its first label may be a label's tail.
        if plain_suffix and index == 0 and _LABEL_TAIL.match(label):
            continue
        if not _LABEL.match(label):
            return f"{pattern!r} has an invalid label {label!r}"
    return None


def exact_name_problem(name: str) -> str | None:
    """What is wrong with a name that must be exact (network rules' destination_fqdns)."""
    if "*" in name:
        return f"{name!r} has a wildcard; network rules take exact names only"
    return pattern_problem(name)


PatternKind = Literal["everything", "subdomain", "suffix", "exact"]


def _classify(pattern: str) -> tuple[PatternKind, str]:
    """A pattern's kind and key: `*.x` -> ("subdomain", "x"), `*x` -> ("suffix", "x")."""
    text = normalize(pattern)
    if text == "*":
        return "everything", ""
    if text.startswith("*."):
        return "subdomain", text[2:]
    if text.startswith("*"):
        return "suffix", text[1:]
    return "exact", text


def matches(pattern: str, name: str) -> bool:
    """Whether Azure Firewall's FQDN `pattern` matches the host `name` (table above)."""
    kind, key = _classify(pattern)
    text = normalize(name)
    if kind == "everything":
        return True
    if kind == "subdomain":
        return text.endswith("." + key)
    if kind == "suffix":
        return text.endswith(key)
    return text == key


def pattern_covers(outer: str, inner: str) -> bool:
    """Whether `outer` matches every name `inner` matches (both patterns, table above)."""
    outer_kind, outer_key = _classify(outer)
    inner_kind, inner_key = _classify(inner)
    if outer_kind == "everything":
        return True
    if inner_kind == "everything":
        return False
    if outer_kind == "exact":
        return inner_kind == "exact" and inner_key == outer_key
    # The names `inner` matches all end with this; `*.x`'s also have a label before it.
    tail = "." + inner_key if inner_kind == "subdomain" else inner_key
    if outer_kind == "subdomain":
        # `*.k` needs a dot before k: `*ak` matches `ak` itself, which `*.k` does not.
        if inner_kind == "suffix":
            return inner_key.endswith("." + outer_key)
        return tail.endswith("." + outer_key)
    return tail.endswith(outer_key)  # `*k`: a plain suffix


_by_sequence = itemgetter(0)


class FqdnIndex[Payload]:
    """Many (pattern, payload) pairs; `matching(name)` gives the payloads of every pattern that
    matches, in insertion order, equal to `[p for pat, p in pairs if matches(pat, name)]`.

    The cost of a lookup grows with the name's length, not with the number of patterns.
    """

    def __init__(self, pairs: Iterable[tuple[str, Payload]] = ()) -> None:
        self._count = 0
        # Values are (insertion sequence number, payload) lists, in insertion order.
        self._exact: dict[str, list[tuple[int, Payload]]] = {}
        self._subdomain: dict[str, list[tuple[int, Payload]]] = {}
        self._suffix: dict[str, list[tuple[int, Payload]]] = {}
        self._suffix_lengths: list[int] = []  # sorted, distinct
        self._everything: list[tuple[int, Payload]] = []
        for pattern, payload in pairs:
            self.add(pattern, payload)

    def __len__(self) -> int:
        return self._count

    def add(self, pattern: str, payload: Payload) -> None:
        kind, key = _classify(pattern)
        entry = (self._count, payload)
        self._count += 1
        if kind == "everything":
            self._everything.append(entry)
        elif kind == "subdomain":
            self._subdomain.setdefault(key, []).append(entry)
        elif kind == "suffix":
            if key not in self._suffix:
                position = bisect.bisect_left(self._suffix_lengths, len(key))
                if position == len(self._suffix_lengths) or (
                    self._suffix_lengths[position] != len(key)
                ):
                    self._suffix_lengths.insert(position, len(key))
            self._suffix.setdefault(key, []).append(entry)
        else:
            self._exact.setdefault(key, []).append(entry)

    def matching(self, name: str) -> list[Payload]:
        """Payloads of all patterns matching `name`, in the order they were added."""
        return self.matching_normalized(normalize(name))

    def matching_normalized(self, text: str) -> list[Payload]:
        """`matching` for a name already passed through `normalize` (saves the hot path a copy)."""
        found: list[list[tuple[int, Payload]]] = []
        hit = self._exact.get(text)
        if hit:
            found.append(hit)
        subdomain = self._subdomain
        if subdomain:
            dot = text.find(".")
            while dot >= 0:
                hit = subdomain.get(text[dot + 1 :])
                if hit:
                    found.append(hit)
                dot = text.find(".", dot + 1)
        suffix = self._suffix
        if suffix:
            length = len(text)
            for key_length in self._suffix_lengths:
                if key_length > length:
                    break
                hit = suffix.get(text[length - key_length :])
                if hit:
                    found.append(hit)
        if self._everything:
            found.append(self._everything)
        if not found:
            return []
        if len(found) == 1:
            return [payload for _, payload in found[0]]
        merged = [entry for entries in found for entry in entries]
        merged.sort(key=_by_sequence)
        return [payload for _, payload in merged]

    def first(self, name: str) -> Payload | None:
        """The payload of the earliest-added pattern matching `name`, or None."""
        found = self.matching(name)
        return found[0] if found else None
