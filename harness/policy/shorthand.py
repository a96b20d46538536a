"""The `allow: [hosts]` shorthand: the YAML form's list and the command line's `--allow`.

One Allow application rule `allow` with `Http:80` and `Https:443` to the hosts, in collection
`allow` (priority 100) of a group of its own: DefaultApplicationRuleCollectionGroup (priority
300) for a policy that is only the shorthand, the last free group for `--allow` on top of a policy.
"""

from __future__ import annotations

__all__ = ["ALLOW_GROUP_NAME", "allow_policy", "merge_allow", "shorthand_group"]

from collections.abc import Sequence
from dataclasses import replace

from harness.errors import InputError
from harness.policy.checks import (
    _SHORTHAND_PROTOCOLS,
    ALLOW_GROUP_NAME,
    DEFAULT_APPLICATION_GROUP,
    PRIORITY_MAX,
    PRIORITY_MIN,
)
from harness.policy.fqdn import pattern_problem
from harness.policy.model import ALLOW, ApplicationRule, Policy, RuleCollection, RuleCollectionGroup


def shorthand_group(hosts: Sequence[str], name: str, priority: int) -> RuleCollectionGroup:
    rule = ApplicationRule(
        name="allow", source_addresses=("*",), protocols=_SHORTHAND_PROTOCOLS,
        target_fqdns=tuple(hosts),
    )  # fmt: skip
    return RuleCollectionGroup(name, priority, (RuleCollection("allow", 100, ALLOW, (rule,)),))



def _allow_hosts(hosts: Sequence[str]) -> tuple[str, ...]:
    checked = []
    for host in hosts:
        problem = pattern_problem(host) if isinstance(host, str) else f"{host!r} is not a name"
        if problem:
            raise InputError(
                problem,
                key_path="--allow",
                fix="write a name, *.name (subdomains), *name (suffix) or * (everything)",
            )
        checked.append(host.strip())
    return tuple(checked)


def allow_policy(hosts: Sequence[str], name: str = "allow") -> Policy:
    """The `allow:` shorthand from the command line: Http:80 and Https:443 to `hosts`."""
    checked = _allow_hosts(hosts)
    if not checked:
        return Policy(name)
    return Policy(name, (shorthand_group(checked, DEFAULT_APPLICATION_GROUP, 300),))


def merge_allow(policy: Policy, hosts: Sequence[str]) -> Policy:
    """`policy` plus a group allowing `hosts` (`egress run --allow`).

    The group comes last (priority 65000, or the highest free one below), so the policy's own
    Deny collections still win over it, as they would in Azure for a rule added at the end.
    """
    checked = _allow_hosts(hosts)
    if not checked:
        return policy
    used = {group.priority for group in policy.rule_collection_groups}
    priority = next(p for p in range(PRIORITY_MAX, PRIORITY_MIN - 1, -1) if p not in used)
    names = {group.name.lower() for group in policy.rule_collection_groups}
    name, suffix = ALLOW_GROUP_NAME, 1
    while name.lower() in names:
        suffix += 1
        name = f"{ALLOW_GROUP_NAME}{suffix}"
    group = shorthand_group(checked, name, priority)
    return replace(policy, rule_collection_groups=(*policy.rule_collection_groups, group))
