"""One test per clause of harness.policy.decide's precedence, with rule-processing.md's cases.

Policies are built from the model directly; reasons are compared word for word."""

from __future__ import annotations

import ipaddress
import random

import pytest

from harness.policy.decide import Decider
from harness.policy.fqdn import matches
from harness.policy.model import (
    ALLOW,
    APPLICATION_RULE,
    DENY,
    NETWORK_RULE,
    ApplicationRule,
    Decision,
    NetworkRule,
    Policy,
    Protocol,
    Reason,
    Request,
    Rule,
    RuleCollection,
    RuleCollectionGroup,
    RuleRef,
)

SRC = "10.1.0.5"
HTTPS = (Protocol("Https", 443),)
HTTP = (Protocol("Http", 80),)


def group(name: str, priority: int, *collections: RuleCollection) -> RuleCollectionGroup:
    return RuleCollectionGroup(name, priority, tuple(collections))


def collection(name: str, priority: int, action: str, *rules: Rule) -> RuleCollection:
    return RuleCollection(name, priority, action, tuple(rules))  # type: ignore[arg-type]


def app_rule(name: str, *fqdns: str, **fields: object) -> ApplicationRule:
    return ApplicationRule(name, target_fqdns=fqdns, **fields)  # type: ignore[arg-type]


def policy(*groups: RuleCollectionGroup, **fields: object) -> Policy:
    return Policy("test-policy", tuple(groups), **fields)  # type: ignore[arg-type]


def https(host: str | None, port: int = 443, src: str = SRC, dst_ip: str = "192.0.2.10") -> Request:
    return Request("HTTPS", src, 50000, port, dst_ip=dst_ip, host=host)


def http(host: str | None, port: int = 80, src: str = SRC) -> Request:
    return Request("HTTP", src, 50000, port, dst_ip="192.0.2.10", host=host)


def app_policy(*rules: Rule, action: str = ALLOW) -> Policy:
    return policy(group("apps", 300, collection("allow-apps", 100, action, *rules)))


def net_policy(*rules: Rule, action: str = ALLOW) -> Policy:
    return policy(group("nets", 200, collection("allow-nets", 100, action, *rules)))


def rule_name(decision: Decision) -> str | None:
    return decision.rule.rule if decision.rule else None


# --- 1. default deny; first match wins ------------------------------------------------------


def test_empty_policy_denies_by_default() -> None:
    decision = Decider(policy()).decide(https("a.test"))
    assert decision == Decision(DENY, DENY, Reason.DEFAULT_DENY, None, None)
    assert decision.reason == "No rule matched. Proceeding with default action"
    assert not decision.allowed


def test_unmatched_request_is_denied_by_default() -> None:
    decider = Decider(app_policy(app_rule("a", "a.test", protocols=HTTPS)))
    assert decider.decide(https("b.test")).reason == Reason.DEFAULT_DENY


def test_rule_match_carries_reason_rule_ref_and_rule_type() -> None:
    decision = Decider(app_policy(app_rule("a", "a.test", protocols=HTTPS))).decide(https("a.test"))
    assert decision == Decision(
        ALLOW,
        ALLOW,
        Reason.RULE_MATCHED,
        RuleRef("test-policy", "apps", "allow-apps", "a"),
        APPLICATION_RULE,
    )


def test_first_match_within_collection_wins() -> None:
    decider = Decider(
        app_policy(
            app_rule("exact", "a.example.test", protocols=HTTPS),
            app_rule("wildcard", "*.example.test", protocols=HTTPS),
            app_rule("everything", "*", protocols=HTTPS),
        )
    )
    assert rule_name(decider.decide(https("a.example.test"))) == "exact"
    assert rule_name(decider.decide(https("b.example.test"))) == "wildcard"
    assert rule_name(decider.decide(https("other.test"))) == "everything"


def test_first_matching_rule_decides_even_when_a_later_rule_would_deny() -> None:
    decider = Decider(
        policy(
            group(
                "apps",
                300,
                collection("allow", 100, ALLOW, app_rule("allow-a", "a.test", protocols=HTTPS)),
                collection("deny", 200, DENY, app_rule("deny-all", "*", protocols=HTTPS)),
            )
        )
    )
    assert decider.decide(https("a.test")).action == ALLOW
    assert decider.decide(https("b.test")).action == DENY
    assert rule_name(decider.decide(https("b.test"))) == "deny-all"


