"""Scenarios (formats.md "Scenario"): a workload, the firewall it runs behind, and what is
expected of the run. Loaded with the same error quality as policies; paths are resolved from
the scenario file's folder.
"""

from __future__ import annotations

__all__ = ["Workload", "Firewall", "LearnedExpectation", "Expect", "Scenario", "load_scenario"]

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.errors import Location
from harness.policy.model import Policy

Mode = Literal["enforce", "audit"]
HttpsDeny = Literal["close", "alert", "drop"]

MODES = ("enforce", "audit")
HTTPS_DENY_STYLES = ("close", "alert", "drop")


@dataclass(frozen=True)
class Workload:
    image: str
    command: str | tuple[str, ...]
    workdir: Path | None = None
    env: tuple[tuple[str, str], ...] = ()
    trust: tuple[str, ...] = ()
    timeout: float = 600.0


@dataclass(frozen=True)
class Firewall:
    policy: Policy
    policy_source: Path | None = None  # the file it came from; None for an inline policy
    mode: Mode = "enforce"
    https_deny: HttpsDeny = "close"
    hosts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LearnedExpectation:
    count: int | None = None
    verified: bool | None = None


@dataclass(frozen=True)
class Expect:
    outcome: Literal["success", "failure"] = "success"
    denied: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    log_contains: tuple[str, ...] = ()
    output_contains: tuple[str, ...] = ()
    learned: LearnedExpectation | None = None
    # Where each expectation was written, so a failure can point at its YAML line.
    locations: tuple[tuple[str, Location], ...] = ()

    def location_of(self, key: str) -> Location | None:
        return dict(self.locations).get(key)


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    workload: Workload
    firewall: Firewall
    expect: Expect = field(default_factory=Expect)
    description: str = ""
