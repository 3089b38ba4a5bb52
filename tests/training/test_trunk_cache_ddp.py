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
result = {
    "counts": [cache.text_count, cache.image_count],
    "shards": sorted(p.name for p in cache.folder.glob("image-*.json")),
    "pooled": cache.image_trunk(images).pooled.sum().item(),
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
    assert results[0]["shards"] == ["image-0.json", "image-1.json"]  # one share per process
    assert results[0]["pooled"] == pytest.approx(results[1]["pooled"], abs=1e-5)
