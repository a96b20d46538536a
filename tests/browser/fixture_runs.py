"""Recordings written the way a run writes them (Recorder, workload.jsonl, summary.json), with
times chosen so a test knows where every bar must be drawn. Used by the browser tests and by
make_readme_screenshot.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness.events import Event, event_for_decision
from harness.policy.model import ALLOW, DENY, Decision, Reason, Request, RuleRef
from harness.recording import Recorder

START = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
SPAN_S = 10.0  # the last output line is at START + SPAN_S, after every connection closed


def ts(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Connection:
    host: str
    at: float  # seconds after START
    duration_ms: int
    outcome: str  # allowed | denied | would-be-denied | unreachable | failed-upstream


# A pip install behind a policy that forgot the file host: a dozen connections, one denied.
DOZEN = (
    Connection("index.example.test", 0.20, 900, "allowed"),
    Connection("index.example.test", 1.30, 700, "allowed"),
    Connection("files.example.test", 2.10, 3, "denied"),
    Connection("index.example.test", 2.40, 1200, "allowed"),
    Connection("cdn.example.test", 3.00, 1500, "allowed"),
    Connection("cdn.example.test", 3.20, 1300, "allowed"),
    Connection("mirror.example.test", 4.80, 600, "allowed"),
    Connection("index.example.test", 5.50, 800, "allowed"),
    Connection("cdn.example.test", 6.00, 1800, "allowed"),
    Connection("telemetry.example.test", 6.40, 400, "allowed"),
    Connection("mirror.example.test", 7.20, 900, "allowed"),
    Connection("index.example.test", 8.10, 1100, "allowed"),
)
DOZEN_OUTPUT = (
    (0.00, "workload", "Collecting flask==3.0.0"),
    (1.00, "workload", "  Downloading flask-3.0.0-py3-none-any.whl (99 kB)"),
    (2.15, "workload", "WARNING: Retrying after connection broken by 'SSLEOFError' files.example.test"),
    (4.00, "workload", "Collecting werkzeug>=3.0.0"),
    (9.50, "workload", "ERROR: Could not install packages due to an OSError: HTTPSConnectionPool(host='files.example.test', port=443): Max retries exceeded"),
    (SPAN_S, "workload", "exit code 1"),
)  # fmt: skip

_RULE = RuleRef(
    "contoso-build", "DefaultApplicationRuleCollectionGroup", "allow-build", "pip-index"
)


def _event(number: int, connection: Connection, policy: str) -> Event:
    request = Request("HTTPS", "172.18.0.2", 41000 + number, 443, dst_ip=f"192.0.2.{10 + number}",
                      host=connection.host)  # fmt: skip
    if connection.outcome == "denied":
        decision = Decision(DENY, DENY, Reason.DEFAULT_DENY)
    elif connection.outcome == "would-be-denied":
        decision = Decision(ALLOW, DENY, Reason.DEFAULT_DENY)
    else:
        decision = Decision(ALLOW, ALLOW, Reason.RULE_MATCHED, _RULE, "ApplicationRule")
    event = event_for_decision(request, decision, policy_name=policy)
    event.ts = ts(connection.at)
    event.duration_ms = connection.duration_ms
    event.bytes_up = 517 if connection.outcome in ("denied",) else 2048 + number
    event.bytes_down = 0 if connection.outcome == "denied" else 40_000 + 1000 * number
    if connection.outcome == "unreachable":
        event.upstream = "unreachable"
    elif connection.outcome == "failed-upstream":
        event.upstream = "refused"
    return event


def write_recording(
    folder: Path,
    connections: tuple[Connection, ...] = DOZEN,
    output: tuple[tuple[float, str, str], ...] = DOZEN_OUTPUT,
    *,
    scenario: str = "pip-flask",
    mode: str = "enforce",
    outcome: str = "failure",
    dns: bool = True,
) -> Path:
    recorder = Recorder(folder)
    recorder.write(Event(ts=ts(0), run="r", kind="lifecycle", reason="ready"))
    events = []
    for number, connection in enumerate(connections):
        events.append(_event(number, connection, "contoso-build"))
    seen = set()
    if dns:
        for connection in connections:
            if connection.host in seen:
                continue
            seen.add(connection.host)
            recorder.write(Event(
                ts=ts(max(0.0, connection.at - 0.05)), run="r", kind="dns", src="172.18.0.2:53000",
                host=connection.host, protocol="UDP", duration_ms=1,
                azure=f"DNS Request: 172.18.0.2:53000 - 1 A IN {connection.host}. udp 60 false 512 NOERROR qr,rd,ra 0.001s",
            ))  # fmt: skip
    # The gateway writes a connection's line when it closes.
    for event in sorted(events, key=lambda e: e.ts):
        recorder.write(event)
    recorder.close()
    (folder / "workload.jsonl").write_text(
        "".join(json.dumps({"ts": ts(at), "line": line}) + "\n" for at, _, line in output)
    )
    client_lines = [line for _, stream, line in output if stream == "client"]
    if client_lines:
        (folder / "client.log").write_text("\n".join(client_lines) + "\n")
    (folder / "summary.json").write_text(json.dumps({
        "scenario": scenario, "outcome": outcome, "policy": "contoso-build", "mode": mode,
        "duration_s": SPAN_S, "exit_code": 1 if outcome == "failure" else 0,
    }))  # fmt: skip
    return folder
