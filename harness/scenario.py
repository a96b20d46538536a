"""Scenarios (formats.md "Scenario"): a workload, the firewall it runs behind, and what is
expected of the run. Loaded with the same error quality as policies; paths are resolved from
the scenario file's folder.

Paths (`workload.workdir`, `workload.trust`, `firewall.policy`, `client.workdir`) must stay inside
the scenario's own tree, symlinks resolved: the git checkout that holds the scenario file (so
`scenarios/app.scenario.yaml` may name `../apps/app`, as `egress init` writes it), or the file's
folder outside a checkout. A scenario from someone else's repository cannot copy `/etc` into a
workload or read a host file into its CA bundle. The user lifts this
for a scenario they trust with `--allow-outside-paths` (`egress run|learn`, pytest) or
EGRESS_ALLOW_OUTSIDE_PATHS=1; the scenario itself cannot.

Derived values (`${pip.index_host}`, see `harness.derive`) may be written in the firewall policy
and in expectation strings; an unknown name stops loading at its line. A loaded scenario lists
them in `derived`, and `harness.execute` fills them in from the workload image when it runs.
"""

from __future__ import annotations

__all__ = [
    "Expect",
    "FirewallSettings",
    "InboundClient",
    "LearnedExpectation",
    "Scenario",
    "Step",
    "Upstream",
    "Workload",
    "load_scenario",
]

import contextvars
import ipaddress
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.derive import DerivedUse, references, stand_in, substitute, unknown_reference_problem
from harness.errors import Location, excerpt
from harness.firewall_settings import DNS_MODES, HTTPS_DENY_STYLES, MODES, HttpsDeny, Mode
from harness.policy.fqdn import exact_name_problem, normalize
from harness.policy.load import YAML, fields_of, required, string_of
from harness.policy.model import Policy
from harness.yamlio import Node, load_yaml

Pull = Literal["missing", "always", "never"]
PULL_CHOICES = ("missing", "always", "never")


@dataclass(frozen=True)
class Workload:
    image: str
    command: str | tuple[str, ...]
    workdir: Path | None = None
    env: tuple[tuple[str, str], ...] = ()
    trust: tuple[str, ...] = ()
    timeout: float = 600.0
    # An image the user must provide (no registry is pulled from): `skip` reports the scenario
    # as not run, with the reason, instead of failing it.
    if_image_missing: Literal["fail", "skip"] = "fail"
    # When to ask a registry for the image (harness.sandbox.pull); the project's own
    # `egress/*` images are built, never pulled.
    pull: Pull = "missing"


@dataclass(frozen=True)
class FirewallSettings:
    policy: Policy
    policy_source: Path | None = None  # the file it came from; None for an inline policy
    mode: Mode = "enforce"
    https_deny: HttpsDeny = "close"
    hosts: tuple[tuple[str, str], ...] = ()
    # azure: a name that does not resolve here gets a sinkhole address (as Azure's DNS answers
    # it), so the build connects and the firewall sees it by name; resolve: real answers only.
    dns: str = "azure"


@dataclass(frozen=True)
class Upstream:
    """A simulated public site the run starts (harness.sandbox.upstreams): `image` answers
    HTTPS and HTTP as every name in `hosts`, with a certificate from the run's test CA."""

    name: str
    image: str
    hosts: tuple[str, ...]
    command: str | tuple[str, ...] | None = None  # None: the image's own CMD
    env: tuple[tuple[str, str], ...] = ()
    pull: Pull = "missing"


@dataclass(frozen=True)
class InboundClient:
    """A command run outside the firewall once the workload listens on `port` (the deploy
    client of docs/kudu.md, `az webapp deploy`). It resolves each of `hosts` to the workload
    (the gateway's address on the client's network); when a scenario has one, the run's
    outcome is the client's exit status."""

    image: str
    command: str | tuple[str, ...]
    port: int
    workdir: Path | None = None
    env: tuple[tuple[str, str], ...] = ()
    hosts: tuple[str, ...] = ()
    pull: Pull = "missing"


