"""Gateway start, by phase: container create to the `ready` event, and the container's CPU to it.

Starts the gateway `--repeat` times (nothing is downloaded, no workload runs) and prints, per
start and as medians: the wall time from `start_gateway` to `ready`, and the container's own
CPU seconds when `ready` is written (its cgroup's cpuacct.usage: the entrypoint's processes
and the master; the engine's work is not in it). With `--addon-root DIR` (harness/ and addons/
of another version, e.g. `git archive main harness addons | tar -x -C DIR`) the starts
alternate between DIR and this checkout and the ratio this/DIR is printed: on a loaded machine
only side-by-side figures compare. CPU seconds move much less with the load than wall time.

usage: .venv/bin/python benchmarks/bench_gateway_start.py [--repeat 7] [--addon-root DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
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


def _one_start(run_dir: Path, run_id: str, root: Path) -> tuple[float, float | None]:
    cpu: list[float | None] = []
    started = time.monotonic()
    with start_gateway(run_dir=run_dir, run_id=run_id, addon_root=root) as gateway:
        wall = time.monotonic() - started
        cpu.append(_container_cpu(gateway.id))
    return wall, cpu[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--addon-root", type=Path, help="another version to compare against")
    options = parser.parse_args()
    unwind_on_sigterm()
    roots = {"this": source_root()}
    if options.addon_root:
        roots = {"other": options.addon_root.resolve(), **roots}
    figures: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in roots}
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
                wall, cpu = _one_start(run_dir, f"{run_id}-{name}{index}", root)
                figures[name]["wall"].append(wall)
                if cpu is not None:
                    figures[name]["cpu"].append(cpu)
                print(f"{name:5} start {index + 1}: {wall:.3f} s to ready, "
                      f"container CPU {cpu if cpu is None else round(cpu, 3)} s "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
    print()
    print("| version | create to ready, median (min-max) | container CPU to ready, median |")
    print("|---|---|---|")
    medians = {}
    for name, values in figures.items():
        wall = values["wall"]
        cpu = statistics.median(values["cpu"]) if values["cpu"] else float("nan")
        medians[name] = (statistics.median(wall), cpu)
        print(f"| {name} ({roots[name]}) | {medians[name][0]:.3f} s ({min(wall):.3f}-"
              f"{max(wall):.3f}) | {cpu:.3f} CPU-s |")  # fmt: skip
    if "other" in medians:
        print(f"\nthis / other: wall {medians['this'][0] / medians['other'][0]:.2f}, "
              f"CPU {medians['this'][1] / medians['other'][1]:.2f}")  # fmt: skip
    print(f"target: create to ready <= 0.7 s; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
