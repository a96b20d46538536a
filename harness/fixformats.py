"""The rule to add, in each format a user deploys from, written by `harness.export`'s exporters,
each with its own header. After a failed run it is the rule the diagnosis wrote (policy YAML,
`harness.diagnose`) in a group and collection of its own, loaded by the policy loader (so what
is shown is what loads); after an audit run, a rule for every destination enforce mode would
deny. Pure."""

from __future__ import annotations

__all__ = ["FIX_FORMATS", "FIX_GROUP", "audit_fix_policy", "fix_policy", "fix_texts"]

from collections.abc import Iterable

import yaml

from harness.events import Event
from harness.export import export_policy
from harness.policy.load import policy_from_mapping
from harness.policy.model import Policy

# (export format, tab title), in the order the page shows them.
FIX_FORMATS: tuple[tuple[str, str], ...] = (
    ("yaml", "YAML"),
    ("arm", "ARM"),
    ("bicep", "Bicep"),
    ("terraform", "Terraform"),
    ("azcli", "az CLI"),
)
# A group of its own: deployed next to the user's groups, it replaces none of them.
FIX_GROUP = "egress-harness-fix"
FIX_GROUP_PRIORITY = 64900


def fix_policy(fix_yaml: str, policy_name: str = "egress-fix") -> Policy:
    """The diagnosis' rule list (`Diagnosis.fix`) as a one-collection Allow policy."""
    rules = yaml.safe_load(fix_yaml)
    first = rules[0] if isinstance(rules, list) and rules else {}
    name = str(first.get("name", "allow")) if isinstance(first, dict) else "allow"
    kind = first.get("rule_type") if isinstance(first, dict) else None
    document = {
        "name": policy_name,
        "rule_collection_groups": [{
            "name": FIX_GROUP,
            "priority": FIX_GROUP_PRIORITY,
            "rule_collections": [{
                "name": name if kind != "NetworkRule" else f"{name}-network",
                "priority": 100,
                "action": "Allow",
                "rules": rules,
            }],
        }],
    }  # fmt: skip
    return policy_from_mapping(document, "diagnosis", key_prefix="fix", default_name=policy_name)


def audit_fix_policy(events: Iterable[Event], policy_name: str = "egress-fix") -> Policy:
    """An audit run's fix: every destination enforce mode would deny, one rule each, as
    `egress learn` writes them (`harness.allowlist.learned_policy`)."""
    from harness.allowlist import candidates, learned_policy

    return learned_policy(policy_name, candidates(e for e in events if e.would == "Deny"))


def fix_texts(policy: Policy) -> list[tuple[str, str, str]]:
    """(format, tab title, text) for each of FIX_FORMATS."""
    return [(fmt, title, export_policy(policy, fmt)) for fmt, title in FIX_FORMATS]
