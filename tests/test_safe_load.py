"""A model's files cannot make rcml-st run their code unless the user opts in (--trust-remote-code).

Each case is a saved tiny model whose ``modules.json`` also names a module class the model folder
(or the Hub snapshot) ships itself; importing that file would write a marker file. Loading must be
refused before anything is imported: no marker, one clear error line, exit 2 on the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st
from rcml_st.errors import UsageError
from rcml_st.safe_load import foreign_module_types

runner = CliRunner()
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("safe") / "rcml-ok"
    rcml_st.build_model("rcml-tiny", relations=["matches in colour"], device="cpu").save_pretrained(
        str(folder)
    )
    return folder


def plant(
    model: Path, target: Path, marker: Path, module: str = "evilmod", ref: str = "evilmod.Evil"
) -> Path:
    """A copy of ``model`` whose modules.json also names ``ref``, defined in ``<module>.py`` beside it."""
    shutil.copytree(model, target)
    (target / f"{module}.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('ran')\n"
        "from sentence_transformers.models import Normalize as Evil\n"
    )
    modules = json.loads((target / "modules.json").read_text())
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": "", "type": ref})
    (target / "modules.json").write_text(json.dumps(modules))
    return target


def test_a_model_naming_its_own_code_is_refused_before_any_import(saved_model, tmp_path):
    marker = tmp_path / "pwned"
    evil = plant(saved_model, tmp_path / "evil", marker)
    with pytest.raises(UsageError, match=r"'evilmod.Evil'.*--trust-remote-code"):
        rcml_st.load(evil, device="cpu")
    assert not marker.exists()
    assert "evilmod" not in sys.modules


def test_a_two_part_rcml_st_name_is_not_rcml_st(saved_model, tmp_path):
    # transformers resolves "rcml_st.Evil" to a file rcml_st.py of the model folder, not the package.
    marker = tmp_path / "pwned"
    evil = plant(saved_model, tmp_path / "evil", marker, module="rcml_st", ref="rcml_st.Evil")
    assert foreign_module_types(evil) == ["rcml_st.Evil"]
    with pytest.raises(UsageError, match=r"rcml_st\.Evil"):
        rcml_st.load(evil, device="cpu")
    assert not marker.exists()


def test_code_loading_sentence_transformers_modules_need_the_opt_in_too(saved_model, tmp_path):
    # A Transformer module runs whatever code its config.json names when trust_remote_code is on.
    folder = tmp_path / "with-transformer"
    shutil.copytree(saved_model, folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2", "type": "sentence_transformers.models.Transformer"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UsageError, match=r"sentence_transformers\.models\.Transformer"):
        rcml_st.load(folder, device="cpu")


def test_the_cli_refuses_it_with_exit_2(saved_model, tmp_path):
    marker = tmp_path / "pwned"
    evil = plant(saved_model, tmp_path / "evil", marker)
    result = runner.invoke(
        app,
        [
            "search",
            "-m",
            str(evil),
            "--qdrant-path",
            str(tmp_path / "q"),
            "-r",
            "matches in colour",
            "--text",
            "x",
        ],
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {evil}: modules.json names"), lines
    assert "--trust-remote-code" in lines[0]
    assert not marker.exists()


def test_the_cli_opt_in_says_once_what_it_imports(saved_model, tmp_path):
    # A real process: the library's own warning reaches stderr there (under pytest a log handler
    # would take it), and the command checks the model before it loads it.
    evil = plant(saved_model, tmp_path / "evil", tmp_path / "pwned")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    data = tmp_path / "data.jsonl"
    data.write_text(
        '{"id": "a", "text": "navy shirt", "relations": {"matches in colour": ["b"]}}\n'
        '{"id": "b", "text": "navy socks"}\n'
    )
    options = ["-m", str(evil), "--trust-remote-code", "--no-baselines"]
    done = subprocess.run(
        [sys.executable, "-m", "rcml_st.cli.main", "evaluate", str(data), *options],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    said = [line for line in done.stderr.splitlines() if "evilmod.Evil" in line]
    assert len(said) == 1 and said[0].startswith("Warning: --trust-remote-code:"), done.stderr


def test_a_hub_snapshot_is_checked_the_same_way(saved_model, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    cache = tmp_path / "hf" / "hub"
    repo = cache / "models--org--evil"
    plant(saved_model, repo / "snapshots" / REVISION, marker)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"org/evil: modules\.json names the module class .evilmod\.Evil."):
        rcml_st.load("org/evil", device="cpu")
    result = runner.invoke(app, ["search", "-m", "org/evil", "-r", "matches in colour", "--text", "x"])
    assert result.exit_code == 2 and "Error: org/evil: modules.json names" in result.stderr, result.output
    assert not marker.exists()


def test_the_opt_in_imports_it_and_says_so(saved_model, tmp_path):
    marker = tmp_path / "pwned"
    evil = plant(saved_model, tmp_path / "evil", marker)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    script = (
        "import rcml_st, logging; logging.basicConfig(); "
        f"m = rcml_st.load({str(evil)!r}, device='cpu', trust_remote_code=True); print(len(m))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"
    assert "trust_remote_code: importing ['evilmod.Evil']" in done.stderr
    assert marker.read_text() == "ran"
