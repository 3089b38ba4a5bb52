"""Named relation types: grouping co-purchase edges by what the linked products have in common.

The paper turns Amazon's behaviour relations into about 8-10 relation *types* per domain by
clustering them and naming each cluster ("bought together for infant feeding"). Here a
co-purchase edge (A, B) is represented by the content of the pair: TF-IDF over both products'
category names (kept whole, "bottle feeding") and title words, summed and normalised, so that
what both sides share weighs double. KMeans groups the edges into K types. Each type is named
from the terms its pairs *share* (present on both sides) more often than pairs in general do:
``"bought together: bottle feeding"``.

It stays light on a large catalogue: only edges (two integer arrays) and one short document per
product are held; KMeans is fitted on a seeded sample of at most ``sample_size`` edges and every
edge is then assigned in chunks. Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rcml_st.data.amazon.formats import AmazonRecord

_WORD_RE = re.compile(r"[a-z][a-z]+")
_CATEGORY = "c:"  # feature prefixes keep a category "feeding" apart from the title word "feeding"
_WORD = "w:"
_TITLE_CHARS = 200
_CHUNK = 65536


@dataclass
class RelationTypes:
    """The result of :func:`cluster_edges`.

    Attributes:
        labels: the relation type of each edge (an index into ``names``), in edge order.
        names: the description of each type, most frequent type first.
        sizes: the number of edges of each type, aligned with ``names``.
    """

    labels: np.ndarray
    names: list[str]
    sizes: list[int]


def item_document(record: AmazonRecord) -> str:
    """The short text kept per product for clustering: its categories and the start of its title.

    Example:
        >>> item_document(AmazonRecord("B1", title="Glass Baby Bottle", categories=["Baby", "Feeding"]))
        'baby\\x1ffeeding\\x1eGlass Baby Bottle'
    """
    categories = "\x1f".join(name.lower() for name in record.categories)
    return f"{categories}\x1e{record.title[:_TITLE_CHARS]}"


def _tokens(document: str) -> list[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    categories, _, title = document.partition("\x1e")
    tokens = [_CATEGORY + name for name in categories.split("\x1f") if name]
    tokens += [
        _WORD + w for w in _WORD_RE.findall(title.lower()) if len(w) > 2 and w not in ENGLISH_STOP_WORDS
    ]
    return tokens


def cluster_edges(
    documents: Sequence[str],
    sources: np.ndarray,
    targets: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    prefix: str = "bought together",
    sample_size: int = 20000,
) -> RelationTypes:
    """Groups edges into at most ``k`` named relation types by the content of the linked pairs.

    Args:
        documents: one :func:`item_document` per product, indexed by product number.
        sources: the source product number of each edge.
        targets: the target product number of each edge.
        k: the number of relation types wanted (fewer come out when there are fewer distinct pairs).
        seed: seeds the edge sample and KMeans; the same seed gives the same types.
        prefix: the start of every type's name.
        sample_size: at most this many edges fit the clustering (the rest are assigned after).

    Returns:
        The :class:`RelationTypes`; empty when there are no edges.

    Example:
        >>> docs = [item_document(AmazonRecord(str(i), title=t, categories=["Baby", c]))
        ...         for i, (t, c) in enumerate([("bottle", "Feeding"), ("bib", "Feeding"),
        ...                                     ("bath tub", "Bathing"), ("bath towel", "Bathing")])]
        >>> types = cluster_edges(docs, np.array([0, 2]), np.array([1, 3]), 2, seed=0)
        >>> sorted(types.names)
        ['bought together: bathing', 'bought together: feeding']
    """
    sources = np.asarray(sources, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    if k < 1:
        raise ValueError("the number of relation types must be at least 1")
    n_edges = len(sources)
    if n_edges == 0:
        return RelationTypes(np.zeros(0, dtype=np.int32), [], [])

    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    # Only products that take part in an edge need a vector.
    products = np.unique(np.concatenate([sources, targets]))
    row_of = np.full(len(documents), -1, dtype=np.int64)
    row_of[products] = np.arange(len(products))
    vectorizer = TfidfVectorizer(
        analyzer=_tokens, sublinear_tf=True, min_df=2 if len(products) > 1000 else 1, dtype=np.float32
    )
    features = vectorizer.fit_transform(documents[i] for i in products).tocsr()
    vocabulary = vectorizer.get_feature_names_out()

    def pairs(edges: np.ndarray):
        return normalize(features[row_of[sources[edges]]] + features[row_of[targets[edges]]])

    rng = np.random.default_rng(seed)
    sample = np.arange(n_edges)
    if n_edges > sample_size:
        sample = np.sort(rng.choice(n_edges, size=sample_size, replace=False))
    sample_pairs = pairs(sample)
    n_types = min(k, len(sample))
    if n_types == 1:
        labels = np.zeros(n_edges, dtype=np.int32)
        sample_labels = np.zeros(len(sample), dtype=np.int32)
        model = None
    else:
        model = KMeans(n_clusters=n_types, random_state=seed, n_init=4)
        with warnings.catch_warnings():
            # Fewer distinct pairs than types: some types come out empty and are dropped below.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(sample_pairs)
        sample_labels = model.labels_.astype(np.int32)
        labels = np.empty(n_edges, dtype=np.int32)
        if n_edges == len(sample):
            labels[:] = sample_labels
        else:
            for start in range(0, n_edges, _CHUNK):
                chunk = np.arange(start, min(start + _CHUNK, n_edges))
                labels[chunk] = model.predict(pairs(chunk))

    # Renumber the types by size (largest first; ties by first appearance) and drop empty ones.
    counts = np.bincount(labels, minlength=n_types)
    order = sorted((c for c in range(n_types) if counts[c]), key=lambda c: (-counts[c], c))
    renumber = np.full(n_types, -1, dtype=np.int32)
    renumber[order] = np.arange(len(order), dtype=np.int32)
    labels = renumber[labels]
    sample_labels = renumber[sample_labels]

    shared = _shared_terms(features, row_of, sources[sample], targets[sample])
    centres = _cluster_means(sample_pairs, sample_labels, len(order))
    names = _name_types(shared, sample_labels, centres, vocabulary, len(order), prefix)
    return RelationTypes(labels, names, [int(counts[c]) for c in order])


def _shared_terms(features, row_of: np.ndarray, sources: np.ndarray, targets: np.ndarray):
    """A 0/1 matrix: edge x term, 1 when both products of the edge have the term."""
    left = features[row_of[sources]]
    right = features[row_of[targets]]
    left.data[:] = 1
    right.data[:] = 1
    return left.multiply(right).tocsr()


def _cluster_means(matrix, labels: np.ndarray, n_types: int) -> np.ndarray:
    means = np.zeros((n_types, matrix.shape[1]), dtype=np.float64)
    for t in range(n_types):
        rows = np.flatnonzero(labels == t)
        if len(rows):
            means[t] = np.asarray(matrix[rows].mean(axis=0)).ravel()
    return means


def _ranked_terms(scores: np.ndarray, vocabulary: np.ndarray) -> list[tuple[str, float]]:
    # Highest score first, ties broken by the term, so names never depend on hash order.
    candidates = np.flatnonzero(scores > 0)
    ranked = sorted(candidates, key=lambda j: (-scores[j], vocabulary[j]))
    return [(str(vocabulary[j])[2:], float(scores[j])) for j in ranked]


def _name_types(
    shared, labels: np.ndarray, centres: np.ndarray, vocabulary: np.ndarray, n_types: int, prefix: str
) -> list[str]:
    """Names each type from its most distinctive shared terms (falling back to its centroid)."""
    overall = np.asarray(shared.mean(axis=0)).ravel()
    mean_centre = centres.mean(axis=0)
    eps = 1e-9
    names: list[str] = []
    for t in range(n_types):
        rows = np.flatnonzero(labels == t)
        frequency = np.asarray(shared[rows].mean(axis=0)).ravel() if len(rows) else np.zeros_like(overall)
        # Frequent in this type *and* more frequent here than overall (a KL-divergence term); with a
        # single type every shared term is equally "distinctive", so plain frequency decides.
        scores = frequency * np.log((frequency + eps) / (overall + eps)) if n_types > 1 else frequency
        ranked = _ranked_terms(scores, vocabulary)
        if not ranked:  # pairs sharing nothing: describe the type by its centroid instead
            ranked = _ranked_terms(centres[t] - mean_centre if n_types > 1 else centres[t], vocabulary)
        names.append(_unique_name(ranked, prefix, names, t))
    return names


def _unique_name(ranked: list[tuple[str, float]], prefix: str, taken: list[str], index: int) -> str:
    top = ranked[0][1] if ranked else 0.0
    terms: list[str] = []
    for term, score in ranked:
        if any(term in kept or kept in term for kept in terms):
            continue  # "feeding" adds nothing to "bottle feeding"
        unique = bool(terms) and f"{prefix}: {', '.join(terms)}" not in taken
        # Stop at a unique name once a second term would be weak (under half the first's score)
        # or two terms are there; more terms only to tell two types apart.
        if unique and (len(terms) >= 2 or score < 0.5 * top):
            break
        terms.append(term)
        if len(terms) >= 4:
            break
    name = f"{prefix}: {', '.join(terms)}" if terms else f"{prefix}: type {index + 1}"
    return name if name not in taken else f"{name} ({index + 1})"
