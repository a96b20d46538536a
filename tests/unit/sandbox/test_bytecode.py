"""The gateway's bytecode cache: the host says when the entrypoint must compile, and the loader
inside the gateway uses a cached file only when it matches its source (a stale or foreign file
is compiled from source, never run)."""

from __future__ import annotations

import compileall
import importlib
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.sandbox.bytecode import BYTECODE_MOUNT, bytecode_cache


def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "harness" / "gateway").mkdir(parents=True)
    (root / "addons").mkdir()
    (root / "harness" / "gateway" / "addon.py").write_text("X = 1\n")
    (root / "addons" / "firewall.py").write_text("addons = []\n")
    return root


def test_a_new_checkout_is_stale_until_a_start_compiled_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EGRESS_CACHE_DIR", str(tmp_path / "cache"))
    root = checkout(tmp_path)
    first = bytecode_cache(root, "sha256:image")
    assert first is not None and first.stale
    environment = first.environment()
    assert environment == {
        "EGRESS_BYTECODE_DIR": BYTECODE_MOUNT,
        "EGRESS_BYTECODE_BUILD": f"{os.getuid()}:{os.getgid()}",
        "EGRESS_BYTECODE_STAMP": str(math.ceil(first.newest_source)),
        "EGRESS_BYTECODE_SOURCES": "harness/gateway addons",  # what this checkout has of them
    }
    assert first.folder.stat().st_mode & 0o777 == 0o755  # the gateway uid reads, never writes
    assert bytecode_cache(root, "sha256:image").stale  # until the entrypoint's compile is done
    stamp = first.folder / "compiled"  # what the entrypoint's `touch -d @STAMP` leaves
    stamp.touch()
    os.utime(stamp, (int(environment["EGRESS_BYTECODE_STAMP"]),) * 2)
    again = bytecode_cache(root, "sha256:image")
    assert again is not None and not again.stale and again.folder == first.folder
    assert "EGRESS_BYTECODE_BUILD" not in again.environment()

    edited = root / "addons" / "firewall.py"
    os.utime(edited, (again.newest_source + 5, again.newest_source + 5))
    assert bytecode_cache(root, "sha256:image").stale  # an edit compiles again

    other_image = bytecode_cache(root, "sha256:rebuilt")
    assert other_image.folder != first.folder and other_image.stale  # another Python


def test_an_unwritable_cache_leaves_the_gateway_compiling_from_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("EGRESS_CACHE_DIR", str(blocker))
    assert bytecode_cache(checkout(tmp_path), "sha256:image") is None


