"""An app folder as a scenario: detection, the choice of Oryx path, the plan, loaded as any
scenario file is (so `egress init`'s file and `egress run APP_DIR` are one thing)."""

from __future__ import annotations

__all__ = ["AppChain", "app_scenario"]

from dataclasses import dataclass
from pathlib import Path

from harness.appservice.detect import Detected, detect
from harness.appservice.plan import ORYX_BUILD_IMAGE, ChainOptions, plan_scenario, scenario_name
from harness.scenario import Scenario, scenario_from_node
from harness.yamlio import load_yaml_text


@dataclass(frozen=True)
class AppChain:
    scenario: Scenario
    detected: Detected
    text: str  # the scenario file, as `egress init` writes it
    oryx_path: str  # which Oryx step, and why


def app_scenario(
    app_dir: str | Path,
    *,
    platform: str | None = None,
    version: str | None = None,
    target: str = "webapp",
    site: str | None = None,
    pull: str = "missing",
    scenario_dir: Path | None = None,
    command: str = "",
    oryx_probe=None,
) -> AppChain:
    """The App Service chain of `app_dir`. `oryx_probe(image, pull) -> (available, why)` says
    whether an Oryx build image can be had (default: ask the engine, pulling per `pull`)."""
    app = Path(app_dir)
    detected = detect(app, platform, version)
    if oryx_probe is None:
        from harness.sandbox.pull import image_available as oryx_probe
    available, why = oryx_probe(ORYX_BUILD_IMAGE, pull)
    if available:
        oryx_path = f"the real `oryx build` in {ORYX_BUILD_IMAGE} ({why})"
    else:
        oryx_path = (f"Oryx's SDK-CDN requests (egress/oryx-sdk), then the build commands Oryx"
                     f" generates: {ORYX_BUILD_IMAGE} cannot be had ({why})")  # fmt: skip
    options = ChainOptions(target=target, site=site, pull=pull, oryx_image=available)
    text = plan_scenario(app, detected, options, scenario_dir=scenario_dir, command=command)
    where = (scenario_dir or app) / f"{scenario_name(app)}.scenario.yaml"
    document = load_yaml_text(text, where)
    return AppChain(scenario_from_node(document.root, where), detected, text, oryx_path)
