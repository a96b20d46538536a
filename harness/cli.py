"""The `egress` command: composition root 1. Parses arguments, calls the library, prints
results as tables, and turns harness errors into a message and an exit code at one place
(`main`): 0 success, 1 the scenario's expectations failed (learn: the allowlist did not
verify; diff: rules are missing), 2 bad input or environment, 70 an internal error (a bug: one
line on stderr, the traceback saved to the file it names), 130/143 interrupted.
"""

from __future__ import annotations

__all__ = ["cli", "console_main", "main"]

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

import click
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from harness.errors import EnvironmentProblem, ExpectationFailed, HarnessError, InputError
from harness.firewall_settings import HTTPS_DENY_STYLES, MODES
from harness.interrupt import Terminated, unwind_on_sigterm

if TYPE_CHECKING:
    from harness.runtime import Runtime

# Piped output (CI logs) has no width; rich would assume 80 columns and fold every table row
# with a long host name. COLUMNS still wins when set.
PIPED_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
stdout = Console(highlight=False, soft_wrap=True, width=PIPED_WIDTH, emoji=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, width=PIPED_WIDTH, emoji=False)

PROTOCOL_CHOICES = ("https", "http", "tcp", "udp")
DEFAULT_PORTS = {"https": 443, "http": 80}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="egress-harness", prog_name="egress")
def cli() -> None:
    """Simulate Azure Firewall's default-deny egress on this machine and learn what a build
    needs from the network."""


def main(argv: list[str] | None = None, runtime: Runtime | None = None) -> int:
    """Run the CLI; the only place that maps errors to messages and exit codes. Scenarios run
    on `runtime` (default: Docker, `harness.runtime.docker_runtime`; tests pass a
    `harness.testing.FakeRuntime`)."""
    try:
        cli.main(args=argv, prog_name="egress", standalone_mode=False, obj=runtime)
    except HarnessError as error:
        stderr.print(f"egress: {error}", markup=False)
        return error.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        error.show()
        return 2
    except click.exceptions.Abort as abort:  # click's wrapping of a KeyboardInterrupt
        return _interrupted(abort.__cause__)
    except KeyboardInterrupt as interrupt:
        return _interrupted(interrupt)
    except Exception as error:  # noqa: BLE001 -- a bug of ours, never "expectations failed"
        return _internal_error(error)
    return 0


INTERNAL_ERROR = 70  # EX_SOFTWARE of sysexits.h: distinct from 1 (expectations) and 2 (input)


def _internal_error(error: Exception) -> int:
    """One line on stderr, the traceback in a file the line names, exit 70."""
    import tempfile
    import traceback
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    details = Path(tempfile.gettempdir()) / f"egress-internal-error-{stamp}-{os.getpid()}.txt"
    summary = " ".join(f"{type(error).__name__}: {error}".split())[:200]
    try:
        details.write_text(
            f"egress {' '.join(sys.argv[1:])}\n\n" + "".join(traceback.format_exception(error)),
            encoding="utf-8",
        )
        where = str(details)
    except OSError:
        where = "(could not be saved)"
    stderr.print(f"egress: internal error: {summary}; details in {where}", markup=False)
    return INTERNAL_ERROR


def _interrupted(cause: BaseException | None) -> int:
    """Ctrl-C or SIGTERM; the sandbox has removed the run's containers on the way out."""
    if isinstance(cause, Terminated):
        stderr.print("egress: terminated (SIGTERM)", markup=False)
        return 143
    stderr.print("egress: interrupted", markup=False)
    return 130


# --- policy sources ------------------------------------------------------------------------


def policy_source_options(command):  # type: ignore[no-untyped-def]
    """The flags every command that takes a policy accepts, gathered into one
    `policy_options: PolicyOptions` argument (harness.policy.source)."""
    import functools

    options = [
        click.option("-p", "--parameters", "parameters", multiple=True,
                     metavar="FILE|@FILE|KEY=VALUE",
                     help="ARM template parameter values as az deployment takes them: a"
                          " parameters file, @file, inline JSON or NAME=VALUE; repeatable, later ones win"),
        click.option("--resource-group", metavar="NAME",
                     help="what resourceGroup().name answers [default: egress-harness-rg]"),
        click.option("--location", metavar="REGION",
                     help="what resourceGroup().location answers [default: westeurope]"),
        click.option("--subscription", metavar="ID",
                     help="what subscription().subscriptionId answers"
                          " [default: 00000000-0000-0000-0000-000000000000]"),
        click.option("--fqdn-tags", "fqdn_tags_file", metavar="FILE",
                     type=click.Path(dir_okay=False),
                     help="YAML/JSON mapping of FQDN tag to FQDNs (Microsoft's own tags are"
                          " unpublished; without this they match nothing)"),
        click.option("--service-tags", "service_tags_file", metavar="FILE",
                     type=click.Path(dir_okay=False),
                     help="Microsoft's Service Tags JSON (ServiceTags_Public_<date>.json), so"
                          " AzureCloud, Storage.WestEurope, ... match as in Azure"),
        click.option("--var-file", "var_files", multiple=True, metavar="FILE",
                     type=click.Path(dir_okay=False),
                     help="Terraform policy: a .tfvars or .tfvars.json file; repeatable, later wins"),
        click.option("--var", "tf_vars", multiple=True, metavar="NAME=VALUE",
                     help="Terraform policy: set a variable (as terraform -var); repeatable,"
                          " later wins"),
    ]  # fmt: skip

    @functools.wraps(command)
    def run(*args, **kwargs):  # type: ignore[no-untyped-def]
        from harness.policy.source import PolicyOptions

        kwargs["policy_options"] = PolicyOptions(
            parameters=tuple(kwargs.pop("parameters")),
            resource_group=kwargs.pop("resource_group"),
            location=kwargs.pop("location"),
            subscription=kwargs.pop("subscription"),
            fqdn_tags_file=kwargs.pop("fqdn_tags_file"),
            service_tags_file=kwargs.pop("service_tags_file"),
            var_files=tuple(kwargs.pop("var_files")),
            var_assignments=tuple(kwargs.pop("tf_vars")),
        )
        return command(*args, **kwargs)

    for option in reversed(options):
        run = option(run)
    return run


