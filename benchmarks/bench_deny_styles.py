"""How long a denied HTTPS client takes to fail under each `https_deny` style, with the client
timeout that matters for Oryx: .NET HttpClient's default of 100 s (the seed's ~100 s "A task was
canceled." in old Oryx images). No .NET here: a Python client (urllib) given the same timeout
asks the Oryx CDN simulator's listing URL behind a firewall with no rules.

Expected: `drop` hangs until the client's timeout (~100 s, the "task was canceled" shape);
`close` fails at once with an EOF after the ClientHello (Azure's observed behaviour). Takes about
100 s per `drop` repeat; the tests use a 3 s timeout instead.

usage: .venv/bin/python benchmarks/bench_deny_styles.py [--timeout 100] [--styles drop,close]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness.sandbox import PYTHON_IMAGE, RunSpec, build_images, run
from harness.sandbox.images import ORYX_CDN_SIM_IMAGE
from harness.scenario import Upstream

CDN = "oryx-cdn.microsoft.io"
CLIENT = """
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


def measure(style: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="egress-bench-deny-") as folder:
        run_dir = Path(folder)
        (run_dir / "policy.yaml").write_text("allow: []\n")
        lines: list[str] = []
        run(
            RunSpec(
                run_dir=run_dir,
                image=PYTHON_IMAGE,
                command=["python3", "-c", CLIENT, str(timeout)],
                timeout=timeout + 60,
                https_deny=style,  # type: ignore[arg-type]
                upstreams=[Upstream("oryx-cdn", ORYX_CDN_SIM_IMAGE, (CDN,))],
            ),
            on_output=lines.append,
        )
        outcome = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
        return {"style": style, **outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=100.0, help="the client's timeout (s)")
    parser.add_argument("--styles", default="drop,close", help="comma-separated https_deny styles")
    arguments = parser.parse_args()
    build_images(lambda line: None)
    print(f"client timeout {arguments.timeout:.0f} s, firewall with no rules, {CDN} (simulated)")
    for style in arguments.styles.split(","):
        result = measure(style.strip(), arguments.timeout)
        print(f"https_deny={result['style']:<6} failed after {result['seconds']:7.2f} s: "
              f"{result['error']}")  # fmt: skip


if __name__ == "__main__":
    main()
