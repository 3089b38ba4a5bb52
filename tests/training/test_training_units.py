"""Device choice, checkpoint discovery, resumable options, built-in architectures, epoch lines."""

from __future__ import annotations

import json
import re

import pytest

from rcml_st.errors import UsageError
from rcml_st.training import ARCHITECTURES, choose_device, write_architecture
from rcml_st.training.callbacks import format_epoch, format_eval
from rcml_st.training.checkpoints import last_checkpoint
from rcml_st.training.identity import DATA_FINGERPRINT, check_same_run


def test_device_auto_is_cpu_without_a_gpu_and_cuda_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto").device == "cpu"
    assert choose_device("CPU").bf16 is False
    with pytest.raises(UsageError, match="no CUDA GPU"):
        choose_device("cuda")
    with pytest.raises(UsageError, match="--device must be one of"):
        choose_device("tpu")


def test_device_auto_takes_cuda_with_bf16_when_present(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    choice = choose_device("auto")
    assert (choice.device, choice.bf16) == ("cuda", True)
    assert "Fake GPU" in choice.description


def test_last_checkpoint_is_the_latest_complete_one(tmp_path):
    folder = tmp_path / "checkpoints"
    for step, complete in ((4, True), (8, True), (12, False)):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"epoch": step / 4}))
    (folder / "checkpoint-x").mkdir()
    assert last_checkpoint(tmp_path).name == "checkpoint-8"
    assert last_checkpoint(tmp_path / "elsewhere") is None


def test_resuming_allows_more_epochs_but_not_other_training_options(tmp_path):
    before = {"lr": 0.001, "epochs": 2, "device": "cpu", "seed": 0, DATA_FINGERPRINT: {"size": 1}}
    assert check_same_run(before, {**before, "epochs": 4, "device": "cuda"}, tmp_path) is None
    with pytest.raises(UsageError, match=r"no run\.json"):
        check_same_run(None, before, tmp_path)
    with pytest.raises(UsageError, match=re.escape("lr: 0.001 -> 0.01")):
        check_same_run(before, {**before, "lr": 0.01}, tmp_path)


def test_builtin_architectures_are_open_clip_configs(tmp_path):
    import rcml_st

    for name in ARCHITECTURES:
        path = write_architecture(name, tmp_path / f"{name}.json")
        model = rcml_st.build_model(path, device="cpu")
        assert model.get_embedding_dimension() == ARCHITECTURES[name]["embed_dim"]
    with pytest.raises(ValueError, match="unknown built-in"):
        write_architecture("rcml-huge", tmp_path / "x.json")


def test_epoch_and_eval_lines():
    line = format_epoch({"epoch": 2.0, "loss": 1.5, "loss_tt": 0.5, "loss_it": 1.0}, 3)
    assert line == "epoch 2/3  loss 1.5000  tt 0.5000  it 1.0000"
    assert format_eval({"eval_avg_hit@5": 0.5}) == "  eval: hit@5 0.5000"
    assert format_eval({"eval_runtime": 1.0}) == ""
