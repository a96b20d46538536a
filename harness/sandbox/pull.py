"""Images from registries: `pull: missing | always | never` for workloads, steps, clients and
upstreams (formats.md "Images from registries").

- `missing` (the default): use the local image; pull it only when the engine has none.
- `always`: pull before every run (a tag that moves, such as `:latest`), falling back to
  nothing: a failed pull stops the run even when an older copy is here.
- `never`: the local engine only, as before this existed.

The project's own images (`egress/...`) are built by `egress images build`, never pulled: a
registry image of that name would be someone else's. A pull that fails (no route, refused,
unknown image, denied) raises `ImageMissing` naming the image, the registry's answer and
`docker load` as the offline route, so `if_image_missing: skip` reports "not run" with that
reason. The engine answers a pull it cannot make within seconds (it resolves the registry
first); `PULL_TIMEOUT` bounds a registry that accepts and then stalls.
"""

from __future__ import annotations

__all__ = ["OWN_PREFIX", "PULL_CHOICES", "PULL_TIMEOUT", "ensure_image", "pull_image"]

import time
from collections.abc import Callable

import docker
from docker.errors import APIError, DockerException, ImageNotFound
from docker.models.images import Image

from harness.errors import ImageMissing
from harness.sandbox.engine import local_image

PULL_CHOICES = ("missing", "always", "never")
OWN_PREFIX = "egress/"
# Seconds without any progress from the engine before a pull is given up (the engine client's
# read timeout, harness.sandbox.engine.client).
PULL_TIMEOUT = 120

Progress = Callable[[str], None]


def _offline_route(image: str) -> str:
    return (
        f"on a machine that reaches the registry run `docker pull {image} && docker save "
        f"{image} -o image.tar`, then here `docker load -i image.tar`"
    )


def _reference(image: str) -> tuple[str, str]:
    """`repository`, `tag` of an image reference (a digest stays in the repository part)."""
    if "@" in image:
        return image, ""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # `host:5000/repo` has no tag
        return image, "latest"
    return name, tag


def pull_image(
    engine: docker.DockerClient, image: str, progress: Progress | None = None,
    what: str | None = None,
) -> Image:  # fmt: skip
    """Pull `image`, one progress line per layer state change (at most every second); an
    ImageMissing with the registry's answer when the pull fails."""
    repository, tag = _reference(image)
    say = progress or (lambda _line: None)
    say(f"pulling {image}")
    started = time.monotonic()
    last_line = 0.0
    states: dict[str, str] = {}
    try:
        # The engine's client times out a read after its own timeout (120 s by default): a
        # registry that accepts and then stalls ends the pull with an OSError below.
        for chunk in engine.api.pull(repository, tag=tag or None, stream=True, decode=True):
            if "error" in chunk:
                raise _failed(image, str(chunk.get("error") or chunk), what)
            layer, status = chunk.get("id"), chunk.get("status", "")
            if layer and status:
                states[layer] = status
            now = time.monotonic()
            if now - last_line >= 1.0:
                last_line = now
                done = sum(1 for state in states.values() if state in ("Pull complete", "Already exists"))
                say(f"pulling {image}: {done}/{len(states)} layers, {now - started:.0f} s")
    except APIError as error:
        raise _failed(image, str(error.explanation or error), what) from None
    except DockerException as error:
        raise _failed(image, str(error), what) from None
    except OSError as error:  # the engine's socket timed out: the registry stalled
        raise _failed(image, f"no progress for {PULL_TIMEOUT} s ({error})", what) from None
    try:
        found = engine.images.get(f"{repository}:{tag}" if tag else repository)
    except ImageNotFound:
        raise _failed(image, "the engine reported no error but has no such image", what) from None
    say(f"pulled {image} in {time.monotonic() - started:.1f} s")
    return found


def _failed(image: str, answer: str, what: str | None) -> ImageMissing:
    missing = ImageMissing(
        image,
        f"pulling it failed: {answer.strip()}; {_offline_route(image)}",
        what or f"the image {image}",
    )
    missing.reason = f"pull of {image} failed: {answer.strip()}"  # type: ignore[attr-defined]
    return missing


def ensure_image(
    engine: docker.DockerClient,
    image: str,
    pull: str = "missing",
    *,
    what: str | None = None,
    progress: Progress | None = None,
) -> Image:
    """The image, pulled first when `pull` says so (module docstring); the project's own
    images are never pulled."""
    if image.startswith(OWN_PREFIX) or pull == "never":
        return local_image(engine, image, what)
    if pull == "missing":
        try:
            return engine.images.get(image)
        except ImageNotFound:
            pass
    return pull_image(engine, image, progress, what)


def ensure_run_images(engine: docker.DockerClient, spec, progress: Progress | None = None) -> None:
    """Every image a run names (`harness.sandbox.runner.RunSpec`: the workload, the client, the
    upstreams, each step and its client), pulled as each one's `pull` says, before anything
    starts: a missing image costs no gateway start-up."""
    wanted: list[tuple[str, str, str]] = []
    if not spec.steps:
        wanted.append((spec.image, spec.pull, f"the workload image {spec.image}"))
    if spec.client is not None:
        wanted.append((spec.client.image, getattr(spec.client, "pull", "missing"),
                       f"the image {spec.client.image} of the client"))  # fmt: skip
    for upstream in spec.upstreams:
        wanted.append((upstream.image, getattr(upstream, "pull", "missing"),
                       f"the image {upstream.image} of upstream {upstream.name}"))  # fmt: skip
    for step in spec.steps:
        wanted.append((step.image, step.pull, f"the image {step.image} of step {step.name}"))
        if step.client is not None:
            wanted.append((step.client.image, getattr(step.client, "pull", "missing"),
                           f"the image {step.client.image} of step {step.name}'s client"))  # fmt: skip
    seen: set[str] = set()
    for image, pull, what in wanted:
        if image in seen:
            continue
        seen.add(image)
        ensure_image(engine, image, pull, what=what, progress=progress or _stderr)


def _stderr(line: str) -> None:
    import sys

    print(f"egress: {line}", file=sys.stderr, flush=True)


def ensure_workload_image(image: str, pull: str = "missing") -> None:
    """For callers outside a run (the derived-value probe): the image, pulled if it says so."""
    from harness.sandbox.engine import client as engine_client

    ensure_image(engine_client(), image, pull, what=f"the workload image {image}", progress=_stderr)


def image_available(image: str, pull: str = "missing") -> tuple[bool, str]:
    """Whether `image` is in the engine or could be pulled now (as `pull` allows), and why not:
    for a choice between two paths (the real Oryx, or its requests without it)."""
    from harness.sandbox.engine import client as engine_client

    engine = engine_client()
    try:
        engine.images.get(image)
        return True, "in the local engine"
    except ImageNotFound:
        pass
    if image.startswith(OWN_PREFIX):
        return False, "not in the local engine (the project's images are built, never pulled)"
    if pull == "never":
        return False, "not in the local engine (pull: never)"
    try:
        pull_image(engine, image, _stderr)
    except ImageMissing as missing:
        return False, getattr(missing, "reason", str(missing))
    return True, "pulled"
