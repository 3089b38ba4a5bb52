"""Unit tests of the Amazon metadata pieces: parsing, format detection, normalising, images, names."""

from __future__ import annotations

import gzip
import json

import pytest

from rcml_st.data.amazon.formats import (
    MALFORMED,
    MISSING_ASIN,
    WRONG_TYPE,
    AmazonRecord,
    RecordError,
    clean_text,
    detect_format,
    item_text,
    normalise,
    parse_line,
    parse_price,
    trim,
)
from rcml_st.data.amazon.images import index_images, relative_image_path
from rcml_st.data.amazon.reader import is_gzip, iter_lines
from rcml_st.data.amazon.relations import (
    DEFAULT_RELATION_NAMES,
    load_relation_names,
    relation_names,
)
from rcml_st.errors import InputDataError

# ----------------------------------------------------------------------------- parsing


def test_python_literal_line_is_read_without_eval():
    record, syntax = parse_line(b"{'asin': 'B1', 'price': 3.5, 'related': {'also_bought': ['B2']}}", None)
    assert syntax == "python"
    assert record == {"asin": "B1", "price": 3.5, "related": {"also_bought": ["B2"]}}


def test_code_in_a_line_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    line = f"__import__('pathlib').Path({str(marker)!r}).touch()".encode()
    with pytest.raises(RecordError) as info:
        parse_line(line, None)
    assert info.value.reason == MALFORMED
    assert not marker.exists()


def test_json_line_and_bom_on_first_line():
    record, syntax = parse_line('\ufeff{"asin": "B1", "title": "Bib"}'.encode(), None, first=True)
    assert (record, syntax) == ({"asin": "B1", "title": "Bib"}, "json")


@pytest.mark.parametrize(
    ("line", "fmt", "fragment"),
    [
        (b"{'asin': 'B1'", None, "was never closed"),
        (b"['B1', 'B2']", None, "got list"),
        (b"\xff\xfe{}", None, "not UTF-8"),
        (b"{'asin': 'B1'}", "2018", "bad JSON"),  # a Python literal is not the 2018 format
        (b'{"asin": "B1",}', "2023", "bad JSON"),
    ],
)
def test_malformed_lines(line, fmt, fragment):
    with pytest.raises(RecordError) as info:
        parse_line(line, fmt)
    assert info.value.reason == MALFORMED
    assert fragment in info.value.problem


@pytest.mark.parametrize(
    ("record", "syntax", "expected"),
    [
        ({"asin": "B1", "title": "Bib"}, "python", "2014"),
        ({"asin": "B1", "related": {}}, "json", "2014"),  # the strict-JSON re-release of 2014
        ({"asin": "B1", "imUrl": "http://x"}, "json", "2014"),
        ({"asin": "B1", "also_buy": []}, "json", "2018"),
        ({"asin": "B1", "title": "Bib"}, "json", "2018"),
        ({"parent_asin": "B1", "categories": []}, "json", "2023"),
        ({"title": "no id"}, "json", None),
    ],
)
def test_detect_format(record, syntax, expected):
    assert detect_format(record, syntax) == expected


# ----------------------------------------------------------------------------- normalising


def test_normalise_2014():
    record = {
        "asin": " B1 ",
        "title": "Glass Bottle",
        "brand": "Acme",
        "price": 12.5,
        "description": "<p>BPA&nbsp;free</p>",
        "categories": [["Baby", "Feeding", "Bottles"], ["Baby", "Gifts"]],
        "related": {"also_bought": ["B2", "B3"], "also_viewed": [], "bought_together": ["B2"]},
        "salesRank": {"Baby": 10},
    }
    rec = normalise(record, "2014")
    assert rec.asin == "B1"
    assert rec.description == "BPA free"  # tags gone, entities decoded, spaces collapsed
    assert rec.categories == ["Baby", "Feeding", "Bottles", "Gifts"]
    assert rec.relations == {"also_bought": ["B2", "B3"], "bought_together": ["B2"]}  # empty lists left out
    assert (rec.brand, rec.price, rec.price_unparsed) == ("Acme", 12.5, False)


