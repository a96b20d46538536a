"""`steps:` and `pull:` in scenario files (harness.scenario), and `--pull` (execute.with_pull)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import InputError
from harness.execute import with_pull
from harness.scenario import load_scenario

CHAIN = """\
name: chain
upstreams:
  - {name: cdn, image: egress/oryx-cdn-sim, hosts: [cdn.example.test], pull: never}
steps:
  - name: first
    image: egress/kudu-sim
    command: kudu-sim serve
    client: {image: egress/kudu-sim, command: kudu-sim client --src /app, port: 8080, pull: always}
  - name: second
    image: registry.example.test/build:1
    pull: always
    if_image_missing: skip
    command: [make, all]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.scenario.yaml"
    path.write_text(text)
    return path


def test_steps_load_with_their_clients_and_pull_choices(tmp_path):
    scenario = load_scenario(write(tmp_path, CHAIN))
    assert [step.name for step in scenario.steps] == ["first", "second"]
    assert scenario.steps[0].client.pull == "always"
    assert scenario.steps[1].workload.pull == "always"
    assert scenario.workload is scenario.steps[1].workload
    assert scenario.upstreams[0].pull == "never"
    assert scenario.steps[0].workload.pull == "missing"  # the default


def test_pull_flag_sets_every_image_of_the_scenario(tmp_path):
    scenario = with_pull(load_scenario(write(tmp_path, CHAIN)), "never")
    assert {s.workload.pull for s in scenario.steps} == {"never"}
    assert scenario.steps[0].client.pull == "never" and scenario.upstreams[0].pull == "never"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CHAIN.replace("pull: always\n    if", "pull: sometimes\n    if"),
         "s.scenario.yaml:11:5: steps[1].pull: pull must be one of missing, always, never, not 'sometimes'"),
        (CHAIN.replace("name: second", "name: first"), "step name 'first' is used twice"),
        (CHAIN.replace("name: second", "name: Second_Step"), "is not lower-case letters"),
        (CHAIN + "workload: {image: egress/python, command: x}\n",
         "a scenario with steps has no top-level workload"),
        ("name: x\nsteps: []\n", "steps must be a non-empty list"),
        (CHAIN.replace("command: [make, all]", "comand: [make, all]"),
         "unknown key 'comand'; did you mean 'command'?"),
    ],
)  # fmt: skip
def test_bad_steps_are_errors_at_their_line(tmp_path, text, message):
    with pytest.raises(InputError) as raised:
        load_scenario(write(tmp_path, text))
    assert message in str(raised.value)
