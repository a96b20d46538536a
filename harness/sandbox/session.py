"""One gateway for many runs: what `egress learn` runs its audit, verify and classify runs on.

`SharedGateway` is a `sandbox_run` (the shape of `harness.sandbox.run`): each call runs one
workload, fresh, behind a gateway that stays up between calls. Before each run the gateway is
switched to that run's policy, mode, deny style and recording folder (one mitmproxy option
update: `Gateway.switch`), so every run still gets its own complete recording. The upstreams,
the client network and the gateway are started again only when a run's firewall setup differs
from the previous one's (its hosts, upstreams, client, extra networks, addon root, or the folder
its run folder is in): consecutive runs of one scenario, or of several scenarios whose firewall
settings agree, share one gateway.

Runs on one gateway share its network namespace, so they run one at a time
(`one_at_a_time`); `learn` then classifies sequentially.

`warm(spec)` starts a session's gateway before its first run, for runs like `spec`: `learn`
starts the gateways of its classify runs while the audit run goes, so they are ready (and only
switched) when the audit's candidates are known.
"""

from __future__ import annotations

__all__ = ["SharedGateway", "shared_gateway"]

import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Self

from harness.runfolder import POLICY
from harness.sandbox.engine import client as engine_client
from harness.sandbox.engine import local_image
from harness.sandbox.gateway import Gateway, writable_by_gateway
from harness.sandbox.inbound import client_network, require_client_image, run_with_client
from harness.sandbox.labels import new_run_id
from harness.sandbox.pull import ensure_run_images
from harness.sandbox.runner import (
    CLOSE_GRACE_SECONDS,
    GATEWAY_LOG,
    RunResult,
    RunSpec,
    run,
    spec_gateway,
)
from harness.sandbox.upstreams import RunningUpstreams, start_upstreams
from harness.sandbox.workload import run_workload


@dataclass
class _Setup:
    key: tuple
    stack: ExitStack
    gateway: Gateway
    sites: RunningUpstreams
    client_net: str | None
    starts: int = 1


def _setup_key(spec: RunSpec, run_dir: Path) -> tuple:
    return (
        tuple(sorted(spec.hosts.items())),
        spec.dns,
        tuple(spec.networks),
        tuple(spec.upstreams),
        spec.client is not None,
        str(spec.addon_root or ""),
        str(run_dir.parent),
    )


class SharedGateway:
    """A context manager and a `sandbox_run`: runs share a gateway (module docstring)."""

    one_at_a_time = True

    def __init__(self, engine=None) -> None:
        self.engine = engine or engine_client()
        self.setup: _Setup | None = None
        self.gateway_starts = 0
        self.runs = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self.setup is not None:
            setup, self.setup = self.setup, None
            setup.stack.close()

    def __call__(self, spec: RunSpec, on_output: Callable[[str], None] | None = None) -> RunResult:
        if spec.steps:
            # A chain (App Service's deploy, Oryx, build) starts its own clients and upstreams
            # per step: it runs as `harness.sandbox.run` runs it, behind a gateway of its own.
            self.close()
            self.gateway_starts += 1
            self.runs += 1
            return run(spec, on_output)
        run_dir = Path(spec.run_dir).resolve()
        run_id = spec.run_id or new_run_id(run_dir.name)
        # Every image before anything starts (pulled as each one's `pull` says): a missing one
        # costs no gateway start-up.
        ensure_run_images(self.engine, spec)
        local_image(self.engine, spec.image)
        if spec.client is not None:
            require_client_image(self.engine, spec.client)
        key = _setup_key(spec, run_dir)
        with ExitStack() as this_run:
            if self.setup is not None and self.setup.key == key:
                this_run.enter_context(writable_by_gateway(run_dir))
                gateway = self.setup.gateway.switch(
                    run_dir=run_dir, run_id=run_id, policy_path=spec.policy_path,
                    mode=spec.mode, https_deny=spec.https_deny,
                )  # fmt: skip
            else:
                self.close()
                self.setup = self._start(spec, run_dir, run_id, key)
                gateway = self.setup.gateway
            self.runs += 1
            try:
                return self._run_workload(spec, gateway, run_dir, run_id, on_output)
            except BaseException:
                # A run that failed halfway leaves the gateway in an unknown state: the next
                # run gets a fresh one.
                self.close()
                raise

    def warm(self, spec: RunSpec) -> None:
        """Start the gateway (with the upstreams and client network) that runs like `spec` will
        share, before the first of them comes; that run then only switches it. Its own recording
        goes to a scratch folder beside spec's run folder (the folder a shared gateway mounts),
        removed with the gateway. A chain starts its gateways per run: nothing to warm."""
        if spec.steps or self.setup is not None:
            return
        run_dir = Path(spec.run_dir).resolve()
        scratch = Path(tempfile.mkdtemp(prefix=".warm-", dir=run_dir.parent))
        cleanup = ExitStack()
        cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
        try:
            policy = scratch / POLICY
            shutil.copyfile(spec.policy_path or run_dir / POLICY, policy)
            setup = self._start(replace(spec, run_dir=scratch, policy_path=policy), scratch,
                                new_run_id(f"{run_dir.name}-warm"), _setup_key(spec, run_dir))  # fmt: skip
        except BaseException:
            cleanup.close()
            raise
        # The scratch folder goes after the gateway that records into it.
        cleanup.enter_context(setup.stack)
        setup.stack = cleanup
        self.setup = setup

    def _start(self, spec: RunSpec, run_dir: Path, run_id: str, key: tuple) -> _Setup:
        stack = ExitStack()
        try:
            sites = stack.enter_context(
                start_upstreams(spec.upstreams, run_dir=run_dir, run_id=run_id, engine=self.engine)
            )
            client_net = (
                stack.enter_context(client_network(self.engine, run_id)) if spec.client else None
            )
            gateway = stack.enter_context(
                spec_gateway(spec, run_dir=run_dir, run_id=run_id, sites=sites,
                             client_net=client_net, engine=self.engine,
                             shared_root=run_dir.parent)
            )  # fmt: skip
        except BaseException:
            stack.close()
            raise
        self.gateway_starts += 1
        return _Setup(key, stack, gateway, sites, client_net)

    def _run_workload(
        self,
        spec: RunSpec,
        gateway: Gateway,
        run_dir: Path,
        run_id: str,
        on_output: Callable[[str], None] | None,
    ) -> RunResult:
        assert self.setup is not None
        sites = self.setup.sites
        workload = {
            "image": spec.image,
            "command": spec.command,
            "run_dir": run_dir,
            "workdir": spec.workdir,
            "env": spec.env,
            "trust": [*spec.trust, *sites.trust],
            "timeout": spec.timeout,
            "on_output": on_output,
            "user": spec.user,
            "engine": self.engine,
        }
        try:
            if spec.client is None or self.setup.client_net is None:
                result = run_workload(gateway, **workload)
            else:
                result = run_with_client(
                    gateway, spec.client, network=self.setup.client_net, **workload
                )
        finally:
            # Let the addon record the last connection's close before the next switch.
            time.sleep(CLOSE_GRACE_SECONDS)
            (run_dir / GATEWAY_LOG).write_text(gateway.log_tail(lines=2000))
        return RunResult(
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            duration_s=result.duration_s,
            run_dir=run_dir,
            run_id=run_id,
        )


def shared_gateway() -> SharedGateway:
    """A new session; use it as a context manager so its gateway is removed at the end."""
    return SharedGateway()
