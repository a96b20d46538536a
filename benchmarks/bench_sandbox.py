"""Sandbox figures: gateway start to ready, workload start, and HTTPS downloads through the
gateway against the same download from a plain container on the default bridge: ~20 MB from the
Python server, and 256 MiB from nginx (Debian's nginx-light in `egress/bench-nginx`, an image
this benchmark builds from docker/bench-nginx/ on the base). Prints throughput ratios
through/plain (target: at least 0.9).

The files come from labelled local containers of our own (`files.test`, a trustme
certificate); nothing leaves the machine. Every container is removed at the end.

usage: .venv/bin/python benchmarks/bench_sandbox.py [--repeat 5] [--size-mb 20] [--big-mib 256]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import trustme

from harness.interrupt import unwind_on_sigterm
from harness.sandbox import DEBIAN_IMAGE, PYTHON_IMAGE, build_images, run_workload, start_gateway
from harness.sandbox.engine import client
from harness.sandbox.gc import gc
from harness.sandbox.images import (
    BASE_IMAGE,
    GATEWAY_IMAGE,
    _base_hash,
    _build_from_dockerfile,
    docker_dir,
)
from harness.sandbox.labels import labels, new_run_id

FILE_HOST = "files.test"
# Per download: the whole, and the time to its first byte (connection, TLS handshake, request:
# what the gateway adds before the relay takes over), with the name lookup's and the handshake's
# end (through the gateway the name is asked of its DNS; plain, it is in /etc/hosts).
CURL_TIMES = "%{time_total} %{time_starttransfer} %{time_namelookup} %{time_appconnect}\\n"
NGINX_IMAGE = "egress/bench-nginx"
NGINX_CONF = """
daemon off; worker_processes 1; error_log stderr warn; pid /run/nginx.pid;
events { worker_connections 256; }
http {
  access_log off; sendfile on;
  server { listen 443 ssl; ssl_certificate /tls/server.pem; ssl_certificate_key /tls/server.pem;
           root /srv; }
}
"""
# The file is sparse; its first read zero-fills every page (ext4's readpages: about half the
# machine's CPU while it lasts), so it is read once before serving, or the first download,
# through the gateway, would pay for it and the plain ones not.
NGINX_START = ("mkdir -p /srv && truncate -s SIZE /srv/blob && cat /srv/blob >/dev/null"
               " && (sleep 1; echo serving) & exec nginx -c /etc/egress-nginx.conf")
SERVER = """
import http.server, os, ssl
os.makedirs("/srv", exist_ok=True)
with open("/srv/blob", "wb") as blob:
    blob.write(os.urandom(SIZE))