@dataclass(frozen=True)
class Step:
    """One step of a chain (`steps:`): a workload, and the client outside that drives it, run
    one after the other behind the same firewall (the App Service chain of
    harness.appservice: Kudu's deploy, Oryx's SDK download, the build commands). The run
    stops at the first step that fails; events are told apart by when each step ran."""

    name: str
    workload: Workload
    client: InboundClient | None = None


@dataclass(frozen=True)
class LearnedExpectation:
    count: int | None = None
    verified: bool | None = None


@dataclass(frozen=True)
class Expect:
    outcome: Literal["success", "failure"] = "success"
    denied: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    log_contains: tuple[str, ...] = ()
    output_contains: tuple[str, ...] = ()
    learned: LearnedExpectation | None = None
    # Where each expectation was written, so a failure can point at its YAML line.
    locations: tuple[tuple[str, Location], ...] = ()

    def location_of(self, key: str) -> Location | None:
        return dict(self.locations).get(key)


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    workload: Workload
    firewall: FirewallSettings
    expect: Expect = field(default_factory=Expect)
    description: str = ""
    # Every use of a `${...}` derived value in the policy and expectations, in file order, with
    # where it is written; empty once `harness.derive.resolve_derived` has filled them in.
    derived: tuple[DerivedUse, ...] = ()
    upstreams: tuple[Upstream, ...] = ()
    client: InboundClient | None = None
    # Where the scenario starts in its file (its `name:` key, else the top), for test reports.
    location: Location | None = None
    # A chain instead of one workload; `workload` is then the last step's (derived values are
    # asked of its image).
    steps: tuple[Step, ...] = ()


# --- loading -------------------------------------------------------------------------------

_TOP = ("name", "description", "workload", "firewall", "expect", "upstreams", "client", "steps")
_WORKLOAD = ("image", "workdir", "command", "env", "trust", "timeout", "if_image_missing", "pull")
_STEP = ("name", "client", *_WORKLOAD)
IMAGE_MISSING_CHOICES = ("fail", "skip")
_FIREWALL = ("policy", "mode", "https_deny", "hosts", "dns")
_EXPECT = ("outcome", "denied", "allowed", "log_contains", "output_contains", "learned")
_LEARNED = ("count", "verified")
_UPSTREAM = ("name", "image", "hosts", "command", "env", "pull")
_CLIENT = ("image", "command", "workdir", "env", "port", "hosts", "pull")


ALLOW_OUTSIDE_PATHS_ENV = "EGRESS_ALLOW_OUTSIDE_PATHS"


def load_scenario(path: str | Path, *, allow_outside_paths: bool = False) -> Scenario:
    """A scenario file; every problem is an InputError pointing at its line and key. Paths
    outside the file's folder tree are refused unless `allow_outside_paths` (or the
    EGRESS_ALLOW_OUTSIDE_PATHS=1 environment variable) says the user trusts it."""
    source = Path(path)
    document = load_yaml(source)
    allow = allow_outside_paths or os.environ.get(ALLOW_OUTSIDE_PATHS_ENV, "") == "1"
    token = _ALLOW_OUTSIDE.set(allow)
    try:
        return scenario_from_node(document.root, source)
    finally:
        _ALLOW_OUTSIDE.reset(token)


# Set for one load_scenario call; a context variable rather than a parameter threaded through
# every helper that resolves a path.
_ALLOW_OUTSIDE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "allow_outside_paths", default=False
)


def own_tree(source: Path) -> Path:
    """The folder a scenario's paths must stay in: the top of the git checkout holding it, else
    its own folder."""
    folder = source.parent.resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return folder


def _scenario_path(node: Node, source: Path, what: str) -> Path:
    """`node`'s relative path resolved from the scenario's folder, confined to its tree."""
    text = string_of(node, what)
    try:
        resolved = (source.parent / text).resolve()
        root = own_tree(source)
        resolved.exists()  # probes the name: too long for the file system raises here
    except (OSError, ValueError) as error:  # a name too long, a NUL byte
        reason = getattr(error, "strerror", None) or excerpt(str(error))
        raise node.error(f"{excerpt(text)} is not a usable path ({reason})", "fix the path") from None
    if not _ALLOW_OUTSIDE.get() and not resolved.is_relative_to(root):
        raise node.error(
            f"{excerpt(text)} is outside the scenario's own tree {root}",
            "keep the files in the scenario's checkout or folder, or pass --allow-outside-paths"
            " (EGRESS_ALLOW_OUTSIDE_PATHS=1) if you trust this scenario",
        )
    return resolved