def _warn_about(policy) -> None:  # type: ignore[no-untyped-def]
    """What loading the policy noticed (managed FQDN tags, service tags, DNAT collections,
    which are inbound and not simulated), once each."""
    for warning in policy.warnings:
        _warn_line(warning)


def _warn_line(warning: str) -> None:
    stderr.print(f"egress: warning: {warning}", markup=False)


# --- check -------------------------------------------------------------------------------


def parse_destination(text: str, protocol: str) -> tuple[str | None, str | None, int]:
    """`host`, `host:port`, `ip:port` or `[v6]:port` -> (host, ip, port)."""
    import ipaddress

    value = text.strip()
    port: int | None = None
    if value.startswith("["):
        address, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text)
        value = address
    elif value.count(":") == 1:
        value, raw_port = value.split(":")
        port = _port(raw_port, text)
    if port is None:
        if protocol not in DEFAULT_PORTS:
            raise InputError(
                f"destination {text!r} has no port",
                fix=f"write it as host:port for --protocol {protocol}",
            )
        port = DEFAULT_PORTS[protocol]
    try:
        return None, str(ipaddress.ip_address(value)), port
    except ValueError:
        pass
    from harness.policy.fqdn import exact_name_problem

    problem = exact_name_problem(value)
    if problem:
        raise InputError(f"destination {text!r}: {problem}", fix="give a host name or an IP")
    return value, None, port


def _port(raw: str, text: str) -> int:
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise InputError(f"destination {text!r} has a bad port {raw!r}", fix="use 0..65535")
    return int(raw)


def parse_source(text: str) -> tuple[str, int]:
    import ipaddress

    address, _, raw_port = text.rpartition(":")
    try:
        ipaddress.ip_address(address.strip("[]"))
        port = int(raw_port)
    except ValueError:
        raise InputError(f"--src {text!r} is not IP:PORT", fix="e.g. --src 10.0.2.4:50000")
    return address.strip("[]"), port


@cli.command()
@click.argument("policy_file", metavar="POLICY", type=click.Path())
@click.argument("destinations", metavar="DESTINATION...", nargs=-1, required=True)
@click.option("--protocol", type=click.Choice(PROTOCOL_CHOICES), default="https", show_default=True)
@click.option("--src", "source", default="10.0.2.4:50000", show_default=True, help="IP:PORT")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per destination and line")
@policy_source_options
def check(
    policy_file: str, destinations: tuple[str, ...], protocol: str, source: str, as_json: bool,
    policy_options,
) -> None:  # fmt: skip
    """The firewall's decision for each DESTINATION (host, host:port or ip:port) without
    running anything."""
    from harness.events import event_for_decision
    from harness.policy.decide import Decider
    from harness.policy.load import load_policy
    from harness.policy.model import Request

    policy = load_policy(policy_file, policy_options)
    _warn_about(policy)
    decider = Decider(policy)
    src_ip, src_port = parse_source(source)
    table = _table("destination", "protocol", "action", "rule or reason")
    azure_lines = []
    for destination in destinations:
        host, ip, port = parse_destination(destination, protocol)
        request = Request(
            protocol=protocol.upper(), src_ip=src_ip, src_port=src_port,
            dst_port=port, dst_ip=ip, host=host,
        )  # fmt: skip
        decision = decider.decide(request)
        event = event_for_decision(request, decision, policy_name=policy.name)
        if as_json:
            print(json.dumps({
                "destination": destination,
                "protocol": protocol.upper(),
                "action": decision.action,
                "rule": decision.rule.as_dict() if decision.rule else None,
                "reason": decision.reason,
                "azure": event.azure,
            }))  # fmt: skip
            continue
        rule = decision.rule
        table.add_row(
            destination, protocol.upper(), _action(decision.action),
            f"{rule.group} / {rule.collection} / {rule.rule}" if rule else decision.reason,
        )  # fmt: skip
        azure_lines.append(event.azure)
    if not as_json:
        stdout.print(f"Policy: {policy.name} ({policy_file})")
        stdout.print(table)
        stdout.print("\nAzure Firewall would log:")
        for line in azure_lines:
            print(f"  {line}")


# --- logs --------------------------------------------------------------------------------


@cli.command()
@click.argument("recording", type=click.Path(exists=True))
@click.option(
    "--format", "fmt", type=click.Choice(["azure", "azfw-json", "table"]), default="azure",
    show_default=True,
)  # fmt: skip
def logs(recording: str, fmt: str) -> None:
    """A recording's log lines: Azure's legacy msg lines, the AZFW* tables as JSON, or a table."""
    from harness.events import azfw_record

    events = _read_run(recording).events
    if fmt == "azure":
        for event in events:
            if event.azure:
                print(event.azure)
    elif fmt == "azfw-json":
        for event in events:
            record = azfw_record(event)
            if record is not None:
                print(json.dumps(record))
    else:
        table = _table("time", "kind", "source", "destination", "action", "rule / reason")
        for event in events:
            if event.kind == "lifecycle":
                continue
            rule = event.rule
            table.add_row(
                event.ts, event.kind, event.src or "",
                _destination_text(event),
                _action(event.action) + (f" (upstream {event.upstream})" if event.upstream else "")
                if event.action else "",
                f"{rule['collection']} / {rule['rule']}" if rule else (event.reason or ""),
            )  # fmt: skip
        stdout.print(table)


