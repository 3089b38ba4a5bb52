"""Tests for rcml_st.data.catalog: validation messages, skipping, relations, subsets, writing."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from rcml_st.data import Catalog, Edge, Item, read_catalog, write_catalog
from rcml_st.errors import EXIT_BAD_INPUT, InputDataError

GOOD = {"id": "G", "text": "good item"}


# --------------------------------------------------------------------------- one error per case

# (bad line, text the message must contain). Each bad line is written as line 3 of the file,
# after a valid line 1 and a blank line 2 (blank lines are skipped but still counted).
BAD_LINES = {
    "bad JSON": ('{"id": "A", "text": ', "bad JSON"),
    "bad JSON NaN": ('{"id": "A", "text": "x", "price": NaN}', "bad JSON: NaN is not valid JSON"),
    "not UTF-8": (b'{"id": "A", "text": "caf\xe9"}', "not UTF-8"),
    "not an object": ("[1, 2]", "expected a JSON object, got list"),
    "null line": ("null", "expected a JSON object, got null"),
    "missing id": ('{"text": "x"}', "missing id"),
    "empty id": ('{"id": "  ", "text": "x"}', "empty id"),
    "non-string id": ('{"id": 7, "text": "x"}', "id must be a string, got 7"),
    "duplicate id": ('{"id": "G", "text": "again"}', "duplicate id 'G' (first seen on line 1)"),
    "no text or image": ('{"id": "A", "brand": "Acme"}', "item 'A' has neither text nor image"),
    "text not a string": ('{"id": "A", "text": ["x"]}', "item 'A': text must be a string, got ['x']"),
    "image not a string": ('{"id": "A", "image": 3}', "item 'A': image must be a string path, got 3"),
    "image missing": ('{"id": "A", "image": "images/nope.png"}', "image not found: "),
    "image not decodable": ('{"id": "A", "image": "images/broken.png"}', "not a recognised image format"),
    "image is a folder": ('{"id": "A", "image": "images"}', "image is not a file"),
    "relations not an object": (
        '{"id": "A", "text": "x", "relations": ["G"]}',
        "item 'A': relations must be an object of description -> list of ids",
    ),
    "relation targets not a list": (
        '{"id": "A", "text": "x", "relations": {"r": "G"}}',
        "item 'A': relation 'r' must map to a list of id strings, got 'G'",
    ),
    "relation target not a string": (
        '{"id": "A", "text": "x", "relations": {"r": ["G", 5]}}',
        "relation 'r' must map to a list of id strings",
    ),
    "empty relation description": (
        '{"id": "A", "text": "x", "relations": {" ": ["G"]}}',
        "item 'A': empty relation description",
    ),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_each_validation_error_is_one_line_naming_file_line_and_problem(case, jsonl, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.png").write_bytes(b"this is not a png")
    bad_line, expected = BAD_LINES[case]
    path = jsonl(GOOD, "", bad_line, {"id": "Z", "text": "after"})

    with pytest.raises(InputDataError) as info:
        read_catalog(path)

    message = str(info.value)
    assert message.startswith(f"{path}:3: "), message
    assert expected in message
    assert "\n" not in message
    assert info.value.line == 3
    assert info.value.path == str(path)
    assert info.value.exit_code == EXIT_BAD_INPUT


def test_missing_file_directory_and_empty_file_are_input_errors(tmp_path, jsonl):
    with pytest.raises(InputDataError, match="file not found"):
        read_catalog(tmp_path / "absent.jsonl")
    with pytest.raises(InputDataError, match="is a directory"):
        read_catalog(tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputDataError, match=r"empty\.jsonl: no items"):
        read_catalog(empty)
    with pytest.raises(InputDataError, match="no items"):
        read_catalog(jsonl("", "   ", ""))


def test_blank_lines_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "A", "text": "a"}\r\n\r\n{"id": "B", "text": "b"}\r\n')
    catalog = read_catalog(path)
    assert [item.id for item in catalog] == ["A", "B"]
    assert [item.line for item in catalog] == [1, 3]


def test_fields_metadata_and_to_input(jsonl, png):
    png("images/a.png")
    path = jsonl(
        {"id": "A", "text": "pillow", "image": "images/a.png", "brand": "Acme", "price": 24.5, "tags": ["x"]},
        {"id": "B", "image": "images/a.png", "text": ""},  # an empty text counts as no text
        {"id": "C", "text": "bib", "relations": None},
    )
    a, b, c = read_catalog(path).items
    assert a.metadata == {"brand": "Acme", "price": 24.5, "tags": ["x"]}
    assert a.to_input() == {"text": "pillow", "image": str(path.parent / "images" / "a.png")}
    assert b.text is None and b.to_input() == {"image": a.image}
    assert c.image is None and c.relations == {} and c.to_input() == {"text": "bib"}


# --------------------------------------------------------------------------- images: paths and laziness


def test_relative_image_paths_resolve_against_the_data_file_folder(tmp_path, png, jsonl, monkeypatch):
    png("shared/img.png")
    absolute = png("elsewhere/abs.png")
    path = jsonl(
        {"id": "A", "image": "../shared/img.png"},
        {"id": "B", "image": str(absolute)},
        name="sub/data.jsonl",
    )
    monkeypatch.chdir(absolute.parent)  # the working directory must not matter
    a, b = read_catalog(os.path.relpath(path)).items
    assert a.image == str(tmp_path / "shared" / "img.png")
    assert os.path.isabs(a.image)
    assert b.image == str(absolute)


def test_check_images_false_skips_the_image_check(jsonl):
    path = jsonl({"id": "A", "image": "images/missing.png"})
    with pytest.raises(InputDataError, match="image not found"):
        read_catalog(path)
    assert read_catalog(path, check_images=False).items[0].image.endswith("missing.png")


# --------------------------------------------------------------------------- skip_invalid


def test_skip_invalid_counts_by_reason_and_summarises(jsonl):
    path = jsonl(
        {"id": "A", "text": "a"},
        "{broken",
        {"id": "B", "image": "images/none.png"},
        "also broken",
        {"id": "A", "text": "dup"},
        {"id": "C", "text": "c"},
        {"id": "D"},
    )
    catalog = read_catalog(path, skip_invalid=True)
    assert [item.id for item in catalog] == ["A", "C"]
    expected = {"bad JSON": 2, "missing image": 1, "duplicate id": 1, "no text or image": 1}
    assert dict(catalog.skipped) == expected
    summary = catalog.skip_summary()
    assert summary.startswith("skipped 5 records: 2 bad JSON (first: ")
    assert f"{path}:2: bad JSON" in summary  # the first of each reason, not a later one
    assert f"{path}:4:" not in summary
    assert f"1 missing image (first: {path}:3: image not found" in summary
    assert f"1 duplicate id (first: {path}:5: duplicate id 'A'" in summary
    assert "\n" not in summary


def test_skip_summary_is_empty_without_skips(jsonl):
    assert read_catalog(jsonl(GOOD), skip_invalid=True).skip_summary() == ""


def test_skip_invalid_with_nothing_valid_still_fails(jsonl):
    with pytest.raises(InputDataError, match=r"no valid items \(skipped 2 records: 2 bad JSON"):
        read_catalog(jsonl("{", "}"), skip_invalid=True)


# --------------------------------------------------------------------------- relations


def test_dropped_targets_are_counted_in_one_warning(jsonl):
    path = jsonl(
        {"id": "A", "text": "a", "relations": {"r": ["B", "X1", "X2"], "s": ["X3"]}},
        {"id": "B", "text": "b", "relations": {"r": ["X1"]}},
    )
    warnings: list[str] = []
    catalog = read_catalog(path, on_warning=warnings.append)
    assert catalog.dropped_targets == 4
    assert warnings == [f"{path}: dropped 4 relation targets not in the file (e.g. 'X1')"]
    assert catalog.items[0].relations == {"r": ["B"]}  # "s" lost all its targets
    assert catalog.items[1].relations == {}
    assert catalog.relations == ["r"]


def test_dropped_targets_warning_goes_to_the_rcml_st_logger_by_default(jsonl, caplog):
    path = jsonl({"id": "A", "text": "a", "relations": {"r": ["nowhere"]}})
    with caplog.at_level(logging.WARNING, logger="rcml_st"):
        read_catalog(path)
    assert [r.getMessage() for r in caplog.records if r.name == "rcml_st"] == [
        f"{path}: dropped 1 relation target not in the file (e.g. 'nowhere')"
    ]


def test_no_warning_when_all_targets_exist(jsonl):
    warnings: list[str] = []
    read_catalog(
        jsonl({"id": "A", "text": "a", "relations": {"r": ["B"]}}, {"id": "B", "text": "b"}),
        on_warning=warnings.append,
    )
    assert warnings == []


def test_self_links_are_ignored_with_a_warning(jsonl):
    warnings: list[str] = []
    catalog = read_catalog(
        jsonl({"id": "A", "text": "a", "relations": {"r": ["A", "B"]}}, {"id": "B", "text": "b"}),
        on_warning=warnings.append,
    )
    assert catalog.items[0].relations == {"r": ["B"]}
    assert catalog.dropped_targets == 0
    assert warnings == [f"{catalog.path}: ignored 1 relation link from an item to itself"]


@pytest.fixture
def small(jsonl) -> Catalog:
    """A, B, C, D: r links A-B (twice), B-C and C-B; s links D->A; t has no edges left."""
    return read_catalog(
        jsonl(
            {"id": "A", "text": "a", "relations": {"r": ["B", "B"]}},
            {"id": "B", "text": "b", "relations": {"r": ["C"]}},
            {"id": "C", "text": "c", "relations": {"r": ["B"], "t": ["gone"]}},
            {"id": "D", "text": "d", "relations": {"s": ["A"]}},
        ),
        on_warning=lambda _: None,
    )


def test_edges_are_in_file_order_and_deduplicated(small):
    assert small.edges == [Edge(0, "r", 1), Edge(1, "r", 2), Edge(2, "r", 1), Edge(3, "s", 0)]
    assert small.relations == ["r", "s"]  # sorted; "t" lost its only target
    assert small.edge_counts == {"r": 3, "s": 1}


def test_neighbours_are_undirected(small):
    assert small.neighbours("r") == {0: {1}, 1: {0, 2}, 2: {1}}
    assert small.neighbours("s") == {3: {0}, 0: {3}}  # stated only as D -> A
    assert small.neighbours("unknown relation") == {}


def test_index_of_names_the_missing_id(small):
    assert small.index_of("C") == 2
    assert "C" in small and "nope" not in small
    with pytest.raises(InputDataError, match=r"data\.jsonl: unknown id 'nope'"):
        small.index_of("nope")


def test_subset_keeps_items_in_order_and_restricts_edges(small):
    sub = small.subset([2, 1, 2])
    assert [item.id for item in sub] == ["C", "B"]
    assert sub.edges == [Edge(0, "r", 1), Edge(1, "r", 0)]
    assert sub.relations == ["r"]
    assert sub.neighbours("r") == {0: {1}, 1: {0}}
    assert sub.items[1].relations == {"r": ["C"]}
    assert sub.index_of("B") == 1
    with pytest.raises(InputDataError):
        sub.index_of("A")
    # the original is untouched
    assert len(small) == 4 and small.items[0].relations == {"r": ["B"]}
    with pytest.raises(IndexError):
        small.subset([4])


def test_subset_without_relations_inside_has_no_edges(small):
    sub = small.subset([0, 2])  # A-B and B-C edges both need B
    assert sub.edges == [] and sub.relations == []


def test_catalog_built_in_memory_rejects_duplicate_ids():
    item = Item("A", "a", None, {}, {}, 0)
    with pytest.raises(InputDataError, match="duplicate id 'A'"):
        Catalog(path=None, items=[item, item])


# --------------------------------------------------------------------------- writing


def test_write_catalog_round_trips(tmp_path, png):
    image = png("images/a.png")
    records = [
        {
            "id": "A",
            "text": "caf\u00e9 bib",
            "image": "images/a.png",
            "relations": {"r": ["B"]},
            "price": 3.5,
        },
        Item("B", "bottle", str(image), {"r": ["A"]}, {"brand": "Acme"}, 0),
    ]
    out = write_catalog(records, tmp_path / "out.jsonl")
    assert out == tmp_path / "out.jsonl"
    assert "caf\u00e9" in out.read_text(encoding="utf-8")  # UTF-8, not \\u escapes
    catalog = read_catalog(out)
    assert [item.id for item in catalog] == ["A", "B"]
    assert catalog.items[0].image == catalog.items[1].image == str(image)
    assert catalog.items[0].metadata == {"price": 3.5}
    assert catalog.items[1].metadata == {"brand": "Acme"}
    assert catalog.edges == [Edge(0, "r", 1), Edge(1, "r", 0)]


def test_write_catalog_refuses_nan_and_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out" / "bad.jsonl"
    with pytest.raises(ValueError, match="record 'B': price is nan"):
        write_catalog([{"id": "A", "text": "a"}, {"id": "B", "text": "b", "price": float("nan")}], target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_reading_streams_a_large_file_quickly(tmp_path):
    n = 20_000
    path = write_catalog(
        ({"id": f"I{i}", "text": f"item {i}", "relations": {"r": [f"I{(i + 1) % n}"]}} for i in range(n)),
        tmp_path / "big.jsonl",
    )
    catalog = read_catalog(path)
    assert len(catalog) == n
    assert len(catalog.edges) == n
    assert catalog.neighbours("r")[0] == {1, n - 1}
    assert isinstance(catalog.path, Path)


def test_written_catalogue_gets_the_usual_file_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_catalog([{"id": "a", "text": "x"}], tmp_path / "out.jsonl")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
