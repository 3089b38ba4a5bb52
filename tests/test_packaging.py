"""The package installs the same from a wheel as from an editable install."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_declared():
    # A folder with an __init__.py that pyproject.toml does not list is silently left out of wheels.
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "rcml_st").rglob("__init__.py")
        if "__pycache__" not in path.parts
    }
    found |= {
        "rcml_st.cli" + "".join(f".{p}" for p in path.parent.relative_to(ROOT / "cli").parts)
        for path in (ROOT / "cli").rglob("__init__.py")
    }
    assert found <= _declared_packages(), sorted(found - _declared_packages())


def test_console_script_runs_and_lists_every_command():
    result = subprocess.run(
        [sys.executable, "-m", "rcml_st.cli.main", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for command in ("train", "evaluate", "index", "search", "prepare", "demo"):
        assert command in result.stdout


@pytest.mark.slow
def test_wheel_ships_the_cli_under_the_package_namespace(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("rcml_st-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "rcml_st/cli/main.py" in names
    assert "rcml_st/data/amazon/__init__.py" in names
    assert "rcml_st/model_card_template.md" in names  # package data: the model card's template
    assert not any(name.startswith("cli/") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "rcml-st = rcml_st.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
