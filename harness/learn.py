"""Learn the minimal allowlist a scenario needs, and prove it.

1. An audit run (everything allowed, every destination recorded) gives the candidates: each
   HTTP/HTTPS host with the ports it was reached on (`candidates`).
2. A verify run in enforce mode behind only those candidates proves them sufficient.
3. With `classify`, one run per candidate with that candidate denied marks it `required` (the
   run fails), `optional` (it still succeeds; the time difference is kept) or `flaky` (two tries
   disagree); the required-only allowlist is then verified again (unless nothing was dropped:
   then it is the allowlist the verify run proved). The verify run and the classify runs go
   side by side, `parallel` at a time.

Gateways: on Docker every run of a learn goes through a gateway that stays up (a
`harness.sandbox.SharedGateway`, switched to each run's policy, mode and recording folder); a
shared gateway takes one run at a time, so `parallel` runs at once use up to `parallel` of them,
each started once; with `classify`, up to WARM_GATEWAYS of the extra ones start while the audit
run goes (`SharedGateway.warm`), so the classify runs do not wait for a gateway. Scenarios learned together share the first one where their firewall settings
agree. Workloads are fresh for every run.

With `wildcards`, the allowlist proposes `*.domain` for hosts sharing a registrable domain
(`harness.allowlist.wildcard_candidates`) and the verify runs are behind that wildcard policy;
classification still denies one host at a time, exactly.

Several scenarios (`learn_together`, `egress learn A B ...`): each is learned as above, the
destinations each kept are merged into one policy with per-scenario `# via` evidence
(`harness.allowlist.merge_candidates`, wildcards after the merge), and every scenario is run once
more behind that merged policy: it is verified when all of them succeed behind it.

The policy written out is headed by the command that made it and carries `# via` evidence per
FQDN. The pure parts are in `harness.allowlist`; this module runs scenarios.

Destinations this machine cannot reach (the firewall allowed them in the audit run but their
upstream was unreachable, e.g. a name that does not resolve here) are learned as needed and
marked `unreachable from this machine: not verified`. `why_not_verified` says in one sentence
why a learn did not verify: the audit run itself failed (with the destinations it tried and could
not reach, and the client's error), the verify run failed only because of unreachable
destinations (named), or it failed for another reason (the diagnosis's culprit).
"""

from __future__ import annotations

__all__ = [
    "Candidate",
    "JointResult",
    "LearnResult",
    "candidates",
    "learn",
    "learn_together",
    "learned_policy",
    "render_allowlist",
    "save_learn",
]

import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.allowlist import (
    Candidate,
    allowlist_name,
    candidates,
    learned_policy,
    merge_candidates,
    render_allowlist,
    wildcard_candidates,
)
from harness.events import Event
from harness.execute import Execution, RunOverrides, SandboxRun, execute, new_run_dir
from harness.policy.model import Policy
from harness.runfolder import LEARN
from harness.scenario import Scenario
from harness.steps import step_candidates


@dataclass
class LearnResult:
    scenario: Scenario
    audit: Execution
    candidates: list[Candidate]
    policy: Policy
    verify: Execution | None
    runs: int
    classify_runs: list[Execution] = field(default_factory=list)
    required_verify: Execution | None = None
    folder: Path | None = None  # runs/<time>-<scenario>-learn/, its learn.json (save_learn)
    # What the policy lists: the candidates, less the optional ones after --classify, with
    # `*.domain` entries after --wildcards. Render the allowlist from these.
    listed: list[Candidate] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        final = self.required_verify or self.verify
        return final is not None and final.succeeded

    @property
    def unreachable(self) -> list[Candidate]:
        return [candidate for candidate in self.candidates if candidate.unreachable]

    def why_not_verified(self) -> str | None:
        """One sentence naming why the allowlist is not verified; None when it is."""
        if self.verified:
            return None
        name = self.scenario.name
        unreachable = _names(self.unreachable)
        them = "it" if len(self.unreachable) == 1 else "them"
        parts = []
        if not self.audit.succeeded:
            audit = f"the audit run of {name} itself failed ({_how(self.audit)})"
            if unreachable:
                audit += f": it tried {unreachable} and could not reach {them} from this machine"
            parts.append(audit + _client_said(self.audit))
        final = self.required_verify or self.verify
        if final is None:
            return "; ".join(parts) or f"{name} was not verified"
        if unreachable and not final.denied:
            parts.append(
                f"{name} failed behind the learned allowlist only because {unreachable}"
                f" {'was' if len(self.unreachable) == 1 else 'were'} allowed but unreachable from"
                " this machine (the name does not resolve here): learned as needed, not verified;"
                f" verify {them} where Azure runs the build"
            )
        else:
            verify = f"{name} failed behind the learned allowlist ({_how(final)})"
            if final.denied:
                verify += f": {', '.join(row.label for row in final.denied)} denied"
            parts.append(verify + _client_said(final))
        return "; ".join(parts)


