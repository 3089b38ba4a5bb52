"""`rcml-st demo` run again with other data trains from the start instead of resuming the old run."""

from __future__ import annotations

import pytest
from rcml_st.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


@pytest.mark.slow
def test_a_second_demo_with_more_items_trains_on_them(tmp_path):
    workdir = tmp_path / "demo"
    args = ["demo", "--workdir", str(workdir), "--epochs", "1", "--pairs-per-epoch", "64", "--device", "cpu"]
    first = runner.invoke(app, [*args, "--items", "60"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, [*args, "--items", "80"])
    assert again.exit_code == 0, again.output
    out = " ".join(again.stdout.split())  # rich wraps long lines
    assert "resuming from" not in out
    assert "trained on other data or options (the content of the data file" in out
    assert "training from the start" in out
    assert "epoch 1/1" in out  # an epoch ran on the new data
    assert (
        "'matches in colour' 80" in again.stdout
    )  # the index holds the new items, rebuilt for the new model
