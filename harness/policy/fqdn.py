"""Azure Firewall's FQDN patterns (firewall FAQ), validated here and matched here.

    pattern         matches                                   does not match
    *               everything
    *.contoso.com   a.contoso.com, a.b.contoso.com            contoso.com
    *contoso.com    contoso.com, a.contoso.com, xcontoso.com
    contoso.com     contoso.com                               a.contoso.com

Case-insensitive; a trailing dot is ignored. `www.contoso.*`, `a.*.b` and `**` are invalid.
"""

from __future__ import annotations

import re

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
        return f"{pattern!r} has '*' that is not the first character (Azure allows only a leading wildcard)"
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
