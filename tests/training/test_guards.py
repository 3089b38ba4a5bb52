"""Training stops at the first non-finite gradient or weight; nothing non-finite is saved as a model."""

from __future__ import annotations

import pytest
import torch
from rcml_st.cli.main import app
from safetensors.torch import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

from rcml_st.training import train
from rcml_st.training.checkpoints import checkpoints_dir
from rcml_st.training.guards import FiniteGuard, NonFiniteError

runner = CliRunner()


def _saved_tensors_finite(folder) -> bool:
    return all(
        bool(torch.isfinite(tensor).all())
        for path in folder.rglob("*.safetensors")
        for tensor in load_file(str(path)).values()
    )


def test_a_diverging_run_stops_with_a_clear_error_and_saves_no_model(quick_config):
    config = quick_config(lr=1e6)
    with pytest.raises(
        NonFiniteError, match=r"training diverged at step \d+ .* lower --lr \(this run: 1e\+06\)"
    ):
        train(config)
    assert not (config.output / "modules.json").exists()
    # Whatever checkpoints were written before the divergence hold finite weights only.
    assert _saved_tensors_finite(checkpoints_dir(config.output))


def test_the_cli_exits_1_with_one_line(synthetic, tmp_path, tiny_clip_config):
    out = tmp_path / "m"
    result = runner.invoke(
        app,
        [
            "train", str(synthetic.train_path), "-o", str(out), "--backbone", str(tiny_clip_config),
            "--lr", "1e6", "--batch-size", "16", "--pairs-per-epoch", "48", "--device", "cpu",
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "training diverged" in errors[0], result.stderr
    assert not (out / "modules.json").exists()


class _PoisonAtTheEnd(TrainerCallback):
    """Makes one weight NaN after the last step (past the per-step checks)."""

    def on_train_end(self, args, state, control, model=None, **kwargs):
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("nan")


def test_the_final_model_is_checked_before_it_is_saved(quick_config):
    config = quick_config(epochs=1)
    with pytest.raises(NonFiniteError, match=r"non-finite weights .* nothing was saved"):
        train(config, callbacks=[_PoisonAtTheEnd()])
    assert not (config.output / "modules.json").exists()


class _State:
    global_step, epoch = 4, 1.5


def test_the_guard_names_the_first_non_finite_gradient_and_weight():
    layer = torch.nn.Linear(2, 2)
    guard = FiniteGuard(lr=1e-3)
    layer(torch.ones(1, 2)).sum().backward()
    guard.on_pre_optimizer_step(None, _State(), None, model=layer)  # finite: no error
    layer.bias.grad[0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"step 5 \(epoch 1.50\): the gradient of bias"):
        guard.on_pre_optimizer_step(None, _State(), None, model=layer)
    with torch.no_grad():
        layer.weight[1, 1] = float("nan")
    with pytest.raises(NonFiniteError, match="the weight of weight"):
        guard.on_optimizer_step(None, _State(), None, model=layer)
