"""Legacy msg lines and table rows to events, value by value (harness.logimport.rows)."""

from __future__ import annotations

import pytest

from harness.logimport.rows import RowError, Unsupported, legacy_event, normalize_time, table_event

DEFAULT = "No rule matched. Proceeding with default action"


@pytest.mark.parametrize(("line", "expected"), [
    ("HTTPS request from 10.1.0.5:55640 to mydestination.com:443. Action: Allow. Rule Collection: collection1000. Rule: rule1002",
     ("tls", "10.1.0.5:55640", "mydestination.com", 443, "Allow", ("", "", "collection1000", "rule1002"), None)),
    ("HTTPS request from 10.0.2.4:50000 to a.test:443. Action: Deny. Policy: p. Rule Collection Group: g. Rule Collection: block. Rule: r1",
     ("tls", "10.0.2.4:50000", "a.test", 443, "Deny", ("p", "g", "block", "r1"), None)),
    ("HTTPS request from 10.0.2.254:50347 to x.scm.azurewebsites.net:443. Action: Deny. " + DEFAULT,
     ("tls", "10.0.2.254:50347", "x.scm.azurewebsites.net", 443, "Deny", None, DEFAULT)),
    ("HTTP  request from 10.13.1.4:55202 to host.test:80. Url: host.test/path. Action: Deny. " + DEFAULT,
     ("http", "10.13.1.4:55202", "host.test", 80, "Deny", None, DEFAULT)),
    ("HTTPS request from 10.0.8.4:49424. Action: Deny. Reason: SNI TLS extension was missing.",
     ("tls", "10.0.8.4:49424", None, None, "Deny", None, "SNI TLS extension was missing.")),
    ("TCP request from 111.35.136.173:12518 to 13.78.143.217:2323. Action: Deny",
     ("tcp", "111.35.136.173:12518", None, 2323, "Deny", None, None)),
    ("UDP request from 10.0.2.4:123 to 192.0.2.1:123. Action: Allow. Policy: p. Rule Collection Group: g. Rule Collection: ntp. Rule: ntp",
     ("udp", "10.0.2.4:123", None, 123, "Allow", ("p", "g", "ntp", "ntp"), None)),
    ("TCP request from 198.51.100.7:40000 to 20.1.2.3:3389 was DNAT'ed to 10.0.1.4:3389",
     ("dnat", "198.51.100.7:40000", None, 3389, None, None, "DNAT'ed to 10.0.1.4:3389")),
    ("DNS Request: 10.140.16.133:29135 - 50772 A IN name.test. udp 57 false 1232 NOERROR qr,rd,ra 336 0.0032s",
     ("dns", "10.140.16.133:29135", "name.test", None, None, None, None)),
])  # fmt: skip
def test_legacy_lines(line: str, expected: tuple) -> None:
    event = legacy_event(line, "", "r")
    rule = event.rule
    as_tuple = (rule["policy"], rule["group"], rule["collection"], rule["rule"]) if rule else None
    assert (event.kind, event.src, event.host, event.port, event.action, as_tuple,
            event.reason) == expected  # fmt: skip
    assert event.azure == line


def test_icmp_lines_are_unsupported_and_others_unreadable() -> None:
    with pytest.raises(Unsupported):
        legacy_event("ICMP Type=8 request from 10.0.2.4 to 192.0.2.1. Action: Allow", "", "r")
    with pytest.raises(RowError, match="not an Azure Firewall log line"):
        legacy_event("Kudu: deployment failed", "", "r")


@pytest.mark.parametrize(("text", "normal"), [
    ("2026-11-28T12:00:00.1234567Z", "2026-11-28T12:00:00.123Z"),
    ("2026-11-28T12:00:00Z", "2026-11-28T12:00:00.000Z"),
    ("2026-11-28 12:00:00.123000+00:00", "2026-11-28T12:00:00.123Z"),
    ("2026-11-28T13:00:00.5+01:00", "2026-11-28T12:00:00.500Z"),
    ("11/28/2026, 12:00:01.234 PM", "2026-11-28T12:00:01.234Z"),
    ("11/28/2026, 12:00:01 AM", "2026-11-28T00:00:01.000Z"),
    ("1/2/2026, 3:04:05.600 PM", "2026-01-02T15:04:05.600Z"),
    ("", ""),
])  # fmt: skip
def test_times_in_every_export_form(text: str, normal: str) -> None:
    assert normalize_time(text) == normal


@pytest.mark.parametrize("text", ["yesterday", "13/28/2026, 12:00:00 PM", "2026-11-28"])
def test_a_bad_time_names_the_column(text: str) -> None:
    with pytest.raises(RowError, match="TimeGenerated"):
        normalize_time(text)


@pytest.mark.parametrize(("column", "value", "message"), [
    ("SourcePort", "fifty", "SourcePort: 'fifty' is not a whole number"),
    ("DestinationPort", 70000, "DestinationPort: 70000 is outside 0..65535"),
    ("DestinationPort", True, "DestinationPort: True is not a number"),
    ("Fqdn", ["a"], "Fqdn: ['a'] is not text"),
    ("Protocol", "FTP", "Protocol: 'FTP' is not HTTP or HTTPS"),
    ("Action", "Maybe", "Action: 'Maybe' is not Allow or Deny"),
])  # fmt: skip
def test_a_value_of_the_wrong_type_is_named(column: str, value: object, message: str) -> None:
    row = {"TimeGenerated": "2026-11-28T12:00:00Z", "Protocol": "HTTPS", "SourceIp": "10.0.2.4",
           "SourcePort": 50000, "DestinationPort": 443, "Fqdn": "a.test", "Action": "Deny",
           column: value}  # fmt: skip
    with pytest.raises(RowError) as raised:
        table_event("AZFWApplicationRule", row, "r")
    assert str(raised.value) == message


def test_icmp_network_rows_are_unsupported() -> None:
    with pytest.raises(Unsupported):
        table_event("AZFWNetworkRule", {"Protocol": "ICMP", "SourceIp": "10.0.2.4"}, "r")


@pytest.mark.parametrize("values", [
    ["2026-11-28 12:00:01.234000+00:00", "2026-11-28 12:00:01.999999+00:00",
     "2026-11-28 12:00:01.12x000+00:00", "2026-11-28 12:00:01.000000+01:00",
     " 2026-11-28 12:00:01.23400+00:00", "2026-11-28 12:00:01.٣٣٣000+00:00"],
    ["11/28/2026, 12:00:01.234 PM", "11/28/2026, 12:00:01.001 PM", "11/28/2026, 12:00:01.1x1 PM",
     "13/28/2026, 12:00:01.234 PM", "13/28/2026, 12:00:01.235 PM"],
])  # fmt: skip
def test_times_cached_per_second_are_normalized_as_uncached(values: list[str]) -> None:
    from harness.logimport import rows

    rows._SECONDS_CACHE.clear()
    for _ in range(2):  # the second time from the cache
        for value in values:
            try:
                expected = rows._normalize_time(value)
            except RowError as error:
                with pytest.raises(RowError, match="is not a time") as raised:
                    normalize_time(value)
                assert str(raised.value).startswith(str(error).split("'")[0])
                continue
            assert normalize_time(value) == expected
    assert rows._SECONDS_CACHE
