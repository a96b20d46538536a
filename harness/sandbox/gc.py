"""Removing every labelled leftover: containers first (they hold networks), then the rest."""

from __future__ import annotations

__all__ = ["gc", "leftovers"]

import docker
from docker.errors import APIError, NotFound

from harness.sandbox.engine import client as engine_client
from harness.sandbox.labels import selector


def leftovers(engine: docker.DockerClient, run_id: str | None = None) -> list[str]:
    """Names of the labelled containers, networks and volumes (of one run, when given)."""
    filters = selector(run_id)
    found = [f"container {c.name}" for c in engine.containers.list(all=True, filters=filters)]
    found += [f"network {n.name}" for n in engine.networks.list(filters=filters)]
    found += [f"volume {v.name}" for v in engine.volumes.list(filters=filters)]
    return found


def gc(run_id: str | None = None, engine: docker.DockerClient | None = None) -> int:
    """Remove labelled containers, networks and volumes (images stay: they are the build cache).
    Returns how many were removed. Without `run_id` this includes runs still going."""
    engine = engine or engine_client()
    filters = selector(run_id)
    removed = 0
    groups = (
        engine.containers.list(all=True, filters=filters),
        engine.networks.list(filters=filters),
        engine.volumes.list(filters=filters),
    )
    for group in groups:
        for resource in group:
            try:
                if isinstance(resource, docker.models.containers.Container):
                    resource.remove(force=True, v=True)
                else:
                    resource.remove()
                removed += 1
            except NotFound:
                pass
            except APIError as error:
                if "in progress" not in str(error):
                    raise
    return removed
