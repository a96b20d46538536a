"""The gateway container G: the firewall addon in mitmdump, with the netfilter rules of
docs sandbox.md in its own network namespace. Workloads join that namespace.
"""

from __future__ import annotations

__all__ = [
    "DNS_PORT",
    "GATEWAY_UID",
    "TRANSPARENT_PORT",
    "Gateway",
    "source_root",
    "start_gateway",
]

import ipaddress
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException, NotFound

from harness.errors import EnvironmentProblem, InputError
from harness.firewall_settings import DNS_MODES, HTTPS_DENY_STYLES, MODES, HttpsDeny, Mode
from harness.runfolder import EVENTS, POLICY
from harness.sandbox.bytecode import BYTECODE_MOUNT, bytecode_cache
from harness.sandbox.containers import labelled_container, with_log_tail
from harness.sandbox.engine import client as engine_client
from harness.sandbox.images import GATEWAY_IMAGE, TAG

GATEWAY_UID = 64666
TRANSPARENT_PORT = 15001
DNS_PORT = 15053
EVENTS_FILE = EVENTS  # the old name, kept for importers
READY_BANNER = "egress-harness gateway ready"
RUNTIME_ENTRYPOINT = "/opt/egress/run/entrypoint.sh"
POLICY_MOUNT = "/egress/policy.yaml"
RECORD_MOUNT = "/egress/run"
SHARED_MOUNT = "/egress/runs"
CONTROL_MOUNT = "/egress/control"
CONTROL_FILE = "options.json"
STOP_TIMEOUT = 3.0



def source_root() -> Path:
    """The checkout whose harness/ and addons/ the gateway runs (mounted, so no rebuild)."""
    return Path(__file__).resolve().parents[2]


@dataclass
class Gateway:
    """A running, ready gateway."""

    container: docker.models.containers.Container
    run_id: str
    run_dir: Path
    # A gateway shared by several runs (harness.sandbox.session): the folder holding every run's
    # folder, mounted at SHARED_MOUNT, and where the next run's options are written.
    shared_root: Path | None = None
    control_dir: Path | None = None
    # Where this run's part of `docker logs` starts (a shared gateway's log holds every run's).
    log_since: float | None = None

    @property
    def id(self) -> str:
        return self.container.id

    @property
    def name(self) -> str:
        return self.container.name

    def addresses(self) -> dict[str, str]:
        """Network name -> the gateway's IPv4 address there (the workload's source address)."""
        self.container.reload()
        networks = self.container.attrs["NetworkSettings"]["Networks"]
        return {name: info.get("IPAddress", "") for name, info in networks.items()}

    def log_tail(self, lines: int = 30) -> str:
        try:
            since = {"since": self.log_since} if self.log_since else {}
            return self.container.logs(tail=lines, **since).decode(errors="replace")
        except DockerException as error:
            return f"(no gateway log: {error})"

    def switch(
        self,
        *,
        run_dir: Path,
        run_id: str,
        policy_path: Path | None = None,
        mode: Mode = "enforce",
        https_deny: HttpsDeny = "close",
        ready_timeout: float = 30.0,
    ) -> Gateway:
        """Point a shared gateway at the next run: its policy, mode, deny style and recording
        folder, in one mitmproxy option update (SIGHUP to the master, which reads the control
        file); returns once the addon wrote `ready` into the new recording, and this object then
        names that run. The caller removes every workload of the previous run first and opens
        run_dir with `writable_by_gateway`."""
        if self.shared_root is None or self.control_dir is None:
            raise RuntimeError("switch() needs a gateway started with shared_root")
        _check_choices(mode, https_deny)
        run_dir = Path(run_dir).resolve()
        policy_path = Path(policy_path or run_dir / POLICY).resolve()
        options = {
            "egress_policy": _inside(self.shared_root, policy_path),
            "egress_mode": mode,
            "egress_https_deny": https_deny,
            "egress_record_dir": _inside(self.shared_root, run_dir),
            "egress_run_id": run_id,
        }
        events = run_dir / EVENTS_FILE
        offset = events.stat().st_size if events.exists() else 0
        control = self.control_dir / CONTROL_FILE
        control.write_text(json.dumps(options))
        control.chmod(0o644)
        since = time.time()
        self.container.kill(signal="SIGHUP")
        self.run_id, self.run_dir, self.log_since = run_id, run_dir, since
        _wait_until_ready(self, events, offset, ready_timeout)
        return self


