"""Seconds from nothing to a verified allowlist: the README's main command,
`egress learn scenarios/python-requirements.scenario.yaml`, with no image on the engine (target:
at most 90 s here). Prints the time per image and the total.

The images are shared by tag with everyone using this engine, so there are two ways to measure:

- default (`--isolated`): nothing shared is touched. The images the default scenario needs
  (the debootstrap result, the base, the gateway, egress/python) are built from nothing under a
  private name space (`egress-bench-<id>/...`; a new base means no layer of the shared images is
  reused), exactly as the command builds them (base first, then the rest in parallel), and
  removed afterwards; then the command runs on the current images. Printed: each build, the
  build wall time, the command's own time, and their sum as the figure.
- `--remove-shared-images`: the real thing. Every labelled image (and the debootstrap cache)
  is tagged aside (`egress-backup/...`) and its tag removed, the command runs and builds what it
  needs, then every tag is put back as it was and what the run built is removed. It refuses
  while any other labelled container exists (someone else's run would lose its images midway);
  `--force` overrides that.

    .venv/bin/python benchmarks/bench_first_allowlist.py [--remove-shared-images [--force]]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from docker.errors import APIError, ImageNotFound

from harness.interrupt import unwind_on_sigterm
from harness.sandbox import images
from harness.sandbox.engine import client
from harness.sandbox.labels import LABEL

REPO = Path(__file__).resolve().parent.parent
MAIN_COMMAND = [str(REPO / "bin" / "egress"), "learn", "scenarios/python-requirements.scenario.yaml"]
STEP = re.compile(r"wheels|pip install|package lists")
BUILT = re.compile(r"(egress[\w/-]*): (?:built in|debootstrap \+ import in) ([\d.]+) s")


def timed_command() -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="egress-bench-first-") as runs:
        started = time.monotonic()
        completed = subprocess.run(MAIN_COMMAND, cwd=REPO, env={**os.environ, "EGRESS_RUNS_DIR": runs},
                                   capture_output=True, text=True, check=False)  # fmt: skip
        seconds = time.monotonic() - started
    if completed.returncode != 0 or "verified" not in completed.stdout:
        sys.exit(f"the main command did not verify (exit {completed.returncode}):\n"
                 f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")  # fmt: skip
    return seconds, completed.stderr


def isolated() -> None:
    engine = client(timeout=900)
    space = f"egress-bench-{secrets.token_hex(3)}"
    lines: list[str] = []
    clock = time.monotonic()

    def progress(line: str) -> None:
        lines.append(f"{time.monotonic() - clock:6.1f} s  {line}")

    images.ROOTFS_IMAGE, images.BASE_IMAGE = f"{space}/base-rootfs", f"{space}/base"
    images.GATEWAY_IMAGE = f"{space}/gateway"
    python = f"{space}/python"
    started = time.monotonic()
    wheels_dir = tempfile.TemporaryDirectory(prefix="egress-bench-wheels-")
    # As build_images does: the gateway's wheels download while the base is made.
    wheels = images.GatewayWheels(Path(wheels_dir.name))
    wheels.start(progress)
    try:
        base_hash = images._build_base(engine, progress, rebuild=True)
        base_done = time.monotonic()
        with ThreadPoolExecutor(max_workers=images.PARALLEL_BUILDS) as pool:
            gateway = pool.submit(images._build_gateway, engine, progress, base_hash, True, wheels)
            workload = pool.submit(images._build_from_dockerfile, engine, progress, python,
                                   images.docker_dir() / "workloads" / "python", base_hash, True)  # fmt: skip
            gateway.result()
            workload.result()
        build_seconds = time.monotonic() - started
    finally:
        wheels.stop()
        wheels_dir.cleanup()
        for name in (python, images.GATEWAY_IMAGE, f"{images.GATEWAY_IMAGE}:system",
                     images.BASE_IMAGE, images.ROOTFS_IMAGE):  # fmt: skip
            try:
                engine.images.remove(name if ":" in name.split("/")[-1] else f"{name}:latest",
                                     force=True)  # fmt: skip
            except (ImageNotFound, APIError):
                pass
    command_seconds, _ = timed_command()
    print("images the default scenario needs, built from nothing under", space, "(removed again):")
    for line in lines:
        if BUILT.search(line) or STEP.search(line):
            print("  " + line.replace(f"{space}/", "egress/"))
    print(f"  base (debootstrap + base/) {base_done - started:.1f} s; all builds {build_seconds:.1f} s")
    print(f"`{' '.join(MAIN_COMMAND[1:])}` on those images: {command_seconds:.1f} s")
    total = build_seconds + command_seconds
    print(f"seconds to a verified allowlist from no images: {total:.1f} s  (target <= 90; the "
          f"venv is not counted)")  # fmt: skip


def remove_shared_images(force: bool) -> None:
    engine = client(timeout=900)
    others = engine.containers.list(all=True, filters={"label": LABEL})
    if others and not force:
        sys.exit(f"{len(others)} labelled container(s) exist (someone's run, e.g. "
                 f"{others[0].name}): removing the shared images now would break it. "
                 "Run this when the engine is idle, or pass --force.")  # fmt: skip
    names = [*images.ALL_IMAGES, images.ROOTFS_IMAGE]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    saved: dict[str, str] = {}
    for name in names:
        try:
            image = engine.images.get(f"{name}:latest")
        except ImageNotFound:
            continue
        image.tag(f"egress-backup/{name.split('/', 1)[1]}", stamp)
        engine.images.remove(f"{name}:latest")  # only the tag: the backup tag keeps the image
        saved[name] = image.id
    try:
        seconds, stderr = timed_command()
    finally:
        for name in reversed(names):  # children before their parents
            try:
                built = engine.images.get(f"{name}:latest")
            except ImageNotFound:
                built = None
            if built is not None and built.id != saved.get(name):
                engine.images.remove(f"{name}:latest")
            if name in saved:
                engine.images.get(saved[name]).tag(name, "latest")
                engine.images.remove(f"egress-backup/{name.split('/', 1)[1]}:{stamp}")
    print("built by the command:")
    for line in stderr.splitlines():
        if BUILT.search(line):
            print("  " + line.strip())
    print(f"seconds to a verified allowlist from no images: {seconds:.1f} s  (target <= 90)")
    print(f"restored {len(saved)} image tag(s) as they were")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remove-shared-images", action="store_true")
    parser.add_argument("--force", action="store_true")
    options = parser.parse_args()
    if options.remove_shared_images:
        remove_shared_images(options.force)
    else:
        isolated()


if __name__ == "__main__":
    unwind_on_sigterm()
    main()
