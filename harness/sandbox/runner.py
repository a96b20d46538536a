"""One run: upstreams, gateway, workload (and the scenario's client outside), cleanup."""

from __future__ import annotations

__all__ = ["RunResult", "RunSpec", "run"]

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from harness.runfolder import GATEWAY_LOG
from harness.runtime import RunResult, RunSpec  # plain data: the runtime seam's
from harness.sandbox.engine import client as engine_client
from harness.sandbox.engine import local_image
from harness.sandbox.gateway import Gateway, start_gateway
from harness.sandbox.inbound import (
    client_network,
    require_client_image,
    run_with_client,
)
from harness.sandbox.labels import new_run_id
from harness.sandbox.pull import ensure_run_images
from harness.sandbox.upstreams import start_upstreams
from harness.sandbox.workload import prepared_workload, run_prepared, run_workload

CLOSE_GRACE_SECONDS = 0.05


class _EarlyWorkload:
    """The workload's container, prepared in a thread while the gateway starts."""

    def __init__(self, spec: RunSpec, trust: Sequence[str], engine) -> None:
        self.spec, self.trust, self.engine = spec, trust, engine
        self.holder = ExitStack()
        self.pool: ThreadPoolExecutor | None = None
        self.future: Future | None = None

    def prepare(self, gateway: Gateway) -> None:
        spec = self.spec
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="egress-workload")
        self.future = self.pool.submit(
            self.holder.enter_context,
            prepared_workload(gateway, image=spec.image, command=spec.command,
                              workdir=spec.workdir, env=spec.env, trust=self.trust,
                              user=spec.user, engine=self.engine),
        )  # fmt: skip

    def container(self):
        """The prepared container (its preparation's error raised here), or None."""
        return self.future.result() if self.future is not None else None

    def close(self) -> None:
        # The preparation must have finished before its container can be removed.
        if self.future is not None:
            try:
                self.future.result()
            except BaseException:  # noqa: BLE001, S110 - its error was raised in container()
                pass
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.holder.close()


def spec_gateway(spec: RunSpec, *, run_dir: Path, run_id: str, sites, client_net: str | None,
                 engine, **extra):  # fmt: skip
    """The gateway a run's spec asks for (its policy, mode, deny style, DNS mode, hosts and
    networks, with the upstreams' and the client's), as `start_gateway`'s context manager:
    the one place a RunSpec becomes a gateway, for a single run, a chain and a shared gateway.
    `extra` goes to `start_gateway` as it is (on_started, shared_root)."""
    return start_gateway(
        run_dir=run_dir,
        run_id=run_id,
        policy_path=spec.policy_path,
        mode=spec.mode,
        https_deny=spec.https_deny,
        hosts={**sites.hosts, **spec.hosts},
        dns=spec.dns,
        networks=[*spec.networks, *sites.networks, *([client_net] if client_net else [])],
        engine=engine,
        addon_root=spec.addon_root,
        **extra,
    )


def run(spec: RunSpec, on_output: Callable[[str], None] | None = None) -> RunResult:
    """Start the gateway, run the workload behind it (and the client outside it), remove all;
    the recording stays in run_dir (events.jsonl, azure.log from the addon; workload.log,
    gateway.log and, with a client, client.log from here)."""
    engine = engine_client()
    run_dir = Path(spec.run_dir).resolve()
    run_id = spec.run_id or new_run_id(run_dir.name)
    # Every image before anything starts: a missing one costs no gateway start-up.
    ensure_run_images(engine, spec)
    if spec.steps:
        from harness.sandbox.chain import run_chain

        return run_chain(spec, engine=engine, run_dir=run_dir, run_id=run_id, on_output=on_output)
    local_image(engine, spec.image)
    if spec.client is not None:
        require_client_image(engine, spec.client)
    with ExitStack() as stack:
        sites = stack.enter_context(
            start_upstreams(spec.upstreams, run_dir=run_dir, run_id=run_id, engine=engine)
        )
        client_net = stack.enter_context(client_network(engine, run_id)) if spec.client else None
        trust = [*spec.trust, *sites.trust]
        # The workload's container is made and filled while the gateway starts (it is started
        # only once the gateway is ready): ~0.1-0.3 s of every run.
        early = _EarlyWorkload(spec, trust, engine)
        stack.callback(early.close)
        gateway = stack.enter_context(
            spec_gateway(spec, run_dir=run_dir, run_id=run_id, sites=sites, client_net=client_net,
                         engine=engine,
                         on_started=early.prepare if spec.client is None else None)
        )
        workload = {
            "image": spec.image,
            "command": spec.command,
            "run_dir": run_dir,
            "workdir": spec.workdir,
            "env": spec.env,
            "trust": trust,
            "timeout": spec.timeout,
            "on_output": on_output,
            "user": spec.user,
            "engine": engine,
        }
        try:
            if spec.client is None or client_net is None:
                container = early.container()
                result = (
                    run_prepared(container, run_dir, spec.timeout, on_output)
                    if container is not None
                    else run_workload(gateway, **workload)
                )
            else:
                result = run_with_client(gateway, spec.client, network=client_net, **workload)
        finally:
            # Give the addon a moment to record the last connection's close before G stops
            # (whatever is still open then is written by its shutdown, with the bytes so far).
            time.sleep(CLOSE_GRACE_SECONDS)
            (run_dir / GATEWAY_LOG).write_text(gateway.log_tail(lines=2000))
    return RunResult(
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        duration_s=result.duration_s,
        run_dir=run_dir,
        run_id=run_id,
    )
