"""harness.policy.arm: ARM templates (with expressions and IP groups), az output, classic rules.

Bad templates are a table: each case changes a valid template and names a text that appears on
exactly one line (with an optional line offset): the line the error must point at."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.errors import InputError
from harness.policy.load import load_policy
from harness.policy.model import ALLOW, DENY, ApplicationRule, NetworkRule, Protocol

DATA = Path(__file__).parent / "data"


# --- good inputs ---------------------------------------------------------------------------


def test_template_groups_resolve_names_priorities_and_ip_groups() -> None:
    policy = load_policy(DATA / "arm_fw_policy.json")

    assert policy.name == "fwpolicy-build"
    assert [(g.name, g.priority) for g in policy.rule_collection_groups] == [
        ("DefaultNetworkRuleCollectionGroup", 200),  # a child of the policy resource
        ("DefaultApplicationRuleCollectionGroup", 300),  # priority from a parameter
    ]
    network = policy.rule_collection_groups[0]
    ntp, azure_cloud = network.rule_collections[0].rules
    assert ntp == NetworkRule(
        "ntp", ip_protocols=("UDP",), source_addresses=("10.20.0.0/24", "10.20.1.4"),
        destination_addresses=("*",), destination_ports=("123",),
    )  # fmt: skip
    assert isinstance(azure_cloud, NetworkRule)
    assert azure_cloud.source_addresses == ("10.10.1.0/24",)
    assert azure_cloud.destination_addresses == ("AzureCloud", "Storage.WestEurope")
    assert azure_cloud.destination_ports == ("443", "8000-8080")


def test_template_application_collections_keep_order_actions_and_skip_dnat() -> None:
    application = load_policy(DATA / "arm_fw_policy.json").rule_collection_groups[1]

    assert [(c.name, c.priority, c.action) for c in application.rule_collections] == [
        ("allow-build", 110, ALLOW),
        ("block-telemetry", 100, DENY),  # written "deny"
    ]
    assert application.rule_collections[0].rules[0] == ApplicationRule(
        "package-index",
        source_addresses=("10.10.1.0/24",),
        protocols=(Protocol("Https", 443), Protocol("Http", 80)),
        target_fqdns=("pypi.mirror.test", "*.files.mirror.test"),
    )


def test_az_show_output_loads_with_the_policy_name_from_its_id() -> None:
    policy = load_policy(DATA / "az_rcg_show.json")

    assert policy.name == "fwpolicy-az"
    (group,) = policy.rule_collection_groups
    assert (group.name, group.priority) == ("DefaultApplicationRuleCollectionGroup", 300)
    assert group.rule_collections[0].rules[0] == ApplicationRule(
        "oryx-cdn", source_addresses=("10.0.2.0/24",), protocols=(Protocol("Https", 443),),
        target_fqdns=("oryx-cdn.cdn.test",),
    )  # fmt: skip


def test_az_list_output_loads_every_group(tmp_path: Path) -> None:
    shown = json.loads((DATA / "az_rcg_show.json").read_text())
    second = copy.deepcopy(shown)
    second.update(name="Extra", priority=400)
    file = tmp_path / "list.json"
    file.write_text(json.dumps([shown, second], indent=2))

    policy = load_policy(file)

    assert [(g.name, g.priority) for g in policy.rule_collection_groups] == [
        ("DefaultApplicationRuleCollectionGroup", 300),
        ("Extra", 400),
    ]


def test_a_bare_list_of_group_resources_takes_the_policy_name_from_the_group_name(
    tmp_path: Path,
) -> None:
    resources = [
        {
            "name": "fwpolicy-bare/Egress",
            "properties": {
                "priority": 500,
                "ruleCollections": [
                    {
                        "ruleCollectionType": "FirewallPolicyFilterRuleCollection",
                        "name": "allow",
                        "priority": 100,
                        "action": {"type": "Allow"},
                        "rules": [
                            {
                                "ruleType": "ApplicationRule",
                                "name": "all-https",
                                "protocols": [{"protocolType": "Https", "port": 443}],
                                "targetFqdns": ["*"],
                                "sourceAddresses": ["*"],
                            }
                        ],
                    }
                ],
            },
        }
    ]
    file = tmp_path / "groups.json"
    file.write_text(json.dumps(resources))

    policy = load_policy(file)

    assert policy.name == "fwpolicy-bare"
    assert [(g.name, g.priority) for g in policy.rule_collection_groups] == [("Egress", 500)]
    assert policy.rule_collection_groups[0].rule_collections[0].rules[0].target_fqdns == ("*",)


def test_classic_rule_collections_become_a_network_and_an_application_group() -> None:
    policy = load_policy(DATA / "classic_firewall.json")

    assert policy.name == "fw-classic"
    assert [(g.name, g.priority) for g in policy.rule_collection_groups] == [
        ("ClassicNetworkRuleCollections", 200),
        ("ClassicApplicationRuleCollections", 300),
    ]
    network, application = policy.rule_collection_groups
    assert network.rule_collections[0].rules[0] == NetworkRule(
        "dns", ip_protocols=("UDP", "TCP"), source_addresses=("10.0.2.0/24",),
        destination_addresses=("192.0.2.53",), destination_ports=("53",),
    )  # fmt: skip
    packages, sql = application.rule_collections[0].rules
    assert isinstance(sql, ApplicationRule) and isinstance(packages, ApplicationRule)
    assert packages.protocols == (Protocol("Http", 80), Protocol("Https", 443))
    assert sql.protocols == (Protocol("Mssql", 1433),)  # Mssql exists only in classic rules


def test_az_firewall_show_output_with_flattened_classic_collections(tmp_path: Path) -> None:
    shown = {
        "name": "fw-az-classic",
        "applicationRuleCollections": [
            {
                "name": "apps",
                "priority": 200,
                "action": {"type": "Deny"},
                "rules": [
                    {
                        "name": "block",
                        "protocols": [{"protocolType": "Http", "port": 80}],
                        "targetFqdns": ["plain.test"],
                        "sourceAddresses": ["*"],
                        "fqdnTags": [],
                    }
                ],
            }
        ],
        "networkRuleCollections": [],
        "natRuleCollections": [],
        "provisioningState": "Succeeded",
    }
    file = tmp_path / "fw.json"
    file.write_text(json.dumps(shown))

    policy = load_policy(file)

    assert policy.name == "fw-az-classic"
    (group,) = policy.rule_collection_groups
    assert (group.name, group.rule_collections[0].action) == (
        "ClassicApplicationRuleCollections",
        DENY,
    )


def test_language_version_2_templates_with_symbolic_resources_load(tmp_path: Path) -> None:
    template = base_template()
    template["languageVersion"] = "2.0"
    template["resources"] = {"group": template["resources"][0]}
    file = tmp_path / "v2.json"
    file.write_text(json.dumps(template, indent=2))

    policy = load_policy(file)

    assert [g.name for g in policy.rule_collection_groups] == ["Egress"]


@pytest.mark.parametrize(
    "name_expression, group_name",
    [
        ("[format('{0}/{1}', parameters('policyName'), 'Egress')]", "Egress"),
        ("[concat(parameters('policyName'), '/', variables('groupName'))]", "FromVariable"),
        ("[format('{0}/{{literal}}-{1}', 'p', toLower('ABC'))]", "{literal}-abc"),
        ("[concat('p/', 'it''s')]", "it's"),
        ("[[not-an-expression]", "[not-an-expression]"),
        ("[concat('p/', last(split(variables('qualified'), '.')))]", "tail"),
    ],
)
def test_group_names_come_from_the_templates_own_expressions(
    tmp_path: Path, name_expression: str, group_name: str
) -> None:
    template = base_template()
    template["variables"] = {"groupName": "FromVariable", "qualified": "a.b.tail"}
    template["resources"][0]["name"] = name_expression
    file = tmp_path / "t.json"
    file.write_text(json.dumps(template, indent=2))

    assert load_policy(file).rule_collection_groups[0].name == group_name


def test_every_required_parameter_without_a_value_is_named_in_one_error(tmp_path: Path) -> None:
    template = base_template()
    template["parameters"]["policyName"] = {"type": "string"}
    template["parameters"]["adminPassword"] = {"type": "securestring"}
    template["parameters"]["tags"] = {"type": "object", "nullable": True}
    file = tmp_path / "unnamed.json"
    file.write_text(json.dumps(template, indent=2))

    with pytest.raises(InputError) as caught:
        load_policy(file)

    message = str(caught.value)
    assert "2 required parameter(s) have no value: policyName (line 5), adminPassword" in message
    assert "tags" not in message.split(";")[0]  # nullable: null is its value
    assert "--parameters main.parameters.json" in message


# --- bad inputs ----------------------------------------------------------------------------


def base_template() -> dict[str, Any]:
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"policyName": {"type": "string", "defaultValue": "fwpolicy-t"}},
        "resources": [
            {
                "type": "Microsoft.Network/firewallPolicies/ruleCollectionGroups",
                "apiVersion": "2023-09-01",
                "name": "[format('{0}/{1}', parameters('policyName'), 'Egress')]",
                "properties": {
                    "priority": 300,
                    "ruleCollections": [
                        {
                            "ruleCollectionType": "FirewallPolicyFilterRuleCollection",
                            "name": "allow-app",
                            "priority": 100,
                            "action": {"type": "Allow"},
                            "rules": [
                                {
                                    "ruleType": "ApplicationRule",
                                    "name": "app",
                                    "protocols": [{"protocolType": "Https", "port": 443}],
                                    "targetFqdns": ["pkg.test"],
                                    "sourceAddresses": ["*"],
                                }
                            ],
                        },
                        {
                            "ruleCollectionType": "FirewallPolicyFilterRuleCollection",
                            "name": "allow-net",
                            "priority": 200,
                            "action": {"type": "Allow"},
                            "rules": [
                                {
                                    "ruleType": "NetworkRule",
                                    "name": "net",
                                    "ipProtocols": ["TCP"],
                                    "sourceAddresses": ["*"],
                                    "destinationAddresses": ["192.0.2.1"],
                                    "destinationPorts": ["22"],
                                }
                            ],
                        },
                    ],
                },
            }
        ],
    }


Template = dict[str, Any]


def group_properties(template: Template) -> dict[str, Any]:
    return template["resources"][0]["properties"]


def app_rule(template: Template) -> dict[str, Any]:
    return group_properties(template)["ruleCollections"][0]["rules"][0]


def net_rule(template: Template) -> dict[str, Any]:
    return group_properties(template)["ruleCollections"][1]["rules"][0]


def add_ip_group(template: Template) -> None:
    template["resources"].append(
        {
            "type": "Microsoft.Network/ipGroups",
            "apiVersion": "2023-09-01",
            "name": "ipg-build",
            "properties": {"ipAddresses": ["10.0.0.0/24", "10.0.0.300"]},
        }
    )


def set_in(
    getter: Callable[[Template], dict[str, Any]], key: str, value: Any
) -> Callable[[Template], None]:
    def change(template: Template) -> None:
        getter(template)[key] = value

    return change


def two_policies(template: Template) -> None:
    other = copy.deepcopy(template["resources"][0])
    other["name"] = "other-policy/Second"
    other["properties"]["priority"] = 400
    template["resources"].append(other)


def rename_key(
    getter: Callable[[Template], dict[str, Any]], old: str, new: str
) -> Callable[[Template], None]:
    def change(template: Template) -> None:
        mapping = getter(template)
        mapping[new] = mapping.pop(old)

    return change


RG = "resources[0].properties"
APP = f"{RG}.ruleCollections[0].rules[0]"
NET = f"{RG}.ruleCollections[1].rules[0]"

ARM_CASES = [
    ("group-priority-out-of-range", set_in(group_properties, "priority", 70000),
     '"priority": 70000', f"{RG}.priority", "priority 70000 is outside 100..65000"),
    ("duplicate-collection-priority",
     lambda t: group_properties(t)["ruleCollections"][1].update(priority=100),
     ('"name": "allow-net"', 1), f"{RG}.ruleCollections[1].priority",
     "collection priority 100 is also used by collection 'allow-app'"),
    ("unknown-collection-key",
     rename_key(lambda t: group_properties(t)["ruleCollections"][0], "priority", "priorty"),
     '"priorty"', f"{RG}.ruleCollections[0].priorty",
     "unknown key 'priorty'; did you mean 'priority'?"),
    ("parameter-without-default",
     lambda t: (t["parameters"].update(prio={"type": "int"}),
                group_properties(t).update(priority="[parameters('prio')]")),
     '"prio"', "parameters.prio",
     ("the template: 1 required parameter(s) have no value: prio (line 9); give them, as az"
      " deployment takes them: --parameters main.parameters.json")),
    ("undefined-variable", set_in(app_rule, "sourceAddresses", ["[variables('subnet')]"]),
     "[variables('subnet')]", f"{APP}.sourceAddresses[0]",
     "cannot resolve variables('subnet'): the template does not define it"),
    ("reference-function",
     set_in(app_rule, "sourceAddresses",
            ["[reference(resourceId('Microsoft.Network/virtualNetworks', 'v')).addressSpace]"]),
     "[reference(", f"{APP}.sourceAddresses[0]",
     "reference() has a value only during a deployment in Azure"),
    ("group-name-unresolvable",
     lambda t: t["resources"][0].update(name="[concat(parameters('policyName'), '/', "
                                             "parameters('groupName'))]"),
     "parameters('groupName')", "resources[0].name",
     "cannot resolve parameters('groupName'): the template does not declare it"),
    ("ip-group-not-in-template",
     set_in(app_rule, "sourceIpGroups",
            ["[resourceId('Microsoft.Network/ipGroups', 'ipg-missing')]"]),
     "ipg-missing", f"{APP}.sourceIpGroups[0]",
     "IP group 'ipg-missing' is not defined in this file"),
    ("ip-group-bad-address",
     lambda t: (add_ip_group(t), net_rule(t).update(
         destinationIpGroups=["[resourceId('Microsoft.Network/ipGroups', 'ipg-build')]"])),
     '"10.0.0.300"', "resources[1].properties.ipAddresses[1]",
     "'10.0.0.300' is not an IP address"),
    ("protocol-type", set_in(app_rule, "protocols", [{"protocolType": "Ftp", "port": 21}]),
     '"Ftp"', f"{APP}.protocols[0].protocolType", "protocol type 'Ftp' is not Http or Https"),
    ("protocol-port", set_in(app_rule, "protocols", [{"protocolType": "Https", "port": 64500}]),
     '"port": 64500', f"{APP}.protocols[0].port", "port 64500 is outside 0..64000"),
    ("wildcard-fqdn", set_in(app_rule, "targetFqdns", ["www.contoso.*"]),
     '"www.contoso.*"', f"{APP}.targetFqdns[0]", "'www.contoso.*' has '*'"),
    ("network-fqdn-wildcard", set_in(net_rule, "destinationFqdns", ["*.contoso.test"]),
     '"*.contoso.test"', f"{NET}.destinationFqdns[0]", "network rules take exact names only"),
    ("name-as-destination-address", set_in(net_rule, "destinationAddresses", ["contoso.test"]),
     '"contoso.test"', f"{NET}.destinationAddresses[0]", "names go in destination_fqdns"),
    ("bad-port", set_in(net_rule, "destinationPorts", ["22", "2000-1000"]),
     '"2000-1000"', f"{NET}.destinationPorts[1]", "runs backwards"),
    ("no-sources", set_in(app_rule, "sourceAddresses", []),
     '"sourceAddresses": []', f"{APP}.sourceAddresses", "the rule has no source addresses"),
    ("nat-rule-in-filter-collection", set_in(net_rule, "ruleType", "NatRule"),
     '"NatRule"', f"{NET}.ruleType", "'NatRule' is not ApplicationRule or NetworkRule"),
    ("premium-target-urls", set_in(app_rule, "targetUrls", ["pkg.test/simple"]),
     '"targetUrls"', f"{APP}.targetUrls", "target URLs need TLS inspection"),
    ("action-type", lambda t: group_properties(t)["ruleCollections"][0].update(
        action={"type": "Reject"}),
     '"Reject"', f"{RG}.ruleCollections[0].action.type", "action 'Reject' is not Allow or Deny"),
    ("two-policies", two_policies,
     '"other-policy/Second"', "resources[1].name", "the file defines groups of more than one"),
    ("no-groups", lambda t: t["resources"][0].update(type="Microsoft.Storage/storageAccounts"),
     ('"$schema"', -1), "", "the template holds no Microsoft.Network/firewallPolicies"),
]  # fmt: skip


@pytest.mark.parametrize(
    "change, needle, key_path, fragment", [c[1:] for c in ARM_CASES], ids=[c[0] for c in ARM_CASES]
)
def test_bad_template_is_an_input_error_at_its_line_and_key_path(
    tmp_path: Path,
    change: Callable[[Template], None],
    needle: str | tuple[str, int],
    key_path: str,
    fragment: str,
) -> None:
    template = base_template()
    change(template)
    text = json.dumps(template, indent=2)
    needle, offset = needle if isinstance(needle, tuple) else (needle, 0)
    lines = [n for n, row in enumerate(text.splitlines(), 1) if needle in row]
    assert len(lines) == 1, f"needle {needle!r} is on lines {lines}"
    line = lines[0] + offset
    file = tmp_path / "template.json"
    file.write_text(text)

    with pytest.raises(InputError) as caught:
        load_policy(file)

    message = str(caught.value)
    assert message.startswith(f"{file}:{line}:"), message
    if key_path:
        assert f": {key_path}: " in message, message
    assert fragment in message, message
    assert caught.value.fix, f"no fix offered: {message}"


def test_the_base_template_is_valid(tmp_path: Path) -> None:
    file = tmp_path / "template.json"
    file.write_text(json.dumps(base_template(), indent=2))

    policy = load_policy(file)

    assert policy.name == "fwpolicy-t"
    assert [c.name for c in policy.rule_collection_groups[0].rule_collections] == [
        "allow-app",
        "allow-net",
    ]


def test_classic_rules_are_checked_with_their_own_key_paths(tmp_path: Path) -> None:
    firewall = json.loads((DATA / "classic_firewall.json").read_text())
    rules = firewall["resources"][0]["properties"]["networkRuleCollections"][0]["properties"]
    rules["rules"][0]["protocols"] = ["UDP", "GRE"]
    file = tmp_path / "classic.json"
    text = json.dumps(firewall, indent=2)
    file.write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if '"GRE"' in row)

    with pytest.raises(InputError) as caught:
        load_policy(file)

    message = str(caught.value)
    assert message.startswith(f"{file}:{line}:"), message
    assert message.split(": ", 1)[1].startswith(
        "resources[0].properties.networkRuleCollections[0].properties.rules[0].protocols[1]:"
        " IP protocol 'GRE' is not TCP, UDP, ICMP or Any"
    ), message


def test_az_policy_show_output_says_to_export_the_groups(tmp_path: Path) -> None:
    file = tmp_path / "policy.json"
    file.write_text(json.dumps({
        "name": "fwpolicy-az", "threatIntelMode": "Alert",
        "ruleCollectionGroups": [{"id": "/subscriptions/x/.../ruleCollectionGroups/G"}],
    }, indent=2))  # fmt: skip

    with pytest.raises(InputError, match="rule-collection-group list") as caught:
        load_policy(file)

    assert str(caught.value).startswith(f"{file}:1:1: this is a firewallPolicies resource")


def test_a_json_syntax_error_points_at_its_line(tmp_path: Path) -> None:
    file = tmp_path / "broken.json"
    file.write_text('{\n  "resources": [\n    {"name": "x",}\n  ]\n}\n')

    with pytest.raises(InputError, match="JSON syntax error") as caught:
        load_policy(file)

    assert str(caught.value).startswith(f"{file}:3:")
