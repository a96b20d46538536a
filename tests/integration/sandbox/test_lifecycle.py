"""Start, stop and clean-up behaviour of the sandbox: timeouts, Ctrl-C, refusals, readiness."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import threading
import time
from pathlib import Path

import pytest

from harness.errors import EnvironmentProblem, InputError
from harness.sandbox import (
    DEBIAN_IMAGE,
    GATEWAY_UID,
    PYTHON_IMAGE,
    Gateway,
    RunSpec,
    leftovers,
    new_run_id,
    run,
    run_workload,
    start_gateway,
)
from harness.sandbox.gateway import source_root

pytestmark = pytest.mark.docker


def test_workload_past_its_timeout_is_killed_and_reported(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [])
    result = run(
        RunSpec(
            run_dir=run_dir,
            image=DEBIAN_IMAGE,
            command="echo started; sleep 60",
            timeout=2,
            addon_root=addon_root,
        )
    )
    assert result.timed_out
    assert result.duration_s < 15
    assert (run_dir / "workload.log").read_text() == "started\n"
    assert leftovers(engine, result.run_id) == []


def test_ctrl_c_during_a_run_removes_gateway_and_workload(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [])
    main_thread = threading.get_ident()
    run_id = f"ctrl-c-{os.getpid()}-{time.monotonic_ns()}"

    def press_ctrl_c(line: str) -> None:
        if line == "started":
            threading.Timer(0.5, signal.pthread_kill, (main_thread, signal.SIGINT)).start()

    with pytest.raises(KeyboardInterrupt):
        run(
            RunSpec(
                run_dir=run_dir,
                image=DEBIAN_IMAGE,
                command="echo started; sleep 60",
                timeout=60,
                addon_root=addon_root,
                run_id=run_id,
            ),
            on_output=press_ctrl_c,
        )
    assert leftovers(engine, run_id) == []


def test_exit_code_output_and_workdir_reach_the_caller(
    engine, images, run_dir, tmp_path, addon_root, write_policy
):
    write_policy(run_dir, [])
    app = tmp_path / "app"
    app.mkdir()
    (app / "requirements.txt").write_text("six\n")
    lines: list[str] = []
    result = run(
        RunSpec(
            run_dir=run_dir,
            image=PYTHON_IMAGE,
            workdir=app,
            addon_root=addon_root,
            command="pwd; cat requirements.txt; id -u; exit 3",
        ),
        on_output=lines.append,
    )
    assert (result.exit_code, result.timed_out) == (3, False)
    assert lines == ["/app", "six", "0"]
    assert (run_dir / "workload.log").read_text().splitlines() == lines


def test_recording_is_handed_back_to_the_run_folders_owner(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [])
    mode_before = stat.S_IMODE(run_dir.stat().st_mode)
    run(RunSpec(run_dir=run_dir, image=DEBIAN_IMAGE, command="true", addon_root=addon_root))
    assert stat.S_IMODE(run_dir.stat().st_mode) == mode_before
    owners = {path.name: path.stat().st_uid for path in run_dir.iterdir()}
    assert "events.jsonl" in owners
    assert set(owners.values()) == {run_dir.stat().st_uid}, owners


def test_trust_host_lets_a_workload_verify_the_hosts_egress(
    engine, images, run_dir, addon_root, write_policy
):
    """The images carry no host CA: without `trust` TLS verification fails, with it, it works."""
    write_policy(run_dir, [])
    # Any HTTP answer, a redirect or an error status included, means the TLS handshake verified.
    command = (
        "url=$(python3 -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)');"
        ' python3 -c "import sys, urllib.request, urllib.error\n'
        "try: urllib.request.urlopen(sys.argv[1], timeout=15)\n"
        "except urllib.error.HTTPError: pass\n"
        "print('verified')\" $url 2>&1 | tail -1"
    )
    without, with_trust = [], []
    run(
        RunSpec(
            run_dir=run_dir,
            image=PYTHON_IMAGE,
            command=command,
            mode="audit",
            addon_root=addon_root,
        ),
        on_output=without.append,
    )
    run(
        RunSpec(
            run_dir=run_dir,
            image=PYTHON_IMAGE,
            command=command,
            mode="audit",
            trust=["host"],
            addon_root=addon_root,
        ),
        on_output=with_trust.append,
    )
    assert "CERTIFICATE_VERIFY_FAILED" in "\n".join(without), without
    assert with_trust == ["verified"], with_trust


@pytest.mark.parametrize(
    ("option", "value"),
    [("privileged", True), ("user", str(GATEWAY_UID)), ("user", f"{GATEWAY_UID}:0")],
)
def test_workload_refuses_what_could_bypass_the_gateway(tmp_path, option, value):
    gateway = Gateway(container=None, run_id="refusal", run_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        run_workload(
            gateway, image=DEBIAN_IMAGE, command="true", run_dir=tmp_path, **{option: value}
        )


def test_gateway_that_never_reports_ready_fails_with_its_log(
    engine, images, run_dir, tmp_path, write_policy
):
    silent = tmp_path / "silent"
    (silent / "addons").mkdir(parents=True)
    # The gateway's master is harness code (harness/gateway/master.py); only the addon is silent.
    shutil.copytree(source_root() / "harness", silent / "harness")
    (silent / "addons" / "firewall.py").write_text(
        "from mitmproxy import ctx\n"
        "class Silent:\n"
        "    def load(self, loader):\n"
        "        for name in ('egress_policy', 'egress_mode', 'egress_https_deny',\n"
        "                     'egress_record_dir', 'egress_run_id', 'egress_dns'):\n"
        "            loader.add_option(name, str, '', name)\n"
        "    def running(self):\n"
        "        print('silent addon running', flush=True)\n"
        "addons = [Silent()]\n"
    )
    write_policy(run_dir, [])
    with (
        pytest.raises(EnvironmentProblem) as raised,
        start_gateway(
            run_dir=run_dir, run_id=new_run_id("silent"), addon_root=silent, ready_timeout=3
        ),
    ):
        pytest.fail("the gateway reported ready without a ready event")
    assert "did not report ready" in str(raised.value)
    assert "silent addon running" in str(raised.value)


def test_building_again_reuses_every_image(engine, images):
    from harness.sandbox import build_images
    from harness.sandbox.images import ALL_IMAGES

    lines: list[str] = []
    started = time.monotonic()
    build_images(lines.append)
    assert time.monotonic() - started < 15
    assert [line for line in lines if "up to date" in line] == lines[:-1], lines
    assert len(lines) == len(ALL_IMAGES) + 1, lines  # one per image, then "images ready"


def test_addon_root_without_the_addon_is_an_environment_problem(
    run_dir, write_policy, tmp_path: Path
):
    write_policy(run_dir, [])
    with (
        pytest.raises(EnvironmentProblem, match="firewall.py is missing"),
        start_gateway(run_dir=run_dir, run_id="no-addon", addon_root=tmp_path),
    ):
        pass


def test_gc_removes_labelled_leftovers_of_a_run(engine, images):
    from harness.sandbox import gc
    from harness.sandbox.labels import create_network, labels

    run_id = new_run_id("gc")
    network = create_network(engine, run_id, "leftover-net")
    engine.containers.create(
        DEBIAN_IMAGE, command=["true"], labels=labels(run_id, "leftover"), network=network.name
    )
    assert len(leftovers(engine, run_id)) == 2
    assert gc(run_id) == 2
    assert leftovers(engine, run_id) == []


def test_doctor_finds_this_machine_ready(engine, images):
    from harness.sandbox import doctor

    checks = {check.name: check for check in doctor()}
    assert {"Python", "Docker engine", "image egress/gateway", "iptables in the gateway"} <= set(
        checks
    )
    assert [check for check in checks.values() if not check.ok] == []


def test_sigterm_to_egress_run_removes_its_containers_and_exits_143(engine, images, tmp_path):
    """A cancelled CI job sends SIGTERM, whose default would skip every cleanup."""
    import subprocess
    import sys

    name = f"sigterm-{os.getpid()}-{time.monotonic_ns() % 100000}"
    scenario = tmp_path / f"{name}.scenario.yaml"
    scenario.write_text(
        f"name: {name}\n"
        f"workload: {{image: {DEBIAN_IMAGE}, command: 'echo started; sleep 60', timeout: 90}}\n"
    )
    egress = Path(sys.executable).parent / "egress"
    process = subprocess.Popen(
        [str(egress), "run", str(scenario)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "EGRESS_RUNS_DIR": str(tmp_path / "runs")},
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "started" in line:
                break
        assert [left for left in leftovers(engine) if name in left], "the run was not going"
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, errors
    assert "egress: terminated (SIGTERM)" in errors
    assert [left for left in leftovers(engine) if name in left] == []
