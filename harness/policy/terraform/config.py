"""A Terraform configuration (a `.tf` / `.tf.json` file, or a folder of them) evaluated offline
into resource instances: variables, locals, resources with `count` / `for_each`, `dynamic`
blocks, references between resources, local modules and their outputs.

Variable values, later wins (Terraform's order): `default`; `TF_VAR_<name>` in the
environment; for a folder, `terraform.tfvars`, `terraform.tfvars.json` and `*.auto.tfvars[.json]`
in lexical order; each `--var-file` in order; each `--var NAME=VALUE` in order. Values from
the environment and `--var` are strings, parsed as HCL when the variable's type is a list,
set, map, object or tuple. A variable with a `type` is converted to it (strings to numbers,
optional object attributes filled with their defaults).

Attributes only Azure knows (a resource's computed attributes other than `id`; every data
source; remote modules) are InputErrors at their line that point to `terraform show -json`.
A resource's `id` is Azure's form built from its name and resource group
(`/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/RG/providers/...`), so
references between the configuration's resources (an IP group's id, a policy's id) resolve.
"""

from __future__ import annotations

__all__ = ["Instance", "TerraformInputs", "evaluate_configuration", "is_configuration"]

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import InputError, Location
from harness.policy.forms import is_terraform_file as _is_tf
from harness.policy.forms import is_terraform_source as is_configuration
from harness.policy.terraform.evaluate import (
    SHOW_JSON_FIX,
    Budget,
    Evaluator,
    JsonExpression,
    Lazy,
    TfSet,
    Where,
    convert,
    iterate,
)
from harness.policy.terraform.hcl import (
    Attribute,
    Block,
    Body,
    parse_expression,
    parse_file,
    read_source,
)
from harness.yamlio import MarkedDict, MarkedList, format_key_path, load_json_text

NAME_LOCALS = ("firewall_policy_name",)
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
MAX_MODULE_DEPTH = 8
_META_ARGUMENTS = frozenset({"count", "for_each", "depends_on", "provider", "lifecycle"})
_SKIPPED_BLOCKS = frozenset({"lifecycle", "timeouts", "provisioner", "connection"})
_TOP_LEVEL = frozenset({
    "variable", "locals", "resource", "data", "module", "output", "terraform", "provider",
    "moved", "import", "check", "removed", "ephemeral",
})  # fmt: skip
_ARM_TYPES = {
    "azurerm_firewall_policy": "Microsoft.Network/firewallPolicies",
    "azurerm_ip_group": "Microsoft.Network/ipGroups",
    "azurerm_firewall": "Microsoft.Network/azureFirewalls",
    "azurerm_public_ip": "Microsoft.Network/publicIPAddresses",
    "azurerm_virtual_network": "Microsoft.Network/virtualNetworks",
}
# Nested block types of the resources the harness reads, for the JSON syntax (where a block
# and an attribute look alike).
JSON_BLOCKS = frozenset({
    "application_rule_collection", "network_rule_collection", "nat_rule_collection", "rule",
    "protocols", "protocol", "http_headers", "dynamic", "content", "timeouts", "lifecycle",
    "ip_configuration", "management_ip_configuration", "dns", "threat_intelligence_allowlist",
    "identity", "insights", "intrusion_detection", "tls_certificate", "explicit_proxy",
    "validation", "subnet", "virtual_hub",
})  # fmt: skip
# Arguments that only name things (the policy a group belongs to): unknown offline, they are
# left out rather than stopping the evaluation.
LENIENT_ARGUMENTS = {
    "azurerm_firewall_policy_rule_collection_group": frozenset({"firewall_policy_id"}),
}
_COMPLEX_TYPES = ("list", "set", "map", "object", "tuple")


@dataclass(frozen=True)
class TerraformInputs:
    """What `--var-file` and `--var` give, in command-line order within each kind; `environ`
    None means the process environment (for `TF_VAR_*`). `fqdn_tags`: the FQDNs `--fqdn-tags
    FILE` gives FQDN tags (Microsoft's own are unpublished), by tag name."""

    var_files: tuple[str, ...] = ()
    assignments: tuple[str, ...] = ()
    environ: Mapping[str, str] | None = None
    fqdn_tags: Mapping[str, tuple[str, ...]] | None = None


@dataclass
class Instance:
    """One resource instance: its type, address (`module.x.TYPE.NAME["key"]`), evaluated body
    (marked, so rule checks point into the file) and Azure-style id."""

    type: str
    address: str
    body: MarkedDict
    path: str
    mark: tuple[int, int]
    id: str


# --- reading files ------------------------------------------------------------------------


