"""The workload container W: runs in the gateway's network namespace, stripped of every
capability that could change or bypass the gateway's rules.
"""

from __future__ import annotations

__all__ = [
    "HOST_TRUST",
    "SYSTEM_CA_STORE",
    "TRUST_ENV_VARS",
    "TRUST_PATH",
    "WORKLOAD_CAP_DROP",
    "WORKLOAD_LOG",
    "RunningWorkload",
    "WorkloadResult",
    "run_workload",
    "start_workload",
]

import codecs
import io
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import requests
from docker.errors import DockerException, NotFound

from harness.errors import InputError
from harness.runfolder import WORKLOAD_LOG
from harness.sandbox.containers import labelled_container
from harness.sandbox.engine import local_image
from harness.sandbox.gateway import GATEWAY_UID, Gateway
from harness.sandbox.images import HOST_CA_BUNDLE

# NET_ADMIN/NET_RAW: no changing or sidestepping the rules; SETUID/SETGID: root in W could
# otherwise become the gateway's uid, which the rules exempt (measured: sandbox.md).
WORKLOAD_CAP_DROP = ["NET_ADMIN", "NET_RAW", "SETUID", "SETGID"]
WORKLOAD_SECURITY_OPT = ["no-new-privileges"]
TRUST_PATH = "/etc/egress/trust.pem"
SYSTEM_CA_STORE = "/etc/ssl/certs/ca-certificates.crt"
TRUST_ENV_VARS = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
)
HOST_TRUST = "host"

OutputCallback = Callable[[str], None]


@dataclass(frozen=True)
class WorkloadResult:
    exit_code: int
    timed_out: bool
    duration_s: float


def run_workload(
    gateway: Gateway,
    *,
    image: str,
    command: str | Sequence[str],
    run_dir: Path,
    workdir: Path | None = None,
    env: Mapping[str, str] | None = None,
    trust: Sequence[str] = (),
    timeout: float = 600.0,
    on_output: OutputCallback | None = None,
    user: str | None = None,
    privileged: bool = False,
    entrypoint: Sequence[str] | None = None,
    engine: docker.DockerClient | None = None,
    role: str = "workload",
) -> WorkloadResult:
    """Run `command` in `image` behind `gateway` until it exits or `timeout` passes.

    A string command runs under `/bin/sh -c`. `workdir` is copied into /app. `trust` lists CA
    bundles ("host" or PEM paths) the workload trusts besides its image's own store. Each output
    line goes to `on_output` and to run_dir/workload.log. The container is removed however this
    ends (exit, timeout, error, Ctrl-C).
    """
    with _workload_container(
        gateway,
        image=image,
        command=command,
        workdir=workdir,
        env=env,
        trust=trust,
        user=user,
        privileged=privileged,
        entrypoint=entrypoint,
        engine=engine,
        role=role,
    ) as container:
        return _run_to_end(container, Path(run_dir) / WORKLOAD_LOG, timeout, on_output)


@contextmanager
def prepared_workload(
    gateway: Gateway,
    *,
    image: str,
    command: str | Sequence[str],
    workdir: Path | None = None,
    env: Mapping[str, str] | None = None,
    trust: Sequence[str] = (),
    user: str | None = None,
    engine: docker.DockerClient | None = None,
) -> Iterator[docker.models.containers.Container]:
    """`run_workload`'s container, created and filled (app, trust bundle) but not started; the
    runner makes it while the gateway is still starting (creating a container on
    `container:<G>` before G runs is fine; starting it is not). Removed on leaving the block."""
    with _workload_container(gateway, image=image, command=command, workdir=workdir, env=env,
                             trust=trust, user=user, engine=engine) as container:  # fmt: skip
        yield container


def run_prepared(
    container: docker.models.containers.Container,
    run_dir: Path,
    timeout: float,
    on_output: OutputCallback | None = None,
) -> WorkloadResult:
    """Start a `prepared_workload` and wait for its end, as `run_workload` does."""
    return _run_to_end(container, Path(run_dir) / WORKLOAD_LOG, timeout, on_output)


