"""harness.export.importer: Terraform rule collection groups to the model, errors that name the
file, line and block, and the other forms through load_policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import InputError
from harness.export import import_policy, import_to_yaml, policy_of
from harness.policy.load import load_policy
from harness.policy.model import ALLOW, DENY, ApplicationRule, NetworkRule, Protocol

GROUP = """
resource "azurerm_firewall_policy" "build" {{
  name                = "fw-build"
  resource_group_name = "rg"
  location            = "westeurope"
}}

resource "azurerm_firewall_policy_rule_collection_group" "apps" {{
  name               = "Apps"
  firewall_policy_id = azurerm_firewall_policy.build.id
  priority           = 300
{body}
}}
"""

APPLICATION = """
  application_rule_collection {
    name     = "allow-cdn"
    priority = 200
    action   = "Allow"
    rule {
      name = "cdn"
      protocols {
        type = "Https"
        port = 443
      }
      source_addresses  = ["10.0.0.0/24"]
      destination_fqdns = ["*.cdn.test"]
    }
  }
"""

NETWORK = """
  network_rule_collection {
    name     = "deny-ssh"
    priority = 100
    action   = "Deny"
    rule {
      name                  = "ssh"
      protocols             = ["TCP"]
      source_addresses      = ["*"]
      destination_addresses = ["0.0.0.0/0"]
      destination_ports     = ["22"]
    }
  }
"""


def _write(tmp_path: Path, text: str, name: str = "fw.tf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_terraform_groups_become_the_model_with_collections_in_priority_order(
    tmp_path: Path,
) -> None:
    policy = import_policy(_write(tmp_path, GROUP.format(body=APPLICATION + NETWORK)))

    assert policy.name == "fw-build"  # from the azurerm_firewall_policy the groups refer to
    (group,) = policy.rule_collection_groups
    assert (group.name, group.priority) == ("Apps", 300)
    deny, allow = group.rule_collections
    assert (deny.name, deny.action, allow.name, allow.action) == (
        "deny-ssh",
        DENY,
        "allow-cdn",
        ALLOW,
    )
    assert deny.rules == (
        NetworkRule("ssh", ("TCP",), ("*",), ("0.0.0.0/0",), destination_ports=("22",)),
    )
    assert allow.rules == (
        ApplicationRule("cdn", ("10.0.0.0/24",), (Protocol("Https", 443),), ("*.cdn.test",)),
    )


def test_variables_and_locals_resolve_to_their_values(tmp_path: Path) -> None:
    text = """
variable "subnet" {
  type    = list(string)
  default = ["10.1.0.0/24"]
}
variable "group_priority" {
  default = 450
}
locals {
  cdn = "*.cdn.test"
}
""" + GROUP.format(body=APPLICATION).replace('["10.0.0.0/24"]', "var.subnet").replace(
        '["*.cdn.test"]', "[local.cdn]"
    ).replace("priority           = 300", "priority           = var.group_priority")
    policy = import_policy(_write(tmp_path, text))

    group = policy.rule_collection_groups[0]
    assert group.priority == 450
    rule = group.rule_collections[0].rules[0]
    assert rule.source_addresses == ("10.1.0.0/24",)
    assert rule.target_fqdns == ("*.cdn.test",)


def test_policy_name_falls_back_to_the_file_stem(tmp_path: Path) -> None:
    text = GROUP.format(body=APPLICATION).replace(
        "azurerm_firewall_policy.build.id", "var.firewall_policy_id"
    )
    assert import_policy(_write(tmp_path, text, "edge-policy.tf")).name == "edge-policy"


def test_nat_rule_collections_are_checked_and_noted_not_dropped(tmp_path: Path) -> None:
    nat = """
  nat_rule_collection {
    name     = "inbound"
    priority = 400
    action   = "Dnat"
    rule {
      name                = "rdp"
      protocols           = ["TCP"]
      source_addresses    = ["*"]
      destination_address = "192.0.2.10"
      destination_ports   = ["3389"]
      translated_address  = "10.0.0.4"
      translated_port     = "3389"
    }
  }