Shape = Callable[[list[Candidate]], list[Candidate]]


def _shaped(found: Sequence[Candidate], wildcards: bool, shape: Shape | None = None) -> list[Candidate]:
    listed = wildcard_candidates(found) if wildcards else list(found)
    return shape(listed) if shape is not None else listed


@contextmanager
def one_gateway(sandbox_run: SandboxRun) -> Iterator[SandboxRun]:
    """The runtime every run of a learn goes through: one gateway for all of them when the
    runtime offers it (`harness.sandbox.run.shared`: a `SharedGateway`), else `sandbox_run`
    itself (a fake runtime in tests, or one that is already shared)."""
    share = getattr(sandbox_run, "shared", None)
    if share is None:
        yield sandbox_run
        return
    with share() as shared:
        yield shared


logger = logging.getLogger(__name__)
# How many extra gateways a classifying learn starts during its audit run: the Flask scenario
# classifies two destinations beside its verify run (three runs at once). Measured on 2 vCPU, a
# gateway start after the audit was ~1 s of every classifying learn's critical path.
WARM_GATEWAYS = 2


class _Runtimes:
    """Where each run of a learn goes. A runtime that runs one at a time (a shared gateway) is
    lent to one run at a time; `parallel` runs at once get up to `parallel` such gateways, each
    made once and kept for the whole learn (started when a run needs one, or by `warm` ahead of
    the runs). Any other runtime takes runs concurrently, as it always did."""

    def __init__(self, first: SandboxRun, share: Callable[[], Any] | None, parallel: int) -> None:
        self.exclusive = bool(getattr(first, "one_at_a_time", False))
        self.first = first
        self.free: queue.SimpleQueue[SandboxRun] = queue.SimpleQueue()
        self.free.put(first)
        self.more = max(0, parallel - 1) if self.exclusive and share is not None else 0
        self.share = share
        self.lock = threading.Lock()
        self.extras: list[Any] = []  # the extra runtimes' context managers, entered
        self.warming: list[threading.Thread] = []

    def close(self) -> None:
        """Close the extra runtimes side by side: removing a gateway waits for its `stopped`
        event and for the engine (~0.3-0.5 s each), at the end of every classifying learn."""
        for thread in self.warming:
            thread.join()
        if not self.extras:
            return
        with ThreadPoolExecutor(max_workers=len(self.extras)) as pool:
            closing = [pool.submit(extra.__exit__, None, None, None) for extra in self.extras]
        for closed in closing:
            closed.result()

    def _another(self) -> SandboxRun:
        assert self.share is not None
        extra = self.share()
        runtime = extra.__enter__()
        self.extras.append(extra)
        return runtime

    def warm(self, spec: Any, count: int) -> None:
        """Make up to `count` of the extra runtimes now and start their gateways for runs like
        `spec` in the background; a run that borrows one before it is ready waits for it."""
        with self.lock:
            count = min(count, self.more) if self.share is not None else 0
            self.more -= count
            runtimes = [self._another() for _ in range(count)]
        for runtime in runtimes:
            thread = threading.Thread(target=self._warm_one, args=(runtime, spec),
                                      name="egress-learn-warm")  # fmt: skip
            self.warming.append(thread)
            thread.start()

    def _warm_one(self, runtime: SandboxRun, spec: Any) -> None:
        try:
            warm = getattr(runtime, "warm", None)
            if warm is not None:
                warm(spec)
        except Exception as error:  # noqa: BLE001 - the run that borrows it starts it, or says why not
            logger.info(f"starting a gateway ahead of the classify runs failed ({error}); "
                        "the first run on it starts it")  # fmt: skip
        finally:
            self.free.put(runtime)

    def run(self, job: Callable[[SandboxRun], Execution]) -> Execution:
        if not self.exclusive:
            return job(self.first)
        runtime = self._borrow()
        try:
            return job(runtime)
        finally:
            self.free.put(runtime)

    def _borrow(self) -> SandboxRun:
        try:
            return self.free.get_nowait()
        except queue.Empty:
            pass
        with self.lock:
            if self.more > 0 and self.share is not None:
                self.more -= 1
                return self._another()
        return self.free.get()


