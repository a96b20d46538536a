"""The gateway's start as the harness runs it: the rules load while the master imports, and
the master never listens when they fail (exit 70, no `ready`); harness/'s bytecode is compiled
once into the host's cache (by the first start), which the gateway uid cannot write."""

from __future__ import annotations

import os
import stat
import time

import pytest

import harness.sandbox.gateway as gateway_module
from harness.errors import EnvironmentProblem
from harness.sandbox import new_run_id, start_gateway
from harness.sandbox.bytecode import bytecode_cache
from harness.sandbox.engine import client
from harness.sandbox.gateway import GATEWAY_UID
from harness.sandbox.images import GATEWAY_IMAGE, TAG

pytestmark = pytest.mark.docker


def test_without_net_admin_the_rules_fail_and_the_gateway_never_gets_ready(
    run_dir, addon_root, write_policy, read_events, monkeypatch
):
    write_policy(run_dir, ["allowed.test"])
    real = gateway_module.labelled_container

    def without_net_admin(engine, image, **options):
        options.pop("cap_add", None)
        return real(engine, image, **options)

    monkeypatch.setattr(gateway_module, "labelled_container", without_net_admin)
    with (
        pytest.raises(EnvironmentProblem) as raised,
        start_gateway(run_dir=run_dir, run_id=new_run_id(), addon_root=addon_root),
    ):
        pytest.fail("the gateway got ready without its rules")
    message = str(raised.value)
    assert "exit 70" in message and "NET_ADMIN" in message
    assert "refusing to start (fail closed)" in message  # the log tail says why
    assert not [event for event in read_events(run_dir) if event.get("reason") == "ready"]


def test_the_first_start_compiles_the_bytecode_and_the_next_one_reads_it(
    run_dir, addon_root, write_policy, tmp_path, monkeypatch
):
    monkeypatch.setenv("EGRESS_CACHE_DIR", str(tmp_path / "cache"))
    write_policy(run_dir, ["allowed.test"])
    image_id = client().images.get(f"{GATEWAY_IMAGE}:{TAG}").id
    assert bytecode_cache(addon_root, image_id).stale
    with start_gateway(run_dir=run_dir, run_id=new_run_id(), addon_root=addon_root):
        # The entrypoint compiles before the master starts and writes the stamp last.
        deadline = time.monotonic() + 60
        while bytecode_cache(addon_root, image_id).stale and time.monotonic() < deadline:
            time.sleep(0.2)
    cache = bytecode_cache(addon_root, image_id)
    assert not cache.stale
    compiled = list(cache.folder.rglob("addon.*.pyc"))
    assert compiled, "the entrypoint compiled nothing"
    for path in [cache.folder, *cache.folder.rglob("*")]:
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (os.getuid(), os.getgid())  # the host user's
        assert info.st_uid != GATEWAY_UID and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    before = {path: path.stat().st_mtime_ns for path in compiled}
    with start_gateway(run_dir=run_dir, run_id=new_run_id(), addon_root=addon_root):
        pass
    assert {path: path.stat().st_mtime_ns for path in compiled} == before  # read, not rewritten
