"""The scenario format's `client:` (a command outside the firewall, formats.md "InboundClient"), the
run spec it becomes and whose exit status the outcome is. No Docker."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.execute import execute
from harness.scenario import Expect, InboundClient, Observed, check_expectations, load_scenario
from harness.testing import FakeRun, FakeRuntime

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

GOOD = """\
name: demo
upstreams:
  - name: kudu-site
    image: egress/kudu-sim
    hosts: [mysite.scm.azurewebsites.net]
workload:
  image: egress/kudu-sim
  command: kudu-sim serve --port 8080
client:
  image: egress/kudu-sim
  command: kudu-sim client --site mysite --src /app
  workdir: app
  env: {KUDU_SIM_CALL_TIMEOUT: 5}
  port: 8080
  hosts: [MySite.SCM.azurewebsites.net., other.example.test]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    path = tmp_path / "s.scenario.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_client_loads_with_normalized_hosts_and_a_resolved_workdir(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.client == InboundClient(
        image="egress/kudu-sim",
        command="kudu-sim client --site mysite --src /app",
        port=8080,
        workdir=(tmp_path / "app").resolve(),
        env=(("KUDU_SIM_CALL_TIMEOUT", "5"),),
        hosts=("mysite.scm.azurewebsites.net", "other.example.test"),
    )


def test_client_needs_only_image_command_and_port(tmp_path: Path) -> None:
    text = GOOD.split("client:")[0] + "client: {image: i, command: [run, it], port: 1}\n"
    assert load_scenario(write(tmp_path, text)).client == InboundClient("i", ("run", "it"), 1)


def test_a_scenario_without_client_has_none(tmp_path: Path) -> None:
    assert load_scenario(write(tmp_path, GOOD.split("client:")[0])).client is None


def test_a_client_host_may_also_be_an_upstreams(tmp_path: Path) -> None:
    """The Kudu case: the client reaches Kudu by the name Kudu itself calls through the
    firewall (answered there by the site's public face)."""
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.client is not None
    assert set(scenario.client.hosts) & set(scenario.upstreams[0].hosts)


@pytest.mark.parametrize(
    ("old", "new", "line", "key_path", "words"),
    [
        ("  port: 8080\n", "  ports: 8080\n", 14, "client.ports", "did you mean 'port'"),
        ("  port: 8080\n", "", 9, "client", "missing required key 'port'"),
        ("  port: 8080\n", "  port: '8080'\n", 14, "client.port", "TCP port number 1..65535"),
        ("  port: 8080\n", "  port: 0\n", 14, "client.port", "not 0"),
        ("  port: 8080\n", "  port: 70000\n", 14, "client.port", "not 70000"),
        ("  port: 8080\n", "  port: true\n", 14, "client.port", "not True"),
        ("  image: egress/kudu-sim\n  command: kudu-sim client", "  command: kudu-sim client",
         9, "client", "missing required key 'image'"),
        ("  command: kudu-sim client --site mysite --src /app\n", "", 9, "client",
         "missing required key 'command'"),
        ("  workdir: app\n", "  workdir: nowhere\n", 12, "client.workdir", "is not a folder"),
        ("{KUDU_SIM_CALL_TIMEOUT: 5}", "{1BAD: x}", 13, "client.env", "not an environment"),
        ("[MySite.SCM.azurewebsites.net., other.example.test]", "['*.azurewebsites.net']", 15,
         "client.hosts[0]", "the client resolves exact host names"),
        ("[MySite.SCM.azurewebsites.net., other.example.test]", "[a.example.test, A.example.test]",
         15, "client.hosts[1]", "listed twice"),
        ("[MySite.SCM.azurewebsites.net., other.example.test]", "a.example.test", 15,
         "client.hosts", "must be a list"),
        ("client:\n  image", "clients:\n  image", 9, "clients", "did you mean 'client'"),
    ],
)  # fmt: skip
def test_bad_client_names_line_and_key(
    tmp_path: Path, old: str, new: str, line: int, key_path: str, words: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert f"{path}:{line}:" in message, message
    assert key_path in message, message
    assert words in message, message


def test_a_client_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.split("client:")[0] + "client: [egress/kudu-sim]\n")
    with pytest.raises(InputError, match=r":9:\d+: client: client must be a mapping"):
        load_scenario(path)


def test_execute_hands_the_client_to_the_sandbox_and_judges_its_exit(tmp_path: Path) -> None:
    def deploy_fails(run: FakeRun) -> int:
        run.say("HTTP 500")
        return 1

    runtime = FakeRuntime(deploy_fails)
    scenario = load_scenario(write(tmp_path, GOOD))
    execution = execute(scenario, runtime, run_dir=tmp_path)
    specs = runtime.specs
    assert specs[0].client == scenario.client
    assert specs[0].command == "kudu-sim serve --port 8080"
    assert [str(failure) for failure in execution.failures] == [
        "expect.outcome: expected success, but the client exited with 1"
    ]


def test_without_a_client_the_outcome_is_the_workloads() -> None:
    observed = Observed(exit_code=3, timed_out=False, destinations=(), azure_lines=(), output="")
    (failure,) = check_expectations(Expect(), observed)
    assert failure.message == "expected success, but the workload exited with 3"


@pytest.mark.parametrize("name", ["kudu-deploy-denied", "kudu-deploy-allowed"])
def test_bundled_kudu_scenarios_deploy_from_outside(name: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.scenario.yaml")
    assert scenario.workload.command == "kudu-sim serve --port 8080"
    assert scenario.client is not None
    assert scenario.client.port == 8080
    assert scenario.client.hosts == ("mysite.scm.azurewebsites.net",)
    assert scenario.client.workdir == (SCENARIOS / "apps" / "kudu-site").resolve()
    assert isinstance(scenario.client.command, str)
    assert scenario.client.command.startswith("kudu-sim client --site mysite --src /app")
