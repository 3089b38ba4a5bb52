"""RCML as sentence-transformers modules: an OpenCLIP input module and relation pooling."""

from __future__ import annotations

from rcml_st.modules.openclip import OpenCLIPInput
from rcml_st.modules.pooling import DEFAULT_BETA, RelationPooling

__all__ = ["DEFAULT_BETA", "OpenCLIPInput", "RelationPooling"]
