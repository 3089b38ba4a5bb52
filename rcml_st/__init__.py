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

from typing import TYPE_CHECKING

from rcml_st._lazy import lazy_exports

if TYPE_CHECKING:
    from rcml_st.encoding import RelationEmbeddings, encode_relations
    from rcml_st.model import build_model, load, relation_vocabulary, set_relation_vocabulary
    from rcml_st.modules import OpenCLIPInput, RelationPooling

__version__ = "0.2.0"

# Public names resolve on first use (PEP 562): `import rcml_st.index` or `rcml-st --help` must not
# pay for importing torch, open_clip and sentence-transformers.
_LAZY = {
    "RelationEmbeddings": "rcml_st.encoding",
    "encode_relations": "rcml_st.encoding",
    "build_model": "rcml_st.model",
    "load": "rcml_st.model",
    "relation_vocabulary": "rcml_st.model",
    "set_relation_vocabulary": "rcml_st.model",
    "OpenCLIPInput": "rcml_st.modules",
    "RelationPooling": "rcml_st.modules",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

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
