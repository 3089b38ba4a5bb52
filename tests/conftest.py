"""Suite-wide test settings: offline, and the tiny open_clip architecture every test uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing may reach a model hub: every model here is built from a local config or directory.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURES = Path(__file__).parent / "fixtures"
TINY_CLIP = FIXTURES / "tiny-clip.json"


@pytest.fixture(scope="session")
def tiny_clip_config() -> Path:
    """Path to a tiny open_clip model config (32-d, 32 px images, 2 layers per tower)."""
    return TINY_CLIP
