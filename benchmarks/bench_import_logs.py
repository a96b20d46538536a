"""How fast `egress import-logs` reads a large export, and that its memory stays bounded.

Writes exports on the fly in a temporary folder, in the shapes people export: the portal's CSV
of AZFWApplicationRule + AZFWNetworkRule rows, `az monitor log-analytics query -o json` (a JSON
array, every value a string) and the query API's answer (`tables[].columns` / `rows`). Rows
mix allowed and denied HTTPS, HTTP and TCP from a few hundred sources; denials go to a few
dozen destinations, as a failing deployment's retries do. Each file is imported by the command's own function in a fresh process.

Scale: two calibration imports (2,000 and 20,000 rows: the difference leaves out the command's
start-up) pick ROWS so that the main CSV import takes about 25 s on this machine as loaded now
(or give ROWS; 4,700,000 is a 1 GB CSV). Nothing is extrapolated: every figure printed is
measured on the file it names. Printed per file: rows per second of wall time; CPU seconds per
million rows of the worker processes (together: each row is read by one) and of the main
process (the machine is shared: CPU time is what the code costs); the largest process's peak
RSS; the load average. Then whether the CSV met the target of >= 200,000 rows/s, and the peak
RSS of ROWS rows over ROWS/4 rows (bounded memory: about 1, as a 1 GB export needs).

    .venv/bin/python benchmarks/bench_import_logs.py [ROWS]
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else None
CALIBRATION_ROWS = 20_000
MAIN_SECONDS = 25
TARGET = 200_000
SEED = 20261128
COLUMNS = [
    "TenantId", "TimeGenerated [UTC]", "Protocol", "SourceIp", "SourcePort", "DestinationPort",
    "Fqdn", "TargetUrl", "Action", "Policy", "RuleCollectionGroup", "RuleCollection", "Rule",
    "ActionReason", "IsTlsInspected", "WebCategory", "IsExplicitProxyRequest", "DestinationIp",
    "SourceSystem", "Type",
]  # fmt: skip
REPO = Path(__file__).resolve().parent.parent
TENANT = "0f6d3c2a-5b1e-4a8f-9c7d-2e4b6a8c0d1f"


def _rows(count: int):
    """Rows as dicts of strings, the CSV's and az's shape alike."""
    rng = random.Random(SEED)
    hosts = [f"svc{n}.contoso{n % 40}.test" for n in range(3000)]
    for index in range(count):
        stamp = _stamp(index)
        src = f"10.0.{rng.randrange(2, 4)}.{rng.randrange(4, 250)}"
        kind = rng.random()
        # Production denies a few destinations often (what a failed deployment retries).
        denied = rng.random() < 0.3
        row = dict.fromkeys(COLUMNS, "")
        row.update({"TenantId": TENANT, "TimeGenerated [UTC]": stamp, "SourceIp": src,
                    "SourcePort": str(rng.randrange(32768, 61000)), "SourceSystem": "Azure",
                    "Action": "Deny" if denied else "Allow"})  # fmt: skip
        if denied:
            row["ActionReason"] = "Default Action"
        else:
            row.update({"Policy": "fw-policy-prod", "RuleCollection": "allow-build",
                        "RuleCollectionGroup": "DefaultApplicationRuleCollectionGroup",
                        "Rule": "build"})  # fmt: skip
        if kind < 0.85:
            https = kind < 0.75
            host = rng.choice(hosts[:40] if denied else hosts)
            row.update({"Type": "AZFWApplicationRule", "Protocol": "HTTPS" if https else "HTTP",
                        "DestinationPort": "443" if https else "80", "Fqdn": host,
                        "TargetUrl": "" if https else f"http://{host}/index.html",
                        "IsTlsInspected": "false", "IsExplicitProxyRequest": "false"})  # fmt: skip
        else:
            row.update({"Type": "AZFWNetworkRule", "Protocol": "TCP",
                        "DestinationIp": f"203.0.113.{rng.randrange(1, 9 if denied else 255)}",
                        "DestinationPort": str(rng.choice((5432, 1433, 22, 8443)))})  # fmt: skip
        yield row


POOL = 5000  # distinct rows, rendered once; each written row gets its own time


def _stamp(index: int) -> str:
    second = index // 2000
    return (f"11/28/2026, {(second // 3600) % 12 + 1}:{(second // 60) % 60:02}:"
            f"{second % 60:02}.{index % 1000:03} PM")  # fmt: skip


def write_csv(path: Path, count: int) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in _rows(POOL):
        row["TimeGenerated [UTC]"] = "\x00"
        writer.writerow(row.values())
    templates = [line + "\r\n" for line in buffer.getvalue().split("\r\n") if line]
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        handle.write(",".join(COLUMNS) + "\r\n")
        for index in range(count):
            before, after = templates[index % POOL].split("\x00")
            handle.write(f'{before}"{_stamp(index)}"{after}')


def write_az_json(path: Path, count: int) -> None:
    templates = []
    for row in _rows(POOL):
        values = {"TableName": "PrimaryResult"}
        for column, value in row.items():
            name = column.removesuffix(" [UTC]")
            values[name] = "None" if value == "" and name in (
                "SourcePort", "DestinationPort") else value  # fmt: skip
        values["TimeGenerated"] = "\x00"
        templates.append(json.dumps(values, indent=2).replace("\n", "\n  ").split('"\\u0000"'))
    with path.open("w", encoding="utf-8") as handle:
        handle.write("[\n")
        for index in range(count):
            before, after = templates[index % POOL]
            second = index // 2000
            stamp = (f"2026-11-28 {12 + (second // 3600) % 12}:{(second // 60) % 60:02}:"
                     f"{second % 60:02}.{index % 1000:03}000+00:00")  # fmt: skip
            handle.write(("  " if index == 0 else ",\n  ") + f'{before}"{stamp}"{after}')
        handle.write("\n]\n")


# The import in a fresh process, as `egress import-logs` runs it (without the table it prints),
# saying what its workers spent: their CPU time and peak RSS are not the child's own.
IMPORT = """
import json, sys, time
from harness.logimport import import_logs
if __name__ == "__main__":
    started = time.process_time()
    result = import_logs([sys.argv[1]], sys.argv[2])
    (file,) = result.files
    print(json.dumps({"rows": file.rows, "events": result.events, "ranges": file.ranges,
                      "parent_cpu": time.process_time() - started,
                      "worker_cpu": file.worker_cpu, "worker_peak_kib": file.worker_peak_kib}))
