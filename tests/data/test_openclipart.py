"""The Open Clip Art parser and catalogue builder, on 36 real drawings from the Debian packages.

The fixture under ``tests/fixtures/openclipart`` mirrors the packages' layout: each SVG is the
real file cut after its ``</metadata>`` (the drawing's paths removed), each PNG the real one
shrunk to 48 px. Four artists, nine drawings each; plus a malformed SVG, one without a PNG and one
under the excluded ``shapes/`` folder.
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import pytest

from rcml_st.data.catalog import read_catalog
from rcml_st.data.openclipart import (
    RELATIONS,
    SAME_ARTIST,
    SAME_CATEGORY,
    SHARED_KEYWORD,
    artist_key,
    build_records,
    drop_oversized,
    held_out,
    parse_svg_metadata,
    scan_library,
    select_drawings,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "openclipart"
SVG = FIXTURE / "usr" / "share" / "openclipart" / "svg"
BUILDER = Path(__file__).resolve().parents[2] / "benchmarks" / "build_openclipart.py"


def _builder():
    spec = importlib.util.spec_from_file_location("build_openclipart", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parses_real_metadata():
    meta = parse_svg_metadata(SVG / "animals" / "bugs" / "coccinella_rollandin_arc_01.svg")
    assert meta.creator == "Architetto Francesco Rollandin"
    assert meta.title
    assert meta.keywords == ("architetto francesco rollandin", "insect")


def test_malformed_and_missing_metadata_give_none():
    assert parse_svg_metadata(SVG / "unsorted" / "malformed_fixture.svg") is None
    assert parse_svg_metadata(io.BytesIO(b"")) is None
    assert parse_svg_metadata(io.BytesIO(b"<svg><g/></svg>")) is None


def test_metadata_read_without_parsing_the_drawing():
    # A file broken after its metadata still gives its metadata: the parser stops there.
    head = (SVG / "unsorted" / "toros_01.svg").read_bytes().replace(b"</svg>", b"")
    meta = parse_svg_metadata(io.BytesIO(head + b"<path d='M0 0' <<< broken"))
    assert meta is not None and meta.creator == "Jose Hevia"


def test_entities_are_not_expanded_into_a_bomb():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(
            b'<!ENTITY %s "%s">' % (bytes([98 + i]), (b"&%s;" % bytes([97 + i])) * 10) for i in range(9)
        )
        + b']><svg xmlns:dc="http://purl.org/dc/elements/1.1/"><metadata><dc:title>&j;</dc:title>'
        + b"</metadata></svg>"
    )
    # expat (>= 2.4.1) refuses the billion-fold amplification: the file counts as malformed.
    assert parse_svg_metadata(io.BytesIO(bomb)) is None
    small = bomb.replace(b"&j;", b"&b;")  # 100 characters: an ordinary entity still works
    assert parse_svg_metadata(io.BytesIO(small)).title == "a" * 100


def test_scan_skips_and_counts():
    drawings, skipped = scan_library(FIXTURE)
    assert len(drawings) == 36
    assert skipped == {"excluded category": 1, "no png": 1, "no metadata": 1}
    assert all(d.png.is_file() and not d.category.startswith("shapes") for d in drawings)
    assert [d.id for d in drawings] == sorted(d.id for d in drawings)


def test_huge_pngs_are_left_out():
    drawings, skipped = drop_oversized(scan_library(FIXTURE)[0], max_pixels=48 * 40)
    assert skipped["png too large"] > 0 and len(drawings) == 36 - skipped["png too large"]
    from PIL import Image

    assert all(Image.open(d.png).width * Image.open(d.png).height <= 48 * 40 for d in drawings)


def test_records_link_by_category_artist_and_keyword():
    drawings, _ = scan_library(FIXTURE)
    records = build_records(drawings, partners=3, max_group_fraction=0.5)
    by_id = {r["id"]: r for r in records}
    meta = {d.id: d for d in drawings}
    for record in records:
        assert set(record["relations"]) <= set(RELATIONS)
        assert record["text"] and "keywords" in record and record["id"] not in str(record["relations"])
        for relation, targets in record["relations"].items():
            assert 1 <= len(targets) <= 3
            for target in targets:
                a, b = meta[record["id"]], meta[target]
                if relation == SAME_CATEGORY:
                    assert a.category == b.category
                elif relation == SAME_ARTIST:
                    assert a.meta.creator.lower() == b.meta.creator.lower()
                else:
                    assert set(a.meta.keywords) & set(b.meta.keywords)
    # The relations conflict: some same-artist partners are in another category.
    assert any(
        by_id[t]["category"] != r["category"] for r in records for t in r["relations"].get(SAME_ARTIST, [])
    )
    # The artist's name as a keyword links nothing by itself.
    assert all(
        set(meta[r["id"]].meta.keywords) & set(meta[t].meta.keywords) - {"architetto francesco rollandin"}
        for r in records
        for t in r["relations"].get(SHARED_KEYWORD, [])
    )
    assert build_records(drawings, partners=3, max_group_fraction=0.5) == records  # deterministic


def test_select_keeps_whole_artists_deterministically():
    drawings, _ = scan_library(FIXTURE)
    chosen = select_drawings(drawings, per_artist=4, seed=3)
    assert len(chosen) == 16 and chosen == select_drawings(drawings, per_artist=4, seed=3)
    assert len(select_drawings(drawings, min_per_artist=10)) == 0
    assert len(select_drawings(drawings, limit=12)) == 12


def test_held_out_is_a_stable_share():
    ids = [f"cat/item{i}" for i in range(2000)]
    share = sum(held_out(i, 0.25) for i in ids) / len(ids)
    assert 0.2 < share < 0.3
    assert [held_out(i, 0.25) for i in ids] == [held_out(i, 0.25) for i in ids]


def test_builder_writes_disjoint_valid_splits(tmp_path, capsys):
    builder = _builder()
    assert (
        builder.main([str(FIXTURE), "--output", str(tmp_path), "--held-out", "0.3", "--relative-images"]) == 0
    )
    train = read_catalog(tmp_path / "train.jsonl")
    test = read_catalog(tmp_path / "test.jsonl")
    train_ids = {item.id for item in train.items}
    test_ids = {item.id for item in test.items}
    assert train_ids and test_ids and not train_ids & test_ids
    assert len(train_ids | test_ids) == 36
    assert len(train.edges) > 0 and len(test.edges) > 0
    assert all(item.image and Path(item.image).is_file() for item in test.items)
    first = json.loads((tmp_path / "test.jsonl").read_text().splitlines()[0])
    assert not Path(first["image"]).is_absolute()
    assert "drawings with metadata" in capsys.readouterr().out


def test_builder_tuning_subsample_shares_no_artist_with_the_benchmark(tmp_path):
    # Four artists of nine drawings: the benchmark's selection (limit 18: two whole artists) and a
    # tuning selection disjoint from it by artist.
    drawings, _ = scan_library(FIXTURE)
    benchmark = {artist_key(d) for d in select_drawings(drawings, limit=18, seed=0)}
    builder = _builder()
    options = ["--limit", "18", "--seed", "1", "--disjoint-from-seed", "0", "--held-out", "0.3"]
    assert builder.main([str(FIXTURE), "--output", str(tmp_path), *options]) == 0
    by_id = {d.id: d for d in drawings}
    catalogues = [read_catalog(tmp_path / f"{name}.jsonl") for name in ("train", "test")]
    tuning = {artist_key(by_id[item.id]) for catalogue in catalogues for item in catalogue.items}
    assert len(benchmark) == 2 and len(tuning) == 2 and not benchmark & tuning


def test_builder_without_packages_is_one_error_line(tmp_path, capsys):
    assert _builder().main([str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_held_out_extremes(fraction):
    assert held_out("x", fraction) is bool(fraction)