def _destination_text(event) -> str:
    """`host:port` of an application event, the recorded `ip:port` of a network one."""
    if event.host:
        return f"{event.host}:{event.port}" if event.port is not None else event.host
    return event.dst or ""


def _read_run(recording: str, *, require_events: bool = True):
    """A recording read leniently, with one warning on stderr when parts were damaged."""
    from harness.runfolder import read_run

    run = read_run(recording, require_events=require_events)
    warning = run.warning()
    if warning:
        stderr.print(f"egress: {warning}", markup=False)
    return run


# --- run ---------------------------------------------------------------------------------

DEFAULT_SCENARIO = "scenarios/python-requirements.scenario.yaml"
ALLOW_OUTSIDE_HELP = (
    "let the scenario name files outside its own folder tree (workdir, trust, policy): only for"
    " a scenario you trust"
)


def app_options(command):
    """--target, --platform, --platform-version, --site, --pull: an APP_DIR's chain, and pulls."""
    for option in reversed([
        click.option("--target", type=click.Choice(["webapp", "functions"]), default="webapp",
                     show_default=True, help="APP_DIR: the App Service kind deployed"),
        click.option("--platform", type=click.Choice(["python", "nodejs", "dotnet"]),
                     help="APP_DIR: the platform, instead of detecting it as Oryx does"),
        click.option("--platform-version", help="APP_DIR: the version, instead of detecting it"),
        click.option("--site", help="APP_DIR: the site's name; its exact SCM host is learned "
                     "instead of Microsoft's *.scm.azurewebsites.net"),
        click.option("--pull", type=click.Choice(["missing", "always", "never"]),
                     help="when to pull the images a run names from their registries "
                     "(default: each one's `pull:`, else missing); egress/* are never pulled"),
    ]):  # fmt: skip
        command = option(command)
    return command


def _scenario_or_app(path: str, app: dict, command: str, *, allow_outside_paths: bool = False):
    """A scenario file, or an app folder as its App Service chain (with a line saying how)."""
    from harness.execute import with_pull
    from harness.scenario import load_scenario

    pull = app.get("pull")
    if not Path(path).is_dir():
        scenario = load_scenario(path, allow_outside_paths=allow_outside_paths)
        return (with_pull(scenario, pull) if pull else scenario), None
    from harness.appservice.app import app_scenario

    chain = app_scenario(path, platform=app.get("platform"), version=app.get("platform_version"),
                         target=app.get("target") or "webapp", site=app.get("site"),
                         pull=pull or "missing", command=command)  # fmt: skip
    stdout.print(f"App {path}: {chain.detected.describe()}; target {app.get('target')}",
                 markup=False)  # fmt: skip
    stdout.print(f"Oryx step: {chain.oryx_path}", markup=False)
    stdout.print(f"Chain: {' -> '.join(step.name for step in chain.scenario.steps)}", markup=False)
    return chain.scenario, chain


@cli.command("run")
@click.argument("scenario_file", metavar="SCENARIO|APP_DIR", default=DEFAULT_SCENARIO,
                type=click.Path())  # fmt: skip
@click.option("--policy", "policy_file", type=click.Path(),
              help="run behind this policy (a file, or a Terraform folder) instead of the scenario's")  # fmt: skip
@click.option("--allow", "allow", multiple=True, metavar="HOST",
              help="also allow HOST (Http:80, Https:443); repeatable; wildcards as Azure reads them")  # fmt: skip
@click.option(
    "--mode",
    type=click.Choice(MODES),
    help="audit: allow all, record what enforce would do",
)
@click.option("--https-deny", type=click.Choice(HTTPS_DENY_STYLES),
              help="how a denied HTTPS connection ends (close is Azure's)")  # fmt: skip
@policy_source_options
@app_options
@click.option("--allow-outside-paths", is_flag=True, help=ALLOW_OUTSIDE_HELP)
def run_command(
    scenario_file: str, policy_file: str | None, allow: tuple[str, ...], mode: str | None,
    https_deny: str | None, policy_options, allow_outside_paths: bool, **app: str | None,
) -> None:  # fmt: skip
    """Run SCENARIO once behind the firewall: the outcome, a table of destinations and where the
    recording is. APP_DIR (a folder): its App Service chain (Kudu's deploy, Oryx, the build)
    behind the rules App Service needs. Exit 1 when the scenario's expectations fail."""
    from harness.execute import RunOverrides, execute
    from harness.policy.load import load_policy
    from harness.policy.shorthand import merge_allow

    scenario, _ = _scenario_or_app(scenario_file, app, f"egress run {scenario_file}",
                                   allow_outside_paths=allow_outside_paths)
    if policy_file:
        policy = load_policy(policy_file, policy_options)
        _warn_about(policy)
    else:
        policy = scenario.firewall.policy
    if allow:
        policy = merge_allow(policy, allow)
    overrides = RunOverrides(policy=policy, mode=mode, https_deny=https_deny)
    sandbox = _sandbox_run([scenario])
    with LiveProgress(f"running {scenario.name}") as progress:
        execution = execute(scenario, sandbox, overrides, on_output=progress.output,
                            on_event=progress.event)  # fmt: skip
    _print_execution(execution)
    if execution.failures:
        raise ExpectationFailed(
            f"{len(execution.failures)} expectation(s) of {scenario.path} failed"
        )


