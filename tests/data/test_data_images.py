"""Tests for rcml_st.data.images.load_image: RGB conversion, errors and the bounded cache."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from rcml_st.data import images as images_module
from rcml_st.data import load_image
from rcml_st.errors import InputDataError


@pytest.fixture(autouse=True)
def _fresh_cache():
    load_image.cache_clear()
    yield
    load_image.cache_clear()


@pytest.mark.parametrize(
    ("mode", "colour", "expected"),
    [
        ("L", 100, (100, 100, 100)),
        ("RGBA", (10, 20, 30, 0), (255, 255, 255)),  # fully transparent -> white
        ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
        ("RGB", (1, 2, 3), (1, 2, 3)),
    ],
)
def test_load_image_returns_rgb(tmp_path, mode, colour, expected):
    path = tmp_path / "x.png"
    Image.new(mode, (4, 3), colour).save(path)
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (4, 3)
    assert image.getpixel((0, 0)) == expected


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.new("RGB", (40, 20), (0, 0, 255)).save(path, exif=exif)
    assert load_image(path).size == (20, 40)


def test_missing_and_corrupt_images_name_the_path(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(InputDataError, match=r"missing\.png: image not found") as info:
        load_image(missing)
    assert info.value.path == str(missing)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputDataError, match=r"corrupt\.png: cannot read image: "):
        load_image(corrupt)


def test_repeated_loads_hit_the_cache(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (8, 8), (9, 9, 9)).save(path)
    first = load_image(path)
    second = load_image(str(path))
    assert second is first
    info = load_image.cache_info()
    assert (info["hits"], info["misses"], info["items"]) == (1, 1, 1)
    assert info["bytes"] == 8 * 8 * 3


def test_a_rewritten_file_is_not_served_stale(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (8, 8), (0, 0, 0)).save(path)
    assert load_image(path).getpixel((0, 0)) == (0, 0, 0)
    Image.new("RGB", (9, 9), (255, 0, 0)).save(path)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_image(path).getpixel((0, 0)) == (255, 0, 0)


def test_cache_is_bounded_by_count_and_bytes():
    cache = images_module._ImageCache(max_items=3, max_bytes=10 * 10 * 3 * 2)
    for i in range(5):
        cache.put((f"small{i}",), Image.new("RGB", (5, 5)))
    assert cache.info()["items"] == 3
    assert cache.get(("small0",)) is None and cache.get(("small4",)) is not None  # least recent went first
    for i in range(3):
        cache.put((f"big{i}",), Image.new("RGB", (10, 10)))
    info = cache.info()
    assert info["bytes"] <= 10 * 10 * 3 * 2
    assert cache.get(("big2",)) is not None and cache.get(("big0",)) is None
    cache.put(("huge",), Image.new("RGB", (100, 100)))  # larger than the whole budget: not cached
    assert cache.get(("huge",)) is None


def test_the_module_cache_has_sane_bounds():
    info = load_image.cache_info()
    assert 0 < info["max_items"] <= 1024
    assert 0 < info["max_bytes"] <= 1024**3


def test_pil_images_pass_through_as_rgb():
    image = load_image(Image.new("L", (2, 2), 7))
    assert image.mode == "RGB" and image.getpixel((1, 1)) == (7, 7, 7)