def learn(
    scenario: Scenario,
    sandbox_run: SandboxRun,
    *,
    classify: bool = False,
    wildcards: bool = False,
    parallel: int = 2,
    on_step: Callable[[str], None] = lambda _: None,
    on_event: Callable[[Event], None] | None = None,
    shape: Shape | None = None,
) -> LearnResult:
    with one_gateway(sandbox_run) as runtime:
        return _learn_on(scenario, runtime, getattr(sandbox_run, "shared", None), classify=classify,
                         wildcards=wildcards, parallel=parallel, on_step=on_step,
                         on_event=on_event, shape=shape)  # fmt: skip


def _learn_on(
    scenario: Scenario, runtime: SandboxRun, share: Callable[[], Any] | None, **options: Any
) -> LearnResult:
    runtimes = _Runtimes(runtime, share, options["parallel"])
    try:
        return _learn(scenario, runtimes, **options)
    finally:
        runtimes.close()


def _learn(
    scenario: Scenario,
    runtimes: _Runtimes,
    *,
    classify: bool,
    wildcards: bool,
    parallel: int,
    on_step: Callable[[str], None],
    on_event: Callable[[Event], None] | None,
    shape: Shape | None = None,
) -> LearnResult:
    """`shape` rewrites what the policy lists (App Service's `*.scm.azurewebsites.net` for the
    SCM host Kudu called); the verify runs are behind the shaped policy."""

    def run(overrides: RunOverrides, suffix: str, warm: bool = False, **extra: Any) -> Execution:
        specs: list[Any] = []
        if warm:
            # The classify runs' gateways start beside the audit run, once its own gateway is
            # ready: started at once, three gateways on 2 vCPU made the audit's wait for its
            # own 4 s instead of 1.5 s.
            on_event = extra.get("on_event")

            def on_audit_event(event: Event) -> None:
                if specs and event.kind == "lifecycle" and event.reason == "ready":
                    runtimes.warm(specs.pop(), WARM_GATEWAYS)
                if on_event is not None:
                    on_event(event)

            extra["on_event"] = on_audit_event

        def job(runtime: SandboxRun) -> Execution:
            if warm:
                runtime = _warming(runtime, specs.append)
            return execute(scenario, runtime, overrides, run_suffix=suffix, **extra)

        return runtimes.run(job)

    on_step(f"audit run of {scenario.name}: everything allowed, every destination recorded")
    audit = run(RunOverrides(policy=Policy(f"{scenario.name}-audit"), mode="audit"), "audit",
                warm=classify, on_event=on_event)  # fmt: skip
    # A chain's destinations carry the step that reached them (`# via step pip-install: ...`).
    found = step_candidates(audit.events, audit.run_dir) or candidates(audit.events)
    listed = _shaped(found, wildcards, shape)
    policy = learned_policy(f"{scenario.name}-learned", listed)

    def verify_all() -> Execution:
        return run(RunOverrides(policy=policy, mode="enforce"), "verify")

    def without(candidate: Candidate, attempt: int) -> Execution:
        # Exact names only: a wildcard of the others could still let the denied host through.
        others = [other for other in found if other is not candidate]
        reduced = learned_policy(f"{scenario.name}-without-{candidate.host}", others)
        return run(RunOverrides(policy=reduced, mode="enforce"),
                   f"without-{candidate.host}-{attempt}")  # fmt: skip

    if not classify or not found:
        on_step(f"verify run: enforce, behind the {len(listed)} learned destination(s)")
        return LearnResult(scenario, audit, found, policy, verify_all(), runs=2, listed=listed)
    on_step(f"verify run behind the {len(listed)} learned destination(s), and classify: "
            f"{len(found)} run(s) with one destination denied each, {parallel} at a time")  # fmt: skip
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        # The verify run does not decide what the classify runs do: they go side by side.
        verifying = pool.submit(verify_all)
        first = list(pool.map(lambda c: without(c, 1), found))
        # A second try only where the first says "optional": a run that still succeeded without
        # a host is the surprising answer, and the one a retry or cache could fake.
        second_for = [c for c, run in zip(found, first, strict=True) if run.succeeded]
        second = dict(
            zip(
                [c.host for c in second_for],
                pool.map(lambda c: without(c, 2), second_for),
                strict=True,
            )
        )
        verify = verifying.result()
    result = LearnResult(scenario, audit, found, policy, verify, runs=2, listed=listed)
    result.classify_runs = first + list(second.values())
    result.runs += len(result.classify_runs)
    for candidate, run_without in zip(found, first, strict=True):
        candidate.seconds_without = run_without.duration_s
        if not run_without.succeeded:
            candidate.classification = "required"
        elif second[candidate.host].succeeded:
            candidate.classification = "optional"
        else:
            candidate.classification = "flaky"
    required = [c for c in found if c.classification in ("required", "flaky")]
    result.listed = _shaped(required, wildcards, shape)
    result.policy = learned_policy(f"{scenario.name}-learned", result.listed)
    if _same_destinations(result.listed, listed):
        # Nothing was dropped: the required-only allowlist is the one the verify run proved.
        result.required_verify = verify
        return result
    on_step(f"verify run: enforce, behind the {len(result.listed)} required destination(s)")
    result.required_verify = run(RunOverrides(policy=result.policy, mode="enforce"),
                                 "verify-required")  # fmt: skip
    result.runs += 1
    return result