os.chdir("/srv")
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain("/tls/server.pem")
server = http.server.ThreadingHTTPServer(("0.0.0.0", 443), http.server.SimpleHTTPRequestHandler)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("serving", flush=True)
server.serve_forever()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=20, help="the Python server's file")
    parser.add_argument("--big-mib", type=int, default=256, help="nginx's file")
    parser.add_argument(
        "--addon-root",
        type=Path,
        default=None,
        help="folder holding harness/ and addons/ (default: this checkout)",
    )
    options = parser.parse_args()
    build_images(lambda line: None, only=[BASE_IMAGE, GATEWAY_IMAGE, PYTHON_IMAGE, DEBIAN_IMAGE])
    engine = client()
    _build_from_dockerfile(engine, lambda line: None, NGINX_IMAGE, docker_dir() / "bench-nginx",
                           _base_hash(), False)  # fmt: skip
    run_id = new_run_id("bench")
    authority = trustme.CA()
    certificate = authority.issue_cert(FILE_HOST)
    with tempfile.TemporaryDirectory(prefix="egress-bench-") as scratch:
        folder = Path(scratch)
        ca_file = folder / "ca.pem"
        authority.cert_pem.write_to_path(str(ca_file))
        ca_file.chmod(0o644)
        servers = []
        try:
            python_ip = _start_server(
                engine, run_id, servers, certificate, PYTHON_IMAGE, "python-files",
                ["python3", "-c", SERVER.replace("SIZE", str(options.size_mb << 20))],
            )  # fmt: skip
            nginx_ip = _start_server(
                engine, run_id, servers, certificate, NGINX_IMAGE, "nginx-files",
                ["sh", "-c", NGINX_START.replace("SIZE", str(options.big_mib << 20))],
            )  # fmt: skip
            figures = _measure(
                engine, run_id, folder, ca_file, python_ip, options.repeat, options.addon_root
            )
            big = _measure_downloads(engine, run_id, folder, ca_file, nginx_ip,
                                     max(2, options.repeat // 2), options.addon_root)  # fmt: skip
            (
                (figures["big_through"], figures["big_through_first"]),
                (figures["big_direct"], figures["big_direct_first"]),
                big_cpu,
            ) = big
        finally:
            for server in servers:
                server.remove(force=True)
            gc(run_id, engine)
    _report(figures, options, big_cpu)


def _start_server(engine, run_id, servers, certificate, image, role, command) -> str:
    server = engine.containers.create(image, command=command, labels=labels(run_id, role),
                                      name=f"egress-{run_id}-{role}")  # fmt: skip
    servers.append(server)
    server.put_archive("/", _tar({"tls/server.pem": _server_pem(certificate),
                                  "etc/egress-nginx.conf": NGINX_CONF.encode()}))  # fmt: skip
    server.start()
    _wait_for(server, b"serving")
    server.reload()
    return server.attrs["NetworkSettings"]["IPAddress"]


def _measure_downloads(engine, run_id, folder, ca_file, server_ip, repeat, addon_root):
    """Seconds per download of /blob, through the gateway and on the plain bridge."""
    run_dir = folder / "big-run"
    run_dir.mkdir()
    (run_dir / "policy.yaml").write_text(f'allow: ["{FILE_HOST}"]\n')
    curl = (
        f"for i in $(seq {repeat}); do curl -sS -o /dev/null -w '{CURL_TIMES}'"
        f" https://{FILE_HOST}/blob || echo failed; done"
    )
    through: list[str] = []
    with start_gateway(run_dir=run_dir, run_id=f"{run_id}-big", hosts={FILE_HOST: server_ip},
                       addon_root=addon_root) as gateway:  # fmt: skip
        cpu_before = _cpu_seconds(gateway.container)
        run_workload(gateway, image=DEBIAN_IMAGE, command=curl, run_dir=run_dir,
                     trust=[str(ca_file)], on_output=through.append, timeout=600)  # fmt: skip
        gateway_cpu = _cpu_seconds(gateway.container) - cpu_before
    direct = _plain_curl(engine, run_id, curl, server_ip, ca_file, "big-plain")
    return _times(through), _times(direct), gateway_cpu / repeat


def _times(lines: list[str]) -> tuple[list[float], list[float]]:
    """(total seconds, seconds to the first byte) per download of curl's `CURL_TIMES` lines."""
    rows = _rows(lines)
    return [float(row[0]) for row in rows], [float(row[1]) for row in rows]


def _rows(lines: list[str]) -> list[list[str]]:
    rows = [line.split() for line in lines if line.strip()]
    if any(len(row) != 4 for row in rows):
        raise SystemExit(f"a download failed: {lines}")
    return rows


def _lookup_and_handshake(lines: list[str]) -> tuple[list[float], list[float]]:
    """(seconds to the name's address, to the TLS handshake's end) per download."""
    rows = _rows(lines)
    return [float(row[2]) for row in rows], [float(row[3]) for row in rows]


def _cpu_seconds(container) -> float:
    """CPU the container's cgroup has used so far (the engine's stats)."""
    return container.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9


def _plain_curl(engine, run_id, curl, server_ip, ca_file, role) -> list[str]:
    plain = engine.containers.create(
        DEBIAN_IMAGE,
        command=["sh", "-c", curl],
        extra_hosts={FILE_HOST: server_ip},
        environment={"CURL_CA_BUNDLE": "/ca.pem"},
        volumes={str(ca_file): {"bind": "/ca.pem", "mode": "ro"}},
        labels=labels(run_id, role),
        name=f"egress-{run_id}-{role}",
    )
    try:
        plain.start()
        plain.wait(timeout=600)
        return plain.logs().decode().splitlines()
    finally:
        plain.remove(force=True)


def _measure(engine, run_id, folder, ca_file, server_ip, repeat, addon_root):
    run_dir = folder / "run"
    run_dir.mkdir()
    (run_dir / "policy.yaml").write_text(f'allow: ["{FILE_HOST}"]\n')
    ready, workload_start = [], []
    for index in range(repeat):
        started = time.monotonic()
        with start_gateway(
            run_dir=run_dir,
            run_id=f"{run_id}-g{index}",
            hosts={FILE_HOST: server_ip},
            addon_root=addon_root,
        ) as gateway:
            ready.append(time.monotonic() - started)
            before = time.monotonic()
            run_workload(gateway, image=DEBIAN_IMAGE, command="true", run_dir=run_dir)
            workload_start.append(time.monotonic() - before)
    curl = (
        f"for i in $(seq {repeat}); do curl -sS -o /dev/null -w '{CURL_TIMES}'"
        f" https://{FILE_HOST}/blob || echo failed; done"
    )
    through: list[str] = []
    with start_gateway(
        run_dir=run_dir,
        run_id=f"{run_id}-download",
        hosts={FILE_HOST: server_ip},
        addon_root=addon_root,
    ) as gateway:
        run_workload(
            gateway,
            image=DEBIAN_IMAGE,
            command=curl,
            run_dir=run_dir,
            trust=[str(ca_file)],
            on_output=through.append,
            timeout=300,
        )
    plain = engine.containers.create(
        DEBIAN_IMAGE,
        command=["sh", "-c", curl],
        extra_hosts={FILE_HOST: server_ip},
        environment={"CURL_CA_BUNDLE": "/ca.pem"},
        volumes={str(ca_file): {"bind": "/ca.pem", "mode": "ro"}},
        labels=labels(run_id, "plain-client"),
        name=f"egress-{run_id}-plain",
    )
    try:
        plain.start()
        plain.wait(timeout=300)
        direct = plain.logs().decode().splitlines()
    finally:
        plain.remove(force=True)
    (through_total, through_first), (direct_total, direct_first) = _times(through), _times(direct)
    (through_lookup, through_tls), (direct_lookup, direct_tls) = (
        _lookup_and_handshake(through), _lookup_and_handshake(direct))  # fmt: skip
    return {
        "through_lookup": through_lookup,
        "through_tls": through_tls,
        "direct_lookup": direct_lookup,
        "direct_tls": direct_tls,
        "ready": ready,
        "workload": workload_start,
        "through": through_total,
        "direct": direct_total,
        "through_first": through_first,
        "direct_first": direct_first,
    }


def _report(figures, options, big_cpu: float) -> None:
    median = {name: statistics.median(values) for name, values in figures.items()}
    size = options.size_mb
    print(f"gateway start to ready     median {median['ready']:.3f} s  (n={options.repeat})")
    print(f"workload create+run+remove median {median['workload']:.3f} s  (`true`)")
    print(
        f"{size} MB HTTPS through G      median {median['through']:.3f} s"
        f"  ({size / median['through']:.0f} MB/s)"
    )
    print(
        f"{size} MB HTTPS plain bridge   median {median['direct']:.3f} s"
        f"  ({size / median['direct']:.0f} MB/s)"
    )
    print(f"ratio through/plain        {median['through'] / median['direct']:.2f}x time, "
          f"{median['direct'] / median['through']:.2f} throughput (target >= 0.9)")
    print(f"  first byte through / plain median {median['through_first'] * 1000:.1f} / "
          f"{median['direct_first'] * 1000:.1f} ms; the rest {(median['through'] - median['through_first']) * 1000:.1f} / "
          f"{(median['direct'] - median['direct_first']) * 1000:.1f} ms")  # fmt: skip
    print(f"  name looked up / TLS handshake done, through / plain median "
          f"{median['through_lookup'] * 1000:.1f} / {median['direct_lookup'] * 1000:.1f} ms, "
          f"{median['through_tls'] * 1000:.1f} / {median['direct_tls'] * 1000:.1f} ms")
    big = options.big_mib * 1.048576
    print(f"{options.big_mib} MiB from nginx through G  median {median['big_through']:.3f} s"
          f"  ({big / median['big_through']:.0f} MB/s)")
    print(f"{options.big_mib} MiB from nginx plain      median {median['big_direct']:.3f} s"
          f"  ({big / median['big_direct']:.0f} MB/s)")
    print(f"nginx throughput through/plain {median['big_direct'] / median['big_through']:.2f}"
          "  (target >= 0.9)")
    print(f"  first byte through / plain median {median['big_through_first'] * 1000:.1f} / "
          f"{median['big_direct_first'] * 1000:.1f} ms; gateway CPU "
          f"{big_cpu / (options.big_mib / 1024):.2f} CPU-s per GiB relayed")


def _server_pem(certificate: trustme.LeafCert) -> bytes:
    return certificate.private_key_and_cert_chain_pem.bytes()


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _wait_for(container, marker: bytes, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while marker not in container.logs():
        if time.monotonic() > deadline:
            raise SystemExit(f"file server did not start: {container.logs().decode()}")
        time.sleep(0.1)


if __name__ == "__main__":
    unwind_on_sigterm()
    main()
