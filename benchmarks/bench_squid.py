"""Connection cost of the gateway against Squid, side by side in one lab on this machine.

Two network namespaces joined by a veth pair: `cli` holds the client (ApacheBench, as its own
uid) and the proxy under test; `srv` holds nginx with HTTPS on a trustme certificate for
`allowed.test` and `denied.test`. The client's TCP is redirected (nat OUTPUT, by its uid) to the
proxy, which decides on the SNI without terminating TLS:

- Squid 5.7 (Debian's squid-openssl): `https_port ... intercept ssl-bump`, `ssl_bump peek` at
  step 1, `splice` for the allowed SNI, `terminate` for the rest;
- the gateway: the firewall addon on its lean master (harness/gateway/master.py), transparent
  mode, the policy `allow: [allowed.test]`, recording on;
- `nofast`: the same gateway with `egress_fast_path=false`, so mitmproxy sets up every
  connection (harness/gateway/fastpath.py is what the `gateway` row adds);
- `layers`: the gateway with neither the fast path nor the direct relay
  (`egress_direct_relay=false`), so mitmproxy's layers relay every chunk;
- mitmdump with the same addon (the gateway before the lean master), for reference;
- with `--before DIR`: a row `before`, the lean master run from DIR's harness/ (e.g. an export of
  an older commit: `git archive <commit> harness addons | tar -x -C DIR`), to compare versions
  side by side in one lab.

For each proxy and each concurrency (1, 32, 128) ApacheBench opens `--connections` new HTTPS
connections (one GET each, no keep-alive); printed are connections/s, the proxy's CPU seconds
(user+system, all its processes) per 1,000 connections, and the ratios to Squid. Then the time a
denied connection takes to be closed (median of 20) and a 256 MiB download's MB/s with the
proxy's CPU seconds per GiB relayed. Targets: at
least 0.5 of Squid's rate, at most 2x its CPU per connection. Debian's squid-openssl, nginx-light
and apache2-utils are installed with apt when missing. Needs root; everything it creates
(namespaces, processes, /etc/netns/<ns>, a temporary folder) is removed at the end.

    .venv/bin/python benchmarks/bench_squid.py [--connections 2000] [--only squid,gateway,nofast]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
MITMDUMP = REPO / ".venv" / "bin" / "mitmdump"
CLIENT_UID = 64667
PROXY_PORT = 3129
CONCURRENCY = tuple(int(c) for c in os.environ.get("EGRESS_BENCH_CONCURRENCY", "1,32,128").split(","))
PROFILE_TO = os.environ.get("EGRESS_BENCH_PROFILE", "")  # a cProfile output file for the gateway
PROFILED = os.environ.get("EGRESS_BENCH_PROFILE_ROW", "gateway").split(",")  # which row's
PACKAGES = {"squid": "squid-openssl", "nginx": "nginx-light", "ab": "apache2-utils"}
BIG_MIB = 256
# The client side runs as an unprivileged uid: the system Python, not a venv under a private home.
CLIENT_PYTHON = "/usr/bin/python3"


@dataclass
class Lab:
    cli: str
    srv: str
    server_ip: str
    folder: Path


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


def ensure_packages() -> None:
    missing = [package for tool, package in PACKAGES.items() if shutil.which(tool) is None]
    if shutil.which("squid") and "--with-openssl" not in sh("squid", "-v").stdout:
        missing.append("squid-openssl")  # Debian's plain squid has no ssl-bump
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                       check=True, env=env, stdout=subprocess.DEVNULL)  # fmt: skip


@contextmanager
def lab() -> Iterator[Lab]:
    suffix = secrets.token_hex(3)
    subnet = f"10.232.{secrets.randbelow(250) + 1}"
    cli, srv = f"egress-bcli-{suffix}", f"egress-bsrv-{suffix}"
    with ExitStack() as cleanup:
        folder = Path(tempfile.mkdtemp(prefix="egress-bench-squid-"))
        cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
        folder.chmod(0o755)
        for namespace in (cli, srv):
            sh("ip", "netns", "add", namespace)
            cleanup.callback(sh, "ip", "netns", "del", namespace, check=False)
        etc = Path("/etc/netns") / cli
        etc.mkdir(parents=True)
        cleanup.callback(shutil.rmtree, etc, ignore_errors=True)
        client_ip, server_ip = f"{subnet}.1", f"{subnet}.2"
        (etc / "hosts").write_text(
            f"127.0.0.1 localhost\n{server_ip} allowed.test denied.test\n"
        )
        veth_cli, veth_srv = f"ebc{suffix}", f"ebs{suffix}"
        for argv in (
            ["ip", "link", "add", veth_cli, "type", "veth", "peer", "name", veth_srv],
            ["ip", "link", "set", veth_cli, "netns", cli],
            ["ip", "link", "set", veth_srv, "netns", srv],
            ["ip", "-n", cli, "addr", "add", f"{client_ip}/30", "dev", veth_cli],
            ["ip", "-n", srv, "addr", "add", f"{server_ip}/30", "dev", veth_srv],
            ["ip", "-n", cli, "link", "set", "lo", "up"],
            ["ip", "-n", srv, "link", "set", "lo", "up"],
            ["ip", "-n", cli, "link", "set", veth_cli, "up"],
            ["ip", "-n", srv, "link", "set", veth_srv, "up"],
        ):
            sh(*argv)
        # Only the client's TCP goes to the proxy; the proxy's own connections leave directly.
        sh("ip", "netns", "exec", cli, "iptables", "-w", "-t", "nat", "-A", "OUTPUT", "-m",
           "owner", "--uid-owner", str(CLIENT_UID), "-p", "tcp", "-j", "REDIRECT",
           "--to-ports", str(PROXY_PORT))  # fmt: skip
        _certificates(folder)
        the_lab = Lab(cli, srv, server_ip, folder)
        nginx = _start_nginx(the_lab)
        cleanup.callback(_stop, nginx)
        yield the_lab


def _certificates(folder: Path) -> None:
    import trustme

    authority = trustme.CA(organization_name="egress bench CA")
    leaf = authority.issue_cert("allowed.test", "denied.test")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    authority.cert_pem.write_to_path(str(folder / "ca.pem"))
    # Squid's https_port needs a certificate of its own even when it only peeks and splices.
    proxy = authority.issue_cert("proxy.test")
    proxy.private_key_and_cert_chain_pem.write_to_path(str(folder / "proxy.pem"))
    for path in folder.iterdir():
        path.chmod(0o644)
    (folder / "big.bin").write_bytes(b"\0")
    with open(folder / "big.bin", "r+b") as big:
        big.truncate(BIG_MIB << 20)


def _start_nginx(lab: Lab) -> subprocess.Popen:
    root = lab.folder / "nginx"
    root.mkdir()
    (root / "www").mkdir()
    (root / "www" / "index.html").write_text("ok\n")
    os.link(lab.folder / "big.bin", root / "www" / "big.bin")
    (root / "nginx.conf").write_text(f"""
