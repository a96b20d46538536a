"""`egress report` in a real headless browser (Debian's chromium): the pages load without the
network, the timeline's bars are where their times say (boxes measured by the browser) and
have their outcome's colour in the screenshot (pixels read from the PNG), the fix is there in
five formats, and learn reports and the index link every recording."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from chromium import close, dump_dom, hex_rgb, measure, screenshot
from fixture_runs import DOZEN, DOZEN_OUTPUT, SPAN_S, Connection, write_recording
from PIL import Image

from harness.cli import main
from harness.timeline import LABEL_WIDTH, MIN_BAR_PX, OUTCOMES, PLOT_WIDTH

RED = hex_rgb(OUTCOMES["denied"][1])
ORANGE = hex_rgb(OUTCOMES["would-be-denied"][1])


def no_outside_loads(html: str) -> None:
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page must load nothing"
    assert "@import" not in html and "url(" not in html


@pytest.fixture
def dozen(tmp_path: Path) -> Path:
    return write_recording(tmp_path / "runs" / "20261128T120000-pip-flask")


def report(folder: Path, capsys: pytest.CaptureFixture[str] | None = None) -> Path:
    assert main(["report", str(folder)]) == 0
    return folder / "report.html"


def expected_x(svg: dict, seconds: float) -> float:
    return svg["x"] + LABEL_WIDTH + seconds / SPAN_S * PLOT_WIDTH


def test_dozen_connections_are_drawn_where_their_times_say(dozen: Path) -> None:
    page = report(dozen)
    no_outside_loads(page.read_text())
    boxes = measure(page)
    svg, bars = boxes["svg"], boxes["bars"]
    assert len(bars) == len(DOZEN) == 12
    # One row per host, in order of first connection; every connection to a host on its row.
    hosts = list(dict.fromkeys(c.host for c in DOZEN))
    assert [label["text"] for label in boxes["labels"]] == hosts
    row_y = {label["text"]: label["y"] for label in boxes["labels"]}
    assert sorted(row_y.values()) == list(row_y.values())
    by_label = {}
    for bar in bars:
        by_label.setdefault(bar["label"], []).append(bar)
    for host in hosts:
        drawn = sorted(by_label[f"{host}:443"], key=lambda bar: bar["x"])
        wanted = [c for c in DOZEN if c.host == host]
        assert len(drawn) == len(wanted)
        assert len({bar["y"] for bar in drawn}) == 1, f"{host}: its bars share one row"
        for bar, connection in zip(drawn, wanted, strict=True):
            assert bar["x"] == pytest.approx(expected_x(svg, connection.at), abs=1.0)
            width = max(MIN_BAR_PX, connection.duration_ms / 1000 / SPAN_S * PLOT_WIDTH)
            assert bar["width"] == pytest.approx(width, abs=1.0)
            assert bar["outcome"] == connection.outcome
    for upper, lower in itertools.pairwise(hosts):
        assert by_label[f"{upper}:443"][0]["y"] < by_label[f"{lower}:443"][0]["y"]
    # DNS lookups as ticks, output lines on their track, on the same axis.
    assert len(boxes["dns"]) == len(hosts)
    first_files = next(c for c in DOZEN if c.host == "files.example.test")
    files_tick = next(t for t in boxes["dns"] if "files.example.test" in t["title"])
    assert files_tick["x"] == pytest.approx(expected_x(svg, first_files.at - 0.05), abs=1.5)
    ticks = sorted(boxes["output"], key=lambda tick: tick["x"])
    assert len(ticks) == len(DOZEN_OUTPUT)
    for tick, (at, stream, _) in zip(ticks, DOZEN_OUTPUT, strict=True):
        assert tick["stream"] == stream
        assert tick["x"] + tick["width"] / 2 == pytest.approx(expected_x(svg, at), abs=1.0)
    assert min(t["y"] for t in ticks) > max(bar["y"] + bar["height"] for bar in bars)

    # Hover text: the Azure line, bytes and rule.
    denied = next(bar for bar in bars if bar["outcome"] == "denied")
    assert (
        "HTTPS request from 172.18.0.2:41002 to files.example.test:443. Action: Deny."
        in (denied["title"])
    )
    assert "bytes up 517, down 0" in denied["title"]
    assert "rule: (default action) No rule matched" in denied["title"]
    # Hovering it opens a panel next to it with that text; leaving closes it.
    hover = boxes["hover"]
    assert hover["shown"] and hover["hidden_after"]
    assert hover["text"] == denied["title"]
    assert (
        0 < hover["x"] - hover["target"]["x"] <= 20 and 0 < hover["y"] - hover["target"]["y"] <= 20
    )
    allowed = next(bar for bar in bars if bar["outcome"] == "allowed")
    assert (
        "rule: DefaultApplicationRuleCollectionGroup / allow-build / pip-index" in allowed["title"]
    )

    # The screenshot: each bar has its outcome's colour where the DOM says it is.
    shot = screenshot(page, dozen / "report.png")
    image = Image.open(shot).convert("RGB")
    for bar in bars:
        centre = (int(bar["x"] + bar["width"] / 2), int(bar["y"] + bar["height"] / 2))
        assert close(image.getpixel(centre), hex_rgb(bar["fill"])), (bar["label"], centre)
    # The denied bar is visible: a run of red pixels across its row, and red nowhere else in
    # the row's plot (its label, left of the plot, is red too).
    row = int(denied["y"] + denied["height"] / 2)
    plot = range(int(svg["x"] + LABEL_WIDTH), int(svg["x"] + svg["width"]))
    red_columns = [x for x in plot
                   if close(image.getpixel((x, row)), RED, 30)]  # fmt: skip
    assert len(red_columns) >= MIN_BAR_PX - 1
    assert min(red_columns) >= denied["x"] - 1 and max(red_columns) <= denied["x"] + denied["width"]


def test_the_rule_to_add_is_there_in_five_formats_each_with_its_header(dozen: Path) -> None:
    from harness.export import import_policy
    from harness.policy.decide import Decider
    from harness.policy.model import Request

    page = report(dozen)
    dom = dump_dom(page)
    tabs = re.findall(r'<label for="fix-(\w+)" class="tab" data-format="\w+">([^<]+)</label>', dom)
    assert [title for _, title in tabs] == ["YAML", "ARM", "Bicep", "Terraform", "az CLI"]
    import html

    texts = {
        fmt: html.unescape(text)
        for fmt, text in re.findall(r'<pre id="fix-text-(\w+)"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    }
    assert list(texts) == ["yaml", "arm", "bicep", "terraform", "azcli"]
    assert texts["yaml"].startswith("# Generated by egress-harness export from policy")
    assert '"_generator"' in texts["arm"] and "Generated by egress-harness export" in texts["arm"]
    assert texts["bicep"].startswith("// Generated by egress-harness export")
    assert texts["terraform"].startswith("# Generated by egress-harness export")
    assert texts["azcli"].splitlines()[1].startswith("# Generated by egress-harness export")
    for text in texts.values():
        assert "files.example.test" in text
    assert "az network firewall policy rule-collection-group" in texts["azcli"]
    assert 'resource "azurerm_firewall_policy_rule_collection_group"' in texts["terraform"]
    # What the tabs show is what loads: the YAML and the ARM template allow the denied host.
    for fmt, suffix in (("yaml", ".yaml"), ("arm", ".json"), ("terraform", ".tf")):
        path = dozen / f"fix{suffix}"
        path.write_text(texts[fmt])
        decision = Decider(import_policy(path)).decide(
            Request("HTTPS", "10.0.2.4", 50000, 443, host="files.example.test")
        )
        assert decision.allowed, fmt
    assert dom.count('<button class="copy" type="button"') == 5


def test_a_tab_shows_its_own_format_and_hides_the_others(dozen: Path, tmp_path: Path) -> None:
    page = report(dozen)
    html = page.read_text()
    shown = {}
    for fmt in ("yaml", "arm", "bicep", "terraform", "azcli"):
        # The state a click leaves: that tab's radio checked (CSS does the rest, no script).
        variant = re.sub(r'(<input type=radio name="fix" id="fix-\w+") checked', r"\1", html)
        variant = variant.replace(f'id="fix-{fmt}">', f'id="fix-{fmt}" checked>')
        probe = tmp_path / f"tab-{fmt}.html"
        probe.write_text(
            variant.replace(
                "</body>",
                """<script>
            var seen = []; document.querySelectorAll('.tab-panel').forEach(function (p) {
              if (p.offsetHeight > 0) seen.push(p.dataset.format); });
            var out = document.createElement('pre'); out.id = 'shown';
            out.textContent = seen.join(','); document.body.appendChild(out);
            </script></body>""",
            )
        )
        shown[fmt] = re.search(r'<pre id="shown">([^<]*)</pre>', dump_dom(probe)).group(1)
    assert shown == {fmt: fmt for fmt in shown}


def test_audit_run_speaks_of_would_be_denied_on_the_page_and_in_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connections = tuple(
        Connection(c.host, c.at, c.duration_ms, "would-be-denied" if c.outcome == "denied" else c.outcome)
        for c in DOZEN
    )  # fmt: skip
    folder = write_recording(tmp_path / "20261128T120000-pip-flask-audit", connections,
                             mode="audit", outcome="success")  # fmt: skip
    assert main(["report", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "1 would be denied: files.example.test:443" in printed
    assert "audit mode" in printed
    page = folder / "report.html"
    dom = dump_dom(page)
    text = re.sub(r"<[^>]+>", " ", dom)
    assert "would be denied (audit mode)" in text  # the legend
    assert "Would be denied, in order: files.example.test:443" in text
    assert "In enforce mode, files.example.test:443 would be denied first" in text
    assert '<td class="would-deny">would be denied</td>' in dom
    assert not re.search(r"\bwas denied\b|>denied<|Denied, in order", dom)
    # The event log: every event and output line in time order, the audit denial marked.
    log = re.findall(r'<div class="row ([^"]+)" data-kind="(\w+)">', dom)
    assert len(log) == len(DOZEN) + 5 + len(DOZEN_OUTPUT)  # connections, DNS lookups, output
    assert [css for css, _ in log if "would-deny" in css] == ["event would-deny"]
    assert "The rules to add" in text
    boxes = measure(page)
    flagged = [bar for bar in boxes["bars"] if bar["outcome"] == "would-be-denied"]
    assert [bar["label"] for bar in flagged] == ["files.example.test:443"]
    image = Image.open(screenshot(page, tmp_path / "audit.png")).convert("RGB")
    bar = flagged[0]
    assert close(image.getpixel((int(bar["x"] + 2), int(bar["y"] + bar["height"] / 2))), ORANGE)


def test_unreachable_and_failed_upstreams_have_their_own_colours(tmp_path: Path) -> None:
    connections = (
        Connection("index.example.test", 0.5, 2000, "allowed"),
        Connection("gone.example.test", 3.0, 1500, "unreachable"),
        Connection("closed.example.test", 5.0, 1000, "failed-upstream"),
        Connection("files.example.test", 7.0, 5, "denied"),
    )
    output = ((0.0, "workload", "start"), (9.0, "client", "curl: (52) Empty reply"),
              (SPAN_S, "workload", "done"))  # fmt: skip
    folder = write_recording(tmp_path / "20261128T120000-mixed", connections, output)
    page = report(folder)
    boxes = measure(page)
    image = Image.open(screenshot(page, tmp_path / "mixed.png")).convert("RGB")
    outcomes = {}
    for bar in boxes["bars"]:
        pixel = image.getpixel(
            (int(bar["x"] + bar["width"] / 2), int(bar["y"] + bar["height"] / 2))
        )
        assert close(pixel, hex_rgb(OUTCOMES[bar["outcome"]][1])), bar["label"]
        outcomes[bar["label"]] = bar["outcome"]
    assert outcomes == {f"{c.host}:443": c.outcome for c in connections}
    unreachable = next(bar for bar in boxes["bars"] if bar["outcome"] == "unreachable")
    assert "upstream: unreachable" in unreachable["title"]
    # The client's output is its own track, below the workload's.
    streams = {tick["stream"]: tick for tick in boxes["output"]}
    assert set(streams) == {"workload", "client"}
    assert streams["client"]["y"] > streams["workload"]["y"]
    assert streams["client"]["x"] == pytest.approx(expected_x(boxes["svg"], 9.0) - 1, abs=1.0)
    legend = re.sub(r"<[^>]+>", " ", dump_dom(page))
    assert "allowed, upstream unreachable" in legend and "upstream failed" in legend


def test_five_hundred_connections_collapse_into_rows_that_fit(tmp_path: Path) -> None:
    connections = tuple(
        Connection(f"h{number % 150}.site{number % 150 // 2}.test", number * SPAN_S / 520, 30,
                   "denied" if number == 250 else "allowed")
        for number in range(500)
    )  # fmt: skip
    folder = write_recording(tmp_path / "20261128T120000-many", connections, dns=False)
    page = report(folder)
    boxes = measure(page)
    svg = boxes["svg"]
    assert len(boxes["bars"]) == 500
    assert len(boxes["labels"]) == 60  # 75 registrable domains: 59 rows and one for the rest
    assert any(label["text"].endswith("(2 hosts)") for label in boxes["labels"])
    assert svg["height"] < 1400
    for bar in boxes["bars"]:
        assert svg["x"] <= bar["x"] and bar["x"] + bar["width"] <= svg["x"] + svg["width"] + 1
        assert svg["y"] <= bar["y"] and bar["y"] + bar["height"] <= svg["y"] + svg["height"]
    denied = next(bar for bar in boxes["bars"] if bar["outcome"] == "denied")
    image = Image.open(screenshot(page, tmp_path / "many.png")).convert("RGB")
    centre = (int(denied["x"] + denied["width"] / 2), int(denied["y"] + denied["height"] / 2))
    assert close(image.getpixel(centre), RED), "the denied bar is drawn above the allowed ones"


def test_index_lists_every_recording_newest_first_and_links_each_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    write_recording(runs / "20261128T120000-pip-flask")
    write_recording(runs / "20261128T130000-pip-flask-audit", mode="audit", outcome="success",
                    connections=tuple(Connection(c.host, c.at, c.duration_ms,
                                                 "would-be-denied" if c.outcome == "denied" else c.outcome)
                                      for c in DOZEN))  # fmt: skip
    write_recording(runs / "20261128T140000-npm", DOZEN[:3], outcome="failure", scenario="npm")
    damaged = runs / "20261128T150000-broken"
    damaged.mkdir()
    (damaged / "events.jsonl").write_text("{not json\n" + DOZEN_LINE + "\n")
    (runs / "notes").mkdir()  # not a recording: not listed
    assert main(["report", str(runs)]) == 0
    assert "Index:" in capsys.readouterr().out
    index = runs / "index.html"
    no_outside_loads(index.read_text())
    dom = dump_dom(index)
    rows = re.findall(r'<tr class="recording" data-folder="([^"]+)">(.*?)</tr>', dom, re.DOTALL)
    assert [folder for folder, _ in rows] == [
        "20261128T150000-broken", "20261128T140000-npm",
        "20261128T130000-pip-flask-audit", "20261128T120000-pip-flask",
    ]  # fmt: skip
    cells = dict(rows)
    assert "1 would be denied" in cells["20261128T130000-pip-flask-audit"]
    assert re.search(r">failure</td><td class=\"num\">5</td><td class=\"num\">1</td>",
                     cells["20261128T120000-pip-flask"])  # fmt: skip
    links = re.findall(r'<a href="([^"]+)">', dom)
    assert len(links) >= 3  # the damaged one too, once the reader keeps what is undamaged
    for link in links:
        assert (runs / link).is_file() and (runs / link).name == "report.html"
    image = Image.open(screenshot(index, tmp_path / "index.png", (1000, 400))).convert("RGB")
    assert image.size == (1000, 400)


DOZEN_LINE = json.dumps({"v": 1, "ts": "2026-11-28T12:00:01.000Z", "run": "r", "kind": "tls"})


def test_the_readme_shows_a_screenshot_with_the_denied_bar(tmp_path: Path) -> None:
    from make_readme_screenshot import make

    repo = Path(__file__).resolve().parents[2]
    assert "](docs/report-timeline.png)" in (repo / "README.md").read_text()
    committed = Image.open(repo / "docs" / "report-timeline.png").convert("RGB")
    width, height = committed.size

    def solid_red_block(image: Image.Image) -> bool:
        # A bar, not text: 3 columns by 8 rows of the denied colour.
        pixels = image.load()
        return any(
            all(close(pixels[x + dx, y + dy], RED, 24) for dx in range(3) for dy in range(8))
            for x in range(LABEL_WIDTH, width - 3) for y in range(height - 8)
            if close(pixels[x, y], RED, 24)
        )  # fmt: skip

    assert solid_red_block(committed)
    # The committed picture is what the script makes today (same layout, same size).
    made = Image.open(make(tmp_path / "made.png")).convert("RGB")
    assert made.size == committed.size
    assert solid_red_block(made)


@pytest.mark.parametrize("clipboard", ["granted", "refused"])
def test_a_copy_button_copies_its_own_formats_text(
    dozen: Path, tmp_path: Path, clipboard: str
) -> None:
    import html as html_module

    page = report(dozen)
    probe = tmp_path / "copy.html"
    # The clipboard API granted (what was written is recorded) or refused, as it may be for a
    # page opened from disk (then the page copies a selected textarea with execCommand).
    settle = "Promise.resolve()" if clipboard == "granted" else "Promise.reject(new Error('no'))"
    probe.write_text(
        page.read_text()
        .replace(
            "<script>",
            """<script>
        var copied = [];
        Object.defineProperty(navigator, 'clipboard', {value: {writeText: function (text) {
          copied.push('clipboard:' + text); return SETTLE; }}});
        Object.defineProperty(window, 'isSecureContext', {value: true});
        document.execCommand = function (command) {
          copied.push(command + ':' + document.querySelector('body > textarea').value);
          return true; };
        </script><script>""".replace("SETTLE", settle),
            1,
        )
        .replace(
            "</body>",
            """<script>
        var button = document.querySelector('button.copy[data-target="fix-text-terraform"]');
        button.click();
        setTimeout(function () {
          var out = document.createElement('pre'); out.id = 'copied';
          out.textContent = JSON.stringify(copied); out.dataset.button = button.textContent;
          document.body.appendChild(out); }, 50);
        </script></body>""",
        )
    )
    dom = dump_dom(probe, wait_ms=500)
    found = re.search(r'<pre id="copied" data-button="(\w+)">(.*?)</pre>', dom, re.DOTALL)
    assert found, "the copy button did not run"
    terraform = html_module.unescape(
        re.search(r'<pre id="fix-text-terraform"[^>]*>(.*?)</pre>', dom, re.DOTALL).group(1)
    )
    assert found.group(1) == "Copied"
    copied = json.loads(html_module.unescape(found.group(2)))
    if clipboard == "granted":
        assert copied == ["clipboard:" + terraform]
    else:
        assert copied == ["clipboard:" + terraform, "copy:" + terraform]
    assert "<textarea" not in dom  # removed after copying
