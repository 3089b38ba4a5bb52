"""What goes into the index (:class:`PointRecord`) and what comes out of a search (:class:`Hit`).

Vectors are checked here, before anything is sent: Qdrant may apply part of a rejected batch,
and a NaN that reaches the server poisons cosine scores without any error. Checking first
means a bad vector stops the run with a message naming the item and the relation, and the
collection is left as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rcml_st.errors import InputDataError

#: Payload keys the index owns; a record's own payload cannot override them.
RESERVED_PAYLOAD_KEYS = ("item_id", "relation")
#: Where a record's own values for reserved keys are kept (``meta.item_id``, ``meta.relation``).
META_KEY = "meta"


@dataclass(frozen=True)
class PointRecord:
    """One (item, relation) point to upsert.

    Attributes:
        item_id: the item's ``id``.
        relation: the relation description the vectors were encoded under.
        vectors: named vectors, e.g. ``{"text": ..., "image": ..., "item": ...}``; only the
            modalities the item has (an item without an image has no ``image`` vector).
        payload: the item's ``text``, ``image`` and metadata; ``item_id`` and ``relation`` are
            added by the index. A metadata key of its own named ``item_id`` or ``relation`` is
            kept, nested under ``meta`` (``meta.item_id`` in a Qdrant filter), never overwritten.

    Example:
        >>> import numpy as np
        >>> rec = PointRecord("B0001", "used together", {"item": np.ones(4, np.float32)}, {"text": "pillow"})
        >>> sorted(rec.full_payload())
        ['item_id', 'relation', 'text']
        >>> PointRecord("B1", "r", {}, {"relation": "sister brand"}).full_payload()
        {'meta': {'relation': 'sister brand'}, 'item_id': 'B1', 'relation': 'r'}
    """

    item_id: str
    relation: str
    vectors: Mapping[str, Any]
    payload: Mapping[str, Any] = field(default_factory=dict)

    def full_payload(self) -> dict[str, Any]:
        """The payload stored with the point: the record's payload plus ``item_id`` and ``relation``.

        Raises:
            InputDataError: the payload has both a reserved key and a ``meta`` key that cannot
                take it (not an object, or holding the same key already).
        """
        payload = keep_reserved(self.payload, f"item {self.item_id!r}")
        payload["item_id"] = self.item_id
        payload["relation"] = self.relation
        return payload

    def has_reserved_keys(self) -> bool:
        """Whether the record's own payload uses a reserved key (kept under ``meta``)."""
        return any(key in self.payload for key in RESERVED_PAYLOAD_KEYS)


def keep_reserved(payload: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A copy of ``payload`` with its own ``item_id`` / ``relation`` moved under ``meta``.

    Args:
        payload: a record's payload (text, image, metadata).
        what: how to name the record in an error, e.g. ``"item 'B1' (line 4)"``.

    Raises:
        InputDataError: the payload also has a ``meta`` key that is not an object or already
            holds one of those keys (nothing is overwritten, ever).

    Example:
        >>> keep_reserved({"item_id": "old-sku", "brand": "Acme"}, "item 'B1'")
        {'brand': 'Acme', 'meta': {'item_id': 'old-sku'}}
    """
    out = dict(payload)
    clashes = {key: out.pop(key) for key in RESERVED_PAYLOAD_KEYS if key in out}
    if not clashes:
        return out
    meta = out.get(META_KEY, {})
    if not isinstance(meta, Mapping) or set(meta) & set(clashes):
        raise InputDataError(
            f"{what}: metadata key(s) {', '.join(map(repr, clashes))} are the index's own payload "
            f"fields, kept under {META_KEY!r} instead, but the metadata's {META_KEY!r} key cannot hold "
            "them (not an object, or it has the same key); rename one of them"
        )
    out[META_KEY] = {**meta, **clashes}
    return out


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        rank: 1 for the best match.
        score: cosine similarity (higher is closer).
        item_id: the matched item's ``id``.
        text: the matched item's text, or ``None`` for an image-only item.
        payload: the whole stored payload (``item_id``, ``relation``, ``text``, ``image``, metadata).
    """

    rank: int
    score: float
    item_id: str
    text: str | None
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``rank``, ``score``, ``id``, ``text``, ``payload``."""
        return {
            "rank": self.rank,
            "score": self.score,
            "id": self.item_id,
            "text": self.text,
            "payload": self.payload,
        }


def check_vector(vector: Any, size: int, what: str) -> np.ndarray:
    """Returns ``vector`` as a contiguous float32 array after checking its shape and values.

    Args:
        vector: a 1-D array-like of numbers.
        size: the dimension it must have.
        what: how to name it in an error, e.g. ``"item 'B1' under relation 'r': image vector"``.

    Raises:
        InputDataError: wrong shape, wrong dimension, not numbers, or NaN/infinite values.

    Example:
        >>> check_vector([1, 2, 3], 3, "query").dtype
        dtype('float32')
    """
    try:
        array = np.asarray(vector)
    except Exception as exc:  # ragged lists and the like
        raise InputDataError(f"{what} is not an array of numbers ({exc})") from None
    if array.dtype.kind not in "fiu":
        raise InputDataError(f"{what} is not an array of numbers (dtype {array.dtype})")
    if array.ndim != 1:
        raise InputDataError(f"{what} has shape {array.shape}, expected a 1-D vector of size {size}")
    if array.shape[0] != size:
        raise InputDataError(f"{what} has size {array.shape[0]}, but the collection expects {size}")
    # Checked after the cast: float64 values beyond the float32 range become inf there.
    with np.errstate(over="ignore", invalid="ignore"):
        array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputDataError(f"{what} has {bad} non-finite value(s) (NaN or infinite)")
    return array


def check_records(records: list[PointRecord], dims: Mapping[str, int]) -> list[dict[str, np.ndarray]]:
    """Checks every record's ids and vectors against the collection's vector sizes.

    Args:
        records: the points to upsert.
        dims: vector name -> size, as the collection defines them.

    Returns:
        For each record, its vectors as contiguous float32 arrays (what is sent).

    Raises:
        InputDataError: the first bad record, naming its item and relation.
    """
    checked = []
    for record in records:
        if not isinstance(record.item_id, str) or not record.item_id:
            raise InputDataError(f"point with item_id {record.item_id!r}: item_id must be a non-empty string")
        if not isinstance(record.relation, str) or not record.relation:
            raise InputDataError(
                f"item {record.item_id!r}: relation must be a non-empty string, got {record.relation!r}"
            )
        where = f"item {record.item_id!r} under relation {record.relation!r}"
        if not record.vectors:
            raise InputDataError(f"{where} has no vectors")
        unknown = sorted(set(record.vectors) - set(dims))
        if unknown:
            raise InputDataError(
                f"{where} has vector(s) {', '.join(map(repr, unknown))} that the collection does not "
                f"define (it has {', '.join(map(repr, sorted(dims)))})"
            )
        checked.append(
            {
                name: check_vector(value, dims[name], f"{where}: {name} vector")
                for name, value in record.vectors.items()
            }
        )
    return checked
