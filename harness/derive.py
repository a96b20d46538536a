"""Derived values: `${pip.index_host}` and its kin in a scenario, taken from the workload
image's own client configuration, so that no scenario names a public registry host.

A scenario may write a reference in its firewall policy (any string of `firewall.policy`,
inline or in the policy file it names) and in the strings of `expect.denied`, `expect.allowed`,
`expect.log_contains` and `expect.output_contains`. An unknown name is an InputError when the
scenario is loaded. The values are found when the scenario runs (`resolve_derived`, called by
`harness.execute.execute`): one short probe container per client family, started from the
workload's image with the scenario's env and workdir and no network, asks the client itself:

    pip  pip's own option parser (config files, PIP_INDEX_URL, ...) and pip's PyPI model
    npm  `npm config get registry` (in /app, so the app's .npmrc counts)
    apt  the image's /etc/apt/sources.list and sources.list.d (one-line and deb822 forms)

A `Prober` keeps each probe's answer per image, env and workdir for the life of the process.
The probe runner is passed in, so tests need no Docker: `harness.sandbox.probe` has the real one.

Until a run resolves them, a policy holds a valid stand-in name per reference
(`stand_in("pip.index_host")` = `pip-index-host.derived.egress.test`), so policy checks apply
as usual; expectation strings keep the `${...}` text. In a regular expression the value is
inserted `re.escape`d; in a destination it is inserted as written, lower-cased.
"""

from __future__ import annotations

__all__ = [
    "DERIVED_NAMES",
    "DerivedUse",
    "ProbeFailed",
    "ProbeRequest",
    "ProbeResult",
    "ProbeRunner",
    "Prober",
    "apt_mirror_urls",
    "references",
    "resolve_derived",
    "stand_in",
    "substitute",
    "unknown_reference_problem",
]

import dataclasses
import difflib
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from harness.errors import InputError, Location
from harness.policy.fqdn import exact_name_problem

if TYPE_CHECKING:
    from harness.policy.model import Policy
    from harness.scenario import Scenario

DERIVED_NAMES: dict[str, str] = {
    "pip.index_url": "the index URL pip installs from (pip's options: pip.conf, PIP_INDEX_URL)",
    "pip.index_host": "the host of pip.index_url",
    "pip.files_host": "where that index serves its files: pip's own PyPI model names the file "
    "host of the default index; any other index is taken to serve its own files",
    "npm.registry_url": "`npm config get registry`, run in the app's folder",
    "npm.registry_host": "the host of npm.registry_url",
    "apt.mirror_url": "the first `deb` URI of the image's apt sources",
    "apt.mirror_host": "the host of apt.mirror_url",
    "nuget.index_url": "the first enabled source of `dotnet nuget list source` (NuGet.Config "
    "files, the app's own in /app)",
    "nuget.index_host": "the host of nuget.index_url",
}

REFERENCE = re.compile(r"\$\{([^}]*)\}")
STAND_IN_DOMAIN = "derived.egress.test"


@dataclass(frozen=True)
class DerivedUse:
    """Where a scenario first refers to a derived value, for errors at resolve time."""

    name: str
    location: Location | None
    key_path: str


def references(text: str) -> list[str]:
    """The names referenced in `text`, known or not, in order."""
    return [match.group(1) for match in REFERENCE.finditer(text)]


def unknown_reference_problem(name: str) -> str | None:
    """Why `${name}` cannot be used (with the near miss), or None for a known name."""
    if name in DERIVED_NAMES:
        return None
    close = difflib.get_close_matches(name, DERIVED_NAMES, n=1)
    hint = f" (did you mean ${{{close[0]}}}?)" if close else ""
    known = ", ".join(f"${{{known}}}" for known in DERIVED_NAMES)
    return f"unknown derived value ${{{name}}}{hint}; known: {known}"


def stand_in(name: str) -> str:
    """A valid, reserved host name that holds the place of `${name}` in a loaded policy."""
    return f"{name.replace('.', '-').replace('_', '-')}.{STAND_IN_DOMAIN}"


def substitute(text: str, values: Mapping[str, str], escape: Callable[[str], str] = str) -> str:
    """`text` with each `${name}` replaced by `escape(values[name])`; names must be known."""
    return REFERENCE.sub(lambda match: escape(values[match.group(1)]), text)


# --- probing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeRequest:
    """Run `command` (argv) in `image` with no network; `workdir` is copied to /app."""

    image: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    workdir: Path | None = None


@dataclass(frozen=True)
class ProbeResult:
    exit_code: int
    stdout: str
    stderr: str = ""


