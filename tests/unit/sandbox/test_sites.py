"""The sandbox's container sites on a fake engine: each goes through the choke point (named,
labelled, removed however it ends) and a failure shows the right container's log. No Docker."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from fake_engine import FakeContainer, FakeEngine

import harness
from harness.derive import ProbeRequest
from harness.errors import EnvironmentProblem
from harness.sandbox import gateway as gateway_module
from harness.sandbox.gateway import Gateway, start_gateway
from harness.sandbox.images import GATEWAY_IMAGE, TAG
from harness.sandbox.labels import ROLE_LABEL, RUN_LABEL
from harness.sandbox.probe import run_probe
from harness.sandbox.upstreams import start_upstreams
from harness.sandbox.workload import WORKLOAD_CAP_DROP, run_workload
from harness.scenario import Upstream

GATEWAY = f"{GATEWAY_IMAGE}:{TAG}"


def test_containers_create_is_called_in_the_choke_point_only():
    root = Path(harness.__file__).parent
    callers = sorted(
        str(path.relative_to(root.parent))
        for path in root.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Attribute) and node.attr in ("create", "run")
        and isinstance(node.value, ast.Attribute) and node.value.attr == "containers"
    )  # fmt: skip
    assert callers == ["harness/sandbox/containers.py"]


def gateway_folder(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "policy.yaml").write_text("allow: [a.example.test]\n")
    return run_dir


def test_a_gateway_that_stops_before_ready_shows_its_log_and_is_removed(tmp_path: Path):
    def exits(container: FakeContainer) -> None:
        container.status, container.exit_code = "exited", 70
        container.log = b"egress: iptables -t nat -N FW_REDIRECT: Permission denied\n"

    engine = FakeEngine({GATEWAY}, behaviour=exits)
    with (
        pytest.raises(EnvironmentProblem) as raised,
        start_gateway(run_dir=gateway_folder(tmp_path), run_id="r1", engine=engine),
    ):
        pytest.fail("not ready: no block")
    message = str(raised.value)
    assert message.startswith("the gateway stopped before it was ready (exit 70); "
                              "a firewall rule could not be installed")  # fmt: skip
    assert message.endswith("last log lines of the gateway (egress-r1-gateway):\n"
                            "egress: iptables -t nat -N FW_REDIRECT: Permission denied")  # fmt: skip
    assert message.count("Permission denied") == 1
    assert engine.names() == []
    assert [call[0] for call in engine.calls] == ["create", "start", "logs", "kill", "remove"]


def test_a_ready_gateway_is_stopped_gracefully_then_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    run_dir = gateway_folder(tmp_path)
    monkeypatch.setattr(gateway_module, "STOP_TIMEOUT", 0.05)

    def ready(container: FakeContainer) -> None:
        event = {"kind": "lifecycle", "reason": "ready", "run": container.labels[RUN_LABEL]}
        (run_dir / "events.jsonl").write_text(json.dumps(event) + "\n")

    engine = FakeEngine({GATEWAY}, behaviour=ready)
    with start_gateway(run_dir=run_dir, run_id="r2", engine=engine) as gateway:
        (made,) = engine.containers.made
        assert gateway.name == "egress-r2-gateway" and made.labels[ROLE_LABEL] == "gateway"
        assert made.options["cap_add"] == ["NET_ADMIN"]
    assert engine.names() == []
    assert engine.calls[-2:] == [("kill", "egress-r2-gateway", "SIGTERM"),
                                 ("remove", "egress-r2-gateway")]  # fmt: skip


def test_ctrl_c_in_a_runs_block_removes_the_gateway(tmp_path: Path, monkeypatch):
    run_dir = gateway_folder(tmp_path)
    monkeypatch.setattr(gateway_module, "STOP_TIMEOUT", 0.05)

    def ready(container: FakeContainer) -> None:
        event = {"kind": "lifecycle", "reason": "ready", "run": container.labels[RUN_LABEL]}
        (run_dir / "events.jsonl").write_text(json.dumps(event) + "\n")

    engine = FakeEngine({GATEWAY}, behaviour=ready)
    with (
        pytest.raises(KeyboardInterrupt),
        start_gateway(run_dir=run_dir, run_id="r3", engine=engine),
    ):
        raise KeyboardInterrupt
    assert engine.names() == []


def a_gateway(engine: FakeEngine, tmp_path: Path) -> Gateway:
    container = engine.containers.create(GATEWAY, name="egress-r-gateway", labels={})
    container.status = "running"
    return Gateway(container=container, run_id="r", run_dir=tmp_path)


def test_a_workload_joins_the_gateways_namespace_stripped_and_is_removed(tmp_path: Path):
    def prints(container: FakeContainer) -> None:
        if container.name == "egress-r-workload":
            container.log, container.exit_code = b"Collecting flask\nERROR: 403\n", 1

    engine = FakeEngine({GATEWAY, "egress/python"}, behaviour=prints)
    gateway = a_gateway(engine, tmp_path)
    lines: list[str] = []
    result = run_workload(gateway, image="egress/python", command="pip install flask",
                          run_dir=tmp_path, engine=engine, on_output=lines.append)  # fmt: skip
    assert (result.exit_code, result.timed_out) == (1, False)
    assert lines == ["Collecting flask", "ERROR: 403"]
    assert (tmp_path / "workload.log").read_text() == "Collecting flask\nERROR: 403\n"
    created = [call for call in engine.calls if call[0] == "create"]
    assert created[-1] == ("create", "egress-r-workload")
    assert engine.names() == ["egress-r-gateway"]


def test_ctrl_c_while_the_workload_runs_removes_it(tmp_path: Path):
    def interrupted(container: FakeContainer) -> None:
        def wait(timeout=None):
            raise KeyboardInterrupt

        container.wait = wait  # type: ignore[method-assign]

    engine = FakeEngine({GATEWAY, "egress/python"}, behaviour=interrupted)
    gateway = a_gateway(engine, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_workload(gateway, image="egress/python", command=["sleep", "600"], run_dir=tmp_path,
                     engine=engine)  # fmt: skip
    assert engine.names() == ["egress-r-gateway"]


def test_a_workload_with_a_trust_bundle_reads_its_images_store_through_a_removed_probe(
    tmp_path: Path,
):
    engine = FakeEngine({GATEWAY, "egress/python"})
    gateway = a_gateway(engine, tmp_path)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nfixture\n-----END CERTIFICATE-----\n")
    run_workload(gateway, image="egress/python", command="true", run_dir=tmp_path,
                 trust=[str(ca)], engine=engine)  # fmt: skip
    created = [call[1] for call in engine.calls if call[0] == "create"]
    assert created[-2:] == ["egress-r-workload", "egress-r-ca-store"]
    assert engine.names() == ["egress-r-gateway"]


def test_the_workloads_options_hold_the_sandbox_rules(tmp_path: Path):
    seen: list[dict] = []

    def record(container: FakeContainer) -> None:
        seen.append(container.options)

    engine = FakeEngine({GATEWAY, "egress/python"}, behaviour=record)
    gateway = a_gateway(engine, tmp_path)
    run_workload(gateway, image="egress/python", command="true", run_dir=tmp_path, engine=engine)
    (options,) = seen
    assert options["network_mode"] == f"container:{gateway.id}"
    assert options["cap_drop"] == WORKLOAD_CAP_DROP
    assert options["security_opt"] == ["no-new-privileges"] and options["privileged"] is False


def test_an_upstream_that_never_listens_shows_its_own_log_and_everything_is_removed(
    tmp_path: Path,
):
    def upstreams(container: FakeContainer) -> None:
        if container.name.endswith("-upstream-cdn"):
            container.status, container.exit_code = "exited", 1
            container.log = b"OSError: [Errno 98] Address already in use\n"
        else:
            container.log = b'{"event": "listening"}\n'

    engine = FakeEngine({"egress/upstreams"}, behaviour=upstreams)
    sites = [Upstream("site", "egress/upstreams", ("site.example.test",)),
             Upstream("cdn", "egress/upstreams", ("cdn.example.test",))]  # fmt: skip
    with (
        pytest.raises(EnvironmentProblem) as raised,
        start_upstreams(sites, run_dir=tmp_path, run_id="r", engine=engine, ready_timeout=1),
    ):
        pytest.fail("an upstream failed: no block")
    message = str(raised.value)
    assert message.startswith("upstream cdn (egress/upstreams) stopped after 1 s;")
    assert "last log lines of upstream cdn (egress-r-upstream-cdn):\nOSError" in message
    assert "listening" not in message.split("last log lines")[1]
    assert engine.names() == [] and engine.networks.made == []
    # Each upstream's output is kept in the run folder.
    assert "Address already in use" in (tmp_path / "upstreams" / "cdn.log").read_text()


def test_a_derive_probe_runs_without_network_and_is_removed(tmp_path: Path):
    def answers(container: FakeContainer) -> None:
        container.log = b"index_url=https://index.example.test/simple\n"

    engine = FakeEngine({"egress/python"}, behaviour=answers)
    request = ProbeRequest("egress/python", ("python3", "-c", "print(1)"), (), None)
    result = run_probe(request, engine=engine)
    assert result.exit_code == 0 and "index.example.test" in result.stdout
    (created,) = [call for call in engine.calls if call[0] == "create"]
    assert created[1].startswith("egress-") and created[1].endswith("-probe")
    assert engine.names() == []


class Client:
    image = "egress/kudu-sim"
    command = "kudu-sim client --site mysite"
    port = 8080
    workdir = None
    env = ()
    hosts = ("mysite.scm.azurewebsites.net",)


def client_engine(probe_exit: int) -> FakeEngine:
    def acts(container: FakeContainer) -> None:
        if container.name.endswith("-probe"):
            container.status, container.exit_code = "exited", probe_exit
        elif container.name.endswith("-workload"):
            container.log = b"kudu-sim: Error: listen EADDRINUSE 0.0.0.0:8080\n"
        elif container.name.endswith("-client"):
            container.log = b"deployed\n"

    return FakeEngine({GATEWAY, "egress/kudu-sim"}, behaviour=acts)


def test_a_workload_that_never_listens_shows_the_workloads_log_not_the_probes(tmp_path: Path):
    from harness.sandbox.inbound import run_with_client

    engine = client_engine(probe_exit=1)
    gateway = a_gateway(engine, tmp_path)
    gateway.container.networks.append("egress-r-client")
    with pytest.raises(EnvironmentProblem) as raised:
        run_with_client(gateway, Client(), network="egress-r-client", image="egress/kudu-sim",
                        command="kudu-sim serve", run_dir=tmp_path, engine=engine,
                        listen_timeout=1)  # fmt: skip
    message = str(raised.value)
    assert message.startswith("the workload did not accept connections on port 8080 within 1 s")
    assert message.endswith("last log lines of the workload (egress-r-workload):\n"
                            "kudu-sim: Error: listen EADDRINUSE 0.0.0.0:8080")  # fmt: skip
    assert engine.names() == ["egress-r-gateway"]


def test_a_client_runs_outside_once_the_workload_listens_and_all_is_removed(tmp_path: Path):
    from harness.sandbox.inbound import run_with_client

    engine = client_engine(probe_exit=0)
    gateway = a_gateway(engine, tmp_path)
    gateway.container.networks.append("egress-r-client")
    result = run_with_client(gateway, Client(), network="egress-r-client", image="egress/kudu-sim",
                             command="kudu-sim serve", run_dir=tmp_path, engine=engine)  # fmt: skip
    assert result.exit_code == 0
    assert (tmp_path / "client.log").read_text() == "deployed\n"
    made = [call[1] for call in engine.calls if call[0] == "create"]
    assert made[-3:] == ["egress-r-workload", "egress-r-probe", "egress-r-client"]
    assert engine.names() == ["egress-r-gateway"]
