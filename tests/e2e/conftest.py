"""The loopback lab for the end-to-end test, without Docker: two network namespaces joined by a
veth pair. The gateway namespace holds the netfilter rules of sandbox.md, the real mitmdump
running the firewall addon as a dedicated uid, and the clients (another uid); the server
namespace holds HTTPS and HTTP test hosts with trustme certificates. Names resolve through
/etc/netns/<gateway ns>/hosts, which `ip netns exec` binds over /etc/hosts.

Everything created here is removed in teardown: processes (killed by pid), namespaces, the
/etc/netns folder and the temporary folder. Missing root or tools fail the tests, never skip."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from netlab import (
    DNS_PORT,
    GATEWAY_UID,
    HERE,
    PYTHON,
    REPO,
    TRANSPARENT_PORT,
    Gateway,
    Lab,
    install_rules,
    interpreter_unhide_script,
    make_certificates,
    remove_if_empty,
    require_environment,
    run,
    stop,
)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_environment()
    suffix = secrets.token_hex(3)
    subnet = f"10.231.{secrets.randbelow(250) + 1}"
    gateway_ns, server_ns = f"egress-gw-{suffix}", f"egress-srv-{suffix}"
    with ExitStack() as cleanup:
        shared = Path(tempfile.mkdtemp(prefix="egress-e2e-"))
        cleanup.callback(shutil.rmtree, shared, ignore_errors=True)
        shared.chmod(0o755)
        for namespace in (gateway_ns, server_ns):
            run("ip", "netns", "add", namespace)
            cleanup.callback(run, "ip", "netns", "del", namespace, check=False)
        etc = Path("/etc/netns") / gateway_ns
        if not etc.parent.exists():
            etc.parent.mkdir()
            cleanup.callback(remove_if_empty, etc.parent)
        etc.mkdir()
        cleanup.callback(shutil.rmtree, etc, ignore_errors=True)
        gateway_ip, server_a, server_b = f"{subnet}.1", f"{subnet}.2", f"{subnet}.3"
        (etc / "hosts").write_text(
            f"127.0.0.1 localhost gw.test\n{server_a} allowed.test denied.test\n"
            f"{server_b} other.test\n"
        )
        # The lab's name server: a client's query to it is redirected to the gateway's DNS
        # (the sinkhole route below reaches it), and the gateway's own query is dropped at once
        # (a rule below), so a name outside the hosts file has no answer here, quickly.
        (etc / "resolv.conf").write_text(f"nameserver {LAB_NAME_SERVER}\n")
        veth_gw, veth_srv = f"egw{suffix}", f"esv{suffix}"
        for argv in (
            ["ip", "link", "add", veth_gw, "type", "veth", "peer", "name", veth_srv],
            ["ip", "link", "set", veth_gw, "netns", gateway_ns],
            ["ip", "link", "set", veth_srv, "netns", server_ns],
            ["ip", "-n", gateway_ns, "addr", "add", f"{gateway_ip}/29", "dev", veth_gw],
            ["ip", "-n", server_ns, "addr", "add", f"{server_a}/29", "dev", veth_srv],
            ["ip", "-n", server_ns, "addr", "add", f"{server_b}/29", "dev", veth_srv],
            ["ip", "-n", gateway_ns, "link", "set", "lo", "up"],
            ["ip", "-n", server_ns, "link", "set", "lo", "up"],
            ["ip", "-n", gateway_ns, "link", "set", veth_gw, "up"],
            ["ip", "-n", server_ns, "link", "set", veth_srv, "up"],
            # A route to the DNS sinkhole's range, as Docker's default route gives the gateway:
            # without one a connect() to a sinkhole address fails before netfilter sees it.
            ["ip", "-n", gateway_ns, "route", "add", "198.18.0.0/15", "dev", veth_gw],
        ):
            run(*argv)
        install_rules(gateway_ns)
        run("ip", "netns", "exec", gateway_ns, "iptables", "-w", "-I", "OUTPUT", "1", "-m",
            "owner", "--uid-owner", str(GATEWAY_UID), "-d", LAB_NAME_SERVER, "-j", "DROP")

        ca_pem = make_certificates(shared)
        payload = secrets.token_bytes(1024 * 1024)
        (shared / "payload.bin").write_bytes(payload)
        shutil.copy(HERE / "client.py", shared / "client.py")
        for path in shared.iterdir():
            path.chmod(0o644)

        lab = Lab(suffix, gateway_ns, server_ns, gateway_ip, server_a, server_b, shared, ca_pem,
                  hashlib.sha256(payload).hexdigest(), len(payload),
                  interpreter_unhide_script(shared))  # fmt: skip
        cleanup.callback(lambda: [stop(process) for process in lab.processes])
        servers = subprocess.Popen(
            ["ip", "netns", "exec", server_ns, str(PYTHON), str(HERE / "servers.py"),
             str(shared / "server.pem"), str(shared / "server.key"), str(shared / "payload.bin"),
             f"a={server_a}", f"b={server_b}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lab.processes.append(servers)
        assert servers.stdout is not None
        if servers.stdout.readline().strip() != "ready":
            stop(servers)
            pytest.fail(f"the test servers did not start: {servers.stderr.read()}", pytrace=False)  # type: ignore[union-attr]
        yield lab


# In the DNS sinkhole's range, which the lab routes (harness.gateway.sinkhole hands out addresses
# from its start).
LAB_NAME_SERVER = "198.19.255.254"

# gw.test is allowed but names the gateway itself (127.0.0.1 in the gateway's hosts file).
POLICY = "allow: [allowed.test, gw.test]\n"


@pytest.fixture(scope="module")
def gateway(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """The gateway's lean master with the firewall addon, one per deny style (`indirect` parameter:
    `STYLE` or `STYLE/DNS`, e.g. `close/resolve`), behind the module's GATEWAY_POLICY if it
    has one, else POLICY."""
    style, _, dns_mode = str(request.param).partition("/")
    dns_mode = dns_mode or "azure"
    base = lab.shared / f"gateway-{style}-{dns_mode}"
    home, record_dir = base / "home", base / "run"
    for folder in (base, home, record_dir):
        folder.mkdir()
        os.chown(folder, GATEWAY_UID, GATEWAY_UID)
    (base / "policy.yaml").write_text(getattr(request.module, "GATEWAY_POLICY", POLICY))
    (base / "policy.yaml").chmod(0o644)
    arguments = [
        # The gateway container's own master (and with it the fast path), not mitmdump.
        str(PYTHON), "-m", "harness.gateway.master", "-s", str(REPO / "addons" / "firewall.py"),
        "--mode", f"transparent@127.0.0.1:{TRANSPARENT_PORT}", "--mode", f"dns@127.0.0.1:{DNS_PORT}",
        "--set", "connection_strategy=lazy",
        "--set", f"egress_policy={base / 'policy.yaml'}",
        "--set", f"egress_record_dir={record_dir}",
        "--set", f"egress_https_deny={style}",
        "--set", f"egress_run_id=e2e-{style}",
        "--set", f"egress_dns={dns_mode}",
        # Under the clients' 3 s: names outside the hosts file get no answer in the lab.
        "--set", "egress_dns_ms=1000",
        # Far above the clients' 3 s: a dropped connection must end when the client gives up.
        "--set", "egress_drop_seconds=120",
    ]  # fmt: skip
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                   "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}  # fmt: skip
    log = (base / "mitmdump.log").open("w")
    process = subprocess.Popen(lab.command_as(GATEWAY_UID, arguments), env=environment,
                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    lab.processes.append(process)
    gateway = Gateway(style, record_dir, process)
    try:
        deadline = time.monotonic() + 20
        while not any(event.reason == "ready" for event in gateway.events()):
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                pytest.fail(f"mitmdump ({style}) did not become ready:\n"
                            f"{(base / 'mitmdump.log').read_text()}", pytrace=False)  # fmt: skip
            time.sleep(0.05)
        yield gateway
    finally:
        stop(process)
        log.close()
