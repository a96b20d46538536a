"""The `egress` command: composition root 1. Parses arguments, calls the library, prints
results as tables, and turns harness errors into a message and an exit code at one place
(`main`): 0 success, 1 the scenario's expectations failed (learn: the allowlist did not
verify; diff: rules are missing), 2 bad input or environment.
"""

from __future__ import annotations

__all__ = ["cli", "console_main", "main"]

import json
import os
import sys
import time
from pathlib import Path
from typing import Self

import click
from rich.console import Console
from rich.table import Table

from harness.errors import EnvironmentProblem, ExpectationFailed, HarnessError, InputError
from harness.interrupt import Terminated, unwind_on_sigterm

# Piped output (CI logs) has no width; rich would assume 80 columns and fold every table row
# with a long host name. COLUMNS still wins when set.
PIPED_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
stdout = Console(highlight=False, soft_wrap=True, width=PIPED_WIDTH)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, width=PIPED_WIDTH)

PROTOCOL_CHOICES = ("https", "http", "tcp", "udp")
DEFAULT_PORTS = {"https": 443, "http": 80}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="egress-harness", prog_name="egress")
def cli() -> None:
    """Simulate Azure Firewall's default-deny egress on this machine and learn what a build
    needs from the network."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; the only place that maps errors to messages and exit codes."""
    try:
        cli.main(args=argv, prog_name="egress", standalone_mode=False)
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
    return 0


def _interrupted(cause: BaseException | None) -> int:
    """Ctrl-C or SIGTERM; the sandbox has removed the run's containers on the way out."""
    if isinstance(cause, Terminated):
        stderr.print("egress: terminated (SIGTERM)", markup=False)
        return 143
    stderr.print("egress: interrupted", markup=False)
    return 130


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
@click.argument("policy_file", metavar="POLICY", type=click.Path(dir_okay=False))
@click.argument("destinations", metavar="DESTINATION...", nargs=-1, required=True)
@click.option("--protocol", type=click.Choice(PROTOCOL_CHOICES), default="https", show_default=True)
@click.option("--src", "source", default="10.0.2.4:50000", show_default=True, help="IP:PORT")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per destination and line")
def check(
    policy_file: str, destinations: tuple[str, ...], protocol: str, source: str, as_json: bool
) -> None:
    """The firewall's decision for each DESTINATION (host, host:port or ip:port) without
    running anything."""
    from harness.events import event_for_decision
    from harness.policy.decide import Decider
    from harness.policy.load import load_policy
    from harness.policy.model import Request

    policy = load_policy(policy_file)
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
    from harness.recording import read_events

    events = read_events(Path(recording))
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
                f"{event.host or event.dst}:{event.port}" if event.port else (event.host or ""),
                _action(event.action) if event.action else "",
                f"{rule['collection']} / {rule['rule']}" if rule else (event.reason or ""),
            )  # fmt: skip
        stdout.print(table)


# --- run ---------------------------------------------------------------------------------

DEFAULT_SCENARIO = "scenarios/python-requirements.scenario.yaml"


@cli.command("run")
@click.argument("scenario_file", metavar="SCENARIO", default=DEFAULT_SCENARIO,
                type=click.Path(dir_okay=False))  # fmt: skip
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False),
              help="run behind this policy instead of the scenario's")  # fmt: skip
@click.option("--allow", "allow", multiple=True, metavar="HOST",
              help="also allow HOST (Http:80, Https:443); repeatable; wildcards as Azure reads them")  # fmt: skip
@click.option(
    "--mode",
    type=click.Choice(["enforce", "audit"]),
    help="audit: allow all, record what enforce would do",
)
@click.option("--https-deny", type=click.Choice(["close", "alert", "drop"]),
              help="how a denied HTTPS connection ends (close is Azure's)")  # fmt: skip
def run_command(
    scenario_file: str, policy_file: str | None, allow: tuple[str, ...], mode: str | None,
    https_deny: str | None,
) -> None:  # fmt: skip
    """Run SCENARIO once behind the firewall: the outcome, a table of destinations and where the
    recording is. Exit 1 when the scenario's expectations fail."""
    from harness.execute import RunOverrides, execute
    from harness.policy.load import load_policy, merge_allow
    from harness.scenario import load_scenario

    scenario = load_scenario(scenario_file)
    policy = load_policy(policy_file) if policy_file else scenario.firewall.policy
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