daemon off; master_process off; worker_processes 1; pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_timeout 0; sendfile on;
  client_body_temp_path {root}; proxy_temp_path {root}; fastcgi_temp_path {root};
  uwsgi_temp_path {root}; scgi_temp_path {root};
  server {{
    listen {lab.server_ip}:443 ssl backlog=4096; server_name allowed.test denied.test;
    ssl_certificate {lab.folder}/server.pem; ssl_certificate_key {lab.folder}/server.pem;
    root {root}/www;
  }}
}}
""")
    process = subprocess.Popen(["ip", "netns", "exec", lab.srv, "nginx", "-c", str(root / "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _wait_port(lab.srv, lab.server_ip, 443, process)
    return process


def _wait_port(namespace: str, host: str, port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    probe = f"import socket; socket.create_connection(('{host}', {port}), timeout=1).close()"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args[3]} stopped: {process.stderr.read() if process.stderr else ''}")
        if sh("ip", "netns", "exec", namespace, sys.executable, "-c", probe, check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {host}:{port} in {namespace}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --- the proxies -------------------------------------------------------------------------------


@contextmanager
def squid(lab: Lab) -> Iterator[subprocess.Popen]:
    root = lab.folder / "squid"
    root.mkdir()
    shutil.chown(root, "proxy", "proxy")
    (root / "squid.conf").write_text(f"""
