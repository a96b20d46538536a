"""harness.export: every format from one policy compared to committed golden files, the ARM
template checked against the 2024-05-01 shape, and each output read back.

Regenerate the golden files after an intended change: EGRESS_UPDATE_GOLDEN=1 pytest tests/unit/export
"""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from bicep_subset import Ref, read_bicep
from hcl2.utils import SerializationOptions

from harness.export import FORMATS, export_policy, import_policy
from harness.export.prepare import GENERATOR, expand_fqdn_tags
from harness.policy.decide import Decider
from harness.policy.load import load_policy
from harness.policy.model import ApplicationRule, NetworkRule, Policy, Request

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
SUFFIXES = {
    "yaml": "yaml",
    "arm": "arm.json",
    "bicep": "bicep",
    "terraform": "tf",
    "azcli": "azcli.sh",
    "classic-arm": "classic.json",
}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(HERE / "policy.yaml")


def _golden(fmt: str) -> Path:
    return GOLDEN / f"contoso-build.{SUFFIXES[fmt]}"


# --- golden files --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_matches_golden_file(policy: Policy, fmt: str) -> None:
    text = export_policy(policy, fmt)
    golden = _golden(fmt)
    if os.environ.get("EGRESS_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden file {golden}; run with EGRESS_UPDATE_GOLDEN=1"
    assert text == golden.read_text()


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_names_its_generator(policy: Policy, fmt: str) -> None:
    text = export_policy(policy, fmt)
    if fmt == "arm":
        assert json.loads(text)["metadata"]["_generator"]["comment"] == GENERATOR
    elif fmt == "classic-arm":
        assert json.loads(text)["_generator"].startswith(GENERATOR)
    else:
        comment = "//" if fmt == "bicep" else "#"
        assert any(line.startswith(f"{comment} {GENERATOR}") for line in text.splitlines())


def test_unknown_format_is_an_input_error(policy: Policy) -> None:
    from harness.errors import InputError

    with pytest.raises(InputError, match="unknown format 'cdk'.*use one of yaml, arm"):
        export_policy(policy, "cdk")


# --- ARM: the 2024-05-01 shape -------------------------------------------------------------

_APPLICATION_KEYS = {
    "ruleType", "name", "description", "sourceAddresses", "sourceIpGroups", "protocols",
    "targetFqdns", "fqdnTags", "targetUrls", "terminateTLS", "webCategories",
    "destinationAddresses", "httpHeadersToInsert",
}  # fmt: skip
_NETWORK_KEYS = {
    "ruleType", "name", "description", "ipProtocols", "sourceAddresses", "sourceIpGroups",
    "destinationAddresses", "destinationIpGroups", "destinationPorts", "destinationFqdns",
}  # fmt: skip


def _strings(value: Any, parameters: dict[str, Any]) -> list[str]:
    """A string array, or a parameter reference resolving to one."""
    if isinstance(value, str):
        match = re.fullmatch(r"\[parameters\('(\w+)'\)\]", value)
        assert match, f"{value!r} is neither a list nor a parameter reference"
        parameter = parameters[match.group(1)]
        assert parameter["type"] == "array"
        value = parameter["defaultValue"]
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), value
    return value


def _port_in_range(text: str) -> bool:
    if text == "*":
        return True
    low, _, high = text.partition("-")
    return all(0 <= int(part) <= 65535 for part in (low, high or low))


