"""The probe behind derived values (`harness.derive`): a short container of the workload's
image, with no network, that asks a client for its configuration."""

from __future__ import annotations

__all__ = ["PROBE_TIMEOUT", "cached_probe", "docker_prober", "probe_cache_dir", "run_probe"]

import hashlib
import json
import os
import threading
from pathlib import Path

import docker
import requests
from docker.errors import APIError

from harness.derive import Prober, ProbeRequest, ProbeResult
from harness.sandbox.containers import labelled_container
from harness.sandbox.engine import client as engine_client
from harness.sandbox.engine import local_image
from harness.sandbox.labels import new_run_id
from harness.sandbox.workload import WORKLOAD_CAP_DROP, WORKLOAD_SECURITY_OPT, _tar_of

PROBE_TIMEOUT = 60.0
PROBE_CACHE_VERSION = "1"

_prober: Prober | None = None
_prober_lock = threading.Lock()


def run_probe(
    request: ProbeRequest,
    engine: docker.DockerClient | None = None,
    timeout: float = PROBE_TIMEOUT,
) -> ProbeResult:
    """Run `request.command` in its image with no network, the workload's env and the app at
    /app, and return its exit code and output. The container is removed however this ends."""
    engine = engine or engine_client()
    local_image(engine, request.image)
    with labelled_container(
        engine,
        request.image,
        run_id=new_run_id("probe"),
        role="probe",
        what=f"the probe of {request.image}",
        entrypoint=[request.command[0]],
        command=list(request.command[1:]),
        network_disabled=True,
        cap_drop=WORKLOAD_CAP_DROP,
        security_opt=WORKLOAD_SECURITY_OPT,
        environment=dict(request.env),
        working_dir="/app" if request.workdir is not None else None,
        detach=True,
    ) as container:
        if request.workdir is not None:
            container.put_archive("/", _tar_of(request.workdir))
        try:
            container.start()
        except APIError as error:  # the client is not in the image: nothing to execute
            return ProbeResult(127, "", error.explanation or str(error))
        try:
            status = container.wait(timeout=timeout)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            return ProbeResult(-1, "", f"no answer within {timeout:.0f} s")
        return ProbeResult(
            int(status.get("StatusCode", -1)),
            container.logs(stdout=True, stderr=False).decode(errors="replace"),
            container.logs(stdout=False, stderr=True).decode(errors="replace"),
        )


def docker_prober() -> Prober:
    """The process's one prober over Docker, so each image is probed once per process, and
    once per image at all while its answer is in the cache (`cached_probe`)."""
    global _prober
    with _prober_lock:
        if _prober is None:
            _prober = Prober(cached_probe)
        return _prober


def probe_cache_dir() -> Path:
    """$EGRESS_CACHE_DIR, else $XDG_CACHE_HOME/egress-harness, else ~/.cache/egress-harness."""
    if os.environ.get("EGRESS_CACHE_DIR"):
        return Path(os.environ["EGRESS_CACHE_DIR"]) / "probes"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "egress-harness" / "probes"


def cached_probe(request: ProbeRequest, engine: docker.DockerClient | None = None) -> ProbeResult:
    """`run_probe`, answered from disk when the same command already ran in the same image (by
    id: a rebuilt image is probed again) with the same env and the same app folder (names,
    sizes and mtimes). A probe costs a container start, ~1-2 s on 2 vCPU, on every `egress run`
    of a scenario with derived values; only successful answers are kept."""
    engine = engine or engine_client()
    key = _probe_key(request, local_image(engine, request.image).id)
    path = probe_cache_dir() / f"{key}.json"
    try:
        saved = json.loads(path.read_text())
        return ProbeResult(int(saved["exit_code"]), str(saved["stdout"]), str(saved["stderr"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    result = run_probe(request, engine)
    if result.exit_code == 0:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch = path.with_suffix(f".{os.getpid()}.tmp")
            scratch.write_text(json.dumps({"exit_code": result.exit_code, "stdout": result.stdout,
                                           "stderr": result.stderr}))  # fmt: skip
            scratch.replace(path)
        except OSError:
            pass  # no cache: the next run probes again
    return result


def _probe_key(request: ProbeRequest, image_id: str) -> str:
    digest = hashlib.sha256()
    for part in (PROBE_CACHE_VERSION, image_id, *request.command, *sorted(map(repr, request.env))):
        digest.update(str(part).encode() + b"\0")
    if request.workdir is not None:
        for file in sorted(Path(request.workdir).rglob("*")):
            if file.is_file():
                info = file.stat()
                digest.update(f"{file.relative_to(request.workdir)}\0{info.st_size}\0"
                              f"{info.st_mtime_ns}\0".encode())  # fmt: skip
    return digest.hexdigest()
