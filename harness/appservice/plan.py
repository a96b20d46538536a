"""The App Service chain for a detected app, written as a scenario with `steps:` (pure: text
in, text out). `egress run|learn APP_DIR` load it as they load any scenario; `egress init
APP_DIR` writes it, comments and all, so the user can keep and edit it.

Steps, all behind one firewall:
1. `kudu-deploy`: Kudu's deployment API (the Kudu simulator) receives the app's zip from a
   client outside the firewall (`az webapp deploy`: OneDeploy's `/api/publish` for a webapp,
   `/api/zipdeploy` for Functions) and calls its own SCM site afterwards, through the firewall.
2. Oryx: with an Oryx build image in the engine, `oryx-build` runs the real `oryx build` against
   the CDN simulator; otherwise `oryx-sdk` makes the SDK-CDN requests Oryx makes for the platform
   and version (egress/oryx-sdk), and the next step runs the build commands Oryx generates:
3. `pip-install` (a virtualenv named `antenv`, as Kudu asks Oryx for, then `python -m pip
   install --cache-dir ... --prefer-binary -r requirements.txt`, Oryx's flags), `npm-install`
   (`npm install` or `yarn install --prefer-offline`, then `npm run build:azure` or `npm run
   build` where package.json has it) or `dotnet-publish` (`dotnet restore`, `dotnet publish`).

The policy is what App Service needs, with the registry hosts as derived values: the scenario
succeeds behind it when the prediction holds, and `egress learn` proves it from the traffic.
"""

from __future__ import annotations

__all__ = ["ORYX_BUILD_IMAGE", "ChainOptions", "plan_scenario", "scm_host", "scm_shape"]

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.allowlist import Candidate
from harness.appservice.detect import Detected

ORYX_BUILD_IMAGE = "mcr.microsoft.com/oryx/build:latest"
ORYX_CDN = "oryx-cdn.microsoft.io"
SCM_SUFFIX = ".scm.azurewebsites.net"
SCM_WILDCARD = "*" + SCM_SUFFIX
DOTNET_SDK_IMAGE = "mcr.microsoft.com/dotnet/sdk:{version}"
KUDU_PORT = 8080
PIP_CACHE = "/usr/local/share/pip-cache"  # Oryx's PIP_CACHE_DIR
VIRTUALENV = "antenv"  # what Kudu passes (`-p virtualenv_name=antenv`); Oryx's own default is pythonenvX.Y


@dataclass(frozen=True)
class ChainOptions:
    target: str = "webapp"  # webapp | functions
    site: str | None = None  # --site: the exact SCM host instead of Microsoft's wildcard
    pull: str = "missing"
    oryx_image: bool = False  # an Oryx build image is in the engine (or was pulled)


def scm_host(site: str) -> str:
    return f"{site}{SCM_SUFFIX}"


def site_name(app_dir: Path, options: ChainOptions) -> str:
    """--site, else a name made from the folder (any name works for the simulation)."""
    if options.site:
        return options.site
    name = re.sub(r"[^a-z0-9-]+", "-", app_dir.resolve().name.lower()).strip("-")
    return (name or "app")[:40]


