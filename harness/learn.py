"""Learn the minimal allowlist a scenario needs, and prove it.

1. An audit run (everything allowed, every destination recorded) gives the candidates: each
   HTTP/HTTPS host with the ports it was reached on (`candidates`).
2. A verify run in enforce mode behind only those candidates proves them sufficient.
3. With `classify`, one run per candidate with that candidate denied marks it `required` (the
   run fails), `optional` (it still succeeds; the time difference is kept) or `flaky` (two tries
   disagree); the required-only allowlist is then verified again.

With `wildcards`, the allowlist proposes `*.domain` for hosts sharing a registrable domain
(`harness.allowlist.wildcard_candidates`) and the verify runs are behind that wildcard policy;
classification still denies one host at a time, exactly.

Several scenarios (`learn_together`, `egress learn A B ...`): each is learned as above, the
destinations each kept are merged into one policy with per-scenario `# via` evidence
(`harness.allowlist.merge_candidates`, wildcards after the merge), and every scenario is run once
more behind that merged policy: it is verified when all of them succeed behind it.

The policy written out is headed by the command that made it and carries `# via` evidence per
FQDN. The pure parts are in `harness.allowlist`; this module runs scenarios.
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
]

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

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
from harness.execute import Execution, RunOverrides, SandboxRun, execute
from harness.policy.model import Policy
from harness.scenario import Scenario


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
    # What the policy lists: the candidates, less the optional ones after --classify, with
    # `*.domain` entries after --wildcards. Render the allowlist from these.
    listed: list[Candidate] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        final = self.required_verify or self.verify
        return final is not None and final.succeeded


def _shaped(found: Sequence[Candidate], wildcards: bool) -> list[Candidate]:
    return wildcard_candidates(found) if wildcards else list(found)


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


def learn(
    scenario: Scenario,
    sandbox_run: SandboxRun,
    *,
    classify: bool = False,
    wildcards: bool = False,
    parallel: int = 2,
    on_step: Callable[[str], None] = lambda _: None,
    on_event: Callable[[Event], None] | None = None,
) -> LearnResult:
    with one_gateway(sandbox_run) as runtime:
        return _learn(scenario, runtime, classify=classify, wildcards=wildcards,
                      parallel=parallel, on_step=on_step, on_event=on_event)  # fmt: skip


def _learn(
    scenario: Scenario,
    sandbox_run: SandboxRun,
    *,
    classify: bool,
    wildcards: bool,
    parallel: int,
    on_step: Callable[[str], None],
    on_event: Callable[[Event], None] | None,
) -> LearnResult:
    if getattr(sandbox_run, "one_at_a_time", False):
        parallel = 1  # runs on one gateway share its network namespace
    on_step(f"audit run of {scenario.name}: everything allowed, every destination recorded")
    audit = execute(
        scenario,
        sandbox_run,
        RunOverrides(policy=Policy(f"{scenario.name}-audit"), mode="audit"),
        run_suffix="audit",
        on_event=on_event,
    )
    found = candidates(audit.events)
    listed = _shaped(found, wildcards)
    policy = learned_policy(f"{scenario.name}-learned", listed)
    on_step(f"verify run: enforce, behind the {len(listed)} learned destination(s)")
    verify = execute(
        scenario, sandbox_run, RunOverrides(policy=policy, mode="enforce"), run_suffix="verify"
    )
    result = LearnResult(scenario, audit, found, policy, verify, runs=2, listed=listed)
    if not classify or not found:
        return result

    def without(candidate: Candidate, attempt: int) -> Execution:
        # Exact names only: a wildcard of the others could still let the denied host through.
        others = [other for other in found if other is not candidate]
        reduced = learned_policy(f"{scenario.name}-without-{candidate.host}", others)
        return execute(scenario, sandbox_run, RunOverrides(policy=reduced, mode="enforce"),
                       run_suffix=f"without-{candidate.host}-{attempt}")  # fmt: skip

    at_a_time = f"{parallel} at a time" if parallel > 1 else "one after another on one gateway"
    on_step(f"classify: {len(found)} run(s) with one destination denied each, {at_a_time}")
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
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
    result.classify_runs = first + list(second.values())
    result.runs += len(result.classify_runs)
    for candidate, run in zip(found, first, strict=True):
        candidate.seconds_without = run.duration_s
        if not run.succeeded:
            candidate.classification = "required"
        elif second[candidate.host].succeeded:
            candidate.classification = "optional"
        else:
            candidate.classification = "flaky"
    required = [c for c in found if c.classification in ("required", "flaky")]
    result.listed = _shaped(required, wildcards)
    result.policy = learned_policy(f"{scenario.name}-learned", result.listed)
    on_step(f"verify run: enforce, behind the {len(result.listed)} required destination(s)")
    result.required_verify = execute(scenario, sandbox_run, RunOverrides(policy=result.policy, mode="enforce"),
                                     run_suffix="verify-required")  # fmt: skip
    result.runs += 1
    return result


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


def learn_together(
    scenarios: Sequence[Scenario],
    sandbox_run: SandboxRun,
    *,
    classify: bool = False,
    wildcards: bool = False,
    parallel: int = 2,
    on_step: Callable[[str], None] = lambda _: None,
    on_event: Callable[[Event], None] | None = None,
) -> JointResult:
    """`learn` each scenario, merge what each kept into one policy, and run every scenario
    behind it (module docstring). One scenario gives `learn`'s result unchanged. Scenarios whose
    firewall settings agree share one gateway, one after another."""
    with one_gateway(sandbox_run) as runtime:
        return _learn_together(scenarios, runtime, classify=classify, wildcards=wildcards,
                               parallel=parallel, on_step=on_step, on_event=on_event)  # fmt: skip


def _learn_together(
    scenarios: Sequence[Scenario],
    sandbox_run: SandboxRun,
    *,
    classify: bool,
    wildcards: bool,
    parallel: int,
    on_step: Callable[[str], None],
    on_event: Callable[[Event], None] | None,
) -> JointResult:
    results = [
        learn(scenario, sandbox_run, classify=classify, wildcards=wildcards, parallel=parallel,
              on_step=on_step, on_event=on_event)
        for scenario in scenarios
    ]  # fmt: skip
    if len(results) == 1:
        only = results[0]
        return JointResult(results, only.candidates, only.listed, only.policy)
    sources = [(f"scenario {result.scenario.name}", result.candidates) for result in results]
    merged = merge_candidates(sources)
    kept = [candidate for candidate in merged if candidate.classification != "optional"]
    listed = _shaped(kept, wildcards)
    policy = learned_policy(allowlist_name([r.scenario.name for r in results]), listed)
    joint = JointResult(results, merged, listed, policy)
    for result in results:
        on_step(f"verify run of {result.scenario.name}: enforce, behind the merged allowlist"
                f" of {len(results)} scenarios ({len(listed)} destination(s))")  # fmt: skip
        joint.verifies.append(execute(result.scenario, sandbox_run,
                                      RunOverrides(policy=policy, mode="enforce"),
                                      run_suffix="verify-joint"))  # fmt: skip
    return joint
