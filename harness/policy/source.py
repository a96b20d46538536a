"""What a policy source needs besides its own file: `PolicyOptions`, and the readers of the
files those options name (ARM parameters files, FQDN tag files, Service Tags JSON).

One small frozen dataclass, so every command that takes a policy (check, run --policy,
learn --policy, diff, export, import) passes the same flags the same way, and other sources
(Terraform's var files) extend it with fields of their own.
"""

from __future__ import annotations

__all__ = [
    "PolicyOptions",
    "fqdn_tags_from_file",
    "parameters_from_options",
    "service_tags_from_file",
]

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import InputError, Location
from harness.policy.checks import _fqdn_patterns
from harness.yamlio import Document, Node, load_document, load_json_text, read_text

if TYPE_CHECKING:  # imported where used: the YAML form (all the gateway reads) needs no ARM
    from harness.policy.arm import GivenValue
    from harness.policy.arm_expr import DeploymentContext


@dataclass(frozen=True)
class PolicyOptions:
    """`parameters`: `--parameters` values in the order given (a parameters file, `@file`,
    `KEY=VALUE`, `KEY=@file`, inline JSON), as `az deployment group create` takes them; later
    ones win.
    `resource_group`, `location`, `subscription`: the deployment context ARM's
    `resourceGroup()`, `subscription()` and `deployment()` answer (None: the stated defaults).
    `fqdn_tags_file`: FQDNs for FQDN tags (Microsoft's are unpublished). `service_tags_file`:
    Microsoft's published Service Tags JSON. `var_files`, `var_assignments`: Terraform's
    variables (`terraform_inputs()`)."""

    parameters: tuple[str, ...] = ()
    resource_group: str | None = None
    location: str | None = None
    subscription: str | None = None
    fqdn_tags_file: str | None = None
    service_tags_file: str | None = None
    # Terraform: `--var-file` and `--var NAME=VALUE`, in command-line order; later ones win.
    var_files: tuple[str, ...] = ()
    var_assignments: tuple[str, ...] = ()
    environ: Mapping[str, str] | None = None  # for `TF_VAR_*`; None: the process environment

    def terraform_inputs(self):  # type: ignore[no-untyped-def]
        from harness.policy.terraform import TerraformInputs

        tags = fqdn_tags_from_file(self.fqdn_tags_file) if self.fqdn_tags_file else None
        return TerraformInputs(var_files=self.var_files, assignments=self.var_assignments,
                               environ=self.environ, fqdn_tags=tags)  # fmt: skip

    def deployment_context(self) -> DeploymentContext:
        from harness.policy.arm_expr import DeploymentContext

        default = DeploymentContext()
        return DeploymentContext(
            resource_group=self.resource_group or default.resource_group,
            location=self.location or default.location,
            subscription_id=self.subscription or default.subscription_id,
        )

    @property
    def arm_only(self) -> bool:
        return bool(self.parameters or self.resource_group or self.location or self.subscription)


def _parameters_file(path: str, document: Document) -> dict[str, GivenValue]:
    from harness.policy.arm import GivenValue

    root = document.root
    if not isinstance(root.value, dict):
        raise root.error("a parameters file is a JSON object", '{"parameters": {"name": {...}}}')
    body = root
    keys = {str(key).lower(): key for key in root.value}
    if "parameters" in keys and ("$schema" in keys or "contentversion" in keys or len(keys) == 1):
        body = root.child(keys["parameters"])
        if not isinstance(body.value, dict):
            raise body.error("parameters must be an object", '"parameters": {"name": {...}}')
    given: dict[str, GivenValue] = {}
    for name, entry in body.items():
        if not isinstance(entry.value, dict):
            raise entry.error(
                f"parameter {name!r} must be an object with a value",
                f'write "{name}": {{"value": ...}}',
            )
        entry_keys = {str(key).lower(): key for key in entry.value}
        if "reference" in entry_keys:
            raise entry.child(entry_keys["reference"]).error(
                f"parameter {name!r} comes from a Key Vault reference, known only during a"
                " deployment",
                f"give it a plain value for the check: --parameters {name}=VALUE",
            )
        if "value" not in entry_keys:
            raise entry.error(
                f"parameter {name!r} has no value", f'write "{name}": {{"value": ...}}'
            )
        node = entry.child(entry_keys["value"])
        given[str(name)] = GivenValue(node, value=node.value)
    return given


