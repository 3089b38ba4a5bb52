"""`rcml-st demo`: from an empty folder to relation-guided searches, and again (reusing the model)."""

from __future__ import annotations

import pytest
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st

runner = CliRunner()


@pytest.mark.slow
def test_demo_runs_end_to_end_from_an_empty_folder_and_again(tmp_path):
    workdir = tmp_path / "demo"
    args = ["demo", "--workdir", str(workdir), "--items", "120", "--epochs", "1", "--pairs-per-epoch", "128"]
    args += ["--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for step in range(1, 6):
        assert f"Step {step}/5" in out
    assert "90 training items, 30 held out" in out
    assert "Hit@5" in out
    assert "verified:" in out and "'matches in colour' 120" in out
    assert out.count("query: ") >= 1 and "share it" in out
    assert "text query" in out and "Done" in out
    model = rcml_st.load(workdir / "model")
    assert len(rcml_st.relation_vocabulary(model)) == 3
    assert (workdir / "data" / "train.jsonl").is_file() and (workdir / "qdrant").is_dir()

    again = runner.invoke(app, args)  # reuses the trained model, overwrites the index points
    assert again.exit_code == 0, again.output
    assert "resuming from" in again.stdout and "'matches in colour' 120" in again.stdout


def test_demo_help_has_examples():
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0 and "Examples:" in result.stdout and "--workdir" in result.stdout
