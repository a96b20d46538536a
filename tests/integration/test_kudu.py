"""Kudu calling its own SCM site through the firewall (docs/kudu.md): the simulated Kudu
behind the gateway, the deploy client outside it, its site's public face as an upstream, and
the run's test CA."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
from pathlib import Path

import pytest
from docker.errors import NotFound

from harness.errors import EnvironmentProblem
from harness.execute import execute
from harness.sandbox import RunResult, RunSpec, leftovers, run
from harness.sandbox.images import KUDU_SIM_IMAGE, UPSTREAMS_IMAGE
from harness.sandbox.inbound import CLIENT_LOG
from harness.sandbox.upstreams import UPSTREAMS_DIR, read_requests
from harness.sandbox.workload import WORKLOAD_LOG
from harness.scenario import InboundClient, Upstream, load_scenario

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
# `az webapp deploy`, outside the firewall: the SCM site's name is the workload, for it alone.
CLIENT = InboundClient(
    KUDU_SIM_IMAGE,
    "kudu-sim client --site mysite --src /app --port 8080",
    port=8080,
    workdir=APP,
    hosts=("mysite.scm.azurewebsites.net",),
)
# Kudu logs who posted the deployment: `/api/zipdeploy: 454 bytes from 172.18.0.3:40000, ...`.
UPLOAD_FROM = re.compile(
    r"^kudu-sim: /api/(?:zipdeploy|publish): \d+ bytes from ([0-9a-f.:]+):\d+,"
)
DEFAULT_DENY = re.compile(
    r"^HTTPS request from [0-9.]+:\d+ to mysite\.scm\.azurewebsites\.net:443\. Action: Deny\. "
    r"No rule matched\. Proceeding with default action$"
)


def deploy(run_dir: Path, addon_root: Path, **overrides) -> tuple[RunResult, list[str]]:
    values = {
        "run_dir": run_dir,
        "image": KUDU_SIM_IMAGE,
        "command": "kudu-sim serve --port 8080",
        "timeout": 60,
        "addon_root": addon_root,
        "upstreams": [SITE],
        "client": CLIENT,
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
    publish = InboundClient(
        KUDU_SIM_IMAGE,
        "kudu-sim client --site mysite --src /app --endpoint publish",
        port=8080,
        workdir=APP,
        hosts=("mysite.scm.azurewebsites.net",),
    )
    result, lines = deploy(run_dir, addon_root, client=publish)
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


def uploads_from(run_dir: Path) -> list[str]:
    """The addresses Kudu says the deployments came from (its workload.log)."""
    lines = (run_dir / WORKLOAD_LOG).read_text().splitlines()
    return [match[1] for line in lines if (match := UPLOAD_FROM.match(line))]


@pytest.mark.parametrize(
    ("scenario", "exit_code", "status"),
    [("kudu-deploy-denied", 1, "HTTP 500"), ("kudu-deploy-allowed", 0, "HTTP 200")],
)
def test_bundled_scenario_deploys_from_outside_the_firewall(
    engine, images, tmp_path, scenario, exit_code, status
):
    results: list[RunResult] = []

    def sandbox_run(spec, on_output=None):
        results.append(run(spec, on_output))
        return results[-1]

    folder = tmp_path / scenario
    folder.mkdir()
    execution = execute(
        load_scenario(SCENARIOS / f"{scenario}.scenario.yaml"), sandbox_run, run_dir=folder
    )
    assert execution.failures == [], execution.failures
    assert execution.exit_code == exit_code
    # The deployment reached Kudu from the client's own address, not over loopback.
    peers = uploads_from(folder)
    assert len(peers) == 1, (folder / WORKLOAD_LOG).read_text()
    assert not ipaddress.ip_address(peers[0]).is_loopback
    # The client's output: its own log, and in the run's output that expectations read.
    assert status in (folder / CLIENT_LOG).read_text().splitlines()
    assert status in execution.output.splitlines()
    assert leftovers(engine, results[0].run_id) == []


def test_a_workload_that_never_listens_stops_the_run_before_the_client(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [])
    with pytest.raises(EnvironmentProblem) as caught:
        deploy(
            run_dir,
            addon_root,
            command="echo no API here; exit 4",
            upstreams=[],
            run_id="kudu-never-listens",
        )
    message = str(caught.value)
    assert "port 8080" in message
    assert "status 4" in message
    assert "no API here" in message
    assert not (run_dir / CLIENT_LOG).exists()
    assert leftovers(engine, "kudu-never-listens") == []


def test_a_missing_client_image_is_reported_before_anything_starts(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [])
    missing = InboundClient("egress/no-such-client", "true", port=8080)
    with pytest.raises(EnvironmentProblem, match="egress/no-such-client of the client is missing"):
        deploy(run_dir, addon_root, client=missing, run_id="kudu-missing-client")
    assert leftovers(engine, "kudu-missing-client") == []


def test_learned_wildcard_allowlist_verifies_and_exports_as_the_scm_rule(
    engine, images, tmp_path, monkeypatch
):
    """The failing deployment, learned with --wildcards: the allowlist is Microsoft's documented
    `*.scm.azurewebsites.net`, the deploy succeeds behind it, and the exported ARM rule
    collection names that wildcard."""
    from harness.export import export_policy
    from harness.learn import learn

    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    scenario = load_scenario(SCENARIOS / "kudu-deploy-denied.scenario.yaml")
    result = learn(scenario, run, wildcards=True)

    assert [candidate.host for candidate in result.candidates] == ["mysite.scm.azurewebsites.net"]
    assert [candidate.host for candidate in result.listed] == ["*.scm.azurewebsites.net"]
    assert result.verified, result.verify.output if result.verify else None
    assert "HTTP 200" in result.verify.output.splitlines()

    template = json.loads(export_policy(result.policy, "arm", source_addresses=("10.0.2.0/24",)))
    groups = [
        resource
        for resource in template["resources"]
        if resource["type"] == "Microsoft.Network/firewallPolicies/ruleCollectionGroups"
    ]
    rules = [
        rule
        for group in groups
        for collection in group["properties"]["ruleCollections"]
        for rule in collection["rules"]
    ]
    assert [rule["targetFqdns"] for rule in rules] == [["*.scm.azurewebsites.net"]]
    assert rules[0]["protocols"] == [{"protocolType": "Https", "port": 443}]
