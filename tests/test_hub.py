"""Hub ids load offline from the Hugging Face cache: in Python and with `--model org/name`.

The tests build the cache layout themselves (``models--org--name/snapshots/<rev>/`` plus
``refs/main``) from a saved tiny model; nothing reaches the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from rcml_st.cli.main import app
from sentence_transformers import SentenceTransformer
from typer.testing import CliRunner

import rcml_st
from rcml_st.errors import UsageError
from rcml_st.hub import resolve_model

REPO_ID = "org/rcml-baby"
REVISION = "0123456789abcdef0123456789abcdef01234567"
ITEM = {"text": "Oakbud nursing pillow, navy"}
runner = CliRunner()


def cache_model(model_dir: Path, hub_cache: Path, repo_id: str = REPO_ID) -> Path:
    """Copies a saved model into the Hugging Face cache layout, as a download would leave it."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, mixed_catalog) -> Path:
    from rcml_st.data import read_catalog

    folder = tmp_path_factory.mktemp("hub") / "rcml-baby"
    relations = read_catalog(mixed_catalog).relations
    rcml_st.build_model("rcml-tiny", relations=relations, device="cpu").save_pretrained(str(folder))
    return folder


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, saved_model) -> Path:
    """An offline Hugging Face cache holding the saved model as ``org/rcml-baby``."""
    cache = tmp_path / "hf" / "hub"
    cache_model(saved_model, cache)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # "org/rcml-baby" is no local folder here
    return cache


def test_a_cached_hub_id_loads_offline_in_python(hub_cache, saved_model):
    assert resolve_model(REPO_ID) == hub_cache / "models--org--rcml-baby" / "snapshots" / REVISION
    local = rcml_st.load(saved_model, device="cpu").encode([ITEM], relation="matches in colour")
    by_id = rcml_st.load(REPO_ID, device="cpu")
    assert by_id.model_card_data.model_id == REPO_ID
    plain = SentenceTransformer(REPO_ID, trust_remote_code=True, device="cpu")
    assert np.allclose(by_id.encode([ITEM], relation="matches in colour"), local, atol=1e-6)
    assert np.allclose(plain.encode([ITEM], relation="matches in colour"), local, atol=1e-6)


def test_cli_commands_take_a_hub_id(hub_cache, mixed_catalog, tmp_path):
    evaluated = runner.invoke(
        app, ["evaluate", str(mixed_catalog), "--model", REPO_ID, "--negatives", "3", "--no-progress"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "Retrieval Hit@5" in evaluated.stdout
    store = str(tmp_path / "qdrant")
    indexed = runner.invoke(app, ["index", str(mixed_catalog), "--model", REPO_ID, "--qdrant-path", store])
    assert indexed.exit_code == 0, indexed.output
    relation = rcml_st.relation_vocabulary(rcml_st.load(REPO_ID, device="cpu"))[0]
    found = runner.invoke(
        app,
        ["search", "--model", REPO_ID, "--qdrant-path", store, "--relation", relation, "--text", "pillow"],
    )
    assert found.exit_code == 0, found.output
    assert "S00" in found.stdout


def test_a_missing_hub_id_is_one_clear_line(hub_cache, mixed_catalog):
    with pytest.raises(UsageError, match="not in the Hugging Face cache"):
        resolve_model("org/missing")
    result = runner.invoke(app, ["evaluate", str(mixed_catalog), "--model", "org/missing"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: model not found: org/missing"), lines


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "rcml_st.cli.main", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_hub_errors_from_a_real_environment_exit_2_when_missing_offline_and_1_when_unreachable(
    tmp_path, mixed_catalog
):
    offline = _cli(
        "evaluate", str(mixed_catalog), "-m", "org/missing", HF_HOME=str(tmp_path), HF_HUB_OFFLINE="1"
    )
    assert offline.returncode == 2
    assert offline.stderr.strip().splitlines() == [
        f"Error: model not found: org/missing is not a folder, and not in the Hugging Face cache "
        f"({tmp_path / 'hub'}); HF_HUB_OFFLINE is set, so the Hub was not asked"
    ]
    # Nothing listens on port 9: the Hub is unreachable, and the model is not cached.
    unreachable = _cli(
        "evaluate",
        str(mixed_catalog),
        "-m",
        "org/missing",
        HF_HOME=str(tmp_path),
        HF_HUB_OFFLINE="0",
        HF_ENDPOINT="http://127.0.0.1:9",
    )
    assert unreachable.returncode == 1
    lines = unreachable.stderr.strip().splitlines()
    assert len(lines) == 1 and "Hugging Face Hub could not be reached" in lines[0], lines
