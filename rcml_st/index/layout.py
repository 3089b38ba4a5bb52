"""How a collection stores its points: which named vectors, quantization, on-disk storage, HNSW.

The default (:class:`Layout` ``()``) is the full layout of ``docs/contract/qdrant-layout.md``:
``text``, ``image`` and ``item`` vectors as float32 in RAM, Qdrant's default HNSW graph, the
payload on disk. For large catalogues, store less:

- ``vectors=("item",)``: only the fused vector (a third of the vectors and graphs; search by
  ``--modality item``, the default, keeps working; text/image searches need their vectors).
- ``quantization="int8"`` (scalar, 4x smaller, nearly lossless) or ``"binary"`` (32x smaller,
  for wide vectors of 512+ dimensions): the quantized copy stays in RAM for the search, the
  float32 originals go on disk (``on_disk`` defaults to ``True`` then) and searches rescore the
  best candidates with them.
- ``on_disk=True``: float32 vectors memory-mapped from disk; ``on_disk_payload=False``: the
  payload in RAM (faster filters on unindexed fields, more memory).
- ``hnsw_m`` / ``hnsw_ef_construct``: graph degree (memory ~ ``m``) and build effort.

A layout only applies when the collection is created; it is part of the collection from then on.

Example:
    >>> compact = Layout(vectors=("item",), quantization="int8")
    >>> compact.describe()
    'vectors item, int8 quantization (originals on disk, searches rescore), payload on disk'
    >>> sorted(compact.collection_config({"item": 32})["vectors_config"])
    ['item']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qdrant_client import models

from rcml_st.errors import UsageError

#: The vector names the model produces, one per modality plus the fused item vector.
VECTOR_NAMES = ("text", "image", "item")
#: Quantization choices (``--quantization``).
QUANTIZATIONS = ("none", "int8", "binary")
#: How many more candidates than asked for a quantized search takes before rescoring them.
RESCORE_OVERSAMPLING = 2.0


@dataclass(frozen=True)
class Layout:
    """What a new collection stores, and how.

    Attributes:
        vectors: the named vectors stored, a non-empty subset of ``text``, ``image``, ``item``.
        quantization: ``"none"``, ``"int8"`` (scalar) or ``"binary"``.
        on_disk: float32 vectors on disk (memory-mapped); ``None``: on disk exactly when quantized.
        on_disk_payload: the payload on disk (Qdrant's default) rather than in RAM.
        hnsw_m: HNSW edges per node (Qdrant's default 16 when ``None``).
        hnsw_ef_construct: HNSW build-time candidate list (Qdrant's default 100 when ``None``).
    """

    vectors: tuple[str, ...] = VECTOR_NAMES
    quantization: str = "none"
    on_disk: bool | None = None
    on_disk_payload: bool = True
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None

    def __post_init__(self) -> None:
        vectors = tuple(dict.fromkeys(self.vectors))
        unknown = [name for name in vectors if name not in VECTOR_NAMES]
        if not vectors or unknown:
            got = ", ".join(self.vectors) or "none"
            raise UsageError(f"--vectors must name some of {', '.join(VECTOR_NAMES)}, got {got}")
        object.__setattr__(self, "vectors", tuple(name for name in VECTOR_NAMES if name in vectors))
        if self.quantization not in QUANTIZATIONS:
            raise UsageError(
                f"--quantization must be one of {', '.join(QUANTIZATIONS)}, got {self.quantization!r}"
            )
        if self.hnsw_m is not None and self.hnsw_m < 2:
            raise UsageError(f"--hnsw-m must be at least 2, got {self.hnsw_m}")
        if self.hnsw_ef_construct is not None and self.hnsw_ef_construct < 4:
            raise UsageError(f"--hnsw-ef-construct must be at least 4, got {self.hnsw_ef_construct}")

    @classmethod
    def parse_vectors(cls, text: str | None) -> tuple[str, ...]:
        """Reads ``--vectors`` (``"item"``, ``"item,text"``; ``None`` or ``"all"``: every vector).

        Example:
            >>> Layout.parse_vectors("text, item")
            ('text', 'item')
        """
        if text is None or text.strip() == "all":
            return VECTOR_NAMES
        return tuple(part.strip() for part in text.split(",") if part.strip())

    @property
    def quantized(self) -> bool:
        """Whether searches go through a quantized copy (and rescore with the originals)."""
        return self.quantization != "none"

    @property
    def tuned(self) -> bool:
        """Whether any storage setting other than ``vectors`` differs from the default."""
        return (
            self.quantized
            or self.on_disk is not None
            or not self.on_disk_payload
            or self.hnsw_m is not None
            or self.hnsw_ef_construct is not None
        )

    @property
    def vectors_on_disk(self) -> bool:
        """Where the float32 vectors live: on disk when asked, or by default when quantized."""
        return self.quantized if self.on_disk is None else self.on_disk

    def dims(self, made: Mapping[str, int]) -> dict[str, int]:
        """The stored vectors and their sizes, from what the model makes (``{"text": D, ...}``)."""
        return {name: int(made[name]) for name in self.vectors}

    def collection_config(self, dims: Mapping[str, int]) -> dict[str, Any]:
        """Keyword arguments of ``QdrantClient.create_collection`` for this layout.

        Args:
            dims: the named vectors to create and their sizes (normally :meth:`dims`' result).
        """
        config: dict[str, Any] = {
            "vectors_config": {
                name: models.VectorParams(
                    size=size, distance=models.Distance.COSINE, on_disk=self.vectors_on_disk
                )
                for name, size in dims.items()
            },
            "on_disk_payload": self.on_disk_payload,
        }
        if self.hnsw_m is not None or self.hnsw_ef_construct is not None:
            config["hnsw_config"] = models.HnswConfigDiff(m=self.hnsw_m, ef_construct=self.hnsw_ef_construct)
        if self.quantization == "int8":
            config["quantization_config"] = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(
                    type=models.ScalarType.INT8, quantile=0.99, always_ram=True
                )
            )
        elif self.quantization == "binary":
            config["quantization_config"] = models.BinaryQuantization(
                binary=models.BinaryQuantizationConfig(always_ram=True)
            )
        return config

    def describe(self) -> str:
        """One line for the user: what is stored and where."""
        parts = [f"vectors {', '.join(self.vectors)}"]
        if self.quantized:
            where = "originals on disk" if self.vectors_on_disk else "originals in RAM"
            parts.append(f"{self.quantization} quantization ({where}, searches rescore)")
        elif self.vectors_on_disk:
            parts.append("vectors on disk")
        if self.hnsw_m is not None or self.hnsw_ef_construct is not None:
            parts.append(
                f"HNSW m={self.hnsw_m or 'default'} ef_construct={self.hnsw_ef_construct or 'default'}"
            )
        parts.append("payload on disk" if self.on_disk_payload else "payload in RAM")
        return ", ".join(parts)


def is_quantized(info: models.CollectionInfo) -> bool:
    """Whether a collection (from ``get_collection``) keeps a quantized copy of any vector."""
    if info.config.quantization_config is not None:
        return True
    vectors = info.config.params.vectors
    if isinstance(vectors, dict):
        return any(params.quantization_config is not None for params in vectors.values())
    return False


def rescoring_params() -> models.SearchParams:
    """Search parameters for a quantized collection: oversample, then rescore with the originals."""
    return models.SearchParams(
        quantization=models.QuantizationSearchParams(rescore=True, oversampling=RESCORE_OVERSAMPLING)
    )
