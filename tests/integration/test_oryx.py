"""Oryx's SDK CDN behind the firewall (docs/oryx.md): the CDN simulator answering Oryx's request
sequence, how `drop` and `close` differ for .NET's HttpClient (Mono's, in egress/dotnet-mono),
and the real Oryx build image, which runs only where it can be had."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from docker.errors import ImageNotFound

from harness.errors import EnvironmentProblem
from harness.execute import execute
from harness.sandbox import DOTNET_MONO_IMAGE, PYTHON_IMAGE, RunSpec, leftovers, run
from harness.sandbox.images import ORYX_CDN_SIM_IMAGE
from harness.sandbox.upstreams import read_requests
from harness.scenario import Upstream, load_scenario

pytestmark = pytest.mark.docker

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
CDN = "oryx-cdn.microsoft.io"
CDN_SITE = Upstream("oryx-cdn", ORYX_CDN_SIM_IMAGE, (CDN,))
LISTING_PATH = "/python?restype=container&comp=list&include=metadata&marker="
LISTING = f"https://{CDN}{LISTING_PATH}"
EOF_IN_HANDSHAKE = (
    "System.IO.IOException: Authentication failed because the remote party has closed the "
    "transport stream."
)
DENY_LINE = f"to {CDN}:443. Action: Deny. No rule matched. Proceeding with default action"

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


def run_httpget(run_dir: Path, addon_root: Path, *command: str, https_deny="close"):
    """`httpget` (Mono's HttpClient) behind the firewall: the result, its output, and the final
    JSON line (seconds, error_type, message, inner, attempts)."""
    lines: list[str] = []
    result = run(
        RunSpec(
            run_dir=run_dir,
            image=DOTNET_MONO_IMAGE,
            command=list(command),
            timeout=60,
            https_deny=https_deny,
            addon_root=addon_root,
            upstreams=[CDN_SITE],
        ),
        on_output=lines.append,
    )
    outcome = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    assert outcome is not None, lines
    return result, lines, outcome


def test_drop_holds_httpclient_until_its_timeout_then_the_operation_was_canceled(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [])
    result, lines, outcome = run_httpget(
        run_dir, addon_root, "httpget", LISTING, "--timeout", "3", https_deny="drop"
    )
    assert result.exit_code == 1, lines
    assert 2.9 <= outcome["seconds"] < 4.5, outcome
    # The TLS handshake is cut by the timeout: CoreFX's wording, not "A task was canceled.".
    assert outcome["error_type"] == "System.Threading.Tasks.TaskCanceledException", outcome
    assert outcome["message"] == "The operation was canceled.", outcome
    assert outcome["inner"][0].startswith("System.IO.IOException: Unable to read data"), outcome
    assert outcome["attempts"] == 1, outcome
    assert read_requests(run_dir, "oryx-cdn") == []
    assert leftovers(engine, result.run_id) == []


def test_close_fails_httpclient_at_once_with_an_http_request_exception(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [])
    result, lines, outcome = run_httpget(
        run_dir, addon_root, "httpget", LISTING, "--timeout", "3", https_deny="close"
    )
    assert result.exit_code == 1, lines
    assert outcome["seconds"] < 1.5, outcome
    assert outcome["error_type"] == "System.Net.Http.HttpRequestException", outcome
    assert outcome["message"] == (
        "The SSL connection could not be established, see inner exception."
    ), outcome
    assert outcome["inner"] == [EOF_IN_HANDSHAKE], outcome
    assert DENY_LINE in (run_dir / "azure.log").read_text()
    assert read_requests(run_dir, "oryx-cdn") == []
    assert leftovers(engine, result.run_id) == []


def test_close_with_oryxs_retries_ends_at_the_timeout_with_a_task_was_canceled(
    engine, images, run_dir, addon_root, write_policy
):
    """Oryx's retry policy sits inside its HttpClient: each attempt fails at once, and the
    timeout cuts a wait between attempts short (at 3 s: during the second wait, of 4 s)."""
    write_policy(run_dir, [])
    result, lines, outcome = run_httpget(
        run_dir,
        addon_root,
        *("httpget", LISTING, "--timeout", "3", "--retries", "6"),
        https_deny="close",
    )
    assert result.exit_code == 1, lines
    assert 2.9 <= outcome["seconds"] < 4.5, outcome
    assert outcome["error_type"] == "System.Threading.Tasks.TaskCanceledException", outcome
    assert outcome["message"] == "A task was canceled.", outcome
    assert outcome["inner"] == [], outcome
    assert outcome["attempts"] == 2, outcome
    assert (run_dir / "azure.log").read_text().count(DENY_LINE) == 2
    assert leftovers(engine, result.run_id) == []


def test_httpclient_gets_the_allowed_cdn_trusting_the_runs_test_ca(
    engine, images, run_dir, addon_root, write_policy
):
    write_policy(run_dir, [CDN])
    result, lines, outcome = run_httpget(run_dir, addon_root, "httpget", LISTING, "--timeout", "10")
    assert result.exit_code == 0, lines
    assert "HTTP 200" in lines, lines
    assert outcome["error_type"] is None, outcome
    assert [r["path"] for r in read_requests(run_dir, "oryx-cdn")] == [LISTING_PATH]
    assert leftovers(engine, result.run_id) == []


def test_mono_alone_does_not_trust_the_system_store_so_httpget_syncs_it(
    engine, images, run_dir, addon_root, write_policy
):
    """Mono's TLS reads its own store, not the bundle the harness binds over the system store:
    the program without the wrapper's cert-sync rejects the test CA."""
    write_policy(run_dir, [CDN])
    result, lines, outcome = run_httpget(
        run_dir, addon_root, "mono", "/usr/local/lib/httpget.exe", LISTING, "--timeout", "10"
    )
    assert result.exit_code == 1, lines
    assert outcome["error_type"] == "System.Net.Http.HttpRequestException", outcome
    assert "CERTIFICATE_VERIFY_FAILED" in outcome["inner"][-1], outcome
    assert leftovers(engine, result.run_id) == []


def test_oryx_build_scenario_runs_where_its_image_exists_or_says_plainly_why_not(
    engine, images, tmp_path
):
    """No registry is reachable here, so the real image is usually absent and cannot be pulled:
    then the run must stop with a message naming the image and the pull's answer, never pass as
    if Oryx had run."""
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
        # The scenario pulls a missing image (pull: missing): the pull's own answer, and the
        # offline route, are the reason.
        assert f"the workload image {image} is missing; pulling it failed: " in message
        assert "docker load -i image.tar" in message
        # pytest scenarios/ reports the scenario itself as not run, with this reason.
        assert scenario.workload.if_image_missing == "skip"
        return
    execution = execute(scenario, sandbox_run, run_dir=tmp_path)
    assert execution.failures == [], [str(failure) for failure in execution.failures]
