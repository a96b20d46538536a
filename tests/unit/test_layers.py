"""The layer boundary is enforced by ruff's banned-api rule (TID251): a pure module that imports
docker or mitmproxy fails `bin/test`. These tests prove the configuration bites, on a copy of the
tree, so a config edit that silences the rule fails here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).with_name("ruff")


def _copy_of_tree(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    shutil.copytree(
        ROOT / "harness", copy / "harness", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "addons", copy / "addons", ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _ruff(tree: Path) -> subprocess.CompletedProcess[str]:
    if not RUFF.exists():
        pytest.fail(f"ruff is not installed beside {sys.executable}; the test extra pins it")
    return subprocess.run(
        [str(RUFF), "check", "--no-cache", "--select", "TID251", "harness", "addons"],
        check=False,
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_tree_as_it_is_keeps_its_layers(tmp_path: Path) -> None:
    result = _ruff(_copy_of_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "library"),
    [
        ("harness/policy/decide.py", "docker"),
        ("harness/policy/decide.py", "mitmproxy"),
        ("harness/scenario.py", "docker"),
        ("harness/gateway/options.py", "docker"),
        ("harness/sandbox/gc.py", "mitmproxy"),
        ("addons/firewall.py", "docker"),
    ],
)
def test_importing_a_library_outside_its_package_fails_the_lint(
    tmp_path: Path, module: str, library: str
) -> None:
    tree = _copy_of_tree(tmp_path)
    with (tree / module).open("a") as source:
        source.write(f"\nimport {library}  # noqa: F401\n")
    result = _ruff(tree)
    assert result.returncode == 1
    assert f"`{library}` is banned" in result.stdout
    assert module in result.stdout


@pytest.mark.parametrize(
    ("module", "library"),
    [("harness/gateway/options.py", "mitmproxy"), ("harness/sandbox/gc.py", "docker")],
)
def test_each_edge_package_may_import_its_own_library(
    tmp_path: Path, module: str, library: str
) -> None:
    tree = _copy_of_tree(tmp_path)
    with (tree / module).open("a") as source:
        source.write(f"\nimport {library}  # noqa: F401\n")
    assert _ruff(tree).returncode == 0
