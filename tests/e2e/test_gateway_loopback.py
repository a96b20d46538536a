"""The real mitmdump with the firewall addon, real clients (curl and Python, unprivileged) and
real HTTPS/HTTP hosts, joined by network namespaces on this machine (lab in conftest.py).

Policy: `allow: [allowed.test, gw.test]`. denied.test lives on the same server as allowed.test;
other.test on a second address, which an SNI spoofer names; gw.test is the gateway itself.
One mitmdump per deny style."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Callable

import pytest
from netlab import DNS_PORT, GATEWAY_UID, MITMDUMP, REPO, Gateway, Lab, run, stop

from harness.events import Event

pytestmark = pytest.mark.e2e

DENY_BODY = "Action: Deny. Reason: No rule matched. Proceeding with default action."
DEFAULT_DENY = "Action: Deny. No rule matched. Proceeding with default action"
CLIENT_TIMEOUT = "3"


def curl(lab: Lab, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    return lab.client("curl", "-sS", "--cacert", str(lab.ca_pem), "--max-time", CLIENT_TIMEOUT,
                      *arguments)  # fmt: skip


def tls_to(host: str) -> Callable[[Event], bool]:
    return lambda event: event.kind == "tls" and event.host == host


def assert_logged(gateway: Gateway, event: Event, expected_azure: str) -> None:
    assert event.azure == expected_azure
    assert expected_azure in gateway.azure_log()


# --- close: Azure's behaviour -------------------------------------------------------------------


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_allowed_https_arrives_byte_for_byte_with_the_servers_own_certificate(
    lab: Lab, gateway: Gateway
) -> None:
    fetched = curl(lab, "--max-time", "10", "https://allowed.test/payload")
    assert fetched.returncode == 0, fetched.stderr
    assert hashlib.sha256(fetched.stdout).hexdigest() == lab.payload_sha256

    # Only the test CA is trusted: had the gateway intercepted TLS, verification would fail.
    python = lab.python_client("fetch", "https://allowed.test/payload", str(lab.ca_pem), "10")
    assert python["error"] is None
    assert (python["status"], python["sha256"]) == (200, lab.payload_sha256)
    handshake = lab.python_client("tls", "allowed.test", lab.server_a, "/whoami", str(lab.ca_pem),
                                  CLIENT_TIMEOUT)  # fmt: skip
    assert handshake["error"] is None
    assert "organizationName=egress e2e test CA" in handshake["issuer"]

    transfers = gateway.wait_for_all(
        lambda event: tls_to("allowed.test")(event) and event.bytes_down > lab.payload_size, 2
    )
    for event in transfers:
        assert (event.action, event.bytes_up > 0, event.dst) == ("Allow", True,
                                                                 f"{lab.server_a}:443")  # fmt: skip
        assert_logged(gateway, event,
                      f"HTTPS request from {event.src} to allowed.test:443. Action: Allow. "
                      "Policy: policy. Rule Collection Group: DefaultApplicationRuleCollectionGroup."
                      " Rule Collection: allow. Rule: allow")  # fmt: skip
        assert event.src is not None and event.src.startswith(f"{lab.gateway_ip}:")


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_denied_https_with_close_ends_in_eof_after_the_client_hello(
    lab: Lab, gateway: Gateway
) -> None:
    started = time.monotonic()
    refused = curl(lab, "https://denied.test/whoami")
    curl_seconds = time.monotonic() - started
    assert refused.returncode == 35
    assert b"SSL_ERROR_SYSCALL" in refused.stderr
    python = lab.python_client("fetch", "https://denied.test/whoami", str(lab.ca_pem),
                               CLIENT_TIMEOUT)  # fmt: skip
    assert python["error"].startswith("SSLEOFError: [SSL: UNEXPECTED_EOF_WHILE_READING]")
    assert curl_seconds < 1.5 and python["seconds"] < 1
    event = gateway.wait_for(tls_to("denied.test"))
    assert (event.action, event.bytes_down) == ("Deny", 0)
    assert event.bytes_up > 0  # the ClientHello
    assert_logged(
        gateway, event, f"HTTPS request from {event.src} to denied.test:443. {DEFAULT_DENY}"
    )


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_sni_spoofing_reaches_the_allowed_host_not_the_named_address(
    lab: Lab, gateway: Gateway
) -> None:
    # Control: the other address does serve its own host, so reaching it would show.
    direct = subprocess.run(
        ["ip", "netns", "exec", lab.server_ns, "curl", "-sS", "--cacert", str(lab.ca_pem),
         "--resolve", f"other.test:443:{lab.server_b}", "https://other.test/whoami"],
        check=False, capture_output=True, timeout=10,
    )  # fmt: skip
    assert direct.stdout == b"b"
    spoofed = curl(
        lab, "--resolve", f"allowed.test:443:{lab.server_b}", "https://allowed.test/whoami"
    )
    assert (spoofed.returncode, spoofed.stdout) == (0, b"a")
    python = lab.python_client("tls", "allowed.test", lab.server_b, "/whoami", str(lab.ca_pem),
                               CLIENT_TIMEOUT)  # fmt: skip
    assert (python["error"], python["text"]) == (None, "a")
    event = gateway.wait_for(lambda event: tls_to("allowed.test")(event)
                             and event.dst == f"{lab.server_b}:443")  # fmt: skip
    assert event.action == "Allow"


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_an_allowed_name_that_resolves_to_the_gateway_is_refused(
    lab: Lab, gateway: Gateway
) -> None:
    # gw.test is allowed, and 127.0.0.1 in the gateway's hosts file: dialling it would reach
    # the gateway's own listeners with the gateway's unfiltered uid.
    refused = curl(lab, "--resolve", f"gw.test:443:{lab.server_a}", "https://gw.test/whoami")
    assert refused.returncode == 35
    event = gateway.wait_for(tls_to("gw.test"))
    assert (event.action, event.reason) == ("Deny", "destination is the gateway itself")
    assert_logged(gateway, event, f"HTTPS request from {event.src} to gw.test:443. {DEFAULT_DENY}")


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_https_without_sni_is_denied_with_azures_reason(lab: Lab, gateway: Gateway) -> None:
    refused = curl(lab, f"https://{lab.server_a}/whoami")  # curl sends no SNI for an address
    assert refused.returncode == 35
    python = lab.python_client("tls", "-", lab.server_a, "/whoami", str(lab.ca_pem), CLIENT_TIMEOUT)
    assert python["error"].startswith("SSLEOFError")
    event = gateway.wait_for(lambda event: event.kind == "tls" and event.host is None)
    assert_logged(gateway, event, f"HTTPS request from {event.src}. Action: Deny. "
                                  "Reason: SNI TLS extension was missing.")  # fmt: skip


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_denied_http_gets_470_with_azures_body(lab: Lab, gateway: Gateway) -> None:
    answered = curl(lab, "-i", "http://denied.test/some/path")
    assert answered.returncode == 0
    head, _, body = answered.stdout.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 470 status code 470"
    assert body == DENY_BODY.encode()
    python = lab.python_client("http", "denied.test", lab.server_a, "/other", CLIENT_TIMEOUT)
    assert (python["status"], python["reason"], python["text"]) == (470, "status code 470",
                                                                    DENY_BODY)  # fmt: skip
    headers = {key.lower(): value for key, value in python["headers"].items()}
    assert headers["content-length"] == "70"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    event = gateway.wait_for(
        lambda event: event.kind == "http" and event.url == "denied.test/some/path"
    )
    assert event.status == 470
    assert_logged(gateway, event, f"HTTP  request from {event.src} to denied.test:80. "
                                  f"Url: denied.test/some/path. {DEFAULT_DENY}")  # fmt: skip


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_allowed_http_goes_to_the_host_headers_name(lab: Lab, gateway: Gateway) -> None:
    spoofed = curl(
        lab, "--resolve", f"allowed.test:80:{lab.server_b}", "http://allowed.test/whoami"
    )
    assert (spoofed.returncode, spoofed.stdout) == (0, b"a")
    python = lab.python_client("http", "allowed.test", lab.server_b, "/whoami", CLIENT_TIMEOUT)
    assert (python["status"], python["text"]) == (200, "a")
    event = gateway.wait_for(lambda event: event.kind == "http" and event.host == "allowed.test")
    assert (event.action, event.status, event.bytes_down) == ("Allow", 200, 1)


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_dns_is_answered_from_the_gateways_hosts_and_logged(lab: Lab, gateway: Gateway) -> None:
    # Any DNS server address is redirected to the gateway's DNS.
    answer = lab.python_client("dns", "allowed.test", lab.server_b, CLIENT_TIMEOUT)
    assert (answer["error"], answer["rcode"], answer["addresses"]) == (None, 0, [lab.server_a])
    event = gateway.wait_for(lambda event: event.kind == "dns" and event.host == "allowed.test")
    assert event.azure is not None
    assert re.fullmatch(rf"DNS Request: {re.escape(event.src or '')} - 16962 A IN allowed\.test\. "
                        r"udp 30 false 1232 NOERROR qr,rd,ra \d+ \d+\.\d{4}s", event.azure)  # fmt: skip


@pytest.mark.parametrize("gateway", ["close"], indirect=True)
def test_raw_tcp_without_a_network_rule_is_denied(lab: Lab, gateway: Gateway) -> None:
    result = lab.python_client("tcp", lab.server_a, "22", CLIENT_TIMEOUT)
    assert (result["error"], result["length"]) == (None, 0)  # closed without an answer
    event = gateway.wait_for(lambda event: event.kind == "tcp")
    assert_logged(
        gateway, event, f"TCP request from {event.src} to {lab.server_a}:22. Action: Deny"
    )


# --- alert and drop -----------------------------------------------------------------------------


@pytest.mark.parametrize("gateway", ["alert"], indirect=True)
def test_denied_https_with_alert_gets_access_denied(lab: Lab, gateway: Gateway) -> None:
    refused = curl(lab, "https://denied.test/whoami")
    assert refused.returncode == 35
    assert b"alert access denied" in refused.stderr
    python = lab.python_client("fetch", "https://denied.test/whoami", str(lab.ca_pem),
                               CLIENT_TIMEOUT)  # fmt: skip
    assert python["error"].startswith("SSLError: [SSL: TLSV1_ALERT_ACCESS_DENIED]")
    allowed = curl(lab, "https://allowed.test/whoami")
    assert (allowed.returncode, allowed.stdout) == (0, b"a")
    event = gateway.wait_for(tls_to("denied.test"))
    assert_logged(
        gateway, event, f"HTTPS request from {event.src} to denied.test:443. {DEFAULT_DENY}"
    )


@pytest.mark.parametrize("gateway", ["drop"], indirect=True)
def test_denied_https_with_drop_leaves_the_client_to_time_out(lab: Lab, gateway: Gateway) -> None:
    started = time.monotonic()
    curl_process = lab.start_client("curl", "-sS", "--cacert", str(lab.ca_pem), "--max-time",
                                    CLIENT_TIMEOUT, "https://denied.test/whoami")  # fmt: skip
    python = lab.python_client("tls", "denied.test", lab.server_a, "/whoami", str(lab.ca_pem),
                               CLIENT_TIMEOUT)  # fmt: skip
    _, curl_stderr = curl_process.communicate(timeout=10)
    curl_seconds = time.monotonic() - started
    assert curl_process.returncode == 28
    assert re.match(rb"curl: \(28\) Connection timed out after 3\d{3} milliseconds", curl_stderr)
    assert re.fullmatch(
        r"TimeoutError: _ssl.c:\d+: The handshake operation timed out", python["error"]
    )
    # The lower bounds are the point (nothing closed the connection early); the upper ones only
    # show the client's own timeout ended it, with room for a loaded machine's slow starts.
    assert 2.9 <= python["seconds"] < 8 and 2.9 <= curl_seconds < 10
    # The gateway holds each connection (egress_drop_seconds=120) only until its client gives
    # up; both events are written then, with the time they were held (counted from the
    # ClientHello, which a loaded gateway reads a few hundred ms after the client's connect).
    events = gateway.wait_for_all(tls_to("denied.test"), count=2, timeout=1.5)
    for event in events:
        assert event.duration_ms is not None and 2000 <= event.duration_ms < 10_000
        assert (event.bytes_up > 0, event.bytes_down) == (True, 0)
        assert_logged(
            gateway, event, f"HTTPS request from {event.src} to denied.test:443. {DEFAULT_DENY}"
        )


# --- a recording that cannot be written ---------------------------------------------------------


def test_a_recording_that_cannot_be_written_stops_the_gateway_with_exit_1(lab: Lab) -> None:
    folder, home = lab.shared / "full-disk", lab.shared / "full-disk-home"
    folder.mkdir()
    home.mkdir()
    os.chown(home, GATEWAY_UID, GATEWAY_UID)  # mitmproxy writes its CA there, not on the tmpfs
    run("mount", "-t", "tmpfs", "-o", f"size=64k,mode=0755,uid={GATEWAY_UID}",
        "egress-e2e-full", str(folder))  # fmt: skip
    process: subprocess.Popen[bytes] | None = None
    try:
        process = subprocess.Popen(
            lab.command_as(GATEWAY_UID, [
                str(MITMDUMP), "-q", "-s", str(REPO / "addons" / "firewall.py"),
                "--mode", f"dns@127.0.0.1:{DNS_PORT + 1}",
                "--set", f"egress_record_dir={folder / 'run'}", "--set", "egress_run_id=full",
            ]),
            env={"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        lab.processes.append(process)
        gateway = Gateway("full", folder / "run", process)
        gateway.wait_for(lambda event: event.reason == "ready", timeout=15)
        with (folder / "filler").open("wb") as filler, pytest.raises(OSError):
            while True:  # until the disk is full
                filler.write(b"\0" * 4096)
                filler.flush()
        answer = lab.python_client("dns", "allowed.test", "127.0.0.1", CLIENT_TIMEOUT,
                                   str(DNS_PORT + 1))  # fmt: skip
        code = process.wait(timeout=10)
        output = process.stdout.read().decode()  # type: ignore[union-attr]
        assert (answer["error"], answer.get("rcode")) == (None, 2), output  # SERVFAIL
        assert code == 1, output
        assert "No space left on device; the gateway stopped" in output
    finally:
        if process is not None:
            stop(process)
        run("umount", "-l", str(folder), check=False)
