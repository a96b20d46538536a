"""parse_options: every bad value is a ValueError that says what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.gateway.options import GatewayConfig, parse_options


def parse(**overrides: object) -> GatewayConfig:
    values: dict[str, object] = {
        "policy_path": "", "mode": "enforce", "https_deny": "close", "record_dir": "",
        "run_id": "", "drop_seconds": 600,
    }  # fmt: skip
    values.update(overrides)
    return parse_options(**values)  # type: ignore[arg-type]


def test_no_policy_file_means_deny_all() -> None:
    config = parse()
    assert config.policy.name == "deny-all"
    assert config.policy.rule_collection_groups == ()
    assert config.record_dir is None


def test_a_policy_file_is_loaded_and_named_after_its_stem(tmp_path: Path) -> None:
    path = tmp_path / "build-allowlist.yaml"
    path.write_text("allow: [allowed.test]\n")
    config = parse(policy_path=str(path), record_dir=str(tmp_path / "run"), run_id="run-9",
                   mode="audit", https_deny="alert", drop_seconds=2)  # fmt: skip
    assert config.policy.name == "build-allowlist"
    assert config.policy.rule_collection_groups[0].rule_collections[0].rules[0].target_fqdns == (
        "allowed.test",
    )
    assert (config.mode, config.https_deny, config.run_id) == ("audit", "alert", "run-9")
    assert config.record_dir == tmp_path / "run"
    assert config.drop_seconds == 2.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mode": "learn"}, "egress_mode must be one of enforce, audit, not 'learn'"),
        ({"mode": "Enforce"}, "egress_mode must be one of enforce, audit, not 'Enforce'"),
        ({"https_deny": "reset"},
         "egress_https_deny must be one of close, alert, drop, not 'reset'"),
        ({"drop_seconds": 0}, "egress_drop_seconds must be positive, not 0"),
        ({"drop_seconds": -5}, "egress_drop_seconds must be positive, not -5"),
    ],
    ids=["mode-learn", "mode-case", "deny-reset", "drop-zero", "drop-negative"],
)  # fmt: skip
def test_a_bad_value_says_what_is_allowed(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse(**overrides)
    assert str(raised.value) == message


def test_a_policy_error_keeps_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("allow:\n  - www.contoso.*\n")
    with pytest.raises(ValueError) as raised:
        parse(policy_path=str(path))
    assert str(raised.value).startswith(f"{path}:2:")


def test_a_missing_policy_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nowhere.yaml"):
        parse(policy_path=str(tmp_path / "nowhere.yaml"))