def scenario_from_node(root: Node, source: Path) -> Scenario:
    found = fields_of(root, YAML, _TOP, what="a scenario")
    name = string_of(found["name"], "a scenario name") if "name" in found else source.stem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise found["name"].error(
            f"scenario name {name!r} has characters other than letters, digits, '.', '_', '-'",
            "it names folders and containers; e.g. python-requirements",
        )
    description = string_of(found["description"], "a description") if "description" in found else ""
    steps = _steps(found["steps"], source) if "steps" in found else ()
    if steps:
        if "workload" in found or "client" in found:
            key = "workload" if "workload" in found else "client"
            raise found[key].error(
                f"a scenario with steps has no top-level {key}",
                "give each step its own image and command (and client)",
            )
        workload = steps[-1].workload
    else:
        workload_node = required(
            root, found, "workload", YAML, "workload: {image: egress/python, command: ...}"
        )
        workload = _workload(workload_node, source)
    uses: list[DerivedUse] = []
    firewall = _firewall(found.get("firewall"), source, name, uses)
    return Scenario(
        name=name,
        path=source,
        workload=workload,
        firewall=firewall,
        expect=_expect(found.get("expect"), uses),
        description=description,
        derived=tuple(uses),
        upstreams=_upstreams(found.get("upstreams"), firewall),
        client=_client(found["client"], source) if "client" in found else None,
        location=found.get("name", root).location,
        steps=steps,
    )


def _unique_name(
    item: Node, found: dict[str, Node], taken: list[str], what: str, example: str, names: str
) -> str:
    """A step's or an upstream's `name:`: lower-case letters, digits and '-', 40 at most (it
    names containers), and not one already `taken` in the list."""
    name_node = required(item, found, "name", YAML, f"name: {example}")
    name = string_of(name_node, f"a {what} name")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", name):
        raise name_node.error(
            f"{what} name {name!r} is not lower-case letters, digits and '-' (40 at most)",
            f"it names {names}; e.g. {example}",
        )
    if name in taken:
        raise name_node.error(f"{what} name {name!r} is used twice", "give each its own")
    return name


def _steps(node: Node, source: Path) -> tuple[Step, ...]:
    """`steps:`: a non-empty list of named workloads, each with an optional client."""
    if not isinstance(node.value, list) or not node.value:
        raise node.error(
            "steps must be a non-empty list of steps",
            "e.g. steps: [{name: pip-install, image: egress/python, command: ...}]",
        )
    steps: list[Step] = []
    for item in node.elements():
        found = fields_of(item, YAML, _STEP, what="a step")
        name = _unique_name(item, found, [step.name for step in steps], "step", "pip-install",
                            "the step's containers and its `# via` evidence")  # fmt: skip
        workload = _workload(item, source, allowed=_STEP)
        client = _client(found["client"], source) if "client" in found else None
        steps.append(Step(name, workload, client))
    return tuple(steps)


def _derived_names(node: Node, uses: list[DerivedUse]) -> list[str]:
    """The derived values a string node refers to, recorded in `uses`; unknown ones stop."""
    names = references(node.value)
    for name in names:
        problem = unknown_reference_problem(name)
        if problem:
            raise node.error(problem, "derived values are listed in docs/scenarios.md")
        uses.append(DerivedUse(name, node.location, node.key_path))
    return names


def _stand_ins(node: Node, uses: list[DerivedUse]) -> None:
    """Each `${name}` in the strings under `node` replaced, in place, by its stand-in host name,
    so the policy checks run as usual until a run fills in the value."""
    value = node.value
    if isinstance(value, dict):
        children = [(key, node.child(key)) for key in value]
    elif isinstance(value, list):
        children = list(enumerate(node.elements()))
    else:
        return
    for key, child in children:
        if isinstance(child.value, str):
            names = _derived_names(child, uses)
            if names:
                value[key] = substitute(child.value, {name: stand_in(name) for name in names})
        else:
            _stand_ins(child, uses)


