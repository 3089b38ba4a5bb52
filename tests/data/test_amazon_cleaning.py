"""Text cleaning for real product records: markup, entities, junk prices and categories, boilerplate."""

from __future__ import annotations

import pytest

from rcml_st.data.amazon.cleaning import (
    BoilerplateCounter,
    looks_like_junk_price,
    remove_sentences,
    strip_markup,
)
from rcml_st.data.amazon.formats import normalise


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ('<span class="a-size-medium a-color-secondary"', ""),  # a tag cut short: the whole title
        ('Vogue <span class="a-size-medium', "Vogue"),
        (' Magazines" />', ""),  # the tail of a tag whose start was cut off
        ('class="x">Glamour', "Glamour"),
        ("</span></span></span>", ""),
        ("Fashion &amp;amp; Style", "Fashion & Style"),  # escaped twice
        ("&lt;b&gt;Bold&lt;/b&gt; claim", "Bold claim"),  # an escaped tag is still a tag
        ("Caf&#xE9; &ldquo;Noir&rdquo;&nbsp;&#x2014; mag", "Café “Noir” — mag"),
        ("Broken &#xFFFD; char \ufffd here", "Broken char here"),
        ("Text<script>var a = '<b>';</script> after", "Text after"),
        ("Keep <!-- a comment --> this", "Keep this"),
        ("#buybox .price{color:#B12704} Price", "Price"),
        ("Size 3 < 5 and 2 > 1", "Size 3 < 5 and 2 > 1"),  # comparisons are not markup
        ("Rolling Stone {the Country Issue}", "Rolling Stone {the Country Issue}"),
    ],
)
def test_strip_markup(raw: str, clean: str) -> None:
    assert strip_markup(raw) == clean


def test_junk_prices_are_no_price_and_not_counted_as_unparsed() -> None:
    css = ".a-box-inner{background-color:#fff}#alohaBuyBoxWidget .selected{background-color:#fffbf3}"
    for junk in [css, "\n\n\n<script", "   "]:
        assert looks_like_junk_price(junk)
        record = normalise({"asin": "B1", "title": "Vogue", "price": junk}, "2018")
        assert record.price is None and not record.price_unparsed
    ranged = normalise({"asin": "B1", "title": "Vogue", "price": "$5.99 - $9.99"}, "2018")
    assert ranged.price is None and ranged.price_unparsed  # a price, just not one number


def test_junk_categories_are_dropped() -> None:
    record = normalise(
        {
            "asin": "B1",
            "title": "Vogue",
            "category": ["Magazines", "</span></span></span>", "Fashion &amp; Style"],
        },
        "2018",
    )
    assert record.categories == ["Magazines", "Fashion & Style"]


def test_boilerplate_counts_brands_not_products() -> None:
    counter = BoilerplateCounter()
    # One brand's own description on many of its products is not boilerplate...
    for _ in range(50):
        counter.add("Vogue covers fashion. Subscribe today.", group="conde nast")
    # ...a sentence on products of many brands is.
    for brand in ["hearst", "meredith", "bauer"]:
        counter.add(f"{brand} magazine. Subscribe today.", group=brand)
    keys = counter.boilerplate(min_groups=4)
    assert remove_sentences("Vogue covers fashion. Subscribe today.", keys) == "Vogue covers fashion."
    assert counter.boilerplate(min_groups=5) == frozenset()
    assert counter.boilerplate(min_groups=0) == frozenset()


def test_boilerplate_default_threshold_grows_with_the_file() -> None:
    counter = BoilerplateCounter()
    for i in range(8000):
        counter.add(f"Product {i}. Disclaimer here." if i < 6 else f"Product {i}.", group=f"brand {i}")
    assert len(counter.boilerplate()) == 0  # 6 brands < 8000/1000 = 8
    assert len(counter.boilerplate(min_groups=6)) == 1