# --- 2. network pass over all groups, then application pass -------------------------------


def test_network_rule_allowing_tcp_443_to_star_wins_over_application_deny() -> None:
    decider = Decider(
        policy(
            group(
                "apps-first",
                100,
                collection("deny-apps", 100, DENY, app_rule("deny-a", "a.test", protocols=HTTPS)),
            ),
            group(
                "nets-last",
                65000,
                collection(
                    "allow-443",
                    65000,
                    ALLOW,
                    NetworkRule(
                        "tcp-443", destination_addresses=("*",), destination_ports=("443",)
                    ),
                ),
            ),
        )
    )
    decision = decider.decide(https("a.test"))
    assert decision.action == ALLOW
    assert decision.rule == RuleRef("test-policy", "nets-last", "allow-443", "tcp-443")
    assert decision.rule_type == NETWORK_RULE


def test_network_rule_matches_http_request_as_tcp() -> None:
    decider = Decider(
        policy(
            group("apps", 100, collection("deny", 100, DENY, app_rule("d", "*", protocols=HTTP))),
            group(
                "nets",
                300,
                collection(
                    "allow",
                    100,
                    ALLOW,
                    NetworkRule(
                        "web", destination_addresses=("192.0.2.0/24",), destination_ports=("80",)
                    ),
                ),
            ),
        )
    )
    assert rule_name(decider.decide(http("a.test"))) == "web"


def test_deny_collection_with_lower_priority_number_beats_allow() -> None:
    decider = Decider(
        policy(
            group(
                "apps",
                300,
                collection("allow", 200, ALLOW, app_rule("allow-a", "a.test", protocols=HTTPS)),
                collection("deny", 100, DENY, app_rule("deny-a", "a.test", protocols=HTTPS)),
            )
        )
    )
    decision = decider.decide(https("a.test"))
    assert decision.action == DENY
    assert decision.reason == Reason.RULE_MATCHED
    assert rule_name(decision) == "deny-a"


def test_groups_are_ordered_before_collections() -> None:
    decider = Decider(
        policy(
            group(
                "group-300",
                300,
                collection("c100", 100, DENY, app_rule("deny-a", "a.test", protocols=HTTPS)),
            ),
            group(
                "group-200",
                200,
                collection("c65000", 65000, ALLOW, app_rule("allow-a", "a.test", protocols=HTTPS)),
            ),
        )
    )
    decision = decider.decide(https("a.test"))
    assert decision.action == ALLOW
    assert decision.rule == RuleRef("test-policy", "group-200", "c65000", "allow-a")


def test_network_rules_are_ordered_by_group_then_collection_priority() -> None:
    def net(name: str) -> NetworkRule:
        return NetworkRule(name, destination_addresses=("*",), destination_ports=("443",))

    decider = Decider(
        policy(
            group("g300", 300, collection("c100", 100, ALLOW, net("late"))),
            group(
                "g200",
                200,
                collection("c500", 500, ALLOW, net("second")),
                collection("c400", 400, DENY, net("first")),
            ),
        )
    )
    decision = decider.decide(Request("TCP", SRC, 40000, 443, dst_ip="192.0.2.1"))
    assert (decision.action, rule_name(decision)) == (DENY, "first")


# --- 3. network rule matching ---------------------------------------------------------------


def _tcp(dst_ip: str | None = "192.0.2.10", port: int = 443, src: str = SRC) -> Request:
    return Request("TCP", src, 40000, port, dst_ip=dst_ip)


@pytest.mark.parametrize(
    ("ip_protocols", "request_protocol", "expected"),
    [
        (("TCP",), "TCP", True),
        (("TCP",), "HTTPS", True),
        (("TCP",), "HTTP", True),
        (("TCP",), "UDP", False),
        (("UDP",), "UDP", True),
        (("UDP",), "TCP", False),
        (("ICMP",), "ICMP", True),
        (("ICMP",), "TCP", False),
        (("Any",), "UDP", True),
        (("Any",), "ICMP", True),
        (("Any",), "HTTPS", True),
        (("UDP", "TCP"), "TCP", True),
    ],
)
def test_network_rule_matches_transport(
    ip_protocols: tuple[str, ...], request_protocol: str, expected: bool
) -> None:
    rule = NetworkRule(
        "r", ip_protocols=ip_protocols, destination_addresses=("*",), destination_ports=("*",)
    )
    request = Request(request_protocol, SRC, 40000, 443, dst_ip="192.0.2.10", host="a.test")  # type: ignore[arg-type]
    assert (Decider(net_policy(rule)).decide(request).action == ALLOW) is expected


