"""End-to-end tests of `rcml-st prepare amazon` on small generated metadata in all three formats.

Every fixture is made up here (no real Amazon records or images). The products form two
groups (feeding, bathing) linked by co-purchase lists, plus links to products outside the file,
a self-link, and a product with neither text nor image.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image
from rcml_st.cli.main import app
from typer.testing import CliRunner

from rcml_st.data.amazon import convert_amazon
from rcml_st.data.amazon.convert import DUPLICATE_ASIN, NO_CONTENT, NO_IMAGE
from rcml_st.data.amazon.formats import MALFORMED, MISSING_ASIN
from rcml_st.data.catalog import read_catalog
from rcml_st.errors import InputDataError

FEEDING = ["Baby", "Feeding", "Bottles"]
BATHING = ["Baby", "Bathing & Skin Care"]

# asin, title, brand, price, description, categories, also_bought, also_viewed, bought_together,
# buy_after_viewing
PRODUCTS: list[dict] = [
    dict(asin="B01", title="Glass baby bottle 8 oz", brand="Acme", price=12.5,
         description="<p>BPA free glass bottle with a slow-flow nipple.</p>", categories=FEEDING,
         also_bought=["B02", "B03", "X99"], also_viewed=["B04"], bought_together=["B02"],
         buy_after_viewing=["B01"]),
    dict(asin="B02", title="Slow flow bottle nipples, 4 pack", brand="Acme", price=6.0, description="",
         categories=FEEDING, also_bought=["B01", "B03"], also_viewed=[], bought_together=["B01"],
         buy_after_viewing=[]),
    dict(asin="B03", title="Bottle drying rack", brand="Dryco", price=15.99, description="Holds 12 bottles.",
         categories=FEEDING, also_bought=["B01", "B02"], also_viewed=["B04", "X98"], bought_together=[],
         buy_after_viewing=["B04"]),
    dict(asin="B04", title="Plastic baby bottle 9 oz", brand="Plasto", price=4.25, description="",
         categories=FEEDING, also_bought=["B02"], also_viewed=["B01"], bought_together=[],
         buy_after_viewing=[]),
    dict(asin="B05", title="Baby bath tub with sling", brand="Splash", price=24.0,
         description="Folds flat.", categories=BATHING, also_bought=["B06", "B07"], also_viewed=[],
         bought_together=["B06"], buy_after_viewing=[]),
    dict(asin="B06", title="Hooded bath towel", brand="Splash", price=9.5, description="Organic cotton.",
         categories=BATHING, also_bought=["B05", "B07"], also_viewed=[], bought_together=["B05"],
         buy_after_viewing=[]),
    dict(asin="B07", title="Tear-free baby bath shampoo", brand="Suds", price=5.75, description="",
         categories=BATHING, also_bought=["B05", "B06"], also_viewed=[], bought_together=[],
         buy_after_viewing=[]),
    dict(asin="B08", title="", brand="Acme", price=1.0, description="", categories=FEEDING,
         also_bought=["B01"], also_viewed=[], bought_together=[], buy_after_viewing=[]),
]  # fmt: skip


def meta_line(product: dict, fmt: str) -> str:
    """One product as a line of the given Amazon metadata format."""
    if fmt == "2014":
        related = {
            key: product[key]
            for key in ("also_bought", "also_viewed", "bought_together", "buy_after_viewing")
            if product[key]
        }
        record = {
            "asin": product["asin"],
            "title": product["title"],
            "brand": product["brand"],
            "price": product["price"],
            "imUrl": f"http://example.invalid/{product['asin']}.jpg",
            "categories": [product["categories"]],
            "salesRank": {"Baby": 1},
            "related": related,
            "description": product["description"],
        }
        return repr(record)  # a Python dict literal, as the 2014 release
    if fmt == "2018":
        record = {
            "asin": product["asin"],
            "title": product["title"],
            "brand": product["brand"],
            "price": f"${product['price']:.2f}",
            "description": [product["description"]] if product["description"] else [],
            "feature": [],
            "category": product["categories"],
            "also_buy": product["also_bought"],
            "also_view": product["also_viewed"],
            "imageURL": [],
        }
        return json.dumps(record)
    record = {
        "parent_asin": product["asin"],
        "title": product["title"],
        "store": product["brand"],
        "price": product["price"],
        "main_category": product["categories"][0],
        "categories": product["categories"][1:],
        "description": [product["description"]] if product["description"] else [],
        "features": [],
        "images": [],
        "bought_together": product["bought_together"] or None,
    }
    return json.dumps(record)


def write_meta(path: Path, fmt: str, products: list[dict] = PRODUCTS, extra: tuple[str, ...] = ()) -> Path:
    """Writes products (then any extra raw lines) as a metadata file; gzipped when the name ends .gz."""
    text = "\n".join([meta_line(p, fmt) for p in products] + list(extra)) + "\n"
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def write_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (10, 200, 30)).save(path)
    return path


def read_items(path: Path) -> dict[str, dict]:
    return {item["id"]: item for item in map(json.loads, path.read_text().splitlines())}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ----------------------------------------------------------------------------- conversions


EXPECTED_B01_RELATIONS = {
    "2014": {
        "also bought by the same customers": ["B02", "B03"],
        "viewed as an alternative to": ["B04"],
        "frequently bought together": ["B02"],
    },
    "2018": {"also bought by the same customers": ["B02", "B03"], "viewed as an alternative to": ["B04"]},
    "2023": {"frequently bought together": ["B02"]},
}


@pytest.mark.parametrize("fmt", ["2014", "2018", "2023"])
@pytest.mark.parametrize("name", ["meta_Baby.json", "meta_Baby.json.gz"])
def test_each_format_converts_and_reads_back(tmp_path, fmt, name):
    meta = write_meta(tmp_path / name, fmt)
    out = tmp_path / "baby.jsonl"
    summary = convert_amazon(meta, out)

    assert summary.format == fmt
    assert (summary.records, summary.items, summary.images) == (8, 7, 0)
    assert summary.skipped == {NO_CONTENT: 1}  # B08: neither title nor description nor image
    items = read_items(out)
    assert list(items) == ["B01", "B02", "B03", "B04", "B05", "B06", "B07"]
    b01 = items["B01"]
    assert b01["relations"] == EXPECTED_B01_RELATIONS[fmt]
    assert b01["text"] == "Glass baby bottle 8 oz, by Acme. BPA free glass bottle with a slow-flow nipple."
    assert (b01["brand"], b01["price"]) == ("Acme", 12.5)
    assert b01["categories"] == FEEDING
    assert "image" not in b01
    assert list(b01) == ["id", "text", "relations", "brand", "price", "categories"]

    catalog = read_catalog(out)  # the data reader accepts it as is: nothing skipped or dropped
    assert len(catalog) == 7 and catalog.dropped_targets == 0 and not catalog.skipped
    assert dict(summary.edges) == catalog.edge_counts
    assert leftovers(tmp_path) == []


def test_dropped_capped_and_self_links_are_counted(tmp_path):
    meta = write_meta(tmp_path / "meta.json", "2014")
    summary = convert_amazon(meta, tmp_path / "out.jsonl", max_targets=1)
    # X99 (also_bought of B01) and X98 (also_viewed of B03); B08, left out, is never a source.
    assert summary.dropped == {"also_bought": 1, "also_viewed": 1}
    assert summary.self_links == 1  # B01 buy_after_viewing B01
    # One target per list: B01, B02, B03, B05, B06 and B07 each lose their second also_bought target.
    assert summary.capped == {"also_bought": 6}
    items = read_items(tmp_path / "out.jsonl")
    assert items["B01"]["relations"]["also bought by the same customers"] == ["B02"]
    assert all(len(t) == 1 for item in items.values() for t in item.get("relations", {}).values())


def test_relation_names_override_and_leave_out(tmp_path):
    meta = write_meta(tmp_path / "meta.json", "2014")
    names = {"also_viewed": None, "bought_together": "used together for feeding or bathing"}
    summary = convert_amazon(meta, tmp_path / "out.jsonl", names=names)
    assert set(summary.edges) == {
        "also bought by the same customers",
        "used together for feeding or bathing",
        "bought after viewing",
    }
    relations = read_items(tmp_path / "out.jsonl")["B01"]["relations"]
    assert relations["used together for feeding or bathing"] == ["B02"]
    assert "viewed as an alternative to" not in relations


def test_same_description_merges_targets_without_repeats(tmp_path):
    meta = write_meta(tmp_path / "meta.json", "2014")
    names = {"bought_together": "bought with", "also_bought": "bought with"}
    summary = convert_amazon(meta, tmp_path / "out.jsonl", names=names)
    assert read_items(tmp_path / "out.jsonl")["B01"]["relations"]["bought with"] == ["B02", "B03"]
    assert summary.edges["bought with"] == read_catalog(tmp_path / "out.jsonl").edge_counts["bought with"]


def test_text_cap(tmp_path):
    products = [dict(PRODUCTS[0], description="Soft and warm. " * 100)]
    meta = write_meta(tmp_path / "meta.json", "2018", products)
    convert_amazon(meta, tmp_path / "out.jsonl", max_text_chars=60)
    text = read_items(tmp_path / "out.jsonl")["B01"]["text"]
    assert len(text) <= 60
    assert text.startswith("Glass baby bottle 8 oz, by Acme. Soft and warm.")


def test_images_relative_to_output_and_require_image(tmp_path):
    meta = write_meta(tmp_path / "meta.json.gz", "2014")
    images = tmp_path / "images"
    write_image(images / "B01.jpg")
    write_image(images / "b05.PNG")
    write_image(images / "B08.webp")  # B08 has no text: its image makes it an item
    (images / "README.txt").write_text("not an image")
    out = tmp_path / "out" / "baby.jsonl"

    summary = convert_amazon(meta, out, images=images)
    assert (summary.items, summary.images, summary.image_files) == (8, 3, 3)
    items = read_items(out)
    assert items["B01"]["image"] == "../images/B01.jpg"
    assert items["B05"]["image"] == "../images/b05.PNG"
    assert "text" not in items["B08"] and items["B08"]["image"] == "../images/B08.webp"
    assert "image" not in items["B02"]
    catalog = read_catalog(out, check_images=True)
    assert catalog.items[0].image == str((images / "B01.jpg").resolve())

    summary = convert_amazon(meta, out, images=images, require_image=True)
    assert summary.items == 3 and summary.skipped == {NO_IMAGE: 5}
    items = read_items(out)
    assert set(items) == {"B01", "B05", "B08"}
    assert items["B08"]["relations"] == {"also bought by the same customers": ["B01"]}
    assert "relations" not in items["B05"]  # B06 and B07 have no image: not in the catalogue
    assert summary.dropped["also_bought"] == 5  # X99, B02, B03 (from B01), B06, B07 (from B05)
    assert len(read_catalog(out)) == 3


def test_duplicate_asin_keeps_the_first(tmp_path):
    duplicate = meta_line(dict(PRODUCTS[1], title="A second B02"), "2018")
    meta = write_meta(tmp_path / "meta.json", "2018", extra=(duplicate,))
    summary = convert_amazon(meta, tmp_path / "out.jsonl")
    assert summary.skipped[DUPLICATE_ASIN] == 1
    assert summary.skip_examples[DUPLICATE_ASIN].endswith("meta.json:9: B02")
    assert read_items(tmp_path / "out.jsonl")["B02"]["title" if False else "text"].startswith("Slow flow")


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("fmt", "bad_line", "fragment"),
    [
        ("2014", "{'asin': 'B09', 'title': 'unterminated", "not a JSON object nor a Python dict literal"),
        ("2014", "{'title': 'no asin here'}", "missing 'asin'"),
        ("2018", '{"asin": "B09", "title": "x",', "bad JSON"),
        ("2023", '{"asin": "B09", "title": "old key"}', "missing 'parent_asin'"),
        ("2018", '{"asin": "B09", "also_buy": "B01"}', "must be a list of ASIN strings"),
    ],
)
def test_bad_record_stops_with_file_and_line(tmp_path, fmt, bad_line, fragment):
    products = [*PRODUCTS[:2], PRODUCTS[3]]
    meta = write_meta(
        tmp_path / "meta.json", fmt, products, extra=("", bad_line, meta_line(PRODUCTS[4], fmt))
    )
    out = tmp_path / "out.jsonl"
    with pytest.raises(InputDataError) as info:
        convert_amazon(meta, out)
    assert info.value.line == 5  # blank line 4 still counts
    assert str(info.value).startswith(f"{meta}:5: ")
    assert fragment in str(info.value)
    assert not out.exists() and leftovers(tmp_path) == []


def test_skip_invalid_counts_and_continues(tmp_path):
    extra = ("{'asin': 'B09'", "{'title': 'no asin'}", "[1, 2]", "{'asin': 'B10', 'title': 'Teether'}")
    meta = write_meta(tmp_path / "meta.json", "2014", extra=extra)
    summary = convert_amazon(meta, tmp_path / "out.jsonl", skip_invalid=True)
    assert summary.skipped == {MALFORMED: 2, MISSING_ASIN: 1, NO_CONTENT: 1}
    assert summary.skip_examples[MALFORMED].startswith(f"{meta}:9: ")
    assert summary.items == 8 and "B10" in read_items(tmp_path / "out.jsonl")


def test_first_line_malformed_is_skipped_before_detection(tmp_path):
    meta = write_meta(tmp_path / "meta.jsonl", "2023")
    meta.write_text("not a record\n" + meta.read_text())
    with pytest.raises(InputDataError, match=r"meta\.jsonl:1: "):
        convert_amazon(meta, tmp_path / "out.jsonl")
    summary = convert_amazon(meta, tmp_path / "out.jsonl", skip_invalid=True)
    assert summary.format == "2023" and summary.items == 7


def test_forced_format_names_the_format_it_looks_like(tmp_path):
    meta = write_meta(tmp_path / "meta.json", "2018")
    with pytest.raises(InputDataError, match="looks like the 2018 format"):
        convert_amazon(meta, tmp_path / "out.jsonl", fmt="2023")
    assert convert_amazon(meta, tmp_path / "out.jsonl", fmt="2018").items == 7


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_corrupt_gzip_is_fatal_and_keeps_the_previous_output(tmp_path, skip_invalid):
    many = [dict(PRODUCTS[0], asin=f"B{i:05d}", title=f"Bottle number {i * 7919}") for i in range(4000)]
    data = (write_meta(tmp_path / "full.json.gz", "2014", many)).read_bytes()
    meta = tmp_path / "meta.json.gz"
    meta.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "previous", "text": "kept"}\n')
    with pytest.raises(InputDataError, match="corrupt gzip data") as info:
        convert_amazon(meta, out, skip_invalid=skip_invalid)
    assert info.value.line is not None and info.value.line > 100
    assert out.read_text() == '{"id": "previous", "text": "kept"}\n'
    assert leftovers(tmp_path) == []


def test_nothing_to_write_and_empty_file(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("\n\n")
    with pytest.raises(InputDataError, match="no items to write"):
        convert_amazon(empty, tmp_path / "out.jsonl")
    meta = write_meta(tmp_path / "meta.json", "2014")
    (tmp_path / "images").mkdir()
    with pytest.raises(InputDataError, match=r"no items to write \(8 no image"):
        convert_amazon(meta, tmp_path / "out.jsonl", images=tmp_path / "images", require_image=True)
    assert not (tmp_path / "out.jsonl").exists()


def test_option_errors(tmp_path):
    meta = write_meta(tmp_path / "meta.json", "2014")
    with pytest.raises(InputDataError, match="file not found"):
        convert_amazon(tmp_path / "missing.json.gz", tmp_path / "out.jsonl")
    with pytest.raises(ValueError, match="must not be the metadata file"):
        convert_amazon(meta, meta)
    with pytest.raises(ValueError, match="unknown format"):
        convert_amazon(meta, tmp_path / "out.jsonl", fmt="2020")
    with pytest.raises(InputDataError, match="images folder not found"):
        convert_amazon(meta, tmp_path / "out.jsonl", images=tmp_path / "nope")
    assert meta.read_text().startswith("{'asin': 'B01'")


def test_progress_reports_bytes_for_every_pass(tmp_path):
    meta = write_meta(tmp_path / "meta.json.gz", "2014")
    calls: list[tuple[str, int, int]] = []
    convert_amazon(meta, tmp_path / "out.jsonl", cluster=2, on_progress=lambda *call: calls.append(call))
    phases = list(dict.fromkeys(phase for phase, _, _ in calls))
    assert phases == [
        "pass 1/3: reading products",
        "pass 2/3: collecting co-purchase edges",
        "pass 3/3: writing items",
    ]
    first = [(done, total) for phase, done, total in calls if phase == phases[0]]
    assert first[0] == (0, meta.stat().st_size) and first[-1] == (meta.stat().st_size,) * 2
    for phase in phases:  # every pass ends with all its bytes read
        done, total = [(d, t) for p, d, t in calls if p == phase][-1]
        assert done == total > 0, phase


def test_interrupted_run_leaves_no_output_and_no_temporary_files(tmp_path):
    meta = write_meta(tmp_path / "meta.json", "2014")

    def interrupt(phase: str, done: int, total: int) -> None:
        if phase.startswith("pass 2") and done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_amazon(meta, tmp_path / "out.jsonl", on_progress=interrupt)
    assert not (tmp_path / "out.jsonl").exists()
    assert leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


# ----------------------------------------------------------------------------- relation types


def test_cluster_names_co_purchase_types_deterministically(tmp_path):
    meta = write_meta(tmp_path / "meta.json", "2014")
    first = convert_amazon(meta, tmp_path / "a.jsonl", cluster=2, seed=3)
    second = convert_amazon(meta, tmp_path / "b.jsonl", cluster=2, seed=3)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert first.relation_types == second.relation_types

    names = dict(first.relation_types)
    assert len(names) == 2
    feeding = next(name for name in names if "feeding" in name or "bottle" in name)
    bathing = next(name for name in names if "bath" in name)
    assert feeding.startswith("bought together: ") and bathing.startswith("bought together: ")
    items = read_items(tmp_path / "a.jsonl")
    assert items["B01"]["relations"][feeding] == ["B02", "B03"]  # also_bought + bought_together merged
    assert items["B05"]["relations"][bathing] == ["B06", "B07"]
    # Relations other than co-purchase keep their descriptions.
    assert items["B01"]["relations"]["viewed as an alternative to"] == ["B04"]
    assert items["B03"]["relations"]["bought after viewing"] == ["B04"]
    catalog = read_catalog(tmp_path / "a.jsonl")
    assert {name: catalog.edge_counts[name] for name in names} == names
    assert sum(names.values()) == 13  # B01-B04: 2+2+2+1, B05-B07: 2+2+2
    assert leftovers(tmp_path) == []


def test_cluster_without_co_purchase_edges(tmp_path):
    products = [dict(p, also_bought=[], bought_together=[]) for p in PRODUCTS]
    meta = write_meta(tmp_path / "meta.json", "2014", products)
    summary = convert_amazon(meta, tmp_path / "out.jsonl", cluster=4)
    assert summary.relation_types == []
    assert "viewed as an alternative to" in summary.edges


# ----------------------------------------------------------------------------- memory


@pytest.mark.slow
def test_memory_stays_flat_on_large_records(tmp_path):
    # 600 records of ~40 kB each (24 MB): holding the records would need far more than the bound.
    big = "Long description. " * 2200
    products = [
        dict(PRODUCTS[i % 7], asin=f"B{i:06d}", description=big, also_bought=[f"B{(i + 1) % 600:06d}"])
        for i in range(600)
    ]
    meta = write_meta(tmp_path / "meta.json", "2014", products)
    assert meta.stat().st_size > 20e6
    convert_amazon(write_meta(tmp_path / "small.json", "2014"), tmp_path / "small.jsonl")  # lazy imports
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        summary = convert_amazon(meta, tmp_path / "out.jsonl")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.items == 600 and summary.edges["also bought by the same customers"] == 600
    assert peak - before < 3e6, f"peak {(peak - before) / 1e6:.1f} MB over the baseline"


# ----------------------------------------------------------------------------- command line


def test_cli_converts_and_prints_the_summary(tmp_path):
    meta = write_meta(tmp_path / "meta_Baby.json.gz", "2014")
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"buy_after_viewing": None}))
    write_image(tmp_path / "images" / "B01.jpg")
    out = tmp_path / "baby.jsonl"
    args = ["prepare", "amazon", str(meta), "--output", str(out), "--images", str(tmp_path / "images")]
    args += ["--cluster", "2", "--seed", "1", "--relation-names", str(names), "--max-targets", "5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "items written" in result.stdout and "images found" in result.stdout
    assert "relation types (--cluster 2)" in result.stdout
    assert "viewed as an alternative to" in result.stdout
    assert "bought after viewing" not in result.stdout
    assert "also_bought: not in the catalogue" in result.stdout
    assert len(read_catalog(out)) == 7


def test_cli_bad_input_is_one_error_line_with_exit_2(tmp_path):
    meta = write_meta(tmp_path / "meta.json", "2014", extra=("{'asin': 'B09',",))
    result = CliRunner().invoke(app, ["prepare", "amazon", str(meta), "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: {meta}:9: not a JSON object nor a Python dict literal ('{{' was never closed)"
    ]
    assert "Traceback" not in result.output
    result = CliRunner().invoke(
        app, ["prepare", "amazon", str(meta), "-o", str(tmp_path / "out.jsonl"), "--skip-invalid"]
    )
    assert result.exit_code == 0 and "malformed line" in result.stdout


def test_cli_usage_errors_and_help(tmp_path):
    meta = write_meta(tmp_path / "meta.json", "2014")
    runner = CliRunner()
    result = runner.invoke(app, ["prepare", "amazon", str(meta), "-o", "x.jsonl", "--format", "2020"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["prepare", "amazon", str(meta), "-o", "x.jsonl", "--cluster", "0"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["prepare", "amazon", str(tmp_path / "nope.json"), "-o", "x.jsonl"])
    assert result.exit_code == 2 and "file not found" in result.stderr
    result = runner.invoke(app, ["prepare", "amazon", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and "--relation-names" in result.stdout
