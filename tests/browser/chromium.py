"""Debian's chromium, headless, for the report tests: the DOM after layout (with every drawn
element's box measured by the browser itself) and a screenshot at one CSS pixel per PNG pixel,
so a box read from the DOM can be looked up in the PNG."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

WINDOW = (1240, 1400)
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--force-device-scale-factor=1", "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}",
]  # fmt: skip

# Appended to a copy of the page: every bar's, tick's and row label's box, in page pixels.
_MEASURE = """
<script>
(function () {
  function box(el) { var r = el.getBoundingClientRect();
    return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width,
            height: r.height}; }
  function hoverText(el) {
    var title = el.querySelector('title'); return title ? title.textContent : el.dataset.hover; }
  function measureSvg(svg) {
    var out = {id: svg.id, svg: box(svg), bars: [], dns: [], output: [], labels: []};
    svg.querySelectorAll('rect.bar').forEach(function (el) {
      var b = box(el); b.outcome = el.classList[1]; b.label = el.dataset.label;
      b.fill = el.getAttribute('fill'); b.title = hoverText(el);
      out.bars.push(b); });
    svg.querySelectorAll('.dns-tick').forEach(function (el) {
      var b = box(el); b.title = hoverText(el); out.dns.push(b); });
    svg.querySelectorAll('.output-tick').forEach(function (el) {
      var b = box(el); b.stream = el.classList[1]; out.output.push(b); });
    svg.querySelectorAll('.row-label').forEach(function (el) {
      var b = box(el); b.text = el.lastChild.textContent; out.labels.push(b); });
    return out;
  }
  var svgs = Array.prototype.map.call(document.querySelectorAll('svg.timeline-svg'), measureSvg);
  var out = svgs.length ? Object.assign({}, svgs[0]) : {svg: null, bars: [], dns: [], output: [], labels: []};
  out.svgs = svgs;
  // Hover the first denied bar (else the first bar): the panel it opens, measured.
  var target = document.querySelector('svg.timeline-svg rect.bar.denied')
    || document.querySelector('svg.timeline-svg rect.bar');
  var panel = document.getElementById('hover');
  if (target && panel) {
    var r = target.getBoundingClientRect();
    var x = r.left + r.width / 2, y = r.top + r.height / 2;
    target.dispatchEvent(new MouseEvent('mouseenter', {clientX: x, clientY: y, bubbles: false}));
    var p = box(panel);
    out.hover = {x: p.x, y: p.y, width: p.width, height: p.height, text: panel.textContent,
                 shown: getComputedStyle(panel).display !== 'none',
                 target: {x: x + window.scrollX, y: y + window.scrollY}};
    target.dispatchEvent(new MouseEvent('mouseleave', {bubbles: false}));
    out.hover.hidden_after = getComputedStyle(panel).display === 'none';
  }
  var pre = document.createElement('pre'); pre.id = 'measured';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
})();
</script>
"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "chromium is missing; bin/test installs Debian's chromium (apt-get install chromium)"
        )
    return path


def dump_dom(page: Path, *, wait_ms: int = 0) -> str:
    """The DOM once the page loaded (and `wait_ms` of its timers and promises ran)."""
    wait = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
    return subprocess.run(
        [chromium(), *FLAGS, *wait, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=90, check=True,
    ).stdout  # fmt: skip


def measure(page: Path) -> dict:
    """The page's drawn boxes as the browser laid them out (a measuring copy of the page)."""
    probe = page.with_name(page.stem + ".measure.html")
    html = page.read_text(encoding="utf-8")
    probe.write_text(html.replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    dom = dump_dom(probe)
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.DOTALL)
    assert found, "the measuring script did not run"
    import html as html_module

    return json.loads(html_module.unescape(found.group(1)))


def screenshot(page: Path, target: Path, window: tuple[int, int] = WINDOW) -> Path:
    flags = [flag for flag in FLAGS if not flag.startswith("--window-size")]
    subprocess.run(
        [chromium(), *flags, f"--window-size={window[0]},{window[1]}",
         f"--screenshot={target}", page.as_uri()],
        capture_output=True, timeout=90, check=True,
    )  # fmt: skip
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return target


def hex_rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def close(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a[:3], b[:3], strict=True))
