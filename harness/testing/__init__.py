"""What the harness ships for tests of code that runs scenarios: a runtime without Docker.

    FakeRuntime(workload)   a harness.runtime.Runtime whose runs call `workload(run)`
    FakeRun                 one run: `connect(host)` decides through the run's own policy and
                            records the event as the gateway would; `say(line)` is output
    fetches(*hosts)         a workload that fetches hosts in order and fails at a denial
"""

from harness.testing.fake_runtime import FakeRun, FakeRuntime, FakeSharedGateway, fetches

__all__ = ["FakeRun", "FakeRuntime", "FakeSharedGateway", "fetches"]
