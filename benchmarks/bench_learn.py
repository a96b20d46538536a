"""egress learn --classify against the loop people run in Azure today, on the same harness:
deny all, run, allow the first denied destination, run again, until the build succeeds (each
run a fresh gateway, as `egress run` does). Prints runs, gateway starts and wall time of each and
the ratio of wall times, measured in this one run (target: at most 0.5). `learn` runs all its
runs on one gateway (harness.sandbox.session).

    .venv/bin/python benchmarks/bench_learn.py [SCENARIO]   (default: the Flask scenario)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from harness.execute import RunOverrides, execute
from harness.interrupt import unwind_on_sigterm
from harness.learn import default_parallel, learn
from harness.policy.model import Policy
from harness.policy.shorthand import merge_allow
from harness.sandbox import build_images, run, shared_gateway
from harness.sandbox.images import images_for_scenarios
from harness.scenario import load_scenario

DEFAULT = Path(__file__).resolve().parent.parent / "scenarios" / "python-requirements.scenario.yaml"
MAX_LOOPS = 20


def naive_loop(scenario) -> tuple[int, float, list[str]]:
    started = time.monotonic()
    allowed: list[str] = []
    for runs in range(1, MAX_LOOPS + 1):
        policy = merge_allow(Policy(f"{scenario.name}-naive"), allowed)
        execution = execute(
            scenario, run, RunOverrides(policy=policy, mode="enforce"), run_suffix=f"naive-{runs}"
        )
        if execution.succeeded:
            return runs, time.monotonic() - started, allowed
        first_denied = next((row for row in execution.destinations if "Deny" in row.would), None)
        if first_denied is None:
            raise SystemExit(f"run {runs} failed with nothing denied; the loop cannot go on")
        allowed.append(first_denied.host)
    raise SystemExit(f"no success after {MAX_LOOPS} runs")


def main() -> None:
    scenario = load_scenario(sys.argv[1] if len(sys.argv) > 1 else DEFAULT)
    build_images(lambda line: None, only=images_for_scenarios([scenario]))
    os.environ.setdefault("EGRESS_RUNS_DIR", tempfile.mkdtemp(prefix="egress-bench-learn-"))
    naive_runs, naive_seconds, naive_hosts = naive_loop(scenario)
    sessions = []

    class Counting:
        """`run` as the CLI passes it, counting the shared gateways learn asks for."""

        def __call__(self, spec, on_output=None):
            return run(spec, on_output)

        def shared(self):
            sessions.append(shared_gateway())
            return sessions[-1]

    started = time.monotonic()
    result = learn(scenario, Counting(), classify=True, parallel=default_parallel())
    learn_seconds = time.monotonic() - started
    starts = sum(session.gateway_starts for session in sessions)
    print(f"scenario {scenario.name}")
    print(f"naive loop            {naive_runs:3d} runs  {naive_runs:3d} gateway starts  "
          f"{naive_seconds:7.1f} s  allowed {len(naive_hosts)} host(s)")  # fmt: skip
    marks = ", ".join(f"{c.classification}" for c in result.candidates)
    print(f"learn --classify      {result.runs:3d} runs  {starts:3d} gateway starts  "
          f"{learn_seconds:7.1f} s  {len(result.candidates)} destination(s): {marks}; "
          f"verified={result.verified}")  # fmt: skip
    print(
        f"wall time learn/naive {learn_seconds / naive_seconds:.2f}x (target <= 0.5); "
        f"runs learn/naive {result.runs / naive_runs:.2f}x"
    )


if __name__ == "__main__":
    unwind_on_sigterm()
    main()