def test_normalise_2018_uses_features_when_there_is_no_description():
    record = {
        "asin": "B1",
        "title": "Bib &amp; burp cloth",
        "description": [],
        "feature": ["Soft cotton", "Machine washable"],
        "category": ["Baby", "Feeding", "Bibs &amp; Burp Cloths"],
        "price": "$5.99 - $9.99",
        "also_buy": ["B2"],
        "also_view": ["B3"],
    }
    rec = normalise(record, "2018")
    assert rec.title == "Bib & burp cloth"
    assert rec.description == "Soft cotton. Machine washable"  # each bullet ends a sentence
    assert rec.categories == ["Baby", "Feeding", "Bibs & Burp Cloths"]
    assert rec.price is None and rec.price_unparsed  # a range is not one price
    assert rec.relations == {"also_buy": ["B2"], "also_view": ["B3"]}


def test_normalise_2023_brand_and_categories():
    record = {
        "parent_asin": "B1",
        "title": "Crib sheet",
        "main_category": "Baby",
        "categories": ["Baby Products", "Nursery"],
        "store": "Shop",
        "details": {"Brand": "Acme"},
        "price": None,
        "bought_together": None,
    }
    rec = normalise(record, "2023")
    assert (rec.asin, rec.brand, rec.price, rec.price_unparsed) == ("B1", "Acme", None, False)
    assert rec.categories == ["Baby", "Baby Products", "Nursery"]
    assert rec.relations == {}
    assert normalise({"parent_asin": "B2", "store": "Shop"}, "2023").brand == "Shop"


@pytest.mark.parametrize(
    ("record", "fmt", "reason", "fragment"),
    [
        ({"title": "no id"}, "2014", MISSING_ASIN, "missing 'asin'"),
        ({"asin": "  "}, "2018", MISSING_ASIN, "empty 'asin'"),
        ({"asin": "B1"}, "2023", MISSING_ASIN, "missing 'parent_asin'"),
        ({"asin": 123}, "2018", WRONG_TYPE, "must be a string"),
        ({"asin": "B1", "related": ["B2"]}, "2014", WRONG_TYPE, "'related' must be a dict"),
        ({"asin": "B1", "also_buy": "B2"}, "2018", WRONG_TYPE, "list of ASIN strings"),
    ],
)
def test_normalise_rejects(record, fmt, reason, fragment):
    with pytest.raises(RecordError) as info:
        normalise(record, fmt)
    assert info.value.reason == reason
    assert fragment in info.value.problem


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12.5, 12.5),
        (3, 3.0),
        ("$12.50", 12.5),
        ("1,299.00", 1299.0),
        ("£4", 4.0),
        ("$5 - $9", None),
        ("None", None),
        (None, None),
        (True, None),
        ("call us", None),
        (float("nan"), None),
        (-1, None),
    ],
)
def test_parse_price(value, expected):
    assert parse_price(value) == expected


def test_clean_text_and_trim():
    assert clean_text(["<b>Soft</b>&nbsp;&amp; warm", 3, None, "  bib "]) == "Soft & warm 3 bib"
    assert trim("soft organic cotton bib", 15) == "soft organic"
    assert trim("abcdefghijklmnopqrstuvwxyz", 10) == "abcdefghij"  # no space near: a hard cut
    assert trim("short", 0) == "short"


def test_item_text_combines_title_brand_description_under_the_cap():
    rec = AmazonRecord("B1", title="Nursing pillow", brand="Acme", description="Soft cotton. " * 50)
    text = item_text(rec, 100)
    assert text is not None and text.startswith("Nursing pillow, by Acme. Soft cotton.")
    assert len(text) <= 100
    # The brand is not repeated when the title already names it.
    assert item_text(AmazonRecord("B1", title="Acme pillow", brand="ACME"), 300) == "Acme pillow"
    # A brand alone is not product text.
    assert item_text(AmazonRecord("B1", brand="Acme"), 300) is None
    assert item_text(AmazonRecord("B1", description="Just a description"), 300) == "Just a description"


# ----------------------------------------------------------------------------- reading lines


def test_gzip_is_detected_by_magic_bytes_not_suffix(tmp_path):
    hidden = tmp_path / "meta.json"  # gzip content, plain name
    hidden.write_bytes(gzip.compress(b"{'asin': 'B1'}\n\n{'asin': 'B2'}\n"))
    plain = tmp_path / "meta.json.gz"  # plain content, gzip name
    plain.write_bytes(b"{'asin': 'B1'}\n")
    assert is_gzip(hidden) and not is_gzip(plain)
    assert [(n, line.strip()) for n, line in iter_lines(hidden)] == [
        (1, b"{'asin': 'B1'}"),
        (2, b""),
        (3, b"{'asin': 'B2'}"),
    ]
    assert [n for n, _ in iter_lines(plain)] == [1]