ProbeRunner = Callable[[ProbeRequest], ProbeResult]


class ProbeFailed(Exception):
    """A probe could not give a family's values; the message says what the client answered."""


# pip's own option parser applies pip.conf files and PIP_* variables exactly as `pip install`
# would; PyPI's model is where pip itself keeps the default index's file host.
_PIP_SCRIPT = """\
from pip._internal.commands import create_command
from pip._internal.models.index import PyPI
options, _ = create_command("install").parse_args([])
print("index_url=" + options.index_url)
print("pypi_simple_url=" + PyPI.simple_url)
print("pypi_files_host=" + PyPI.file_storage_domain)
"""

_APT_FILE_MARK = "### egress-probe file: "
_APT_SCRIPT = (
    "for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list"
    " /etc/apt/sources.list.d/*.sources; do"
    f' if [ -f "$f" ]; then echo "{_APT_FILE_MARK}$f"; cat "$f"; echo; fi; done'
)


def _host(url: str) -> str:
    host = urlsplit(url.strip()).hostname
    if not host:
        raise ProbeFailed(f"{url!r} is not a URL with a host")
    return host


def _key_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _pip_values(result: ProbeResult) -> dict[str, str]:
    found = _key_values(result.stdout)
    if "index_url" not in found:
        raise ProbeFailed("pip's options could not be read")
    index_url = found["index_url"]
    index_host = _host(index_url)
    same_as_pypi = index_url.rstrip("/") == found.get("pypi_simple_url", "").rstrip("/")
    return {
        "pip.index_url": index_url,
        "pip.index_host": index_host,
        "pip.files_host": found.get("pypi_files_host", index_host) if same_as_pypi else index_host,
    }


def _npm_values(result: ProbeResult) -> dict[str, str]:
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if not lines:
        raise ProbeFailed("npm printed no registry")
    return {"npm.registry_url": lines[-1], "npm.registry_host": _host(lines[-1])}


def _nuget_values(result: ProbeResult) -> dict[str, str]:
    """`dotnet nuget list source --format short`: one `E URL` line per enabled source (`D` for
    a disabled one), in NuGet's order."""
    for line in result.stdout.splitlines():
        flag, _, url = line.strip().partition(" ")
        if flag.upper().startswith("E") and urlsplit(url.strip()).hostname:
            return {"nuget.index_url": url.strip(), "nuget.index_host": _host(url)}
    raise ProbeFailed("`dotnet nuget list source` listed no enabled source with a host")


def apt_mirror_urls(listing: str) -> list[str]:
    """The URIs of enabled `deb` sources, in apt's file order, from the probe's listing (each
    file's text after a mark line naming it). One-line `deb [options] uri suite ...` lines and
    deb822 stanzas (`Types: deb`, `URIs:`, `Enabled: no` skipped) are both read."""
    urls: list[str] = []
    files: list[tuple[str, list[str]]] = []
    for line in listing.splitlines():
        if line.startswith(_APT_FILE_MARK):
            files.append((line[len(_APT_FILE_MARK) :], []))
        elif files:
            files[-1][1].append(line)
    for name, lines in files:
        if name.endswith(".sources"):
            urls += _deb822_urls(lines)
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            words = words[1:]
            if words and words[0].startswith("["):
                while words and not words[0].endswith("]"):
                    words = words[1:]
                words = words[1:]
            if words:
                urls.append(words[0])
    return urls


