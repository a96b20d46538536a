"""A tiny stand-in for docker-py's `DockerClient`, enough for harness/sandbox/ to run against it
without an engine: containers (create, get, list; start, wait, logs, kill, stop, remove, reload,
put_archive, get_archive), networks, images, volumes and the low-level `api.pull`.

A test scripts what a container does with `FakeEngine(behaviour=...)`: a function called at the
container's start that may set its log, its exit code and status. Every call that matters is
kept in `engine.calls` so a test can say what happened in which order."""

from __future__ import annotations

import builtins
import io
import itertools
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from docker.errors import APIError, ImageNotFound, NotFound

_ids = itertools.count(1)


@dataclass
class FakeContainer:
    engine: FakeEngine
    image: str
    name: str | None
    labels: dict[str, str]
    options: dict[str, Any]
    id: str = field(default_factory=lambda: f"c{next(_ids):04d}")
    status: str = "created"
    log: bytes = b""
    exit_code: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    networks: list[str] = field(default_factory=list)

    @property
    def attrs(self) -> dict:
        return {
            "State": {"ExitCode": self.exit_code, "Status": self.status},
            "NetworkSettings": {"Networks": {n: {"IPAddress": "172.30.0.2"} for n in self.networks}},
        }

    @property
    def client(self) -> FakeEngine:
        return self.engine

    def _alive(self) -> None:
        if self not in self.engine.containers.made:
            raise NotFound(f"No such container: {self.name or self.id}")

    def start(self) -> None:
        self._alive()
        self.engine.calls.append(("start", self.name))
        self.status = "running"
        if self.engine.behaviour is not None:
            self.engine.behaviour(self)

    def reload(self) -> None:
        self._alive()

    def wait(self, timeout: float | None = None) -> dict:
        self._alive()
        if self.status == "running":
            self.status = "exited"
        return {"StatusCode": self.exit_code}

    def logs(self, tail: int | str = "all", stream: bool = False, **_: Any):
        self._alive()
        self.engine.calls.append(("logs", self.name))
        text = self.log
        if tail != "all":
            text = b"".join(text.splitlines(keepends=True)[-int(tail):]) if tail else b""
        return iter([text]) if stream else text

    def kill(self, signal: str | None = None) -> None:
        self._alive()
        self.engine.calls.append(("kill", self.name, signal))
        self.status = "exited"

    def stop(self, timeout: int = 10) -> None:
        self._alive()
        self.engine.calls.append(("stop", self.name))
        self.status = "exited"

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.engine.calls.append(("remove", self.name))
        failure = self.engine.remove_failures.pop(0) if self.engine.remove_failures else None
        if failure is not None:
            raise failure
        self._alive()
        self.engine.containers.made.remove(self)

    def put_archive(self, path: str, data: bytes) -> bool:
        self._alive()
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive.getmembers():
                if member.isfile():
                    extracted = archive.extractfile(member)
                    self.files[f"{path.rstrip('/')}/{member.name}"] = extracted.read() if extracted else b""
        return True

    def get_archive(self, path: str):
        self._alive()
        if path not in self.files:
            raise NotFound(path)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo(path.rsplit("/", 1)[-1])
            info.size = len(self.files[path])
            archive.addfile(info, io.BytesIO(self.files[path]))
        return iter([buffer.getvalue()]), {}


