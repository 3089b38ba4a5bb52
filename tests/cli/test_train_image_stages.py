"""`rcml-st train --image-stage` / `--image-size`: recorded in run.json and the model; misuse is one line."""

from __future__ import annotations

import json

import pytest
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st
from rcml_st.data import generate_catalog
from rcml_st.training.checkpoints import checkpoints_dir

runner = CliRunner()
TINY_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
CONVNET = {"timm_model_name": "test_resnet", "timm_pool": "avg", "timm_proj": "linear", "image_size": 32}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_catalog(tmp_path_factory.mktemp("cli-stages"), n_items=40, seed=3, image_size=32)


@pytest.fixture(scope="module")
def convnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("convnet") / "convnet.json"
    path.write_text(json.dumps({"embed_dim": 32, "vision_cfg": CONVNET, "text_cfg": TINY_TEXT}))
    return path


def _args(data, out, backbone, *extra: str) -> list[str]:
    return [
        "train", str(data.train_path), "--output", str(out), "--backbone", str(backbone), "--lr", "1e-3",
        "--batch-size", "8", "--pairs-per-epoch", "16", "--epochs", "1", "--device", "cpu", *extra,
    ]  # fmt: skip


def test_image_stages_train_from_the_cache_and_are_recorded(data, convnet, tmp_path):
    out = tmp_path / "m"
    extra = ("--freeze-backbone", "--image-stage", "1", "--image-stage", "2")
    result = runner.invoke(app, _args(data, out, convnet, *extra))
    assert result.exit_code == 0, result.output
    assert "trunk cache built" in result.stdout
    assert json.loads((checkpoints_dir(out) / "run.json").read_text())["image_stages"] == [1, 2]
    model = rcml_st.load(out, device="cpu")
    assert model[0].image_stages == [1, 2]
    image = next(data.images_dir.glob("*.png"))
    assert model.encode([str(image)], relation=data.relations[0]).shape == (1, 32)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--image-stage", "1"), "need a timm ConvNet image tower"),
        (("--image-size", "224"), "an option of --backbone rcml-lite only"),
    ],
)
def test_misused_image_options_exit_2_with_one_line(data, tmp_path, extra, message):
    result = runner.invoke(app, _args(data, tmp_path / "m", "rcml-tiny", *extra))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_unused_image_options_are_not_recorded_so_earlier_runs_still_resume(tmp_path):
    from rcml_st.training import TrainConfig

    assert not {"image_stages", "image_size"} & set(TrainConfig("d.jsonl", tmp_path / "m").options())
    used = TrainConfig("d.jsonl", tmp_path / "m", image_stages=[3], image_size=224).options()
    assert used["image_stages"] == [3] and used["image_size"] == 224