def _warming(runtime: SandboxRun, on_spec: Callable[[Any], None]) -> SandboxRun:
    """`runtime`, telling `on_spec` the run's spec before it runs it."""

    def run_it(spec: Any, on_output: Callable[[str], None] | None = None) -> Any:
        on_spec(spec)
        return runtime(spec, on_output=on_output)

    return run_it


def _same_destinations(one: Sequence[Candidate], other: Sequence[Candidate]) -> bool:
    def key(found: Sequence[Candidate]) -> list[tuple[str, tuple[tuple[str, int], ...], bool]]:
        return sorted((c.host, tuple(sorted(c.protocols)), c.network) for c in found)

    return key(one) == key(other)


def default_parallel() -> int:
    """How many runs of a learn go at once: at least three, since its runs spend their time
    on the network and in the clients' retry back-off (a denied pip host: ~9 s of pip's own
    waiting), not on the CPU; measured on 2 vCPU, three at once finished first."""
    return max(3, os.cpu_count() or 2)


# --- several scenarios -----------------------------------------------------------------------


@dataclass
class JointResult:
    """Several scenarios learned into one allowlist (or one scenario, as `learn` gives it)."""

    results: list[LearnResult]
    candidates: list[Candidate]  # every destination, merged, with evidence per scenario
    listed: list[Candidate]  # what the policy lists (merged, classified, wildcards)
    policy: Policy
    verifies: list[Execution] = field(default_factory=list)  # each scenario behind `policy`

    @property
    def scenarios(self) -> list[str]:
        return [result.scenario.name for result in self.results]

    @property
    def runs(self) -> int:
        return sum(result.runs for result in self.results) + len(self.verifies)

    @property
    def verified(self) -> bool:
        if len(self.results) == 1:
            return self.results[0].verified
        return len(self.verifies) == len(self.results) and all(
            run.succeeded for run in self.verifies
        )

    def why_not_verified(self) -> str | None:
        """One sentence (several joined by "; ") naming why it is not verified; None when it is."""
        if self.verified:
            return None
        if len(self.results) == 1:
            return self.results[0].why_not_verified()
        reasons = [reason for result in self.results
                   if not result.audit.succeeded and (reason := result.why_not_verified())]  # fmt: skip
        unreachable = [candidate for candidate in self.candidates if candidate.unreachable]
        failed = [run for run in self.verifies if not run.succeeded]
        if failed and unreachable and not any(run.denied for run in failed):
            reasons.append(
                f"{', '.join(run.scenario.name for run in failed)} failed behind the merged"
                f" allowlist only because {_names(unreachable)} cannot be reached from this"
                " machine: learned as needed, not verified"
            )
        elif failed:
            reasons += [f"{run.scenario.name} failed behind the merged allowlist ({_how(run)})"
                        + _client_said(run) for run in failed]  # fmt: skip
        return "; ".join(reasons) or "the merged allowlist was not verified"


def _names(found: Sequence[Candidate]) -> str:
    return ", ".join(candidate.host for candidate in found)


def _how(run: Execution) -> str:
    return "timed out" if run.timed_out else f"exit code {run.exit_code}"


def _client_said(run: Execution) -> str:
    diagnosis = run.diagnosis
    said = diagnosis and (diagnosis.evidence or diagnosis.client_error)
    if not said:
        return ""
    return f"; the client said: {said.strip()[:200]}"


