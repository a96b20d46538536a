"""Reaching the Docker engine, with a message that says what to do when it does not answer."""

from __future__ import annotations

__all__ = ["NO_ENGINE_FIX", "client"]

import docker
from docker.errors import DockerException

from harness.errors import EnvironmentProblem

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
