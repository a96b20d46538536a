"""Load: new HTTPS connections per second through the gateway at concurrency 1, 64 and 256,
against the same load from a plain container straight to the upstream, failures counted.

The upstream is the bundled one (egress/upstreams, docker/upstreams/upstream_server.py) with a
trustme certificate for `site.load.test`; a tenth of the connections go to `denied.load.test`,
which the policy denies, so the deny path runs under the same load. Each connection: TCP connect,
TLS handshake with SNI, `GET /`, the status line read, close; 10 s at most. Nothing leaves the
machine, and every container is labelled and removed at the end.

Targets (issue 16): no allowed connection fails at 256, and the gateway's rate is at least 0.5 of
the direct rate. The gateway's events are read back: an allowed connection that failed must
carry an `upstream` reason, never pass as a plain Allow.

usage: .venv/bin/python benchmarks/bench_load.py [--connections 1500] [--levels 1,64,256]
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

import trustme

from harness.interrupt import unwind_on_sigterm
from harness.runfolder import read_run
from harness.sandbox import PYTHON_IMAGE, build_images, run_workload, start_gateway
from harness.sandbox.engine import client
from harness.sandbox.gc import gc
from harness.sandbox.images import UPSTREAMS_IMAGE, docker_dir
from harness.sandbox.labels import labels, new_run_id

ALLOWED = "site.load.test"
DENIED = "denied.load.test"
CERT_MOUNT = "/egress/upstream"

LOAD = r"""
import asyncio, json, os, ssl, sys, time
total, concurrency, denied_every = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
context = ssl.create_default_context(cafile=os.environ["LOAD_CA"])
counts = {"ok": 0, "failed": 0, "denied_ok": 0, "denied_failed": 0}
errors = {}

async def one(index, gate):
    host = "DENIED" if denied_every and index % denied_every == 0 else "ALLOWED"
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, 443, ssl=context, server_hostname=host), 10)
            writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            line = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            ok = line.startswith(b"HTTP/1.1 ")
            problem = None if ok else "no status line"
        except Exception as error:
            ok, problem = False, type(error).__name__
    denied = host == "DENIED"
    key = ("denied_" if denied else "") + ("ok" if ok else "failed")
    counts[key] += 1
    if problem and not denied:
        errors[problem] = errors.get(problem, 0) + 1

async def main():
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    await asyncio.gather(*(one(index, gate) for index in range(total)))
    elapsed = time.monotonic() - started
    print(json.dumps({**counts, "errors": errors, "seconds": elapsed}), flush=True)