def _sandbox_run(scenarios) -> Runtime:
    """The runtime `main` was given (default: Docker), prepared for these scenarios."""
    from harness.runtime import docker_runtime

    context = click.get_current_context(silent=True)
    runtime = (context.obj if context is not None else None) or docker_runtime()

    # Images are cached by content hash: silent when current, a progress line per step when not.
    def progress(line: str) -> None:
        if "up to date" not in line and "images ready" not in line:
            stderr.print(f"[dim]images:[/dim] {line}", markup=True)

    runtime.prepare(scenarios, progress)  # only what these scenarios run
    return runtime


class LiveProgress:
    """What a run is doing while it runs: on a terminal a status line (elapsed time, current
    step, destinations so far) under the workload's output; elsewhere (CI logs) plain lines.
    Each new destination is announced once, as the firewall decides it."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.started = time.monotonic()
        self.seen: set[tuple[str, int | None, str | None]] = set()
        self._status = None

    def __enter__(self) -> Self:
        if stdout.is_terminal:
            self._status = stdout.status(self._text())
            self._status.__enter__()
        else:
            print(f"» {self.step}", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def _text(self) -> str:
        elapsed = time.monotonic() - self.started
        return f"{self.step} · {elapsed:5.1f} s · {len(self.seen)} destination(s)"

    def set_step(self, step: str) -> None:
        self.step = step
        if self._status is not None:
            self._status.update(self._text())
        else:
            print(f"» {step}", flush=True)

    def output(self, line: str) -> None:
        stdout.print(f"│ {line}", markup=False, highlight=False)
        if self._status is not None:
            self._status.update(self._text())

    def event(self, event) -> None:
        if event.kind not in ("tls", "http", "tcp", "udp"):
            return
        key = (event.host or event.dst, event.port, event.would)
        if key in self.seen:
            return
        self.seen.add(key)
        colour = "green" if event.would == "Allow" else "red"
        if event.would == "Deny" and event.action == "Allow":
            colour = "dark_orange"
        name = event.host or (event.dst or "?").rsplit(":", 1)[0]
        stdout.print(f"[{colour}]→ {name}:{event.port} {event.protocol} {progress_verdict(event)}"
                     f"[/{colour}]")  # fmt: skip
        if self._status is not None:
            self._status.update(self._text())


def progress_verdict(event) -> str:
    """What a progress line says of a decision: an audit run lets everything through, so a
    destination enforce mode denies "would be denied", never "Deny"; an allowed one this machine
    cannot reach says so."""
    said = "would be denied" if event.action == "Allow" and event.would == "Deny" else (
        event.would or event.action or "?")  # fmt: skip
    if event.upstream == "unreachable":
        said += " (unreachable from this machine)"
    return said


def _print_execution(execution) -> None:
    """The blocks harness.render says of a run (the plugin prints the same ones as plain text),
    in colour; the workload's output was streamed as it ran, so its tail is not repeated."""
    from harness.render import execution_blocks
    from harness.steps import read_steps

    steps = read_steps(execution.run_dir)
    _print_blocks(execution_blocks(execution, steps=steps, output_shown=True))


def _print_blocks(blocks) -> None:
    for index, block in enumerate(blocks):
        indent = "  " if block.title else ""
        if index:
            stdout.print()
        if block.title:
            stdout.print(f"[bold]{escape(block.title)}:[/bold]")
        if block.table is not None:
            table = _table(*block.table.columns)
            for row in block.table.rows:
                table.add_row(*(_markup(cell) for cell in row))
            stdout.print(Padding(table, (0, 0, 0, len(indent)), expand=False))
        for line in block.lines:
            stdout.print(indent + _markup(line), highlight=False)


TONES = {"good": "green", "bad": "red", "warn": "dark_orange", "strong": "bold"}


def _markup(line) -> str:
    return "".join(f"[{TONES[span.tone]}]{escape(span.text)}[/{TONES[span.tone]}]" if span.tone
                   else escape(span.text) for span in line)  # fmt: skip


# --- learn, allowlist -------------------------------------------------------------------

WILDCARDS_HELP = (
    "propose *.domain where two or more hosts share a registrable domain (never under a shared"
    " suffix such as blob.core.windows.net or azureedge.net; the domain itself stays exact)"
)


@cli.command("learn")
@click.argument("scenario_files", metavar="[SCENARIO|APP_DIR]...", nargs=-1,
                type=click.Path())  # fmt: skip
@click.option("--classify", is_flag=True,
              help="re-run with each destination denied: required, optional or flaky")  # fmt: skip
@click.option("--wildcards", is_flag=True, help=WILDCARDS_HELP + "; the verify runs use them")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="write the allowlist policy here"
)
@click.option("--report", "with_report", is_flag=True,
              help="write an HTML report of the learn: its runs and each destination's evidence")  # fmt: skip