def _sandbox_run(scenarios):
    from harness.sandbox import build_images, run
    from harness.sandbox.images import images_for_scenarios

    # Cached by content hash: silent when the images are current, a progress line per step when not.
    def progress(line: str) -> None:
        if "up to date" not in line and "images ready" not in line:
            stderr.print(f"[dim]images:[/dim] {line}", markup=True)

    build_images(progress, only=images_for_scenarios(scenarios))  # only what these scenarios run
    return run


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
        name = event.host or (event.dst or "?").rsplit(":", 1)[0]
        stdout.print(f"[{colour}]→ {name}:{event.port} {event.protocol} {event.would}[/{colour}]")
        if self._status is not None:
            self._status.update(self._text())


def _print_execution(execution) -> None:
    scenario = execution.scenario
    outcome = "[green]success[/green]" if execution.succeeded else "[red]failure[/red]"
    how = "timed out" if execution.timed_out else f"exit code {execution.exit_code}"
    stdout.print(
        f"\nScenario [bold]{scenario.name}[/bold]: {outcome} ({how}, {execution.duration_s:.1f} s)"
        f" behind policy {execution.policy.name} in {execution.mode} mode"
    )
    table = _table("host", "port", "protocol", "action", "rule", "connections", "bytes up/down")
    for row in execution.destinations:
        action = _action(row.action) + (f" (would {row.would})" if row.would != row.action else "")
        table.add_row(
            row.host, str(row.port), row.protocol, action, row.rule or "(default)",
            str(row.connections), f"{row.bytes_up}/{row.bytes_down}",
        )  # fmt: skip
    if execution.destinations:
        stdout.print(table)
    else:
        stdout.print("No connection left the workload.")
    if execution.diagnosis is not None:
        stdout.print("\n[bold]Diagnosis[/bold]")
        print(execution.diagnosis.render())
    for failure in execution.failures:
        stdout.print(f"[red]✗[/red] {failure}", markup=True)
    stdout.print(f"Recording: {execution.run_dir}")


# --- learn, allowlist -------------------------------------------------------------------

WILDCARDS_HELP = (
    "propose *.domain where two or more hosts share a registrable domain (never under a shared"
    " suffix such as blob.core.windows.net or azureedge.net; the domain itself stays exact)"
)


@cli.command("learn")
@click.argument("scenario_files", metavar="[SCENARIO]...", nargs=-1,
                type=click.Path(dir_okay=False))  # fmt: skip
@click.option("--classify", is_flag=True,
              help="re-run with each destination denied: required, optional or flaky")  # fmt: skip
@click.option("--wildcards", is_flag=True, help=WILDCARDS_HELP + "; the verify runs use them")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="write the allowlist policy here"
)
def learn_command(
    scenario_files: tuple[str, ...], classify: bool, wildcards: bool, output: str | None
) -> None:
    """Learn the minimal allowlist SCENARIO needs: an audit run, then a verify run behind what it
    found (and with --classify, one run per destination denied). Several SCENARIOs: each is
    learned, the results are merged into one allowlist whose `# via` lines say which scenario
    needed each destination, and every scenario is run again behind it. Default SCENARIO:
    scenarios/python-requirements.scenario.yaml. Exit 1 when it does not verify."""
    from harness.learn import default_parallel, learn_together, render_allowlist
    from harness.scenario import load_scenario

    files = scenario_files or (DEFAULT_SCENARIO,)
    scenarios = [load_scenario(path) for path in files]  # every file checked before any run
    command = "egress learn " + " ".join([
        *files, *(["--classify"] if classify else []), *(["--wildcards"] if wildcards else []),
        *(["-o", output] if output else []),
    ])  # fmt: skip
    sandbox = _sandbox_run(scenarios)
    with LiveProgress(f"learning {', '.join(s.name for s in scenarios)}") as progress:
        joint = learn_together(
            scenarios, sandbox, classify=classify, wildcards=wildcards,
            parallel=default_parallel(), on_step=progress.set_step, on_event=progress.event,
        )  # fmt: skip
    notes = _wildcard_notes(joint.listed)
    text = render_allowlist(joint.policy, joint.listed, command=command, scenario=joint.scenarios,
                            verified=joint.verified, notes=notes)  # fmt: skip
    _print_candidates(joint.candidates, several=len(scenarios) > 1)
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
    if not joint.verified:
        raise ExpectationFailed("the learned allowlist did not make the workload succeed")


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
        if run.mode not in (None, "audit"):
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


