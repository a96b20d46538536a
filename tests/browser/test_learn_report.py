"""`egress learn --classify --report` on a fake runtime that applies the policy it is given,
then the learn's page in chromium: every run with its role and result, each destination's
evidence for required / optional / flaky, the audit and verify timelines drawn, and each run's
own report linked. The workload needs index and files, can do without telemetry, and without
cache succeeds once and fails once (flaky)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from chromium import close, dump_dom, hex_rgb, measure, screenshot
from PIL import Image

from harness.cli import main
from harness.testing import FakeRun, FakeRuntime
from harness.timeline import OUTCOMES

HOSTS = ("index.example.test", "files.example.test", "telemetry.example.test",
         "cache.example.test")  # fmt: skip


def classify_workload(run: FakeRun) -> int:
    """Needs index and files, can do without telemetry, and without cache succeeds only in
    a run whose folder name ends in 1 (flaky)."""
    for host in HOSTS:
        run.say(f"fetching from {host}")
        time.sleep(0.02)  # connections that take time, so bars have a length
        if run.connect(host, duration_ms=20):
            continue
        if host in HOSTS[:2] or (host == "cache.example.test" and run.name[-1] != "1"):
            run.say(f"ERROR: Max retries exceeded host='{host}'")
            run.duration_s = 1.5
            return 1
    run.duration_s = 1.5
    return 0


def test_learn_report_shows_each_run_and_the_evidence_per_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EGRESS_RUNS_DIR", str(tmp_path / "runs"))
    runtime = FakeRuntime(classify_workload)
    scenario = tmp_path / "pip.scenario.yaml"
    scenario.write_text("name: pip\nworkload:\n  image: egress/python\n  command: build\n"
                        "firewall:\n  policy: {allow: [nothing.example.test]}\n")  # fmt: skip
    assert main(["learn", str(scenario), "--classify", "--report"], runtime=runtime) == 0
    printed = capsys.readouterr().out
    found = re.search(r"Learn report: (\S+)", printed)
    assert found, printed
    page = Path(found.group(1))
    assert page.parent.name.endswith("-pip-learn") and page.parent.parent == tmp_path / "runs"

    dom = dump_dom(page)
    roles = re.findall(r'<tr data-role="([\w-]+)"><td>([^<]+)</td><td class="(\w+)">', dom)
    assert [(role, outcome) for role, _, outcome in roles] == [
        ("audit", "success"), ("verify", "success"),
        ("without", "failure"), ("without", "failure"), ("without", "success"),
        ("without", "success"), ("without", "success"), ("without", "failure"),
        ("verify-required", "success"),
    ]  # fmt: skip
    assert "classify: enforce, with cache.example.test denied (try 2)" in [t for _, t, _ in roles]
    rows = {
        host: (classification, listed, evidence)
        for host, classification, listed, evidence in re.findall(
            r"<tr data-host=\"([^\"]+)\">.*?<td class=\"classification \w+\">(\w+)</td>"
            r"<td>(\w+)</td><td>([^<]+)</td></tr>", dom, re.DOTALL)
    }  # fmt: skip
    assert {host: row[:2] for host, row in rows.items()} == {
        "index.example.test": ("required", "yes"), "files.example.test": ("required", "yes"),
        "telemetry.example.test": ("optional", "no"), "cache.example.test": ("flaky", "yes"),
    }  # fmt: skip
    assert rows["index.example.test"][2].startswith("denied it: try 1: failure in 1.5 s")
    assert "the workload fails without it" in rows["files.example.test"][2]
    assert "try 1: success in 1.5 s; try 2: success in 1.5 s" in rows["telemetry.example.test"][2]
    assert "try 1: success in 1.5 s; try 2: failure in 1.5 s" in rows["cache.example.test"][2]
    assert "disagree" in rows["cache.example.test"][2]
    # Each run's own report, linked and written.
    links = re.findall(r'<a href="([^"]+)">', dom)
    assert len(links) == len(roles)
    for link in links:
        assert (page.parent / link).resolve().is_file()

    # The audit run's timeline: everything would be denied by its empty policy, and is drawn so;
    # the verify run's: the learned destinations allowed.
    boxes = measure(page)
    svgs = {svg["id"]: svg for svg in boxes["svgs"]}
    assert set(svgs) == {"audit-timeline", "verify-timeline"}
    assert {bar["outcome"] for bar in svgs["audit-timeline"]["bars"]} == {"would-be-denied"}
    assert {bar["outcome"] for bar in svgs["verify-timeline"]["bars"]} == {"allowed"}
    assert len(svgs["audit-timeline"]["bars"]) == len(HOSTS)
    assert "would be denied (audit mode)" in re.sub(r"<[^>]+>", " ", dom)
    image = Image.open(screenshot(page, tmp_path / "learn.png", (1240, 2200))).convert("RGB")
    for name, outcome in (("audit-timeline", "would-be-denied"), ("verify-timeline", "allowed")):
        for bar in svgs[name]["bars"]:
            centre = (int(bar["x"] + bar["width"] / 2), int(bar["y"] + bar["height"] / 2))
            assert close(image.getpixel(centre), hex_rgb(OUTCOMES[outcome][1])), (name, bar)

    # `egress report` on the learn's folder writes the same page again.
    page.unlink()
    assert main(["report", str(page.parent)]) == 0
    assert "Learn report:" in capsys.readouterr().out and page.is_file()
    # And the index of the runs folder lists the learn with its verdict, and every run.
    assert main(["report", str(tmp_path / "runs")]) == 0
    index = dump_dom(tmp_path / "runs" / "index.html")
    listed = re.findall(r'<tr class="recording" data-folder="([^"]+)">', index)
    assert len(listed) == len(roles) + 1
    assert sum(name.endswith("-pip-learn") for name in listed) == 1
    assert ">verified</td>" in index
