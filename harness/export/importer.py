"""Policy files of any accepted form to the model (`egress import`).

- Terraform (`.tf`): every `azurerm_firewall_policy_rule_collection_group` resource of the file,
  parsed with python-hcl2 and checked by `harness.policy.load`'s rule checks, so the same
  mistakes give the same messages (with Terraform's key names: `destination_fqdns`,
  `protocols { type, port }`). Values may be literals, `var.NAME` (a variable's default) or
  `local.NAME`; anything else is an InputError naming the block. The policy's name comes from
  `local.firewall_policy_name` (which `egress export` writes), else an `azurerm_firewall_policy`
  resource the groups refer to, else a literal policy id, else the file's stem. Collections come
  back in priority order (Terraform keeps the two kinds in separate lists). DNAT collections are
  not simulated and are skipped, as in ARM.
- Everything else (YAML, ARM, az output, classic): `harness.policy.load.load_policy`.
"""

from __future__ import annotations

__all__ = ["import_policy", "import_to_yaml", "policy_from_terraform", "policy_of"]

import re
from pathlib import Path
from typing import Any

from harness.errors import EnvironmentProblem, InputError, Location
from harness.export.yaml_form import policy_to_yaml
from harness.limits import MAX_DEPTH
from harness.policy.load import (
    Context,
    Dialect,
    action_of,
    check_groups,
    check_unique,
    fields_of,
    load_policy,
    priority_of,
    required,
    rules_of,
    string_of,
)
from harness.policy.model import (
    APPLICATION_RULE,
    NETWORK_RULE,
    Policy,
    RuleCollection,
    RuleCollectionGroup,
)
from harness.runfolder import POLICY
from harness.yamlio import Node, read_text

RESOURCE_TYPE = "azurerm_firewall_policy_rule_collection_group"
POLICY_RESOURCE_TYPE = "azurerm_firewall_policy"
POLICY_NAME_LOCAL = "firewall_policy_name"
RECORDED_POLICY = POLICY

_BLOCK_MARKER = "__is_block__"
_COLLECTION_RENAMES = {"rules": "rule"}
TERRAFORM_APPLICATION = Dialect(
    "terraform",
    renames={
        **_COLLECTION_RENAMES,
        "target_fqdns": "destination_fqdns",
        "fqdn_tags": "destination_fqdn_tags",
        "target_urls": "destination_urls",
        "http_headers_to_insert": "http_headers",
        "protocol_type": "type",
    },
    ignored=frozenset({_BLOCK_MARKER}),
)
TERRAFORM_NETWORK = Dialect(
    "terraform",
    renames={**_COLLECTION_RENAMES, "ip_protocols": "protocols"},
    ignored=frozenset({_BLOCK_MARKER}),
)
_KINDS = (
    ("application_rule_collection", APPLICATION_RULE, TERRAFORM_APPLICATION),
    ("network_rule_collection", NETWORK_RULE, TERRAFORM_NETWORK),
)
_GROUP_KEYS = frozenset({
    "name", "priority", "firewall_policy_id", "application_rule_collection",
    "network_rule_collection", "nat_rule_collection", "depends_on", "lifecycle", "provider",
    "timeouts", _BLOCK_MARKER,
})  # fmt: skip
_REFERENCE = re.compile(r"^\$\{\s*(var|local)\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}$")
_POLICY_REFERENCE = re.compile(
    rf"^\$\{{\s*{POLICY_RESOURCE_TYPE}\.([A-Za-z_][A-Za-z0-9_-]*)\.id\s*\}}$"
)
_INTERPOLATION = re.compile(r"(?<!\$)\$\{|(?<!%)%\{")


def _hcl2() -> Any:
    try:
        import hcl2
    except ImportError:
        raise EnvironmentProblem(
            "reading Terraform needs the python-hcl2 package, which is not installed",
        ) from None
    return hcl2


def _blocks(value: Any) -> list[dict[str, Any]]:
    """The blocks of one kind python-hcl2 gives (a list of mappings); anything else, such as
    `locals = [1]` written as an attribute, has none."""
    return [block for block in value if isinstance(block, dict)] if isinstance(value, list) else []