def scenario_name(app_dir: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", app_dir.resolve().name).strip("-.") or "app"
    return f"{name}-appservice"


def _quote(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML string


def _node_commands(app_dir: Path) -> tuple[str, list[str]]:
    scripts: dict = {}
    try:
        data = json.loads((app_dir / "package.json").read_text(errors="replace") or "{}")
        scripts = data.get("scripts") or {} if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        scripts = {}
    if (app_dir / "yarn.lock").is_file():
        # Debian's node image has no yarn: npx fetches yarn 1 from the same registry.
        install, how = "npx --yes yarn@1 install --prefer-offline", "yarn.lock: yarn install"
    else:
        install, how = "npm install", "npm install (Oryx's NpmPackageInstallCommand)"
    commands = [install]
    runner = "npx --yes yarn@1" if install.startswith("npx") else "npm"
    if isinstance(scripts, dict) and "build:azure" in scripts:
        commands.append(f"{runner} run build:azure")
        how += ", then the build:azure script"
    elif isinstance(scripts, dict) and "build" in scripts:
        commands.append(f"{runner} run build")
        how += ", then the build script"
    return how, commands


def _python_commands(app_dir: Path) -> tuple[str, list[str]]:
    venv = f"python3 -m venv {VIRTUALENV} --copies"
    flags = f"--cache-dir {PIP_CACHE} --prefer-binary"
    activate = f". {VIRTUALENV}/bin/activate"
    if (app_dir / "requirements.txt").is_file():
        return ("requirements.txt: pip install -r with Oryx's flags",
                [f"{venv} --system-site-packages", activate,
                 f"python -m pip install {flags} -r requirements.txt"])  # fmt: skip
    if (app_dir / "setup.py").is_file():
        return ("setup.py: pip install .",
                [venv, activate, "pip install setuptools", f"pip install . {flags}"])  # fmt: skip
    if (app_dir / "pyproject.toml").is_file():
        return ("pyproject.toml without uv.lock: poetry, as Oryx falls back to",
                [venv, activate, "pip install poetry", "poetry install --only main"])  # fmt: skip
    return ("no requirements: Oryx installs nothing", [venv, "echo 'Could not find requirements.txt, pyproject.toml, or setup.py; Not installing dependencies.'"])  # fmt: skip


def _relative(path: Path, base: Path | None) -> str:
    if base is None:
        return str(path.resolve())
    return os.path.relpath(path.resolve(), base.resolve())


def plan_scenario(
    app_dir: str | Path,
    detected: Detected,
    options: ChainOptions = ChainOptions(),
    *,
    scenario_dir: Path | None = None,
    command: str = "",
) -> str:
    """The scenario file's text; paths relative to `scenario_dir` (absolute when None)."""
    app = Path(app_dir)
    site = site_name(app, options)
    name = scenario_name(app)
    workdir = _quote(_relative(app, scenario_dir))
    platform, version = detected.platform, detected.version
    lines: list[str] = [
        f"# Generated by: {command or 'egress init ' + str(app_dir)}",
        f"# App Service {options.target} chain for {detected.describe()}.",
        "# Kudu's deploy step, Oryx's step and the build commands Oryx generates run one after",
        "# the other behind this one firewall; `egress learn` on this file (or on the app folder)",
        "# gives the allowlist with each rule's step in its `# via` lines (docs/appservice.md).",
        f"name: {name}",
        "description: >",
        f"  App Service ({options.target}) deployment and Oryx build of {app.resolve().name},",
        "  behind the rules App Service needs: the SCM site, Oryx's SDK CDN and the registry.",
        "upstreams:",
        "  # The site's public face: Kudu calls its own SCM site after the deployment.",
        "  - name: kudu-site",
        "    image: egress/kudu-sim",
        f"    hosts: [{scm_host(site)}, {site}.azurewebsites.net]",
        "  # Oryx's SDK storage, answered by the CDN simulator (the real one is not reachable",
        "  # from a test machine); the firewall still decides on its real name.",
        "  - name: oryx-cdn",
        "    image: egress/oryx-cdn-sim",
        f"    hosts: [{ORYX_CDN}]",
        "steps:",
        "  # 1. Kudu receives the zip from outside the firewall, then calls its SCM site.",
        "  - name: kudu-deploy",
        "    image: egress/kudu-sim",
        f"    command: kudu-sim serve --port {KUDU_PORT}",
        "    timeout: 60",
        "    client:",
        "      image: egress/kudu-sim",
        f"      workdir: {workdir}",
        (f"      command: kudu-sim client --site {site} --src /app --port {KUDU_PORT}"
        f" --endpoint {'publish' if options.target == 'webapp' else 'zipdeploy'}"),
        f"      port: {KUDU_PORT}",
        f"      hosts: [{scm_host(site)}]",
    ]
    version_flag = f" --version {_quote(version)}" if version else ""
    expect_output = ["'^HTTP 200$'"]
    allow = [SCM_WILDCARD if not options.site else scm_host(site), ORYX_CDN]
    if options.oryx_image:
        platform_version = f" --platform-version {_quote(version)}" if version else ""
        python_flag = f" -p virtualenv_name={VIRTUALENV}" if platform == "python" else ""
        lines += [
            "  # 2. The real Oryx (an Oryx build image is in the engine), against the CDN simulator.",
            "  - name: oryx-build",
            f"    image: {ORYX_BUILD_IMAGE}",
            f"    pull: {options.pull}",
            f"    workdir: {workdir}",
            (f"    command: oryx build /app -o /tmp/output --platform {platform}{platform_version}"
            f"{python_flag}"),
            ("    env: {ENABLE_DYNAMIC_INSTALL: 'true', ORYX_SDK_STORAGE_BASE_URL: 'https://"
            f"{ORYX_CDN}'}}"),
            "    trust: [host]",
            "    timeout: 900",
        ]
    else:
        lines += [
            "  # 2. No Oryx build image here: the SDK-CDN requests Oryx makes (list, default",
            "  #    version, tarball and checksum), from egress/oryx-sdk.",
            "  - name: oryx-sdk",
            "    image: egress/oryx-sdk",
            f"    command: oryx-sdk fetch --platform {platform}{version_flag}",
            "    timeout: 120",
        ]
        expect_output.append(f"'oryx-sdk: {platform} [0-9.]+ installed'")
        if platform == "python":
            how, commands = _python_commands(app)
            step, image = "pip-install", "egress/python"
            expect_output.append("'Successfully installed|Requirement already satisfied'")
        elif platform == "nodejs":
            how, commands = _node_commands(app)
            step, image = "npm-install", "egress/node"
            expect_output.append("'(added|up to date)'")
        else:
            how = "dotnet restore, then dotnet publish"
            commands = ["dotnet restore", "dotnet publish -c Release -o /tmp/output"]
            step = "dotnet-publish"
            image = DOTNET_SDK_IMAGE.format(version=version or "8.0")
        lines += [
            f"  # 3. The build commands Oryx generates ({how}), in the project's image.",
            f"  - name: {step}",
            f"    image: {image}",
        ]
        if not image.startswith("egress/"):
            lines += [
                f"    pull: {options.pull}",
                "    if_image_missing: skip   # reported as not run, with the pull's reason",
            ]
        lines += [
            f"    workdir: {workdir}",
            f"    command: {_quote(' && '.join(commands))}",
            "    trust: [host]",
            "    timeout: 900",
        ]
        allow += {
            "python": ["${pip.index_host}", "${pip.files_host}"],
            "nodejs": ["${npm.registry_host}"],
            "dotnet": ["${nuget.index_host}"],
        }[platform]
    lines += [
        "firewall:",
        "  # App Service's needs: the SCM site (Microsoft's documented rule), Oryx's SDK CDN and",
        "  # the package registry, whose hosts are asked of the build image at run time.",
        "  policy:",
        f"    name: {name}",
        "    allow:",
        *[f"      - {_quote(host)}" for host in allow],
        "  https_deny: close",
        "expect:",
        "  outcome: success",
        f"  allowed: ['{scm_host(site)}:443', '{ORYX_CDN}:443']",
        "  output_contains:",
        *[f"    - {pattern}" for pattern in expect_output],
    ]
    return "\n".join(lines) + "\n"


def scm_shape(site_given: bool) -> Callable[[list[Candidate]], list[Candidate]]:
    """For learn: the SCM host Kudu called as Microsoft's `*.scm.azurewebsites.net` rule, or,
    with --site, as the exact host; everything else as learned."""

    def shape(found: list[Candidate]) -> list[Candidate]:
        if site_given:
            return list(found)
        shaped: list[Candidate] = []
        # Exact SCM hosts only: `--wildcards` may already have made Microsoft's rule of them.
        scm = [c for c in found if not c.network and c.host.endswith(SCM_SUFFIX)
               and not c.host.startswith("*")]  # fmt: skip
        for candidate in found:
            if candidate not in scm:
                shaped.append(candidate)
            elif candidate is scm[0]:
                shaped.append(Candidate(
                    SCM_WILDCARD,
                    set().union(*(c.protocols for c in scm)),
                    first_seen=min(c.first_seen for c in scm),
                    connections=sum(c.connections for c in scm),
                    bytes_total=sum(c.bytes_total for c in scm),
                    evidence=[item for c in scm for item in c.evidence_or_own()],
                    covers=tuple(c.host for c in scm),
                ))  # fmt: skip
        return shaped

    return shape