class _Containers:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.made: list[FakeContainer] = []

    def create(self, image: str, command=None, *, name: str | None = None,
               labels: dict | None = None, **options: Any) -> FakeContainer:  # fmt: skip
        self.engine.calls.append(("create", name))
        if name is not None and any(c.name == name for c in self.made):
            raise APIError(f"409 Conflict: the container name {name!r} is already in use")
        container = FakeContainer(self.engine, image, name, dict(labels or {}),
                                  {"command": command, **options})  # fmt: skip
        self.made.append(container)
        if options.get("network"):
            container.networks.append(options["network"])
        if self.engine.create_interrupts:
            self.engine.create_interrupts -= 1
            raise KeyboardInterrupt  # after the engine made it, before the answer arrived
        return container

    def get(self, name_or_id: str) -> FakeContainer:
        for container in self.made:
            if name_or_id in (container.name, container.id):
                return container
        raise NotFound(f"No such container: {name_or_id}")

    def list(self, all: bool = False, filters: dict | None = None) -> list[FakeContainer]:
        wanted = (filters or {}).get("label", [])
        return [c for c in self.made if all or c.status == "running"
                if builtins.all(_has(c.labels, w) for w in wanted)]  # fmt: skip


def _has(labels: dict[str, str], wanted: str) -> bool:
    key, _, value = wanted.partition("=")
    return key in labels and (not value or labels[key] == value)


@dataclass
class FakeNetwork:
    engine: FakeEngine
    name: str
    labels: dict[str, str]
    options: dict[str, Any]

    def connect(self, container: FakeContainer) -> None:
        container.networks.append(self.name)

    def remove(self) -> None:
        if self not in self.engine.networks.made:
            raise NotFound(self.name)
        self.engine.networks.made.remove(self)


class _Networks:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.made: list[FakeNetwork] = []

    def create(self, name: str, labels: dict | None = None, **options: Any) -> FakeNetwork:
        network = FakeNetwork(self.engine, name, dict(labels or {}), options)
        self.made.append(network)
        return network

    def get(self, name: str) -> FakeNetwork:
        for network in self.made:
            if network.name == name:
                return network
        raise NotFound(name)

    def list(self, filters: dict | None = None) -> list[FakeNetwork]:
        wanted = (filters or {}).get("label", [])
        return [n for n in self.made if all(_has(n.labels, w) for w in wanted)]


@dataclass
class FakeImage:
    id: str
    attrs: dict = field(default_factory=lambda: {"Config": {}})
    labels: dict = field(default_factory=dict)


class _Images:
    def __init__(self, engine: FakeEngine, local: set[str]) -> None:
        self.engine, self.local = engine, local

    def get(self, image: str) -> FakeImage:
        if image not in self.local and f"{image}:latest" not in self.local:
            raise ImageNotFound(image)
        return FakeImage(id=f"sha256:{abs(hash(image)):x}")


class _Volumes:
    def list(self, filters: dict | None = None) -> list:
        return []


class _Api:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def pull(self, repository: str, tag: str | None = None, stream: bool = False,
             decode: bool = False):  # fmt: skip
        self.engine.pulled.append((repository, tag))
        if self.engine.pull_error is not None:
            raise self.engine.pull_error
        yield from self.engine.pull_answer
        if not any("error" in chunk for chunk in self.engine.pull_answer):
            self.engine.images.local.add(f"{repository}:{tag}")


class FakeEngine:
    """`docker.DockerClient`'s shape; `local` holds the images the engine has."""

    def __init__(self, local=(), *, behaviour: Callable[[FakeContainer], None] | None = None,
                 pull_answer=None, pull_error: Exception | None = None) -> None:  # fmt: skip
        self.calls: list[tuple] = []
        self.behaviour = behaviour
        self.containers = _Containers(self)
        self.networks = _Networks(self)
        self.images = _Images(self, set(local))
        self.volumes = _Volumes()
        self.api = _Api(self)
        self.pulled: list[tuple[str, str | None]] = []
        self.pull_answer = pull_answer or [{"status": "Pulling fs layer", "id": "a1"},
                                           {"status": "Pull complete", "id": "a1"}]  # fmt: skip
        self.pull_error = pull_error
        self.create_interrupts = 0  # how many creates Ctrl-C interrupts after the engine made them
        self.remove_failures: list[BaseException | None] = []  # raised by the next removes

    def ping(self) -> bool:
        return True

    def names(self) -> list[str | None]:
        """The containers that exist now."""
        return [container.name for container in self.containers.made]