@pytest.mark.parametrize(
    ("source_addresses", "src_ip", "expected"),
    [
        (("*",), "10.1.0.5", True),
        (("10.1.0.5",), "10.1.0.5", True),
        (("10.1.0.0/24",), "10.1.0.5", True),
        (("10.2.0.0/16",), "10.1.0.5", False),
        (("10.2.0.0/16", "10.1.0.0/16"), "10.1.0.5", True),
        (("10.1.0.1-10.1.0.9",), "10.1.0.5", True),
        (("10.1.0.6-10.1.0.9",), "10.1.0.5", False),
        (("fd00::/64",), "fd00::5", True),
        (("fd00::/64",), "fd01::5", False),
        (("10.1.0.0/24",), "fd00::5", False),
        (("10.1.0.0/24",), "::ffff:10.1.0.5", True),
        (("10.1.0.0/24",), "not-an-ip", False),
    ],
)
def test_network_rule_matches_source_address(
    source_addresses: tuple[str, ...], src_ip: str, expected: bool
) -> None:
    rule = NetworkRule(
        "r",
        source_addresses=source_addresses,
        destination_addresses=("*",),
        destination_ports=("443",),
    )
    assert (Decider(net_policy(rule)).decide(_tcp(src=src_ip)).action == ALLOW) is expected


@pytest.mark.parametrize(
    ("destination_addresses", "dst_ip", "expected"),
    [
        (("*",), "192.0.2.10", True),
        (("*",), None, True),
        (("192.0.2.10",), "192.0.2.10", True),
        (("192.0.2.0/28",), "192.0.2.10", True),
        (("192.0.2.0/30",), "192.0.2.10", False),
        (("192.0.2.10",), None, False),
        (("2001:db8::/32",), "2001:db8::1", True),
        (("AzureCloud",), "192.0.2.10", False),
        (("Storage.WestEurope",), "192.0.2.10", False),
    ],
)
def test_network_rule_matches_destination_address(
    destination_addresses: tuple[str, ...], dst_ip: str | None, expected: bool
) -> None:
    rule = NetworkRule("r", destination_addresses=destination_addresses, destination_ports=("443",))
    assert (Decider(net_policy(rule)).decide(_tcp(dst_ip=dst_ip)).action == ALLOW) is expected


def test_service_tag_destination_never_matches() -> None:
    rule = NetworkRule("r", destination_addresses=("AzureCloud",), destination_ports=("*",))
    decision = Decider(net_policy(rule)).decide(_tcp(dst_ip="20.0.0.1"))
    assert decision.reason == Reason.DEFAULT_DENY


def test_network_rule_destination_fqdn_matches_dns_names_of_the_ip() -> None:
    rule = NetworkRule("r", destination_fqdns=("db.example.test",), destination_ports=("5432",))
    decider = Decider(net_policy(rule))
    resolved = Request(
        "TCP", SRC, 40000, 5432, dst_ip="192.0.2.7", dst_names=frozenset({"DB.example.test."})
    )
    other = Request(
        "TCP", SRC, 40000, 5432, dst_ip="192.0.2.7", dst_names=frozenset({"web.example.test"})
    )
    assert decider.decide(resolved).action == ALLOW
    assert decider.decide(other).action == DENY


def test_network_rule_destination_fqdn_matches_request_host() -> None:
    rule = NetworkRule("r", destination_fqdns=("a.example.test",), destination_ports=("443",))
    decider = Decider(net_policy(rule))
    assert decider.decide(https("A.Example.Test.")).action == ALLOW
    assert decider.decide(https("b.example.test")).action == DENY


@pytest.mark.parametrize(
    ("destination_ports", "port", "expected"),
    [
        (("443",), 443, True),
        (("443",), 8443, False),
        (("1000-2000",), 1000, True),
        (("1000-2000",), 2000, True),
        (("1000-2000",), 2001, False),
        (("*",), 65535, True),
        (("80", "443"), 443, True),
        ((), 443, False),
    ],
)
def test_network_rule_matches_destination_port(
    destination_ports: tuple[str, ...], port: int, expected: bool
) -> None:
    rule = NetworkRule("r", destination_addresses=("*",), destination_ports=destination_ports)
    assert (Decider(net_policy(rule)).decide(_tcp(port=port)).action == ALLOW) is expected


