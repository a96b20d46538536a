"""harness.report.destinations: one row per destination, raw TCP named by the recording's DNS
answers, and allowed destinations this machine could not reach marked as such."""

from __future__ import annotations

from harness.events import Event
from harness.report import destinations


def test_raw_tcp_to_a_looked_up_address_is_named_and_unreachable_is_marked() -> None:
    events = [
        Event(ts="1", run="r", kind="dns", host="cache.example.test", port=53,
              answers=["198.18.0.4"], sinkholed=True),
        Event(ts="2", run="r", kind="tcp", dst="198.18.0.4:6379", port=6379, protocol="TCP",
              action="Allow", would="Allow", upstream="unreachable"),
        Event(ts="3", run="r", kind="tcp", dst="192.0.2.8:22", port=22, protocol="TCP",
              action="Deny", would="Deny"),
    ]  # fmt: skip
    rows = {(row.host, row.port): row for row in destinations(events)}
    assert set(rows) == {("cache.example.test", 6379), ("192.0.2.8", 22)}
    assert rows[("cache.example.test", 6379)].unreachable
    assert not rows[("192.0.2.8", 22)].unreachable
    assert rows[("cache.example.test", 6379)].as_dict()["unreachable"] is True
