"""`torchrun --nproc_per_node 2 -m rcml_st.cli train`: the same training on two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rcml_st
from rcml_st.training.checkpoints import checkpoints_dir


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_one_model(synthetic, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    assert torchrun, "torchrun comes with torch"
    out = tmp_path / "ddp-model"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    command = [
        str(torchrun),
        "--standalone",  # a free local port for the rendezvous
        "--nproc_per_node",
        "2",
        "-m",
        "rcml_st.cli",
        "train",
        str(synthetic.train_path),
        "--output",
        str(out),
        "--backbone",
        "rcml-tiny",
        "--lr",
        "1e-3",
        "--batch-size",
        "16",
        "--pairs-per-epoch",
        "128",
        "--epochs",
        "2",
        "--device",
        "cpu",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 processes" in done.stdout  # printed once, by rank 0
    assert done.stdout.count("epoch 2/2  loss") == 1
    # 128 pairs per epoch in batches of 16, shared by two processes: 4 steps per epoch.
    state = json.loads((checkpoints_dir(out) / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8 and state["epoch"] == 2.0
    model = rcml_st.load(out)
    assert rcml_st.relation_vocabulary(model) == sorted(synthetic.relations)
