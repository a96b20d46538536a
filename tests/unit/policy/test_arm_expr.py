"""harness.policy.arm_expr: ARM's expression language offline, its hashes and its limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import InputError
from harness.policy.arm_expr import (
    LIMITS,
    DeploymentContext,
    Evaluator,
    ExpressionError,
    Scope,
    guid,
    unique_string,
)
from harness.policy.load import load_policy

PARAMETERS = {"name": "fw", "subnets": ["10.0.0.0/24", "10.0.1.0/24"], "groups": None}
VARIABLES = {"map": {"B": 2, "a": 1}, "prefix": "ipg"}


def evaluate(text: str, **copy: int) -> Any:
    scope = Scope(PARAMETERS.__getitem__, VARIABLES.__getitem__)
    for name, index in copy.items():
        scope = scope.with_copy(name, index)
    return Evaluator(DeploymentContext()).evaluate(text, scope)


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("[format('{0}-{1:D3}', 'ipg', 7)]", "ipg-007"),
        ("[concat('a', 1, true())]", "a1True"),
        ("[concat(createArray(1), createArray(2, 3))]", [1, 2, 3]),
        ("[toLower('ABC')]", "abc"),
        ("[replace('a-b-c', '-', '.')]", "a.b.c"),
        ("[split('a,b;c', createArray(',', ';'))]", ["a", "b", "c"]),
        ("[join(parameters('subnets'), ' ')]", "10.0.0.0/24 10.0.1.0/24"),
        ("[substring('westeurope', 0, 4)]", "west"),
        ("[startsWith('WestEurope', 'west')]", True),
        ("[contains(parameters('subnets'), '10.0.1.0/24')]", True),
        ("[contains(variables('map'), 'b')]", True),  # object keys compare case-insensitively
        ("[length(parameters('subnets'))]", 2),
        ("[empty(coalesce(parameters('groups'), createArray()))]", True),
        ("[coalesce(parameters('groups'), 'fallback')]", "fallback"),
        ("[first(parameters('subnets'))]", "10.0.0.0/24"),
        ("[last(split('a.b.tail', '.'))]", "tail"),
        ("[take(parameters('subnets'), 1)]", ["10.0.0.0/24"]),
        ("[skip('abcdef', 4)]", "ef"),
        ("[range(3, 3)]", [3, 4, 5]),
        ("[union(createObject('a', 1), createObject('b', 2))]", {"a": 1, "b": 2}),
        ("[union(createArray(1, 2), createArray(2, 3))]", [1, 2, 3]),
        ("[intersection(createArray(1, 2), createArray(2, 3))]", [2]),
        ("[flatten(createArray(createArray(1), createArray(2)))]", [1, 2]),
        ("[items(variables('map'))]", [{"key": "a", "value": 1}, {"key": "B", "value": 2}]),
        ("[json('{\"a\": [1]}').a[0]]", 1),
        ("[variables('map').b]", 2),  # property access is case-insensitive
        ("[tryGet(variables('map'), 'missing')]", None),
        ("[equals(toUpper('a'), 'A')]", True),
        ("[and(true(), not(false()))]", True),
        ("[or(false(), greaterOrEquals(2, 2))]", True),
        ("[if(less(1, 2), 'yes', reference('never').evaluated)]", "yes"),  # if() is lazy
        ("[add(mul(2, 3), sub(10, div(9, 2)))]", 12),
        ("[mod(-7, 3)]", -1),  # .NET's remainder keeps the dividend's sign
        ("[max(createArray(1, 5, 3))]", 5),
        ("[int('42')]", 42),
        ("[string(createArray(1, 'a'))]", '[1,"a"]'),
        ("[map(range(0, 3), lambda('i', mul(lambdaVariables('i'), 2)))]", [0, 2, 4]),
        ("[filter(parameters('subnets'), lambda('s', endsWith(lambdaVariables('s'), '1.0/24')))]",
         ["10.0.1.0/24"]),
        ("[reduce(range(1, 4), 0, lambda('sum', 'n', add(lambdaVariables('sum'), lambdaVariables('n'))))]",
         10),
        ("[toObject(parameters('subnets'), lambda('s', first(split(lambdaVariables('s'), '/'))))]",
         {"10.0.0.0": "10.0.0.0/24", "10.0.1.0": "10.0.1.0/24"}),
        ("[resourceGroup().location]", "westeurope"),
        ("[subscription().subscriptionId]", "00000000-0000-0000-0000-000000000000"),
        ("[resourceId('Microsoft.Network/ipGroups', 'ipg')]",
         ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/egress-harness-rg"
         "/providers/Microsoft.Network/ipGroups/ipg")),
        ("[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'r')]",
         ("/subscriptions/00000000-0000-0000-0000-000000000000/providers/"
         "Microsoft.Authorization/roleDefinitions/r")),
        ("[format('{0}{1}', 'pip', add(copyIndex(), 1))]", "pip3"),
    ],
)  # fmt: skip
def test_template_functions_evaluate_as_arm_defines_them(expression: str, expected: Any) -> None:
    assert evaluate(expression, loop=2) == expected


def test_copy_index_names_its_loop_and_takes_an_offset() -> None:
    assert evaluate("[copyIndex('rules', 10)]", rules=4) == 14


def test_unique_string_is_murmurhash64a_in_base32_with_dsc_test_vectors() -> None:
    # The vectors Microsoft's DSC v3 tests its ARM-compatible uniqueString() with.
    assert unique_string("a") == "cfvwxu6sc4lqo"
    assert unique_string("a", "b", "c") == "bhw7m6t6ntwd6"
    assert unique_string("a", "b", "c", "d") == "yxzg7ur4qetcy"
    assert evaluate("[uniqueString('a', 'b', 'c')]") == "bhw7m6t6ntwd6"


def test_guid_is_a_deterministic_version_5_uuid_of_the_joined_arguments() -> None:
    value = guid("scope", "principal")
    assert value == guid("scope", "principal") != guid("scope", "other")
    assert value[14] == "5"  # the version digit
    assert evaluate("[guid('scope', 'principal')]") == value


@pytest.mark.parametrize("function", ["reference('vm')", "listKeys('sa', '2023-01-01')",
                                      "newGuid()", "utcNow()"])  # fmt: skip
def test_deployment_time_functions_are_an_error_naming_the_function(function: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate(f"[{function}]")
    name = function.split("(")[0]
    assert f"{name}() has a value only during a deployment" in caught.value.problem


# --- hardening (issue 16 item 4): each a clean error naming the limit, or a fast value ------


def _template(tmp_path: Path, variables: dict[str, Any], priority: str) -> Path:
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "variables": variables,
        "resources": [
            {
                "type": "Microsoft.Network/firewallPolicies/ruleCollectionGroups",
                "apiVersion": "2023-09-01",
                "name": "p/Egress",
                "properties": {"priority": priority, "ruleCollections": []},
            }
        ],
    }
    file = tmp_path / "t.json"
    file.write_text(json.dumps(template, indent=1))
    return file


def _error(file: Path) -> str:
    with pytest.raises(InputError) as caught:
        load_policy(file)
    return str(caught.value)


def test_first_of_an_object_is_an_input_error_not_a_key_error(tmp_path: Path) -> None:
    file = _template(tmp_path, {}, "[first(createObject('a', 300))]")
    assert "first() cannot take these arguments: expected an array, got an object" in _error(file)


def test_a_number_of_4301_digits_is_over_the_64_bit_limit(tmp_path: Path) -> None:
    file = _template(tmp_path, {}, f"[add({'7' * 4301}, 1)]")
    assert "over the harness's limit of 64-bit integers" in _error(file)


def test_int_of_a_4301_digit_string_is_over_the_64_bit_limit(tmp_path: Path) -> None:
    file = _template(tmp_path, {}, f"[int('{'7' * 4301}')]")
    assert "over the harness's limit of 64-bit integers" in _error(file)


def test_500_nested_calls_are_over_the_depth_limit_not_a_recursion_error(tmp_path: Path) -> None:
    file = _template(tmp_path, {}, "[" + "string(" * 500 + "300" + ")" * 500 + "]")
    message = _error(file)
    assert f"over the harness's limit of {LIMITS.depth} nested calls" in message
    assert "t.json:" in message and "resources[0].properties.priority" in message


def test_replace_chains_stop_at_the_string_limit_not_memory_error(tmp_path: Path) -> None:
    variables = {"v0": "aaaaaaaaaaaaaaaa"}
    for index in range(1, 12):
        variables[f"v{index}"] = f"[replace(variables('v{index - 1}'), 'a', variables('v0'))]"
    file = _template(tmp_path, variables, "[length(variables('v11'))]")
    assert f"over the harness's limit of {LIMITS.string_chars:,} characters" in _error(file)


def test_variables_are_evaluated_once_so_doubling_chains_stay_linear(tmp_path: Path) -> None:
    # Without a cache, 40 doubling variables are 2**40 evaluations: far over the step limit.
    variables: dict[str, Any] = {"v0": 1}
    for index in range(1, 41):
        variables[f"v{index}"] = f"[add(variables('v{index - 1}'), variables('v{index - 1}'))]"
    file = _template(tmp_path, variables, "[if(equals(variables('v40'), 1099511627776), 300, 0)]")
    assert load_policy(file).rule_collection_groups[0].priority == 300


def test_string_doubling_with_concat_is_cached_too(tmp_path: Path) -> None:
    variables: dict[str, Any] = {"v0": "ab"}
    for index in range(1, 19):
        variables[f"v{index}"] = f"[concat(variables('v{index - 1}'), variables('v{index - 1}'))]"
    file = _template(tmp_path, variables, "[if(equals(length(variables('v18')), 524288), 300, 0)]")
    assert load_policy(file).rule_collection_groups[0].priority == 300


def test_too_many_evaluation_steps_is_an_error_naming_the_limit(tmp_path: Path) -> None:
    heavy = ("[length(map(range(0, 5000), lambda('a', length(map(range(0, 5000),"
             " lambda('b', add(lambdaVariables('b'), 1)))))))]")  # fmt: skip
    file = _template(tmp_path, {}, heavy)
    assert f"over the harness's limit of {LIMITS.steps:,} expression evaluation steps" in _error(
        file
    )


def test_an_expression_over_arms_length_limit_is_refused(tmp_path: Path) -> None:
    file = _template(tmp_path, {}, "[concat('" + "x" * LIMITS.expression_chars + "')]")
    assert "over the harness's limit of 24,576 characters in one expression" in _error(file)


def test_variables_that_refer_to_each_other_name_the_loop(tmp_path: Path) -> None:
    file = _template(tmp_path, {"a": "[variables('b')]", "b": "[variables('a')]"},
                     "[variables('a')]")  # fmt: skip
    assert "variables('a') -> variables('b') -> variables('a') refer to each other" in _error(file)


def test_a_long_chain_of_variables_is_over_the_chain_limit(tmp_path: Path) -> None:
    variables: dict[str, Any] = {"v0": 300}
    for index in range(1, 400):
        variables[f"v{index}"] = f"[variables('v{index - 1}')]"
    file = _template(tmp_path, variables, "[variables('v399')]")
    assert "parameters and variables referring to each other in one chain" in _error(file)


def test_an_over_limit_template_is_exit_2_naming_the_limit_at_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    file = _template(tmp_path, {}, "[" + "string(" * 500 + "300" + ")" * 500 + "]")
    assert main(["check", str(file), "a.test"]) == 2
    err = capsys.readouterr().err
    assert "over the harness's limit of 64 nested calls" in err and "Traceback" not in err


def test_a_user_defined_function_is_named_in_its_error() -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("[__bicep.subnetName(1)]")
    assert "__bicep.subnetName(): user-defined template functions are not evaluated" in (
        caught.value.problem
    )
