"""The platform and version of an app folder, as Oryx's detectors find them (microsoft/Oryx,
src/Detector/*): pure file reading, no I/O beyond the folder.

- Python (`PythonDetector`): `requirements.txt`, `pyproject.toml` or `setup.py` at the root, or a
  `runtime.txt` whose text starts with `python-` (the version is what follows). Oryx also takes
  any `*.py` file in the tree as a Python app; here a `*.py` file counts only when nothing else
  is found, so that a Node app with a helper script is not two platforms.
- Node.js (`NodeDetector`): `package.json`, or `server.js` / `app.js` at the root; the version
  is `engines.node` of package.json (a semver range such as `>=18` or `^20.1`, resolved by
  the Oryx step against the SDK list, as Oryx resolves it).
- .NET (`DotNetCoreDetector`): a `*.csproj` at the root or one folder down; the version is its
  `TargetFramework` (`net8.0` -> 8.0, `netcoreapp3.1` -> 3.1; the first of `TargetFrameworks`).

No platform, or more than one, is an InputError (exit 2) naming the files looked for and
`--platform` as the way to choose.
"""

from __future__ import annotations

__all__ = ["PLATFORMS", "Detected", "detect"]

import json
import re
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from harness.errors import InputError, Location

PLATFORMS = ("python", "nodejs", "dotnet")
_LOOKED_FOR = {
    "python": "requirements.txt, pyproject.toml, setup.py, runtime.txt (python-X.Y), *.py",
    "nodejs": "package.json, server.js, app.js",
    "dotnet": "*.csproj (its TargetFramework)",
}
_NAMES = {"python": "Python", "nodejs": "Node.js", "dotnet": ".NET"}


@dataclass(frozen=True)
class Detected:
    platform: str  # python | nodejs | dotnet
    version: str | None  # as written (a version, a prefix or a range); None: Oryx's default
    version_source: str  # where the version came from, or "Oryx's default version"
    files: tuple[str, ...]  # what made the platform, relative to the folder
    project: str | None = None  # .NET: the project file, relative to the folder

    def describe(self) -> str:
        version = self.version or "default"
        return (
            f"{_NAMES[self.platform]} {version} ({self.version_source}; "
            f"found {', '.join(self.files)})"
        )


def _python(folder: Path, weak: bool) -> tuple[list[str], str | None]:
    found = [name for name in ("requirements.txt", "pyproject.toml", "setup.py")
             if (folder / name).is_file()]  # fmt: skip
    version = None
    runtime = folder / "runtime.txt"
    if runtime.is_file():
        text = runtime.read_text(errors="replace").strip()
        if text.lower().startswith("python-"):
            found.append("runtime.txt")
            version = text[len("python-") :].strip() or None
    if not found and weak:
        scripts = sorted(p for p in folder.rglob("*.py") if "node_modules" not in p.parts)
        if scripts:
            found.append(str(scripts[0].relative_to(folder)))
    return found, version


def _node(folder: Path) -> tuple[list[str], str | None]:
    found = [name for name in ("package.json", "server.js", "app.js") if (folder / name).is_file()]
    version = None
    package = folder / "package.json"
    if package.is_file():
        try:
            data = json.loads(package.read_text(errors="replace") or "{}")
        except json.JSONDecodeError as error:
            raise InputError(
                f"package.json is not JSON: {error.msg}",
                location=Location(str(package), error.lineno, error.colno),
                fix="fix the file, or give --platform and --platform-version",
            ) from None
        engines = data.get("engines") if isinstance(data, dict) else None
        if isinstance(engines, dict) and isinstance(engines.get("node"), str):
            version = engines["node"].strip() or None
    return found, version


def _framework_version(framework: str) -> str | None:
    match = re.fullmatch(r"net(?:coreapp)?(\d+\.\d+)(?:-.*)?", framework.strip())
    return match.group(1) if match else None


def _dotnet(folder: Path) -> tuple[list[str], str | None, str | None]:
    projects = sorted([*folder.glob("*.csproj"), *folder.glob("*/*.csproj")])
    if not projects:
        return [], None, None
    project = projects[0]
    relative = str(project.relative_to(folder))
    try:
        root = ElementTree.fromstring(project.read_text(errors="replace"))
    except ElementTree.ParseError as error:
        line, column = error.position
        raise InputError(
            f"{relative} is not XML: {error}",
            location=Location(str(project), line, column + 1),
            fix="fix the project file, or give --platform-version",
        ) from None
    version = None
    for tag in ("TargetFramework", "TargetFrameworks"):
        element = root.find(f".//{tag}")
        if element is not None and element.text:
            version = _framework_version(element.text.split(";")[0])
            if version:
                break
    return [relative], version, relative


def detect(app_dir: str | Path, platform: str | None = None,
           version: str | None = None) -> Detected:  # fmt: skip
    """What Oryx would build `app_dir` as; `platform`/`version` override (--platform,
    --platform-version)."""
    folder = Path(app_dir)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder", fix="give the app's folder (APP_DIR)")
    if platform is not None and platform not in PLATFORMS:
        raise InputError(f"--platform {platform!r} is not one of {', '.join(PLATFORMS)}",
                         fix="e.g. --platform python")  # fmt: skip
    python_files, python_version = _python(folder, weak=False)
    node_files, node_version = _node(folder)
    dotnet_files, dotnet_version, project = _dotnet(folder)
    if not (python_files or node_files or dotnet_files):
        python_files, python_version = _python(folder, weak=True)
    found = {
        name: (files, found_version)
        for name, files, found_version in (
            ("python", python_files, python_version),
            ("nodejs", node_files, node_version),
            ("dotnet", dotnet_files, dotnet_version),
        )
        if files
    }
    looked_for = "; ".join(f"{_NAMES[name]}: {files}" for name, files in _LOOKED_FOR.items())
    if platform is None:
        if not found:
            raise InputError(
                f"no platform Oryx would detect in {folder}: looked for {looked_for}",
                fix="add the app's manifest (e.g. requirements.txt or package.json), or give "
                "--platform python|nodejs|dotnet (and --platform-version)",
            )
        if len(found) > 1:
            seen = " and ".join(
                f"{_NAMES[name]} ({', '.join(files)})" for name, (files, _) in found.items()
            )
            raise InputError(
                f"{folder} holds more than one platform: {seen}",
                fix="choose one with --platform " + " or --platform ".join(found),
            )
        platform = next(iter(found))
    files, found_version = found.get(platform, ([], None))
    if version:
        source = "--platform-version"
    elif found_version:
        version, source = found_version, {
            "python": "runtime.txt", "nodejs": "package.json engines.node",
            "dotnet": f"{project} TargetFramework",
        }[platform]  # fmt: skip
    else:
        source = "Oryx's default version"
    return Detected(platform, version, source, tuple(files) or ("--platform",),
                    project if platform == "dotnet" else None)  # fmt: skip
