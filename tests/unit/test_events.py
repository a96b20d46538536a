"""Events and their Azure renderings: each legacy `msg` line shape of azure-firewall.md word for
word, the JSON line of formats.md "Recording", and the AZFW* resource-specific rows."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from harness.events import (
    Event,
    azfw_record,
    azure_line,
    dns_line,
    event_for_decision,
    lifecycle_event,
    now_iso,
)
from harness.policy.model import ALLOW, DENY, Decision, Reason, Request, RuleRef

BLOCK_RULE = RuleRef("my-policy", "DefaultApplicationRuleCollectionGroup", "block-sites",
                     "block-microsoft")  # fmt: skip
CLASSIC_RULE = RuleRef("", "", "collection1000", "rule1002")
NETWORK_RULE = RuleRef("net-policy", "DefaultNetworkRuleCollectionGroup", "allow-db", "postgres")

FORMATS_KEY_ORDER = [
    "v", "ts", "run", "kind", "src", "dst", "host", "port", "protocol", "action", "would",
    "rule", "reason", "bytes_up", "bytes_down", "duration_ms", "url", "status", "azure",
    "upstream",
]  # fmt: skip


def https(src: str, host: str | None, port: int = 443) -> Request:
    ip, src_port = src.split(":")
    return Request("HTTPS", ip, int(src_port), port, dst_ip="203.0.113.80", host=host)


def line_for(request: Request, decision: Decision, *, policy_name: str = "", url=None) -> str:
    event = event_for_decision(request, decision, policy_name=policy_name, url=url)
    assert event.azure == azure_line(event)
    assert event.azure is not None
    return event.azure


# --- legacy msg lines ----------------------------------------------------------------------


def test_https_allow_by_a_classic_rule_names_collection_and_rule_only() -> None:
    decision = Decision(ALLOW, ALLOW, Reason.RULE_MATCHED, CLASSIC_RULE)
    assert line_for(https("10.1.0.5:55640", "mydestination.com"), decision) == (
        "HTTPS request from 10.1.0.5:55640 to mydestination.com:443. Action: Allow. "
        "Rule Collection: collection1000. Rule: rule1002"
    )


def test_https_deny_by_a_policy_rule_names_policy_group_collection_and_rule() -> None:
    decision = Decision(DENY, DENY, Reason.RULE_MATCHED, BLOCK_RULE)
    assert line_for(https("10.1.0.5:55640", "www.microsoft.com"), decision) == (
        "HTTPS request from 10.1.0.5:55640 to www.microsoft.com:443. Action: Deny. "
        "Policy: my-policy. Rule Collection Group: DefaultApplicationRuleCollectionGroup. "
        "Rule Collection: block-sites. Rule: block-microsoft"
    )


def test_rule_without_policy_name_takes_the_policy_being_enforced() -> None:
    rule = RuleRef("", "DefaultApplicationRuleCollectionGroup", "allow-web", "web")
    decision = Decision(ALLOW, ALLOW, Reason.RULE_MATCHED, rule)
    event = event_for_decision(https("10.1.0.5:1", "a.test"), decision, policy_name="contoso")
    assert event.rule == {"policy": "contoso", "group": rule.group, "collection": "allow-web",
                          "rule": "web"}  # fmt: skip
    assert event.azure is not None
    assert ". Policy: contoso. Rule Collection Group: " in event.azure


def test_https_default_deny_has_no_final_period() -> None:
    decision = Decision(DENY, DENY, Reason.DEFAULT_DENY)
    assert line_for(https("10.0.2.254:50347", "x.scm.azurewebsites.net"), decision) == (
        "HTTPS request from 10.0.2.254:50347 to x.scm.azurewebsites.net:443. Action: Deny. "
        "No rule matched. Proceeding with default action"
    )


def test_http_pads_the_protocol_to_five_characters_and_adds_the_url() -> None:
    request = Request("HTTP", "10.13.1.4", 55202, 80, dst_ip="198.51.100.7", host="host")
    decision = Decision(DENY, DENY, Reason.DEFAULT_DENY)
    assert line_for(request, decision, url="host/path") == (
        "HTTP  request from 10.13.1.4:55202 to host:80. Url: host/path. Action: Deny. "
        "No rule matched. Proceeding with default action"
    )


def test_missing_sni_names_the_source_only_and_ends_with_a_period() -> None:
    decision = Decision(DENY, DENY, Reason.SNI_MISSING)
    assert line_for(https("10.0.8.4:49424", None), decision) == (
        "HTTPS request from 10.0.8.4:49424. Action: Deny. Reason: SNI TLS extension was missing."
    )


def test_network_default_deny_ends_at_the_action() -> None:
    request = Request("TCP", "111.35.136.173", 12518, 2323, dst_ip="13.78.143.217")
    decision = Decision(DENY, DENY, Reason.DEFAULT_DENY)
    assert line_for(request, decision) == (
        "TCP request from 111.35.136.173:12518 to 13.78.143.217:2323. Action: Deny"
    )


def test_network_allow_by_rule_names_the_rule() -> None:
    request = Request("UDP", "10.0.2.4", 52776, 123, dst_ip="192.0.2.123")
    decision = Decision(ALLOW, ALLOW, Reason.RULE_MATCHED, NETWORK_RULE)
    event = event_for_decision(request, decision, policy_name="ignored")
    assert event.kind == "udp"
    assert event.azure == (
        "UDP request from 10.0.2.4:52776 to 192.0.2.123:123. Action: Allow. Policy: net-policy. "
        "Rule Collection Group: DefaultNetworkRuleCollectionGroup. Rule Collection: allow-db. "
        "Rule: postgres"
    )


def test_dns_proxy_line_matches_azure_field_for_field() -> None:
    line = dns_line(
        "10.140.16.133:29135", 50772, "A", "name", "udp", 57, "NOERROR", "qr,rd,ra", 336, 0.0032
    )
    assert line == (
        "DNS Request: 10.140.16.133:29135 - 50772 A IN name. udp 57 false 1232 NOERROR "
        "qr,rd,ra 336 0.0032s"
    )


def test_dns_line_keeps_an_already_absolute_name() -> None:
    line = dns_line("10.0.0.2:5353", 1, "AAAA", "a.test.", "tcp", 30, "NXDOMAIN", "qr,rd,ra",
                    30, 0.01)  # fmt: skip
    assert " AAAA IN a.test. tcp 30 " in line


def test_dns_event_renders_its_stored_line() -> None:
    line = dns_line("10.0.0.2:5353", 7, "A", "a.test", "udp", 28, "NOERROR", "qr,rd,ra", 44, 0.5)
    event = Event(ts=now_iso(), run="r", kind="dns", src="10.0.0.2:5353", azure=line)
    assert azure_line(event) == line


def test_lifecycle_event_has_no_azure_line() -> None:
    event = lifecycle_event("run-1", "ready")
    assert (event.kind, event.reason, event.run) == ("lifecycle", "ready", "run-1")
    assert azure_line(event) is None
    assert azfw_record(event) is None


def test_lifecycle_event_leaves_every_other_field_null() -> None:
    data = json.loads(lifecycle_event("run-1", "stopped").to_json())
    assert {key for key, value in data.items() if value is not None} == {
        "v", "ts", "run", "kind", "reason"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "decision", "expected"),
    [
        (
            https("10.0.2.254:50347", "denied.test"),
            Decision(ALLOW, DENY, Reason.DEFAULT_DENY),
            (
                "HTTPS request from 10.0.2.254:50347 to denied.test:443. Action: Deny. "
                "No rule matched. Proceeding with default action"
            ),
        ),
        (
            https("10.0.2.254:50347", "blocked.test"),
            Decision(ALLOW, DENY, Reason.RULE_MATCHED, BLOCK_RULE),
            (
                "HTTPS request from 10.0.2.254:50347 to blocked.test:443. Action: Deny. "
                "Policy: my-policy. Rule Collection Group: DefaultApplicationRuleCollectionGroup. "
                "Rule Collection: block-sites. Rule: block-microsoft"
            ),
        ),
        (
            https("10.0.8.4:49424", None),
            Decision(ALLOW, DENY, Reason.SNI_MISSING),
            "HTTPS request from 10.0.8.4:49424. Action: Deny. Reason: SNI TLS extension was missing.",
        ),
        (
            Request("TCP", "10.0.0.2", 40000, 22, dst_ip="192.0.2.22"),
            Decision(ALLOW, DENY, Reason.DEFAULT_DENY),
            "TCP request from 10.0.0.2:40000 to 192.0.2.22:22. Action: Deny",
        ),
    ],
    ids=["default-deny", "deny-rule", "no-sni", "network"],
)
def test_audit_mode_line_shows_what_enforce_would_do(
    request_: Request, decision: Decision, expected: str
) -> None:
    event = event_for_decision(request_, decision, policy_name="my-policy")
    assert (event.action, event.would) == (ALLOW, DENY)
    assert event.azure == expected


# --- JSON lines ------------------------------------------------------------------------------


def full_event() -> Event:
    decision = Decision(DENY, DENY, Reason.RULE_MATCHED, BLOCK_RULE)
    event = event_for_decision(https("172.18.0.2:50347", "name.example"), decision,
                               policy_name="my-policy", run="run-7")  # fmt: skip
    event.bytes_up, event.bytes_down, event.duration_ms = 517, 0, 3
    return event


def test_json_line_has_formats_key_order_with_v_first() -> None:
    line = full_event().to_json()
    # `upstream` is written only when an allowed connection's upstream failed.
    assert list(json.loads(line)) == [key for key in FORMATS_KEY_ORDER if key != "upstream"]
    failed = replace(full_event(), upstream="refused").to_json()
    assert list(json.loads(failed)) == FORMATS_KEY_ORDER
    assert line.startswith('{"v": 1, "ts": "')
    assert "\n" not in line


def test_json_line_has_formats_values() -> None:
    data = json.loads(full_event().to_json())
    assert data["kind"] == "tls"
    assert data["src"] == "172.18.0.2:50347"
    assert data["dst"] == "203.0.113.80:443"
    assert (data["host"], data["port"], data["protocol"]) == ("name.example", 443, "HTTPS")
    assert data["rule"] == {"policy": "my-policy", "group": "DefaultApplicationRuleCollectionGroup",
                            "collection": "block-sites", "rule": "block-microsoft"}  # fmt: skip
    assert (data["url"], data["status"]) == (None, None)


def test_json_round_trip_keeps_every_field() -> None:
    event = full_event()
    event.url, event.status = "name.example/x", 470
    assert Event.from_json(event.to_json()) == event


def test_from_json_ignores_keys_of_a_newer_writer() -> None:
    event = full_event()
    data = json.loads(event.to_json())
    data["added_later"] = {"x": 1}
    assert Event.from_json(json.dumps(data)) == event


def test_timestamps_are_utc_milliseconds_with_z() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", now_iso())


# --- AZFW* rows --------------------------------------------------------------------------------

APPLICATION_COLUMNS = [
    "Category", "TimeGenerated", "SourceIp", "SourcePort", "Protocol", "DestinationPort", "Fqdn",
    "TargetUrl", "Action", "Policy", "RuleCollectionGroup", "RuleCollection", "Rule",
    "ActionReason", "IsTlsInspected", "WebCategory", "IsExplicitProxyRequest",
]  # fmt: skip
NETWORK_COLUMNS = [
    "Category", "TimeGenerated", "SourceIp", "SourcePort", "Protocol", "DestinationIp",
    "DestinationPort", "Action", "ActionReason", "Policy", "RuleCollectionGroup",
    "RuleCollection", "Rule",
]  # fmt: skip
DNS_COLUMNS = [
    "Category", "TimeGenerated", "SourceIp", "SourcePort", "QueryId", "QueryType", "QueryClass",
    "QueryName", "Protocol", "RequestSize", "DnssecOkBit", "EDNS0BufferSize", "ResponseCode",
    "ResponseFlags", "ResponseSize", "RequestDurationSecs", "ErrorNumber", "ErrorMessage",
]  # fmt: skip


def test_application_row_for_the_default_action_has_empty_rule_columns() -> None:
    request = Request("HTTP", "10.13.1.4", 55202, 80, dst_ip="198.51.100.7", host="host.test")
    event = event_for_decision(request, Decision(DENY, DENY, Reason.DEFAULT_DENY),
                               policy_name="p", url="host.test/path")  # fmt: skip
    row = azfw_record(event)
    assert row is not None
    assert list(row) == APPLICATION_COLUMNS
    assert row == {
        "Category": "AZFWApplicationRule", "TimeGenerated": event.ts, "SourceIp": "10.13.1.4",
        "SourcePort": 55202, "Protocol": "HTTP", "DestinationPort": 80, "Fqdn": "host.test",
        "TargetUrl": "host.test/path", "Action": "Deny", "Policy": "", "RuleCollectionGroup": "",
        "RuleCollection": "", "Rule": "", "ActionReason": "Default Action",
        "IsTlsInspected": False, "WebCategory": "", "IsExplicitProxyRequest": False,
    }  # fmt: skip


def test_application_row_for_a_rule_names_it_and_has_no_action_reason() -> None:
    event = event_for_decision(https("10.1.0.5:55640", "www.microsoft.com"),
                               Decision(ALLOW, DENY, Reason.RULE_MATCHED, BLOCK_RULE),
                               policy_name="my-policy")  # fmt: skip
    row = azfw_record(event)
    assert row is not None
    assert (row["Protocol"], row["Fqdn"], row["TargetUrl"]) == ("HTTPS", "www.microsoft.com", "")
    assert row["Action"] == "Deny"  # audit: what enforce would do, as in the msg line
    assert (row["Policy"], row["RuleCollectionGroup"], row["RuleCollection"], row["Rule"]) == (
        "my-policy",
        "DefaultApplicationRuleCollectionGroup",
        "block-sites",
        "block-microsoft",
    )
    assert row["ActionReason"] == ""


def test_network_row_has_azfw_network_rule_columns() -> None:
    request = Request("TCP", "111.35.136.173", 12518, 2323, dst_ip="13.78.143.217")
    row = azfw_record(event_for_decision(request, Decision(DENY, DENY, Reason.DEFAULT_DENY),
                                         policy_name="p"))  # fmt: skip
    assert row is not None
    assert list(row) == NETWORK_COLUMNS
    assert {key: row[key] for key in NETWORK_COLUMNS if key != "TimeGenerated"} == {
        "Category": "AZFWNetworkRule", "SourceIp": "111.35.136.173", "SourcePort": 12518,
        "Protocol": "TCP", "DestinationIp": "13.78.143.217", "DestinationPort": 2323,
        "Action": "Deny", "ActionReason": "Default Action", "Policy": "",
        "RuleCollectionGroup": "", "RuleCollection": "", "Rule": "",
    }  # fmt: skip


def test_network_row_for_a_rule_names_it() -> None:
    request = Request("TCP", "10.0.2.4", 52776, 5432, dst_ip="192.0.2.50")
    event = event_for_decision(request, Decision(ALLOW, ALLOW, Reason.RULE_MATCHED,
                                                 NETWORK_RULE), policy_name="p")  # fmt: skip
    row = azfw_record(event)
    assert row is not None
    assert (row["Action"], row["ActionReason"], row["RuleCollection"], row["Rule"]) == (
        "Allow",
        "",
        "allow-db",
        "postgres",
    )


def test_dns_row_takes_its_columns_from_the_line() -> None:
    line = dns_line("10.140.16.133:29135", 50772, "A", "name", "udp", 57, "NOERROR",
                    "qr,rd,ra", 336, 0.0032)  # fmt: skip
    event = Event(ts="2026-11-28T12:00:00.123Z", run="r", kind="dns", src="10.140.16.133:29135",
                  host="name", port=53, protocol="DNS", action="Allow", would="Allow",
                  azure=line)  # fmt: skip
    row = azfw_record(event)
    assert row is not None
    assert list(row) == DNS_COLUMNS
    assert row == {
        "Category": "AZFWDnsQuery", "TimeGenerated": "2026-11-28T12:00:00.123Z",
        "SourceIp": "10.140.16.133", "SourcePort": 29135, "QueryId": 50772, "QueryType": "A",
        "QueryClass": "IN", "QueryName": "name.", "Protocol": "udp", "RequestSize": 57,
        "DnssecOkBit": False, "EDNS0BufferSize": 1232, "ResponseCode": "NOERROR",
        "ResponseFlags": "qr,rd,ra", "ResponseSize": 336, "RequestDurationSecs": 0.0032,
        "ErrorNumber": 0, "ErrorMessage": "",
    }  # fmt: skip


def test_dns_row_of_a_damaged_line_is_none() -> None:
    event = Event(ts=now_iso(), run="r", kind="dns", src="10.0.0.2:1", azure="DNS Request: x")
    assert azfw_record(event) is None
