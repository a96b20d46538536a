"""Oryx's SDK CDN behind the firewall (docs/oryx.md): the CDN simulator answering Oryx's request
sequence, how `drop` and `close` differ for a client with a timeout, and the real Oryx build
image, which runs only where it can be had."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from docker.errors import ImageNotFound

from harness.errors import EnvironmentProblem
from harness.execute import execute
from harness.sandbox import PYTHON_IMAGE, RunSpec, leftovers, run
from harness.sandbox.images import ORYX_CDN_SIM_IMAGE
from harness.sandbox.upstreams import read_requests
from harness.scenario import Upstream, load_scenario

pytestmark = pytest.mark.docker

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
CDN = "oryx-cdn.microsoft.io"
CDN_SITE = Upstream("oryx-cdn", ORYX_CDN_SIM_IMAGE, (CDN,))

# The requests Oryx makes for one platform (azure-firewall.md "Oryx"), replayed with urllib; this
# checks the simulator and the path through the firewall, it is not Oryx.
SEQUENCE = textwrap.dedent(
    """
    import hashlib, json, re, urllib.request
    base = "https://oryx-cdn.microsoft.io"
    def get(path):
        request = urllib.request.Request(base + path, headers={"User-Agent": "oryx/1.0"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.read(), dict(answer.headers)
    listing = [get("/python?restype=container&comp=list&include=metadata&marker=")[0].decode()
               for _ in range(2)]
    default = get("/python/defaultVersion.bookworm.txt")[0].decode().strip()
    data, headers = get(f"/python/python-bookworm-{default}.tar.gz")
    print(json.dumps({
        "listed_default": f"python-bookworm-{default}.tar.gz" in listing[0],
        "next_marker_empty": bool(re.search(r"<NextMarker ?/>", listing[0])),
        "same_listing": listing[0] == listing[1],
        "default": default,
        "checksum_ok": hashlib.sha512(data).hexdigest() == headers.get("x-ms-meta-checksum"),
    }))
    """
)

# A client with a timeout, denied: how long until it gives up, and with what error.
TIMED_CLIENT = textwrap.dedent(
    """
    import json, sys, time, urllib.request
    started = time.monotonic()
    try:
        urllib.request.urlopen("https://oryx-cdn.microsoft.io/python?restype=container"
                               "&comp=list&include=metadata&marker=", timeout=float(sys.argv[1]))
        error = None
    except Exception as caught:
        error = repr(caught)
    print(json.dumps({"seconds": time.monotonic() - started, "error": error}))
    """
)


def run_python(run_dir: Path, addon_root: Path, script: str, *args: str, https_deny="close"):
    lines: list[str] = []
    result = run(
        RunSpec(
            run_dir=run_dir,
            image=PYTHON_IMAGE,
            command=["python3", "-c", script, *args],
            timeout=60,
            https_deny=https_deny,
            addon_root=addon_root,
            upstreams=[CDN_SITE],
        ),
        on_output=lines.append,
    )
    return result, lines


def test_cdn_simulator_answers_oryxs_request_sequence_through_the_firewall(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [CDN])
    result, lines = run_python(run_dir, addon_root, SEQUENCE)
    assert result.exit_code == 0, lines
    assert json.loads(lines[-1]) == {
        "listed_default": True,
        "next_marker_empty": True,
        "same_listing": True,
        "default": "3.11.9",
        "checksum_ok": True,
    }
    paths = [r["path"] for r in read_requests(run_dir, "oryx-cdn")]
    listing = "/python?restype=container&comp=list&include=metadata&marker="
    assert paths == [
        listing,
        listing,
        "/python/defaultVersion.bookworm.txt",
        "/python/python-bookworm-3.11.9.tar.gz",
    ]
    assert leftovers(engine, result.run_id) == []


def test_drop_hangs_a_client_until_its_own_timeout(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [])
    result, lines = run_python(run_dir, addon_root, TIMED_CLIENT, "3", https_deny="drop")
    outcome = json.loads(lines[-1])
    assert 2.8 <= outcome["seconds"] < 6, outcome
    assert "timed out" in outcome["error"], outcome
    assert read_requests(run_dir, "oryx-cdn") == []
    assert leftovers(engine, result.run_id) == []


def test_close_fails_a_client_at_once_with_an_eof(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [])
    result, lines = run_python(run_dir, addon_root, TIMED_CLIENT, "3", https_deny="close")
    outcome = json.loads(lines[-1])
    assert outcome["seconds"] < 1.5, outcome
    assert "EOF" in outcome["error"], outcome
    azure = (run_dir / "azure.log").read_text()
    assert f"to {CDN}:443. Action: Deny. No rule matched. Proceeding with default action" in azure
    assert leftovers(engine, result.run_id) == []


def test_oryx_build_scenario_runs_where_its_image_exists_or_says_plainly_why_not(
    engine, images, tmp_path
):
    """No registry is reachable here, so the real image is usually absent: then the run must
    stop with a message naming the image and the reason, never pass as if Oryx had run."""
    from harness.sandbox import run as sandbox_run

    scenario = load_scenario(SCENARIOS / "oryx-sdk-cdn-denied.scenario.yaml")
    image = scenario.workload.image
    assert image.startswith("mcr.microsoft.com/oryx/build")
    try:
        engine.images.get(image)
    except ImageNotFound:
        with pytest.raises(EnvironmentProblem) as caught:
            execute(scenario, sandbox_run, run_dir=tmp_path)
        message = str(caught.value)
        assert f"the workload image {image} is missing" in message
        assert "no registry is pulled from" in message
        # pytest scenarios/ reports the scenario itself as not run, with this reason.
        assert scenario.workload.if_image_missing == "skip"
        return
    execution = execute(scenario, sandbox_run, run_dir=tmp_path)
    assert execution.failures == [], [str(failure) for failure in execution.failures]
