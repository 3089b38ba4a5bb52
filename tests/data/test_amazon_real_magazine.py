"""The real 2018 Magazine Subscriptions metadata (shared/data) converts into clean item texts.

The file is real data kept outside the repository (``<repo>/../shared/data/amazon``, or the
folder named by ``RCML_SHARED_DATA``); where no checkout of it is reachable, they skip with the reason.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from rcml_st.data.amazon import convert_amazon
from rcml_st.data.amazon.cleaning import sentence_key, sentences

MAGAZINE = "amazon/meta_Magazine_Subscriptions_2018.json.gz"

# Anything that shows markup survived: a tag or a tag cut short, an attribute, a tag's tail,
# an entity (named or numeric), CSS, the replacement character.
_LEFTOVER = re.compile(r"<\s*/?\s*[A-Za-z!]|/>|\w=[\"']|[\"']\s*/?>|&#?\w+;|\{[^}]*:|\ufffd|a-size|a-color")


def _shared_data() -> Path | None:
    repo = Path(__file__).resolve().parents[2]
    candidates = [os.environ.get("RCML_SHARED_DATA"), repo.parent / "shared/data", repo / "shared/data"]
    for folder in candidates:
        if folder and (Path(folder) / MAGAZINE).is_file():
            return Path(folder)
    return None


@pytest.fixture(scope="module")
def magazine(tmp_path_factory: pytest.TempPathFactory):
    folder = _shared_data()
    if folder is None:
        # Real data kept outside the repository (never copied in): where a checkout has no shared/
        # folder beside or inside it, say so plainly rather than fail everything else.
        pytest.skip(
            f"the real metadata file {MAGAZINE} is not under RCML_SHARED_DATA, <repo>/../shared/data or "
            "<repo>/shared/data (set RCML_SHARED_DATA to its data folder)"
        )
    out = tmp_path_factory.mktemp("magazine") / "magazine.jsonl"
    summary = convert_amazon(folder / MAGAZINE, out)
    items = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return summary, items


def test_no_markup_or_entity_left_in_any_item_text(magazine) -> None:
    summary, items = magazine
    assert summary.format == "2018" and summary.records == 3385
    leftovers = [item["text"] for item in items if _LEFTOVER.search(item.get("text", ""))]
    assert leftovers == []
    # The cut-off title tag was on most records: those items now start with the publisher instead.
    assert not any(item["text"].startswith("<") for item in items)
    assert sum(item["text"].startswith("Conde Nast") for item in items) > 10


def test_categories_brands_and_prices_hold_no_markup(magazine) -> None:
    _, items = magazine
    for item in items:
        for value in [*item.get("categories", []), item.get("brand", "")]:
            assert value == value.strip() and not re.search(r"[<>]|&#?\w+;", value), value
        assert "price" not in item or isinstance(item["price"], float)
    categories = Counter(c for item in items for c in item.get("categories", []))
    assert "Professional & Educational Journals" in categories  # was "&amp;" in half the records


def test_duplicates_are_kept_once(magazine) -> None:
    summary, items = magazine
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids))
    # 3,385 lines, 2,320 distinct ASINs: every other line is a duplicate; products with no text
    # left at all (their title was only a tag, no description) are counted apart.
    assert summary.skipped["duplicate ASIN (first kept)"] == 3385 - 2320
    assert len(items) + summary.skipped["no text and no image"] == 2320


def test_no_sentence_recurs_across_many_brands(magazine) -> None:
    summary, items = magazine
    assert summary.boilerplate_sentences >= 1 and summary.boilerplate_items > 100
    assert not any("auto-renewal" in item["text"] for item in items)  # on 485 items of 45 publishers
    brands: dict[int, set[str]] = {}
    for item in items:
        parts = sentences(item["text"])
        if parts and parts[-1][-1] not in ".!?:":
            parts.pop()  # the text was cut here (--max-text-chars): a fragment, not a sentence
        for sentence in parts:
            brands.setdefault(sentence_key(sentence), set()).add(item.get("brand", item["id"]).lower())
    assert max(len(b) for b in brands.values()) < 4  # the default threshold on a file this size