class _Terraform:
    """One parsed .tf file: its variables, locals, resources, and where blocks start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = read_text(path)  # not UTF-8, missing, over the size limit: an InputError
        hcl2 = _hcl2()
        from hcl2.utils import SerializationOptions
        from lark.exceptions import LarkError, UnexpectedInput

        options = SerializationOptions(strip_string_quotes=True, with_comments=False)
        try:
            self.data: dict[str, Any] = hcl2.loads(self.text, serialization_options=options)
        except UnexpectedInput as error:
            raise InputError(
                f"not valid Terraform: {str(error).splitlines()[0]}",
                location=Location(str(path), error.line, error.column),
                fix="check the syntax (terraform fmt shows the same problem)",
            ) from None
        except (LarkError, ValueError) as error:
            raise InputError(f"not valid Terraform: {error}", location=Location(str(path)),
                             fix="check the syntax (terraform fmt shows the same problem)") from None  # fmt: skip
        self.variables: dict[str, Any] = {}
        for block in _blocks(self.data.get("variable")):
            for name, body in block.items():
                if isinstance(body, dict) and "default" in body:
                    self.variables[name] = body["default"]
        self.locals: dict[str, Any] = {}
        for block in _blocks(self.data.get("locals")):
            self.locals.update({k: v for k, v in block.items() if k != _BLOCK_MARKER})

    def resources(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for block in _blocks(self.data.get("resource")):
            for resource_type, labelled in block.items():
                if resource_type == kind and isinstance(labelled, dict):
                    found.extend(labelled.items())
        return found

    def mark_of(self, pattern: str, start: int = 1) -> tuple[int, int] | None:
        """(line, column) of the first line at or after line `start` that `pattern` matches,
        1-based, the column at its first non-blank character."""
        compiled = re.compile(pattern)
        for number, line in enumerate(self.text.splitlines()[start - 1 :], start=start):
            if compiled.search(line):
                return number, len(line) - len(line.lstrip()) + 1
        return None

    def resolve(self, value: Any, where: Node, resolving: tuple[str, ...] = ()) -> Any:
        """`value` with `var.X` / `local.X` references replaced by what the file defines;
        `resolving` holds the references being followed, so a cycle is an error."""
        if len(resolving) > MAX_DEPTH:
            raise where.error(f"references nest deeper than {MAX_DEPTH} (the limit MAX_DEPTH)",
                              "write the value into the block")  # fmt: skip
        if isinstance(value, dict):
            return {k: self.resolve(v, where.child(k), resolving) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, where.child(i), resolving) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        match = _REFERENCE.match(value)
        if match:
            kind, name = match.groups()
            table = self.variables if kind == "var" else self.locals
            if name not in table:
                what = "variable has no default" if kind == "var" else "local is not defined"
                raise where.error(
                    f"cannot resolve {kind}.{name}: the {what} in this file",
                    "give it a default, or write the value into the block",
                )
            reference = f"{kind}.{name}"
            if reference in resolving:
                raise where.error(
                    f"{' -> '.join((*resolving, reference))} refers to itself",
                    "give the value directly",
                )
            return self.resolve(table[name], where, (*resolving, reference))
        if _INTERPOLATION.search(value):
            raise where.error(
                f"cannot evaluate the expression {value!r}",
                "write the value into the block (the harness reads literals, var.X and local.X)",
            )
        return value.replace("$${", "${").replace("%%{", "%{")


def _collections(
    tf: _Terraform, label: str, body: dict[str, Any], mark: tuple[int, int]
) -> tuple[RuleCollection, ...]:
    prefix = f"{RESOURCE_TYPE}.{label}"
    parsed: list[tuple[Node, RuleCollection, Node]] = []
    for kind, rule_type, dialect in _KINDS:
        blocks = body.get(kind) or []
        block_mark = mark
        for index, block in enumerate(blocks):
            block_mark = tf.mark_of(rf"^\s*{kind}\s*\{{", block_mark[0] + 1) or mark
            where = Node(block, str(tf.path), (kind, index), block_mark, prefix)
            node = where.with_value(tf.resolve(block, where))
            context = Context(dialect)
            found = fields_of(node, dialect, ("name", "priority", "action", "rules"),
                              what=f"an {kind}")  # fmt: skip
            name = string_of(required(node, found, "name", dialect, 'name = "allow-build"'))
            priority_node = required(node, found, "priority", dialect, "priority = 100")
            priority = priority_of(priority_node)
            action = action_of(required(node, found, "action", dialect, 'action = "Allow"'),
                               dialect)  # fmt: skip
            rules_node = required(node, found, "rules", dialect, "a rule { ... } block")
            rules = rules_of(rules_node, context, rule_type)
            parsed.append((node, RuleCollection(name, priority, action, rules), priority_node))
    check_unique([(p, c.priority, f"collection {c.name!r}") for _, c, p in parsed],
                 "collection priority", "give each collection in a group its own priority")  # fmt: skip
    check_unique([(n, c.name, f"collection {c.name!r}") for n, c, _ in parsed],
                 "collection name", "give each collection in a group its own name")  # fmt: skip
    return tuple(sorted((c for _, c, _ in parsed), key=lambda c: c.priority))


def _policy_name(tf: _Terraform, policy_ids: list[tuple[Node, str]]) -> str:
    local_name = tf.locals.get(POLICY_NAME_LOCAL)
    if isinstance(local_name, str) and local_name.strip():
        return local_name.strip()
    distinct = {text for _, text in policy_ids}
    if len(distinct) > 1:
        node = next(node for node, text in policy_ids if text != policy_ids[0][1])
        raise node.error(
            f"the file defines groups of more than one policy ({', '.join(sorted(distinct))})",
            "split the file: the harness tests one policy at a time",
        )
    if not distinct:
        return tf.path.stem
    reference = distinct.pop()
    match = _POLICY_REFERENCE.match(reference)
    if match:
        policies = dict(tf.resources(POLICY_RESOURCE_TYPE))
        name = policies.get(match.group(1), {}).get("name")
        if isinstance(name, str) and not _INTERPOLATION.search(name):
            return name
    match = re.search(r"/firewallPolicies/([^/]+)$", reference, re.IGNORECASE)
    if match and not _INTERPOLATION.search(reference):
        return match.group(1)
    return tf.path.stem


def policy_from_terraform(path: str | Path) -> Policy:
    """The rule collection groups of a Terraform file (module docstring)."""
    tf = _Terraform(Path(path))
    entries: list[tuple[Node, Node, RuleCollectionGroup]] = []
    policy_ids: list[tuple[Node, str]] = []
    for label, body in tf.resources(RESOURCE_TYPE):
        header = rf'^\s*resource\s+"{RESOURCE_TYPE}"\s+"{re.escape(label)}"'
        mark = tf.mark_of(header) or (1, 1)
        node = Node(body, str(tf.path), (), mark, f"{RESOURCE_TYPE}.{label}")
        for key, child in node.items():
            if key in ("count", "for_each", "dynamic"):
                raise child.error(f"`{key}` is not evaluated", "write the blocks out")
            if key not in _GROUP_KEYS:
                raise child.error(f"unknown argument {key!r}",
                                  f"a {RESOURCE_TYPE} takes name, priority,"
                                  " firewall_policy_id and rule collection blocks")  # fmt: skip
        name_node = node.child("name")
        if name_node.value is None:
            raise node.error("missing required argument 'name'", 'add name = "MyGroup"')
        name = string_of(name_node.with_value(tf.resolve(name_node.value, name_node)), "a name")
        priority_node = node.child("priority")
        if priority_node.value is None:
            raise node.error("missing required argument 'priority'", "add priority = 300")
        priority_node = priority_node.with_value(tf.resolve(priority_node.value, priority_node))
        priority = priority_of(priority_node)
        policy_id = node.child("firewall_policy_id")
        if isinstance(policy_id.value, str):
            policy_ids.append((policy_id, policy_id.value))
        collections = _collections(tf, label, body, mark)
        entries.append((node, priority_node, RuleCollectionGroup(name, priority, collections)))
    if not entries:
        raise InputError(
            f"the file holds no {RESOURCE_TYPE} resources",
            location=Location(str(tf.path)),
            fix="import the .tf file that defines the rule collection groups",
        )
    check_groups(entries)
    return Policy(_policy_name(tf, policy_ids), tuple(group for _, _, group in entries))


def import_policy(path: str | Path) -> Policy:
    """Terraform by its `.tf` suffix; every other form through `load_policy`."""
    source = Path(path)
    if not source.is_file():
        raise InputError(f"{source} does not exist", fix="give a policy file")
    if source.suffix.lower() == ".tf":
        return policy_from_terraform(source)
    return load_policy(source)


def import_to_yaml(path: str | Path) -> str:
    """`egress import FILE`: the policy in formats.md's YAML form, headed by its source."""
    policy = import_policy(path)
    return policy_to_yaml(policy, header=f"Generated by egress-harness import from {path}")


def policy_of(path: str | Path) -> Policy:
    """`egress export POLICY|RECORDING`: a policy file, or a recording folder's effective
    policy (its policy.yaml)."""
    source = Path(path)
    if source.is_dir():
        recorded = source / RECORDED_POLICY
        if not recorded.is_file():
            raise InputError(
                f"{source} is a folder without {RECORDED_POLICY}",
                fix="give a policy file, or a recording folder (runs/<time>-<scenario>/)",
            )
        return load_policy(recorded)
    return import_policy(source)