@dataclass
class RunningWorkload:
    """A workload started in the background (a server a client outside connects to)."""

    container: docker.models.containers.Container
    started: float  # time.monotonic() at its start

    def exit_code(self) -> int | None:
        """Its exit status once it has stopped, else None."""
        try:
            self.container.reload()
        except NotFound:
            return -1
        if self.container.status in ("exited", "dead"):
            return int(self.container.attrs["State"].get("ExitCode", -1))
        return None

    def output_tail(self, lines: int = 20) -> str:
        try:
            return self.container.logs(tail=lines).decode(errors="replace")
        except DockerException as error:
            return f"(no output: {error})"


@contextmanager
def start_workload(
    gateway: Gateway,
    *,
    image: str,
    command: str | Sequence[str],
    run_dir: Path,
    workdir: Path | None = None,
    env: Mapping[str, str] | None = None,
    trust: Sequence[str] = (),
    on_output: OutputCallback | None = None,
    user: str | None = None,
    engine: docker.DockerClient | None = None,
    stop_timeout: int = 5,
) -> Iterator[RunningWorkload]:
    """`run_workload`'s container, started and yielded while it runs; on leaving the block it
    is stopped (SIGTERM, SIGKILL after `stop_timeout`), its output kept and it is removed."""
    with (
        _workload_container(
            gateway,
            image=image,
            command=command,
            workdir=workdir,
            env=env,
            trust=trust,
            user=user,
            engine=engine,
            # Docker's init as PID 1 passes the stop signal on: a shell running the command
            # (`/bin/sh -c`) would ignore it, and every stop would wait `stop_timeout`.
            init=True,
        ) as container,
        (Path(run_dir) / WORKLOAD_LOG).open("a", encoding="utf-8") as log,
    ):
        container.start()
        running = RunningWorkload(container, time.monotonic())
        reader = threading.Thread(
            target=_copy_output, args=(container, log, on_output), daemon=True
        )
        reader.start()
        try:
            yield running
        finally:
            try:
                # Whole seconds: the engine refuses `t=5.0` (500), and the workload would run on.
                container.stop(timeout=int(stop_timeout))
            except DockerException:
                try:
                    container.kill()
                except DockerException:
                    pass
            reader.join(timeout=10)


@contextmanager
def _workload_container(
    gateway: Gateway,
    *,
    image: str,
    command: str | Sequence[str],
    workdir: Path | None = None,
    env: Mapping[str, str] | None = None,
    trust: Sequence[str] = (),
    user: str | None = None,
    privileged: bool = False,
    entrypoint: Sequence[str] | None = None,
    engine: docker.DockerClient | None = None,
    role: str = "workload",
    init: bool = False,
) -> Iterator[docker.models.containers.Container]:
    """The workload's container in the gateway's namespace, created and filled but not started;
    removed however the block ends."""
    if privileged:
        raise InputError(
            "a workload never runs privileged: it could rewrite the gateway's rules",
            key_path="workload.privileged",
            fix="remove `privileged`",
        )
    _refuse_gateway_user(user, "workload.user")
    engine = engine or gateway.container.client
    image_config = local_image(engine, image).attrs.get("Config") or {}
    if user is None:
        _refuse_gateway_user(image_config.get("User") or None, f"image {image}: USER")
    sources = _trust_sources(trust)
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    environment = {name: TRUST_PATH for name in TRUST_ENV_VARS} if sources else {}
    environment.update(env or {})

    with _trust_bundle_file(bool(sources)) as bundle:
        volumes: list[str] = []
        if bundle is not None:
            # Over the system store too: clients that ignore the variables read that file.
            volumes = [f"{bundle}:{TRUST_PATH}:ro", f"{bundle}:{SYSTEM_CA_STORE}:ro"]
        with labelled_container(
            engine,
            image,
            run_id=gateway.run_id,
            role=role,
            what=f"the {role}",
            command=argv,
            entrypoint=list(entrypoint) if entrypoint is not None else None,
            network_mode=f"container:{gateway.id}",
            cap_drop=WORKLOAD_CAP_DROP,
            security_opt=WORKLOAD_SECURITY_OPT,
            privileged=False,
            user=user or "",
            environment=environment,
            working_dir="/app" if workdir is not None else None,
            volumes=volumes,
            init=init or None,
            detach=True,
        ) as container:
            if user and not user.split(":")[0].isdigit():
                _refuse_named_gateway_user(container, user)
            if bundle is not None:
                own_store = _image_ca_store(engine, image, gateway.run_id)
                combined = own_store + "".join(_read_pem(source) for source in sources)
                bundle.write_text(combined)
            if workdir is not None:
                container.put_archive("/", _tar_of(Path(workdir)))
            yield container


