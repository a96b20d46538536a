"""Scenario files here (`*.scenario.yaml`) are collected by the egress pytest plugin, which
pyproject's `pytest11` entry point loads; policies and apps beside them are never collected.
Every scenario runs real containers, so each item carries the `docker` mark
(`pytest -m "not docker"` leaves them out)."""

from __future__ import annotations

import pytest

from harness.pytest_plugin import LearnItem, ScenarioItem


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, ScenarioItem | LearnItem):
            item.add_marker(pytest.mark.docker)
