"""Data: reading and validating catalogue files, loading images, generating catalogues.

Example:
    >>> import tempfile
    >>> from rcml_st.data import generate_catalog, read_catalog
    >>> synth = generate_catalog(tempfile.mkdtemp(), n_items=20)
    >>> read_catalog(synth.train_path).relations
    ['made by the same brand', 'matches in colour', 'used together for the same activity']
"""

from __future__ import annotations

from rcml_st.data.catalog import Catalog, Edge, Item, read_catalog, write_catalog
from rcml_st.data.images import load_image
from rcml_st.data.shard import Shard
from rcml_st.data.stream import CatalogStream, stream_catalog
from rcml_st.data.synthetic import RELATIONS, SyntheticCatalog, generate_catalog, groups

__all__ = [
    "RELATIONS",
    "Catalog",
    "CatalogStream",
    "Edge",
    "Item",
    "Shard",
    "SyntheticCatalog",
    "generate_catalog",
    "groups",
    "load_image",
    "read_catalog",
    "stream_catalog",
    "write_catalog",
]