def test_progress_reaches_the_file_size(tmp_path):
    path = tmp_path / "meta.json.gz"
    path.write_bytes(gzip.compress(b"".join(b"{'asin': 'B%d'}\n" % i for i in range(5000))))
    seen: list[int] = []
    assert sum(1 for _ in iter_lines(path, seen.append)) == 5000
    assert seen[-1] == path.stat().st_size
    assert seen == sorted(seen)


def test_corrupt_gzip_names_the_line(tmp_path):
    data = gzip.compress(b"".join(b"{'asin': 'B%d', 'title': 'x%d'}\n" % (i, i * 7919) for i in range(20000)))
    truncated = tmp_path / "truncated.json.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputDataError) as info:
        for _ in iter_lines(truncated):
            pass
    assert "corrupt gzip" in str(info.value)
    assert info.value.line is not None and info.value.line > 1
    garbled = tmp_path / "garbled.json.gz"
    garbled.write_bytes(data[:20] + bytes(b ^ 0x55 for b in data[20:200]) + data[200:])
    with pytest.raises(InputDataError, match="corrupt gzip"):
        for _ in iter_lines(garbled):
            pass


# ----------------------------------------------------------------------------- images


def test_index_images_extensions_case_and_preference(tmp_path):
    for name in ["B1.jpg", "B1.png", "b2.PNG", "B3.webp", "B4.txt", "B5.tiff", ".jpg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "B6.jpg").mkdir()  # a folder named like an image is not one
    index = index_images(tmp_path)
    assert sorted(index) == ["B1", "B2", "B3"]
    assert index["B1"].endswith("B1.jpg")  # jpg preferred over png
    assert index["B2"].endswith("b2.PNG")


def test_index_images_missing_folder(tmp_path):
    with pytest.raises(InputDataError, match="images folder not found"):
        index_images(tmp_path / "nope")


def test_relative_image_path(tmp_path):
    assert relative_image_path(str(tmp_path / "img" / "B1.jpg"), tmp_path) == "img/B1.jpg"
    assert relative_image_path(str(tmp_path / "img" / "B1.jpg"), tmp_path / "out") == "../img/B1.jpg"


# ----------------------------------------------------------------------------- relation names


def test_relation_names_defaults_and_overrides():
    assert DEFAULT_RELATION_NAMES["also_buy"] == DEFAULT_RELATION_NAMES["also_bought"]
    names = relation_names({"also_viewed": None, "bought_together": "  used together  "})
    assert names["also_viewed"] is None
    assert names["bought_together"] == "used together"
    assert names["also_view"] == "viewed as an alternative to"
    with pytest.raises(ValueError, match="unknown relation 'also_bougth'"):
        relation_names({"also_bougth": "typo"})
    with pytest.raises(ValueError, match="non-empty string"):
        relation_names({"also_bought": ""})


def test_load_relation_names_file_errors(tmp_path):
    good = tmp_path / "names.json"
    good.write_text(json.dumps({"also_buy": "bought by the same parents"}))
    assert load_relation_names(good)["also_buy"] == "bought by the same parents"
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"also_buy":\n oops}')
    with pytest.raises(InputDataError, match=r"bad\.json:2: bad JSON"):
        load_relation_names(bad_json)
    not_object = tmp_path / "list.json"
    not_object.write_text("[]")
    with pytest.raises(InputDataError, match="expected a JSON object"):
        load_relation_names(not_object)
    with pytest.raises(InputDataError, match="not found"):
        load_relation_names(tmp_path / "missing.json")


def test_clean_text_repairs_python2_utf8_bytes_only():
    # "It’s a café" as UTF-8 bytes read one character per byte (a Python 2 era escape).
    assert clean_text("It\xe2\x80\x99s a caf\xc3\xa9") == "It’s a café"
    assert clean_text("café crème") == "café crème"  # genuine Latin-1 text is left alone
    assert clean_text("Ã© and é") == "Ã© and é"  # mixed: not valid UTF-8 once re-encoded
    record, _ = parse_line(b"{'asin': 'B1', 'title': 'Mom\\xe2\\x80\\x99s bottle'}", None)
    assert normalise(record, "2014").title == "Mom’s bottle"
