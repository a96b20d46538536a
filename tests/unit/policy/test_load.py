"""harness.policy.load: the YAML form, the `allow:` shorthand, --allow, and every check.

Bad inputs are a table: each case marks the line the error must point at with `# <-` and names
the key path the message must show."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.policy.load import load_policy, policy_from_mapping
from harness.policy.model import (
    ALLOW,
    DENY,
    ApplicationRule,
    NetworkRule,
    Policy,
    Protocol,
    RuleCollection,
    RuleCollectionGroup,
)
from harness.policy.shorthand import ALLOW_GROUP_NAME, allow_policy, merge_allow
from harness.yamlio import load_yaml

FULL_EXAMPLE = """\
name: contoso-build                # shown as "Policy: <name>" in log lines
rule_collection_groups:
  - name: DefaultApplicationRuleCollectionGroup
    priority: 300                  # 100..65000, lower first
    rule_collections:
      - name: allow-build
        priority: 100              # 100..65000, lower first within the group
        action: Allow              # Allow | Deny
        rules:                     # all rules of a collection have the same rule_type
          - rule_type: ApplicationRule
            name: oryx-cdn
            source_addresses: ["*"]            # IPs, CIDRs or *
            protocols: ["Https:443"]           # Http:<port> | Https:<port>
            target_fqdns: ["oryx-cdn.cdn.test", "*.scm.sites.test"]
            fqdn_tags: []                      # names from fqdn_tags below
          - rule_type: ApplicationRule
            name: kudu
            protocols: ["Https:443"]
            fqdn_tags: [KuduSelf]
  - name: DefaultNetworkRuleCollectionGroup
    priority: 200
    rule_collections:
      - name: allow-ntp
        priority: 100
        action: Allow
        rules:
          - rule_type: NetworkRule
            name: ntp
            ip_protocols: [UDP]                # TCP | UDP | ICMP | Any
            source_addresses: ["*"]
            destination_addresses: ["*"]       # IPs, CIDRs or *
            destination_fqdns: []              # exact names, no wildcards
            destination_ports: ["123"]         # "443", "1000-2000", "*"
fqdn_tags:                          # tags defined by the policy itself (Azure's are unpublished)
  KuduSelf: ["*.scm.sites.test", "*.sites.test"]
"""


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    file = tmp_path / name
    file.write_text(text)
    return file


def test_the_full_example_of_formats_md_loads_into_the_model(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, FULL_EXAMPLE))

    assert policy == Policy(
        name="contoso-build",
        rule_collection_groups=(
            RuleCollectionGroup("DefaultApplicationRuleCollectionGroup", 300, (
                RuleCollection("allow-build", 100, ALLOW, (
                    ApplicationRule(
                        "oryx-cdn", source_addresses=("*",), protocols=(Protocol("Https", 443),),
                        target_fqdns=("oryx-cdn.cdn.test", "*.scm.sites.test"),
                    ),
                    ApplicationRule(
                        "kudu", source_addresses=("*",), protocols=(Protocol("Https", 443),),
                        fqdn_tags=("KuduSelf",),
                    ),
                )),
            )),
            RuleCollectionGroup("DefaultNetworkRuleCollectionGroup", 200, (
                RuleCollection("allow-ntp", 100, ALLOW, (
                    NetworkRule(
                        "ntp", ip_protocols=("UDP",), source_addresses=("*",),
                        destination_addresses=("*",), destination_ports=("123",),
                    ),
                )),
            )),
        ),
        fqdn_tags=(("KuduSelf", ("*.scm.sites.test", "*.sites.test")),),
    )  # fmt: skip


def test_groups_keep_the_written_order(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, FULL_EXAMPLE))

    assert [group.priority for group in policy.rule_collection_groups] == [300, 200]


def test_a_policy_without_name_is_named_after_the_file(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "rule_collection_groups: []\n", "locked-down.yaml"))

    assert policy == Policy("locked-down")


def test_lenient_spellings_are_normalized(tmp_path: Path) -> None:
    text = """\
