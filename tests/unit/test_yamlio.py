"""harness.yamlio: marks for every key and item, key paths, and errors that point into the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.errors import InputError, Location
from harness.yamlio import (
    MarkedDict,
    MarkedList,
    format_key_path,
    load_document,
    load_json_text,
    load_yaml,
    load_yaml_text,
    parse_key_path,
)

SCENARIO = textwrap.dedent(
    """\
    name: demo
    firewall:
      policy:
        rule_collection_groups:
          - name: G
            priority: 300
          - {name: H, priority: 400}
      hosts: {}
    expect:
      denied: [a.test, b.test]
    """
)


def test_mapping_keys_carry_their_line_and_column() -> None:
    document = load_yaml_text(SCENARIO, "s.yaml")

    assert document.location_of("firewall.policy.rule_collection_groups[0].priority") == (
        Location("s.yaml", 6, 9)
    )
    assert document.location_of("expect.denied") == Location("s.yaml", 10, 3)


def test_sequence_items_carry_their_line_and_column_in_block_and_flow_style() -> None:
    document = load_yaml_text(SCENARIO, "s.yaml")

    assert document.location_of("firewall.policy.rule_collection_groups[1]") == (
        Location("s.yaml", 7, 9)
    )
    assert document.location_of("firewall.policy.rule_collection_groups[1].priority") == (
        Location("s.yaml", 7, 19)
    )
    assert document.location_of("expect.denied[1]") == Location("s.yaml", 10, 20)


def test_a_missing_key_points_at_the_deepest_existing_part() -> None:
    document = load_yaml_text(SCENARIO, "s.yaml")

    location = document.location_of("firewall.policy.rule_collection_groups[0].rule_collections")

    assert location == document.location_of("firewall.policy.rule_collection_groups[0]")


def test_loaded_containers_are_plain_dicts_and_lists_with_marks() -> None:
    data = load_yaml_text(SCENARIO, "s.yaml").data

    assert isinstance(data, MarkedDict) and isinstance(data["expect"]["denied"], MarkedList)
    assert data == {
        "name": "demo",
        "firewall": {
            "policy": {
                "rule_collection_groups": [
                    {"name": "G", "priority": 300},
                    {"name": "H", "priority": 400},
                ]
            },
            "hosts": {},
        },
        "expect": {"denied": ["a.test", "b.test"]},
    }


def test_error_at_gives_path_line_column_key_path_problem_and_fix() -> None:
    document = load_yaml_text(SCENARIO, "s.yaml")

    error = document.error_at(
        "firewall.policy.rule_collection_groups[0].priority", "too low", "raise it"
    )

    assert str(error) == (
        "s.yaml:6:9: firewall.policy.rule_collection_groups[0].priority: too low; raise it"
    )


def test_node_prefix_shows_in_key_paths_of_children() -> None:
    document = load_yaml_text(SCENARIO, "s.yaml")
    policy = document.node("firewall.policy")
    inline = type(policy)(policy.value, "s.yaml", (), policy.mark, "firewall.policy")

    child = inline.child("rule_collection_groups").child(1).child("name")

    assert child.key_path == "firewall.policy.rule_collection_groups[1].name"
    assert child.location == Location("s.yaml", 7, 10)


@pytest.mark.parametrize(
    "parts, text",
    [
        (("a", 0, "b"), "a[0].b"),
        (("resources", 2, "properties", "ruleCollections", 0, "priority"),
         "resources[2].properties.ruleCollections[0].priority"),
        (("fqdn_tags", "Kudu.Self", 1), 'fqdn_tags["Kudu.Self"][1]'),
        ((0, "name"), "[0].name"),
    ],
)  # fmt: skip
def test_key_paths_format_and_parse_back(parts: tuple[str | int, ...], text: str) -> None:
    assert format_key_path(parts) == text
    assert parse_key_path(text) == parts


@pytest.mark.parametrize(
    "text, line, column, fragment",
    [
        ("a: [1, 2\n", 2, 1, "YAML syntax error"),
        ("a:\n  b: 1\n   c: 2\n", 3, 5, "YAML syntax error: mapping values are not allowed"),
        ("a: 1\nb: 2\na: 3\n", 3, 1, "duplicate key 'a'"),
        ('a: "open\n', 2, 1, "YAML syntax error"),
    ],
)
def test_yaml_errors_point_at_the_line_of_the_problem(
    text: str, line: int, column: int, fragment: str
) -> None:
    with pytest.raises(InputError) as caught:
        load_yaml_text(text, "bad.yaml")

    assert caught.value.location == Location("bad.yaml", line, column)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "text, fragment",
    [("", "the file is empty"), ("# only a comment\n", "the file is empty"),
     ("- a\n- b\n", "the top level is a list, not a mapping"),
     ("just text\n", "not a mapping")],
)  # fmt: skip
def test_empty_and_non_mapping_documents_are_input_errors(text: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment) as caught:
        load_yaml_text(text, "bad.yaml")

    assert str(caught.value).startswith("bad.yaml:1:1: ")


def test_a_list_is_accepted_when_no_mapping_is_expected() -> None:
    assert load_yaml_text("- a\n- b\n", "l.yaml", expect_mapping=False).data == ["a", "b"]


def test_a_missing_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file") as caught:
        load_yaml(tmp_path / "absent.yaml")

    assert str(tmp_path / "absent.yaml") in str(caught.value)


def test_json_keeps_line_and_column_of_keys_and_items() -> None:
    text = '{\n  "resources": [\n    {"name": "x",\n     "properties": {"priority": 300}}\n  ]\n}\n'
    document = load_json_text(text, "t.json")

    assert document.location_of("resources[0]") == Location("t.json", 3, 5)
    assert document.location_of("resources[0].properties.priority") == Location("t.json", 4, 21)
    assert document.data == {"resources": [{"name": "x", "properties": {"priority": 300}}]}


def test_json_values_match_the_json_module() -> None:
    text = '{"a": [1, -2.5e3, true, false, null, "\\u00e9\\"x", {}], "b": [], "c": {"d": 0}}'
    import json

    assert load_json_text(text, "t.json").data == json.loads(text)


def test_json_syntax_errors_point_at_the_trailing_comma() -> None:
    with pytest.raises(InputError, match="JSON syntax error") as caught:
        load_json_text('{\n  "a": 1,\n}\n', "t.json")

    assert caught.value.location is not None and caught.value.location.line == 2


def test_load_document_reads_json_and_yaml_by_content(tmp_path: Path) -> None:
    json_file = tmp_path / "template.json"
    json_file.write_text('\ufeff{"a": {"b": 1}}', encoding="utf-8")  # a BOM, as Windows writes
    flow_yaml = tmp_path / "flow.yaml"
    flow_yaml.write_text("{a: {b: 1}}\n")
    block_yaml = tmp_path / "block.yml"
    block_yaml.write_text("a:\n  b: 1\n")

    for file in (json_file, flow_yaml, block_yaml):
        assert load_document(file).data == {"a": {"b": 1}}
    assert load_document(json_file).location_of("a.b") == Location(str(json_file), 1, 8)
