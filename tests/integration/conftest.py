"""Fixtures for the Docker tests: the engine (a clear failure when there is none, never a skip),
the images, the canary containers, and a final check that nothing labelled is left behind."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.errors import EnvironmentProblem

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def engine():
    from harness.sandbox.engine import client

    try:
        return client()
    except EnvironmentProblem as problem:
        pytest.fail(f"the Docker tests need a Docker engine: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def images(engine) -> None:
    from harness.sandbox import build_images

    build_images(lambda line: print(f"[images] {line}"))


def _labelled_leftovers() -> list[str] | None:
    from harness.sandbox import leftovers
    from harness.sandbox.engine import client

    try:
        return leftovers(client(timeout=30))
    except EnvironmentProblem:
        return None  # the engine fixture has already failed every test with the reason


@pytest.fixture(scope="session", autouse=True)
def nothing_labelled_left_behind(request) -> Iterator[None]:
    yield
    if hasattr(request.config, "workerinput"):
        return  # under xdist the other workers' runs are still going: the controller checks
    left = _labelled_leftovers()
    assert not left, f"labelled Docker resources left behind: {left}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under xdist, the controller checks once every worker is done."""
    if hasattr(session.config, "workerinput") or not session.config.pluginmanager.has_plugin(
        "dsession"
    ):
        return
    left = _labelled_leftovers()
    if left:
        print(f"\nlabelled Docker resources left behind: {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def addon_root() -> Path:
    """The checkout whose addon the gateway loads; EGRESS_TEST_ADDON_ROOT points the plumbing
    tests at another one (a stand-in addon while the real one is being written)."""
    from harness.sandbox.gateway import source_root

    return Path(os.environ.get("EGRESS_TEST_ADDON_ROOT") or source_root())


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    return folder


def _write_policy(run_dir: Path, allowed: list[str]) -> Path:
    path = run_dir / "policy.yaml"
    path.write_text("allow: " + json.dumps(allowed) + "\n")
    return path


def _read_events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def write_policy():
    """write_policy(run_dir, ["a.test", ...]): the shorthand allowlist policy as policy.yaml."""
    return _write_policy


@pytest.fixture(scope="session")
def read_events():
    """read_events(run_dir): the recording's events.jsonl as dicts."""
    return _read_events


@pytest.fixture(scope="session")
def scripts() -> Path:
    """The folder holding canary_listener.py and probes.py."""
    return HERE


@dataclass
class Listener:
    container: object
    ipv4: str
    ipv6: str

    def events(self) -> list[dict]:
        time.sleep(0.5)  # let the listener log what is in flight
        lines = self.container.logs().decode(errors="replace").splitlines()
        events = [json.loads(line) for line in lines if line.startswith("{")]
        return [event for event in events if event.get("event") != "listening"]


@dataclass
class CanaryNet:
    network: str
    canary: Listener  # must never hear from a workload
    decoy: Listener  # what `allowed.test` resolves to: allowed traffic lands here


@pytest.fixture(scope="module")
def canary_net(engine, images) -> Iterator[CanaryNet]:
    """A labelled IPv4+IPv6 network with two listeners: the canary and the decoy."""
    from harness.sandbox import PYTHON_IMAGE, labels, new_run_id
    from harness.sandbox.labels import create_network

    run_id = new_run_id("canary")
    # A random /64 of a ULA prefix of our own: parallel workers each get their own.
    subnet6 = f"fd5e:6e57:ca4a:{secrets.randbelow(0xFFFF) + 1:x}::/64"
    network = create_network(engine, run_id, "canary-net", ipv6_subnet=subnet6)
    containers = []
    try:
        listeners = []
        for role in ("canary", "decoy"):
            container = engine.containers.create(
                PYTHON_IMAGE,
                command=["python3", "-u", "/canary_listener.py", role],
                name=f"egress-{run_id}-{role}",
                labels=labels(run_id, role),
                network=network.name,
            )
            containers.append(container)
            container.put_archive("/", _tar_of_file(HERE / "canary_listener.py"))
            container.start()
            listeners.append(_wait_listening(container, network.name))
        yield CanaryNet(network=network.name, canary=listeners[0], decoy=listeners[1])
    finally:
        for container in containers:
            container.remove(force=True)
        network.remove()


def _wait_listening(container, network: str) -> Listener:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if b'"listening"' in container.logs():
            container.reload()
            info = container.attrs["NetworkSettings"]["Networks"][network]
            return Listener(container, info["IPAddress"], info["GlobalIPv6Address"])
        time.sleep(0.1)
    raise AssertionError(f"listener never started: {container.logs().decode()}")


def _tar_of_file(path: Path) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(str(path), arcname=path.name)
    return buffer.getvalue()
