"""The plugin with pytester and a fake runtime: collection, reports and the fixture, no Docker."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

# The package's fake runtime, stashed where the plugin looks: each host of HOSTS is fetched,
# and one whose name has "blocked" is denied (the scenarios name no policy of their own).
FAKE_RUNTIME = """
from harness.errors import ImageMissing
from harness.pytest_plugin import SANDBOX_RUN
from harness.testing import FakeRuntime


def workload(run):
    if run.spec.image.startswith("absent/"):
        raise ImageMissing(run.spec.image, "load it into the local engine")
    denied = False
    for host in run.spec.env.get("HOSTS", "").split():
        blocked = "blocked" in host
        run.connect(host, verdict="Deny" if blocked else "Allow", duration_ms=3)
        run.say(("ERROR: SSLEOFError for " if blocked else "fetched ") + host)
        denied = denied or blocked
    return 1 if denied else 0


def pytest_configure(config):
    config.stash[SANDBOX_RUN] = FakeRuntime(workload)
"""

SCENARIO = """\
name: {name}
workload:
  image: egress/python
  command: build
  env: {{HOSTS: "{hosts}"}}
expect:
  outcome: {outcome}
  denied: [{denied}]
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest(FAKE_RUNTIME)
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(pytester.path / "runs"))
    return pytester


def write_scenario(pytester: pytest.Pytester, name: str, **values: str) -> None:
    (pytester.path / f"{name}.scenario.yaml").write_text(SCENARIO.format(name=name, **values))


def test_one_item_per_scenario_and_policies_are_not_collected(project: pytest.Pytester) -> None:
    write_scenario(project, "ok", hosts="a.example.test", outcome="success", denied="")
    (project.path / "policy.yaml").write_text("allow: [a.example.test]\n")
    result = project.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["ok.scenario.yaml::ok"])
    assert "policy.yaml" not in result.stdout.str()


def test_passing_and_failing_scenarios(project: pytest.Pytester) -> None:
    write_scenario(project, "good", hosts="a.example.test", outcome="success", denied="")
    write_scenario(project, "bad", hosts="a.example.test blocked.example.test",
                   outcome="success", denied="a.example.test")  # fmt: skip
    result = project.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*bad.scenario.yaml:7:3: expect.outcome: expected success, but the workload exited with 1",
        "*bad.scenario.yaml:8:3: expect.denied: a.example.test was Allow, not Deny",
        "destinations:",
        "*blocked.example.test:443*HTTPS*Deny*(default)*",
        "last Azure log lines*",
        "*to blocked.example.test:443. Action: Deny. No rule matched*",
        "workload output, last 2 lines:",
        "*SSLEOFError for blocked.example.test",
        "recording: *runs*bad*",
    ])  # fmt: skip
    assert "Traceback" not in result.stdout.str()


def test_bad_scenario_fails_collection_with_its_line_and_no_traceback(
    project: pytest.Pytester,
) -> None:
    (project.path / "broken.scenario.yaml").write_text(
        textwrap.dedent("""\
            name: broken
            workload:
              image: egress/python
              comand: build
        """)
    )
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*broken.scenario.yaml:4:3: workload.comand: unknown key 'comand'; did you mean 'command'?*"
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_runs_get_their_own_recording_folders(project: pytest.Pytester) -> None:
    for index in range(3):
        write_scenario(project, f"s{index}", hosts="a.example.test", outcome="success", denied="")
    project.runpytest().assert_outcomes(passed=3)
    folders = sorted(path.name for path in (project.path / "runs").iterdir())
    assert len(folders) == 3
    for folder in folders:
        assert (project.path / "runs" / folder / "summary.json").is_file()
        assert (project.path / "runs" / folder / "policy.yaml").is_file()


def test_fixture_returns_denied_and_allowed_destinations(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_fixture="""
        def test_run(egress):
            result = egress.run(image="egress/python", command="build",
                                env={"HOSTS": "a.example.test blocked.example.test"},
                                allow=["a.example.test"])
            assert result.exit_code == 1 and not result.succeeded
            assert [row.host for row in result.denied] == ["blocked.example.test"]
            assert [row.host for row in result.allowed] == ["a.example.test"]
            assert any("Action: Deny" in line for line in result.azure_lines)
            assert "SSLEOFError" in result.output
            assert "a.example.test" in (result.run_dir / "policy.yaml").read_text()
        """
    )
    project.runpytest().assert_outcomes(passed=1)


LEARN_SCENARIO = """\
name: learner
workload:
  image: egress/python
  command: build
  env: {{HOSTS: "a.example.test b.example.test"}}
expect:
  outcome: failure
  learned: {{count: {count}, verified: true}}
"""


@pytest.mark.parametrize(("count", "outcome"), [(2, "passed"), (3, "failed")])
def test_learned_block_adds_a_learn_item(
    project: pytest.Pytester, count: int, outcome: str
) -> None:
    (project.path / "learner.scenario.yaml").write_text(LEARN_SCENARIO.format(count=count))
    result = project.runpytest("-v")
    result.stdout.fnmatch_lines([f"*learner.scenario.yaml::learner[[]learn[]] {outcome.upper()}*"])
    if outcome == "failed":
        result.stdout.fnmatch_lines([
            ("*learner.scenario.yaml:8:3: expect.learned.count: expected 3 destination(s), "
            "learned 2 (a.example.test, b.example.test)"),
        ])  # fmt: skip


MISSING_IMAGE_SCENARIO = """\
name: {name}
workload:
  image: absent/build:1
  command: build
{extra}"""


def test_a_missing_user_image_fails_unless_the_scenario_says_skip(
    project: pytest.Pytester,
) -> None:
    (project.path / "strict.scenario.yaml").write_text(
        MISSING_IMAGE_SCENARIO.format(name="strict", extra="")
    )
    (project.path / "optional.scenario.yaml").write_text(
        MISSING_IMAGE_SCENARIO.format(name="optional", extra="  if_image_missing: skip\n")
    )
    result = project.runpytest("-rs")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines([
        "*strict.scenario.yaml: the workload image absent/build:1 is missing; load it*",
        ("SKIPPED [[]1[]] optional.scenario.yaml:1: not run: the workload image absent/build:1 is missing; "
         "load it into the local engine (workload.if_image_missing: skip)"),
    ])  # fmt: skip


def test_scenario_items_carry_the_docker_mark_wherever_the_file_is_kept(
    project: pytest.Pytester,
) -> None:
    # No conftest of ours in this folder: the plugin marks the items itself.
    folder = project.mkdir("elsewhere")
    (folder / "learner.scenario.yaml").write_text(LEARN_SCENARIO.format(count=2))
    result = project.runpytest("--strict-markers", "-m", "not docker", "elsewhere")
    result.assert_outcomes(deselected=2)
    result = project.runpytest("--strict-markers", "-m", "docker", "--collect-only", "elsewhere")
    result.stdout.fnmatch_lines(["*2 tests collected*"])


def test_a_scenario_not_run_is_reported_at_its_name_line(project: pytest.Pytester) -> None:
    (project.path / "late.scenario.yaml").write_text(
        "# a comment first\n\n"
        + MISSING_IMAGE_SCENARIO.format(name="late", extra="  if_image_missing: skip\n")
    )
    result = project.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    # The `name:` key sits on line 3 of the file.
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] late.scenario.yaml:3: not run: *"])
