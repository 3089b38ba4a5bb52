"""stream_catalog: the same validation and errors as read_catalog, in bounded memory, and slices."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from rcml_st.data import Shard, read_catalog, stream_catalog
from rcml_st.errors import InputDataError

GOOD = [
    {"id": "A", "text": "nursing pillow", "relations": {"same brand": ["B", "ZZZ"]}, "brand": "Acme"},
    {"id": "B", "text": "bottle warmer", "price": 3.5},
    {"id": "C", "text": "bib"},
]
BAD_LINES = [
    '{"id": "X", "text": ',
    '["not", "an", "object"]',
    '{"text": "no id"}',
    '{"id": 7, "text": "numeric id"}',
    '{"id": "A", "text": "duplicate"}',
    '{"id": "Y"}',
    '{"id": "Z", "text": 5}',
    '{"id": "W", "image": "missing.png"}',
    '{"id": "V", "text": "x", "relations": ["B"]}',
]


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("bad", BAD_LINES)
def test_each_problem_is_the_same_file_line_error_as_read_catalog(tmp_path, bad):
    path = write(tmp_path / "data.jsonl", [json.dumps(r) for r in GOOD] + ["", bad])
    with pytest.raises(InputDataError) as expected:
        read_catalog(path)
    with pytest.raises(InputDataError) as streamed:
        stream_catalog(path)
    assert str(streamed.value) == str(expected.value)
    assert str(streamed.value).startswith(f"{path}:5: ")


def test_skip_invalid_skips_the_same_records_and_iterating_yields_the_valid_items(tmp_path):
    path = write(tmp_path / "data.jsonl", [json.dumps(GOOD[0]), *BAD_LINES, *map(json.dumps, GOOD[1:])])
    read = read_catalog(path, skip_invalid=True)
    stream = stream_catalog(path, skip_invalid=True)
    assert stream.skipped == read.skipped and stream.skip_examples == read.skip_examples
    assert stream.skip_summary().startswith("skipped 9 records: ")
    assert len(stream) == stream.items == 3
    for _ in range(2):  # every iteration is a fresh pass over the file
        items = list(stream)
        assert [(i.id, i.text, i.metadata, i.line) for i in items] == [
            (i.id, i.text, i.metadata, i.line) for i in read.items
        ]
    assert items[0].relations == {"same brand": ["B", "ZZZ"]}  # as written: targets are not checked here


def test_slices_partition_the_catalogue_and_check_only_their_own_images(tmp_path):
    lines = [json.dumps({"id": f"S{n:03d}", "text": f"item {n}"}) for n in range(60)]
    path = write(tmp_path / "data.jsonl", lines)
    slices = [stream_catalog(path, shard=Shard(i, 3)) for i in range(3)]
    ids = [[item.id for item in s] for s in slices]
    assert sorted(i for part in ids for i in part) == [f"S{n:03d}" for n in range(60)]
    assert all(len(part) == len(s) and s.items == 60 for part, s in zip(ids, slices, strict=True))
    assert all(len(part) > 5 for part in ids)  # spread, not all in one slice
    # A missing image fails only the worker whose slice holds the item; the id is checked by all.
    broken = write(tmp_path / "broken.jsonl", [*lines, json.dumps({"id": "S000b", "image": "gone.png"})])
    owner = next(i for i in range(3) if Shard(i, 3).contains("S000b"))
    with pytest.raises(InputDataError, match=r"broken.jsonl:61: image not found"):
        stream_catalog(broken, shard=Shard(owner, 3))
    assert stream_catalog(broken, shard=Shard((owner + 1) % 3, 3)).items == 61
    duplicate = write(tmp_path / "dup.jsonl", [*lines, lines[4]])
    for i in range(3):
        with pytest.raises(
            InputDataError, match=r"dup.jsonl:61: duplicate id 'S004' \(first seen on line 5\)"
        ):
            stream_catalog(duplicate, shard=Shard(i, 3))


def test_shard_parsing_and_launcher_environment():
    assert Shard.parse("2/4") == Shard(2, 4)
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(ValueError, match="--shard must be I/N"):
            Shard.parse(bad)
    assert Shard.from_env({"RANK": "3", "WORLD_SIZE": "4"}) == Shard(3, 4)
    assert Shard.from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None


def test_memory_does_not_grow_with_the_records(tmp_path):
    # 4k items with 2 KB of metadata each: read_catalog holds them all, the stream one at a time.
    filler = "x" * 2000
    lines = [json.dumps({"id": f"S{n:05d}", "text": f"item {n}", "notes": filler}) for n in range(4000)]
    path = write(tmp_path / "data.jsonl", lines)

    def peak(work) -> int:
        tracemalloc.start()
        try:
            work()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    held = peak(lambda: read_catalog(path))
    streamed = peak(lambda: sum(1 for _ in stream_catalog(path)))
    assert held > 8_000_000  # the records themselves (4k x 2 KB)
    assert streamed < held / 10
