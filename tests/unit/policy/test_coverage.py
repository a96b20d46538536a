"""harness.policy.coverage: which rule covers, shadows or preempts which, in the Decider's own
order and with its matchers; and the Decider never lets a rule found shadowed decide."""

from __future__ import annotations

import random

import pytest

from harness.policy.coverage import Coverage, addresses_contain, ports_contain
from harness.policy.decide import AddressSet, Decider, PlacedRule, in_precedence, port_ranges
from harness.policy.model import (
    ApplicationRule,
    NetworkRule,
    Policy,
    Protocol,
    Request,
    Rule,
    RuleCollection,
    RuleCollectionGroup,
)

HTTPS = Protocol("Https", 443)
HTTP = Protocol("Http", 80)


def net(name: str, destinations: tuple[str, ...] = ("*",), ports: tuple[str, ...] = ("443",),
        protocols: tuple[str, ...] = ("TCP",), sources: tuple[str, ...] = ("*",),
        fqdns: tuple[str, ...] = ()) -> NetworkRule:  # fmt: skip
    return NetworkRule(name, protocols, sources, destinations, fqdns, ports)  # type: ignore[arg-type]


def app(name: str, fqdns: tuple[str, ...], protocols: tuple[Protocol, ...] = (HTTPS,),
        sources: tuple[str, ...] = ("*",), tags: tuple[str, ...] = ()) -> ApplicationRule:  # fmt: skip
    return ApplicationRule(name, sources, protocols, fqdns, tags)


def policy(*groups: tuple[int, tuple[tuple[int, str, tuple[Rule, ...]], ...]], **extra) -> Policy:
    """Groups as (priority, collections), collections as (priority, action, rules)."""
    return Policy("p", tuple(
        RuleCollectionGroup(f"g{gp}", gp, tuple(
            RuleCollection(f"c{gp}-{cp}", cp, action, rules)  # type: ignore[arg-type]
            for cp, action, rules in collections
        ))
        for gp, collections in groups
    ), **extra)  # fmt: skip


def shadowed(the_policy: Policy) -> list[tuple[str, tuple[str, ...]]]:
    return [(found.rule.ref.rule, tuple(p.ref.rule for p in found.by))
            for found in Coverage(the_policy).shadowed()]  # fmt: skip


# --- the matchers' containment ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        (("*",), ("10.0.0.0/8",), True),
        (("10.0.0.0/8",), ("*",), False),
        (("10.0.0.0/8",), ("10.1.2.3", "10.9.0.0/16"), True),
        (("10.0.0.0/8",), ("10.1.2.3", "192.0.2.1"), False),
        (("10.0.0.0/25", "10.0.0.128/25"), ("10.0.0.0/24",), True),  # the union counts
        (("10.0.0.0-10.0.0.9",), ("10.0.0.2-10.0.0.5", "10.0.0.8/31"), True),
        (("10.0.0.1-10.0.0.6",), ("10.0.0.4/30",), False),  # .7 is outside
        (("0.0.0.0/0",), ("2001:db8::1",), False),  # versions apart
        (("2001:db8::/32",), ("2001:db8::1",), True),
        (("AzureCloud",), ("AzureCloud",), True),  # tags without prefixes: by name
        (("azurecloud",), ("AzureCloud",), True),
        (("10.0.0.0/8",), ("AzureCloud",), False),
        ((), (), True),
    ],
)  # fmt: skip
def test_address_sets_contain(
    outer: tuple[str, ...], inner: tuple[str, ...], expected: bool
) -> None:
    assert addresses_contain(AddressSet(outer), AddressSet(inner)) is expected


def test_a_service_tag_with_prefixes_is_contained_as_its_prefixes() -> None:
    tags = {"storage": ("10.1.0.0/16",), "azurecloud": ("10.0.0.0/8",)}.get

    def lookup(name: str) -> tuple[str, ...] | None:
        return tags(name.lower())

    assert addresses_contain(AddressSet(("10.0.0.0/8",)), AddressSet(("Storage",), lookup))
    assert addresses_contain(AddressSet(("AzureCloud",), lookup), AddressSet(("Storage",), lookup))
    assert not addresses_contain(
        AddressSet(("Storage",), lookup), AddressSet(("AzureCloud",), lookup)
    )


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        (("*",), ("1-65535",), True),
        (("443",), ("443",), True),
        (("443",), ("443-444",), False),
        (("80", "81"), ("80-81",), True),  # adjacent ranges join
        (("1-1000",), ("80", "443"), True),
        (("1-1000",), ("8080",), False),
    ],
)  # fmt: skip
def test_port_ranges_contain(
    outer: tuple[str, ...], inner: tuple[str, ...], expected: bool
) -> None:
    assert ports_contain(port_ranges(outer), port_ranges(inner)) is expected


