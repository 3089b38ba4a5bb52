"""Amazon product metadata (2014, 2018, 2023 releases) into rcml-st data files.

The entry point is :func:`convert_amazon` (the library behind ``rcml-st prepare amazon``)::

    from rcml_st.data.amazon import convert_amazon

    summary = convert_amazon("meta_Baby.json.gz", "baby.jsonl", images="images/", cluster=8)
    print(summary.items, summary.relation_types)

With a review file (the 2023 release has no co-purchase lists), ``reviews="Baby_Products.jsonl.gz"``
adds "reviewed by the same customers".

Modules: :mod:`~.formats` (parsing, format detection, normalising a record), :mod:`~.cleaning`
(markup, entities, junk values, boilerplate sentences), :mod:`~.reader` (streaming lines, gzip by
magic bytes), :mod:`~.images` (ASIN -> image file), :mod:`~.relations` (relation descriptions),
:mod:`~.reviews` (review files as an interaction log), :mod:`~.clustering` (named relation
types), :mod:`~.convert` (the passes).
"""

from __future__ import annotations

from rcml_st.data.amazon.cleaning import BoilerplateCounter, strip_markup
from rcml_st.data.amazon.clustering import RelationTypes, cluster_edges
from rcml_st.data.amazon.convert import ConversionSummary, convert_amazon
from rcml_st.data.amazon.formats import FORMATS, AmazonRecord, detect_format, normalise, parse_line
from rcml_st.data.amazon.images import IMAGE_EXTENSIONS, index_images
from rcml_st.data.amazon.relations import (
    CO_PURCHASE,
    DEFAULT_RELATION_NAMES,
    load_relation_names,
    relation_names,
)
from rcml_st.data.amazon.reviews import MIN_CO_REVIEWS, REVIEW_RELATION, review_edges

__all__ = [
    "CO_PURCHASE",
    "DEFAULT_RELATION_NAMES",
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "MIN_CO_REVIEWS",
    "REVIEW_RELATION",
    "AmazonRecord",
    "BoilerplateCounter",
    "ConversionSummary",
    "RelationTypes",
    "cluster_edges",
    "convert_amazon",
    "detect_format",
    "index_images",
    "load_relation_names",
    "normalise",
    "parse_line",
    "relation_names",
    "review_edges",
    "strip_markup",
]
