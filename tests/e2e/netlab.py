"""The loopback lab's parts: namespaces, the unprivileged command wrapper, the gateway
handle. Fixtures using them are in conftest.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.events import Event
from harness.recording import EVENTS_FILE, read_events

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
MITMDUMP = REPO / ".venv" / "bin" / "mitmdump"
PYTHON = REPO / ".venv" / "bin" / "python"
GATEWAY_UID = 64666
CLIENT_UID = 64667
TRANSPARENT_PORT = 8080
DNS_PORT = 5353
REQUIRED_TOOLS = ("ip", "iptables", "ip6tables", "setpriv", "curl")


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def require_environment() -> None:
    if os.geteuid() != 0:
        pytest.fail("the e2e tests create network namespaces and need root", pytrace=False)
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the e2e tests need {', '.join(missing)} on PATH (Debian: iproute2, "
                    "iptables, util-linux, curl)", pytrace=False)  # fmt: skip
    if not MITMDUMP.exists():
        pytest.fail(f"{MITMDUMP} is missing: create the venv as the README says", pytrace=False)


def interpreter_unhide_script(scratch: Path) -> str:
    """Shell lines that make this Python reachable for an unprivileged uid. A Python installed
    under a private home (pyenv under /root, mode 0700) is bound back in place below a 0755
    tmpfs laid over that home, inside the process's own mount namespace only (`ip netns exec`
    gives each process one). `scratch` holds a transient mount point per process."""
    prefix = Path(os.path.realpath(sys.base_prefix))
    blocker = next((parent for parent in reversed(prefix.parents)
                    if not parent.stat().st_mode & stat.S_IXOTH), None)  # fmt: skip
    if blocker is None:
        return ""
    keep = prefix.relative_to(blocker).parts[0]
    holder = f"{scratch}/unhide-$$"
    return (
        f"mkdir -p {holder} && mount --bind {blocker / keep} {holder} && "
        f"mount -t tmpfs -o mode=0755,size=1m egress-e2e {blocker} && "
        f"mkdir -p {blocker / keep} && mount --move {holder} {blocker / keep} && rmdir {holder} && "
    )


@dataclass
class Lab:
    suffix: str
    gateway_ns: str
    server_ns: str
    gateway_ip: str
    server_a: str  # allowed.test and denied.test
    server_b: str  # other.test: the address an SNI spoofer names
    shared: Path  # world-readable: the CA, the payload, the scripts' input
    ca_pem: Path
    payload_sha256: str
    payload_size: int
    unhide: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def command_as(self, uid: int, argv: list[str], namespace: str | None = None) -> list[str]:
        """argv run as `uid` (no capabilities, no new privileges) inside a namespace."""
        script = (
            self.unhide + f"exec setpriv --reuid={uid} --regid={uid} --clear-groups "
            "--inh-caps=-all --bounding-set=-all --no-new-privs -- \"$@\""
        )  # fmt: skip
        return ["ip", "netns", "exec", namespace or self.gateway_ns, "sh", "-c", script, "sh",
                *argv]  # fmt: skip

    def client(self, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.command_as(CLIENT_UID, list(argv)), check=False,
                              capture_output=True,
                              timeout=timeout)  # fmt: skip

    def start_client(self, *argv: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(self.command_as(CLIENT_UID, list(argv)),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        self.processes.append(process)
        return process

    def python_client(self, *argv: str, timeout: float = 20) -> dict:
        completed = self.client(str(PYTHON), str(self.shared / "client.py"), *argv,
                                timeout=timeout)  # fmt: skip
        assert completed.returncode == 0, completed.stderr.decode()
        return json.loads(completed.stdout)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # another lab (a parallel run) still uses it


def install_rules(namespace: str) -> None:
    """The netfilter rules of docker/gateway/entrypoint.sh, in the gateway namespace."""
    uid = str(GATEWAY_UID)
    rules = [
        ["iptables", "-w", "-t", "nat", "-N", "FW_REDIRECT"],
        ["iptables", "-w", "-t", "nat", "-A", "FW_REDIRECT", "-m", "owner", "--uid-owner", uid,
         "-j", "RETURN"],
        ["iptables", "-w", "-t", "nat", "-A", "FW_REDIRECT", "-p", "udp", "--dport", "53", "-j",
         "REDIRECT", "--to-ports", str(DNS_PORT)],
        ["iptables", "-w", "-t", "nat", "-A", "FW_REDIRECT", "-p", "tcp", "--dport", "53", "-j",
         "REDIRECT", "--to-ports", str(DNS_PORT)],
        ["iptables", "-w", "-t", "nat", "-A", "FW_REDIRECT", "-o", "lo", "-j", "RETURN"],
        ["iptables", "-w", "-t", "nat", "-A", "FW_REDIRECT", "-p", "tcp", "-j", "REDIRECT",
         "--to-ports", str(TRANSPARENT_PORT)],
        ["iptables", "-w", "-t", "nat", "-I", "OUTPUT", "1", "-j", "FW_REDIRECT"],
        ["iptables", "-w", "-N", "FW_EGRESS"],
        ["iptables", "-w", "-A", "FW_EGRESS", "-o", "lo", "-j", "ACCEPT"],
        ["iptables", "-w", "-A", "FW_EGRESS", "-d", "127.0.0.1/32", "-m", "conntrack",
         "--ctstate", "DNAT", "-j", "ACCEPT"],
        ["iptables", "-w", "-A", "FW_EGRESS", "-m", "owner", "--uid-owner", uid, "-j", "ACCEPT"],
        ["iptables", "-w", "-A", "FW_EGRESS", "-p", "tcp", "-m", "conntrack", "--ctstate",
         "ESTABLISHED", "--ctdir", "REPLY", "-j", "ACCEPT"],
        ["iptables", "-w", "-A", "FW_EGRESS", "-j", "DROP"],
        ["iptables", "-w", "-I", "OUTPUT", "1", "-j", "FW_EGRESS"],
        ["ip6tables", "-w", "-N", "FW_EGRESS"],
        ["ip6tables", "-w", "-A", "FW_EGRESS", "-o", "lo", "-j", "ACCEPT"],
        ["ip6tables", "-w", "-A", "FW_EGRESS", "-m", "owner", "--uid-owner", uid, "-j", "ACCEPT"],
        ["ip6tables", "-w", "-A", "FW_EGRESS", "-p", "tcp", "-m", "conntrack", "--ctstate",
         "ESTABLISHED", "--ctdir", "REPLY", "-j", "ACCEPT"],
        ["ip6tables", "-w", "-A", "FW_EGRESS", "-j", "DROP"],
        ["ip6tables", "-w", "-I", "OUTPUT", "1", "-j", "FW_EGRESS"],
    ]  # fmt: skip
    for rule in rules:
        completed = run("ip", "netns", "exec", namespace, *rule, check=False)
        if completed.returncode != 0:
            pytest.fail(f"firewall rule failed: {' '.join(rule)}: {completed.stderr.strip()}",
                        pytrace=False)  # fmt: skip


def make_certificates(shared: Path) -> Path:
    import trustme

    authority = trustme.CA(organization_name="egress e2e test CA")
    leaf = authority.issue_cert("allowed.test", "denied.test", "other.test")
    authority.cert_pem.write_to_path(str(shared / "ca.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(shared / "server.pem"))
    leaf.private_key_pem.write_to_path(str(shared / "server.key"))
    return shared / "ca.pem"


@dataclass
class Gateway:
    style: str
    record_dir: Path
    process: subprocess.Popen

    def events(self) -> list[Event]:
        if not (self.record_dir / EVENTS_FILE).exists():
            return []
        return read_events(self.record_dir)

    def wait_for_all(self, matches: Callable[[Event], bool], count: int,
                     timeout: float = 8) -> list[Event]:  # fmt: skip
        """The first `count` matching events, once written: an event is written when its
        connection ends, a little after the client has seen the outcome."""
        deadline = time.monotonic() + timeout
        while True:
            found = [event for event in self.events() if matches(event)]
            if len(found) >= count:
                return found[:count]
            if time.monotonic() > deadline:
                lines = "\n".join(event.to_json() for event in self.events())
                raise AssertionError(f"{len(found)} of {count} events within {timeout} s:\n{lines}")
            time.sleep(0.05)

    def wait_for(self, matches: Callable[[Event], bool], timeout: float = 8) -> Event:
        return self.wait_for_all(matches, 1, timeout)[0]

    def azure_log(self) -> list[str]:
        return (self.record_dir / "azure.log").read_text().splitlines()