def _load_parameters_file(path: str) -> dict[str, GivenValue]:
    if path.endswith(".bicepparam"):
        raise InputError(
            "a .bicepparam file is Bicep, not JSON",
            location=Location(path),
            fix="compile it: az bicep build-params --file FILE (then pass the .json)",
        )
    document = load_json_text(read_text(path), path, expect_mapping=True)
    return _parameters_file(path, document)


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a NAME=VALUE too long for a path, or with a NUL byte
        return False


def parameters_from_options(options: PolicyOptions) -> dict[str, GivenValue]:
    """Every `--parameters` value merged, later ones winning (az deployment's order)."""
    from harness.policy.arm import GivenValue

    given: dict[str, GivenValue] = {}
    for text in options.parameters:
        if text.lstrip().startswith("{"):  # inline JSON, as az takes it too
            document = load_json_text(text, "--parameters", expect_mapping=True)
            given.update(_parameters_file("--parameters", document))
            continue
        if text.startswith("@"):
            given.update(_load_parameters_file(text[1:]))
            continue
        key, equals, value = text.partition("=")
        if equals and key.strip() and not _is_file(text):
            if value.startswith("@"):
                file = value[1:]
                content = read_text(file)
                try:
                    parsed = json.loads(content)
                except (json.JSONDecodeError, RecursionError):
                    parsed = content.rstrip("\n")  # a plain text file is a string value
                given[key.strip()] = GivenValue(value=parsed)
            else:
                given[key.strip()] = GivenValue(text=value)
            continue
        if not _is_file(text):
            raise InputError(
                f"{text!r} is neither a parameters file nor KEY=VALUE",
                key_path="--parameters",
                fix="give a parameters file (main.parameters.json), @FILE or NAME=VALUE",
            )
        given.update(_load_parameters_file(text))
    return given


def fqdn_tags_from_file(path: str) -> dict[str, tuple[str, ...]]:
    """`--fqdn-tags FILE`: a YAML or JSON mapping of tag name to FQDN patterns, at the top or
    under `fqdn_tags:`."""
    document = load_document(path, expect_mapping=True)
    root: Node = document.root
    if isinstance(root.value, dict) and set(root.value) == {"fqdn_tags"}:
        root = root.child("fqdn_tags")
    if not isinstance(root.value, dict):
        raise root.error(
            "an FQDN tags file maps tag names to FQDNs",
            'e.g. WindowsUpdate: ["*.update.microsoft.com"]',
        )
    tags: dict[str, tuple[str, ...]] = {}
    for tag, child in root.items():
        if not isinstance(tag, str) or not tag.strip():
            raise child.error("an FQDN tag name must be a string", "name the tag")
        fqdns = _fqdn_patterns(child) if child.value is not None else []
        if not fqdns:
            raise child.error(f"FQDN tag {tag!r} lists no FQDNs", "list the FQDNs it stands for")
        tags[tag.strip()] = tuple(fqdns)
    return tags


def service_tags_from_file(path: str) -> dict[str, tuple[str, ...]]:
    """`--service-tags FILE`: Microsoft's published Service Tags JSON (`{"values": [{"name",
    "properties": {"addressPrefixes": [...]}}]}`), by tag name in lower case."""
    document = load_json_text(read_text(path), path, expect_mapping=True)
    root = document.root
    values = root.child("values")
    if not isinstance(values.value, list):
        raise values.error(
            "a Service Tags file has a `values` list",
            "download Microsoft's Service Tags JSON (ServiceTags_Public_<date>.json)",
        )
    tags: dict[str, tuple[str, ...]] = {}
    for entry in values.elements():
        name = entry.child("name")
        prefixes = entry.child("properties").child("addressPrefixes")
        if not isinstance(name.value, str) or not isinstance(prefixes.value, list):
            raise entry.error(
                "a service tag needs a name and properties.addressPrefixes",
                "use the file as Microsoft publishes it",
            )
        for item in prefixes.elements():
            if not isinstance(item.value, str):
                raise item.error("an address prefix must be a string", "use the published file")
        tags[name.value.lower()] = tuple(prefixes.value)
    return tags
