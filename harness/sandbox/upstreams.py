"""Simulated public sites ("upstreams") for one run: containers that answer HTTPS and HTTP as
named hosts (the SCM site of an App Service, the Oryx CDN), reached only through the gateway.

For a run with upstreams:
- a test CA and one leaf certificate per upstream (every host it answers) are made in
  `run_dir/upstreams/` (never in an image); the workload trusts that CA (as it would trust the
  public CA of the real site);
- the upstreams start on a labelled network of their own, before the gateway, and each must
  print its `{"event": "listening"}` line;
- the gateway joins that network and its DNS answers each upstream host with the upstream's IP
  there (the `hosts` overrides), so the firewall decides on the real host names;
- afterwards each upstream's output is kept as `run_dir/upstreams/<name>.log` (one JSON object
  per request answered) and containers and network are removed, however the run ended.
"""

from __future__ import annotations

__all__ = [
    "CA_FILE",
    "UPSTREAMS_DIR",
    "RunningUpstreams",
    "Upstream",
    "make_certificates",
    "read_requests",
    "start_upstreams",
]

import datetime
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import docker
from docker.errors import DockerException, NotFound

from harness.errors import EnvironmentProblem
from harness.runfolder import UPSTREAMS as UPSTREAMS_DIR
from harness.sandbox.containers import labelled_container, with_log_tail
from harness.sandbox.engine import local_image
from harness.sandbox.labels import create_network

CA_FILE = "ca.pem"
CERT_MOUNT = "/egress/upstream"
LISTENING = b'"event": "listening"'


class Upstream(Protocol):
    """What the sandbox needs of an upstream (harness.scenario.Upstream has this shape)."""

    @property
    def name(self) -> str: ...
    @property
    def image(self) -> str: ...
    @property
    def hosts(self) -> Sequence[str]: ...
    @property
    def command(self) -> str | Sequence[str] | None: ...
    @property
    def env(self) -> Sequence[tuple[str, str]]: ...


@dataclass
class RunningUpstreams:
    """Started upstreams: what the gateway and the workload need to reach them."""

    hosts: dict[str, str] = field(default_factory=dict)  # host name -> IP, for the gateway
    networks: list[str] = field(default_factory=list)  # for the gateway to join
    trust: list[str] = field(default_factory=list)  # the test CA's PEM path, for the workload
    addresses: dict[str, str] = field(default_factory=dict)  # upstream name -> IP
    containers: dict[str, docker.models.containers.Container] = field(default_factory=dict)


def make_certificates(folder: Path, upstreams: Sequence[Upstream]) -> Path:
    """A test CA in `folder/ca.pem` and `folder/<name>/{cert,key}.pem` per upstream."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    valid_from, valid_to = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress-harness test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    ca_path = folder / CA_FILE
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for upstream in upstreams:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, upstream.hosts[0][:64])])
            )
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from)
            .not_valid_after(valid_to)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(host) for host in upstream.hosts]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        leaf = folder / upstream.name
        leaf.mkdir(exist_ok=True)
        (leaf / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path = leaf / "key.pem"
        key_path.touch(mode=0o600)
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return ca_path


@contextmanager
def start_upstreams(
    upstreams: Sequence[Upstream],
    *,
    run_dir: Path,
    run_id: str,
    engine: docker.DockerClient | None = None,
    ready_timeout: float = 20.0,
) -> Iterator[RunningUpstreams]:
    """Start every upstream and yield how to reach them; all removed however the block ends."""
    if not upstreams:
        yield RunningUpstreams()
        return
    from harness.sandbox.engine import client as engine_client

    engine = engine or engine_client()
    for upstream in upstreams:
        local_image(
            engine, upstream.image, f"the image {upstream.image} of upstream {upstream.name}"
        )
    folder = Path(run_dir).resolve() / UPSTREAMS_DIR
    ca_path = make_certificates(folder, upstreams)
    running = RunningUpstreams(trust=[str(ca_path)])
    with ExitStack() as cleanup:
        network = create_network(engine, run_id, "upstreams")
        cleanup.callback(_remove_network, network)
        running.networks.append(network.name)
        for upstream in upstreams:
            command = upstream.command
            log_path = folder / f"{upstream.name}.log"
            container = cleanup.enter_context(labelled_container(
                engine,
                upstream.image,
                run_id=run_id,
                role="upstream",
                instance=upstream.name,
                what=f"upstream {upstream.name}",
                before_remove=lambda container, path=log_path: _keep_log(container, path),
                command=_argv(command),
                network=network.name,
                environment=_env_items(upstream.env),
                volumes={str(folder / upstream.name): {"bind": CERT_MOUNT, "mode": "ro"}},
                detach=True,
            ))  # fmt: skip
            running.containers[upstream.name] = container
            container.start()
        for upstream in upstreams:
            address = _wait_listening(running.containers[upstream.name], upstream, ready_timeout)
            running.addresses[upstream.name] = address
            for host in upstream.hosts:
                running.hosts[host] = address
        yield running


def read_requests(run_dir: Path, name: str) -> list[dict]:
    """The requests upstream `name` answered in a finished run (from its kept log)."""
    path = Path(run_dir) / UPSTREAMS_DIR / f"{name}.log"
    events = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "request":
                events.append(event)
    return events


def _wait_listening(container, upstream: Upstream, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        if LISTENING in container.logs():
            networks = container.attrs["NetworkSettings"]["Networks"]
            address = next((info.get("IPAddress") for info in networks.values()), "")
            if address:
                return address
        if container.status in ("exited", "dead") or time.monotonic() > deadline:
            state = "stopped" if container.status in ("exited", "dead") else "is not listening"
            raise with_log_tail(EnvironmentProblem(
                f"upstream {upstream.name} ({upstream.image}) {state} after {timeout:.0f} s; "
                'an upstream must print a JSON line with "event": "listening" once it '
                "answers (docker/upstreams/upstream_server.py does)"
            ), container, f"upstream {upstream.name}")  # fmt: skip
        time.sleep(0.05)


def _keep_log(container, log_path: Path) -> None:
    try:
        log_path.write_bytes(container.logs())
    except (DockerException, OSError):
        pass


def _remove_network(network) -> None:
    try:
        network.remove()
    except NotFound:
        pass


def _argv(command: str | Sequence[str] | None) -> list[str] | None:
    if command is None:
        return None  # the image's own CMD
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


def _env_items(env: Mapping[str, str] | Sequence[tuple[str, str]]) -> dict[str, str]:
    return dict(env.items()) if isinstance(env, Mapping) else dict(env)