rule_collection_groups:
  - name: G
    priority: 100
    rule_collections:
      - name: app
        priority: 100
        action: deny
        rules:
          - rule_type: applicationrule
            name: r
            source_addresses: ["10.0.0.1-10.0.0.9", "fd00::/64", "192.0.2.7"]
            protocols: ["http:80", "Https=443", {protocol_type: HTTPS, port: "8443"}]
            target_fqdns: ["*contoso.test", "*.b.test", "*"]
      - name: net
        priority: 200
        action: ALLOW
        rules:
          - rule_type: NetworkRule
            name: n
            ip_protocols: [tcp, any]
            destination_addresses: [AzureCloud, Storage.WestEurope, 192.0.2.0/24]
            destination_fqdns: [ntp.time.test]
            destination_ports: [443, "1000-2000", "*"]
"""
    app, net = load_policy(write(tmp_path, text)).rule_collection_groups[0].rule_collections

    assert app.action == DENY and net.action == ALLOW
    assert app.rules[0].protocols == (
        Protocol("Http", 80), Protocol("Https", 443), Protocol("Https", 8443),
    )  # fmt: skip
    assert app.rules[0].source_addresses == ("10.0.0.1-10.0.0.9", "fd00::/64", "192.0.2.7")
    network_rule = net.rules[0]
    assert isinstance(network_rule, NetworkRule)
    assert network_rule.ip_protocols == ("TCP", "Any")
    assert network_rule.source_addresses == ("*",)
    assert network_rule.destination_addresses == (
        "AzureCloud",
        "Storage.WestEurope",
        "192.0.2.0/24",
    )
    assert network_rule.destination_ports == ("443", "1000-2000", "*")


def test_the_allow_shorthand_is_one_allow_rule_for_http_and_https(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, 'allow: ["a.example.test", "*.b.test"]\n', "quick.yaml"))

    assert policy == Policy("quick", (
        RuleCollectionGroup("DefaultApplicationRuleCollectionGroup", 300, (
            RuleCollection("allow", 100, ALLOW, (
                ApplicationRule(
                    "allow", source_addresses=("*",),
                    protocols=(Protocol("Http", 80), Protocol("Https", 443)),
                    target_fqdns=("a.example.test", "*.b.test"),
                ),
            )),
        )),
    ))  # fmt: skip


def test_an_empty_allow_list_denies_everything(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "name: empty\nallow: []\n")) == Policy("empty")


def test_allow_policy_builds_the_shorthand_from_command_line_hosts() -> None:
    policy = allow_policy(["pkg.test", "*.cdn.test"], name="cli")

    assert policy.name == "cli"
    (group,) = policy.rule_collection_groups
    assert (group.name, group.priority) == ("DefaultApplicationRuleCollectionGroup", 300)
    assert group.rule_collections[0].rules[0].target_fqdns == ("pkg.test", "*.cdn.test")


@pytest.mark.parametrize("host", ["www.contoso.*", "a.*.b", "**", ""])
def test_allow_policy_names_the_bad_host(host: str) -> None:
    with pytest.raises(InputError) as caught:
        allow_policy(["good.test", host])

    message = str(caught.value)
    assert message.startswith("--allow: ")
    assert (repr(host) in message) if host else "empty" in message


def test_merge_allow_adds_a_last_group_so_the_policy_denies_still_win(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, FULL_EXAMPLE))

    merged = merge_allow(policy, ["extra.test"])

    assert merged.rule_collection_groups[:-1] == policy.rule_collection_groups
    added = merged.rule_collection_groups[-1]
    assert (added.name, added.priority) == (ALLOW_GROUP_NAME, 65000)
    assert added.rule_collections[0].rules[0].target_fqdns == ("extra.test",)
    assert merged.fqdn_tags == policy.fqdn_tags and merged.name == policy.name


def test_merge_allow_picks_a_free_priority_and_name_when_taken() -> None:
    once = merge_allow(Policy("p"), ["a.test"])
    twice = merge_allow(once, ["b.test"])

    assert [(g.name, g.priority) for g in twice.rule_collection_groups] == [
        (ALLOW_GROUP_NAME, 65000),
        (f"{ALLOW_GROUP_NAME}2", 64999),
    ]


def test_merge_allow_without_hosts_keeps_the_policy() -> None:
    policy = Policy("p")
    assert merge_allow(policy, []) is policy


def test_merge_allow_rejects_a_bad_host() -> None:
    with pytest.raises(InputError, match=r"--allow: 'www\.contoso\.\*'"):
        merge_allow(Policy("p"), ["www.contoso.*"])


SCENARIO = """\
name: inline
workload:
  image: egress/python