LOADER_CHECK = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from harness import gatewayboot
    gatewayboot.install(sys.argv[2], cached_under=sys.argv[1])
    import cachedmod
    print(cachedmod.VALUE, type(cachedmod.__loader__).__name__)
    """
)


def run_loader(source_dir: Path, cache_dir: Path) -> str:
    repo = Path(__file__).resolve().parents[3]
    return subprocess.run(
        [sys.executable, "-B", "-c", LOADER_CHECK, str(source_dir), str(cache_dir)],
        check=True, capture_output=True, text=True, cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    ).stdout.split()  # fmt: skip


def test_the_loader_runs_current_bytecode_and_recompiles_stale(tmp_path: Path) -> None:
    source_dir, cache_dir = tmp_path / "src", tmp_path / "cache"
    source_dir.mkdir()
    module = source_dir / "cachedmod.py"
    module.write_text("VALUE = 'from-source'\n")
    # The entrypoint's compile, by PYTHONPYCACHEPREFIX's layout; then the cached code is made
    # to differ from the source, so the answer says which one ran.
    sys.pycache_prefix, before = str(cache_dir), sys.pycache_prefix
    try:
        compileall.compile_file(str(module), quiet=1)
        cached = Path(importlib.util.cache_from_source(str(module)))
    finally:
        sys.pycache_prefix = before
    assert cached.is_relative_to(cache_dir)
    stat = module.stat()
    module.write_text("VALUE = 'from-cache!'\n")  # as long as the source
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    sys.pycache_prefix = str(cache_dir)
    try:
        compileall.compile_file(str(module), quiet=1, force=True)
    finally:
        sys.pycache_prefix = before
    module.write_text("VALUE = 'from-source'\n")
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime: "current"
    assert run_loader(source_dir, cache_dir) == ["from-cache!", "CachedBytecodeLoader"]

    module.write_text("VALUE = 'edited-source'\n")  # newer and longer: the cache is stale
    assert run_loader(source_dir, cache_dir) == ["edited-source", "CachedBytecodeLoader"]

    cached.write_bytes(b"garbage")
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert run_loader(source_dir, cache_dir)[0] == "edited-source"


def test_the_gateway_mounts_the_cache_writable_only_to_compile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What start_gateway asks the engine for: the cache folder at BYTECODE_MOUNT, read-write
    with the compile's variables while stale, read-only after; the firewall's own arguments
    untouched either way."""
    import json

    from fake_engine import FakeContainer, FakeEngine

    from harness.sandbox import gateway as gateway_module
    from harness.sandbox.gateway import start_gateway
    from harness.sandbox.images import GATEWAY_IMAGE, TAG
    from harness.sandbox.labels import RUN_LABEL

    monkeypatch.setenv("EGRESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(gateway_module, "STOP_TIMEOUT", 0.05)
    root = checkout(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "policy.yaml").write_text("allow: [a.example.test]\n")

    def ready(container: FakeContainer) -> None:
        event = {"kind": "lifecycle", "reason": "ready", "run": container.labels[RUN_LABEL]}
        with (run_dir / "events.jsonl").open("a") as events:
            events.write(json.dumps(event) + "\n")

    def started(run_id: str) -> dict:
        engine = FakeEngine({f"{GATEWAY_IMAGE}:{TAG}"}, behaviour=ready)
        with start_gateway(run_dir=run_dir, run_id=run_id, engine=engine, addon_root=root):
            (made,) = engine.containers.made
        return made.options

    first = started("r1")
    mounts = {bind["bind"]: (source, bind["mode"]) for source, bind in first["volumes"].items()}
    folder, access = mounts[BYTECODE_MOUNT]
    assert access == "rw" and "EGRESS_BYTECODE_BUILD" in first["environment"]
    assert "egress_mode=enforce" in first["command"]
    stamp = Path(folder) / "compiled"
    stamp.touch()
    stamp_time = int(first["environment"]["EGRESS_BYTECODE_STAMP"])
    os.utime(stamp, (stamp_time, stamp_time))  # what the entrypoint does once compiled

    second = started("r2")
    mounts = {bind["bind"]: (source, bind["mode"]) for source, bind in second["volumes"].items()}
    assert mounts[BYTECODE_MOUNT] == (folder, "ro")
    assert "EGRESS_BYTECODE_BUILD" not in second["environment"]
    assert "egress_mode=enforce" in second["command"]


def test_the_compiled_list_covers_what_the_gateway_imports() -> None:
    """GATEWAY_SOURCES against the harness modules the master has loaded once it is made (a
    module missing from the list would be compiled from source at every start)."""
    from harness.sandbox.bytecode import GATEWAY_SOURCES

    repo = Path(__file__).resolve().parents[3]
    loaded = subprocess.run(
        [sys.executable, "-c", textwrap.dedent("""
            import asyncio, sys
            import harness.gatewayboot
            from harness.gateway import master
            async def make():
                master.make_master([], [], loop=asyncio.get_running_loop())
            asyncio.run(make())
            for module in list(sys.modules.values()):
                print(getattr(module, "__file__", None) or "")
        """)],
        check=True, capture_output=True, text=True, cwd=repo,
    ).stdout.split()  # fmt: skip
    ours = sorted(
        Path(path).relative_to(repo).as_posix()
        for path in loaded
        if path.endswith(".py") and Path(path).is_relative_to(repo / "harness")
    )
    assert len(ours) > 15
    uncovered = [
        path for path in ours
        if not any(path == source or path.startswith(source + "/") for source in GATEWAY_SOURCES)
    ]  # fmt: skip
    assert uncovered == []
    assert all((repo / source).exists() for source in GATEWAY_SOURCES)
