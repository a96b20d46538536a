"""How fast `egress import-logs` reads a large export, and that its memory stays bounded.

Writes exports on the fly in a temporary folder, in the two shapes people export most: the
portal's CSV of AZFWApplicationRule + AZFWNetworkRule rows and `az monitor log-analytics query
-o json` (a JSON array, every value a string). Rows mix allowed and denied HTTPS, HTTP and TCP
from a few hundred sources; denials go to a few dozen destinations, as a failing deployment's
retries do. Each file is imported by the real command in a fresh process.

Scale: two calibration imports (2,000 and 20,000 rows: the difference leaves out the command's
start-up) pick ROWS so that the main CSV import takes about 25 s on this machine as loaded now
and the whole script about a minute (or give ROWS). Nothing is extrapolated: every figure
printed is measured on the file it names. Printed per file: rows per second of wall time and
per CPU second of the importing process (the machine is shared; CPU time is what the code
costs), and the child's own peak RSS; then the peak RSS of ROWS rows over ROWS/4 rows (bounded
memory: about 1, as a 1 GB export needs). Target: >= 200,000 rows/s.

    .venv/bin/python benchmarks/bench_import_logs.py [ROWS]
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
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


def run_import(export: Path, out: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in KiB) of one `egress import-logs` in a new
    process (its own rusage, from wait4)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "import-logs", str(export), "-o", str(out)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"import-logs failed on {export} (exit {child.returncode})")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-import-logs-") as temp:
        folder = Path(temp)
        rows = ROWS
        if rows is None:
            timings = []
            for count in (CALIBRATION_ROWS // 10, CALIBRATION_ROWS):
                probe = folder / f"calibration-{count}.csv"
                write_csv(probe, count)
                timings.append(run_import(probe, folder / f"out-calibration-{count}")[0])
            per_row = max((timings[1] - timings[0]) / (CALIBRATION_ROWS * 0.9), 1e-7)
            rows = max(CALIBRATION_ROWS, int(MAIN_SECONDS / per_row) // 4 * 4)
            print(f"calibration: {CALIBRATION_ROWS * 0.9 / (timings[1] - timings[0]):,.0f} rows/s"
                  f" past start-up; using {rows:,} rows")  # fmt: skip
        small, full, az = folder / "quarter.csv", folder / "full.csv", folder / "az.json"
        print(f"writing exports of {rows // 4:,} and {rows:,} rows in {folder} ...", flush=True)
        write_csv(small, rows // 4)
        write_csv(full, rows)
        write_az_json(az, rows // 4)
        results = []
        for name, export, count in (("portal CSV, 1/4", small, rows // 4),
                                    ("portal CSV", full, rows),
                                    ("az -o json, 1/4", az, rows // 4)):  # fmt: skip
            seconds, cpu, peak = run_import(export, folder / f"out-{export.stem}")
            results.append((name, count, export.stat().st_size, seconds, cpu, peak))
        print(f"{'export':16} {'rows':>10} {'MB':>7} {'wall s':>7} {'rows/s':>9} {'CPU s':>7}"
              f" {'rows/CPU s':>10} {'peak RSS':>9}")  # fmt: skip
        for name, count, size, seconds, cpu, peak in results:
            print(f"{name:16} {count:>10,} {size / 1e6:>7.1f} {seconds:>7.1f} "
                  f"{count / seconds:>9,.0f} {cpu:>7.1f} {count / cpu:>10,.0f} "
                  f"{peak / 1024:>7.0f}MB")  # fmt: skip
        _, count, _, seconds, cpu, _ = results[1]
        verdict = "met" if count / seconds >= TARGET else "NOT met"
        print(f"portal CSV: {count / seconds:,.0f} rows/s wall, {count / cpu:,.0f} rows per CPU"
              f" second (target >= {TARGET:,} rows/s: {verdict})")  # fmt: skip
        print(f"peak RSS, {count:,} rows / {count // 4:,} rows: "
              f"{results[1][5] / results[0][5]:.2f} (bounded memory: about 1)")  # fmt: skip


if __name__ == "__main__":
    main()