http_port 127.0.0.1:3128
https_port {PROXY_PORT} intercept ssl-bump tls-cert={lab.folder}/proxy.pem generate-host-certificates=off
acl step1 at_step SslBump1
acl allowed_sni ssl::server_name allowed.test
ssl_bump peek step1
ssl_bump splice allowed_sni
ssl_bump terminate all
http_access allow all
cache deny all
access_log none
cache_store_log none
logfile_rotate 0
cache_log {root}/cache.log
pid_filename {root}/squid.pid
coredump_dir {root}
shutdown_lifetime 1 seconds
workers 1
""")
    process = subprocess.Popen(["ip", "netns", "exec", lab.cli, "squid", "-N", "-f", str(root / "squid.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        _wait_port(lab.cli, "127.0.0.1", PROXY_PORT, process)
        yield process
    finally:
        _stop(process)


@contextmanager
def gateway(lab: Lab, master: str, code: Path = REPO) -> Iterator[subprocess.Popen]:
    root = lab.folder / master
    (root / "run").mkdir(parents=True)
    (root / "policy.yaml").write_text("allow: [allowed.test]\n")
    common = ["--mode", f"transparent@127.0.0.1:{PROXY_PORT}", "--set", "connection_strategy=lazy",
              "--set", f"egress_policy={root / 'policy.yaml'}",
              "--set", f"egress_record_dir={root / 'run'}", "--set", "egress_run_id=bench"]  # fmt: skip
    if master in ("nofast", "layers"):
        common += ["--set", "egress_fast_path=false"]
    if master == "layers":
        common += ["--set", "egress_direct_relay=false"]
    if master == "mitmdump":
        argv = [str(MITMDUMP), "-q", "-s", str(code / "addons" / "firewall.py"), *common]
    elif PROFILE_TO and master in PROFILED:
        argv = [str(PYTHON), "-m", "cProfile", "-o", PROFILE_TO, "-m", "harness.gateway.master",
                *common]  # fmt: skip
    else:
        argv = [str(PYTHON), "-m", "harness.gateway.master", *common]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root),
           "PYTHONPATH": str(code)}  # fmt: skip
    log = (root / "gateway.log").open("w")
    # Started in its own folder: `python -m` puts the working folder first on sys.path, which
    # would import this checkout's harness/ ahead of PYTHONPATH's (the `before` row's).
    process = subprocess.Popen(["ip", "netns", "exec", lab.cli, *argv], env=env, stdout=log,
                               stderr=subprocess.STDOUT, cwd=root)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while b'"ready"' not in _read(root / "run" / "events.jsonl"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{master} did not start:\n{(root / 'gateway.log').read_text()}")
            time.sleep(0.05)
        yield process
    finally:
        _stop(process)
        log.close()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def cpu_seconds(pid: int) -> float:
    """User+system seconds of `pid` and its descendants (threads are in their process)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending.extend(int(child) for child in children)
    return total


# --- the measurements ---------------------------------------------------------------------------


def as_client(lab: Lab, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", lab.cli, "setpriv", f"--reuid={CLIENT_UID}",
            f"--regid={CLIENT_UID}", "--clear-groups", "--", *argv]  # fmt: skip


