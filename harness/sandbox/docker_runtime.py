"""The real `harness.runtime.Runtime`: scenarios run in Docker through this package."""

from __future__ import annotations

__all__ = ["DockerRuntime"]

from collections.abc import Callable, Sequence

from harness.runtime import RunResult, RunSpec
from harness.sandbox.images import build_images, images_for_scenarios
from harness.sandbox.runner import run
from harness.sandbox.session import SharedGateway, shared_gateway
from harness.scenario import Scenario


class DockerRuntime:
    """`prepare` builds the images the scenarios need (cached by recipe hash: silent when they
    are current); each call is one `harness.sandbox.run`; `shared()` one gateway for many."""

    def prepare(self, scenarios: Sequence[Scenario] | None,
                progress: Callable[[str], None]) -> None:  # fmt: skip
        if scenarios is None:
            build_images(progress)
        else:
            build_images(progress, only=images_for_scenarios(scenarios))

    def __call__(self, spec: RunSpec, on_output: Callable[[str], None] | None = None) -> RunResult:
        return run(spec, on_output)

    def shared(self) -> SharedGateway:
        return shared_gateway()