def _workload(node: Node, source: Path, allowed: tuple[str, ...] = _WORKLOAD) -> Workload:
    found = fields_of(node, YAML, allowed, what="workload" if allowed is _WORKLOAD else "a step")
    image = string_of(required(node, found, "image", YAML, "image: egress/python"), "an image name")
    command_node = required(
        node, found, "command", YAML, "command: pip install -r requirements.txt"
    )
    command = _command(command_node, "command: pip install -r requirements.txt")
    workdir = _workdir(found["workdir"], source) if "workdir" in found else None
    env = _env(found["env"]) if "env" in found else ()
    trust: list[str] = []
    if "trust" in found:
        items = list(found["trust"].elements()) if isinstance(found["trust"].value, list) else None
        if items is None:
            raise found["trust"].error(
                "trust must be a list", "e.g. trust: [host] or [certs/ca.pem]"
            )
        for item in items:
            value = string_of(item, "'host' or a PEM file path")
            if value == "host":
                trust.append(value)
                continue
            pem = _scenario_path(item, source, "'host' or a PEM file path")
            if not pem.is_file():
                raise item.error(
                    f"{pem} is not a file", "give 'host' or a PEM file relative to the scenario"
                )
            trust.append(str(pem))
    timeout = 600.0
    if "timeout" in found:
        value = found["timeout"].value
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 < value <= MAX_TIMEOUT_S
        ):
            raise found["timeout"].error(
                f"timeout must be a positive number of seconds up to {MAX_TIMEOUT_S}, not {excerpt(value)}",
                "e.g. timeout: 600",
            )
        timeout = float(value)
    if_image_missing = (
        _choice(found["if_image_missing"], IMAGE_MISSING_CHOICES, "if_image_missing")
        if "if_image_missing" in found
        else "fail"
    )
    pull = _pull(found)
    return Workload(image, command, workdir, env, tuple(trust), timeout, if_image_missing, pull)  # type: ignore[arg-type]


def _pull(found: dict[str, Node]) -> str:
    return _choice(found["pull"], PULL_CHOICES, "pull") if "pull" in found else "missing"


MAX_TIMEOUT_S = 24 * 3600


def _workdir(node: Node, source: Path) -> Path:
    workdir = _scenario_path(node, source, "a folder path")
    if not workdir.is_dir():
        raise node.error(
            f"{workdir} is not a folder", "give a folder relative to the scenario file"
        )
    return workdir


def _client(node: Node, source: Path) -> InboundClient:
    """`client:`: a command outside the firewall that connects to the workload's `port`."""
    found = fields_of(node, YAML, _CLIENT, what="client")
    image = string_of(
        required(node, found, "image", YAML, "image: egress/kudu-sim"), "an image name"
    )
    command = _command(
        required(node, found, "command", YAML, "command: kudu-sim client --src /app"),
        "command: kudu-sim client --src /app",
    )
    port_node = required(node, found, "port", YAML, "port: 8080")
    port = port_node.value
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise port_node.error(
            f"port must be a TCP port number 1..65535, not {port!r}",
            "the port the workload listens on, e.g. port: 8080",
        )
    workdir = _workdir(found["workdir"], source) if "workdir" in found else None
    env = _env(found["env"]) if "env" in found else ()
    hosts: list[str] = []
    if "hosts" in found:
        hosts_node = found["hosts"]
        if not isinstance(hosts_node.value, list):
            raise hosts_node.error(
                "hosts must be a list of host names",
                "the names the client resolves to the workload, e.g. hosts: [site.example.test]",
            )
        for host_node, host in _exact_hosts(hosts_node, "the client resolves"):
            if host in hosts:
                raise host_node.error(f"{host} is listed twice", "name each host once")
            hosts.append(host)
    return InboundClient(image, command, port, workdir, env, tuple(hosts), _pull(found))  # type: ignore[arg-type]


