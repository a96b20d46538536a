"""The README's picture of a report: the fixture recording of a dozen connections with one
denied (fixture_runs.DOZEN), reported by `egress report`, shot in headless chromium and cut
to its title and timeline. Run it again when the page changes:

    .venv/bin/python tests/browser/make_readme_screenshot.py docs/report-timeline.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from chromium import measure, screenshot
from fixture_runs import write_recording
from PIL import Image

from harness.cli import main

WIDTH = 1240


def make(target: Path) -> Path:
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_recording(Path(scratch) / "20261128T120000-pip-flask")
        if main(["report", str(folder)]) != 0:
            raise SystemExit("egress report failed")
        page = folder / "report.html"
        svg = measure(page)["svg"]
        bottom = int(svg["y"] + svg["height"] + 16)
        shot = screenshot(page, Path(scratch) / "full.png", (WIDTH, bottom + 40))
        image = Image.open(shot).convert("RGB").crop((0, 0, WIDTH, bottom))
        # A small file: the page has few colours, a palette keeps them exact enough.
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    return target


if __name__ == "__main__":
    made = make(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report-timeline.png"))
    print(f"{made}: {made.stat().st_size} bytes")
