"""Derived values with a fake probe runner: what each client's answer gives, the per-process
cache, resolving a loaded scenario, and execute() writing the resolved policy. No Docker."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from harness.derive import (
    DERIVED_NAMES,
    ProbeFailed,
    Prober,
    ProbeRequest,
    ProbeResult,
    apt_mirror_urls,
    references,
    resolve_derived,
    stand_in,
    substitute,
    unknown_reference_problem,
)
from harness.errors import InputError
from harness.execute import execute
from harness.policy.fqdn import pattern_problem
from harness.scenario import load_scenario
from harness.testing import FakeRun, FakeRuntime

PIP_DEFAULT = (
    "index_url=https://index.example.test/simple\n"
    "pypi_simple_url=https://index.example.test/simple\n"
    "pypi_files_host=files.example.test\n"
)
MIRROR = "http://mirror.example.test/debian"


def apt_listing(*files: tuple[str, str]) -> str:
    return "".join(f"### egress-probe file: {name}\n{text}\n" for name, text in files)


class FakeRunner:
    """Answers each client's probe as an image configured with `answers` would."""

    def __init__(self, **answers: ProbeResult) -> None:
        self.answers = answers
        self.requests: list[ProbeRequest] = []

    def __call__(self, request: ProbeRequest) -> ProbeResult:
        self.requests.append(request)
        if request.command[0] == "python3":
            return self.answers.get("pip", ProbeResult(0, PIP_DEFAULT))
        if request.command[0] == "npm":
            return self.answers.get("npm", ProbeResult(0, "https://registry.example.test/\n"))
        listing = apt_listing(("/etc/apt/sources.list", f"deb {MIRROR} trixie main"))
        return self.answers.get("apt", ProbeResult(0, listing))


def test_references_lists_every_name_in_order_known_or_not() -> None:
    text = "(?!${pip.index_host}:)${npm.registry_hots} $HOME ${ }"
    assert references(text) == ["pip.index_host", "npm.registry_hots", " "]


def test_unknown_reference_names_the_near_miss_and_the_known_names() -> None:
    problem = unknown_reference_problem("pip.index_hots")
    assert problem is not None
    assert problem.startswith(
        "unknown derived value ${pip.index_hots} (did you mean ${pip.index_host}?)"
    )
    assert "known: ${pip.index_url}, ${pip.index_host}" in problem
    assert unknown_reference_problem("pip.files_host") is None


def test_stand_ins_are_distinct_valid_reserved_names() -> None:
    stand_ins = [stand_in(name) for name in DERIVED_NAMES]
    assert len(set(stand_ins)) == len(stand_ins)
    for name in stand_ins:
        assert pattern_problem(name) is None and pattern_problem(f"*.{name}") is None
        assert name.endswith(".test")


def test_substitute_escapes_through_the_given_function() -> None:
    values = {"pip.index_host": "index.example.test"}
    assert substitute("to ${pip.index_host}:443", values) == "to index.example.test:443"
    pattern = substitute("to ${pip.index_host}:443", values, re.escape)
    assert re.search(pattern, "to index.example.test:443")
    assert not re.search(pattern, "to indexXexample.test:443")


def test_pip_default_index_takes_the_file_host_from_pips_own_model() -> None:
    values = Prober(FakeRunner()).values("pip", "egress/python")
    assert values == {
        "pip.index_url": "https://index.example.test/simple",
        "pip.index_host": "index.example.test",
        "pip.files_host": "files.example.test",
    }


def test_pip_other_index_serves_its_own_files_and_loses_its_port() -> None:
    answer = PIP_DEFAULT.replace(
        "index_url=https://index.example.test/simple",
        "index_url=https://devpi.example.test:3141/root/pypi/+simple/",
    )
    values = Prober(FakeRunner(pip=ProbeResult(0, answer))).values("pip", "egress/python")
    assert values["pip.index_host"] == values["pip.files_host"] == "devpi.example.test"


def test_npm_registry_is_the_last_line_npm_prints() -> None:
    runner = FakeRunner(npm=ProbeResult(0, "\nhttps://npm.example.test:8443/path/\n"))
    values = Prober(runner).values("npm", "egress/node")
    assert values == {
        "npm.registry_url": "https://npm.example.test:8443/path/",
        "npm.registry_host": "npm.example.test",
    }


def test_apt_reads_one_line_and_deb822_sources_in_file_order() -> None:
    listing = apt_listing(
        ("/etc/apt/sources.list", textwrap.dedent("""\
            # deb http://commented.example.test/debian trixie main
            deb-src http://source.example.test/debian trixie main
            deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://one.example.test/debian trixie main
            """)),
        ("/etc/apt/sources.list.d/a.sources", textwrap.dedent("""\
            Types: deb
            URIs: http://off.example.test/debian
            Enabled: no

            Types: deb-src deb
            URIs: http://two.example.test/debian
             http://three.example.test/debian
            Suites: trixie
            """)),
    )  # fmt: skip
    assert apt_mirror_urls(listing) == [
        "http://one.example.test/debian",
        "http://two.example.test/debian",
        "http://three.example.test/debian",
    ]


def test_apt_mirror_is_the_first_source_with_a_host() -> None:
    listing = apt_listing(
        ("/etc/apt/sources.list", f"deb file:/srv/repo ./\ndeb {MIRROR} trixie main")
    )
    values = Prober(FakeRunner(apt=ProbeResult(0, listing))).values("apt", "egress/debian")
    assert values == {
        "apt.mirror_url": "http://mirror.example.test/debian",
        "apt.mirror_host": "mirror.example.test",
    }


def test_apt_without_sources_fails_the_probe() -> None:
    with pytest.raises(ProbeFailed, match="no enabled `deb` source"):
        Prober(FakeRunner(apt=ProbeResult(0, ""))).values("apt", "egress/debian")


