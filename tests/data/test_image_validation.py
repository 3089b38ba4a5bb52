"""Images are decoded to the end when a data file is validated: a truncated JPEG is reported with
the data file's line, --skip-invalid skips it, and one that breaks after validation is still
reported with its line, not its position in a batch."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from rcml_st.cli.main import app
from typer.testing import CliRunner

import rcml_st
from rcml_st.data import read_catalog, stream_catalog
from rcml_st.errors import InputDataError
from rcml_st.index import RelationIndex, index_catalog

runner = CliRunner()


def _jpeg(path, seed: int = 0) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path.read_bytes()


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def data(jsonl, tmp_path):
    for i in range(4):
        _jpeg(tmp_path / "images" / f"{i}.jpg", seed=i)
    return jsonl(*({"id": f"B{i}", "text": f"bib {i}", "image": f"images/{i}.jpg"} for i in range(4)))


def test_a_truncated_jpeg_fails_validation_with_its_line(data, tmp_path):
    _truncate(tmp_path / "images" / "2.jpg")
    with Image.open(tmp_path / "images" / "2.jpg") as img:
        img.verify()  # the header check alone passes it
    for read in (read_catalog, stream_catalog):
        with pytest.raises(
            InputDataError, match=r"data\.jsonl:3: unreadable image .*2\.jpg: image file is truncated"
        ):
            read(data)
    assert [item.id for item in read_catalog(data, skip_invalid=True).items] == ["B0", "B1", "B3"]
    assert len(stream_catalog(data, skip_invalid=True)) == 3


def test_the_index_command_reports_the_line_and_skip_invalid_skips_it(data, tmp_path, tiny_clip_config):
    folder = tmp_path / "model"
    rcml_st.build_model(tiny_clip_config, relations=["matches in colour"], device="cpu").save_pretrained(
        str(folder)
    )
    _truncate(tmp_path / "images" / "2.jpg")
    args = ["index", str(data), "-m", str(folder), "--qdrant-path", str(tmp_path / "q"), "--no-progress"]
    failed = runner.invoke(app, args)
    assert failed.exit_code == 2
    assert failed.stderr.startswith(f"Error: {data}:3: unreadable image"), failed.stderr
    skipped = runner.invoke(app, [*args, "--skip-invalid"])
    assert skipped.exit_code == 0, skipped.output
    assert "'matches in colour' 3" in skipped.stdout, skipped.stdout


def test_an_image_broken_after_validation_is_reported_with_its_line(data, tmp_path, tiny_clip_config):
    catalog = read_catalog(data)
    _truncate(tmp_path / "images" / "3.jpg")
    model = rcml_st.build_model(tiny_clip_config, relations=["matches in colour"], device="cpu")
    with RelationIndex.connect(path=tmp_path / "q") as index, pytest.raises(InputDataError) as caught:
        index_catalog(model, catalog, index, batch_size=4)
    assert str(caught.value).startswith(f"{data}:4: cannot read image: image file is truncated")