def _json_body(value: Any, path: str, mark: tuple[int, int], key_path: str) -> Body:
    if not isinstance(value, dict):
        raise InputError("a block must be a JSON object", location=Location(path, *mark),
                         key_path=key_path, fix="write the block's arguments as an object")  # fmt: skip
    body = Body()
    for key, child in value.items():
        key_mark = value.key_marks.get(key, mark) if isinstance(value, MarkedDict) else mark
        if key == "//":
            continue
        if key == "dynamic" and isinstance(child, dict):
            for label, inner in child.items():
                for item in inner if isinstance(inner, list) else [inner]:
                    inner_body = _json_body(item, path, key_mark, f"{key_path}.dynamic.{label}")
                    content = inner_body.attributes.pop("content", None)
                    if content is not None:
                        inner_body.blocks.append(Block(
                            "content", (), _json_body(content.expression.value, path, key_mark,
                                                      f"{key_path}.dynamic.{label}.content"),
                            path, key_mark))  # fmt: skip
                    body.blocks.append(Block("dynamic", (label,), inner_body, path, key_mark))
            continue
        items = child if isinstance(child, list) else [child]
        if key in JSON_BLOCKS and items and all(isinstance(i, dict) for i in items):
            for item in items:
                item_mark = item.start if isinstance(item, MarkedDict) and item.start else key_mark
                body.blocks.append(Block(key, (), _json_body(item, path, item_mark,
                                                             f"{key_path}.{key}"), path, item_mark))  # fmt: skip
            continue
        body.attributes[key] = Attribute(key, JsonExpression(child, path, key_mark), path,
                                         key_mark)  # fmt: skip
    return body


def _json_file(path: Path) -> list[Block]:
    text = read_source(path)
    try:
        document = load_json_text(text, path, expect_mapping=True)
    except RecursionError:
        raise InputError("the JSON nests too deeply", location=Location(str(path)),
                         fix="flatten the configuration") from None  # fmt: skip
    root = document.data
    if not isinstance(root, dict):
        raise InputError("a .tf.json file must hold a JSON object", location=Location(str(path)),
                         fix='write e.g. {"resource": {...}}')  # fmt: skip
    blocks: list[Block] = []
    name = str(path)
    for kind, value in root.items():
        mark = root.key_marks.get(kind, (1, 1)) if isinstance(root, MarkedDict) else (1, 1)
        if kind == "//":  # the JSON syntax's comment
            continue
        if kind not in _TOP_LEVEL:
            raise InputError(f"unknown top-level key {kind!r}", location=Location(name, *mark),
                             key_path=kind, fix="Terraform's JSON syntax takes resource,"
                             " variable, locals, module, output, data, ...")  # fmt: skip
        if kind == "locals":
            for item in value if isinstance(value, list) else [value]:
                blocks.append(Block("locals", (), _json_body(item, name, mark, kind), name, mark))
        elif kind in ("variable", "output", "module"):
            if not isinstance(value, dict):
                raise InputError(f"{kind} must be an object of names", location=Location(name, *mark),
                                 key_path=kind, fix='e.g. {"NAME": {...}}')  # fmt: skip
            for label, body in value.items():
                label_mark = (
                    value.key_marks.get(label, mark) if isinstance(value, MarkedDict) else mark
                )
                blocks.append(Block(kind, (label,), _json_body(body, name, label_mark,
                                                               f"{kind}.{label}"), name, label_mark))  # fmt: skip
        elif kind in ("resource", "data"):
            if not isinstance(value, dict):
                raise InputError(f"{kind} must be an object of types", location=Location(name, *mark),
                                 key_path=kind, fix='e.g. {"TYPE": {"NAME": {...}}}')  # fmt: skip
            for rtype, labelled in value.items():
                if not isinstance(labelled, dict):
                    raise InputError(f"{kind}.{rtype} must be an object of names",
                                     location=Location(name, *mark), key_path=f"{kind}.{rtype}",
                                     fix='e.g. {"NAME": {...}}')  # fmt: skip
                for label, body in labelled.items():
                    label_mark = (labelled.key_marks.get(label, mark)
                                  if isinstance(labelled, MarkedDict) else mark)  # fmt: skip
                    blocks.append(Block(kind, (rtype, label), _json_body(
                        body, name, label_mark, f"{rtype}.{label}"), name, label_mark))  # fmt: skip
    return blocks


def _native_file(path: Path) -> list[Block]:
    body = parse_file(read_source(path), str(path))
    for attribute in body.attributes.values():
        fix = (f"write `{attribute.name} {{ ... }}` (a block)" if attribute.name in _TOP_LEVEL
               else "a .tf file holds blocks (resource, variable, locals, ...); values go in"
               " a .tfvars file")  # fmt: skip
        raise InputError(f"{attribute.name!r} is an argument at the top level of a .tf file",
                         location=Location(str(path), *attribute.mark), key_path=attribute.name,
                         fix=fix)  # fmt: skip
    return body.blocks


def _files_of(source: Path) -> tuple[list[Path], Path]:
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if _is_tf(p))
        if not files:
            raise InputError(f"{source} holds no .tf or .tf.json files",
                             fix="give the folder of the Terraform configuration")  # fmt: skip
        for file in files:
            stem = file.name.lower().removesuffix(".json").removesuffix(".tf")
            if stem == "override" or stem.endswith("_override"):
                raise InputError("override files are not evaluated", location=Location(str(file)),
                                 fix=f"merge it into the configuration, or {SHOW_JSON_FIX}")  # fmt: skip
        return files, source
    return [source], source.parent


# --- the configuration --------------------------------------------------------------------


class _Namespace(Lazy):
    def __init__(self, what: str, lookup: Callable[[str, Callable[..., InputError]], Any]) -> None:
        self.what = what
        self.lookup = lookup

    def attr(self, name: str, fail: Callable[..., InputError]) -> Any:
        return self.lookup(name, fail)


