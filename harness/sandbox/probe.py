"""The probe behind derived values (`harness.derive`): a short container of the workload's
image, with no network, that asks a client for its configuration."""

from __future__ import annotations

__all__ = ["PROBE_TIMEOUT", "docker_prober", "run_probe"]

import threading

import docker
import requests
from docker.errors import APIError, NotFound

from harness.derive import Prober, ProbeRequest, ProbeResult
from harness.sandbox.engine import client as engine_client
from harness.sandbox.engine import local_image
from harness.sandbox.labels import labels, new_run_id
from harness.sandbox.workload import WORKLOAD_CAP_DROP, WORKLOAD_SECURITY_OPT, _tar_of

PROBE_TIMEOUT = 60.0

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
    container = engine.containers.create(
        request.image,
        entrypoint=[request.command[0]],
        command=list(request.command[1:]),
        labels=labels(new_run_id("probe"), "probe"),
        network_disabled=True,
        cap_drop=WORKLOAD_CAP_DROP,
        security_opt=WORKLOAD_SECURITY_OPT,
        environment=dict(request.env),
        working_dir="/app" if request.workdir is not None else None,
        detach=True,
    )
    try:
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
    finally:
        try:
            container.remove(force=True)
        except NotFound:
            pass


def docker_prober() -> Prober:
    """The process's one prober over Docker, so each image is probed once per process."""
    global _prober
    with _prober_lock:
        if _prober is None:
            _prober = Prober(run_probe)
        return _prober
