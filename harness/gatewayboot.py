"""Inside the gateway: read harness/'s bytecode from the host's cache, then run the lean master.

    python -m harness.gatewayboot ARGS...   (docker/gateway-run/entrypoint.sh)

harness/ is mounted read-only and the image sets PYTHONDONTWRITEBYTECODE, so without this every
start compiled harness/ from source (~0.1 CPU-s in the gateway image, docs/performance.md). The
entrypoint compiles into EGRESS_BYTECODE_DIR (harness.sandbox.bytecode) with
PYTHONPYCACHEPREFIX's layout; PYTHONPYCACHEPREFIX itself cannot be set for the master, since
Python would then look there, and only there, for the bytecode of the standard library and
mitmproxy too. So this loader reads the cache for files under /opt/egress only, checks each
one against its source as Python does (magic number, mtime, size), and otherwise compiles from
source as before. This module must stay free of imports from harness (they would compile
before the loader is in place).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import marshal
import os
import runpy
import sys

CACHED_UNDER = "/opt/egress/"


class CachedBytecodeLoader(importlib.machinery.SourceFileLoader):
    """A source loader that takes a module's code from the bytecode cache when it is current."""

    cache_dir = ""
    cached_under = CACHED_UNDER

    def get_code(self, fullname):
        source_path = self.get_filename(fullname)
        if self.cache_dir and source_path.startswith(self.cached_under):
            code = _current_bytecode(self.cache_dir, source_path)
            if code is not None:
                return code
        return super().get_code(fullname)


def _current_bytecode(cache_dir: str, source_path: str):
    folder, name = os.path.split(source_path)
    cached = os.path.join(
        cache_dir,
        folder.lstrip(os.sep),
        f"{name.rpartition('.')[0]}.{sys.implementation.cache_tag}.pyc",
    )
    try:
        with open(cached, "rb") as stream:
            data = stream.read()
        source = os.stat(source_path)
    except OSError:
        return None
    # PEP 552 header: magic, flags (0: checked by timestamp), source mtime, source size.
    if (
        len(data) < 16
        or data[:4] != importlib.util.MAGIC_NUMBER
        or int.from_bytes(data[4:8], "little") != 0
        or int.from_bytes(data[8:12], "little") != int(source.st_mtime) & 0xFFFFFFFF
        or int.from_bytes(data[12:16], "little") != source.st_size & 0xFFFFFFFF
    ):
        return None
    try:
        return marshal.loads(data[16:])
    except (EOFError, ValueError, TypeError):
        return None


def install(cache_dir: str, cached_under: str = CACHED_UNDER) -> None:
    """Use the cache for every module under `cached_under` imported from now on (path finders
    made before are dropped, so harness/'s own entry is found again with this loader)."""
    CachedBytecodeLoader.cache_dir = cache_dir
    CachedBytecodeLoader.cached_under = cached_under
    loaders = [
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        (CachedBytecodeLoader, importlib.machinery.SOURCE_SUFFIXES),
        (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
    ]
    sys.path_hooks.insert(0, importlib.machinery.FileFinder.path_hook(*loaders))
    sys.path_importer_cache.clear()


def main() -> None:
    cache_dir = os.environ.get("EGRESS_BYTECODE_DIR", "")
    if cache_dir and os.path.isdir(cache_dir):
        install(cache_dir)
    runpy.run_module("harness.gateway.master", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
