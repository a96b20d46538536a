"""`egress import-logs` end to end: each export shape in tests/unit/logimport/exports/ (our own
fixtures in the shapes Azure writes: the query API, `az monitor log-analytics query -o json`,
the portal's CSV and JSON exports, AzureDiagnostics rows, pasted lines) becomes a recording
from which logs, allowlist, diff, report and export give the rules and lines production needs.

The exports describe one failed App Service deployment from the integration subnet
10.0.2.0/24: Kudu's call to its SCM site and Oryx's CDN denied by default, an HTTP package
index denied, a TCP 5432 database denied; a file host and NTP allowed by production's policy
(production-policy.yaml); one denial from another subnet (10.0.9.4)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.recording import read_events

EXPORTS = Path(__file__).parent / "exports"
RESOURCE_SPECIFIC = [
    "resource-specific.api.json",
    "resource-specific.az.json",
    "resource-specific.portal.csv",
    "resource-specific.portal.json",
]
LEGACY = ["azurediagnostics.portal.csv", "azurediagnostics.az.json"]
FORMAT_OF = {
    "resource-specific.api.json": "query-api",
    "resource-specific.az.json": "json-array",
    "resource-specific.portal.csv": "csv",
    "resource-specific.portal.json": "json-array",
    "azurediagnostics.portal.csv": "csv",
    "azurediagnostics.az.json": "json-array",
    "seed-deny-lines.txt": "text",
    "dns-nat-failures.api.json": "query-api",
}
KUDU = "HTTPS request from 10.0.2.254:50347 to mysite.scm.azurewebsites.net:443. Action: Deny. No rule matched. Proceeding with default action"
ORYX = "HTTPS request from 10.0.2.254:50355 to oryx-cdn.microsoft.io:443. Action: Deny. No rule matched. Proceeding with default action"


def _import(tmp_path: Path, *names: str, extra: tuple[str, ...] = ()) -> Path:
    folder = tmp_path / "imported"
    code = main(["import-logs", *(str(EXPORTS / name) for name in names), "-o", str(folder),
                 *extra])  # fmt: skip
    assert code == 0
    return folder


def _rules(policy_text: str) -> dict[str, dict]:
    policy = yaml.safe_load(policy_text)
    return {
        rule["name"]: rule
        for group in policy["rule_collection_groups"]
        for collection in group["rule_collections"]
        for rule in collection["rules"]
    }


def _allowlist(folder: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, dict]:
    capsys.readouterr()
    assert main(["allowlist", str(folder), *extra]) == 0
    return _rules(capsys.readouterr().out)


@pytest.mark.parametrize("name", RESOURCE_SPECIFIC + LEGACY)
def test_every_export_shape_imports_the_same_connections(name: str, tmp_path: Path) -> None:
    folder = _import(tmp_path, name)
    seen = [
        (event.ts, event.kind, event.src, event.host or event.dst, event.port, event.action)
        for event in read_events(folder)
        if event.kind in ("tls", "http", "tcp", "udp")
    ]
    assert seen == [
        ("2026-11-28T12:00:01.234Z", "tls", "10.0.2.254:50347", "mysite.scm.azurewebsites.net", 443, "Deny"),
        ("2026-11-28T12:00:02.500Z", "tls", "10.0.2.254:50351", "files.contoso.test", 443, "Allow"),
        ("2026-11-28T12:00:03.456Z", "tls", "10.0.2.254:50355", "oryx-cdn.microsoft.io", 443, "Deny"),
        ("2026-11-28T12:00:04.001Z", "http", "10.0.2.254:50360", "packages.contoso.test", 80, "Deny"),
        ("2026-11-28T12:00:05.000Z", "tls", "10.0.9.4:61000", "telemetry.other-team.test", 443, "Deny"),
        ("2026-11-28T12:00:06.700Z", "tcp", "10.0.2.254:50370", "203.0.113.10:5432", 5432, "Deny"),
        ("2026-11-28T12:00:07.100Z", "udp", "10.0.2.254:50371", "192.0.2.123:123", 123, "Allow"),
    ]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["origin"] == "import-logs"
    assert summary["files"][0]["format"] == FORMAT_OF[name]
    assert summary["outcome"] == "failure"


@pytest.mark.parametrize("name", RESOURCE_SPECIFIC + LEGACY)
def test_allowlist_proposes_the_denials_http_as_http_and_network_as_network(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _import(tmp_path, name, extra=("--source", "10.0.2.0/24"))
    rules = _allowlist(folder, capsys, "--wildcards")
    assert set(rules) == {
        "allow-subdomains-of-scm.azurewebsites.net", "allow-oryx-cdn.microsoft.io",
        "allow-packages.contoso.test", "allow-203.0.113.10",
    }  # fmt: skip
    assert rules["allow-subdomains-of-scm.azurewebsites.net"]["target_fqdns"] == [
        "*.scm.azurewebsites.net"
    ]
    assert rules["allow-oryx-cdn.microsoft.io"]["protocols"] == ["Https:443"]
    assert rules["allow-packages.contoso.test"]["protocols"] == ["Http:80"]
    network = rules["allow-203.0.113.10"]
    assert network["rule_type"] == "NetworkRule"
    assert (network["ip_protocols"], network["destination_addresses"],
            network["destination_ports"]) == (["TCP"], ["203.0.113.10"], ["5432"])  # fmt: skip


@pytest.mark.parametrize("name", LEGACY)
def test_logs_gives_back_each_legacy_line_exactly(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = EXPORTS / name
    if path.suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as handle:
            written = [row["msg_s"] for row in csv.DictReader(handle)]
    else:
        written = [row["msg_s"] for row in json.loads(path.read_text())]
    folder = _import(tmp_path, name)
    capsys.readouterr()
    assert main(["logs", str(folder)]) == 0
    assert capsys.readouterr().out.splitlines() == written
    assert (folder / "azure.log").read_text().splitlines() == written


def test_the_seeds_two_deny_lines_give_their_two_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _import(tmp_path, "seed-deny-lines.txt")
    capsys.readouterr()
    assert main(["logs", str(folder)]) == 0
    assert capsys.readouterr().out.splitlines() == [KUDU, ORYX]
    rules = _allowlist(folder, capsys, "--wildcards")
    assert {tuple(rule["target_fqdns"]) for rule in rules.values()} == {
        ("*.scm.azurewebsites.net",), ("oryx-cdn.microsoft.io",),
    }  # fmt: skip
    events = read_events(folder)
    assert [event.ts for event in events] == ["", ""]  # pasted lines have no time: none invented
    assert all(event.rule is None and event.bytes_up is None for event in events)


def test_diff_names_the_missing_rules_and_the_unused_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _import(tmp_path, "resource-specific.api.json", extra=("--source", "10.0.2.0/24"))
    capsys.readouterr()
    code = main(["diff", str(EXPORTS / "production-policy.yaml"), str(folder), "--json"])
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert sorted(item["destination"] for item in report["missing"]) == [
        "203.0.113.10:5432", "mysite.scm.azurewebsites.net:443", "oryx-cdn.microsoft.io:443",
        "packages.contoso.test:80",
    ]  # fmt: skip
    assert [item["rule"]["rule"] for item in report["unused"]] == ["legacy-mirror"]


def test_diff_exits_0_once_the_exported_rules_are_added(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _import(tmp_path, "resource-specific.portal.csv", extra=("--source", "10.0.2.0/24"))
    production = yaml.safe_load((EXPORTS / "production-policy.yaml").read_text())
    missing = yaml.safe_load((folder / "policy.yaml").read_text())
    missing["rule_collection_groups"][0]["priority"] = 400  # production uses 300 already
    production["rule_collection_groups"] += missing["rule_collection_groups"]
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(production))
    assert main(["diff", str(fixed), str(folder)]) == 0


@pytest.mark.parametrize("fmt", ["yaml", "arm", "bicep", "terraform", "azcli", "classic-arm"])
def test_export_writes_the_rules_to_add_in_every_format(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _import(tmp_path, "azurediagnostics.portal.csv", extra=("--source", "10.0.2.0/24"))
    capsys.readouterr()
    code = main(["export", str(folder), "--format", fmt, "--source-addresses", "10.0.2.0/24"])
    assert code == 0
    text = capsys.readouterr().out
    for target in ("mysite.scm.azurewebsites.net", "oryx-cdn.microsoft.io",
                   "packages.contoso.test", "203.0.113.10"):  # fmt: skip
        assert target in text
    assert "telemetry.other-team.test" not in text  # another subnet's denial, filtered out
    assert "files.contoso.test" not in text  # allowed in production already


def test_report_draws_an_imported_recording(tmp_path: Path) -> None:
    folder = _import(tmp_path, "resource-specific.az.json", "dns-nat-failures.api.json")
    assert main(["report", str(folder)]) == 0
    page = (folder / "report.html").read_text()
    assert "oryx-cdn.microsoft.io" in page and "mysite.scm.azurewebsites.net" in page
    assert "class=failure" in page


def test_dns_nat_and_resolution_failure_rows(tmp_path: Path) -> None:
    folder = _import(tmp_path, "dns-nat-failures.api.json")
    dns, nat, failure = read_events(folder)
    assert (dns.kind, dns.src, dns.host, dns.duration_ms) == (
        "dns", "10.0.2.254:41234", "oryx-cdn.microsoft.io", 3)  # fmt: skip
    assert dns.azure == ("DNS Request: 10.0.2.254:41234 - 50772 A IN oryx-cdn.microsoft.io. udp"
                         " 39 false 1232 NOERROR qr,rd,ra 120 0.0032s")  # fmt: skip
    assert (nat.kind, nat.dst, nat.reason) == ("dnat", "20.1.2.3:3389", "DNAT'ed to 10.0.1.4:3389")
    assert nat.azure.startswith("TCP request from 198.51.100.7:40000 to 20.1.2.3:3389 was DNAT'ed")
    assert (failure.kind, failure.host, failure.dst, failure.azure) == (
        "dns", "db.contoso.test", "168.63.129.16:53", None)  # fmt: skip
    assert failure.reason.endswith("i/o timeout")
    assert failure.rule["rule"] == "contoso-db"


def test_filters_by_time_source_and_action(tmp_path: Path) -> None:
    folder = _import(tmp_path, "resource-specific.api.json", extra=(
        "--since", "2026-11-28T12:00:02Z", "--until", "2026-11-28T12:00:06.9Z",
        "--source", "10.0.2.0/24", "--action", "deny",
    ))  # fmt: skip
    assert [event.host or event.dst for event in read_events(folder)] == [
        "oryx-cdn.microsoft.io", "packages.contoso.test", "203.0.113.10:5432",
    ]  # fmt: skip
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["files"][0]["filtered"] == 4


def test_empty_columns_stay_empty(tmp_path: Path) -> None:
    folder = _import(tmp_path, "resource-specific.az.json")
    kudu = read_events(folder)[0]
    assert kudu.rule is None  # Policy, RuleCollection, Rule empty: default action
    assert (kudu.dst, kudu.url, kudu.bytes_up, kudu.bytes_down) == (None, None, None, None)
    assert kudu.reason == "Default Action"


def test_several_files_of_different_formats_go_into_one_recording(tmp_path: Path) -> None:
    folder = _import(tmp_path, "seed-deny-lines.txt", "dns-nat-failures.api.json")
    summary = json.loads((folder / "summary.json").read_text())
    assert [item["format"] for item in summary["files"]] == ["text", "query-api"]
    assert len(read_events(folder)) == 5


# --- bad input -------------------------------------------------------------------------------


def test_a_file_no_format_matches_is_exit_2_naming_file_and_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    activity = tmp_path / "activity.csv"
    activity.write_text("TimeGenerated [UTC],OperationName,Caller\n1/2/2026,write,someone\n")
    code = main(["import-logs", str(activity), "-o", str(tmp_path / "out")])
    assert code == 2
    message = capsys.readouterr().err
    assert str(activity) in message and "no known log format" in message
    for name in ("csv", "json-array", "json-lines", "query-api", "text"):
        assert name in message
    assert "Traceback" not in message
    assert not (tmp_path / "out").exists()


def test_unreadable_rows_are_skipped_with_a_count_and_their_lines_in_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (EXPORTS / "resource-specific.portal.csv").read_text(encoding="utf-8-sig").splitlines()
    lines[2] = lines[2].replace(",50351,", ",port-50351,")  # SourcePort of the wrong type
    lines[4] = "not,a,row"
    lines.insert(6, "HTTPS request from nowhere")
    damaged = tmp_path / "damaged.csv"
    damaged.write_text("\n".join(lines) + "\n")
    folder = tmp_path / "out"
    assert main(["import-logs", str(damaged), "-o", str(folder)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "skipped 3 unreadable row(s) of 8" in warnings[0]
    assert "line 3: SourcePort: 'port-50351' is not a whole number" in warnings[0]
    assert "line 5: 3 cells where the header has 21" in warnings[0]
    assert "line 7:" in warnings[0]
    assert len(read_events(folder)) == 5


def test_a_json_row_of_the_wrong_type_is_named_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = json.loads((EXPORTS / "resource-specific.portal.json").read_text())
    rows[1]["DestinationPort"] = "https"
    rows[3] = ["not", "an", "object"]
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps(rows, indent=2))
    assert main(["import-logs", str(damaged), "-o", str(tmp_path / "out")]) == 0
    warning = capsys.readouterr().err
    assert "skipped 2 unreadable row(s) of 7" in warning
    assert "DestinationPort: 'https' is not a whole number" in warning


def test_a_truncated_json_export_keeps_the_rows_before_the_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (EXPORTS / "resource-specific.az.json").read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: text.index("oryx-cdn.microsoft.io")])
    assert main(["import-logs", str(cut), "-o", str(tmp_path / "out")]) == 0
    assert [event.host for event in read_events(tmp_path / "out")] == [
        "mysite.scm.azurewebsites.net", "files.contoso.test",
    ]  # fmt: skip
    assert "skipped 1 unreadable row(s)" in capsys.readouterr().err


def test_an_existing_recording_is_not_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _import(tmp_path, "seed-deny-lines.txt")
    code = main(["import-logs", str(EXPORTS / "seed-deny-lines.txt"), "-o", str(folder)])
    assert code == 2
    assert "already holds a recording" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value"), [
    ("--since", "yesterday"), ("--source", "10.0.2.0/33"),
])  # fmt: skip
def test_a_bad_filter_is_exit_2_naming_the_option(
    option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["import-logs", str(EXPORTS / "seed-deny-lines.txt"), "-o",
                 str(tmp_path / "out"), option, value])  # fmt: skip
    assert code == 2
    assert option in capsys.readouterr().err


def test_a_portal_csv_in_local_time_is_refused_rather_than_guessed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (EXPORTS / "resource-specific.portal.csv").read_text(encoding="utf-8-sig")
    local = tmp_path / "local.csv"
    local.write_text(text.replace("TimeGenerated [UTC]", "TimeGenerated [Local Time]"))
    assert main(["import-logs", str(local), "-o", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert "TimeGenerated [Local Time]" in message and "UTC" in message


def test_azfw_json_from_logs_imports_back_to_the_same_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _import(tmp_path, "resource-specific.api.json")
    capsys.readouterr()
    assert main(["logs", str(first), "--format", "azfw-json"]) == 0
    lines = tmp_path / "azfw.jsonl"
    lines.write_text(capsys.readouterr().out)
    again = tmp_path / "again"
    assert main(["import-logs", str(lines), "-o", str(again)]) == 0
    fields = ("ts", "kind", "src", "host", "dst", "port", "action", "rule", "azure")

    def view(folder: Path) -> list[tuple]:
        return [tuple(getattr(event, name) for name in fields) for event in read_events(folder)]

    assert view(again) == view(first)
    summary = json.loads((again / "summary.json").read_text())
    assert summary["files"][0]["format"] == "json-lines"


def test_storage_archive_lines_legacy_and_resource_specific(tmp_path: Path) -> None:
    archive = tmp_path / "PT1H.json"
    archive.write_text("\n".join(json.dumps(row) for row in [
        {"time": "2026-11-28T12:00:01.2340000Z", "resourceId": "/SUBSCRIPTIONS/X",
         "category": "AzureFirewallApplicationRule", "operationName":
         "AzureFirewallApplicationRuleLog", "properties": {"msg": KUDU}},
        {"time": "2026-11-28T12:00:03.4560000Z", "resourceId": "/SUBSCRIPTIONS/X",
         "category": "AZFWApplicationRule", "operationName": "AzureFirewallApplicationLog",
         "properties": {"Protocol": "HTTPS", "SourceIp": "10.0.2.254", "SourcePort": 50355,
                        "DestinationPort": 443, "Fqdn": "oryx-cdn.microsoft.io",
                        "Action": "Deny", "ActionReason": "Default Action"}},
    ]) + "\n")  # fmt: skip
    folder = tmp_path / "out"
    assert main(["import-logs", str(archive), "-o", str(folder)]) == 0
    events = read_events(folder)
    assert [event.azure for event in events] == [KUDU, ORYX]
    assert [event.ts for event in events] == ["2026-11-28T12:00:01.234Z", "2026-11-28T12:00:03.456Z"]


def test_azurediagnostics_rows_from_the_query_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = json.loads((EXPORTS / "azurediagnostics.az.json").read_text())
    columns = [name for name in rows[0] if name != "TableName"]
    api = tmp_path / "api.json"
    api.write_text(json.dumps({"tables": [{
        "name": "PrimaryResult",
        "columns": [{"name": name, "type": "string"} for name in columns],
        "rows": [[row[name] for name in columns] for row in rows],
    }]}))  # fmt: skip
    folder = tmp_path / "out"
    assert main(["import-logs", str(api), "-o", str(folder), "--action", "deny"]) == 0
    capsys.readouterr()
    assert main(["logs", str(folder)]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [KUDU, ORYX]


def test_pasted_lines_after_their_time(tmp_path: Path) -> None:
    pasted = tmp_path / "pasted.txt"
    pasted.write_text(f"2026-11-28T12:00:01.234Z\t{KUDU}\n\n11/28/2026, 12:00:03.456 PM  {ORYX}\n")
    folder = tmp_path / "out"
    assert main(["import-logs", str(pasted), "-o", str(folder), "--since", "2026-11-28"]) == 0
    events = read_events(folder)
    assert [(event.ts, event.azure) for event in events] == [
        ("2026-11-28T12:00:01.234Z", KUDU), ("2026-11-28T12:00:03.456Z", ORYX),
    ]  # fmt: skip


def test_the_progress_line_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _import(tmp_path, "seed-deny-lines.txt")
    assert "importing " in capsys.readouterr().err


@pytest.mark.parametrize(("name", "text"), [
    ("activity.json", '[{"TimeGenerated": "2026-11-28T12:00:00Z", "OperationName": "write"}]'),
    ("activity-api.json", ('{"tables": [{"name": "PrimaryResult", "columns": [{"name": '
                          '"OperationName", "type": "string"}], "rows": [["write"]]}]}')),
    ("notes.txt", "deployment failed again\n"),
    ("empty.csv", ""),
])  # fmt: skip
def test_other_exports_are_exit_2_not_a_recording_of_skipped_rows(
    name: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert main(["import-logs", str(path), "-o", str(tmp_path / "out")]) == 2
    assert "no known log format matches" in capsys.readouterr().err


def test_deeply_nested_json_is_an_unreadable_row_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [json.dumps({"msg_s": KUDU}), '{"msg_s": ' + "[" * 100000 + "]" * 100000 + "}"]
    path = tmp_path / "nested.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert main(["import-logs", str(path), "-o", str(tmp_path / "out")]) == 0
    assert "skipped 1 unreadable row(s) of 2" in capsys.readouterr().err


def test_a_buffered_recorder_writes_everything_by_close(tmp_path: Path) -> None:
    from harness.events import Event
    from harness.recording import Recorder

    recorder = Recorder(tmp_path, flush_each=False)
    for port in range(1, 4):
        recorder.write(Event(ts="2026-11-28T12:00:00.000Z", run="r", kind="tcp", port=port,
                             azure=f"line {port}"))  # fmt: skip
    recorder.close()
    assert [event.port for event in read_events(tmp_path)] == [1, 2, 3]
    assert (tmp_path / "azure.log").read_text() == "line 1\nline 2\nline 3\n"
