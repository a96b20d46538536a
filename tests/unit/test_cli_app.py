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


def test_init_refuses_a_scenario_that_could_not_name_its_app(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "elsewhere" / "shop"
    app.mkdir(parents=True)
    (app / "requirements.txt").write_text("flask\n")
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    target = project / "scenarios" / "shop.scenario.yaml"
    assert main(["init", str(app), "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"{app} is outside {project}" in err and "write the scenario inside" in err
    assert not target.exists()


def test_a_chain_run_prints_each_step_its_exit_and_what_it_reached(tmp_path: Path) -> None:
    import json
    from types import SimpleNamespace

    from harness.events import Event
    from harness.render import execution_blocks, render_text
    from harness.steps import read_steps

    (tmp_path / "steps.jsonl").write_text(json.dumps(
        {"step": "kudu-deploy", "started": "2026-12-01T10:00:01.000Z",
         "ended": "2026-12-01T10:00:02.000Z", "exit_code": 1}) + "\n")  # fmt: skip
    event = Event(ts="2026-12-01T10:00:01.500Z", run="r", kind="tls", src="10.0.0.2:5000",
                  dst="10.9.0.1:443", host="site.scm.azurewebsites.net", port=443,
                  protocol="HTTPS", action="Deny", would="Deny")  # fmt: skip
    steps = [SimpleNamespace(name="kudu-deploy"), SimpleNamespace(name="pip-install")]
    execution = SimpleNamespace(
        run_dir=tmp_path, events=[event], destinations=[], failures=[], diagnosis=None,
        scenario=SimpleNamespace(name="chain", path=tmp_path, steps=steps), succeeded=False,
        timed_out=False, exit_code=1, duration_s=1.0, policy=SimpleNamespace(name="p"),
        mode="enforce", azure_lines=[], output="",
    )  # fmt: skip
    out = render_text(execution_blocks(execution, steps=read_steps(tmp_path)))  # type: ignore[arg-type]
    assert "kudu-deploy  1     site.scm.azurewebsites.net:443" in out
    assert "Not run (an earlier step failed): pip-install" in out
