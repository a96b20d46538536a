"""ARM templates and compiled Bicep evaluated as Azure deploys them, answered by `egress check`.

The fixtures in data/arm/ are our own, written in the shapes of Azure's quickstart Firewall
Policy templates (IP groups, a copy loop of public IPs, context functions, a managed FQDN tag),
of a compiled Bicep main using registry modules (languageVersion 2.0, symbolic names, nested
deployments with inner scope, `existing`) and of their parameters files."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import InputError
from harness.policy.arm_expr import unique_string
from harness.policy.decide import Decider
from harness.policy.load import load_policy
from harness.policy.model import NetworkRule, Request
from harness.policy.source import PolicyOptions

ARM = Path(__file__).parent / "data" / "arm"
QUICKSTART = ARM / "fw_policy_ipgroups.json"
QUICKSTART_PARAMETERS = ARM / "fw_policy_ipgroups.parameters.json"
BICEP = ARM / "bicep_main.json"
BICEP_PARAMETERS = ARM / "bicep_main.parameters.json"
FQDN_TAGS = ARM / "windows_update.fqdn-tags.yaml"
SERVICE_TAGS = ARM / "service_tags.json"

APP = "DefaultApplicationRuleCollectionGroup"
NET = "DefaultNetworkRuleCollectionGroup"


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["check", *args, "--json"])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


def rule_of(line: dict[str, Any]) -> str | None:
    rule = line["rule"]
    return f"{rule['group']}/{rule['collection']}/{rule['rule']}" if rule else None


# --- golden decisions ------------------------------------------------------------------------

QUICKSTART_GOLDEN = [
    # destination, protocol, source, action, rule (None: the default deny)
    ("pypi.mirror.test", "https", "10.20.0.5:5000", "Allow", f"{APP}/packages/package-0"),
    ("x.files.mirror.test", "https", "10.30.0.9:5000", "Allow", f"{APP}/packages/package-1"),
    ("pypi.mirror.test", "https", "10.99.0.5:5000", "Deny", None),  # not in the IP group
    ("telemetry.vendor.test", "https", "10.20.0.5:5000", "Deny", f"{APP}/block-telemetry/telemetry"),
    ("telemetry.vendor.test", "http", "10.20.0.5:5000", "Deny", f"{APP}/block-telemetry/telemetry"),
    ("kb.update.windows.test", "https", "10.40.0.7:5000", "Allow",
     f"{APP}/global-rule-url-arc/winupdate-rule-01"),  # infra0 from the copy loop of IP groups
    ("kb.update.windows.test", "https", "10.41.0.7:5000", "Deny", None),  # infra1: not listed
    ("192.0.2.123:123", "udp", "10.41.0.7:5000", "Allow", f"{NET}/azure-global-services-nrc/time-windows"),
    ("192.0.2.123:123", "udp", "10.40.0.7:5000", "Deny", None),
    ("198.51.100.70:443", "tcp", "10.20.0.5:5000", "Allow",
     f"{NET}/azure-global-services-nrc/azure-storage"),  # Storage.WestEurope's prefix
    ("198.51.100.5:443", "tcp", "10.20.0.5:5000", "Deny", None),  # AzureCloud, not Storage
    ("203.0.113.10:2222", "tcp", "10.20.0.5:5000", "Deny", None),  # DNAT is inbound only
]  # fmt: skip


@pytest.mark.parametrize(
    "destination, protocol, source, action, rule", QUICKSTART_GOLDEN,
    ids=[f"{d}-{p}-{s.split(':')[0]}" for d, p, s, *_ in QUICKSTART_GOLDEN],
)  # fmt: skip
def test_quickstart_shaped_template_answers_check_as_azure_decides(
    capsys: pytest.CaptureFixture[str], destination: str, protocol: str, source: str,
    action: str, rule: str | None,
) -> None:  # fmt: skip
    code, (line,) = check(
        capsys, str(QUICKSTART), destination, "--protocol", protocol, "--src", source,
        "--parameters", str(QUICKSTART_PARAMETERS), "--fqdn-tags", str(FQDN_TAGS),
        "--service-tags", str(SERVICE_TAGS),
    )  # fmt: skip
    assert code == 0
    assert (line["action"], rule_of(line)) == (action, rule)


BICEP_GOLDEN = [
    ("pypi.mirror.test", "10.60.1.9:40000", "Allow", f"{APP}/allow-packages/package-registries"),
    ("oryx-cdn.cdn.test", "10.60.1.9:40000", "Allow", f"{APP}/allow-packages/package-registries"),
    ("app.scm.azurewebsites.net", "10.60.1.9:40000", "Allow", f"{APP}/allow-packages/kudu-self"),
    # The parameters file's group has priority 150: its Deny comes before the allow at 300.
    ("app-staging.scm.azurewebsites.net", "10.60.1.9:40000", "Deny",
     "BlockFirst/deny-staging/staging-sites"),
    ("pypi.mirror.test", "10.0.0.9:40000", "Deny", None),  # outside the module's IP group
    ("other.test", "10.60.1.9:40000", "Deny", None),
]  # fmt: skip


@pytest.mark.parametrize(
    "destination, source, action, rule", BICEP_GOLDEN,
    ids=[f"{d}-{s.split(':')[0]}" for d, s, *_ in BICEP_GOLDEN],
)  # fmt: skip
def test_compiled_bicep_with_its_parameters_file_answers_check_as_azure_decides(
    capsys: pytest.CaptureFixture[str], destination: str, source: str, action: str,
    rule: str | None,
) -> None:  # fmt: skip
    code, (line,) = check(
        capsys, str(BICEP), destination, "--src", source, "-p", str(BICEP_PARAMETERS)
    )
    assert code == 0
    assert (line["action"], rule_of(line)) == (action, rule)
    assert line["rule"] is None or line["rule"]["policy"] == "fwpolicy-appservice-build"


def test_bicep_network_rule_from_the_parameters_file_allows_ntp(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, (line,) = check(capsys, str(BICEP), "192.0.2.9:123", "--protocol", "udp",
                          "--src", "10.60.1.9:40000", "-p", str(BICEP_PARAMETERS))  # fmt: skip
    assert (code, line["action"], rule_of(line)) == (0, "Allow", "BlockFirst/allow-ntp/ntp")


# --- what the template evaluation does -------------------------------------------------------


def quickstart(**options: Any) -> Any:
    return load_policy(
        QUICKSTART, PolicyOptions(parameters=(str(QUICKSTART_PARAMETERS),), **options)
    )


def test_unrelated_resources_are_never_evaluated() -> None:
    # The public IPs' copy loop reads reference() and the VM calls listKeys(): Azure evaluates
    # them at deployment, the policy does not need them, and the load does not fail on them.
    policy = quickstart()
    assert [g.name for g in policy.rule_collection_groups] == [
        "DefaultDnatRuleCollectionGroup", NET, APP,
    ]  # fmt: skip


def test_context_functions_use_the_stated_defaults_and_the_flags() -> None:
    default_rg = (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/egress-harness-rg"
    )
    assert quickstart().name == f"fw-{unique_string(default_rg)}-policy"
    other = quickstart(
        resource_group="rg-prod", subscription="11111111-2222-3333-4444-555555555555"
    )
    rg_id = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-prod"
    assert other.name == f"fw-{unique_string(rg_id)}-policy"


def test_ip_groups_resolve_through_copy_loops_and_lambdas() -> None:
    network = quickstart().rule_collection_groups[1]
    time_rule = network.rule_collections[0].rules[0]
    assert isinstance(time_rule, NetworkRule)
    assert time_rule.source_addresses == ("10.20.0.0/24", "10.30.0.0/24", "10.41.0.0/24")


def test_a_property_copy_loop_writes_one_rule_per_package_host() -> None:
    packages = quickstart().rule_collection_groups[2].rule_collections[2]
    assert [(r.name, r.target_fqdns) for r in packages.rules] == [
        ("package-0", ("pypi.mirror.test",)),
        ("package-1", ("*.files.mirror.test",)),
    ]


def test_warnings_name_the_managed_tag_and_its_rule_the_service_tag_and_the_dnat() -> None:
    warnings = "\n".join(quickstart().warnings)
    assert "FQDN tag 'WindowsUpdate' (Microsoft-managed) in rule" in warnings
    assert f"{APP}/global-rule-url-arc/winupdate-rule-01" in warnings
    assert "fw_policy_ipgroups.json:" in warnings
    assert "service tag 'Storage.WestEurope'" in warnings and "--service-tags FILE" in warnings
    assert "DNAT rule collection 'inbound-ssh'" in warnings and "inbound, not simulated" in warnings


def test_a_managed_tag_matches_nothing_without_the_users_fqdns() -> None:
    decider = Decider(quickstart())
    request = Request("HTTPS", "10.40.0.7", 5000, 443, host="kb.update.windows.test")
    assert decider.decide(request).action == "Deny"


def test_check_prints_the_warnings_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", str(QUICKSTART), "pypi.mirror.test", "-p", str(QUICKSTART_PARAMETERS)])
    err = capsys.readouterr().err
    assert code == 0
    assert "egress: warning:" in err and "WindowsUpdate" in err


def test_key_value_parameters_override_the_file_and_are_typed_by_the_parameter() -> None:
    policy = load_policy(QUICKSTART, PolicyOptions(parameters=(
        f"@{QUICKSTART_PARAMETERS}", "firewallPolicyName=fwp-override",
        'packageHosts=["only.mirror.test"]',
    )))  # fmt: skip
    assert policy.name == "fwp-override"
    packages = policy.rule_collection_groups[2].rule_collections[2]
    assert [r.target_fqdns for r in packages.rules] == [("only.mirror.test",)]


def test_a_value_of_the_wrong_type_names_the_parameter() -> None:
    with pytest.raises(InputError) as caught:
        load_policy(QUICKSTART, PolicyOptions(
            parameters=(str(QUICKSTART_PARAMETERS), "numberOfPublicIPAddresses=three")
        ))  # fmt: skip
    assert "parameter 'numberOfPublicIPAddresses' is of type int" in str(caught.value)


def test_a_parameter_the_template_does_not_declare_is_an_error_at_its_line(tmp_path: Path) -> None:
    parameters = json.loads(QUICKSTART_PARAMETERS.read_text())
    parameters["parameters"]["firewalPolicyName"] = {"value": "typo"}
    file = tmp_path / "p.json"
    file.write_text(json.dumps(parameters, indent=2))
    with pytest.raises(InputError) as caught:
        load_policy(QUICKSTART, PolicyOptions(parameters=(str(file),)))
    message = str(caught.value)
    assert message.startswith(f"{file}:12:")
    assert "declares no parameter 'firewalPolicyName'" in message
    assert "did you mean 'firewallPolicyName'?" in message


def test_bicepparam_files_are_refused_with_the_command_that_compiles_them(tmp_path: Path) -> None:
    file = tmp_path / "main.bicepparam"
    file.write_text("using 'main.bicep'\n")
    with pytest.raises(InputError) as caught:
        load_policy(BICEP, PolicyOptions(parameters=(str(file),)))
    assert "az bicep build-params" in str(caught.value)


def test_key_vault_references_in_a_parameters_file_are_an_error_at_their_line(
    tmp_path: Path,
) -> None:
    parameters = json.loads(BICEP_PARAMETERS.read_text())
    parameters["parameters"]["policyName"] = {
        "reference": {"keyVault": {"id": "kv"}, "secretName": "s"}
    }
    file = tmp_path / "p.json"
    file.write_text(json.dumps(parameters, indent=2))
    with pytest.raises(InputError) as caught:
        load_policy(BICEP, PolicyOptions(parameters=(str(file),)))
    assert "Key Vault reference, known only during a deployment" in str(caught.value)


def test_yaml_policies_refuse_arm_only_flags(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text("allow: [a.test]\n")
    with pytest.raises(InputError) as caught:
        load_policy(file, PolicyOptions(parameters=("x=1",)))
    assert "apply to ARM templates" in str(caught.value)


# --- template variations ---------------------------------------------------------------------


def bicep_template() -> dict[str, Any]:
    return json.loads(BICEP.read_text())


def write(tmp_path: Path, template: dict[str, Any]) -> Path:
    file = tmp_path / "main.json"
    file.write_text(json.dumps(template, indent=2))
    return file


def rcg_module(template: dict[str, Any]) -> dict[str, Any]:
    policy_module = template["resources"]["firewallPolicy"]["properties"]["template"]
    return policy_module["resources"]["firewallPolicy_ruleCollectionGroups"]


def test_a_reference_the_policy_needs_is_an_error_at_its_line(tmp_path: Path) -> None:
    template = bicep_template()
    rcg_module(template)["properties"]["parameters"]["priority"] = {
        "value": "[reference('firewallPolicy').priority]"
    }
    file = write(tmp_path, template)
    with pytest.raises(InputError) as caught:
        load_policy(file, PolicyOptions(parameters=(str(BICEP_PARAMETERS),)))
    message = str(caught.value)
    line = next(i for i, text in enumerate(file.read_text().splitlines(), 1)
                if "reference('firewallPolicy').priority" in text)  # fmt: skip
    assert message.startswith(f"{file}:{line}:")
    assert "reference() has a value only during a deployment in Azure" in message


def test_outer_scope_nested_deployments_see_the_parents_parameters(tmp_path: Path) -> None:
    template = json.loads(QUICKSTART.read_text())
    groups = [r for r in template["resources"] if r["type"].endswith("ruleCollectionGroups")]
    template["resources"] = [r for r in template["resources"] if r not in groups]
    template["resources"].append({
        "type": "Microsoft.Resources/deployments",
        "apiVersion": "2022-09-01",
        "name": "groups",
        "properties": {
            "mode": "Incremental",
            "template": {
                "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
                "contentVersion": "1.0.0.0",
                "parameters": {"firewallPolicyName": {"type": "string", "defaultValue": "inner"}},
                "resources": groups,
            },
        },
    })  # fmt: skip
    policy = load_policy(write(tmp_path, template),
                         PolicyOptions(parameters=(str(QUICKSTART_PARAMETERS),)))  # fmt: skip
    assert policy.name.endswith("-policy")  # the outer parameter, not the inner "inner"
    assert len(policy.rule_collection_groups) == 3


def test_a_false_condition_deploys_no_group(tmp_path: Path) -> None:
    template = bicep_template()
    rcg_module(template)["condition"] = (
        "[not(equals(coalesce(parameters('ruleCollectionGroups'), createArray())[copyIndex()].name, 'BlockFirst'))]"
    )
    policy = load_policy(write(tmp_path, template),
                         PolicyOptions(parameters=(str(BICEP_PARAMETERS),)))  # fmt: skip
    assert [g.name for g in policy.rule_collection_groups] == [APP]


def test_an_existing_ip_group_is_an_error_naming_it(tmp_path: Path) -> None:
    template = bicep_template()
    ip_module = template["resources"]["buildIpGroup"]["properties"]["template"]
    ip_module["resources"]["ipGroup"]["existing"] = True
    with pytest.raises(InputError) as caught:
        load_policy(write(tmp_path, template), PolicyOptions(parameters=(str(BICEP_PARAMETERS),)))
    assert "IP group 'ipg-build-westeurope' is declared `existing`" in str(caught.value)


def test_the_location_flag_reaches_resource_group_location_in_modules(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        # The IP group is named after the location, the rules after the default one.
        template = bicep_template()
        template["variables"]["buildIpGroupId"] = (
            "[resourceId('Microsoft.Network/ipGroups', 'ipg-build-westeurope')]"
        )
        load_policy(write(tmp_path, template),
                    PolicyOptions(parameters=(str(BICEP_PARAMETERS),), location="northeurope"))  # fmt: skip
    assert "IP group 'ipg-build-westeurope' is not defined" in str(caught.value)
    assert "ipg-build-northeurope" in str(caught.value)


def test_a_group_resource_without_name_is_an_error_not_skipped(tmp_path: Path) -> None:
    # Issue 16 item 7: a Deny group spelled "nmae" used to vanish, so check answered Allow.
    template = json.loads(QUICKSTART.read_text())
    deny_group = next(r for r in template["resources"]
                      if r.get("name", "").endswith("'DefaultApplicationRuleCollectionGroup')]"))  # fmt: skip
    deny_group["nmae"] = deny_group.pop("name")
    file = write(tmp_path, template)
    code = main(["check", str(file), "telemetry.vendor.test", "-p", str(QUICKSTART_PARAMETERS)])
    assert code == 2
    with pytest.raises(InputError) as caught:
        load_policy(file, PolicyOptions(parameters=(str(QUICKSTART_PARAMETERS),)))
    assert "unknown key 'nmae' in a ruleCollectionGroups resource; did you mean 'name'?" in str(
        caught.value
    )


def test_a_group_resource_with_no_name_at_all_is_an_error(tmp_path: Path) -> None:
    template = bicep_template()
    inner = rcg_module(template)["properties"]["template"]["resources"]["ruleCollectionGroup"]
    del inner["name"]
    with pytest.raises(InputError) as caught:
        load_policy(write(tmp_path, template), PolicyOptions(parameters=(str(BICEP_PARAMETERS),)))
    assert "missing required key 'name'" in str(caught.value)


def test_dnat_rules_are_validated_though_not_simulated(tmp_path: Path) -> None:
    template = json.loads(QUICKSTART.read_text())
    dnat = copy.deepcopy(template["resources"][5])
    dnat["properties"]["ruleCollections"][0]["rules"][0]["translatedPort"] = "99999"
    template["resources"][5] = dnat
    with pytest.raises(InputError) as caught:
        load_policy(
            write(tmp_path, template), PolicyOptions(parameters=(str(QUICKSTART_PARAMETERS),))
        )
    assert "translated port '99999' is not a port" in str(caught.value)


# --- round trip ------------------------------------------------------------------------------


def test_compiled_bicep_round_trips_through_export_as_an_arm_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "exported.json"
    code = main(["export", str(BICEP), "--format", "arm", "-p", str(BICEP_PARAMETERS),
                 "-o", str(exported)])  # fmt: skip
    assert code == 0
    original = load_policy(BICEP, PolicyOptions(parameters=(str(BICEP_PARAMETERS),)))
    assert load_policy(exported) == original


def test_quickstart_round_trips_through_export_with_the_same_decisions(tmp_path: Path) -> None:
    exported = tmp_path / "exported.json"
    flags = ["-p", str(QUICKSTART_PARAMETERS), "--service-tags", str(SERVICE_TAGS)]
    assert main(["export", str(QUICKSTART), "--format", "arm", *flags, "-o", str(exported)]) == 0
    options = PolicyOptions(parameters=(str(QUICKSTART_PARAMETERS),),
                            service_tags_file=str(SERVICE_TAGS))  # fmt: skip
    before = Decider(load_policy(QUICKSTART, options))
    after = Decider(load_policy(exported, PolicyOptions(service_tags_file=str(SERVICE_TAGS))))
    for destination, protocol, source, *_ in QUICKSTART_GOLDEN:
        host, _, port = destination.partition(":")
        is_ip = host[0].isdigit()
        request = Request(
            protocol.upper(), source.split(":")[0], 5000,
            int(port) if port else (80 if protocol == "http" else 443),
            dst_ip=host if is_ip else None, host=None if is_ip else host,
        )  # fmt: skip
        assert after.decide(request).action == before.decide(request).action, destination


def test_service_tags_survive_the_effective_policy_yaml_the_gateway_loads(tmp_path: Path) -> None:
    from harness.export.yaml_form import policy_to_yaml

    options = PolicyOptions(parameters=(str(QUICKSTART_PARAMETERS),),
                            service_tags_file=str(SERVICE_TAGS))  # fmt: skip
    effective = tmp_path / "policy.yaml"
    effective.write_text(policy_to_yaml(load_policy(QUICKSTART, options)))
    reloaded = load_policy(effective)
    assert reloaded.service_tag("storage.westeurope") == ("198.51.100.64/26",)
    request = Request("TCP", "10.20.0.5", 5000, 443, dst_ip="198.51.100.70")
    assert Decider(reloaded).decide(request).action == "Allow"


def test_import_writes_the_warnings_into_the_yaml_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "imported.yaml"
    code = main(["import", str(QUICKSTART), "-p", str(QUICKSTART_PARAMETERS), "-o", str(output)])
    assert code == 0
    header = [line for line in output.read_text().splitlines() if line.startswith("#")]
    assert any("warning:" in line and "WindowsUpdate" in line for line in header)
    assert "egress: warning:" in capsys.readouterr().err


def test_the_arm_reader_does_not_import_the_policy_loader() -> None:
    # Issue 15 item 4: load.py builds on arm.py and checks.py, never the other way round.
    import subprocess
    import sys

    code = ("import sys, harness.policy.arm, harness.policy.arm_expr, harness.policy.checks;"
            " sys.exit('harness.policy.load' in sys.modules)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_export_keeps_a_managed_tag_as_a_tag_even_with_the_users_fqdns(tmp_path: Path) -> None:
    exported = tmp_path / "exported.json"
    code = main(["export", str(QUICKSTART), "--format", "arm", "-p", str(QUICKSTART_PARAMETERS),
                 "--fqdn-tags", str(FQDN_TAGS), "-o", str(exported)])  # fmt: skip
    assert code == 0
    text = exported.read_text()
    assert '"WindowsUpdate"' in text and "update.windows.test" not in text


def test_a_parameter_declared_as_null_is_an_error_at_its_line(tmp_path: Path) -> None:
    # Found by a mutation run: the value given for it used to escape as an internal error.
    template = bicep_template()
    template["parameters"]["policyName"] = None
    with pytest.raises(InputError) as caught:
        load_policy(write(tmp_path, template), PolicyOptions(parameters=(str(BICEP_PARAMETERS),)))
    assert "parameter 'policyName' must be declared as a mapping" in str(caught.value)


def test_a_value_outside_allowed_values_is_refused_and_arrays_are_checked_per_item(
    tmp_path: Path,
) -> None:
    template = bicep_template()
    template["parameters"]["tier"] = {
        "type": "string", "defaultValue": "Standard", "allowedValues": ["Standard", "Premium"]
    }  # fmt: skip
    template["parameters"]["zones"] = {"type": "array", "defaultValue": [],
                                       "allowedValues": ["1", "2", "3"]}  # fmt: skip
    file = write(tmp_path, template)
    base = (str(BICEP_PARAMETERS),)
    load_policy(file, PolicyOptions(parameters=(*base, 'zones=["1", "3"]')))
    for bad in ("tier=Basic", 'zones=["1", "4"]'):
        with pytest.raises(InputError) as caught:
            load_policy(file, PolicyOptions(parameters=(*base, bad)))
        assert "is not one of its allowedValues" in str(caught.value)


def test_run_policy_takes_the_template_with_its_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.testing import FakeRuntime

    seen: list[Any] = []
    # The effective policy the gateway loads.
    runtime = FakeRuntime(lambda run: seen.append(load_policy(run.spec.policy_path)))
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    scenario = tmp_path / "s.scenario.yaml"
    scenario.write_text('name: s\nworkload:\n  image: egress/python\n  command: ["true"]\n')
    code = main(["run", str(scenario), "--policy", str(BICEP), "-p", str(BICEP_PARAMETERS)],
                runtime=runtime)  # fmt: skip
    assert code == 0, capsys.readouterr()
    assert runtime.prepared == [["s"]]
    (policy,) = seen
    assert policy == load_policy(BICEP, PolicyOptions(parameters=(str(BICEP_PARAMETERS),)))


def test_a_yaml_rule_naming_a_managed_tag_loads_with_a_warning_naming_the_rule(
    tmp_path: Path,
) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(
        "rule_collection_groups:\n"
        "  - name: G\n    priority: 300\n    rule_collections:\n"
        "      - name: C\n        priority: 100\n        action: Allow\n        rules:\n"
        "          - rule_type: ApplicationRule\n            name: ase\n"
        '            protocols: ["Https:443"]\n            fqdn_tags: [AppServiceEnvironment]\n'
    )
    policy = load_policy(file)
    (warning,) = policy.warnings
    assert warning.startswith(f"{file}:12:")
    assert "FQDN tag 'AppServiceEnvironment' (Microsoft-managed) in rule G/C/ase" in warning
    with_fqdns = tmp_path / "tags.yaml"
    with_fqdns.write_text("AppServiceEnvironment: ['*.ase.test']\n")
    policy = load_policy(file, PolicyOptions(fqdn_tags_file=str(with_fqdns)))
    request = Request("HTTPS", "10.0.0.1", 5000, 443, host="x.ase.test")
    assert Decider(policy).decide(request).action == "Allow"
    assert "matches only the FQDNs given for it" in policy.warnings[0]


def test_classic_dnat_collections_are_reported_not_dropped(tmp_path: Path) -> None:
    firewall = {
        "name": "fw-classic",
        "applicationRuleCollections": [{
            "name": "apps", "priority": 200, "action": {"type": "Allow"},
            "rules": [{"name": "a", "protocols": [{"protocolType": "Https", "port": 443}],
                       "targetFqdns": ["a.test"], "sourceAddresses": ["*"]}],
        }],
        "natRuleCollections": [{"name": "inbound", "priority": 100, "action": {"type": "Dnat"},
                                "rules": []}],
    }  # fmt: skip
    file = tmp_path / "fw.json"
    file.write_text(json.dumps(firewall, indent=2))
    (warning,) = load_policy(file).warnings
    assert "1 classic DNAT rule collection(s): inbound, not simulated" in warning


def test_a_long_json_value_on_the_command_line_is_a_value_not_a_path() -> None:
    # A NAME=VALUE longer than a file name may be used to crash the file check.
    hosts = json.dumps([f"host{i}.mirror.test" for i in range(40)])
    policy = load_policy(QUICKSTART, PolicyOptions(
        parameters=(str(QUICKSTART_PARAMETERS), f"packageHosts={hosts}")
    ))  # fmt: skip
    assert len(policy.rule_collection_groups[2].rule_collections[2].rules) == 40


def test_inline_json_parameters_are_taken_as_az_takes_them() -> None:
    inline = json.dumps({"firewallPolicyName": {"value": "inline-policy"}})
    policy = load_policy(QUICKSTART, PolicyOptions(parameters=(str(QUICKSTART_PARAMETERS), inline)))
    assert policy.name == "inline-policy"
