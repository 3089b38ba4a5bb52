"""Suite-wide test settings: offline, and the tiny open_clip architecture every test uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing may reach a model hub: every model here is built from a local config or directory.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# OpenMP threads that spin while waiting make the tiny models' many small ops several times slower
# whenever anything else runs on the 2 cores (docs/guides/process-tuning.md). It must be set before
# torch is first imported, which in a test session is long before any CLI call.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

FIXTURES = Path(__file__).parent / "fixtures"
TINY_CLIP = FIXTURES / "tiny-clip.json"


@pytest.fixture(scope="session")
def tiny_clip_config() -> Path:
    """Path to a tiny open_clip model config (32-d, 32 px images, 2 layers per tower)."""
    return TINY_CLIP


def write_mixed_catalog(root: Path, n_items: int = 30) -> Path:
    """A generated catalogue where some items lack an image and others lack a text.

    Every 5th item (S0005, S0010, ...) is text-only, every 7th that is not also a 5th (S0007,
    S0014, ...) image-only; the rest have both. Returns the data file's path.
    """
    import json

    from rcml_st.data import generate_catalog

    synthetic = generate_catalog(root, n_items=n_items, holdout=0, seed=3, image_size=32)
    lines = []
    for n, line in enumerate(synthetic.train_path.read_text().splitlines(), start=1):
        record = json.loads(line)
        if n % 5 == 0:
            del record["image"]
        elif n % 7 == 0:
            del record["text"]
        lines.append(json.dumps(record))
    path = root / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def mixed_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 generated items (``write_mixed_catalog``), some text-only, some image-only."""
    return write_mixed_catalog(tmp_path_factory.mktemp("catalog"))