@app_options
@click.option("--allow-outside-paths", is_flag=True, help=ALLOW_OUTSIDE_HELP)
def learn_command(
    scenario_files: tuple[str, ...], classify: bool, wildcards: bool, output: str | None,
    with_report: bool, allow_outside_paths: bool, **app: str | None,
) -> None:  # fmt: skip
    """Learn the minimal allowlist SCENARIO needs: an audit run, then a verify run behind what it
    found (and with --classify, one run per destination denied). Several SCENARIOs: each is
    learned, the results are merged into one allowlist whose `# via` lines say which scenario
    needed each destination, and every scenario is run again behind it. Default SCENARIO:
    scenarios/python-requirements.scenario.yaml. APP_DIR (a folder): its App Service chain,
    whose rules say which step needed them (`# via step kudu-deploy`, `oryx-sdk`, `pip-install`,
    ...), with Microsoft's *.scm.azurewebsites.net for Kudu's call to itself unless --site is
    given. Exit 1 when it does not verify."""
    from harness.appservice.plan import scm_shape
    from harness.learn import default_parallel, learn_together, render_allowlist
    from harness.scenario import check_learned

    files = scenario_files or (DEFAULT_SCENARIO,)
    command = "egress learn " + " ".join([
        *files, *(["--classify"] if classify else []), *(["--wildcards"] if wildcards else []),
        *(["-o", output] if output else []),
        *(["--allow-outside-paths"] if allow_outside_paths else []),
        *[f"--{key.replace('_', '-')} {value}" for key, value in app.items()
          if value and not (key == "target" and value == "webapp")],
    ])  # fmt: skip
    # Every file and folder checked before any run.
    loaded = [_scenario_or_app(path, app, command, allow_outside_paths=allow_outside_paths)
              for path in files]  # fmt: skip
    scenarios = [scenario for scenario, _ in loaded]
    # An App Service chain (an app folder, or the file `egress init` wrote): Kudu's call to its
    # own SCM site is learned as Microsoft's rule, unless --site names the site.
    chains = any(chain for _, chain in loaded) or any(scenario.steps for scenario in scenarios)
    shape = scm_shape(bool(app.get("site"))) if chains else None
    sandbox = _sandbox_run(scenarios)
    with LiveProgress(f"learning {', '.join(s.name for s in scenarios)}") as progress:
        joint = learn_together(
            scenarios, sandbox, classify=classify, wildcards=wildcards,
            parallel=default_parallel(), on_step=progress.set_step, on_event=progress.event,
            shape=shape,
        )  # fmt: skip
    notes = _wildcard_notes(joint.listed)
    # Which Oryx path each app folder took, in the file too: a reader needs to know whether the
    # real Oryx ran or its requests were made without it.
    notes += [f"{chain.scenario.name}: Oryx step: {chain.oryx_path}" for _, chain in loaded if chain]
    unreachable = [candidate.host for candidate in joint.candidates if candidate.unreachable]
    if unreachable:
        notes.append("Unreachable from this machine, learned as needed but not verified: "
                     + ", ".join(unreachable))  # fmt: skip
    text = render_allowlist(joint.policy, joint.listed, command=command, scenario=joint.scenarios,
                            verified=joint.verified, notes=notes)  # fmt: skip
    _print_candidates(joint.candidates, several=len(scenarios) > 1)
    _print_lookups_only(joint)
    for note in notes:
        stdout.print(note, markup=False)
    verdict = "[green]verified[/green]" if joint.verified else "[red]NOT verified[/red]"
    behind = (
        f" behind the merged allowlist of {len(scenarios)} scenarios" if len(scenarios) > 1 else ""
    )
    stdout.print(f"Learned {len(joint.candidates)} destination(s) in {joint.runs} run(s);"
                 f" {verdict}{behind} (recordings: {joint.results[0].audit.run_dir.parent})")  # fmt: skip
    if output:
        _write(output, text)
        stdout.print(f"Allowlist written to {output}")
    else:
        stdout.print("\n[bold]Learned allowlist[/bold] (egress policy YAML):")
        print(text)
    _print_rule_collection(joint.policy)
    if with_report:
        from harness.reportfiles import write_learn_report

        for result in joint.results:
            if result.folder is not None:
                page, _ = write_learn_report(result.folder)
                stdout.print(f"Learn report: {page}", markup=False)
    # A scenario's own `expect.learned` block holds here as it does under pytest.
    unmet = [
        failure
        for result in joint.results
        for failure in check_learned(result.scenario.expect,
                                     tuple(c.host for c in result.candidates), result.verified)
    ]  # fmt: skip
    for failure in unmet:
        stdout.print(f"[red]✗[/red] {escape(str(failure))}")
    if not joint.verified:
        raise ExpectationFailed(
            f"the learned allowlist did not make the workload succeed: {joint.why_not_verified()}"
        )
    if unmet:
        raise ExpectationFailed(f"{len(unmet)} expect.learned expectation(s) failed")


