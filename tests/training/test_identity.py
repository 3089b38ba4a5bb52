"""--resume continues only the same run (same data content and options), and a model is written only
where it replaces nothing but an RCML model of the same run (else --overwrite)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from rcml_st.cli.main import app
from transformers import TrainerCallback
from typer.testing import CliRunner

from rcml_st.errors import UsageError
from rcml_st.training import train
from rcml_st.training.checkpoints import checkpoints_dir

runner = CliRunner()


class _InterruptAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt


@pytest.fixture
def interrupted(quick_config, synthetic, tmp_path):
    """A run interrupted after its first checkpoint, on its own copy of the data."""
    data = synthetic.train_path.with_name(f"copy-{tmp_path.name}.jsonl")  # images resolve beside it
    shutil.copy(synthetic.train_path, data)
    config = quick_config(data=data, output=tmp_path / "model")
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[_InterruptAfterFirstSave()])
    return dataclasses.replace(config, resume=True)


def test_resume_refuses_a_rewritten_data_file_and_overwrite_starts_over(interrupted):
    lines = interrupted.data.read_text().splitlines()
    interrupted.data.write_text("\n".join(reversed(lines)) + "\n")  # same size, other content
    with pytest.raises(
        UsageError, match=r"the data file .*copy-.*\.jsonl \(same size, other bytes.*--overwrite"
    ):
        train(interrupted)
    interrupted.data.write_text("\n".join(lines[:-5]) + "\n")
    with pytest.raises(UsageError, match=r"bytes then, .* bytes now"):
        train(interrupted)
    said: list[str] = []
    result = train(dataclasses.replace(interrupted, resume=False, overwrite=True), log=said.append)
    assert result.resumed_from is None and [round(h["epoch"]) for h in result.history] == [1, 2]
    assert any("--overwrite: discarded the checkpoints" in line for line in said)
    recorded = json.loads((checkpoints_dir(interrupted.output) / "run.json").read_text())
    assert recorded["data_fingerprint"]["size"] == interrupted.data.stat().st_size


def test_an_unreadable_run_json_is_an_error_not_a_skipped_check(interrupted):
    (checkpoints_dir(interrupted.output) / "run.json").write_text("{half")
    with pytest.raises(UsageError, match=r"run\.json: unreadable .*--overwrite"):
        train(dataclasses.replace(interrupted, lr=0.5))
    (checkpoints_dir(interrupted.output) / "run.json").unlink()
    with pytest.raises(UsageError, match=r"no run\.json"):
        train(interrupted)


def test_the_same_run_still_resumes(interrupted):
    result = train(dataclasses.replace(interrupted, epochs=3))
    assert result.resumed_from == 1.0


def test_a_model_is_not_written_into_a_folder_of_other_files(quick_config, tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project\n")
    with pytest.raises(UsageError, match=r"not an RCML model \(it holds README\.md\).*--overwrite"):
        train(quick_config(output=project))
    monkeypatch.chdir(project)
    args = [
        "train", str(quick_config().data), "-o", ".", "--backbone", "rcml-tiny", "--batch-size", "16",
        "--pairs-per-epoch", "32", "--epochs", "1", "--device", "cpu",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "not an RCML model" in result.stderr and "--overwrite" in result.stderr
    assert (project / "README.md").read_text() == "my project\n"
    assert not (tmp_path / "project.checkpoints").exists()


def test_a_model_without_its_checkpoints_is_not_silently_replaced(quick_config):
    config = quick_config(epochs=1)
    train(config)
    shutil.rmtree(checkpoints_dir(config.output))
    before = (config.output / "modules.json").stat().st_mtime_ns
    with pytest.raises(UsageError, match=r"already holds a trained model.*--overwrite"):
        train(dataclasses.replace(config, seed=5))
    assert (config.output / "modules.json").stat().st_mtime_ns == before
    train(dataclasses.replace(config, seed=5, overwrite=True))
    with pytest.raises(UsageError, match="give one of them"):
        train(dataclasses.replace(config, resume=True, overwrite=True))
