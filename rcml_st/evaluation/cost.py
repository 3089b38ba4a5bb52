"""What indexing costs: the time to encode N items under R relations, measured, for any method.

RCML runs its backbone once per item and then the relation pooling once per relation over the
tokens it already has (:func:`rcml_st.encode_relations`). A model that gets the relation through
its text (a prompted sentence-transformers model, or RCML's own ``clip`` baseline with the
relation appended) must run its text tower once per (item, relation). :func:`indexing_cost`
times either and counts the inputs that really entered the backbone: a forward pre-hook on the
model's first (input) module adds up the rows of ``input_ids`` (texts) and ``pixel_values``
(images) of every batch, so the pass counts are observed, not computed from N and R.

RCML also embeds the R relation descriptions once per run (R short texts through the text tower,
outside the item batches); ``relation_texts`` reports them. RCML remembers those embeddings for
the same relations and weights, so with the warm-up (on by default) their time falls in the
warm-up, not in ``seconds``: R short texts, next to N items.

Example:
    >>> import rcml_st
    >>> from rcml_st.evaluation import indexing_cost
    >>> model = rcml_st.build_model("rcml-tiny", device="cpu")
    >>> items = [{"text": "nursing pillow"}, {"text": "bottle warmer"}, {"text": "pram"}]
    >>> cost = indexing_cost(model, items, ["used together", "same colour"])
    >>> cost.text_passes, cost.image_passes, cost.relation_texts
    (3, 0, 2)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from rcml_st.data.catalog import Catalog
from rcml_st.encoding import encode_relations
from rcml_st.evaluation.methods import is_rcml
from rcml_st.evaluation.prompted import PromptedModel, encode_prompted_inputs

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


@dataclass(frozen=True)
class IndexingCost:
    """Measured cost of encoding ``items`` items under ``relations`` relations.

    Attributes:
        method: ``"rcml"`` (conditioned pooling) or ``"prompted"`` (the relation in the text).
        items: N, the items encoded.
        relations: R, the relations each item was encoded under.
        seconds: wall time of the encoding, by the given clock (preprocessing, image loading and
            the model; not the warm-up).
        text_passes: texts that entered the backbone (item texts; a prompted model's once per
            relation).
        image_passes: images that entered the backbone.
        relation_texts: relation descriptions embedded on the side (RCML: R, once per run).
    """

    method: str
    items: int
    relations: int
    seconds: float
    text_passes: int
    image_passes: int
    relation_texts: int = 0

    @property
    def passes(self) -> int:
        """Item inputs through the backbone: ``text_passes + image_passes``."""
        return self.text_passes + self.image_passes

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (with ``passes``)."""
        return {**asdict(self), "passes": self.passes}


@contextmanager
def count_backbone_inputs(model: SentenceTransformer) -> Iterator[dict[str, int]]:
    """Counts the texts and images entering ``model[0]`` (its input module) while the block runs.

    Yields:
        ``{"text": ..., "image": ...}``, updated as batches go through: the rows of each batch's
        ``input_ids`` and ``pixel_values``.
    """
    counts = {"text": 0, "image": 0}

    def hook(_module: Any, args: tuple, kwargs: dict) -> None:
        features = args[0] if args else kwargs.get("features")
        if not isinstance(features, Mapping):
            return
        for modality, key in (("text", "input_ids"), ("image", "pixel_values")):
            value = features.get(key)
            if value is not None and hasattr(value, "shape") and len(value.shape) > 0:
                counts[modality] += int(value.shape[0])

    handle = model[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield counts
    finally:
        handle.remove()


def _split_items(items: Catalog | Sequence[Any]) -> tuple[list[str | None], list[Any]]:
    if isinstance(items, Catalog):
        return [item.text for item in items.items], [item.image for item in items.items]
    texts: list[str | None] = []
    images: list[Any] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            texts.append(item)
            images.append(None)
        elif isinstance(item, Mapping):
            texts.append(item.get("text"))
            images.append(item.get("image"))
        else:
            raise ValueError(
                f"item {index}: expected a text or a dict with 'text'/'image', got {type(item).__name__}"
            )
    return texts, images


def indexing_cost(
    method: SentenceTransformer | PromptedModel,
    items: Catalog | Sequence[Any],
    relations: Sequence[str],
    *,
    batch_size: int = 32,
    clock: Callable[[], float] = time.perf_counter,
    warmup: bool = True,
) -> IndexingCost:
    """Times encoding ``items`` under every relation of ``relations``, as indexing them would.

    - An RCML model (a ``SentenceTransformer`` with relation pooling):
      :func:`rcml_st.encode_relations`, one backbone pass per item, the pooling per relation.
    - A :class:`~rcml_st.evaluation.prompted.PromptedModel` (any sentence-transformers model, or an
      RCML model's backbone, with a template that writes the relation into the text): each text
      once per relation when the template has ``{relation}``, each image once.
    - Any other ``SentenceTransformer``: as a ``PromptedModel`` without a template.

    Args:
        method: the model to time.
        items: a :class:`~rcml_st.data.Catalog`, or texts / dicts with ``text`` and/or ``image``.
        relations: the R relation descriptions.
        batch_size: inputs per encoding batch.
        clock: returns seconds (inject a fake one in tests).
        warmup: encode the first item once before timing (lazy initialisation, first-call
            allocations), not counted.

    Returns:
        The :class:`IndexingCost`.

    Example:
        >>> indexing_cost(rcml_model, catalog, catalog.relations).seconds  # doctest: +SKIP
        1.9
        >>> minilm = SentenceTransformer("all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> minilm = PromptedModel(minilm, "{relation}: {text}")  # doctest: +SKIP
        >>> indexing_cost(minilm, catalog, catalog.relations).text_passes  # doctest: +SKIP
        7500
    """
    relations = list(relations)
    texts, images = _split_items(items)
    rcml = not isinstance(method, PromptedModel) and is_rcml(method)
    prompted = None if rcml else method if isinstance(method, PromptedModel) else PromptedModel(method)
    model = method if prompted is None else prompted.model

    def run(texts: list[str | None], images: list[Any]) -> None:
        if prompted is None:
            inputs = [
                {k: v for k, v in (("text", t), ("image", i)) if v is not None}
                for t, i in zip(texts, images, strict=True)
            ]
            encode_relations(model, inputs, relations, batch_size=batch_size)
        else:
            encode_prompted_inputs(prompted, texts, images, relations, batch_size=batch_size)

    if warmup and texts:
        run(texts[:1], images[:1])
    with count_backbone_inputs(model) as counts:
        start = clock()
        run(texts, images)
        seconds = clock() - start
    return IndexingCost(
        method="rcml" if prompted is None else "prompted",
        items=len(texts),
        relations=len(relations),
        seconds=float(seconds),
        text_passes=counts["text"],
        image_passes=counts["image"],
        relation_texts=len(relations) if prompted is None else 0,
    )


__all__ = ["IndexingCost", "count_backbone_inputs", "indexing_cost"]
