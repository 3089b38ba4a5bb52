"""Bad input fails before any heavy import: no torch, sentence-transformers or transformers.

Each command runs in a fresh interpreter under ``python -X importtime``, which lists every module
the process imported, so the check does not depend on timing (a loaded machine stays honest).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "sentence_transformers", "transformers", "open_clip")


def _run_cli(*args: str, cwd: Path) -> tuple[int, list[str], set[str]]:
    """(exit code, stderr lines that are not import timings, top-level modules imported)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rcml_st.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stderr.splitlines()
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines if line.startswith("import time:")
    }
    # (blank lines: a transient progress bar leaves one behind on a non-terminal stderr)
    messages = [line for line in lines if line.strip() and not line.startswith("import time:")]
    return done.returncode, messages, imported


@pytest.fixture
def bad_data(tmp_path: Path) -> Path:
    path = tmp_path / "bad.jsonl"
    # Line 1 is valid for every command (an item and an Amazon product at once), line 2 is not JSON.
    path.write_text('{"id": "A", "asin": "A", "text": "fine", "title": "fine"}\n{not json\n')
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["train", "{data}", "--output", "{tmp}/model"],
        ["evaluate", "{data}", "--model", "{tmp}/model"],
        ["prepare", "amazon", "{data}", "--output", "{tmp}/out.jsonl"],
    ],
    ids=["train", "evaluate", "prepare"],
)
def test_bad_data_is_reported_before_any_heavy_import(command, bad_data, tmp_path):
    args = [part.format(data=bad_data, tmp=tmp_path) for part in command]
    code, messages, imported = _run_cli(*args, cwd=tmp_path)
    assert code == 2
    assert len(messages) == 1 and messages[0].startswith("Error: "), messages
    assert f"{bad_data}:2:" in messages[0]
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_demo_rejects_a_workdir_that_is_a_file_before_any_heavy_import(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    code, messages, imported = _run_cli("demo", "--workdir", "taken", cwd=tmp_path)
    assert code == 2
    assert messages == ["Error: --workdir taken exists and is not a folder"]
    assert not imported & set(HEAVY)
