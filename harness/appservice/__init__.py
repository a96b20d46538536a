"""App Service builds from an app folder, with no YAML (`egress learn|run|init APP_DIR`).

    detect(app_dir, platform, version) -> Detected   the platform and version, as Oryx detects
    plan_scenario(app, options) -> str                 the chain as a commented scenario file
    scm_shape(site_given) -> shape for learn           Microsoft's `*.scm.azurewebsites.net`

The chain (docs/appservice.md): Kudu's deploy step through the Kudu simulator with the target's
self-call, Oryx's step (the real `oryx build` where an Oryx build image is here, else the SDK-CDN
requests Oryx makes, against the CDN simulator), then the build commands Oryx generates, all
behind one firewall as the steps of one scenario (`steps:`).
"""

from harness.appservice.detect import PLATFORMS, Detected, detect
from harness.appservice.plan import (
    ORYX_BUILD_IMAGE,
    ChainOptions,
    plan_scenario,
    scm_shape,
)

__all__ = [
    "ORYX_BUILD_IMAGE",
    "PLATFORMS",
    "ChainOptions",
    "Detected",
    "detect",
    "plan_scenario",
    "scm_shape",
]