def _run_to_end(
    container: docker.models.containers.Container,
    log_path: Path,
    timeout: float,
    on_output: OutputCallback | None,
) -> WorkloadResult:
    started = time.monotonic()
    container.start()
    with log_path.open("a", encoding="utf-8") as log:
        reader = threading.Thread(
            target=_copy_output, args=(container, log, on_output), daemon=True
        )
        reader.start()
        timed_out = False
        try:
            status = container.wait(timeout=timeout)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            timed_out = True
            try:
                container.kill()
            except DockerException:
                pass
            status = container.wait(timeout=30)
        duration = time.monotonic() - started
        reader.join(timeout=10)
    return WorkloadResult(
        exit_code=int(status.get("StatusCode", -1)), timed_out=timed_out, duration_s=duration
    )


def _copy_output(
    container: docker.models.containers.Container, log, on_output: OutputCallback | None
) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            pending += decoder.decode(chunk)
            *lines, pending = pending.split("\n")
            for line in lines:
                _emit(line.rstrip("\r"), log, on_output)
    except DockerException:
        pass
    pending += decoder.decode(b"", final=True)
    if pending:
        _emit(pending.rstrip("\r"), log, on_output)


def _emit(line: str, log, on_output: OutputCallback | None) -> None:
    log.write(line + "\n")
    log.flush()
    if on_output is not None:
        on_output(line)


def _refuse_gateway_user(user: str | None, where: str) -> None:
    if user is None:
        return
    uid = str(user).split(":")[0]
    if uid == str(GATEWAY_UID):
        raise InputError(
            f"uid {GATEWAY_UID} is the gateway's own uid, which its rules let out unfiltered",
            key_path=where,
            fix="run the workload as any other user",
        )


def _refuse_named_gateway_user(container, user: str) -> None:
    name = user.split(":")[0]
    for line in _read_from_container(container, "/etc/passwd").splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == name and fields[2] == str(GATEWAY_UID):
            raise InputError(
                f"user {name} has uid {GATEWAY_UID}, the gateway's own uid",
                key_path="workload.user",
                fix="run the workload as any other user",
            )


def _trust_sources(trust: Sequence[str]) -> list[Path]:
    sources = []
    for index, entry in enumerate(trust):
        path = Path(HOST_CA_BUNDLE if entry == HOST_TRUST else entry)
        if not path.is_file():
            raise InputError(
                f"no CA bundle at {path}",
                key_path=f"workload.trust[{index}]",
                fix=f"give `{HOST_TRUST}` or the path of a PEM file",
            )
        sources.append(path)
    return sources


def _read_pem(path: Path) -> str:
    text = path.read_text(errors="replace")
    return text if text.endswith("\n") else text + "\n"


def _image_ca_store(engine: docker.DockerClient, image: str, run_id: str) -> str:
    """The image's own CA store, so trusting a fixture CA does not drop the public ones.

    Read through a second, never started container: the workload's own one already has the
    bundle mounted over that path, and the engine reads archives through mounts.
    """
    with labelled_container(
        engine, image, run_id=run_id, role="ca-store", what=f"the CA store of {image}",
        command=["true"], network_disabled=True, entrypoint=[],
    ) as probe:  # fmt: skip
        return _read_from_container(probe, SYSTEM_CA_STORE)


def _read_from_container(container, path: str) -> str:
    try:
        stream, _ = container.get_archive(path)
    except NotFound:
        return ""
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = next((m for m in archive.getmembers() if m.isfile()), None)
        if member is None:
            return ""
        extracted = archive.extractfile(member)
        return extracted.read().decode(errors="replace") if extracted else ""


@contextmanager
def _trust_bundle_file(wanted: bool) -> Iterator[Path | None]:
    """Host files to bind into W; created before W so that the binds resolve at its start."""
    if not wanted:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="egress-trust-"))
    try:
        bundle = folder / "trust.pem"
        bundle.touch(mode=0o644)
        folder.chmod(0o755)
        yield bundle
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _tar_of(workdir: Path) -> bytes:
    if not workdir.is_dir():
        raise InputError(
            f"{workdir} is not a folder",
            key_path="workload.workdir",
            fix="give a folder relative to the scenario file",
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(str(workdir), arcname="app")
    return buffer.getvalue()
