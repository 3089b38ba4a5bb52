"""Training pairs from a catalogue: intra-sample (an item's own text and image) and inter-sample (edges).

- **Intra-sample**: for every item with both a text and an image, the pair (its text, its image)
  under a generic "same item" description (:data:`SAME_ITEM`, configurable). This is CLIP's own
  objective, conditioned like everything else.
- **Inter-sample**: for every edge ``(source, relation, target)`` of the catalogue, the pair
  (source item, target item) under that relation, each side with all the modalities it has.

The dataset has the columns the sentence-transformers trainer expects: ``anchor`` and
``positive`` (dicts ``{"text", "image", "relation"}``, images as paths decoded lazily by the
model's ``preprocess``) and ``label`` (``[source, target, relation]``: catalogue positions of the
two items and the relation's index in :attr:`PairSet.relations`), which :class:`~rcml_st.losses.RCMLLoss`
uses to find true positives. Columns are never named ``*_id`` (the collator would tokenise them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rcml_st.data.catalog import Catalog, Item

if TYPE_CHECKING:
    from datasets import Dataset

    from rcml_st.losses.positives import RelationGraph

#: The default description of intra-sample pairs (an item's text and its own image).
SAME_ITEM = "the same product"


@dataclass
class PairSet:
    """The training pairs of a catalogue, with what the loss needs to mask true positives.

    Attributes:
        catalog: the catalogue the pairs index into.
        relations: the loss's relation list; a pair's ``relation`` indexes it. The catalogue's
            relations (sorted) come first, then the same-item description (when used).
        data_relations: the catalogue's own relations: the vocabulary saved with the model.
        pairs: ``(source, target, relation)`` index triples.
        n_intra: how many pairs are intra-sample.
        n_inter: how many pairs are inter-sample.
        same_item: the description used for intra-sample pairs.
    """

    catalog: Catalog
    relations: list[str]
    data_relations: list[str]
    pairs: list[tuple[int, int, int]] = field(default_factory=list)
    n_intra: int = 0
    n_inter: int = 0
    same_item: str = SAME_ITEM

    def __len__(self) -> int:
        return len(self.pairs)

    def graph(self) -> RelationGraph:
        """The relation graph over the catalogue (every edge, both directions), for the loss."""
        from rcml_st.losses.positives import RelationGraph  # torch: only once training starts

        index = {relation: i for i, relation in enumerate(self.relations)}
        edges = [(index[e.relation], e.source, e.target) for e in self.catalog.edges if e.relation in index]
        return RelationGraph(edges, n_items=len(self.catalog), n_relations=len(self.relations))

    def rows(self) -> dict[str, list[Any]]:
        """The dataset columns as lists: ``anchor``, ``positive``, ``label``."""
        anchors, positives, labels = [], [], []
        items = self.catalog.items
        for source, target, relation in self.pairs:
            description = self.relations[relation]
            if source == target:  # intra-sample: text on one side, image on the other
                anchors.append(_side(items[source], description, text=True, image=False))
                positives.append(_side(items[target], description, text=False, image=True))
            else:
                anchors.append(_side(items[source], description))
                positives.append(_side(items[target], description))
            labels.append([source, target, relation])
        return {"anchor": anchors, "positive": positives, "label": labels}

    def to_dataset(self) -> Dataset:
        """A ``datasets.Dataset`` with ``anchor``, ``positive`` and ``label`` columns.

        ``datasets`` stores the dicts as a struct column; a missing modality stays ``None``,
        which the model's ``preprocess`` treats as absent.
        """
        from datasets import Dataset, Features, Sequence, Value

        side = {"text": Value("string"), "image": Value("string"), "relation": Value("string")}
        features = Features(
            {"anchor": side, "positive": dict(side), "label": Sequence(Value("int64"), length=3)}
        )
        return Dataset.from_dict(self.rows(), features=features)

    def describe(self) -> str:
        """One line: how many pairs of each kind, over how many items and relations."""
        return (
            f"{len(self.pairs)} pairs ({self.n_intra} intra-sample, {self.n_inter} inter-sample) over "
            f"{len(self.catalog)} items and {len(self.data_relations)} relations"
        )


def _side(item: Item, relation: str, text: bool = True, image: bool = True) -> dict[str, str | None]:
    return {
        "text": item.text if text else None,
        "image": item.image if image else None,
        "relation": relation,
    }


def build_pairs(
    catalog: Catalog,
    *,
    intra_sample: bool = True,
    inter_sample: bool = True,
    same_item: str = SAME_ITEM,
) -> PairSet:
    """Builds the training pairs of a catalogue.

    Args:
        catalog: a validated catalogue (:func:`rcml_st.data.read_catalog`).
        intra_sample: include (text, image) pairs of each item that has both.
        inter_sample: include one pair per relation edge (``--no-inter-sample`` turns this off).
        same_item: the relation description of intra-sample pairs.

    Returns:
        The :class:`PairSet`.

    Raises:
        ValueError: when no pair results (e.g. no item has both modalities and there are no edges).

    Example:
        >>> from rcml_st.data import Catalog, Item
        >>> a = Item("A", "red bib", "/img/a.png", {"matches in colour": ["B"]}, {}, 1)
        >>> b = Item("B", "red cup", None, {}, {}, 2)
        >>> pairs = build_pairs(Catalog(None, [a, b]))
        >>> pairs.relations, pairs.pairs
        (['matches in colour', 'the same product'], [(0, 0, 1), (0, 1, 0)])
    """
    if not same_item or not same_item.strip():
        raise ValueError("the same-item description must not be empty")
    data_relations = list(catalog.relations)
    relations = list(data_relations)
    pairs: list[tuple[int, int, int]] = []
    n_intra = 0
    if intra_sample:
        if same_item not in relations:
            relations.append(same_item)
        same = relations.index(same_item)
        for i, item in enumerate(catalog.items):
            if item.text is not None and item.image is not None:
                pairs.append((i, i, same))
                n_intra += 1
    n_inter = 0
    if inter_sample:
        index = {relation: i for i, relation in enumerate(relations)}
        for edge in catalog.edges:
            pairs.append((edge.source, edge.target, index[edge.relation]))
            n_inter += 1
    if not pairs:
        what = []
        if intra_sample:
            what.append("no item has both a text and an image")
        if inter_sample:
            what.append("the file has no relation edges")
        raise ValueError("nothing to train on: " + " and ".join(what or ["all pair kinds are turned off"]))
    return PairSet(
        catalog=catalog,
        relations=relations,
        data_relations=data_relations,
        pairs=pairs,
        n_intra=n_intra,
        n_inter=n_inter,
        same_item=same_item,
    )