def test_icmp_ignores_ports() -> None:
    rule = NetworkRule(
        "ping", ip_protocols=("ICMP",), destination_addresses=("*",), destination_ports=("443",)
    )
    request = Request("ICMP", SRC, 0, 0, dst_ip="192.0.2.10")
    assert Decider(net_policy(rule)).decide(request).action == ALLOW


# --- 4. application rule matching -----------------------------------------------------------


def test_application_rules_ignore_non_http_requests() -> None:
    decider = Decider(app_policy(app_rule("all", "*", protocols=HTTPS)))
    request = Request("TCP", SRC, 40000, 443, dst_ip="192.0.2.10", host="a.test")
    assert decider.decide(request).reason == Reason.DEFAULT_DENY


def test_https_rule_on_8443_does_not_match_port_443() -> None:
    decider = Decider(app_policy(app_rule("a", "a.test", protocols=(Protocol("Https", 8443),))))
    assert decider.decide(https("a.test", port=443)).reason == Reason.DEFAULT_DENY
    assert decider.decide(https("a.test", port=8443)).action == ALLOW


def test_http_rule_does_not_match_https() -> None:
    decider = Decider(app_policy(app_rule("a", "a.test", protocols=(Protocol("Http", 443),))))
    assert decider.decide(https("a.test", port=443)).reason == Reason.DEFAULT_DENY
    assert decider.decide(http("a.test", port=443)).action == ALLOW


def test_default_protocols_are_http_80_and_https_443() -> None:
    decider = Decider(app_policy(app_rule("a", "a.test")))
    assert decider.decide(http("a.test")).action == ALLOW
    assert decider.decide(https("a.test")).action == ALLOW
    assert decider.decide(http("a.test", port=8080)).action == DENY


def test_application_rule_source_cidr_mismatch_falls_through() -> None:
    decider = Decider(
        app_policy(
            app_rule("other-subnet", "a.test", protocols=HTTPS, source_addresses=("10.9.0.0/16",)),
            app_rule("this-subnet", "a.test", protocols=HTTPS, source_addresses=("10.1.0.0/16",)),
        )
    )
    assert rule_name(decider.decide(https("a.test"))) == "this-subnet"
    assert decider.decide(https("a.test", src="10.5.0.1")).reason == Reason.DEFAULT_DENY


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("*.contoso.test", "a.contoso.test", True),
        ("*.contoso.test", "contoso.test", False),
        ("*contoso.test", "th3re4lcontoso.test", True),
        ("*", "anything.test", True),
        ("contoso.test", "CONTOSO.test.", True),
    ],
)
def test_application_rule_host_uses_fqdn_wildcards(pattern: str, host: str, expected: bool) -> None:
    decider = Decider(app_policy(app_rule("r", pattern, protocols=HTTPS)))
    assert (decider.decide(https(host)).action == ALLOW) is expected


def test_fqdn_tags_of_the_policy_match_their_patterns() -> None:
    tagged = ApplicationRule("kudu", protocols=HTTPS, fqdn_tags=("kuduself",))
    decider = Decider(
        policy(
            group("apps", 300, collection("allow", 100, ALLOW, tagged)),
            fqdn_tags=(("KuduSelf", ("*.scm.azurewebsites.test", "app.azurewebsites.test")),),
        )
    )
    assert rule_name(decider.decide(https("site.scm.azurewebsites.test"))) == "kudu"
    assert rule_name(decider.decide(https("app.azurewebsites.test"))) == "kudu"
    assert decider.decide(https("other.azurewebsites.test")).reason == Reason.DEFAULT_DENY


def test_unknown_fqdn_tag_matches_nothing() -> None:
    tagged = ApplicationRule("r", protocols=HTTPS, fqdn_tags=("Unknown",))
    assert Decider(app_policy(tagged)).decide(https("a.test")).reason == Reason.DEFAULT_DENY


# --- 5. requests without a host -------------------------------------------------------------


def test_https_without_sni_is_denied_with_sni_missing_reason() -> None:
    decision = Decider(app_policy(app_rule("all", "*", protocols=HTTPS))).decide(https(None))
    assert decision == Decision(DENY, DENY, Reason.SNI_MISSING, None, None)
    assert decision.reason == "SNI TLS extension was missing."


