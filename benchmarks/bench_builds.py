"""What users wait for: real builds through the gateway against the same build without it.

- `npm ci` of benchmarks/apps/npm-few-hundred (a lock file of 247 packages, without `resolved`
  URLs, so npm fetches from the registry the image is configured with) in `egress/node`;
- `pip install -r` of benchmarks/apps/pip-few-dozen (16 pinned requirements, a few dozen
  distributions with their dependencies) in `egress/python`.

Through: the harness's `run` (gateway, workload behind it, the registry hosts allowed, derived
from the image as the scenarios' `${npm.registry_host}`, `${pip.index_host}` and
`${pip.files_host}` are). Plain: the same image and command on the default bridge. Both trust the
host's CA bundle and use no package cache, alternately, `--repeat` times; the time is the
workload's own, from its start to its exit. Prints medians and the ratio through/plain
(target: at most 1.05).

    .venv/bin/python benchmarks/bench_builds.py [--repeat 2] [--only npm,pip]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from harness.interrupt import unwind_on_sigterm
from harness.policy.model import Policy
from harness.policy.shorthand import merge_allow
from harness.sandbox import NODE_IMAGE, PYTHON_IMAGE, RunSpec, build_images, run
from harness.sandbox.engine import client
from harness.sandbox.images import images_needed
from harness.sandbox.labels import ROLE_LABEL, RUN_LABEL, labels, new_run_id
from harness.sandbox.probe import docker_prober

HERE = Path(__file__).resolve().parent
HOST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BUILDS = {
    "npm": (NODE_IMAGE, HERE / "apps" / "npm-few-hundred", "npm ci --no-audit --no-fund --cache /tmp/npm-cache"),
    "pip": (PYTHON_IMAGE, HERE / "apps" / "pip-few-dozen",
            "pip install --no-cache-dir --disable-pip-version-check -r requirements.txt --target /tmp/site"),
}  # fmt: skip


def allowed_hosts(name: str, image: str, app: Path) -> list[str]:
    prober = docker_prober()
    if name == "npm":
        return [prober.values("npm", image, (), app)["npm.registry_host"]]
    values = prober.values("pip", image, (), app)
    return list(dict.fromkeys([values["pip.index_host"], values["pip.files_host"]]))


class GatewayCpu(threading.Thread):
    """Samples the CPU seconds of the run's gateway container (its cgroup, as
    bench_gateway_start.py reads it) until stopped: the last sample is what the gateway cost
    the build, start included. None where the cgroup cannot be read."""

    def __init__(self, run_id: str) -> None:
        super().__init__(daemon=True)
        self.run_id, self.seconds, self.done = run_id, None, threading.Event()

    def run(self) -> None:
        from bench_gateway_start import _container_cpu

        engine, container_id = client(), None
        while not self.done.wait(0.2):
            if container_id is None:
                found = engine.containers.list(filters={"label": [
                    f"{RUN_LABEL}={self.run_id}", f"{ROLE_LABEL}=gateway"]})  # fmt: skip
                container_id = found[0].id if found else None
            if container_id is not None:
                self.seconds = _container_cpu(container_id) or self.seconds


def through_gateway(
    image: str, app: Path, command: str, hosts: list[str], scratch: Path
) -> tuple[float, float | None, int, int]:
    """The build's seconds, the gateway's CPU seconds, the connections and the name lookups it
    recorded."""
    from harness.export.yaml_form import policy_to_yaml

    run_dir = Path(tempfile.mkdtemp(dir=scratch))
    run_dir.chmod(0o755)
    policy = merge_allow(Policy("bench-builds"), hosts)
    (run_dir / "policy.yaml").write_text(policy_to_yaml(policy))
    run_id = new_run_id("bench-builds")
    sampler = GatewayCpu(run_id)
    sampler.start()
    try:
        result = run(RunSpec(run_dir=run_dir, image=image, command=command, workdir=app,
                             trust=["host"], timeout=900, run_id=run_id))  # fmt: skip
    finally:
        sampler.done.set()
        sampler.join()
    if result.exit_code != 0:
        log = (run_dir / "workload.log").read_text()[-2000:]
        sys.exit(f"the build through the gateway failed (exit {result.exit_code}):\n{log}")
    kinds = [json.loads(line).get("kind")
             for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]  # fmt: skip
    return result.duration_s, sampler.seconds, kinds.count("tls") + kinds.count("http"), kinds.count("dns")


def plain(image: str, app: Path, command: str) -> float:
    engine = client()
    container = engine.containers.create(
        image,
        command=["sh", "-c", command],
        working_dir="/app",
        environment={
            "SSL_CERT_FILE": HOST_BUNDLE,
            "PIP_CERT": HOST_BUNDLE,
            "NODE_EXTRA_CA_CERTS": HOST_BUNDLE,
        },
        volumes={HOST_BUNDLE: {"bind": HOST_BUNDLE, "mode": "ro"}},
        labels=labels(new_run_id("bench-builds"), "plain-build"),
    )
    try:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.add(str(app), arcname="app")
        container.put_archive("/", buffer.getvalue())
        started = time.monotonic()
        container.start()
        status = container.wait(timeout=900)
        seconds = time.monotonic() - started
        if status.get("StatusCode") != 0:
            sys.exit(f"the plain build failed: {container.logs().decode(errors='replace')[-2000:]}")
    finally:
        container.remove(force=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", default="npm,pip")
    options = parser.parse_args()
    wanted = [name for name in BUILDS if name in options.only.split(",")]
    build_images(lambda line: None, only=images_needed(BUILDS[name][0] for name in wanted))
    rows = []
    with tempfile.TemporaryDirectory(prefix="egress-bench-builds-") as scratch:
        for name in wanted:
            image, app, command = BUILDS[name]
            hosts = allowed_hosts(name, image, app)
            through, direct = [], []
            for _ in range(options.repeat):
                seconds, gateway_cpu, connections, lookups = through_gateway(
                    image, app, command, hosts, Path(scratch)
                )
                through.append(seconds)
                direct.append(plain(image, app, command))
                cpu = "?" if gateway_cpu is None else f"{gateway_cpu:.2f}"
                print(f"{name}: through {through[-1]:.1f} s (gateway {cpu} CPU-s, "
                      f"{connections} connections, {lookups} lookups), plain {direct[-1]:.1f} s "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
            pairs = [a / b for a, b in zip(through, direct, strict=True)]
            rows.append((name, command, statistics.median(through), statistics.median(direct),
                         pairs))  # fmt: skip
    print()
    # Each pair ran back to back, so its ratio saw the same load; their median is the figure.
    for name, command, through_s, direct_s, pairs in rows:
        print(f"{name:4s} {command}")
        print(f"     through the gateway {through_s:6.1f} s   plain bridge {direct_s:6.1f} s   "
              f"(medians of {options.repeat})")  # fmt: skip
        print(f"     ratio through/plain per pair {' '.join(f'{r:.2f}' for r in pairs)}; "
              f"median {statistics.median(pairs):.2f}  (target <= 1.05)")  # fmt: skip


if __name__ == "__main__":
    unwind_on_sigterm()
    main()
