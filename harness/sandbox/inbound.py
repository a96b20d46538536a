"""The scenario's client (formats.md "InboundClient"): a command run outside the firewall against the
workload, as `az webapp deploy` reaches Kudu from the internet (docs/kudu.md).

For a run with a client:
- a labelled network of the run's own is made before the gateway, and the gateway joins it. It
  is internal (Docker gives it no route out) and holds nothing but the gateway, the probe and the
  client: the client reaches the workload and nothing else;
- the workload starts in the background; a probe container on that network connects to the
  gateway's address there on the client's `port` until the workload accepts (bounded by
  LISTEN_TIMEOUT), so the wait is measured from where the client stands;
- the client runs on that network, each of its `hosts` resolving to the gateway's address there;
  its output goes to `run_dir/client.log` and, unprefixed, to the run's output;
- then the workload is stopped. The run's exit status is the client's: in Azure the deploy
  command is what fails.
The gateway's rules let the workload answer the client (replies of connections opened from
outside, docker/README.md); nothing the workload opens itself gets out that way. Every container
and the network are labelled and removed however the run ends.
"""

from __future__ import annotations

__all__ = [
    "CLIENT_LOG",
    "LISTEN_TIMEOUT",
    "InboundClient",
    "client_network",
    "require_client_image",
    "run_with_client",
]

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import docker
from docker.errors import NotFound

from harness.errors import EnvironmentProblem
from harness.runfolder import CLIENT_LOG
from harness.sandbox.containers import labelled_container, with_log_tail
from harness.sandbox.engine import local_image
from harness.sandbox.gateway import Gateway
from harness.sandbox.images import GATEWAY_IMAGE, TAG
from harness.sandbox.labels import create_network
from harness.sandbox.workload import (
    WORKLOAD_CAP_DROP,
    WORKLOAD_SECURITY_OPT,
    RunningWorkload,
    WorkloadResult,
    _run_to_end,
    _tar_of,
    start_workload,
)

LISTEN_TIMEOUT = 60.0  # seconds the workload has to accept the client's connections
# Runs in the probe container (the gateway image: python3 is there whatever the client's image).
_PROBE = """\
import socket, sys, time
host, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    try:
        socket.create_connection((host, port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
"""

OutputCallback = Callable[[str], None]


class InboundClient(Protocol):
    """What the sandbox needs of a client (harness.scenario.InboundClient has this shape)."""

    @property
    def image(self) -> str: ...
    @property
    def command(self) -> str | Sequence[str]: ...
    @property
    def port(self) -> int: ...
    @property
    def workdir(self) -> Path | None: ...
    @property
    def env(self) -> Sequence[tuple[str, str]]: ...
    @property
    def hosts(self) -> Sequence[str]: ...


def require_client_image(engine: docker.DockerClient, client: InboundClient) -> None:
    """Before anything starts: the client's image must be in the local engine."""
    local_image(engine, client.image, f"the image {client.image} of the client")


@contextmanager
def client_network(engine: docker.DockerClient, run_id: str) -> Iterator[str]:
    """The run's client network (internal: no route out); its name, removed on leaving."""
    network = create_network(engine, run_id, "client", internal=True)
    try:
        yield network.name
    finally:
        try:
            network.remove()
        except NotFound:
            pass


def run_with_client(
    gateway: Gateway,
    client: InboundClient,
    *,
    network: str,
    image: str,
    command: str | Sequence[str],
    run_dir: Path,
    workdir: Path | None = None,
    env: Mapping[str, str] | None = None,
    trust: Sequence[str] = (),
    user: str | None = None,
    timeout: float = 600.0,
    on_output: OutputCallback | None = None,
    engine: docker.DockerClient | None = None,
    listen_timeout: float = LISTEN_TIMEOUT,
) -> WorkloadResult:
    """Start the workload behind `gateway`, wait until it accepts on `client.port`, run the
    client on `network` to its end, stop the workload. `timeout` bounds all of it; the result
    is the client's exit status, with the time from the workload's start to the client's end.
    A workload that never accepts is an EnvironmentProblem naming the port and its output."""
    engine = engine or gateway.container.client
    lock = threading.Lock()

    def emit(line: str) -> None:
        # Two streams (workload, client) feed one output: one line at a time.
        if on_output is not None:
            with lock:
                on_output(line)

    address = gateway.addresses().get(network, "")
    if not address:
        raise EnvironmentProblem(f"the gateway has no address on the client network {network}")
    with start_workload(
        gateway,
        image=image,
        command=command,
        run_dir=run_dir,
        workdir=workdir,
        env=env,
        trust=trust,
        user=user,
        on_output=emit,
        engine=engine,
    ) as workload:
        _wait_listening(
            engine,
            gateway.run_id,
            network,
            address,
            client.port,
            workload,
            min(listen_timeout, timeout),
        )
        remaining = max(1.0, timeout - (time.monotonic() - workload.started))
        result = _run_client(
            engine, client, gateway.run_id, network, address, Path(run_dir), remaining, emit
        )
        duration = time.monotonic() - workload.started
    return WorkloadResult(
        exit_code=result.exit_code, timed_out=result.timed_out, duration_s=duration
    )


def _wait_listening(
    engine: docker.DockerClient,
    run_id: str,
    network: str,
    address: str,
    port: int,
    workload: RunningWorkload,
    timeout: float,
) -> None:
    with labelled_container(
        engine,
        f"{GATEWAY_IMAGE}:{TAG}",
        run_id=run_id,
        role="probe",
        what="the listening probe",
        entrypoint=["python3", "-c", _PROBE],
        command=[address, str(port), str(timeout)],
        network=network,
        user="65534:65534",
        cap_drop=["ALL"],
        security_opt=WORKLOAD_SECURITY_OPT,
        detach=True,
    ) as probe:
        probe.start()
        deadline = time.monotonic() + timeout + 5
        while True:
            probe.reload()
            if probe.status in ("exited", "dead"):
                if probe.attrs["State"].get("ExitCode") == 0:
                    return
                break
            code = workload.exit_code()
            if code is not None:
                raise with_log_tail(EnvironmentProblem(
                    f"the workload exited (status {code}) before it accepted connections on "
                    f"port {port}, so the client was not run; a workload with a client must "
                    f"keep serving on port {port} until stopped"
                ), workload.container, "the workload")  # fmt: skip
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        raise with_log_tail(EnvironmentProblem(
            f"the workload did not accept connections on port {port} within {timeout:.0f} s, "
            f"so the client was not run; it must listen on 0.0.0.0:{port} (not 127.0.0.1): "
            "the client reaches it at the gateway's address"
        ), workload.container, "the workload")  # fmt: skip


def _run_client(
    engine: docker.DockerClient,
    client: InboundClient,
    run_id: str,
    network: str,
    address: str,
    run_dir: Path,
    timeout: float,
    on_output: OutputCallback,
) -> WorkloadResult:
    command = client.command
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    with labelled_container(
        engine,
        client.image,
        run_id=run_id,
        role="client",
        what="the client",
        command=argv,
        network=network,
        extra_hosts={host: address for host in client.hosts},
        environment=dict(client.env),
        working_dir="/app" if client.workdir is not None else None,
        # Unprivileged, and no raw sockets: a forged packet could give the workload a reply
        # path to an address that never connected to it.
        cap_drop=WORKLOAD_CAP_DROP,
        security_opt=WORKLOAD_SECURITY_OPT,
        privileged=False,
        detach=True,
    ) as container:
        if client.workdir is not None:
            container.put_archive("/", _tar_of(Path(client.workdir)))
        return _run_to_end(container, run_dir / CLIENT_LOG, timeout, on_output)