def check_rule_collection_group_template(template: dict[str, Any]) -> None:
    """The keys, enums and ranges Azure's firewallPolicy.json (2024-05-01) requires."""
    assert template["$schema"].endswith("/2019-04-01/deploymentTemplate.json#")
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", template["contentVersion"])
    parameters = template["parameters"]
    for parameter in parameters.values():
        assert parameter["type"] in ("string", "array", "int", "object", "bool")
    group_priorities = []
    for resource in template["resources"]:
        assert resource["type"] == "Microsoft.Network/firewallPolicies/ruleCollectionGroups"
        assert resource["apiVersion"] == "2024-05-01"
        assert resource["name"].startswith("[format('{0}/{1}', parameters(")
        properties = resource["properties"]
        assert set(properties) <= {"priority", "ruleCollections"}
        assert 100 <= properties["priority"] <= 65000
        group_priorities.append(properties["priority"])
        collection_priorities = []
        for collection in properties["ruleCollections"]:
            assert collection["ruleCollectionType"] == "FirewallPolicyFilterRuleCollection"
            assert set(collection) == {"ruleCollectionType", "name", "priority", "action", "rules"}
            assert isinstance(collection["name"], str) and collection["name"]
            assert 100 <= collection["priority"] <= 65000
            collection_priorities.append(collection["priority"])
            assert collection["action"] in ({"type": "Allow"}, {"type": "Deny"})
            rule_types = {rule["ruleType"] for rule in collection["rules"]}
            assert len(rule_types) <= 1, "one rule type per collection"
            for rule in collection["rules"]:
                assert isinstance(rule["name"], str) and rule["name"]
                _strings(rule["sourceAddresses"], parameters)
                if rule["ruleType"] == "ApplicationRule":
                    assert set(rule) <= _APPLICATION_KEYS
                    assert rule["protocols"]
                    for protocol in rule["protocols"]:
                        assert set(protocol) == {"protocolType", "port"}
                        assert protocol["protocolType"] in ("Http", "Https")
                        assert isinstance(protocol["port"], int) and 0 <= protocol["port"] <= 64000
                    assert _strings(rule["targetFqdns"], parameters) or rule["fqdnTags"]
                else:
                    assert rule["ruleType"] == "NetworkRule"
                    assert set(rule) <= _NETWORK_KEYS
                    assert set(rule["ipProtocols"]) <= {"TCP", "UDP", "ICMP", "Any"}
                    assert rule["ipProtocols"]
                    ports = _strings(rule["destinationPorts"], parameters)
                    assert ports and all(_port_in_range(port) for port in ports)
                    assert rule["destinationAddresses"] or rule["destinationFqdns"]
        assert len(set(collection_priorities)) == len(collection_priorities)
    assert len(set(group_priorities)) == len(group_priorities)


def test_arm_template_has_the_2024_05_01_shape(policy: Policy) -> None:
    check_rule_collection_group_template(json.loads(export_policy(policy, "arm")))


def test_arm_groups_deploy_one_after_another(policy: Policy) -> None:
    resources = json.loads(export_policy(policy, "arm"))["resources"]

    assert "dependsOn" not in resources[0]
    for previous, resource in itertools.pairwise(resources):
        (depends_on,) = resource["dependsOn"]
        group = re.search(r"'([^']+)'\)\]$", previous["name"]).group(1)
        assert depends_on == (
            "[resourceId('Microsoft.Network/firewallPolicies/ruleCollectionGroups',"
            f" parameters('firewallPolicyName'), '{group}')]"
        )


def test_arm_expands_policy_fqdn_tags_and_says_so(policy: Policy) -> None:
    template = json.loads(export_policy(policy, "arm"))
    rules = [
        rule
        for resource in template["resources"]
        for collection in resource["properties"]["ruleCollections"]
        for rule in collection["rules"]
    ]
    kudu = next(rule for rule in rules if rule["name"] == "kudu-self")

    assert kudu["fqdnTags"] == []
    assert kudu["targetFqdns"] == [
        "*packages.test", "*.scm.azurewebsites.test", "*.azurewebsites.test"
    ]  # fmt: skip
    assert any("KuduSelf" in note for note in template["metadata"]["notes"])


def test_arm_round_trip_gives_an_equal_model(policy: Policy, tmp_path: Path) -> None:
    path = tmp_path / "groups.json"
    path.write_text(export_policy(policy, "arm"))

    assert load_policy(path) == expand_fqdn_tags(policy)


def test_arm_round_trip_keeps_the_policy_without_tags_exactly(tmp_path: Path) -> None:
    policy = load_policy(HERE / "policy.yaml")
    plain = expand_fqdn_tags(policy)
    path = tmp_path / "groups.json"
    path.write_text(export_policy(plain, "arm", policy_name_param="policyName"))

    assert "parameters('policyName')" in path.read_text()
    assert load_policy(path) == plain


def test_arm_escapes_strings_that_look_like_expressions(tmp_path: Path) -> None:
    policy = Policy("p", ())
    from harness.policy.model import RuleCollection, RuleCollectionGroup

    rule = ApplicationRule("[not-an-expression]", ("*",), target_fqdns=("a.test",))
    group = RuleCollectionGroup("O.Brien", 300, (RuleCollection("c", 100, "Allow", (rule,)),))
    policy = Policy("p", (group,))
    path = tmp_path / "t.json"
    path.write_text(export_policy(policy, "arm"))

    assert load_policy(path) == policy