def connection_rate(lab: Lab, proxy_pid: int, concurrency: int, count: int) -> tuple[float, float]:
    """(connections/s, CPU-s of the proxy per 1,000 connections) for `count` new connections."""
    before = cpu_seconds(proxy_pid)
    completed = sh(*as_client(lab, "ab", "-q", "-r", "-n", str(count), "-c", str(concurrency),
                              "https://allowed.test/index.html"), check=False, timeout=600)  # fmt: skip
    used = cpu_seconds(proxy_pid) - before
    rate = re.search(r"Requests per second:\s+([\d.]+)", completed.stdout)
    failed = re.search(r"Failed requests:\s+(\d+)", completed.stdout)
    if rate is None or (failed and int(failed.group(1)) > count // 100):
        raise SystemExit(f"ab failed (concurrency {concurrency}):\n{completed.stdout[-1500:]}"
                         f"\n{completed.stderr[-800:]}")  # fmt: skip
    return float(rate.group(1)), used * 1000 / count


CLOSE_PROBE = """
import socket, ssl, sys, time, statistics
context = ssl.create_default_context(cafile=sys.argv[1])
times = []
for _ in range(20):
    started = time.perf_counter()
    try:
        with socket.create_connection(("denied.test", 443), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="denied.test"):
                pass
    except (OSError, ssl.SSLError):
        pass
    times.append(time.perf_counter() - started)
print(statistics.median(times) * 1000)
"""

DOWNLOAD = "curl -sS -o /dev/null --cacert {ca} -w '%{{time_total}}' https://allowed.test/big.bin"


def denied_close_ms(lab: Lab) -> float:
    completed = sh(*as_client(lab, CLIENT_PYTHON, "-c", CLOSE_PROBE, str(lab.folder / "ca.pem")))
    return float(completed.stdout.strip())


def big_download(lab: Lab, proxy_pid: int) -> tuple[float, float]:
    """(MB/s, the proxy's CPU-s per GiB relayed) of one BIG_MIB download."""
    command = DOWNLOAD.format(ca=lab.folder / "ca.pem")
    before = cpu_seconds(proxy_pid)
    completed = sh(*as_client(lab, "sh", "-c", command), timeout=300)
    used = cpu_seconds(proxy_pid) - before
    return (BIG_MIB << 20) / 1e6 / float(completed.stdout.strip()), used * 1024 / BIG_MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000, help="per concurrency level")
    parser.add_argument("--only", default="squid,gateway,nofast,layers,mitmdump",
                        help="comma-separated: squid, gateway, nofast, layers, mitmdump")  # fmt: skip
    parser.add_argument("--before", type=Path, default=None,
                        help="folder with harness/ and addons/ of a version to compare: row 'before'")  # fmt: skip
    options = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_squid.py makes network namespaces: run it as root")
    ensure_packages()
    if sys.executable != str(PYTHON) and PYTHON.exists():
        pass  # the lab's own probes run with whichever Python runs this script
    wanted = options.only.split(",") + (["before"] if options.before else [])
    results: dict[str, dict] = {}
    with lab() as the_lab:
        for name in ("squid", "before", "gateway", "nofast", "layers", "mitmdump"):
            if name not in wanted:
                continue
            if name == "squid":
                starter = squid(the_lab)
            elif name == "before":
                starter = gateway(the_lab, name, options.before.resolve())
            else:
                starter = gateway(the_lab, name)
            with starter as process:
                figures: dict = {}
                for concurrency in CONCURRENCY:
                    figures[concurrency] = connection_rate(the_lab, process.pid, concurrency,
                                                           options.connections)  # fmt: skip
                    print(f"{name:8s} c={concurrency:<3d} {figures[concurrency][0]:7.0f} conn/s "
                          f"{figures[concurrency][1]:5.2f} CPU-s/1000", flush=True)  # fmt: skip
                figures["close_ms"] = denied_close_ms(the_lab)
                figures["mb_s"], figures["cpu_gib"] = big_download(the_lab, process.pid)
                results[name] = figures
    _report(results, options.connections)


def _report(results: dict[str, dict], count: int) -> None:
    print()
    print(f"new HTTPS connections ({count} per level, one GET each), SNI decided, TLS not "
          f"terminated; {os.cpu_count()} CPUs shared with whatever else runs")
    header = "proxy     " + "".join(f"  c={c:<3d} conn/s  CPU-s/1k" for c in CONCURRENCY)
    print(header + f"   denied close   {BIG_MIB} MiB, CPU-s/GiB")
    for name, figures in results.items():
        row = "".join(f"  {figures[c][0]:12.0f}  {figures[c][1]:8.2f}" for c in CONCURRENCY)
        print(f"{name:10s}{row}   {figures['close_ms']:9.1f} ms   {figures['mb_s']:5.0f} MB/s"
              f" {figures['cpu_gib']:5.2f}")  # fmt: skip
    squid_figures = results.get("squid")
    if squid_figures is None:
        return
    for name, figures in results.items():
        if name == "squid":
            continue
        rates = " / ".join(f"{figures[c][0] / squid_figures[c][0]:.2f}" for c in CONCURRENCY)
        cpu = " / ".join(f"{figures[c][1] / squid_figures[c][1]:.2f}" for c in CONCURRENCY)
        print(f"{name} / squid: rate {rates} (target >= 0.5), CPU per connection {cpu} "
              f"(target <= 2), denied close {figures['close_ms'] / squid_figures['close_ms']:.2f}, "
              f"{BIG_MIB} MiB {figures['mb_s'] / squid_figures['mb_s']:.2f}, its CPU "
              f"{figures['cpu_gib'] / squid_figures['cpu_gib']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
