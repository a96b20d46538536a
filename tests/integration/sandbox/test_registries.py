"""Real package clients through the firewall, with allowlists derived at run time from the
clients' own configuration and from an audit run's recording (no registry host is written here)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness.sandbox import NODE_IMAGE, PYTHON_IMAGE, RunSpec, run

pytestmark = pytest.mark.docker

PIP_INDEX = (
    "python3 - <<'PY'\n"
    "import subprocess, sys\n"
    "from pip._internal.models.index import PyPI\n"
    "listed = subprocess.run([sys.executable, '-m', 'pip', 'config', 'list'],\n"
    "                        capture_output=True, text=True).stdout.splitlines()\n"
    "urls = [l.split('=', 1)[1].strip(\"'\\\"\") for l in listed if l.split('=')[0].endswith('index-url')]\n"
    "print('INDEX', urls[0] if urls else PyPI.simple_url)\n"
    "PY\n"
)
PIP_DOWNLOAD = "python3 -m pip download --no-deps --retries 0 --timeout 15 -d /tmp/x six"
NPM_VIEW = (
    "echo REGISTRY $(npm config get registry);"
    " npm view is-number version --fetch-retries=0 --fetch-timeout=15000"
)
EOF_SYMPTOM = re.compile(r"EOF|SSLZeroReturnError|ZeroReturn|SSL_ERROR_SYSCALL")


def _run(
    tmp_path: Path,
    name: str,
    image: str,
    command: str,
    allowed: list[str],
    mode: str,
    addon_root: Path,
    write_policy,
    read_events,
):
    run_dir = tmp_path / name
    run_dir.mkdir()
    write_policy(run_dir, allowed)
    lines: list[str] = []
    result = run(
        RunSpec(
            run_dir=run_dir,
            image=image,
            command=command,
            trust=["host"],
            timeout=180,
            mode=mode,
            addon_root=addon_root,
            env={"NPM_CONFIG_UPDATE_NOTIFIER": "false"},
        ),
        on_output=lines.append,
    )
    return result, lines, read_events(run_dir)


def _hosts(events: list[dict]) -> set[str]:
    return {e["host"] for e in events if e.get("kind") in ("tls", "http") and e.get("host")}


def _value_after(lines: list[str], prefix: str) -> str:
    return next(line.split(" ", 1)[1] for line in lines if line.startswith(prefix + " "))


def test_pip_needs_its_file_host_besides_its_index(tmp_path, addon_root, write_policy, read_events):
    kit = {"addon_root": addon_root, "write_policy": write_policy, "read_events": read_events}
    audit, lines, events = _run(
        tmp_path, "audit", PYTHON_IMAGE, PIP_INDEX + PIP_DOWNLOAD, [], "audit", **kit
    )
    assert audit.exit_code == 0, lines
    index_host = urlsplit(_value_after(lines, "INDEX")).hostname
    recorded = _hosts(events)
    assert index_host in recorded, (index_host, events)
    assert len(recorded) >= 2, f"pip should need a file host besides its index: {recorded}"

    only_index, lines, events = _run(
        tmp_path, "index-only", PYTHON_IMAGE, PIP_DOWNLOAD, [index_host], "enforce", **kit
    )
    assert only_index.exit_code != 0, lines
    assert EOF_SYMPTOM.search("\n".join(lines)), lines
    denied = {e.get("host") for e in events if e.get("action") == "Deny"} - {index_host, None}
    assert denied & (recorded - {index_host}), (recorded, events)

    learned, lines, _ = _run(
        tmp_path, "learned", PYTHON_IMAGE, PIP_DOWNLOAD, sorted(recorded), "enforce", **kit
    )
    assert learned.exit_code == 0, lines
    assert any(line.startswith("Saved") for line in lines), lines


def test_npm_view_needs_exactly_its_registry(tmp_path, addon_root, write_policy, read_events):
    kit = {"addon_root": addon_root, "write_policy": write_policy, "read_events": read_events}
    audit, lines, events = _run(tmp_path, "audit", NODE_IMAGE, NPM_VIEW, [], "audit", **kit)
    assert audit.exit_code == 0, lines
    registry_host = urlsplit(_value_after(lines, "REGISTRY")).hostname
    assert registry_host in _hosts(events), (registry_host, events)

    denied, lines, events = _run(tmp_path, "deny-all", NODE_IMAGE, NPM_VIEW, [], "enforce", **kit)
    assert denied.exit_code != 0, lines
    assert any(e.get("host") == registry_host and e.get("action") == "Deny" for e in events)

    allowed, lines, _ = _run(
        tmp_path, "allowed", NODE_IMAGE, NPM_VIEW, sorted(_hosts(events)), "enforce", **kit
    )
    assert allowed.exit_code == 0, lines
    assert any(re.fullmatch(r"\d+\.\d+\.\d+", line.strip()) for line in lines), lines
