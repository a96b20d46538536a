"""`egress report` in a real headless browser (Debian's chromium): the page loads without the
network, the timeline shows every event of the recording, and a screenshot is produced."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cli import main
from harness.events import Event, event_for_decision
from harness.policy.model import ALLOW, DENY, Decision, Reason, Request, RuleRef
from harness.recording import Recorder

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "chromium is missing; bin/test installs Debian's chromium (apt-get install chromium)"
        )
    return path


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    folder = tmp_path / "20261128T120000-demo"
    recorder = Recorder(folder)
    recorder.write(Event(ts="2026-11-28T12:00:00.000Z", run="r", kind="lifecycle", reason="ready"))
    allow = Decision(
        ALLOW, ALLOW, Reason.RULE_MATCHED, RuleRef("p", "g", "c", "index"), "ApplicationRule"
    )
    deny = Decision(DENY, DENY, Reason.DEFAULT_DENY)
    for second, (host, decision) in enumerate(
        [("index.example.test", allow), ("files.example.test", deny), ("files.example.test", deny)],
        start=1,
    ):
        request = Request("HTTPS", "172.18.0.2", 40000 + second, 443, dst_ip="192.0.2.1", host=host)
        event = event_for_decision(request, decision, policy_name="p")
        event.ts = f"2026-11-28T12:00:0{second}.000Z"
        recorder.write(event)
    recorder.close()
    output = [("2026-11-28T12:00:01.500Z", "Collecting flask"),
              ("2026-11-28T12:00:03.500Z", "ERROR: SSLEOFError host='files.example.test'")]  # fmt: skip
    (folder / "workload.jsonl").write_text(
        "".join(json.dumps({"ts": ts, "line": line}) + "\n" for ts, line in output)
    )
    (folder / "summary.json").write_text(json.dumps({"scenario": "demo", "outcome": "failure", "policy": "p",
                                                     "mode": "enforce", "duration_s": 3.5}))  # fmt: skip
    return folder


def test_report_page_shows_every_event_in_a_real_browser(recording: Path, tmp_path: Path) -> None:
    assert main(["report", str(recording)]) == 0
    page = recording / "report.html"
    html = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), (
        "the page must not load anything"
    )

    dom = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    rows = re.findall(r"<div class=\"row ([^\"]+)\" data-kind=\"(\w+)\">", dom)
    assert [kind for _, kind in rows] == ["tls", "output", "tls", "tls", "output"]
    assert [css for css, _ in rows if css.startswith("event")] == [
        "event allow",
        "event deny",
        "event deny",
    ]
    assert "files.example.test:443 was denied" in dom  # the diagnosis
    assert 'id="outcome">failure<' in dom

    screenshot = tmp_path / "report.png"
    subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--screenshot={screenshot}", "--window-size=1200,900", page.as_uri()],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    assert screenshot.stat().st_size > 10_000
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
