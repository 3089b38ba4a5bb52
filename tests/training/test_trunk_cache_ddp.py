"""The trunk cache under a process group: each process computes its share, all of them read all of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ITEMS = 10

# One process of the group (run with `python -c`, so nothing of the test module is imported).
WORKER = """
import json, sys
from pathlib import Path
import torch
import torch.distributed as dist
import rcml_st
from rcml_st.data import read_catalog
from rcml_st.training.frozen import freeze_backbone
from rcml_st.training.trunk_cache import TrunkCache

rank, world_size, rendezvous, folder, data, out, items = sys.argv[1:]
rank, world_size, items = int(rank), int(world_size), int(items)
dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world_size)
torch.manual_seed(0)
model = rcml_st.build_model("rcml-tiny", device="cpu")
freeze_backbone(model)
chosen = read_catalog(data).items[:items]
texts, images = [i.text for i in chosen], [i.image for i in chosen]
cache = TrunkCache.build(model[0], texts, images, folder)
features = model[0].preprocess([{"text": t, "image": p} for t, p in zip(texts, images)])
with torch.no_grad():
    direct_text = model[0].text_trunk(features["input_ids"])
    direct_image = model[0].image_trunk(features["pixel_values"])
errors = []
# Items of both shards, interleaved and reversed, from memory and from the memory-mapped files.
for source in (cache, TrunkCache(cache.folder, memory_gb=0)):
    order = list(range(items))[::-1]
    text, image = source.text_trunk([texts[i] for i in order]), source.image_trunk([images[i] for i in order])
    length = text.tokens.shape[1]
    want_mask = direct_text.mask[order, :length]
    errors.append(int(not torch.equal(text.mask, want_mask)))
    want_tokens = direct_text.tokens[order, :length] * want_mask[..., None]
    errors.append((text.tokens - want_tokens).abs().max().item())
    errors.append((text.pooled - direct_text.pooled[order]).abs().max().item())
    errors.append((image.tokens - direct_image.tokens[order]).abs().max().item())
result = {
    "counts": [cache.text_count, cache.image_count],
    "shards": sorted(p.name for p in cache.folder.glob("image-*.pt")),
    "pooled": cache.image_trunk(images).pooled.sum().item(),
    "errors": errors,
}
Path(out, f"rank{rank}.json").write_text(json.dumps(result))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_processes_share_the_work_and_both_read_the_whole_cache(tmp_path, synthetic):
    rendezvous = f"file://{tmp_path / 'rendezvous'}"
    common = [rendezvous, str(tmp_path / "cache"), str(synthetic.train_path), str(tmp_path), str(ITEMS)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen([sys.executable, "-c", WORKER, rank, "2", *common], env=env, stderr=subprocess.PIPE)
        for rank in ("0", "1")
    ]
    errors = [p.communicate(timeout=240)[1].decode()[-2000:] for p in processes]
    assert all(p.returncode == 0 for p in processes), errors
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results[0]["counts"] == results[1]["counts"] == [ITEMS, ITEMS]
    assert results[0]["shards"] == ["image-0-0.pt", "image-1-0.pt"]  # one share per process
    assert results[0]["pooled"] == pytest.approx(results[1]["pooled"], abs=1e-5)
    # Batches that mix both processes' shards serve what the trunks compute (padding zeroed).
    assert max(max(r["errors"]) for r in results) < 1e-5, results
