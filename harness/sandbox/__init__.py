"""The Docker sandbox: a gateway container that is the only way out, and workloads behind it.
The only package that imports docker.

    build_images(progress)            images: base (debootstrap), gateway, python, node, debian,
                                      dotnet-mono, upstreams and the Kudu and Oryx CDN simulators
    start_upstreams(...)              simulated sites with a test CA (scenario `upstreams:`)
    run(RunSpec, on_output) -> RunResult   gateway + workload + cleanup
    shared_gateway() -> SharedGateway  a `run` whose calls share one gateway (learn; session.py)
    start_gateway(...) / run_workload(...) the two halves, for tests and tools that need both
    labelled_container(...)           the one place a container is created (containers.py):
                                      named, labelled, removed, its log on a failure
    DockerRuntime                     harness.runtime.Runtime over all this (docker_runtime.py)
    gc() -> int                       remove labelled leftovers
    doctor() -> list[Check]           what this machine lacks, with fixes
"""

from harness.sandbox.containers import labelled_container
from harness.sandbox.docker_runtime import DockerRuntime
from harness.sandbox.doctor import Check, doctor
from harness.sandbox.gateway import (
    DNS_PORT,
    GATEWAY_UID,
    TRANSPARENT_PORT,
    Gateway,
    start_gateway,
)
from harness.sandbox.gc import gc, leftovers
from harness.sandbox.images import (
    DEBIAN_IMAGE,
    DOTNET_MONO_IMAGE,
    GATEWAY_IMAGE,
    NODE_IMAGE,
    PYTHON_IMAGE,
    build_images,
)
from harness.sandbox.labels import labels, new_run_id
from harness.sandbox.runner import RunResult, RunSpec, run
from harness.sandbox.session import SharedGateway, shared_gateway
from harness.sandbox.upstreams import Upstream, start_upstreams
from harness.sandbox.workload import WorkloadResult, run_workload

# `learn` asks a runtime for `.shared()`: every run of one learn then goes through one gateway.
# DockerRuntime has it; kept on the bare `run` too for callers that pass `run` to `learn`.
run.shared = shared_gateway  # type: ignore[attr-defined]

__all__ = [
    "DEBIAN_IMAGE",
    "DNS_PORT",
    "DOTNET_MONO_IMAGE",
    "GATEWAY_IMAGE",
    "GATEWAY_UID",
    "NODE_IMAGE",
    "PYTHON_IMAGE",
    "TRANSPARENT_PORT",
    "Check",
    "DockerRuntime",
    "Gateway",
    "RunResult",
    "RunSpec",
    "SharedGateway",
    "Upstream",
    "WorkloadResult",
    "build_images",
    "doctor",
    "gc",
    "labelled_container",
    "labels",
    "leftovers",
    "new_run_id",
    "run",
    "run_workload",
    "shared_gateway",
    "start_gateway",
    "start_upstreams",
]
