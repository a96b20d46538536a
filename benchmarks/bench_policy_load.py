"""How long a large ARM template takes to load: a generated template of about 1 MB with 5,000
rules (application and network rules over 50 collections in 5 groups, expressions in names,
FQDNs and sources, a parameters file, IP groups), loaded through `load_policy` as
`egress check` does. Prints the file size, the rule count, the best of 5 loads and that time
over the 2 s target. Target: under 2 s.

    .venv/bin/python benchmarks/bench_policy_load.py
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.policy.load import load_policy
from harness.policy.source import PolicyOptions

RULES = 5_000
GROUPS = 5
COLLECTIONS_PER_GROUP = 10
TARGET_SECONDS = 2.0
REPEATS = 5


def _rule(index: int, network: bool) -> dict[str, Any]:
    if network:
        return {
            "ruleType": "NetworkRule",
            "name": f"net-{index}",
            "ipProtocols": ["TCP", "UDP"],
            "sourceIpGroups": ["[resourceId('Microsoft.Network/ipGroups', variables('ipGroup'))]"],
            "destinationAddresses": [f"198.51.{index % 250}.0/24"],
            "destinationPorts": ["443", f"{8000 + index % 1000}"],
        }
    return {
        "ruleType": "ApplicationRule",
        "name": f"app-{index}",
        "protocols": [{"protocolType": "Https", "port": 443}],
        "targetFqdns": [f"[format('pkg{index}.{{0}}', parameters('domain'))]"],
        "sourceAddresses": ["[parameters('subnet')]"],
    }


def build_template() -> dict[str, Any]:
    per_collection = RULES // (GROUPS * COLLECTIONS_PER_GROUP)
    resources: list[dict[str, Any]] = [
        {
            "type": "Microsoft.Network/ipGroups",
            "apiVersion": "2023-09-01",
            "name": "[variables('ipGroup')]",
            "properties": {"ipAddresses": ["10.20.0.0/24", "10.30.0.0/24"]},
        },
        {
            "type": "Microsoft.Network/firewallPolicies",
            "apiVersion": "2023-09-01",
            "name": "[parameters('policyName')]",
            "properties": {},
        },
    ]
    index = 0
    for group in range(GROUPS):
        collections = []
        for collection in range(COLLECTIONS_PER_GROUP):
            # All rules of a collection share one type: one collection in four is network rules.
            network = collection % 4 == 3
            rules = [_rule(index + offset, network) for offset in range(per_collection)]
            index += per_collection
            collections.append({
                "ruleCollectionType": "FirewallPolicyFilterRuleCollection",
                "name": f"collection-{group}-{collection}",
                "priority": 100 + collection * 10,
                "action": {"type": "Deny" if collection == 0 else "Allow"},
                "rules": rules,
            })  # fmt: skip
        resources.append({
            "type": "Microsoft.Network/firewallPolicies/ruleCollectionGroups",
            "apiVersion": "2023-09-01",
            "name": f"[format('{{0}}/group-{group}', parameters('policyName'))]",
            "properties": {"priority": 200 + group * 100, "ruleCollections": collections},
        })  # fmt: skip
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {
            "policyName": {"type": "string"},
            "prefix": {"type": "string", "defaultValue": "bench"},
            "domain": {"type": "string", "defaultValue": "mirror.test"},
            "subnet": {"type": "string", "defaultValue": "10.10.0.0/24"},
        },
        "variables": {"ipGroup": "[format('ipg-{0}', parameters('prefix'))]"},
        "resources": resources,
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        template = Path(folder) / "large.json"
        template.write_text(json.dumps(build_template()))
        parameters = Path(folder) / "large.parameters.json"
        parameters.write_text(json.dumps({"parameters": {"policyName": {"value": "bench"}}}))
        options = PolicyOptions(parameters=(str(parameters),))
        size = template.stat().st_size
        timings = []
        policy = None
        for _ in range(REPEATS):
            gc.collect()
            started = time.perf_counter()
            policy = load_policy(template, options)
            timings.append(time.perf_counter() - started)
    assert policy is not None
    rules = sum(len(c.rules) for g in policy.rule_collection_groups for c in g.rule_collections)
    best = min(timings)
    print(f"template: {size / 1_000_000:.2f} MB, {rules:,} rules in "
          f"{len(policy.rule_collection_groups)} groups")  # fmt: skip
    print(f"load (best of {REPEATS}): {best:.3f} s; median {sorted(timings)[REPEATS // 2]:.3f} s")
    print(f"ratio to the {TARGET_SECONDS:.0f} s target: {best / TARGET_SECONDS:.2f}"
          f" ({'met' if best < TARGET_SECONDS else 'MISSED'})")  # fmt: skip
    return 0 if best < TARGET_SECONDS and rules == RULES else 1


if __name__ == "__main__":
    sys.exit(main())