@contextmanager
def start_gateway(
    *,
    run_dir: Path,
    run_id: str,
    policy_path: Path | None = None,
    mode: Mode = "enforce",
    https_deny: HttpsDeny = "close",
    hosts: Mapping[str, str] | None = None,
    dns: str = "azure",
    networks: Sequence[str] = (),
    ready_timeout: float = 30.0,
    engine: docker.DockerClient | None = None,
    addon_root: Path | None = None,
    shared_root: Path | None = None,
    on_started: Callable[[Gateway], None] | None = None,
) -> Iterator[Gateway]:
    """Start G, wait for the addon's ready event, yield it; G is removed however the block ends.

    `hosts` ({name: IP}) become G's /etc/hosts entries, so the firewall's DNS answers them (fixture
    upstreams). `networks` are extra Docker networks G joins besides the default bridge.
    `addon_root` holds harness/ and addons/ (default: this checkout). With `shared_root` (a
    folder holding run_dir) G mounts that folder instead of run_dir and can be `switch`ed to
    another run folder in it; the caller then opens each run folder with `writable_by_gateway`.
    `on_started(gateway)` is called once G's container runs, before it is ready: for work that
    may overlap the wait (creating, never starting, the workload's container).
    """
    _check_choices(mode, https_deny, dns)
    engine = engine or engine_client()
    run_dir = Path(run_dir).resolve()
    policy_path = Path(policy_path or run_dir / POLICY).resolve()
    if not policy_path.is_file():
        raise EnvironmentProblem(f"{policy_path}: no policy file for the gateway; write it first")
    if shared_root is not None:
        shared_root = Path(shared_root).resolve()
        record_dir, policy_file = _inside(shared_root, run_dir), _inside(shared_root, policy_path)
    else:
        record_dir, policy_file = RECORD_MOUNT, POLICY_MOUNT
    root = Path(addon_root or source_root()).resolve()
    if not (root / "addons" / "firewall.py").is_file():
        raise EnvironmentProblem(
            f"{root / 'addons' / 'firewall.py'} is missing; the gateway loads the firewall addon "
            "from the checkout, so run the harness from a source checkout (pip install -e .)"
        )
    bytecode = bytecode_cache(root, _require_image(engine))

    events = run_dir / EVENTS_FILE
    events_offset = events.stat().st_size if events.exists() else 0
    control_dir = Path(tempfile.mkdtemp(prefix="egress-control-")) if shared_root else None
    if shared_root is not None and control_dir is not None:
        control_dir.chmod(0o755)
        mounts = {
            str(shared_root): {"bind": SHARED_MOUNT, "mode": "rw"},
            str(control_dir): {"bind": CONTROL_MOUNT, "mode": "ro"},
        }
    else:
        mounts = {
            str(policy_path): {"bind": POLICY_MOUNT, "mode": "ro"},
            str(run_dir): {"bind": RECORD_MOUNT, "mode": "rw"},
        }
    if bytecode is not None:
        # Written only by the entrypoint (as root) when stale; the gateway uid cannot anyway.
        access = "rw" if bytecode.stale else "ro"
        mounts[str(bytecode.folder)] = {"bind": BYTECODE_MOUNT, "mode": access}
    started: list[Gateway] = []  # the gateway once its container runs: how to stop it
    with writable_by_gateway(run_dir), _traversable_by_gateway(shared_root):
        try:
            with labelled_container(
                engine,
                f"{GATEWAY_IMAGE}:{TAG}",
                run_id=run_id,
                role="gateway",
                what="the gateway",
                before_remove=lambda container: _stop(container, started[0] if started else None),
                command=_gateway_arguments(mode, https_deny, run_id, policy_file, record_dir, dns),
                # The runtime entrypoint and the lean master come from the checkout, like the
                # addon: docker/gateway-run/entrypoint.sh (docker/README.md).
                entrypoint=[RUNTIME_ENTRYPOINT],
                cap_add=["NET_ADMIN"],
                environment={
                    "EGRESS_GATEWAY_UID": str(GATEWAY_UID),
                    "EGRESS_TRANSPARENT_PORT": str(TRANSPARENT_PORT),
                    "EGRESS_DNS_PORT": str(DNS_PORT),
                    "EGRESS_UPSTREAM_DNS": " ".join(upstream_dns_servers()) if networks else "",
                    "EGRESS_CONTROL_FILE": f"{CONTROL_MOUNT}/{CONTROL_FILE}",
                    **(bytecode.environment() if bytecode is not None else {}),
                },
                extra_hosts=dict(hosts or {}),
                volumes={
                    str(root / "harness"): {"bind": "/opt/egress/harness", "mode": "ro"},
                    str(root / "addons"): {"bind": "/opt/egress/addons", "mode": "ro"},
                    str(runtime_dir()): {"bind": "/opt/egress/run", "mode": "ro"},
                    **mounts,
                },
                detach=True,
            ) as container:
                for network in networks:
                    # By name, in one call (networks.get first was an inspect per network).
                    engine.api.connect_container_to_network(container.id, network)
                container.start()
                gateway = Gateway(container=container, run_id=run_id, run_dir=run_dir,
                                  shared_root=shared_root, control_dir=control_dir)  # fmt: skip
                started.append(gateway)
                if on_started is not None:
                    on_started(gateway)
                _wait_until_ready(gateway, events, events_offset, ready_timeout)
                yield gateway
        finally:
            if control_dir is not None:
                shutil.rmtree(control_dir, ignore_errors=True)


