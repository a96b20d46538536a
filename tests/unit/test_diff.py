"""harness.diff: missing, unused, shadowed and unreachable rules of a policy against a recording."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.diff import DiffReport, diff_policy, render_diff
from harness.events import Event
from harness.policy.decide import Decider
from harness.policy.load import policy_from_mapping
from harness.policy.model import ApplicationRule, NetworkRule, Policy, Protocol, Request, RuleRef

SRC = "10.20.1.5"


def _policy(groups: list[dict[str, Any]], **extra: Any) -> Policy:
    return policy_from_mapping({"name": "p", "rule_collection_groups": groups, **extra}, "p.yaml")


def _group(name: str, priority: int, *collections: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "priority": priority, "rule_collections": list(collections)}


def _collection(name: str, priority: int, action: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "priority": priority, "action": action, "rules": list(rules)}


def _app(name: str, fqdns: list[str], protocols: tuple[str, ...] = ("Https:443",),
         sources: tuple[str, ...] = ("*",)) -> dict[str, Any]:  # fmt: skip
    return {"rule_type": "ApplicationRule", "name": name, "protocols": list(protocols),
            "target_fqdns": fqdns, "source_addresses": list(sources)}  # fmt: skip


def _net(name: str, destinations: list[str], ports: list[str], protocols: tuple[str, ...] = ("TCP",),
         sources: tuple[str, ...] = ("*",)) -> dict[str, Any]:  # fmt: skip
    return {"rule_type": "NetworkRule", "name": name, "ip_protocols": list(protocols),
            "destination_addresses": destinations, "destination_ports": ports,
            "source_addresses": list(sources)}  # fmt: skip


def _tls(host: str | None, port: int = 443, ip: str = "203.0.113.9", would: str = "Deny") -> Event:
    return Event(ts="2026-11-28T12:00:00.000Z", run="r", kind="tls", src=f"{SRC}:50000",
                 dst=f"{ip}:{port}", host=host, port=port, protocol="HTTPS", action=would,
                 would=would)  # fmt: skip


def _http(host: str, port: int = 80) -> Event:
    return Event(ts="t", run="r", kind="http", src=f"{SRC}:50001", dst=f"203.0.113.9:{port}",
                 host=host, port=port, protocol="HTTP")  # fmt: skip


def _raw(kind: str, ip: str, port: int) -> Event:
    return Event(ts="t", run="r", kind=kind, src=f"{SRC}:50002", dst=f"{ip}:{port}", port=port,
                 protocol=kind.upper())  # fmt: skip


ALLOW_CDN = _policy([
    _group("Apps", 300, _collection("allow", 100, "Allow", _app("cdn", ["*.cdn.test"]))),
])  # fmt: skip


# --- missing -------------------------------------------------------------------------------


def test_denied_https_and_http_hosts_need_the_smallest_application_rule() -> None:
    report = diff_policy(ALLOW_CDN, [_tls("pypi.test"), _tls("PyPI.test."), _http("ocsp.test", 8080),
                                     _tls("img.cdn.test")])  # fmt: skip

    assert [(m.protocol, m.destination, m.connections) for m in report.missing] == [
        ("HTTPS", "pypi.test:443", 2), ("HTTP", "ocsp.test:8080", 1)
    ]  # fmt: skip
    assert report.missing[0].suggestion == ApplicationRule(
        "allow-pypi.test", ("*",), (Protocol("Https", 443),), ("pypi.test",)
    )
    assert report.missing[1].suggestion.protocols == (Protocol("Http", 8080),)
    assert report.exit_code == 1


def test_raw_tcp_udp_and_sni_less_https_need_a_network_rule_to_the_address() -> None:
    report = diff_policy(ALLOW_CDN, [_raw("tcp", "198.51.100.4", 5432), _raw("udp", "198.51.100.5", 123),
                                     _tls(None, ip="198.51.100.6")])  # fmt: skip

    assert [m.suggestion for m in report.missing] == [
        NetworkRule("allow-198.51.100.4", ("TCP",), ("*",), ("198.51.100.4",),
                    destination_ports=("5432",)),
        NetworkRule("allow-198.51.100.5", ("UDP",), ("*",), ("198.51.100.5",),
                    destination_ports=("123",)),
        NetworkRule("allow-198.51.100.6", ("TCP",), ("*",), ("198.51.100.6",),
                    destination_ports=("443",)),
    ]  # fmt: skip


def test_the_suggested_policy_allows_every_missing_connection() -> None:
    events = [_tls("pypi.test"), _tls("pypi.test", 8443), _http("pypi.test"),
              _raw("tcp", "198.51.100.4", 5432), _raw("tcp", "198.51.100.4", 5433), _tls(None)]  # fmt: skip
    report = diff_policy(ALLOW_CDN, events)
    suggested = report.suggested_policy()

    assert diff_policy(suggested, events).missing == []
    (group,) = suggested.rule_collection_groups
    application = group.rule_collections[1].rules
    assert [str(p) for p in application[0].protocols] == ["Https:443", "Https:8443", "Http:80"]


def test_a_connection_the_policy_allows_is_not_missing_whatever_the_recording_said() -> None:
    # An audit run behind an empty policy recorded would=Deny; this policy allows it.
    report = diff_policy(ALLOW_CDN, [_tls("img.cdn.test", would="Deny")])

    assert report.missing == []
    assert report.exit_code == 0


def test_a_deny_rule_that_denies_is_named() -> None:
    policy = _policy([
        _group("Apps", 300, _collection("deny", 100, "Deny", _app("no-tracker", ["tracker.test"]))),
    ])  # fmt: skip
    (missing,) = diff_policy(policy, [_tls("tracker.test")]).missing

    assert missing.denied_by == RuleRef("p", "Apps", "deny", "no-tracker")
    assert "denied by Apps / deny / no-tracker" in render_diff(
        diff_policy(policy, [_tls("tracker.test")])
    )


def test_events_as_mappings_are_accepted() -> None:
    event = {
        "kind": "tls",
        "src": f"{SRC}:1",
        "dst": "203.0.113.9:443",
        "host": "pypi.test",
        "port": 443,
    }
    assert [m.destination for m in diff_policy(ALLOW_CDN, [event]).missing] == ["pypi.test:443"]


def test_lifecycle_and_dns_events_are_not_connections() -> None:
    events = [Event(ts="t", run="r", kind="lifecycle", reason="ready"),
              Event(ts="t", run="r", kind="dns", src=f"{SRC}:5353", host="pypi.test")]  # fmt: skip
    report = diff_policy(ALLOW_CDN, events)
    assert (report.connections, report.missing) == (0, [])


# --- unused --------------------------------------------------------------------------------


def test_rules_no_connection_matched_first_are_unused() -> None:
    policy = _policy([
        _group("Net", 200, _collection("ntp", 100, "Allow", _net("ntp", ["*"], ["123"], ("UDP",)))),
        _group("Apps", 300,
               _collection("deny", 100, "Deny", _app("no-tracker", ["tracker.test"])),
               _collection("allow", 200, "Allow", _app("cdn", ["*.cdn.test"]),
                           _app("cdn-again", ["img.cdn.test"]))),
    ])  # fmt: skip
    report = diff_policy(policy, [_tls("img.cdn.test"), _tls("tracker.test")])

    assert [u.rule.rule for u in report.unused] == ["ntp", "cdn-again"]


# --- shadowed ------------------------------------------------------------------------------


def _case(earlier: dict[str, Any], later: dict[str, Any]) -> Any:
    return pytest.param(earlier, later, id=later["name"])


def _shadowed(*rules_and_collections: dict[str, Any]) -> list[tuple[str, tuple[str, ...], bool]]:
    policy = _policy([_group("Apps", 300, *rules_and_collections)])
    return [(s.rule.rule, tuple(ref.rule for ref, _ in s.by), s.conflict)
            for s in diff_policy(policy, []).shadowed]  # fmt: skip


def test_an_exact_name_after_a_wildcard_allow_is_shadowed_and_a_deny_conflicts() -> None:
    found = _shadowed(
        _collection("allow", 100, "Allow", _app("cdn", ["*.cdn.test"])),
        _collection("deny", 200, "Deny", _app("no-img", ["img.cdn.test"])),
    )
    assert found == [("no-img", ("cdn",), True)]


def test_shadowing_follows_priority_not_written_order() -> None:
    found = _shadowed(
        _collection("deny", 200, "Deny", _app("no-img", ["img.cdn.test"])),
        _collection("allow", 100, "Allow", _app("cdn", ["*.cdn.test"])),
    )
    assert found == [("no-img", ("cdn",), True)]


def test_an_identical_rule_later_in_the_same_collection_is_shadowed_without_conflict() -> None:
    found = _shadowed(
        _collection("allow", 100, "Allow", _app("a", ["x.test"]), _app("b", ["X.test."]))
    )
    assert found == [("b", ("a",), False)]


@pytest.mark.parametrize(
    "earlier,later",
    [
        _case(_app("w", ["*.cdn.test"]), _app("apex", ["cdn.test"])),  # *.x does not match x
        _case(_app("w", ["*.cdn.test"]), _app("other-port", ["img.cdn.test"], ("Https:8443",))),
        _case(_app("w", ["*.cdn.test"], ("Http:80",)), _app("https", ["img.cdn.test"])),
        _case(
            _app("w", ["*.cdn.test"], sources=("10.0.0.0/25",)),
            _app("wider", ["img.cdn.test"], sources=("10.0.0.0/24",)),
        ),
        _case(_app("w", ["img.cdn.test"]), _app("pattern", ["*.cdn.test"])),
        _case(_app("w", ["*.cdn.test"]), _app("partly", ["img.cdn.test", "pypi.test"])),
        _case(_app("w", ["*.cdn.test"]), _app("suffix", ["*cdn.test"])),  # *cdn.test takes cdn.test
        _case(_app("w", ["*cdn.test"]), _app("wider-suffix", ["*dn.test"])),
    ],
)
def test_rules_that_can_still_match_are_not_shadowed(
    earlier: dict[str, Any], later: dict[str, Any]
) -> None:
    assert (
        _shadowed(_collection("a", 100, "Allow", earlier), _collection("b", 200, "Deny", later))
        == []
    )


@pytest.mark.parametrize(
    "earlier,later",
    [
        _case(_app("w", ["*"]), _app("any", ["*.cdn.test", "pypi.test"])),
        _case(
            _app("w", ["*cdn.test"]), _app("apex", ["cdn.test"])
        ),  # a plain suffix matches the apex
        _case(_app("w", ["*.test"]), _app("deeper", ["*.cdn.test"])),
        _case(_app("w", ["*.test"]), _app("suffix", ["*cdn.test"])),
        _case(_app("w", ["*dn.test"]), _app("longer-suffix", ["*.cdn.test", "*cdn.test"])),
        _case(
            _app("w", ["*.cdn.test"], sources=("10.0.0.0/16",)),
            _app("narrower", ["a.cdn.test"], sources=("10.0.1.0/24", "10.0.2.1-10.0.2.9")),
        ),
    ],
)
def test_rules_an_earlier_rule_always_takes_are_shadowed(
    earlier: dict[str, Any], later: dict[str, Any]
) -> None:
    found = _shadowed(_collection("a", 100, "Allow", earlier), _collection("b", 200, "Deny", later))
    assert [(name, by) for name, by, _ in found] == [(later["name"], ("w",))]


def test_each_pattern_may_be_covered_by_a_different_earlier_rule() -> None:
    found = _shadowed(
        _collection("a", 100, "Allow", _app("cdn", ["*.cdn.test"]), _app("pypi", ["pypi.test"])),
        _collection("b", 200, "Deny", _app("both", ["img.cdn.test", "pypi.test"])),
    )
    assert found == [("both", ("cdn", "pypi"), True)]


def test_a_shadowed_rule_is_one_the_decider_never_picks() -> None:
    policy = _policy([_group("Apps", 300,
        _collection("a", 100, "Allow", _app("cdn", ["*.cdn.test"])),
        _collection("b", 200, "Deny", _app("no-img", ["img.cdn.test"])))])  # fmt: skip
    (shadowed,) = diff_policy(policy, []).shadowed
    decision = Decider(policy).decide(Request("HTTPS", SRC, 1, 443, None, "img.cdn.test"))

    assert decision.rule == shadowed.by[0][0]


def test_a_network_rule_inside_an_earlier_broader_one_is_shadowed() -> None:
    policy = _policy([
        _group("Net", 200,
               _collection("allow", 100, "Allow", _net("wide", ["10.0.0.0/8"], ["1000-2000"], ("Any",))),
               _collection("deny", 200, "Deny",
                           _net("inside", ["10.1.2.0/24"], ["1500"], ("TCP", "UDP")),
                           _net("port-outside", ["10.1.2.0/24"], ["2001"]),
                           _net("icmp", ["10.1.2.3"], ["*"], ("ICMP",)))),
    ])  # fmt: skip
    found = [(s.rule.rule, s.conflict) for s in diff_policy(policy, []).shadowed]
    assert found == [("inside", True), ("icmp", True)]


# --- unreachable ---------------------------------------------------------------------------


def test_a_network_rule_for_tcp_443_to_everything_takes_https_application_rules() -> None:
    policy = _policy([
        _group("Net", 200, _collection("allow", 100, "Allow", _net("all-443", ["*"], ["443"]))),
        _group("Apps", 300, _collection("deny", 100, "Deny",
                                        _app("no-tracker", ["tracker.test"]),
                                        _app("both", ["x.test"], ("Https:443", "Http:80")),
                                        _app("plain", ["y.test"], ("Http:80",)))),
    ])  # fmt: skip
    (item,) = diff_policy(policy, []).unreachable

    assert item.network_rule.rule == "all-443" and item.action == "Allow"
    assert [(ref.rule, protocols) for ref, protocols in item.application_rules] == [
        ("no-tracker", ("Https:443",)), ("both", ("Https:443",))
    ]  # fmt: skip
    assert [ref.rule for ref in item.fully] == ["no-tracker"]
    text = render_diff(diff_policy(policy, []))
    assert "Net / allow / all-443 (Allow, TCP to every destination)" in text
    assert "Apps / deny / no-tracker: Https:443 (never matches)" in text


@pytest.mark.parametrize(
    "rule,taken",
    [
        (_net("n", ["0.0.0.0/0"], ["*"], ("Any",)), True),
        (_net("n", ["*"], ["1-1000"]), True),
        (_net("n", ["*"], ["443"], ("UDP",)), False),
        (_net("n", ["203.0.113.0/24"], ["443"]), False),
        (_net("n", ["*"], ["443"], sources=("10.9.0.0/24",)), False),
    ],
)
def test_which_network_rules_take_the_application_pass(rule: dict[str, Any], taken: bool) -> None:
    policy = _policy([
        _group("Net", 200, _collection("c", 100, "Deny", rule)),
        _group("Apps", 300, _collection("c", 100, "Allow", _app("a", ["a.test"]))),
    ])  # fmt: skip
    assert bool(diff_policy(policy, []).unreachable) is taken


# --- output --------------------------------------------------------------------------------


def test_render_has_a_heading_per_section_and_none_when_empty() -> None:
    text = render_diff(diff_policy(ALLOW_CDN, [_tls("img.cdn.test")]))

    assert text.startswith("Policy p against 1 recorded connection(s)\n")
    for heading in ("Missing rules", "Unused rules", "Shadowed rules",
                    "Application rules a network rule makes unreachable"):  # fmt: skip
        assert f"\n{heading}" in text
    assert text.count("  none") == 4


def test_json_has_every_section_and_the_suggested_rule_in_yaml_form() -> None:
    report = diff_policy(ALLOW_CDN, [_tls("pypi.test")])
    data = json.loads(report.to_json())

    assert set(data) == {"policy", "connections", "missing", "unused", "shadowed", "unreachable"}
    assert data["missing"][0]["suggestion"] == {
        "rule_type": "ApplicationRule", "name": "allow-pypi.test", "source_addresses": ["*"],
        "protocols": ["Https:443"], "target_fqdns": ["pypi.test"],
    }  # fmt: skip
    assert data["unused"][0]["rule"] == {"policy": "p", "group": "Apps", "collection": "allow",
                                         "rule": "cdn"}  # fmt: skip


def test_exit_code_is_zero_without_missing_rules() -> None:
    assert DiffReport("p", 0).exit_code == 0


# --- the recording's DNS map ----------------------------------------------------------------


def _dns(name: str, *answers: str) -> Event:
    return Event(ts="t", run="r", kind="dns", src=f"{SRC}:5353", host=name, port=53,
                 protocol="DNS", action="Allow", would="Allow", reason="NOERROR",
                 answers=list(answers), sinkholed=False)  # fmt: skip


BY_NAME = _policy([
    _group("Net", 200, _collection("allow-db", 100, "Allow", {
        "rule_type": "NetworkRule", "name": "db-by-name", "ip_protocols": ["TCP"],
        "source_addresses": ["*"], "destination_fqdns": ["db.test"],
        "destination_ports": ["5432"]})),
])  # fmt: skip


def test_a_connection_a_destination_fqdns_rule_allowed_is_neither_missing_nor_unused() -> None:
    # Live, the gateway matched the rule through its DNS answer; the recording holds that answer.
    events = [_dns("db.test", "198.51.100.4"), _raw("tcp", "198.51.100.4", 5432)]
    report = diff_policy(BY_NAME, events)
    assert (report.missing, report.unused) == ([], [])


def test_a_denied_connection_to_a_looked_up_address_gets_a_rule_by_its_name() -> None:
    events = [_dns("cache.test", "198.18.0.7"), _raw("tcp", "198.18.0.7", 6379)]
    [missing] = diff_policy(BY_NAME, events).missing
    assert missing.destination == "cache.test:6379"
    assert missing.suggestion == NetworkRule("allow-cache.test", ("TCP",), ("*",),
                                             destination_fqdns=("cache.test",),
                                             destination_ports=("6379",))  # fmt: skip
    assert diff_policy(DiffReport("p", 0, [missing]).suggested_policy(), events).missing == []
