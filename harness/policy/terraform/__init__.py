"""Terraform as a policy source: a `.tf` / `.tf.json` file or a folder of them, evaluated
offline (`config`, `evaluate`, `hcl`), or `terraform show -json` output (`show`); both read
into the model by `azurerm`.

    is_terraform_source(path)          -> a .tf / .tf.json file, or a folder holding one
    load_terraform(path, inputs=None)  -> Policy (`TerraformInputs`: --var-file, --var)
    looks_like_show_json(value)        -> a parsed JSON document is `terraform show -json`
    policy_from_show_json(node, name)  -> Policy

Limits, each an InputError (exit 2) that names it: MAX_FILE_BYTES and MAX_BLOCK_DEPTH
(`hcl`), MAX_DEPTH, MAX_STEPS and MAX_STRING (`evaluate`), MAX_MODULE_DEPTH (`config`).
"""

from __future__ import annotations

__all__ = [
    "TerraformInputs",
    "is_terraform_source",
    "load_terraform",
    "looks_like_show_json",
    "policy_from_show_json",
]

from pathlib import Path

from harness.errors import InputError, Location
from harness.policy.model import Policy
from harness.policy.terraform.azurerm import (
    RESOURCE_TYPES,
    TerraformResource,
    policy_from_resources,
)
from harness.policy.terraform.config import (
    TerraformInputs,
    evaluate_configuration,
    is_configuration,
)
from harness.policy.terraform.show import looks_like_show_json, policy_from_show_json
from harness.yamlio import Node


def is_terraform_source(path: str | Path) -> bool:
    return is_configuration(Path(path))


def _default_name(source: Path) -> str:
    if source.is_dir():
        return source.resolve().name
    name = source.name
    for suffix in (".tf.json", ".tf"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return source.stem


def load_terraform(path: str | Path, inputs: TerraformInputs | None = None) -> Policy:
    """The policy a Terraform configuration defines (see `harness.policy.terraform.config` for
    what is evaluated, and `azurerm` for what is read)."""
    source = Path(path)
    if not source.exists():
        raise InputError(f"{source} does not exist", fix="give a .tf file or a folder of them")
    try:
        instances, hints = evaluate_configuration(source, inputs or TerraformInputs(),
                                                  RESOURCE_TYPES)  # fmt: skip
    except RecursionError:
        raise InputError("the configuration nests too deeply to evaluate (Python's stack)",
                         location=Location(str(source)),
                         fix="simplify it, or give `terraform show -json` output") from None  # fmt: skip
    resources = [
        TerraformResource(i.type, i.address, i.id, Node(i.body, i.path, (), i.mark, i.address))
        for i in instances
    ]
    return policy_from_resources(resources, _default_name(source), str(source), hints,
                                 fqdn_tags=(inputs.fqdn_tags if inputs else None))  # fmt: skip
