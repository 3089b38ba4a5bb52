"""The model folder holds the model only: checkpoints and run.json live in DIR.checkpoints next to it."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import rcml_st
from rcml_st.training import train
from rcml_st.training.checkpoints import (
    adopt_legacy_checkpoints,
    checkpoints_dir,
    last_checkpoint,
    legacy_checkpoints_dir,
    read_run,
    write_run,
)


def _files(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def _saved_files(model_dir: Path, elsewhere: Path) -> set[str]:
    """The files a model consists of: those ``save_pretrained`` writes for it."""
    rcml_st.load(model_dir, device="cpu").save_pretrained(str(elsewhere))
    return _files(elsewhere)


def test_checkpoints_live_next_to_the_model_folder(tmp_path, monkeypatch):
    assert checkpoints_dir(tmp_path / "rcml-baby") == tmp_path / "rcml-baby.checkpoints"
    assert checkpoints_dir(Path("runs/tiny/")) == Path("runs/tiny.checkpoints")
    monkeypatch.chdir(tmp_path)
    assert checkpoints_dir(".") == tmp_path.parent / f"{tmp_path.name}.checkpoints"
    write_run(tmp_path / "m", {"lr": 0.1})
    assert (tmp_path / "m.checkpoints" / "run.json").is_file() and not (tmp_path / "m").exists()
    assert read_run(tmp_path / "m") == {"lr": 0.1}


def _fake_checkpoint(folder: Path, step: int) -> None:
    (folder / f"checkpoint-{step}").mkdir(parents=True)
    (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"epoch": 1.0}))


def test_the_old_layout_is_found_and_moved_next_to_the_model(tmp_path):
    model = tmp_path / "m"
    _fake_checkpoint(legacy_checkpoints_dir(model), 3)
    (legacy_checkpoints_dir(model) / "run.json").write_text('{"lr": 0.5}')
    assert last_checkpoint(model) == model / "checkpoints" / "checkpoint-3"
    assert read_run(model) == {"lr": 0.5}

    assert adopt_legacy_checkpoints(model) == checkpoints_dir(model)
    assert not legacy_checkpoints_dir(model).exists()
    assert last_checkpoint(model) == checkpoints_dir(model) / "checkpoint-3"
    assert read_run(model) == {"lr": 0.5}
    assert adopt_legacy_checkpoints(model) is None  # nothing left to move


def test_the_new_layout_wins_when_both_exist(tmp_path):
    model = tmp_path / "m"
    _fake_checkpoint(legacy_checkpoints_dir(model), 3)
    _fake_checkpoint(checkpoints_dir(model), 6)
    assert adopt_legacy_checkpoints(model) is None
    assert last_checkpoint(model) == checkpoints_dir(model) / "checkpoint-6"
    assert legacy_checkpoints_dir(model).is_dir()  # left alone


def test_a_trained_folder_is_the_model_only_and_an_old_layout_run_still_resumes(quick_config, tmp_path):
    config = quick_config(output=tmp_path / "old", epochs=1)
    train(config)
    out = config.output
    assert not (out / "checkpoints").exists()
    assert {p.name for p in checkpoints_dir(out).iterdir()} == {"run.json", "checkpoint-3"}
    # `du -s` of the folder is the model's own files: the same files as a fresh save of the model.
    first_files = _files(out)
    assert first_files == _saved_files(out, tmp_path / "fresh")

    # An rcml-st 0.1 run kept its checkpoints inside the model folder: put them back there.
    os.replace(checkpoints_dir(out), out / "checkpoints")
    lines: list[str] = []
    result = train(dataclasses.replace(config, epochs=2, resume=True), log=lines.append)
    assert result.resumed_from == 1.0
    assert any("moved the checkpoints of the old layout" in line for line in lines)
    assert not (out / "checkpoints").exists()
    assert sorted(p.name for p in checkpoints_dir(out).glob("checkpoint-*")) == [
        "checkpoint-3",
        "checkpoint-6",
    ]
    assert _files(out) == first_files  # the model only, again
