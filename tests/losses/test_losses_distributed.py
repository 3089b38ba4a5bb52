"""RCMLLoss under DDP: two CPU processes (gloo) score their queries against both processes' candidates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sentence_transformers.base.data_collator import BaseDataCollator

import rcml_st
from rcml_st.losses import RCMLLoss, RelationGraph

RELATIONS = ["matches in colour", "made by the same brand", "the same product"]
# Rank 0 holds relation-0 pairs only, rank 1 relation-1 pairs only: the ranks must agree on the
# union of relations to encode each other's candidates under their own queries' relations.
RANK_PAIRS = [[(0, 1, 0), (2, 3, 0), (8, 8, 2)], [(4, 5, 1), (6, 7, 1), (9, 9, 2)]]
GRAPH = [(0, 0, 3), (1, 4, 7)]  # a true positive in the other process's batch under relation 0, 1


def _batch(model, pairs, images):
    rows = []
    for source, target, relation in pairs:
        name = RELATIONS[relation]
        if source == target:
            anchor = {"text": f"item {source}", "image": None, "relation": name}
            positive = {"text": None, "image": images[target], "relation": name}
        else:
            anchor = {"text": f"item {source}", "image": images[source], "relation": name}
            positive = {"text": f"item {target}", "image": images[target], "relation": name}
        rows.append({"anchor": anchor, "positive": positive, "label": [source, target, relation]})
    batch = BaseDataCollator(model.preprocess)(rows)
    features = [
        {key[len(prefix) :]: value for key, value in batch.items() if key.startswith(prefix)}
        for prefix in ("anchor_", "positive_")
    ]
    return features, batch["label"]


def _model(config):
    torch.manual_seed(0)
    return rcml_st.build_model(config, device="cpu").eval()


def _loss(model):
    return RCMLLoss(model, RELATIONS, positives=RelationGraph(GRAPH, n_items=10, n_relations=3))


def _worker(rank: int, world: int, init_file: str, config: str, images: list[str], out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = _model(config)
        loss = _loss(model)
        features, labels = _batch(model, RANK_PAIRS[rank], images)
        terms = loss(features, labels)
        total = torch.stack(list(terms.values())).sum()
        total.backward()  # the gathered candidates carry gradients back to their own process
        grad = model[1].attention.in_proj_weight.grad.norm().item()
        record = {k: v.item() for k, v in terms.items()}
        record.update(candidates=loss.last_num_candidates, grad=grad)
        Path(out, f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_use_each_others_negatives(tmp_path, tiny_clip_config, images):
    mp.spawn(
        _worker,
        args=(2, str(tmp_path / "init"), str(tiny_clip_config), images, str(tmp_path)),
        nprocs=2,
        join=True,
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["candidates"] for r in ranks] == [6, 6]  # every query saw both processes' candidates
    assert all(r["grad"] > 0 for r in ranks)

    # One process with the whole batch scores the same queries against the same candidates; every
    # process has the same number of queries per term, so the mean of the ranks' means matches it.
    model = _model(tiny_clip_config)
    features, labels = _batch(model, RANK_PAIRS[0] + RANK_PAIRS[1], images)
    with torch.no_grad():
        full = _loss(model)(features, labels)
    for name, value in full.items():
        assert (ranks[0][name] + ranks[1][name]) / 2 == pytest.approx(value.item(), abs=1e-4), name

    # Without the other process's negatives the numbers differ: the gathered ones were used.
    local = []
    for pairs in RANK_PAIRS:
        features, labels = _batch(model, pairs, images)
        with torch.no_grad():
            local.append(_loss(model)(features, labels)["loss_ti"].item())
    assert sum(local) / 2 != pytest.approx(full["loss_ti"].item(), abs=1e-3)


def test_outside_distributed_training_gathering_is_a_no_op():
    from rcml_st.losses.distributed import gather_sizes, gather_with_grad, world

    assert world() == (0, 1)
    x = torch.ones(3, 2, requires_grad=True)
    assert gather_sizes(3, x.device) == [3]
    assert gather_with_grad(x, [3]) is x
    assert "RANK" not in os.environ or os.environ["RANK"] == "0"
