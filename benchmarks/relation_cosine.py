"""How much a model's vectors follow the relation: the cosine of one item under two relations.

Encodes the first ``--items`` items of a data file under every relation the file uses and prints,
per modality, the mean cosine between an item's vectors under each pair of relations (1.0: the
relation changes nothing; a model that follows the relation reads lower)::

    python benchmarks/relation_cosine.py runs/rcml data/test.jsonl --items 40
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

import numpy as np


def relation_cosines(embeddings, modality: str) -> dict[tuple[str, str], float]:
    """Mean cosine of an item's ``modality`` vectors under each pair of relations (items that have it)."""
    vectors = embeddings.get(modality)  # (R, N, D), unit length, zeros where missing
    has = embeddings.has_text if modality == "text" else embeddings.has_image
    out = {}
    for i, j in itertools.combinations(range(len(embeddings.relations)), 2):
        cosines = np.sum(vectors[i, has] * vectors[j, has], axis=-1)
        out[(embeddings.relations[i], embeddings.relations[j])] = float(cosines.mean())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a saved RCML model folder")
    parser.add_argument("data", type=Path, help="a data file (JSON lines)")
    parser.add_argument("--items", type=int, default=40, help="items encoded (the file's first)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import rcml_st
    from rcml_st.data.catalog import read_catalog
    from rcml_st.encoding import encode_relations
    from rcml_st.evaluation.methods import catalog_inputs

    catalog = read_catalog(args.data)
    model = rcml_st.load(args.model, device="cpu")
    inputs = catalog_inputs(catalog)[: args.items]
    embeddings = encode_relations(model, inputs, catalog.relations)
    for modality in ("text", "image"):
        has = embeddings.has_text if modality == "text" else embeddings.has_image
        if not has.any():
            continue
        cosines = relation_cosines(embeddings, modality)
        shown = ", ".join(f"{a[:12]}/{b[:12]} {c:.3f}" for (a, b), c in cosines.items())
        print(f"{modality}: mean {np.mean(list(cosines.values())):.3f} ({shown})")


if __name__ == "__main__":
    main()
