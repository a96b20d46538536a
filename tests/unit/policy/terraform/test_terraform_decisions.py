"""Golden decisions: each Terraform fixture through `egress check --json`, answered as Azure
Firewall would (network rules before application rules, groups then collections by priority,
first match wins, default deny).

The fixtures (data/) are ours, written in the shapes of the azurerm provider's documentation,
registry modules with nested dynamic blocks, Terraform's JSON syntax and `terraform show
-json` output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

DATA = Path(__file__).parent / "data"
BUILD = DATA / "build-egress"
PROD = ["--var-file", str(BUILD / "prod.tfvars"), "--var-file", str(BUILD / "prod.tfvars.json")]
MODULE = DATA / "module-style"
MODULE_VARS = ["--var-file", str(MODULE / "ci.tfvars.json")]

# fixture, extra arguments, destination, protocol, source, action, group/collection/rule
GOLDEN = [
    # build-egress: variable defaults, terraform.tfvars loaded from the folder (environment ci)
    (BUILD, [], "pypi.index.test", "https", "10.20.1.5:40000", "Allow", "Build-ci/python/index"),
    (BUILD, [], "FILES.pypi-cdn.test", "https", "10.20.1.5:40000", "Allow", "Build-ci/python/index"),
    (BUILD, [], "oryx-cdn.microsoft.io", "https", "10.20.1.5:40000", "Allow", "Build-ci/oryx/sdk-cdn"),
    (BUILD, [], "mirror.build.test", "http", "10.20.1.5:40000", "Allow",
     "Build-ci/oryx/plain-http-mirror"),
    (BUILD, [], "mirror.build.test:8443", "https", "10.20.1.5:40000", "Allow",
     "Build-ci/oryx/plain-http-mirror"),
    (BUILD, [], "mirror.build.test:443", "https", "10.20.1.5:40000", "Deny", None),
    (BUILD, [], "app.scm.azurewebsites.net", "https", "10.20.1.5:40000", "Allow", "Build-ci/kudu/scm"),
    (BUILD, [], "pypi.index.test", "https", "10.99.0.1:40000", "Deny", None),
    (BUILD, [], "192.0.2.123:123", "udp", "10.20.1.5:40000", "Allow", "Platform/time/ntp"),
    (BUILD, [], "192.0.2.124:123", "udp", "10.20.1.5:40000", "Deny", None),
    (BUILD, [], "ads.vendor.test", "https", "10.20.1.5:40000", "Deny", None),
    # build-egress for prod: two var files, the JSON one last, so base_priority is 600
    (BUILD, PROD, "ads.vendor.test", "https", "10.30.2.9:40000", "Deny",
     "Build-prod/deny-blocked/blocked"),
    (BUILD, PROD, "telemetry.vendor.test", "http", "10.30.2.9:40000", "Deny",
     "Build-prod/deny-blocked/blocked"),
    (BUILD, PROD, "oryx-cdn.microsoft.io", "https", "10.30.1.1:40000", "Allow",
     "Build-prod/oryx/sdk-cdn"),
    (BUILD, PROD, "oryx-cdn.microsoft.io", "https", "10.20.1.5:40000", "Deny", None),
    (BUILD, PROD, "192.0.2.201:123", "udp", "10.30.1.1:40000", "Allow", "Platform/time/ntp"),
    (BUILD, PROD, "192.0.2.123:123", "udp", "10.30.1.1:40000", "Deny", None),
    # --var wins over the files; a list variable's value is parsed as HCL
    (BUILD, [*PROD, "--var", "environment=qa", "--var", 'build_subnets=["10.9.9.0/24"]'],
     "oryx-cdn.microsoft.io", "https", "10.9.9.9:40000", "Allow", "Build-qa/oryx/sdk-cdn"),
    # module-style: a local module with object-list variables and nested dynamic blocks
    (MODULE, MODULE_VARS, "upload.python.test", "https", "10.80.4.2:40000", "Deny",
     "AppRules/deny-python/deny"),
    (MODULE, MODULE_VARS, "pkgs.python.test", "https", "10.80.4.2:40000", "Allow",
     "AppRules/allow-python/python-0"),
    (MODULE, MODULE_VARS, "files.pythonhosted.test", "http", "10.80.4.2:40000", "Allow",
     "AppRules/allow-python/python-1"),
    (MODULE, MODULE_VARS, "code.git.test", "https", "10.80.4.2:40000", "Allow",
     "AppRules/allow-git/git-0"),
    (MODULE, MODULE_VARS, "pkgs.python.test", "https", "10.80.5.2:40000", "Deny", None),
    # classic firewall rule collections
    (DATA / "classic-firewall.tf", [], "www.social.test", "https", "10.40.0.7:40000", "Deny",
     "ClassicApplicationRuleCollections/deny-social/social"),
    (DATA / "classic-firewall.tf", [], "pkg.npm-registry.test", "https", "10.40.0.7:40000",
     "Allow", "ClassicApplicationRuleCollections/registries/npm"),
    (DATA / "classic-firewall.tf", [], "198.51.100.54:53", "udp", "10.40.0.7:40000", "Allow",
     "ClassicNetworkRuleCollections/dns/resolvers"),
    (DATA / "classic-firewall.tf", [], "pkg.npm-registry.test", "https", "10.41.0.7:40000",
     "Deny", None),
    # Terraform's JSON syntax with a dynamic block
    (DATA / "json-syntax.tf.json", [], "pkgs.build.test", "https", "10.50.0.9:40000", "Allow",
     "Apps/registries/registry-0"),
    (DATA / "json-syntax.tf.json", [], "a.mirror.build.test", "https", "10.50.0.9:40000",
     "Allow", "Apps/registries/registry-1"),
    (DATA / "json-syntax.tf.json", [], "mirror.build.test", "https", "10.50.0.9:40000", "Deny",
     None),
    # terraform show -json: a plan with a child module, and a state with an IP group
    (DATA / "plan.json", [], "pkgs.python.test", "https", "10.60.1.5:40000", "Allow",
     "Build/packages/pip"),
    (DATA / "plan.json", [], "x.telemetry.test", "http", "10.60.1.5:40000", "Deny",
     "Build/deny-telemetry/telemetry"),
    (DATA / "plan.json", [], "192.0.2.10:123", "udp", "10.60.3.3:40000", "Allow",
     "Platform/ntp/ntp"),
    (DATA / "state.json", [], "a.vendor.test", "https", "10.70.2.5:40000", "Allow",
     "Agents/web/vendor"),
    (DATA / "state.json", [], "a.vendor.test", "https", "10.70.2.6:40000", "Deny", None),
]

POLICY_NAMES = [
    (BUILD, [], "fw-ci-policy"),
    (BUILD, PROD, "fw-prod-policy"),
    (MODULE, MODULE_VARS, "fw-hub-policy"),
    (DATA / "classic-firewall.tf", [], "fw-classic"),
    (DATA / "json-syntax.tf.json", [], "fw-json"),
    (DATA / "plan.json", [], "fw-plan-policy"),
    (DATA / "state.json", [], "fw-state-policy"),
]


def _check(capsys: pytest.CaptureFixture[str], source: Path, extra: list[str],
           *arguments: str) -> list[dict]:  # fmt: skip
    code = main(["check", str(source), *arguments, *extra, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return [json.loads(line) for line in captured.out.splitlines()]


@pytest.mark.parametrize(
    ("source", "extra", "destination", "protocol", "src", "action", "rule"),
    GOLDEN,
    ids=[f"{row[0].name}-{row[2]}-{row[3]}-{row[4].split(':')[0]}-{i}" for i, row in enumerate(GOLDEN)],
)
def test_check_decides_terraform_as_azure_does(
    capsys: pytest.CaptureFixture[str], source: Path, extra: list[str], destination: str,
    protocol: str, src: str, action: str, rule: str | None,
) -> None:  # fmt: skip
    (line,) = _check(capsys, source, extra, destination, "--protocol", protocol, "--src", src)
    assert line["action"] == action
    found = line["rule"]
    assert (f"{found['group']}/{found['collection']}/{found['rule']}" if found else None) == rule
    if rule is None:
        assert line["reason"] == "No rule matched. Proceeding with default action"


@pytest.mark.parametrize(("source", "extra", "name"), POLICY_NAMES,
                         ids=[f"{r[0].name}-{r[2]}" for r in POLICY_NAMES])  # fmt: skip
def test_the_policy_is_named_as_the_configuration_names_it(
    capsys: pytest.CaptureFixture[str], source: Path, extra: list[str], name: str
) -> None:
    (line,) = _check(capsys, source, extra, "nothing.test")
    assert line["azure"].endswith("No rule matched. Proceeding with default action")
    code = main(["check", str(source), "pypi.index.test", *extra])
    assert code == 0
    assert f"Policy: {name} ({source})" in capsys.readouterr().out


def test_tf_var_in_the_environment_sets_a_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_VAR_build_subnets", '["10.7.7.0/24"]')
    (line,) = _check(capsys, BUILD, [], "pypi.index.test", "--src", "10.7.7.7:1")
    assert line["action"] == "Allow"


def test_tfvars_files_win_over_tf_var_and_var_wins_over_files(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_VAR_environment", "from-env")  # terraform.tfvars says ci
    (line,) = _check(capsys, BUILD, [], "pypi.index.test", "--src", "10.20.1.5:1")
    assert line["rule"]["group"] == "Build-ci"
    (line,) = _check(capsys, BUILD, ["--var", "environment=cli"], "pypi.index.test", "--src",
                     "10.20.1.5:1")  # fmt: skip
    assert line["rule"]["group"] == "Build-cli"


def test_dnat_collections_are_reported_as_inbound_not_simulated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", str(BUILD), "jump.test", "--json"]) == 0
    assert (
        "egress: warning: azurerm_firewall_policy_rule_collection_group.platform: DNAT collection"
        " 'inbound-ssh' (group 'Platform', 1 rule(s)) is inbound and not simulated"
    ) in capsys.readouterr().err
    assert main(["check", str(DATA / "classic-firewall.tf"), "jump.test"]) == 0
    assert "classic NAT collection 'inbound' (1 rule(s)) is inbound" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["import", "export"])
def test_import_and_export_take_the_terraform_inputs(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    extra = ["--format", "yaml"] if command == "export" else []
    assert main([command, str(BUILD), *PROD, *extra]) == 0
    out = capsys.readouterr().out
    assert "name: Build-prod" in out
    assert "priority: 600" in out


def test_a_required_variable_without_value_is_exit_2_naming_all_of_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", str(MODULE), "a.test"]) == 2
    err = capsys.readouterr().err
    assert "var.app_subnet has no value; variables without one: app_subnet, groups" in err
    assert "--var-file FILE, --var NAME=VALUE or TF_VAR_NAME" in err
    assert "Traceback" not in err


def test_an_undeclared_var_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(BUILD), "a.test", "--var", "enviroment=qa"]) == 2
    assert "--var: --var enviroment: the configuration declares no variable" in (
        capsys.readouterr().err
    )


def test_a_scenario_firewall_policy_may_be_a_terraform_file(tmp_path: Path) -> None:
    from harness.scenario import load_scenario

    (tmp_path / "app").mkdir()
    (tmp_path / "policy.tf.json").write_text((DATA / "json-syntax.tf.json").read_text())
    path = tmp_path / "build.scenario.yaml"
    path.write_text(
        "name: tf-policy\nworkload:\n  image: egress/python\n  workdir: app\n"
        "  command: [pip, --version]\nfirewall:\n  policy: policy.tf.json\n"
    )
    scenario = load_scenario(path)
    assert scenario.firewall.policy.name == "fw-json"
    assert scenario.firewall.policy_source == (tmp_path / "policy.tf.json").resolve()


def test_a_terraform_policy_exported_as_terraform_reads_back_to_the_same_model(
    tmp_path: Path,
) -> None:
    from harness.export import export_policy
    from harness.policy.load import load_policy
    from harness.policy.source import PolicyOptions

    options = PolicyOptions(var_files=(str(MODULE / "ci.tfvars.json"),), environ={})
    policy = load_policy(MODULE, options)
    exported = tmp_path / "exported.tf"
    exported.write_text(export_policy(policy, "terraform"))
    assert load_policy(exported, PolicyOptions(environ={})) == policy
