"""What the harness adds to one run: `egress run` of the default scenario with both of pip's
hosts allowed, against the same `pip install` in a plain container of the same image on the
default bridge (the app copied in, the host's CA bundle trusted, as the scenario's `trust: [host]`
does). Both are timed as a user waits for them, from the command's start to its end, alternately,
`--repeat` times; prints the medians and their ratio (target: at most 1.5x).

    .venv/bin/python benchmarks/bench_run.py [--repeat 3] [SCENARIO]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from harness.interrupt import unwind_on_sigterm
from harness.sandbox import build_images
from harness.sandbox.engine import client
from harness.sandbox.images import images_for_scenarios
from harness.sandbox.labels import labels, new_run_id
from harness.sandbox.probe import docker_prober
from harness.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "scenarios" / "python-requirements.scenario.yaml"
HOST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(DEFAULT))
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    scenario = load_scenario(options.scenario)
    build_images(lambda line: None, only=images_for_scenarios([scenario]))
    workload = scenario.workload
    pip = docker_prober().values("pip", workload.image, workload.env, workload.workdir)
    hosts = [pip["pip.index_host"], pip["pip.files_host"]]
    resolved = scenario
    egress = [str(REPO / ".venv" / "bin" / "egress"), "run", options.scenario]
    for host in dict.fromkeys(hosts):
        egress += ["--allow", host]
    through, plain = [], []
    with tempfile.TemporaryDirectory(prefix="egress-bench-run-") as runs:
        env = {**os.environ, "EGRESS_RUNS_DIR": runs}
        for index in range(options.repeat):
            started = time.monotonic()
            subprocess.run(egress, env=env, capture_output=True, check=False)
            through.append(time.monotonic() - started)
            summary = json.loads(max(Path(runs).glob("*/summary.json"), key=os.path.getmtime).read_text())
            if summary["exit_code"] != 0:
                sys.exit(f"run {index + 1} through the gateway failed: {summary}")
            plain.append(_plain_run(resolved))
    command = workload.command if isinstance(workload.command, str) else shlex.join(workload.command)
    print(f"scenario {scenario.name}: {command}")
    print(f"egress run (both pip hosts allowed)  median {statistics.median(through):6.2f} s  "
          f"all {' '.join(f'{value:.2f}' for value in through)}")  # fmt: skip
    print(f"plain container, default bridge      median {statistics.median(plain):6.2f} s  "
          f"all {' '.join(f'{value:.2f}' for value in plain)}")  # fmt: skip
    print(f"ratio egress run / plain             {statistics.median(through) / statistics.median(plain):.2f}x"
          "  (target <= 1.5)")  # fmt: skip


def _plain_run(scenario) -> float:
    """The workload's command in a plain container: create, copy the app in, start, wait,
    remove; what `docker run` of it costs."""
    engine = client()
    workload = scenario.workload
    command = ["sh", "-c", workload.command] if isinstance(workload.command, str) else list(workload.command)
    started = time.monotonic()
    container = engine.containers.create(
        workload.image,
        command=command,
        working_dir="/app",
        environment={**dict(workload.env), "PIP_CERT": HOST_BUNDLE, "SSL_CERT_FILE": HOST_BUNDLE},
        volumes={HOST_BUNDLE: {"bind": HOST_BUNDLE, "mode": "ro"}},
        labels=labels(new_run_id("bench-plain"), "plain-workload"),
    )
    try:
        if workload.workdir is not None:
            container.put_archive("/", _tar_of(workload.workdir))
        container.start()
        status = container.wait(timeout=600)
        if status.get("StatusCode") != 0:
            sys.exit(f"the plain run failed: {container.logs().decode(errors='replace')[-2000:]}")
    finally:
        container.remove(force=True)
    return time.monotonic() - started


def _tar_of(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(str(folder), arcname="app")
    return buffer.getvalue()


if __name__ == "__main__":
    unwind_on_sigterm()
    main()
