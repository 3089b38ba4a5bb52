"""`rcml-st train`: options, a short run, one-line errors with exit code 2, --resume, --skip-invalid."""

from __future__ import annotations

import json
import re
import runpy
import sys

import pytest
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st
from rcml_st.data import generate_catalog
from rcml_st.training.checkpoints import checkpoints_dir

runner = CliRunner()

INTERFACE_OPTIONS = (
    "--output",
    "--backbone",
    "--pretrained",
    "--epochs",
    "--batch-size",
    "--lr",
    "--beta",
    "--freeze-backbone",
    "--no-conditioning",
    "--no-intra-modal",
    "--no-inter-sample",
    "--eval",
    "--device",
    "--seed",
    "--resume",
    "--skip-invalid",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_catalog(tmp_path_factory.mktemp("cli-train"), n_items=60, seed=2, image_size=32)


def _train(*args: str):
    return runner.invoke(app, ["train", *args])


def _quick(data, out, *extra: str) -> list[str]:
    return [
        str(data.train_path),
        "--output",
        str(out),
        "--backbone",
        "rcml-tiny",
        "--lr",
        "1e-3",
        "--batch-size",
        "16",
        "--pairs-per-epoch",
        "32",
        "--device",
        "cpu",
        *extra,
    ]


def test_help_lists_every_interface_option_and_examples():
    result = _train("--help")
    assert result.exit_code == 0
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    for option in INTERFACE_OPTIONS:
        assert option in text, option
    assert "Examples:" in text and "1e-3" in text  # random init needs a higher --lr


def test_trains_and_saves_a_loadable_model(data, tmp_path):
    out = tmp_path / "m"
    result = _train(*_quick(data, out, "--epochs", "2"))
    assert result.exit_code == 0, result.output
    assert "epoch 1/2  loss" in result.stdout and "epoch 2/2  loss" in result.stdout
    assert "tt " in result.stdout and " it " in result.stdout
    assert "device: cpu" in result.stdout
    model = rcml_st.load(out)
    assert rcml_st.relation_vocabulary(model) == sorted(data.relations)
    assert len(list(checkpoints_dir(out).glob("checkpoint-*"))) == 2
    assert not (out / "checkpoints").exists()
    run = json.loads((checkpoints_dir(out) / "run.json").read_text())
    assert run["backbone"] == "rcml-tiny" and run["pretrained"] is None


def test_resume_continues_at_the_next_epoch(data, tmp_path):
    out = tmp_path / "m"
    assert _train(*_quick(data, out, "--epochs", "1")).exit_code == 0
    again = _train(*_quick(data, out, "--epochs", "2"))
    assert again.exit_code == 2 and "add --resume" in again.stderr
    resumed = _train(*_quick(data, out, "--epochs", "2", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert "resuming from checkpoint-2 (epoch 1 of 2)" in resumed.stdout
    assert "epoch 2/2  loss" in resumed.stdout and "epoch 1/2" not in resumed.stdout


def test_bad_data_is_one_line_with_file_and_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "A", "text": "bib"}\n{not json\n')
    result = _train(str(bad), "-o", str(tmp_path / "m"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {bad}:2: bad JSON") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "m").exists()  # nothing was started


def test_skip_invalid_continues_and_reports_the_skipped_records(data, tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    lines = data.train_path.read_text().splitlines()
    mixed.write_text("\n".join([*lines, "{not json", '{"id": "X"}']) + "\n")
    # The good records live next to the generated images: write the file beside them.
    target = data.train_path.parent / "mixed.jsonl"
    target.write_text(mixed.read_text())
    args = _quick(data, tmp_path / "m", "--epochs", "1", "--skip-invalid")
    args[0] = str(target)
    result = _train(*args)
    assert result.exit_code == 0, result.output
    assert "skipped 2 records" in result.stderr and "bad JSON" in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--no-conditioning", "--beta", "0.3"), "--no-conditioning means beta = 1"),
        (("--device", "cuda"), "no CUDA GPU"),
        (("--backbone", "no-such-model"), "unknown open_clip model"),
    ],
)
def test_bad_options_exit_2_with_one_line(data, tmp_path, extra, message, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = _quick(data, tmp_path / "m")
    if "--backbone" in extra:
        args[args.index("--backbone") + 1] = extra[1]
    else:
        args += list(extra)
    result = _train(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_python_dash_m_rcml_st_cli_runs_the_command_line(monkeypatch, capsys):
    # `torchrun ... -m rcml_st.cli train ...` and `accelerate launch -m rcml_st.cli train ...`
    monkeypatch.setattr(sys, "argv", ["rcml_st.cli", "train", "--help"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("rcml_st.cli", run_name="__main__", alter_sys=True)
    assert info.value.code == 0
    assert "Train an RCML model on DATA.jsonl" in capsys.readouterr().out