def _exact_hosts(node: Node, who: str) -> Iterator[tuple[Node, str]]:
    """Each item of a list of exact host names, normalized; a pattern or a bad name is an
    error at its line. `who` completes "... exact host names" in the message."""
    for host_node in node.elements():
        host = normalize(string_of(host_node, "a host name"))
        problem = exact_name_problem(host)
        if "*" in host:
            problem = f"{host!r} is a pattern; {who} exact host names"
        if problem:
            raise host_node.error(problem, "name each host, not a pattern")
        yield host_node, host


def _command(node: Node, example: str) -> str | tuple[str, ...]:
    if isinstance(node.value, list):
        command = tuple(string_of(item, "a command word") for item in node.elements())
        if not command:
            raise node.error("the command is an empty list", "write the command to run")
        return command
    return string_of(node, "a command (a string or a list of words)", f"e.g. {example}")


def _env(node: Node) -> tuple[tuple[str, str], ...]:
    if not isinstance(node.value, dict):
        raise node.error(
            "env must be a mapping of NAME: value", "e.g. env: {PIP_NO_CACHE_DIR: '1'}"
        )
    env: list[tuple[str, str]] = []
    for key, child in node.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise child.error(
                f"{key!r} is not an environment variable name", "use letters, digits and _"
            )
        if isinstance(child.value, dict | list) or child.value is None:
            raise child.error(f"the value of {key} must be a string or number", "quote it")
        env.append((key, str(child.value)))
    return tuple(env)


def _upstreams(node: Node | None, firewall: FirewallSettings) -> tuple[Upstream, ...]:
    """`upstreams:`: simulated sites, each answering some exact host names."""
    if node is None:
        return ()
    if not isinstance(node.value, list):
        raise node.error(
            "upstreams must be a list of sites",
            "e.g. upstreams: [{name: kudu-site, image: egress/kudu-sim, hosts: [a.example.test]}]",
        )
    overridden = {normalize(name) for name, _ in firewall.hosts}
    owners: dict[str, str] = {}
    upstreams: list[Upstream] = []
    for item in node.elements():
        found = fields_of(item, YAML, _UPSTREAM, what="an upstream")
        name = _unique_name(item, found, [upstream.name for upstream in upstreams], "upstream",
                            "kudu-site", "a container and a folder of the recording")  # fmt: skip
        image = string_of(
            required(item, found, "image", YAML, "image: egress/upstreams"), "an image name"
        )
        hosts_node = required(item, found, "hosts", YAML, "hosts: [site.example.test]")
        if not isinstance(hosts_node.value, list) or not hosts_node.value:
            raise hosts_node.error(
                "hosts must be a non-empty list of host names", "e.g. hosts: [site.example.test]"
            )
        hosts: list[str] = []
        for host_node, host in _exact_hosts(hosts_node, "an upstream answers"):
            if host in overridden:
                raise host_node.error(
                    f"{host} is also in firewall.hosts",
                    "name it in one place: the upstream gives the firewall its address",
                )
            if host in owners:
                raise host_node.error(
                    f"{host} is already answered by upstream {owners[host]}",
                    "give each host to one upstream",
                )
            owners[host] = name
            hosts.append(host)
        command = (
            _command(found["command"], "command: [python3, server.py]")
            if "command" in found
            else None
        )
        env = _env(found["env"]) if "env" in found else ()
        upstreams.append(Upstream(name, image, tuple(hosts), command, env, _pull(found)))  # type: ignore[arg-type]
    return tuple(upstreams)


def _choice(node: Node, choices: tuple[str, ...], what: str) -> str:
    value = node.value
    if value not in choices:
        raise node.error(
            f"{what} must be one of {', '.join(choices)}, not {value!r}", f"e.g. {choices[0]}"
        )
    return value


