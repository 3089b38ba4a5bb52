"""The trunk cache under a process group: each process computes its share, all of them read all of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

ITEMS = 10


def _build(rank: int, world_size: int, rendezvous: str, folder: str, data: str, out: str) -> None:
    import torch.distributed as dist

    import rcml_st
    from rcml_st.data import read_catalog
    from rcml_st.training.frozen import freeze_backbone
    from rcml_st.training.trunk_cache import TrunkCache

    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        model = rcml_st.build_model("rcml-tiny", device="cpu")
        freeze_backbone(model)
        items = read_catalog(data).items[:ITEMS]
        texts, images = [i.text for i in items], [i.image for i in items]
        cache = TrunkCache.build(model[0], texts, images, folder)
        trunk = cache.image_trunk(images)
        result = {
            "counts": [cache.text_count, cache.image_count],
            "shards": sorted(p.name for p in cache.folder.glob("image-*.json")),
            "pooled": trunk.pooled.sum().item(),
        }
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_share_the_work_and_both_read_the_whole_cache(tmp_path, synthetic):
    rendezvous = f"file://{tmp_path / 'rendezvous'}"
    args = (2, rendezvous, str(tmp_path / "cache"), str(synthetic.train_path), str(tmp_path))
    mp.start_processes(_build, args=args, nprocs=2, join=True, start_method="spawn")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results[0]["counts"] == results[1]["counts"] == [ITEMS, ITEMS]
    assert results[0]["shards"] == ["image-0.json", "image-1.json"]  # one share per process
    assert results[0]["pooled"] == pytest.approx(results[1]["pooled"], abs=1e-5)
