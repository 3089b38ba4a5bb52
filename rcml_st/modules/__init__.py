"""RCML as sentence-transformers modules: an OpenCLIP input module and relation pooling."""

from __future__ import annotations

from typing import Any

from rcml_st.errors import UsageError
from rcml_st.modules.openclip import OpenCLIPInput
from rcml_st.modules.pooling import DEFAULT_BETA, RelationPooling


def rcml_modules(model: Any) -> tuple[OpenCLIPInput, RelationPooling]:
    """The model's input module and relation pooling (raises for a non-RCML model).

    Example:
        >>> import rcml_st
        >>> clip, pooling = rcml_modules(rcml_st.build_model("rcml-tiny", device="cpu"))
        >>> type(clip).__name__, type(pooling).__name__
        ('OpenCLIPInput', 'RelationPooling')
    """
    if len(model) < 2 or not isinstance(model[0], OpenCLIPInput) or not isinstance(model[1], RelationPooling):
        raise UsageError("not an RCML model: expected OpenCLIPInput followed by RelationPooling")
    return model[0], model[1]


__all__ = ["DEFAULT_BETA", "OpenCLIPInput", "RelationPooling", "rcml_modules"]