def test_network_rule_can_allow_https_without_sni() -> None:
    rule = NetworkRule("tcp-443", destination_addresses=("*",), destination_ports=("443",))
    assert Decider(net_policy(rule)).decide(https(None)).action == ALLOW


def test_http_without_host_is_denied_by_default() -> None:
    decision = Decider(app_policy(app_rule("all", "*", protocols=HTTP))).decide(http(None))
    assert decision.reason == Reason.DEFAULT_DENY


# --- 6. audit mode --------------------------------------------------------------------------


def test_audit_mode_allows_and_keeps_what_enforce_would_do() -> None:
    the_policy = policy(
        group(
            "apps",
            300,
            collection("deny", 100, DENY, app_rule("deny-a", "a.test", protocols=HTTPS)),
            collection("allow", 200, ALLOW, app_rule("allow-b", "b.test", protocols=HTTPS)),
        )
    )
    enforce, audit = Decider(the_policy), Decider(the_policy, mode="audit")
    for request in (https("a.test"), https("b.test"), https("c.test"), https(None)):
        enforced, audited = enforce.decide(request), audit.decide(request)
        assert audited.action == ALLOW
        assert audited.would == enforced.action
        assert (audited.reason, audited.rule, audited.rule_type) == (
            enforced.reason,
            enforced.rule,
            enforced.rule_type,
        )
    assert audit.decide(https("a.test")).would == DENY
    assert audit.decide(https("c.test")).would == DENY


# --- 7. a Host port unlike the connection's; 8. the gateway itself --------------------------

ALLOW_ALL = policy(
    group("nets", 200, collection("any", 100, ALLOW, NetworkRule(
        "tcp-any", ip_protocols=("TCP",), destination_addresses=("*",), destination_ports=("*",)))),
    group("apps", 300, collection("apps", 100, ALLOW, app_rule("all", "*", protocols=HTTP + HTTPS))),
)  # fmt: skip
DENY_A = app_policy(app_rule("deny-a", "a.test", protocols=HTTP + HTTPS), action=DENY)
HOST_PORT = "Host header port differs from the connection's port"
GATEWAY = "destination is the gateway itself"


@pytest.mark.parametrize(
    ("the_policy", "mode", "request_", "expected"),
    [
        # 7: denied before any rule, a network rule allowing everything included, in both modes
        (ALLOW_ALL, "enforce", Request("HTTP", SRC, 50000, 80, "192.0.2.10", "a.test",
                                       host_port=8080), Decision(DENY, DENY, HOST_PORT)),
        (ALLOW_ALL, "audit", Request("HTTP", SRC, 50000, 80, "192.0.2.10", "a.test",
                                     host_port=8080), Decision(DENY, DENY, HOST_PORT)),
        # 7 holds for HTTP only, and a Host port equal to the connection's is no mismatch
        (ALLOW_ALL, "enforce", Request("HTTP", SRC, 50000, 80, "192.0.2.10", "a.test",
                                       host_port=80), Decision(ALLOW, ALLOW, Reason.RULE_MATCHED,
         RuleRef("test-policy", "nets", "any", "tcp-any"), NETWORK_RULE)),
        (ALLOW_ALL, "enforce", Request("HTTPS", SRC, 50000, 443, "192.0.2.10", "a.test",
                                       host_port=8443), Decision(ALLOW, ALLOW, Reason.RULE_MATCHED,
         RuleRef("test-policy", "nets", "any", "tcp-any"), NETWORK_RULE)),
        # 8: what the rules allow, and in audit mode everything, is denied at the gateway itself
        (ALLOW_ALL, "enforce", Request("HTTPS", SRC, 50000, 443, "127.0.0.1", "a.test",
                                       to_gateway=True), Decision(DENY, DENY, GATEWAY)),
        (DENY_A, "audit", Request("HTTP", SRC, 50000, 80, "127.0.0.1", "b.test",
                                  to_gateway=True), Decision(DENY, DENY, GATEWAY)),
        # 8 leaves a rule's own deny as it was, with its reason and rule
        (DENY_A, "enforce", Request("HTTPS", SRC, 50000, 443, "127.0.0.1", "a.test",
                                    to_gateway=True), Decision(DENY, DENY, Reason.RULE_MATCHED,
         RuleRef("test-policy", "apps", "allow-apps", "deny-a"), APPLICATION_RULE)),
        (DENY_A, "enforce", Request("TCP", SRC, 50000, 22, "127.0.0.1", to_gateway=True),
         Decision(DENY, DENY, Reason.DEFAULT_DENY)),
    ],
    ids=["host-port-enforce", "host-port-audit", "host-port-equal", "host-port-not-http",
         "gateway-allowed", "gateway-audit", "gateway-rule-deny", "gateway-default-deny"],
)  # fmt: skip
def test_the_gateways_own_facts_are_decided_with_our_reasons(
    the_policy: Policy, mode: str, request_: Request, expected: Decision
) -> None:
    assert Decider(the_policy, mode=mode).decide(request_) == expected  # type: ignore[arg-type]