class _InstanceValue(Lazy):
    """A resource instance as other expressions see it."""

    def __init__(self, module: _Module, resource: _Resource, key: Any, scope: dict[str, Any]):
        self.module, self.resource, self.key, self.scope = module, resource, key, scope
        self.what = f"resource {resource.address(key)}"

    def attr(self, name: str, fail: Callable[..., InputError]) -> Any:
        if name == "id":
            return self.module.id_of(self)
        body = self.resource.block.body
        if name in body.attributes and name not in _META_ARGUMENTS:
            return self.module.attribute_of(self, name)
        blocks = [b for b in body.blocks if b.type == name]
        if blocks:
            where = Where(self.resource.block.path, f"{self.resource.address(self.key)}.{name}")
            return self.module.blocks_value(blocks, self.scope, where)
        raise fail(f"{self.resource.address(self.key)}.{name} is known only after apply (Azure"
                   " computes it)", SHOW_JSON_FIX)  # fmt: skip

    def as_value(self, fail: Callable[..., InputError]) -> Any:
        body = self.resource.block.body
        value = {n: self.attr(n, fail) for n in body.attributes if n not in _META_ARGUMENTS}
        value["id"] = self.attr("id", fail)
        return value


@dataclass
class _Resource:
    type: str
    label: str
    block: Block
    prefix: str  # "module.x." or ""

    def address(self, key: Any = None) -> str:
        base = f"{self.prefix}{self.type}.{self.label}"
        if key is None:
            return base
        return f"{base}[{key}]" if isinstance(key, int) else f'{base}["{key}"]'