asyncio.run(main())
""".replace("DENIED", DENIED).replace("ALLOWED", ALLOWED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1500,
                        help="connections per level (concurrency 1 uses a tenth)")  # fmt: skip
    parser.add_argument("--levels", default="1,64,256")
    parser.add_argument("--denied-every", type=int, default=10,
                        help="every Nth connection goes to the denied name (0: none)")  # fmt: skip
    parser.add_argument("--addon-root", type=Path, default=None)
    options = parser.parse_args()
    levels = [int(level) for level in options.levels.split(",")]
    build_images(lambda line: None)
    engine = client()
    run_id = new_run_id("bench-load")
    authority = trustme.CA()
    certificate = authority.issue_cert(ALLOWED, DENIED)
    results = []
    with tempfile.TemporaryDirectory(prefix="egress-bench-load-") as scratch:
        folder = Path(scratch)
        ca_file = folder / "ca.pem"
        authority.cert_pem.write_to_path(str(ca_file))
        ca_file.chmod(0o644)
        # This checkout's server, whatever copy the shared image holds right now.
        server_script = docker_dir() / "upstreams" / "upstream_server.py"
        server = engine.containers.create(
            UPSTREAMS_IMAGE, labels=labels(run_id, "load-upstream"), name=f"egress-{run_id}-up",
            volumes={str(server_script): {"bind": "/opt/upstreams/upstream_server.py",
                                          "mode": "ro"}},
        )  # fmt: skip
        try:
            server.put_archive("/", _tar({
                "egress/upstream/cert.pem": certificate.cert_chain_pems[0].bytes(),
                "egress/upstream/key.pem": certificate.private_key_pem.bytes(),
            }))  # fmt: skip
            server.start()
            _wait_for(server, b'"event": "listening"')
            server.reload()
            server_ip = server.attrs["NetworkSettings"]["IPAddress"]
            for concurrency in levels:
                total = max(options.connections // 10, 50) if concurrency == 1 else options.connections
                direct = _direct(engine, run_id, ca_file, server_ip, total, concurrency, options)
                through, unexplained = _through(folder, run_id, ca_file, server_ip, total,
                                                concurrency, options)  # fmt: skip
                results.append((concurrency, total, direct, through, unexplained))
                _print_row(*results[-1])
        finally:
            server.remove(force=True)
            gc(run_id, engine)
    _verdict(results)


def _through(folder, run_id, ca_file, server_ip, total, concurrency, options):
    run_dir = folder / f"run-{concurrency}"
    run_dir.mkdir()
    (run_dir / "policy.yaml").write_text(f'allow: ["{ALLOWED}"]\n')
    output: list[str] = []
    with start_gateway(
        run_dir=run_dir, run_id=f"{run_id}-c{concurrency}",
        hosts={ALLOWED: server_ip, DENIED: server_ip}, addon_root=options.addon_root,
    ) as gateway:  # fmt: skip
        run_workload(
            gateway, image=PYTHON_IMAGE, run_dir=run_dir, trust=[str(ca_file)],
            command=["sh", "-c", 'LOAD_CA="$SSL_CERT_FILE" exec python3 -c "$0" "$@"', LOAD,
                     str(total), str(concurrency), str(options.denied_every)],
            on_output=output.append, timeout=600,
        )  # fmt: skip
    figures = _figures(output)
    # Allowed connections that failed and whose event says nothing about why.
    events = read_run(run_dir).events
    unexplained = sum(
        1 for event in events
        if event.kind == "tls" and event.host == ALLOWED and event.action == "Allow"
        and event.bytes_down == 0 and not event.upstream
    )  # fmt: skip
    figures["upstream"] = dict(Counter(event.upstream for event in events if event.upstream))
    return figures, unexplained


def _direct(engine, run_id, ca_file, server_ip, total, concurrency, options):
    plain = engine.containers.create(
        PYTHON_IMAGE,
        command=["python3", "-c", LOAD, str(total), str(concurrency), str(options.denied_every)],
        extra_hosts={ALLOWED: server_ip, DENIED: server_ip},
        environment={"LOAD_CA": "/ca.pem"},
        volumes={str(ca_file): {"bind": "/ca.pem", "mode": "ro"}},
        labels=labels(run_id, "load-direct"),
        name=f"egress-{run_id}-direct-{concurrency}",
    )
    try:
        plain.start()
        plain.wait(timeout=600)
        return _figures(plain.logs().decode().splitlines())
    finally:
        plain.remove(force=True)


def _figures(lines: list[str]) -> dict:
    for line in reversed(lines):
        if line.startswith("{"):
            figures = json.loads(line)
            attempts = sum(figures[key] for key in ("ok", "failed", "denied_ok", "denied_failed"))
            figures["rate"] = attempts / figures["seconds"]
            return figures
    raise SystemExit("the load client printed no result:\n" + "\n".join(lines[-20:]))


def _print_row(concurrency, total, direct, through, unexplained) -> None:
    ratio = through["rate"] / direct["rate"]
    print(
        f"concurrency {concurrency:>3}: {total} connections;"
        f" direct {direct['rate']:7.1f}/s ({direct['failed']} failed {direct['errors'] or ''});"
        f" gateway {through['rate']:7.1f}/s ({through['failed']} of"
        f" {through['ok'] + through['failed']} allowed failed {through['errors'] or ''},"
        f" {through['denied_ok']} denied got through, events' upstream field"
        f" {through['upstream'] or '{}'}, {unexplained} failures recorded as a plain Allow);"
        f" ratio {ratio:.2f}",
        flush=True,
    )


def _verdict(results) -> None:
    for concurrency, _, direct, through, unexplained in results:
        if concurrency == 256:
            ratio = through["rate"] / direct["rate"]
            met = through["failed"] == 0 and ratio >= 0.5 and unexplained == 0
            print(f"target at 256 (0 failures, ratio >= 0.5): {'met' if met else 'NOT met'}")


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
            raise SystemExit(f"upstream did not start: {container.logs().decode()[-2000:]}")
        time.sleep(0.1)


if __name__ == "__main__":
    unwind_on_sigterm()
    main()
