"""The files of a trained model: whole, with the umask's permissions, no temporary leftovers inside."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import rcml_st
from rcml_st.atomic import TEMP_SUFFIX
from rcml_st.training import train


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(folder):
    return {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*")}


def test_a_trained_model_has_umask_modes_and_nothing_else(quick_config, umask_022):
    config = quick_config(epochs=1)
    stale = config.output.parent / f".{config.output.name}.staging-killed{TEMP_SUFFIX}"
    stale.mkdir(parents=True)  # what a save killed by SIGKILL leaves next to the model
    (stale / ".tmpAb12Cd").write_bytes(b"half a weights file")
    train(config)
    modes = _modes(config.output)
    assert modes["open_clip_model.safetensors"] == 0o644
    assert modes["1_RelationPooling/model.safetensors"] == 0o644
    assert modes["1_RelationPooling"] == 0o755
    assert {mode for name, mode in modes.items() if "/" not in name and "." in name} == {0o644}
    assert not [name for name in modes if name.split("/")[-1].startswith(".")]  # no temporary file
    assert not stale.exists()
    assert [p.name for p in config.output.parent.iterdir() if p.name.startswith(".")] == []
    assert "staging" not in (config.output / "README.md").read_text()
    assert rcml_st.load(config.output).encode(["bib"], relation="matches in colour").shape == (1, 32)


def test_a_failed_save_leaves_the_model_folder_as_it_was(quick_config, monkeypatch):
    from sentence_transformers import SentenceTransformer

    original = SentenceTransformer.save_pretrained

    def broken_save(self, path, *args, **kwargs):
        if "checkpoint-" in str(path):  # the trainer's checkpoints save fine: the final save fails
            return original(self, path, *args, **kwargs)
        Path(path).mkdir(parents=True, exist_ok=True)
        Path(path, "modules.json").write_text("[")  # half written when the disk fills up
        raise OSError(28, "No space left on device")

    config = quick_config(epochs=1)
    monkeypatch.setattr(SentenceTransformer, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="No space left"):
        train(config)
    assert not config.output.exists() or not any(config.output.iterdir())
    assert [p.name for p in config.output.parent.iterdir() if p.name.startswith(".")] == []


def test_the_weights_of_a_plain_save_pretrained_keep_the_umask(tmp_path, tiny_clip_config, umask_022):
    rcml_st.build_model(tiny_clip_config, device="cpu").save_pretrained(str(tmp_path / "m"))
    assert _modes(tmp_path / "m")["open_clip_model.safetensors"] == 0o644
