"""Reaching the Docker engine, with a message that says what to do when it does not answer."""

from __future__ import annotations

__all__ = ["NO_ENGINE_FIX", "client", "local_image"]

import docker
from docker.errors import DockerException, ImageNotFound
from docker.models.images import Image

from harness.errors import EnvironmentProblem, ImageMissing

NO_ENGINE_FIX = (
    "run the command through bin/egress (it starts a Docker engine when none answers), "
    "or start one yourself (`sudo systemctl start docker`), or point DOCKER_HOST at one"
)


def client(timeout: int = 120) -> docker.DockerClient:
    """A client that has answered a ping; EnvironmentProblem when no engine answers."""
    try:
        engine = docker.from_env(timeout=timeout)
        engine.ping()
    except DockerException as error:
        raise EnvironmentProblem(f"no Docker engine answers ({error}); {NO_ENGINE_FIX}") from None
    return engine


def local_image(engine: docker.DockerClient, image: str, what: str | None = None) -> Image:
    """`image` from the local engine (nothing is pulled); ImageMissing naming it, its role
    (`what`, default "the workload image IMAGE") and how to get it."""
    try:
        return engine.images.get(image)
    except ImageNotFound:
        fix = (
            "build it with `egress images build`"
            if image.startswith("egress/")
            else "build or load it into the local engine (no registry is pulled from)"
        )
        raise ImageMissing(image, fix, what) from None