def _deb822_urls(lines: list[str]) -> list[str]:
    urls: list[str] = []
    stanzas: list[dict[str, str]] = [{}]
    last_key = ""
    for line in lines:
        if line.startswith("#"):
            continue
        if not line.strip():
            stanzas.append({})
        elif line[0] in " \t" and last_key:
            stanzas[-1][last_key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            last_key = key.strip().lower()
            stanzas[-1][last_key] = value.strip()
    for stanza in stanzas:
        if "deb" in stanza.get("types", "").split() and stanza.get("enabled", "yes") != "no":
            urls += stanza.get("uris", "").split()
    return urls


def _apt_values(result: ProbeResult) -> dict[str, str]:
    for url in apt_mirror_urls(result.stdout):
        if urlsplit(url).hostname:
            return {"apt.mirror_url": url, "apt.mirror_host": _host(url)}
    raise ProbeFailed("no enabled `deb` source with a host in /etc/apt/sources.list*")


@dataclass(frozen=True)
class _Family:
    label: str  # the probe, as an error message names it
    command: tuple[str, ...]
    values: Callable[[ProbeResult], dict[str, str]]


_FAMILIES: dict[str, _Family] = {
    "pip": _Family("pip's option parser (python3)", ("python3", "-c", _PIP_SCRIPT), _pip_values),
    "npm": _Family("`npm config get registry`", ("npm", "config", "get", "registry"), _npm_values),
    "apt": _Family("listing /etc/apt/sources.list*", ("/bin/sh", "-c", _APT_SCRIPT), _apt_values),
    "nuget": _Family("`dotnet nuget list source`",
                     ("dotnet", "nuget", "list", "source", "--format", "short"), _nuget_values),
}


class Prober:
    """Derived values per image, env and workdir, each family probed once per process."""

    def __init__(self, run: ProbeRunner) -> None:
        self._run = run
        self._cache: dict[tuple[Any, ...], dict[str, str]] = {}
        self._lock = threading.Lock()  # learn --classify runs scenarios from several threads

    def values(
        self,
        family: str,
        image: str,
        env: tuple[tuple[str, str], ...] = (),
        workdir: Path | None = None,
    ) -> dict[str, str]:
        key = (family, image, tuple(sorted(env)), workdir)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._probe(_FAMILIES[family], image, env, workdir)
            return self._cache[key]

    def _probe(
        self, family: _Family, image: str, env: tuple[tuple[str, str], ...], workdir: Path | None
    ) -> dict[str, str]:
        result = self._run(ProbeRequest(image, family.command, env, workdir))
        if result.exit_code != 0:
            said = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
            raise ProbeFailed(
                f"{family.label} exited {result.exit_code}" + "".join(f": {s}" for s in said)
            )
        return family.values(result)


# --- resolving a scenario ------------------------------------------------------------------


def _replace_strings(value: Any, change: Callable[[str], str]) -> Any:
    """`value` (frozen dataclasses, tuples, strings) with every string passed through `change`."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, tuple):
        return tuple(_replace_strings(item, change) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        updates = {
            item.name: _replace_strings(getattr(value, item.name), change)
            for item in dataclasses.fields(value)
            if item.init
        }
        return dataclasses.replace(value, **updates)
    return value


def _policy_with(policy: Policy, values: Mapping[str, str]) -> Policy:
    def change(text: str) -> str:
        for name, value in values.items():
            text = text.replace(stand_in(name), value)
        return text

    return _replace_strings(policy, change)


def resolve_derived(scenario: Scenario, policy: Policy, prober: Prober) -> tuple[Scenario, Policy]:
    """The scenario (its policy and expectations) and the effective `policy` with every derived
    value filled in. InputError, at the scenario line that first uses it, for a value the
    workload's image cannot give."""
    if not scenario.derived:
        return scenario, policy
    workload = scenario.workload
    values: dict[str, str] = {}
    first_use = {use.name: use for use in reversed(scenario.derived)}
    for family in sorted({use.name.split(".", 1)[0] for use in scenario.derived}):
        try:
            values.update(prober.values(family, workload.image, workload.env, workload.workdir))
        except ProbeFailed as failure:
            use = next(use for use in scenario.derived if use.name.startswith(family + "."))
            raise InputError(
                f"${{{use.name}}} cannot be derived from image {workload.image}: {failure}",
                location=use.location,
                key_path=use.key_path,
                fix=f"use an image whose {family} is configured, or write the host itself",
            ) from None
    for name, use in first_use.items():
        problem = exact_name_problem(values[name]) if name.endswith("_host") else None
        if problem:
            raise InputError(
                f"${{{name}}} is {values[name]!r} in image {workload.image}: {problem}",
                location=use.location,
                key_path=use.key_path,
                fix="check the client's configuration in the image and the scenario's env",
            )
    expect = scenario.expect

    def destinations(texts: Iterable[str]) -> tuple[str, ...]:
        return tuple(substitute(text, values).lower() for text in texts)

    def patterns(texts: Iterable[str]) -> tuple[str, ...]:
        return tuple(substitute(text, values, re.escape) for text in texts)

    resolved = dataclasses.replace(
        scenario,
        firewall=dataclasses.replace(
            scenario.firewall, policy=_policy_with(scenario.firewall.policy, values)
        ),
        expect=dataclasses.replace(
            expect,
            denied=destinations(expect.denied),
            allowed=destinations(expect.allowed),
            log_contains=patterns(expect.log_contains),
            output_contains=patterns(expect.output_contains),
        ),
        derived=(),
    )
    return resolved, _policy_with(policy, values)
