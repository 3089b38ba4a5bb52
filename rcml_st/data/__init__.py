"""Data: reading and validating catalogue files, loading images, generating catalogues."""

from __future__ import annotations

from rcml_st.data.catalog import Catalog, Edge, Item, read_catalog, write_catalog
from rcml_st.data.images import load_image

__all__ = ["Catalog", "Edge", "Item", "load_image", "read_catalog", "write_catalog"]
