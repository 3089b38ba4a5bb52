"""``train(relation_adapter=RANK)``: the adapter trains, is recorded in run.json and needs conditioning."""

from __future__ import annotations

import numpy as np
import pytest

import rcml_st
from rcml_st.errors import UsageError
from rcml_st.training import train
from rcml_st.training.checkpoints import read_run


def test_the_adapter_alone_makes_relations_differ_after_a_few_steps(quick_config, tmp_path):
    # beta = 1: without the adapter every relation gives CLIP's own vector (see --no-conditioning).
    out = train(quick_config(output=tmp_path / "adapted", beta=1.0, relation_adapter=8, lr=1e-2)).output
    assert read_run(out)["relation_adapter"] == 8
    model = rcml_st.load(out)
    assert model[1].relation_adapter == 8
    item = [{"text": "Nestling sleep sack, coral"}]
    colour = model.encode(item, relation="matches in colour")
    brand = model.encode(item, relation="made by the same brand")
    assert all(bool(adapter.scale.weight.abs().sum() > 0) for adapter in model[1].adapter.values())
    # Small after 6 steps (the scales start at zero and grow slowly), but the relation's doing.
    assert not np.allclose(colour, brand, atol=1e-6)


def test_the_adapter_needs_conditioning(quick_config):
    with pytest.raises(UsageError, match="--relation-adapter conditions on the relation"):
        train(quick_config(conditioning=False, relation_adapter=8))
