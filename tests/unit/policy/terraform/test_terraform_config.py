"""harness.policy.terraform: expressions, functions, variables and the errors and limits of
the offline evaluation, each a clean `file:LINE:COL: key.path: problem; fix`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import InputError
from harness.policy.load import load_policy
from harness.policy.terraform import TerraformInputs, load_terraform
from harness.policy.terraform.evaluate import MAX_DEPTH, MAX_STEPS

GROUP = """
resource "azurerm_firewall_policy_rule_collection_group" "g" {{
  name               = "G"
  priority           = 300
  firewall_policy_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/firewallPolicies/fw"
  application_rule_collection {{
    name     = "c"
    priority = 100
    action   = "Allow"
    rule {{
      name              = "r"
      source_addresses  = ["*"]
      destination_fqdns = {fqdns}
      protocols {{
        type = "Https"
        port = 443
      }}
    }}
  }}
}}
"""


def _fqdns(tmp_path: Path, head: str, fqdns: str, inputs: TerraformInputs | None = None):
    path = tmp_path / "main.tf"
    path.write_text(head + GROUP.format(fqdns=fqdns))
    rule = load_terraform(path, inputs).rule_collection_groups[0].rule_collections[0].rules[0]
    return list(rule.target_fqdns)


def _error(tmp_path: Path, text: str | bytes, name: str = "main.tf") -> InputError:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError) as caught:
        load_policy(path)
    return caught.value


# --- expressions and functions ------------------------------------------------------------

EXPRESSIONS = [
    ('concat(["a.test"], ["b.test"])', ["a.test", "b.test"]),
    ('flatten([["a.test"], [["b.test"]], []])', ["a.test", "b.test"]),
    ('values(merge({ x = "a.test" }, { y = "b.test" }, { x = "c.test" }))', ["c.test", "b.test"]),
    ('[lookup({ a = "a.test" }, "a"), lookup({}, "b", "d.test")]', ["a.test", "d.test"]),
    ('[format("%s.%s.test", "www", lower("ZONE"))]', ["www.zone.test"]),
    ('tolist(toset(["b.test", "a.test", "b.test"]))', ["a.test", "b.test"]),
    ('distinct(["b.test", "a.test", "b.test"])', ["b.test", "a.test"]),
    ('keys({ "b.test" = 1, "a.test" = 2 })', ["a.test", "b.test"]),
    ('[for k, v in { b = "x", a = "y" } : "${k}-${v}.test"]', ["a-y.test", "b-x.test"]),
    ('[for s in ["A.test", "b.test", "c.test"] : lower(s) if s != "c.test"]', ["a.test", "b.test"]),
    ('values({ for s in ["a", "b"] : s => "${s}.test" })', ["a.test", "b.test"]),
    ('[for g, hosts in { for h in ["a.x.test", "b.x.test"] : "x" => h... } : "${g}${length(hosts)}.test"]',
     ["x2.test"]),
    ('true && 1 + 2 * 3 == 7 ? ["yes.test"] : ["no.test"]', ["yes.test"]),
    ('[{ n = "a.test" }, { n = "b.test" }][*].n', ["a.test", "b.test"]),
    ('split(",", replace("a.test;b.test", ";", ","))', ["a.test", "b.test"]),
    ('[element(["a.test", "b.test"], 3)]', ["b.test"]),
    ('compact(["a.test", "", null])', ["a.test"]),
    ('[coalesce("", "b.test")]', ["b.test"]),
    ('[try(local.missing_map["k"], "fallback.test")]', ["fallback.test"]),
    ('[upper("a.test") == "A.TEST" ? "ok.test" : "bad.test"]', ["ok.test"]),
    ('["literal $${not.interpolated}.test"]', None),  # escaped: stays text, then fails as a name
]


@pytest.mark.parametrize(("expression", "expected"), EXPRESSIONS,
                         ids=[e for e, _ in EXPRESSIONS])  # fmt: skip
def test_expressions_and_functions_evaluate_as_terraform_does(
    tmp_path: Path, expression: str, expected: list[str] | None
) -> None:
    head = "locals {\n  missing_map = {}\n}\n"
    if expected is None:
        with pytest.raises(InputError, match=r"\$\{not\.interpolated\}"):
            _fqdns(tmp_path, head, expression)
        return
    assert _fqdns(tmp_path, head, expression) == expected


def test_locals_refer_to_locals_variables_and_resources(tmp_path: Path) -> None:
    head = """
variable "zone" {
  default = "build.test"
}
locals {
  hosts = [for name in local.names : "${name}.${var.zone}"]
  names = ["pkgs", "cdn"]
}
resource "azurerm_ip_group" "x" {
  name                = "x"
  resource_group_name = "rg"
  location            = "westeurope"
  cidrs               = local.hosts
}
"""
    assert _fqdns(tmp_path, head, "azurerm_ip_group.x.cidrs") == ["pkgs.build.test", "cdn.build.test"]


def test_resource_for_each_over_a_map_makes_an_instance_per_key(tmp_path: Path) -> None:
    path = tmp_path / "main.tf"
    path.write_text("""
