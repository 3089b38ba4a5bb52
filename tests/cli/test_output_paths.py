"""`rcml-st evaluate` checks its --json and --plot paths before evaluating anything."""

from __future__ import annotations

import pytest
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st
import rcml_st.evaluation.report

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_clip_config):
    folder = tmp_path_factory.mktemp("eval-paths") / "m"
    rcml_st.build_model(tiny_clip_config, device="cpu").save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize(
    ("option", "name", "message"),
    [
        ("--json", "a-file/report.json", "a-file is a file, not a folder"),
        ("--json", "folder", "is a folder, not a file"),
        ("--plot", "plot.txt", "the file name must end in .png"),
        ("--plot", "a-file/plot.png", "a-file is a file, not a folder"),
    ],
)
def test_a_bad_output_path_fails_before_the_evaluation(
    option, name, message, model_dir, mixed_catalog, tmp_path, monkeypatch
):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    calls = []
    monkeypatch.setattr(rcml_st.evaluation.report, "evaluate_catalog", lambda *a, **k: calls.append(1))
    result = runner.invoke(
        app,
        ["evaluate", str(mixed_catalog), "-m", str(model_dir), option, str(tmp_path / name), "--no-progress"],
    )
    assert result.exit_code == 2, result.output
    assert calls == []  # nothing was evaluated
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {option} ") and message in lines[0], lines