"""


def run_import(export: Path, out: Path) -> dict:
    """Wall seconds, the importing process's CPU seconds (without its start-up) and peak RSS,
    its workers' CPU seconds and largest peak RSS, of one import in a new process."""
    script = out.parent / "import_one.py"
    script.write_text(IMPORT, encoding="utf-8")
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, str(script), str(export), str(out)],
                             stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    output = child.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"import-logs failed on {export} (exit {os.waitstatus_to_exitcode(status)})")
    found = json.loads(output)
    workers = max(1, min(2, sum(found["ranges"].values())))
    return {**found, "wall": seconds, "peak_kib": max(usage.ru_maxrss, found["worker_peak_kib"]),
            "workers": workers}


def write_query_api(path: Path, count: int) -> None:
    """The query API's answer: one table, its columns typed, its rows as arrays (compact)."""
    names = [column.removesuffix(" [UTC]") for column in COLUMNS]
    templates = []
    for row in _rows(POOL):
        values = [row[column] or None for column in COLUMNS]
        values[1] = "\x00"
        templates.append(json.dumps(values, separators=(",", ":")).split('"\\u0000"'))
    columns = [{"name": name, "type": "string"} for name in names]
    with path.open("w", encoding="utf-8") as handle:
        handle.write('{"tables":[{"name":"PrimaryResult","columns":' + json.dumps(columns)
                     + ',"rows":[')  # fmt: skip
        for index in range(count):
            before, after = templates[index % POOL]
            second = index // 2000
            stamp = (f"2026-11-28T{12 + (second // 3600) % 12}:{(second // 60) % 60:02}:"
                     f"{second % 60:02}.{index % 1000:03}Z")  # fmt: skip
            handle.write(("" if index == 0 else ",") + f'{before}"{stamp}"{after}')
        handle.write("]}]}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-import-logs-") as temp:
        folder = Path(temp)
        rows = ROWS
        if rows is None:
            timings = []
            for count in (CALIBRATION_ROWS // 10, CALIBRATION_ROWS):
                probe = folder / f"calibration-{count}.csv"
                write_csv(probe, count)
                timings.append(run_import(probe, folder / f"out-calibration-{count}")["wall"])
            per_row = max((timings[1] - timings[0]) / (CALIBRATION_ROWS * 0.9), 1e-7)
            rows = max(CALIBRATION_ROWS, int(MAIN_SECONDS / per_row) // 4 * 4)
            print(f"calibration: {CALIBRATION_ROWS * 0.9 / (timings[1] - timings[0]):,.0f} rows/s"
                  f" past start-up; using {rows:,} rows")  # fmt: skip
        exports = [("portal CSV, 1/4", folder / "quarter.csv", rows // 4, write_csv),
                   ("portal CSV", folder / "full.csv", rows, write_csv),
                   ("az -o json, 1/4", folder / "az.json", rows // 4, write_az_json),
                   ("query API, 1/16", folder / "api.json", rows // 16, write_query_api)]  # fmt: skip
        print(f"writing exports of {rows:,} rows and parts of it in {folder} ...", flush=True)
        for _, path, count, write in exports:
            write(path, count)
        print(f"{'export':16} {'rows':>10} {'MB':>7} {'wall s':>7} {'rows/s':>9} {'workers':>7}"
              f" {'worker CPU-s/M rows':>19} {'main CPU-s/M rows':>17} {'peak RSS':>9} {'load':>5}")  # fmt: skip
        results = []
        for name, path, count, _ in exports:
            # The exports just written, and the last import's output, are flushed (or thrown
            # away) first: the kernel writing them back is not this import's cost.
            os.sync()
            found = run_import(path, folder / f"out-{path.stem}")
            shutil.rmtree(folder / f"out-{path.stem}")
            results.append(found)
            per_million = 1e6 / count
            print(f"{name:16} {count:>10,} {path.stat().st_size / 1e6:>7.1f} {found['wall']:>7.1f}"
                  f" {count / found['wall']:>9,.0f} {found['workers'] if found['ranges'] else 0:>7}"
                  f" {found['worker_cpu'] * per_million:>19.2f}"
                  f" {found['parent_cpu'] * per_million:>17.2f}"
                  f" {found['peak_kib'] / 1024:>7.0f}MB {os.getloadavg()[0]:>5.1f}", flush=True)  # fmt: skip
        full = results[1]
        rate = rows / full["wall"]
        verdict = "met" if rate >= TARGET else "NOT met"
        print(f"portal CSV ({os.path.getsize(exports[1][1]) / 1e9:.2f} GB): {rate:,.0f} rows/s wall"
              f" (target >= {TARGET:,} rows/s: {verdict}; load average {os.getloadavg()[0]:.1f}"
              f" on {os.cpu_count()} cores)")  # fmt: skip
        print(f"peak RSS, {rows:,} rows / {rows // 4:,} rows: "
              f"{full['peak_kib'] / results[0]['peak_kib']:.2f} (bounded memory: about 1)")  # fmt: skip


if __name__ == "__main__":
    main()