variable "groups" {
  default = { b = 400, a = 300 }
}
resource "azurerm_firewall_policy_rule_collection_group" "g" {
  for_each           = var.groups
  name               = "G-${each.key}"
  priority           = each.value
  firewall_policy_id = "x"
}
""")
    policy = load_terraform(path)
    assert [(g.name, g.priority) for g in policy.rule_collection_groups] == [
        ("G-a", 300),
        ("G-b", 400),
    ]


def test_variable_types_convert_strings_and_fill_optional_attributes(tmp_path: Path) -> None:
    head = """
variable "spec" {
  type = object({
    zone  = string
    hosts = optional(list(string), ["www"])
  })
}
"""
    inputs = TerraformInputs(assignments=('spec={ zone = "z.test" }',))
    assert _fqdns(tmp_path, head, '[for h in var.spec.hosts : "${h}.${var.spec.zone}"]', inputs) == [
        "www.z.test"
    ]


def test_a_number_variable_from_the_command_line_is_a_number(tmp_path: Path) -> None:
    path = tmp_path / "main.tf"
    path.write_text('variable "p" {\n  type = number\n}\n' + GROUP.format(fqdns='["a.test"]')
                    .replace("priority           = 300", "priority           = var.p"))  # fmt: skip
    policy = load_terraform(path, TerraformInputs(assignments=("p=450",)))
    assert policy.rule_collection_groups[0].priority == 450


def test_hcl_tfvars_may_use_functions_but_no_references(tmp_path: Path) -> None:
    (tmp_path / "x.tfvars").write_text('hosts = concat(["a.test"], ["b.test"])\n')
    head = 'variable "hosts" {}\n'
    inputs = TerraformInputs(var_files=(str(tmp_path / "x.tfvars"),))
    assert _fqdns(tmp_path, head, "var.hosts", inputs) == ["a.test", "b.test"]
    (tmp_path / "bad.tfvars").write_text("hosts = local.x\n")
    with pytest.raises(InputError, match=r"bad.tfvars:1:\d+: var.hosts: unknown name 'local'"):
        _fqdns(tmp_path, head, "var.hosts", TerraformInputs(var_files=(str(tmp_path / "bad.tfvars"),)))


# --- errors: file, line, key ---------------------------------------------------------------


def test_a_local_that_refers_to_itself_is_a_clean_error(tmp_path: Path) -> None:
    error = _error(tmp_path, 'locals {\n  a = local.a\n}\n' + GROUP.format(fqdns="local.a"))
    assert str(error).startswith(f"{tmp_path / 'main.tf'}:2:12: local.a: local.a refers to itself")
    assert "(local.a -> local.a)" in str(error)


def test_a_cycle_through_two_locals_names_the_chain(tmp_path: Path) -> None:
    error = _error(tmp_path, "locals {\n  a = [local.b]\n  b = local.a[0]\n}\n" +
                   GROUP.format(fqdns="local.a"))  # fmt: skip
    assert "local.a -> local.b -> local.a" in str(error)


def test_locals_as_an_argument_at_the_top_level_is_a_clean_error(tmp_path: Path) -> None:
    error = _error(tmp_path, "locals = [1]\n")
    assert str(error) == (
        f"{tmp_path / 'main.tf'}:1:1: locals: 'locals' is an argument at the top level of a .tf"
        " file; write `locals { ... }` (a block)"
    )


def test_a_non_utf8_tf_file_is_a_clean_error_at_the_byte(tmp_path: Path) -> None:
    error = _error(tmp_path, b'locals {\n  a = "caf\xe9"\n}\n')
    assert str(error) == (
        f"{tmp_path / 'main.tf'}:2:11: byte 0xe9 is not UTF-8 (Terraform reads files as UTF-8);"
        " save the file as UTF-8"
    )


def test_a_nul_byte_is_a_clean_error_with_line_and_column(tmp_path: Path) -> None:
    error = _error(tmp_path, b'locals {\n  a = 1\x00\n}\n')
    assert str(error).startswith(f"{tmp_path / 'main.tf'}:2:8: the file holds a NUL byte")


def test_a_data_source_points_to_terraform_show_json_at_its_line(tmp_path: Path) -> None:
    text = 'data "azurerm_ip_group" "agents" {\n  name = "x"\n}\n' + GROUP.format(
        fqdns="[data.azurerm_ip_group.agents.name]"
    )
    error = _error(tmp_path, text)
    line = text.splitlines().index(next(x for x in text.splitlines() if "data.azurerm" in x)) + 1
    assert str(error).startswith(f"{tmp_path / 'main.tf'}:{line}:")
    assert "destination_fqdns: data.azurerm_ip_group.agents is read from Azure at plan time" in (
        str(error)
    )
    assert "terraform show -json" in error.fix


def test_a_remote_module_points_to_terraform_show_json(tmp_path: Path) -> None:
    error = _error(tmp_path, 'module "policy" {\n  source  = "Azure/x/azurerm"\n  version = "1.0.0"\n}\n')
    assert str(error).startswith(f"{tmp_path / 'main.tf'}:1:1: module.policy: module 'policy'"
                                 " comes from 'Azure/x/azurerm', which is not read offline")  # fmt: skip
    assert "terraform show -json" in error.fix


def test_a_computed_attribute_is_known_only_after_apply(tmp_path: Path) -> None:
    head = 'resource "azurerm_firewall" "fw" {\n  name = "fw"\n}\n'
    with pytest.raises(InputError, match="azurerm_firewall.fw.ip_configuration is known only after"):
        _fqdns(tmp_path, head, "[azurerm_firewall.fw.ip_configuration[0].private_ip_address]")


def test_an_ip_group_outside_the_configuration_is_an_error(tmp_path: Path) -> None:
    text = GROUP.format(fqdns='["a.test"]').replace(
        'source_addresses  = ["*"]', 'source_ip_groups  = ["/subscriptions/s/ipGroups/elsewhere"]'
    )
    assert "is not an azurerm_ip_group of this configuration" in str(_error(tmp_path, text))


def test_a_syntax_error_points_at_line_and_column(tmp_path: Path) -> None:
    error = _error(tmp_path, 'resource "a" "b" {\n  name = \n}\n')
    assert str(error).startswith(f"{tmp_path / 'main.tf'}:2:")
    assert "not valid Terraform" in str(error)


def test_a_group_without_name_is_an_error_not_skipped(tmp_path: Path) -> None:
    text = GROUP.format(fqdns='["a.test"]').replace('  name               = "G"\n', "")
    assert "missing required key 'name'" in str(_error(tmp_path, text))


def test_a_misspelt_group_argument_suggests_the_near_miss(tmp_path: Path) -> None:
    text = GROUP.format(fqdns='["a.test"]').replace("priority           = 300", "priorty = 300")
    assert "unknown key 'priorty'; did you mean 'priority'?" in str(_error(tmp_path, text))


def test_unknown_functions_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"the function fileset\(\) is not evaluated offline"):
        _fqdns(tmp_path, "", 'fileset(".", "*")')


def test_a_json_syntax_error_has_its_line(tmp_path: Path) -> None:
    error = _error(tmp_path, '{\n  "resource": {,\n}\n', "main.tf.json")
    assert str(error).startswith(f"{tmp_path / 'main.tf.json'}:2:")


# --- limits -------------------------------------------------------------------------------


def test_nesting_over_max_depth_is_exit_2_naming_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    depth = MAX_DEPTH + 50
    path = tmp_path / "main.tf"
    path.write_text(GROUP.format(fqdns="(" * depth + '["a.test"]' + ")" * depth))
    assert main(["check", str(path), "a.test"]) == 2
    err = capsys.readouterr().err
    assert f"evaluation nests deeper than {MAX_DEPTH} levels (MAX_DEPTH)" in err
    assert "Traceback" not in err


def test_doubling_locals_stop_at_max_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ['  l0 = ["a.test"]'] + [f"  l{i} = concat(local.l{i - 1}, local.l{i - 1})"
                                     for i in range(1, 30)]  # fmt: skip
    path = tmp_path / "main.tf"
    path.write_text("locals {\n" + "\n".join(lines) + "\n}\n" + GROUP.format(fqdns="local.l29"))
    assert main(["check", str(path), "a.test"]) == 2
    assert f"evaluation took more than {MAX_STEPS} steps (MAX_STEPS)" in capsys.readouterr().err


def test_deep_json_syntax_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "main.tf.json"
    path.write_text(json.dumps({"locals": {"a": json.loads("[" * 3000 + "]" * 3000)}}))
    assert main(["check", str(path), "a.test"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_folder_without_tf_files_is_not_terraform(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError):
        load_policy(tmp_path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"locals {\n  a = local.a\n}\n" + GROUP.format(fqdns="local.a").encode(),
         ":2:12: local.a: local.a refers to itself"),
        (b"locals = [1]\n", ":1:1: locals: 'locals' is an argument at the top level"),
        (b'locals {\n  a = "\xff"\n}\n', ":2:8: byte 0xff is not UTF-8"),
    ],
    ids=["self-referring-local", "top-level-locals-argument", "non-utf8"],
)
@pytest.mark.parametrize("command", ["check", "import", "export"])
def test_hardening_reproducers_exit_2_with_file_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str,
    command: str,
) -> None:  # fmt: skip
    path = tmp_path / "main.tf"
    path.write_bytes(content)
    arguments = {"check": ["a.test"], "import": [], "export": ["--format", "arm"]}[command]
    assert main([command, str(path), *arguments]) == 2
    err = capsys.readouterr().err
    assert f"egress: {path}{expected}" in err
    assert "Traceback" not in err
