"""`rcml-st train --backbone rcml-lite`: the real pretrained backbone trains offline and loads back."""

from __future__ import annotations

import numpy as np
import pytest
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st

pytestmark = pytest.mark.slow


def test_train_rcml_lite_end_to_end_and_load_it_back(mixed_catalog, tmp_path):
    # SentenceTransformer(dir, trust_remote_code=True) on a saved rcml-lite: tests/modules/test_towers.py.
    out = tmp_path / "lite"
    args = ["train", str(mixed_catalog), "-o", str(out), "--backbone", "rcml-lite", "--epochs", "1"]
    result = CliRunner().invoke(app, [*args, "--batch-size", "4", "--pairs-per-epoch", "8", "--lr", "1e-4"])
    assert result.exit_code == 0, result.output
    assert "random-init backbone" not in result.output  # rcml-lite is pretrained: no --lr note

    model = rcml_st.load(out, device="cpu")
    relations = rcml_st.relation_vocabulary(model)
    assert relations  # the data's relations were saved with it
    items = [{"text": "red pram"}, {"text": "blue rattle"}]
    vectors = model.encode(items, relation=relations[0])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