def _firewall(
    node: Node | None, source: Path, scenario_name: str, uses: list[DerivedUse]
) -> FirewallSettings:
    from harness.policy.load import policy_from_document, policy_from_mapping
    from harness.yamlio import load_document

    if node is None:
        return FirewallSettings(policy=Policy(f"{scenario_name}-deny-all"))
    found = fields_of(node, YAML, _FIREWALL, what="firewall")
    policy = Policy(f"{scenario_name}-deny-all")
    policy_source = None
    if "policy" in found:
        policy_node = found["policy"]
        if isinstance(policy_node.value, str):
            policy_source = _scenario_path(policy_node, source, "a policy file path")
            if not policy_source.is_file():
                raise policy_node.error(
                    f"{policy_source} is not a file",
                    "give a policy file relative to the scenario, or an inline mapping",
                )
            # As load_policy does, with derived values in the file replaced by stand-ins.
            document = None if _is_terraform(policy_source) else load_document(policy_source)
            if document is not None:
                _stand_ins(document.root, uses)
                policy = policy_from_document(document, policy_source.stem)
            else:  # a .tf / .tf.json file, evaluated with its variables' defaults
                policy = _terraform_policy(policy_source)
        elif isinstance(policy_node.value, dict):
            _stand_ins(policy_node, uses)
            policy = policy_from_mapping(policy_node.value, source, default_name=scenario_name)
        else:
            raise policy_node.error(
                "policy must be a file path or a mapping", "e.g. policy: policies/empty.yaml"
            )
    mode = _choice(found["mode"], MODES, "mode") if "mode" in found else "enforce"
    https_deny = (
        _choice(found["https_deny"], HTTPS_DENY_STYLES, "https_deny")
        if "https_deny" in found
        else "close"
    )
    hosts: list[tuple[str, str]] = []
    if "hosts" in found:
        if not isinstance(found["hosts"].value, dict):
            raise found["hosts"].error(
                "hosts must be a mapping of name: IP", "e.g. hosts: {files.example.test: 10.9.0.5}"
            )
        for name, child in found["hosts"].items():
            if not isinstance(name, str):
                raise child.error(f"{excerpt(name)} is not a host name", "write name: IP")
            host = normalize(name)
            problem = exact_name_problem(host)
            if "*" in host:
                problem = f"{excerpt(name)} is a pattern; the firewall's DNS overrides exact names"
            if problem:
                raise child.error(problem, "write an exact host name: IP")
            try:
                address = str(ipaddress.ip_address(str(child.value)))
            except ValueError:
                raise child.error(
                    f"{excerpt(child.value)} is not an IP address", "write name: IP"
                ) from None
            hosts.append((host, address))
    dns = _choice(found["dns"], DNS_MODES, "dns") if "dns" in found else "azure"
    return FirewallSettings(policy, policy_source, mode, https_deny, tuple(hosts), dns)  # type: ignore[arg-type]


def _destinations(node: Node, uses: list[DerivedUse]) -> tuple[str, ...]:
    if not isinstance(node.value, list):
        raise node.error(
            "expected a list of destinations (host or host:port)", "e.g. [files.example.test:443]"
        )
    destinations = []
    for item in node.elements():
        text = string_of(item, "a destination (host or host:port)")
        _derived_names(item, uses)
        destinations.append(text.lower())
    return tuple(destinations)


def _patterns(node: Node, uses: list[DerivedUse]) -> tuple[str, ...]:
    if not isinstance(node.value, list):
        raise node.error("expected a list of regular expressions", "e.g. ['Action: Deny']")
    patterns = []
    for item in node.elements():
        text = string_of(item, "a regular expression")
        names = _derived_names(item, uses)
        try:
            # Checked as it will run: a derived value goes in escaped, like this stand-in.
            re.compile(substitute(text, {name: re.escape(stand_in(name)) for name in names}))
        except re.error as error:
            raise item.error(
                f"{text!r} is not a valid regular expression: {error}",
                "escape special characters with \\",
            ) from None
        patterns.append(text)
    return tuple(patterns)


def _expect(node: Node | None, uses: list[DerivedUse]) -> Expect:
    if node is None:
        return Expect()
    found = fields_of(node, YAML, _EXPECT, what="expect")
    outcome = (
        _choice(found["outcome"], ("success", "failure"), "outcome")
        if "outcome" in found
        else "success"
    )
    learned = None
    if "learned" in found:
        learned_found = fields_of(found["learned"], YAML, _LEARNED, what="expect.learned")
        count = None
        if "count" in learned_found:
            value = learned_found["count"].value
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise learned_found["count"].error(
                    f"count must be a whole number >= 0, not {value!r}", "e.g. count: 2"
                )
            count = value
        verified = None
        if "verified" in learned_found:
            if not isinstance(learned_found["verified"].value, bool):
                raise learned_found["verified"].error(
                    "verified must be true or false", "e.g. verified: true"
                )
            verified = learned_found["verified"].value
        learned = LearnedExpectation(count, verified)
    return Expect(
        outcome=outcome,  # type: ignore[arg-type]
        denied=_destinations(found["denied"], uses) if "denied" in found else (),
        allowed=_destinations(found["allowed"], uses) if "allowed" in found else (),
        log_contains=_patterns(found["log_contains"], uses) if "log_contains" in found else (),
        output_contains=(
            _patterns(found["output_contains"], uses) if "output_contains" in found else ()
        ),
        learned=learned,
        locations=tuple((key, child.location) for key, child in found.items()),
    )