def learn_together(
    scenarios: Sequence[Scenario],
    sandbox_run: SandboxRun,
    *,
    classify: bool = False,
    wildcards: bool = False,
    parallel: int = 2,
    on_step: Callable[[str], None] = lambda _: None,
    on_event: Callable[[Event], None] | None = None,
    shape: Shape | None = None,
) -> JointResult:
    """`learn` each scenario, merge what each kept into one policy, and run every scenario
    behind it (module docstring). One scenario gives `learn`'s result unchanged. Scenarios whose
    firewall settings agree share one gateway, one after another."""
    share = getattr(sandbox_run, "shared", None)
    with one_gateway(sandbox_run) as runtime:
        return _learn_together(scenarios, runtime, share, classify=classify, wildcards=wildcards,
                               parallel=parallel, on_step=on_step, on_event=on_event,
                               shape=shape)  # fmt: skip


def _learn_together(
    scenarios: Sequence[Scenario],
    sandbox_run: SandboxRun,
    share: Callable[[], Any] | None,
    *,
    classify: bool,
    wildcards: bool,
    parallel: int,
    on_step: Callable[[str], None],
    on_event: Callable[[Event], None] | None,
    shape: Shape | None,
) -> JointResult:
    results = [
        _learn_on(scenario, sandbox_run, share, classify=classify, wildcards=wildcards,
                  parallel=parallel, on_step=on_step, on_event=on_event, shape=shape)
        for scenario in scenarios
    ]  # fmt: skip
    if len(results) == 1:
        only = results[0]
        save_learn(only)
        return JointResult(results, only.candidates, only.listed, only.policy)
    sources = [(f"scenario {result.scenario.name}", result.candidates) for result in results]
    merged = merge_candidates(sources)
    kept = [candidate for candidate in merged if candidate.classification != "optional"]
    listed = _shaped(kept, wildcards, shape)
    policy = learned_policy(allowlist_name([r.scenario.name for r in results]), listed)
    joint = JointResult(results, merged, listed, policy)
    for result in results:
        on_step(f"verify run of {result.scenario.name}: enforce, behind the merged allowlist"
                f" of {len(results)} scenarios ({len(listed)} destination(s))")  # fmt: skip
        joint.verifies.append(execute(result.scenario, sandbox_run,
                                      RunOverrides(policy=policy, mode="enforce"),
                                      run_suffix="verify-joint"))  # fmt: skip
    for result, verify in zip(results, joint.verifies, strict=True):
        save_learn(result, joint_verify=verify)
    return joint


def save_learn(result: LearnResult, joint_verify: Execution | None = None) -> Path:
    """`runs/<time>-<scenario>-learn/learn.json`: which run folders this learn made and what
    each was for, and each destination's classification, so `egress report` can lay the learn
    out again (`harness.reportfiles.load_learn`)."""
    folder = new_run_dir(result.scenario.name, root=result.audit.run_dir.parent, suffix="learn")

    def entry(role: str, run: Execution, **extra: object) -> dict[str, object]:
        return {"role": role, "folder": os.path.relpath(run.run_dir, folder),
                "outcome": "success" if run.succeeded else "failure",
                "duration_s": round(run.duration_s, 3), **extra}  # fmt: skip

    runs = [entry("audit", result.audit)]
    if result.verify is not None:
        runs.append(entry("verify", result.verify))
    # classify_runs: the first try for every candidate, in order, then a second try for those
    # whose first try succeeded (learn()).
    found = result.candidates
    first = result.classify_runs[: len(found)] if result.classify_runs else []
    retried = [c for c, run in zip(found, first, strict=False) if run.succeeded]
    for candidate, run in zip(found, first, strict=False):
        runs.append(entry("without", run, host=candidate.host, attempt=1))
    for candidate, run in zip(retried, result.classify_runs[len(found) :], strict=False):
        runs.append(entry("without", run, host=candidate.host, attempt=2))
    if result.required_verify is not None:
        runs.append(entry("verify-required", result.required_verify))
    if joint_verify is not None:
        runs.append(entry("verify-joint", joint_verify))
    # A host a `*.domain` entry stands for (--wildcards) is listed through it.
    listed = {candidate.host for candidate in result.listed}
    covered = {host for candidate in result.listed for host in candidate.covers}
    manifest = {
        "v": 1,
        "scenario": result.scenario.name,
        "scenario_file": str(result.scenario.path),
        "classify": bool(result.classify_runs),
        "verified": result.verified and (joint_verify is None or joint_verify.succeeded),
        "runs": runs,
        "destinations": [
            {"host": c.host, "protocols": c.protocol_texts(), "connections": c.connections,
             "bytes": c.bytes_total, "first_seen": c.first_seen,
             "classification": c.classification, "seconds_without": c.seconds_without,
             "listed": c.host in listed or c.host in covered}
            for c in found
        ],
        "listed": sorted(listed),
    }  # fmt: skip
    (folder / LEARN).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    result.folder = folder
    return folder
