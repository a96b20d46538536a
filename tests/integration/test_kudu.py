"""Kudu calling its own SCM site through the firewall (docs/kudu.md): the simulated Kudu
behind the gateway, its site's public face as an upstream, and the run's test CA."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from docker.errors import NotFound

from harness.errors import EnvironmentProblem
from harness.sandbox import RunResult, RunSpec, leftovers, run
from harness.sandbox.images import KUDU_SIM_IMAGE, UPSTREAMS_IMAGE
from harness.sandbox.upstreams import UPSTREAMS_DIR, read_requests
from harness.scenario import Upstream

pytestmark = pytest.mark.docker

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
APP = SCENARIOS / "apps" / "kudu-site"
SITE = Upstream(
    "kudu-site", KUDU_SIM_IMAGE, ("mysite.scm.azurewebsites.net", "mysite.azurewebsites.net")
)
KUDU_500 = {
    "Message": "An error has occurred.",
    "ExceptionMessage": "An error occurred while sending the request.",
    "ExceptionType": "System.Net.Http.HttpRequestException",
    "StackTrace": None,
}
DEFAULT_DENY = re.compile(
    r"^HTTPS request from [0-9.]+:\d+ to mysite\.scm\.azurewebsites\.net:443\. Action: Deny\. "
    r"No rule matched\. Proceeding with default action$"
)


def deploy(run_dir: Path, addon_root: Path, **overrides) -> tuple[RunResult, list[str]]:
    values = {
        "run_dir": run_dir,
        "image": KUDU_SIM_IMAGE,
        "command": "kudu-sim deploy --src /app --site mysite",
        "workdir": APP,
        "timeout": 60,
        "addon_root": addon_root,
        "upstreams": [SITE],
    }
    values.update(overrides)
    lines: list[str] = []
    result = run(RunSpec(**values), on_output=lines.append)
    return result, lines


def test_deploy_without_a_rule_answers_kudus_500_and_logs_the_default_deny(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [])
    result, lines = deploy(run_dir, addon_root)
    assert result.exit_code == 1
    assert "HTTP 500" in lines
    assert json.loads(lines[lines.index("HTTP 500") + 1]) == KUDU_500
    azure = (run_dir / "azure.log").read_text().splitlines()
    assert any(DEFAULT_DENY.match(line) for line in azure), azure
    # The firewall closed the connection after the ClientHello: the site never heard of it.
    assert read_requests(run_dir, "kudu-site") == []
    assert leftovers(engine, result.run_id) == []


def test_deploy_with_the_scm_wildcard_allowed_reaches_the_site_and_succeeds(
    engine, images, run_dir, addon_root
):
    policy = run_dir / "policy.yaml"
    shutil.copy(SCENARIOS / "apps" / "kudu-policies" / "kudu-self.yaml", policy)
    result, lines = deploy(run_dir, addon_root)
    assert result.exit_code == 0, lines
    assert "HTTP 200" in lines
    requests = read_requests(run_dir, "kudu-site")
    assert [(r["scheme"], r["method"], r["host"], r["path"]) for r in requests] == [
        ("https", "POST", "mysite.scm.azurewebsites.net", "/operations/settriggers"),
        ("https", "POST", "mysite.scm.azurewebsites.net", "/api/app/restart"),
    ]
    azure = (run_dir / "azure.log").read_text()
    assert "Action: Allow. Policy: kudu-self." in azure
    assert "Rule: kudu-scm" in azure
    assert leftovers(engine, result.run_id) == []


def test_publish_endpoint_calls_the_site_as_zipdeploy_does(engine, images, run_dir, addon_root):
    (run_dir / "policy.yaml").write_text('allow: ["*.scm.azurewebsites.net"]\n')
    result, lines = deploy(
        run_dir, addon_root, command="kudu-sim deploy --src /app --endpoint publish"
    )
    assert result.exit_code == 0, lines
    assert [r["path"] for r in read_requests(run_dir, "kudu-site")] == [
        "/operations/settriggers",
        "/api/app/restart",
    ]


def test_an_exact_name_for_another_site_does_not_let_kudu_through(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, ["othersite.scm.azurewebsites.net", "mysite.azurewebsites.net"])
    result, lines = deploy(run_dir, addon_root)
    assert result.exit_code == 1
    assert "HTTP 500" in lines
    assert read_requests(run_dir, "kudu-site") == []


def test_test_ca_and_keys_stay_in_the_run_folder_never_in_an_image(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [])
    deploy(run_dir, addon_root)
    folder = run_dir / UPSTREAMS_DIR
    assert (folder / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert (folder / "kudu-site" / "key.pem").is_file()
    for image in (UPSTREAMS_IMAGE, KUDU_SIM_IMAGE):
        probe = engine.containers.create(image, command=["true"], network_disabled=True)
        try:
            with pytest.raises(NotFound):
                probe.get_archive("/egress/upstream")
        finally:
            probe.remove(force=True)


def test_an_upstream_that_never_listens_stops_the_run_and_leaves_nothing(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [])
    broken = Upstream("broken", UPSTREAMS_IMAGE, ("broken.example.test",), "echo no site; exit 3")
    with pytest.raises(EnvironmentProblem) as caught:
        deploy(run_dir, addon_root, upstreams=[broken], run_id="kudu-broken-upstream")
    assert "upstream broken (egress/upstreams) stopped" in str(caught.value)
    assert "no site" in str(caught.value)
    assert leftovers(engine, "kudu-broken-upstream") == []