# --- expectations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """What a run showed, as expectations see it."""

    exit_code: int | None
    timed_out: bool
    destinations: tuple[tuple[str, int, str], ...]  # (host, port, would-be action) per row
    azure_lines: tuple[str, ...]
    output: str
    # Whose exit status is the outcome: the workload's, or the client's when the scenario has one.
    outcome_of: str = "workload"  # "workload", "client" or "step NAME"

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True)
class Failure:
    """One expectation that did not hold, with where it was written."""

    key: str
    message: str
    location: Location | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}expect.{self.key}: {self.message}"


def _destination_matches(wanted: str, host: str, port: int) -> bool:
    name, _, wanted_port = wanted.rpartition(":") if ":" in wanted else (wanted, "", "")
    if not name:
        name = wanted
    return name.rstrip(".").lower() == host and (not wanted_port or str(port) == wanted_port)


def check_expectations(expect: Expect, observed: Observed) -> list[Failure]:
    """Every expectation that did not hold; an empty list when the run is as expected."""
    failures: list[Failure] = []

    def fail(key: str, message: str) -> None:
        failures.append(Failure(key, message, expect.location_of(key)))

    outcome = "success" if observed.succeeded else "failure"
    if outcome != expect.outcome:
        how = "timed out" if observed.timed_out else f"exited with {observed.exit_code}"
        fail("outcome", f"expected {expect.outcome}, but the {observed.outcome_of} {how}")
    for key, wanted_action, wanted in (
        ("denied", "Deny", expect.denied),
        ("allowed", "Allow", expect.allowed),
    ):
        for destination in wanted:
            seen = [
                action
                for host, port, action in observed.destinations
                if _destination_matches(destination, host, port)
            ]
            if not seen:
                fail(key, f"{destination} was never contacted")
            elif wanted_action not in "+".join(seen).split("+"):
                fail(key, f"{destination} was {'+'.join(sorted(set(seen)))}, not {wanted_action}")
    for key, patterns, text in (
        ("log_contains", expect.log_contains, "\n".join(observed.azure_lines)),
        ("output_contains", expect.output_contains, observed.output),
    ):
        for pattern in patterns:
            if not re.search(pattern, text, re.MULTILINE):
                fail(key, f"no line matches {pattern!r}")
    return failures


def check_learned(
    expect: Expect, learned_hosts: tuple[str, ...], verified: bool
) -> list[Failure]:
    """What `egress learn` found against the scenario's `expect.learned` block: the number of
    required destinations and whether the verify run succeeded. Empty without the block."""
    wanted = expect.learned
    if wanted is None:
        return []
    location = expect.location_of("learned")
    failures: list[Failure] = []
    if wanted.count is not None and len(learned_hosts) != wanted.count:
        found = ", ".join(learned_hosts) or "none"
        failures.append(Failure("learned.count", f"expected {wanted.count} destination(s), "
                                f"learned {len(learned_hosts)} ({found})", location))  # fmt: skip
    if wanted.verified is not None and verified != wanted.verified:
        run = "succeeded" if verified else "failed"
        failures.append(Failure("learned.verified",
                                f"expected {wanted.verified}, the verify run {run}", location))  # fmt: skip
    return failures


def _is_terraform(path: Path) -> bool:
    return path.name.lower().endswith((".tf", ".tf.json"))


def _terraform_policy(path: Path) -> Policy:
    from harness.policy.terraform import load_terraform

    return load_terraform(path)
