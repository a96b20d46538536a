"""`egress learn|run|init APP_DIR`: bad app folders stop before any engine is asked (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main


@pytest.mark.parametrize("command", ["learn", "run", "init"])
def test_a_folder_with_no_platform_is_exit_2_naming_the_files_and_the_choice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    (tmp_path / "notes.txt").write_text("nothing to build\n")
    assert main([command, str(tmp_path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no platform Oryx would detect" in err
    assert "package.json" in err and "*.csproj" in err and "--platform python|nodejs|dotnet" in err
    assert "Traceback" not in err


def test_two_platforms_is_exit_2_and_platform_chooses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "requirements.txt").write_text("flask\n")
    (tmp_path / "package.json").write_text("{}")
    assert main(["learn", str(tmp_path)]) == 2
    assert "choose one with --platform python or --platform nodejs" in capsys.readouterr().err


def test_init_keeps_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "requirements.txt").write_text("flask\n")
    target = tmp_path / "kept.scenario.yaml"
    target.write_text("name: kept\n")
    assert main(["init", str(tmp_path), "-o", str(target)]) == 2
    assert "exists" in capsys.readouterr().err and target.read_text() == "name: kept\n"