@dataclass
class _Module:
    directory: Path
    blocks: list[Block]
    prefix: str
    evaluator: Evaluator
    assigned: dict[str, Any]  # variable values given from outside (tfvars, --var, module args)
    assigned_from: dict[str, str] = field(default_factory=dict)
    depth: int = 0
    root_directory: Path | None = None
    variables: dict[str, Block] = field(default_factory=dict)
    locals: dict[str, Attribute] = field(default_factory=dict)
    resources: dict[tuple[str, str], _Resource] = field(default_factory=dict)
    data: dict[tuple[str, str], Block] = field(default_factory=dict)
    modules: dict[str, Block] = field(default_factory=dict)
    outputs: dict[str, Attribute] = field(default_factory=dict)
    children: dict[str, _Module] = field(default_factory=dict)
    _cache: dict[Any, Any] = field(default_factory=dict)
    _active: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for block in self.blocks:
            self._declare(block)

    # --- declarations ---------------------------------------------------------------------

    def _twice(self, block: Block, what: str, first: Block | Attribute) -> InputError:
        return InputError(f"{what} is declared twice (first at {first.path}:{first.mark[0]})",
                          location=Location(block.path, *block.mark),
                          fix="remove or rename one of them")  # fmt: skip

    def _declare(self, block: Block) -> None:
        kind, labels = block.type, block.labels
        needs = {"variable": 1, "resource": 2, "data": 2, "module": 1, "output": 1, "locals": 0}
        if kind in needs and len(labels) != needs[kind]:
            raise InputError(f"a {kind} block takes {needs[kind]} label(s), not {len(labels)}",
                             location=Location(block.path, *block.mark),
                             fix=f'e.g. {kind} "NAME" {{ ... }}')  # fmt: skip
        if kind == "variable":
            if labels[0] in self.variables:
                raise self._twice(block, f"variable {labels[0]!r}", self.variables[labels[0]])
            self.variables[labels[0]] = block
        elif kind == "locals":
            for name, attribute in block.body.attributes.items():
                if name in self.locals:
                    raise InputError(f"local.{name} is defined twice (first at"
                                     f" {self.locals[name].path}:{self.locals[name].mark[0]})",
                                     location=Location(attribute.path, *attribute.mark),
                                     key_path=f"local.{name}", fix="remove one of them")  # fmt: skip
                self.locals[name] = attribute
        elif kind == "resource":
            key = (labels[0], labels[1])
            if key in self.resources:
                raise self._twice(block, f"resource {'.'.join(key)}", self.resources[key].block)
            self.resources[key] = _Resource(labels[0], labels[1], block, self.prefix)
        elif kind == "data":
            self.data[(labels[0], labels[1])] = block
        elif kind == "module":
            if labels[0] in self.modules:
                raise self._twice(block, f"module {labels[0]!r}", self.modules[labels[0]])
            self.modules[labels[0]] = block
        elif kind == "output":
            value = block.body.attributes.get("value")
            if value is not None:
                self.outputs[labels[0]] = value

    # --- names ----------------------------------------------------------------------------

    def roots(self, name: str, fail: Callable[..., InputError]) -> Any:
        if name == "var":
            return _Namespace("var", self.variable)
        if name == "local":
            return _Namespace("local", self.local)
        if name == "data":
            return _Namespace("data", lambda kind, fail: _Namespace(
                f"data.{kind}", lambda label, fail: self._data(kind, label, fail)))  # fmt: skip
        if name == "module":
            return _Namespace("module", self.module_value)
        if name == "path":
            root = self.root_directory or self.directory
            return {"module": str(self.directory), "root": str(root), "cwd": os.getcwd()}
        if name == "terraform":
            return {"workspace": "default"}
        if name in ("each", "count", "self"):
            raise fail(f"{name} is only defined inside a resource that uses it",
                       "use it inside the block with for_each / count")  # fmt: skip
        if any(rtype == name for rtype, _ in self.resources):
            return _Namespace(f"resource type {name}", lambda label, fail: self.resource_value(
                name, label, fail))  # fmt: skip
        if "_" in name and name.split("_")[0] in ("azurerm", "azapi", "random", "null", "time"):
            raise fail(f"no resource of type {name} in this configuration",
                       "refer to a resource the configuration declares")  # fmt: skip
        return None

    def _guard(self, key: str, fail: Callable[..., InputError]) -> None:
        if key in self._active:
            chain = " -> ".join([*self._active[self._active.index(key) :], key])
            raise fail(f"{key} refers to itself ({chain})", "break the cycle")

    def _cached(self, key: str, fail: Callable[..., InputError],
                compute: Callable[[], Any]) -> Any:  # fmt: skip
        if key in self._cache:
            return self._cache[key]
        self._guard(key, fail)
        self._active.append(key)
        try:
            value = compute()
        finally:
            self._active.pop()
        self._cache[key] = value
        return value

    def variable(self, name: str, fail: Callable[..., InputError]) -> Any:
        if name not in self.variables:
            raise fail(f"var.{name} is not declared", f'add variable "{name}" {{}}')
        return self._cached(f"var.{name}", fail, lambda: self._variable_value(name, fail))

    def _variable_value(self, name: str, fail: Callable[..., InputError]) -> Any:
        block = self.variables[name]
        where = Where(block.path, f"var.{name}")
        constraint = self.type_of(block)
        if name in self.assigned:
            value = self.assigned[name]
            if isinstance(value, _Raw):
                value = value.parse(constraint)
            elif isinstance(value, _Deferred):
                value = value.compute()
            where = Where(self.assigned_from.get(name, block.path), f"var.{name}")
        elif "default" in block.body.attributes:
            default = block.body.attributes["default"]
            value = self.evaluator.evaluate(default.expression, {}, where_with(where, default))
        else:
            missing = [
                v
                for v in self.variables
                if v not in self.assigned and "default" not in self.variables[v].body.attributes
            ]
            raise fail(
                f"var.{name} has no value; variables without one: {', '.join(missing)}",
                "give them with --var-file FILE, --var NAME=VALUE or TF_VAR_NAME",
            )
        return convert(value, constraint, lambda p, f="": fail(p, f), f"var.{name}")

    def type_of(self, block: Block) -> Any:
        attribute = block.body.attributes.get("type")
        if attribute is None:
            return None
        return _type_constraint(
            attribute, self.evaluator, Where(block.path, f"var.{block.labels[0]}.type")
        )

    def local(self, name: str, fail: Callable[..., InputError]) -> Any:
        if name not in self.locals:
            near = ", ".join(sorted(self.locals)[:10]) or "none"
            raise fail(f"local.{name} is not defined", f"the locals defined: {near}")
        attribute = self.locals[name]
        where = Where(attribute.path, f"local.{name}")
        return self._cached(f"local.{name}", fail, lambda: self.evaluator.evaluate(
            attribute.expression, {}, where_with(where, attribute)))  # fmt: skip

    def _data(self, kind: str, label: str, fail: Callable[..., InputError]) -> Any:
        block = self.data.get((kind, label))
        declared = f" (declared at {block.path}:{block.mark[0]})" if block else ""
        raise fail(f"data.{kind}.{label} is read from Azure at plan time{declared}, which the"
                   " harness cannot do offline", SHOW_JSON_FIX)  # fmt: skip

    # --- resources ------------------------------------------------------------------------

    def instances_of(self, resource: _Resource) -> list[tuple[Any, dict[str, Any]]]:
        """(key, scope) of each instance; key None without count / for_each."""
        key = f"instances {resource.address()}"

        def compute() -> list[tuple[Any, dict[str, Any]]]:
            attributes = resource.block.body.attributes
            where = Where(resource.block.path, resource.address())
            if "count" in attributes and "for_each" in attributes:
                raise InputError("count and for_each cannot both be set",
                                 location=Location(resource.block.path, *resource.block.mark),
                                 key_path=where.key_path, fix="keep one")  # fmt: skip
            if "count" in attributes:
                attribute = attributes["count"]
                count = self.evaluator.evaluate(attribute.expression, {},
                                                where_with(Where(where.path, f"{where.key_path}.count"), attribute))  # fmt: skip
                if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                    raise InputError(f"count must be a whole number, not {count!r}",
                                     location=Location(attribute.path, *attribute.mark),
                                     key_path=f"{where.key_path}.count", fix="e.g. count = 2")  # fmt: skip
                self.evaluator.step(where, None, count)
                return [(i, {"count": {"index": i}}) for i in range(count)]
            if "for_each" in attributes:
                attribute = attributes["for_each"]
                at = where_with(Where(where.path, f"{where.key_path}.for_each"), attribute)
                collection = self.evaluator.evaluate(attribute.expression, {}, at)
                fail = _failer(at, attribute)
                if isinstance(collection, list) and not isinstance(collection, TfSet):
                    raise fail("for_each on a resource takes a map or a set, not a list",
                               "wrap it in toset(...) or build a map")  # fmt: skip
                pairs = iterate(collection, fail)
                return [(k, {"each": {"key": k, "value": v}}) for k, v in pairs]
            return [(None, {})]

        return self._cached(key, lambda p, f="": InputError(p, fix=f), compute)

    def resource_value(self, rtype: str, label: str, fail: Callable[..., InputError]) -> Any:
        resource = self.resources.get((rtype, label))
        if resource is None:
            raise fail(f"no resource {rtype}.{label} in this configuration",
                       "refer to a resource the configuration declares")  # fmt: skip
        instances = self.instances_of(resource)
        values = [(k, _InstanceValue(self, resource, k, scope)) for k, scope in instances]
        if "count" in resource.block.body.attributes:
            return [value for _, value in values]
        if "for_each" in resource.block.body.attributes:
            return dict(values)
        return values[0][1]

    def attribute_of(self, instance: _InstanceValue, name: str) -> Any:
        resource = instance.resource
        attribute = resource.block.body.attributes[name]
        where = Where(attribute.path, f"{resource.address(instance.key)}.{name}")
        return self._cached(
            f"{resource.address(instance.key)}.{name}", _failer(where, attribute),
            lambda: self.evaluator.evaluate(attribute.expression, instance.scope,
                                            where_with(where, attribute)),
        )  # fmt: skip

    def id_of(self, instance: _InstanceValue) -> str:
        resource = instance.resource
        fail = _failer(Where(resource.block.path, resource.address(instance.key)), resource.block)

        def text(name: str) -> str | None:
            if name not in resource.block.body.attributes:
                return None
            try:
                value = instance.attr(name, fail)
            except InputError as error:
                if "(MAX_" in error.problem:
                    raise
                return None  # an id only has to tell resources apart, and stay stable
            return value if isinstance(value, str) else None

        if resource.type == "azurerm_resource_group":
            return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{text('name')}"
        if resource.type == "azurerm_firewall_policy_rule_collection_group":
            return f"{text('firewall_policy_id')}/ruleCollectionGroups/{text('name')}"
        arm_type = _ARM_TYPES.get(resource.type)
        name = text("name")
        if arm_type is None or name is None:
            return f"/terraform/{resource.address(instance.key)}"
        group = text("resource_group_name") or "resource-group"
        return (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/{arm_type}"
                f"/{name}")  # fmt: skip

    def blocks_value(self, blocks: list[Block], scope: dict[str, Any], where: Where) -> Any:
        body = Body(blocks=blocks)
        evaluated = self.body_value(body, scope, where)
        return next(iter(evaluated.values()), [])

    def body_value(self, body: Body, scope: dict[str, Any], where: Where,
                   parts: tuple[str | int, ...] = (),
                   lenient: frozenset[str] = frozenset()) -> MarkedDict:  # fmt: skip
        """A block body evaluated: arguments by name, nested blocks as lists under their type
        (a `dynamic` block's generated blocks included, in order)."""
        result = MarkedDict()
        for name, attribute in body.attributes.items():
            if name in _META_ARGUMENTS:
                continue
            at = Where(attribute.path, where.key_path, None, (*parts, name))
            try:
                result[name] = self.evaluator.evaluate(attribute.expression, scope,
                                                       where_with(at, attribute))  # fmt: skip
            except InputError as error:
                if name not in lenient or "(MAX_" in error.problem:
                    raise
                result[name] = None  # only names the policy; unknown offline is fine
            result.key_marks[name] = attribute.mark
        for block in body.blocks:
            if block.type in _SKIPPED_BLOCKS:
                continue
            if block.type == "dynamic":
                self._dynamic(block, scope, where, parts, result)
                continue
            items = result.setdefault(block.type, MarkedList())
            result.key_marks.setdefault(block.type, block.mark)
            items.append(
                self.body_value(block.body, scope, where, (*parts, block.type, len(items)))
            )
            items.item_marks.append(block.mark)
        return result

    def _dynamic(self, block: Block, scope: dict[str, Any], where: Where,
                 parts: tuple[str | int, ...], result: MarkedDict) -> None:  # fmt: skip
        label = block.labels[0] if block.labels else "?"
        at = Where(block.path, format_key_path((*parts, "dynamic", label), where.key_path))
        if len(block.labels) != 1:
            raise InputError("a dynamic block takes one label, the block type",
                             location=Location(block.path, *block.mark), key_path=at.key_path,
                             fix='e.g. dynamic "rule" { ... }')  # fmt: skip
        attributes = block.body.attributes
        contents = [b for b in block.body.blocks if b.type == "content"]
        if "for_each" not in attributes or len(contents) != 1:
            raise InputError("a dynamic block needs for_each and one content block",
                             location=Location(block.path, *block.mark), key_path=at.key_path,
                             fix="add for_each = ... and content { ... }")  # fmt: skip
        iterator = label
        if "iterator" in attributes:
            iterator = _bare_name(attributes["iterator"], at)
        for_each = attributes["for_each"]
        collection = self.evaluator.evaluate(for_each.expression, scope,
                                             where_with(Where(block.path, f"{at.key_path}.for_each"), for_each))  # fmt: skip
        pairs = iterate(collection, _failer(at, for_each))
        self.evaluator.step(at, None, len(pairs))
        items = result.setdefault(label, MarkedList())
        result.key_marks.setdefault(label, block.mark)
        for key, value in pairs:
            inner = {**scope, iterator: {"key": key, "value": value}}
            items.append(
                self.body_value(contents[0].body, inner, where, (*parts, label, len(items)))
            )
            items.item_marks.append(contents[0].mark)

    # --- modules --------------------------------------------------------------------------

    def child(self, name: str, fail: Callable[..., InputError] | None = None) -> _Module:
        if name in self.children:
            return self.children[name]
        block = self.modules.get(name)
        if block is None:
            raise (fail or _failer(Where(str(self.directory)), None))(
                f"module.{name} is not declared", f'add module "{name}" {{ source = "./..." }}'
            )
        where = Where(block.path, f"{self.prefix}module.{name}")
        attributes = block.body.attributes
        if "count" in attributes or "for_each" in attributes:
            raise InputError("count / for_each on a module is not evaluated",
                             location=Location(block.path, *block.mark), key_path=where.key_path,
                             fix=SHOW_JSON_FIX)  # fmt: skip
        source_attribute = attributes.get("source")
        source = (
            self.evaluator.evaluate(source_attribute.expression, {}, where)
            if source_attribute
            else None
        )
        if not isinstance(source, str) or not source.startswith(("./", "../")):
            raise InputError(f"module {name!r} comes from {source!r}, which is not read offline"
                             " (only local ./ and ../ modules are)",
                             location=Location(block.path, *block.mark), key_path=where.key_path,
                             fix=SHOW_JSON_FIX)  # fmt: skip
        if self.depth >= MAX_MODULE_DEPTH:
            raise InputError(f"modules nest deeper than {MAX_MODULE_DEPTH} (MAX_MODULE_DEPTH)",
                             location=Location(block.path, *block.mark), key_path=where.key_path,
                             fix=SHOW_JSON_FIX)  # fmt: skip
        directory = (self.directory / source).resolve()
        if not directory.is_dir():
            raise InputError(f"module {name!r}: {directory} is not a folder",
                             location=Location(block.path, *block.mark), key_path=where.key_path,
                             fix="check the module's source path")  # fmt: skip
        files, _ = _files_of(directory)
        blocks = [b for file in files for b in _read(file)]
        inputs: dict[str, Any] = {}
        for argument, attribute in attributes.items():
            if argument in ("source", "version", "providers", "depends_on"):
                continue
            at = Where(attribute.path, f"{where.key_path}.{argument}")
            # Evaluated when the module uses it: an input only naming things (a policy id from
            # a module the harness cannot read) must not stop the rules from loading.
            inputs[argument] = _Deferred(
                lambda attribute=attribute, at=at: self.evaluator.evaluate(
                    attribute.expression, {}, where_with(at, attribute)
                )
            )
        holder: list[_Module] = []
        evaluator = Evaluator(lambda n, fail: holder[0].roots(n, fail), self.evaluator.budget)
        module = _Module(directory, blocks, f"{self.prefix}module.{name}.", evaluator,
                         inputs, {k: block.path for k in inputs}, self.depth + 1,
                         self.root_directory or self.directory)  # fmt: skip
        for argument in inputs:
            if argument not in module.variables:
                attribute = attributes[argument]
                raise InputError(f"module {name!r} has no variable {argument!r}",
                                 location=Location(attribute.path, *attribute.mark),
                                 key_path=f"{where.key_path}.{argument}",
                                 fix="check the module's variables")  # fmt: skip
        holder.append(module)
        self.children[name] = module
        return module

    def module_value(self, name: str, fail: Callable[..., InputError]) -> Any:
        module = self.child(name, fail)

        def output(output_name: str, fail: Callable[..., InputError]) -> Any:
            attribute = module.outputs.get(output_name)
            if attribute is None:
                raise fail(f"module.{name} has no output {output_name!r}", "check the module")
            where = Where(attribute.path, f"module.{name}.{output_name}")
            return module._cached(f"output.{output_name}", fail, lambda: module.evaluator.evaluate(
                attribute.expression, {}, where_with(where, attribute)))  # fmt: skip

        return _Namespace(f"module.{name}", output)

    # --- everything -----------------------------------------------------------------------

    def instances(self, wanted: Iterable[str]) -> list[Instance]:
        wanted = frozenset(wanted)
        found: list[Instance] = []
        for (rtype, _), resource in self.resources.items():
            if rtype not in wanted:
                continue
            for key, scope in self.instances_of(resource):
                address = resource.address(key)
                where = Where(resource.block.path, address)
                body = self.body_value(
                    resource.block.body,
                    scope,
                    where,
                    lenient=LENIENT_ARGUMENTS.get(rtype, frozenset()),
                )
                body.start = resource.block.mark
                value = _InstanceValue(self, resource, key, scope)
                found.append(Instance(rtype, address, body, resource.block.path,
                                      resource.block.mark, self.id_of(value)))  # fmt: skip
        for name in self.modules:
            found.extend(self.child(name).instances(wanted))
        return found


