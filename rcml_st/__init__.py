"""rcml-st: relation-conditioned multimodal representation learning (RCML) for sentence-transformers.

An RCML model encodes an item (text, image or both) *under* a natural-language relation
description, so the same item gets a different vector per relation::

    import rcml_st

    model = rcml_st.build_model("ViT-B-32", pretrained="path/to/weights.pt")   # or rcml_st.load("rcml-baby")
    vectors = model.encode([{"text": "nursing pillow", "image": "images/B0001.jpg"}],
                           relation="used together for infant feeding")

Saved models load with ``SentenceTransformer(path, trust_remote_code=True)`` (or :func:`load`).
"""

from __future__ import annotations

from rcml_st.encoding import RelationEmbeddings, encode_relations
from rcml_st.model import build_model, load, relation_vocabulary, set_relation_vocabulary
from rcml_st.modules import OpenCLIPInput, RelationPooling

__version__ = "0.1.0"

__all__ = [
    "OpenCLIPInput",
    "RelationEmbeddings",
    "RelationPooling",
    "__version__",
    "build_model",
    "encode_relations",
    "load",
    "relation_vocabulary",
    "set_relation_vocabulary",
]
