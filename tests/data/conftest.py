"""Fixtures for the data tests: tiny catalogue files and images written on the fly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture
def png(tmp_path: Path) -> Callable[..., Path]:
    """Writes a small PNG under tmp_path and returns its path."""

    def make(name: str = "images/a.png", colour: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (size, size), colour).save(path)
        return path

    return make


@pytest.fixture
def jsonl(tmp_path: Path) -> Callable[..., Path]:
    """Writes lines (dicts are dumped as JSON, strings/bytes are written as-is) to data.jsonl."""

    def make(*lines: dict | str | bytes, name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        chunks = []
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            chunks.append(line if isinstance(line, bytes) else line.encode("utf-8"))
        path.write_bytes(b"\n".join(chunks) + b"\n")
        return path

    return make
