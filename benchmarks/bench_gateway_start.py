"""Gateway start, by phase: container create to the `ready` event, and the container's CPU to it.

Starts the gateway `--repeat` times (nothing is downloaded, no workload runs) and prints, per
start and as medians: the wall time from `start_gateway` to `ready`, and the container's own
CPU seconds when `ready` is written (its cgroup's cpuacct.usage: the entrypoint's processes
and the master; the engine's work is not in it). With `--addon-root DIR` (harness/ and addons/
of another version, e.g. `git archive main harness addons | tar -x -C DIR`) the starts
alternate between DIR and this checkout and the ratio this/DIR is printed: on a loaded machine
only side-by-side figures compare. (The entrypoint is this checkout's for both: for a harness/
without gatewayboot.py it starts the master once the rules are in, as before.) CPU seconds move much less with the load than wall time.

usage: .venv/bin/python benchmarks/bench_gateway_start.py [--repeat 7] [--addon-root DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from harness.interrupt import unwind_on_sigterm
from harness.sandbox import start_gateway
from harness.sandbox.gateway import source_root
from harness.sandbox.labels import new_run_id

CPUACCT = Path("/sys/fs/cgroup/cpuacct/docker")
CGROUP2 = Path("/sys/fs/cgroup/system.slice")


def _container_cpu(container_id: str) -> float | None:
    """CPU seconds the container has used so far (cgroup v1 or v2), None when unreadable."""
    v1 = CPUACCT / container_id / "cpuacct.usage"
    try:
        return int(v1.read_text()) / 1e9
    except OSError:
        pass
    v2 = CGROUP2 / f"docker-{container_id}.scope" / "cpu.stat"
    try:
        for line in v2.read_text().splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return None


def _one_start(run_dir: Path, run_id: str, root: Path) -> dict[str, float]:
    """Seconds from the call: `engine` when create and start have returned, `rules` when the
    entrypoint logged its rules line (the engine's log timestamp), `ready`; and `cpu`."""
    marks: dict[str, float] = {}
    started_wall, started = time.time(), time.monotonic()

    def on_started(_gateway) -> None:
        marks["engine"] = time.monotonic() - started

    with start_gateway(
        run_dir=run_dir, run_id=run_id, addon_root=root, on_started=on_started
    ) as gateway:
        marks["ready"] = time.monotonic() - started
        cpu = _container_cpu(gateway.id)
        if cpu is not None:
            marks["cpu"] = cpu
        for line in gateway.container.logs(timestamps=True).decode(errors="replace").splitlines():
            stamp, _, text = line.partition(" ")
            if "firewall rules installed" in text:
                marks["rules"] = _engine_time(stamp) - started_wall
    return marks


def _engine_time(stamp: str) -> float:
    """An engine log timestamp (RFC 3339, nanoseconds) as seconds since the epoch."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp() + float(f"0.{fraction}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--addon-root", type=Path, help="another version to compare against")
    options = parser.parse_args()
    unwind_on_sigterm()
    roots = {"this": source_root()}
    if options.addon_root:
        roots = {"other": options.addon_root.resolve(), **roots}
    phases = ("engine", "rules", "ready", "cpu")
    figures = {name: {phase: [] for phase in phases} for name in roots}
    run_id = new_run_id()
    with tempfile.TemporaryDirectory(prefix="egress-bench-start-") as folder:
        run_dir = Path(folder) / "run"
        run_dir.mkdir()
        (run_dir / "policy.yaml").write_text("allow: []\n")
        # One start each first: the bytecode cache of a checkout is written by its first start.
        for name, root in roots.items():
            _one_start(run_dir, f"{run_id}-warm-{name}", root)
        for index in range(options.repeat):
            for name, root in roots.items():
                marks = _one_start(run_dir, f"{run_id}-{name}{index}", root)
                for phase, value in marks.items():
                    figures[name][phase].append(value)
                print(f"{name:5} start {index + 1}: "
                      + ", ".join(f"{phase} {value:.3f}" for phase, value in marks.items())
                      + f" (load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
    print()
    print("seconds from the call (engine: create and start returned; rules: the entrypoint's")
    print("rules line; ready: the event seen), and the container's CPU-s to ready; medians")
    print("| version | engine | rules | ready (min-max) | container CPU-s |")
    print("|---|---|---|---|---|")
    medians = {}
    for name, values in figures.items():
        medians[name] = {
            phase: statistics.median(found) if found else float("nan")
            for phase, found in values.items()
        }
        m, ready = medians[name], values["ready"]
        print(f"| {name} ({roots[name]}) | {m['engine']:.3f} | {m['rules']:.3f} | "
              f"{m['ready']:.3f} ({min(ready):.3f}-{max(ready):.3f}) | {m['cpu']:.3f} |")  # fmt: skip
    if "other" in medians:
        this, other = medians["this"], medians["other"]
        print(f"\nthis / other: ready {this['ready'] / other['ready']:.2f}, "
              f"CPU {this['cpu'] / other['cpu']:.2f}, "
              f"rules to ready {(this['ready'] - this['rules']) / (other['ready'] - other['rules']):.2f}")  # fmt: skip
    print(f"target: create to ready <= 0.7 s; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
