"""The policy as Bicep: the ARM template's rule collection groups (`harness.export.arm`) as
children of an `existing` firewall policy, each depending on the one before it."""

from __future__ import annotations

__all__ = ["render_bicep"]

import re
from typing import Any

from harness.export.arm import (
    API_VERSION,
    GROUP_TYPE,
    POLICY_TYPE,
    SOURCES_PARAMETER,
    SharedSources,
    describe,
    group_properties,
)
from harness.export.prepare import Prepared, bicep_identifier

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PARENT = "parentPolicy"


def _string(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
        .replace("\t", "\\t").replace("${", "\\${")
    )  # fmt: skip
    return f"'{escaped}'"


def _value(value: Any, indent: int) -> str:
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(value, SharedSources):
        return SOURCES_PARAMETER
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        if not value:
            return "[]"
        items = "".join(f"{inner}{_value(item, indent + 1)}\n" for item in value)
        return f"[\n{items}{pad}]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for key, item in value.items():
            shown = key if _IDENTIFIER.match(key) else _string(key)
            lines.append(f"{inner}{shown}: {_value(item, indent + 1)}\n")
        return "{\n" + "".join(lines) + pad + "}"
    raise TypeError(f"cannot write {value!r} as Bicep")


def _comment(text: str) -> str:
    return "".join(f"// {line}\n" for line in text.splitlines())


def render_bicep(prepared: Prepared, policy_name_param: str = "firewallPolicyName") -> str:
    policy = prepared.policy
    out = [_comment(describe(prepared))]
    for note in prepared.notes:
        out.append(_comment(f"Note: {note}"))
    out.append("\n@description('Name of the existing Azure Firewall Policy')\n")
    out.append(f"param {policy_name_param} string = {_string(policy.name)}\n")
    taken = {PARENT.lower(), policy_name_param.lower()}
    if prepared.shared_sources is not None:
        taken.add(SOURCES_PARAMETER.lower())
        out.append(
            "\n@description('Source addresses of the rules that share them, e.g. the App Service"
            " integration subnet')\n"
        )
        out.append(
            f"param {SOURCES_PARAMETER} array = {_value(list(prepared.shared_sources), 0)}\n"
        )
    out.append(
        f"\nresource {PARENT} '{POLICY_TYPE}@{API_VERSION}' existing = {{\n"
        f"  name: {policy_name_param}\n}}\n"
    )
    previous: str | None = None
    for group in policy.rule_collection_groups:
        symbol = bicep_identifier(group.name, taken)
        out.append(f"\nresource {symbol} '{GROUP_TYPE}@{API_VERSION}' = {{\n")
        out.append(f"  parent: {PARENT}\n")
        out.append(f"  name: {_string(group.name)}\n")
        if previous is not None:
            out.append(f"  dependsOn: [\n    {previous}\n  ]\n")
        out.append(f"  properties: {_value(group_properties(group, prepared), 1)}\n}}\n")
        previous = symbol
    return "".join(out)
