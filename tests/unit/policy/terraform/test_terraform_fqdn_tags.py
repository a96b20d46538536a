"""A Microsoft-managed FQDN tag in Terraform (`destination_fqdn_tags`) loads with a warning and
matches only the FQDNs `--fqdn-tags FILE` gives it, as in ARM templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

CONFIGURATION = """\
resource "azurerm_firewall_policy" "fw" {
  name                = "fw-policy"
  resource_group_name = "rg"
  location            = "westeurope"
}

resource "azurerm_firewall_policy_rule_collection_group" "apps" {
  name               = "apps"
  firewall_policy_id = azurerm_firewall_policy.fw.id
  priority           = 300
  application_rule_collection {
    name     = "windows"
    priority = 100
    action   = "Allow"
    rule {
      name = "wu"
      protocols {
        type = "Https"
        port = 443
      }
      source_addresses      = ["*"]
      destination_fqdn_tags = ["WindowsUpdate"]
    }
  }
}
"""


@pytest.fixture
def configuration(tmp_path: Path) -> Path:
    (tmp_path / "main.tf").write_text(CONFIGURATION)
    (tmp_path / "tags.yaml").write_text('WindowsUpdate: ["*.update.example.test"]\n')
    return tmp_path


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict, str]:
    assert main(["check", *args, "--json", "x.update.example.test"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out.splitlines()[0]), captured.err


def test_a_managed_tag_without_fqdns_matches_nothing_and_says_so(
    configuration: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    decision, err = _check(capsys, str(configuration / "main.tf"))
    assert decision["action"] == "Deny"
    assert "main.tf:22:7:" in err and "FQDN tag 'WindowsUpdate' (Microsoft-managed)" in err


def test_a_managed_tag_matches_the_fqdns_the_user_gives(
    configuration: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    decision, err = _check(
        capsys, str(configuration / "main.tf"), "--fqdn-tags", str(configuration / "tags.yaml")
    )
    assert (decision["action"], decision["rule"]["rule"]) == ("Allow", "wu")
    assert "matches only the FQDNs given for it here" in err