firewall:
  policy:
    name: inline-policy
    rule_collection_groups:
      - name: G
        priority: 100
        rule_collections:
          - name: C
            priority: 100
            action: Allow
            rules:
              - rule_type: ApplicationRule
                name: r
                protocols: ["Https:443"]
                target_fqdns: ["www.contoso.*"]   # <-
"""


def test_an_inline_policy_loads_and_its_errors_point_into_the_scenario(tmp_path: Path) -> None:
    good = write(tmp_path, SCENARIO.replace("www.contoso.*", "www.contoso.test"), "ok.yaml")
    bad = write(tmp_path, SCENARIO, "bad.yaml")

    policy = policy_from_mapping(load_yaml(good).data["firewall"]["policy"], good)
    with pytest.raises(InputError) as caught:
        policy_from_mapping(load_yaml(bad).data["firewall"]["policy"], bad)

    assert policy.name == "inline-policy"
    assert policy.rule_collection_groups[0].rule_collections[0].rules[0].target_fqdns == (
        "www.contoso.test",
    )
    assert str(caught.value).startswith(
        f"{bad}:18:32: firewall.policy.rule_collection_groups[0].rule_collections[0].rules[0]"
        ".target_fqdns[0]: "
    )


def test_an_inline_policy_without_marks_still_names_file_and_key_path() -> None:
    with pytest.raises(InputError) as caught:
        policy_from_mapping({"allow": ["ok.test", "a.*.b"]}, "scenario.yaml")

    assert str(caught.value).startswith("scenario.yaml: firewall.policy.allow[1]: 'a.*.b' has")


# --- the table of bad inputs ---------------------------------------------------------------

HEAD = """\
name: t
rule_collection_groups:
  - name: G
    priority: 300
    rule_collections:
      - name: C
        priority: 100
        action: Allow
        rules:
"""
APP_RULE = """\
          - rule_type: ApplicationRule
            name: r
            protocols: ["Https:443"]
            target_fqdns: ["a.example.test"]
"""
NET_RULE = """\
          - rule_type: NetworkRule
            name: n
            ip_protocols: [TCP]
            destination_addresses: ["*"]
            destination_ports: ["443"]
