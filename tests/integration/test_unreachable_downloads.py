"""Real package managers whose install fetches from a second host that this machine cannot reach
(it does not resolve here), as the CLI reports them: npm (a package's install script downloads
its binary from a git forge's release host) and pip (a requirement fetched from a git forge over
HTTPS). Behind only the registry that host is denied by name and is `diagnosis.culprit`;
`egress learn` learns it as needed but unverified and exits 1 with a sentence naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

pytestmark = pytest.mark.docker

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
NPM_POSTINSTALL = SCENARIOS / "npm-postinstall-download.scenario.yaml"
# The release downloads of the git forge the package's install script uses.
FORGE = "github.com"


def summary_of(runs: Path) -> dict:
    [path] = sorted(runs.glob("*/summary.json"))
    return json.loads(path.read_text())


def test_run_with_only_the_registry_allowed_blames_the_download_host(
    engine, images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    # The scenario allows only the registry and expects the failure and the denial.
    assert main(["run", str(NPM_POSTINSTALL)]) == 0
    summary = summary_of(tmp_path / "runs")
    assert summary["outcome"] == "failure"
    diagnosis = summary["diagnosis"]
    assert (diagnosis["culprit"], diagnosis["cause"]) == (f"{FORGE}:443", "denied")
    assert diagnosis["denied"] == [f"{FORGE}:443"]
    assert f"target_fqdns: [{FORGE}]" in diagnosis["fix"]
    assert "not the firewall" not in capsys.readouterr().out


def test_learn_names_the_download_host_as_needed_but_unverified(
    engine, images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    allowlist = tmp_path / "allow.yaml"
    assert main(["learn", str(NPM_POSTINSTALL), "-o", str(allowlist)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    [sentence] = [line for line in captured.err.splitlines() if line.startswith("egress: ")]
    assert f"it tried {FORGE} and could not reach it from this machine" in sentence
    assert f"only because {FORGE} was allowed but unreachable from this machine" in sentence
    assert "the client said: " in sentence
    assert "would be denied" in captured.out and "HTTPS Deny" not in captured.out
    text = allowlist.read_text()
    assert f"target_fqdns: [{FORGE}]" in text
    assert "unreachable from this machine: not verified" in text


PIP_FROM_FORGE = f"""\
name: pip-from-forge
description: a requirement given as an archive URL on a git forge, fetched over HTTPS
workload:
  image: egress/python
  command: >-
    pip install --no-cache-dir --disable-pip-version-check --target /tmp/site
    "markupsafe @ https://{FORGE}/pallets/markupsafe/archive/refs/tags/3.0.2.tar.gz"
  trust: [host]
  timeout: 300
firewall:
  policy:
    allow: ['${{pip.index_host}}', '${{pip.files_host}}']
expect:
  outcome: failure
  denied: ['{FORGE}:443']
"""


def test_a_requirement_from_a_git_forge_is_denied_by_name_and_blamed(
    engine, images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    scenario = tmp_path / "pip-from-forge.scenario.yaml"
    scenario.write_text(PIP_FROM_FORGE)
    assert main(["run", str(scenario)]) == 0  # the failure and the denial, as expected
    diagnosis = summary_of(tmp_path / "runs")["diagnosis"]
    assert diagnosis["culprit"] == f"{FORGE}:443"
    assert diagnosis["client"] == "Python (pip, requests, urllib)"


# lxml's build backend (its setup.py, with STATIC_DEPS) downloads the C libraries it links
# statically from their projects' own sites while pip builds the sdist.
SDIST_BUILD_DOWNLOADS = """\
name: sdist-build-downloads
description: an sdist whose build downloads its C libraries from their own sites
workload:
  image: egress/python
  command: >-
    pip install -v --no-cache-dir --disable-pip-version-check --no-binary lxml lxml==5.3.0
    --target /tmp/site
  env: {STATIC_DEPS: "true"}
  trust: [host]
  timeout: 400
firewall:
  policy:
    allow: ['${pip.index_host}', '${pip.files_host}']
expect:
  outcome: failure
  output_contains: ['buildlibxml']
"""


def test_a_build_backend_downloading_during_an_sdist_build_is_blamed(
    engine, images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    scenario = tmp_path / "sdist-build-downloads.scenario.yaml"
    scenario.write_text(SDIST_BUILD_DOWNLOADS)
    assert main(["run", str(scenario)]) == 0
    summary = summary_of(tmp_path / "runs")
    allowed = {row["host"] for row in summary["destinations"] if row["action"] == "Allow"}
    assert len(allowed) == 2  # the index and the file host: the sdist and the build backend
    diagnosis = summary["diagnosis"]
    # The library site the build tried first: a name this machine cannot resolve, denied by it.
    [denied] = diagnosis["denied"]
    assert diagnosis["culprit"] == denied and diagnosis["cause"] == "denied"
    assert denied.split(":")[0] not in allowed
