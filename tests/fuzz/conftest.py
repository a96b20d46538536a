"""The fuzz suite's settings and tally. Each property feeds generated or mutated input to one
reader and sorts the outcome: a value, one of our errors (HarnessError), or a crash (anything
else, which fails the test with hypothesis's shrunk example). The terminal summary gives the
counts, so a run's figures can be quoted.

Bounded for CI: EGRESS_FUZZ_EXAMPLES (default 120) examples per property, no example database
(no files left in the checkout), and every single input must finish within INPUT_SECONDS.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from harness.errors import HarnessError

INPUT_SECONDS = 5.0

settings.register_profile(
    "egress-fuzz",
    max_examples=int(os.environ.get("EGRESS_FUZZ_EXAMPLES", "120")),
    deadline=None,  # timings are noisy on a shared machine; INPUT_SECONDS is the bound
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("egress-fuzz")

TALLY: Counter[str] = Counter()


def outcome_of(read: Callable[[], Any]) -> str:
    """Run one reader on one input: "value" or "error"; a crash propagates. Time-bounded."""
    started = time.monotonic()
    try:
        read()
        result = "value"
    except HarnessError:
        result = "error"
    except BaseException:
        TALLY["crash"] += 1
        TALLY["inputs"] += 1
        raise
    finally:
        elapsed = time.monotonic() - started
    TALLY["inputs"] += 1
    TALLY[result] += 1
    assert elapsed < INPUT_SECONDS, f"one input took {elapsed:.1f} s (bound {INPUT_SECONDS} s)"
    return result


@pytest.fixture(scope="session")
def outcome() -> Callable[[Callable[[], Any]], str]:
    return outcome_of


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY["inputs"]:
        terminalreporter.write_line(
            f"fuzz: {TALLY['inputs']} inputs tried, {TALLY['value']} read as values,"
            f" {TALLY['error']} refused with our error, {TALLY['crash']} crashes"
        )