# --- shadowed ---------------------------------------------------------------------------------


def test_the_order_is_the_deciders_group_priority_before_the_written_order() -> None:
    # Written first, but its group's priority number is higher: it comes second.
    later = (300, ((100, "Allow", (net("narrow", ("10.0.0.0/8",)),)),))
    earlier = (100, ((100, "Deny", (net("wide"),)),))
    the_policy = policy(later, earlier)
    assert shadowed(the_policy) == [("narrow", ("wide",))]
    network, _ = in_precedence(the_policy)
    assert [p.ref.rule for p in network] == ["wide", "narrow"]


def test_network_rules_cover_by_transport_source_destination_and_port() -> None:
    rules = (
        net("any", ports=("*",), protocols=("Any",)),
        net("tcp-443"),
        net("udp", protocols=("UDP",)),
    )
    assert shadowed(policy((100, ((100, "Allow", rules),)))) == [
        ("tcp-443", ("any",)),
        ("udp", ("any",)),
    ]
    narrow_first = (net("tcp-443", ("10.0.0.0/8",)), net("wide"), net("icmp", protocols=("ICMP",)))
    assert shadowed(policy((100, ((100, "Allow", narrow_first),)))) == []


def test_icmp_has_no_ports_to_cover() -> None:
    rules = (
        net("icmp-80", ports=("80",), protocols=("ICMP",)),
        net("icmp-443", protocols=("ICMP",)),
    )
    assert shadowed(policy((100, ((100, "Allow", rules),)))) == [("icmp-443", ("icmp-80",))]


def test_destination_names_are_covered_by_the_same_names_or_every_address() -> None:
    by_name = net("by-name", destinations=(), fqdns=("db.test",))
    assert shadowed(policy((100, ((100, "Allow", (net("star"), by_name)),)))) == [
        ("by-name", ("star",))
    ]
    names = net("names", destinations=(), fqdns=("db.test", "cache.test"))
    other = net("other", ("10.0.0.0/8",), fqdns=("DB.test.",))
    assert shadowed(policy((100, ((100, "Allow", (names, other, by_name)),)))) == [
        ("by-name", ("names",))
    ]


def test_an_application_rule_is_shadowed_pair_by_pair_and_names_each_earlier_rule_once() -> None:
    first = app("first", ("*.a.test",), (HTTPS, HTTP))
    second = app("second", ("b.test",))
    later = app("later", ("x.a.test", "b.test", "y.a.test"))
    partly = app("partly", ("x.a.test", "c.test"))
    the_policy = policy((100, ((100, "Allow", (first,)), (200, "Deny", (second, later, partly)))))
    assert shadowed(the_policy) == [("later", ("first", "second"))]
    [found] = Coverage(the_policy).shadowed()
    assert [p.action for p in found.by] == ["Allow", "Deny"] and found.rule.action == "Deny"


def test_application_sources_and_protocols_must_be_contained() -> None:
    narrow = app("narrow", ("*",), sources=("10.0.0.0/8",))
    other_port = app("other-port", ("*",), (Protocol("Https", 8443),))
    later = app("later", ("a.test",))
    assert shadowed(policy((100, ((100, "Allow", (narrow, other_port, later)),)))) == []


def test_fqdn_tags_cover_with_the_policys_own_patterns() -> None:
    tagged = app("tagged", (), tags=("Builds",))
    later = app("later", ("x.a.test",))
    the_policy = policy((100, ((100, "Allow", (tagged, later)),)),
                        fqdn_tags=(("Builds", ("*.a.test",)),))  # fmt: skip
    assert shadowed(the_policy) == [("later", ("tagged",))]
    assert shadowed(policy((100, ((100, "Allow", (tagged, later)),)))) == []  # unknown tag


def test_covers_compares_two_placed_rules_of_one_pass() -> None:
    the_policy = policy((100, ((100, "Allow", (net("wide"), app("web", ("*",)))),)))
    coverage = Coverage(the_policy)
    [wide], [web] = in_precedence(the_policy)
    narrow = PlacedRule(wide.ref, "Allow", net("narrow", ("10.0.0.0/8",)))
    assert coverage.covers(wide, narrow) and not coverage.covers(narrow, wide)
    assert not coverage.covers(wide, web)  # different passes: Preemption says that
    assert coverage.covers(web, PlacedRule(web.ref, "Deny", app("a", ("a.test",))))


# --- preempted --------------------------------------------------------------------------------


