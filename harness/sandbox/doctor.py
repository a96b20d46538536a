"""`egress doctor`: what this machine lacks for a run, each with the command that fixes it."""

from __future__ import annotations

__all__ = ["Check", "doctor"]

import shutil
import sys
from dataclasses import dataclass

import docker
from docker.errors import DockerException

from harness.errors import EnvironmentProblem
from harness.sandbox.containers import labelled_container
from harness.sandbox.engine import NO_ENGINE_FIX
from harness.sandbox.engine import client as engine_client
from harness.sandbox.images import ALL_IMAGES, GATEWAY_IMAGE, TAG, debian_mirror, image_is_current
from harness.sandbox.labels import new_run_id


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def doctor() -> list[Check]:
    checks = [_python()]
    try:
        engine = engine_client(timeout=30)
    except EnvironmentProblem as problem:
        return checks + [Check("Docker engine", False, str(problem).split(";")[0], NO_ENGINE_FIX)]
    version = engine.version().get("Version", "?")
    checks.append(Check("Docker engine", True, f"Docker {version} answers"))
    checks.append(_image_builder())
    checks.extend(_images(engine))
    checks.append(_gateway_iptables(engine))
    return checks


def _python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info >= (3, 12):  # noqa: UP036 (the point: a venv made with an older one)
        return Check("Python", True, f"Python {version}")
    return Check(
        "Python",
        False,
        f"Python {version}; mitmproxy 12 needs 3.12 or newer",
        "run through bin/egress, which makes a venv with a Python 3.12+",
    )


def _image_builder() -> Check:
    if shutil.which("debootstrap") is None:
        return Check(
            "image builder", False, "debootstrap is missing", "apt-get install debootstrap"
        )
    try:
        mirror = debian_mirror()
    except EnvironmentProblem as problem:
        return Check(
            "image builder",
            False,
            str(problem).split(";")[0],
            "set EGRESS_DEBIAN_MIRROR to a Debian mirror URL",
        )
    return Check("image builder", True, f"debootstrap, Debian mirror {mirror}")


def _images(engine: docker.DockerClient) -> list[Check]:
    checks = []
    for image in ALL_IMAGES:
        state = image_is_current(engine, image)
        if state is None:
            checks.append(Check(f"image {image}", False, "missing", "egress images build"))
        elif not state:
            checks.append(
                Check(
                    f"image {image}",
                    False,
                    "older than this checkout's recipe",
                    "egress images build",
                )
            )
        else:
            checks.append(Check(f"image {image}", True, "present and current"))
    return checks


def _gateway_iptables(engine: docker.DockerClient) -> Check:
    name = "iptables in the gateway"
    if image_is_current(engine, GATEWAY_IMAGE) is None:
        return Check(name, False, f"{GATEWAY_IMAGE} is missing", "egress images build")
    try:
        with labelled_container(
            engine,
            f"{GATEWAY_IMAGE}:{TAG}",
            run_id=new_run_id("doctor"),
            role="doctor",
            what="the iptables check",
            entrypoint=["/bin/sh", "-c"],
            command=[
                (
                    "iptables -w -t nat -S OUTPUT >/dev/null && ip6tables -w -S OUTPUT >/dev/null"
                    " && iptables -w -N EGRESS_DOCTOR && echo ok"
                )
            ],
            cap_add=["NET_ADMIN"],
        ) as container:
            container.start()
            status = container.wait(timeout=60)
            output = container.logs().decode(errors="replace").strip()
    except (DockerException, EnvironmentProblem) as error:
        return Check(name, False, f"could not run the check: {error}", NO_ENGINE_FIX)
    if status.get("StatusCode") == 0:
        return Check(name, True, "iptables and ip6tables work with NET_ADMIN")
    return Check(
        name,
        False,
        output.splitlines()[-1] if output else "iptables failed",
        "the engine must grant NET_ADMIN and the kernel needs nf_tables or ip_tables "
        "(modprobe ip_tables ip6_tables; or run dockerd on a full VM, not in a container)",
    )