"""
RULE0 = "rule_collection_groups[0].rule_collections[0].rules[0]"
COLLECTION0 = "rule_collection_groups[0].rule_collections[0]"


def rule(*lines: str, base: str = APP_RULE) -> str:
    """HEAD + one rule: `base` with lines whose key matches replaced (or appended)."""
    text = base
    for line in lines:
        key = line.split(":")[0]
        existing = [
            row for row in text.splitlines() if row.strip().lstrip("- ").startswith(key + ":")
        ]
        if existing:
            prefix = existing[0][: len(existing[0]) - len(existing[0].lstrip(" -"))]
            text = text.replace(existing[0], prefix + line)
        else:
            text += " " * 12 + line + "\n"
    return HEAD + text


def without(text: str, key: str) -> str:
    return "".join(row for row in text.splitlines(True) if not row.strip().startswith(key + ":"))


BAD_CASES = [
    # unknown keys, with the near miss
    ("unknown-top-key",
     "name: t\nrule_colection_groups: []   # <-\n",
     "rule_colection_groups", "unknown key 'rule_colection_groups'; did you mean 'rule_collection_groups'?"),
    ("unknown-group-key",
     HEAD.replace("    priority: 300", "    priorty: 300   # <-") + APP_RULE,
     "rule_collection_groups[0].priorty", "unknown key 'priorty'; did you mean 'priority'?"),
    ("unknown-rule-key",
     rule("target_fqnds: [a.test]   # <-"),
     f"{RULE0}.target_fqnds", "did you mean 'target_fqdns'?"),
    ("unknown-key-without-near-miss",
     rule("colour: blue   # <-"),
     f"{RULE0}.colour", "unknown key 'colour'; an application rule takes rule_type, name"),
    # types
    ("priority-not-a-number",
     HEAD.replace("priority: 300", "priority: high   # <-") + APP_RULE,
     "rule_collection_groups[0].priority", "expected a priority"),
    ("rules-not-a-list",
     HEAD.replace("        rules:\n", "        rules: everything   # <-\n"),
     f"{COLLECTION0}.rules", "expected a list of rules, got the string 'everything'"),
    ("fqdns-not-a-list",
     rule('target_fqdns: "a.test"   # <-'),
     f"{RULE0}.target_fqdns", "expected a list of FQDNs"),
    ("group-not-a-mapping",
     "rule_collection_groups:\n  - just-a-name   # <-\n",
     "rule_collection_groups[0]", "a rule collection group must be a mapping"),
    ("fqdn-tags-not-a-mapping",
     HEAD + APP_RULE + "fqdn_tags: [KuduSelf]   # <-\n",
     "fqdn_tags", "fqdn_tags must be a mapping"),
    # required keys
    ("missing-action",
     HEAD.replace("      - name: C", "      - name: C   # <-").replace("        action: Allow\n", "")
     + APP_RULE,
     COLLECTION0, "missing required key 'action'"),
    ("missing-group-priority",
     HEAD.replace("  - name: G", "  - name: G   # <-").replace("    priority: 300\n", "")
     + APP_RULE,
     "rule_collection_groups[0]", "missing required key 'priority'"),
    ("missing-rule-type",
     HEAD + without(APP_RULE, "- rule_type").replace("            name: r", "          - name: r   # <-"),
     RULE0, "missing required key 'rule_type'"),
    ("missing-protocols",
     HEAD + without(APP_RULE, "protocols").replace("- rule_type", "- rule_type", 1)
     .replace("          - rule_type: ApplicationRule", "          - rule_type: ApplicationRule   # <-"),
     RULE0, "missing required key 'protocols'"),
    ("missing-groups-and-allow",
     "name: only-a-name   # <-\n",
     "", "a policy needs `rule_collection_groups:`"),
    # priorities
    ("group-priority-too-high",
     HEAD.replace("priority: 300", "priority: 70000   # <-") + APP_RULE,
     "rule_collection_groups[0].priority", "priority 70000 is outside 100..65000"),
    ("collection-priority-too-low",
     HEAD.replace("        priority: 100", "        priority: 99   # <-") + APP_RULE,
     f"{COLLECTION0}.priority", "priority 99 is outside 100..65000"),
    ("duplicate-group-priority",
     HEAD + APP_RULE + HEAD.split("\n", 2)[2].replace("name: G", "name: H")
     .replace("    priority: 300", "    priority: 300   # <-") + APP_RULE,
     "rule_collection_groups[1].priority", "group priority 300 is also used by group 'G'"),
    ("duplicate-collection-priority",
     HEAD + APP_RULE + "      - name: D\n        priority: 100   # <-\n        action: Deny\n",
     "rule_collection_groups[0].rule_collections[1].priority",
     "collection priority 100 is also used by collection 'C'"),
    ("duplicate-group-name",
     HEAD + APP_RULE + HEAD.split("\n", 2)[2].replace("  - name: G", "  - name: g   # <-")
     .replace("priority: 300", "priority: 400") + APP_RULE,
     "rule_collection_groups[1]", "group name 'g' is also used by group 0"),
    ("duplicate-rule-name",
     HEAD + APP_RULE + APP_RULE.replace("          - rule_type", "          - rule_type", 1)
     .replace("ApplicationRule\n", "ApplicationRule   # <-\n"),
     "rule_collection_groups[0].rule_collections[0].rules[1]", "rule name 'r' is also used"),
    # rule types and actions
    ("mixed-rule-types",
     HEAD + APP_RULE + NET_RULE.replace("NetworkRule\n", "NetworkRule   # <-\n"),
     "rule_collection_groups[0].rule_collections[0].rules[1]",
     "the collection mixes ApplicationRule and NetworkRule rules"),
    ("bad-rule-type",
     rule("rule_type: NatRule   # <-"),
     f"{RULE0}.rule_type", "rule_type 'NatRule' is not ApplicationRule or NetworkRule"),
    ("bad-action",
     HEAD.replace("action: Allow", "action: Block   # <-") + APP_RULE,
     f"{COLLECTION0}.action", "action 'Block' is not Allow or Deny"),
    ("nat-collection-in-yaml",
     HEAD.replace("        action: Allow", "        action: Allow\n"
                  "        rule_collection_type: FirewallPolicyNatRuleCollection   # <-") + APP_RULE,
     f"{COLLECTION0}.rule_collection_type", "is not FirewallPolicyFilterRuleCollection"),
    # FQDNs
    ("wildcard-not-first", rule('target_fqdns: ["ok.test", "www.contoso.*"]   # <-'),
     f"{RULE0}.target_fqdns[1]", "'www.contoso.*' has '*' that is not the first character"),
    ("wildcard-in-the-middle", rule('target_fqdns: ["a.*.b"]   # <-'),
     f"{RULE0}.target_fqdns[0]", "'a.*.b' has '*' that is not the first character"),
    ("double-star", rule('target_fqdns: ["**"]   # <-'),
     f"{RULE0}.target_fqdns[0]", "'**' has more than one '*'"),
    ("wildcard-in-network-fqdns",
     rule('destination_fqdns: ["*.time.test"]   # <-', base=NET_RULE),
     f"{RULE0}.destination_fqdns[0]", "network rules take exact names only"),
    ("no-target",
     HEAD + without(APP_RULE, "target_fqdns").replace(
         "          - rule_type: ApplicationRule", "          - rule_type: ApplicationRule   # <-"),
     RULE0, "an application rule needs target_fqdns or fqdn_tags"),
    ("network-rule-without-destination",
     HEAD + without(NET_RULE, "destination_addresses").replace(
         "          - rule_type: NetworkRule", "          - rule_type: NetworkRule   # <-"),
     RULE0, "a network rule needs destination addresses or destination FQDNs"),
    ("unknown-fqdn-tag", rule("fqdn_tags: [KuduSelfTypo]   # <-"),
     f"{RULE0}.fqdn_tags[0]",
     ("FQDN tag 'KuduSelfTypo' is not defined under `fqdn_tags:` and is not a"
      " Microsoft-managed tag")),
    ("bad-pattern-in-own-fqdn-tag",
     HEAD + APP_RULE + 'fqdn_tags:\n  Mine: ["good.test", "bad.*"]   # <-\n',
     "fqdn_tags.Mine[1]", "'bad.*' has '*'"),
    ("bad-allow-host", 'allow:\n  - ok.test\n  - "a.*.b"   # <-\n',
     "allow[1]", "'a.*.b' has '*'"),
    # protocols and ports
    ("unknown-protocol", rule('protocols: ["Ftp:21"]   # <-'),
     f"{RULE0}.protocols[0]", "protocol type 'Ftp' is not Http or Https"),
    ("mssql-outside-classic", rule('protocols: ["Mssql:1433"]   # <-'),
     f"{RULE0}.protocols[0]", "protocol type 'Mssql' is not Http or Https"),
    ("application-port-too-high", rule('protocols: ["Https:64001"]   # <-'),
     f"{RULE0}.protocols[0]", "port 64001 is outside 0..64000"),
    ("protocol-without-port", rule('protocols: ["Https"]   # <-'),
     f"{RULE0}.protocols[0]", "'Https' is not a protocol"),
    ("protocol-mapping-bad-port", rule('protocols: [{protocol_type: Https, port: x}]   # <-'),
     f"{RULE0}.protocols[0].port", "port 'x' is not a number"),
    ("port-too-high", rule('destination_ports: ["70000"]   # <-', base=NET_RULE),
     f"{RULE0}.destination_ports[0]", "port '70000' is outside 1..65535"),
    ("port-range-backwards", rule('destination_ports: ["443", "2000-1000"]   # <-', base=NET_RULE),
     f"{RULE0}.destination_ports[1]", "port range '2000-1000' runs backwards"),
    ("port-not-a-number", rule('destination_ports: ["abc"]   # <-', base=NET_RULE),
     f"{RULE0}.destination_ports[0]", "'abc' is not a port"),
    ("no-ports", rule("destination_ports: []   # <-", base=NET_RULE),
     f"{RULE0}.destination_ports", "the rule has no destination ports"),
    ("bad-ip-protocol", rule("ip_protocols: [SCTP]   # <-", base=NET_RULE),
     f"{RULE0}.ip_protocols[0]", "IP protocol 'SCTP' is not TCP, UDP, ICMP or Any"),
    # addresses
    ("bad-source-ip", rule('source_addresses: ["10.0.0.300"]   # <-'),
     f"{RULE0}.source_addresses[0]", "'10.0.0.300' is not an IP address, CIDR, range or *"),
    ("bad-cidr", rule('source_addresses: ["*", "10.0.0.0/33"]   # <-'),
     f"{RULE0}.source_addresses[1]", "'10.0.0.0/33' is not an IP address"),
    ("backwards-range", rule('source_addresses: ["10.0.0.9-10.0.0.1"]   # <-'),
     f"{RULE0}.source_addresses[0]", "the first address must not exceed the last"),
    ("service-tag-as-source", rule('source_addresses: ["AzureCloud"]   # <-', base=NET_RULE),
     f"{RULE0}.source_addresses[0]", "'AzureCloud' is not an IP address"),
    ("name-in-destination-addresses",
     rule('destination_addresses: ["contoso.test"]   # <-', base=NET_RULE),
     f"{RULE0}.destination_addresses[0]", "names go in destination_fqdns"),
    ("empty-sources", rule("source_addresses: []   # <-"),
     f"{RULE0}.source_addresses", "the rule has no source addresses"),
    # Premium
    ("target-urls", rule('target_urls: ["a.test/path"]   # <-'),
     f"{RULE0}.target_urls", "target URLs need TLS inspection (Premium)"),
]  # fmt: skip


def marked_line(text: str) -> int:
    (line,) = [n for n, row in enumerate(text.splitlines(), 1) if row.endswith("# <-")]
    return line


@pytest.mark.parametrize(
    "text, key_path, fragment", [case[1:] for case in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_policy_is_an_input_error_at_its_line_and_key_path(
    tmp_path: Path, text: str, key_path: str, fragment: str
) -> None:
    file = write(tmp_path, text)

    with pytest.raises(InputError) as caught:
        load_policy(file)

    message = str(caught.value)
    expected_start = f"{file}:{marked_line(text)}:"
    assert message.startswith(expected_start), message
    assert f": {key_path}: " in message if key_path else message.count(": ") >= 1, message
    assert fragment in message, message
    assert caught.value.fix, f"no fix offered: {message}"


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("", 1, "the file is empty"),
        ("- a.test\n", 1, "the top level is a list, not a mapping"),
        ("name: t\nrule_collection_groups: [\n", 3, "YAML syntax error"),
        ("name: t\nname: u\n", 2, "duplicate key 'name'"),
        ("just-a-host.test\n", 1, "a policy must be a mapping, not the string"),
    ],
)
def test_unloadable_files_are_input_errors_with_a_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    file = write(tmp_path, text)

    with pytest.raises(InputError, match=fragment) as caught:
        load_policy(file)

    assert str(caught.value).startswith(f"{file}:{line}:")


def test_a_missing_policy_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_policy(tmp_path / "nope.yaml")


def test_the_table_marks_exactly_one_line_per_case() -> None:
    for name, text, *_ in BAD_CASES:
        assert marked_line(text) > 0, name


def test_fixtures_build_valid_policies(tmp_path: Path) -> None:
    """The table's building blocks load cleanly, so each case fails for its own reason."""
    for text in (HEAD + APP_RULE, HEAD + NET_RULE, rule(), textwrap.dedent(FULL_EXAMPLE)):
        load_policy(write(tmp_path, text))