def _check_choices(mode: str, https_deny: str, dns: str = "azure") -> None:
    if mode not in MODES:
        raise InputError(
            f"unknown firewall mode {mode!r}", key_path="firewall.mode", fix="use enforce or audit"
        )
    if https_deny not in HTTPS_DENY_STYLES:
        raise InputError(
            f"unknown https_deny {https_deny!r}",
            key_path="firewall.https_deny",
            fix="use close, alert or drop",
        )
    if dns not in DNS_MODES:
        raise InputError(
            f"unknown dns mode {dns!r}", key_path="firewall.dns", fix="use azure or resolve"
        )


def _inside(shared_root: Path, path: Path) -> str:
    """`path` as the gateway sees it under SHARED_MOUNT."""
    try:
        relative = Path(path).resolve().relative_to(shared_root)
    except ValueError:
        raise EnvironmentProblem(
            f"{path} is not inside {shared_root}, the folder the shared gateway mounts; "
            "keep every run folder of one session in one folder"
        ) from None
    return f"{SHARED_MOUNT}/{relative.as_posix()}"


def upstream_dns_servers() -> list[str]:
    """The name servers Docker gives a container on the default bridge: the host's, without
    loopback ones (systemd-resolved's stub is replaced by the servers behind it)."""
    for path in ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        servers = [
            words[1]
            for words in (line.split() for line in lines)
            if len(words) >= 2 and words[0] == "nameserver"
        ]
        usable = [
            server
            for server in servers
            if not ipaddress.ip_address(server.split("%")[0]).is_loopback
        ]
        if usable:
            return usable
    raise EnvironmentProblem(
        "cannot tell which DNS servers the gateway should ask: /etc/resolv.conf names none "
        "that is not loopback; give the machine a reachable name server"
    )


def runtime_dir() -> Path:
    """docker/gateway-run/ of the checkout: the entrypoint the gateway runs (not part of any
    image, so editing it rebuilds nothing)."""
    return source_root() / "docker" / "gateway-run"


def _gateway_arguments(
    mode: str, https_deny: str, run_id: str, policy_file: str, record_dir: str, dns: str = "azure"
) -> list[str]:
    """The lean master's arguments (harness/gateway/master.py: mitmdump's --mode and --set)."""
    return [
        "--mode",
        f"transparent@127.0.0.1:{TRANSPARENT_PORT}",
        "--mode",
        f"dns@127.0.0.1:{DNS_PORT}",
        "--set",
        "connection_strategy=lazy",
        # mitmproxy logs several lines per connection at info: at concurrency 256 the gateway
        # managed 27 new connections/s with them and 42/s without (benchmarks/bench_load.py,
        # one run each), and the slower rate timed clients out. The Azure lines are in azure.log;
        # the addon's own problems are warnings and errors, still logged.
        "--set",
        "termlog_verbosity=warn",
        "-s",
        "/opt/egress/addons/firewall.py",
        "--set",
        f"egress_policy={policy_file}",
        "--set",
        f"egress_mode={mode}",
        "--set",
        f"egress_https_deny={https_deny}",
        "--set",
        f"egress_record_dir={record_dir}",
        "--set",
        f"egress_run_id={run_id}",
        "--set",
        f"egress_dns={dns}",
    ]


def _require_image(engine: docker.DockerClient) -> str:
    """The gateway image's id (its Python is what the bytecode cache is for)."""
    try:
        return engine.images.get(f"{GATEWAY_IMAGE}:{TAG}").id
    except NotFound:
        raise EnvironmentProblem(
            f"the image {GATEWAY_IMAGE} is missing; build it with `egress images build`"
        ) from None


