"""Compiled bytecode for the gateway's harness/ and addons/, kept between starts.

The gateway runs harness/ and addons/ mounted read-only from the checkout, with
PYTHONDONTWRITEBYTECODE, so every start compiled its ~30 modules from source: ~0.1 CPU-s of a
~0.6 CPU-s start in the gateway image (measured, docs/performance.md). The host cannot write
that bytecode itself (its Python may not be the image's), so the gateway's entrypoint, as root
and before the master starts, compiles the modules the gateway imports into a cache folder of
the host (PYTHONPYCACHEPREFIX's layout) when this module says the folder is stale, and writes
the stamp; every later start only reads it. The gateway uid cannot write there (the folder is the host user's, 0755), so a gateway that
was taken over cannot plant code for the next one. Python checks each file against its source
(mtime and size) as always: a stale or missing file is compiled in memory, never trusted.
"""

from __future__ import annotations

__all__ = ["BYTECODE_MOUNT", "BytecodeCache", "bytecode_cache"]

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

BYTECODE_MOUNT = "/opt/egress/bytecode"
STAMP = "compiled"
SOURCE_FOLDERS = ("harness", "addons")
# What the gateway imports from the checkout (tests/unit/sandbox/test_bytecode.py checks the
# list against the master's imports): compiled before the master starts, ~0.05 CPU-s once per
# change, where all of harness/ (94 files) would be ~0.3. A module missing here still works,
# compiled from source at each start.
GATEWAY_SOURCES = (
    "harness/__init__.py", "harness/errors.py", "harness/events.py",
    "harness/firewall_settings.py", "harness/gatewayboot.py", "harness/limits.py",
    "harness/runfolder.py", "harness/yamlio.py", "harness/gateway",
    "harness/policy/__init__.py", "harness/policy/checks.py", "harness/policy/decide.py",
    "harness/policy/forms.py", "harness/policy/fqdn.py", "harness/policy/load.py",
    "harness/policy/model.py", "harness/policy/shorthand.py", "harness/policy/source.py",
    "addons",
)  # fmt: skip


@dataclass(frozen=True)
class BytecodeCache:
    folder: Path  # mounted at BYTECODE_MOUNT
    stale: bool  # the entrypoint compiles first
    newest_source: float  # the newest .py mtime seen: the stamp's mtime once compiled
    sources: tuple[str, ...] = ()  # GATEWAY_SOURCES that this checkout has

    def environment(self) -> dict[str, str]:
        """What the entrypoint reads (docker/gateway-run/entrypoint.sh)."""
        env = {"EGRESS_BYTECODE_DIR": BYTECODE_MOUNT}
        if self.stale:
            # Who owns what the entrypoint writes, and the stamp's mtime once it is done: later
            # starts skip the compile until a source is newer than the stamp.
            env["EGRESS_BYTECODE_BUILD"] = f"{os.getuid()}:{os.getgid()}"
            # (whole seconds, rounded up: `touch -d @N` and float mtimes then compare exactly)
            env["EGRESS_BYTECODE_STAMP"] = str(math.ceil(self.newest_source))
            env["EGRESS_BYTECODE_SOURCES"] = " ".join(self.sources)
        return env


def cache_root() -> Path:
    """$EGRESS_CACHE_DIR, else $XDG_CACHE_HOME/egress-harness, else ~/.cache/egress-harness."""
    if os.environ.get("EGRESS_CACHE_DIR"):
        return Path(os.environ["EGRESS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "egress-harness"


def bytecode_cache(source_root: Path, image_id: str) -> BytecodeCache | None:
    """The cache folder for this checkout (`source_root`, holding harness/ and addons/) and this
    gateway image (its Python), made if missing; None when it cannot be made (the gateway then
    compiles from source, as before)."""
    key = hashlib.sha256(f"{image_id}\0{Path(source_root).resolve()}".encode()).hexdigest()[:20]
    folder = cache_root() / "gateway-bytecode" / key
    try:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)  # read by the gateway uid; written only by the entrypoint as root
    except OSError:
        return None
    newest = _newest_source_mtime(Path(source_root))
    try:
        stale = (folder / STAMP).stat().st_mtime < newest
    except OSError:
        stale = True
    sources = tuple(path for path in GATEWAY_SOURCES if (Path(source_root) / path).exists())
    return BytecodeCache(folder=folder, stale=stale, newest_source=newest, sources=sources)


def _newest_source_mtime(root: Path) -> float:
    newest = 0.0
    pending = [root / name for name in SOURCE_FOLDERS]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name == "__pycache__":
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif entry.name.endswith(".py"):
                try:
                    newest = max(newest, entry.stat().st_mtime)
                except OSError:
                    continue
    return newest