def test_yaml_round_trip_keeps_the_policy_fqdn_tags(policy: Policy, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(export_policy(policy, "yaml"))

    assert load_policy(path) == policy


# --- Bicep ---------------------------------------------------------------------------------


def _with_refs(value: Any) -> Any:
    """ARM values with the parameter reference written as Bicep writes it."""
    if value == "[parameters('sourceAddresses')]":
        return Ref("sourceAddresses")
    if isinstance(value, dict):
        return {key: _with_refs(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_refs(item) for item in value]
    return value


def test_bicep_holds_the_same_groups_as_the_arm_template(policy: Policy) -> None:
    template = json.loads(export_policy(policy, "arm"))
    params, resources = read_bicep(export_policy(policy, "bicep"))

    assert params == {
        "firewallPolicyName": "contoso-build",
        "sourceAddresses": template["parameters"]["sourceAddresses"]["defaultValue"],
    }
    parent = resources.pop("parentPolicy")
    assert parent.existing and parent.type == "Microsoft.Network/firewallPolicies@2024-05-01"
    assert parent.body == {"name": Ref("firewallPolicyName")}
    groups = list(resources.values())
    assert len(groups) == len(template["resources"])
    for index, (group, resource) in enumerate(zip(groups, template["resources"])):
        assert group.type == "Microsoft.Network/firewallPolicies/ruleCollectionGroups@2024-05-01"
        assert group.body["parent"] == Ref("parentPolicy")
        assert resource["name"].endswith(f"'{group.body['name']}')]")
        assert group.body["properties"] == _with_refs(resource["properties"])
        if index:
            assert group.body["dependsOn"] == [Ref(list(resources)[index - 1])]
        else:
            assert "dependsOn" not in group.body


def test_bicep_escapes_quotes_and_interpolation() -> None:
    from harness.policy.model import RuleCollection, RuleCollectionGroup

    rule = ApplicationRule("r", ("*",), description="it's ${not} \\ interpolated",
                           target_fqdns=("a.test",))  # fmt: skip
    policy = Policy(
        "p", (RuleCollectionGroup("G", 300, (RuleCollection("c", 100, "Allow", (rule,)),)),)
    )
    _, resources = read_bicep(export_policy(policy, "bicep"))
    written = resources["g"].body["properties"]["ruleCollections"][0]["rules"][0]

    assert written["description"] == "it's ${not} \\ interpolated"


# --- Terraform -----------------------------------------------------------------------------


def _terraform(text: str) -> dict[str, Any]:
    options = SerializationOptions(strip_string_quotes=True, with_comments=False)
    return hcl2.loads(text, serialization_options=options)


def test_terraform_parses_and_says_destination_fqdns_where_arm_says_target_fqdns(
    policy: Policy,
) -> None:
    data = _terraform(export_policy(policy, "terraform"))
    groups = {
        label: body
        for block in data["resource"]
        for label, body in block["azurerm_firewall_policy_rule_collection_group"].items()
    }
    application = groups["default_application_rule_collection_group"]
    rule = application["application_rule_collection"][1]["rule"][0]

    assert rule["destination_fqdns"] == ["oryx-cdn.contoso.test", "*.cdn.test"]
    assert "target_fqdns" not in rule
    assert [
        p["type"] for p in application["application_rule_collection"][0]["rule"][0]["protocols"]
    ] == ["Https", "Http"]
    assert application["firewall_policy_id"] == "${var.firewall_policy_id}"
    assert application["depends_on"] == [
        "${azurerm_firewall_policy_rule_collection_group.default_network_rule_collection_group}"
    ]
    network_rule = groups["default_network_rule_collection_group"]["network_rule_collection"][0][
        "rule"
    ][0]
    assert network_rule["protocols"] == ["UDP"]
    assert network_rule["source_addresses"] == "${var.source_addresses}"
    assert "firewall_policy_id" in data["variable"][0]


def test_terraform_round_trip_gives_an_equal_model(policy: Policy, tmp_path: Path) -> None:
    path = tmp_path / "groups.tf"
    path.write_text(export_policy(policy, "terraform"))

    assert import_policy(path) == expand_fqdn_tags(policy)


# --- az CLI --------------------------------------------------------------------------------


def test_azcli_script_passes_bash_syntax_check(policy: Policy, tmp_path: Path) -> None:
    script = tmp_path / "apply.sh"
    script.write_text(export_policy(policy, "azcli"))
    result = subprocess.run(
        ["bash", "-n", str(script)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def _run_with_fake_az(text: str, tmp_path: Path) -> list[list[str]]:
    """Runs the script with an `az` that records its arguments: one call per line."""
    log = tmp_path / "calls"
    fake = tmp_path / "bin" / "az"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" >> {log}\nprintf "\\n" >> {log}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    script = tmp_path / "apply.sh"
    script.write_text(text)
    (tmp_path / "decoy.test").write_text("")  # a file a stray `*` glob would expand to
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "RG": "rg-build"}
    subprocess.run(["bash", str(script)], check=True, cwd=tmp_path, env=env, timeout=30)
    return [line.split("\0")[:-1] for line in log.read_text().splitlines()]


def _option(call: list[str], name: str) -> list[str]:
    start = call.index(name) + 1
    values = []
    for item in call[start:]:
        if item.startswith("--"):
            break
        values.append(item)
    return values


def test_azcli_creates_groups_then_collections_then_rules_with_values_intact(
    policy: Policy, tmp_path: Path
) -> None:
    calls = _run_with_fake_az(export_policy(policy, "azcli"), tmp_path)
    verbs = [" ".join(call[:6]) for call in calls]

    group = "network firewall policy rule-collection-group"
    assert [v.removeprefix(group).split()[0:2] for v in verbs] == [
        ["create", "--resource-group"],
        ["collection", "add-filter-collection"],
        ["collection", "rule"],
        ["create", "--resource-group"],
        ["collection", "add-filter-collection"],
        ["collection", "add-filter-collection"],
        ["collection", "rule"],
        ["create", "--resource-group"],
        ["collection", "add-filter-collection"],
    ]
    assert all(_option(call, "--resource-group") == ["rg-build"] for call in calls)
    assert all(_option(call, "--policy-name") == ["contoso-build"] for call in calls)
    deny = calls[4]
    assert _option(deny, "--action") == ["Deny"]
    assert _option(deny, "--source-addresses") == ["*"]  # not globbed to decoy.test
    assert _option(deny, "--protocols") == ["Https=443", "Http=80"]
    assert _option(deny, "--collection-priority") == ["100"]
    kudu = calls[6]
    assert _option(kudu, "--collection-name") == ["allow-build"]
    assert _option(kudu, "--target-fqdns") == [
        "*packages.test", "*.scm.azurewebsites.test", "*.azurewebsites.test"
    ]  # fmt: skip
    assert _option(kudu, "--source-addresses") == ["10.20.1.0/24"]
    git = calls[2]
    assert _option(git, "--description") == ["git clone over ssh from the build"]
    assert _option(git, "--destination-ports") == ["22", "9418-9419"]
    assert _option(git, "--destination-fqdns") == ["git.contoso.test"]


def test_azcli_quotes_values_with_shell_characters(tmp_path: Path) -> None:
    from harness.policy.model import RuleCollection, RuleCollectionGroup

    rule = ApplicationRule(
        "r", ("*",), description="a; rm -rf / $(x) 'q'", target_fqdns=("a.test",)
    )
    policy = Policy(
        "p", (RuleCollectionGroup("G", 300, (RuleCollection("c", 100, "Allow", (rule,)),)),)
    )
    calls = _run_with_fake_az(export_policy(policy, "azcli"), tmp_path)

    assert _option(calls[1], "--description") == ["a; rm -rf / $(x) 'q'"]


# --- classic -------------------------------------------------------------------------------


def test_classic_flattens_groups_and_renumbers_clashing_priorities(
    policy: Policy, tmp_path: Path
) -> None:
    fragment = json.loads(export_policy(policy, "classic-arm"))
    collections = fragment["properties"]["applicationRuleCollections"]

    assert fragment["type"] == "Microsoft.Network/azureFirewalls"
    assert [(c["name"], c["properties"]["priority"]) for c in collections] == [
        ("deny-telemetry", 100), ("allow-build", 200), ("allow-site", 300)
    ]  # fmt: skip
    assert any("renumbered" in note for note in fragment["_notes"])
    rule = collections[0]["properties"]["rules"][0]
    assert set(rule) == {"name", "protocols", "targetFqdns", "fqdnTags", "sourceAddresses"}
    network = fragment["properties"]["networkRuleCollections"][0]["properties"]["rules"][0]
    assert network["protocols"] == ["UDP"]


def test_classic_reads_back_and_decides_like_the_policy(policy: Policy, tmp_path: Path) -> None:
    path = tmp_path / "firewall.json"
    path.write_text(export_policy(policy, "classic-arm"))
    classic = load_policy(path)
    requests = [
        Request("HTTPS", "10.20.1.5", 5000, 443, "203.0.113.9", "telemetry.cdn.test"),
        Request("HTTPS", "10.20.1.5", 5000, 443, "203.0.113.9", "img.cdn.test"),
        Request("HTTP", "10.20.1.5", 5000, 80, "203.0.113.9", "x.scm.azurewebsites.test"),
        Request("HTTPS", "10.20.1.5", 5000, 443, "203.0.113.9", "contoso-app.azurewebsites.test"),
        Request("HTTPS", "10.99.0.1", 5000, 443, "203.0.113.9", "img.cdn.test"),
        Request("UDP", "10.20.1.5", 5000, 123, "203.0.113.7"),
        Request("TCP", "10.20.1.5", 5000, 9419, "203.0.113.8", "git.contoso.test"),
        Request("HTTPS", "10.20.1.5", 5000, 443, "203.0.113.9", "elsewhere.test"),
    ]
    original, flattened = Decider(policy), Decider(classic)
    for request in requests:
        want, got = original.decide(request), flattened.decide(request)
        assert (got.would, got.rule and got.rule.rule) == (want.would, want.rule and want.rule.rule)


# --- options -------------------------------------------------------------------------------


def _all_rules(policy: Policy) -> list[ApplicationRule | NetworkRule]:
    return [
        rule
        for group in policy.rule_collection_groups
        for collection in group.rule_collections
        for rule in collection.rules
    ]


@pytest.mark.parametrize("fmt,suffix", [("arm", "json"), ("terraform", "tf")])
def test_source_addresses_option_sets_every_rule(
    policy: Policy, fmt: str, suffix: str, tmp_path: Path
) -> None:
    path = tmp_path / f"out.{suffix}"
    path.write_text(export_policy(policy, fmt, source_addresses=("10.30.0.0/26", "10.30.0.64/26")))
    back = import_policy(path)

    assert {rule.source_addresses for rule in _all_rules(back)} == {
        ("10.30.0.0/26", "10.30.0.64/26")
    }


def test_source_addresses_option_is_the_arm_parameter_every_rule_uses(policy: Policy) -> None:
    template = json.loads(export_policy(policy, "arm", source_addresses=("10.30.0.0/26",)))

    assert template["parameters"]["sourceAddresses"]["defaultValue"] == ["10.30.0.0/26"]
    text = json.dumps(template["resources"])
    assert text.count('"sourceAddresses": "[parameters(\'sourceAddresses\')]"') == 6


def test_group_option_merges_everything_into_one_group_in_precedence_order(
    policy: Policy, tmp_path: Path
) -> None:
    path = tmp_path / "one.json"
    path.write_text(export_policy(policy, "arm", group_name="EgressBuild", group_priority=250))
    back = load_policy(path)

    (group,) = back.rule_collection_groups
    assert (group.name, group.priority) == ("EgressBuild", 250)
    assert [(c.name, c.priority) for c in group.rule_collections] == [
        ("allow-ntp", 100), ("deny-telemetry", 200), ("allow-build", 300), ("allow-site", 400)
    ]  # fmt: skip
    assert _all_rules(back) == _all_rules(expand_fqdn_tags(policy))


def test_group_priority_alone_keeps_the_first_group_name(policy: Policy) -> None:
    template = json.loads(export_policy(policy, "arm", group_priority=500))

    (resource,) = template["resources"]
    assert resource["name"].endswith("'DefaultNetworkRuleCollectionGroup')]")
    assert resource["properties"]["priority"] == 500


def test_collection_priority_option_renumbers_each_group_from_it(
    policy: Policy, tmp_path: Path
) -> None:
    path = tmp_path / "c.tf"
    path.write_text(export_policy(policy, "terraform", collection_priority=1000))
    back = import_policy(path)

    assert [[c.priority for c in g.rule_collections] for g in back.rule_collection_groups] == [
        [1000], [1000, 1100], [1000]
    ]  # fmt: skip


@pytest.mark.parametrize(
    "options,message",
    [
        ({"group_priority": 70000}, "--priority: priority 70000 is outside 100..65000"),
        ({"collection_priority": 50}, "--collection-priority: priority 50 is outside"),
        ({"source_addresses": ("10.0.0.0/33",)}, "--source-addresses: '10.0.0.0/33' is not"),
        ({"source_addresses": ()}, "--source-addresses: no source addresses given"),
        ({"group_name": "_bad name"}, "--group: '_bad name' is not a valid"),
    ],
)
def test_bad_options_are_input_errors_naming_the_option(
    policy: Policy, options: dict[str, Any], message: str
) -> None:
    from harness.errors import InputError

    with pytest.raises(InputError) as caught:
        export_policy(policy, "arm", **options)
    assert str(caught.value).startswith(message)
