"""A runtime without Docker (harness.runtime.Runtime's shape), for tests of everything above the
sandbox: `execute`, `learn`, `egress run/learn` (`cli.main(argv, runtime=FakeRuntime(...))`) and
the pytest plugin (`config.stash[SANDBOX_RUN] = FakeRuntime(...)`).

A run is the test's `workload(run)`: it connects to hosts through `run.connect`, which decides
each connection with the real Decider over the policy file the run was given (the one the
gateway would load) and records the event in the run folder, as the gateway's addon does; what
it prints goes through `run.say`; it returns the exit code. So a fake run is judged exactly as a
real one: the same recording, read by the same code.
"""

from __future__ import annotations

__all__ = ["FakeRun", "FakeRuntime", "FakeSharedGateway", "fetches"]

import itertools
import threading
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Self

from harness.events import Event, event_for_decision
from harness.policy.decide import Decider
from harness.policy.model import Decision, Reason, Request, RuleRef
from harness.runfolder import POLICY, Recorder
from harness.runtime import RunResult, RunSpec

WORKLOAD_ADDRESS = "172.18.0.2"  # where the fake workload's connections come from
UPSTREAM_ADDRESS = "192.0.2.1"  # TEST-NET-1: where they go
UNREACHABLE = "unreachable"


class FakeRun:
    """One run on a FakeRuntime, handed to its workload."""

    def __init__(self, spec: RunSpec, on_output: Callable[[str], None] | None) -> None:
        self.spec = spec
        self.on_output = on_output
        self.timed_out = False
        self.duration_s = 1.0
        self.connections: list[Event] = []
        self._ports = itertools.count(40000)
        self._decider: Decider | None = None
        self._recorder: Recorder | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.spec.run_dir)

    @property
    def name(self) -> str:
        """The run folder's name (`<time>-<scenario>-audit`, `...-verify`, ...)."""
        return self.run_dir.name

    def connect(self, host: str, port: int = 443, *, protocol: str = "HTTPS",
                unreachable: bool = False, verdict: str | None = None,
                bytes_up: int = 517, bytes_down: int = 1000,
                duration_ms: int | None = None) -> bool:  # fmt: skip
        """Connect to `host`: decided by the run's policy and mode (the policy file is read at
        the first connection, so a workload may rewrite it first), or `verdict` ("Allow" or
        "Deny") when the test says so; recorded as the gateway records it. True when the
        workload got through: allowed, and not `unreachable` (an upstream this machine cannot
        reach: allowed by the firewall, then the download fails)."""
        request = Request(protocol, WORKLOAD_ADDRESS, next(self._ports), port,  # type: ignore[arg-type]
                          dst_ip=UPSTREAM_ADDRESS, host=host)  # fmt: skip
        decision = self._decide(request, verdict)
        event = event_for_decision(request, decision, policy_name="p",
                                   run=self.spec.run_id or self.name)  # fmt: skip
        if decision.allowed:
            event.bytes_up, event.bytes_down = bytes_up, bytes_down
            if unreachable:
                event.upstream = UNREACHABLE
        if duration_ms is not None:
            event.duration_ms = duration_ms
        self.record(event)
        return decision.allowed and not unreachable

    def record(self, event: Event) -> None:
        """Write `event` into the run's recording (events.jsonl and azure.log)."""
        if self._recorder is None:
            self._recorder = Recorder(self.run_dir)
        self._recorder.write(event)
        self.connections.append(event)

    def say(self, line: str) -> None:
        """One line of the workload's output."""
        if self.on_output is not None:
            self.on_output(line)

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()

    def _decide(self, request: Request, verdict: str | None) -> Decision:
        if verdict == "Allow":
            return Decision("Allow", "Allow", Reason.RULE_MATCHED, RuleRef("p", "g", "c", "r"),
                            "ApplicationRule")  # fmt: skip
        if verdict == "Deny":
            return Decision("Deny", "Deny", Reason.DEFAULT_DENY)
        if self._decider is None:
            from harness.policy.load import load_policy

            policy_path = self.spec.policy_path or self.run_dir / POLICY
            self._decider = Decider(load_policy(policy_path), self.spec.mode)
        return self._decider.decide(request)


Workload = Callable[[FakeRun], int | None]


def fetches(*hosts: str, optional: Collection[str] = (), unreachable: Collection[str] = (),
            say: bool = True) -> Workload:  # fmt: skip
    """A workload that fetches each host over HTTPS in order and stops with exit 1 at the
    first that fails it (a denied host that is not `optional`, or an `unreachable` one).
    Without hosts, the ones its command names after the first word (`needs a.test b.test`)."""

    def workload(run: FakeRun) -> int:
        for host in hosts or _command_words(run.spec.command):
            if run.connect(host, unreachable=host in unreachable) or (
                host in optional and host not in unreachable
            ):
                if say:
                    run.say(f"fetched https://{host}/")
                continue
            if say:
                run.say(f"ERROR: could not fetch https://{host}/")
            return 1
        return 0

    return workload


def _command_words(command: str | Sequence[str]) -> list[str]:
    words = command.split() if isinstance(command, str) else list(command)
    return words[1:]


class FakeRuntime:
    """harness.runtime.Runtime without Docker (module docstring). `specs` lists every run's
    spec in order; `prepared` what `prepare` was asked for; `gateways` the shared gateways
    `learn` asked for (`shares=False`: it offers none, and runs go to the runtime itself)."""

    def __init__(self, workload: Workload | None = None, *, shares: bool = True,
                 prober: Any = None) -> None:  # fmt: skip
        self.workload = workload or fetches()
        self.shares = shares
        # A harness.derive.Prober for scenarios with derived values (none: execute's default).
        self.prober = prober
        self.specs: list[RunSpec] = []
        self.prepared: list[list[str] | None] = []
        self.gateways: list[FakeSharedGateway] = []
        self._lock = threading.Lock()

    def prepare(self, scenarios, progress: Callable[[str], None] | None = None) -> None:
        self.prepared.append(None if scenarios is None else [s.name for s in scenarios])

    def __call__(self, spec: RunSpec, on_output: Callable[[str], None] | None = None) -> RunResult:
        with self._lock:
            self.specs.append(spec)
        run = FakeRun(spec, on_output)
        try:
            code = self.workload(run)
        finally:
            run.close()
        return RunResult(exit_code=int(code or 0), timed_out=run.timed_out,
                         duration_s=run.duration_s, run_dir=Path(spec.run_dir),
                         run_id=spec.run_id or Path(spec.run_dir).name)  # fmt: skip

    @property
    def shared(self) -> Callable[[], FakeSharedGateway] | None:  # type: ignore[override]
        """What `learn` asks for one gateway for many runs (None with `shares=False`)."""
        return self._share if self.shares else None

    def _share(self) -> FakeSharedGateway:
        gateway = FakeSharedGateway(self)
        with self._lock:
            self.gateways.append(gateway)
        return gateway


class FakeSharedGateway:
    """A shared gateway of a FakeRuntime: one run at a time (a second run while one is going
    is an error, as it would mix two recordings in one network namespace); `closed` once its
    block ends."""

    one_at_a_time = True

    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime
        self.specs: list[RunSpec] = []
        self.closed = False
        self._busy = threading.Lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.closed = True

    def __call__(self, spec: RunSpec, on_output: Callable[[str], None] | None = None) -> RunResult:
        if self.closed:
            raise RuntimeError("a run on a shared gateway that was already removed")
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("two runs at once on one shared gateway")
        try:
            self.specs.append(spec)
            return self.runtime(spec, on_output)
        finally:
            self._busy.release()