def _wildcard_notes(listed) -> list[str]:
    return [
        f"--wildcards: {candidate.host} stands for {', '.join(candidate.covers)}"
        for candidate in listed
        if candidate.covers
    ]


def _print_candidates(found, *, several: bool) -> None:
    columns = ["destination", "protocols", "connections", "bytes", "classification"]
    table = _table(*columns, *(["seen in"] if several else []))
    for candidate in found:
        row = [
            candidate.host, ", ".join(candidate.protocol_texts()), str(candidate.connections),
            str(candidate.bytes_total), candidate.classification or "",
        ]  # fmt: skip
        if several:
            # "scenario NAME[, run FOLDER]" or "run FOLDER": the scenario's name, else the run.
            seen = [
                source.removeprefix("scenario ").split(", run ")[0] for source in candidate.sources
            ]
            row.append(", ".join(dict.fromkeys(seen)))
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
def export_command(
    source: str, fmt: str, sources: tuple[str, ...], group_name: str | None,
    group_priority: int | None, collection_priority: int | None, output: str | None,
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
    text = export_policy(
        policy_of(source), fmt, source_addresses=addresses, group_name=group_name,
        group_priority=group_priority, collection_priority=collection_priority,
    )  # fmt: skip
    _emit(text, output, "Policy")


@cli.command("import")
@click.argument("file", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write here, not to stdout")
def import_command(file: str, output: str | None) -> None:
    """FILE in this tool's YAML policy form: an ARM template (or Bicep compiled to JSON with `az
    bicep build`), `az network firewall policy rule-collection-group show|list` output, classic
    azureFirewalls rule collections, or a Terraform .tf file of
    azurerm_firewall_policy_rule_collection_group resources."""
    from harness.export import import_to_yaml

    _emit(import_to_yaml(file), output, "Policy")


@cli.command("diff")
@click.argument("policy_file", metavar="POLICY", type=click.Path(exists=True))
@click.argument("recording", metavar="RECORDING", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="the report as one JSON object")
def diff_command(policy_file: str, recording: str, as_json: bool) -> None:
    """How POLICY fits what RECORDING saw, every recorded connection decided again against
    POLICY: rules missing (with the smallest rule that allows each), rules unused, rules
    shadowed by an earlier one, application rules a network rule makes unreachable.

    Exit codes: 0 no rule is missing, 1 rules are missing, 2 bad input."""
    from harness.diff import diff_policy, render_diff
    from harness.export import policy_of
    from harness.recording import read_events

    report = diff_policy(policy_of(policy_file), read_events(recording))
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
              help="where to write the page (default: RECORDING/report.html)")  # fmt: skip
def report_command(recording: str, output: str | None) -> None:
    """One self-contained HTML page for a recording: outcome, diagnosis, destinations, rule
    hits, and a timeline of the workload's output interleaved with the firewall's events."""
    from harness.diagnose import diagnose
    from harness.recording import read_events
    from harness.report import render_html

    folder = Path(recording)
    events = read_events(folder)
    summary_file = folder / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    timed = folder / "workload.jsonl"
    output_lines: list[tuple[str, str]] = []
    if timed.is_file():
        for line in timed.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            output_lines.append((entry["ts"], entry["line"]))
    diagnosis_text = None
    if summary.get("outcome") == "failure":
        diagnosis_text = diagnose(events, "\n".join(line for _, line in output_lines)).render()
    page = render_html(
        title=f"Egress report: {summary.get('scenario', folder.name)}", summary=summary,
        events=events, output=output_lines, diagnosis_text=diagnosis_text,
    )  # fmt: skip
    target = Path(output) if output else folder / "report.html"
    target.write_text(page, encoding="utf-8")
    stdout.print(f"Report: {target}")


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