def test_reasons_are_azures_words_or_ours_never_both() -> None:
    constants = {value for name, value in vars(Reason).items() if name.isupper()
                 and isinstance(value, str)}  # fmt: skip
    assert set(Reason.AZURE) | set(Reason.OURS) == constants
    assert not set(Reason.AZURE) & set(Reason.OURS)
    assert Reason.AZURE == ("No rule matched. Proceeding with default action",
                            "SNI TLS extension was missing.", "Rule matched")  # fmt: skip


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        Decider(policy(), mode="report")  # type: ignore[arg-type]


# --- the index agrees with a plain linear scan ----------------------------------------------


def _linear_scan(the_policy: Policy, request: Request) -> RuleRef | None:
    """The application pass written the slow, obvious way, to check the indexed one."""
    wanted = Protocol("Https" if request.protocol == "HTTPS" else "Http", request.dst_port)
    for grp in sorted(the_policy.rule_collection_groups, key=lambda item: item.priority):
        for coll in sorted(grp.rule_collections, key=lambda item: item.priority):
            for rule in coll.rules:
                assert isinstance(rule, ApplicationRule)
                patterns = list(rule.target_fqdns)
                for tag in rule.fqdn_tags:
                    patterns.extend(the_policy.fqdn_tag(tag) or ())
                source_ok = any(
                    spec == "*"
                    or ipaddress.ip_address(request.src_ip) in ipaddress.ip_network(spec)
                    for spec in rule.source_addresses
                )
                if (
                    wanted in rule.protocols
                    and source_ok
                    and any(matches(pattern, request.host or "") for pattern in patterns)
                ):
                    return RuleRef(the_policy.name, grp.name, coll.name, rule.name)
    return None


@pytest.mark.parametrize("seed", range(10))
def test_indexed_application_pass_equals_linear_scan(seed: int) -> None:
    rng = random.Random(seed)
    labels = ["a", "b", "ab", "cdn", "x-cdn"]

    def name() -> str:
        return ".".join(rng.choice(labels) for _ in range(rng.randint(1, 3))) + ".test"

    def pattern() -> str:
        return rng.choice(["", "", "*.", "*"]) + name() if rng.random() > 0.03 else "*"

    protocol_choices = [HTTPS, HTTP, HTTP + HTTPS, (Protocol("Https", 8443),)]
    source_choices = [("*",), ("*",), ("10.1.0.0/16",), ("10.9.0.0/16",)]
    groups = []
    for group_number in range(rng.randint(1, 3)):
        collections = []
        for collection_number in range(rng.randint(1, 4)):
            rules = [
                ApplicationRule(
                    f"r{group_number}-{collection_number}-{rule_number}",
                    source_addresses=rng.choice(source_choices),
                    protocols=rng.choice(protocol_choices),
                    target_fqdns=tuple(pattern() for _ in range(rng.randint(0, 3))),
                    fqdn_tags=("Tag",) if rng.random() < 0.1 else (),
                )
                for rule_number in range(rng.randint(1, 8))
            ]
            collections.append(
                collection(
                    f"c{collection_number}",
                    rng.randint(100, 65000),
                    rng.choice([ALLOW, DENY]),
                    *rules,
                )
            )
        groups.append(group(f"g{group_number}", rng.randint(100, 65000), *collections))
    the_policy = policy(*groups, fqdn_tags=(("tag", (pattern(), pattern())),))
    decider = Decider(the_policy)
    matched = 0
    for _ in range(300):
        request = rng.choice([https, http])(name())
        expected = _linear_scan(the_policy, request)
        decision = decider.decide(request)
        assert decision.rule == expected, request
        matched += expected is not None
    assert matched > 0