class _Deferred:
    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute


class _Raw:
    """A string from the environment or `--var`, typed once the variable's type is known."""

    def __init__(self, text: str, where: str) -> None:
        self.text, self.where = text, where

    def parse(self, constraint: Any) -> Any:
        if isinstance(constraint, tuple) and constraint[0] in _COMPLEX_TYPES:
            tree = parse_expression(self.text, self.where, (1, 1))
            evaluator = Evaluator(lambda name, fail: None)
            return evaluator.evaluate(tree, {}, Where(self.where))
        return self.text


def where_with(where: Where, attribute: Attribute | Block) -> Where:
    return replace(where, path=attribute.path)


def _failer(where: Where, at: Attribute | Block | None) -> Callable[..., InputError]:
    mark = at.mark if at is not None else None

    def fail(problem: str, fix: str = "") -> InputError:
        return InputError(problem, location=Location(where.path, *(mark or (None, None))),
                          key_path=where.shown_key_path, fix=fix)  # fmt: skip

    return fail


def _bare_name(attribute: Attribute, where: Where) -> str:
    tree = attribute.expression
    while hasattr(tree, "children") and tree.data == "expr_term" and len(tree.children) == 1:
        tree = tree.children[0]
    if hasattr(tree, "data") and tree.data == "identifier":
        return str(tree.children[0])
    if isinstance(getattr(tree, "value", None), str):
        return tree.value
    raise InputError("iterator must be a bare name", location=Location(attribute.path, *attribute.mark),
                     key_path=f"{where.key_path}.iterator", fix="e.g. iterator = rule")  # fmt: skip