def test_a_client_that_fails_gives_its_last_error_line() -> None:
    runner = FakeRunner(npm=ProbeResult(127, "", "first\nexec: npm: not found\n"))
    with pytest.raises(ProbeFailed, match=r"`npm config get registry` exited 127: exec: npm: not"):
        Prober(runner).values("npm", "egress/python")


def test_each_family_is_probed_once_per_image_env_and_workdir(tmp_path: Path) -> None:
    runner = FakeRunner()
    prober = Prober(runner)
    env = (("PIP_INDEX_URL", "https://index.example.test/simple"),)
    for _ in range(3):
        prober.values("pip", "egress/python", env, tmp_path)
    prober.values("pip", "egress/python", (), tmp_path)
    prober.values("pip", "other/python", env, tmp_path)
    prober.values("npm", "egress/python", env, tmp_path)
    assert len(runner.requests) == 4
    first = runner.requests[0]
    assert (first.image, first.env, first.workdir) == ("egress/python", env, tmp_path)
    assert first.command[:2] == ("python3", "-c")


# --- resolving a scenario ------------------------------------------------------------------

SCENARIO = """\
name: derived
workload:
  image: egress/python
  command: echo ${HOME}
firewall:
  policy:
    allow: ['${pip.index_host}', '*.${pip.files_host}']
expect:
  outcome: failure
  allowed: ['${pip.index_host}:443']
  denied: ['${pip.files_host}']
  log_contains: ['to (?!${pip.index_host}:)[^ ]+:443']
  output_contains: ['${pip.index_url}']
"""


def write(tmp_path: Path, text: str = SCENARIO, name: str = "s.scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def target_fqdns(policy) -> tuple[str, ...]:
    return policy.rule_collection_groups[0].rule_collections[0].rules[0].target_fqdns


def test_resolving_fills_in_policy_and_expectations(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path))
    resolved, policy = resolve_derived(scenario, scenario.firewall.policy, Prober(FakeRunner()))
    assert target_fqdns(policy) == ("index.example.test", "*.files.example.test")
    assert target_fqdns(resolved.firewall.policy) == target_fqdns(policy)
    assert resolved.expect.allowed == ("index.example.test:443",)
    assert resolved.expect.denied == ("files.example.test",)
    assert resolved.expect.log_contains == (r"to (?!index\.example\.test:)[^ ]+:443",)
    assert resolved.expect.output_contains == (re.escape("https://index.example.test/simple"),)
    assert resolved.workload.command == "echo ${HOME}"
    assert resolved.derived == ()


def test_resolving_a_scenario_without_derived_values_probes_nothing(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, "workload: {image: egress/python, command: 'true'}\n"))
    runner = FakeRunner()
    assert resolve_derived(scenario, scenario.firewall.policy, Prober(runner)) == (
        scenario,
        scenario.firewall.policy,
    )
    assert runner.requests == []


def test_an_image_without_the_client_stops_at_the_first_use(tmp_path: Path) -> None:
    path = write(tmp_path)
    scenario = load_scenario(path)
    runner = FakeRunner(pip=ProbeResult(1, "", "ModuleNotFoundError: No module named 'pip'"))
    with pytest.raises(InputError) as caught:
        resolve_derived(scenario, scenario.firewall.policy, Prober(runner))
    message = str(caught.value)
    assert message.startswith(f"{path}:7:13: firewall.policy.allow[0]: ${{pip.index_host}} cannot")
    assert "egress/python" in message and "No module named 'pip'" in message


def test_a_value_that_is_no_host_name_is_refused(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path))
    answer = PIP_DEFAULT.replace("index.example.test/simple\n", "-bad-.test/simple\n", 1)
    with pytest.raises(InputError, match=r"\$\{pip.index_host\} is '-bad-.test' in image"):
        resolve_derived(scenario, scenario.firewall.policy,
                        Prober(FakeRunner(pip=ProbeResult(0, answer))))  # fmt: skip


def test_a_policy_file_may_use_derived_values(tmp_path: Path) -> None:
    (tmp_path / "allow.yaml").write_text("name: p\nallow: ['${npm.registry_host}']\n")
    scenario = load_scenario(write(tmp_path, textwrap.dedent("""\
        workload: {image: egress/node, command: npm ci}
        firewall: {policy: allow.yaml}
        """)))  # fmt: skip
    assert target_fqdns(scenario.firewall.policy) == (stand_in("npm.registry_host"),)
    assert [use.name for use in scenario.derived] == ["npm.registry_host"]
    _, policy = resolve_derived(scenario, scenario.firewall.policy, Prober(FakeRunner()))
    assert target_fqdns(policy) == ("registry.example.test",)


# --- execute() -----------------------------------------------------------------------------


def test_execute_runs_behind_the_resolved_policy_and_checks_resolved_expectations(
    tmp_path: Path,
) -> None:
    seen_policies: list[str] = []

    def workload(run: FakeRun) -> int:
        seen_policies.append(run.spec.policy_path.read_text())
        run.connect("files.example.test", verdict="Deny")
        run.say("fetching https://index.example.test/simple")
        return 1

    scenario = load_scenario(write(tmp_path))
    runtime = FakeRuntime(workload, prober=Prober(FakeRunner()))
    execution = execute(scenario, runtime, run_dir=tmp_path)
    assert "index.example.test" in seen_policies[0]
    assert "derived.egress.test" not in seen_policies[0]
    # The index host was never contacted in this fake run: only that expectation fails.
    assert [str(failure).split(": ", 1)[1] for failure in execution.failures] == [
        "expect.allowed: index.example.test:443 was never contacted"
    ]
