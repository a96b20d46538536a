"""A chain of steps behind one firewall (scenario `steps:`; the App Service chain of
harness.appservice): the upstreams and one gateway start once, then each step's workload (and
its client outside) runs to its end, one after the other, and the chain stops at the first step
that fails. `run_dir/steps.jsonl` gets one line per step as it ends:

    {"step": NAME, "started": TS, "ended": TS, "exit_code": N, "timed_out": false}

so the firewall's events can be told apart by step (`harness.steps`). Every container of every
step is labelled with the run and removed when its step ends; the gateway, the client network
and the upstreams when the chain ends, however it ends.
"""

from __future__ import annotations

__all__ = ["STEPS_FILE", "StepSpec", "run_chain"]

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import docker

from harness.events import now_iso
from harness.runtime import StepSpec  # plain data: the runtime seam's
from harness.sandbox.inbound import client_network, run_with_client
from harness.sandbox.upstreams import start_upstreams
from harness.sandbox.workload import run_workload
from harness.steps import STEPS_FILE


def run_chain(spec, *, engine: docker.DockerClient, run_dir: Path, run_id: str,
              on_output: Callable[[str], None] | None = None):  # fmt: skip
    """Run `spec.steps` (a RunSpec's) behind one gateway; the RunResult of the last step run
    (the first that failed, or the last one), with the whole chain's duration."""
    from harness.sandbox.runner import GATEWAY_LOG, RunResult, spec_gateway

    started = time.monotonic()
    needs_client = any(step.client is not None for step in spec.steps)
    exit_code, timed_out = 0, False
    with ExitStack() as stack:
        sites = stack.enter_context(
            start_upstreams(spec.upstreams, run_dir=run_dir, run_id=run_id, engine=engine)
        )
        client_net = stack.enter_context(client_network(engine, run_id)) if needs_client else None
        gateway = stack.enter_context(
            spec_gateway(spec, run_dir=run_dir, run_id=run_id, sites=sites, client_net=client_net,
                         engine=engine)
        )
        try:
            with (run_dir / STEPS_FILE).open("a", encoding="utf-8") as steps_log:
                for step in spec.steps:
                    if on_output is not None:
                        on_output(f"--- step {step.name}: {step.image}")
                    step_started = now_iso()
                    workload = {
                        "image": step.image,
                        "command": step.command,
                        "run_dir": run_dir,
                        "workdir": step.workdir,
                        "env": step.env,
                        "trust": [*step.trust, *sites.trust],
                        "timeout": step.timeout,
                        "on_output": on_output,
                        "user": spec.user,
                        "engine": engine,
                    }
                    if step.client is None or client_net is None:
                        result = run_workload(gateway, role=f"step-{step.name}", **workload)
                    else:
                        result = run_with_client(gateway, step.client, network=client_net,
                                                 **workload)  # fmt: skip
                    exit_code, timed_out = result.exit_code, result.timed_out
                    steps_log.write(json.dumps({
                        "step": step.name, "started": step_started, "ended": now_iso(),
                        "exit_code": exit_code, "timed_out": timed_out,
                    }) + "\n")  # fmt: skip
                    steps_log.flush()
                    if exit_code != 0 or timed_out:
                        if on_output is not None:
                            how = "timed out" if timed_out else f"exited with {exit_code}"
                            on_output(f"--- step {step.name} {how}; the chain stops here")
                        break
        finally:
            time.sleep(0.2)  # the addon records the last connection's close
            (run_dir / GATEWAY_LOG).write_text(gateway.log_tail(lines=2000))
    return RunResult(
        exit_code=exit_code,
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
        run_dir=run_dir,
        run_id=run_id,
    )
