from __future__ import annotations

import pytest
import yaml

from harness.diagnose import diagnose
from harness.events import Event


def denied(host: str, ts: str, kind: str = "tls", port: int = 443) -> Event:
    return Event(ts=ts, run="r", kind=kind, host=host, port=port, action="Deny", would="Deny")


def allowed(host: str, ts: str) -> Event:
    return Event(ts=ts, run="r", kind="tls", host=host, port=443, action="Allow", would="Allow")


INDEX_THEN_FILES = [
    allowed("index.example.test", "2026-01-01T00:00:00.000Z"),
    denied("telemetry.example.test", "2026-01-01T00:00:00.500Z"),
    denied("files.example.test", "2026-01-01T00:00:01.000Z"),
]


@pytest.mark.parametrize(
    ("output", "client"),
    [
        (("WARNING: Retrying ... SSLEOFError(8, 'EOF occurred')': /packages/flask.whl\n"
         "ERROR: Could not install packages due to an OSError: HTTPSConnectionPool("
         "host='files.example.test', port=443): Max retries exceeded"), "Python (pip, requests, urllib)"),
        ("npm error code ECONNRESET\nnpm error network request to https://files.example.test/x.tgz failed",
         "npm"),
        (("Err:1 http://files.example.test/debian trixie/main amd64 tree amd64 2.1.1-2\n"
         "  470  status code 470 [IP: 192.0.2.1 80]"), "apt"),
        ("curl: (35) Recv failure: Connection reset by peer files.example.test", "curl"),
        ("error NU1301: Unable to load the service index for source https://files.example.test/v3/index.json",
         "nuget"),
    ],
)  # fmt: skip
def test_the_host_named_in_the_client_error_is_the_culprit(output: str, client: str) -> None:
    diagnosis = diagnose(INDEX_THEN_FILES, output)
    assert diagnosis.denied == ("telemetry.example.test:443", "files.example.test:443")
    assert diagnosis.culprit == "files.example.test:443"
    assert diagnosis.client == client


def test_without_a_matching_error_line_the_first_denial_is_blamed() -> None:
    diagnosis = diagnose(INDEX_THEN_FILES, "something else went wrong")
    assert diagnosis.culprit == "telemetry.example.test:443"
    assert diagnosis.evidence is None


def test_a_name_inside_a_longer_name_is_not_a_match() -> None:
    events = [denied("example.test", "2026-01-01T00:00:00.000Z"),
              denied("cdn.example.test", "2026-01-01T00:00:01.000Z")]  # fmt: skip
    diagnosis = diagnose(events, "SSLError for host='cdn.example.test'")
    assert diagnosis.culprit == "cdn.example.test:443"


def test_the_fix_is_a_rule_in_the_policy_yaml_form() -> None:
    diagnosis = diagnose(
        [denied("files.example.test", "t", kind="http", port=80)], "470  status code 470"
    )
    assert yaml.safe_load(diagnosis.fix) == [{
        "rule_type": "ApplicationRule", "name": "allow-files.example.test",
        "source_addresses": ["*"], "protocols": ["Http:80"], "target_fqdns": ["files.example.test"],
    }]  # fmt: skip


def test_raw_tcp_gets_a_network_rule() -> None:
    event = Event(
        ts="t", run="r", kind="tcp", dst="192.0.2.7:5432", port=5432, action="Deny", would="Deny"
    )
    rule = yaml.safe_load(diagnose([event], "").fix)[0]
    assert rule["rule_type"] == "NetworkRule"
    assert rule["destination_addresses"] == ["192.0.2.7"] and rule["destination_ports"] == ["5432"]


def test_nothing_denied_says_the_firewall_is_not_the_cause() -> None:
    diagnosis = diagnose([allowed("index.example.test", "t")], "Traceback: ZeroDivisionError")
    assert diagnosis.culprit is None
    assert "not the firewall" in diagnosis.render()


def test_apt_fetch_errors_are_apt_not_uv() -> None:
    output = (
        "E: Failed to fetch http://files.example.test/debian/pool/t/tree.deb  470  status code 470"
    )
    diagnosis = diagnose([denied("files.example.test", "t", kind="http", port=80)], output)
    assert diagnosis.client == "apt"