"""
    policy = import_policy(_write(tmp_path, GROUP.format(body=APPLICATION + nat)))
    assert [c.name for c in policy.rule_collection_groups[0].rule_collections] == ["allow-cdn"]
    assert policy.warnings == (
        ("azurerm_firewall_policy_rule_collection_group.apps: DNAT collection 'inbound'"
        " (group 'Apps', 1 rule(s)) is inbound and not simulated"),
    )
    assert "# warning: azurerm_firewall_policy_rule_collection_group.apps: DNAT collection" in (
        import_to_yaml(tmp_path / "fw.tf")
    )


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(InputError) as caught:
        import_policy(_write(tmp_path, text))
    return str(caught.value)


def _line_of(text: str, needle: str) -> int:
    (number,) = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    return number


def test_a_bad_fqdn_names_file_line_and_terraform_key_path(tmp_path: Path) -> None:
    text = GROUP.format(body=NETWORK + APPLICATION.replace("*.cdn.test", "www.cdn.*"))
    message = _error(tmp_path, text)

    line = _line_of(text, "www.cdn.*")
    prefix = (
        f"{tmp_path / 'fw.tf'}:{line}:7: azurerm_firewall_policy_rule_collection_group.apps"
        ".application_rule_collection[0].rule[0].destination_fqdns[0]: 'www.cdn.*' has '*'"
    )
    assert message.startswith(prefix)


def test_an_unknown_rule_argument_suggests_the_terraform_name(tmp_path: Path) -> None:
    text = GROUP.format(body=APPLICATION.replace("destination_fqdns", "destination_fqdn"))
    message = _error(tmp_path, text)
    assert "rule[0].destination_fqdn: unknown key 'destination_fqdn'" in message
    assert "did you mean 'destination_fqdns'?" in message


def test_microsoft_managed_fqdn_tags_load_and_define_no_fqdns(tmp_path: Path) -> None:
    text = GROUP.format(
        body=APPLICATION.replace(
            'destination_fqdns = ["*.cdn.test"]', 'destination_fqdn_tags = ["WindowsUpdate"]'
        )
    )
    policy = import_policy(_write(tmp_path, text))
    rule = policy.rule_collection_groups[0].rule_collections[0].rules[0]
    assert isinstance(rule, ApplicationRule) and rule.fqdn_tags == ("WindowsUpdate",)
    assert policy.fqdn_tag("WindowsUpdate") is None


def test_an_unresolvable_expression_names_the_block(tmp_path: Path) -> None:
    text = GROUP.format(body=APPLICATION.replace('["10.0.0.0/24"]', "var.missing"))
    message = _error(tmp_path, text)
    assert "application_rule_collection[0].rule[0].source_addresses" in message
    assert "var.missing is not declared" in message


def test_duplicate_collection_priority_is_refused(tmp_path: Path) -> None:
    text = GROUP.format(body=APPLICATION + NETWORK.replace("priority = 100", "priority = 200"))
    assert "collection priority 200 is also used by collection 'allow-cdn'" in _error(
        tmp_path, text
    )


def test_count_makes_one_group_per_index(tmp_path: Path) -> None:
    text = GROUP.format(body="  count = 2\n" + APPLICATION).replace(
        'name               = "Apps"', 'name               = "Apps-${count.index}"'
    ).replace("priority           = 300", "priority           = 300 + count.index * 10")
    policy = import_policy(_write(tmp_path, text))
    assert [(g.name, g.priority) for g in policy.rule_collection_groups] == [
        ("Apps-0", 300),
        ("Apps-1", 310),
    ]


def test_syntax_errors_point_at_line_and_column(tmp_path: Path) -> None:
    message = _error(tmp_path, 'resource "a" "b" {\n  name = \n}\n')
    assert message.startswith(f"{tmp_path / 'fw.tf'}:2:")
    assert "not valid Terraform" in message


def test_a_file_without_groups_says_so(tmp_path: Path) -> None:
    assert "no azurerm_firewall_policy_rule_collection_group or classic" in _error(
        tmp_path, 'variable "x" {\n  default = 1\n}\n'
    )


def test_other_forms_go_through_load_policy(tmp_path: Path) -> None:
    path = _write(tmp_path, "allow: [a.test]\n", "p.yaml")
    assert import_policy(path) == load_policy(path)


def test_import_to_yaml_reads_back_to_the_same_model(tmp_path: Path) -> None:
    policy = import_policy(_write(tmp_path, GROUP.format(body=APPLICATION + NETWORK)))
    text = import_to_yaml(tmp_path / "fw.tf")
    assert text.startswith("# Generated by egress-harness import from")

    assert load_policy(_write(tmp_path, text, "back.yaml")) == policy


def test_a_recording_folder_gives_its_effective_policy(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "20261128T120000Z-build"
    run.mkdir(parents=True)
    (run / "policy.yaml").write_text("name: recorded\nallow: [a.test]\n")

    assert policy_of(run).name == "recorded"
    with pytest.raises(InputError, match="without policy.yaml"):
        policy_of(tmp_path)