def test_a_network_rule_to_every_address_takes_the_application_rules_on_its_ports() -> None:
    everything = net("everything", ("0.0.0.0/0",), ("443",))
    web = app("web", ("a.test",), (HTTPS, HTTP))
    secure = app("secure", ("b.test",))
    narrow = app("narrow", ("c.test",), sources=("10.0.0.0/8",))
    the_policy = policy((300, ((100, "Allow", (web, secure, narrow)),)),
                        (100, ((100, "Deny", (everything,)),)))  # fmt: skip
    [found] = Coverage(the_policy).preempted()
    assert found.network_rule.ref.rule == "everything"
    assert [(p.ref.rule, protocols) for p, protocols in found.application_rules] == [
        ("web", (HTTPS,)), ("secure", (HTTPS,)), ("narrow", (HTTPS,))
    ]  # fmt: skip
    assert [p.ref.rule for p in found.fully] == ["secure", "narrow"]


def test_only_tcp_to_every_address_preempts() -> None:
    rules = (
        net("udp", protocols=("UDP",), ports=("*",)),
        net("some", ("10.0.0.0/8",), ("*",)),
        net("v6", ("::/0",), ("*",)),
        net("narrow-src", sources=("10.0.0.0/8",), ports=("*",)),
    )
    the_policy = policy((100, ((100, "Allow", rules), (200, "Allow", (app("web", ("*",)),)))))
    assert Coverage(the_policy).preempted() == []


# --- the Decider never lets a shadowed rule decide ------------------------------------------

ADDRESSES = ["*", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "10.0.0.0-10.0.0.255", "0.0.0.0/0",
             "10.0.0.2/31", "10.0.0.4/31", "2001:db8::/32"]  # fmt: skip
PORTS = ["*", "443", "80", "1-1000", "8080", "81", "82", "80-81"]
PATTERNS = ["*", "*.a.test", "a.test", "*a.test", "x.a.test", "*xa.test", "b.test", "*.test"]
HOSTS = ["a.test", "x.a.test", "y.x.a.test", "xa.test", "b.test", "c.test", "db.test"]
IPS = ["10.1.2.3", "10.0.0.3", "10.0.0.5", "10.200.0.1", "192.0.2.1", "2001:db8::5", None]


def _random_policy(rng: random.Random) -> Policy:
    def some(pool: list, low: int = 1, high: int = 2) -> tuple:
        return tuple(rng.sample(pool, rng.randint(low, high)))

    def rule(index: int, kind: str) -> Rule:
        if kind == "net":
            transports = some(["TCP", "UDP", "ICMP", "Any"])
            sources = some(["*", "*", "10.0.0.0/8"], 1, 1)
            names = some(["db.test", "a.test"], 0, 1)
            return net(f"r{index}", some(ADDRESSES, 0, 2), some(PORTS), transports, sources, names)
        protocols = some([HTTPS, HTTP, Protocol("Https", 8443), Protocol("Http", 8080)])
        return app(f"r{index}", some(PATTERNS), protocols, some(["*", "*", "10.0.0.0/8"], 1, 1))

    count = 0
    groups = []
    for group in range(rng.randint(1, 3)):
        collections = []
        for collection in range(rng.randint(1, 3)):
            kind = rng.choice(["net", "app"])
            rules = []
            for _ in range(rng.randint(1, 4)):
                count += 1
                rules.append(rule(count, kind))
            priority, action = rng.choice([100, 200, 300]), rng.choice(["Allow", "Deny"])
            collections.append(
                RuleCollection(f"c{group}{collection}", priority, action, tuple(rules))  # type: ignore[arg-type]
            )
        groups.append(
            RuleCollectionGroup(f"g{group}", rng.choice([100, 200, 300]), tuple(collections))
        )
    return Policy("p", tuple(groups))


def _random_request(rng: random.Random) -> Request:
    protocol = rng.choice(["HTTPS", "HTTP", "TCP", "UDP", "ICMP"])
    port = rng.choice([443, 80, 81, 82, 8080, 8443, 22, 5000])
    host = rng.choice(HOSTS) if protocol in ("HTTPS", "HTTP") else None
    names = frozenset(rng.sample(HOSTS, rng.randint(0, 1)))
    source = rng.choice(["10.20.1.5", "192.168.7.7"])
    return Request(protocol, source, 50000, port, rng.choice(IPS), host, names)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(40))
def test_the_decider_never_decides_by_a_rule_coverage_finds_unreachable(seed: int) -> None:
    rng = random.Random(seed)
    the_policy = _random_policy(rng)
    coverage = Coverage(the_policy)
    shadowed_rules = {found.rule.ref for found in coverage.shadowed()}
    preempted = {placed.ref for found in coverage.preempted() for placed in found.fully}
    decider = Decider(the_policy)
    for _ in range(400):
        request = _random_request(rng)
        decision = decider.decide(request)
        assert decision.rule not in shadowed_rules
        if request.dst_ip is not None and ":" not in request.dst_ip:  # preemption: IPv4 (docstring)
            assert decision.rule not in preempted
