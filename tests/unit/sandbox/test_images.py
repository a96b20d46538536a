"""Which images a command builds: only those its scenarios run, with their parents."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.sandbox.images import (
    ALL_IMAGES,
    BASE_IMAGE,
    GATEWAY_IMAGE,
    KUDU_SIM_IMAGE,
    NODE_IMAGE,
    PYTHON_IMAGE,
    UPSTREAMS_IMAGE,
    _expected_hashes,
    images_for_scenarios,
    images_needed,
)
from harness.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[3] / "scenarios"


def test_the_default_python_scenario_needs_no_node_image() -> None:
    scenario = load_scenario(SCENARIOS / "python-requirements.scenario.yaml")
    assert images_for_scenarios([scenario]) == {BASE_IMAGE, GATEWAY_IMAGE, PYTHON_IMAGE}


def test_a_simulator_brings_the_upstreams_image_it_is_built_on() -> None:
    scenario = load_scenario(SCENARIOS / "kudu-deploy-denied.scenario.yaml")
    needed = images_for_scenarios([scenario])
    assert {KUDU_SIM_IMAGE, UPSTREAMS_IMAGE, BASE_IMAGE, GATEWAY_IMAGE} <= needed
    assert NODE_IMAGE not in needed


@pytest.mark.parametrize(
    ("named", "expected"),
    [
        ([], {BASE_IMAGE, GATEWAY_IMAGE}),
        (["egress/node:latest"], {BASE_IMAGE, GATEWAY_IMAGE, NODE_IMAGE}),
        (["registry.example.test/team/app:1.2"], {BASE_IMAGE, GATEWAY_IMAGE}),
        ([KUDU_SIM_IMAGE], {BASE_IMAGE, GATEWAY_IMAGE, KUDU_SIM_IMAGE, UPSTREAMS_IMAGE}),
    ],
)
def test_images_needed_adds_parents_and_ignores_the_users_own(named, expected) -> None:
    assert images_needed(named) == expected


def test_every_project_image_has_a_recipe_hash() -> None:
    hashes = _expected_hashes()
    assert set(hashes) == set(ALL_IMAGES)
    assert len(set(hashes.values())) == len(ALL_IMAGES)
