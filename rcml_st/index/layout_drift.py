"""Which storage settings asked of an existing collection it does not have (and keeps).

A :class:`~rcml_st.index.layout.Layout` applies when a collection is created. Asked again of an
existing collection (``rcml-st index ... --quantization int8`` on one created without), the
settings would be silently ignored; :func:`layout_differences` names them so the caller can say
so. A warning, not an error: the points written are the same whatever the layout, and re-running
an interrupted index with its original options must keep working.
"""

from __future__ import annotations

from qdrant_client import models

from rcml_st.index.layout import Layout


def _quantization(info: models.CollectionInfo) -> str:
    config = info.config.quantization_config
    if isinstance(config, models.ScalarQuantization):
        return "int8"
    if isinstance(config, models.BinaryQuantization):
        return "binary"
    return "none" if config is None else type(config).__name__


def layout_differences(layout: Layout, info: models.CollectionInfo) -> list[str]:
    """The settings ``layout`` sets explicitly that the existing collection (``info``) lacks.

    Only settings away from their defaults count (a default cannot tell "asked" from "not given").

    Example:
        >>> info = models.CollectionInfo.model_validate({
        ...     "status": "green", "optimizer_status": "ok", "segments_count": 1, "payload_schema": {},
        ...     "config": {"params": {"vectors": {"item": {"size": 4, "distance": "Cosine"}}},
        ...                "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
        ...                "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
        ...                                     "default_segment_number": 0, "flush_interval_sec": 5},
        ...                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0}}})
        >>> layout_differences(Layout(vectors=("item",), quantization="int8", hnsw_m=32), info)
        ['int8 quantization (it has none)', 'HNSW m 32 (it has 16)']
        >>> layout_differences(Layout(vectors=("item",)), info)
        []
    """
    config = info.config
    differences = []
    existing = _quantization(info)
    if layout.quantized and layout.quantization != existing:
        differences.append(f"{layout.quantization} quantization (it has {existing})")
    if layout.on_disk is not None:
        vectors = config.params.vectors if isinstance(config.params.vectors, dict) else {}
        stored = {bool(params.on_disk) for params in vectors.values()}
        if stored and stored != {layout.on_disk}:
            where = "in RAM" if layout.on_disk is False else "on disk"
            differences.append(f"vectors {where} (they are {'on disk' if True in stored else 'in RAM'})")
    if not layout.on_disk_payload and config.params.on_disk_payload is not False:
        differences.append("payload in RAM (it is on disk)")
    hnsw = config.hnsw_config
    if layout.hnsw_m is not None and hnsw is not None and hnsw.m != layout.hnsw_m:
        differences.append(f"HNSW m {layout.hnsw_m} (it has {hnsw.m})")
    if (
        layout.hnsw_ef_construct is not None
        and hnsw is not None
        and hnsw.ef_construct != layout.hnsw_ef_construct
    ):
        differences.append(f"HNSW ef_construct {layout.hnsw_ef_construct} (it has {hnsw.ef_construct})")
    return differences


__all__ = ["layout_differences"]
