"""The evaluation picture: Hit@5 per direction and method, and what conditioning does to the space.

Top: grouped bars of retrieval Hit@5 per direction (``tt``, ``ii``, ``ti``, ``it``, ``avg``), one
bar per method, with the random-ranking level; then, when the report has them, Hit@1 with hard
negatives (``retrieval_hard``) and its random-ranking level. "n/a" marks a direction a method
cannot serve. Below: for two or three relations, a 2-D PCA
projection of the items' fused embeddings *under that relation* (upper row) and of the plain,
relation-agnostic backbone embeddings (lower row), both coloured by the items' groups under that
relation. Group labels come from the items' metadata when the data is the generated catalogue
(:func:`rcml_st.data.synthetic.groups`), otherwise from the connected components of the
relation's graph (items without a link under it are grey).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rcml_st.atomic import atomic_path
from rcml_st.evaluation.retrieval import DIRECTIONS

if TYPE_CHECKING:
    from rcml_st.data.catalog import Catalog
    from rcml_st.evaluation.report import EvaluationReport

UNLINKED = "(no link)"
_MAX_POINTS = 2000
_MAX_LEGEND = 8


def relation_groups(catalog: Catalog, relation: str) -> list[str]:
    """A group label per item under a relation: metadata groups, else connected components.

    Example:
        >>> from rcml_st.data import Catalog, Item
        >>> items = [Item("a", "x", None, {"r": ["b"]}), Item("b", "y", None), Item("c", "z", None)]
        >>> relation_groups(Catalog(None, items), "r")
        ['group 1', 'group 1', '(no link)']
    """
    from rcml_st.data.synthetic import GROUP_KEYS, groups

    if relation in GROUP_KEYS:
        try:
            return [groups(item)[relation] for item in catalog.items]
        except ValueError:
            pass  # not the generated catalogue: fall back to the graph
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(catalog)
    adjacency = catalog.neighbours(relation)
    rows = [a for a, others in adjacency.items() for _ in others]
    cols = [b for others in adjacency.values() for b in others]
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    # Number components by size (largest first) so the labels are stable and readable.
    sizes = np.bincount(component)
    order = {c: k + 1 for k, c in enumerate(sorted(range(sizes.size), key=lambda c: (-sizes[c], c)))}
    return [f"group {order[component[i]]}" if i in adjacency else UNLINKED for i in range(n)]


def pick_relations(catalog: Catalog, count: int = 3) -> list[str]:
    """The ``count`` relations with the most edges (ties by name)."""
    counts = catalog.edge_counts
    return sorted(sorted(counts, key=lambda r: (-counts[r], r))[:count])


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Projects (N, D) vectors on their first two principal components: (N, 2)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    if centred.shape[0] < 2:
        return np.zeros((centred.shape[0], 2))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ vt[:2].T
    if projected.shape[1] < 2:
        projected = np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))
    return projected


def _colours(labels: Sequence[str]) -> tuple[list, list[str]]:
    from matplotlib import colormaps

    names = sorted(set(labels) - {UNLINKED}, key=lambda s: (len(s), s))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    palette = {name: cmap(k % cmap.N) for k, name in enumerate(names)}
    palette[UNLINKED] = (0.75, 0.75, 0.75, 1.0)
    return [palette[label] for label in labels], names


def _bars(ax, report: EvaluationReport, hard: bool = False) -> None:
    """Grouped bars per direction and method: Hit@5 with random negatives, or Hit@1 with hard ones.

    A value that does not apply (``None``: a direction the method cannot serve) is a bar of height
    0 labelled "n/a", never a bar at 0 without a label.
    """
    directions = [*DIRECTIONS, "avg"]
    metric = "hit@1" if hard else "hit@5"
    results = {
        name: (r.retrieval_hard if hard else r.retrieval)
        for name, r in report.methods.items()
        if (r.retrieval_hard if hard else r.retrieval) is not None
    }
    methods = list(results)
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(directions))
    for k, name in enumerate(methods):
        metrics = results[name].metrics
        values = [metrics[d][metric] for d in directions]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(x + (k - (len(methods) - 1) / 2) * width, heights, width, label=name)
        for bar, value in zip(bars, values, strict=True):
            if value is None:
                ax.annotate("n/a", (bar.get_x() + bar.get_width() / 2, 0.01), ha="center", fontsize=7)
    negatives = report.settings["negatives"]
    if hard:
        chance = report.settings["hard_chance"]["avg"]["hit@1"]
        title = f"With hard negatives (up to {negatives} partners under other relations), Hit@1"
    else:
        chance = min(1.0, 5 / (negatives + 1))
        title = f"Relation-guided retrieval, Hit@5 (1 target + {negatives} negatives)"
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="random")
    ax.set_xticks(x, directions)
    ax.set_ylim(0, 1.2)  # headroom for the legend above bars that reach 1
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("Hit@1" if hard else "Hit@5")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=min(len(methods) + 1, 6), loc="upper left")


def _scatter(ax, points: np.ndarray, labels: list[str], title: str, legend: bool) -> None:
    colours, names = _colours(labels)
    ax.scatter(points[:, 0], points[:, 1], c=colours, s=10, linewidths=0)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if legend and len(names) <= _MAX_LEGEND:
        from matplotlib.lines import Line2D

        palette = dict(zip(labels, colours, strict=True))
        handles = [Line2D([], [], marker="o", linestyle="", color=palette[n], label=n) for n in names]
        ax.legend(handles=handles, fontsize=7, loc="best", frameon=False)


def _short(text: str, limit: int = 38) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_report(
    report: EvaluationReport,
    catalog: Catalog,
    path: str | os.PathLike[str],
    relations: Sequence[str] | None = None,
    seed: int = 0,
) -> None:
    """Writes the evaluation figure (PNG) to ``path``.

    Args:
        report: from :func:`rcml_st.evaluation.evaluate_catalog` with ``keep_embeddings=True``.
        catalog: the catalogue that was evaluated (for group labels).
        path: the image file to write.
        relations: the relations to project (default: the three with the most edges).
        seed: seed for subsampling items when there are more than 2,000.

    Example:
        >>> plot_report(report, catalog, "eval.png")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed; never opens a window
    import matplotlib.pyplot as plt

    if report.conditioned is None or report.plain is None:
        raise ValueError("the report holds no embeddings: evaluate with keep_embeddings=True")
    relations = list(relations) if relations is not None else pick_relations(catalog)
    n = len(catalog)
    shown = np.arange(n)
    if n > _MAX_POINTS:
        shown = np.sort(np.random.default_rng(seed).choice(n, size=_MAX_POINTS, replace=False))

    columns = max(1, len(relations))
    hard = report.settings.get("hard_queries", 0) > 0 and any(
        r.retrieval_hard is not None for r in report.methods.values()
    )
    top = 1 + hard  # bar rows
    fig = plt.figure(figsize=(4.2 * max(columns, 2), 4.0 * top + 3.6 * 2 * (len(relations) > 0)))
    grid = fig.add_gridspec(top + 2 * (len(relations) > 0), columns)
    _bars(fig.add_subplot(grid[0, :]), report)
    if hard:
        _bars(fig.add_subplot(grid[1, :]), report, hard=True)
    plain = report.plain.get("item")[0]
    for col, relation in enumerate(relations):
        labels = relation_groups(catalog, relation)
        shown_labels = [labels[i] for i in shown]
        conditioned = report.conditioned.get("item")[report.conditioned.relation_position(relation)]
        _scatter(
            fig.add_subplot(grid[top, col]),
            pca_2d(conditioned[shown]),
            shown_labels,
            f"RCML under '{_short(relation)}'\n(PCA, coloured by its groups)",
            legend=True,
        )
        _scatter(
            fig.add_subplot(grid[top + 1, col]),
            pca_2d(plain[shown]),
            shown_labels,
            "same items, no relation (backbone)\n(PCA, coloured as above)",
            legend=False,
        )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as staged:  # a reader never sees half a PNG; the umask's mode
        fig.savefig(staged, dpi=110, format=Path(path).suffix.lstrip(".").lower() or "png")
    plt.close(fig)