def _type_constraint(attribute: Attribute, evaluator: Evaluator, where: Where) -> Any:
    """A variable's `type` as the value `convert` takes: "string" | "number" | "bool" | "any" |
    (kind, inner); objects as ("object", {name: (type, optional, default)})."""
    fail = _failer(where, attribute)

    def walk(tree: Any, depth: int = 0) -> Any:
        if depth > 20:
            raise fail("the type nests deeper than 20 levels", "simplify it")
        if isinstance(tree, JsonExpression):
            return walk(parse_expression(tree.value, attribute.path, attribute.mark).tree, depth)
        if hasattr(tree, "tree"):
            return walk(tree.tree, depth)
        while (
            tree.data == "expr_term" and len([c for c in tree.children if hasattr(c, "data")]) == 1
        ):
            tree = next(c for c in tree.children if hasattr(c, "data"))
        if tree.data == "identifier":
            name = str(tree.children[0])
            if name in ("string", "number", "bool", "any"):
                return name
            raise fail(
                f"unknown type {name!r}", "use string, number, bool, list(...), map(...), ..."
            )
        if tree.data == "function_call":
            name = str(tree.children[0].children[0])
            arguments = [c for c in tree.children if hasattr(c, "data") and c.data == "arguments"]
            args = [c for c in arguments[0].children if hasattr(c, "data")
                    and c.data != "new_line_or_comment"] if arguments else []  # fmt: skip
            if name in ("list", "set", "map") and len(args) == 1:
                return (name, walk(args[0], depth + 1))
            if name == "tuple" and len(args) == 1:
                inner = _unwrap(args[0])
                items = [c for c in inner.children if hasattr(c, "data")
                         and c.data != "new_line_or_comment"]  # fmt: skip
                return ("tuple", [walk(i, depth + 1) for i in items])
            if name == "object" and len(args) == 1:
                inner = _unwrap(args[0])
                fields: dict[str, Any] = {}
                for element in [c for c in inner.children if hasattr(c, "data")
                                and c.data == "object_elem"]:  # fmt: skip
                    key_tree, value_tree = [c for c in element.children if hasattr(c, "data")]
                    key = str(_unwrap(key_tree.children[0]).children[0]).strip('"')
                    if not isinstance(_unwrap(key_tree.children[0]).children[0], str):
                        key = "".join(
                            str(x) for x in _unwrap(key_tree.children[0]).children[0].children
                        )
                    fields[key] = _optional(value_tree, depth)
                return ("object", fields)
            if name == "optional":
                raise fail("optional() is only valid for an attribute of object({...})", "")
        raise fail(
            "the type is not one Terraform knows", "use string, number, bool, list(...), ..."
        )

    def _optional(tree: Any, depth: int) -> tuple[Any, bool, Any]:
        inner = _unwrap(tree)
        if inner.data == "function_call" and str(inner.children[0].children[0]) == "optional":
            arguments = [c for c in inner.children if hasattr(c, "data") and c.data == "arguments"]
            args = [c for c in arguments[0].children if hasattr(c, "data")
                    and c.data != "new_line_or_comment"]  # fmt: skip
            default = evaluator.evaluate(args[1], {}, where) if len(args) > 1 else None
            return walk(args[0], depth + 1), True, default
        return walk(tree, depth + 1), False, None

    return walk(attribute.expression)


