"""Which model wrote a collection: recorded in its metadata, checked before writing or searching.

Vectors of two models do not compare, even at the same width: indexing a collection with another
model would overwrite some points with vectors unrelated to the rest, and searching it with
another model returns nonsense. So a collection records a fingerprint of the model that indexes
it (:func:`model_fingerprint`: a hash of the weights and the modules' configurations) in its
collection metadata (Qdrant 1.16+, the embedded store too) under :data:`MODEL_KEY`; points and
counts are untouched. Indexing or searching with a model of another fingerprint is an error
unless forced (``--force``); a forced index records the new model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING

from rcml_st.errors import UsageError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from rcml_st.index.store import RelationIndex

logger = logging.getLogger("rcml_st.index")

#: Key of the model fingerprint in the collection metadata.
MODEL_KEY = "rcml_model"


def model_fingerprint(model: SentenceTransformer) -> str:
    """A hash of a model's weights (every tensor's name, dtype, shape and bytes) and configurations.

    Two models that encode differently get different fingerprints; a model saved and loaded
    again keeps its fingerprint.

    Example:
        >>> import rcml_st
        >>> a = rcml_st.build_model("rcml-tiny", relations=["matches in colour"], device="cpu")
        >>> b = rcml_st.build_model("rcml-tiny", relations=["matches in colour"], device="cpu")
        >>> model_fingerprint(a) == model_fingerprint(a), model_fingerprint(a) == model_fingerprint(b)
        (True, False)
    """
    import torch

    digest = hashlib.blake2b(digest_size=16)
    configs = []
    for module in model:
        get_config = getattr(module, "get_config_dict", None)
        configs.append([type(module).__name__, get_config() if callable(get_config) else None])
    digest.update(json.dumps(configs, sort_keys=True, default=str).encode("utf-8"))
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _recorded(index: RelationIndex) -> str | None:
    value = index.metadata().get(MODEL_KEY)
    return value if isinstance(value, str) else None


def claim_collection(index: RelationIndex, fingerprint: str, *, created: bool, force: bool = False) -> None:
    """Before indexing: records the model in a new collection, or checks that an existing one is its.

    Args:
        index: the collection (it exists: :meth:`RelationIndex.ensure_collection` ran).
        fingerprint: :func:`model_fingerprint` of the model about to write.
        created: the collection was just created (with the fingerprint in its metadata).
        force: write with another model anyway, and record this one.

    Raises:
        UsageError: the collection was indexed with another model and ``force`` is off.
    """
    if created:
        return
    recorded = _recorded(index)
    if recorded == fingerprint:
        return
    if recorded is not None and not force:
        raise UsageError(
            f"collection {index.collection!r} at {index.target} was indexed with another model "
            f"(fingerprint {recorded[:12]}, this model: {fingerprint[:12]}); writing this one's vectors "
            "would mix two models whose vectors do not compare. Use another --collection, delete this "
            "one, or add --force to overwrite it with this model"
        )
    if recorded is not None:
        logger.warning(
            "--force: collection %r was indexed with another model; points this run does not rewrite "
            "keep the old model's vectors",
            index.collection,
        )
    elif index.count() > 0:
        logger.warning(
            "collection %r does not record which model indexed it (written by an older rcml-st); "
            "recording this model",
            index.collection,
        )
    index.update_metadata({MODEL_KEY: fingerprint})


def check_search_model(index: RelationIndex, fingerprint: str, *, force: bool = False) -> None:
    """Before a text or image search: the query model must be the one that indexed the collection.

    A collection that records no model (an older rcml-st) is not checked.

    Raises:
        UsageError: the collection records another model and ``force`` is off.
    """
    recorded = _recorded(index)
    if recorded is None or recorded == fingerprint or force:
        return
    raise UsageError(
        f"collection {index.collection!r} at {index.target} was indexed with another model (fingerprint "
        f"{recorded[:12]}, this model: {fingerprint[:12]}); its vectors do not compare with this model's. "
        "Search with the model that indexed it (or add --force to search anyway)"
    )


__all__ = ["MODEL_KEY", "check_search_model", "claim_collection", "model_fingerprint"]
