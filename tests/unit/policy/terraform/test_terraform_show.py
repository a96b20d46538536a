"""`terraform show -json` output as a policy source: plans (planned_values, child modules,
after_unknown) and states (values)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.policy.load import load_policy
from harness.policy.terraform import looks_like_show_json

DATA = Path(__file__).parent / "data"


def _write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(document, indent=2))
    return path


def test_a_plan_reads_the_groups_of_child_modules_in_priority_order() -> None:
    policy = load_policy(DATA / "plan.json")
    assert [(g.name, g.priority) for g in policy.rule_collection_groups] == [
        ("Build", 300),
        ("Platform", 200),
    ]
    build = policy.rule_collection_groups[0]
    assert [c.name for c in build.rule_collections] == ["deny-telemetry", "ssh-git", "packages"]
    assert policy.warnings == (
        ('module.egress.azurerm_firewall_policy_rule_collection_group.this["platform"]: DNAT'
        " collection 'rdp-in' (group 'Platform', 1 rule(s)) is inbound and not simulated"),
    )


def test_a_state_resolves_ip_groups_by_their_ids() -> None:
    policy = load_policy(DATA / "state.json")
    rule = policy.rule_collection_groups[0].rule_collections[0].rules[0]
    assert rule.source_addresses == ("10.70.1.0/24", "10.70.2.5")


def test_a_value_known_only_after_apply_is_an_error_at_the_resource(tmp_path: Path) -> None:
    plan = json.loads((DATA / "plan.json").read_text())
    change = plan["resource_changes"][1]
    change["change"]["after_unknown"]["application_rule_collection"][1]["rule"][0][
        "source_ip_groups"
    ] = True
    with pytest.raises(InputError) as caught:
        load_policy(_write(tmp_path, plan))
    message = str(caught.value)
    assert ': module.egress.azurerm_firewall_policy_rule_collection_group.this["build"]:' in message
    assert "application_rule_collection[1].rule[0].source_ip_groups known only after apply" in (
        message
    )
    assert "apply, then give `terraform show -json` of the state" in message


def test_a_bad_rule_in_a_plan_names_its_address_and_line(tmp_path: Path) -> None:
    plan = json.loads((DATA / "plan.json").read_text())
    resource = plan["planned_values"]["root_module"]["child_modules"][0]["resources"][0]
    resource["values"]["application_rule_collection"][1]["rule"][0]["destination_fqdns"] = ["*bad*"]
    path = _write(tmp_path, plan)
    with pytest.raises(InputError) as caught:
        load_policy(path)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "*bad*" in text)
    assert str(caught.value).startswith(
        f"{path}:{line}:"
        f'{str(caught.value).split(":")[2]}: module.egress.azurerm_firewall_policy_rule_collection_group'
        '.this["build"].application_rule_collection[1].rule[0].destination_fqdns[0]'
    )


def test_a_plan_without_firewall_resources_says_what_it_needs(tmp_path: Path) -> None:
    path = _write(tmp_path, {"format_version": "1.2", "planned_values": {"root_module": {}}})
    with pytest.raises(InputError, match="no azurerm_firewall_policy_rule_collection_group"):
        load_policy(path)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"format_version": "1.2", "planned_values": {}}, True),
        ({"format_version": "1.0", "values": {}}, True),
        ({"$schema": "x", "resources": []}, False),
        ({"values": {}}, False),
    ],
)
def test_show_json_is_told_apart_by_format_version_and_values(document: dict, expected: bool) -> None:
    assert looks_like_show_json(document) is expected