def _unwrap(tree: Any) -> Any:
    while hasattr(tree, "data") and tree.data == "expr_term":
        inner = [c for c in tree.children if hasattr(c, "data") and c.data != "new_line_or_comment"]
        if len(inner) != 1:
            break
        tree = inner[0]
    return tree


def _read(path: Path) -> list[Block]:
    if path.name.lower().endswith(".tf.json"):
        return _json_file(path)
    return _native_file(path)


# --- variable values ----------------------------------------------------------------------


def _tfvars(path: Path, evaluator: Evaluator) -> dict[str, tuple[Any, str]]:
    """name -> (value, file) of a .tfvars (HCL) or .tfvars.json file."""
    name = str(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist", key_path="--var-file",
                         fix="give a .tfvars or .tfvars.json file")  # fmt: skip
    if name.lower().endswith(".json"):
        # Plain json: values from here carry no marks (errors point where they are used).
        text = read_source(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"JSON syntax error: {error.msg}",
                             location=Location(name, error.lineno, error.colno),
                             fix="fix the JSON syntax") from None  # fmt: skip
        except RecursionError:
            raise InputError("the JSON nests too deeply", location=Location(name),
                             fix="flatten the values") from None  # fmt: skip
        if not isinstance(data, dict):
            raise InputError("a .tfvars.json file must hold a JSON object",
                             location=Location(name, 1, 1), fix='e.g. {"NAME": "value"}')  # fmt: skip
        return {key: (value, name) for key, value in data.items()}
    body = parse_file(read_source(path), name)
    if body.blocks:
        block = body.blocks[0]
        raise InputError(f"a .tfvars file holds NAME = VALUE lines, not a {block.type!r} block",
                         location=Location(name, *block.mark),
                         fix="give variable values only; declarations go in the .tf files")  # fmt: skip
    values = {}
    for key, attribute in body.attributes.items():
        values[key] = (evaluator.evaluate(attribute.expression, {},
                                          Where(name, f"var.{key}")), name)  # fmt: skip
    return values


