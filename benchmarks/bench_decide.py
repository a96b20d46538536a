"""How fast `Decider.decide` is, and how little it slows down as a policy grows.

Builds policies with 10, 1,000 and 10,000 application rules (exact names, `*.x` and `*x`
patterns mixed, a few CIDR sources, two network rules), decides the same mix of requests
against each (hits on rules at random positions and misses), and prints decisions per second
and time(10,000 rules) / time(10 rules), each the minimum of five runs. Targets: >= 200,000 decisions/s at 10,000 rules,
ratio <= 2.

    .venv/bin/python benchmarks/bench_decide.py
"""

from __future__ import annotations

import gc
import random
import time

from harness.policy.decide import Decider
from harness.policy.model import (
    ALLOW,
    DENY,
    ApplicationRule,
    NetworkRule,
    Policy,
    Protocol,
    Request,
    RuleCollection,
    RuleCollectionGroup,
)

SIZES = (10, 1_000, 10_000)
RULES_PER_COLLECTION = 100
REQUESTS = 2_000
HIT_SHARE = 0.6
REPEATS = 7
RUNS = 5
PASSES = 10  # over the request set per timed repeat, so one repeat lasts tens of ms
SEED = 20261128


def _pattern(index: int) -> str:
    kind = index % 3
    if kind == 0:
        return f"pkg{index}.mirror{index % 50}.test"
    if kind == 1:
        return f"*.svc{index}.region{index % 7}.test"
    return f"*cdn{index}.test"


def _host_matching(index: int, rng: random.Random) -> str:
    kind = index % 3
    if kind == 0:
        return f"PKG{index}.mirror{index % 50}.test."  # case and trailing dot must not matter
    if kind == 1:
        return f"{rng.choice(['a', 'b.c', 'd.e.f'])}.svc{index}.region{index % 7}.test"
    return f"{rng.choice(['', 'edge', 'x.'])}cdn{index}.test"


def build_policy(size: int) -> Policy:
    rules = [
        ApplicationRule(
            name=f"rule{index}",
            source_addresses=("10.0.0.0/8",) if index % 10 == 9 else ("*",),
            protocols=(Protocol("Http", 80), Protocol("Https", 443)),
            target_fqdns=(_pattern(index),),
        )
        for index in range(size)
    ]
    collections = tuple(
        RuleCollection(
            name=f"apps{start // RULES_PER_COLLECTION}",
            priority=100 + start // RULES_PER_COLLECTION,
            action=DENY if start // RULES_PER_COLLECTION % 5 == 4 else ALLOW,
            rules=tuple(rules[start : start + RULES_PER_COLLECTION]),
        )
        for start in range(0, size, RULES_PER_COLLECTION)
    )
    network = RuleCollection(
        name="nets",
        priority=100,
        action=ALLOW,
        rules=(
            NetworkRule(
                "ntp",
                ip_protocols=("UDP",),
                destination_addresses=("*",),
                destination_ports=("123",),
            ),
            NetworkRule("ssh", destination_addresses=("192.0.2.0/24",), destination_ports=("22",)),
        ),
    )
    return Policy(
        name=f"bench-{size}",
        rule_collection_groups=(
            RuleCollectionGroup("DefaultNetworkRuleCollectionGroup", 200, (network,)),
            RuleCollectionGroup("DefaultApplicationRuleCollectionGroup", 300, collections),
        ),
    )


def build_requests(size: int, rng: random.Random) -> list[Request]:
    requests = []
    for number in range(REQUESTS):
        if rng.random() < HIT_SHARE:
            host = _host_matching(rng.randrange(size), rng)
        else:
            host = rng.choice(
                [
                    f"miss{number}.unknown.test",
                    f"svc{number}.region1.test",  # the apex a `*.svc...` rule does not match
                    f"cdn{number}x.test",
                ]
            )
        protocol, port = rng.choice([("HTTPS", 443), ("HTTPS", 443), ("HTTP", 80)])
        requests.append(
            Request(protocol, "10.1.0.5", 40000 + number % 20000, port, "192.0.2.80", host)
        )
    return requests


def seconds_per_decision(decider: Decider, requests: list[Request]) -> float:
    decide = decider.decide
    best = float("inf")
    gc.collect()
    gc.disable()  # decide makes no cycles; a collection mid-repeat would only add noise
    try:
        for _ in range(REPEATS):
            started = time.perf_counter()
            for _ in range(PASSES):
                for request in requests:
                    decide(request)
            best = min(best, time.perf_counter() - started)
    finally:
        gc.enable()
    return best / (PASSES * len(requests))


def main() -> None:
    rng = random.Random(SEED)
    deciders, request_sets = {}, {}
    for size in SIZES:
        started = time.perf_counter()
        deciders[size] = Decider(build_policy(size))
        built = time.perf_counter() - started
        request_sets[size] = build_requests(size, rng)
        allowed = sum(deciders[size].decide(request).allowed for request in request_sets[size])
        print(f"{size:>6} rules: built in {built * 1e3:.1f} ms; {allowed}/{len(request_sets[size])}"
              " requests allowed")  # fmt: skip
    # Five runs, each over every size in turn, so a burst of load on this shared machine hits
    # all sizes alike; the minimum of each is the figure (the least disturbed measurement).
    runs: list[dict[int, float]] = []
    for _ in range(RUNS):
        runs.append({size: seconds_per_decision(deciders[size], request_sets[size]) for size in SIZES})
        ratio = runs[-1][SIZES[-1]] / runs[-1][SIZES[0]]
        print(f"  run {len(runs)}: " + "  ".join(f"{size}: {runs[-1][size] * 1e6:.2f} us" for size in SIZES)
              + f"  ratio {ratio:.2f}")  # fmt: skip
    timings = {size: min(run[size] for run in runs) for size in SIZES}
    for size in SIZES:
        print(f"{size:>6} rules: {1 / timings[size]:>10,.0f} decisions/s"
              f"  ({timings[size] * 1e6:.2f} us each, minimum of {RUNS} runs)")  # fmt: skip
    ratio = timings[SIZES[-1]] / timings[SIZES[0]]
    print(f"time({SIZES[-1]:,}) / time({SIZES[0]:,}) = {ratio:.2f}  (target <= 2)")


if __name__ == "__main__":
    main()
