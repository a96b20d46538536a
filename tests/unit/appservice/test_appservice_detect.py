"""Platform and version detection as Oryx's detectors do it (harness.appservice.detect)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.appservice.detect import detect
from harness.errors import InputError


def make(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


@pytest.mark.parametrize(
    ("files", "platform", "version", "source"),
    [
        ({"requirements.txt": "flask\n"}, "python", None, "Oryx's default version"),
        ({"requirements.txt": "flask\n", "runtime.txt": "python-3.11\n"}, "python", "3.11",
         "runtime.txt"),
        ({"runtime.txt": "python-3.10.14"}, "python", "3.10.14", "runtime.txt"),
        ({"pyproject.toml": "[project]\nname='x'\n"}, "python", None, "Oryx's default version"),
        ({"setup.py": "from setuptools import setup\n"}, "python", None, "Oryx's default version"),
        ({"src/main.py": "print(1)\n"}, "python", None, "Oryx's default version"),
        ({"package.json": '{"engines": {"node": ">=18"}}'}, "nodejs", ">=18",
         "package.json engines.node"),
        ({"package.json": "{}"}, "nodejs", None, "Oryx's default version"),
        ({"server.js": "require('http')"}, "nodejs", None, "Oryx's default version"),
        ({"web/web.csproj": "<Project><PropertyGroup><TargetFramework>net8.0</TargetFramework>"
          "</PropertyGroup></Project>"}, "dotnet", "8.0", "web/web.csproj TargetFramework"),
        ({"a.csproj": "<Project><PropertyGroup><TargetFrameworks>netcoreapp3.1;net6.0"
          "</TargetFrameworks></PropertyGroup></Project>"}, "dotnet", "3.1",
         "a.csproj TargetFramework"),
    ],
)  # fmt: skip
def test_detects_platform_and_version_from_the_files_oryx_reads(
    tmp_path, files, platform, version, source
):
    found = detect(make(tmp_path, files))
    assert (found.platform, found.version, found.version_source) == (platform, version, source)


def test_a_runtime_txt_for_another_language_is_not_python(tmp_path):
    make(tmp_path, {"runtime.txt": "dotnetcore-8.0", "package.json": "{}"})
    assert detect(tmp_path).platform == "nodejs"


def test_a_helper_script_does_not_make_a_node_app_two_platforms(tmp_path):
    make(tmp_path, {"package.json": "{}", "tools/gen.py": "print(1)\n"})
    assert detect(tmp_path).platform == "nodejs"


def test_no_platform_names_every_file_looked_for_and_how_to_choose(tmp_path):
    make(tmp_path, {"README.md": "hello"})
    with pytest.raises(InputError) as raised:
        detect(tmp_path)
    message = str(raised.value)
    assert raised.value.exit_code == 2
    for name in ("requirements.txt", "pyproject.toml", "setup.py", "runtime.txt",
                 "package.json", "*.csproj", "--platform python|nodejs|dotnet"):  # fmt: skip
        assert name in message


def test_two_platforms_is_an_error_naming_both_and_the_choice(tmp_path):
    make(tmp_path, {"requirements.txt": "flask\n", "package.json": "{}"})
    with pytest.raises(InputError) as raised:
        detect(tmp_path)
    message = str(raised.value)
    assert "Python (requirements.txt)" in message and "Node.js (package.json)" in message
    assert "--platform python or --platform nodejs" in message


def test_platform_and_version_flags_override_detection(tmp_path):
    make(tmp_path, {"requirements.txt": "flask\n", "package.json": "{}", "runtime.txt": "python-3.10"})
    found = detect(tmp_path, "python", "3.12")
    assert (found.platform, found.version, found.version_source) == ("python", "3.12",
                                                                     "--platform-version")  # fmt: skip
    assert detect(tmp_path, "python").version == "3.10"


def test_a_broken_package_json_is_an_error_at_its_line(tmp_path):
    make(tmp_path, {"package.json": '{\n  "engines": \n}'})
    with pytest.raises(InputError) as raised:
        detect(tmp_path)
    assert f"{tmp_path / 'package.json'}:3:" in str(raised.value)


def test_an_unknown_platform_or_a_file_instead_of_a_folder_is_bad_input(tmp_path):
    with pytest.raises(InputError, match="is not one of python, nodejs, dotnet"):
        detect(tmp_path, "ruby")
    (tmp_path / "f").write_text("")
    with pytest.raises(InputError, match="is not a folder"):
        detect(tmp_path / "f")