@cli.command("init")
@click.argument("app_dir", metavar="APP_DIR", type=click.Path(file_okay=False, exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="the scenario file (default: scenarios/<app>-appservice.scenario.yaml)")  # fmt: skip
@click.option("--force", is_flag=True, help="overwrite an existing file")
@app_options
def init_command(app_dir: str, output: str | None, force: bool, **app: str | None) -> None:
    """Write APP_DIR's App Service chain as a commented scenario file that `pytest scenarios/`
    collects (and `egress run|learn FILE` runs): Kudu's deploy, Oryx's step, the build."""
    from harness.appservice.app import app_scenario
    from harness.appservice.detect import detect
    from harness.appservice.plan import scenario_name
    from harness.scenario import own_tree

    target = Path(output) if output else Path("scenarios") / f"{scenario_name(Path(app_dir))}.scenario.yaml"
    if target.exists() and not force:
        raise InputError(f"{target} exists", fix="give -o FILE, or --force to overwrite it")

    detect(app_dir, app.get("platform"), app.get("platform_version"))  # the app's own problems first
    tree = own_tree(target)
    if not Path(app_dir).resolve().is_relative_to(tree):
        # A scenario's paths stay inside its own tree (harness.scenario): one written here could
        # not name the app, and pytest would refuse it.
        raise InputError(
            f"{app_dir} is outside {tree}, the tree the scenario {target} may name paths in",
            fix=f"write the scenario inside the app's checkout: -o {Path(app_dir) / target.name}"
            " (or run egress init from that checkout)",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    command = "egress init " + " ".join([app_dir, *(["-o", output] if output else []), *[
        f"--{key.replace('_', '-')} {value}" for key, value in app.items()
        if value and not (key == "target" and value == "webapp")]])  # fmt: skip
    chain = app_scenario(app_dir, platform=app.get("platform"), version=app.get("platform_version"),
                         target=app.get("target") or "webapp", site=app.get("site"),
                         pull=app.get("pull") or "missing", scenario_dir=target.parent,
                         command=command)  # fmt: skip
    _write(str(target), chain.text)
    stdout.print(f"App {app_dir}: {chain.detected.describe()}", markup=False)
    stdout.print(f"Oryx step: {chain.oryx_path}", markup=False)
    stdout.print(f"Wrote {target}: steps {', '.join(s.name for s in chain.scenario.steps)};"
                 f" run it with `pytest {target}` or `egress learn {target}`", markup=False)  # fmt: skip


@cli.command("allowlist")
@click.argument("recordings", metavar="RECORDING...", nargs=-1, required=True,
                type=click.Path(exists=True))  # fmt: skip
@click.option("--wildcards", is_flag=True, help=WILDCARDS_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="write the policy here (and print a table) instead of to stdout")  # fmt: skip
def allowlist_command(recordings: tuple[str, ...], wildcards: bool, output: str | None) -> None:
    """One allowlist policy from recordings of audit runs (runs/<time>-<scenario>/, as `egress
    run SCENARIO --mode audit` or `egress learn` leave them): every destination any of them
    reached, one rule each, with a `# via` line per recording that reached it (scenario and run,
    from its summary.json). Nothing is run, so it is not verified: check it with `egress run
    SCENARIO --policy FILE`."""
    from harness.allowlist import (
        allowlist_name,
        learned_policy,
        merge_candidates,
        read_recording,
        render_allowlist,
        wildcard_candidates,
    )

    runs = [read_recording(path) for path in recordings]
    for run in runs:
        if run.warning:
            stderr.print(f"egress: {run.warning}", markup=False)
        if run.imported:
            stderr.print(f"egress: note: {run.folder} holds imported firewall logs: the rules"
                         " are for its denied destinations", markup=False)  # fmt: skip
        elif run.mode not in (None, "audit"):
            stderr.print(
                f"egress: note: {run.folder} was recorded in {run.mode} mode: a denied destination"
                " may have stopped the workload before it reached the rest; an audit run"
                " (egress run SCENARIO --mode audit) records everything",
                markup=False,
            )
    merged = merge_candidates((run.source, run.candidates) for run in runs)
    listed = wildcard_candidates(merged) if wildcards else merged
    names = list(dict.fromkeys(run.scenario or run.folder.name for run in runs))
    policy = learned_policy(allowlist_name(names), listed)
    command = "egress allowlist " + " ".join(
        [*recordings, *(["--wildcards"] if wildcards else []), *(["-o", output] if output else [])]
    )
    notes = [
        f"Recordings: {', '.join(run.folder.name for run in runs)}",
        "Check it: egress run SCENARIO --policy FILE",
        *_wildcard_notes(listed),
    ]
    text = render_allowlist(policy, listed, command=command, scenario=names, verified=None,
                            notes=notes)  # fmt: skip
    if not output:
        print(text, end="")
        return
    _write(output, text)
    _print_candidates(merged, several=len(runs) > 1)
    for note in _wildcard_notes(listed):
        stdout.print(note, markup=False)
    stdout.print(f"{len(merged)} destination(s) from {len(runs)} recording(s);"
                 f" allowlist written to {output}")  # fmt: skip


def _print_lookups_only(joint) -> None:
    from harness.diagnose import looked_up_only

    names = list(dict.fromkeys(
        name for result in joint.results for name in looked_up_only(result.audit.events)
    ))  # fmt: skip
    if names:
        stdout.print(f"Looked up but never connected to: {', '.join(names)}", markup=False)


def _wildcard_notes(listed) -> list[str]:
    return [
        (f"App Service: {candidate.host} (Microsoft's documented rule for Kudu's calls to its own"
         f" SCM site) stands for {', '.join(candidate.covers)}; --site NAME keeps the exact name")
        if candidate.host == "*.scm.azurewebsites.net" and all(
            host.endswith(".scm.azurewebsites.net") for host in candidate.covers)
        else f"--wildcards: {candidate.host} stands for {', '.join(candidate.covers)}"
        for candidate in listed
        if candidate.covers
    ]  # fmt: skip


def _print_candidates(found, *, several: bool) -> None:
    columns = ["destination", "protocols", "connections", "bytes", "classification"]
    by_step = any(source.startswith("step ") for c in found for source in c.sources)
    table = _table(*columns, *(["seen in"] if several else []), *(["step"] if by_step else []))
    for candidate in found:
        row = [
            candidate.host, ", ".join(candidate.protocol_texts()), str(candidate.connections),
            str(candidate.bytes_total),
            ", ".join(filter(None, [candidate.classification,
                                    "unreachable: not verified" if candidate.unreachable else ""])),
        ]  # fmt: skip
        if several:
            # "scenario NAME[, run FOLDER]" or "run FOLDER": the scenario's name, else the run.
            seen = [
                source.removeprefix("scenario ").split(", run ")[0] for source in candidate.sources
            ]
            row.append(", ".join(dict.fromkeys(seen)))
        if by_step:  # a chain's destinations: the step that reached each (harness.steps)
            row.append(", ".join(source.removeprefix("step ") for source in candidate.sources
                                 if source.startswith("step ")))  # fmt: skip
        table.add_row(*row)
    stdout.print(table)


def _print_rule_collection(policy) -> None:
    """The learned rules as Azure writes them (Bicep)."""
    from harness.export import export_policy

    stdout.print(
        "[bold]As an Azure Firewall rule collection group[/bold] (egress export --format bicep):"
    )
    print(export_policy(policy, "bicep"))


# --- export, import, diff -----------------------------------------------------------------

# harness.export.FORMATS, written out so that `egress --help` does not import the exporters.
EXPORT_FORMATS = ("yaml", "arm", "bicep", "terraform", "azcli", "classic-arm")


@cli.command("export")
@click.argument("source", metavar="POLICY|RECORDING", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), required=True,
              help="yaml (this tool's form), an ARM template, Bicep, Terraform (azurerm), az CLI"
                   " commands, or classic azureFirewalls rule collections")  # fmt: skip
@click.option("--source-addresses", "sources", multiple=True, metavar="CIDR",
              help="every rule's sources (the App Service integration subnet); repeatable or"
                   " comma-separated")  # fmt: skip
@click.option("--group", "group_name", metavar="NAME",
              help="put every collection into one rule collection group NAME")  # fmt: skip
@click.option("--priority", "group_priority", type=int, metavar="N",
              help="that one group's priority (100..65000)")  # fmt: skip
@click.option("--collection-priority", type=int, metavar="N",
              help="renumber each group's collections from N in steps of 100")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write here, not to stdout")
@policy_source_options
def export_command(
    source: str, fmt: str, sources: tuple[str, ...], group_name: str | None,
    group_priority: int | None, collection_priority: int | None, output: str | None,
    policy_options,
) -> None:  # fmt: skip
    """POLICY (any form `egress import` reads), or the effective policy of RECORDING (its
    policy.yaml), written as Azure's rules as code. FQDN tags the policy defines become target
    FQDNs; what the options changed is noted in the output's header."""
    from harness.export import export_policy, policy_of

    addresses = None
    if sources:
        addresses = tuple(
            part.strip() for text in sources for part in text.split(",") if part.strip()
        )
    policy = policy_of(source, policy_options)
    _warn_about(policy)
    text = export_policy(
        policy, fmt, source_addresses=addresses, group_name=group_name,
        group_priority=group_priority, collection_priority=collection_priority,
    )  # fmt: skip
    _emit(text, output, "Policy")


@cli.command("import")
@click.argument("file", metavar="FILE", type=click.Path(exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write here, not to stdout")
@policy_source_options
def import_command(file: str, output: str | None, policy_options) -> None:  # type: ignore[no-untyped-def]
    """FILE in this tool's YAML policy form: an ARM template (or Bicep compiled to JSON with `az
    bicep build`), `az network firewall policy rule-collection-group show|list` output, classic
    azureFirewalls rule collections, a Terraform configuration (.tf, .tf.json or a folder;
    --var-file/--var set its variables) or `terraform show -json` output."""
    from harness.export import import_to_yaml

    _emit(import_to_yaml(file, policy_options, on_warning=_warn_line), output, "Policy")


@cli.command("diff")
@click.argument("policy_file", metavar="POLICY", type=click.Path(exists=True))
@click.argument("recording", metavar="RECORDING", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="the report as one JSON object")
@policy_source_options
def diff_command(policy_file: str, recording: str, as_json: bool, policy_options) -> None:  # type: ignore[no-untyped-def]
    """How POLICY fits what RECORDING saw, every recorded connection decided again against
    POLICY: rules missing (with the smallest rule that allows each), rules unused, rules
    shadowed by an earlier one, application rules a network rule makes unreachable.

    Exit codes: 0 no rule is missing, 1 rules are missing, 2 bad input."""
    from harness.diff import diff_policy, render_diff
    from harness.export import policy_of

    policy = policy_of(policy_file, policy_options)
    _warn_about(policy)
    report = diff_policy(policy, _read_run(recording).events)
    if as_json:
        print(report.to_json())
    else:
        print(render_diff(report), end="")
    if report.exit_code:
        raise ExpectationFailed(
            f"{len(report.missing)} destination(s) in {recording} need rules {policy_file} lacks"
        )


def _write(output: str, text: str) -> None:
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot write {output}: {error.strerror}", key_path="-o",
                         fix="give a path in a folder that exists and is writable") from None  # fmt: skip


def _emit(text: str, output: str | None, what: str) -> None:
    if output:
        _write(output, text)
        stderr.print(f"{what} written to {output}", markup=False)
    else:
        print(text, end="" if text.endswith("\n") else "\n")


# --- images, doctor, gc -------------------------------------------------------------------


@cli.group()
def images() -> None:
    """The gateway and workload images."""


@images.command("build")
@click.option("--rebuild", is_flag=True, help="build again even when the images are current")
def images_build(rebuild: bool) -> None:
    """Build the Debian base (debootstrap), the gateway and the workload images."""
    from harness.sandbox import build_images

    build_images(lambda line: stdout.print(line, markup=False), rebuild=rebuild)


@cli.command()
def doctor() -> None:
    """What this machine lacks to run scenarios, and how to fix each."""
    from harness.sandbox import doctor as run_checks

    checks = run_checks()
    table = _table("check", "state", "detail", "fix")
    for check in checks:
        table.add_row(
            check.name, "[green]ok[/green]" if check.ok else "[red]missing[/red]",
            check.detail, "" if check.ok else check.fix,
        )  # fmt: skip
    stdout.print(table)
    if not all(check.ok for check in checks):
        raise EnvironmentProblem("some checks failed; see the fix column")


@cli.command()
def gc() -> None:
    """Remove every container and network the harness left behind."""
    from harness.sandbox import gc as sweep

    removed = sweep()
    stdout.print(f"Removed {removed} leftover resource(s).")


# --- report ------------------------------------------------------------------------------


@cli.command("report")
@click.argument("recording", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="where to write the page (default: RECORDING/report.html, or"
                   " FOLDER/index.html for a folder of recordings)")  # fmt: skip
def report_command(recording: str, output: str | None) -> None:
    """One self-contained HTML page: for a recording, its outcome, diagnosis and the rule to
    add (YAML, ARM, Bicep, Terraform, az CLI), a drawn timeline of its connections, DNS lookups
    and output, destinations and rule hits; for a learn's folder (runs/<time>-<scenario>-learn/)
    its runs and each destination's evidence; for a folder of recordings (runs/), an index of
    every recording, newest first, each with its own report."""
    from harness.reportfiles import is_learn, is_recording, write_index, write_learn_report

    folder = Path(recording)
    target = Path(output) if output else None
    if is_learn(folder):
        page, learn = write_learn_report(folder, target)
        stdout.print(f"Learn report: {page} ({len(learn.runs)} run(s))", markup=False)
    elif is_recording(folder):
        _report_run(folder, target)
    else:
        page, entries = write_index(folder, target)
        stdout.print(f"Index: {page} ({len(entries)} recording(s), newest first)", markup=False)


def _report_run(folder: Path, target: Path | None = None) -> None:
    from harness.pages import run_summary_line
    from harness.reportfiles import write_run_report

    page, view = write_run_report(folder, target)
    stdout.print(f"Report: {page}", markup=False)
    stdout.print(f"  {view.outcome} in {view.mode} mode; {run_summary_line(view)}", markup=False)


# --- import-logs ---------------------------------------------------------------------------


@cli.command("import-logs")
@click.argument("files", metavar="FILE...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False))  # fmt: skip
@click.option("-o", "--output", "folder", required=True, type=click.Path(file_okay=False),
              help="the recording folder to write (new, or empty)")  # fmt: skip
@click.option("--since", metavar="TIME", help="rows at or after TIME (UTC: 2026-11-28 or"
              " 2026-11-28T12:00:00Z)")  # fmt: skip
@click.option("--until", metavar="TIME", help="rows at or before TIME (UTC)")
@click.option("--source", metavar="CIDR", help="rows from this subnet only (the App Service"
              " integration subnet)")  # fmt: skip
@click.option("--action", type=click.Choice(["allow", "deny"], case_sensitive=False),
              help="only allowed or only denied rows")  # fmt: skip
def import_logs_command(
    files: tuple[str, ...], folder: str, since: str | None, until: str | None,
    source: str | None, action: str | None,
) -> None:  # fmt: skip
    """Azure Firewall log exports to a recording folder that logs, allowlist, diff, report and
    export read: the AZFW* resource-specific tables or AzureDiagnostics rows as the portal
    exports them (CSV, JSON), as `az monitor log-analytics query -o json` prints them or as the
    query API answers, or legacy log lines pasted one a line. The format is told per file.
    The folder's policy.yaml holds the rules production was missing (one per denied
    destination): `egress export DIR --format bicep` writes them as a rule collection group."""
    from harness.logimport import import_logs, parse_filters

    filters = parse_filters(since, until, source, action)
    live = sys.stderr.isatty()

    def progress(path: str, done: int, size: int, events: int, final: bool) -> None:
        percent = 100 * done // size if size else 100
        text = f"importing {path}: {percent}% of {size / 1e6:.1f} MB, {events} event(s)"
        if live:
            print(f"\r{text}\033[K", end="\n" if final else "", file=sys.stderr, flush=True)
        elif final:
            print(text, file=sys.stderr, flush=True)

    result = import_logs(files, folder, filters, progress)
    for warning in result.warnings:
        stderr.print(f"egress: warning: {warning}", markup=False)
    table = _table("file", "format", "rows", "imported", "filtered out", "skipped")
    for item in result.files:
        table.add_row(item.path, item.format, str(item.rows), str(item.imported),
                      str(item.filtered), str(item.skipped))  # fmt: skip
    stdout.print(table)
    span = f" from {result.first_seen} to {result.last_seen}" if result.first_seen else ""
    stdout.print(f"{result.events} event(s){span}; {result.denied_destinations} denied"
                 f" destination(s). Recording: {result.folder}", markup=False)  # fmt: skip
    if result.denied_destinations:
        stdout.print(f"The rules to add: egress allowlist {result.folder} --wildcards, or"
                     f" egress export {result.folder} --format bicep", markup=False)  # fmt: skip


# --- shared output ------------------------------------------------------------------------


def _table(*columns: str) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _action(action: str) -> str:
    colour = "green" if action == "Allow" else "red"
    return f"[{colour}]{action}[/{colour}]"


def console_main() -> None:
    """Console-script entry point."""
    unwind_on_sigterm()
    sys.exit(main())


if __name__ == "__main__":
    console_main()