def _assignments(directory: Path | None, inputs: TerraformInputs, declared: Mapping[str, Block],
                 evaluator: Evaluator) -> tuple[dict[str, Any], dict[str, str]]:  # fmt: skip
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    environ = os.environ if inputs.environ is None else inputs.environ
    for key, text in environ.items():
        if key.startswith("TF_VAR_") and key[7:] in declared:
            values[key[7:]], origin[key[7:]] = _Raw(text, key), key
    auto: list[Path] = []
    if directory is not None:
        for name in ("terraform.tfvars", "terraform.tfvars.json"):
            if (directory / name).is_file():
                auto.append(directory / name)
        auto.extend(sorted(p for p in directory.iterdir() if p.is_file() and (
            p.name.endswith(".auto.tfvars") or p.name.endswith(".auto.tfvars.json"))))  # fmt: skip
    for file in auto:
        for key, (value, where) in _tfvars(file, evaluator).items():
            if key in declared:  # Terraform warns about the others and goes on
                values[key], origin[key] = value, where
    for file_name in inputs.var_files:
        for key, (value, where) in _tfvars(Path(file_name), evaluator).items():
            if key not in declared:
                raise InputError(f"variable {key!r} is not declared in the configuration",
                                 location=Location(where), key_path=key,
                                 fix="declare it with a variable block, or remove it")  # fmt: skip
            values[key], origin[key] = value, where
    for assignment in inputs.assignments:
        key, equals, text = assignment.partition("=")
        key = key.strip()
        if not equals or not key:
            raise InputError(f"--var {assignment!r} is not NAME=VALUE", key_path="--var",
                             fix='e.g. --var group_priority=300 or --var \'subnets=["10.0.0.0/24"]\'')  # fmt: skip
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise InputError(f"--var {key}: the configuration declares no variable {key!r}",
                             key_path="--var", fix=f"its variables: {known}")  # fmt: skip
        values[key], origin[key] = _Raw(text, f"--var {key}"), f"--var {key}"
    return values, origin


def evaluate_configuration(source: Path, inputs: TerraformInputs, wanted: Iterable[str],
                           budget: Budget | None = None,
                           ) -> tuple[list[Instance], dict[str, Any]]:  # fmt: skip
    """The instances of the `wanted` resource types in the configuration at `source` (a file or
    a folder) and its local modules, and the root module's string locals that name things
    (`firewall_policy_name`, which `egress export` writes)."""
    files, directory = _files_of(source)
    blocks = [block for file in files for block in _read(file)]
    holder: list[_Module] = []
    evaluator = Evaluator(lambda name, fail: holder[0].roots(name, fail), budget)
    declared = {b.labels[0]: b for b in blocks if b.type == "variable" and len(b.labels) == 1}
    plain_evaluator = Evaluator(lambda name, fail: None, evaluator.budget)
    values, origin = _assignments(directory if source.is_dir() else None, inputs, declared,
                                  plain_evaluator)  # fmt: skip
    module = _Module(directory, blocks, "", evaluator, values, origin)
    holder.append(module)
    instances = module.instances(wanted)
    hints = {}
    for name in NAME_LOCALS:
        if name in module.locals:
            value = module.local(name, lambda p, f="": InputError(p, fix=f))
            if isinstance(value, str):
                hints[name] = value
    return instances, hints
