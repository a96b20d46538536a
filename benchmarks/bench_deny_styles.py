"""How long a denied .NET HttpClient takes to fail under each `https_deny` style, and with what
exception (docs/oryx.md). The client is `httpget` in egress/dotnet-mono: `new HttpClient()` with
its default Timeout of 100 s, in Mono's implementation of System.Net.Http (no .NET SDK can be
had here without a registry). It asks the Oryx CDN simulator's listing URL behind a firewall with
no rules; one run with the CDN allowed is the baseline.

Each style runs once as a plain client and once with Oryx's retry policy inside the client
(`httpget --retries 6`: wait 2, 4, 8, ... s after an HttpRequestException, like the Polly handler
on Oryx's "general" HttpClient). Expected: `drop` hangs until the 100 s timeout either way
("The operation was canceled."); `close` fails at once (HttpRequestException), and with the
retries ends at 100 s with "A task was canceled." (the timeout cutting the 6th wait short).

Takes about 100 s per `drop` run and per retried `close` run (5 runs, ~5 min in all); --timeout
shortens the client's timeout for trials.

usage: .venv/bin/python benchmarks/bench_deny_styles.py [--timeout SECONDS] [--styles drop,close]
       [--retries 0,6]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness.interrupt import unwind_on_sigterm
from harness.sandbox import DOTNET_MONO_IMAGE, RunSpec, build_images, run
from harness.sandbox.images import ORYX_CDN_SIM_IMAGE
from harness.scenario import Upstream

CDN = "oryx-cdn.microsoft.io"
LISTING = f"https://{CDN}/python?restype=container&comp=list&include=metadata&marker="
DEFAULT_TIMEOUT = 100.0  # HttpClient.Timeout's default; httpget is not told it
ORYX_RETRIES = 6


def measure(style: str, timeout: float | None, retries: int, allowed: bool = False) -> dict:
    """One run of httpget behind a fresh gateway; its final JSON line."""
    command = ["httpget", LISTING]
    if timeout is not None:
        command += ["--timeout", f"{timeout:g}"]
    if retries:
        command += ["--retries", str(retries)]
    with tempfile.TemporaryDirectory(prefix="egress-bench-deny-") as folder:
        run_dir = Path(folder)
        (run_dir / "policy.yaml").write_text(f"allow: {json.dumps([CDN] if allowed else [])}\n")
        lines: list[str] = []
        result = run(
            RunSpec(
                run_dir=run_dir,
                image=DOTNET_MONO_IMAGE,
                command=command,
                timeout=(timeout or DEFAULT_TIMEOUT) + 60,
                https_deny=style,  # type: ignore[arg-type]
                upstreams=[Upstream("oryx-cdn", ORYX_CDN_SIM_IMAGE, (CDN,))],
            ),
            on_output=lines.append,
        )
        outcome = next((line for line in reversed(lines) if line.startswith("{")), None)
        if outcome is None:
            raise SystemExit(
                f"httpget printed no outcome (exit {result.exit_code}):\n" + "\n".join(lines)
            )
        return {
            "run": "allowed" if allowed else "denied",
            "style": style,
            "retries": retries,
            "status": next((line for line in lines if line.startswith("HTTP ")), ""),
            **json.loads(outcome),
        }


def row(result: dict) -> str:
    error = f"`{result['error_type']}`" if result["error_type"] else "-"
    message = result["message"] or result["status"]
    inner = result["inner"][0].split("\n")[0] if result["inner"] else "-"
    return (
        f"| {result['run']} | `{result['style']}` | {result['retries']} "
        f"| {result['seconds']:.2f} | {result['attempts']} | {error} | {message} | {inner} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="give httpget this timeout (s); default: none, so HttpClient's own 100 s applies",
    )
    parser.add_argument("--styles", default="drop,close", help="comma-separated https_deny styles")
    parser.add_argument(
        "--retries",
        default=f"0,{ORYX_RETRIES}",
        help="comma-separated retry counts for the denied runs (0: a plain client)",
    )
    arguments = parser.parse_args()
    build_images(lambda line: None)
    timeout = (
        f"{arguments.timeout:g} s (--timeout)"
        if arguments.timeout is not None
        else f"HttpClient's default ({DEFAULT_TIMEOUT:g} s)"
    )
    print(f"Mono HttpClient, timeout {timeout}, GET {LISTING} (simulated)")
    print("| run | `https_deny` | retries | seconds | attempts | exception | message | inner |")
    print("|---|---|---|---|---|---|---|---|")
    results = [measure("close", arguments.timeout, 0, allowed=True)]
    print(row(results[0]), flush=True)
    for retries in (int(value) for value in arguments.retries.split(",")):
        for style in (value.strip() for value in arguments.styles.split(",")):
            results.append(measure(style, arguments.timeout, retries))
            print(row(results[-1]), flush=True)
    plain = {r["style"]: r["seconds"] for r in results if r["run"] == "denied" and not r["retries"]}
    if plain.get("drop") and plain.get("close"):
        print(f"\ndrop/close (plain client): {plain['drop'] / plain['close']:.0f}x")


if __name__ == "__main__":
    unwind_on_sigterm()
    main()
