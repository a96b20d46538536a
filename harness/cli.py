"""The `egress` command: composition root 1. Parses arguments, calls the library, prints
results as tables, and turns harness errors into a message and an exit code at one place
(`main`): 0 success, 1 the scenario's expectations failed, 2 bad input or environment.
"""

from __future__ import annotations

__all__ = ["cli", "console_main", "main"]

import json
import sys
import time
from pathlib import Path
from typing import Self

import click
from rich.console import Console
from rich.table import Table

from harness.errors import EnvironmentProblem, ExpectationFailed, HarnessError, InputError

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

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
    except click.exceptions.Abort:
        stderr.print("egress: interrupted", markup=False)
        return 130
    except KeyboardInterrupt:
        stderr.print("egress: interrupted; containers of this run were removed", markup=False)
        return 130
    return 0


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
def check(policy_file: str, destinations: tuple[str, ...], protocol: str, source: str, as_json: bool) -> None:
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
@click.option("--mode", type=click.Choice(["enforce", "audit"]), help="audit: allow all, record what enforce would do")
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
    sandbox = _sandbox_run()
    with LiveProgress(f"running {scenario.name}") as progress:
        execution = execute(scenario, sandbox, overrides, on_output=progress.output,
                            on_event=progress.event)  # fmt: skip
    _print_execution(execution)
    if execution.failures:
        raise ExpectationFailed(f"{len(execution.failures)} expectation(s) of {scenario.path} failed")


def _sandbox_run():
    from harness.sandbox import build_images, run

    # Cached by content hash: silent when the images are current, a progress line per step when not.
    def progress(line: str) -> None:
        if "up to date" not in line and "images ready" not in line:
            stderr.print(f"[dim]images:[/dim] {line}", markup=True)

    build_images(progress)
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


# --- learn -------------------------------------------------------------------------------


@cli.command("learn")
@click.argument("scenario_file", metavar="SCENARIO", default=DEFAULT_SCENARIO,
                type=click.Path(dir_okay=False))  # fmt: skip
@click.option("--classify", is_flag=True,
              help="re-run with each destination denied: required, optional or flaky")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write the allowlist policy here")
def learn_command(scenario_file: str, classify: bool, output: str | None) -> None:
    """Learn the minimal allowlist SCENARIO needs: an audit run, then a verify run behind what it
    found (and with --classify, one run per destination denied). Exit 1 when it does not verify."""
    import os

    from harness.learn import learn, render_allowlist
    from harness.scenario import load_scenario

    scenario = load_scenario(scenario_file)
    command = "egress learn " + " ".join(
        [scenario_file] + (["--classify"] if classify else []) + (["-o", output] if output else [])
    )
    sandbox = _sandbox_run()
    with LiveProgress(f"learning {scenario.name}") as progress:
        result = learn(
            scenario, sandbox, classify=classify, parallel=os.cpu_count() or 2,
            on_step=progress.set_step, on_event=progress.event,
        )  # fmt: skip
    text = render_allowlist(result.policy, result.candidates, command=command,
                            scenario=scenario.name, verified=result.verified)  # fmt: skip
    table = _table("destination", "protocols", "connections", "bytes", "classification")
    for candidate in result.candidates:
        table.add_row(
            candidate.host, ", ".join(candidate.protocol_texts()), str(candidate.connections),
            str(candidate.bytes_total), candidate.classification or "",
        )  # fmt: skip
    stdout.print(table)
    verdict = "[green]verified[/green]" if result.verified else "[red]NOT verified[/red]"
    stdout.print(f"Learned {len(result.candidates)} destination(s) in {result.runs} run(s); {verdict}"
                 f" (recordings: {result.audit.run_dir.parent})")  # fmt: skip
    if output:
        Path(output).write_text(text)
        stdout.print(f"Allowlist written to {output}")
    else:
        stdout.print("\n[bold]Learned allowlist[/bold] (egress policy YAML):")
        print(text)
    _print_rule_collection(result.policy)
    if not result.verified:
        raise ExpectationFailed("the learned allowlist did not make the workload succeed")


def _print_rule_collection(policy) -> None:
    """The learned rules as Azure writes them (Bicep), when the exporters are there."""
    try:
        from harness.export import export_policy
    except ImportError:
        return
    stdout.print("[bold]As an Azure Firewall rule collection group[/bold] (egress export --format bicep):")
    print(export_policy(policy, "bicep"))


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
    sys.exit(main())


if __name__ == "__main__":
    console_main()