# The events file is read every READY_POLL s, the engine asked whether G died every
# STATUS_POLL s: an inspect costs the engine and this process CPU the starting gateway needs
# (2 vCPU), and reading a few hundred bytes costs nothing.
READY_POLL = 0.01
STATUS_POLL = 0.25


def _wait_until_ready(gateway: Gateway, events: Path, offset: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    next_status = time.monotonic() + STATUS_POLL
    while True:
        if _ready_event_written(events, offset, gateway.run_id):
            return
        if time.monotonic() < next_status:
            time.sleep(READY_POLL)
            continue
        next_status = time.monotonic() + STATUS_POLL
        gateway.container.reload()
        if gateway.container.status in ("exited", "dead"):
            code = gateway.container.attrs["State"].get("ExitCode")
            hint = (
                "a firewall rule could not be installed: the engine must grant NET_ADMIN and "
                "the kernel needs iptables and ip6tables support (`egress doctor` checks)"
                if code == 70
                else "the addon failed to start; its error is in the log below"
            )
            raise with_log_tail(
                EnvironmentProblem(f"the gateway stopped before it was ready (exit {code}); {hint}"),
                gateway.container, "the gateway", since=gateway.log_since,
            )  # fmt: skip
        if time.monotonic() > deadline:
            raise with_log_tail(
                EnvironmentProblem(
                    f"the gateway did not report ready within {timeout:.0f} s; check the "
                    "addon's output below; a slow machine may need a longer ready timeout"
                ),
                gateway.container, "the gateway", since=gateway.log_since,
            )  # fmt: skip
        time.sleep(READY_POLL)


def _ready_event_written(events: Path, offset: int, run_id: str) -> bool:
    try:
        with events.open("rb") as stream:
            stream.seek(offset)
            lines = stream.read().splitlines()
    except FileNotFoundError:
        return False
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(event, dict)
            and event.get("kind") == "lifecycle"
            and event.get("reason") == "ready"
            and event.get("run", run_id) == run_id
        ):
            return True
    return False


@contextmanager
def _traversable_by_gateway(folder: Path | None) -> Iterator[None]:
    """A shared gateway reaches each run folder through their common folder (a private
    temporary folder is 0700): others may pass through it while the gateway runs, not list it."""
    if folder is None:
        yield
        return
    mode = stat.S_IMODE(folder.stat().st_mode)
    os.chmod(folder, mode | 0o111)
    try:
        yield
    finally:
        os.chmod(folder, mode)


@contextmanager
def writable_by_gateway(run_dir: Path) -> Iterator[None]:
    """Let uid 64666 in G write the recording, then hand everything back to the folder's owner.

    The folder (and files an earlier run left in it) are opened to the gateway only while it
    runs; as root the harness also gives the files G made to the folder's owner, so a user can
    edit and delete them.
    """
    folder = run_dir.stat()
    existing = {path: path.stat() for path in run_dir.iterdir() if path.is_file()}
    os.chmod(run_dir, stat.S_IMODE(folder.st_mode) | 0o777)
    for path, before in existing.items():
        os.chmod(path, stat.S_IMODE(before.st_mode) | 0o666)
    try:
        yield
    finally:
        os.chmod(run_dir, stat.S_IMODE(folder.st_mode))
        for path in run_dir.iterdir():
            try:
                before = existing.get(path)
                if before is not None:
                    os.chmod(path, stat.S_IMODE(before.st_mode))
                elif os.geteuid() == 0 and path.stat().st_uid == GATEWAY_UID:
                    os.chown(path, folder.st_uid, folder.st_gid)
            except OSError:
                pass


def _stop(container: docker.models.containers.Container, gateway: Gateway | None) -> None:
    """SIGTERM first: the master then closes its connections and the addon its recording with
    a `stopped` event; once that is written the choke point removes the container by force.
    (Measured: 0.2 s against 0.5 s for `docker stop`, which also waits for the engine's own
    teardown.)"""
    try:
        container.kill(signal="SIGTERM")
    except DockerException:
        pass
    else:
        if gateway is not None:
            _wait_for_stopped(gateway, STOP_TIMEOUT)


def _wait_for_stopped(gateway: Gateway, timeout: float) -> None:
    events = gateway.run_dir / EVENTS_FILE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with events.open("rb") as stream:
                stream.seek(max(0, events.stat().st_size - 4096))
                tail = stream.read()
        except OSError:
            return
        if b'"reason": "stopped"' in tail and gateway.run_id.encode() in tail:
            return
        time.sleep(0.01)
