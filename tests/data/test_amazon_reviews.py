"""`prepare amazon --reviews`: "reviewed by the same customers" from review files in the real formats.

The files are generated here with the real field names and types of the Amazon Reviews 2023
release (``bought_together: null`` in the metadata; reviews with ``null`` images lists, huge
texts, ``verified_purchase`` false on some) and of the 2018 release (``reviewerID``, ``overall``,
``unixReviewTime``, ``verified``).
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
from rcml_st.cli.main import app
from typer.testing import CliRunner

from rcml_st.data.amazon import convert_amazon
from rcml_st.data.catalog import read_catalog

runner = CliRunner()

KINDS = {
    "feeding": ["Baby Bottle", "Bottle Brush", "Bib", "Sippy Cup", "Bottle Warmer"],
    "bathing": ["Bath Tub", "Hooded Towel", "Baby Shampoo", "Bath Thermometer", "Wash Cloths"],
}


def _meta_2023(asin: str, title: str, category: str) -> dict:
    return {
        "main_category": "Baby",
        "title": title,
        "average_rating": 4.5,
        "rating_number": 120,
        "features": [f"{title} for {category}", "BPA free"],
        "description": [],
        "price": None,
        "images": [
            {"thumb": None, "large": "https://m.media-amazon.com/x.jpg", "variant": "MAIN", "hi_res": None}
        ],
        "videos": [],
        "store": "Acme Baby",
        "categories": ["Baby Products", category.title()],
        "details": {"Brand": "Acme", "Item Weight": "4 ounces", "Date First Available": "May 2, 2019"},
        "parent_asin": asin,
        "bought_together": None,
    }


def _review_2023(user: str, parent: str, t: int, verified: bool = True, rating: float = 5.0) -> dict:
    return {
        "rating": rating,
        "title": "Great",
        "text": "Works well. " * 3000,  # a huge review text, as real ones can be
        "images": [],
        "asin": parent + "V",  # the variant; the metadata is keyed by parent_asin
        "parent_asin": parent,
        "user_id": user,
        "timestamp": 1588687728923 + t,
        "helpful_vote": 0,
        "verified_purchase": verified,
    }


@pytest.fixture
def amazon_2023(tmp_path: Path) -> tuple[Path, Path]:
    meta, reviews = [], []
    rng = random.Random(0)
    for c, (category, titles) in enumerate(KINDS.items()):
        for j, title in enumerate(titles):
            meta.append(_meta_2023(f"B0{c}{j}", title, category))
    # Customers review products of one kind (feeding or bathing), a few across both.
    for u in range(40):
        c = u % 2
        for j in rng.sample(range(5), 3):
            reviews.append(_review_2023(f"AG{u:04d}", f"B0{c}{j}", 1000 * u + j))
    reviews.append(_review_2023("AGX", "B000", 1, verified=False))  # an unverified pair across kinds
    reviews.append(_review_2023("AGX", "B010", 2, verified=False))
    reviews.append(_review_2023("AGL", "B001", 1, rating=1.0))
    reviews.append(_review_2023("AGL", "B014", 2, rating=1.0))
    reviews.append({**_review_2023("AGN", "B002", 1), "images": None, "title": None})  # nulls
    reviews.append(_review_2023("AGN", "B9UNKNOWN", 2))  # a product not in the metadata
    meta_path = tmp_path / "meta_Baby_Products.jsonl"
    meta_path.write_text("".join(json.dumps(r) + "\n" for r in meta))
    reviews_path = tmp_path / "Baby_Products.jsonl.gz"
    with gzip.open(reviews_path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in reviews)
    return meta_path, reviews_path


def _relations(path: Path) -> dict[str, dict[str, list[str]]]:
    return {r["id"]: r.get("relations", {}) for r in map(json.loads, path.read_text().splitlines())}


def test_reviews_give_relations_to_2023_metadata_without_co_purchase_lists(amazon_2023, tmp_path) -> None:
    meta, reviews = amazon_2023
    without = convert_amazon(meta, tmp_path / "plain.jsonl")
    assert without.format == "2023" and not without.edges  # bought_together is null everywhere
    # Ten products in two kinds: each customer reviews a third of the catalogue, so co-reviews
    # within a kind are under 2x chance and the default significance (3 SD) would keep nothing.
    summary = convert_amazon(meta, tmp_path / "baby.jsonl", reviews=reviews, co_review_significance=0)
    relations = _relations(tmp_path / "baby.jsonl")
    reviewed = {a: r.get("reviewed by the same customers", []) for a, r in relations.items()}
    assert all(reviewed.values())  # every product has partners now
    # Partners are of the same kind: customers reviewed within one kind. The 1-star customer's
    # pair across kinds is one customer's (under the default 2 co-reviews); the unverified one's
    # is left out.
    across = {(a, t) for a, targets in reviewed.items() for t in targets if t[2] != a[2]}
    assert across == set()
    assert summary.review_stats.skipped["not a verified purchase"] == 2
    assert summary.review_stats.unknown_items == 1
    convert_amazon(
        meta, tmp_path / "every.jsonl", reviews=reviews, min_co_reviews=1, co_review_significance=0
    )
    every = _relations(tmp_path / "every.jsonl")
    across = {(a, t) for a, r in every.items() for t in r["reviewed by the same customers"] if t[2] != a[2]}
    assert across == {("B001", "B014"), ("B014", "B001")}
    assert summary.edges["reviewed by the same customers"] == sum(map(len, reviewed.values()))
    catalog = read_catalog(tmp_path / "baby.jsonl")
    assert catalog.relations == ["reviewed by the same customers"] and len(catalog) == 10


def test_all_reviews_and_min_rating(amazon_2023, tmp_path) -> None:
    meta, reviews = amazon_2023
    convert_amazon(
        meta,
        tmp_path / "all.jsonl",
        reviews=reviews,
        verified_only=False,
        min_co_reviews=1,
        co_review_significance=0,
    )
    assert "B010" in _relations(tmp_path / "all.jsonl")["B000"]["reviewed by the same customers"]
    convert_amazon(
        meta,
        tmp_path / "good.jsonl",
        reviews=reviews,
        min_rating=4,
        min_co_reviews=1,
        co_review_significance=0,
    )
    good = _relations(tmp_path / "good.jsonl")
    assert "B014" not in good["B001"]["reviewed by the same customers"]
    convert_amazon(meta, tmp_path / "any.jsonl", reviews=reviews, min_co_reviews=1, co_review_significance=0)
    assert "B014" in _relations(tmp_path / "any.jsonl")["B001"]["reviewed by the same customers"]


def test_2018_reviews_merge_with_the_metadata_lists(tmp_path) -> None:
    meta = tmp_path / "meta_Baby.json"
    meta.write_text(
        json.dumps({"asin": "A1", "title": "Bottle", "also_buy": ["A2"], "category": ["Baby"]})
        + "\n"
        + json.dumps({"asin": "A2", "title": "Brush", "also_buy": [], "category": ["Baby"]})
        + "\n"
        + json.dumps({"asin": "A3", "title": "Bib", "category": ["Baby"]})
        + "\n"
    )
    reviews = tmp_path / "Baby.json"
    rows = [
        {
            "overall": 5.0,
            "verified": True,
            "reviewerID": "R1",
            "asin": "A1",
            "unixReviewTime": 1500000000,
            "reviewText": "ok",
            "style": {"Color:": " Blue"},
            "vote": "2",
        },
        {"overall": 4.0, "verified": True, "reviewerID": "R1", "asin": "A3", "unixReviewTime": 1500000100},
    ]
    reviews.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = convert_amazon(
        meta,
        tmp_path / "out.jsonl",
        reviews=reviews,
        review_relation="used together",
        min_co_reviews=1,
        co_review_significance=0,
    )
    relations = _relations(tmp_path / "out.jsonl")
    assert relations["A1"] == {"also bought by the same customers": ["A2"], "used together": ["A3"]}
    assert relations["A3"] == {"used together": ["A1"]}
    assert summary.edges["used together"] == 2


def test_a_bad_review_line_is_one_error_line_with_exit_2(amazon_2023, tmp_path) -> None:
    meta, _ = amazon_2023
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_review_2023("U1", "B000", 1)) + "\n" + '{"user_id": "U2", "rating": 5\n')
    result = runner.invoke(
        app, ["prepare", "amazon", str(meta), "-o", str(tmp_path / "o.jsonl"), "--reviews", str(bad)]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {bad}:2: bad JSON") and result.stderr.count("\n") == 1
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({**_review_2023("U1", "B000", 1), "user_id": None}) + "\n")
    result = runner.invoke(
        app, ["prepare", "amazon", str(meta), "-o", str(tmp_path / "o.jsonl"), "--reviews", str(missing)]
    )
    assert result.exit_code == 2 and f"{missing}:1: empty or missing 'user_id'" in result.stderr
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.slow
def test_meta_and_reviews_to_a_trained_model_end_to_end(amazon_2023, tmp_path) -> None:
    meta, reviews = amazon_2023
    data = tmp_path / "baby.jsonl"
    args = ["prepare", "amazon", str(meta), "--reviews", str(reviews), "-o", str(data)]
    result = runner.invoke(app, [*args, "--co-review-significance", "0"])
    assert result.exit_code == 0, result.output
    assert "reviewed by the same customers" in result.stdout
    model = tmp_path / "model"
    args = [
        "train",
        str(data),
        "-o",
        str(model),
        "--backbone",
        "rcml-tiny",
        "--lr",
        "1e-3",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--pairs-per-epoch",
        "16",
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    import rcml_st

    assert rcml_st.relation_vocabulary(rcml_st.load(model)) == ["reviewed by the same customers"]


def test_cluster_groups_the_review_edges_into_named_types(amazon_2023, tmp_path) -> None:
    meta, reviews = amazon_2023
    summary = convert_amazon(
        meta, tmp_path / "typed.jsonl", reviews=reviews, cluster=2, min_rating=4, co_review_significance=0
    )
    names = [name for name, _ in summary.relation_types]
    assert sorted(names) == ["bought together: bathing", "bought together: feeding"]
    kind = {"0": "feeding", "1": "bathing"}
    for asin, relations in _relations(tmp_path / "typed.jsonl").items():
        # Every edge sits under the type named after the kind both products share.
        assert list(relations) == [f"bought together: {kind[asin[2]]}"], (asin, relations)


def _themed_2023(folder: Path, customers: int, seed: int = 7) -> tuple[Path, Path]:
    """200 products in 20 themes; customers review 2-6 products of one theme, plus 20% stray reviews.

    A stray review is of any product (a gift, another household's purchase): a fifth of all
    reviews, so most customers who review 4 or more products have at least one stray.
    """
    rng = random.Random(seed)
    meta = [
        _meta_2023(f"B{t:02d}{j:02d}", f"Product {t}-{j}", f"theme {t}") for t in range(20) for j in range(10)
    ]
    reviews, t = [], 0
    for u in range(customers):
        theme = rng.randrange(20)
        on_theme = rng.sample(range(10), rng.randint(2, 6))
        products = [f"B{theme:02d}{j:02d}" for j in on_theme]
        strays = sum(rng.random() < 0.25 for _ in products)  # 25% of on-theme = 20% of all reviews
        products += [f"B{rng.randrange(20):02d}{rng.randrange(10):02d}" for _ in range(strays)]
        for asin in products:
            t += 1
            reviews.append({**_review_2023(f"AU{u:05d}", asin, t), "text": "Fine."})
    meta_path, reviews_path = folder / "meta_Themes.jsonl", folder / "Themes.jsonl"
    meta_path.write_text("".join(json.dumps(r) + "\n" for r in meta))
    reviews_path.write_text("".join(json.dumps(r) + "\n" for r in reviews))
    return meta_path, reviews_path


def _same_theme_share(path: Path) -> tuple[float, float]:
    relations = _relations(path)
    edges = [(a, b) for a, r in relations.items() for b in r.get("reviewed by the same customers", [])]
    return sum(a[1:3] == b[1:3] for a, b in edges) / max(len(edges), 1), len(edges) / len(relations)


@pytest.mark.parametrize("customers", [300, 1000])
def test_default_review_relations_stay_within_a_theme_despite_stray_reviews(tmp_path, customers) -> None:
    """Sparse (300 customers, ~4 per product and theme) and dense (1000): the defaults (2 co-reviews,
    3 standard deviations above chance) keep over 85% of edges inside a theme at both densities;
    a fixed minimum alone would not (2 co-reviews keep 65% at 1000 customers)."""
    meta, reviews = _themed_2023(tmp_path, customers)
    convert_amazon(meta, tmp_path / "default.jsonl", reviews=reviews)
    share, per_product = _same_theme_share(tmp_path / "default.jsonl")
    assert share >= 0.85 and per_product >= 5, (share, per_product)
    # Every co-review kept (the behaviour before the default minimum): mostly noise.
    convert_amazon(
        meta, tmp_path / "every.jsonl", reviews=reviews, min_co_reviews=1, co_review_significance=0
    )
    noisy_share, noisy_per_product = _same_theme_share(tmp_path / "every.jsonl")
    assert noisy_share < 0.7 and noisy_per_product > per_product, (noisy_share, noisy_per_product)
