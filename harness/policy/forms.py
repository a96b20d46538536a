"""Which form a policy document is, told without importing the readers of the other forms.

The gateway loads the YAML form only (the run's policy.yaml the harness writes); importing the
ARM and Terraform readers just to learn that a file is neither was ~0.1 s of every gateway
start (`python -X importtime` in the gateway image). `harness.policy.load` asks these first and
imports a reader when the document is its form.
"""

from __future__ import annotations

__all__ = ["is_terraform_file", "is_terraform_source", "looks_like_arm", "looks_like_show_json"]

from pathlib import Path
from typing import Any

_TERRAFORM_SUFFIXES = (".tf", ".tf.json")


def looks_like_arm(value: dict[Any, Any]) -> bool:
    """An ARM template, rule collection group output or firewall resource (`harness.policy.arm`)."""
    keys = {key.lower() for key in value if isinstance(key, str)}
    if keys & {"rule_collection_groups", "allow"}:
        return False
    return bool(
        keys
        & {
            "$schema", "resources", "contentversion", "properties", "rulecollections",
            "applicationrulecollections", "networkrulecollections", "rulecollectiongroups",
        }
    )  # fmt: skip


def looks_like_show_json(value: Any) -> bool:
    """`terraform show -json` output (`harness.policy.terraform.show`)."""
    return (
        isinstance(value, dict)
        and "format_version" in value
        and ("planned_values" in value or "values" in value)
    )


def is_terraform_source(path: str | Path) -> bool:
    """A `.tf` / `.tf.json` file, or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        return any(is_terraform_file(child) for child in path.iterdir())
    return path.name.lower().endswith(_TERRAFORM_SUFFIXES)


def is_terraform_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_TERRAFORM_SUFFIXES)
