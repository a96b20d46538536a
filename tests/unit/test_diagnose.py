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


# --- every proposed rule loads ----------------------------------------------------------------


def _loads(fix: str) -> None:
    from harness.policy.load import policy_from_mapping

    policy_from_mapping({"name": "fix", "rule_collection_groups": [{
        "name": "g", "priority": 100, "rule_collections": [{
            "name": "c", "priority": 100, "action": "Allow", "rules": yaml.safe_load(fix)}]}]},
        "fix.yaml")  # fmt: skip


@pytest.mark.parametrize(
    "event",
    [
        Event(ts="t", run="r", kind="tls", dst="192.0.2.9:443", host=None, port=443,
              action="Deny", would="Deny"),
        Event(ts="t", run="r", kind="tls", dst="192.0.2.9:8443", host="a.example.test", port=8443,
              action="Deny", would="Deny"),
        Event(ts="t", run="r", kind="http", dst=None, host="b.example.test", port=80,
              action="Deny", would="Deny"),
        Event(ts="t", run="r", kind="udp", dst="192.0.2.9:123", port=123, action="Deny",
              would="Deny"),
        Event(ts="t", run="r", kind="tcp", dst="[2001:db8::5]:22", port=22, action="Deny",
              would="Deny"),
    ],
    ids=["https-without-sni", "https-other-port", "http-no-dst", "udp", "tcp-ipv6"],
)  # fmt: skip
def test_the_proposed_rule_always_loads(event: Event) -> None:
    fix = diagnose([event], "").fix
    assert fix is not None
    _loads(fix)


def test_https_without_sni_gets_a_tcp_network_rule_not_tls() -> None:
    event = Event(ts="t", run="r", kind="tls", dst="192.0.2.9:443", host=None, port=443,
                  action="Deny", would="Deny")  # fmt: skip
    [rule] = yaml.safe_load(diagnose([event], "").fix)
    assert (rule["rule_type"], rule["ip_protocols"]) == ("NetworkRule", ["TCP"])


# --- unreachable, unresolved and audit ----------------------------------------------------------


def unreachable(host: str, ts: str) -> Event:
    event = allowed(host, ts)
    event.upstream = "unreachable"
    return event


def lookup(name: str, ts: str, rcode: str = "NOERROR", *answers: str, sinkholed=False) -> Event:
    return Event(ts=ts, run="r", kind="dns", host=name, port=53, protocol="DNS", action="Allow",
                 would="Allow", reason=rcode, answers=list(answers), sinkholed=sinkholed)  # fmt: skip


def test_the_host_the_client_error_names_beats_an_earlier_denial() -> None:
    events = [denied("telemetry.example.test", "2026-01-01T00:00:00.000Z"),
              unreachable("binaries.example.test", "2026-01-01T00:00:01.000Z")]  # fmt: skip
    output = (
        "npm error request to https://binaries.example.test/tool.tgz failed, reason: socket hang up"
    )
    diagnosis = diagnose(events, output)
    assert (diagnosis.culprit, diagnosis.cause) == ("binaries.example.test:443", "unreachable")
    assert diagnosis.unreachable == ("binaries.example.test:443",)
    assert diagnosis.fix is None  # it was allowed: no rule helps
    assert "cannot be reached from this machine" in diagnosis.render()


def test_an_unreachable_destination_alone_is_never_not_the_firewalls() -> None:
    diagnosis = diagnose([unreachable("binaries.example.test", "t")], "exit status 1")
    assert diagnosis.culprit == "binaries.example.test:443"
    assert "not the firewall" not in diagnosis.render()
    assert diagnosis.as_dict()["unreachable"] == ["binaries.example.test:443"]


@pytest.mark.parametrize(
    ("line", "client"),
    [
        ("npm error getaddrinfo ENOTFOUND binaries.example.test", "Node.js (npm, node)"),
        ("curl: (6) Could not resolve host: binaries.example.test", "curl"),
        (("HTTPSConnectionPool(host='binaries.example.test', port=443): Max retries exceeded "
          "(Caused by NameResolutionError: Failed to resolve: [Errno -2] Name or service not known)"),
         "the system resolver"),
    ],
)  # fmt: skip
def test_a_name_that_did_not_resolve_is_the_culprit_in_resolve_mode(line: str, client: str) -> None:
    # firewall.dns: resolve, the registry allowed: the firewall saw only the failed lookup.
    events = [allowed("registry.example.test", "2026-01-01T00:00:00.000Z"),
              lookup("binaries.example.test", "2026-01-01T00:00:01.000Z", "NXDOMAIN")]  # fmt: skip
    diagnosis = diagnose(events, f"downloading the tool\n{line}")
    assert (diagnosis.culprit, diagnosis.cause, diagnosis.client) == (
        "binaries.example.test", "not resolved", client)  # fmt: skip
    assert diagnosis.not_resolved == ("binaries.example.test",)
    assert "not the firewall" not in diagnosis.render()


def test_an_error_naming_a_host_the_recording_never_saw_is_still_the_culprit() -> None:
    diagnosis = diagnose([allowed("registry.example.test", "t")],
                         "Error: getaddrinfo ENOTFOUND elsewhere.example.test")  # fmt: skip
    assert (diagnosis.culprit, diagnosis.cause) == ("elsewhere.example.test", "not resolved")


def test_audit_mode_speaks_of_would_be_denied() -> None:
    event = Event(ts="t", run="r", kind="tls", host="files.example.test", port=443,
                  action="Allow", would="Deny")  # fmt: skip
    diagnosis = diagnose([event], "")
    assert diagnosis.cause == "would be denied"
    text = diagnosis.render()
    assert "Would be denied, in order: files.example.test:443" in text
    assert "files.example.test:443 would be denied" in text


def test_names_looked_up_but_never_connected_to_are_listed() -> None:
    events = [lookup("registry.example.test", "1", "NOERROR", "192.0.2.1"),
              allowed("registry.example.test", "2"),
              lookup("mirror.example.test", "3", "NOERROR", "198.18.0.1", sinkholed=True),
              denied("files.example.test", "4")]  # fmt: skip
    diagnosis = diagnose(events, "")
    assert diagnosis.looked_up_only == ("mirror.example.test",)
    assert "Looked up but never connected to: mirror.example.test" in diagnosis.render()


def test_in_audit_mode_an_unreachable_host_beats_one_that_only_would_be_denied() -> None:
    # The index would be denied but was let through; the download that failed was unreachable.
    would = Event(ts="1", run="r", kind="tls", host="index.example.test", port=443,
                  action="Allow", would="Deny")  # fmt: skip
    far = Event(ts="2", run="r", kind="tls", host="zlib.example.test", port=443, action="Allow",
                would="Deny", upstream="unreachable")  # fmt: skip
    diagnosis = diagnose([would, far], "ssl.SSLEOFError: EOF occurred in violation of protocol")
    assert diagnosis.culprit == "zlib.example.test:443"
